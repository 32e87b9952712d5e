//! Resizing an 8-bit grey image the way OpenCV's `cv2.resize(..., INTER_AREA)` does, so a
//! converted archive matches the reference pipeline's images.
//!
//! - Both axes shrink by whole factors: the mean of each block, rounded half to even
//!   (OpenCV's `saturate_cast<uchar>(sum * (1.f / area))`; a 2x2 block rounds half up as
//!   its vectorised path does).
//! - Both axes shrink by other factors: each output pixel is the area-weighted mean of the
//!   source pixels its footprint covers (OpenCV's `computeResizeAreaTab`).
//! - Any axis grows: OpenCV switches to two-tap interpolation with area-style weights
//!   (computed here in floating point: within 1 grey level of OpenCV's fixed point).

use image::GrayImage;

/// One output sample: source indices and their weights.
type Taps = Vec<Vec<(usize, f32)>>;

/// Resizes `img` to `w` x `h` with OpenCV INTER_AREA semantics (see the module notes).
/// A zero target size gives an empty image.
pub fn resize_area(img: &GrayImage, w: u32, h: u32) -> GrayImage {
    let (sw, sh) = img.dimensions();
    if w == 0 || h == 0 || sw == 0 || sh == 0 {
        return GrayImage::new(w, h);
    }
    if (sw, sh) == (w, h) {
        return img.clone();
    }
    let scale_x = sw as f64 / w as f64;
    let scale_y = sh as f64 / h as f64;
    if scale_x >= 1.0 && scale_y >= 1.0 {
        if sw % w == 0 && sh % h == 0 {
            return block_mean(img, sw / w, sh / h);
        }
        let tx = area_taps(sw as usize, w as usize, scale_x);
        let ty = area_taps(sh as usize, h as usize, scale_y);
        return separable(img, w, h, &tx, &ty);
    }
    let tx = linear_area_taps(sw as usize, w as usize, scale_x);
    let ty = linear_area_taps(sh as usize, h as usize, scale_y);
    separable(img, w, h, &tx, &ty)
}

/// Whole-factor shrink: the mean of each `fx` x `fy` block.
fn block_mean(img: &GrayImage, fx: u32, fy: u32) -> GrayImage {
    let (sw, _) = img.dimensions();
    let (w, h) = (img.width() / fx, img.height() / fy);
    let src = img.as_raw();
    let area = fx * fy;
    let mut out = GrayImage::new(w, h);
    let mut sums = vec![0u32; w as usize];
    for oy in 0..h {
        sums.iter_mut().for_each(|s| *s = 0);
        for y in oy * fy..(oy + 1) * fy {
            let row = &src[(y * sw) as usize..((y + 1) * sw) as usize];
            for (s, block) in sums.iter_mut().zip(row.chunks_exact(fx as usize)) {
                *s += block.iter().map(|&v| v as u32).sum::<u32>();
            }
        }
        let dst = &mut out.as_mut()[(oy * w) as usize..((oy + 1) * w) as usize];
        for (d, &s) in dst.iter_mut().zip(&sums) {
            *d = if area == 4 {
                ((s + 2) >> 2) as u8
            } else {
                div_round_half_even(s, area)
            };
        }
    }
    out
}

/// `num / den` rounded to nearest, ties to even (what `cvRound` does on an exact tie).
fn div_round_half_even(num: u32, den: u32) -> u8 {
    let q = num / den;
    let r = num % den;
    let q = match (2 * r).cmp(&den) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    };
    q.min(255) as u8
}

/// OpenCV `computeResizeAreaTab` for one axis (shrinking by a non-integer factor).
fn area_taps(ssize: usize, dsize: usize, scale: f64) -> Taps {
    (0..dsize)
        .map(|dx| {
            let fsx1 = dx as f64 * scale;
            let fsx2 = fsx1 + scale;
            let cell = scale.min(ssize as f64 - fsx1);
            let mut sx2 = (fsx2.floor() as usize).min(ssize - 1);
            let sx1 = (fsx1.ceil() as usize).min(sx2);
            let mut taps = Vec::new();
            if sx1 as f64 - fsx1 > 1e-3 {
                taps.push((sx1 - 1, ((sx1 as f64 - fsx1) / cell) as f32));
            }
            for sx in sx1..sx2 {
                taps.push((sx, (1.0 / cell) as f32));
            }
            if fsx2 - sx2 as f64 > 1e-3 {
                let a = (fsx2 - sx2 as f64).min(1.0).min(cell) / cell;
                taps.push((sx2, a as f32));
            }
            // Guard against an empty footprint at the very edge.
            if taps.is_empty() {
                sx2 = sx2.min(ssize - 1);
                taps.push((sx2, 1.0));
            }
            taps
        })
        .collect()
}

