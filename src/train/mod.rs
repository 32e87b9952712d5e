//! The paper's training protocol: balanced, augmented training set; SGD (no momentum,
//! lr 0.001, weight decay 0.5) on the mean cross-entropy; the learning rate halved every 3
//! epochs; per-epoch validation; `best` when val TSS and HSS2 both improve; `final` at the
//! end; `last` after every epoch for `--resume`.
//!
//! Differences from the reference, on purpose: `--epochs N` runs N epochs (the reference
//! runs N - 1); balancing never lets FL exceed NF (the reference edits fold 2 by hand).

pub mod checkpoint;
pub mod history;
pub mod parallel;

use crate::data::{self, Balanced, CacheMode, Item, Loader, LoaderConfig, Split};
use crate::device::device_name;
use crate::metrics::Confusion;
use crate::model::{weights, Arch, Compute, InitScheme, Precision};
use crate::progress::Progress;
use crate::setting;
use anyhow::{bail, Context, Result};
use checkpoint::{ResumeState, RunPaths};
use history::{EpochRecord, Pass};
use parallel::Replicas;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Tensor};

/// Everything a training run needs.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub fold: u32,
    pub arch: Arch,
    pub epochs: usize,
    pub batch_size: usize,
    pub im_size: u32,
    pub lr: f64,
    pub weight_decay: f64,
    /// Epochs between learning-rate decays, and the factor.
    pub lr_step: usize,
    pub lr_gamma: f64,
    pub images: PathBuf,
    pub labels: PathBuf,
    pub out: PathBuf,
    pub devices: Vec<Device>,
    pub precision: Precision,
    pub workers: usize,
    pub cache: CacheMode,
    pub seed: u64,
    pub init_weights: Option<PathBuf>,
    pub resume: bool,
    pub augment: bool,
    pub skip_bad_images: bool,
    /// Train on a validation split of one class; no epoch is then chosen as best.
    pub allow_one_class_val: bool,
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
        serde_json::json!({
            "fold": self.fold,
            "arch": self.arch,
            // May grow on resume (train longer), so not one of RESULT_KEYS.
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "im_size": self.im_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "lr_step": self.lr_step,
            "lr_gamma": self.lr_gamma,
            "seed": self.seed,
            "augment": self.augment,
            "precision": self.precision,
            "devices": self.devices.iter().map(|d| device_name(*d)).collect::<Vec<_>>(),
            "images": self.images,
            "labels": self.labels,
            "init_weights": self.init_weights,
        })
    }

    /// Refuses settings no run can use, before anything is read.
    pub fn validate(&self) -> Result<()> {
        if !(1..=4).contains(&self.fold) {
            return Err(setting::bad(
                "fold",
                format!("fold {} is not one of 1..4", self.fold),
            ));
        }
        if self.epochs == 0 {
            return Err(setting::bad("epochs", "epochs must be at least 1"));
        }
        if (self.im_size as i64) < crate::model::MIN_IM_SIZE {
            return Err(setting::bad(
                "im_size",
                format!(
                    "image size {} is below the network's minimum of {}",
                    self.im_size,
                    crate::model::MIN_IM_SIZE
                ),
            ));
        }
        if self.batch_size == 0 {
            return Err(setting::bad("batch_size", "batch size must be at least 1"));
        }
        Ok(())
    }

    /// Learning rate of 1-based `epoch`: lr * gamma^floor(epoch / step), so with step 3
    /// epochs 1-2 run at lr, 3-5 at lr/2, 6-8 at lr/4 (the reference's schedule).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let decays = epoch.checked_div(self.lr_step).unwrap_or(0);
        self.lr * self.lr_gamma.powi(decays as i32)
    }
}

/// What a finished run reports.
#[derive(Debug, Serialize)]
pub struct TrainSummary {
    pub arch: &'static str,
    pub fold: u32,
    pub epochs: usize,
    pub resumed_from_epoch: usize,
    pub devices: Vec<String>,
    pub precision: &'static str,
    pub train_instances: usize,
    pub train_positive: usize,
    pub balanced_items: usize,
    pub val_instances: usize,
    pub val_positive: usize,
    pub skipped_images: Vec<String>,
    pub best_epoch: Option<usize>,
    pub best_val_tss: f64,
    pub best_val_hss2: f64,
    pub final_val_tss: f64,
    pub final_val_hss2: f64,
    pub final_checkpoint: PathBuf,
    pub best_checkpoint: PathBuf,
    pub last_checkpoint: PathBuf,
    pub history_csv: PathBuf,
    pub history: Vec<EpochRecord>,
}

