//! `calibrate`: a map from a network's P(flare) to a probability that means what it says,
//! fitted on a prediction file (predictions on months held out of training) and written
//! into a new weights file's metadata. The networks train on balanced epochs (flaring
//! instances oversampled to the non-flaring count), so their raw P(flare) runs high; the
//! map corrects that. The decision threshold of TSS/HSS2 stays on the raw probability.
//!
//! The map itself and the [`Calibration`] a model carries are `crate::calibration`'s; the
//! raw-against-calibrated scores are `evaluate::calibrated`'s.

use crate::calibration::{map, Calibration};
use crate::evaluate::{self, calibrated_file, compare, plots, Compared, PredictionFile};
use crate::fsio::Role;
use crate::model::{self, LoadedModel};
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Fewest flaring (and fewest non-flaring) instances a map is fitted on: with fewer, the
/// event rate the map learns is mostly noise.
pub const MIN_EVENTS: usize = 10;

/// Which map to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Platt,
    Isotonic,
}

impl std::str::FromStr for Method {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "platt" => Ok(Method::Platt),
            "isotonic" => Ok(Method::Isotonic),
            other => bail!("unknown calibration method {other:?}: expected platt or isotonic"),
        }
    }
}

/// Fits `method` on a prediction file's raw probabilities and targets, refusing a file
/// with fewer than [`MIN_EVENTS`] flaring or non-flaring instances, or an instance twice.
pub fn fit(file: &PredictionFile, method: Method) -> Result<Calibration> {
    let name = file
        .path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    fit_values(
        &file.keys,
        &file.probs,
        &file.targets,
        method,
        name,
        &file.path.display().to_string(),
    )
}

/// Fits `method` on the instances `keys` (their probabilities and targets), which `what`
/// names in a refusal.
fn fit_values(
    keys: &[String],
    probs: &[f64],
    targets: &[bool],
    method: Method,
    fitted_on: String,
    what: &str,
) -> Result<Calibration> {
    // A repeated instance is refused, not counted once: the fit would weigh it twice, and
    // two instances repeated ten times would pass as the 10 events of each class a map
    // needs. A prediction file has one row per instance, so a repeat means rows were
    // concatenated or copied, which the user should hear of rather than have undone.
    let mut seen = std::collections::HashSet::new();
    if let Some(k) = keys.iter().find(|k| !seen.insert(k.as_str())) {
        bail!("{what} holds the instance {k:?} twice: a calibration counts each instance once");
    }
    let events = targets.iter().filter(|&&t| t).count();
    let quiet = targets.len() - events;
    if events < MIN_EVENTS || quiet < MIN_EVENTS {
        bail!(
            "{what} has {events} flaring and {quiet} non-flaring instances: a calibration \
             needs at least {MIN_EVENTS} of each"
        );
    }
    let map = match method {
        Method::Platt => map::fit_platt(probs, targets),
        Method::Isotonic => map::fit_isotonic(probs, targets),
    };
    Ok(Calibration {
        map,
        fitted_on,
        instances: targets.len(),
        events,
    })
}

/// One fold's predictions scored raw and through a map fitted on the other folds'
/// predictions pooled, never its own: the calibrated score a new month would get.
#[derive(Clone, Debug, Serialize)]
pub struct CrossFold {
    pub fold: u32,
    pub fitted_on_folds: Vec<u32>,
    pub calibration: Calibration,
    #[serde(flatten)]
    pub compared: Compared,
}

/// [`CrossFold`] for every fold of `folds` (at least two).
pub fn cross_fold(folds: &[(u32, &PredictionFile)], method: Method) -> Result<Vec<CrossFold>> {
    if folds.len() < 2 {
        bail!(
            "a calibration fitted on the other folds needs at least two finished folds, not {}",
            folds.len()
        );
    }
    folds
        .iter()
        .map(|&(fold, file)| {
            let others: Vec<&(u32, &PredictionFile)> =
                folds.iter().filter(|(k, _)| *k != fold).collect();
            let keys: Vec<String> = others.iter().flat_map(|(_, f)| f.keys.clone()).collect();
            let probs: Vec<f64> = others.iter().flat_map(|(_, f)| f.probs.clone()).collect();
            let targets: Vec<bool> = others.iter().flat_map(|(_, f)| f.targets.clone()).collect();
            let fitted_on_folds: Vec<u32> = others.iter().map(|(k, _)| *k).collect();
            let names: Vec<String> = fitted_on_folds
                .iter()
                .map(|k| format!("fold {k}"))
                .collect();
            let what = format!("the predictions of {}", names.join(", "));
            let calibration = fit_values(&keys, &probs, &targets, method, names.join(", "), &what)?;
            Ok(CrossFold {
                fold,
                fitted_on_folds,
                compared: compare(file, &calibration),
                calibration,
            })
        })
        .collect()
}

