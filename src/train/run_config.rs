//! `fold{K}_config.toml`: a run's resolved settings (the command line's, as `train
//! --config` reads them back) with what it ran on in a `[ran_on]` table: flarecast's and
//! libtorch's versions, the device and the precision chosen, the seed, the SHA-256 of the
//! label tables it read and the count of images. `train --config` of that file (with
//! another `--out`) repeats the run.

use super::TrainConfig;
use crate::data::{fold_csv, Split};
use crate::device::device_name;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The table the provenance goes in (`train --config` skips it).
pub const RAN_ON: &str = "ran_on";

/// Writes `settings` (a TOML file of train's flags) and the `[ran_on]` table to `path`.
pub fn write(path: &Path, cfg: &TrainConfig, settings: &str, images_read: usize) -> Result<()> {
    let mut ran_on = toml::Table::new();
    let mut put = |k: &str, v: toml::Value| {
        ran_on.insert(k.into(), v);
    };
    put("flarecast", env!("CARGO_PKG_VERSION").into());
    put(
        "libtorch",
        option_env!("FLARECAST_LIBTORCH_VERSION")
            .unwrap_or("unknown")
            .into(),
    );
    put(
        "devices",
        toml::Value::Array(cfg.devices.iter().map(|d| device_name(*d).into()).collect()),
    );
    put("ranks", (cfg.ranks() as i64).into());
    put("precision", cfg.precision.name().into());
    put("seed", (cfg.recipe.seed as i64).into());
    for split in [Split::Train, Split::Val] {
        let table = fold_csv(&cfg.labels, cfg.fold, split);
        let bytes =
            std::fs::read(&table).with_context(|| format!("reading {}", table.display()))?;
        put(
            &format!("{}_labels_sha256", split.name()),
            hex(&Sha256::digest(&bytes)).into(),
        );
    }
    put("images_read", (images_read as i64).into());
    let mut doc = toml::Table::new();
    doc.insert(RAN_ON.into(), toml::Value::Table(ran_on));
    let text = format!(
        "# flarecast train's settings for this run; `flarecast train --config {}` repeats it.\n{settings}\n{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        toml::to_string(&doc)?
    );
    crate::fsio::write_atomic(path, text.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
