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

use crate::data::{self, Balanced, CacheMode, Item, Loader, LoaderConfig, Shard, Split};
use crate::device::device_name;
use crate::distributed::bucket::{self, GradBucket};
use crate::distributed::Group;
use crate::metrics::Confusion;
use crate::model::{weights, Arch, Compute, InitScheme, Precision};
use crate::progress::Progress;
use crate::setting;
use anyhow::{bail, Context, Result};
use checkpoint::{ResumeState, RunPaths};
use history::{EpochRecord, Pass};
use parallel::{Replicas, StepOutput};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
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

    /// The rows of each batch this process trains and validates on.
    fn shard(&self) -> Shard {
        self.group.as_ref().map_or(Shard::WHOLE, |g| Shard {
            rank: g.rank(),
            of: g.world(),
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
        if self.group.is_some() && self.devices.len() != 1 {
            return Err(setting::bad(
                "devices",
                "each rank of a process group trains on one device",
            ));
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
    /// Processes that trained together (DDP ranks; 1 alone).
    pub ranks: usize,
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
    // checkpoints and history. In a process group rank 0 alone writes, so it alone locks.
    let paths = RunPaths::new(cfg);
    let _lock = if cfg.writes() {
        Some(crate::fsio::OutputLock::acquire(&paths.dir, &paths.stem)?)
    } else {
        None
    };
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
        lcfg.shard = cfg.shard();
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
    /// In a process group: the group and the gradients it reduces.
    ddp: Option<(Arc<Group>, GradBucket)>,
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
        let state = match &cfg.group {
            None => starting_state(cfg, &paths, &mut replicas)?,
            Some(g) => {
                // Rank 0 alone reads `last` (the others may not see its disk) and hands
                // every rank its state, or its failure, then its weights.
                let local = if g.is_root() {
                    starting_state(cfg, &paths, &mut replicas)
                } else {
                    Ok(ResumeState::fresh())
                };
                // A fresh state stays local: JSON has no -inf for its best scores.
                let msg = match &local {
                    Ok(_) if !cfg.resume => serde_json::json!({ "ok": null }),
                    Ok(s) => serde_json::json!({ "ok": s }),
                    Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
                };
                let bytes = g.broadcast_bytes(
                    &serde_json::to_vec(&msg)?,
                    "waiting for rank 0's starting state",
                )?;
                let state = if g.is_root() {
                    local?
                } else {
                    let msg: serde_json::Value = serde_json::from_slice(&bytes)?;
                    if let Some(e) = msg.get("error").and_then(|e| e.as_str()) {
                        bail!(
                            "rank {} of {}: rank 0 could not start: {e}",
                            g.rank(),
                            g.world()
                        );
                    }
                    match &msg["ok"] {
                        serde_json::Value::Null => ResumeState::fresh(),
                        s => serde_json::from_value(s.clone())?,
                    }
                };
                bucket::broadcast_variables(
                    g,
                    &replicas.master().vs,
                    "waiting for rank 0's weights",
                )?;
                state
            }
        };
        replicas.broadcast()?;
        let opt = sgd(&replicas.master().vs, cfg.lr, cfg.weight_decay)?;
        let ddp = match &cfg.group {
            Some(g) => {
                let b = GradBucket::new(&replicas.master().vs)?;
                b.prime();
                Some((Arc::clone(g), b))
            }
            None => None,
        };
        Ok(Trainer {
            cfg,
            splits,
            replicas,
            opt,
            paths,
            state,
            ddp,
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
        let val = self.validate(epoch)?;
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
        let batch_size = self.cfg.batch_size;
        for (k, batch) in loader.batches(items, (epoch - 1) as u64)?.enumerate() {
            let batch = batch?;
            // The whole batch's rows; in a group this rank holds its share of them.
            let b = (items.len() - k * batch_size).min(batch_size);
            let out = Self::step(
                &mut self.replicas,
                &mut self.opt,
                self.ddp.as_ref(),
                &batch,
                (b, epoch, k),
            )?;
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
        if let Some((g, _)) = &self.ddp {
            confusion = reduce_confusion(
                g,
                &confusion,
                &format!("waiting for the training counts of epoch {epoch}"),
                &[],
            )?
            .0;
        }
        Ok(TrainPass {
            pass: Pass {
                loss: loss_sum / seen.max(1) as f64,
                confusion,
            },
            images_per_s: seen as f64 / started.elapsed().as_secs_f64(),
        })
    }

    /// Forward and backward of this process's rows of batch `k` (of `b` rows in all),
    /// the gradients summed over the group where there is one. Returns the whole batch's
    /// mean loss and this process's logits.
    fn step(
        replicas: &mut Replicas,
        opt: &mut nn::Optimizer,
        ddp: Option<&(Arc<Group>, GradBucket)>,
        batch: &data::Batch,
        (b, epoch, k): (usize, usize, usize),
    ) -> Result<StepOutput> {
        let Some((g, grads)) = ddp else {
            opt.zero_grad();
            replicas.zero_replica_grads();
            return replicas.forward_backward(&batch.images, &batch.targets);
        };
        // Zeroed in place, not dropped: a rank with no rows still receives the others'.
        grads.prime();
        replicas.zero_replica_grads();
        let out = if batch.names.is_empty() {
            StepOutput {
                loss: 0.0,
                logits: Tensor::zeros([0, 2], (tch::Kind::Float, Device::Cpu)),
            }
        } else {
            replicas.forward_backward_share(&batch.images, &batch.targets, b as i64)?
        };
        // The batch loss rides in the gradients' bucket: one all-reduce per step.
        let summed = grads.all_reduce(
            g,
            &[out.loss],
            &format!(
                "waiting for the gradients of step {} of epoch {epoch}",
                k + 1
            ),
        )?;
        Ok(StepOutput {
            loss: summed[0],
            logits: out.logits,
        })
    }

    /// Mean cross-entropy and confusion of the validation split in eval mode (on
    /// replica 0; in a group, each rank its share of every batch with rank 0's BatchNorm
    /// statistics, the sums reduced).
    fn validate(&self, epoch: usize) -> Result<Pass> {
        let r = self.replicas.master();
        if let Some((g, _)) = &self.ddp {
            bucket::broadcast_variables(
                g,
                &r.vs,
                &format!(
                    "waiting for rank 0's BatchNorm statistics before validating epoch {epoch}"
                ),
            )?;
        }
        let mut confusion = Confusion::default();
        let (mut loss, mut n) = (0.0, 0usize);
        for batch in self.splits.val.batches(&self.splits.val_items, 0)? {
            let batch = batch?;
            if batch.names.is_empty() {
                continue;
            }
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
        if let Some((g, _)) = &self.ddp {
            let what = format!("waiting for the validation counts of epoch {epoch}");
            let (c, extra) = reduce_confusion(g, &confusion, &what, &[loss, n as f64])?;
            (confusion, loss, n) = (c, extra[0], extra[1] as usize);
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
        }
        if best && self.cfg.writes() {
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
        if !self.cfg.writes() {
            return Ok(());
        }
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
        if cfg.writes() {
            checkpoint::save(&paths.final_(), &self.replicas.master().vs, cfg, None)?;
        }
        if let Some((g, _)) = &self.ddp {
            // Rank 0 serves the store: the others leave only once it has written.
            g.barrier("waiting for rank 0 to write the final checkpoint")?;
        }
        let last = state.history.last();
        Ok(TrainSummary {
            arch: cfg.arch.name(),
            fold: cfg.fold,
            epochs: cfg.epochs,
            resumed_from_epoch: resumed_from,
            devices: cfg.devices.iter().map(|d| device_name(*d)).collect(),
            ranks: cfg.ranks(),
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

/// The state a run starts from: `last`'s when resuming, else a fresh one. Makes the
/// output directory.
fn starting_state(
    cfg: &TrainConfig,
    paths: &RunPaths,
    replicas: &mut Replicas,
) -> Result<ResumeState> {
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    if !cfg.resume {
        return Ok(ResumeState::fresh());
    }
    let last = paths.last();
    if !last.exists() {
        return Err(setting::bad(
            "resume",
            format!("no checkpoint {} to resume from", last.display()),
        ));
    }
    checkpoint::load_last(&last, &mut replicas.master_mut().vs, cfg)
}

/// Sums confusion counts (and `extra` values) over the group in one all-reduce.
fn reduce_confusion(
    g: &Group,
    c: &Confusion,
    what: &str,
    extra: &[f64],
) -> Result<(Confusion, Vec<f64>)> {
    let mut values = vec![c.tp as f64, c.fp as f64, c.tn as f64, c.fn_ as f64];
    values.extend_from_slice(extra);
    let v = bucket::all_reduce_values(g, &values, what)?;
    let count = |x: f64| x.round() as u64;
    Ok((
        Confusion {
            tp: count(v[0]),
            fp: count(v[1]),
            tn: count(v[2]),
            fn_: count(v[3]),
        },
        v[4..].to_vec(),
    ))
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
