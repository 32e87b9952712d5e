//! Forecasts scored against the flares that came: each forecast's outcome is whether a
//! flare of its threshold class or larger started inside the prediction window its record
//! gives (after the issue time for operational forecasts, so a flare between the image
//! and the issue time is not counted), decided by `label`'s window rule on any catalogue
//! `label` reads; forecasts whose window the catalogue does not yet cover are pending. The decided ones are scored as `evaluate`
//! scores a prediction file (TSS, HSS2, Brier, BSS, ROC AUC, plots).

use crate::catalog::{self, Flare, GoesClass};
use crate::evaluate::{self, Compared, FileScores, PredictionFile, PredictionRow, Quality};
use crate::forecast::record::{fmt_utc, read_records, Record};
use crate::label::Labeller;
use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One forecast and what happened.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub issue_time: String,
    pub image_time: String,
    pub window_start: String,
    pub window_end: String,
    /// The record's probability (calibrated when the record is).
    pub probability: f64,
    /// The networks' own probability, which the scores at the threshold use.
    pub raw_probability: f64,
    pub flare_forecast: bool,
    /// None while pending.
    pub flare_observed: Option<bool>,
    /// The window's largest flare, if any.
    pub largest_flare: Option<String>,
    /// Whether `probability` is calibrated.
    pub calibrated: bool,
}

/// Everything `verify` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub forecasts: usize,
    /// A forecast read more than once (the same issue time; for per-image windows, the
    /// same image) counts once (the first read).
    pub duplicates: usize,
    pub decided: usize,
    pub pending: usize,
    pub catalog_end: String,
    pub threshold: f64,
    /// `evaluate`'s scores of the raw probabilities over the decided forecasts (None when
    /// none are decided).
    pub scores: Option<FileScores>,
    /// Brier, BSS and reliability of the raw and the calibrated probabilities, when every
    /// decided forecast is calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<Compared>,
    pub outcomes: Vec<Outcome>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plots: Vec<String>,
}

/// The records of forecast folders (their `index.jsonl`), index files and record files.
pub fn read_forecasts(paths: &[PathBuf]) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for p in paths {
        let file = if p.is_dir() {
            let index = p.join(crate::forecast::output::INDEX);
            if !index.is_file() {
                bail!(
                    "{} has no {}: not a forecast folder",
                    p.display(),
                    crate::forecast::output::INDEX
                );
            }
            index
        } else {
            p.clone()
        };
        out.extend(read_records(&file)?);
    }
    if out.is_empty() {
        bail!("no forecasts in {}", show(paths));
    }
    Ok(out)
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The outcome of every forecast against `flares`, known up to `catalog_end`.
pub fn outcomes(
    records: &[Record],
    flares: &[Flare],
    catalog_end: NaiveDateTime,
) -> Result<Vec<Outcome>> {
    let labeller = Labeller::new(flares);
    // The window rule works on ascending issue times of one window length.
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| records[i].prediction_window.start);
    let mut result: Vec<Option<Outcome>> = vec![None; records.len()];
    let mut by_length: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for &i in &order {
        by_length
            .entry(records[i].prediction_window.duration().num_seconds())
            .or_default()
            .push(i);
    }
    for idx in by_length.values() {
        let issues: Vec<NaiveDateTime> = idx
            .iter()
            .map(|&i| records[i].prediction_window.start)
            .collect();
        let window = records[idx[0]].prediction_window.duration();
        for (w, &i) in labeller.windows(&issues, window).iter().zip(idx) {
            let r = &records[i];
            let threshold: GoesClass = r
                .threshold_class
                .parse()
                .map_err(|e| anyhow::anyhow!("threshold class of a forecast: {e}"))?;
            let largest = labeller.largest(w);
            let decided = r.prediction_window.end <= catalog_end;
            result[i] = Some(Outcome {
                issue_time: fmt_utc(r.issue_time),
                image_time: fmt_utc(r.image.time),
                window_start: fmt_utc(r.prediction_window.start),
                window_end: fmt_utc(r.prediction_window.end),
                probability: r.probability,
                raw_probability: r.raw(),
                flare_forecast: r.flare_forecast,
                calibrated: r.calibration.is_some(),
                flare_observed: decided.then(|| largest.is_some_and(|f| f.class >= threshold)),
                largest_flare: largest.map(|f| f.class.to_string()),
            });
        }
    }
    Ok(result.into_iter().flatten().collect())
}

