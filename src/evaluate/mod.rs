//! Verification of flare forecasts: scores prediction files (`timestamp,flare_prob,target`,
//! the reference's format), summarises several of them (mean and sample standard
//! deviation), breaks the X- and M-class instances down by flare location, draws plots,
//! and produces a prediction file by running a model on a fold's validation split.

mod location;
pub mod plots;
mod predictions;
mod run_model;
mod table;

pub use location::{location_analysis, read_details, Details, DetailsRow, Location, ZoneCounts};
pub use predictions::{instance_key, read_predictions, PredictionFile};
pub use run_model::{predict_fold, FoldPredictConfig};

use crate::metrics::{self, Confusion};
use serde::Serialize;

/// The scores of one prediction file at one threshold.
#[derive(Clone, Debug, Serialize)]
pub struct FileScores {
    pub file: String,
    pub n: u64,
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tss: f64,
    pub hss2: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub brier: f64,
    pub bss: f64,
    pub roc_auc: f64,
    pub best_threshold: f64,
    pub best_tss: f64,
    /// Fraction of instances that are events (the climatology of the BSS).
    pub event_rate: f64,
    /// The file's location breakdown, when details were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// Scores a file's forecasts, positive when `prob >= threshold`.
pub fn score(file: &PredictionFile, threshold: f64) -> FileScores {
    let (probs, targets) = (&file.probs, &file.targets);
    let c = Confusion::from_probs(probs, targets, threshold);
    let (best_threshold, best_tss) = metrics::best_tss_threshold(probs, targets);
    let events = targets.iter().filter(|&&t| t).count();
    FileScores {
        file: file.path.display().to_string(),
        n: c.n(),
        tp: c.tp,
        fp: c.fp,
        tn: c.tn,
        fn_: c.fn_,
        tss: c.tss(),
        hss2: c.hss2(),
        accuracy: c.accuracy(),
        precision: c.precision(),
        recall: c.recall(),
        brier: metrics::brier(probs, targets),
        bss: metrics::brier_skill(probs, targets),
        roc_auc: metrics::roc_auc(probs, targets),
        best_threshold,
        best_tss,
        event_rate: if targets.is_empty() {
            0.0
        } else {
            events as f64 / targets.len() as f64
        },
        location: None,
    }
}

type Getter = fn(&FileScores) -> f64;

/// The numeric fields of [`FileScores`], for the mean and standard deviation over files.
const SUMMARY_FIELDS: [(&str, Getter); 16] = [
    ("n", |s| s.n as f64),
    ("tp", |s| s.tp as f64),
    ("fp", |s| s.fp as f64),
    ("tn", |s| s.tn as f64),
    ("fn", |s| s.fn_ as f64),
    ("tss", |s| s.tss),
    ("hss2", |s| s.hss2),
    ("accuracy", |s| s.accuracy),
    ("precision", |s| s.precision),
    ("recall", |s| s.recall),
    ("brier", |s| s.brier),
    ("bss", |s| s.bss),
    ("roc_auc", |s| s.roc_auc),
    ("best_threshold", |s| s.best_threshold),
    ("best_tss", |s| s.best_tss),
    ("event_rate", |s| s.event_rate),
];

/// Mean and sample standard deviation (n - 1) of every summary field over the files;
/// the standard deviation is `None` for fewer than two files.
pub fn summarise(
    scores: &[FileScores],
) -> (
    serde_json::Map<String, serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    let mut mean = serde_json::Map::new();
    let mut std = serde_json::Map::new();
    let n = scores.len() as f64;
    for (name, get) in SUMMARY_FIELDS {
        let values: Vec<f64> = scores.iter().map(get).collect();
        let m = if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / n
        };
        mean.insert(name.to_string(), serde_json::json!(m));
        let sd = (values.len() >= 2)
            .then(|| (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        std.insert(name.to_string(), serde_json::json!(sd));
    }
    (mean, std)
}

/// Everything `evaluate` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub threshold: f64,
    pub files: Vec<FileScores>,
    pub mean: serde_json::Map<String, serde_json::Value>,
    pub std: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// Scores every file, and with details the location breakdown per file and over all.
pub fn evaluate(
    files: &[PredictionFile],
    details: Option<&Details>,
    threshold: f64,
) -> anyhow::Result<Report> {
    let mut scores: Vec<FileScores> = files.iter().map(|f| score(f, threshold)).collect();
    let location = match details {
        Some(d) => {
            d.check_every_file_matches(files)?;
            for (s, f) in scores.iter_mut().zip(files) {
                s.location = Some(location_analysis(std::slice::from_ref(f), d, threshold));
            }
            Some(location_analysis(files, d, threshold))
        }
        None => None,
    };
    let (mean, std) = summarise(&scores);
    Ok(Report {
        threshold,
        files: scores,
        mean,
        std,
        location,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(probs: &[f64], targets: &[bool]) -> PredictionFile {
        PredictionFile {
            path: PathBuf::from("p.csv"),
            timestamps: vec![String::new(); probs.len()],
            keys: (0..probs.len()).map(|i| i.to_string()).collect(),
            probs: probs.to_vec(),
            targets: targets.to_vec(),
        }
    }

    #[test]
    fn mean_and_sample_std_by_hand() {
        // TSS of the three files: 1, -1 and 0 -> mean 0, sample std 1.
        let files = [
            file(&[0.9, 0.1], &[true, false]),
            file(&[0.9, 0.1], &[false, true]),
            file(&[0.9, 0.6, 0.1, 0.2], &[true, false, false, true]),
        ];
        let report = evaluate(&files, None, 0.5).unwrap();
        let tss: Vec<f64> = report.files.iter().map(|f| f.tss).collect();
        assert_eq!(tss, vec![1.0, -1.0, 0.0]);
        assert_eq!(report.mean["tss"], 0.0);
        assert_eq!(report.std["tss"], 1.0);
        assert_eq!(report.mean["n"], 8.0 / 3.0);
        let one = evaluate(&files[..1], None, 0.5).unwrap();
        assert!(one.std["tss"].is_null());
    }

    #[test]
    fn instance_keys_ignore_the_directory_prefix() {
        let tail = "2011/01/01/HMI.m2011.01.01_00.00.00.jpg";
        assert_eq!(instance_key(&format!("/data/hmi_jpgs_512/{tail}")), tail);
        assert_eq!(instance_key(tail), tail);
        assert_eq!(
            instance_key("C:\\data\\2011\\01\\01\\HMI.m2011.01.01_00.00.00.jpg"),
            tail
        );
        assert_eq!(instance_key(" other.jpg "), "other.jpg");
    }
}
