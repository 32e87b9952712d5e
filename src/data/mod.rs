//! The training data pipeline.
//!
//! 1. [`read_fold_split`] reads `{labels}/simplified_data_labels/Fold{k}_{train,val}.csv`
//!    into [`Sample`]s (image path relative to the image directory, 0/1 target).
//! 2. [`Loader::new`] checks every image up front in parallel (a missing or corrupt one is
//!    an error naming it, or is skipped and listed) and fills the cache
//!    ([`CacheMode::Memory`]: resized 8-bit images in RAM; [`CacheMode::Device`]: one u8
//!    tensor on the device).
//! 3. [`balance`] turns the training targets into the epoch's plan of [`Item`]s
//!    (instance, [`Augment`]); validation uses [`Loader::plain_items`].
//! 4. [`Loader::batches`] yields the epoch's [`Batch`]es (`images` `[B, 1, H, W]` f32 in
//!    [0, 1], `targets` `[B]` i64), deterministic for a seed whatever the worker count.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use flarecast::data::{self, Loader, LoaderConfig, Split};
//! let labels = std::path::Path::new("data_labels");
//! let train = data::read_fold_split(labels, 1, Split::Train)?;
//! let loader = Loader::new(LoaderConfig::new("images"), train)?;
//! let plan = data::balance(&loader.targets(), loader.config().seed)?;
//! for epoch in 0..2 {
//!     for batch in loader.batches(&plan.items, epoch)? {
//!         let batch = batch?;
//!         // forward batch.images, loss against batch.targets ...
//!     }
//! }
//! # Ok(()) }
//! ```

mod balance;
mod check;
mod labels;
mod loader;
mod rng;
pub mod tensor_augment;

pub use balance::{
    balance, class_weights, plain_items, unbalanced, Augment, Balanced, Item, FL_SEQUENCE,
};
pub use check::{load_sample, BadImage};
pub use labels::{class_counts, fold_csv, read_fold_split, read_labels, Sample, Split};
pub use loader::{rotation_angle, Batch, Batches, CacheMode, Loader, LoaderConfig, Shard};
