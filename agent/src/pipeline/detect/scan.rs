//! Port scans (one source, one destination, many ports) and sweeps (one
//! source, one port, many destinations), by distinct counting per key in
//! a window. Each key's distinct set is exact while small and turns into a
//! HyperLogLog past 128 items (cardinality-estimator), so a key costs 8
//! bytes for one item and under 1 KiB however many it sees.
//!
//! Probes are samples that start a new flow and are TCP SYNs without ACK
//! or UDP datagrams (first fragments included), and, for sweeps, every
//! ICMP/ICMPv6 echo request: a scanner's probes are all new 5-tuples, while the
//! packets of established conversations are not probes, which also keeps
//! this detector's work to new flows only. Sampling: with
//! SYNs and ICMP sampled at the control rate (1 by default) the count is
//! exact. Through 1-in-N samples, a scanner that sends one probe per port
//! shows a new item in (nearly) every sample, so once at least
//! [`MIN_SCALED_SAMPLES`] samples are at least 90 % new items its distinct
//! count is scaled by their average rate; a busy flow shows the same few
//! items again and again and is never scaled.

use agent_common::{class::ProtocolClass, sample::SampleRecord};
use cardinality_estimator::CardinalityEstimator;

use crate::pipeline::keyed::KeyedHasher;

use super::{
    Addr, Detector, DetectorKind, Finding, FlowNote, NS, Subject, Unit, config::ScanConfig,
    tracked::Tracked, window::Evidence3,
};

/// Exact to 128 items, then a 2^10-register HyperLogLog (~3 % error).
type Distinct = CardinalityEstimator<u64, KeyedHasher, 10, 5>;

/// Samples of a key before its distinct count may be scaled by the rate.
pub const MIN_SCALED_SAMPLES: u64 = 16;

const ICMP_ECHO_REQUEST: u16 = 8;
const ICMPV6_ECHO_REQUEST: u16 = 128;

/// What a scan looks for: which records are probes, under which key, and
/// which item of the probe is counted.
pub trait ScanShape: Send {
    type Key: Copy + Eq + std::hash::Hash + Send;
    const KIND: DetectorKind;
    const UNIT: Unit;
    fn probe(r: &SampleRecord) -> Option<(Self::Key, u64)>;
    fn subject(key: &Self::Key) -> Subject;
}

/// A UDP datagram, unless it goes from a well-known port to an ephemeral
/// one: that is a server's answer (DNS, NTP, QUIC), not a probe. With the
/// first packet of every flow sampled, a busy client's answers from its
/// resolver would otherwise count as a port scan of it.
fn is_udp_probe(r: &SampleRecord) -> bool {
    r.class == ProtocolClass::Udp as u8 && !(r.src_port < 1024 && r.dst_port >= 1024)
}

fn is_echo_request(r: &SampleRecord) -> bool {
    (r.class == ProtocolClass::Icmp as u8 && r.src_port == ICMP_ECHO_REQUEST)
        || (r.class == ProtocolClass::Icmpv6 as u8 && r.src_port == ICMPV6_ECHO_REQUEST)
}

/// Vertical scan: (source, destination) → distinct destination ports.
pub struct PortScanShape;

impl ScanShape for PortScanShape {
    type Key = (Addr, Addr);
    const KIND: DetectorKind = DetectorKind::PortScan;
    const UNIT: Unit = Unit::DistinctPorts;

    fn probe(r: &SampleRecord) -> Option<(Self::Key, u64)> {
        if !(r.is_tcp_syn() || is_udp_probe(r)) {
            return None;
        }
        // TCP and UDP ports are different services.
        let item = u64::from(r.dst_port) | u64::from(r.l4_proto) << 16;
        Some(((r.src_addr, r.dst_addr), item))
    }

    fn subject(key: &Self::Key) -> Subject {
        Subject::Pair {
            src: key.0,
            dst: key.1,
        }
    }
}

/// Horizontal sweep: (source, protocol, port) → distinct destinations;
/// ICMP echo has port 0.
pub struct SweepShape;

