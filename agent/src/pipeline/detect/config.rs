//! Detection settings: thresholds per detector and per host group,
//! windows, the allowlist and incident timing. Deserialised from the
//! `[detect]` section of the config file; every field has a default.

use super::payload::{DnsDetectConfig, TlsDetectConfig, WatchConfig};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{Addr, NS, display_addr};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DetectConfigError {
    #[error("detect.{key}: {why}")]
    Invalid { key: String, why: String },
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> DetectConfigError {
    DetectConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

/// Keys one detector may track: 4 Mi keys is several hundred MiB over the
/// detectors, far past what one sensor sees at once.
pub const MAX_TRACKED_KEYS: usize = 4 << 20;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Detection on or off.
    pub enabled: bool,
    /// Keys each detector tracks at most (destinations, source/destination
    /// pairs...); beyond it light keys are evicted (counted).
    pub tracked_keys: usize,
    pub port_scan: ScanConfig,
    /// The same over a long window with a higher count: a scan slowed to
    /// a few ports a second stays under `port_scan` in every window.
    pub slow_port_scan: ScanConfig,
    pub sweep: ScanConfig,
    pub syn_flood: SynFloodConfig,
    pub amplification: AmplificationConfig,
    pub icmp_flood: RateConfig,
    pub fragment_flood: RateConfig,
    /// Frames built to evade parsing, per destination.
    pub evasion: RateConfig,
    /// UDP packets per second to one destination, any ports.
    pub udp_flood: RateConfig,
    /// TCP without SYN (ACK, RST, FIN, data) to one destination, judged
    /// only with spoofing evidence: one client's fast transfer is as fast.
    pub tcp_flood: SpoofedFloodConfig,
    /// Other IP protocols (GRE, SCTP, ESP...) to one destination.
    pub ip_flood: RateConfig,
    pub volume: VolumeConfig,
    /// Learned multi-feature profiles (the `baseline` detector).
    pub baseline: ProfileConfig,
    pub host_groups: Vec<HostGroup>,
    pub allowlist: Allowlist,
    pub incidents: IncidentConfig,
    /// Detectors over DNS transactions (tunnels, NXDOMAIN, amplification).
    pub dns: DnsDetectConfig,
    /// Findings about TLS handshakes (deprecated versions).
    pub tls: TlsDetectConfig,
    /// Server names, DNS questions and JA4s that always alert.
    pub watch: WatchConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            tracked_keys: 65_536,
            port_scan: ScanConfig {
                window: Duration::from_secs(10),
                distinct: 50,
            },
            // 4 ports a second for 30 s is 120 ports: found at 100.
            slow_port_scan: ScanConfig {
                window: Duration::from_secs(300),
                distinct: 100,
            },
            // 25 hosts within 5 minutes (Zeek's default): a fast sweep
            // crosses it as soon as its 25th host, a slow one too.
            sweep: ScanConfig {
                window: Duration::from_secs(300),
                distinct: 25,
            },
            syn_flood: SynFloodConfig::default(),
            amplification: AmplificationConfig::default(),
            icmp_flood: RateConfig { pps: 5_000.0 },
            fragment_flood: RateConfig { pps: 5_000.0 },
            // No stack sends these; a few a second is a deliberate act.
            evasion: RateConfig { pps: 10.0 },
            // A plain flood is caught on the first start, before any
            // baseline: 50 kpps of UDP is ~600 Mbit/s of 1200-byte
            // datagrams, past what one service sees from its clients.
            udp_flood: RateConfig { pps: 50_000.0 },
            tcp_flood: SpoofedFloodConfig {
                pps: 50_000.0,
                min_sources: 64,
            },
            ip_flood: RateConfig { pps: 20_000.0 },
            volume: VolumeConfig::default(),
            baseline: ProfileConfig::default(),
            host_groups: Vec::new(),
            allowlist: Allowlist::default(),
            incidents: IncidentConfig::default(),
            dns: DnsDetectConfig::default(),
            tls: TlsDetectConfig::default(),
            watch: WatchConfig::default(),
        }
    }
}

