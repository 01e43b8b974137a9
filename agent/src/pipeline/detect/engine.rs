//! Runs every detector over the sample stream and turns their findings
//! into incidents, dropping what the allowlist covers.

use agent_common::sample::SampleRecord;

use super::{
    Detector, DetectorKind, Finding, NS,
    config::DetectConfig,
    flood,
    incident::{AlertEvent, Incidents},
    scan::{PortScanDetector, SweepDetector},
    volume::{TopDestination, VolumeDetector},
};

/// Counters the metrics read after each batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineCounters {
    pub findings: [u64; DetectorKind::ALL.len()],
    pub allowlisted: [u64; DetectorKind::ALL.len()],
}

pub struct Engine {
    config: DetectConfig,
    detectors: Vec<Box<dyn Detector>>,
    volume: VolumeDetector,
    incidents: Incidents,
    findings: Vec<Finding>,
    counters: EngineCounters,
    last_advance: u64,
}

fn detectors(config: &DetectConfig) -> Vec<Box<dyn Detector>> {
    let n = config.tracked_keys;
    vec![
        Box::new(PortScanDetector::new(config.port_scan, n)),
        Box::new(PortScanDetector::slow(config.slow_port_scan, n)),
        Box::new(SweepDetector::new(config.sweep, n)),
        Box::new(flood::syn_flood(config)),
        Box::new(flood::amplification(config)),
        Box::new(flood::plain(&flood::ICMP_FLOOD, config.icmp_flood, config)),
        Box::new(flood::plain(
            &flood::FRAGMENT_FLOOD,
            config.fragment_flood,
            config,
        )),
        Box::new(flood::plain(&flood::EVASION, config.evasion, config)),
        Box::new(flood::plain(&flood::UDP_FLOOD, config.udp_flood, config)),
        Box::new(flood::plain(&flood::IP_FLOOD, config.ip_flood, config)),
        Box::new(flood::tcp_flood(config)),
    ]
}

/// How often (record time) incidents are checked for their end.
const INCIDENT_TICK: u64 = NS / 4;

impl Engine {
    pub fn new(config: DetectConfig) -> Engine {
        let incidents = Incidents::new(config.incidents);
        Self::with_incidents(config, incidents)
    }

    pub fn with_incidents(config: DetectConfig, incidents: Incidents) -> Engine {
        Engine {
            volume: VolumeDetector::new(&config),
            detectors: detectors(&config),
            incidents,
            findings: Vec::new(),
            counters: EngineCounters::default(),
            last_advance: 0,
            config,
        }
    }

    /// Takes a new configuration (config reload): detectors start over
    /// with the new thresholds (windows and learned baselines restart);
    /// open incidents, their ids and the counters carry on.
    pub fn reconfigure(&mut self, config: DetectConfig) {
        self.detectors = detectors(&config);
        self.volume = VolumeDetector::new(&config);
        self.incidents.set_config(config.incidents);
        self.config = config;
    }

    /// One sample; `new_flow` as the flow table said (see [`Detector`]).
    pub fn observe(&mut self, r: &SampleRecord, new_flow: bool, out: &mut Vec<AlertEvent>) {
        for d in &mut self.detectors {
            d.observe(r, new_flow, &mut self.findings);
        }
        self.volume.observe(r, new_flow, &mut self.findings);
        if !self.findings.is_empty() {
            self.settle(out);
        }
    }

    /// Record time reached `now_ns`: close windows, end quiet incidents.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<AlertEvent>) {
        for d in &mut self.detectors {
            d.advance(now_ns, &mut self.findings);
        }
        self.volume.advance(now_ns, &mut self.findings);
        self.settle(out);
        if now_ns >= self.last_advance.saturating_add(INCIDENT_TICK) {
            self.last_advance = now_ns;
            self.incidents.advance(now_ns, out);
        }
    }

    /// Ends every open incident (shutdown, end of input).
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<AlertEvent>) {
        self.advance(now_ns, out);
        self.incidents.end_all(now_ns, out);
    }

    fn settle(&mut self, out: &mut Vec<AlertEvent>) {
        for f in self.findings.drain(..) {
            let d = f.detector as usize;
            self.counters.findings[d] += 1;
            let allow = &self.config.allowlist;
            let src_ok = f.subject.source().is_some_and(|s| allow.allows_source(&s));
            let dst_ok = f
                .subject
                .destination()
                .is_some_and(|s| allow.allows_destination(&s));
            if src_ok || dst_ok {
                self.counters.allowlisted[d] += 1;
                continue;
            }
            self.incidents.on_finding(f, out);
        }
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    pub fn incidents(&self) -> &Incidents {
        &self.incidents
    }

    /// Keys held and evicted, per detector.
    pub fn tracked(&self) -> Vec<(DetectorKind, usize, u64)> {
        let mut v: Vec<_> = self
            .detectors
            .iter()
            .map(|d| {
                let (n, e) = d.tracked();
                (d.kind(), n, e)
            })
            .collect();
        let (n, e) = self.volume.tracked();
        v.push((DetectorKind::Volume, n, e));
        v
    }

    pub fn top_destinations(&self) -> &[TopDestination] {
        self.volume.top()
    }
}
