//! A training run's settings: the recipe (`Recipe::PAPER` by default), the data, where
//! the files go, the devices and the process group.

use crate::data::{CacheMode, LoaderConfig};
use crate::device::device_name;
use crate::distributed::Group;
use crate::label::Fold;
use crate::model::{Arch, Precision};
use crate::recipe::Recipe;
use crate::setting;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use tch::Device;

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub fold: u32,
    pub arch: Arch,
    /// Epochs, batch, input side, SGD and its schedule, seed: `Recipe::PAPER` by default.
    pub recipe: Recipe,
    pub images: PathBuf,
    pub labels: PathBuf,
    pub out: PathBuf,
    pub devices: Vec<Device>,
    pub precision: Precision,
    pub workers: usize,
    pub cache: CacheMode,
    pub init_weights: Option<PathBuf>,
    pub resume: bool,
    pub augment: bool,
    pub skip_bad_images: bool,
    /// Train on a validation split of one class; no epoch is then chosen as best.
    pub allow_one_class_val: bool,
    /// TensorBoard event files: `{out}/{arch}/fold{K}_tb` (`Beside`), a folder, or none.
    pub tensorboard: crate::tensorboard::Destination,
    /// The process group this process is one rank of (DDP: each rank its share of every
    /// batch, one gradient all-reduce per step, rank 0 alone writes); None trains alone.
    pub group: Option<Arc<Group>>,
}

impl TrainConfig {
    /// Settings that change the results: a resumed run must use the same ones.
    pub const RESULT_KEYS: [&'static str; 11] = [
        "fold",
        "arch",
        "batch_size",
        "im_size",
        "lr",
        "weight_decay",
        "lr_step",
        "lr_gamma",
        "seed",
        "augment",
        "precision",
    ];

    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.recipe;
        serde_json::json!({
            "fold": self.fold,
            "arch": self.arch,
            // May grow on resume (train longer), so not one of RESULT_KEYS.
            "epochs": r.epochs,
            "batch_size": r.batch_size,
            "im_size": r.im_size,
            "lr": r.lr,
            "weight_decay": r.weight_decay,
            "lr_step": r.lr_step,
            "lr_gamma": r.lr_gamma,
            "seed": r.seed,
            "augment": self.augment,
            "precision": self.precision,
            "devices": self.devices.iter().map(|d| device_name(*d)).collect::<Vec<_>>(),
            "ranks": self.ranks(),
            "images": self.images,
            "labels": self.labels,
            "init_weights": self.init_weights,
        })
    }

    /// Processes training together (1 alone).
    pub fn ranks(&self) -> usize {
        self.group.as_ref().map_or(1, |g| g.world())
    }

    /// Whether this process writes the run's files: rank 0, or a process alone.
    pub fn writes(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.is_root())
    }

    /// Refuses settings no run can use, before anything is read (a run started from a
    /// recorded experiment comes here without the flags' parsers).
    pub fn validate(&self) -> Result<()> {
        Fold::NUMBER.check(self.fold)?;
        Recipe::EPOCHS.check(self.recipe.epochs)?;
        Recipe::BATCH_SIZE.check(self.recipe.batch_size)?;
        Recipe::LR_STEP.check(self.recipe.lr_step)?;
        LoaderConfig::WORKERS.check(self.workers)?;
        if self.group.is_some() && self.devices.len() != 1 {
            return Err(setting::bad(
                "devices",
                "each rank of a process group trains on one device",
            ));
        }
        Ok(())
    }
}
