//! `flarecast bench train`: end-to-end training images/s with the real loader (JPEG
//! decode, resize, augmentation on worker threads) against the model-only step on the
//! same batch as pre-made tensors. Their ratio is the loader's cost.

use super::loader::measure_loader;
use crate::data::{self, CacheMode, Loader, LoaderConfig, Sample};
use crate::device::synchronize;
use crate::model::{Arch, Compute, InitScheme, Precision};
use crate::train::parallel::Replicas;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;
use tch::Device;

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
    if cfg.batches == 0 {
        return Err(crate::setting::bad(
            "batches",
            "the timed batches must be at least 1",
        ));
    }
    let mut lcfg = LoaderConfig::new(images);
    lcfg.im_size = cfg.im_size;
    lcfg.batch_size = cfg.batch_size;
    lcfg.workers = cfg.workers;
    lcfg.cache = cfg.cache;
    lcfg.device = cfg.device;
    let loader_ips = measure_loader(&lcfg, samples.clone(), cfg.batches)?.images_per_s;
    let loader = Loader::new(lcfg.clone(), samples)?;
    let plan = data::balance(&loader.targets(), lcfg.seed)?;
    let mut rows = Vec::new();
    for &arch in &cfg.archs {
        for &precision in &cfg.precisions {
            let compute = Compute::for_device(cfg.device, precision);
            let mut replicas = Replicas::new(&[cfg.device], arch, InitScheme::default(), compute)?;
            let mut opt = crate::train::sgd(&replicas.master().vs, 1e-3, 0.5)?;
            let first = loader
                .batches(&plan.items, 0)?
                .next()
                .context("no batch")??;
            let (x, y) = (
                first.images.to_device(cfg.device),
                first.targets.to_device(cfg.device),
            );
            let mut step = |x: &tch::Tensor, y: &tch::Tensor| -> Result<()> {
                opt.zero_grad();
                replicas.forward_backward(x, y)?;
                opt.step();
                Ok(())
            };
            step(&x, &y)?; // warm-up
            synchronize(cfg.device);
            let t = Instant::now();
            for _ in 0..cfg.batches {
                step(&x, &y)?;
            }
            synchronize(cfg.device);
            let model_ips = (cfg.batches * cfg.batch_size) as f64 / t.elapsed().as_secs_f64();

            let mut done = 0usize;
            let mut epoch = 1u64;
            let t = Instant::now();
            while done < cfg.batches * cfg.batch_size {
                for batch in loader.batches(&plan.items, epoch)? {
                    let batch = batch?;
                    step(
                        &batch.images.to_device(cfg.device),
                        &batch.targets.to_device(cfg.device),
                    )?;
                    done += batch.names.len();
                    if done >= cfg.batches * cfg.batch_size {
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
            };
            report(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}
