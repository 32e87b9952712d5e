//! Labelling throughput: the sweep (`Labeller`, sorted flares and two pointers) against a
//! scan of the whole catalogue for every window, over one catalogue and issue range.

use crate::bounded::Count;
use crate::catalog::{self, Flare};
use crate::label::{issue_times, label_windows, Config, Labeller};
use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The figures of one benchmark run; times are medians over `repeat` runs. Fields in
/// alphabetical order: the JSON keys' order.
#[derive(Debug, Serialize)]
pub struct Report {
    pub catalog: String,
    pub flares: usize,
    pub positives: usize,
    pub read_ms: f64,
    pub repeat: usize,
    pub scan_ms: f64,
    pub scan_windows_per_s: f64,
    pub speedup: f64,
    pub sweep_ms: f64,
    pub sweep_windows_per_s: f64,
    pub windows: usize,
}

/// The baseline: every window scans the whole catalogue.
fn scan<'a>(
    flares: &'a [Flare],
    issues: &[NaiveDateTime],
    cfg: &Config,
) -> Vec<(Option<&'a Flare>, usize, bool)> {
    let reach = cfg.window - chrono::Duration::seconds(1);
    issues
        .iter()
        .map(|&t| {
            let last = t + reach;
            let mut best: Option<&Flare> = None;
            let mut n = 0;
            for f in flares {
                if f.start > t && f.start <= last {
                    n += 1;
                    if best.is_none_or(|b| f.class > b.class) {
                        best = Some(f);
                    }
                }
            }
            let target = best.is_some_and(|b| b.class >= cfg.threshold);
            (best, n, target)
        })
        .collect()
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Timed runs a setting may ask for.
pub const REPEAT: Count<usize> = Count::new("repeat", "timed runs", 1, 1000);

/// Labels the hourly windows from `start` to `end` over the catalogue at `path` with both
/// methods, `repeat` times each (at least once), and checks that they agree window by
/// window before reporting their speeds.
pub fn run(path: &Path, start: NaiveDateTime, end: NaiveDateTime, repeat: usize) -> Result<Report> {
    let repeat = repeat.max(1);
    let t0 = Instant::now();
    let catalog = catalog::read(path, None, false)
        .with_context(|| format!("bench catalogue {}", path.display()))?;
    let read_ms = t0.elapsed().as_secs_f64() * 1e3;
    let cfg = Config::paper();
    let issues = issue_times(start, end, cfg.cadence);
    if issues.is_empty() {
        bail!("no issue times between {start} and {end}");
    }

    let mut sweep_ms = Vec::new();
    let mut fast = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        let labeller = Labeller::new(&catalog.flares);
        fast = label_windows(&labeller, &issues, &cfg);
        sweep_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut scan_ms = Vec::new();
    let mut slow = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        slow = scan(&catalog.flares, &issues, &cfg);
        scan_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Both methods must agree before their speeds are worth comparing.
    for ((w, ranked, target), (best, n, scan_target)) in fast.iter().zip(&slow) {
        let same_top = match (ranked.first(), best) {
            (Some(a), Some(b)) => std::ptr::eq(*a, *b),
            (None, None) => true,
            _ => false,
        };
        if !same_top || w.len() != *n || target != scan_target {
            bail!("sweep and scan disagree on the window at {}", w.issue);
        }
    }
    let (sweep, scan) = (median_ms(sweep_ms), median_ms(scan_ms));
    let windows = issues.len();
    let per_s = |ms: f64| windows as f64 / (ms / 1e3);
    Ok(Report {
        catalog: path.display().to_string(),
        flares: catalog.flares.len(),
        positives: fast.iter().filter(|r| r.2).count(),
        read_ms,
        repeat,
        scan_ms: scan,
        scan_windows_per_s: per_s(scan),
        speedup: scan / sweep,
        sweep_ms: sweep,
        sweep_windows_per_s: per_s(sweep),
        windows,
    })
}
