//! Labels from a GOES flare catalogue: one instance per hourly issue time that has an
//! image, labelled by the largest flare of the following 24 hours, binarised at a
//! threshold class, and split into 4 folds by calendar quarter.

mod images;
mod window;
mod write;

pub use images::Images;
pub use window::{Labeller, Window};
pub use write::{
    full_line, py_float, table_names, write_tables, FULL_HEADER, SIMPLE_DIR, SIMPLE_HEADER,
    TABLES_DIR,
};

use crate::bounded::{days, secs, Count, Span};
use crate::catalog::{self, Catalog, Flare, FluxScale, GoesClass};
use crate::instant::Instant;
use anyhow::{bail, Result};
use chrono::{Datelike, Duration, NaiveDateTime, NaiveTime};
use serde::Serialize;
use std::path::Path;

/// One of the 4 time-segmented folds; fold k validates on calendar quarter k.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Fold(u8);

impl Fold {
    pub const ALL: [Fold; 4] = [Fold(1), Fold(2), Fold(3), Fold(4)];
    /// The numbers a setting may give a fold.
    pub const NUMBER: Count<u32> = Count::new("fold", "fold", 1, 4);

    /// The fold whose validation quarter holds `t` (Jan-Mar 1, ..., Oct-Dec 4).
    pub fn of(t: NaiveDateTime) -> Fold {
        Fold(((t.month() - 1) / 3 + 1) as u8)
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// The months of the fold's validation quarter, as summaries print them.
    pub fn months(self) -> &'static str {
        ["Jan-Mar", "Apr-Jun", "Jul-Sep", "Oct-Dec"][(self.0 - 1) as usize]
    }
}

/// What to label.
#[derive(Clone, Debug)]
pub struct Config {
    /// First and last issue time, inclusive; None: the catalogue's span clipped to the images.
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    pub cadence: Duration,
    pub window: Duration,
    /// Positive iff the window's largest class is at least this.
    pub threshold: GoesClass,
    /// Classes are converted to this scale before thresholding.
    pub flux_scale: FluxScale,
}

impl Config {
    /// Steps between issue times a setting may give.
    pub const CADENCE: Span = Span::new("cadence", "cadence", secs(1), days(366));
    /// Forecast windows a setting may give.
    pub const WINDOW: Span = Span::new("window", "forecast window", secs(1), days(3660));

    /// The paper's set-up: hourly, 24-hour windows, >= M1.0.
    pub fn paper() -> Config {
        Config {
            start: None,
            end: None,
            cadence: Duration::hours(1),
            window: Duration::hours(24),
            threshold: "M1.0"
                .parse()
                .unwrap_or_else(|_| unreachable!("M1.0 is a class")),
            flux_scale: FluxScale::Operational,
        }
    }
}

/// One labelled instance.
#[derive(Clone, Debug)]
pub struct LabelRow<'a> {
    pub instant: Instant,
    /// `YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.jpg`
    pub name: String,
    pub target: bool,
    /// The window's flares, largest first; empty for no flare.
    pub flares: Vec<&'a Flare>,
}

impl LabelRow<'_> {
    /// The window's class (its largest flare), None for no flare.
    pub fn class(&self) -> Option<&GoesClass> {
        self.flares.first().map(|f| &f.class)
    }

    pub fn fold(&self) -> Fold {
        Fold::of(self.instant.0)
    }
}

/// Issue times from `start` to `end`, both inclusive, every `cadence`.
pub fn issue_times(
    start: NaiveDateTime,
    end: NaiveDateTime,
    cadence: Duration,
) -> Vec<NaiveDateTime> {
    let mut out = Vec::new();
    if cadence <= Duration::zero() {
        return out;
    }
    let mut t = start;
    while t <= end {
        out.push(t);
        t += cadence;
    }
    out
}

/// Labels the windows of `issues` (ascending) over `flares`.
pub fn label_windows<'a>(
    labeller: &Labeller<'a>,
    issues: &[NaiveDateTime],
    cfg: &Config,
) -> Vec<(Window, Vec<&'a Flare>, bool)> {
    labeller
        .windows(issues, cfg.window)
        .into_iter()
        .map(|w| {
            let ranked = labeller.ranked(&w);
            let target = ranked.first().is_some_and(|f| f.class >= cfg.threshold);
            (w, ranked, target)
        })
        .collect()
}

/// The issue range: as given, else the catalogue's span clipped to the images present.
pub fn issue_range(
    cfg: &Config,
    flares: &[Flare],
    images: &Images,
) -> Result<(NaiveDateTime, NaiveDateTime)> {
    let first_day = flares
        .iter()
        .map(|f| f.start.date().and_time(NaiveTime::MIN))
        .min();
    let last_flare = flares.iter().map(|f| f.start).max();
    let first_image = images.first().map(|i| i.0);
    let last_image = images.last().map(|i| i.0);
    let start = bound(cfg.start, first_day, first_image, std::cmp::max, "start")?;
    let end = bound(cfg.end, last_flare, last_image, std::cmp::min, "end")?;
    if end < start {
        bail!("the issue range is empty: end {end} is before start {start}");
    }
    Ok((start, end))
}

