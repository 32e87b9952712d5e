//! Batches for an epoch: a seeded shuffle of the plan's items, then batches assembled on
//! worker threads (decode + resize + augment, or the in-memory cache) behind a bounded
//! prefetch queue, or gathered on the device from `--cache device`. Every random choice
//! derives from (seed, epoch, item position), so batches are identical for a seed
//! whatever the number of workers or their timing.

use crate::bounded::Count;
use crate::im_size::ImSize;
use crate::progress::Progress;
use crate::recipe::Recipe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use image::GrayImage;
use rand::seq::SliceRandom;
use rand::Rng;
use tch::{Device, Kind, Tensor};

use super::balance::{plain_items, Augment, Item};
use super::check::{self, BadImage};
use super::labels::Sample;
use super::rng::{rng, Stream};
use super::tensor_augment;
use crate::preprocess::augment as img_aug;

/// Where decoded, resized images are kept between epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CacheMode {
    /// Decode and resize every image every epoch.
    #[default]
    None,
    /// Keep the resized 8-bit images in RAM (64 KiB each at 256).
    Memory,
    /// Keep them as one u8 tensor on the device; batches are gathered and augmented there.
    Device,
}

/// Which rows of every batch this process loads: rank `rank` of `of` takes the
/// `rank`-th of `of` chunks as `torch.chunk` cuts them (ceil(B / of) rows each, the last
/// ones shorter or empty), so the ranks of a process group together see each whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub of: usize,
}

impl Shard {
    /// The whole batch.
    pub const WHOLE: Shard = Shard { rank: 0, of: 1 };

    /// The rank's rows `start..end` of a batch of `rows`.
    pub fn rows(&self, rows: usize) -> std::ops::Range<usize> {
        let chunk = rows.div_ceil(self.of.max(1));
        let start = (self.rank * chunk).min(rows);
        start..(start + chunk).min(rows)
    }
}

/// How to load one split.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Directory the labels' image paths are relative to.
    pub images: PathBuf,
    /// Side of the square network input.
    pub im_size: ImSize,
    pub batch_size: usize,
    /// Threads that assemble batches (0: on the calling thread); also the threads of the
    /// up-front image check.
    pub workers: usize,
    pub seed: u64,
    /// Apply each item's augmentation (off: every item is shown as the original).
    pub augment: bool,
    pub cache: CacheMode,
    /// Shuffle the items each epoch (seeded by seed and epoch).
    pub shuffle: bool,
    /// Leave out unreadable images (listed by [`Loader::skipped`]) instead of failing.
    pub skip_bad_images: bool,
    /// Device of `--cache device` batches (other modes give CPU batches).
    pub device: Device,
    /// Finished batches each worker may queue ahead.
    pub prefetch: usize,
    /// Where the up-front image check shows its progress (nowhere unless set).
    pub progress: Progress,
    /// The rows of each batch served (a rank's share; the whole batch by default).
    pub shard: Shard,
}

impl LoaderConfig {
    /// Threads a loader may start (0: none, batches are made on the calling thread).
    pub const WORKERS: Count<usize> = Count::new("workers", "loader threads", 0, 1024);

    /// Threads when none are asked for: one per core, within [`LoaderConfig::WORKERS`].
    pub fn default_workers() -> usize {
        crate::hardware::cores().min(Self::WORKERS.max())
    }

    /// The paper's settings (`Recipe::PAPER`: its side, batch and seed), augmentation and
    /// shuffling on, no cache, one worker per core.
    pub fn new(images: impl Into<PathBuf>) -> Self {
        let paper = Recipe::PAPER;
        LoaderConfig {
            images: images.into(),
            im_size: paper.im_size,
            batch_size: paper.batch_size,
            workers: Self::default_workers(),
            seed: paper.seed,
            augment: true,
            cache: CacheMode::None,
            shuffle: true,
            skip_bad_images: false,
            device: Device::Cpu,
            prefetch: 2,
            progress: Progress::hidden(),
            shard: Shard::WHOLE,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("batch size must be at least 1");
        }
        if self.shard.rank >= self.shard.of {
            bail!(
                "shard {} of {} does not exist",
                self.shard.rank,
                self.shard.of
            );
        }
        Ok(())
    }
}

