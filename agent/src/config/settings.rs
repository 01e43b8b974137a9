//! The settings `nta run` works with: a flag given on the command line,
//! else the config file's key, else the flag's default. Computed at start
//! and again at each reload, so both agree on what wins.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

pub use crate::output::capture::settings::{CaptureSettings, FlightSettings};
use agent_common::app::{MAX_DNS_PORTS, select};

use crate::{
    config::{
        AppSection, CaptureSection, FileConfig, Sampling,
        flags::RunArgs,
        merge::{Merge, defaulted},
    },
    kernel::sensor::ModeChoice,
    output::{
        alert::AlertOutput,
        component::same_components,
        export::{FlowOutput, RotationConfig},
    },
    pipeline::{detect::DetectConfig, flow::FlowConfig},
};

/// Everything `nta run` is configured with.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSettings {
    /// Empty: the default route's interface.
    pub interfaces: Vec<String>,
    pub xdp_mode: ModeChoice,
    pub mirror: bool,
    pub reattach: bool,
    /// `--user` as given (resolved at start).
    pub user: Option<String>,
    pub listen: SocketAddr,
    /// Plain /healthz and /readyz for probes.
    pub health_listen: Option<SocketAddr>,
    pub web_config_file: Option<PathBuf>,
    pub sampling: Sampling,
    pub flow_table: FlowConfig,
    pub outputs: Outputs,
    pub detect_on: bool,
    pub detect: DetectConfig,
    /// Packet capture, when a directory is given.
    pub capture: Option<CaptureSettings>,
    pub app: AppSettings,
}

/// `[app]`: the XDP program's selection and the metadata logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSettings {
    pub metadata: bool,
    pub dns_ports: Vec<u16>,
    pub tls_log: Option<PathBuf>,
    pub dns_log: Option<PathBuf>,
}

impl AppSettings {
    /// From the section merged with its defaults.
    pub fn from_merged(app: AppSection) -> AppSettings {
        AppSettings {
            metadata: defaulted(app.metadata),
            dns_ports: defaulted(app.dns_ports),
            tls_log: app.tls_log,
            dns_log: app.dns_log,
        }
    }

    /// The selection bits and DNS port slots for the XDP program (the
    /// port list is checked here for flags and files alike).
    pub fn kernel(&self) -> Result<(u32, [u16; MAX_DNS_PORTS]), String> {
        let ports = AppSection::dns_port_slots(&self.dns_ports)?;
        Ok((if self.metadata { select::ALL } else { 0 }, ports))
    }
}

/// Where flows and alerts go, as two groups that a reload compares whole:
/// a field added to a group reopens that group's outputs when it changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    pub flows: FlowOutputs,
    pub alerts: AlertOutputs,
}

/// The flow exporters' settings: files by extension, and the exporters
/// with sections of their own (merged, as components).
#[derive(Clone, Debug, Default)]
pub struct FlowOutputs {
    pub files: Vec<PathBuf>,
    pub rotation: RotationConfig,
    pub exporters: Vec<Arc<dyn FlowOutput>>,
}

impl PartialEq for FlowOutputs {
    fn eq(&self, other: &Self) -> bool {
        (&self.files, self.rotation) == (&other.files, other.rotation)
            && same_components(&self.exporters, &other.exporters)
    }
}

/// The alert sinks' settings (the log and metrics sinks are always on).
#[derive(Clone, Debug, Default)]
pub struct AlertOutputs {
    /// The alert file rotates by the `[flows]` rotation keys.
    pub rotation: RotationConfig,
    pub sinks: Vec<Arc<dyn AlertOutput>>,
}

impl PartialEq for AlertOutputs {
    fn eq(&self, other: &Self) -> bool {
        self.rotation == other.rotation && same_components(&self.sinks, &other.sinks)
    }
}

impl RunSettings {
    /// The one merge rule, at start and at every reload: the flag given on
    /// the command line, else the file's key, else the default.
    pub fn resolve(args: &RunArgs, file: &FileConfig) -> RunSettings {
        Self::resolve_with(args, file, &RunArgs::defaults())
    }