/// Distinct-count detectors: alert when one source reaches `distinct`
/// ports (port scan) or hosts (sweep) within `window`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub distinct: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Packets per second to one destination.
    pub pps: f64,
}

/// A flood judged only with spoofing evidence.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpoofedFloodConfig {
    /// Packets per second to one destination...
    pub pps: f64,
    /// ...from at least this many distinct sources.
    pub min_sources: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SynFloodConfig {
    /// SYNs per second to one destination.
    pub pps: f64,
    /// Evidence of spoofing: at least this many distinct sources...
    pub min_sources: u64,
    /// ...or of non-completion: fewer handshake-completing packets
    /// (TCP with ACK, without SYN) than this fraction of the SYNs.
    pub max_ack_ratio: f64,
}

impl Default for SynFloodConfig {
    fn default() -> Self {
        SynFloodConfig {
            pps: 5_000.0,
            min_sources: 64,
            max_ack_ratio: 0.2,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AmplificationConfig {
    /// UDP frames at least this long count as amplified responses.
    pub min_size: u32,
    /// Reflector services and their thresholds, packets per second.
    pub reflectors: Vec<Reflector>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Reflector {
    pub name: String,
    pub port: u16,
    pub pps: f64,
}

impl Default for AmplificationConfig {
    fn default() -> Self {
        let r = |name: &str, port, pps| Reflector {
            name: name.to_string(),
            port,
            pps,
        };
        AmplificationConfig {
            min_size: 256,
            reflectors: vec![
                r("chargen", 19, 1_000.0),
                r("dns", 53, 2_000.0),
                r("portmap", 111, 1_000.0),
                r("ntp", 123, 1_000.0),
                r("netbios", 137, 1_000.0),
                r("snmp", 161, 1_000.0),
                r("cldap", 389, 1_000.0),
                r("ssdp", 1900, 1_000.0),
                r("ws-discovery", 3702, 1_000.0),
                r("mdns", 5353, 1_000.0),
                r("memcached", 11211, 500.0),
            ],
        }
    }
}

/// Static volume thresholds per destination; the learned side is
/// [`ProfileConfig`].
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeConfig {
    /// Static thresholds per destination (off when absent).
    pub pps: Option<f64>,
    pub bps: Option<f64>,
    /// Destinations whose rate and band are exposed as metrics.
    pub top_metrics: usize,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            pps: None,
            bps: None,
            top_metrics: 10,
        }
    }
}

/// The learned profiles: per interface, host group and busy destination.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    pub enabled: bool,
    /// Normal seconds a key learns before it is judged (a state file
    /// from an earlier run skips this).
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    /// The false alarms per key per week the statistics aim at: the
    /// score threshold follows from it (more keys, more alarms overall).
    pub false_alarms_per_week: f64,
    /// Busiest destinations with a profile of their own.
    pub destinations: usize,
    /// Where the learned profiles are kept across restarts (`nta run`:
    /// read at start, written every `save_interval` and at stop).
    pub state_file: Option<std::path::PathBuf>,
    #[serde(with = "humantime_serde")]
    pub save_interval: Duration,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            enabled: true,
            warmup: Duration::from_secs(60),
            false_alarms_per_week: 1.0,
            destinations: 1024,
            state_file: None,
            save_interval: Duration::from_secs(300),
        }
    }
}

/// Destinations with a profile at most (each holds about 10 KiB).
pub const MAX_PROFILED_DESTINATIONS: usize = 65_536;

impl ProfileConfig {
    pub fn warmup_seconds(&self) -> u32 {
        self.warmup.as_secs().clamp(1, u64::from(u32::MAX)) as u32
    }

    /// The score (standard deviations) past which a second is off its
    /// profile: a second is judged on every feature, both ways, so the
    /// per-second false-alarm probability is split over them
    /// (Bonferroni) and read off the normal distribution; the learned
    /// space (logs of counts) keeps the tails close to normal. Two
    /// seconds running are needed to report, which makes the real rate
    /// lower still.
    pub fn threshold_score(&self) -> f64 {
        use statrs::distribution::{ContinuousCDF as _, Normal};
        const SECONDS_PER_WEEK: f64 = 7.0 * 86_400.0;
        let per_second = (self.false_alarms_per_week / SECONDS_PER_WEEK).clamp(1e-15, 0.5);
        let tests = 2.0 * super::profile::features::Feature::COUNT as f64;
        Normal::standard().inverse_cdf(1.0 - per_second / tests)
    }
}

