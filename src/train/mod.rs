//! The training protocol, the paper's by default (`Recipe::PAPER`): balanced, augmented
//! training set; plain SGD on the mean cross-entropy at the recipe's rate and weight
//! decay, decayed in steps; per-epoch validation; `best` when val TSS and HSS2 both
//! improve; `final` at the end; `last` after every epoch for `--resume`. The recipe may
//! name another optimizer, schedule, balance or rule for `best`, and a patience that stops
//! the run early (`select`). Alone or as one rank of a process group alike: `peers` hides
//! which, `step` is the one training step.
//!
//! Differences from the reference, on purpose: `--epochs N` runs N epochs (the reference
//! runs N - 1); balancing never lets FL exceed NF (the reference edits fold 2 by hand).

pub mod checkpoint;
mod config;
pub mod history;
pub mod parallel;
pub mod peers;
pub mod run_config;
mod select;
mod sgd_update;
mod splits;
pub mod step;

pub use config::{Pretrained, TrainConfig};
pub use splits::shard_of;

use crate::device::device_name;
use crate::metrics::Confusion;
use crate::model::{self, weights, Compute, InitScheme};
use crate::progress::Progress;
use crate::setting;
use anyhow::{bail, Context, Result};
use checkpoint::{ResumeState, RunPaths};
use history::{EpochRecord, Pass};
use parallel::Replicas;
use peers::Peers;
use serde::Serialize;
use splits::Splits;
use std::path::PathBuf;
use std::time::Instant;
use step::Stepper;
use tch::{Device, Tensor};

pub use step::sgd;

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
    pub best_val_loss: f64,
    /// The epoch `patience` stopped the run at, when it stopped before `epochs`.
    pub stopped_early_at: Option<usize>,
    /// The loss's weights of classes 0 and 1 (`--balance weighted-loss`).
    pub class_weights: Option<[f64; 2]>,
    pub final_val_tss: f64,
    pub final_val_hss2: f64,
    pub final_checkpoint: PathBuf,
    pub best_checkpoint: PathBuf,
    pub last_checkpoint: PathBuf,
    pub history_csv: PathBuf,
    pub history: Vec<EpochRecord>,
    /// What `--pretrained` loaded and replaced.
    pub pretrained: Option<crate::model::pretrained::PretrainedReport>,
}

/// How the trainer reports each finished epoch (the CLI prints it).
pub type EpochCallback<'a> = dyn FnMut(&EpochRecord, usize) + 'a;

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
        let lock = crate::fsio::OutputLock::acquire(&paths.dir, &paths.stem)?;
        // A killed run of this fold left its temporary files; while the lock is held no
        // one else writes them. Other folds' share the folder and are left alone.
        crate::fsio::remove_stale_temps_of(&paths.dir, &paths.prefix())?;
        Some(lock)
    } else {
        None
    };
    let images_read = splits.train.samples().len() + splits.val.samples().len();
    let mut trainer = Trainer::start(cfg, splits)?;
    // Once the run is known to start (a refused resume rewrites nothing): its settings
    // and what it runs on, beside its checkpoints.
    if let (true, Some(settings)) = (cfg.writes(), &cfg.settings) {
        run_config::write(&paths.config(), cfg, settings, images_read)?;
    }
    let resumed_from = trainer.state.epoch;
    for epoch in resumed_from + 1..=cfg.recipe.epochs {
        let record = trainer.epoch(epoch, progress)?;
        on_epoch(&record, cfg.recipe.epochs);
        if record.stopped_early {
            break;
        }
    }
    trainer.finish(resumed_from)
}

/// A run in progress: the data, the step (replicas, optimizer, peers), where the files
/// go, and the state `last` saves.
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    splits: Splits,
    stepper: Stepper,
    paths: RunPaths,
    state: ResumeState,
    /// Rank 0's TensorBoard log, unless turned off.
    board: Option<crate::tensorboard::RunLog>,
    /// What `--pretrained` loaded and replaced.
    pretrained: Option<crate::model::pretrained::PretrainedReport>,
}

/// The training half of an epoch.
struct TrainPass {
    pass: Pass,
    images_per_s: f64,
}

impl<'a> Trainer<'a> {
    /// The initial (or given) weights, or the state of `last` when resuming; in a process
    /// group rank 0 decides and every rank starts from its state and weights.
    fn start(cfg: &'a TrainConfig, splits: Splits) -> Result<Self> {
        tch::manual_seed(cfg.recipe.seed as i64);
        let compute = Compute::for_device(cfg.devices[0], cfg.precision, cfg.arch);
        let mut replicas = Replicas::new(&cfg.devices, cfg.arch, InitScheme::default(), compute)?;
        if let Some(init) = &cfg.init_weights {
            let (tensors, _) = weights::read_weights(init)?;
            weights::assign(
                &mut replicas.master_mut().vs,
                &tensors,
                &init.display().to_string(),
            )?;
        }
        let pretrained = match &cfg.pretrained {
            Some(p) => Some(crate::model::pretrained::load_pretrained(
                &mut replicas.master_mut().vs,
                cfg.arch,
                &p.file,
                p.fold_normalisation,
            )?),
            None => None,
        };
        let paths = RunPaths::new(cfg);
        let peers = Peers::new(cfg.group.as_ref(), &replicas.master().vs)?;
        // Rank 0 alone reads `last`: the others may not see its disk.
        let state = peers.start(|| starting_state(cfg, &paths, &mut replicas))?;
        peers.share_variables(&replicas.master().vs, "waiting for rank 0's weights")?;
        replicas.broadcast()?;
        replicas.class_weights = splits.class_weights;
        let stepper = Stepper::new(replicas, peers, &cfg.recipe)?;
        let board = open_board(cfg, &paths, &splits, &state)?;
        Ok(Trainer {
            cfg,
            splits,
            stepper,
            paths,
            state,
            board,
            pretrained,
        })
    }

