//! `flarecast bench train`: end-to-end training images/s with the real loader (JPEG
//! decode, resize, augmentation on worker threads) against the model-only step on the
//! same batch as pre-made tensors. Their ratio is the loader's cost. Run as ranks of a
//! process group (torchrun, srun) each rank steps on its share of every batch, as
//! `train` does, and the gradients' all-reduce is timed on its own.

use super::loader::measure_loader;
use crate::data::{self, CacheMode, Loader, LoaderConfig, Sample, Shard};
use crate::device::synchronize;
use crate::distributed::bucket::GradBucket;
use crate::distributed::Group;
use crate::model::{Arch, Compute, InitScheme, Precision};
use crate::train::parallel::Replicas;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

pub struct TrainBenchConfig {
    pub device: Device,
    pub batch_size: usize,
    pub im_size: u32,
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
    /// Refuses settings the benchmark cannot run, naming the flag.
    pub fn check(&self) -> Result<()> {
        crate::setting::check_at_least_one("batches", "the timed batches", self.batches)?;
        crate::setting::check_at_least_one("batch-size", "the batch size", self.batch_size)?;
        crate::model::check_im_size(self.im_size as i64)
            .map_err(|e| crate::setting::bad("im-size", e.to_string()))
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

/// Training steps as `train` takes them: forward + backward of this process's share of
/// each batch, the gradients summed over the group where there is one (timed into
/// `reducing`), SGD.
struct Stepper {
    replicas: Replicas,
    opt: tch::nn::Optimizer,
    ddp: Option<(Arc<Group>, GradBucket)>,
    reducing: Duration,
}

impl Stepper {
    /// A step on this process's share (`x`) of a batch of `batch` rows.
    fn step(&mut self, x: &Tensor, y: &Tensor, batch: i64) -> Result<()> {
        let Some((g, grads)) = &self.ddp else {
            self.opt.zero_grad();
            self.replicas.forward_backward(x, y)?;
            self.opt.step();
            return Ok(());
        };
        // Zeroed in place: a rank with no rows still receives the others' gradients.
        grads.prime();
        if x.size()[0] > 0 {
            self.replicas.forward_backward_share(x, y, batch)?;
        }
        synchronize(x.device());
        let t = Instant::now();
        grads.all_reduce(g, &[], "waiting for the gradients of a benchmark step")?;
        synchronize(x.device());
        self.reducing += t.elapsed();
        self.opt.step();
        Ok(())
    }
}

fn shard_of(g: &Group) -> Shard {
    Shard {
        rank: g.rank(),
        of: g.world(),
    }
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
    lcfg.shard = cfg.group.as_deref().map_or(Shard::WHOLE, shard_of);
    let loader = Loader::new(lcfg.clone(), samples)?;
    let plan = data::balance(&loader.targets(), lcfg.seed)?;
    let mut rows = Vec::new();
    for &arch in &cfg.archs {
        for &precision in &cfg.precisions {
            let compute = Compute::for_device(cfg.device, precision);
            let replicas = Replicas::new(&[cfg.device], arch, InitScheme::default(), compute)?;
            let opt = crate::train::sgd(&replicas.master().vs, 1e-3, 0.5)?;
            let ddp = match &cfg.group {
                Some(g) => {
                    let vs = &replicas.master().vs;
                    crate::distributed::bucket::broadcast_variables(
                        g,
                        vs,
                        "waiting for rank 0's initial weights",
                    )?;
                    Some((g.clone(), GradBucket::new(vs)?))
                }
                None => None,
            };
            let mut stepper = Stepper {
                replicas,
                opt,
                ddp,
                reducing: Duration::ZERO,
            };
            let first = loader
                .batches(&plan.items, 0)?
                .next()
                .context("no batch")??;
            let (x, y) = (
                first.images.to_device(cfg.device),
                first.targets.to_device(cfg.device),
            );
            // This rank's rows of the first batch (all of it without a group).
            let first_rows = plan.items.len().min(cfg.batch_size) as i64;
            stepper.step(&x, &y, first_rows)?; // warm-up
            synchronize(cfg.device);
            stepper.reducing = Duration::ZERO;
            let t = Instant::now();
            for _ in 0..cfg.batches {
                stepper.step(&x, &y, first_rows)?;
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
                        whole as i64,
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