/// What `calibrate` is asked to do.
pub struct CalibrateConfig {
    pub model: PathBuf,
    pub predictions: PathBuf,
    pub method: Method,
    /// The new weights file (default: `{model stem}_calibrated.safetensors` beside it).
    pub out: Option<PathBuf>,
    /// The reliability plot (default: `{out stem}_reliability.png` beside `out`).
    pub plot: Option<PathBuf>,
}

/// What `calibrate` did.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub model: String,
    pub predictions: String,
    pub output: String,
    pub plot: String,
    pub calibration: Calibration,
    /// On the fitting file itself (in-sample): judge the map on other months.
    #[serde(flatten)]
    pub compared: Compared,
}

/// `{stem}_calibrated.safetensors` beside the model.
pub fn default_output(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    model.with_file_name(format!("{stem}_calibrated.safetensors"))
}

/// `{out stem}_reliability.png` beside the calibrated model.
pub fn default_plot(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}_reliability.png"))
}

/// Fits a calibration on the prediction file, writes the model with it into a new
/// safetensors file (the model file is never touched), and draws the reliability plot.
/// Neither output may be an input or the other output.
pub fn calibrate(cfg: &CalibrateConfig) -> Result<Summary> {
    let out = cfg
        .out
        .clone()
        .unwrap_or_else(|| default_output(&cfg.model));
    let plot = cfg.plot.clone().unwrap_or_else(|| default_plot(&out));
    if out.extension().is_none_or(|e| e != "safetensors") {
        return Err(crate::setting::bad(
            "out",
            format!(
                "{}: a calibrated model is written as .safetensors (its metadata holds the map)",
                out.display()
            ),
        ));
    }
    let role = |what, path| Role { what, path };
    crate::fsio::check_outputs(
        &[
            ("out", role("the calibrated model", &out)),
            ("plot", role("the plot", &plot)),
        ],
        &[
            role("the model", &cfg.model),
            role("the predictions", &cfg.predictions),
        ],
    )?;
    let loaded: LoadedModel = model::load_model(&cfg.model, tch::Device::Cpu)?;
    let file = evaluate::read_unique_predictions(&cfg.predictions)?;
    let cal = fit(&file, cfg.method)?;
    let mut meta = loaded.meta.clone();
    meta.calibration = Some(cal.clone());
    model::weights::save_model(&out, &loaded.vs, &meta)?;
    let files = [
        PredictionFile {
            path: PathBuf::from("raw"),
            ..file.clone()
        },
        calibrated_file(&file, &cal, cal.method()),
    ];
    plots::reliability_plot(&plot, &files)?;
    Ok(Summary {
        model: cfg.model.display().to_string(),
        predictions: cfg.predictions.display().to_string(),
        output: out.display().to_string(),
        plot: plot.display().to_string(),
        compared: compare(&file, &cal),
        calibration: cal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` instances named `{name}{i}`, every other one flaring.
    fn file(name: &str, n: usize) -> PredictionFile {
        let rows: Vec<evaluate::PredictionRow> = (0..n)
            .map(|i| evaluate::PredictionRow::new(format!("{name}{i}"), 0.5, i % 2 == 0))
            .collect();
        PredictionFile::from_rows(PathBuf::from(format!("{name}.csv")), &rows)
    }

    #[test]
    fn a_repeated_instance_never_counts_toward_the_events() {
        // Two instances, ten times each: ten events and ten quiet rows, one of each class.
        let mut rows = Vec::new();
        for _ in 0..10 {
            rows.push(evaluate::PredictionRow::new("a".into(), 0.8, true));
            rows.push(evaluate::PredictionRow::new("b".into(), 0.3, false));
        }
        let twice = PredictionFile::from_rows(PathBuf::from("twice.csv"), &rows);
        let e = fit(&twice, Method::Platt).unwrap_err().to_string();
        assert!(
            e.contains("twice.csv holds the instance \"a\" twice"),
            "{e}"
        );
        // Pooled for another fold, too.
        let (one, other) = (file("i", 40), file("i", 40));
        let e = cross_fold(
            &[(1, &one), (2, &other), (3, &file("j", 40))],
            Method::Platt,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds the instance \"i0\" twice"), "{e}");
        assert!(fit(&file("i", 40), Method::Isotonic).is_ok());
    }
}
