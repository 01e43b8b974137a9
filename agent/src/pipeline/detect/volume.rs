//! Volume per destination and per host group: packets and bits per
//! second against static thresholds, judged per closed second (the
//! learned side is the `baseline` detector, [`super::profile`]). It also
//! keeps the heaviest destinations of the last second for the metrics.
//! Destinations are tracked in a bounded map that keeps the heavy ones,
//! so a random-destination flood cannot grow memory.

use agent_common::sample::SampleRecord;

use super::{
    Addr, Detector, DetectorKind, Finding, FlowNote, NS, Subject, Unit,
    config::{DetectConfig, HostGroup, VolumeConfig},
    finding::Band,
    tracked::Tracked,
    window::{RateWindow, second_of},
};

/// A tracked destination's current rate and learned band, for metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TopDestination {
    pub addr: Addr,
    pub pps: f64,
    pub bps: f64,
    pub pps_band: Option<Band>,
}

#[derive(Default)]
struct Watched {
    window: RateWindow,
    /// Index of the host group holding this destination.
    group: Option<u16>,
}

pub struct VolumeDetector {
    config: VolumeConfig,
    groups: Vec<HostGroup>,
    destinations: Tracked<Addr, Watched>,
    group_state: Vec<Watched>,
    second: u64,
    top: Vec<TopDestination>,
}

impl VolumeDetector {
    pub fn new(config: &DetectConfig) -> VolumeDetector {
        VolumeDetector {
            config: config.volume,
            groups: config.host_groups.clone(),
            destinations: Tracked::new(config.tracked_keys),
            group_state: config
                .host_groups
                .iter()
                .enumerate()
                .map(|(i, _)| Watched {
                    group: Some(i as u16),
                    ..Default::default()
                })
                .collect(),
            second: 0,
            top: Vec::new(),
        }
    }

    /// The heaviest destinations of the last closed second, heaviest first
    /// (their band is the engine's to add, from the learned profiles).
    pub fn top(&self) -> &[TopDestination] {
        &self.top
    }

    fn close(&mut self, out: &mut Vec<Finding>) {
        let closing = self.second;
        let mut top = Vec::with_capacity(self.destinations.len());
        for (addr, w) in self.destinations.iter_mut() {
            let (static_pps, static_bps) = static_limits(&self.config, &self.groups, w.group);
            judge(
                w,
                Subject::Destination(*addr),
                closing,
                (static_pps, static_bps),
                out,
            );
            if w.window.second == closing {
                top.push(TopDestination {
                    addr: *addr,
                    pps: w.window.packets as f64,
                    bps: w.window.bytes as f64 * 8.0,
                    pps_band: None,
                });
            }
        }
        for (i, w) in self.group_state.iter_mut().enumerate() {
            let g = &self.groups[i];
            judge(w, Subject::Group(i as u16), closing, (g.pps, g.bps), out);
        }
        self.destinations.decay();
        let n = self.config.top_metrics;
        if top.len() > n {
            top.select_nth_unstable_by(n, |a, b| b.pps.total_cmp(&a.pps));
            top.truncate(n);
        }
        top.sort_by(|a, b| b.pps.total_cmp(&a.pps));
        self.top = top;
    }

    fn move_to(&mut self, second: u64, out: &mut Vec<Finding>) {
        if second > self.second {
            if self.second != 0 {
                self.close(out);
            }
            self.second = second;
        }
    }
}

fn static_limits(
    c: &VolumeConfig,
    groups: &[HostGroup],
    group: Option<u16>,
) -> (Option<f64>, Option<f64>) {
    let g = group.and_then(|i| groups.get(i as usize));
    (
        g.and_then(|g| g.pps).or(c.pps),
        g.and_then(|g| g.bps).or(c.bps),
    )
}

/// Judges one closed second of `w` against the static thresholds.
fn judge(
    w: &Watched,
    subject: Subject,
    closing: u64,
    (static_pps, static_bps): (Option<f64>, Option<f64>),
    out: &mut Vec<Finding>,
) {
    if w.window.second != closing {
        return;
    }
    let pps = w.window.packets as f64;
    let bps = w.window.bytes as f64 * 8.0;
    let checks = [
        (pps, Unit::PacketsPerSecond, static_pps),
        (bps, Unit::BitsPerSecond, static_bps),
    ];
    // One finding per second: packets first, then bits.
    if let Some((value, unit, limit)) = checks
        .into_iter()
        .find_map(|(v, u, l)| l.filter(|l| v >= *l).map(|l| (v, u, l)))
    {
        out.push(Finding {
            detector: DetectorKind::Volume,
            subject,
            ts_ns: (closing + 1) * NS,
            value,
            unit,
            limit,
            window_ns: NS,
            sample_rate: w.window.witness.max_rate,
            distinct_sources: None,
            top_sources: w.window.witness.top_sources.to_vec(),
            evidence: w.window.witness.evidence.to_vec(),
            reason: "static threshold",
            deviations: Vec::new(),
            detail: None,
        });
    }
}

impl Detector for VolumeDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Volume
    }

    fn observe(&mut self, r: &SampleRecord, _flow: FlowNote, out: &mut Vec<Finding>) {
        if r.ip_version == 0 {
            return;
        }
        self.move_to(second_of(r.timestamp_ns), out);
        let second = self.second;
        let groups = &self.groups;
        let w = self.destinations.entry(r.dst_addr, || Watched {
            group: groups
                .iter()
                .position(|g| g.contains(&r.dst_addr))
                .map(|i| i as u16),
            ..Default::default()
        });
        w.window.roll(second);
        w.window.add(r);
        if let Some(g) = w.group.and_then(|i| self.group_state.get_mut(i as usize)) {
            g.window.roll(second);
            g.window.add(r);
        }
    }

    fn advance(&mut self, now_ns: u64, out: &mut Vec<Finding>) {
        self.move_to(second_of(now_ns), out);
    }

    fn tracked(&self) -> (usize, u64) {
        (self.destinations.len(), self.destinations.evictions())
    }
}
