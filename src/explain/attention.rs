//! The attention network's compatibility maps, as the paper draws them: softmax of c_k
//! over positions, bilinear upsampling (align_corners) by 4, 8 or 16 to the input size,
//! min-max normalisation.

use super::render::normalise;
use crate::model::Network;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Upsampling factor of estimator k (1-based): c1 is at 1/4 of the input, c2 1/8, c3 1/16.
pub fn scale_of(estimator: usize) -> i64 {
    match estimator {
        1 => 4,
        2 => 8,
        _ => 16,
    }
}

/// The three pre-softmax compatibility maps [1, 1, h, w] of one input [1, 1, H, W].
pub fn attention_maps(net: &Network, input: &Tensor) -> Result<[Tensor; 3]> {
    let out = tch::no_grad(|| net.forward_t(input, false));
    match out.maps {
        Some(maps) => Ok(maps),
        None => bail!(
            "{} has no attention maps: use `explain --method gradcam`",
            net.arch()
        ),
    }
}

/// The paper's map recipe on one map c [1, 1, h, w]: softmax over positions, bilinear upsampling
/// (align_corners) by `scale`, min-max normalisation. Returns [h*scale, w*scale] in [0, 1].
pub fn attention_heatmap(c: &Tensor, scale: i64) -> Tensor {
    let (n, _, h, w) = c.size4().expect("a [N,1,h,w] map");
    let a = c
        .to_kind(Kind::Float)
        .view([n, 1, h * w])
        .softmax(2, Kind::Float)
        .view([n, 1, h, w]);
    let up = a.upsample_bilinear2d([h * scale, w * scale], true, None, None);
    normalise(&up.view([h * scale, w * scale]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heatmap_is_upsampled_and_normalised() {
        let c = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0]).view([1, 1, 2, 2]);
        let h = attention_heatmap(&c, 4);
        assert_eq!(h.size(), vec![8, 8]);
        assert_eq!(h.min().double_value(&[]), 0.0);
        assert_eq!(h.max().double_value(&[]), 1.0);
        // align_corners: the corners keep the softmax values' order exactly.
        assert_eq!(h.double_value(&[0, 0]), 0.0);
        assert_eq!(h.double_value(&[7, 7]), 1.0);
    }
}
