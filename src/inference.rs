//! How every command runs a trained network: one set of settings (device, precision,
//! batch size, input size) with one set of defaults and checks, and the model they load.
//! By default a network runs in float32, as the reference does, so every command gives
//! the reference's probability; bf16 (or `auto`) is a choice a user makes.

use crate::bounded::Count;
use crate::device::{self, PrecisionChoice};
use crate::im_size::ImSize;
use crate::model::{self, Compute, LoadedModel, Precision};
use crate::setting;
use anyhow::Result;
use std::path::Path;
use tch::Device;

/// Instances per forward pass unless told otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 16;

/// Instances per forward pass a setting may give: 65536 at the smallest side is 9 GiB of
/// input alone.
pub const BATCH_SIZE: Count<usize> = Count::new("batch_size", "batch size", 1, 65_536);

/// The settings every model-running command shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
    pub device: String,
    pub precision: PrecisionChoice,
    /// Instances per forward pass (at least 1).
    pub batch_size: usize,
    /// Side inputs are resized to; `None`: the size the model was trained at.
    pub im_size: Option<ImSize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            device: "auto".into(),
            precision: PrecisionChoice::Fixed(Precision::F32),
            batch_size: DEFAULT_BATCH_SIZE,
            im_size: None,
        }
    }
}

/// A model loaded to run under [`Settings`].
pub struct Model {
    pub loaded: LoadedModel,
    pub device: Device,
    /// Side inputs are resized to.
    pub im_size: ImSize,
    /// The precision it runs at and why.
    pub precision: device::Chosen,
    pub batch_size: usize,
}

impl Settings {
    /// Refuses what no run can use, naming the setting and the value.
    pub fn check(&self) -> Result<()> {
        BATCH_SIZE.check(self.batch_size)?;
        Ok(())
    }

    /// The device these settings name.
    pub fn device(&self) -> Result<Device> {
        device::parse_device(&self.device).map_err(|e| setting::bad("device", e.to_string()))
    }

    /// The side inputs of a model trained at `trained` are resized to.
    pub fn im_size_for(&self, trained: i64) -> Result<ImSize> {
        match self.im_size {
            Some(s) => Ok(s),
            None => ImSize::new(trained),
        }
    }

    /// Loads the weights at `path` on the device, to compute at the chosen precision.
    pub fn load(&self, path: &Path) -> Result<Model> {
        self.check()?;
        let device = self.device()?;
        let mut loaded = model::load_model(path, device)?;
        let precision = device::choose_precision(self.precision, device);
        let compute = Compute::for_device(device, precision.precision, loaded.net.arch());
        loaded.net.set_compute(compute);
        let im_size = self
            .im_size_for(loaded.meta.im_size)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Model {
            loaded,
            device,
            im_size,
            precision,
            batch_size: self.batch_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_float32_and_bad_values_name_their_setting() {
        let s = Settings::default();
        assert_eq!(s.precision, PrecisionChoice::Fixed(Precision::F32));
        assert_eq!(s.batch_size, DEFAULT_BATCH_SIZE);
        assert!(s.check().is_ok());
        let zero = Settings {
            batch_size: 0,
            ..Settings::default()
        };
        let err = zero.check().unwrap_err();
        assert_eq!(setting::find(&err).map(|b| b.setting), Some("batch_size"));
        assert_eq!(err.to_string(), "batch size 0 is outside 1..=65536");
        let tpu = Settings {
            device: "tpu".into(),
            ..Settings::default()
        };
        let err = tpu.device().unwrap_err();
        assert_eq!(setting::find(&err).map(|b| b.setting), Some("device"));
    }
}
