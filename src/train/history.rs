//! Per-epoch training history, written as CSV and JSON beside the checkpoints.

use crate::fsio;
use crate::metrics::Confusion;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One epoch's numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_tss: f64,
    pub train_hss2: f64,
    pub train_tp: u64,
    pub train_fp: u64,
    pub train_tn: u64,
    pub train_fn: u64,
    pub val_loss: f64,
    pub val_tss: f64,
    pub val_hss2: f64,
    pub val_tp: u64,
    pub val_fp: u64,
    pub val_tn: u64,
    pub val_fn: u64,
    /// Whether this epoch's weights became the best checkpoint.
    pub best: bool,
    pub seconds: f64,
    /// Training images per second (the balanced, augmented epoch).
    pub images_per_s: f64,
}

impl EpochRecord {
    pub fn set_train(&mut self, c: &Confusion) {
        (self.train_tp, self.train_fp, self.train_tn, self.train_fn) = (c.tp, c.fp, c.tn, c.fn_);
        self.train_tss = c.tss();
        self.train_hss2 = c.hss2();
    }

    pub fn set_val(&mut self, c: &Confusion) {
        (self.val_tp, self.val_fp, self.val_tn, self.val_fn) = (c.tp, c.fp, c.tn, c.fn_);
        self.val_tss = c.tss();
        self.val_hss2 = c.hss2();
    }
}

/// Writes `records` to `{stem}.csv` and `{stem}.json` (each atomically).
pub fn write(dir: &Path, stem: &str, records: &[EpochRecord]) -> Result<()> {
    let csv_path = dir.join(format!("{stem}.csv"));
    fsio::write_atomic_with(&csv_path, |file| {
        let mut w = csv::Writer::from_writer(file);
        for r in records {
            w.serialize(r)?;
        }
        w.flush()?;
        Ok(())
    })?;
    let json_path = dir.join(format!("{stem}.json"));
    fsio::write_atomic(
        &json_path,
        serde_json::to_string_pretty(records)?.as_bytes(),
    )
}
