//! The settings `nta run` works with: a flag given on the command line,
//! else the config file's key, else the flag's default. Computed at start
//! and again at each reload, so both agree on what wins.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use crate::capture::settings::{CaptureSettings, FlightSettings};
use crate::{
    config::{FileConfig, Sampling, SamplingSection, flags::RunArgs},
    kernel::sensor::ModeChoice,
    output::export::RotationConfig,
    pipeline::{detect::DetectConfig, flow::FlowConfig},
};

/// Everything `nta run` is configured with.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSettings {
    /// Empty: the default route's interface.
    pub interfaces: Vec<String>,
    pub xdp_mode: ModeChoice,
    pub mirror: bool,
    pub listen: SocketAddr,
    pub web_config_file: Option<PathBuf>,
    pub sampling: Sampling,
    pub flow_table: FlowConfig,
    pub outputs: Outputs,
    pub detect_on: bool,
    pub detect: DetectConfig,
    /// Packet capture, when a directory is given.
    pub capture: Option<CaptureSettings>,
}

/// Where flows and alerts go, as two groups that a reload compares whole:
/// a field added to a group reopens that group's outputs when it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    pub flows: FlowOutputs,
    pub alerts: AlertOutputs,
}

/// The flow exporters' settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowOutputs {
    pub files: Vec<PathBuf>,
    pub rotation: RotationConfig,
    pub ipfix: Option<IpfixSpec>,
}

/// The alert sinks' settings (the log and metrics sinks are always on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertOutputs {
    /// The alert file and its rotation (the `[flows]` rotation keys).
    pub file: Option<(PathBuf, RotationConfig)>,
    pub webhook: Option<String>,
}

/// An IPFIX collector and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpfixSpec {
    pub collector: String,
    pub domain: u32,
    pub template_refresh: Duration,
}

