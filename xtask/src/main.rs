//! Developer and CI tasks: `cargo xtask <command>`.
//!
//! Every command first makes sure the toolchain is in place (`setup`), so
//! a fresh machine needs no manual step.

mod bench;
mod cycles;
mod demo;
mod fuzz;
mod leftovers;
mod setup;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "nta developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need (idempotent, fast when done):
    /// nightly rust-src, bpf-linker against nightly's LLVM, apt packages.
    Setup,
    /// Build the release `nta` binary (XDP program included).
    Build,
    /// Format check, clippy, every test (the privileged kernel and
    /// network tests included: run as root; under CI=true they must run),
    /// then every fuzz target for 30 s.
    Test,
    /// Run nta on a lab namespace with generated traffic and show a live
    /// per-protocol table, for a bounded time.
    Demo(demo::DemoArgs),
    /// Measure nta against baselines in the same run and rewrite
    /// BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Fuzz every parser of untrusted bytes (packet parser, capture
    /// files, capture filter, config, web config) for a bounded time;
    /// corpora stay under target/fuzz.
    Fuzz(fuzz::FuzzArgs),
    /// Detection accuracy: labelled scenarios (a benign week compressed
    /// into 35 minutes, six attacks that static thresholds miss) replayed
    /// through the pipeline at accelerated time; prints the table that
    /// `bench` puts in BENCHMARKS.md. No root needed.
    Eval,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    util::cd_workspace_root()?;
    setup::ensure(matches!(cli.command, Command::Setup))?;
    match cli.command {
        Command::Setup => Ok(()),
        Command::Build => util::cargo(&["build", "--release", "-p", "nta"]),
        Command::Test => test(),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Eval => {
            util::cargo(&["build", "--release", "-p", "nta-bench"])?;
            util::run(
                util::program("setsid")?
                    .arg("--wait")
                    .arg(util::workspace_root().join("target/release/nta-bench"))
                    .arg("eval"),
            )
        }
    }
}

fn test() -> anyhow::Result<()> {
    util::cargo(&["fmt", "--all", "--check"])?;
    util::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    util::cargo_nightly_clippy_ebpf()?;
    eprintln!("==> import cycles and library-to-command imports");
    cycles::check_workspace(&util::workspace_root())?;
    // Every process the tests start inherits the marker, so whatever they
    // leave running can be found afterwards; namespaces are compared with
    // the ones that were there before.
    let marker = leftovers::Marker::new();
    let namespaces_before = leftovers::namespaces()?;
    let tests = util::run(
        util::cargo_command(&["test", "--workspace", "--no-fail-fast"])
            .env(nta_lab::programs::TEST_MARKER_VAR, marker.value()),
    );
    let left = leftovers::check(&marker, &namespaces_before);
    tests?;
    left?;
    // Every parser of untrusted bytes, 30 s each.
    fuzz::run(&fuzz::FuzzArgs {
        seconds: 30,
        target: None,
    })
}