/// How the trainer reports each finished epoch (the CLI prints it).
pub type EpochCallback<'a> = dyn FnMut(&EpochRecord, usize) + 'a;

/// Plain SGD as the reference trains: no momentum, no dampening, L2 weight decay.
pub fn sgd(vs: &nn::VarStore, lr: f64, weight_decay: f64) -> Result<nn::Optimizer> {
    let sgd = nn::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        wd: weight_decay,
        nesterov: false,
    };
    Ok(sgd.build(vs, lr)?)
}

/// Runs the whole training: each epoch trains, checks the weights, validates, keeps the
/// best weights, and records the epoch (history and `last`). `progress` shows each
/// epoch's batches; `on_epoch` sees every finished epoch.
pub fn train(
    cfg: &TrainConfig,
    progress: &Progress,
    on_epoch: &mut EpochCallback,
) -> Result<TrainSummary> {
    cfg.validate()?;
    if cfg.devices.iter().any(|d| d.is_cuda()) {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    // Data first: a bad label or image fails the run before any weight is touched.
    let splits = Splits::load(cfg, progress)?;
    // One run per fold and network in an output folder: two would overwrite each other's
    // checkpoints and history.
    let paths = RunPaths::new(cfg);
    let _lock = crate::fsio::OutputLock::acquire(&paths.dir, &paths.stem)?;
    let mut trainer = Trainer::start(cfg, splits)?;
    let resumed_from = trainer.state.epoch;
    for epoch in resumed_from + 1..=cfg.epochs {
        let record = trainer.epoch(epoch, progress)?;
        on_epoch(&record, cfg.epochs);
    }
    trainer.finish(resumed_from)
}

/// The fold's training and validation data.
struct Splits {
    train: Loader,
    val: Loader,
    /// The balanced, augmented training epoch.
    plan: Balanced,
    val_items: Vec<Item>,
    val_positive: usize,
    /// TSS and HSS2 need both classes: without them no epoch is chosen as best.
    val_two_classes: bool,
}

impl Splits {
    fn load(cfg: &TrainConfig, progress: &Progress) -> Result<Splits> {
        let train_samples = data::read_fold_split(&cfg.labels, cfg.fold, Split::Train)?;
        let val_samples = data::read_fold_split(&cfg.labels, cfg.fold, Split::Val)?;
        let mut lcfg = LoaderConfig::new(&cfg.images);
        lcfg.im_size = cfg.im_size;
        lcfg.batch_size = cfg.batch_size;
        lcfg.workers = cfg.workers;
        lcfg.seed = cfg.seed;
        lcfg.augment = cfg.augment;
        lcfg.cache = cfg.cache;
        lcfg.skip_bad_images = cfg.skip_bad_images;
        lcfg.device = cfg.devices[0];
        lcfg.progress = *progress;
        let train = Loader::new(lcfg.clone(), train_samples).context("training split")?;
        let val_cfg = LoaderConfig {
            shuffle: false,
            augment: false,
            ..lcfg
        };
        let val = Loader::new(val_cfg, val_samples).context("validation split")?;
        let plan = data::balance(&train.targets(), cfg.seed)
            .with_context(|| format!("fold {} training split", cfg.fold))?;
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
            val_positive,
            val_two_classes,
        })
    }
}

/// A run in progress: the data, the replicas and their optimizer, where the files go,
/// and the state `last` saves.
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    splits: Splits,
    replicas: Replicas,
    opt: nn::Optimizer,
    paths: RunPaths,
    state: ResumeState,
}

/// The training half of an epoch.
struct TrainPass {
    pass: Pass,
    images_per_s: f64,
}

