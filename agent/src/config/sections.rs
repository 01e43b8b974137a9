//! Every `nta run` option, declared once: each section struct is both the
//! clap arguments of its flags and the config file's `[section]`. Its
//! `default_value` is the one default (shown in `--help`); the merge rule
//! is one too: the flag given on the command line, else the file's key,
//! else that default ([`Merge`]).
//!
//! Every field is an `Option`: `None` is "not given". `main` parses the
//! command line without the defaults, so a flag is `Some` only when the
//! user typed it; [`crate::config::flags::RunArgs::defaults`] parses an
//! empty command line with them.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use clap::Args;
use serde::Deserialize;

use agent_common::app::MAX_DNS_PORTS;

use crate::{
    config::merge::section,
    kernel::sensor::ModeChoice,
    output::{
        alert::{AlertFile, AlertOutput, WebhookUrl},
        export::{FlowOutput, IpfixSection},
    },
};

section! {
    /// `[sensor]`: where and how XDP attaches. Changing these takes a
    /// restart.
    #[derive(Args, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct SensorSection {
        /// Interface to watch (repeat for several). Default: the interface
        /// of the default route.
        #[arg(id = "interfaces", short = 'i', long = "iface", value_name = "IFACE")]
        pub interfaces: Option<Vec<String>>,
        /// XDP attach mode: native (driver), skb (generic, slower, works
        /// everywhere), or auto (native, else skb).
        #[arg(id = "xdp_mode", long = "xdp-mode", value_enum, value_name = "MODE", default_value = "auto")]
        pub xdp_mode: Option<ModeChoice>,
        /// The interfaces receive mirrored traffic only (SPAN port, TAP):
        /// drop every frame after counting and sampling, so the kernel
        /// stack spends nothing on copies nobody needs. Never use it on an
        /// interface that carries the server's own traffic.
        #[arg(id = "mirror", long = "mirror", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_name = "BOOL")]
        pub mirror: Option<bool>,
        /// Attach again to a watched interface that is deleted and comes
        /// back under its name (a VM's tap, a container's veth). Once
        /// attached nta keeps no capability; this runs in a small helper
        /// process that keeps only CAP_NET_ADMIN and does nothing else.
        /// With false there is no helper.
        #[arg(id = "reattach", long = "reattach", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_name = "BOOL")]
        pub reattach: Option<bool>,
        /// Started as root, become this user once attached: NAME,
        /// NAME:GROUP, UID or UID:GID (`root` stays root, with no
        /// capabilities). Default: the user `nta` when it exists. Output
        /// directories must be writable by it (checked at start); files
        /// re-read on SIGHUP must be readable by it. Under systemd's
        /// User= leave it out.
        #[arg(id = "user", long = "user", value_name = "USER")]
        pub user: Option<String>,
    }
}

section! {
    /// `[metrics]`: the HTTP endpoint.
    #[derive(Args, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct MetricsSection {
        /// Address for /metrics and /healthz.
        #[arg(id = "listen", long = "listen", default_value = "127.0.0.1:9464", value_name = "ADDR")]
        pub listen: Option<SocketAddr>,
        /// Serve /metrics over TLS and/or with basic auth, configured by a
        /// YAML file in the Prometheus exporter-toolkit web-config format
        /// (`tls_server_config`, `basic_auth_users` with bcrypt hashes).
        /// Re-read on SIGHUP.
        #[arg(id = "web_config_file", long = "web-config-file", value_name = "FILE")]
        pub web_config_file: Option<PathBuf>,
        /// Also answer /healthz and /readyz on this address, in plain
        /// HTTP without the web config's password: for probes (a
        /// Kubernetes kubelet) while /metrics wants TLS and a password.
        /// Nothing else is served there. Off by default.
        #[arg(id = "health_listen", long = "health-listen", value_name = "ADDR")]
        pub health_listen: Option<SocketAddr>,
    }
}

