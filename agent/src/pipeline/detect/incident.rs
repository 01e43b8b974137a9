//! Incidents: findings about the same detector and subject are one
//! incident with a stable id, a start, periodic updates and an end after a
//! quiet period. Starts are rate-limited per detector and the number open
//! at once is capped; what is held back is counted, never silently lost.

use std::collections::HashMap;

use super::{DetectorKind, Evidence, Finding, NS, Severity, Subject, config::IncidentConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Start,
    Update,
    End,
}

impl Transition {
    pub fn label(self) -> &'static str {
        match self {
            Transition::Start => "start",
            Transition::Update => "update",
            Transition::End => "end",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub id: String,
    pub detector: DetectorKind,
    pub subject: Subject,
    pub started_ns: u64,
    pub last_seen_ns: u64,
    pub severity: Severity,
    /// The largest value any finding reported, in the latest's unit.
    pub peak: f64,
    pub findings: u64,
    /// The latest finding: value, limit, band, window, sampling.
    pub latest: Finding,
    /// The first sample packets seen, then the latest.
    pub evidence: Vec<Evidence>,
    last_report_ns: u64,
}

/// An incident as it changed, for the alert sinks.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEvent {
    pub transition: Transition,
    /// Record time of the change.
    pub ts_ns: u64,
    pub incident: Incident,
}

type Key = (DetectorKind, Subject);

pub struct Incidents {
    config: IncidentConfig,
    active: HashMap<Key, Incident>,
    /// Per detector: the minute (of record time) and starts in it.
    starts: [(u64, u32); DetectorKind::ALL.len()],
    suppressed: [u64; DetectorKind::ALL.len()],
    new_id: Box<dyn FnMut() -> String + Send>,
}

impl Incidents {
    pub fn new(config: IncidentConfig) -> Incidents {
        Self::with_ids(config, Box::new(|| uuid::Uuid::new_v4().to_string()))
    }

    /// With a chosen id source (tests, reproducible offline reports).
    pub fn with_ids(
        config: IncidentConfig,
        new_id: Box<dyn FnMut() -> String + Send>,
    ) -> Incidents {
        Incidents {
            config,
            active: HashMap::new(),
            starts: [(u64::MAX, 0); DetectorKind::ALL.len()],
            suppressed: [0; DetectorKind::ALL.len()],
            new_id,
        }
    }

    /// New timing and limits; open incidents stay open.
    pub fn set_config(&mut self, config: IncidentConfig) {
        self.config = config;
    }

    pub fn on_finding(&mut self, f: Finding, out: &mut Vec<AlertEvent>) {
        let key = (f.detector, f.subject);
        let update_ns = self.config.update_ns();
        let keep = self.config.evidence;
        if let Some(inc) = self.active.get_mut(&key) {
            let escalated = f.severity() > inc.severity;
            inc.severity = inc.severity.max(f.severity());
            inc.peak = inc.peak.max(f.value);
            inc.last_seen_ns = inc.last_seen_ns.max(f.ts_ns);
            inc.findings += 1;
            merge_evidence(&mut inc.evidence, &f.evidence, keep);
            inc.latest = f;
            if escalated || inc.last_seen_ns >= inc.last_report_ns.saturating_add(update_ns) {
                inc.last_report_ns = inc.last_seen_ns;
                out.push(AlertEvent {
                    transition: Transition::Update,
                    ts_ns: inc.last_seen_ns,
                    incident: inc.clone(),
                });
            }
            return;
        }
        let d = f.detector as usize;
        let minute = f.ts_ns / (60 * NS);
        let (m, n) = &mut self.starts[d];
        if *m != minute {
            *m = minute;
            *n = 0;
        }
        if *n >= self.config.max_starts_per_minute || self.active.len() >= self.config.max_active {
            self.suppressed[d] += 1;
            return;
        }
        *n += 1;
        let mut evidence = f.evidence.clone();
        evidence.truncate(keep);
        let inc = Incident {
            id: (self.new_id)(),
            detector: f.detector,
            subject: f.subject,
            started_ns: f.ts_ns,
            last_seen_ns: f.ts_ns,
            severity: f.severity(),
            peak: f.value,
            findings: 1,
            evidence,
            last_report_ns: f.ts_ns,
            latest: f,
        };
        out.push(AlertEvent {
            transition: Transition::Start,
            ts_ns: inc.started_ns,
            incident: inc.clone(),
        });
        self.active.insert(key, inc);
    }

    /// Ends incidents quiet since `now_ns - quiet`.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<AlertEvent>) {
        let quiet = self.config.quiet_ns();
        self.active.retain(|_, inc| {
            if now_ns < inc.last_seen_ns.saturating_add(quiet) {
                return true;
            }
            out.push(AlertEvent {
                transition: Transition::End,
                ts_ns: now_ns,
                incident: inc.clone(),
            });
            false
        });
    }

    /// Ends every open incident (shutdown, end of a capture file).
    pub fn end_all(&mut self, now_ns: u64, out: &mut Vec<AlertEvent>) {
        for (_, inc) in self.active.drain() {
            out.push(AlertEvent {
                transition: Transition::End,
                ts_ns: now_ns.max(inc.last_seen_ns),
                incident: inc,
            });
        }
    }

    pub fn active_count(&self, d: DetectorKind) -> usize {
        self.active.keys().filter(|k| k.0 == d).count()
    }

    pub fn suppressed(&self, d: DetectorKind) -> u64 {
        self.suppressed[d as usize]
    }
}

