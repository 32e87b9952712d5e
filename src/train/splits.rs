//! The fold's data as a run reads it: the training and validation loaders, the training
//! epoch (balanced by oversampling, or as it is), the loss's class weights, and whether
//! validation can choose a best epoch.

use super::TrainConfig;
use crate::data::{self, Balanced, Item, Loader, LoaderConfig, Split};
use crate::distributed::Group;
use crate::progress::Progress;
use crate::recipe::Balance;
use anyhow::{bail, Context, Result};

/// The fold's training and validation data.
pub(super) struct Splits {
    pub(super) train: Loader,
    pub(super) val: Loader,
    /// The training epoch: balanced and augmented, or every instance once.
    pub(super) plan: Balanced,
    /// The cross-entropy's weights of classes 0 and 1 (`Balance::WeightedLoss`).
    pub(super) class_weights: Option<[f64; 2]>,
    pub(super) val_items: Vec<Item>,
    pub(super) val_positive: usize,
    /// TSS and HSS2 need both classes: without them no epoch is chosen as best.
    pub(super) val_two_classes: bool,
}

impl Splits {
    pub(super) fn load(cfg: &TrainConfig, progress: &Progress) -> Result<Splits> {
        let train_samples = data::read_fold_split(&cfg.labels, cfg.fold, Split::Train)?;
        let val_samples = data::read_fold_split(&cfg.labels, cfg.fold, Split::Val)?;
        let mut lcfg = LoaderConfig::new(&cfg.images);
        lcfg.im_size = cfg.recipe.im_size;
        lcfg.batch_size = cfg.recipe.batch_size;
        lcfg.workers = cfg.workers;
        lcfg.seed = cfg.recipe.seed;
        lcfg.augment = cfg.augment;
        lcfg.cache = cfg.cache;
        lcfg.skip_bad_images = cfg.skip_bad_images;
        lcfg.device = cfg.devices[0];
        lcfg.progress = *progress;
        lcfg.shard = shard_of(cfg.group.as_deref());
        let train = Loader::new(lcfg.clone(), train_samples).context("training split")?;
        let val_cfg = LoaderConfig {
            shuffle: false,
            augment: false,
            ..lcfg
        };
        let val = Loader::new(val_cfg, val_samples).context("validation split")?;
        let targets = train.targets();
        let what = || format!("fold {} training split", cfg.fold);
        let plan = match cfg.recipe.balance {
            Balance::Oversample => data::balance(&targets, cfg.recipe.seed),
            Balance::WeightedLoss | Balance::None => data::unbalanced(&targets),
        }
        .with_context(what)?;
        let class_weights = match cfg.recipe.balance {
            Balance::WeightedLoss => Some(data::class_weights(&targets).with_context(what)?),
            Balance::Oversample | Balance::None => None,
        };
        let val_targets = val.targets();
        let val_positive = val_targets.iter().filter(|&&t| t == 1).count();
        let val_two_classes = val_positive > 0 && val_positive < val_targets.len();
        if !val_two_classes && !cfg.allow_one_class_val {
            bail!(
                "fold {} validation split: {} of {} instances are positive, so TSS and HSS2 \
                 are undefined and no epoch can be chosen as best; give a split with both \
                 classes, or allow a one-class validation split explicitly",
                cfg.fold,
                val_positive,
                val_targets.len()
            );
        }
        Ok(Splits {
            val_items: val.plain_items(),
            train,
            val,
            plan,
            class_weights,
            val_positive,
            val_two_classes,
        })
    }
}

/// The rows of each batch a process of `group` (or a process alone) loads.
pub fn shard_of(group: Option<&Group>) -> data::Shard {
    group.map_or(data::Shard::WHOLE, |g| data::Shard {
        rank: g.rank(),
        of: g.world(),
    })
}
