//! The input sizes the network can run.

use anyhow::{bail, Result};
use tch::Tensor;

/// Smallest input side the network accepts: below 192 the 3x3/stride-3 block and the
/// 2x2/stride-2 dense layer leave nothing to convolve.
pub const MIN_IM_SIZE: i64 = 192;

/// Largest input side accepted: twice the paper's largest (512). The attention network
/// holds 64 float32 channels at full resolution, 1 GiB per image at this size already.
pub const MAX_IM_SIZE: i64 = 2048;

/// Refuses an image side outside what the network can run.
pub fn check_im_size(size: i64) -> Result<()> {
    if !(MIN_IM_SIZE..=MAX_IM_SIZE).contains(&size) {
        bail!("image size {size} is outside {MIN_IM_SIZE}..={MAX_IM_SIZE}");
    }
    Ok(())
}

/// Checks that an input batch is [N,1,H,W] with H, W >= 192.
pub fn check_input(xs: &Tensor) -> Result<()> {
    let s = xs.size();
    if s.len() != 4 || s[1] != 1 {
        bail!("model input must be [N,1,H,W], got {s:?}");
    }
    if s[2] < MIN_IM_SIZE || s[3] < MIN_IM_SIZE {
        bail!(
            "model input {}x{} is smaller than the minimum {MIN_IM_SIZE}x{MIN_IM_SIZE}",
            s[2],
            s[3]
        );
    }
    Ok(())
}