section! {
    /// `[sampling]`: the sampling rates and the adaptive budget.
    #[derive(Args, Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct SamplingSection {
        /// Sample 1 in N data packets into the ring buffer (0 disables).
        #[arg(id = "sample_rate", long = "sample-rate", default_value = "64", value_name = "N")]
        pub data_rate: Option<u32>,
        /// Sample 1 in M control packets (TCP SYN/FIN/RST, ICMP, ICMPv6; 0
        /// disables).
        #[arg(id = "control_sample_rate", long = "control-sample-rate", default_value = "1", value_name = "M")]
        pub control_rate: Option<u32>,
        /// Most samples per second nta takes from one interface. Past it,
        /// or when samples are lost, nta raises the sampling rates (records
        /// carry their rate, so estimates stay unbiased) and lowers them
        /// again when the load falls. 0 keeps the rates fixed.
        #[arg(id = "sample_budget", long = "sample-budget", default_value = "250000", value_name = "N")]
        pub budget: Option<u64>,
        /// Control-packet records one CPU writes per millisecond at the
        /// full control rate. Past it the XDP program keeps 1 in 2^n of
        /// them at random, at once (a flood costs little from its first
        /// packet), and each record carries that rate, so estimates stay
        /// unbiased; nta_samples_thinned_total counts what was left out.
        /// 0 = no limit.
        #[arg(id = "control_budget", long = "control-budget", default_value = "64", value_name = "N")]
        pub control_budget: Option<u32>,
        /// Sample the first packet of every flow the program has not seen
        /// lately like a control packet (within the control budget), so
        /// UDP scans and short flows are seen whole at any --sample-rate.
        #[arg(id = "first_packet", long = "first-packet", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_name = "BOOL")]
        pub first_packet: Option<bool>,
    }
}

section! {
    /// `[flows]`: the flow table and flow outputs.
    #[derive(Args, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct FlowsSection {
        /// Write expired flows to FILE: JSON lines (Elastic Common Schema)
        /// for .jsonl/.ndjson/.json, CSV with a header row for .csv.
        /// Repeatable.
        #[arg(id = "flow_files", long = "flows", value_name = "FILE")]
        pub files: Option<Vec<PathBuf>>,
        /// Rotate a flow file (and the alert file) before it grows past
        /// this many bytes.
        #[arg(id = "flows_max_bytes", long = "flows-max-bytes", default_value = "104857600", value_name = "BYTES")]
        pub max_bytes: Option<u64>,
        /// Rotated flow files to keep (FILE.1 … FILE.N).
        #[arg(id = "flows_keep", long = "flows-keep", default_value = "5", value_name = "N")]
        pub keep: Option<u32>,
        /// A flow with no packet for this long is exported and removed.
        #[arg(id = "flow_idle_timeout", long = "flow-idle-timeout", default_value = "15s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        #[serde(with = "humantime_serde")]
        pub idle_timeout: Option<Duration>,
        /// A flow lasting this long is exported periodically (it stays).
        #[arg(id = "flow_active_timeout", long = "flow-active-timeout", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        #[serde(with = "humantime_serde")]
        pub active_timeout: Option<Duration>,
        /// Most flows held at once; beyond it the least recently seen is
        /// exported and evicted (nta_flows_expired_total{reason="evicted"}).
        #[arg(id = "flow_capacity", long = "flow-capacity", default_value = "1000000", value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
        pub capacity: Option<u64>,
        #[command(flatten)]
        pub ipfix: IpfixSection,
    }
}

impl FlowsSection {
    /// The flow exporters with options of their own, as components: a new
    /// one is its module, its field above and one line here.
    pub fn exporters(&self) -> Vec<Arc<dyn FlowOutput>> {
        vec![Arc::new(self.ipfix.clone())]
    }
}

section! {
    /// `[alerts]`: alert outputs.
    #[derive(Args, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct AlertsSection {
        /// Append alerts (incident start, update, end) to FILE as JSON
        /// lines with Elastic Common Schema fields, rotated like --flows.
        #[arg(id = "alerts", long = "alerts", value_name = "FILE")]
        pub file: Option<AlertFile>,
        /// POST every alert as JSON to this http(s) URL (bounded queue,
        /// retries with backoff; failures are counted, never block).
        #[arg(id = "webhook", long = "webhook", value_name = "URL")]
        pub webhook: Option<WebhookUrl>,
    }
}

