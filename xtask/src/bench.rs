//! `cargo xtask bench`: runs every benchmark stage and rewrites
//! BENCHMARKS.md. Each figure is a ratio or difference against a baseline
//! measured in the same run, because absolute numbers drift on shared
//! machines. A stage that fails is reported as not measured and the
//! command exits non-zero: no number is printed that was not measured.

use std::{fs, time::Instant};

use anyhow::{Context as _, bail};

use crate::util::{cargo, is_root, output, program, run as run_command, workspace_root};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Rounds per measurement (median and min-max are reported).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

struct Stage {
    title: &'static str,
    command: String,
    intro: &'static str,
    result: anyhow::Result<String>,
}

fn nta_bench(args: &[&str]) -> anyhow::Result<()> {
    let bin = workspace_root().join("target/release/nta-bench");
    // Its own session and a higher priority, as BENCH-METHOD.md advises.
    run_command(
        program("setsid")?
            .arg("--wait")
            .arg("nice")
            .arg("-n")
            .arg("-5")
            .arg(&bin)
            .args(args),
    )
}

fn section(name: &str) -> anyhow::Result<String> {
    let path = workspace_root().join(format!("target/bench/{name}.md"));
    fs::read_to_string(&path).with_context(|| format!("{} missing", path.display()))
}

