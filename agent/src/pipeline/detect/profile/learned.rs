//! One key's learned profile: robust statistics of every feature over all
//! time, and per hour of the day (UTC) for weekdays and for weekends, so a
//! sensor that runs long learns its daily rhythm. Judging reads the hour's
//! statistics once that hour has been learned for a while, the overall
//! ones until then.

use serde::{Deserialize, Serialize};

use super::{
    features::{Feature, Scale},
    robust::{Robust, transform, untransform},
};

/// How much an anomalous second teaches: a lasting change (a new
/// service) is absorbed within hours, an attack of minutes barely counts.
pub const ANOMALOUS_WEIGHT: f64 = 0.05;

/// Hour-of-day slots: 24 for weekdays, 24 for weekends.
pub const SLOTS: usize = 48;
/// Seconds an hour slot must have learned before it judges (ten minutes,
/// so one quiet day does not make an hour).
const SLOT_READY: u32 = 600;

/// The slot of a Unix time: weekday or weekend, hour (UTC).
pub fn slot_of(unix_s: u64) -> usize {
    let days = unix_s / 86_400;
    // 1970-01-01 was a Thursday: (days + 3) % 7 is 0 on Mondays.
    let weekend = (days + 3) % 7 >= 5;
    let hour = (unix_s % 86_400 / 3600) as usize;
    usize::from(weekend) * 24 + hour
}

type Stats = [Robust; Feature::COUNT];

/// One feature off its profile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deviation {
    pub feature: Feature,
    pub value: f64,
    /// The usual value (the median) and the band judged against.
    pub usual: f64,
    pub low: f64,
    pub high: f64,
    /// Standard deviations off (negative: below).
    pub score: f64,
    /// The change is at least the feature's [`Feature::min_change`].
    pub material: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    overall: Stats,
    /// Samples a second, learned in log space: the noise floor.
    samples: Robust,
    slots: Vec<Stats>,
    /// Seconds seen during warm-up, until it ends (not persisted).
    #[serde(skip)]
    warmup: Vec<([Option<f64>; Feature::COUNT], u32)>,
    warm: bool,
}

impl Profile {
    pub fn is_warm(&self) -> bool {
        self.warm
    }

    /// Learns a second at `weight` (1 normal, less when anomalous, so a
    /// lasting change is absorbed in hours while an attack of minutes
    /// barely moves the profile). During warm-up normal seconds are kept,
    /// and the statistics are seeded exactly from them at its end.
    pub fn learn(
        &mut self,
        features: &[Option<f64>; Feature::COUNT],
        samples: u32,
        slot: usize,
        warmup_seconds: u32,
        weight: f64,
    ) {
        if !self.warm {
            if weight < 1.0 {
                return;
            }
            self.warmup.push((*features, samples));
            if self.warmup.len() as u32 >= warmup_seconds.max(1) {
                self.seed();
            }
            return;
        }
        let floors = self.floors();
        self.samples
            .learn(transform(Feature::Pps, f64::from(samples)), 0.05, weight);
        if self.slots.len() != SLOTS {
            self.slots = vec![self.overall; SLOTS];
            for s in &mut self.slots {
                s.iter_mut().for_each(|r| r.seen = 0);
            }
        }
        for f in Feature::ALL {
            let Some(x) = features[f as usize] else {
                continue;
            };
            let y = transform(f, x);
            self.overall[f as usize].learn(y, floors[f as usize], weight);
            if let Some(s) = self.slots.get_mut(slot) {
                s[f as usize].learn(y, floors[f as usize], weight);
            }
        }
    }

    fn seed(&mut self) {
        let seconds = std::mem::take(&mut self.warmup);
        let mut samples: Vec<f64> = seconds
            .iter()
            .map(|(_, n)| transform(Feature::Pps, f64::from(*n)))
            .collect();
        self.samples = Robust::seeded(&mut samples);
        for f in Feature::ALL {
            let mut v: Vec<f64> = seconds
                .iter()
                .filter_map(|(x, _)| x[f as usize].map(|x| transform(f, x)))
                .collect();
            self.overall[f as usize] = Robust::seeded(&mut v);
        }
        self.warm = true;
    }

    /// The noise floor of each feature's spread, from how many samples a
    /// second this key usually has: estimates from few samples are noisy,
    /// and a learned spread of zero must not make every wobble an anomaly.
    fn floors(&self) -> [f64; Feature::COUNT] {
        let n = untransform(Feature::Pps, self.samples.median).max(1.0);
        Feature::ALL.map(|f| match (f.scale(), f) {
            (Scale::Log, Feature::MeanSize) => 0.05,
            // The relative error of a count estimated from n samples.
            (Scale::Log, _) => (1.0 / (1.0 + n).sqrt()).max(0.05),
            (Scale::Linear, Feature::SourceEntropy | Feature::PortEntropy) => {
                (4.0 / n.sqrt()).max(0.1)
            }
            (Scale::Linear, _) => (0.5 / n.sqrt()).max(0.02),
        })
    }

    /// The statistics a second in `slot` is judged against.
    fn stats(&self, slot: usize) -> &Stats {
        match self.slots.get(slot) {
            Some(s) if s[Feature::Pps as usize].seen >= SLOT_READY => s,
            _ => &self.overall,
        }
    }

