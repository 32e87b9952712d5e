//! The training augmentations on batched image tensors `[N, 1, H, W]` (any dtype, any
//! device), giving exactly the pixels of the 8-bit image versions in
//! [`crate::preprocess::augment`] (Pillow's flips and nearest rotation), so batches built
//! on the GPU match batches built by the CPU workers.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::balance::Augment;
use crate::preprocess::augment::{fixed_point, pil_rotate_matrix, rotation_kind, RotationKind};

/// Mirror left-right.
pub fn hflip(t: &Tensor) -> Tensor {
    t.flip([-1])
}

/// Mirror top-bottom.
pub fn vflip(t: &Tensor) -> Tensor {
    t.flip([-2])
}

/// Rotates image `i` of `t` ([N, 1, H, W]) counter-clockwise by `angles[i]` degrees,
/// nearest neighbour, fill 0, as Pillow's `rotate` (an index gather with the same 16.16
/// fixed-point source coordinates).
pub fn rotate_nearest(t: &Tensor, angles: &[f64]) -> Result<Tensor> {
    let size = t.size();
    let [n, c, h, w] = size[..] else {
        bail!("rotate_nearest expects [N, 1, H, W], got {size:?}");
    };
    if c != 1 || n as usize != angles.len() {
        bail!(
            "rotate_nearest expects [N, 1, H, W] with one angle per image, got {size:?} and {} angles",
            angles.len()
        );
    }
    let mut out = t.copy();
    let mut general: Vec<(i64, [i32; 6])> = Vec::new();
    for (i, &angle) in angles.iter().enumerate() {
        let i = i as i64;
        let img = t.get(i);
        match rotation_kind(angle, w as u32, h as u32) {
            RotationKind::Identity => {}
            RotationKind::Half => out.get(i).copy_(&img.flip([-2, -1])),
            RotationKind::Quarter => out.get(i).copy_(&img.rot90(1, [-2, -1])),
            RotationKind::ThreeQuarter => out.get(i).copy_(&img.rot90(-1, [-2, -1])),
            RotationKind::General => {
                let a = pil_rotate_matrix(angle.rem_euclid(360.0), w as u32, h as u32);
                let Some(fixed) = fixed_point(&a, w as u32, h as u32) else {
                    bail!("image {w}x{h} is too large to rotate");
                };
                general.push((i, fixed));
            }
        }
    }
    if general.is_empty() {
        return Ok(out);
    }
    let device = t.device();
    let rows: Vec<i64> = general.iter().map(|g| g.0).collect();
    let coeffs: Vec<i64> = general.iter().flat_map(|g| g.1.map(i64::from)).collect();
    let r = rows.len() as i64;
    let rows = Tensor::from_slice(&rows).to_device(device);
    let k = Tensor::from_slice(&coeffs).view([r, 6]).to_device(device);
    let coef = |j: i64| k.select(1, j).view([r, 1, 1]);
    let opts = (Kind::Int64, device);
    let xs = Tensor::arange(w, opts).view([1, 1, w]);
    let ys = Tensor::arange(h, opts).view([1, h, 1]);
    // Pillow steps xx by a0 along a row and the row start by a1; the sums are exact.
    let xx = coef(2) + &ys * coef(1) + &xs * coef(0);
    let yy = coef(5) + &ys * coef(4) + &xs * coef(3);
    let xin = xx.bitwise_right_shift_tensor_scalar(16);
    let yin = yy.bitwise_right_shift_tensor_scalar(16);
    let valid = xin
        .ge(0)
        .logical_and(&xin.lt(w))
        .logical_and(&yin.ge(0))
        .logical_and(&yin.lt(h));
    let flat = (yin.clamp(0, h - 1) * w + xin.clamp(0, w - 1)).view([r, h * w]);
    let src = t.index_select(0, &rows).view([r, h * w]);
    let picked = src.gather(1, &flat, false).view([r, 1, h, w]);
    let zero = Tensor::zeros([1], (t.kind(), device));
    let rotated = picked.where_self(&valid.view([r, 1, h, w]), &zero);
    out = out.index_copy(0, &rows, &rotated);
    Ok(out)
}

/// Applies `augments[i]` to image `i` of `t` ([N, 1, H, W]); `angles[i]` is the rotation
/// angle used where `augments[i]` is [`Augment::RandomRotation`].
pub fn apply(t: &Tensor, augments: &[Augment], angles: &[f64]) -> Result<Tensor> {
    let n = t.size().first().copied().unwrap_or(0) as usize;
    if augments.len() != n || angles.len() != n {
        bail!(
            "apply: {n} images, {} augments, {} angles",
            augments.len(),
            angles.len()
        );
    }
    let device = t.device();
    let rows_of = |want: Augment| -> Vec<i64> {
        (0..n)
            .filter(|&i| augments[i] == want)
            .map(|i| i as i64)
            .collect()
    };
    // index_copy returns new tensors, so `t` itself is never modified.
    let mut out = t.shallow_clone();
    for (want, f) in [
        (Augment::HFlip, hflip as fn(&Tensor) -> Tensor),
        (Augment::VFlip, vflip),
    ] {
        let rows = rows_of(want);
        if rows.is_empty() {
            continue;
        }
        let idx = Tensor::from_slice(&rows).to_device(device);
        let flipped = f(&out.index_select(0, &idx));
        out = out.index_copy(0, &idx, &flipped);
    }
    let rows = rows_of(Augment::RandomRotation);
    if !rows.is_empty() {
        let idx = Tensor::from_slice(&rows).to_device(device);
        let sub_angles: Vec<f64> = rows.iter().map(|&i| angles[i as usize]).collect();
        let rotated = rotate_nearest(&out.index_select(0, &idx), &sub_angles)?;
        out = out.index_copy(0, &idx, &rotated);
    }
    Ok(out)
}