    fn resolve_with(args: &RunArgs, file: &FileConfig, defaults: &RunArgs) -> RunSettings {
        let sensor = args
            .sensor
            .clone()
            .or(file.sensor.clone())
            .or(defaults.sensor.clone());
        let metrics = args
            .metrics
            .clone()
            .or(file.metrics.clone())
            .or(defaults.metrics.clone());
        let sampling = args.sampling.or(file.sampling).or(defaults.sampling);
        let flows = args
            .flows
            .clone()
            .or(file.flows.clone())
            .or(defaults.flows.clone());
        let alerts = args.alerts.clone().or(file.alerts.clone());
        let capture = args.capture.clone().or(file.capture.clone());
        let app = args
            .app
            .clone()
            .or(file.app.clone())
            .or(defaults.app.clone());
        let rotation = RotationConfig {
            max_bytes: defaulted(flows.max_bytes),
            keep: defaulted(flows.keep),
        };
        RunSettings {
            interfaces: sensor.interfaces.unwrap_or_default(),
            xdp_mode: defaulted(sensor.xdp_mode),
            mirror: defaulted(sensor.mirror),
            reattach: defaulted(sensor.reattach),
            user: sensor.user,
            listen: defaulted(metrics.listen),
            health_listen: metrics.health_listen,
            web_config_file: metrics.web_config_file,
            sampling: Sampling {
                data_rate: defaulted(sampling.data_rate),
                control_rate: defaulted(sampling.control_rate),
                budget: defaulted(sampling.budget),
                control_budget: defaulted(sampling.control_budget),
                first_packet: defaulted(sampling.first_packet),
            },
            flow_table: FlowConfig {
                idle_timeout_ns: defaulted(flows.idle_timeout).as_nanos() as u64,
                active_timeout_ns: defaulted(flows.active_timeout).as_nanos() as u64,
                capacity: defaulted(flows.capacity) as usize,
            },
            outputs: Outputs {
                flows: FlowOutputs {
                    exporters: flows.exporters(),
                    files: flows.files.unwrap_or_default(),
                    rotation,
                },
                alerts: AlertOutputs {
                    rotation,
                    sinks: alerts.sinks(),
                },
            },
            detect_on: file.detect.enabled && !args.no_detect,
            detect: file.detect.clone(),
            // Capture options take their defaults only when capture is on.
            capture: resolve_capture(capture, defaults.capture.clone()),
            app: AppSettings::from_merged(app),
        }
    }

    /// What a reload cannot change without a restart, by key name.
    pub fn restart_needed(&self, new: &RunSettings) -> Vec<&'static str> {
        RESTART_KEYS
            .iter()
            .filter(|k| (k.changed)(self, new))
            .map(|k| k.key)
            .collect()
    }

    /// These settings with what a reload cannot change taken from the
    /// settings in force (so the next reload compares against the truth).
    pub fn keeping_restart_fields_of(mut self, old: &RunSettings) -> RunSettings {
        for k in RESTART_KEYS {
            (k.keep)(&mut self, old);
        }
        self
    }

    /// Whether the flow exporters must be reopened for `new`. The data
    /// sampling rate counts when an exporter announces it (IPFIX's
    /// options record).
    pub fn flow_outputs_changed(&self, new: &RunSettings) -> bool {
        self.outputs.flows != new.outputs.flows
            || (self.sampling.data_rate != new.sampling.data_rate
                && new
                    .outputs
                    .flows
                    .exporters
                    .iter()
                    .any(|e| e.announces_sampling_rate()))
    }

    /// Whether the alert sinks must be reopened for `new`.
    pub fn alert_outputs_changed(&self, new: &RunSettings) -> bool {
        self.outputs.alerts != new.outputs.alerts
    }

    /// Whether the running capture's filter or snaplen changed (they
    /// reload by a map write; the rest of capture takes a restart).
    pub fn capture_filter_changed(&self, new: &RunSettings) -> bool {
        match (&self.capture, &new.capture) {
            (Some(old), Some(c)) => (&old.filter, old.snaplen) != (&c.filter, c.snaplen),
            _ => false,
        }
    }
}

/// A setting that takes a restart: its config key (named in the reload
/// warning), how to tell it changed, and how to keep the running value.
struct RestartKey {
    key: &'static str,
    changed: fn(&RunSettings, &RunSettings) -> bool,
    keep: fn(&mut RunSettings, &RunSettings),
}