impl ScanShape for SweepShape {
    type Key = (Addr, u8, u16);
    const KIND: DetectorKind = DetectorKind::Sweep;
    const UNIT: Unit = Unit::DistinctHosts;

    fn probe(r: &SampleRecord) -> Option<(Self::Key, u64)> {
        let port = if r.is_tcp_syn() || is_udp_probe(r) {
            r.dst_port
        } else if is_echo_request(r) {
            0
        } else {
            return None;
        };
        let d = u128::from_be_bytes(r.dst_addr);
        let item = (d as u64) ^ ((d >> 64) as u64).rotate_left(17);
        Some(((r.src_addr, r.l4_proto, port), item))
    }

    fn subject(key: &Self::Key) -> Subject {
        Subject::SourcePort {
            src: key.0,
            proto: key.1,
            port: key.2,
        }
    }
}

struct ScanState {
    window_start: u64,
    distinct: Distinct,
    /// Samples, and the packets they stand for (sum of their rates).
    probes: u64,
    weighted: u64,
    max_rate: u32,
    /// Record time of the last finding (0: none in this window).
    reported_ns: u64,
    /// Kept only once the key is halfway to its threshold: most keys
    /// never get there, and copying every probe costs more than the rest.
    evidence: Option<Box<Evidence3>>,
}

impl ScanState {
    fn new(ts: u64) -> ScanState {
        ScanState {
            window_start: ts,
            distinct: Distinct::new(),
            probes: 0,
            weighted: 0,
            max_rate: 0,
            reported_ns: 0,
            evidence: None,
        }
    }

    fn estimate(&self) -> u64 {
        let d = self.distinct.estimate() as u64;
        let n = self.probes.max(1);
        if n < MIN_SCALED_SAMPLES || d * 10 < n * 9 {
            return d;
        }
        (d as f64 * self.weighted as f64 / n as f64).round() as u64
    }
}

pub struct ScanDetector<S: ScanShape> {
    config: ScanConfig,
    /// What its findings say (a fast or a slow scan).
    reason: &'static str,
    window_ns: u64,
    keys: Tracked<S::Key, ScanState>,
    last_prune: u64,
}

impl<S: ScanShape> ScanDetector<S> {
    pub fn new(config: ScanConfig, tracked_keys: usize) -> ScanDetector<S> {
        Self::with_reason(config, tracked_keys, "distinct count crossed the threshold")
    }

    /// The same shape over a long window: slow scans, found as the same
    /// detector (their incident merges with a fast one's).
    pub fn slow(config: ScanConfig, tracked_keys: usize) -> ScanDetector<S> {
        Self::with_reason(
            config,
            tracked_keys,
            "slow scan: distinct count crossed the long window's threshold",
        )
    }

    fn with_reason(
        config: ScanConfig,
        tracked_keys: usize,
        reason: &'static str,
    ) -> ScanDetector<S> {
        ScanDetector {
            config,
            reason,
            window_ns: config.window_ns(),
            keys: Tracked::new(tracked_keys),
            last_prune: 0,
        }
    }

    fn finding(&self, key: &S::Key, s: &ScanState, ts: u64, reason: &'static str) -> Finding {
        Finding {
            detector: S::KIND,
            subject: S::subject(key),
            ts_ns: ts,
            value: s.estimate() as f64,
            unit: S::UNIT,
            limit: self.config.distinct as f64,
            window_ns: self.window_ns,
            sample_rate: s.max_rate,
            distinct_sources: None,
            top_sources: Vec::new(),
            evidence: s.evidence.as_ref().map_or_else(Vec::new, |e| e.to_vec()),
            reason,
            deviations: Vec::new(),
            detail: None,
        }
    }
}

pub type PortScanDetector = ScanDetector<PortScanShape>;
pub type SweepDetector = ScanDetector<SweepShape>;

impl<S: ScanShape> Detector for ScanDetector<S> {
    fn kind(&self) -> DetectorKind {
        S::KIND
    }

