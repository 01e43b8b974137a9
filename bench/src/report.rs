//! Small statistics and formatting helpers for the tables.

/// Median, min and max of a non-empty sample (NaN-free).
pub fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    match (v.first(), v.last()) {
        (Some(&min), Some(&max)) => (v[v.len() / 2], min, max),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    }
}

/// `median (min-max)` with the given precision.
pub fn mmm(v: Vec<f64>, precision: usize) -> String {
    let (m, lo, hi) = stats(v);
    format!("{m:.precision$} ({lo:.precision$}-{hi:.precision$})")
}

/// Millions per second, for tables.
pub fn mpps(pps: f64) -> f64 {
    pps / 1e6
}

/// xorshift64: a fast, repeatable stream for synthetic records.
pub struct XorShift(pub u64);

impl XorShift {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