impl RunSettings {
    pub fn resolve(args: &RunArgs, file: &FileConfig) -> RunSettings {
        let given = |id: &str| args.given.contains(id);
        let f = &file.flows;
        let pick_u64 = |id, flag, v| pick(given(id), flag, v);
        let duration = |id, flag, v| pick::<Duration>(given(id), flag, v);
        let rotation = RotationConfig {
            max_bytes: pick_u64("flows_max_bytes", args.flows_max_bytes, f.max_bytes),
            keep: pick(given("flows_keep"), args.flows_keep, f.keep),
        };
        let ipfix_collector = if given("ipfix") {
            args.ipfix.clone()
        } else {
            f.ipfix.collector.clone().or_else(|| args.ipfix.clone())
        };
        RunSettings {
            interfaces: pick(
                given("ifaces"),
                args.ifaces.clone(),
                file.sensor.interfaces.clone(),
            ),
            xdp_mode: pick(given("xdp_mode"), args.xdp_mode, file.sensor.xdp_mode),
            mirror: pick(given("mirror"), args.mirror, file.sensor.mirror),
            listen: pick(given("listen"), args.listen, file.metrics.listen),
            web_config_file: args
                .web_config_file
                .clone()
                .or_else(|| file.metrics.web_config_file.clone()),
            sampling: Sampling::resolve(file.sampling, explicit_sampling(args)),
            flow_table: FlowConfig {
                idle_timeout_ns: duration(
                    "flow_idle_timeout",
                    args.flow_idle_timeout,
                    f.idle_timeout,
                )
                .as_nanos() as u64,
                active_timeout_ns: duration(
                    "flow_active_timeout",
                    args.flow_active_timeout,
                    f.active_timeout,
                )
                .as_nanos() as u64,
                capacity: pick_u64("flow_capacity", args.flow_capacity, f.capacity) as usize,
            },
            outputs: Outputs {
                flows: FlowOutputs {
                    files: pick(
                        given("flow_files"),
                        args.flow_files.clone(),
                        f.files.clone(),
                    ),
                    rotation,
                    ipfix: ipfix_collector.map(|collector| IpfixSpec {
                        collector,
                        domain: pick(given("ipfix_domain"), args.ipfix_domain, f.ipfix.domain),
                        template_refresh: duration(
                            "ipfix_template_refresh",
                            args.ipfix_template_refresh,
                            f.ipfix.template_refresh,
                        ),
                    }),
                },
                alerts: AlertOutputs {
                    file: args
                        .alerts
                        .clone()
                        .or_else(|| file.alerts.file.clone())
                        .map(|path| (path, rotation)),
                    webhook: args.webhook.clone().or_else(|| file.alerts.webhook.clone()),
                },
            },
            detect_on: file.detect.enabled && !args.no_detect,
            detect: file.detect.clone(),
            capture: resolve_capture(args, &file.capture),
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
    /// sampling rate counts when IPFIX is on: its options record
    /// announces it.
    pub fn flow_outputs_changed(&self, new: &RunSettings) -> bool {
        self.outputs.flows != new.outputs.flows
            || (new.outputs.flows.ipfix.is_some()
                && self.sampling.data_rate != new.sampling.data_rate)
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
        key: "metrics.listen",
        changed: |a, b| a.listen != b.listen,
        keep: |new, old| new.listen = old.listen,
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

fn resolve_capture(args: &RunArgs, c: &crate::config::CaptureSection) -> Option<CaptureSettings> {
    let given = |id: &str| args.given.contains(id);
    let dir = if given("capture_dir") {
        args.capture_dir.clone()
    } else {
        c.dir.clone().or_else(|| args.capture_dir.clone())
    };
    let f = &c.flight_recorder;
    let flight_dir = if given("flight_dir") {
        args.flight_dir.clone()
    } else {
        f.dir.clone().or_else(|| args.flight_dir.clone())
    };
    let flight = flight_dir.map(|dir| FlightSettings {
        dir,
        before: pick(
            given("flight_recorder_before"),
            args.flight_recorder_before,
            f.before,
        ),
        after: pick(
            given("flight_recorder_after"),
            args.flight_recorder_after,
            f.after,
        ),
        memory_mib: pick(
            given("flight_recorder_mib"),
            args.flight_recorder_mib,
            f.memory_mib,
        ),
    });
    if dir.is_none() && flight.is_none() {
        return None;
    }
    Some(CaptureSettings {
        dir,
        flight,
        filter: pick(
            given("capture_filter"),
            args.capture_filter.clone(),
            c.filter.clone(),
        ),
        snaplen: pick(given("capture_snaplen"), args.capture_snaplen, c.snaplen),
        format: pick(given("capture_format"), args.capture_format, c.format),
        file_bytes: pick(
            given("capture_file_bytes"),
            args.capture_file_bytes,
            c.file_bytes,
        ),
        file_age: if given("capture_file_age") {
            args.capture_file_age
        } else {
            c.file_age.or(args.capture_file_age)
        },
        max_bytes: pick(
            given("capture_max_bytes"),
            args.capture_max_bytes,
            c.max_bytes,
        ),
        ring_mib: pick(given("capture_ring_mib"), args.capture_ring_mib, c.ring_mib),
        af_xdp: pick(given("capture_af_xdp"), args.capture_af_xdp, c.af_xdp),
    })
}

/// The flag when given on the command line (or when the file is silent:
/// then it holds its default), else the file's value.
fn pick<T>(given: bool, flag: T, from_file: Option<T>) -> T {
    match from_file {
        Some(v) if !given => v,
        _ => flag,
    }
}

/// The sampling flags given on the command line (they win over the file,
/// also after a reload).
fn explicit_sampling(args: &RunArgs) -> SamplingSection {
    let given = |id: &str| args.given.contains(id);
    SamplingSection {
        data_rate: given("sample_rate").then_some(args.sample_rate),
        control_rate: given("control_sample_rate").then_some(args.control_sample_rate),
        budget: given("sample_budget").then_some(args.sample_budget),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory, FromArgMatches, parser::ValueSource};

    use super::*;
    use crate::cmd::cli::{Cli, Command};

    /// Parses a command line as `main` does, recording the given flags.
    fn args(line: &[&str]) -> RunArgs {
        let m = Cli::command()
            .try_get_matches_from(line)
            .unwrap_or_else(|e| panic!("{e}"));
        let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| panic!("{e}"));
        let Command::Run(mut a) = cli.command else {
            panic!("not run")
        };
        let Some(sub) = m.subcommand_matches("run") else {
            panic!("no run matches")
        };
        a.given = sub
            .ids()
            .filter(|id| sub.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.to_string())
            .collect();
        *a
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
        let ipfix = s.outputs.flows.ipfix.unwrap_or_else(|| panic!("no ipfix"));
        assert_eq!(
            (ipfix.collector.as_str(), ipfix.domain),
            ("127.0.0.1:4739", 7)
        );
        assert_eq!(
            s.outputs.alerts.file.map(|(p, _)| p),
            Some(PathBuf::from("/tmp/a.jsonl"))
        );
        assert!(s.outputs.alerts.webhook.is_some());
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
            s.outputs.flows.ipfix.map(|i| (i.collector, i.domain)),
            Some(("127.0.0.1:2055".to_string(), 7))
        );
        assert_eq!(
            s.outputs.alerts.file.map(|(p, _)| p),
            Some(PathBuf::from("/tmp/b.jsonl"))
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
        assert_eq!(s.outputs, Outputs::default());
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
