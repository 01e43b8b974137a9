//! Incidents: findings about the same detector and subject are one
//! incident with a stable id, a start, periodic updates and an end after a
//! quiet period. Starts are budgeted per detector and target (so decoys
//! elsewhere cannot spend a victim's budget), and a target over its
//! budget raises a `suppression` incident of its own. The number open at
//! once is capped: when full, a new incident displaces the least severe,
//! oldest one if it is at least as severe, so a flood is never kept out
//! by a crowd of cheap scans. What is held back is counted, never
//! silently lost.

use std::collections::{BTreeMap, HashMap};

use super::{
    DetectorKind, Evidence, Finding, NS, Severity, Subject, Unit,
    budget::{self, Spend, StartBudgets},
    config::IncidentConfig,
};

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
    /// Its place in the displacement order (see [`Rank`]).
    rank: Rank,
}

/// Which incident goes first when the cap is reached: the least severe,
/// then the oldest; `seq` makes ranks unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    severity: Severity,
    started_ns: u64,
    seq: u64,
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
    /// The open incidents in displacement order.
    ranks: BTreeMap<Rank, Key>,
    next_seq: u64,
    budgets: StartBudgets,
    suppressed: [u64; DetectorKind::ALL.len()],
    displaced: [u64; DetectorKind::ALL.len()],
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
            ranks: BTreeMap::new(),
            next_seq: 0,
            budgets: StartBudgets::new(config.max_starts_per_minute),
            suppressed: [0; DetectorKind::ALL.len()],
            displaced: [0; DetectorKind::ALL.len()],
            new_id,
        }
    }

    /// New timing and limits; open incidents stay open.
    pub fn set_config(&mut self, config: IncidentConfig) {
        self.budgets.set_per_minute(config.max_starts_per_minute);
        self.config = config;
    }

    pub fn on_finding(&mut self, f: Finding, out: &mut Vec<AlertEvent>) {
        let Some(f) = self.update(f, out) else {
            return;
        };
        let target = budget::target(&f.subject);
        match self.budgets.spend(f.detector, target, f.ts_ns) {
            Spend::Start => self.open(f, out),
            Spend::HeldBack(held_back) => {
                self.suppressed[f.detector as usize] += 1;
                let notice = self.suppression(&f, target, held_back);
                if let Some(notice) = self.update(notice, out) {
                    self.open(notice, out);
                }
            }
        }
    }

    /// Adds `f` to its open incident; hands it back when there is none.
    fn update(&mut self, f: Finding, out: &mut Vec<AlertEvent>) -> Option<Finding> {
        let update_ns = self.config.update_ns();
        let keep = self.config.evidence;
        let Some(inc) = self.active.get_mut(&(f.detector, f.subject)) else {
            return Some(f);
        };
        let escalated = f.severity() > inc.severity;
        if escalated {
            self.ranks.remove(&inc.rank);
            inc.severity = f.severity();
            inc.rank.severity = inc.severity;
            self.ranks.insert(inc.rank, (f.detector, f.subject));
        }
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
        None
    }

    /// The finding that opens or updates `target`'s suppression incident.
    fn suppression(&self, held: &Finding, target: Subject, held_back: u32) -> Finding {
        Finding {
            detector: DetectorKind::Suppression,
            subject: target,
            ts_ns: held.ts_ns,
            value: f64::from(held_back),
            unit: Unit::HeldBackPerMinute,
            limit: f64::from(self.budgets.per_minute()),
            window_ns: 60 * NS,
            sample_rate: held.sample_rate,
            distinct_sources: None,
            top_sources: held.top_sources.clone(),
            evidence: held.evidence.clone(),
            reason: "more new incidents for this target than its budget allows; \
                     see nta_incidents_suppressed_total by detector",
            deviations: Vec::new(),
            detail: None,
        }
    }

    /// Opens an incident for `f`, making room if the cap is reached.
    fn open(&mut self, f: Finding, out: &mut Vec<AlertEvent>) {
        let severity = f.severity();
        if !self.make_room(severity, f.ts_ns, out) {
            self.suppressed[f.detector as usize] += 1;
            return;
        }
        let keep = self.config.evidence;
        let mut evidence = f.evidence.clone();
        evidence.truncate(keep);
        let rank = Rank {
            severity,
            started_ns: f.ts_ns,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let key = (f.detector, f.subject);
        let inc = Incident {
            id: (self.new_id)(),
            detector: f.detector,
            subject: f.subject,
            started_ns: f.ts_ns,
            last_seen_ns: f.ts_ns,
            severity,
            peak: f.value,
            findings: 1,
            evidence,
            last_report_ns: f.ts_ns,
            rank,
            latest: f,
        };
        out.push(AlertEvent {
            transition: Transition::Start,
            ts_ns: inc.started_ns,
            incident: inc.clone(),
        });
        self.ranks.insert(rank, key);
        self.active.insert(key, inc);
    }

    /// Below the cap, or made so by ending the least severe, oldest
    /// incident when it is no more severe than the newcomer.
    fn make_room(&mut self, severity: Severity, now_ns: u64, out: &mut Vec<AlertEvent>) -> bool {
        if self.active.len() < self.config.max_active {
            return true;
        }
        let Some((&rank, &key)) = self.ranks.iter().next() else {
            return false;
        };
        if rank.severity > severity {
            return false;
        }
        self.ranks.remove(&rank);
        if let Some(inc) = self.active.remove(&key) {
            self.displaced[key.0 as usize] += 1;
            out.push(AlertEvent {
                transition: Transition::End,
                ts_ns: now_ns.max(inc.last_seen_ns),
                incident: inc,
            });
        }
        true
    }

    /// Ends incidents quiet since `now_ns - quiet`.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<AlertEvent>) {
        let quiet = self.config.quiet_ns();
        let ranks = &mut self.ranks;
        self.active.retain(|_, inc| {
            if now_ns < inc.last_seen_ns.saturating_add(quiet) {
                return true;
            }
            ranks.remove(&inc.rank);
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
        self.ranks.clear();
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

    /// Incidents of detector `d` ended early to make room for a new one at
    /// least as severe.
    pub fn displaced(&self, d: DetectorKind) -> u64 {
        self.displaced[d as usize]
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
            window_ns: NS,
            sample_rate: 1,
            distinct_sources: Some(500),
            top_sources: vec![],
            evidence: vec![],
            reason: "test",
            deviations: Vec::new(),
            detail: None,
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

    fn scan(src: u8, dst: u8, ts_s: u64) -> Finding {
        Finding {
            detector: DetectorKind::PortScan,
            subject: Subject::Pair {
                src: map_ipv4([198, 19, 0, src]),
                dst: map_ipv4([198, 18, 0, dst]),
            },
            value: 50.0,
            limit: 50.0,
            unit: Unit::DistinctPorts,
            ..finding(dst, ts_s, 0.0)
        }
    }

    #[test]
    fn budgets_are_per_target_and_decoys_cannot_spend_a_victims() {
        let mut inc = incidents(IncidentConfig {
            max_starts_per_minute: 2,
            max_active: 100,
            ..cfg()
        });
        let mut out = Vec::new();
        // Forty spoofed scans of forty other hosts in one minute.
        for d in 100..140 {
            inc.on_finding(scan(d, d, 60), &mut out);
        }
        assert_eq!(out.len(), 40, "each decoy target has its own budget");
        // The real scan of the victim still starts.
        inc.on_finding(scan(7, 1, 61), &mut out);
        assert_eq!(out.len(), 41);
        assert_eq!(out[40].incident.subject, scan(7, 1, 61).subject);
        assert_eq!(inc.suppressed(DetectorKind::PortScan), 0);
    }

    #[test]
    fn a_target_over_its_budget_raises_one_suppression_incident() {
        let mut inc = incidents(IncidentConfig {
            max_starts_per_minute: 2,
            max_active: 100,
            ..cfg()
        });
        let mut out = Vec::new();
        // Six spoofed scanners of host 1 in one minute: two start, four
        // are held back and raise one suppression incident for host 1.
        for src in 1..=6 {
            inc.on_finding(scan(src, 1, 60 + u64::from(src)), &mut out);
        }
        assert_eq!(inc.suppressed(DetectorKind::PortScan), 4);
        let kinds: Vec<_> = out
            .iter()
            .map(|e| (e.transition, e.incident.detector))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Transition::Start, DetectorKind::PortScan),
                (Transition::Start, DetectorKind::PortScan),
                (Transition::Start, DetectorKind::Suppression),
            ]
        );
        let s = &out[2].incident;
        assert_eq!(s.subject, Subject::Destination(map_ipv4([198, 18, 0, 1])));
        assert_eq!((s.latest.value, s.latest.limit), (1.0, 2.0));
        assert_eq!(s.latest.unit, Unit::HeldBackPerMinute);
        assert!(s.latest.reason.contains("budget"), "{}", s.latest.reason);
        // A SYN flood on the same host is another budget: it starts.
        inc.on_finding(finding(1, 66, 2000.0), &mut out);
        assert_eq!(out[3].transition, Transition::Start);
        assert_eq!(out[3].incident.detector, DetectorKind::SynFlood);
        // The next minute admits new scans of host 1 again.
        inc.on_finding(scan(9, 1, 120), &mut out);
        assert_eq!(out[4].incident.detector, DetectorKind::PortScan);
        // The suppression incident gathered all four held-back starts.
        let mut end = Vec::new();
        inc.end_all(130 * NS, &mut end);
        let s = end
            .iter()
            .find(|e| e.incident.detector == DetectorKind::Suppression)
            .map(|e| &e.incident);
        assert_eq!(s.map(|s| (s.findings, s.peak)), Some((4, 4.0)));
    }

    #[test]
    fn at_the_cap_a_flood_displaces_the_oldest_scan() {
        let mut inc = incidents(cfg());
        let mut out = Vec::new();
        for d in 1..=3 {
            inc.on_finding(scan(d, d, 10 + u64::from(d)), &mut out);
        }
        assert_eq!(inc.active_count(DetectorKind::PortScan), 3);
        // Full with low-severity scans: a medium flood takes the place of
        // the oldest one, which ends.
        inc.on_finding(finding(9, 20, 2000.0), &mut out);
        let t: Vec<_> = out[3..]
            .iter()
            .map(|e| (e.transition, e.incident.detector, e.ts_ns / NS))
            .collect();
        assert_eq!(
            t,
            vec![
                (Transition::End, DetectorKind::PortScan, 20),
                (Transition::Start, DetectorKind::SynFlood, 20),
            ]
        );
        assert_eq!(out[3].incident.subject, scan(1, 1, 0).subject);
        assert_eq!(inc.displaced(DetectorKind::PortScan), 1);
        assert_eq!(inc.active_count(DetectorKind::PortScan), 2);
        // Full with floods and scans: a scan displaces the oldest scan,
        // never a flood.
        inc.on_finding(scan(4, 4, 21), &mut out);
        assert_eq!(inc.displaced(DetectorKind::PortScan), 2);
        assert_eq!(inc.active_count(DetectorKind::SynFlood), 1);
        // Only floods left above a scan: a new scan is suppressed.
        inc.on_finding(finding(10, 22, 2000.0), &mut out);
        inc.on_finding(finding(11, 23, 2000.0), &mut out);
        assert_eq!(inc.active_count(DetectorKind::SynFlood), 3);
        inc.on_finding(scan(5, 5, 24), &mut out);
        assert_eq!(inc.suppressed(DetectorKind::PortScan), 1);
        assert_eq!(inc.active_count(DetectorKind::PortScan), 0);
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
