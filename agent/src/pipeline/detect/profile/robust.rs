//! Robust statistics of one feature: a median and a median absolute
//! deviation, seeded exactly from a warm-up and then followed by
//! stochastic ("frugal") steps, so memory per feature is fixed and one
//! burst moves them by one step, not by its size as it would a mean.

use serde::{Deserialize, Serialize};

use super::features::{Feature, Scale};

/// Each second moves the median by this share of the spread, and the
/// spread by this factor: about a minute to follow a real change.
const STEP: f64 = 0.05;
/// A run of normal seconds on the same side of the median lengthens the
/// median's step, up to this many times (after Frugal-2U): a daily
/// rhythm's rise is followed as it happens, while a lone burst still
/// moves it one plain step.
const MAX_RUN: i32 = 20;
/// MAD to standard deviation for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// A value in the space a feature is learned in.
pub fn transform(f: Feature, x: f64) -> f64 {
    match f.scale() {
        Scale::Log => x.max(0.0).ln_1p(),
        Scale::Linear => x,
    }
}

/// Back from the learned space.
pub fn untransform(f: Feature, y: f64) -> f64 {
    match f.scale() {
        Scale::Log => y.exp_m1().max(0.0),
        Scale::Linear => y,
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Robust {
    pub median: f64,
    pub mad: f64,
    /// Seconds learned.
    pub seen: u32,
    /// Normal seconds in a row above (positive) or below the median.
    pub run: i32,
}

impl Robust {
    /// Exactly, from a warm-up's values.
    pub fn seeded(values: &mut [f64]) -> Robust {
        if values.is_empty() {
            return Robust::default();
        }
        let median = median_of(values);
        let mut dev: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
        Robust {
            median,
            mad: median_of(&mut dev),
            seen: values.len() as u32,
            run: 0,
        }
    }

    /// One more second (in the learned space), at `weight` (1 for a
    /// normal second, less for an anomalous one). `floor` is the noise
    /// floor of the feature's spread, so a perfectly flat past still
    /// moves the median.
    pub fn learn(&mut self, y: f64, floor: f64, weight: f64) {
        let step = STEP * weight;
        let sigma = self.sigma(floor);
        let normal = weight >= 1.0;
        if normal {
            self.run = match (y > self.median, self.run) {
                (true, r) if r > 0 => (r + 1).min(MAX_RUN),
                (true, _) => 1,
                (false, r) if r < 0 => (r - 1).max(-MAX_RUN),
                (false, _) => -1,
            };
        }
        // Anomalous seconds take plain (small) steps only.
        let reach = step
            * sigma
            * if normal {
                f64::from(self.run.abs())
            } else {
                1.0
            };
        if y > self.median {
            self.median = (self.median + reach).min(y);
        } else if y < self.median {
            self.median = (self.median - reach).max(y);
        }
        // The spread learns from normal seconds only: an attack must not
        // widen the band it is judged against.
        if !normal {
            return;
        }
        let dev = (y - self.median).abs();
        self.mad = if dev > self.mad {
            (self.mad * (1.0 + step)).max(step * floor)
        } else {
            self.mad * (1.0 - step)
        };
        self.seen = self.seen.saturating_add(1);
    }

    /// The spread as a standard deviation, never below the noise floor.
    pub fn sigma(&self, floor: f64) -> f64 {
        (MAD_TO_SIGMA * self.mad).max(floor)
    }

    /// How many standard deviations `y` is from the median.
    pub fn score(&self, y: f64, floor: f64) -> f64 {
        (y - self.median) / self.sigma(floor)
    }
}

/// The median, reordering `v` (no allocation).
pub fn median_of(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if v.len() % 2 == 1 {
        return upper;
    }
    let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower + upper) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_is_exact() {
        let mut v = vec![10.0, 12.0, 11.0, 50.0, 9.0];
        let r = Robust::seeded(&mut v);
        assert_eq!(r.median, 11.0);
        // Deviations 1, 1, 0, 39, 2: their median is 1.
        assert_eq!(r.mad, 1.0);
        assert_eq!(median_of(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn a_burst_moves_the_median_by_steps_not_by_its_size() {
        let mut r = Robust::seeded(&mut [100.0, 101.0, 99.0, 100.0, 100.5]);
        let before = r.median;
        for _ in 0..5 {
            r.learn(1e6, 0.1, 1.0);
        }
        // Five seconds at ten thousand times the usual: the median moved
        // by a few small steps (a run of five lengthens them to 15 in
        // all); a mean would have gone to ~200,000.
        assert!(r.median - before < 5.0 * STEP * 10.0, "{}", r.median);
    }

    #[test]
    fn follows_a_real_change() {
        let mut r = Robust::seeded(&mut [5.0, 5.1, 4.9]);
        let mut x = 0u64;
        for _ in 0..2000 {
            // 8 +- 0.5, noisy.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            r.learn(8.0 + noise, 0.01, 1.0);
        }
        assert!((r.median - 8.0).abs() < 0.1, "{r:?}");
        // Uniform noise of width 1: MAD 0.25.
        assert!((r.mad - 0.25).abs() < 0.08, "{r:?}");
    }

    #[test]
    fn a_steady_rise_is_followed_as_it_happens() {
        // A daily rhythm's morning: 2.5x in 60 s, with 2 % noise.
        let mut r = Robust::seeded(&mut [0.0, 0.01, -0.01, 0.02, -0.02]);
        let mut worst: f64 = 0.0;
        for t in 0..60 {
            let y = f64::from(t) * (2.5f64.ln() / 60.0) + if t % 2 == 0 { 0.02 } else { -0.02 };
            worst = worst.max(y - r.median);
            r.learn(y, 0.02, 1.0);
        }
        // Plain steps would lag by the whole rise (0.9); runs keep up.
        assert!(worst < 0.2, "lagged {worst}");
    }

    #[test]
    fn log_features_round_trip() {
        for x in [0.0, 1.0, 200.0, 1e9] {
            let y = transform(Feature::Pps, x);
            assert!((untransform(Feature::Pps, y) - x).abs() <= x * 1e-12);
        }
        assert_eq!(transform(Feature::TcpShare, 0.3), 0.3);
    }
}