/// Every setting a reload cannot change, listed once.
const RESTART_KEYS: &[RestartKey] = &[
    RestartKey {
        key: "sensor.interfaces",
        changed: |a, b| a.interfaces != b.interfaces,
        keep: |new, old| new.interfaces = old.interfaces.clone(),
    },
    RestartKey {
        key: "sensor.xdp_mode",
        changed: |a, b| a.xdp_mode != b.xdp_mode,
        keep: |new, old| new.xdp_mode = old.xdp_mode,
    },
    RestartKey {
        key: "sensor.mirror",
        changed: |a, b| a.mirror != b.mirror,
        keep: |new, old| new.mirror = old.mirror,
    },
    RestartKey {
        key: "sensor.reattach",
        changed: |a, b| a.reattach != b.reattach,
        keep: |new, old| new.reattach = old.reattach,
    },
    RestartKey {
        key: "sensor.user",
        changed: |a, b| a.user != b.user,
        keep: |new, old| new.user = old.user.clone(),
    },
    RestartKey {
        key: "metrics.listen",
        changed: |a, b| a.listen != b.listen,
        keep: |new, old| new.listen = old.listen,
    },
    RestartKey {
        key: "metrics.health_listen",
        changed: |a, b| a.health_listen != b.health_listen,
        keep: |new, old| new.health_listen = old.health_listen,
    },
    // The DNS and TLS detectors run on the application thread, set up at
    // start.
    RestartKey {
        key: "detect.dns",
        changed: |a, b| a.detect.dns != b.detect.dns,
        keep: |new, old| new.detect.dns = old.detect.dns,
    },
    RestartKey {
        key: "detect.tls",
        changed: |a, b| a.detect.tls != b.detect.tls,
        keep: |new, old| new.detect.tls = old.detect.tls,
    },
    RestartKey {
        key: "detect.watch",
        changed: |a, b| a.detect.watch != b.detect.watch,
        keep: |new, old| new.detect.watch = old.detect.watch.clone(),
    },
    RestartKey {
        key: "flows.capacity",
        changed: |a, b| a.flow_table.capacity != b.flow_table.capacity,
        keep: |new, old| new.flow_table.capacity = old.flow_table.capacity,
    },
    RestartKey {
        key: "detect.enabled",
        changed: |a, b| a.detect_on != b.detect_on,
        keep: |new, old| new.detect_on = old.detect_on,
    },
    RestartKey {
        key: "app",
        changed: |a, b| a.app != b.app,
        keep: |new, old| new.app = old.app.clone(),
    },
    // Everything of capture but the filter and snaplen of a running one.
    RestartKey {
        key: "capture",
        changed: |a, b| capture_restart_part(&a.capture) != capture_restart_part(&b.capture),
        keep: |new, old| {
            new.capture = match (&old.capture, new.capture.take()) {
                (Some(o), Some(n)) => Some(CaptureSettings {
                    filter: n.filter,
                    snaplen: n.snaplen,
                    ..o.clone()
                }),
                (o, _) => o.clone(),
            }
        },
    },
];

/// Capture settings without what reloads (filter, snaplen).
fn capture_restart_part(c: &Option<CaptureSettings>) -> Option<CaptureSettings> {
    c.clone().map(|c| CaptureSettings {
        filter: String::new(),
        snaplen: 0,
        ..c
    })
}

