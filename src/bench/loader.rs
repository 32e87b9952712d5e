//! Loader throughput, for `flarecast bench train`.

use std::time::Instant;

use anyhow::{bail, Result};

use crate::data::{balance, Loader, LoaderConfig, Sample};

/// What the loader delivered in a measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoaderThroughput {
    /// Images and batches served, and the epochs they came from (the last one partly).
    pub images: usize,
    pub batches: usize,
    pub epochs: u64,
    pub images_per_s: f64,
}

/// What the loader delivers over at least `n_batches` x batch size images of balanced,
/// augmented training batches (after the up-front check and cache fill, which are not
/// timed). Batches are only produced, not consumed, so this is the loader's ceiling.
pub fn measure_loader(
    config: &LoaderConfig,
    samples: Vec<Sample>,
    n_batches: usize,
) -> Result<LoaderThroughput> {
    if n_batches == 0 {
        bail!("measure at least one batch");
    }
    let loader = Loader::new(config.clone(), samples)?;
    let plan = balance(&loader.targets(), config.seed)?;
    let (mut images, mut batches) = (0usize, 0usize);
    let start = Instant::now();
    let mut epoch = 0;
    while images < n_batches * config.batch_size {
        let mut served = 0;
        for batch in loader.batches(&plan.items, epoch)? {
            let batch = batch?;
            images += batch.names.len();
            batches += 1;
            served += 1;
            if images >= n_batches * config.batch_size {
                break;
            }
        }
        if served == 0 {
            bail!("the loader served no batch");
        }
        epoch += 1;
    }
    Ok(LoaderThroughput {
        images,
        batches,
        epochs: epoch,
        images_per_s: images as f64 / start.elapsed().as_secs_f64(),
    })
}