/// One batch: images `[B, 1, H, W]` float32 in [0, 1], targets `[B]` int64 (0/1), and
/// for each row the sample's label and the plan item it came from.
pub struct Batch {
    pub images: Tensor,
    pub targets: Tensor,
    pub names: Vec<String>,
    pub items: Vec<Item>,
}

/// Torch's own u8 -> f32 / 255 values, so every path gives `ToTensor`'s exact floats.
fn float_lut() -> [f32; 256] {
    let t = Tensor::arange(256, (Kind::Uint8, Device::Cpu)).to_kind(Kind::Float) / 255.0;
    let v = Vec::<f32>::try_from(t).unwrap_or_default();
    let mut lut = [0f32; 256];
    for (i, l) in lut.iter_mut().enumerate() {
        *l = v.get(i).copied().unwrap_or(i as f32 / 255.0);
    }
    lut
}

/// The random rotation angle of the item at `position` of the plan in `epoch`.
pub fn rotation_angle(seed: u64, epoch: u64, position: usize) -> f64 {
    rng(seed, Stream::Rotation, epoch, position as u64).random_range(-5.0..5.0)
}

/// State shared with the worker threads.
struct Shared {
    config: LoaderConfig,
    samples: Vec<Sample>,
    memory: Option<Vec<Vec<u8>>>,
    lut: [f32; 256],
}

impl Shared {
    fn pixels(&self, index: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
        match &self.memory {
            Some(m) => Ok(std::borrow::Cow::Borrowed(&m[index])),
            None => {
                let s = &self.samples[index];
                check::load_sample(&self.config.images, &s.label, self.config.im_size.get())
                    .map(std::borrow::Cow::Owned)
            }
        }
    }

    /// Builds batch `b` of an epoch on the CPU.
    fn build(&self, plan: &EpochPlan, b: usize) -> Result<Batch> {
        let positions = plan.batch_positions(b, self.config.batch_size, self.config.shard);
        let side = self.config.im_size.get();
        let hw = (side * side) as usize;
        let mut floats = vec![0f32; positions.len() * hw];
        let mut targets = Vec::with_capacity(positions.len());
        let mut names = Vec::with_capacity(positions.len());
        let mut items = Vec::with_capacity(positions.len());
        for (slot, &pos) in positions.iter().enumerate() {
            let item = plan.items[pos];
            let sample = &self.samples[item.index];
            let raw = self.pixels(item.index)?;
            let augment = if self.config.augment {
                item.augment
            } else {
                Augment::Original
            };
            let view = |f: fn(&GrayImage) -> GrayImage| -> Vec<u8> {
                let img = GrayImage::from_raw(side, side, raw.to_vec()).expect("square image");
                f(&img).into_raw()
            };
            let shown: std::borrow::Cow<'_, [u8]> = match augment {
                Augment::Original => std::borrow::Cow::Borrowed(&raw),
                Augment::HFlip => view(img_aug::hflip).into(),
                Augment::VFlip => view(img_aug::vflip).into(),
                Augment::RandomRotation => {
                    let img = GrayImage::from_raw(side, side, raw.to_vec()).expect("square image");
                    let angle = rotation_angle(self.config.seed, plan.epoch, pos);
                    img_aug::rotate_nearest(&img, angle).into_raw().into()
                }
            };
            let dst = &mut floats[slot * hw..(slot + 1) * hw];
            for (d, &p) in dst.iter_mut().zip(shown.iter()) {
                *d = self.lut[p as usize];
            }
            targets.push(sample.target);
            names.push(sample.label.clone());
            items.push(item);
        }
        let n = positions.len() as i64;
        Ok(Batch {
            images: Tensor::from_slice(&floats).view([n, 1, side as i64, side as i64]),
            targets: Tensor::from_slice(&targets),
            names,
            items,
        })
    }
}

/// One epoch's items in the order they are served.
struct EpochPlan {
    items: Arc<Vec<Item>>,
    order: Vec<usize>,
    epoch: u64,
}

impl EpochPlan {
    fn num_batches(&self, batch_size: usize) -> usize {
        self.order.len().div_ceil(batch_size)
    }

    fn batch_positions(&self, b: usize, batch_size: usize, shard: Shard) -> &[usize] {
        let end = ((b + 1) * batch_size).min(self.order.len());
        let whole = &self.order[b * batch_size..end];
        &whole[shard.rows(whole.len())]
    }
}

