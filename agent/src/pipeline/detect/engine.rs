//! Runs every detector over the sample stream and turns their findings
//! into incidents, dropping what the allowlist covers.

use agent_common::sample::SampleRecord;

use super::{
    Detector, DetectorKind, Finding, FlowNote, NS,
    config::DetectConfig,
    flood,
    incident::{AlertEvent, Incidents},
    profile::{
        KeyName, ProfileDetector,
        learned::Profile,
        state::{self, StateError},
    },
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
    /// Learned profiles (none when `[detect.baseline] enabled = false`).
    profile: Option<ProfileDetector>,
    /// Unix ns minus record-time ns, kept across reconfiguration.
    unix_offset_ns: i128,
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
            profile: config
                .baseline
                .enabled
                .then(|| ProfileDetector::new(&config)),
            unix_offset_ns: 0,
            detectors: detectors(&config),
            incidents,
            findings: Vec::new(),
            counters: EngineCounters::default(),
            last_advance: 0,
            config,
        }
    }

    /// Record time to Unix time, for the hour-of-day profiles: 0 when
    /// records carry Unix time (capture files), the monotonic clock's
    /// offset live.
    pub fn set_unix_offset_ns(&mut self, offset: i128) {
        self.unix_offset_ns = offset;
        if let Some(p) = &mut self.profile {
            p.set_unix_offset_ns(offset);
        }
    }

    /// Takes a new configuration (config reload): detectors start over
    /// with the new thresholds (windows restart); learned profiles carry
    /// over (unless turned off), as do open incidents, their ids and the
    /// counters.
    pub fn reconfigure(&mut self, config: DetectConfig) {
        let learned = self.export_profiles();
        self.detectors = detectors(&config);
        self.volume = VolumeDetector::new(&config);
        self.profile = config
            .baseline
            .enabled
            .then(|| ProfileDetector::new(&config));
        self.set_unix_offset_ns(self.unix_offset_ns);
        self.incidents.set_config(config.incidents);
        self.config = config;
        self.restore_profiles(learned);
    }

    /// One sample, with what the flow table said about it (see
    /// [`Detector`]).
    pub fn observe(&mut self, r: &SampleRecord, flow: FlowNote, out: &mut Vec<AlertEvent>) {
        for d in &mut self.detectors {
            d.observe(r, flow, &mut self.findings);
        }
        self.volume.observe(r, flow, &mut self.findings);
        if let Some(p) = &mut self.profile {
            p.observe(r, flow, &mut self.findings);
        }
        if !self.findings.is_empty() {
            self.settle(out);
        }
    }

    /// Findings from outside the sample stream (the application step's
    /// DNS and TLS detectors), in record time.
    pub fn accept(&mut self, findings: Vec<Finding>, out: &mut Vec<AlertEvent>) {
        self.findings.extend(findings);
        self.settle(out);
    }

    /// Record time reached `now_ns`: close windows, end quiet incidents.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<AlertEvent>) {
        for d in &mut self.detectors {
            d.advance(now_ns, &mut self.findings);
        }
        self.volume.advance(now_ns, &mut self.findings);
        if let Some(p) = &mut self.profile {
            p.advance(now_ns, &mut self.findings);
        }
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
        if let Some(p) = &self.profile {
            let (n, e) = p.tracked();
            v.push((DetectorKind::Baseline, n, e));
        }
        v
    }

    /// The heaviest destinations of the last second, with their learned
    /// band where they have a warm profile.
    pub fn top_destinations(&self) -> Vec<TopDestination> {
        let mut top = self.volume.top().to_vec();
        if let Some(p) = &self.profile {
            for t in &mut top {
                t.pps_band = p
                    .pps_band(&t.addr)
                    .map(|(usual, upper)| super::finding::Band { usual, upper });
            }
        }
        top
    }

    /// Every warm learned profile, for the state file.
    pub fn export_profiles(&self) -> Vec<(KeyName, Profile)> {
        self.profile
            .as_ref()
            .map(|p| p.export(&self.config.group_names()))
            .unwrap_or_default()
    }

    /// Takes learned profiles back (a state file); returns how many keys
    /// were restored (none when profiles are off).
    pub fn restore_profiles(&mut self, keys: Vec<(KeyName, Profile)>) -> usize {
        let groups = self.config.group_names();
        self.profile
            .as_mut()
            .map_or(0, |p| p.restore(keys, &groups))
    }

    /// Reads learned profiles from a state file written by
    /// [`save_profiles`](Self::save_profiles); `Ok(None)` when there is no
    /// file yet.
    pub fn load_profiles(&mut self, path: &std::path::Path) -> Result<Option<usize>, StateError> {
        Ok(state::read(path)?.map(|keys| self.restore_profiles(keys)))
    }

    /// Writes every warm profile to `path` atomically; returns the keys
    /// written.
    pub fn save_profiles(&self, path: &std::path::Path) -> Result<usize, StateError> {
        let keys = self.export_profiles();
        let n = keys.len();
        state::write(path, keys)?;
        Ok(n)
    }
}
