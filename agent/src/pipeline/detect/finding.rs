//! What a detector reports: a [`Finding`] about a [`Subject`], with the
//! value it measured, the limit it crossed and sample packets as evidence.

use agent_common::sample::SampleRecord;

use super::Addr;
pub use super::profile::learned::Deviation;

/// The detectors, with stable labels for metrics and alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DetectorKind {
    PortScan,
    Sweep,
    SynFlood,
    Amplification,
    IcmpFlood,
    FragmentFlood,
    Evasion,
    UdpFlood,
    TcpFlood,
    IpFlood,
    Volume,
    /// Learned multi-feature profiles (see [`super::profile`]).
    Baseline,
    /// Not a detector of traffic: new incidents for one target were held
    /// back by its start budget (see [`super::incident`]).
    Suppression,
    /// DNS used as a tunnel: many distinct long, random subdomains of one
    /// registered domain (see [`super::dns`]).
    DnsTunnel,
    /// One client's questions answered NXDOMAIN by the hundred, as
    /// domain-generation malware asks.
    Nxdomain,
    /// Large DNS answers, to questions nobody here asked, flooding one
    /// destination.
    DnsAmplification,
    /// A server that negotiates SSL 3.0, TLS 1.0 or 1.1.
    DeprecatedTls,
    /// A server name or JA4 on a configured watch list.
    WatchList,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 18] = [
        DetectorKind::PortScan,
        DetectorKind::Sweep,
        DetectorKind::SynFlood,
        DetectorKind::Amplification,
        DetectorKind::IcmpFlood,
        DetectorKind::FragmentFlood,
        DetectorKind::Evasion,
        DetectorKind::UdpFlood,
        DetectorKind::TcpFlood,
        DetectorKind::IpFlood,
        DetectorKind::Volume,
        DetectorKind::Baseline,
        DetectorKind::Suppression,
        DetectorKind::DnsTunnel,
        DetectorKind::Nxdomain,
        DetectorKind::DnsAmplification,
        DetectorKind::DeprecatedTls,
        DetectorKind::WatchList,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DetectorKind::PortScan => "port_scan",
            DetectorKind::Sweep => "sweep",
            DetectorKind::SynFlood => "syn_flood",
            DetectorKind::Amplification => "amplification",
            DetectorKind::IcmpFlood => "icmp_flood",
            DetectorKind::FragmentFlood => "fragment_flood",
            DetectorKind::Evasion => "evasion",
            DetectorKind::UdpFlood => "udp_flood",
            DetectorKind::TcpFlood => "tcp_flood",
            DetectorKind::IpFlood => "ip_flood",
            DetectorKind::Volume => "volume",
            DetectorKind::Baseline => "baseline",
            DetectorKind::Suppression => "suppression",
            DetectorKind::DnsTunnel => "dns_tunnel",
            DetectorKind::Nxdomain => "nxdomain",
            DetectorKind::DnsAmplification => "dns_amplification",
            DetectorKind::DeprecatedTls => "deprecated_tls",
            DetectorKind::WatchList => "watch_list",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            DetectorKind::PortScan => "one source probing many ports of one destination",
            DetectorKind::Sweep => {
                "one source probing many destinations on one port or with ICMP echo"
            }
            DetectorKind::SynFlood => {
                "TCP SYN rate to a destination above threshold, with spoofed or never-completed handshakes"
            }
            DetectorKind::Amplification => {
                "large UDP packets from a reflector service port to one destination"
            }
            DetectorKind::IcmpFlood => "ICMP/ICMPv6 rate to a destination above threshold",
            DetectorKind::FragmentFlood => "IP fragment rate to a destination above threshold",
            DetectorKind::UdpFlood => "UDP rate to a destination above threshold, any ports",
            DetectorKind::TcpFlood => {
                "TCP without SYN (ACK, RST, FIN, data) to a destination above threshold, from many spoofed sources"
            }
            DetectorKind::IpFlood => {
                "IP protocols other than TCP, UDP and ICMP (GRE, SCTP, ESP...) to a destination above threshold"
            }
            DetectorKind::Evasion => {
                "frames built to evade parsing (too many IPv6 extension headers, tiny first fragments) to a destination"
            }
            DetectorKind::Volume => {
                "traffic to a destination or host group above a static threshold"
            }
            DetectorKind::Baseline => {
                "traffic of an interface, host group or destination off its learned profile (rates, new flows, sources, ports, sizes, protocol mix), or collapsed"
            }
            DetectorKind::Suppression => {
                "new incidents for one target held back: more starts in a minute than its budget for one detector"
            }
            DetectorKind::DnsTunnel => {
                "DNS tunnelling or exfiltration: many distinct long or random subdomains of one registered domain asked in a minute"
            }
            DetectorKind::Nxdomain => {
                "one client's DNS questions answered NXDOMAIN for many distinct names in a minute (domain-generation malware)"
            }
            DetectorKind::DnsAmplification => {
                "large DNS answers (ANY, TXT, DNSSEC) to questions not asked from here, flooding one destination"
            }
            DetectorKind::DeprecatedTls => "a TLS server negotiating SSL 3.0, TLS 1.0 or TLS 1.1",
            DetectorKind::WatchList => {
                "a TLS/QUIC server name, DNS question or JA4 fingerprint on a configured watch list"
            }
        }
    }
}

