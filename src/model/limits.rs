//! The input batches the network can run (the side's range is `ImSize`'s).

use crate::im_size::ImSize;
use anyhow::{bail, Result};
use tch::Tensor;

/// Checks that an input batch is [N,1,H,W] with H, W at least the smallest side.
pub fn check_input(xs: &Tensor) -> Result<()> {
    let s = xs.size();
    if s.len() != 4 || s[1] != 1 {
        bail!("model input must be [N,1,H,W], got {s:?}");
    }
    let min = ImSize::MIN as i64;
    if s[2] < min || s[3] < min {
        bail!(
            "model input {}x{} is smaller than the minimum {min}x{min}",
            s[2],
            s[3]
        );
    }
    Ok(())
}