/// Keeps the first `keep - 1` samples and the newest one.
fn merge_evidence(into: &mut Vec<Evidence>, new: &[Evidence], keep: usize) {
    if keep == 0 {
        into.clear();
        return;
    }
    for e in new {
        if into.contains(e) {
            continue;
        }
        if into.len() < keep {
            into.push(*e);
        } else if let Some(last) = into.last_mut() {
            *last = *e;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_common::sample::map_ipv4;

    use super::*;
    use crate::pipeline::detect::Unit;

    fn cfg() -> IncidentConfig {
        IncidentConfig {
            quiet: Duration::from_secs(5),
            update: Duration::from_secs(10),
            max_active: 3,
            max_starts_per_minute: 100,
            evidence: 2,
        }
    }

    fn incidents(c: IncidentConfig) -> Incidents {
        let mut n = 0;
        Incidents::with_ids(
            c,
            Box::new(move || {
                n += 1;
                format!("id-{n}")
            }),
        )
    }

    fn finding(dst: u8, ts_s: u64, value: f64) -> Finding {
        Finding {
            detector: DetectorKind::SynFlood,
            subject: Subject::Destination(map_ipv4([198, 18, 0, dst])),
            ts_ns: ts_s * NS,
            value,
            unit: Unit::PacketsPerSecond,
            limit: 1000.0,
            baseline: None,
            window_ns: NS,
            sample_rate: 1,
            distinct_sources: Some(500),
            top_sources: vec![],
            evidence: vec![],
            reason: "test",
        }
    }

    fn transitions(ev: &[AlertEvent]) -> Vec<(Transition, String, u64)> {
        ev.iter()
            .map(|e| (e.transition, e.incident.id.clone(), e.ts_ns / NS))
            .collect()
    }

    #[test]
    fn one_incident_per_attack_with_updates_and_an_end() {
        let mut inc = incidents(cfg());
        let mut out = Vec::new();
        for s in 100..=125 {
            inc.on_finding(finding(1, s, 2000.0), &mut out);
            inc.advance(s * NS, &mut out);
        }
        inc.advance(129 * NS, &mut out);
        assert_eq!(out.len(), 3, "{:?}", transitions(&out));
        inc.advance(130 * NS, &mut out);
        let t = transitions(&out);
        assert_eq!(
            t,
            vec![
                (Transition::Start, "id-1".into(), 100),
                (Transition::Update, "id-1".into(), 110),
                (Transition::Update, "id-1".into(), 120),
                (Transition::End, "id-1".into(), 130),
            ]
        );
        assert_eq!(out[3].incident.findings, 26);
        // A new attack on the same host after the end is a new incident.
        inc.on_finding(finding(1, 200, 2000.0), &mut out);
        assert_eq!(out[4].transition, Transition::Start);
        assert_eq!(out[4].incident.id, "id-2");
    }

    #[test]
    fn escalation_is_reported_at_once_and_peak_kept() {
        let mut inc = incidents(cfg());
        let mut out = Vec::new();
        inc.on_finding(finding(1, 10, 1500.0), &mut out);
        inc.on_finding(finding(1, 11, 1200.0), &mut out);
        assert_eq!(out.len(), 1);
        inc.on_finding(finding(1, 12, 5000.0), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].transition, Transition::Update);
        assert_eq!(out[1].incident.severity, Severity::High);
        assert_eq!(out[1].incident.peak, 5000.0);
    }

    #[test]
    fn caps_and_rate_limits_are_counted() {
        let mut inc = incidents(cfg());
        let mut out = Vec::new();
        for d in 1..=5 {
            inc.on_finding(finding(d, 10, 2000.0), &mut out);
        }
        assert_eq!(out.len(), 3);
        assert_eq!(inc.active_count(DetectorKind::SynFlood), 3);
        assert_eq!(inc.suppressed(DetectorKind::SynFlood), 2);

        let mut inc = incidents(IncidentConfig {
            max_starts_per_minute: 2,
            max_active: 100,
            ..cfg()
        });
        let mut out = Vec::new();
        for d in 1..=4 {
            inc.on_finding(finding(d, 60, 2000.0), &mut out);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(inc.suppressed(DetectorKind::SynFlood), 2);
        // The next minute admits new starts again.
        inc.on_finding(finding(9, 120, 2000.0), &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn evidence_keeps_first_and_latest() {
        let mut v = Vec::new();
        let e = |ts| Evidence {
            ts_ns: ts,
            src: [0; 16],
            dst: [0; 16],
            src_port: 0,
            dst_port: 0,
            proto: 6,
            tcp_flags: 2,
            frame_len: 60,
            ttl: 64,
            sample_rate: 1,
        };
        merge_evidence(&mut v, &[e(1), e(2)], 3);
        merge_evidence(&mut v, &[e(2), e(3), e(4)], 3);
        let ts: Vec<u64> = v.iter().map(|e| e.ts_ns).collect();
        assert_eq!(ts, vec![1, 2, 4]);
    }
}
