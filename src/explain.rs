//! Interpretation: the attention net's compatibility maps as overlays (the paper's
//! figures), and Grad-CAM for the standard CNN so every model can be explained.
//!
//! Attention overlay of estimator k: softmax of c_k over positions, bilinear upsampling
//! (align_corners) by 4, 8 or 16 to the input size, min-max normalisation to [0, 1], the
//! JET colour map, and 0.7 * image + 0.3 * heatmap.

use crate::model::AttnNet;
use anyhow::{bail, Result};
use image::{GrayImage, Rgb, RgbImage};
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
pub fn attention_maps(net: &AttnNet, input: &Tensor) -> Result<[Tensor; 3]> {
    let out = tch::no_grad(|| net.forward_t(input, false));
    match out.maps {
        Some(maps) => Ok(maps),
        None => bail!("the standard CNN has no attention maps (use Grad-CAM)"),
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

/// Min-max normalisation to [0, 1] (a constant map becomes 0).
pub fn normalise(t: &Tensor) -> Tensor {
    let (lo, hi) = (t.min(), t.max());
    let range = (&hi - &lo).double_value(&[]);
    if range > 0.0 {
        (t - lo) / range
    } else {
        t.zeros_like()
    }
}

/// Grad-CAM of the FL logit on conv_block5 (`block` 5, 16x16 at 256) or conv_block6 (6,
/// 2x2): channel weights = spatially averaged gradients, ReLU of the weighted sum,
/// bilinear upsampling to the input size, min-max normalisation. Returns [H, W]. Where no
/// position has positive evidence (the ReLU leaves nothing), the weighted sum itself is
/// normalised, so the map still ranks positions instead of going blank.
pub fn gradcam(net: &AttnNet, input: &Tensor, block: usize) -> Result<Tensor> {
    let (_, _, h, w) = input.size4()?;
    // The reference path keeps conv_block5's full-resolution output.
    let out = net.forward_reference(input, false);
    let feats = match block {
        5 => out
            .l3
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("conv_block5 output missing"))?,
        6 => &out.features,
        other => bail!("Grad-CAM block must be 5 or 6, got {other}"),
    };
    let score = out.logits.select(1, 1).sum(Kind::Float);
    let grads = Tensor::run_backward(&[&score], &[feats], false, false);
    let weights = grads[0].mean_dim(&[2i64, 3][..], true, Kind::Float);
    let weighted =
        (feats.detach().to_kind(Kind::Float) * weights).sum_dim_intlist(1, true, Kind::Float);
    let relu = weighted.relu();
    let cam = if relu.max().double_value(&[]) > 0.0 {
        relu
    } else {
        weighted
    };
    let up = cam.upsample_bilinear2d([h, w], true, None, None);
    Ok(normalise(&up.view([h, w])))
}

/// The JET colour map at v in [0, 1] (blue -> cyan -> yellow -> red).
pub fn jet(v: f32) -> [u8; 3] {
    let ch = |x: f32| (1.5 - (4.0 * v - x).abs()).clamp(0.0, 1.0);
    [
        (255.0 * ch(3.0)).round() as u8,
        (255.0 * ch(2.0)).round() as u8,
        (255.0 * ch(1.0)).round() as u8,
    ]
}

/// 0.7 * grey image + 0.3 * JET(heatmap); `heat` is [H, W] in [0, 1] of the image's size.
pub fn overlay(image: &GrayImage, heat: &Tensor) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    if heat.size() != [h as i64, w as i64] {
        bail!("heatmap {:?} does not match the {w}x{h} image", heat.size());
    }
    let values = Vec::<f32>::try_from(heat.to_kind(Kind::Float).contiguous().view([-1]))?;
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let g = image.get_pixel(x, y)[0] as f32;
        let c = jet(values[(y * w + x) as usize]);
        Rgb(c.map(|ch| (0.7 * g + 0.3 * ch as f32).round().clamp(0.0, 255.0) as u8))
    }))
}

/// Images side by side with a 4-pixel white gutter.
pub fn panel(images: &[RgbImage]) -> RgbImage {
    let gap = 4;
    let h = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let w =
        images.iter().map(|i| i.width()).sum::<u32>() + gap * images.len().saturating_sub(1) as u32;
    let mut out = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let mut x0 = 0;
    for img in images {
        image::imageops::replace(&mut out, img, x0 as i64, 0);
        x0 += img.width() + gap;
    }
    out
}

/// The grey image a [1, H, W] or [1, 1, H, W] tensor in [0, 1] shows.
pub fn tensor_to_gray(t: &Tensor) -> Result<GrayImage> {
    let t = t.squeeze();
    let (h, w) = t.size2()?;
    let bytes = Vec::<u8>::try_from(
        (t * 255.0)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .contiguous()
            .view([-1]),
    )?;
    GrayImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| anyhow::anyhow!("image buffer size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_endpoints() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
    }

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