impl<'a> Trainer<'a> {
    /// The initial (or given) weights, or the state of `last` when resuming.
    fn start(cfg: &'a TrainConfig, splits: Splits) -> Result<Self> {
        tch::manual_seed(cfg.seed as i64);
        let compute = Compute::for_device(cfg.devices[0], cfg.precision);
        let mut replicas = Replicas::new(&cfg.devices, cfg.arch, InitScheme::default(), compute)?;
        if let Some(init) = &cfg.init_weights {
            let (tensors, _) = weights::read_weights(init)?;
            weights::assign(
                &mut replicas.master_mut().vs,
                &tensors,
                &init.display().to_string(),
            )?;
        }
        let paths = RunPaths::new(cfg);
        std::fs::create_dir_all(&paths.dir)
            .with_context(|| format!("creating {}", paths.dir.display()))?;
        let state = if cfg.resume {
            let last = paths.last();
            if !last.exists() {
                return Err(setting::bad(
                    "resume",
                    format!("no checkpoint {} to resume from", last.display()),
                ));
            }
            checkpoint::load_last(&last, &mut replicas.master_mut().vs, cfg)?
        } else {
            ResumeState {
                epoch: 0,
                best_tss: f64::NEG_INFINITY,
                best_hss2: f64::NEG_INFINITY,
                best_epoch: None,
                history: vec![],
            }
        };
        replicas.broadcast()?;
        let opt = sgd(&replicas.master().vs, cfg.lr, cfg.weight_decay)?;
        Ok(Trainer {
            cfg,
            splits,
            replicas,
            opt,
            paths,
            state,
        })
    }

    /// One epoch, its checkpoints and history included; returns its record.
    fn epoch(&mut self, epoch: usize, progress: &Progress) -> Result<EpochRecord> {
        let started = Instant::now();
        let lr = self.cfg.lr_at(epoch);
        let trained = self.train_epoch(epoch, lr, progress, started)?;
        // An epoch's last step can blow the weights up with no later loss to show it: stop
        // before any checkpoint of this epoch is written, so `last` keeps finite weights.
        weights::check_finite(&weights::named_tensors(&self.replicas.master().vs))
            .with_context(|| self.diverged(epoch, lr))?;
        let val = self.validate()?;
        if !val.loss.is_finite() {
            bail!(
                "{}: the validation loss is {}",
                self.diverged(epoch, lr),
                val.loss
            );
        }
        let best = self.keep_if_best(epoch, &val.confusion)?;
        let record = EpochRecord::new(
            epoch,
            lr,
            &trained.pass,
            &val,
            best,
            started.elapsed().as_secs_f64(),
            trained.images_per_s,
        )
        .trained_in(self.cfg.precision);
        self.record(record.clone())?;
        Ok(record)
    }

    /// The balanced, augmented training split once, one optimizer step per batch.
    fn train_epoch(
        &mut self,
        epoch: usize,
        lr: f64,
        progress: &Progress,
        started: Instant,
    ) -> Result<TrainPass> {
        self.opt.set_lr(lr);
        let items = &self.splits.plan.items;
        let loader = &self.splits.train;
        let bar = progress.bar(
            loader.num_batches(items.len()) as u64,
            "epoch {prefix} [{bar:30}] {pos}/{len} batches {msg} ({elapsed}<{eta})",
        );
        bar.set_prefix(format!("{epoch}/{}", self.cfg.epochs));
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        let mut confusion = Confusion::default();
        for batch in loader.batches(items, (epoch - 1) as u64)? {
            let batch = batch?;
            let b = batch.names.len();
            self.opt.zero_grad();
            self.replicas.zero_replica_grads();
            let out = self
                .replicas
                .forward_backward(&batch.images, &batch.targets)?;
            if !out.loss.is_finite() {
                bail!(
                    "epoch {epoch}: the training loss became {} (lr {lr}); {} keeps the last good weights",
                    out.loss,
                    self.paths.last().display()
                );
            }
            self.opt.step();
            self.replicas.broadcast()?;
            loss_sum += out.loss * b as f64;
            seen += b;
            add_argmax(&mut confusion, &out.logits, &batch.targets);
            let secs = started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4} {:.1} img/s",
                loss_sum / seen as f64,
                seen as f64 / secs
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(TrainPass {
            pass: Pass {
                loss: loss_sum / seen.max(1) as f64,
                confusion,
            },
            images_per_s: seen as f64 / started.elapsed().as_secs_f64(),
        })
    }