impl AlertsSection {
    /// The alert sinks asked for, as components (the log sink is always
    /// on): a new one is its module, its key above and one line here.
    pub fn sinks(&self) -> Vec<Arc<dyn AlertOutput>> {
        let mut sinks: Vec<Arc<dyn AlertOutput>> = Vec::new();
        sinks.extend(self.file.clone().map(|s| Arc::new(s) as _));
        sinks.extend(self.webhook.clone().map(|s| Arc::new(s) as _));
        sinks
    }
}

section! {
    /// `[app]`: what nta reads above L4 (TLS and QUIC handshakes, DNS)
    /// and where it writes it. Changing these takes a restart.
    #[derive(Args, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct AppSection {
        /// Read the frames that begin TLS handshakes (and the rest of a
        /// ClientHello split over segments), DNS on --dns-port and QUIC
        /// Initials: the XDP program copies them whole to nta, which reads
        /// server names, versions, ciphers and JA4, and DNS questions and
        /// answers from them. false: XDP copies none and the metadata logs
        /// stay empty.
        #[arg(id = "app_metadata", long = "app-metadata", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_name = "BOOL")]
        pub metadata: Option<bool>,
        /// A port whose UDP and TCP payloads are DNS (repeat; at most 4).
        #[arg(id = "dns_ports", long = "dns-port", value_name = "PORT", default_values = ["53", "5353"], value_parser = clap::value_parser!(u16).range(1..))]
        pub dns_ports: Option<Vec<u16>>,
        /// Write one JSON document per TLS handshake to FILE (Elastic
        /// Common Schema tls.* fields, server name, ALPN, cipher, JA4),
        /// rotated like --flows.
        #[arg(id = "tls_log", long = "tls-log", value_name = "FILE")]
        pub tls_log: Option<PathBuf>,
        /// Write one JSON document per DNS transaction to FILE (a query
        /// and its response, with the response time; Elastic Common
        /// Schema dns.* fields: question, response code, flags, answers,
        /// resolved addresses), rotated like --flows.
        #[arg(id = "dns_log", long = "dns-log", value_name = "FILE")]
        pub dns_log: Option<PathBuf>,
    }
}

impl AppSection {
    /// The DNS ports as the XDP program takes them (unused slots 0).
    pub fn dns_port_slots(ports: &[u16]) -> Result<[u16; MAX_DNS_PORTS], String> {
        if ports.len() > MAX_DNS_PORTS {
            return Err(format!(
                "at most {MAX_DNS_PORTS} DNS ports, not {}",
                ports.len()
            ));
        }
        if ports.contains(&0) {
            return Err("port 0 is not a DNS port".into());
        }
        let mut slots = [0; MAX_DNS_PORTS];
        slots[..ports.len()].copy_from_slice(ports);
        Ok(slots)
    }
}

