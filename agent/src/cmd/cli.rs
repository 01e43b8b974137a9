//! Command line of the `nta` binary.

use clap::{Args, Parser, Subcommand};

use crate::config::flags::RunArgs;

#[derive(Debug, Parser)]
#[command(
    name = "nta",
    version,
    about = "High-rate XDP network sensor: exact per-protocol counters, sampled headers, Prometheus metrics"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach the XDP sensor to interfaces and serve Prometheus metrics
    /// until SIGINT/SIGTERM. Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON).
    Run(Box<RunArgs>),
    /// Analyse capture files (pcap, pcapng, gzip-compressed or not) with
    /// the live sensor's parser, flow table and detectors, in packet time.
    /// No root needed. Prints a summary; writes flows, alerts and an HTML
    /// report on request.
    Analyze(AnalyzeArgs),
    /// Capture frames to a pcapng (or pcap) file, like `tcpdump -w`, with
    /// the filter and the copy done in the kernel by XDP. Stops after -c
    /// frames, -d time, or on Ctrl-C. Needs root like `run`.
    Capture(crate::cmd::capture::CaptureArgs),
    /// Validate a config file without running: prints its SHA-1 (as
    /// nta_config_info shows it) or the precise error (file, line, key).
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Started by `nta run` to re-attach to interfaces that come back;
    /// not for use by hand.
    #[command(name = "reattach-helper", hide = true)]
    ReattachHelper(crate::kernel::reattach::helper::HelperArgs),
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files; several are read as one stream in timestamp order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,

    /// Write flows to FILE (.jsonl/.ndjson/.json or .csv), as `nta run`.
    #[arg(long = "flows", value_name = "FILE")]
    pub flow_files: Vec<std::path::PathBuf>,

    /// Write alerts (incident start, update, end) to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<std::path::PathBuf>,

    /// Write an HTML report with charts into DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    pub report: Option<std::path::PathBuf>,

    /// Config file: the `[detect]` and `[app]` sections as for `nta run`
    /// (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Start from these learned profiles (a sensor's `state_file`, or an
    /// earlier `--baseline-out`): the capture is judged against them from
    /// its first second. A missing or bad file is warned about and skipped.
    #[arg(long, value_name = "FILE")]
    pub baseline_in: Option<std::path::PathBuf>,

    /// Write the profiles learned by the end of the capture to FILE, for
    /// a sensor's `[detect.baseline] state_file` or the next analysis.
    #[arg(long, value_name = "FILE")]
    pub baseline_out: Option<std::path::PathBuf>,

    #[command(
        flatten,
        next_help_heading = "Application metadata ([app] in --config)"
    )]
    pub app: crate::config::AppSection,

    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// A flow with no packet for this long is ended.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub flow_idle_timeout: std::time::Duration,

    /// A flow lasting this long is exported periodically.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub flow_active_timeout: std::time::Duration,
}
