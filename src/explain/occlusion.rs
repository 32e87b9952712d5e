//! Occlusion as captum computes it: a square window slid over the image with a stride
//! (the last window in each direction clipped at the edge), each placement replaced by
//! the baseline; a pixel's attribution is the mean drop of the target logit over the
//! placements that covered it.

use super::target_logit;
use super::Graph;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Window placements along one axis of length `len`: starts 0, stride, ..., as captum's
/// ceil((len - window) / stride) + 1, each [start, min(start + window, len)).
pub fn placements(len: i64, window: i64, stride: i64) -> Result<Vec<(i64, i64)>> {
    if window < 1 || stride < 1 || window > len {
        bail!("occlusion window {window} and stride {stride} do not fit an image side of {len}");
    }
    let count = (len - window + stride - 1) / stride + 1;
    Ok((0..count)
        .map(|i| (i * stride, (i * stride + window).min(len)))
        .collect())
}

/// Occlusion attributions [1, 1, H, W] of the `target` logit for one input [1, 1, H, W]
/// (zeros as the baseline), `batch` occluded copies per forward pass.
pub fn occlusion(
    net: Graph,
    input: &Tensor,
    window: i64,
    stride: i64,
    target: i64,
    batch: usize,
) -> Result<Tensor> {
    let (n, _, h, w) = input.size4()?;
    if n != 1 {
        bail!("occlusion takes one input at a time, got {n}");
    }
    let input = input.to_kind(Kind::Float);
    let mut windows = Vec::new();
    // captum numbers placements with the last axis slowest; the order only changes the
    // summation order.
    for &(x0, x1) in &placements(w, window, stride)? {
        for &(y0, y1) in &placements(h, window, stride)? {
            windows.push((y0, y1, x0, x1));
        }
    }
    tch::no_grad(|| {
        let base = target_logit(net, &input, target).double_value(&[0]);
        let mut total = input.zeros_like();
        let mut weight = input.zeros_like();
        for chunk in windows.chunks(batch.max(1)) {
            let masks: Vec<Tensor> = chunk
                .iter()
                .map(|&(y0, y1, x0, x1)| {
                    let m = input.zeros_like();
                    let _ = m.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0).fill_(1.0);
                    m
                })
                .collect();
            let masks = Tensor::cat(&masks, 0);
            let occluded = &input * (1.0 - &masks);
            let drop = (base - target_logit(net, &occluded, target)).view([-1, 1, 1, 1]);
            total += (&masks * drop).sum_dim_intlist(0, true, Kind::Float);
            weight += masks.sum_dim_intlist(0, true, Kind::Float);
        }
        Ok(total / weight)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_follow_captum() {
        assert_eq!(placements(10, 4, 3).unwrap(), vec![(0, 4), (3, 7), (6, 10)]);
        // (10 - 4) / 4 rounds up: a third window clipped at the edge.
        assert_eq!(placements(10, 4, 4).unwrap(), vec![(0, 4), (4, 8), (8, 10)]);
        assert!(placements(10, 11, 1).is_err());
    }
}