/// One end of the issue range: as given, else the catalogue's and the images' ends
/// combined by `pick` (the range both cover), else whichever there is.
fn bound(
    given: Option<NaiveDateTime>,
    flares: Option<NaiveDateTime>,
    images: Option<NaiveDateTime>,
    pick: fn(NaiveDateTime, NaiveDateTime) -> NaiveDateTime,
    setting: &'static str,
) -> Result<NaiveDateTime> {
    match (given, flares, images) {
        (Some(t), _, _) => Ok(t),
        (None, Some(f), Some(i)) => Ok(pick(f, i)),
        (None, f, i) => f.or(i).ok_or_else(|| {
            crate::setting::bad(
                setting,
                format!("no {setting} given and neither flares nor images to take it from"),
            )
        }),
    }
}

/// Labels every issue time in range that has an image, in time order.
pub fn label<'a>(cfg: &Config, flares: &'a [Flare], images: &Images) -> Result<Vec<LabelRow<'a>>> {
    if cfg.cadence < Duration::seconds(1) || cfg.window < Duration::seconds(1) {
        bail!("cadence and window must be at least one second");
    }
    let (start, end) = issue_range(cfg, flares, images)?;
    // Walk the images in range, not the issue grid: a fine cadence over a long range
    // (1 s over two centuries is 6e9 times) costs nothing beyond the images themselves.
    let step = cfg.cadence.num_milliseconds();
    let (issues, names): (Vec<NaiveDateTime>, Vec<&str>) = images
        .range(Instant(start), Instant(end))
        .filter(|(t, _)| (t.0 - start).num_milliseconds() % step == 0)
        .map(|(t, n)| (t.0, n))
        .unzip();
    if issues.is_empty() {
        let span = match (images.first(), images.last()) {
            (Some(a), Some(b)) => format!("the {} images run from {a} to {b}", images.len()),
            _ => "there are no images".to_string(),
        };
        bail!("no image at any issue time from {start} to {end} ({span}): nothing to label");
    }
    let labeller = Labeller::new(flares);
    Ok(label_windows(&labeller, &issues, cfg)
        .into_iter()
        .zip(names)
        .map(|((w, flares, target), name)| LabelRow {
            instant: Instant(w.issue),
            name: name.to_string(),
            target,
            flares,
        })
        .collect())
}

/// Train/validation counts of one fold.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FoldSummary {
    pub fold: u8,
    pub train: usize,
    pub train_positive: usize,
    pub train_positive_rate: f64,
    pub val: usize,
    pub val_positive: usize,
    pub val_positive_rate: f64,
}

/// What a labelling run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub catalog_format: String,
    pub flares_read: usize,
    pub rows_rejected: usize,
    /// Exact repeats of an earlier catalogue row, left out.
    pub duplicates_dropped: usize,
    pub threshold: String,
    pub flux_scale: FluxScale,
    /// Flares whose class the scale conversion changed.
    pub classes_converted: usize,
    /// Instances whose target differs from labelling the classes as the catalogue gives them.
    pub labels_changed: usize,
    pub first: Option<String>,
    pub last: Option<String>,
    pub instances: usize,
    pub positives: usize,
    pub positive_rate: f64,
    pub folds: Vec<FoldSummary>,
    pub out: String,
}

fn rate(p: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        p as f64 / n as f64
    }
}

/// Per-fold counts of labelled rows.
pub fn fold_summaries(rows: &[LabelRow]) -> Vec<FoldSummary> {
    Fold::ALL
        .iter()
        .map(|&fold| {
            let count = |val: bool, pos: bool| {
                rows.iter()
                    .filter(|r| (r.fold() == fold) == val && (!pos || r.target))
                    .count()
            };
            let (train, train_positive) = (count(false, false), count(false, true));
            let (val, val_positive) = (count(true, false), count(true, true));
            FoldSummary {
                fold: fold.number(),
                train,
                train_positive,
                train_positive_rate: rate(train_positive, train),
                val,
                val_positive,
                val_positive_rate: rate(val_positive, val),
            }
        })
        .collect()
}

/// The flares with their classes on `scale`, and how many classes changed.
pub fn on_scale(flares: &[Flare], scale: FluxScale) -> (Vec<Flare>, usize) {
    let mut changed = 0;
    let converted = flares
        .iter()
        .map(|f| {
            let class = catalog::class_on(f, scale);
            if class != f.class {
                changed += 1;
            }
            Flare {
                class,
                scale,
                ..f.clone()
            }
        })
        .collect();
    (converted, changed)
}

/// Labels the catalogue against the images and writes all tables into `out`.
pub fn run(cfg: &Config, catalog: &Catalog, images: &Images, out: &Path) -> Result<Summary> {
    let (flares, classes_converted) = on_scale(&catalog.flares, cfg.flux_scale);
    let rows = label(cfg, &flares, images)?;
    let labels_changed = if classes_converted == 0 {
        0
    } else {
        let as_given = label(cfg, &catalog.flares, images)?;
        rows.iter()
            .zip(&as_given)
            .filter(|(a, b)| a.target != b.target)
            .count()
    };
    write_tables(out, &rows)?;
    let positives = rows.iter().filter(|r| r.target).count();
    Ok(Summary {
        catalog_format: catalog.format.name().to_string(),
        flares_read: catalog.flares.len(),
        rows_rejected: catalog.rejected.len(),
        duplicates_dropped: catalog.duplicates,
        threshold: cfg.threshold.to_string(),
        flux_scale: cfg.flux_scale,
        classes_converted,
        labels_changed,
        first: rows.first().map(|r| r.instant.to_string()),
        last: rows.last().map(|r| r.instant.to_string()),
        instances: rows.len(),
        positives,
        positive_rate: rate(positives, rows.len()),
        folds: fold_summaries(&rows),
        out: out.display().to_string(),
    })
}

#[cfg(test)]
mod tests;
