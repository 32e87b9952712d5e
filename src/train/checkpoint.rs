//! Checkpoint files of a training run: `final`, `best`, and `last` (the resumable state:
//! weights with BatchNorm buffers, the epoch reached, best scores and history).
//!
//! All three are flarecast safetensors; the training state rides in the metadata JSON.
//! SGD without momentum keeps no optimizer state beyond its learning rate, which follows
//! from the epoch; every random choice of the loader derives from (seed, epoch, item), so
//! the epoch number is the whole RNG state.

use super::history::EpochRecord;
use super::TrainConfig;
use crate::model::weights::{self, ModelMeta};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn;

/// Where a run's files go: `{out}/{attention|no_attention}/fold{K}_*`.
pub struct RunPaths {
    pub dir: PathBuf,
    pub stem: String,
}

impl RunPaths {
    pub fn new(cfg: &TrainConfig) -> Self {
        RunPaths {
            dir: cfg.out.join(cfg.arch.dir_name()),
            stem: format!("fold{}", cfg.fold),
        }
    }

    pub fn file(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{}_{what}.safetensors", self.stem))
    }

    pub fn last(&self) -> PathBuf {
        self.file("last")
    }
    pub fn best(&self) -> PathBuf {
        self.file("best")
    }
    pub fn final_(&self) -> PathBuf {
        self.file("final")
    }
    pub fn history_stem(&self) -> String {
        format!("{}_history", self.stem)
    }
}

/// The state that lets `--resume` continue a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs completed.
    pub epoch: usize,
    /// The best epoch's scores; -inf before any (JSON writes it as null).
    #[serde(deserialize_with = "null_is_minus_infinity")]
    pub best_tss: f64,
    #[serde(deserialize_with = "null_is_minus_infinity")]
    pub best_hss2: f64,
    pub best_epoch: Option<usize>,
    pub history: Vec<EpochRecord>,
}

impl ResumeState {
    /// The state of a run that has not trained yet.
    pub fn fresh() -> Self {
        ResumeState {
            epoch: 0,
            best_tss: f64::NEG_INFINITY,
            best_hss2: f64::NEG_INFINITY,
            best_epoch: None,
            history: vec![],
        }
    }
}

/// Reads a best score back: JSON has no -inf, so serde_json wrote it as null.
fn null_is_minus_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

/// The metadata `training` entry of flarecast checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub config: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeState>,
}

pub fn save(
    path: &Path,
    vs: &nn::VarStore,
    cfg: &TrainConfig,
    resume: Option<ResumeState>,
) -> Result<()> {
    let info = TrainingInfo {
        config: cfg.to_json(),
        resume,
    };
    let meta = ModelMeta {
        training: Some(serde_json::to_value(info)?),
        precision: Some(cfg.precision),
        ..ModelMeta::new(cfg.arch, cfg.recipe.im_size.as_i64())
    };
    weights::save_model(path, vs, &meta)
}

/// Reads the `last` checkpoint: its weights go into `vs`, its state is returned. The
/// run's settings must match the ones it was started with (those that change results).
pub fn load_last(path: &Path, vs: &mut nn::VarStore, cfg: &TrainConfig) -> Result<ResumeState> {
    let (tensors, meta) = weights::read_weights(path)?;
    let meta = meta.with_context(|| format!("{} has no flarecast metadata", path.display()))?;
    let info: TrainingInfo = serde_json::from_value(meta.training.clone().unwrap_or_default())
        .with_context(|| format!("{}: no training state", path.display()))?;
    let state = info
        .resume
        .with_context(|| format!("{}: no resumable state", path.display()))?;
    let now = cfg.to_json();
    for key in TrainConfig::RESULT_KEYS {
        if info.config.get(key) != now.get(key) {
            bail!(
                "{}: cannot resume with {key} = {} (the run was started with {})",
                path.display(),
                now.get(key).cloned().unwrap_or_default(),
                info.config.get(key).cloned().unwrap_or_default()
            );
        }
    }
    weights::assign(vs, &tensors, &path.display().to_string())?;
    Ok(state)
}