section! {
    /// `[capture]`: packet capture to rotating files. The filter and
    /// snaplen reload on SIGHUP; the rest takes a restart.
    #[derive(Args, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct CaptureSection {
        /// Capture frames into rotating pcapng files in DIR (created 0700).
        /// The XDP program copies the first --capture-snaplen bytes of
        /// frames that pass --capture-filter; traffic is never held up.
        #[arg(id = "capture_dir", long = "capture", value_name = "DIR")]
        pub dir: Option<PathBuf>,
        /// Which frames to capture, in tcpdump's syntax (see `nta capture
        /// --help`); empty: all. Reloaded on SIGHUP without reattaching.
        #[arg(id = "capture_filter", long = "capture-filter", default_value = "", value_name = "EXPR")]
        pub filter: Option<String>,
        /// Bytes kept of each captured frame (at most 4096).
        #[arg(id = "capture_snaplen", long = "capture-snaplen", default_value = "4096", value_name = "BYTES")]
        pub snaplen: Option<u32>,
        /// Capture file format.
        #[arg(id = "capture_format", long = "capture-format", value_enum, value_name = "FORMAT", default_value = "pcapng")]
        pub format: Option<crate::output::capture::Format>,
        /// Start a new capture file before one grows past this.
        #[arg(id = "capture_file_bytes", long = "capture-file-bytes", default_value = "134217728", value_name = "BYTES")]
        pub file_bytes: Option<u64>,
        /// Start a new capture file when one is this old (default: by size
        /// only).
        #[arg(id = "capture_file_age", long = "capture-file-age", value_parser = humantime::parse_duration, value_name = "DURATION")]
        #[serde(with = "humantime_serde")]
        pub file_age: Option<Duration>,
        /// Delete the oldest capture files beyond this total (0: never).
        #[arg(id = "capture_max_bytes", long = "capture-max-bytes", default_value = "2147483648", value_name = "BYTES")]
        pub max_bytes: Option<u64>,
        /// Kernel ring buffer for captured frames per interface, in MiB (a
        /// power of two).
        #[arg(id = "capture_ring_mib", long = "capture-ring-mib", default_value = "32", value_name = "MIB")]
        pub ring_mib: Option<u32>,
        /// Capture through AF_XDP sockets (one per receive queue) instead
        /// of the capture ring. Only for dedicated mirror/SPAN ports:
        /// captured frames skip the kernel stack (they pass on again if nta
        /// stops reading).
        #[arg(id = "capture_af_xdp", long = "capture-af-xdp", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_name = "BOOL")]
        pub af_xdp: Option<bool>,
        #[command(flatten)]
        pub flight_recorder: FlightSection,
    }
}

section! {
    /// `[capture.flight_recorder]`; a restart applies changes.
    #[derive(Args, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
    #[serde(deny_unknown_fields, default)]
    pub struct FlightSection {
        /// Flight recorder: keep the last captured frames (--capture-filter,
        /// --capture-snaplen) in memory; when an incident starts, write its
        /// window before and after, filtered to its addresses, into
        /// DIR/incident-<id>.pcapng and name that file in the alert.
        #[arg(id = "flight_dir", long = "flight-recorder", value_name = "DIR")]
        pub dir: Option<PathBuf>,
        /// Frames before an incident's start the flight recorder keeps.
        #[arg(id = "flight_recorder_before", long = "flight-recorder-before", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        #[serde(with = "humantime_serde")]
        pub before: Option<Duration>,
        /// Frames after an incident's start the flight recorder adds before
        /// it writes the file.
        #[arg(id = "flight_recorder_after", long = "flight-recorder-after", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        #[serde(with = "humantime_serde")]
        pub after: Option<Duration>,
        /// Memory for the flight recorder's frames, in MiB.
        #[arg(id = "flight_recorder_mib", long = "flight-recorder-mib", default_value = "64", value_name = "MIB")]
        pub memory_mib: Option<u32>,
        /// Disk for incident files: past it the oldest are deleted, so
        /// decoy incidents cannot fill the disk.
        #[arg(id = "flight_recorder_max_bytes", long = "flight-recorder-max-bytes", default_value = "1073741824", value_name = "BYTES")]
        pub max_bytes: Option<u64>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::merge::Merge;

    #[test]
    fn merge_takes_the_first_value_field_by_field_nested_sections_too() {
        let flag = CaptureSection {
            snaplen: Some(128),
            flight_recorder: FlightSection {
                memory_mib: Some(8),
                ..Default::default()
            },
            ..Default::default()
        };
        let file = CaptureSection {
            snaplen: Some(256),
            filter: Some("tcp".into()),
            flight_recorder: FlightSection {
                memory_mib: Some(16),
                dir: Some("/tmp/f".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = flag.or(file);
        assert_eq!(m.snaplen, Some(128));
        assert_eq!(m.filter.as_deref(), Some("tcp"));
        assert_eq!(m.flight_recorder.memory_mib, Some(8));
        assert_eq!(m.flight_recorder.dir, Some(PathBuf::from("/tmp/f")));
        assert_eq!(m.af_xdp, None);
    }
}
