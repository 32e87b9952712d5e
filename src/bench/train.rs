//! `flarecast bench train`: end-to-end training images/s with the real loader (JPEG
//! decode, resize, augmentation on worker threads) against the model-only step on the
//! same batch as pre-made tensors. Their ratio is the loader's cost. Run as ranks of a
//! process group (torchrun, srun) each rank steps on its share of every batch, as
//! `train` does, and the gradients' all-reduce is timed on its own.

use super::loader::measure_loader;
use crate::bounded::Count;
use crate::data::{self, CacheMode, Loader, LoaderConfig, Sample};
use crate::device::synchronize;
use crate::distributed::Group;
use crate::im_size::ImSize;
use crate::model::{Arch, Compute, InitScheme, Precision};
use crate::recipe::Recipe;
use crate::train::parallel::Replicas;
use crate::train::peers::Peers;
use crate::train::step::Stepper;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::Device;

pub struct TrainBenchConfig {
    pub device: Device,
    pub batch_size: usize,
    pub im_size: ImSize,
    /// Timed batches per measurement (after one warm-up batch).
    pub batches: usize,
    pub workers: usize,
    pub cache: CacheMode,
    pub archs: Vec<Arch>,
    pub precisions: Vec<Precision>,
    /// The process group this process is one rank of, if any.
    pub group: Option<Arc<Group>>,
}

impl TrainBenchConfig {
    /// Timed batches a setting may ask for.
    pub const BATCHES: Count<usize> = Count::new("batches", "timed batches", 1, 1_000_000);

    /// Refuses settings the benchmark cannot run, naming the flag.
    pub fn check(&self) -> Result<()> {
        Self::BATCHES.check(self.batches)?;
        Recipe::BATCH_SIZE.check(self.batch_size)?;
        LoaderConfig::WORKERS.check(self.workers)?;
        Ok(())
    }

    /// The paper's recipe at this bench's batch and side: the step `train` takes.
    fn recipe(&self) -> Recipe {
        Recipe {
            batch_size: self.batch_size,
            im_size: self.im_size,
            ..Recipe::PAPER
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TrainBenchRow {
    pub arch: &'static str,
    pub precision: &'static str,
    /// Loader alone (no model), images/s.
    pub loader_images_per_s: f64,
    /// Forward + backward + SGD on a pre-made batch, images/s.
    pub model_images_per_s: f64,
    /// The real loader feeding the same step, images/s.
    pub end_to_end_images_per_s: f64,
    /// Share of the end-to-end step time the loader adds: 1 - end_to_end / model.
    pub loader_cost: f64,
    /// Processes stepping together (1 without a process group); images/s count whole
    /// batches, every rank's share together.
    pub ranks: usize,
    /// Mean time of the gradients' all-reduce per step (in a process group).
    pub all_reduce_ms_per_step: Option<f64>,
    /// The all-reduce's share of the model-only step time (in a process group).
    pub all_reduce_share: Option<f64>,
}

/// Writes `n` labelled copies of `jpg` as an image tree + sample list (half of them FL),
/// so the loader decodes real 512x512 magnetogram JPEGs.
pub fn make_dataset(jpg: &Path, dir: &Path, n: usize) -> Result<Vec<Sample>> {
    let bytes = std::fs::read(jpg).with_context(|| format!("reading {}", jpg.display()))?;
    let start = chrono::NaiveDate::from_ymd_opt(2014, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
    let start = start.context("start date")?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = crate::instant::Instant::new(start + chrono::Duration::hours(i as i64));
        let rel = t.relative_path("jpg");
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &bytes)?;
        samples.push(Sample {
            label: rel,
            target: (i % 2) as i64,
        });
    }
    Ok(samples)
}

pub fn run(
    cfg: &TrainBenchConfig,
    images: &Path,
    samples: Vec<Sample>,
    mut report: impl FnMut(&TrainBenchRow),
) -> Result<Vec<TrainBenchRow>> {
    cfg.check()?;
    let mut lcfg = LoaderConfig::new(images);
    lcfg.im_size = cfg.im_size;
    lcfg.batch_size = cfg.batch_size;
    lcfg.workers = cfg.workers;
    lcfg.cache = cfg.cache;
    lcfg.device = cfg.device;
    let loader_ips = measure_loader(&lcfg, samples.clone(), cfg.batches)?.images_per_s;
    // In a group each rank decodes only its rows of every batch, as `train` does.
    lcfg.shard = crate::train::shard_of(cfg.group.as_deref());
    let loader = Loader::new(lcfg.clone(), samples)?;
    let plan = data::balance(&loader.targets(), lcfg.seed)?;
    let mut rows = Vec::new();
    for &arch in &cfg.archs {
        for &precision in &cfg.precisions {
            let compute = Compute::for_device(cfg.device, precision, arch);
            let replicas = Replicas::new(&[cfg.device], arch, InitScheme::default(), compute)?;
            let peers = Peers::new(cfg.group.as_ref(), &replicas.master().vs)?;
            peers.share_variables(
                &replicas.master().vs,
                "waiting for rank 0's initial weights",
            )?;
            let mut stepper = Stepper::new(replicas, peers, &cfg.recipe())?;
            stepper.time_reduction = true;
            let what = "waiting for the gradients of a benchmark step";
            let first = loader
                .batches(&plan.items, 0)?
                .next()
                .context("no batch")??;
            let (x, y) = (
                first.images.to_device(cfg.device),
                first.targets.to_device(cfg.device),
            );
            // This rank's rows of the first batch (all of it without a group).
            let first_rows = plan.items.len().min(cfg.batch_size);
            stepper.step(&x, &y, first_rows, what)?; // warm-up
            synchronize(cfg.device);
            stepper.reducing = Duration::ZERO;
            let t = Instant::now();
            for _ in 0..cfg.batches {
                stepper.step(&x, &y, first_rows, what)?;
            }
            synchronize(cfg.device);
            let model_time = t.elapsed().as_secs_f64();
            let model_ips = (cfg.batches * cfg.batch_size) as f64 / model_time;
            let reducing = stepper.reducing.as_secs_f64();

            // Whole batches stepped, every rank's share together.
            let wanted = cfg.batches * cfg.batch_size;
            let mut done = 0usize;
            let mut epoch = 1u64;
            let t = Instant::now();
            while done < wanted {
                for (k, batch) in loader.batches(&plan.items, epoch)?.enumerate() {
                    let batch = batch?;
                    let whole = (plan.items.len() - k * cfg.batch_size).min(cfg.batch_size);
                    stepper.step(
                        &batch.images.to_device(cfg.device),
                        &batch.targets.to_device(cfg.device),
                        whole,
                        what,
                    )?;
                    done += whole;
                    if done >= wanted {
                        break;
                    }
                }
                epoch += 1;
            }
            synchronize(cfg.device);
            let e2e_ips = done as f64 / t.elapsed().as_secs_f64();
            let row = TrainBenchRow {
                arch: arch.name(),
                precision: precision.name(),
                loader_images_per_s: loader_ips,
                model_images_per_s: model_ips,
                end_to_end_images_per_s: e2e_ips,
                loader_cost: 1.0 - e2e_ips / model_ips,
                ranks: cfg.group.as_ref().map_or(1, |g| g.world()),
                all_reduce_ms_per_step: cfg
                    .group
                    .as_ref()
                    .map(|_| 1e3 * reducing / cfg.batches as f64),
                all_reduce_share: cfg.group.as_ref().map(|_| reducing / model_time),
            };
            report(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}
