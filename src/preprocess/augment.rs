//! The training augmentations on 8-bit images, with torchvision-on-PIL semantics:
//! `F.hflip`, `F.vflip` and `F.rotate(angle, NEAREST, fill=0)`, which is Pillow's
//! `Image.rotate` (counter-clockwise, about (w/2, h/2), same size).

use image::GrayImage;

/// Mirror left-right (`F.hflip`).
pub fn hflip(img: &GrayImage) -> GrayImage {
    image::imageops::flip_horizontal(img)
}

/// Mirror top-bottom (`F.vflip`).
pub fn vflip(img: &GrayImage) -> GrayImage {
    image::imageops::flip_vertical(img)
}

/// Python's `round(x, 15)`: round to 15 decimals through the shortest exact decimal.
fn round15(x: f64) -> f64 {
    format!("{x:.15}").parse().unwrap_or(x)
}

/// The inverse affine map Pillow's `Image.rotate(angle)` hands to `Image.transform`:
/// output pixel (x, y) samples input (a0 x + a1 y + a2, a3 x + a4 y + a5).
pub fn pil_rotate_matrix(angle_deg: f64, w: u32, h: u32) -> [f64; 6] {
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let angle = -angle_deg.to_radians();
    let (c, s) = (round15(angle.cos()), round15(angle.sin()));
    let mut m = [c, s, 0.0, round15(-angle.sin()), c, 0.0];
    let (x, y) = (-cx, -cy);
    m[2] = m[0] * x + m[1] * y + 0.0;
    m[5] = m[3] * x + m[4] * y + 0.0;
    m[2] += cx;
    m[5] += cy;
    m
}

/// Pillow's 16.16 fixed-point form of an affine map, with the half-pixel offset folded
/// into the start values: `[a0, a1, a2, a3, a4, a5]` such that output pixel (x, y) reads
/// input `((a2 + x a0 + y a1) >> 16, (a5 + x a3 + y a4) >> 16)`. `None` when a corner
/// falls outside the fixed-point range (Pillow then uses floating point).
pub fn fixed_point(a: &[f64; 6], w: u32, h: u32) -> Option<[i32; 6]> {
    let fits = |x: f64, y: f64| {
        (x * a[0] + y * a[1] + a[2]).abs() < 32768.0 && (x * a[3] + y * a[4] + a[5]).abs() < 32768.0
    };
    let (wf, hf) = (w as f64, h as f64);
    if !(fits(0.0, 0.0) && fits(wf, hf) && fits(0.0, hf) && fits(wf, 0.0)) {
        return None;
    }
    let fix = |v: f64| (v * 65536.0 + 0.5).floor() as i32;
    Some([
        fix(a[0]),
        fix(a[1]),
        fix(a[2] + a[0] * 0.5 + a[1] * 0.5),
        fix(a[3]),
        fix(a[4]),
        fix(a[5] + a[3] * 0.5 + a[4] * 0.5),
    ])
}

/// How Pillow's `rotate` treats an angle: a plain copy, an exact quarter or half turn, or
/// the general affine resampling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RotationKind {
    Identity,
    /// Counter-clockwise quarter turn (square images only).
    Quarter,
    Half,
    /// Clockwise quarter turn (square images only).
    ThreeQuarter,
    General,
}

/// Which path Pillow's `rotate(angle)` takes for a `w` x `h` image.
pub fn rotation_kind(angle_deg: f64, w: u32, h: u32) -> RotationKind {
    let angle = angle_deg.rem_euclid(360.0);
    if angle == 0.0 {
        RotationKind::Identity
    } else if angle == 180.0 {
        RotationKind::Half
    } else if w == h && angle == 90.0 {
        RotationKind::Quarter
    } else if w == h && angle == 270.0 {
        RotationKind::ThreeQuarter
    } else {
        RotationKind::General
    }
}

/// Rotate counter-clockwise by `angle_deg` about the centre, nearest neighbour, fill 0,
/// keeping the size: Pillow's `Image.rotate(angle, NEAREST)` bit for bit (its 90/180/270
/// shortcuts and its 16.16 fixed-point affine loop).
pub fn rotate_nearest(img: &GrayImage, angle_deg: f64) -> GrayImage {
    let (w, h) = img.dimensions();
    let angle = angle_deg.rem_euclid(360.0);
    match rotation_kind(angle, w, h) {
        RotationKind::Identity => return img.clone(),
        RotationKind::Half => return image::imageops::rotate180(img),
        // image's rotate90/rotate270 turn clockwise.
        RotationKind::Quarter => return image::imageops::rotate270(img),
        RotationKind::ThreeQuarter => return image::imageops::rotate90(img),
        RotationKind::General => {}
    }
    let a = pil_rotate_matrix(angle, w, h);
    let mut out = GrayImage::new(w, h);
    if w == 0 || h == 0 {
        return out;
    }
    let src = img.as_raw();
    let dst: &mut [u8] = &mut out;
    if let Some([a0, a1, mut a2, a3, a4, mut a5]) = fixed_point(&a, w, h) {
        for row in dst.chunks_exact_mut(w as usize) {
            let (mut xx, mut yy) = (a2, a5);
            for o in row.iter_mut() {
                let (xin, yin) = (xx >> 16, yy >> 16);
                if xin >= 0 && xin < w as i32 && yin >= 0 && yin < h as i32 {
                    *o = src[yin as usize * w as usize + xin as usize];
                }
                xx = xx.wrapping_add(a0);
                yy = yy.wrapping_add(a3);
            }
            a2 = a2.wrapping_add(a1);
            a5 = a5.wrapping_add(a4);
        }
    } else {
        // Pillow's floating-point fallback for huge images.
        let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
        let mut xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
        let mut yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
        for row in dst.chunks_exact_mut(w as usize) {
            let (mut xx, mut yy) = (xo, yo);
            for o in row.iter_mut() {
                let (xin, yin) = (coord(xx), coord(yy));
                if xin >= 0 && xin < w as i64 && yin >= 0 && yin < h as i64 {
                    *o = src[yin as usize * w as usize + xin as usize];
                }
                xx += a[0];
                yy += a[3];
            }
            xo += a[1];
            yo += a[4];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 7 + y * 13) as u8]))
    }

    #[test]
    fn flips_mirror() {
        let img = ramp(5, 3);
        assert_eq!(hflip(&img).get_pixel(0, 1), img.get_pixel(4, 1));
        assert_eq!(vflip(&img).get_pixel(3, 0), img.get_pixel(3, 2));
    }

    #[test]
    fn quarter_turn_is_counter_clockwise() {
        let img = ramp(4, 4);
        let r = rotate_nearest(&img, 90.0);
        // CCW: the top-right corner moves to the top-left.
        assert_eq!(r.get_pixel(0, 0), img.get_pixel(3, 0));
        // The general path agrees with the shortcut away from the centre.
        let near = rotate_nearest(&img, 90.0 + 1e-9);
        assert_eq!(near.as_raw(), r.as_raw());
    }

    #[test]
    fn small_rotation_fills_corners_with_zero() {
        let img = GrayImage::from_pixel(64, 64, image::Luma([200]));
        let r = rotate_nearest(&img, 5.0);
        assert_eq!(r.get_pixel(0, 0).0[0], 0);
        assert_eq!(r.get_pixel(32, 32).0[0], 200);
        let r = rotate_nearest(&img, -5.0);
        assert_eq!(r.get_pixel(63, 63).0[0], 0);
        assert_eq!(rotate_nearest(&img, 360.0).as_raw(), img.as_raw());
    }
}