/// Named address ranges with their own thresholds; traffic to a group is
/// also watched as a whole (volume).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostGroup {
    pub name: String,
    pub cidrs: Vec<IpNet>,
    #[serde(default)]
    pub syn_flood_pps: Option<f64>,
    #[serde(default)]
    pub icmp_flood_pps: Option<f64>,
    #[serde(default)]
    pub fragment_flood_pps: Option<f64>,
    #[serde(default)]
    pub udp_flood_pps: Option<f64>,
    #[serde(default)]
    pub tcp_flood_pps: Option<f64>,
    #[serde(default)]
    pub ip_flood_pps: Option<f64>,
    #[serde(default)]
    pub amplification_pps: Option<f64>,
    /// Static thresholds for the group's total and for each host in it.
    #[serde(default)]
    pub pps: Option<f64>,
    #[serde(default)]
    pub bps: Option<f64>,
}

impl HostGroup {
    pub fn contains(&self, a: &Addr) -> bool {
        let ip = display_addr(a);
        self.cidrs.iter().any(|n| n.contains(&ip))
    }
}

/// Addresses that never alert, as source or destination.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Allowlist {
    pub sources: Vec<IpNet>,
    pub destinations: Vec<IpNet>,
}

impl Allowlist {
    pub fn allows_source(&self, a: &Addr) -> bool {
        let ip = display_addr(a);
        self.sources.iter().any(|n| n.contains(&ip))
    }

    pub fn allows_destination(&self, a: &Addr) -> bool {
        let ip = display_addr(a);
        self.destinations.iter().any(|n| n.contains(&ip))
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// An incident ends after this long without a finding.
    #[serde(with = "humantime_serde")]
    pub quiet: Duration,
    /// An active incident is reported again this often.
    #[serde(with = "humantime_serde")]
    pub update: Duration,
    /// Most incidents open at once; past it a new incident displaces the
    /// least severe, oldest one if it is at least as severe, or is
    /// suppressed (counted).
    pub max_active: usize,
    /// Most new incidents per detector and target (destination, else host
    /// group, else the probing source) per minute; more are suppressed
    /// and the target gets a `suppression` incident.
    pub max_starts_per_minute: u32,
    /// Sample packets kept as evidence per incident.
    pub evidence: usize,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            quiet: Duration::from_secs(30),
            update: Duration::from_secs(10),
            max_active: 10_000,
            max_starts_per_minute: 10,
            evidence: 5,
        }
    }
}

impl IncidentConfig {
    pub fn quiet_ns(&self) -> u64 {
        self.quiet.as_nanos() as u64
    }

    pub fn update_ns(&self) -> u64 {
        self.update.as_nanos() as u64
    }
}

impl DetectConfig {
    /// Checks what serde cannot: positive thresholds, sane windows.
    /// Host group names, in the order incidents index them.
    pub fn group_names(&self) -> Vec<String> {
        self.host_groups.iter().map(|g| g.name.clone()).collect()
    }