    /// Mean cross-entropy and confusion of the validation split in eval mode (on
    /// replica 0).
    fn validate(&self) -> Result<Pass> {
        let r = self.replicas.master();
        let mut confusion = Confusion::default();
        let (mut loss, mut n) = (0.0, 0usize);
        for batch in self.splits.val.batches(&self.splits.val_items, 0)? {
            let batch = batch?;
            let logits = tch::no_grad(|| {
                r.net
                    .forward_t(&batch.images.to_device(r.device()), false)
                    .logits
            });
            let targets = batch.targets.to_device(r.device());
            loss += parallel::summed_loss(&logits, &targets);
            n += batch.names.len();
            add_argmax(&mut confusion, &logits, &targets);
        }
        Ok(Pass {
            loss: loss / n.max(1) as f64,
            confusion,
        })
    }

    /// Saves `best` when validation TSS and HSS2 both beat every earlier epoch's.
    fn keep_if_best(&mut self, epoch: usize, val: &Confusion) -> Result<bool> {
        let (tss, hss2) = (val.tss(), val.hss2());
        let best =
            self.splits.val_two_classes && tss > self.state.best_tss && hss2 > self.state.best_hss2;
        if best {
            self.state.best_tss = tss;
            self.state.best_hss2 = hss2;
            self.state.best_epoch = Some(epoch);
            checkpoint::save(
                &self.paths.best(),
                &self.replicas.master().vs,
                self.cfg,
                None,
            )?;
        }
        Ok(best)
    }

    /// Adds the epoch to the history files and saves `last` with the state to resume.
    fn record(&mut self, record: EpochRecord) -> Result<()> {
        self.state.epoch = record.epoch;
        self.state.history.push(record);
        history::write(
            &self.paths.dir,
            &self.paths.history_stem(),
            &self.state.history,
        )?;
        checkpoint::save(
            &self.paths.last(),
            &self.replicas.master().vs,
            self.cfg,
            Some(self.state.clone()),
        )
    }

    fn diverged(&self, epoch: usize, lr: f64) -> String {
        format!(
            "epoch {epoch}: training diverged (lr {lr}); {} keeps the last good weights",
            self.paths.last().display()
        )
    }

    /// Saves `final` and reports the run.
    fn finish(self, resumed_from: usize) -> Result<TrainSummary> {
        let (cfg, splits, paths, state) = (self.cfg, self.splits, self.paths, self.state);
        checkpoint::save(&paths.final_(), &self.replicas.master().vs, cfg, None)?;
        let last = state.history.last();
        Ok(TrainSummary {
            arch: cfg.arch.name(),
            fold: cfg.fold,
            epochs: cfg.epochs,
            resumed_from_epoch: resumed_from,
            devices: cfg.devices.iter().map(|d| device_name(*d)).collect(),
            precision: cfg.precision.name(),
            train_instances: splits.train.samples().len(),
            train_positive: splits.plan.fl,
            balanced_items: splits.plan.items.len(),
            val_instances: splits.val.samples().len(),
            val_positive: splits.val_positive,
            skipped_images: (splits.train.skipped().iter())
                .chain(splits.val.skipped())
                .map(|b| format!("{}: {}", b.label, b.error))
                .collect(),
            best_epoch: state.best_epoch,
            best_val_tss: state.best_tss,
            best_val_hss2: state.best_hss2,
            final_val_tss: last.map_or(f64::NAN, |r| r.val_tss),
            final_val_hss2: last.map_or(f64::NAN, |r| r.val_hss2),
            final_checkpoint: paths.final_(),
            best_checkpoint: paths.best(),
            last_checkpoint: paths.last(),
            history_csv: paths.dir.join(format!("{}.csv", paths.history_stem())),
            history: state.history,
        })
    }
}

/// Counts argmax predictions against 0/1 targets.
fn add_argmax(conf: &mut Confusion, logits: &Tensor, targets: &Tensor) {
    let pred =
        Vec::<i64>::try_from(logits.argmax(1, false).to_device(Device::Cpu)).unwrap_or_default();
    let tgt = Vec::<i64>::try_from(targets.to_device(Device::Cpu)).unwrap_or_default();
    for (p, t) in pred.iter().zip(&tgt) {
        conf.add(*p == 1, *t == 1);
    }
}