/// Serves batches of one split (train or validation) epoch after epoch.
pub struct Loader {
    shared: Arc<Shared>,
    device_images: Option<Tensor>,
    device_lut: Option<Tensor>,
    skipped: Vec<BadImage>,
}

impl Loader {
    /// Checks every sample's image up front (in parallel) and fills the cache. A missing
    /// or corrupt image is an error naming it, or with `skip_bad_images` is left out and
    /// listed by [`Loader::skipped`]; sample indices then refer to [`Loader::samples`].
    pub fn new(config: LoaderConfig, samples: Vec<Sample>) -> Result<Loader> {
        config.validate()?;
        if samples.is_empty() {
            bail!("no labelled instances to load");
        }
        if !config.images.is_dir() {
            bail!("image directory {} does not exist", config.images.display());
        }
        let keep = config.cache != CacheMode::None;
        let threads = config.workers.max(1);
        let scanned = check::scan(
            &config.images,
            &samples,
            config.im_size.get(),
            keep,
            threads,
            &config.progress,
        )?;
        let mut kept = Vec::with_capacity(samples.len());
        let mut pixels = Vec::new();
        let mut skipped = Vec::new();
        for (sample, r) in samples.into_iter().zip(scanned) {
            match r {
                Ok(p) => {
                    if let Some(p) = p {
                        pixels.push(p);
                    }
                    kept.push(sample);
                }
                Err(error) => skipped.push(BadImage {
                    label: sample.label,
                    error,
                }),
            }
        }
        if !skipped.is_empty() && !config.skip_bad_images {
            let first = &skipped[0];
            return Err(crate::setting::bad(
                "skip_bad_images",
                format!(
                    "{} of {} labelled images cannot be used (they can be left out instead); first: {}: {}",
                    skipped.len(),
                    skipped.len() + kept.len(),
                    first.label,
                    first.error
                ),
            ));
        }
        if kept.is_empty() {
            bail!("none of the labelled images can be used");
        }
        let lut = float_lut();
        let (memory, device_images, device_lut) = match config.cache {
            CacheMode::None => (None, None, None),
            CacheMode::Memory => (Some(pixels), None, None),
            CacheMode::Device => {
                let side = config.im_size.as_i64();
                let n = kept.len() as i64;
                // Filled image by image so host memory peaks near one copy of the set.
                let mut t = Tensor::empty([n, 1, side, side], (Kind::Uint8, Device::Cpu));
                for (i, p) in pixels.into_iter().enumerate() {
                    t.get(i as i64)
                        .copy_(&Tensor::from_slice(&p).view([1, side, side]));
                }
                t = t.to_device(config.device);
                let l = Tensor::from_slice(&lut).to_device(config.device);
                (None, Some(t), Some(l))
            }
        };
        Ok(Loader {
            shared: Arc::new(Shared {
                config,
                samples: kept,
                memory,
                lut,
            }),
            device_images,
            device_lut,
            skipped,
        })
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// The samples served (the labelled ones minus any skipped).
    pub fn samples(&self) -> &[Sample] {
        &self.shared.samples
    }

    /// The 0/1 targets of [`Loader::samples`], for balancing.
    pub fn targets(&self) -> Vec<i64> {
        self.shared.samples.iter().map(|s| s.target).collect()
    }

    /// Images left out with `skip_bad_images`.
    pub fn skipped(&self) -> &[BadImage] {
        &self.skipped
    }

    /// Every sample once, unaugmented (validation).
    pub fn plain_items(&self) -> Vec<Item> {
        plain_items(self.shared.samples.len())
    }

    /// Batches an epoch of `n_items` items makes.
    pub fn num_batches(&self, n_items: usize) -> usize {
        n_items.div_ceil(self.shared.config.batch_size)
    }

    /// The batches of `epoch` over `items` (indices into [`Loader::samples`]), in a
    /// seeded shuffled order when `shuffle` is on. The last batch may be smaller.
    pub fn batches(&self, items: &[Item], epoch: u64) -> Result<Batches<'_>> {
        let n = self.shared.samples.len();
        if let Some(bad) = items.iter().find(|it| it.index >= n) {
            bail!("item refers to sample {} of {n}", bad.index);
        }
        let mut order: Vec<usize> = (0..items.len()).collect();
        if self.shared.config.shuffle {
            order.shuffle(&mut rng(self.shared.config.seed, Stream::Shuffle, epoch, 0));
        }
        let plan = Arc::new(EpochPlan {
            items: Arc::new(items.to_vec()),
            order,
            epoch,
        });
        let total = plan.num_batches(self.shared.config.batch_size);
        let workers = self.shared.config.workers.min(total);
        let mut batches = Batches {
            loader: self,
            plan,
            next: 0,
            total,
            receivers: Vec::new(),
            handles: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        if self.device_images.is_none() && workers > 0 {
            batches.spawn(workers);
        }
        Ok(batches)
    }

    /// Builds batch `b` from the device cache: gather, augment and scale on the device.
    fn device_batch(&self, plan: &EpochPlan, b: usize) -> Result<Batch> {
        let (Some(all), Some(lut)) = (&self.device_images, &self.device_lut) else {
            bail!("no device cache");
        };
        let cfg = &self.shared.config;
        let positions = plan.batch_positions(b, cfg.batch_size, cfg.shard);
        let items: Vec<Item> = positions.iter().map(|&p| plan.items[p]).collect();
        let idx: Vec<i64> = items.iter().map(|it| it.index as i64).collect();
        let idx = Tensor::from_slice(&idx).to_device(all.device());
        let mut pixels = all.index_select(0, &idx);
        if cfg.augment {
            let augments: Vec<Augment> = items.iter().map(|it| it.augment).collect();
            let angles: Vec<f64> = positions
                .iter()
                .zip(&augments)
                .map(|(&p, a)| match a {
                    Augment::RandomRotation => rotation_angle(cfg.seed, plan.epoch, p),
                    _ => 0.0,
                })
                .collect();
            pixels = tensor_augment::apply(&pixels, &augments, &angles)?;
        }
        let shape = pixels.size();
        let images = lut
            .index_select(0, &pixels.flatten(0, -1).to_kind(Kind::Int64))
            .view(shape.as_slice());
        let targets: Vec<i64> = items
            .iter()
            .map(|it| self.shared.samples[it.index].target)
            .collect();
        Ok(Batch {
            images,
            targets: Tensor::from_slice(&targets).to_device(all.device()),
            names: items
                .iter()
                .map(|it| self.shared.samples[it.index].label.clone())
                .collect(),
            items,
        })
    }
}

/// The batches of one epoch, in order; dropping it stops the workers.
pub struct Batches<'a> {
    loader: &'a Loader,
    plan: Arc<EpochPlan>,
    next: usize,
    total: usize,
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Batches<'_> {
    /// Worker `w` builds batches w, w + workers, ... into its own bounded queue, so the
    /// consumer can take them in order.
    fn spawn(&mut self, workers: usize) {
        let depth = self.loader.shared.config.prefetch.max(1);
        for w in 0..workers {
            let (tx, rx) = sync_channel(depth);
            let shared = Arc::clone(&self.loader.shared);
            let plan = Arc::clone(&self.plan);
            let stop = Arc::clone(&self.stop);
            let total = self.total;
            let handle = std::thread::Builder::new()
                .name(format!("loader-{w}"))
                .spawn(move || {
                    for b in (w..total).step_by(workers) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let batch = shared
                            .build(&plan, b)
                            .with_context(|| format!("building batch {b}"));
                        if tx.send(batch).is_err() {
                            break;
                        }
                    }
                });
            match handle {
                Ok(h) => {
                    self.receivers.push(rx);
                    self.handles.push(h);
                }
                Err(_) => {
                    // Could not start a thread: fall back to building on the caller.
                    self.stop.store(true, Ordering::Relaxed);
                    self.receivers.clear();
                    return;
                }
            }
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.total {
            return None;
        }
        let b = self.next;
        self.next += 1;
        let loader = self.loader;
        Some(if loader.device_images.is_some() {
            loader.device_batch(&self.plan, b)
        } else if self.receivers.is_empty() {
            loader.shared.build(&self.plan, b)
        } else {
            let rx = &self.receivers[b % self.receivers.len()];
            rx.recv()
                .map_err(|_| anyhow!("loader worker stopped before batch {b}"))
                .and_then(|r| r)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

impl Drop for Batches<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
