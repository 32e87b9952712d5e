//! Per-epoch training history, written as CSV and JSON beside the checkpoints, and its
//! curves read back for plotting.

use crate::fsio;
use crate::metrics::Confusion;
use crate::recipe::{Balance, Optimizer, Recipe, Schedule, Select};
use anyhow::{anyhow, bail, Context, Result};
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
    /// The validation probabilities' Brier score, Brier skill score against the split's
    /// climatology and ROC AUC (`None` in the history of an older flarecast).
    #[serde(default)]
    pub val_brier: Option<f64>,
    #[serde(default)]
    pub val_bss: Option<f64>,
    #[serde(default)]
    pub val_roc_auc: Option<f64>,
    /// Whether this epoch's weights became the best checkpoint.
    pub best: bool,
    pub seconds: f64,
    /// Training images per second (the balanced, augmented epoch).
    pub images_per_s: f64,
    /// The precision the epoch was trained in.
    #[serde(default)]
    pub precision: crate::model::Precision,
    /// The recipe's choices the epoch was trained and judged under (the paper's in the
    /// history of an older flarecast).
    #[serde(default)]
    pub optimizer: Optimizer,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub select: Select,
    #[serde(default)]
    pub patience: Option<usize>,
    /// Epochs since the best one at the end of this epoch, and whether `patience` stopped
    /// the run here, before its last epoch.
    #[serde(default)]
    pub stale_epochs: usize,
    #[serde(default)]
    pub stopped_early: bool,
}

/// One pass over a split: the mean cross-entropy and the argmax forecasts' confusion,
/// and for validation the probabilities' scores.
#[derive(Clone, Debug, Default)]
pub struct Pass {
    pub loss: f64,
    pub confusion: Confusion,
    pub brier: Option<f64>,
    pub bss: Option<f64>,
    pub roc_auc: Option<f64>,
}

impl EpochRecord {
    /// The record of a finished epoch: its training and validation passes, whether its
    /// weights became the best, its duration and the training throughput.
    pub fn new(
        epoch: usize,
        lr: f64,
        train: &Pass,
        val: &Pass,
        best: bool,
        seconds: f64,
        images_per_s: f64,
    ) -> Self {
        let (t, v) = (&train.confusion, &val.confusion);
        EpochRecord {
            epoch,
            lr,
            train_loss: train.loss,
            train_tss: t.tss(),
            train_hss2: t.hss2(),
            train_tp: t.tp,
            train_fp: t.fp,
            train_tn: t.tn,
            train_fn: t.fn_,
            val_loss: val.loss,
            val_tss: v.tss(),
            val_hss2: v.hss2(),
            val_tp: v.tp,
            val_fp: v.fp,
            val_tn: v.tn,
            val_fn: v.fn_,
            val_brier: val.brier,
            val_bss: val.bss,
            val_roc_auc: val.roc_auc,
            best,
            seconds,
            images_per_s,
            precision: crate::model::Precision::F32,
            optimizer: Optimizer::default(),
            schedule: Schedule::default(),
            balance: Balance::default(),
            select: Select::default(),
            patience: None,
            stale_epochs: 0,
            stopped_early: false,
        }
    }

    /// The record, noting the precision the epoch was trained in.
    pub fn trained_in(self, precision: crate::model::Precision) -> Self {
        EpochRecord { precision, ..self }
    }

    /// The record, naming the recipe's optimizer, schedule, balance, selection and
    /// patience.
    pub fn under(self, r: &Recipe) -> Self {
        EpochRecord {
            optimizer: r.optimizer,
            schedule: r.schedule,
            balance: r.balance,
            select: r.select,
            patience: r.patience,
            ..self
        }
    }

    /// The record, with the epochs since the best one and whether the run stops here.
    pub fn stale(self, stale_epochs: usize, stopped_early: bool) -> Self {
        EpochRecord {
            stale_epochs,
            stopped_early,
            ..self
        }
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

/// The columns of an [`EpochRecord`] that the training curves draw. Read apart from the
/// whole record so a history with fewer columns (an older flarecast's, or one written by
/// hand) still plots. `epoch` is a number like the rest: it is the plot's x.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Curves {
    pub epoch: f64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub train_tss: f64,
    pub val_tss: f64,
    pub train_hss2: f64,
    pub val_hss2: f64,
}

/// Reads the curves of a history CSV by column name (in any order, others ignored), one
/// per epoch. Errors name the file and line.
pub fn read_curves(path: &Path) -> Result<Vec<Curves>> {
    let shown = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read history {shown}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{shown}:1: cannot read the header"))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{shown}: malformed row"))?;
        let line = record.position().map_or(0, |p| p.line());
        let row = record
            .deserialize(Some(&headers))
            .map_err(|e| match e.kind() {
                // Every column read is a number, so a field that fails to read is not one.
                csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                    Some(i) => anyhow!(
                        "{shown}:{line}: {} {:?} is not a number",
                        headers.get(i as usize).unwrap_or(""),
                        record.get(i as usize).unwrap_or("")
                    ),
                    None => anyhow!("{shown}:{line}: {} in the training history", err.kind()),
                },
                _ => anyhow!("{shown}:{line}: {e}"),
            })?;
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{shown}: no epochs");
    }
    Ok(rows)
}