/// OpenCV's INTER_AREA weights when an axis grows: two taps, the fractional part taken
/// from where the source pixel's right edge falls in the destination grid.
fn linear_area_taps(ssize: usize, dsize: usize, scale: f64) -> Taps {
    let inv = 1.0 / scale;
    (0..dsize)
        .map(|dx| {
            let mut sx = (dx as f64 * scale).floor() as i64;
            let mut fx = ((dx + 1) as f64 - (sx + 1) as f64 * inv) as f32;
            fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
            if sx < 0 {
                fx = 0.0;
                sx = 0;
            }
            if sx >= ssize as i64 - 1 {
                fx = 0.0;
                sx = ssize as i64 - 1;
            }
            let sx = sx as usize;
            if fx == 0.0 {
                vec![(sx, 1.0)]
            } else {
                vec![(sx, 1.0 - fx), (sx + 1, fx)]
            }
        })
        .collect()
}

/// Applies per-axis taps: rows first, then columns, in f32 as OpenCV does.
fn separable(img: &GrayImage, w: u32, h: u32, tx: &Taps, ty: &Taps) -> GrayImage {
    let sw = img.width() as usize;
    let src = img.as_raw();
    let mut out = GrayImage::new(w, h);
    let mut acc = vec![0f32; w as usize];
    let mut row_buf = vec![0f32; w as usize];
    for (oy, ytaps) in ty.iter().enumerate() {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for &(sy, beta) in ytaps {
            let row = &src[sy * sw..(sy + 1) * sw];
            for (b, taps) in row_buf.iter_mut().zip(tx) {
                *b = taps.iter().map(|&(sx, a)| row[sx] as f32 * a).sum();
            }
            for (a, &b) in acc.iter_mut().zip(&row_buf) {
                *a += beta * b;
            }
        }
        let dst = &mut out.as_mut()[oy * w as usize..(oy + 1) * w as usize];
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = a.round_ties_even().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32, px: &[u8]) -> GrayImage {
        GrayImage::from_raw(w, h, px.to_vec()).unwrap()
    }

    #[test]
    fn whole_factor_is_block_mean_ties_to_even() {
        // 4x1 -> 1x1 at factor 4 (area 4 uses the round-half-up path): (1+2+2+2)/4 = 1.75.
        let a = img(4, 1, &[1, 2, 2, 2]);
        assert_eq!(resize_area(&a, 1, 1).as_raw(), &[2]);
        // 3x2 blocks (area 6) round exact halves to even: 15/6 = 2.5 -> 2.
        let b = img(3, 2, &[2, 2, 3, 3, 2, 3]);
        assert_eq!(resize_area(&b, 1, 1).as_raw(), &[2]);
        let c = img(3, 2, &[4, 4, 3, 3, 4, 3]); // 21/6 = 3.5 -> 4
        assert_eq!(resize_area(&c, 1, 1).as_raw(), &[4]);
        // 2x2 rounds half up: (1+1+2+2)/4 = 1.5 -> 2.
        let d = img(2, 2, &[1, 1, 2, 2]);
        assert_eq!(resize_area(&d, 1, 1).as_raw(), &[2]);
    }

    #[test]
    fn non_integer_shrink_weights_by_area() {
        // 3 -> 2: out0 = p0 + p1/2 over 1.5, out1 = p1/2 + p2 over 1.5.
        let a = img(3, 1, &[0, 90, 180]);
        assert_eq!(resize_area(&a, 2, 1).as_raw(), &[30, 150]);
        // Constant images stay constant at any ratio.
        let k = GrayImage::from_pixel(37, 23, image::Luma([77]));
        let r = resize_area(&k, 10, 7);
        assert!(r.as_raw().iter().all(|&v| v == 77));
    }

    #[test]
    fn growing_uses_two_taps() {
        // OpenCV: cv2.resize(np.array([[0,100]],np.uint8),(4,1),interpolation=cv2.INTER_AREA)
        // gives [0, 0, 100, 100] (area-mode fractions are 0 on whole-factor growth).
        let a = img(2, 1, &[0, 100]);
        assert_eq!(resize_area(&a, 4, 1).as_raw(), &[0, 0, 100, 100]);
        // 2 -> 3: dx=1 has sx=0, fx = 2 - 1*1.5 = 0.5 -> 50.
        assert_eq!(resize_area(&a, 3, 1).as_raw(), &[0, 50, 100]);
    }

    /// Outputs of `cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA)` (OpenCV 5.0.0)
    /// for `img[y, x] = (37x + 91y + 13xy) % 256`: non-integer shrinks, growth, mixed axes.
    #[test]
    fn matches_opencv_on_awkward_ratios() {
        let cases: [(u32, u32, u32, u32, &[u8]); 8] = [
            (7, 5, 3, 2, &[99, 135, 148, 121, 139, 136]),
            (
                10,
                10,
                4,
                4,
                &[
                    100, 132, 143, 113, 119, 143, 133, 137, 116, 160, 145, 149, 155, 110, 135, 132,
                ],
            ),
            (
                13,
                9,
                5,
                7,
                &[
                    54, 129, 141, 77, 152, 152, 141, 131, 148, 128, 113, 150, 134, 138, 103, 120,
                    140, 130, 131, 129, 109, 163, 126, 154, 109, 129, 168, 172, 155, 139, 177, 121,
                    136, 143, 159,
                ],
            ),
            (
                5,
                3,
                8,
                7,
                &[
                    0, 15, 37, 67, 81, 111, 133, 148, 0, 15, 37, 67, 81, 111, 133, 148, 61, 79,
                    106, 143, 161, 198, 122, 73, 91, 111, 141, 181, 201, 241, 117, 35, 121, 143,
                    175, 151, 155, 199, 129, 83, 182, 207, 245, 91, 65, 115, 153, 178, 182, 207,
                    245, 91, 65, 115, 153, 178,
                ],
            ),
            (
                8,
                8,
                3,
                12,
                &[
                    23, 106, 213, 73, 170, 168, 122, 235, 123, 221, 107, 96, 143, 171, 147, 65,
                    236, 198, 164, 108, 108, 133, 172, 95, 103, 236, 82, 106, 109, 183, 155, 173,
                    170, 205, 237, 157,
                ],
            ),
            (
                9,
                6,
                6,
                4,
                &[
                    44, 99, 140, 138, 150, 91, 171, 136, 148, 169, 97, 175, 74, 124, 173, 109, 158,
                    94, 144, 104, 181, 141, 105, 178,
                ],
            ),
            (
                6,
                6,
                4,
                4,
                &[
                    44, 99, 140, 138, 171, 136, 148, 169, 74, 124, 173, 109, 144, 104, 181, 141,
                ],
            ),
            (
                11,
                7,
                11,
                3,
                &[
                    65, 111, 121, 167, 104, 150, 160, 96, 143, 79, 89, 90, 166, 96, 172, 138, 141,
                    144, 110, 113, 189, 82, 115, 111, 71, 176, 172, 132, 128, 124, 193, 79, 185,
                ],
            ),
        ];
        for (w, h, dw, dh, want) in cases {
            let src = GrayImage::from_fn(w, h, |x, y| {
                image::Luma([((37 * x + 91 * y + 13 * x * y) % 256) as u8])
            });
            let got = resize_area(&src, dw, dh);
            let worst = got
                .as_raw()
                .iter()
                .zip(want)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            // Shrinking is exact; growing may differ by 1 where OpenCV rounds its 11-bit
            // fixed-point weights.
            let allowed = if dw <= w && dh <= h { 0 } else { 1 };
            assert!(
                worst <= allowed,
                "{w}x{h} -> {dw}x{dh}: got {:?}, OpenCV {want:?}",
                got.as_raw()
            );
        }
    }
}