/// Reads forecasts and a catalogue, decides outcomes, scores the decided forecasts and,
/// with `plots`, draws `evaluate`'s plots into that folder; with `predictions`, writes the
/// decided forecasts to that file as a prediction file ([`prediction_rows`]).
pub fn verify(
    forecasts: &[PathBuf],
    catalog_path: &Path,
    catalog_end: Option<NaiveDateTime>,
    plots: Option<&Path>,
    predictions: Option<&Path>,
) -> Result<Report> {
    let all = read_forecasts(forecasts)?;
    // A folder read twice, or a per-image forecast made twice, counts once.
    let mut seen = std::collections::HashSet::new();
    let records: Vec<Record> = all
        .iter()
        .filter(|r| seen.insert(r.key()))
        .cloned()
        .collect();
    let duplicates = all.len() - records.len();
    let threshold = records[0].decision_threshold;
    if let Some(r) = records.iter().find(|r| r.decision_threshold != threshold) {
        bail!(
            "forecasts use different decision thresholds ({threshold} and {}, image {}): \
             verify them separately",
            r.decision_threshold,
            fmt_utc(r.image.time)
        );
    }
    let catalog = catalog::read(catalog_path, None, false)?;
    let catalog_end = match catalog_end {
        Some(t) => t,
        None => catalog
            .flares
            .iter()
            .map(|f| f.start)
            .max()
            .with_context(|| {
                format!(
                    "{} has no flares, so it cannot say how far it reaches: give its end time",
                    catalog_path.display()
                )
            })?,
    };
    let mut outcomes = outcomes(&records, &catalog.flares, catalog_end)?;
    outcomes
        .sort_by(|a, b| (&a.window_start, &a.issue_time).cmp(&(&b.window_start, &b.issue_time)));
    let decided: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.flare_observed.is_some())
        .collect();
    let rows = prediction_rows(&outcomes);
    let file = PredictionFile::from_rows(PathBuf::from("forecasts"), &rows);
    let scores = (!decided.is_empty()).then(|| evaluate::score(&file, threshold));
    let calibrated = (!decided.is_empty() && decided.iter().all(|o| o.calibrated)).then(|| {
        let cal: Vec<f64> = decided.iter().map(|o| o.probability).collect();
        let methods: std::collections::BTreeSet<&str> = records
            .iter()
            .filter_map(|r| r.calibration.as_deref())
            .collect();
        Compared {
            method: methods.into_iter().collect::<Vec<_>>().join(" | "),
            raw: Quality::of(&file.probs, &file.targets),
            calibrated: Quality::of(&cal, &file.targets),
        }
    });
    let mut plot_files = Vec::new();
    if let Some(dir) = plots {
        if decided.is_empty() {
            bail!("no forecast is decided yet: nothing to plot");
        }
        plot_files =
            evaluate::plots::plot_predictions(dir, std::slice::from_ref(&file), threshold)?
                .into_iter()
                .map(|p| p.display().to_string())
                .collect();
    }
    let report = Report {
        forecasts: records.len(),
        duplicates,
        decided: decided.len(),
        pending: outcomes.len() - decided.len(),
        catalog_end: fmt_utc(catalog_end),
        threshold,
        scores,
        calibrated,
        outcomes,
        plots: plot_files,
    };
    if let Some(path) = predictions {
        evaluate::write_predictions(path, &rows, false)?;
    }
    Ok(report)
}

/// The decided forecasts as prediction rows (`timestamp,flare_prob,target`, the format
/// `evaluate` reads and `calibrate` fits on): the image time, the raw probability, and
/// whether a flare came.
pub fn prediction_rows(outcomes: &[Outcome]) -> Vec<PredictionRow> {
    outcomes
        .iter()
        .filter_map(|o| {
            let target = o.flare_observed?;
            Some(PredictionRow::new(
                o.image_time.clone(),
                o.raw_probability,
                target,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::record::{ImageInfo, ModelInfo, WindowRule};
    use crate::instant::parse_time;

    fn record(image: &str, p: f64) -> Record {
        record_at(image, image, p, WindowRule::ImageHour)
    }

    fn record_at(image: &str, issue: &str, p: f64, rule: WindowRule) -> Record {
        let model = ModelInfo {
            path: "m.pth".into(),
            sha256: "00".into(),
            architecture: "attention".into(),
            im_size: 256,
            calibration: None,
        };
        let image = ImageInfo {
            time: parse_time(image).unwrap(),
            source_id: Some(19),
            id: None,
            file: None,
        };
        Record::new(
            vec![model],
            parse_time(issue).unwrap(),
            image,
            &[p],
            0.5,
            rule,
        )
    }

    fn flare(start: &str, class: &str) -> Flare {
        Flare {
            start: parse_time(start).unwrap(),
            class: class.parse().unwrap(),
            lon: None,
            lat: None,
            satellite: None,
            scale: Default::default(),
        }
    }

    #[test]
    fn outcomes_follow_the_label_window_and_pending_follows_the_catalogue_end() {
        let records = [
            record("2014-03-02T04:47:53", 0.9), // window (04:00, 04:00 next day]
            record("2014-03-02T06:00:00", 0.2), // window (06:00, ...]
            record("2014-03-03T05:00:00", 0.7), // ends 2014-03-04T05:00 > catalogue end
        ];
        let flares = [
            flare("2014-03-02T05:00:00", "M1.0"), // in the first window only
            flare("2014-03-03T04:00:00", "X2.0"), // the first window's last second is 03:59:59
            flare("2014-03-03T05:30:00", "C9.9"),
        ];
        let end = parse_time("2014-03-04T00:00:00").unwrap();
        let o = outcomes(&records, &flares, end).unwrap();
        assert_eq!(o[0].flare_observed, Some(true));
        assert_eq!(o[0].largest_flare.as_deref(), Some("M1.0"));
        // 06:00 sees the X2.0 at 04:00 next day.
        assert_eq!(o[1].flare_observed, Some(true));
        assert_eq!(o[1].largest_flare.as_deref(), Some("X2.0"));
        assert_eq!(o[2].flare_observed, None);
        assert_eq!(o[2].largest_flare.as_deref(), Some("C9.9"));
        assert_eq!(o[0].window_start, "2014-03-02T04:00:00Z");
    }

    #[test]
    fn an_operational_window_does_not_count_a_flare_between_the_image_and_the_issue_time() {
        let records = [
            record_at(
                "2014-03-02T04:47:53",
                "2014-03-02T06:00:00",
                0.9,
                WindowRule::IssueTime,
            ),
            record_at(
                "2014-03-02T04:47:53",
                "2014-03-02T06:00:00",
                0.9,
                WindowRule::ImageHour,
            ),
        ];
        let flares = [flare("2014-03-02T05:30:00", "X1.0")];
        let end = parse_time("2014-03-04T00:00:00").unwrap();
        let o = outcomes(&records, &flares, end).unwrap();
        assert_eq!(o[0].window_start, "2014-03-02T06:00:00Z");
        assert_eq!(o[0].flare_observed, Some(false));
        assert_eq!(o[1].flare_observed, Some(true));
    }
}