    pub fn validate(&self) -> Result<(), DetectConfigError> {
        if self.tracked_keys == 0 {
            return Err(invalid("tracked_keys", "must be at least 1"));
        }
        // Each detector allocates its table up front: a typo must be an
        // error at load or reload, not an allocation failure that aborts.
        if self.tracked_keys > MAX_TRACKED_KEYS {
            return Err(invalid(
                "tracked_keys",
                format!(
                    "must be at most {MAX_TRACKED_KEYS}, not {}",
                    self.tracked_keys
                ),
            ));
        }
        for (key, s) in [
            ("port_scan", &self.port_scan),
            ("slow_port_scan", &self.slow_port_scan),
            ("sweep", &self.sweep),
        ] {
            if s.distinct < 2 {
                return Err(invalid(format!("{key}.distinct"), "must be at least 2"));
            }
            if s.window < Duration::from_millis(100) || s.window > Duration::from_secs(3600) {
                return Err(invalid(
                    format!("{key}.window"),
                    "must be between 100ms and 1h",
                ));
            }
        }
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(key, format!("must be a positive number, not {v}")))
            }
        };
        positive("syn_flood.pps", self.syn_flood.pps)?;
        positive("icmp_flood.pps", self.icmp_flood.pps)?;
        positive("fragment_flood.pps", self.fragment_flood.pps)?;
        positive("evasion.pps", self.evasion.pps)?;
        positive("udp_flood.pps", self.udp_flood.pps)?;
        positive("tcp_flood.pps", self.tcp_flood.pps)?;
        positive("ip_flood.pps", self.ip_flood.pps)?;
        if !(0.0..=1.0).contains(&self.syn_flood.max_ack_ratio) {
            return Err(invalid(
                "syn_flood.max_ack_ratio",
                "must be between 0 and 1",
            ));
        }
        for (i, r) in self.amplification.reflectors.iter().enumerate() {
            positive(&format!("amplification.reflectors[{i}].pps"), r.pps)?;
            if r.port == 0 {
                return Err(invalid(
                    format!("amplification.reflectors[{i}].port"),
                    "must not be 0",
                ));
            }
        }
        let v = &self.volume;
        if let Some(p) = v.pps {
            positive("volume.pps", p)?;
        }
        if let Some(b) = v.bps {
            positive("volume.bps", b)?;
        }
        let b = &self.baseline;
        positive("baseline.false_alarms_per_week", b.false_alarms_per_week)?;
        if b.save_interval < Duration::from_secs(1) {
            return Err(invalid("baseline.save_interval", "at least 1s"));
        }
        if b.destinations > MAX_PROFILED_DESTINATIONS {
            return Err(invalid(
                "baseline.destinations",
                format!("at most {MAX_PROFILED_DESTINATIONS}"),
            ));
        }
        if v.top_metrics > 100 {
            return Err(invalid(
                "volume.top_metrics",
                "at most 100 (every destination is a metric series)",
            ));
        }
        if self.host_groups.len() > u16::MAX as usize {
            return Err(invalid("host_groups", "too many groups"));
        }
        for (i, g) in self.host_groups.iter().enumerate() {
            if g.name.is_empty() {
                return Err(invalid(
                    format!("host_groups[{i}].name"),
                    "must not be empty",
                ));
            }
            if g.cidrs.is_empty() {
                return Err(invalid(
                    format!("host_groups[{i}].cidrs"),
                    "needs at least one CIDR",
                ));
            }
            if self.host_groups[..i].iter().any(|o| o.name == g.name) {
                return Err(invalid(
                    format!("host_groups[{i}].name"),
                    format!("{:?} is used twice", g.name),
                ));
            }
            for (key, val) in [
                ("syn_flood_pps", g.syn_flood_pps),
                ("icmp_flood_pps", g.icmp_flood_pps),
                ("fragment_flood_pps", g.fragment_flood_pps),
                ("udp_flood_pps", g.udp_flood_pps),
                ("tcp_flood_pps", g.tcp_flood_pps),
                ("ip_flood_pps", g.ip_flood_pps),
                ("amplification_pps", g.amplification_pps),
                ("pps", g.pps),
                ("bps", g.bps),
            ] {
                if let Some(v) = val {
                    positive(&format!("host_groups[{i}].{key}"), v)?;
                }
            }
        }
        let inc = &self.incidents;
        if inc.quiet < Duration::from_secs(1) {
            return Err(invalid("incidents.quiet", "must be at least 1s"));
        }
        if inc.update < Duration::from_secs(1) {
            return Err(invalid("incidents.update", "must be at least 1s"));
        }
        if inc.max_active == 0 {
            return Err(invalid("incidents.max_active", "must be at least 1"));
        }
        let dns = &self.dns;
        if dns.tunnel_subdomains == 0 || dns.nxdomain_names == 0 {
            return Err(invalid(
                "dns",
                "tunnel_subdomains and nxdomain_names must be at least 1",
            ));
        }
        if dns.amplification_rps.is_nan() || dns.amplification_rps <= 0.0 {
            return Err(invalid("dns.amplification_rps", "must be more than 0"));
        }
        if self
            .watch
            .server_names
            .iter()
            .any(|n| n.trim_matches('.').is_empty())
        {
            return Err(invalid("watch.server_names", "an entry is empty"));
        }
        Ok(())
    }

    /// The first host group holding `a`.
    pub fn group_of(&self, a: &Addr) -> Option<&HostGroup> {
        self.host_groups.iter().find(|g| g.contains(a))
    }
}

