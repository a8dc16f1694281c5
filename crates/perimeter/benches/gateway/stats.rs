//! Medians, ratios of figures measured side by side, and targets checked.

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median over rounds of `a[r] / b[r]` (each ratio from figures measured side by side).
pub(crate) fn ratio(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x / y).collect())
}

/// Print a target's line: its name, PASS or FAIL, and the figure that decided it.
pub(crate) fn check(name: &str, ok: bool, detail: String) {
    println!(
        "  {:<52} {}  ({detail})",
        name,
        if ok { "PASS" } else { "FAIL" }
    );
}
