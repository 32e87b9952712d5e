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
/// with fewer than [`MIN_EVENTS`] flaring or non-flaring instances.
pub fn fit(file: &PredictionFile, method: Method) -> Result<Calibration> {
    let name = file
        .path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    fit_values(
        &file.probs,
        &file.targets,
        method,
        name,
        &file.path.display().to_string(),
    )
}

/// Fits `method` on probabilities and targets that `what` names in a refusal.
fn fit_values(
    probs: &[f64],
    targets: &[bool],
    method: Method,
    fitted_on: String,
    what: &str,
) -> Result<Calibration> {
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
            let probs: Vec<f64> = others.iter().flat_map(|(_, f)| f.probs.clone()).collect();
            let targets: Vec<bool> = others.iter().flat_map(|(_, f)| f.targets.clone()).collect();
            let fitted_on_folds: Vec<u32> = others.iter().map(|(k, _)| *k).collect();
            let names: Vec<String> = fitted_on_folds
                .iter()
                .map(|k| format!("fold {k}"))
                .collect();
            let what = format!("the predictions of {}", names.join(", "));
            let calibration = fit_values(&probs, &targets, method, names.join(", "), &what)?;
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

/// Fits a calibration on the prediction file, writes the model with it into a new
/// safetensors file (the model file is never touched), and draws the reliability plot.
pub fn calibrate(cfg: &CalibrateConfig) -> Result<Summary> {
    let out = cfg
        .out
        .clone()
        .unwrap_or_else(|| default_output(&cfg.model));
    if out.extension().is_none_or(|e| e != "safetensors") {
        return Err(crate::setting::bad(
            "out",
            format!(
                "{}: a calibrated model is written as .safetensors (its metadata holds the map)",
                out.display()
            ),
        ));
    }
    if same_file(&out, &cfg.model) {
        return Err(crate::setting::bad(
            "out",
            format!(
                "{} is the model itself: the calibrated model goes to a new file",
                out.display()
            ),
        ));
    }
    let loaded: LoadedModel = model::load_model(&cfg.model, tch::Device::Cpu)?;
    let file = evaluate::read_predictions(&cfg.predictions)?;
    let cal = fit(&file, cfg.method)?;
    let mut meta = loaded.meta.clone();
    meta.calibration = Some(cal.clone());
    model::weights::save_model(&out, &loaded.vs, &meta)?;
    let plot = cfg.plot.clone().unwrap_or_else(|| {
        let stem = out
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned());
        out.with_file_name(format!("{stem}_reliability.png"))
    });
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

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
