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

/// `--pretrained`: an ImageNet checkpoint of the network, and whether ImageNet's input
/// normalisation is folded into its first convolution.
#[derive(Clone, Debug)]
pub struct Pretrained {
    pub file: PathBuf,
    pub fold_normalisation: bool,
}

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub fold: u32,
    pub arch: Arch,
    /// Epochs, batch, input side, optimizer, schedule, balance, selection, seed:
    /// `Recipe::PAPER` by default.
    pub recipe: Recipe,
    pub images: PathBuf,
    pub labels: PathBuf,
    pub out: PathBuf,
    pub devices: Vec<Device>,
    pub precision: Precision,
    pub workers: usize,
    pub cache: CacheMode,
    pub init_weights: Option<PathBuf>,
    /// A torchvision ImageNet checkpoint to start from (not the paper's networks).
    pub pretrained: Option<Pretrained>,
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
    /// The resolved settings as a `train --config` file, written beside the checkpoints
    /// with what the run ran on (`train::run_config`); `None` writes none.
    pub settings: Option<String>,
}

impl TrainConfig {
    /// Settings that change the results: a resumed run must use the same ones (a key a
    /// checkpoint of an older flarecast lacks reads as the paper's, `Recipe::PAPER`).
    pub const RESULT_KEYS: [&'static str; 18] = [
        "fold",
        "arch",
        "batch_size",
        "im_size",
        "optimizer",
        "lr",
        "weight_decay",
        "momentum",
        "betas",
        "schedule",
        "lr_step",
        "lr_gamma",
        "warmup_epochs",
        "balance",
        "select",
        "seed",
        "augment",
        "precision",
    ];

    pub fn to_json(&self) -> serde_json::Value {
        // The recipe's settings, then the run's. `epochs` and `patience` may change on
        // resume (train longer, wait longer), so they are not RESULT_KEYS.
        let mut json = self.recipe.to_json();
        let run = serde_json::json!({
            "fold": self.fold,
            "arch": self.arch,
            "augment": self.augment,
            "precision": self.precision,
            "devices": self.devices.iter().map(|d| device_name(*d)).collect::<Vec<_>>(),
            "ranks": self.ranks(),
            "images": self.images,
            "labels": self.labels,
            "init_weights": self.init_weights,
            "pretrained": self.pretrained.as_ref().map(|p| &p.file),
            "pretrained_normalisation": self.pretrained.as_ref().map(|p| p.fold_normalisation),
        });
        if let (Some(all), serde_json::Value::Object(run)) = (json.as_object_mut(), run) {
            all.extend(run);
        }
        json
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
        self.recipe.check()?;
        if let (true, Some(state)) = (self.resume, self.recipe.optimizer_state()) {
            return Err(setting::bad(
                "resume",
                format!(
                    "{state} live inside libtorch's optimizer, which tch 0.26 can neither \
                     save nor restore, so a resumed run would not continue this one"
                ),
            ));
        }
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
