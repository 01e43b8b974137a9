//! Command line of the `nta` binary.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::sensor::ModeChoice;

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
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to watch (repeat for several). Default: the interface of
    /// the default route.
    #[arg(short, long = "iface", value_name = "IFACE")]
    pub ifaces: Vec<String>,

    /// Address for /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// XDP attach mode: native (driver), skb (generic, slower, works
    /// everywhere), or auto (native, else skb).
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: ModeChoice,

    /// Sample 1 in N data packets into the ring buffer (0 disables).
    #[arg(long, default_value_t = agent_common::config::DEFAULT_DATA_RATE, value_name = "N")]
    pub sample_rate: u32,

    /// The interfaces receive mirrored traffic only (SPAN port, TAP): drop
    /// every frame after counting and sampling, so the kernel stack spends
    /// nothing on copies nobody needs. Never use it on an interface that
    /// carries the server's own traffic.
    #[arg(long)]
    pub mirror: bool,

    /// Sample 1 in M control packets (TCP SYN/FIN/RST, ICMP, ICMPv6; 0
    /// disables).
    #[arg(long, default_value_t = agent_common::config::DEFAULT_CONTROL_RATE, value_name = "M")]
    pub control_sample_rate: u32,
}
