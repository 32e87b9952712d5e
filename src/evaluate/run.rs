//! One `evaluate` run: the predictions (given, or made by running a model on a fold's
//! validation split), their report, and the plots.

use super::calibrated::{self, Compared};
use super::{plots, FoldPredictConfig, Report};
use crate::progress::Progress;
use crate::train::history;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

/// Where the predictions come from.
pub enum Predictions {
    /// Prediction files to score.
    Files(Vec<PathBuf>),
    /// A model run on a fold's validation split; its prediction file is written first.
    Model(FoldPredictConfig),
}

/// What to evaluate and what to draw.
pub struct EvaluateConfig {
    pub predictions: Predictions,
    /// Full label tables for the location analysis. Empty: with a model run, the fold's
    /// own table when there is one; else none.
    pub details: Vec<PathBuf>,
    pub threshold: f64,
    /// Folder for the plots, when they are wanted.
    pub plots: Option<PathBuf>,
    /// A training history to plot as training curves (with `plots`).
    pub history: Option<PathBuf>,
}

/// What a run gives: the report, the prediction file a model run wrote, the plots drawn.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<String>,
    pub plots: Vec<String>,
    /// With a calibrated model: Brier, BSS and reliability of its raw and calibrated
    /// probabilities (the scores above, TSS and HSS2 at the threshold among them, are the
    /// raw probability's, as the prediction file holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<Compared>,
}

/// Makes or reads the predictions, scores them, and draws the plots. `progress` shows a
/// model run's batches.
pub fn run(cfg: &EvaluateConfig, progress: &Progress) -> Result<Evaluation> {
    crate::setting::check_probability("threshold", cfg.threshold)?;
    let (paths, written, fold_details) = match &cfg.predictions {
        Predictions::Files(paths) => (paths.clone(), None, None),
        Predictions::Model(fold) => {
            let (path, details) = super::predict_fold(fold, progress)?;
            (vec![path.clone()], Some(path), details)
        }
    };
    let details = if cfg.details.is_empty() {
        fold_details
    } else {
        Some(super::read_details(&cfg.details)?)
    };
    let files = super::read_prediction_files(&paths)?;
    let report = super::evaluate(&files, details.as_ref(), cfg.threshold)?;
    let calibrated = match &cfg.predictions {
        Predictions::Model(fold) => crate::model::weights::read_weights(&fold.model)?
            .1
            .and_then(|m| m.calibration)
            .map(|c| calibrated::compare(&files[0], &c)),
        Predictions::Files(_) => None,
    };
    let mut plotted = Vec::new();
    if let Some(dir) = &cfg.plots {
        plotted = plots::plot_predictions(dir, &files, cfg.threshold)?;
        if let Some(h) = &cfg.history {
            plotted.push(plots::plot_history(dir, &history::read_curves(h)?)?);
        }
    }
    Ok(Evaluation {
        report,
        predictions: written.map(|p| p.display().to_string()),
        plots: plotted.iter().map(|p| p.display().to_string()).collect(),
        calibrated,
    })
}
