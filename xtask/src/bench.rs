//! `cargo xtask bench`: runs the benchmarks and rewrites BENCHMARKS.md.
//! Every figure is a ratio or difference against a baseline measured in
//! the same run, because absolute numbers drift on shared machines.

use std::{fs, process::Command};

use anyhow::{Context as _, bail};

use crate::util::{cargo, is_root, output, workspace_root};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Rounds per measurement (median and min-max are reported).
    #[arg(long, default_value_t = 7)]
    rounds: u32,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmarks load XDP programs: run them as root");
    }
    if args.rounds < 5 {
        bail!("use at least 5 rounds so the median means something");
    }
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // SAFETY: setenv before any thread is spawned by this process.
    unsafe { std::env::set_var("NTA_BENCH_ROUNDS", args.rounds.to_string()) };
    cargo(&["bench", "-p", "nta", "--bench", "xdp_cost"])?;
    let root = workspace_root();
    let xdp_cost = fs::read_to_string(root.join("target/bench/xdp_cost.md"))
        .context("the xdp_cost benchmark wrote no results")?;

    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = output(Command::new("uname").arg("-r")).unwrap_or_default();
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    let doc = format!(
        "# nta benchmarks\n\n\
         Written by `cargo xtask bench` (as root); rerun it to refresh this file.\n\n\
         - date: {date}\n- machine: {cores} x {cpu}, kernel {kernel}\n- load average before the run: {load}\n- rounds per figure: {rounds} (median, min-max in parentheses)\n\n\
         ## XDP program cost (BPF_PROG_TEST_RUN)\n\n\
         Command: `cargo bench -p nta --bench xdp_cost` (via `cargo xtask bench`).\n\n\
         nta's XDP program against an empty `XDP_PASS` program, alternating, {repeat} runs per measurement. \
         `ratio` divides the kernel-reported ns per run (1 ns steps); `Δ ns` subtracts BPF_ENABLE_STATS run time per run \
         (sub-ns; measured in a separate pass because the stats themselves slow every run). \
         A thread drains the ring buffer meanwhile, as the agent does. With the default control sampling (1-in-1) every \
         TCP SYN is written to the ring buffer; the second sampling row separates parsing and counting from that write.\n\n\
         {xdp_cost}\n",
        date = date.trim(),
        kernel = kernel.trim(),
        load = load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        rounds = args.rounds,
        repeat = "1e6",
    );
    fs::write(root.join("BENCHMARKS.md"), doc).context("writing BENCHMARKS.md")?;
    println!("wrote BENCHMARKS.md");
    Ok(())
}
