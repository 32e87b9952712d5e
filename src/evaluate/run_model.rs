//! A model's forecasts for a fold's validation split, written in the reference's
//! prediction format (`timestamp,flare_prob,target`, plus `goes_class,fl_lon,fl_lat` when
//! the fold's full label table `{labels}/Fold{K}_val.csv` is there) by
//! `predictions::PredictionWriter`.

use super::location::{read_details, Details};
use super::predictions::{PredictionRow, PredictionWriter};
use crate::data::{self, CacheMode, Loader, LoaderConfig, Split};
use crate::im_size::ImSize;
use crate::inference::{Model, Settings};
use crate::progress::Progress;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::Kind;

/// What to run and where to write.
#[derive(Clone, Debug)]
pub struct FoldPredictConfig {
    pub model: PathBuf,
    pub fold: u32,
    pub labels: PathBuf,
    pub images: PathBuf,
    pub out: PathBuf,
    /// Device, precision, batch size and input size, as every command runs a model.
    pub run: Settings,
}

/// The full label table of a fold's validation split, when present.
pub fn full_table(labels: &Path, fold: u32) -> Option<PathBuf> {
    let p = labels.join(format!("Fold{fold}_val.csv"));
    p.is_file().then_some(p)
}

/// Runs the model over the split (in table order) and writes `{out}/fold{K}_res.csv`
/// (through a temporary name). Returns the file and the details table it joined.
pub fn predict_fold(
    cfg: &FoldPredictConfig,
    progress: &Progress,
) -> Result<(PathBuf, Option<Details>)> {
    let model = cfg.run.load(&cfg.model)?;
    let samples = data::read_fold_split(&cfg.labels, cfg.fold, Split::Val)?;
    let details = match full_table(&cfg.labels, cfg.fold) {
        Some(p) => Some(read_details(&[p])?),
        None => None,
    };
    let mut lc = LoaderConfig::new(&cfg.images);
    lc.shuffle = false;
    lc.augment = false;
    lc.batch_size = model.batch_size;
    lc.im_size = model.im_size;
    lc.progress = *progress;
    lc.cache = single_pass_cache(samples.len(), model.im_size);
    let loader = Loader::new(lc, samples)?;
    let items = loader.plain_items();
    let bar = progress.bar(
        items.len() as u64,
        "{msg} {bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}]",
    );
    bar.set_message(format!("fold {} validation", cfg.fold));

    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let _lock = crate::fsio::OutputLock::acquire(&cfg.out, &format!("fold{}_res", cfg.fold))?;
    let path = cfg.out.join(format!("fold{}_res.csv", cfg.fold));
    let written = crate::fsio::write_atomic_with(&path, |file| {
        write_rows(cfg, &model, &loader, &items, details.as_ref(), file, &bar)
    });
    bar.finish_and_clear();
    written?;
    Ok((path, details))
}

/// The most the resized images of one pass may hold in memory.
const SINGLE_PASS_CACHE_BYTES: u64 = 2 << 30;

/// The loader checks every image up front by decoding it; in a single pass over the split,
/// keeping what the check decoded (resized, 8-bit) spares decoding every image a second
/// time, where the split's images fit [`SINGLE_PASS_CACHE_BYTES`].
fn single_pass_cache(images: usize, side: ImSize) -> CacheMode {
    let bytes = images as u64 * u64::from(side.get()).pow(2);
    if bytes <= SINGLE_PASS_CACHE_BYTES {
        CacheMode::Memory
    } else {
        CacheMode::None
    }
}

fn write_rows(
    cfg: &FoldPredictConfig,
    model: &Model,
    loader: &Loader,
    items: &[data::Item],
    details: Option<&Details>,
    file: &mut crate::fsio::AtomicFile,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let mut w = PredictionWriter::new(file, details.is_some())?;
    for batch in loader.batches(items, 0)? {
        let batch = batch?;
        let out = tch::no_grad(|| {
            model
                .loaded
                .net
                .forward_t(&batch.images.to_device(model.device), false)
        });
        let probs = Vec::<f64>::try_from(out.flare_prob().to_kind(Kind::Double))?;
        let targets = Vec::<i64>::try_from(batch.targets.to_kind(Kind::Int64))?;
        for ((name, &p), &t) in batch.names.iter().zip(&probs).zip(&targets) {
            let timestamp = cfg.images.join(name).display().to_string();
            let mut row = PredictionRow::new(timestamp, p, t == 1);
            if let Some(d) = details {
                let (class, lon, lat) = d
                    .raw
                    .get(&super::instance_key(name))
                    .cloned()
                    .unwrap_or_default();
                (row.goes_class, row.fl_lon, row.fl_lat) = (Some(class), Some(lon), Some(lat));
            }
            w.write(&row)?;
        }
        bar.inc(batch.names.len() as u64);
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A validation quarter of the paper's size at 256 keeps its images (about 1 GiB);
    /// past 2 GiB of resized images, each is decoded again for its batch.
    #[test]
    fn a_single_pass_keeps_its_images_where_they_fit() {
        let side = |s| ImSize::new(s).unwrap();
        assert_eq!(single_pass_cache(16_722, side(256)), CacheMode::Memory);
        assert_eq!(single_pass_cache(8192, side(512)), CacheMode::Memory);
        assert_eq!(single_pass_cache(8193, side(512)), CacheMode::None);
        assert_eq!(single_pass_cache(100_000, side(256)), CacheMode::None);
    }
}
