//! Baseline greyscale JPEG encoding that writes libjpeg(-turbo)'s bytes exactly, as Pillow
//! saved the training JPGs (`quality=95`, no optimised Huffman tables): libjpeg's scaled
//! quality tables, its "islow" integer forward DCT, its reciprocal quantisation and the
//! standard luminance Huffman tables. A JP2 sent through this and the exact decoder gives
//! the training tree's pixels, so a forecast's image is the image the network trained on.

use super::jpeg::NATURAL;
use image::GrayImage;

/// The JPEG standard's luminance quantisation table (Annex K), natural order.
const STD_LUMINANCE: [u32; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// Annex K's luminance DC table: code counts per length, then symbols.
const DC_COUNTS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

/// Annex K's luminance AC table.
const AC_COUNTS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 125];
const AC_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

/// libjpeg's `jpeg_quality_scaling` and `jpeg_add_quant_table` with `force_baseline`:
/// the luminance table for `quality` (clamped to 1..=100), natural order.
fn quant_table(quality: u8) -> [u16; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - q * 2 };
    STD_LUMINANCE.map(|s| ((s * scale + 50) / 100).clamp(1, 255) as u16)
}

/// libjpeg-turbo's `compute_reciprocal` for a 16-bit DCT element: (reciprocal,
/// correction, shift) with which `((x + corr) * recip) >> (shift + 16)` is `x / divisor`
/// rounded as libjpeg rounds.
fn reciprocal(divisor: u32) -> (u32, u32, i32) {
    if divisor == 1 {
        return (1, 0, -16);
    }
    let b = 31 - divisor.leading_zeros(); // floor(log2(divisor))
    let mut r = 16 + b;
    let mut fq = (1u32 << r) / divisor;
    let fr = (1u32 << r) % divisor;
    let mut c = divisor / 2;
    if fr == 0 {
        fq >>= 1;
        r -= 1;
    } else if fr <= divisor / 2 {
        c += 1;
    } else {
        fq += 1;
    }
    (fq, c, r as i32 - 16)
}

const CONST_BITS: i32 = 13;
const PASS1_BITS: i32 = 2;

