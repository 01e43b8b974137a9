//! The flags of `nta run`. The config file's sections mirror them, and
//! `crate::config::settings` merges both (flag given, else file, else default).

use std::net::SocketAddr;

use clap::Args;

use crate::kernel::sensor::ModeChoice;

/// Samples per second per interface before nta raises its rates.
pub const DEFAULT_SAMPLE_BUDGET: u64 = 250_000;

#[derive(Clone, Debug, Args)]
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

    /// Write expired flows to FILE: JSON lines (Elastic Common Schema) for
    /// .jsonl/.ndjson/.json, CSV with a header row for .csv. Repeatable.
    #[arg(long = "flows", value_name = "FILE")]
    pub flow_files: Vec<std::path::PathBuf>,

    /// Export flows as IPFIX over UDP to this collector (nfcapd, pmacct,
    /// ntopng, Elastiflow...). Counts are sampled counts; the sampling
    /// interval goes out in an options record so collectors can scale.
    #[arg(long, value_name = "HOST:PORT")]
    pub ipfix: Option<String>,

    /// Resend IPFIX templates this often (UDP collectors that start late
    /// learn them within this time).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub ipfix_template_refresh: std::time::Duration,

    /// IPFIX observation domain id of this sensor.
    #[arg(long, default_value_t = 1, value_name = "ID")]
    pub ipfix_domain: u32,

    /// Rotate a flow file before it grows past this many bytes.
    #[arg(long, default_value_t = 100 << 20, value_name = "BYTES")]
    pub flows_max_bytes: u64,

    /// Rotated flow files to keep (FILE.1 … FILE.N).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub flows_keep: u32,

    /// A flow with no packet for this long is exported and removed.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub flow_idle_timeout: std::time::Duration,

    /// A flow lasting this long is exported periodically (it stays).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub flow_active_timeout: std::time::Duration,

    /// Most flows held at once; beyond it the least recently seen is
    /// exported and evicted (nta_flows_expired_total{reason="evicted"}).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub flow_capacity: u64,

    /// Config file (TOML): every flag has a key there ([sensor],
    /// [metrics], [sampling], [flows], [flows.ipfix], [alerts]) plus the
    /// [detect] thresholds; a flag given on the command line wins (see
    /// deploy/nta.example.toml). Unknown keys are errors. SIGHUP reloads
    /// it (sampling, flow timeouts and outputs, alert outputs, detection,
    /// web config); a bad file is refused and the old config stays.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Append alerts (incident start, update, end) to FILE as JSON lines
    /// with Elastic Common Schema fields, rotated like --flows.
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<std::path::PathBuf>,

    /// POST every alert as JSON to this http(s) URL (bounded queue,
    /// retries with backoff; failures are counted, never block).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,

    /// Most samples per second nta takes from one interface. Past it, or
    /// when samples are lost, nta raises the sampling rates (records carry
    /// their rate, so estimates stay unbiased) and lowers them again when
    /// the load falls. 0 keeps the rates fixed.
    #[arg(long, default_value_t = DEFAULT_SAMPLE_BUDGET, value_name = "N")]
    pub sample_budget: u64,

    /// Ids of the flags given on the command line (filled by `main` from
    /// clap's value sources): they win over the config file.
    #[arg(skip)]
    pub given: std::collections::BTreeSet<String>,

    /// Serve /metrics over TLS and/or with basic auth, configured by a
    /// YAML file in the Prometheus exporter-toolkit web-config format
    /// (`tls_server_config`, `basic_auth_users` with bcrypt hashes).
    /// Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Capture frames into rotating pcapng files in DIR (created 0700).
    /// The XDP program copies the first --capture-snaplen bytes of frames
    /// that pass --capture-filter; traffic is never held up.
    #[arg(long = "capture", value_name = "DIR")]
    pub capture_dir: Option<std::path::PathBuf>,

    /// Which frames to capture, in tcpdump's syntax (see `nta capture
    /// --help`); empty: all. Reloaded on SIGHUP without reattaching.
    #[arg(long, default_value = "", value_name = "EXPR")]
    pub capture_filter: String,

    /// Bytes kept of each captured frame (at most 4096).
    #[arg(long, default_value_t = agent_common::capture::MAX_SNAPLEN, value_name = "BYTES")]
    pub capture_snaplen: u32,

    /// Capture file format.
    #[arg(long, value_enum, default_value = "pcapng")]
    pub capture_format: crate::capture::Format,

    /// Start a new capture file before one grows past this.
    #[arg(long, default_value_t = 128 << 20, value_name = "BYTES")]
    pub capture_file_bytes: u64,

    /// Start a new capture file when one is this old (default: by size
    /// only).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub capture_file_age: Option<std::time::Duration>,

    /// Delete the oldest capture files beyond this total (0: never).
    #[arg(long, default_value_t = 2 << 30, value_name = "BYTES")]
    pub capture_max_bytes: u64,

    /// Capture through AF_XDP sockets (one per receive queue) instead of
    /// the capture ring. Only for dedicated mirror/SPAN ports: captured
    /// frames skip the kernel stack (they pass on again if nta stops
    /// reading).
    #[arg(long)]
    pub capture_af_xdp: bool,

    /// Kernel ring buffer for captured frames per interface, in MiB (a
    /// power of two).
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    pub capture_ring_mib: u32,

    /// Flight recorder: keep the last captured frames (--capture-filter,
    /// --capture-snaplen) in memory; when an incident starts, write its
    /// window before and after, filtered to its addresses, into
    /// DIR/incident-<id>.pcapng and name that file in the alert.
    #[arg(long = "flight-recorder", value_name = "DIR")]
    pub flight_dir: Option<std::path::PathBuf>,

    /// Frames before an incident's start the flight recorder keeps.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub flight_recorder_before: std::time::Duration,

    /// Frames after an incident's start the flight recorder adds before
    /// it writes the file.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub flight_recorder_after: std::time::Duration,

    /// Memory for the flight recorder's frames, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub flight_recorder_mib: u32,

    /// Turn detection off (counting, flows and exports go on).
    #[arg(long)]
    pub no_detect: bool,

    /// Sample 1 in M control packets (TCP SYN/FIN/RST, ICMP, ICMPv6; 0
    /// disables).
    #[arg(long, default_value_t = agent_common::config::DEFAULT_CONTROL_RATE, value_name = "M")]
    pub control_sample_rate: u32,
}
