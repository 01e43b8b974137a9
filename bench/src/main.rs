//! nta's benchmarks and lab traffic generator. `cargo xtask bench` runs
//! them and writes BENCHMARKS.md; each stage prints a markdown section or
//! fails the whole run: no number is printed that was not measured.

use nta_bench::{
    compare, detect, eval, flows, generator, live, metadata, mixes, report, tls_live, xdp_cost,
};

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nta-bench",
    about = "nta benchmarks and the lab traffic generator (root)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a mix from a veth end inside a namespace at line rate (or
    /// --rate), bounded by --count and --seconds; prints frames sent.
    Gen(GenArgs),
    /// XDP program cost via BPF_PROG_TEST_RUN against an empty program.
    XdpCost {
        #[arg(long, default_value_t = 7)]
        rounds: usize,
    },
    /// Live counting capacity and sample loss against a bare XDP program,
    /// with the generator on a lab veth pair.
    Live(live::LiveArgs),
    /// nta against tcpdump: highest lossless rate and CPU per packet.
    Compare(compare::CompareArgs),
    /// Flow table updates/s, bytes per flow, exporter flows/s.
    Flows(flows::FlowArgs),
    /// ClientHellos, DNS messages and QUIC Initials read per second on
    /// one core, and the application step's frames per second.
    Metadata(metadata::MetadataArgs),
    /// New TLS connections per second through `nta run --tls-log`, every
    /// one logged.
    TlsLive(tls_live::TlsLiveArgs),
    /// Detection cost (records/s on one core, with and without flows) and
    /// latency from attack start to alert, with nmap and hping3 in a lab.
    Detect(detect::DetectArgs),
    /// Detection accuracy: labelled scenarios (a benign week, six attacks
    /// static thresholds miss) through the pipeline at accelerated time.
    Eval,
}

#[derive(clap::Args)]
struct GenArgs {
    /// Namespace holding the sending interface.
    #[arg(long)]
    ns: String,
    /// Sending interface (one end of a veth pair).
    #[arg(long)]
    iface: String,
    #[arg(long, value_enum, default_value = "udp64")]
    mix: mixes::MixName,
    /// Distinct flows for `--mix many-flows`.
    #[arg(long, default_value_t = 65536)]
    flows: u32,
    /// Stop after this many frames.
    #[arg(long, default_value_t = 10_000_000)]
    count: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Pace to this many frames per second instead of line rate.
    #[arg(long)]
    rate: Option<f64>,
    /// CPU to run on (the receiver's NAPI then runs there too).
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !nta_lab::netns::is_root() {
        bail!("nta-bench loads XDP programs and enters namespaces: run it as root");
    }
    match cli.command {
        Command::Gen(a) => {
            let limits = generator::Limits {
                count: a.count,
                duration: Duration::from_secs_f64(a.seconds),
                rate: a.rate,
            };
            let report = nta_lab::netns::run_in_netns(
                &a.ns,
                || -> anyhow::Result<generator::GenReport> {
                    generator::pin_to_cpu(a.cpu)?;
                    let mut g = generator::Generator::attach(&a.iface)?;
                    Ok(g.run(a.mix, a.flows, limits)?)
                },
            )??;
            println!(
                "sent {} frames in {:.3} s ({:.2} Mpps)",
                report.sent,
                report.elapsed.as_secs_f64(),
                report::mpps(report.pps())
            );
        }
        Command::XdpCost { rounds } => {
            let md = xdp_cost::run(rounds);
            write_section("xdp_cost", &md)?;
        }
        Command::Flows(a) => {
            let md = flows::run(&a)?;
            write_section("flows", &md)?;
        }
        Command::Metadata(a) => {
            let md = metadata::run(&a)?;
            write_section("metadata", &md)?;
        }
        Command::TlsLive(a) => {
            let md = tls_live::run(&a)?;
            write_section("tls_live", &md)?;
        }
        Command::Detect(a) => {
            let md = detect::run(&a)?;
            write_section("detect", &md)?;
        }
        Command::Eval => {
            let md = eval::run()?;
            print!("{md}");
            write_section("eval", &md)?;
        }
        Command::Compare(a) => {
            let md = compare::run(&a)?;
            write_section("compare", &md)?;
        }
        Command::Live(a) => {
            let md = live::run(&a)?;
            write_section("live", &md)?;
        }
    }
    Ok(())
}

/// Writes a section for `cargo xtask bench` to assemble.
fn write_section(name: &str, md: &str) -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(format!("{name}.md")), md).context("writing the section")?;
    Ok(())
}