    /// One epoch, its checkpoints and history included; returns its record.
    fn epoch(&mut self, epoch: usize, progress: &Progress) -> Result<EpochRecord> {
        let started = Instant::now();
        let lr = self.cfg.recipe.lr_at(epoch);
        let trained = self.train_epoch(epoch, lr, progress, started)?;
        // An epoch's last step can blow the weights up with no later loss to show it: stop
        // before any checkpoint of this epoch is written, so `last` keeps finite weights.
        weights::check_finite(&weights::named_tensors(&self.master().vs))
            .with_context(|| self.diverged(epoch, lr))?;
        let val = self.validate(epoch)?;
        if !val.loss.is_finite() {
            bail!(
                "{}: the validation loss is {}",
                self.diverged(epoch, lr),
                val.loss
            );
        }
        let best = self.keep_if_best(epoch, &val)?;
        let stale = select::stale_epochs(&self.state, epoch);
        // Patience stops a run before its last epoch; at the last it ends as any run.
        let stops = epoch < self.cfg.recipe.epochs
            && select::stops(&self.state, epoch, self.cfg.recipe.patience);
        let record = EpochRecord::new(
            epoch,
            lr,
            &trained.pass,
            &val,
            best,
            started.elapsed().as_secs_f64(),
            trained.images_per_s,
        )
        .trained_in(self.cfg.precision)
        .under(&self.cfg.recipe)
        .stale(stale, stops);
        self.record(record.clone())?;
        if let Some(board) = &mut self.board {
            board.epoch(epoch, &record)?;
        }
        Ok(record)
    }

    fn master(&self) -> &parallel::Replica {
        self.stepper.replicas.master()
    }

