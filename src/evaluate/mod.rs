//! Verification of flare forecasts: scores prediction files (`timestamp,flare_prob,target`,
//! the reference's format), summarises several of them (mean and sample standard
//! deviation), breaks the X- and M-class instances down by flare location, draws plots,
//! and produces a prediction file by running a model on a fold's validation split.

mod calibrated;
mod location;
pub mod plots;
mod predictions;
mod run;
mod run_model;
mod table;

pub use calibrated::{calibrated_file, compare, Compared, Quality, BINS};
pub use location::{location_analysis, read_details, Details, DetailsRow, Location, ZoneCounts};
pub use predictions::{
    instance_key, read_prediction_files, read_predictions, read_unique_predictions,
    write_predictions, PredictionFile, PredictionRow, PredictionWriter,
};
pub use run::{run, EvaluateConfig, Evaluation, Predictions};
pub use run_model::{predict_fold, FoldPredictConfig};

use crate::metrics::{self, Confusion};
use serde::Serialize;

/// The counts and scores of a verification: `Count` is the type of the confusion
/// counts, `Score` that of the scores. A file's are [`FileCounts`], their mean or standard
/// deviation over files [`ScoreStats`].
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Scores<Count, Score> {
    pub n: Count,
    pub tp: Count,
    pub fp: Count,
    pub tn: Count,
    #[serde(rename = "fn")]
    pub fn_: Count,
    pub tss: Score,
    pub hss2: Score,
    pub accuracy: Score,
    pub precision: Score,
    pub recall: Score,
    pub brier: Score,
    pub bss: Score,
    pub roc_auc: Score,
    pub best_threshold: Score,
    pub best_tss: Score,
    /// Fraction of instances that are events (the climatology of the BSS).
    pub event_rate: Score,
}

/// A file's counts, and its scores, `None` where the file leaves them undefined.
pub type FileCounts = Scores<u64, Option<f64>>;

/// One statistic (mean or standard deviation) of every count and score over files;
/// `None` where a file leaves the score undefined, and for the standard deviation of
/// fewer than two files.
pub type ScoreStats = Scores<Option<f64>, Option<f64>>;