    fn observe(&mut self, r: &SampleRecord, flow: FlowNote, out: &mut Vec<Finding>) {
        // An echo request reuses its "flow" (ICMP has no ports), so a
        // second sweep of the same hosts would look old: echo requests
        // always count, TCP and UDP only when they start a flow.
        if !flow.new_flow && !is_echo_request(r) {
            return;
        }
        let Some((key, item)) = S::probe(r) else {
            return;
        };
        let ts = r.timestamp_ns;
        let window_ns = self.window_ns;
        let s = self.keys.entry(key, || ScanState::new(ts));
        if ts >= s.window_start.saturating_add(window_ns) {
            *s = ScanState::new(ts);
        }
        // Hashed with the process key: raw items would let a scanner
        // choose where they land in the sketch.
        s.distinct.insert(&item);
        s.probes += 1;
        s.weighted += u64::from(r.sample_rate.max(1));
        s.max_rate = s.max_rate.max(r.sample_rate);
        let estimate = s.estimate();
        let threshold = self.config.distinct;
        if estimate.saturating_mul(2) >= threshold {
            s.evidence
                .get_or_insert_with(Default::default)
                .push(super::Evidence::of(r));
        }
        // Report the moment the window crosses the threshold (a fast scan
        // is found within its first `distinct` probes, not at window end),
        // then at most once a second while the scan goes on, so its
        // incident stays open as long as it lasts.
        let due = s.reported_ns == 0 || ts >= s.reported_ns.saturating_add(NS);
        if estimate >= threshold && due {
            s.reported_ns = ts.max(1);
            let reason = self.reason;
            let f = match self.keys.get(&key) {
                Some(s) => self.finding(&key, s, ts, reason),
                None => return,
            };
            out.push(f);
        }
    }

    fn advance(&mut self, now_ns: u64, _out: &mut Vec<Finding>) {
        // Forget keys whose window ended long ago, once per window.
        if now_ns < self.last_prune.saturating_add(self.window_ns) {
            return;
        }
        self.last_prune = now_ns;
        let horizon = now_ns.saturating_sub(self.window_ns);
        self.keys.retain(|_, s| s.window_start >= horizon);
        self.keys.decay();
    }

    fn tracked(&self) -> (usize, u64) {
        (self.keys.len(), self.keys.evictions())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use agent_common::{
        class::tcp_flags,
        sample::{RECORD_VERSION, map_ipv4},
    };

    use super::*;

    /// A TCP SYN from 198.18.0.`src` to 198.18.1.`dst`:`port` (also used
    /// by the pipeline core's tests).
    pub(crate) fn syn(ts: u64, src: u8, dst: u8, port: u16) -> SampleRecord {
        SampleRecord {
            timestamp_ns: ts,
            version: RECORD_VERSION,
            class: ProtocolClass::Tcp as u8,
            ip_version: 4,
            l4_proto: 6,
            tcp_flags: tcp_flags::SYN,
            sample_rate: 1,
            frame_len: 60,
            src_port: 40000,
            dst_port: port,
            src_addr: map_ipv4([198, 18, 0, src]),
            dst_addr: map_ipv4([198, 18, 1, dst]),
            ..Default::default()
        }
    }

    fn cfg(distinct: u64) -> ScanConfig {
        ScanConfig {
            window: std::time::Duration::from_secs(10),
            distinct,
        }
    }

    fn run<S: ScanShape>(d: &mut ScanDetector<S>, recs: &[SampleRecord]) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in recs {
            d.observe(r, FlowNote::first(r), &mut out);
        }
        out
    }