    /// The balanced, augmented training split once, one optimizer step per batch.
    fn train_epoch(
        &mut self,
        epoch: usize,
        lr: f64,
        progress: &Progress,
        started: Instant,
    ) -> Result<TrainPass> {
        self.stepper.set_lr(lr);
        let items = &self.splits.plan.items;
        let loader = &self.splits.train;
        let bar = progress.bar(
            loader.num_batches(items.len()) as u64,
            "epoch {prefix} [{bar:30}] {pos}/{len} batches {msg} ({elapsed}<{eta})",
        );
        bar.set_prefix(format!("{epoch}/{}", self.cfg.recipe.epochs));
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        let mut confusion = Confusion::default();
        let batch_size = self.cfg.recipe.batch_size;
        for (k, batch) in loader.batches(items, (epoch - 1) as u64)?.enumerate() {
            let batch = batch?;
            // The whole batch's rows; in a group this process holds its share of them.
            let b = (items.len() - k * batch_size).min(batch_size);
            let what = format!(
                "waiting for the gradients of step {} of epoch {epoch}",
                k + 1
            );
            let out = self.stepper.step(&batch.images, &batch.targets, b, &what)?;
            if !out.loss.is_finite() {
                bail!(
                    "epoch {epoch}: the training loss became {} (lr {lr}); {} keeps the last good weights",
                    out.loss,
                    self.paths.last().display()
                );
            }
            loss_sum += out.loss * b as f64;
            seen += b;
            add_argmax(&mut confusion, &out.logits, &batch.targets);
            let secs = started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4} {:.1} img/s",
                loss_sum / seen as f64,
                seen as f64 / secs
            ));
            if let Some(board) = &mut self.board {
                board.step(epoch, k, out.loss, lr)?;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let what = format!("waiting for the training counts of epoch {epoch}");
        let (confusion, _) = self.stepper.peers.sum_counts(&confusion, &[], &what)?;
        Ok(TrainPass {
            pass: Pass {
                loss: loss_sum / seen.max(1) as f64,
                confusion,
                ..Pass::default()
            },
            images_per_s: seen as f64 / started.elapsed().as_secs_f64(),
        })
    }

    /// Mean cross-entropy and confusion of the validation split in eval mode (on
    /// replica 0; in a group, each rank its share of every batch with rank 0's BatchNorm
    /// statistics, the sums reduced).
    fn validate(&self, epoch: usize) -> Result<Pass> {
        let r = self.master();
        let peers = &self.stepper.peers;
        peers.share_variables(
            &r.vs,
            &format!("waiting for rank 0's BatchNorm statistics before validating epoch {epoch}"),
        )?;
        let mut confusion = Confusion::default();
        let (mut loss, mut n) = (0.0, 0usize);
        // Every validation instance's P(FL) in its sample's slot: each rank fills its own
        // rows, the sum over the group gives every rank all of them, in one order.
        let samples = self.splits.val.samples();
        let mut probs = vec![0.0f64; samples.len()];
        for batch in self.splits.val.batches(&self.splits.val_items, 0)? {
            let batch = batch?;
            if batch.names.is_empty() {
                continue;
            }
            // The plain ops, so a diverged network's NaN reaches the loss (model::plain_ops).
            let images = batch.images.to_device(r.device());
            let out = tch::no_grad(|| model::plain_ops(|| r.net.forward_t(&images, false)));
            let targets = batch.targets.to_device(r.device());
            loss += parallel::summed_loss(&out.logits, &targets);
            n += batch.names.len();
            add_argmax(&mut confusion, &out.logits, &targets);
            let p = out.flare_prob().to_kind(tch::Kind::Double);
            for (item, p) in batch
                .items
                .iter()
                .zip(Vec::<f64>::try_from(p.to_device(Device::Cpu))?)
            {
                probs[item.index] = p;
            }
        }
        let what = format!("waiting for the validation counts of epoch {epoch}");
        let mut extra = vec![loss, n as f64];
        extra.extend_from_slice(&probs);
        let (confusion, sums) = peers.sum_counts(&confusion, &extra, &what)?;
        let (loss, n) = (sums[0], sums[1] as usize);
        let probs = &sums[2..];
        let truth: Vec<bool> = samples.iter().map(|s| s.target == 1).collect();
        let scored = n > 0 && n == samples.len();
        Ok(Pass {
            loss: loss / n.max(1) as f64,
            confusion,
            brier: scored.then(|| crate::metrics::brier(probs, &truth)),
            bss: scored.then(|| crate::metrics::brier_skill(probs, &truth)),
            roc_auc: scored.then(|| crate::metrics::roc_auc(probs, &truth)),
        })
    }

    /// Saves `best` when the epoch beats every earlier one under the recipe's rule (the
    /// paper's: validation TSS and HSS2 both do).
    fn keep_if_best(&mut self, epoch: usize, val: &Pass) -> Result<bool> {
        let scores = select::Scores {
            tss: val.confusion.tss(),
            hss2: val.confusion.hss2(),
            loss: val.loss,
        };
        let best = select::observe(
            &mut self.state,
            self.cfg.recipe.select,
            epoch,
            &scores,
            self.splits.val_two_classes,
        );
        if best && self.cfg.writes() {
            checkpoint::save(&self.paths.best(), &self.master().vs, self.cfg, None)?;
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
            &self.master().vs,
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
            checkpoint::save(
                &paths.final_(),
                &self.stepper.replicas.master().vs,
                cfg,
                None,
            )?;
        }
        self.stepper
            .peers
            .barrier("waiting for rank 0 to write the final checkpoint")?;
        let last = state.history.last();
        Ok(TrainSummary {
            arch: cfg.arch.name(),
            fold: cfg.fold,
            epochs: cfg.recipe.epochs,
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
            best_val_loss: state.best_loss,
            stopped_early_at: last.filter(|r| r.stopped_early).map(|r| r.epoch),
            class_weights: splits.class_weights,
            final_val_tss: last.map_or(f64::NAN, |r| r.val_tss),
            final_val_hss2: last.map_or(f64::NAN, |r| r.val_hss2),
            final_checkpoint: paths.final_(),
            best_checkpoint: paths.best(),
            last_checkpoint: paths.last(),
            history_csv: paths.dir.join(format!("{}.csv", paths.history_stem())),
            history: state.history,
            pretrained: self.pretrained,
        })
    }
}

/// The TensorBoard log of a run, where this process writes the run's files and the
/// setting does not turn it off: a new event file in `{out}/{arch}/fold{K}_tb` or the
/// folder asked for, logging only what comes after the state the run starts from.
fn open_board(
    cfg: &TrainConfig,
    paths: &RunPaths,
    splits: &Splits,
    state: &ResumeState,
) -> Result<Option<crate::tensorboard::RunLog>> {
    let beside = || paths.dir.join(format!("{}tb", paths.prefix()));
    match cfg.tensorboard.folder(beside) {
        Some(dir) if cfg.writes() => {
            let steps = splits.train.num_batches(splits.plan.items.len());
            let log = crate::tensorboard::RunLog::open(&dir, steps, state.epoch, &cfg.to_json())?;
            Ok(Some(log))
        }
        _ => Ok(None),
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
    let state = checkpoint::load_last(&last, &mut replicas.master_mut().vs, cfg)?;
    if select::stops(&state, state.epoch, cfg.recipe.patience) {
        return Err(setting::bad(
            "patience",
            format!(
                "{}: at epoch {} the run had gone {} epochs without a better best, where this \
                 patience stops it: nothing is left to train (a larger patience goes on)",
                last.display(),
                state.epoch,
                select::stale_epochs(&state, state.epoch)
            ),
        ));
    }
    Ok(state)
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