/// The scores of one prediction file at one threshold. A score that the file cannot
/// define (TSS without a positive or a negative instance, precision without a forecast
/// flare, ...) is `None`, written as null; `undefined` says why.
#[derive(Clone, Debug, Serialize)]
pub struct FileScores {
    pub file: String,
    #[serde(flatten)]
    pub scores: FileCounts,
    /// Why some scores are undefined, one reason each; empty when all are defined.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undefined: Vec<String>,
    /// The file's location breakdown, when details were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// Scores a file's forecasts, positive when `prob >= threshold`.
pub fn score(file: &PredictionFile, threshold: f64) -> FileScores {
    let (probs, targets) = (&file.probs, &file.targets);
    let c = Confusion::from_probs(probs, targets, threshold);
    let events = targets.iter().filter(|&&t| t).count();
    let (n, pos, neg) = (targets.len(), events, targets.len() - events);
    let hss_den = {
        let (tp, fp, tn, fn_) = (c.tp as f64, c.fp as f64, c.tn as f64, c.fn_ as f64);
        (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn)
    };
    let mut undefined = Vec::new();
    if n == 0 {
        undefined.push("the file has no instances: every score is undefined".to_string());
    } else if pos == 0 || neg == 0 {
        let which = if pos == 0 { "positive" } else { "negative" };
        undefined.push(format!(
            "no {which} instance: TSS, BSS, ROC AUC and the best TSS are undefined{}",
            if pos == 0 { ", and so is recall" } else { "" }
        ));
    }
    if n > 0 && hss_den == 0.0 {
        undefined.push("HSS2 is undefined: its denominator is 0".to_string());
    }
    if n > 0 && c.tp + c.fp == 0 {
        undefined.push("no instance forecast positive: precision is undefined".to_string());
    }
    let both = pos > 0 && neg > 0;
    let best = both.then(|| metrics::best_tss_threshold(probs, targets));
    FileScores {
        file: file.path.display().to_string(),
        scores: Scores {
            n: c.n(),
            tp: c.tp,
            fp: c.fp,
            tn: c.tn,
            fn_: c.fn_,
            tss: both.then(|| c.tss()),
            hss2: (hss_den != 0.0).then(|| c.hss2()),
            accuracy: (n > 0).then(|| c.accuracy()),
            precision: (c.tp + c.fp > 0).then(|| c.precision()),
            recall: (pos > 0).then(|| c.recall()),
            brier: (n > 0).then(|| metrics::brier(probs, targets)),
            bss: both.then(|| metrics::brier_skill(probs, targets)),
            roc_auc: both.then(|| metrics::roc_auc(probs, targets)),
            best_threshold: best.map(|b| b.0),
            best_tss: best.map(|b| b.1),
            event_rate: (n > 0).then(|| events as f64 / n as f64),
        },
        undefined,
        location: None,
    }
}

impl ScoreStats {
    /// Applies `stat` to each field's values over `scores`; a field undefined in any file
    /// gets `None`.
    fn over(scores: &[FileScores], stat: impl Fn(&[f64]) -> Option<f64>) -> ScoreStats {
        let count = |get: fn(&FileCounts) -> u64| {
            stat(
                &scores
                    .iter()
                    .map(|s| get(&s.scores) as f64)
                    .collect::<Vec<_>>(),
            )
        };
        let score = |get: fn(&FileCounts) -> Option<f64>| {
            let values: Option<Vec<f64>> = scores.iter().map(|s| get(&s.scores)).collect();
            values.and_then(|v| stat(&v))
        };
        ScoreStats {
            n: count(|s| s.n),
            tp: count(|s| s.tp),
            fp: count(|s| s.fp),
            tn: count(|s| s.tn),
            fn_: count(|s| s.fn_),
            tss: score(|s| s.tss),
            hss2: score(|s| s.hss2),
            accuracy: score(|s| s.accuracy),
            precision: score(|s| s.precision),
            recall: score(|s| s.recall),
            brier: score(|s| s.brier),
            bss: score(|s| s.bss),
            roc_auc: score(|s| s.roc_auc),
            best_threshold: score(|s| s.best_threshold),
            best_tss: score(|s| s.best_tss),
            event_rate: score(|s| s.event_rate),
        }
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Sample standard deviation (n - 1).
fn sample_std(v: &[f64]) -> Option<f64> {
    let m = mean(v)?;
    (v.len() >= 2)
        .then(|| (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)).sqrt())
}

/// Mean and sample standard deviation (n - 1) of every score over the files.
pub fn summarise(scores: &[FileScores]) -> (ScoreStats, ScoreStats) {
    (
        ScoreStats::over(scores, mean),
        ScoreStats::over(scores, sample_std),
    )
}

/// Everything `evaluate` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub threshold: f64,
    pub files: Vec<FileScores>,
    pub mean: ScoreStats,
    pub std: ScoreStats,
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
        let tss: Vec<Option<f64>> = report.files.iter().map(|f| f.scores.tss).collect();
        assert_eq!(tss, vec![Some(1.0), Some(-1.0), Some(0.0)]);
        assert_eq!(report.mean.tss, Some(0.0));
        assert_eq!(report.std.tss, Some(1.0));
        assert_eq!(report.mean.n, Some(8.0 / 3.0));
        let one = evaluate(&files[..1], None, 0.5).unwrap();
        assert_eq!(one.std.tss, None);
    }

    #[test]
    fn scores_a_single_class_file_leaves_undefined_and_says_why() {
        let all_pos = file(&[0.9, 0.2, 0.7], &[true, true, true]);
        let file_scores = score(&all_pos, 0.5);
        let s = &file_scores.scores;
        assert_eq!((s.tp, s.fn_), (2, 1));
        assert_eq!(s.tss, None);
        assert_eq!(s.roc_auc, None);
        assert_eq!(s.best_tss, None);
        assert_eq!(s.bss, None);
        assert_eq!(s.recall, Some(2.0 / 3.0));
        assert_eq!(s.precision, Some(1.0));
        assert_eq!(
            file_scores.undefined,
            vec!["no negative instance: TSS, BSS, ROC AUC and the best TSS are undefined"]
        );
        // One undefined file makes the mean over files undefined, not a number.
        let mixed = file(&[0.9, 0.1], &[true, false]);
        let report = evaluate(&[mixed, all_pos], None, 0.5).unwrap();
        assert_eq!(report.mean.tss, None);
        assert_eq!(report.mean.tp, Some(1.5));
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["mean"]["tss"].is_null());
        assert!(json["files"][1]["roc_auc"].is_null());
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