/// Records/s from criterion's estimate of the pipeline benchmark.
fn pipeline_figure() -> anyhow::Result<String> {
    let path = workspace_root()
        .join("target/criterion/pipeline/decode_and_enqueue_batch/new/estimates.json");
    let text = fs::read_to_string(&path).with_context(|| format!("{} missing", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let ns = |k: &str| {
        json[k]["point_estimate"]
            .as_f64()
            .with_context(|| format!("no {k} in estimates"))
    };
    let ci = |b: &str| {
        json["median"]["confidence_interval"][b]
            .as_f64()
            .context("no confidence interval")
    };
    let per_batch = 1024.0;
    let rate = |ns: f64| per_batch / ns * 1e9 / 1e6;
    Ok(format!(
        "| figure | value |\n|---|---|\n| decode and enqueue, M records/s (median, 95% CI) | {:.1} ({:.1}-{:.1}) |\n| ns per record (mean) | {:.2} |\n",
        rate(ns("median")?),
        rate(ci("upper_bound")?),
        rate(ci("lower_bound")?),
        ns("mean")? / per_batch,
    ))
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmarks load XDP programs and build lab namespaces: run them as root");
    }
    if args.rounds < 5 {
        bail!("use at least 5 rounds so the median means something");
    }
    let started = Instant::now();
    cargo(&["build", "--release", "-p", "nta", "-p", "nta-bench"])?;
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let rounds = args.rounds.to_string();
    let _ = fs::remove_dir_all(workspace_root().join("target/bench"));

    let mut stages = vec![
        Stage {
            title: "1. XDP program cost (BPF_PROG_TEST_RUN)",
            command: format!("nta-bench xdp-cost --rounds {rounds}"),
            intro: "nta's XDP program against an empty `XDP_PASS` program, alternating, 1e6 runs per measurement (the same frame each run: a flood of it). `ratio` divides the kernel-reported ns per run (1 ns steps); `Δ ns` subtracts BPF_ENABLE_STATS run time per run (sub-ns; a separate pass, because the stats themselves slow every run). A thread drains the ring buffer meanwhile, as the agent does. The first rows are the defaults (control packets 1-in-1 within a per-CPU budget of 64 records a millisecond, first packets of flows sampled); the next turn the budget and first packets off, so every SYN is written to the ring buffer; the last sample control packets 1-in-64 like data, parsing and counting alone.",
            result: nta_bench(&["xdp-cost", "--rounds", &rounds]).and_then(|_| section("xdp_cost")),
        },
        Stage {
            title: "2. Live counting capacity",
            command: format!("nta-bench live --rounds {rounds}"),
            intro: "The generator (XDP_TX live frames, 64-byte UDP, line rate, CPU 0) sends over a lab veth pair into a \
                    bare XDP_PASS program and into `nta run` at sample rates 64 (default), 1 and 1024, alternating per \
                    round, 2 s each. Received = the receiving veth's rx counter; counted = nta_packets_total. Drops are \
                    nta_samples_dropped_total, summed over the rounds.",
            result: nta_bench(&["live", "--rounds", &rounds]).and_then(|_| section("live")),
        },
        Stage {
            title: "3. Userspace pipeline",
            command: "cargo bench -p nta --bench pipeline".into(),
            intro: "Criterion, one core: decode 1024 ring-buffer records (kernel byte layout, mixed protocols) and enqueue \
                    them as one batch, with `events::decode_into` and `events::enqueue` as `nta run` uses them. The live \
                    figure is the samples/s row at 1-in-1 in table 2 (no drops means the agent kept up).",
            result: cargo(&["bench", "-p", "nta", "--bench", "pipeline"])
                .and_then(|_| pipeline_figure()),
        },
        Stage {
            title: "Flow table and flow export",
            command: format!("nta-bench flows --rounds {rounds}"),
            intro: "One core, the flow table and exporters of `nta run`. The update stream hits existing flows at random, \
                    with timestamps 200 ns apart so flows age and are relinked as they would be live. Bytes per flow \
                    counts the allocated index and entries. Targets: >= 5 M updates/s at 100k flows, >= 2 M/s at 1M, \
                    <= 256 bytes per flow.",
            result: nta_bench(&["flows", "--rounds", &rounds]).and_then(|_| section("flows")),
        },
        Stage {
            title: "Application metadata parsing",
            command: format!("nta-bench metadata --rounds {rounds}"),
            intro: "One core, the parsers of `nta run` and `nta analyze`: TLS ClientHellos with JA4 and JA4_r (a \
                    browser-like hello and a post-quantum one of 1.8 KB), DNS messages (hickory-proto behind nta's \
                    checks, answers in presentation form), QUIC client Initials opened with the keys of their \
                    connection ID, and the whole application step on DNS frames over UDP (frame parsing, decoding, \
                    query/response pairing; 100,000 frames, every pair checked to come out as a transaction).",
            result: nta_bench(&["metadata", "--rounds", &rounds]).and_then(|_| section("metadata")),
        },
        Stage {
            title: "Live TLS logging",
            command: format!("nta-bench tls-live --rounds {rounds}"),
            intro: "`nta run --tls-log` on the receiving end of a lab veth pair; the generator sends 10,000 ClientHellos \
                    a second for 5 s from the other end, each from a new client address (a new TLS connection), none \
                    answered (each is written alone at stop, the waiting table giving way to the newest). Target: \
                    every one logged (the log and its rotated files are counted).",
            result: nta_bench(&["tls-live", "--rounds", &rounds]).and_then(|_| section("tls_live")),
        },
        Stage {
            title: "Detection: cost and latency",
            command: format!("nta-bench detect --rounds {rounds} --runs 10"),
            intro: "Cost: one core, the flow table and the detection engine of `nta run` (every detector, incidents) on a \
                    synthetic sample stream, alone and together (flows, then detection, per batch of 1024 as the agent \
                    does). Target: >= 2 M records/s for flows plus detection. Latency: `nta run --alerts` in the victim \
                    namespace of an attack lab and, for the floods, FastNetMon CE on the same interface in the same run \
                    with its pps threshold set to nta's; each attack started 10 times with real tools (hping3's random \
                    sources behind the nftables guard). Measured from just before the tool starts (its start-up \
                    included), and from the kernel timestamp of the first attack packet on the victim's interface \
                    (tcpdump), to nta's start line in the alert file or FastNetMon's ban script. Target: first attack \
                    packet to alert at most 100 ms (median) for floods at 10x their threshold or more. Incidents end 1 s \
                    after the attack and scan windows are 2 s here so every run starts fresh; volume uses a static 30 \
                    kpps threshold.",
            result: nta_bench(&["detect", "--rounds", &rounds, "--runs", "10"])
                .and_then(|_| section("detect")),
        },
        Stage {
            title: "Detection accuracy",
            command: "nta-bench eval".to_string(),
            intro: "Labelled scenarios through the pipeline core (flow table and every detector, as `nta analyze`) at \
                    accelerated time. Target: every scenario found, no false alarm in the benign run.",
            result: nta_bench(&["eval"]).and_then(|_| section("eval")),
        },
        Stage {
            title: "4-5. Against tcpdump: lossless rate and CPU (counting, and capturing every frame to a file)",
            command: format!("nta-bench compare --rounds {rounds}"),
            intro: "",
            result: nta_bench(&["compare", "--rounds", &rounds]).and_then(|_| section("compare")),
        },
    ];

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
    let kernel = program("uname")
        .and_then(|mut c| output(c.arg("-r")))
        .unwrap_or_default();
    let date = program("date")
        .and_then(|mut c| output(c.args(["-u", "+%Y-%m-%d %H:%M UTC"])))
        .unwrap_or_default();
    let mut doc = format!(
        "# nta benchmarks\n\n\
         Written by `cargo xtask bench --rounds {rounds}` (as root, {secs:.0} s for every stage); rerun it to refresh this file. \
         `nta-bench` is `target/release/nta-bench`; xtask runs it in its own session at nice -5.\n\n\
         - date: {date}\n- machine: {cores} x {cpu}, kernel {kernel}\n- load average before the run: {load}\n\
         - every figure: median of {rounds} rounds, min-max in parentheses\n",
        date = date.trim(),
        kernel = kernel.trim(),
        load = load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        secs = started.elapsed().as_secs_f64(),
    );
    let mut failed = Vec::new();
    for stage in &mut stages {
        doc.push_str(&format!(
            "\n## {}\n\nCommand: `{}`\n\n",
            stage.title, stage.command
        ));
        if !stage.intro.is_empty() {
            doc.push_str(stage.intro);
            doc.push_str("\n\n");
        }
        match &stage.result {
            Ok(md) => doc.push_str(md),
            Err(e) => {
                doc.push_str(&format!("**Not measured**: {e:#}\n"));
                failed.push(stage.title);
            }
        }
    }
    fs::write(workspace_root().join("BENCHMARKS.md"), &doc).context("writing BENCHMARKS.md")?;
    println!("{doc}");
    if !failed.is_empty() {
        bail!("stages not measured: {}", failed.join(", "));
    }
    Ok(())
}
