//! Forecasts for magnetograms: P(>=M1.0 flare in 24 h) per image or per `.npy` instance.
//!
//! Inputs are read and run in batches as the caller consumes the results, so memory holds
//! about one batch, never the whole input list: a year of images needs no more RAM than
//! a day's.

use crate::inference::Model;
use crate::model;
use crate::preprocess::Input;
use anyhow::{anyhow, bail, Result};
use std::collections::VecDeque;
use std::path::PathBuf;
use tch::{Kind, Tensor};

/// The forecast for one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The file the instance came from.
    pub input: PathBuf,
    /// The instance's index within its file (always 0 for an image).
    pub index: usize,
    pub flare_prob: f64,
    /// `flare_prob` through the model's calibration, when it has one.
    pub calibrated_prob: Option<f64>,
    /// Logits of (no flare, flare).
    pub logits: [f64; 2],
    /// Whether a flare is forecast: `flare_prob` at least the threshold.
    pub flare: bool,
    /// What was assumed about the input (16-bit clipped, colour, not HMI, ...): warnings
    /// for the user, given with the file's first instance.
    pub notes: Vec<String>,
}

/// Forecasts for `inputs` (JPG/PNG/JP2 magnetograms or `.npy` float32 arrays, read as
/// every command reads them), in input order, a flare forecast at P(FL) >= `threshold`.
/// The first unreadable input or non-finite forecast ends the sequence with an error
/// naming the file; forecasts of earlier batches have been yielded by then.
pub fn predict<I>(model: &Model, inputs: I, threshold: f64) -> Result<Predictions<'_, I::IntoIter>>
where
    I: IntoIterator<Item = PathBuf>,
{
    crate::setting::check_probability("threshold", threshold)?;
    crate::inference::BATCH_SIZE.check(model.batch_size)?;
    Ok(Predictions {
        model,
        threshold,
        inputs: inputs.into_iter(),
        pending: VecDeque::new(),
        ready: VecDeque::new(),
        failed: false,
    })
}

/// The iterator [`predict`] returns.
pub struct Predictions<'m, I> {
    model: &'m Model,
    threshold: f64,
    inputs: I,
    /// Instances read but not yet run.
    pending: VecDeque<Instance>,
    ready: VecDeque<Prediction>,
    failed: bool,
}

struct Instance {
    input: PathBuf,
    index: usize,
    image: Tensor,
    notes: Vec<String>,
}

impl<I: Iterator<Item = PathBuf>> Iterator for Predictions<'_, I> {
    type Item = Result<Prediction>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Some(Ok(p));
            }
            if self.failed {
                return None;
            }
            let step = self.read_batch().and_then(|()| self.run_batch());
            if let Err(e) = step {
                self.failed = true;
                return Some(Err(e));
            }
            if self.ready.is_empty() && self.pending.is_empty() {
                return None;
            }
        }
    }
}

impl<I: Iterator<Item = PathBuf>> Predictions<'_, I> {
    /// Reads inputs until a batch is full or the shape changes.
    fn read_batch(&mut self) -> Result<()> {
        while self.pending.len() < self.model.batch_size {
            let Some(path) = self.inputs.next() else {
                break;
            };
            let input = Input::read(&path)?;
            let mut notes = input.notes.clone();
            for inst in input.instances(self.model.im_size.get())? {
                self.pending.push_back(Instance {
                    input: path.clone(),
                    index: inst.index,
                    image: inst.tensor,
                    notes: std::mem::take(&mut notes),
                });
            }
            let shape_changed = match (self.pending.front(), self.pending.back()) {
                (Some(a), Some(b)) => a.image.size() != b.image.size(),
                _ => false,
            };
            if shape_changed {
                break;
            }
        }
        Ok(())
    }

    /// Runs the leading instances of one shape (at most a batch) through the network.
    fn run_batch(&mut self) -> Result<()> {
        let Some(first) = self.pending.front() else {
            return Ok(());
        };
        let shape = first.image.size();
        let n = self
            .pending
            .iter()
            .take(self.model.batch_size)
            .take_while(|i| i.image.size() == shape)
            .count();
        let batch: Vec<Instance> = self.pending.drain(..n).collect();
        let images = Tensor::stack(&batch.iter().map(|i| &i.image).collect::<Vec<_>>(), 0);
        model::check_input(&images).map_err(|e| anyhow!("{}: {e}", batch[0].input.display()))?;
        let out = tch::no_grad(|| {
            self.model
                .loaded
                .net
                .forward_t(&images.to_device(self.model.device), false)
        });
        let logits = Vec::<f64>::try_from(out.logits.to_kind(Kind::Double).flatten(0, -1))?;
        let probs = Vec::<f64>::try_from(out.flare_prob().to_kind(Kind::Double))?;
        for (k, inst) in batch.into_iter().enumerate() {
            if !probs[k].is_finite() {
                bail!(
                    "{}: the model gives P(FL) = {} for this input",
                    inst.input.display(),
                    probs[k]
                );
            }
            self.ready.push_back(Prediction {
                input: inst.input,
                index: inst.index,
                flare_prob: probs[k],
                calibrated_prob: self
                    .model
                    .loaded
                    .meta
                    .calibration
                    .as_ref()
                    .map(|c| c.apply(probs[k])),
                logits: [logits[2 * k], logits[2 * k + 1]],
                flare: probs[k] >= self.threshold,
                notes: inst.notes,
            });
        }
        Ok(())
    }
}
