//! Figures: one measured quantity each (median, min and max over runs), its target, the
//! table printed while the bench runs and the JSON of docs/design.md §7.

use serde_json::{Value, json};

/// One line of the table and one element of the JSON `figures` array.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Stable name (docs/design.md §7), e.g. `dr_established_v4`.
    pub name: String,
    /// `ns/pkt`, `ms`, `bytes`, `pps`, `reals/s`.
    pub unit: &'static str,
    /// Median over runs (a run is itself a median over many calls where that applies).
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
    /// Number of runs.
    pub runs: usize,
    /// Median minus the `pass_empty` median measured in the same run (ns/pkt figures).
    pub extra_over_pass: Option<f64>,
    /// Target; it applies to `extra_over_pass` when that is given, else to the median.
    pub target: Option<f64>,
    /// A short remark (what was measured, why a figure is missing).
    pub note: Option<String>,
    /// The figure could not be measured (an error, a failed output check): the reason.
    pub failed: Option<String>,
}

impl Figure {
    /// A figure from per-run values.
    pub fn from_runs(name: impl Into<String>, unit: &'static str, runs: &[f64]) -> Figure {
        let (median, min, max) = summarize(runs);
        Figure {
            name: name.into(),
            unit,
            median,
            min,
            max,
            runs: runs.len(),
            extra_over_pass: None,
            target: None,
            note: None,
            failed: None,
        }
    }

    /// A figure that could not be measured.
    pub fn failed(name: impl Into<String>, unit: &'static str, why: impl Into<String>) -> Figure {
        Figure {
            failed: Some(why.into()),
            ..Figure::from_runs(name, unit, &[])
        }
    }

    /// Sets the target.
    pub fn target(mut self, t: Option<f64>) -> Figure {
        self.target = t;
        self
    }

    /// Sets the note.
    pub fn note(mut self, n: impl Into<String>) -> Figure {
        self.note = Some(n.into());
        self
    }

    /// The value the target applies to.
    pub fn judged(&self) -> f64 {
        self.extra_over_pass.unwrap_or(self.median)
    }

    /// Whether the target is met (None without a target or a value).
    pub fn met(&self) -> Option<bool> {
        if self.failed.is_some() {
            return Some(false).filter(|_| self.target.is_some());
        }
        self.target.map(|t| self.judged() <= t)
    }

    /// The JSON object of docs/design.md §7 (plus `note` / `error` when present).
    pub fn json(&self) -> Value {
        let num = |v: f64| {
            if v.is_finite() {
                json!(round3(v))
            } else {
                Value::Null
            }
        };
        let mut o = json!({
            "name": self.name,
            "unit": self.unit,
            "median": num(self.median),
            "min": num(self.min),
            "max": num(self.max),
            "runs": self.runs,
            "extra_over_pass": self.extra_over_pass.map(num),
            "target": self.target,
            "met": self.met(),
        });
        if let Some(n) = &self.note {
            o["note"] = json!(n);
        }
        if let Some(e) = &self.failed {
            o["error"] = json!(e);
        }
        o
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// (median, min, max); NaN for no values.
pub fn summarize(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (median, s[0], s[n - 1])
}

/// A run's typical per-call cost: the mean of the calls between the 40th and 60th
/// percentile. Robust like the median (interrupts and cache-cold outliers fall outside),
/// but not bound to the clock's grid: BPF_PROG_TEST_RUN durations here come in ~10 ns
/// steps, so a plain median snaps to a multiple of 10 while this averages between them.
pub fn central_mean(v: &mut [u32]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let n = v.len();
    let (lo, hi) = (n * 2 / 5, (n * 3).div_ceil(5).max(n * 2 / 5 + 1).min(n));
    let mid = &v[lo..hi];
    mid.iter().map(|&x| f64::from(x)).sum::<f64>() / mid.len() as f64
}

/// Column header of the table.
pub fn header() -> String {
    format!(
        "{:<34} {:>8} {:>11} {:>11} {:>11} {:>5} {:>9} {:>8} {:>4}",
        "figure", "unit", "median", "min", "max", "runs", "extra", "target", "met"
    )
}

fn cell(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100_000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One table row (and the note or error under it).
pub fn row(f: &Figure) -> String {
    let opt = |v: Option<f64>| v.map(cell).unwrap_or_else(|| "-".into());
    let met = match f.met() {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    };
    let mut s = format!(
        "{:<34} {:>8} {:>11} {:>11} {:>11} {:>5} {:>9} {:>8} {:>4}",
        f.name,
        f.unit,
        cell(f.median),
        cell(f.min),
        cell(f.max),
        f.runs,
        opt(f.extra_over_pass),
        opt(f.target),
        met
    );
    if let Some(e) = &f.failed {
        s.push_str(&format!("\n{:<34} FAILED: {e}", ""));
    } else if let Some(n) = &f.note {
        s.push_str(&format!("\n{:<34} ({n})", ""));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_median() {
        assert_eq!(summarize(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert!(summarize(&[]).0.is_nan());
        assert_eq!(central_mean(&mut [5, 1, 9]), 5.0);
        assert_eq!(central_mean(&mut [7]), 7.0);
        // 40th..60th percentile of 1..=10 is 5 and 6.
        let mut v: Vec<u32> = (1..=10).rev().collect();
        assert_eq!(central_mean(&mut v), 5.5);
        assert!(central_mean(&mut []).is_nan());
    }

    #[test]
    fn target_applies_to_extra() {
        let mut f = Figure::from_runs("dr_established_v4", "ns/pkt", &[120.0]).target(Some(100.0));
        f.extra_over_pass = Some(90.0);
        assert_eq!(f.met(), Some(true));
        f.extra_over_pass = Some(101.0);
        assert_eq!(f.met(), Some(false));
        let j = f.json();
        assert_eq!(j["name"], "dr_established_v4");
        assert_eq!(j["met"], false);
        assert_eq!(j["runs"], 1);
        let none = Figure::from_runs("x", "ms", &[1.0]);
        assert_eq!(none.json()["met"], Value::Null);
        assert_eq!(none.json()["extra_over_pass"], Value::Null);
    }
}
