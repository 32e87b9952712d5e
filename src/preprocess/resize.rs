//! Pillow's `Image.resize(size, BILINEAR)` for 8-bit single-band images, bit for bit.
//!
//! Pillow resamples separably (horizontal pass, then vertical), with a triangle filter
//! whose support grows with the downscale factor (that is the antialiasing), integer
//! coefficients with 22 fractional bits, and an 8-bit clip between the passes.

use image::GrayImage;

/// Fractional bits of the fixed-point coefficients (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The triangle ("bilinear") filter; support 1.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Per output pixel: the first input pixel, how many are used, and their fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the full box.
fn precompute(in_size: u32, out_size: u32) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // triangle support 1.0 times the scale
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let xmax = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = triangle((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for x in 0..xmax {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let scaled = w * (1u32 << PRECISION_BITS) as f64;
            row[x] = if w < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        bounds.push((xmin as usize, xmax));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

/// Pillow's `clip8`: drop the fractional bits, clamp to 0..=255.
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples `img` to exactly `out_w` x `out_h` as Pillow's BILINEAR resize does.
pub fn resize_exact_like_pil(img: &GrayImage, out_w: u32, out_h: u32) -> GrayImage {
    let (in_w, in_h) = img.dimensions();
    if out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return GrayImage::new(out_w, out_h);
    }
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    if !need_h && !need_v {
        return img.clone();
    }
    let vert = precompute(in_h, out_h);
    let half = 1i32 << (PRECISION_BITS - 1);

    // Horizontal pass over only the rows the vertical pass reads.
    let (src, src_w, row0) = if need_h {
        let horiz = precompute(in_w, out_w);
        let first = vert.bounds[0].0;
        let (lmin, lcnt) = vert.bounds[out_h as usize - 1];
        let last = lmin + lcnt;
        let rows = last - first;
        let input = img.as_raw();
        let mut tmp = vec![0u8; rows * out_w as usize];
        for (r, out_row) in tmp.chunks_exact_mut(out_w as usize).enumerate() {
            let in_row = &input[(r + first) * in_w as usize..(r + first + 1) * in_w as usize];
            for (xx, o) in out_row.iter_mut().enumerate() {
                let (xmin, xcnt) = horiz.bounds[xx];
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + xcnt];
                let mut ss = half;
                for (p, w) in in_row[xmin..xmin + xcnt].iter().zip(k) {
                    ss += *p as i32 * w;
                }
                *o = clip8(ss);
            }
        }
        (tmp, out_w as usize, first)
    } else {
        (img.as_raw().clone(), in_w as usize, 0)
    };

    if !need_v {
        return GrayImage::from_raw(out_w, out_h, src).expect("buffer sized for the image");
    }
    let mut out = vec![0u8; out_w as usize * out_h as usize];
    for (yy, out_row) in out.chunks_exact_mut(src_w).enumerate() {
        let (ymin, ycnt) = vert.bounds[yy];
        let ymin = ymin - row0;
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + ycnt];
        for (xx, o) in out_row.iter_mut().enumerate() {
            let mut ss = half;
            for (y, w) in k.iter().enumerate() {
                ss += src[(ymin + y) * src_w + xx] as i32 * w;
            }
            *o = clip8(ss);
        }
    }
    GrayImage::from_raw(out_w, out_h, out).expect("buffer sized for the image")
}

/// torchvision's `Resize(size)` with an int: the shorter side becomes `size`, the longer
/// one `int(size * long / short)`, keeping the aspect ratio.
pub fn resized_dims(w: u32, h: u32, size: u32) -> (u32, u32) {
    if w == 0 || h == 0 {
        return (w, h);
    }
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((size as u64 * long as u64) as f64 / short as f64) as u32;
    if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision `Resize(size)` on a PIL image in mode L: shorter side to `size`, Pillow's
/// antialiased BILINEAR filter.
pub fn resize_like_pil(img: &GrayImage, size: u32) -> GrayImage {
    let (w, h) = resized_dims(img.width(), img.height(), size);
    resize_exact_like_pil(img, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_stays_constant() {
        let img = GrayImage::from_pixel(512, 300, image::Luma([77]));
        let out = resize_like_pil(&img, 256);
        assert_eq!(out.dimensions(), (436, 256));
        assert!(out.pixels().all(|p| p.0[0] == 77));
    }

    #[test]
    fn halving_averages_neighbours() {
        // 4 -> 2: scale 2, support 2; centre 1.0 reads pixels 0..3 with weights
        // 0.75/0.75/0.25 (normalised), so [0, 100, 200, 40] -> row values Pillow gives.
        let img = GrayImage::from_raw(4, 1, vec![0, 100, 200, 40]).unwrap();
        let out = resize_exact_like_pil(&img, 2, 1);
        // (0*0.75 + 100*0.75 + 200*0.25) / 1.75 = 71.4; (100*0.25 + 200*0.75 + 40*0.75) / 1.75 = 117.1
        assert_eq!(out.into_raw(), vec![71, 117]);
    }

    #[test]
    fn upscaling_interpolates_between_centres() {
        // 2 -> 4: output centres at input 0.25, 0.75, 1.25, 1.75; the outer ones see one
        // pixel, the inner ones 0.75/0.25 mixes (63.75 rounds up in fixed point).
        let img = GrayImage::from_raw(2, 1, vec![0, 255]).unwrap();
        assert_eq!(
            resize_exact_like_pil(&img, 4, 1).into_raw(),
            vec![0, 64, 191, 255]
        );
        let tall = GrayImage::from_raw(1, 2, vec![0, 255]).unwrap();
        assert_eq!(
            resize_exact_like_pil(&tall, 1, 4).into_raw(),
            vec![0, 64, 191, 255]
        );
    }

    #[test]
    fn torchvision_output_sizes() {
        assert_eq!(resized_dims(512, 512, 256), (256, 256));
        assert_eq!(resized_dims(176, 196, 256), (256, 285));
        assert_eq!(resized_dims(196, 176, 256), (285, 256));
    }
}
