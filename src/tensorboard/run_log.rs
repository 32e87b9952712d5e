//! What a training run logs for TensorBoard: its settings, the training loss and
//! learning rate every few optimizer steps, and every number of each epoch's record.
//!
//! Two step axes share the file, as TensorBoard keeps one per tag: `step/*` at the global
//! step (optimizer steps since the run began), `epoch/*` at the epoch (1-based). A resumed
//! run opens a new file and logs only what comes after its checkpoint, so every step of
//! every tag is logged once across the files.

use super::writer::EventWriter;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// Optimizer steps between two logs of the loss and learning rate (the last step of each
/// epoch is logged too).
pub const STEP_EVERY: u64 = 10;

/// The event file of one training process.
pub struct RunLog {
    writer: EventWriter,
    /// Optimizer steps in an epoch.
    steps_per_epoch: u64,
}

impl RunLog {
    /// A new event file in `dir` for a run of `steps_per_epoch` optimizer steps an epoch
    /// that has trained `done_epochs` (0 fresh, a resumed run its checkpoint's): a session
    /// starting at the first step this process logs (0 fresh, else the first step after
    /// the checkpoint's), and `settings` there as pretty JSON under `settings`.
    pub fn open(
        dir: &Path,
        steps_per_epoch: usize,
        done_epochs: usize,
        settings: &serde_json::Value,
    ) -> Result<RunLog> {
        let steps_per_epoch = steps_per_epoch as u64;
        let done = steps_per_epoch * done_epochs as u64;
        let first = if done == 0 { 0 } else { step(done + 1)? };
        let mut writer = EventWriter::create(dir)?;
        writer.session_start(first);
        let json = serde_json::to_string_pretty(settings)?;
        // A fenced block, so TensorBoard's markdown shows the JSON as written.
        writer.text(first, "settings", &format!("```json\n{json}\n```"));
        writer.flush()?;
        Ok(RunLog {
            writer,
            steps_per_epoch,
        })
    }

    /// Step `k` (0-based) of epoch `epoch` (1-based) done with this loss at this rate:
    /// logged as `step/train_loss` and `step/lr` at the global step (optimizer steps since
    /// the run began) every [`STEP_EVERY`] steps and at the last step of an epoch.
    pub fn step(&mut self, epoch: usize, k: usize, loss: f64, lr: f64) -> Result<()> {
        if let Some(global) = logged_step(self.steps_per_epoch, epoch, k) {
            let values = [
                ("step/train_loss".to_string(), loss as f32),
                ("step/lr".to_string(), lr as f32),
            ];
            self.writer.scalars(step(global)?, &values);
        }
        Ok(())
    }

    /// Epoch `epoch` is done and recorded: each number of `record` but its `epoch` is logged
    /// as `epoch/{field}` (a flag as 1 or 0; text and nulls, JSON's spelling of NaN and of a
    /// setting not given, left out), then everything logged so far is written out.
    pub fn epoch(&mut self, epoch: usize, record: &impl Serialize) -> Result<()> {
        let values = epoch_values(record)?;
        let at = i64::try_from(epoch).context("epoch number")?;
        self.writer.scalars(at, &values);
        self.writer.flush()
    }
}

/// The tagged numbers of an epoch's record.
fn epoch_values(record: &impl Serialize) -> Result<Vec<(String, f32)>> {
    let serde_json::Value::Object(fields) = serde_json::to_value(record)? else {
        anyhow::bail!("an epoch's record is not a set of named fields");
    };
    Ok(fields
        .into_iter()
        .filter(|(name, _)| name != "epoch")
        .filter_map(|(name, v)| {
            let x = match v {
                serde_json::Value::Number(n) => n.as_f64()?,
                serde_json::Value::Bool(b) => f64::from(u8::from(b)),
                _ => return None,
            };
            Some((format!("epoch/{name}"), x as f32))
        })
        .collect())
}

/// The global step of step `k` (0-based) of `epoch` (1-based) when it is one to log.
fn logged_step(steps_per_epoch: u64, epoch: usize, k: usize) -> Option<u64> {
    let (epoch, k) = (epoch as u64, k as u64);
    let global = epoch.saturating_sub(1) * steps_per_epoch + k + 1;
    (global.is_multiple_of(STEP_EVERY) || k + 1 == steps_per_epoch).then_some(global)
}

fn step(n: u64) -> Result<i64> {
    i64::try_from(n).context("step number")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tenth_step_and_the_last_of_each_epoch_are_logged() {
        let logged = |per_epoch, epochs| -> Vec<u64> {
            (1..=epochs)
                .flat_map(|e| (0..per_epoch).map(move |k| (e, k)))
                .filter_map(|(e, k)| logged_step(per_epoch as u64, e, k))
                .collect()
        };
        assert_eq!(logged(8, 2), [8, 10, 16]);
        assert_eq!(logged(25, 2), [10, 20, 25, 30, 40, 50]);
        assert_eq!(logged(1, 3), [1, 2, 3]);
    }

    #[test]
    fn every_number_of_a_record_but_its_epoch_is_a_value() {
        let record = serde_json::json!({
            "epoch": 3, "lr": 0.001, "val_tss": f64::NAN, "best": true, "train_tp": 7,
            "precision": "f32", "patience": null,
        });
        let mut values = epoch_values(&record).unwrap();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["epoch/best", "epoch/lr", "epoch/train_tp"]);
        assert_eq!(values[0].1, 1.0);
        assert_eq!(values[1].1, 0.001f32);
        assert_eq!(values[2].1, 7.0);
    }
}
