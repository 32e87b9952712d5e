//! Loader throughput, for `flarecast bench train`.

use std::time::Instant;

use anyhow::{bail, Result};

use super::balance::balance;
use super::labels::Sample;
use super::loader::{Loader, LoaderConfig};

/// Images per second the loader delivers over `n_batches` balanced, augmented training
/// batches (after the up-front check and cache fill, which are not timed). Batches are
/// only produced, not consumed, so this is the loader's ceiling.
pub fn measure_loader(
    config: &LoaderConfig,
    samples: Vec<Sample>,
    n_batches: usize,
) -> Result<f64> {
    if n_batches == 0 {
        bail!("measure at least one batch");
    }
    let loader = Loader::new(config.clone(), samples)?;
    let plan = balance(&loader.targets(), config.seed)?;
    let mut images = 0usize;
    let start = Instant::now();
    let mut epoch = 0;
    while images < n_batches * config.batch_size {
        let mut served = 0;
        for batch in loader.batches(&plan.items, epoch)? {
            let batch = batch?;
            images += batch.names.len();
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
    Ok(images as f64 / start.elapsed().as_secs_f64())
}