    #[test]
    fn port_scan_fires_exactly_at_the_threshold() {
        let mut d = PortScanDetector::new(cfg(50), 1024);
        let below: Vec<_> = (1..50).map(|p| syn(p * 1000, 1, 2, p as u16)).collect();
        assert!(run(&mut d, &below).is_empty(), "49 ports must not alert");
        // The same ports again are not new.
        assert!(run(&mut d, &below).is_empty());
        let f = run(&mut d, &[syn(60_000, 1, 2, 50)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].detector, DetectorKind::PortScan);
        assert_eq!(f[0].value, 50.0);
        assert_eq!(f[0].limit, 50.0);
        assert_eq!(
            f[0].subject,
            Subject::Pair {
                src: map_ipv4([198, 18, 0, 1]),
                dst: map_ipv4([198, 18, 1, 2])
            }
        );
        assert_eq!(f[0].evidence.len(), 3);
        assert_eq!(f[0].evidence[2].dst_port, 50);
        // Not again within a second; then again while the scan goes on.
        assert!(run(&mut d, &[syn(70_000, 1, 2, 51)]).is_empty());
        let again = run(&mut d, &[syn(60_000 + NS, 1, 2, 52)]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].value, 52.0);
    }

    #[test]
    fn ports_spread_over_windows_or_hosts_do_not_add_up() {
        let mut d = PortScanDetector::new(cfg(50), 1024);
        // 40 ports, then 40 more after the 10 s window: never 50 at once.
        let a: Vec<_> = (1..=40).map(|p| syn(p, 1, 2, p as u16)).collect();
        let b: Vec<_> = (41..=80)
            .map(|p| syn(11 * NS + p, 1, 2, p as u16))
            .collect();
        assert!(run(&mut d, &a).is_empty());
        assert!(run(&mut d, &b).is_empty());
        // 30 ports on each of two hosts is no vertical scan.
        let c: Vec<_> = (1..=60)
            .map(|p| syn(30 * NS + p, 1, (p % 2) as u8, p as u16))
            .collect();
        assert!(run(&mut d, &c).is_empty());
    }

    #[test]
    fn sampled_probes_scale_by_their_rate() {
        let mut d = PortScanDetector::new(cfg(512), 1024);
        let mut recs: Vec<_> = (1..=17).map(|p| syn(p, 1, 2, p as u16)).collect();
        for r in &mut recs {
            r.sample_rate = 32;
            r.class = ProtocolClass::Udp as u8;
            r.l4_proto = 17;
            r.tcp_flags = 0;
        }
        let f = run(&mut d, &recs);
        assert_eq!(f.len(), 1, "16 new ports × 32 = 512 crosses the threshold");
        assert_eq!(f[0].value, 512.0);
        assert_eq!(f[0].evidence.last().map(|e| e.dst_port), Some(16));
        assert_eq!(f[0].sample_rate, 32);
    }

    #[test]
    fn a_busy_sampled_flow_is_not_scaled_into_a_scan() {
        let mut d = PortScanDetector::new(cfg(50), 1024);
        // 10,000 samples at 1-in-64 of six UDP services: 6 ports, not 384.
        // (Fewer than 16 samples are never scaled; then the repeats show.)
        let recs: Vec<_> = (0..10_000u64)
            .map(|i| {
                let mut r = syn(i, 1, 2, 5201 + (i % 6) as u16);
                r.sample_rate = 64;
                r.class = ProtocolClass::Udp as u8;
                r.l4_proto = 17;
                r.tcp_flags = 0;
                r
            })
            .collect();
        assert!(run(&mut d, &recs).is_empty());
        let s = d.keys.iter().next().map(|(_, s)| s.estimate());
        assert_eq!(s, Some(6));
    }

    #[test]
    fn sweep_counts_hosts_per_port_and_icmp_echo() {
        let mut d = SweepDetector::new(cfg(32), 1024);
        let hosts: Vec<_> = (0..31).map(|h| syn(h, 1, h as u8, 443)).collect();
        assert!(run(&mut d, &hosts).is_empty());
        // Port 80 to a 32nd host is another key.
        assert!(run(&mut d, &[syn(40, 1, 200, 80)]).is_empty());
        let f = run(&mut d, &[syn(50, 1, 201, 443)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].value, 32.0);
        assert_eq!(
            f[0].subject,
            Subject::SourcePort {
                src: map_ipv4([198, 18, 0, 1]),
                proto: 6,
                port: 443
            }
        );
        let echo: Vec<_> = (0..32)
            .map(|h| {
                let mut r = syn(100 + h, 9, h as u8, 0);
                r.class = ProtocolClass::Icmp as u8;
                r.l4_proto = 1;
                r.tcp_flags = 0;
                r.src_port = ICMP_ECHO_REQUEST;
                r
            })
            .collect();
        let f = run(&mut d, &echo);
        assert_eq!(f.len(), 1);
        assert!(matches!(
            f[0].subject,
            Subject::SourcePort {
                port: 0,
                proto: 1,
                ..
            }
        ));
    }

    #[test]
    fn packets_of_known_flows_are_not_probes() {
        let mut d = PortScanDetector::new(cfg(2), 1024);
        let mut out = Vec::new();
        for p in 1..=10 {
            d.observe(&syn(p, 1, 2, p as u16), FlowNote::default(), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(d.tracked().0, 0);
    }

    #[test]
    fn echo_requests_count_even_in_known_flows() {
        let mut d = SweepDetector::new(cfg(4), 1024);
        let mut out = Vec::new();
        for h in 0..4u8 {
            let mut r = syn(u64::from(h), 9, h, 0);
            r.class = ProtocolClass::Icmp as u8;
            r.l4_proto = 1;
            r.tcp_flags = 0;
            r.src_port = ICMP_ECHO_REQUEST;
            d.observe(&r, FlowNote::default(), &mut out);
        }
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn syn_acks_and_replies_are_not_probes() {
        let mut d = PortScanDetector::new(cfg(2), 1024);
        let mut a = syn(1, 1, 2, 1);
        a.tcp_flags = tcp_flags::SYN | tcp_flags::ACK;
        let mut b = syn(2, 1, 2, 2);
        b.tcp_flags = tcp_flags::RST;
        assert!(run(&mut d, &[a, b]).is_empty());
    }

    /// UDP from a high port is a probe whatever its target; from a
    /// well-known port to an ephemeral one it is an answer: a resolver's
    /// replies to a client's 100 lookups (100 ports) are no scan of it.
    #[test]
    fn udp_answers_from_well_known_ports_are_not_probes() {
        let udp = |ts, sport, dport| SampleRecord {
            class: ProtocolClass::Udp as u8,
            l4_proto: 17,
            tcp_flags: 0,
            src_port: sport,
            ..syn(ts, 1, 2, dport)
        };
        let mut d = PortScanDetector::new(cfg(50), 1024);
        let answers: Vec<_> = (0..100).map(|i| udp(i, 53, 40000 + i as u16)).collect();
        assert!(run(&mut d, &answers).is_empty());
        // nmap -sU: a high source port to the top ports, above 1024 too.
        let probes: Vec<_> = (0..50)
            .map(|i| udp(1000 + i, 45678, 1000 + i as u16 * 40))
            .collect();
        let f = run(&mut d, &probes);
        assert_eq!(f.len(), 1, "{f:?}");
        // A scan from source port 53 of the well-known ports counts too.
        let mut d = PortScanDetector::new(cfg(50), 1024);
        let probes: Vec<_> = (0..50).map(|i| udp(i, 53, i as u16 + 1)).collect();
        assert_eq!(run(&mut d, &probes).len(), 1);
    }

    #[test]
    fn memory_stays_bounded_under_random_sources() {
        let mut d = PortScanDetector::new(cfg(50), 4096);
        let mut out = Vec::new();
        for i in 0..200_000u32 {
            let mut r = syn(u64::from(i), 0, 2, 80);
            r.src_addr = map_ipv4([198, 18, (i >> 8) as u8, i as u8]);
            r.src_addr[11] = (i >> 16) as u8;
            d.observe(&r, FlowNote::first(&r), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(d.tracked().0, 4096);
        assert_eq!(d.tracked().1, 200_000 - 4096);
        // Windows that ended are forgotten.
        d.advance(100 * NS, &mut out);
        assert_eq!(d.tracked().0, 0);
    }
}
