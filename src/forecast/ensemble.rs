//! Several checkpoints forecasting together: each member keeps the architecture and the
//! input size its checkpoint says, sees the same training-like image resized to that
//! size, and the forecast is the mean of their probabilities.

use super::record::ModelInfo;
use crate::model::{self, Compute, LoadedModel, Precision};
use anyhow::{bail, Context, Result};
use image::GrayImage;
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

/// SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

impl Ensemble {
    /// Loads every checkpoint (PyTorch `.pth`/`.pt`, including the paper's published
    /// fold checkpoints, or flarecast `.safetensors`) for float32 inference on `device`.
    pub fn load(paths: &[PathBuf], device: Device) -> Result<Ensemble> {
        if paths.is_empty() {
            bail!("no model given");
        }
        let mut members = Vec::with_capacity(paths.len());
        for path in paths {
            let mut loaded = model::load_model(path, device)?;
            loaded
                .net
                .set_compute(Compute::for_device(device, Precision::F32));
            if loaded.meta.im_size < model::MIN_IM_SIZE {
                bail!(
                    "{}: input size {} is below the network's minimum of {}",
                    path.display(),
                    loaded.meta.im_size,
                    model::MIN_IM_SIZE
                );
            }
            let info = ModelInfo {
                path: path.display().to_string(),
                sha256: sha256_file(path)?,
                architecture: loaded.net.arch().name().to_string(),
                im_size: loaded.meta.im_size,
            };
            members.push(Member {
                info,
                model: loaded,
            });
        }
        Ok(Ensemble { members, device })
    }

    pub fn infos(&self) -> Vec<ModelInfo> {
        self.members.iter().map(|m| m.info.clone()).collect()
    }

    /// Each member's P(flare) for one magnetogram as a training image (8-bit grey,
    /// before the model's resize), in member order.
    pub fn predict(&self, image: &GrayImage) -> Result<Vec<f64>> {
        let mut probs = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let x = member_input(image, m.info.im_size)?.to_device(self.device);
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
/// `Resize(im_size)` and `ToTensor()`, as `predict` does.
pub fn member_input(image: &GrayImage, im_size: i64) -> Result<Tensor> {
    if image.width() == 0 || image.height() == 0 {
        bail!("the image has no pixels");
    }
    let resized = crate::preprocess::resize_like_pil(image, im_size as u32);
    let x = crate::preprocess::to_tensor(&resized).unsqueeze(0);
    model::check_input(&x)?;
    Ok(x)
}
