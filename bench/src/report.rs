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
