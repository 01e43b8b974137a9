//! The config file (`--config FILE`, TOML). Every `nta run` flag has a key
//! here (a flag given on the command line wins); unknown sections and keys
//! are errors, so a typo never silently falls back to a default.

pub mod flags;
pub mod merge;
pub mod reload;
pub mod sections;
pub mod settings;

pub use merge::Merge;
pub use sections::{
    AlertsSection, AppSection, CaptureSection, FlightSection, FlowsSection, MetricsSection,
    SamplingSection, SensorSection,
};

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::pipeline::detect::{DetectConfig, DetectConfigError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: DetectConfigError,
    },
    #[error("{path}: {key}: {why}")]
    Value {
        path: PathBuf,
        key: &'static str,
        why: String,
    },
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub sensor: SensorSection,
    pub metrics: MetricsSection,
    pub sampling: SamplingSection,
    pub flows: FlowsSection,
    pub alerts: AlertsSection,
    pub capture: CaptureSection,
    pub app: AppSection,
    pub detect: DetectConfig,
}

/// The sampling in force: command-line flags, else the config file, else
/// the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    pub data_rate: u32,
    pub control_rate: u32,
    pub budget: u64,
    pub control_budget: u32,
    pub first_packet: bool,
}

impl Sampling {
    /// `base` (mirror, wake-up batch, rates an adaptive controller chose)
    /// with these settings' kernel sampling applied.
    pub fn applied_to(
        &self,
        base: agent_common::config::SamplerConfig,
    ) -> agent_common::config::SamplerConfig {
        agent_common::config::SamplerConfig {
            data_rate: self.data_rate,
            control_rate: self.control_rate,
            control_budget: self.control_budget,
            first_packet: u32::from(self.first_packet),
            ..base
        }
    }
}

