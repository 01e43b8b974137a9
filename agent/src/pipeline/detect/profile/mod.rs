//! The `baseline` detector: learned, multi-feature profiles per
//! interface, host group and busy destination. Each second every key's
//! features (rates, new flows, SYN share, distinct sources, entropies,
//! packet size, protocol shares) are scored against its profile in
//! standard deviations; a key off by more than `k` (and by a material
//! change, [`features::Feature::min_change`]) for two seconds running is
//! an anomaly whose finding names the features that deviated, their usual
//! value and band. `k` comes from the configured false-alarm target
//! per key, not from a floor, so small hosts are watched too.

pub mod features;
pub mod learned;
pub mod robust;
pub mod state;

use std::{collections::HashMap, hash::BuildHasher as _};

use agent_common::sample::SampleRecord;

use crate::pipeline::keyed::KeyedState;

use self::{
    features::{Feature, SecondCounts},
    learned::{ANOMALOUS_WEIGHT, Deviation, Profile, slot_of},
};
use super::{
    Addr, Detector, DetectorKind, Finding, FlowNote, NS, Subject, Unit,
    config::{DetectConfig, HostGroup, ProfileConfig},
    tracked::Tracked,
};

/// Interfaces watched at most (they come from the kernel, not from
/// packets; the bound is only a guard).
const MAX_INTERFACES: usize = 64;
/// Seconds a key must stay off its profile before it is reported.
const PERSIST: u32 = 2;

#[derive(Default)]
struct Watched {
    counts: SecondCounts,
    profile: Profile,
    streak: u32,
    /// The host group holding a destination, found once when it is first
    /// seen rather than for every sample.
    group: Option<u16>,
}

fn destination(groups: &[HostGroup], addr: &Addr) -> Watched {
    Watched {
        group: groups
            .iter()
            .position(|g| g.contains(addr))
            .map(|i| i as u16),
        ..Watched::default()
    }
}

/// A key's identity in the state file: stable across restarts and
/// configuration changes (groups by name, not position).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyName {
    Interface(u32),
    Group(String),
    Destination(std::net::IpAddr),
}

pub struct ProfileDetector {
    config: ProfileConfig,
    groups: Vec<HostGroup>,
    /// The score past which a second is anomalous.
    k: f64,
    interfaces: HashMap<u32, Watched>,
    group_state: Vec<Watched>,
    destinations: Tracked<Addr, Watched>,
    second: u64,
    /// Unix ns minus record-time ns, for the hour of day.
    unix_offset_ns: i128,
}

impl ProfileDetector {
    pub fn new(config: &DetectConfig) -> ProfileDetector {
        let c = config.baseline.clone();
        ProfileDetector {
            k: c.threshold_score(),
            config: c,
            groups: config.host_groups.clone(),
            interfaces: HashMap::new(),
            group_state: config
                .host_groups
                .iter()
                .map(|_| Watched::default())
                .collect(),
            destinations: Tracked::new(config.baseline.destinations.max(1)),
            second: 0,
            unix_offset_ns: 0,
        }
    }

    pub fn set_unix_offset_ns(&mut self, offset: i128) {
        self.unix_offset_ns = offset;
    }

    fn slot(&self, record_second: u64) -> usize {
        let unix = i128::from(record_second) + self.unix_offset_ns / i128::from(NS);
        slot_of(u64::try_from(unix).unwrap_or(0))
    }

    /// The usual pps of a destination and its band's upper edge.
    pub fn pps_band(&self, dst: &Addr) -> Option<(f64, f64)> {
        let slot = self.slot(self.second);
        self.destinations
            .get(dst)
            .and_then(|w| w.profile.band(Feature::Pps, slot, self.k))
    }

    fn close(&mut self, out: &mut Vec<Finding>) {
        let closing = self.second;
        let slot = self.slot(closing);
        let (k, warmup) = (self.k, self.config.warmup_seconds());
        let ts = (closing + 1) * NS;
        for (ifindex, w) in self.interfaces.iter_mut() {
            judge(w, Subject::Interface(*ifindex), slot, k, warmup, ts, out);
        }
        for (i, w) in self.group_state.iter_mut().enumerate() {
            judge(w, Subject::Group(i as u16), slot, k, warmup, ts, out);
        }
        for (addr, w) in self.destinations.iter_mut() {
            judge(w, Subject::Destination(*addr), slot, k, warmup, ts, out);
        }
        self.destinations.decay();
    }

    fn move_to(&mut self, second: u64, out: &mut Vec<Finding>) {
        if second > self.second {
            if self.second != 0 {
                self.close(out);
                // Seconds without any sample are zero traffic (a
                // collapse), judged one by one (at most a minute of them).
                let gap = (second - self.second - 1).min(60);
                for _ in 0..gap {
                    self.second += 1;
                    self.close(out);
                }
            }
            self.second = second;
        }
    }