fn descale(x: i32, n: i32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

/// libjpeg's `jpeg_fdct_islow` on one block of level-shifted samples, in place; the
/// result is scaled up by 8.
fn fdct_islow(data: &mut [i32; 64]) {
    for pass in 0..2 {
        // Rows first (keeping PASS1_BITS of extra precision), then columns.
        let (step, stride) = if pass == 0 { (8, 1) } else { (1, 8) };
        let (shift_even, shift_odd) = if pass == 0 {
            (None, CONST_BITS - PASS1_BITS)
        } else {
            (Some(PASS1_BITS), CONST_BITS + PASS1_BITS)
        };
        for line in 0..8 {
            let base = line * step;
            let at = |k: usize| base + k * stride;
            let d = |k: usize| data[at(k)];
            let tmp0 = d(0) + d(7);
            let tmp7 = d(0) - d(7);
            let tmp1 = d(1) + d(6);
            let tmp6 = d(1) - d(6);
            let tmp2 = d(2) + d(5);
            let tmp5 = d(2) - d(5);
            let tmp3 = d(3) + d(4);
            let tmp4 = d(3) - d(4);

            let tmp10 = tmp0 + tmp3;
            let tmp13 = tmp0 - tmp3;
            let tmp11 = tmp1 + tmp2;
            let tmp12 = tmp1 - tmp2;
            let (out0, out4) = match shift_even {
                None => ((tmp10 + tmp11) << PASS1_BITS, (tmp10 - tmp11) << PASS1_BITS),
                Some(n) => (descale(tmp10 + tmp11, n), descale(tmp10 - tmp11, n)),
            };
            let z1 = (tmp12 + tmp13) * 4433;
            let out2 = descale(z1 + tmp13 * 6270, shift_odd);
            let out6 = descale(z1 - tmp12 * 15137, shift_odd);

            let z1 = tmp4 + tmp7;
            let z2 = tmp5 + tmp6;
            let z3 = tmp4 + tmp6;
            let z4 = tmp5 + tmp7;
            let z5 = (z3 + z4) * 9633;
            let tmp4 = tmp4 * 2446;
            let tmp5 = tmp5 * 16819;
            let tmp6 = tmp6 * 25172;
            let tmp7 = tmp7 * 12299;
            let z1 = z1 * -7373;
            let z2 = z2 * -20995;
            let z3 = z3 * -16069 + z5;
            let z4 = z4 * -3196 + z5;

            data[at(0)] = out0;
            data[at(4)] = out4;
            data[at(2)] = out2;
            data[at(6)] = out6;
            data[at(7)] = descale(tmp4 + z1 + z3, shift_odd);
            data[at(5)] = descale(tmp5 + z2 + z4, shift_odd);
            data[at(3)] = descale(tmp6 + z2 + z3, shift_odd);
            data[at(1)] = descale(tmp7 + z1 + z4, shift_odd);
        }
    }
}

/// A Huffman table as (code, length) per symbol, built as libjpeg's `jpeg_make_c_derived_tbl`.
fn derive(counts: &[u8; 16], values: &[u8]) -> [(u16, u8); 256] {
    let mut table = [(0u16, 0u8); 256];
    let mut code = 0u16;
    let mut k = 0;
    for (len, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            table[values[k] as usize] = (code, len as u8 + 1);
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    table
}

/// Entropy-coded bits with 0xFF byte stuffing.
struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    bits: u32,
}

impl BitWriter {
    fn put(&mut self, code: u32, len: u32) {
        self.acc = (self.acc << len) | (code & ((1 << len) - 1));
        self.bits += len;
        while self.bits >= 8 {
            let byte = (self.acc >> (self.bits - 8)) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
            self.bits -= 8;
        }
        self.acc &= (1 << self.bits) - 1;
    }

    /// libjpeg pads the last byte with one-bits (and drops what does not fill a byte).
    fn flush(&mut self) {
        if self.bits > 0 {
            self.put(0x7F, 7);
        }
    }
}

/// Bit length of a magnitude (libjpeg's `nbits`).
fn bit_length(v: i32) -> u32 {
    32 - v.unsigned_abs().leading_zeros()
}

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn huffman_segment(out: &mut Vec<u8>, class_id: u8, counts: &[u8; 16], values: &[u8]) {
    let mut body = vec![class_id];
    body.extend_from_slice(counts);
    body.extend_from_slice(values);
    segment(out, 0xC4, &body);
}

/// The JPEG libjpeg writes for `img` at `quality` (what Pillow's `save(..., quality=q)`
/// writes for a mode "L" image): JFIF 1.01 without density, baseline, one component.
pub fn encode_gray(img: &GrayImage, quality: u8) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let qtable = quant_table(quality);
    let divisors: Vec<(u32, u32, i32)> = qtable
        .iter()
        .map(|&q| reciprocal(u32::from(q) * 8))
        .collect();

    let mut out = vec![0xFF, 0xD8];
    segment(&mut out, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    let mut dqt = vec![0u8];
    dqt.extend(NATURAL[..64].iter().map(|&n| qtable[n] as u8));
    segment(&mut out, 0xDB, &dqt);
    let mut sof = vec![8];
    sof.extend_from_slice(&(h as u16).to_be_bytes());
    sof.extend_from_slice(&(w as u16).to_be_bytes());
    sof.extend_from_slice(&[1, 1, 0x11, 0]);
    segment(&mut out, 0xC0, &sof);
    huffman_segment(&mut out, 0x00, &DC_COUNTS, &DC_VALUES);
    huffman_segment(&mut out, 0x10, &AC_COUNTS, &AC_VALUES);
    segment(&mut out, 0xDA, &[1, 1, 0x00, 0, 63, 0]);

    let dc = derive(&DC_COUNTS, &DC_VALUES);
    let ac = derive(&AC_COUNTS, &AC_VALUES);
    let mut bits = BitWriter {
        out,
        acc: 0,
        bits: 0,
    };
    let put_symbol = |bits: &mut BitWriter, table: &[(u16, u8); 256], symbol: u32| {
        let (code, len) = table[symbol as usize];
        bits.put(u32::from(code), u32::from(len));
    };
    let pixels = img.as_raw();
    let mut last_dc = 0;
    for by in 0..h.div_ceil(8) {
        for bx in 0..w.div_ceil(8) {
            // Edge blocks repeat the last column and row, as libjpeg pads them.
            let mut block = [0i32; 64];
            for (i, v) in block.iter_mut().enumerate() {
                let x = (bx * 8 + (i % 8) as u32).min(w - 1);
                let y = (by * 8 + (i / 8) as u32).min(h - 1);
                *v = i32::from(pixels[(y * w + x) as usize]) - 128;
            }
            fdct_islow(&mut block);
            let mut coef = [0i32; 64];
            for (i, c) in coef.iter_mut().enumerate() {
                let (recip, corr, shift) = divisors[i];
                let mag = (block[i].unsigned_abs() + corr) * recip;
                let q = (mag >> (shift + 16) as u32) as i32;
                *c = if block[i] < 0 { -q } else { q };
            }

            let diff = coef[0] - last_dc;
            last_dc = coef[0];
            let n = bit_length(diff);
            put_symbol(&mut bits, &dc, n);
            if n > 0 {
                let v = if diff < 0 { diff - 1 } else { diff };
                bits.put(v as u32, n);
            }
            let mut run = 0;
            for &z in &NATURAL[1..64] {
                let v = coef[z];
                if v == 0 {
                    run += 1;
                    continue;
                }
                while run > 15 {
                    put_symbol(&mut bits, &ac, 0xF0);
                    run -= 16;
                }
                let n = bit_length(v);
                put_symbol(&mut bits, &ac, (run << 4) + n);
                bits.put((if v < 0 { v - 1 } else { v }) as u32, n);
                run = 0;
            }
            if run > 0 {
                put_symbol(&mut bits, &ac, 0);
            }
        }
    }
    bits.flush();
    let mut out = bits.out;
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_95_table_is_libjpegs() {
        let t = quant_table(95);
        // (16 * 10 + 50) / 100 = 2, (11 * 10 + 50) / 100 = 1, (121 * 10 + 50) / 100 = 12.
        assert_eq!((t[0], t[1], t[53]), (2, 1, 12));
        assert_eq!(quant_table(100), [1; 64]);
        assert_eq!(quant_table(50).map(u32::from), STD_LUMINANCE);
    }

    #[test]
    fn reciprocal_quantisation_rounds_as_division() {
        for d in [8u32, 16, 24, 88, 96, 2040] {
            let (recip, corr, shift) = reciprocal(d);
            for x in 0..8192u32 {
                let q = ((x + corr) * recip) >> (shift + 16) as u32;
                assert_eq!(q, (x + d / 2) / d, "x {x} / {d}");
            }
        }
    }

    #[test]
    fn a_flat_image_round_trips_to_itself() {
        let img = GrayImage::from_pixel(20, 13, image::Luma([77]));
        let bytes = encode_gray(&img, 95);
        let back = super::super::jpeg::decode_gray_exact(&bytes)
            .unwrap()
            .unwrap();
        assert_eq!(back, img);
    }
}