/// SHA-1 of a config file's bytes, hex: shows which config is in force.
pub fn hash(text: &str) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        Self::load_with_hash(path).map(|(c, _)| c)
    }

    /// The config and the hash of the bytes it was parsed from.
    pub fn load_with_hash(path: &Path) -> Result<(FileConfig, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok((Self::parse(&text, path)?, hash(&text)))
    }

    /// Parses and validates; errors name the file, line, column and key.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let c: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        c.detect.validate().map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
        c.validate_outputs()
            .map_err(|(key, why)| ConfigError::Value {
                path: path.to_path_buf(),
                key,
                why,
            })?;
        Ok(c)
    }

    /// Checks the values serde's types cannot: the same ones clap checks
    /// for the flags.
    fn validate_outputs(&self) -> Result<(), (&'static str, String)> {
        if let Some(ifaces) = &self.sensor.interfaces {
            if ifaces.is_empty() {
                return Err((
                    "sensor.interfaces",
                    "empty list; leave the key out to use the default route's interface".into(),
                ));
            }
            if let Some(dup) = ifaces
                .iter()
                .enumerate()
                .find(|(i, n)| ifaces[..*i].contains(n))
            {
                return Err(("sensor.interfaces", format!("{} is listed twice", dup.1)));
            }
        }
        if self.flows.capacity == Some(0) {
            return Err(("flows.capacity", "must be at least 1".into()));
        }
        for (key, d) in [
            ("flows.idle_timeout", self.flows.idle_timeout),
            ("flows.active_timeout", self.flows.active_timeout),
        ] {
            if d == Some(Duration::ZERO) {
                return Err((key, "must be longer than 0s".into()));
            }
        }
        for component in self.flows.exporters() {
            component.validate().map_err(|why| (component.key(), why))?;
        }
        if let Some(files) = &self.flows.files {
            for f in files {
                crate::output::export::flow_file_format(f)
                    .map_err(|e| ("flows.files", e.to_string()))?;
            }
        }
        if let Some(ports) = &self.app.dns_ports {
            AppSection::dns_port_slots(ports).map_err(|why| ("app.dns_ports", why))?;
        }
        let c = &self.capture;
        if let Some(f) = &c.filter {
            crate::kernel::capture::CaptureFilter::compile(f)
                .map_err(|e| ("capture.filter", e.to_string()))?;
        }
        if c.snaplen == Some(0) {
            return Err(("capture.snaplen", "must be at least 1".into()));
        }
        if c.file_bytes == Some(0) {
            return Err(("capture.file_bytes", "must be at least 1".into()));
        }
        if c.file_age == Some(Duration::ZERO) {
            return Err(("capture.file_age", "must be longer than 0s".into()));
        }
        if let Some(m) = c.ring_mib
            && (!m.is_power_of_two() || m > 1024)
        {
            return Err((
                "capture.ring_mib",
                format!("must be a power of two from 1 to 1024, not {m}"),
            ));
        }
        if c.flight_recorder.memory_mib == Some(0) {
            return Err((
                "capture.flight_recorder.memory_mib",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        FileConfig::parse(text, Path::new("nta.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err(
            "[detect]\nport_scan = { window = \"10s\", distinct = 50 }\n[detect.syn_flood]\npss = 5\n",
        );
        assert!(e.starts_with("nta.toml: TOML parse error at line 4"), "{e}");
        assert!(e.contains("unknown field `pss`"), "{e}");
        let e = err("[detec]\n");
        assert!(e.contains("unknown field `detec`"), "{e}");
        let e = err("[detect.incidents]\nquiet = \"soon\"\n");
        assert!(e.contains("line 2"), "{e}");
        let e = err("[detect]\ntracked_keys = 18446744073709551615\n");
        assert_eq!(
            e,
            "nta.toml: detect.tracked_keys: must be at most 4194304, not 18446744073709551615"
        );
        let e = err("[detect.icmp_flood]\npps = 0\n");
        assert_eq!(
            e,
            "nta.toml: detect.icmp_flood.pps: must be a positive number, not 0"
        );
    }

    #[test]
    fn sampling_section_and_flag_precedence() {
        let c = FileConfig::parse("[sampling]\ndata_rate = 128\nbudget = 0\n", Path::new("x"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.sampling.data_rate, Some(128));
        assert_eq!(c.sampling.control_rate, None);
        let flags = SamplingSection {
            data_rate: Some(16),
            ..Default::default()
        };
        let eff = flags.or(c.sampling);
        assert_eq!(
            (eff.data_rate, eff.control_rate, eff.budget),
            (Some(16), None, Some(0))
        );
        let e = err("[sampling]\ndata = 1\n");
        assert!(e.contains("unknown field `data`"), "{e}");
    }

    #[test]
    fn output_values_are_checked_like_the_flags() {
        let e = err("[flows]\nfiles = [\"/tmp/flows.txt\"]\n");
        assert!(
            e.starts_with("nta.toml: flows.files: /tmp/flows.txt: unknown flow file type"),
            "{e}"
        );
        let e = err("[flows]\ncapacity = 0\n");
        assert_eq!(e, "nta.toml: flows.capacity: must be at least 1");
        let e = err("[flows]\nidle_timeout = \"0s\"\n");
        assert_eq!(e, "nta.toml: flows.idle_timeout: must be longer than 0s");
        let e = err("[alerts]\nwebhook = \"ftp://x\"\n");
        assert!(
            e.starts_with("nta.toml: ")
                && e.contains("line 2")
                && e.contains("webhook ftp://x/…: needs an http:// or https:// URL"),
            "{e}"
        );
        let e = err("[flows.ipfix]\ntemplate_refresh = \"0s\"\n");
        assert_eq!(
            e,
            "nta.toml: flows.ipfix: template_refresh must be longer than 0s"
        );
        let e = err("[sensor]\ninterfaces = [\"a\", \"a\"]\n");
        assert_eq!(e, "nta.toml: sensor.interfaces: a is listed twice");
        let e = err("[sensor]\nxdp_mode = \"fast\"\n");
        assert!(
            e.contains("line 2") && e.contains("unknown variant `fast`"),
            "{e}"
        );
        let e = err("[capture]\nfilter = \"tcp port x\"\n");
        assert!(
            e.starts_with("nta.toml: capture.filter: capture filter, column 10"),
            "{e}"
        );
        let e = err("[capture]\nring_mib = 3\n");
        assert!(
            e.contains("capture.ring_mib: must be a power of two"),
            "{e}"
        );
        let e = err("[metrics]\nlisten = \"localhost\"\n");
        assert!(
            e.contains("line 2") && e.contains("invalid socket address"),
            "{e}"
        );
    }

    #[test]
    fn dns_ports_are_at_most_four_and_never_zero() {
        let c = FileConfig::parse("[app]\ndns_ports = [53, 5353, 5300]\n", Path::new("x"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.app.dns_ports, Some(vec![53, 5353, 5300]));
        for bad in ["[53, 1, 2, 3, 4]", "[53, 0]"] {
            let e = FileConfig::parse(&format!("[app]\ndns_ports = {bad}\n"), Path::new("x"))
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert!(
                e.as_ref().is_err_and(|e| e.contains("app.dns_ports")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = FileConfig::parse("", Path::new("x")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, FileConfig::default());
    }
}

#[cfg(test)]
mod example {
    use super::*;
    use crate::kernel::sensor::ModeChoice;

    /// The shipped example must stay valid, and must mean what it says.
    #[test]
    fn deploy_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nta.example.toml");
        let c = FileConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.sensor.interfaces, None);
        assert_eq!(c.sensor.xdp_mode, Some(ModeChoice::Auto));
        assert_eq!(c.metrics.listen.map(|l| l.port()), Some(9464));
        assert_eq!(c.flows.files, Some(vec![]));
        assert_eq!(c.flows.capacity, Some(1_000_000));
        assert_eq!(c.flows.ipfix.collector, None);
        assert_eq!(
            c.flows.idle_timeout,
            Some(std::time::Duration::from_secs(15))
        );
        let d = &c.detect;
        assert_eq!(d.port_scan.distinct, 50);
        assert_eq!(d.amplification.reflectors.len(), 3);
        assert_eq!(d.volume.pps, Some(1_000_000.0));
        assert_eq!(d.host_groups[0].name, "web");
        assert_eq!(d.incidents.quiet, std::time::Duration::from_secs(30));
        assert_eq!(c.app.metadata, Some(true));
        assert_eq!(c.app.dns_ports, Some(vec![53, 5353]));
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn example() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nta.example.toml");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Truncated, mutated and hostile config files: a precise error
        /// (the file, and a line for syntax errors) or a valid config,
        /// never a panic.
        #[test]
        fn mutated_configs_fail_precisely(
            cut in 0usize..4000,
            flips in proptest::collection::vec((0usize..4000, any::<u8>()), 0..6),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = example().into_bytes();
            for (at, v) in &flips {
                if let Some(b) = bytes.get_mut(*at) {
                    *b = *v;
                }
            }
            bytes.truncate(cut);
            bytes.extend_from_slice(&junk);
            let text = String::from_utf8_lossy(&bytes);
            match FileConfig::parse(&text, Path::new("fuzz.toml")) {
                Ok(c) => prop_assert_eq!(c.detect.validate(), Ok(())),
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with("fuzz.toml: "), "{msg}");
                    if let ConfigError::Parse { message, .. } = &e {
                        prop_assert!(message.contains("line "), "{message}");
                    }
                }
            }
        }
    }
}