    /// The learned state, for the state file.
    pub fn export(&self, group_names: &[String]) -> Vec<(KeyName, Profile)> {
        let mut v: Vec<(KeyName, Profile)> = self
            .interfaces
            .iter()
            .map(|(i, w)| (KeyName::Interface(*i), w.profile.clone()))
            .collect();
        for (i, w) in self.group_state.iter().enumerate() {
            if let Some(name) = group_names.get(i) {
                v.push((KeyName::Group(name.clone()), w.profile.clone()));
            }
        }
        for (a, w) in self.destinations.iter() {
            v.push((
                KeyName::Destination(super::display_addr(a)),
                w.profile.clone(),
            ));
        }
        v.retain(|(_, p)| p.is_warm());
        v
    }

    /// Takes learned state back (a state file read at start); returns
    /// how many keys were restored.
    pub fn restore(&mut self, keys: Vec<(KeyName, Profile)>, group_names: &[String]) -> usize {
        let mut n = 0;
        for (name, profile) in keys {
            let slot = match name {
                KeyName::Interface(i) => {
                    if self.interfaces.len() >= MAX_INTERFACES && !self.interfaces.contains_key(&i)
                    {
                        continue;
                    }
                    self.interfaces.entry(i).or_default()
                }
                KeyName::Group(g) => match group_names.iter().position(|n| *n == g) {
                    Some(i) => &mut self.group_state[i],
                    None => continue,
                },
                KeyName::Destination(ip) => {
                    let a = match ip {
                        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                        std::net::IpAddr::V6(v6) => v6.octets(),
                    };
                    let groups = &self.groups;
                    self.destinations.entry(a, || destination(groups, &a))
                }
            };
            slot.profile = profile;
            n += 1;
        }
        n
    }
}

/// Judges one closed second of `w`, reports it after [`PERSIST`] seconds
/// off its profile, learns from it, and starts the next second.
fn judge(
    w: &mut Watched,
    subject: Subject,
    slot: usize,
    k: f64,
    warmup: u32,
    ts_ns: u64,
    out: &mut Vec<Finding>,
) {
    let counts = std::mem::take(&mut w.counts);
    let features = counts.features();
    let mut weight = 1.0;
    if w.profile.is_warm() {
        let deviations = w.profile.judge(&features, slot, k);
        let off: Vec<Deviation> = deviations
            .into_iter()
            .filter(|d| d.material && d.score.abs() > k)
            .collect();
        if off.is_empty() {
            w.streak = 0;
        } else {
            weight = ANOMALOUS_WEIGHT;
            w.streak += 1;
            if w.streak >= PERSIST {
                out.push(finding(subject, ts_ns, k, off));
            }
        }
    }
    w.profile
        .learn(&features, counts.samples, slot, warmup, weight);
}

fn finding(subject: Subject, ts_ns: u64, k: f64, off: Vec<Deviation>) -> Finding {
    let worst = off[0];
    let reason = match (worst.feature.is_volume(), worst.score > 0.0) {
        (true, true) => "traffic above its learned profile",
        (true, false) => "traffic collapsed below its learned profile",
        (false, _) => "traffic changed in kind against its learned profile",
    };
    Finding {
        detector: DetectorKind::Baseline,
        subject,
        ts_ns,
        value: worst.score.abs(),
        unit: Unit::Sigma,
        limit: k,
        window_ns: NS,
        sample_rate: 0,
        distinct_sources: None,
        top_sources: Vec::new(),
        evidence: Vec::new(),
        reason,
        deviations: off,
        detail: None,
    }
}

impl Detector for ProfileDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Baseline
    }

    fn observe(&mut self, r: &SampleRecord, flow: FlowNote, out: &mut Vec<Finding>) {
        if r.ip_version == 0 {
            return;
        }
        self.move_to(r.timestamp_ns / NS, out);
        // Keyed per process: attackers choose these values.
        let src = KeyedState.hash_one(r.src_addr);
        let port = KeyedState.hash_one(r.dst_port);
        let room = self.interfaces.len() < MAX_INTERFACES;
        let interface = match self.interfaces.get_mut(&r.ifindex) {
            Some(w) => Some(w),
            None if room => Some(self.interfaces.entry(r.ifindex).or_default()),
            None => None,
        };
        if let Some(w) = interface {
            w.counts.add(r, flow.new_flow, src, port);
        }
        let groups = &self.groups;
        let d = self
            .destinations
            .entry(r.dst_addr, || destination(groups, &r.dst_addr));
        d.counts.add(r, flow.new_flow, src, port);
        if let Some(g) = d
            .group
            .and_then(|i| self.group_state.get_mut(usize::from(i)))
        {
            g.counts.add(r, flow.new_flow, src, port);
        }
    }

    fn advance(&mut self, now_ns: u64, out: &mut Vec<Finding>) {
        self.move_to(now_ns / NS, out);
    }

    fn tracked(&self) -> (usize, u64) {
        (
            self.destinations.len() + self.interfaces.len() + self.group_state.len(),
            self.destinations.evictions(),
        )
    }
}