    /// Every judged feature's deviation, worst first. Features without a
    /// value this second are left out.
    pub fn judge(
        &self,
        features: &[Option<f64>; Feature::COUNT],
        slot: usize,
        k: f64,
    ) -> Vec<Deviation> {
        let stats = self.stats(slot);
        let floors = self.floors();
        let mut out: Vec<Deviation> = Feature::ALL
            .iter()
            .filter_map(|&f| {
                let x = features[f as usize]?;
                let r = &stats[f as usize];
                let floor = floors[f as usize];
                let sigma = r.sigma(floor);
                Some(Deviation {
                    feature: f,
                    value: x,
                    usual: untransform(f, r.median),
                    low: untransform(f, r.median - k * sigma),
                    high: untransform(f, r.median + k * sigma),
                    score: r.score(transform(f, x), floor),
                    material: (transform(f, x) - r.median).abs() >= f.min_change(),
                })
            })
            .collect();
        out.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
        out
    }

    /// The usual value and band of one feature now, for metrics.
    pub fn band(&self, f: Feature, slot: usize, k: f64) -> Option<(f64, f64)> {
        if !self.warm {
            return None;
        }
        let r = &self.stats(slot)[f as usize];
        let sigma = r.sigma(self.floors()[f as usize]);
        Some((
            untransform(f, r.median),
            untransform(f, r.median + k * sigma),
        ))
    }

    /// A profile read from a state file is usable as it is.
    pub fn is_consistent(&self) -> bool {
        let finite = |s: &Stats| s.iter().all(|r| r.median.is_finite() && r.mad.is_finite());
        (self.slots.is_empty() || self.slots.len() == SLOTS)
            && finite(&self.overall)
            && self.slots.iter().all(finite)
            && self.samples.median.is_finite()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(pps: f64, udp_share: f64) -> [Option<f64>; Feature::COUNT] {
        let mut f = [None; Feature::COUNT];
        f[Feature::Pps as usize] = Some(pps);
        f[Feature::Bps as usize] = Some(pps * 800.0);
        f[Feature::UdpShare as usize] = Some(udp_share);
        f
    }

    fn warm(pps: f64) -> Profile {
        let mut p = Profile::default();
        for i in 0..60 {
            // A quiet host: about `pps`, a little noise.
            let x = pps + (i % 5) as f64 - 2.0;
            p.learn(&second(x, 0.1), 200, 0, 60, 1.0);
        }
        assert!(p.is_warm());
        p
    }

    #[test]
    fn slots_are_hours_of_weekdays_and_weekends() {
        // 2026-12-07 was a Monday; 14:30 UTC.
        let monday = 1_796_653_800;
        assert_eq!(slot_of(monday), 14);
        // The Saturday before, 00:10 UTC.
        assert_eq!(slot_of(monday - 2 * 86_400 - 14 * 3600 - 1200), 24);
    }

    fn pps(d: &[Deviation]) -> Deviation {
        d.iter()
            .copied()
            .find(|d| d.feature == Feature::Pps)
            .unwrap_or_else(|| panic!("no pps in {d:?}"))
    }

    #[test]
    fn a_small_host_twenty_times_busier_is_far_off_its_profile() {
        let p = warm(200.0);
        let d = pps(&p.judge(&second(4000.0, 0.1), 0, 5.0));
        assert!(d.score > 5.0, "{d:?}");
        assert!((d.usual - 200.0).abs() < 3.0, "{d:?}");
        assert!(d.high > 200.0 && d.high < 4000.0, "{d:?}");
        // The same host at its usual rate is not.
        let d = p.judge(&second(201.0, 0.1), 0, 5.0);
        assert!(d[0].score.abs() < 5.0, "{d:?}");
    }

    #[test]
    fn a_burst_of_three_times_is_off_but_not_material() {
        let p = warm(5000.0);
        let d = pps(&p.judge(&second(15_000.0, 0.1), 0, 5.0));
        assert!(d.score > 5.0, "{d:?}");
        assert!(!d.material, "3x is a burst, not an anomaly: {d:?}");
        let d = pps(&p.judge(&second(45_000.0, 0.1), 0, 5.0));
        assert!(d.material, "9x is: {d:?}");
    }

    #[test]
    fn a_change_of_kind_at_the_same_volume_shows() {
        let p = warm(5000.0);
        let d = p.judge(&second(5000.0, 0.9), 0, 5.0);
        assert_eq!(d[0].feature, Feature::UdpShare);
        assert!(d[0].score > 5.0, "{d:?}");
    }

    #[test]
    fn a_collapse_is_far_below() {
        let p = warm(5000.0);
        let d = pps(&p.judge(&second(0.0, 0.1), 0, 5.0));
        assert!(d.score < -5.0, "{d:?}");
    }

    #[test]
    fn each_hour_learned_long_enough_is_judged_on_its_own() {
        let mut p = warm(100.0);
        // Backups at 03:00 carry 10,000 pps; at 04:00 it is 100 again.
        for _ in 0..1000 {
            p.learn(&second(10_000.0, 0.1), 200, 3, 60, 1.0);
        }
        for _ in 0..1000 {
            p.learn(&second(100.0, 0.1), 200, 4, 60, 1.0);
        }
        let d = p.judge(&second(10_000.0, 0.1), 3, 5.0);
        assert!(d[0].score.abs() < 5.0, "03:00 knows it: {d:?}");
        let d = pps(&p.judge(&second(10_000.0, 0.1), 4, 5.0));
        assert!(d.score > 5.0, "not at 04:00: {d:?}");
    }

    #[test]
    fn an_attack_of_minutes_barely_moves_the_profile() {
        let mut p = warm(200.0);
        for _ in 0..600 {
            p.learn(&second(50_000.0, 0.1), 200, 0, 60, ANOMALOUS_WEIGHT);
        }
        let d = p.judge(&second(200.0, 0.1), 0, 5.0);
        assert!(d[0].usual < 400.0, "{d:?}");
    }
}