/// Alert severity, from how far the value is past its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// ECS `event.severity`: a number, higher is worse.
    pub fn number(self) -> u8 {
        match self {
            Severity::Low => 1,
            Severity::Medium => 2,
            Severity::High => 3,
            Severity::Critical => 4,
        }
    }

    /// Scans start at low, floods at medium; each 4x past the limit adds a
    /// level.
    /// Deprecated TLS is always low, a watch-list match always high.
    pub fn grade(detector: DetectorKind, value: f64, limit: f64) -> Severity {
        let base = match detector {
            DetectorKind::DeprecatedTls => return Severity::Low,
            DetectorKind::WatchList => return Severity::High,
            DetectorKind::PortScan | DetectorKind::Sweep => 0,
            _ => 1,
        };
        let ratio = if limit > 0.0 { value / limit } else { 1.0 };
        let extra = if ratio >= 16.0 {
            2
        } else if ratio >= 4.0 {
            1
        } else {
            0
        };
        Severity::ALL[(base + extra).min(3)]
    }
}

/// What an incident is about; one incident per detector and subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A destination under attack.
    Destination(Addr),
    /// A destination flooded by reflectors answering from one service
    /// port (amplification).
    Reflected { dst: Addr, source_port: u16 },
    /// A source probing one destination (port scan).
    Pair { src: Addr, dst: Addr },
    /// A source probing many destinations on one port (0 for ICMP echo).
    SourcePort { src: Addr, port: u16, proto: u8 },
    /// A configured host group, by its index in the configuration.
    Group(u16),
    /// A source, whatever it talks to (the target of a sweep's budget).
    Source(Addr),
    /// All traffic of one interface, by ifindex.
    Interface(u32),
}

impl Subject {
    pub fn source(&self) -> Option<Addr> {
        match self {
            Subject::Pair { src, .. } | Subject::SourcePort { src, .. } | Subject::Source(src) => {
                Some(*src)
            }
            _ => None,
        }
    }

    pub fn destination(&self) -> Option<Addr> {
        match self {
            Subject::Destination(d) | Subject::Reflected { dst: d, .. } => Some(*d),
            Subject::Pair { dst, .. } => Some(*dst),
            _ => None,
        }
    }
}

/// The unit of a finding's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    PacketsPerSecond,
    BitsPerSecond,
    DistinctPorts,
    DistinctHosts,
    /// Incident starts held back in the current minute.
    HeldBackPerMinute,
    /// Standard deviations off a learned profile.
    Sigma,
    /// Distinct DNS names in the window.
    DistinctNames,
    /// DNS responses per second.
    ResponsesPerSecond,
    /// Handshakes or questions seen.
    Occurrences,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::PacketsPerSecond => "pps",
            Unit::BitsPerSecond => "bps",
            Unit::DistinctPorts => "distinct_ports",
            Unit::DistinctHosts => "distinct_hosts",
            Unit::HeldBackPerMinute => "held_back_per_minute",
            Unit::Sigma => "sigma",
            Unit::DistinctNames => "distinct_names",
            Unit::ResponsesPerSecond => "responses_per_second",
            Unit::Occurrences => "occurrences",
        }
    }
}

/// A learned band of one value: its usual level and the edge past which
/// it is anomalous.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    pub usual: f64,
    pub upper: f64,
}

/// One sampled packet's metadata, kept as evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub ts_ns: u64,
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub frame_len: u32,
    pub ttl: u8,
    pub sample_rate: u32,
}

impl Evidence {
    pub fn of(r: &SampleRecord) -> Evidence {
        Evidence {
            ts_ns: r.timestamp_ns,
            src: r.src_addr,
            dst: r.dst_addr,
            src_port: r.src_port,
            dst_port: r.dst_port,
            proto: r.l4_proto,
            tcp_flags: r.tcp_flags,
            frame_len: r.frame_len,
            ttl: r.ttl,
            sample_rate: r.sample_rate,
        }
    }
}

/// A detector's report: `subject` crossed `limit` with `value` over the
/// window that ended at `ts_ns`.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub detector: DetectorKind,
    pub subject: Subject,
    pub ts_ns: u64,
    pub value: f64,
    pub unit: Unit,
    /// The static threshold (for `baseline`: the score threshold).
    pub limit: f64,
    pub window_ns: u64,
    /// The largest sampling rate among the samples behind the value.
    pub sample_rate: u32,
    /// Estimated distinct sources (floods), when the detector counts them.
    pub distinct_sources: Option<u64>,
    /// The heaviest sources seen, with estimated packets.
    pub top_sources: Vec<(Addr, u64)>,
    pub evidence: Vec<Evidence>,
    /// A short why, e.g. "no handshake completed" or "static threshold".
    pub reason: &'static str,
    /// What a learned profile saw deviate, worst first (empty for the
    /// threshold detectors).
    pub deviations: Vec<Deviation>,
    /// What the payloads said, in words, for the detectors over TLS and
    /// DNS ("domain t.example: 812 distinct subdomains in 60 s ...").
    pub detail: Option<String>,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        Severity::grade(self.detector, self.value, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_grades_by_ratio() {
        let g = Severity::grade;
        assert_eq!(g(DetectorKind::PortScan, 100.0, 100.0), Severity::Low);
        assert_eq!(g(DetectorKind::PortScan, 399.0, 100.0), Severity::Low);
        assert_eq!(g(DetectorKind::PortScan, 400.0, 100.0), Severity::Medium);
        assert_eq!(g(DetectorKind::SynFlood, 100.0, 100.0), Severity::Medium);
        assert_eq!(g(DetectorKind::SynFlood, 400.0, 100.0), Severity::High);
        assert_eq!(g(DetectorKind::SynFlood, 1600.0, 100.0), Severity::Critical);
        assert_eq!(g(DetectorKind::SynFlood, 1e9, 100.0), Severity::Critical);
        assert_eq!(g(DetectorKind::Volume, 5.0, 0.0), Severity::Medium);
    }
}
