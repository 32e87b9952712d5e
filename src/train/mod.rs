//! The paper's training protocol: balanced, augmented training set; SGD (no momentum,
//! lr 0.001, weight decay 0.5) on the mean cross-entropy; the learning rate halved every 3
//! epochs; per-epoch validation; `best` when val TSS and HSS2 both improve; `final` at the
//! end; `last` after every epoch for `--resume`.
//!
//! Differences from the reference, on purpose: `--epochs N` runs N epochs (the reference
//! runs N - 1); balancing never lets FL exceed NF (the reference edits fold 2 by hand).

pub mod bench;
pub mod checkpoint;
pub mod history;
pub mod parallel;

use crate::data::{self, CacheMode, Loader, LoaderConfig, Split};
use crate::device::device_name;
use crate::metrics::Confusion;
use crate::model::{weights, Arch, Compute, InitScheme, Precision};
use crate::setting;
use anyhow::{bail, Context, Result};
use checkpoint::{ResumeState, RunPaths};
use history::EpochRecord;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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

fn progress_bar(len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} batches {msg} ({elapsed}<{eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(format!("{epoch}/{epochs}"));
    pb
}

/// Runs the whole training. `on_epoch` sees every finished epoch.
pub fn train(cfg: &TrainConfig, on_epoch: &mut EpochCallback) -> Result<TrainSummary> {
    if !(1..=4).contains(&cfg.fold) {
        return Err(setting::bad(
            "fold",
            format!("fold {} is not one of 1..4", cfg.fold),
        ));
    }
    if cfg.epochs == 0 {
        return Err(setting::bad("epochs", "epochs must be at least 1"));
    }
    if (cfg.im_size as i64) < crate::model::MIN_IM_SIZE {
        return Err(setting::bad(
            "im_size",
            format!(
                "image size {} is below the network's minimum of {}",
                cfg.im_size,
                crate::model::MIN_IM_SIZE
            ),
        ));
    }
    if cfg.batch_size == 0 {
        return Err(setting::bad("batch_size", "batch size must be at least 1"));
    }
    let dev0 = cfg.devices[0];
    if cfg.devices.iter().any(|d| d.is_cuda()) {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    // Data first: a bad label or image fails the run before any weight is touched.
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
    lcfg.device = dev0;
    let train_loader = Loader::new(lcfg.clone(), train_samples).context("training split")?;
    let val_cfg = LoaderConfig {
        shuffle: false,
        augment: false,
        ..lcfg
    };
    let val_loader = Loader::new(val_cfg, val_samples).context("validation split")?;
    let train_targets = train_loader.targets();
    let plan = data::balance(&train_targets, cfg.seed)
        .with_context(|| format!("fold {} training split", cfg.fold))?;
    let val_items = val_loader.plain_items();
    // TSS and HSS2 need both classes: on a one-class split "best" would be chosen on
    // an undefined score.
    let val_positive = val_loader.targets().iter().filter(|&&t| t == 1).count();
    let val_two_classes = val_positive > 0 && val_positive < val_loader.targets().len();
    if !val_two_classes && !cfg.allow_one_class_val {
        bail!(
            "fold {} validation split: {} of {} instances are positive, so TSS and HSS2 \
             are undefined and no epoch can be chosen as best; give a split with both \
             classes, or allow a one-class validation split explicitly",
            cfg.fold,
            val_positive,
            val_loader.targets().len()
        );
    }

    tch::manual_seed(cfg.seed as i64);
    let compute = Compute::for_device(dev0, cfg.precision);
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
    let mut state = ResumeState {
        epoch: 0,
        best_tss: f64::NEG_INFINITY,
        best_hss2: f64::NEG_INFINITY,
        best_epoch: None,
        history: vec![],
    };
    if cfg.resume {
        let last = paths.last();
        if last.exists() {
            state = checkpoint::load_last(&last, &mut replicas.master_mut().vs, cfg)?;
        } else {
            return Err(setting::bad(
                "resume",
                format!("no checkpoint {} to resume from", last.display()),
            ));
        }
    }
    replicas.broadcast()?;
    let resumed_from = state.epoch;

    let sgd = nn::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        wd: cfg.weight_decay,
        nesterov: false,
    };
    let mut opt = sgd.build(&replicas.master().vs, cfg.lr)?;

    for epoch in state.epoch + 1..=cfg.epochs {
        let started = Instant::now();
        let lr = cfg.lr_at(epoch);
        opt.set_lr(lr);
        let loader_epoch = (epoch - 1) as u64;
        let n_batches = train_loader.num_batches(plan.items.len());
        let pb = progress_bar(n_batches as u64, epoch, cfg.epochs);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        let mut train_conf = Confusion::default();
        for batch in train_loader.batches(&plan.items, loader_epoch)? {
            let batch = batch?;
            let b = batch.names.len();
            opt.zero_grad();
            replicas.zero_replica_grads();
            let out = replicas.forward_backward(&batch.images, &batch.targets)?;
            if !out.loss.is_finite() {
                bail!(
                    "epoch {epoch}: the training loss became {} (lr {lr}); {} keeps the last good weights",
                    out.loss,
                    paths.last().display()
                );
            }
            opt.step();
            replicas.broadcast()?;
            loss_sum += out.loss * b as f64;
            seen += b;
            add_argmax(&mut train_conf, &out.logits, &batch.targets);
            let secs = started.elapsed().as_secs_f64();
            pb.set_message(format!(
                "loss {:.4} {:.1} img/s",
                loss_sum / seen as f64,
                seen as f64 / secs
            ));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let train_secs = started.elapsed().as_secs_f64();
        // An epoch's last step can blow the weights up with no later loss to show it: stop
        // before any checkpoint of this epoch is written, so `last` keeps finite weights.
        let diverged = || {
            format!(
                "epoch {epoch}: training diverged (lr {lr}); {} keeps the last good weights",
                paths.last().display()
            )
        };
        weights::check_finite(&weights::named_tensors(&replicas.master().vs))
            .with_context(diverged)?;
        let (val_loss, val_conf) = validate(&replicas, &val_loader, &val_items)?;
        if !val_loss.is_finite() {
            bail!("{}: the validation loss is {val_loss}", diverged());
        }
        let mut rec = EpochRecord {
            epoch,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_tss: 0.0,
            train_hss2: 0.0,
            train_tp: 0,
            train_fp: 0,
            train_tn: 0,
            train_fn: 0,
            val_loss,
            val_tss: 0.0,
            val_hss2: 0.0,
            val_tp: 0,
            val_fp: 0,
            val_tn: 0,
            val_fn: 0,
            best: false,
            seconds: 0.0,
            images_per_s: seen as f64 / train_secs,
        };
        rec.set_train(&train_conf);
        rec.set_val(&val_conf);
        let vs = &replicas.master().vs;
        if val_two_classes && rec.val_tss > state.best_tss && rec.val_hss2 > state.best_hss2 {
            state.best_tss = rec.val_tss;
            state.best_hss2 = rec.val_hss2;
            state.best_epoch = Some(epoch);
            rec.best = true;
            checkpoint::save(&paths.best(), vs, cfg, None)?;
        }
        rec.seconds = started.elapsed().as_secs_f64();
        state.epoch = epoch;
        state.history.push(rec.clone());
        history::write(&paths.dir, &paths.history_stem(), &state.history)?;
        checkpoint::save(&paths.last(), vs, cfg, Some(state.clone()))?;
        on_epoch(&rec, cfg.epochs);
    }
    let vs = &replicas.master().vs;
    checkpoint::save(&paths.final_(), vs, cfg, None)?;
    let last_rec = state.history.last().cloned();
    Ok(TrainSummary {
        arch: cfg.arch.name(),
        fold: cfg.fold,
        epochs: cfg.epochs,
        resumed_from_epoch: resumed_from,
        devices: cfg.devices.iter().map(|d| device_name(*d)).collect(),
        precision: cfg.precision.name(),
        train_instances: train_targets.len(),
        train_positive: plan.fl,
        balanced_items: plan.items.len(),
        val_instances: val_loader.samples().len(),
        val_positive: val_loader.targets().iter().filter(|&&t| t == 1).count(),
        skipped_images: train_loader
            .skipped()
            .iter()
            .chain(val_loader.skipped())
            .map(|b| format!("{}: {}", b.label, b.error))
            .collect(),
        best_epoch: state.best_epoch,
        best_val_tss: state.best_tss,
        best_val_hss2: state.best_hss2,
        final_val_tss: last_rec.as_ref().map_or(f64::NAN, |r| r.val_tss),
        final_val_hss2: last_rec.as_ref().map_or(f64::NAN, |r| r.val_hss2),
        final_checkpoint: paths.final_(),
        best_checkpoint: paths.best(),
        last_checkpoint: paths.last(),
        history_csv: paths.dir.join(format!("{}.csv", paths.history_stem())),
        history: state.history,
    })
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

/// Mean cross-entropy and confusion of the validation split in eval mode (on replica 0).
fn validate(
    replicas: &Replicas,
    loader: &Loader,
    items: &[data::Item],
) -> Result<(f64, Confusion)> {
    let r = replicas.master();
    let mut conf = Confusion::default();
    let (mut loss, mut n) = (0.0, 0usize);
    for batch in loader.batches(items, 0)? {
        let batch = batch?;
        let logits = tch::no_grad(|| {
            r.net
                .forward_t(&batch.images.to_device(r.device()), false)
                .logits
        });
        let targets = batch.targets.to_device(r.device());
        loss += parallel::summed_loss(&logits, &targets);
        n += batch.names.len();
        add_argmax(&mut conf, &logits, &targets);
    }
    Ok((loss / n.max(1) as f64, conf))
}
