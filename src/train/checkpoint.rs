//! Checkpoint files of a training run: `final`, `best`, and `last` (the resumable state:
//! weights with BatchNorm buffers, the epoch reached, best scores and history).
//!
//! All three are flarecast safetensors; the training state rides in the metadata JSON.
//! SGD without momentum keeps no optimizer state beyond its learning rate, which follows
//! from the epoch (an optimizer with state refuses `--resume`: `TrainConfig::validate`);
//! every random choice of the loader derives from (seed, epoch, item), so the epoch number
//! is the whole RNG state.

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
    /// The run's resolved settings and what it ran on (`train::run_config`).
    pub fn config(&self) -> PathBuf {
        self.dir.join(format!("{}_config.toml", self.stem))
    }
    pub fn history_stem(&self) -> String {
        format!("{}_history", self.stem)
    }
    /// What the names of this run's files (checkpoints, history) start with.
    pub fn prefix(&self) -> String {
        format!("{}_", self.stem)
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
    /// The best epoch's validation loss; +inf before any (and in an older flarecast's
    /// state, which did not keep it).
    #[serde(default = "infinity", deserialize_with = "null_is_infinity")]
    pub best_loss: f64,
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
            best_loss: f64::INFINITY,
            best_epoch: None,
            history: vec![],
        }
    }
}

/// Reads a best score back: JSON has no -inf, so serde_json wrote it as null.
fn null_is_minus_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

fn infinity() -> f64 {
    f64::INFINITY
}

/// Reads a best loss back: JSON has no +inf, so serde_json wrote it as null.
fn null_is_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
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
/// run's settings must match the ones it was started with (those that change results),
/// its state must leave epochs of this run to train, and its weights must be finite: a
/// file that says otherwise is refused before a step is taken.
pub fn load_last(path: &Path, vs: &mut nn::VarStore, cfg: &TrainConfig) -> Result<ResumeState> {
    let (tensors, meta) = weights::read_weights(path)?;
    let meta = meta.with_context(|| format!("{} has no flarecast metadata", path.display()))?;
    let info: TrainingInfo = serde_json::from_value(meta.training.clone().unwrap_or_default())
        .with_context(|| format!("{}: no training state", path.display()))?;
    let state = info
        .resume
        .with_context(|| format!("{}: no resumable state", path.display()))?;
    let now = cfg.to_json();
    // A key an older flarecast did not record was the paper's.
    let paper = crate::recipe::Recipe::PAPER.to_json();
    for key in TrainConfig::RESULT_KEYS {
        let then = info.config.get(key).or_else(|| paper.get(key));
        if then != now.get(key) {
            bail!(
                "{}: cannot resume with {key} = {} (the run was started with {})",
                path.display(),
                now.get(key).cloned().unwrap_or_default(),
                then.cloned().unwrap_or_default()
            );
        }
    }
    // A cosine spans the run's epochs: more of them would change the rates already used.
    let then_epochs = info.config.get("epochs");
    if cfg.recipe.schedule == crate::recipe::Schedule::Cosine && then_epochs != now.get("epochs") {
        bail!(
            "{}: cannot resume a cosine schedule with epochs = {} (the run was started with {}: \
             the schedule spans the run's epochs)",
            path.display(),
            cfg.recipe.epochs,
            then_epochs.cloned().unwrap_or_default()
        );
    }
    check_state(&state, cfg.recipe.epochs).map_err(|e| e.context(path.display().to_string()))?;
    weights::check_finite(&tensors).with_context(|| path.display().to_string())?;
    weights::assign(vs, &tensors, &path.display().to_string())?;
    Ok(state)
}

/// Refuses a resume state with no epoch of a run of `epochs` left to train, or whose
/// counters disagree with its history.
fn check_state(state: &ResumeState, epochs: usize) -> Result<()> {
    let done = state.epoch;
    if done == epochs {
        return Err(crate::setting::bad(
            "epochs",
            format!(
                "it has trained all {epochs} epochs of this run: nothing is left to train \
                 (ask for more epochs to go on)"
            ),
        ));
    }
    if done > epochs {
        return Err(crate::setting::bad(
            "epochs",
            format!("it has trained {done} epochs, more than the {epochs} of this run"),
        ));
    }
    let recorded: Vec<usize> = state.history.iter().map(|r| r.epoch).collect();
    if !recorded.iter().copied().eq(1..=done) {
        bail!("its history holds epochs {recorded:?}, its counter says {done} were trained");
    }
    if state.best_epoch.is_some_and(|b| !(1..=done).contains(&b)) {
        bail!(
            "its best epoch {:?} is not one of the {done} trained",
            state.best_epoch
        );
    }
    Ok(())
}
