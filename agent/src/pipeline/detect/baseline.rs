//! A learned baseline: exponentially weighted mean and variance of a
//! per-second value, with a warm-up before it may judge and a floor below
//! which nothing is anomalous.

use super::finding::Band;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BaselineConfig {
    /// Weight of each new second (0..1); 0.02 ≈ the last minute.
    pub alpha: f64,
    /// Seconds observed before the baseline may judge.
    pub warmup_seconds: u32,
    /// The band is mean + k·stddev.
    pub k: f64,
    /// Values below this never count as anomalous, whatever the band.
    pub floor: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            alpha: 0.02,
            warmup_seconds: 60,
            k: 4.0,
            floor: 1000.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Baseline {
    mean: f64,
    var: f64,
    seconds: u32,
}

impl Baseline {
    /// Learns one second's value. Callers skip seconds that were
    /// anomalous, so an attack does not teach the baseline to accept it.
    pub fn learn(&mut self, value: f64, c: &BaselineConfig) {
        if self.seconds == 0 {
            self.mean = value;
            self.var = 0.0;
        } else {
            // West's incremental EWMA variance.
            let diff = value - self.mean;
            let incr = c.alpha * diff;
            self.mean += incr;
            self.var = (1.0 - c.alpha) * (self.var + diff * incr);
        }
        self.seconds = self.seconds.saturating_add(1);
    }

    pub fn warmed_up(&self, c: &BaselineConfig) -> bool {
        self.seconds >= c.warmup_seconds
    }

    pub fn band(&self, c: &BaselineConfig) -> Band {
        let stddev = self.var.max(0.0).sqrt();
        Band {
            mean: self.mean,
            stddev,
            upper: (self.mean + c.k * stddev).max(c.floor),
        }
    }

    /// The band `value` lies above, if the baseline is warm and the value
    /// is past both the band and the floor.
    pub fn exceeded_by(&self, value: f64, c: &BaselineConfig) -> Option<Band> {
        if !self.warmed_up(c) {
            return None;
        }
        let band = self.band(c);
        (value > band.upper).then_some(band)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BaselineConfig {
        BaselineConfig {
            alpha: 0.1,
            warmup_seconds: 10,
            k: 3.0,
            floor: 100.0,
        }
    }

    #[test]
    fn learns_mean_and_spread() {
        let c = cfg();
        let mut b = Baseline::default();
        for i in 0..500 {
            b.learn(if i % 2 == 0 { 900.0 } else { 1100.0 }, &c);
        }
        let band = b.band(&c);
        assert!((band.mean - 1000.0).abs() < 20.0, "{band:?}");
        assert!((band.stddev - 100.0).abs() < 15.0, "{band:?}");
        assert!((band.upper - (band.mean + 3.0 * band.stddev)).abs() < 1e-9);
    }

    #[test]
    fn judges_only_after_warmup() {
        let c = cfg();
        let mut b = Baseline::default();
        for _ in 0..9 {
            b.learn(200.0, &c);
            assert_eq!(b.exceeded_by(1e6, &c), None);
        }
        b.learn(200.0, &c);
        assert!(b.exceeded_by(1e6, &c).is_some());
    }

    #[test]
    fn the_floor_holds_for_quiet_hosts() {
        let c = cfg();
        let mut b = Baseline::default();
        for _ in 0..50 {
            b.learn(1.0, &c);
        }
        // A flat baseline of 1 pps: 99 is below the floor, 101 above it.
        assert_eq!(b.band(&c).upper, 100.0);
        assert_eq!(b.exceeded_by(99.0, &c), None);
        assert_eq!(b.exceeded_by(100.0, &c), None);
        assert!(b.exceeded_by(101.0, &c).is_some());
    }
}