impl ScanConfig {
    pub fn window_ns(&self) -> u64 {
        (self.window.as_nanos() as u64).max(NS / 10)
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use super::*;

    fn parse(text: &str) -> Result<DetectConfig, String> {
        toml::from_str::<DetectConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(DetectConfig::default().validate(), Ok(()));
        assert_eq!(parse(""), Ok(DetectConfig::default()));
    }

    #[test]
    fn the_false_alarm_target_sets_the_score_threshold() {
        let k = |per_week: f64| {
            ProfileConfig {
                false_alarms_per_week: per_week,
                ..ProfileConfig::default()
            }
            .threshold_score()
        };
        // One a week per key, 24 two-sided tests a second: the tail
        // probability 1/604800/24 is 5.27 standard deviations out.
        assert!((k(1.0) - 5.27).abs() < 0.01, "{}", k(1.0));
        // A laxer target, a lower threshold.
        assert!(k(100.0) < k(1.0) && k(100.0) > 4.0, "{}", k(100.0));
        let zero = parse("[baseline]\nfalse_alarms_per_week = 0").map(|c| c.validate());
        assert!(matches!(zero, Ok(Err(_))), "{zero:?}");
    }

    #[test]
    fn reads_thresholds_groups_and_allowlist() {
        let c = parse(
            r#"
            port_scan = { window = "5s", distinct = 20 }
            [syn_flood]
            pps = 1000
            [[host_groups]]
            name = "web"
            cidrs = ["198.18.1.0/24", "fd00:1::/64"]
            syn_flood_pps = 50000
            [allowlist]
            sources = ["198.18.9.9/32"]
            [incidents]
            quiet = "3s"
            "#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.port_scan.window, Duration::from_secs(5));
        assert_eq!(c.port_scan.distinct, 20);
        assert_eq!(c.syn_flood.pps, 1000.0);
        assert_eq!(c.syn_flood.min_sources, 64, "unset fields keep defaults");
        let web = c
            .group_of(&map_ipv4([198, 18, 1, 7]))
            .map(|g| g.name.as_str());
        assert_eq!(web, Some("web"));
        assert_eq!(c.group_of(&map_ipv4([198, 18, 2, 7])), None);
        assert!(c.allowlist.allows_source(&map_ipv4([198, 18, 9, 9])));
        assert!(!c.allowlist.allows_source(&map_ipv4([198, 18, 9, 8])));
        assert_eq!(c.incidents.quiet, Duration::from_secs(3));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_precise_errors() {
        let e = parse("[syn_flod]\npps = 1").err().unwrap_or_default();
        assert!(e.contains("unknown field `syn_flod`"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let e = parse("[[host_groups]]\nname = \"x\"\ncidrs = [\"198.18.0.0/33\"]")
            .err()
            .unwrap_or_default();
        assert!(e.contains("line 3"), "{e}");
        let c = parse("[syn_flood]\npps = -5").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("detect.syn_flood.pps: must be a positive number, not -5".to_string())
        );
        let c = parse("[[host_groups]]\nname = \"a\"\ncidrs = [\"198.18.0.0/16\"]\n[[host_groups]]\nname = \"a\"\ncidrs = [\"198.19.0.0/16\"]")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("detect.host_groups[1].name: \"a\" is used twice".to_string())
        );
    }
}
