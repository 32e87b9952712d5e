//! Several checkpoints forecasting together: each member keeps the architecture and the
//! input size its checkpoint says, sees the same training-like image resized to that
//! size, and the forecast is the mean of their probabilities.

use super::record::ModelInfo;
use crate::im_size::ImSize;
use crate::inference::Settings;
use crate::model::{self, LoadedModel};
use crate::preprocess::Input;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// One loaded checkpoint.
pub struct Member {
    pub info: ModelInfo,
    pub model: LoadedModel,
}

/// The loaded ensemble (at least one member), on one device.
pub struct Ensemble {
    pub members: Vec<Member>,
    pub device: Device,
}

/// `platt, fitted on fold2_res.csv (124 instances, 31 flaring)`.
pub fn describe_calibration(c: &crate::calibration::Calibration) -> String {
    format!(
        "{}, fitted on {} ({} instances, {} flaring)",
        c.method(),
        c.fitted_on,
        c.instances,
        c.events
    )
}

/// SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

impl Ensemble {
    /// Loads every checkpoint (PyTorch `.pth`/`.pt`, including the paper's published
    /// fold checkpoints, or flarecast `.safetensors`) to run under `run` (float32 by
    /// default, as every command runs a model). Each member keeps its own input size
    /// unless `run` sets one for all.
    pub fn load(paths: &[PathBuf], run: &Settings) -> Result<Ensemble> {
        if paths.is_empty() {
            return Err(crate::setting::bad("model", "no model given"));
        }
        let mut members = Vec::with_capacity(paths.len());
        let mut device = Device::Cpu;
        for path in paths {
            let m = run.load(path)?;
            device = m.device;
            let info = ModelInfo {
                path: path.display().to_string(),
                sha256: sha256_file(path)?,
                architecture: m.loaded.net.arch().name().to_string(),
                im_size: m.im_size.into(),
                calibration: m.loaded.meta.calibration.as_ref().map(describe_calibration),
            };
            members.push(Member {
                info,
                model: m.loaded,
            });
        }
        let calibrated = members
            .iter()
            .filter(|m| m.model.meta.calibration.is_some());
        let calibrated = calibrated.count();
        if calibrated > 0 && calibrated < members.len() {
            let plain: Vec<&str> = members
                .iter()
                .filter(|m| m.model.meta.calibration.is_none())
                .map(|m| m.info.path.as_str())
                .collect();
            bail!(
                "{calibrated} of the {} models carry a calibration but {} do not: calibrate \
                 every member (flarecast calibrate) or none",
                members.len(),
                plain.join(", ")
            );
        }
        Ok(Ensemble { members, device })
    }

    /// Whether the members' probabilities are calibrated (all of them, or none is).
    pub fn calibrated(&self) -> bool {
        self.members
            .iter()
            .all(|m| m.model.meta.calibration.is_some())
    }

    /// Each member's calibrated probability from its raw one (None when uncalibrated).
    pub fn calibrate(&self, raw: &[f64]) -> Option<Vec<f64>> {
        self.members
            .iter()
            .zip(raw)
            .map(|(m, &p)| m.model.meta.calibration.as_ref().map(|c| c.apply(p)))
            .collect()
    }

    pub fn infos(&self) -> Vec<ModelInfo> {
        self.members.iter().map(|m| m.info.clone()).collect()
    }

    /// Each member's P(flare) for one input (a training image, resized for each member
    /// to its size, or one preprocessed array), in member order.
    pub fn predict(&self, input: &Input) -> Result<Vec<f64>> {
        let mut probs = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let x = member_input(input, m.info.im_size)?.to_device(self.device);
            let p = tch::no_grad(|| m.model.net.forward_t(&x, false).flare_prob());
            let p = p.to_kind(Kind::Double).double_value(&[0]);
            if !p.is_finite() {
                bail!("{}: the model gave a non-finite probability", m.info.path);
            }
            probs.push(p);
        }
        Ok(probs)
    }
}

/// The `[1, 1, H, W]` input a member of input size `im_size` sees: the reference's
/// `Resize(im_size)` and `ToTensor()` of the image, as every command makes it.
pub fn member_input(input: &Input, im_size: i64) -> Result<Tensor> {
    let x = input
        .single(ImSize::new(im_size)?.get())?
        .tensor
        .unsqueeze(0);
    model::check_input(&x)?;
    Ok(x)
}
