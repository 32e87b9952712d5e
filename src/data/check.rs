//! The up-front scan: every labelled image must exist and decode (and, when it will be
//! cached, is resized now so the work is done once), checked in parallel with a progress
//! bar before training starts.

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;

use super::labels::Sample;
use crate::preprocess;
use crate::progress::Progress;

/// A labelled image that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadImage {
    pub label: String,
    pub error: String,
}

/// Decodes (and resizes) one labelled image to `im_size` x `im_size` 8-bit grey.
pub fn load_sample(images: &Path, label: &str, im_size: u32) -> Result<Vec<u8>> {
    let path = images.join(label);
    let img = preprocess::resize_like_pil(&preprocess::training_image(&path)?, im_size);
    if img.dimensions() != (im_size, im_size) {
        anyhow::bail!(
            "image {} is {}x{} after resizing; batches need square {im_size}x{im_size} images",
            path.display(),
            img.width(),
            img.height()
        );
    }
    Ok(img.into_raw())
}

/// Checks every sample on `threads` threads. With `keep`, returns the resized pixels of
/// each good image; otherwise only decodes. The result is in sample order.
pub fn scan(
    images: &Path,
    samples: &[Sample],
    im_size: u32,
    keep: bool,
    threads: usize,
    progress: &Progress,
) -> Result<Vec<Result<Option<Vec<u8>>, String>>> {
    let bar = progress.bar(
        samples.len() as u64,
        "checking images {bar:30} {pos}/{len} {per_sec} eta {eta}",
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let out = pool.install(|| {
        samples
            .par_iter()
            .map(|s| {
                let r = if keep {
                    load_sample(images, &s.label, im_size).map(Some)
                } else {
                    preprocess::training_image(&images.join(&s.label)).map(|_| None)
                };
                bar.inc(1);
                r.map_err(|e| format!("{e:#}"))
            })
            .collect()
    });
    bar.finish_and_clear();
    Ok(out)
}