fn resolve_capture(c: CaptureSection, defaults: CaptureSection) -> Option<CaptureSettings> {
    if c.dir.is_none() && c.flight_recorder.dir.is_none() {
        return None;
    }
    let c = c.or(defaults);
    let f = c.flight_recorder;
    Some(CaptureSettings {
        dir: c.dir,
        flight: f.dir.map(|dir| FlightSettings {
            dir,
            before: defaulted(f.before),
            after: defaulted(f.after),
            memory_mib: defaulted(f.memory_mib),
            max_bytes: defaulted(f.max_bytes),
        }),
        filter: defaulted(c.filter),
        snaplen: defaulted(c.snaplen),
        format: defaulted(c.format),
        file_bytes: defaulted(c.file_bytes),
        file_age: c.file_age,
        max_bytes: defaulted(c.max_bytes),
        ring_mib: defaulted(c.ring_mib),
        af_xdp: defaulted(c.af_xdp),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::cmd::cli::{Cli, Command};

    /// Parses a command line as `main` does: without the defaults.
    fn args(line: &[&str]) -> RunArgs {
        let m = RunArgs::without_defaults(Cli::command())
            .try_get_matches_from(line)
            .unwrap_or_else(|e| panic!("{e}"));
        let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| panic!("{e}"));
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        *a
    }

    /// The merged IPFIX section, taken back from behind `dyn`.
    fn ipfix(s: &RunSettings) -> Option<crate::output::export::IpfixSection> {
        s.outputs
            .flows
            .exporters
            .iter()
            .find_map(|e| e.as_any().downcast_ref().cloned())
    }

    fn alert_sinks(s: &RunSettings) -> Vec<String> {
        s.outputs
            .alerts
            .sinks
            .iter()
            .map(|a| format!("{}: {a:?}", a.key()))
            .collect()
    }

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    const FILE: &str = r#"
[sensor]
interfaces = ["lab0", "lab1"]
xdp_mode = "skb"
mirror = true
[metrics]
listen = "127.0.0.1:9999"
[sampling]
data_rate = 8
[flows]
files = ["/tmp/f.jsonl"]
keep = 2
idle_timeout = "5s"
capacity = 1000
[flows.ipfix]
collector = "127.0.0.1:4739"
domain = 7
[alerts]
file = "/tmp/a.jsonl"
webhook = "http://127.0.0.1:1/hook"
[detect]
enabled = false
"#;

    #[test]
    fn the_file_sets_what_no_flag_gives() {
        let s = RunSettings::resolve(&args(&["nta", "run"]), &file(FILE));
        assert_eq!(s.interfaces, ["lab0", "lab1"]);
        assert_eq!(s.xdp_mode, ModeChoice::Skb);
        assert!(s.mirror);
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(s.sampling.data_rate, 8);
        assert_eq!(s.flow_table.idle_timeout_ns, 5_000_000_000);
        assert_eq!(s.flow_table.active_timeout_ns, 60_000_000_000);
        assert_eq!(s.flow_table.capacity, 1000);
        assert_eq!(s.outputs.flows.files, [PathBuf::from("/tmp/f.jsonl")]);
        assert_eq!(s.outputs.flows.rotation.keep, 2);
        assert_eq!(s.outputs.flows.rotation.max_bytes, 100 << 20);
        assert_eq!(
            ipfix(&s).map(|i| (i.collector, i.domain)),
            Some((Some("127.0.0.1:4739".into()), Some(7)))
        );
        assert_eq!(
            alert_sinks(&s),
            [
                "alerts.file: AlertFile(\"/tmp/a.jsonl\")",
                "alerts.webhook: WebhookUrl(\"http://127.0.0.1:1/…\")"
            ]
        );
        assert!(!s.detect_on);
    }

    #[test]
    fn flags_win_over_the_file() {
        let a = args(&[
            "nta",
            "run",
            "-i",
            "eth9",
            "--xdp-mode",
            "auto",
            "--listen",
            "127.0.0.1:1234",
            "--sample-rate",
            "2",
            "--flows",
            "/tmp/x.csv",
            "--flows-keep",
            "5",
            "--flow-idle-timeout",
            "15s",
            "--ipfix",
            "127.0.0.1:2055",
            "--alerts",
            "/tmp/b.jsonl",
        ]);
        let s = RunSettings::resolve(&a, &file(FILE));
        assert_eq!(s.interfaces, ["eth9"]);
        assert_eq!(s.xdp_mode, ModeChoice::Auto);
        assert_eq!(s.listen.port(), 1234);
        assert_eq!(s.sampling.data_rate, 2);
        assert_eq!(s.outputs.flows.files, [PathBuf::from("/tmp/x.csv")]);
        assert_eq!(s.outputs.flows.rotation.keep, 5);
        assert_eq!(s.flow_table.idle_timeout_ns, 15_000_000_000);
        assert_eq!(
            ipfix(&s).map(|i| (i.collector, i.domain)),
            Some((Some("127.0.0.1:2055".into()), Some(7)))
        );
        assert_eq!(
            alert_sinks(&s),
            [
                "alerts.file: AlertFile(\"/tmp/b.jsonl\")",
                "alerts.webhook: WebhookUrl(\"http://127.0.0.1:1/…\")"
            ]
        );
        // Not given: the file's value.
        assert!(s.mirror);
        assert_eq!(s.flow_table.capacity, 1000);
    }

    #[test]
    fn no_file_is_the_flag_defaults() {
        let a = args(&["nta", "run"]);
        let s = RunSettings::resolve(&a, &FileConfig::default());
        assert!(s.interfaces.is_empty());
        assert_eq!(s.listen.to_string(), "127.0.0.1:9464");
        // No output is on: no file, no alert sink, and every exporter
        // component opens nothing.
        assert!(s.outputs.flows.files.is_empty() && s.outputs.alerts.sinks.is_empty());
        let cx = crate::output::export::FlowContext::default();
        for e in &s.outputs.flows.exporters {
            assert!(matches!(e.open(&cx), Ok(None)), "{e:?}");
        }
        assert!(s.detect_on);
        assert!(s.web_config_file.is_none());
    }

    #[test]
    fn restart_keys_are_named() {
        let a = args(&["nta", "run"]);
        let old = RunSettings::resolve(&a, &FileConfig::default());
        let new = RunSettings::resolve(&a, &file(FILE));
        assert_eq!(
            old.restart_needed(&new),
            [
                "sensor.interfaces",
                "sensor.xdp_mode",
                "sensor.mirror",
                "metrics.listen",
                "flows.capacity",
                "detect.enabled"
            ]
        );
        assert!(new.restart_needed(&new).is_empty());
    }

    #[test]
    fn keeping_restart_fields_leaves_nothing_to_restart_and_takes_the_rest() {
        let a = args(&["nta", "run"]);
        let old = RunSettings::resolve(&a, &FileConfig::default());
        let new = RunSettings::resolve(&a, &file(FILE));
        let kept = new.clone().keeping_restart_fields_of(&old);
        assert!(old.restart_needed(&kept).is_empty());
        assert_eq!(kept.interfaces, old.interfaces);
        assert_eq!(kept.flow_table.capacity, old.flow_table.capacity);
        // Reloadable settings come from the new file.
        assert_eq!(kept.sampling, new.sampling);
        assert_eq!(kept.outputs, new.outputs);
        assert_eq!(kept.flow_table.idle_timeout_ns, 5_000_000_000);
        assert!(old.flow_outputs_changed(&kept) && old.alert_outputs_changed(&kept));
    }

    #[test]
    fn a_component_option_or_the_announced_rate_reopens_only_what_it_concerns() {
        let with = |extra: &str| {
            let text = format!("[flows.ipfix]\ncollector = \"127.0.0.1:4739\"\n{extra}");
            RunSettings::resolve(&args(&["nta", "run"]), &file(&text))
        };
        let old = with("");
        assert!(!old.flow_outputs_changed(&with("")));
        assert!(old.flow_outputs_changed(&with("domain = 9\n")));
        assert!(old.flow_outputs_changed(&with("[sampling]\ndata_rate = 8\n")));
        assert!(!old.alert_outputs_changed(&with("domain = 9\n")));
        // Without IPFIX nothing announces the rate: files stay open.
        let plain = |extra: &str| RunSettings::resolve(&args(&["nta", "run"]), &file(extra));
        assert!(!plain("").flow_outputs_changed(&plain("[sampling]\ndata_rate = 8\n")));
        assert!(
            plain("")
                .alert_outputs_changed(&plain("[alerts]\nwebhook = \"http://127.0.0.1:1/h\"\n"))
        );
    }

    #[test]
    fn capture_filter_reloads_and_the_rest_of_capture_takes_a_restart() {
        let capture = |extra: &str| {
            let text = format!("[capture]\ndir = \"/tmp/c\"\n{extra}");
            RunSettings::resolve(&args(&["nta", "run"]), &file(&text))
        };
        let old = capture("");
        let filter = capture("filter = \"tcp\"\nsnaplen = 128\n");
        assert!(old.restart_needed(&filter).is_empty());
        assert!(old.capture_filter_changed(&filter));
        let ring = capture("ring_mib = 64\n");
        assert_eq!(old.restart_needed(&ring), ["capture"]);
        assert!(!old.capture_filter_changed(&ring));
        let kept = filter.keeping_restart_fields_of(&ring);
        assert_eq!(
            kept.capture
                .as_ref()
                .map(|c| (c.filter.as_str(), c.ring_mib)),
            Some(("tcp", 64))
        );
    }
}
