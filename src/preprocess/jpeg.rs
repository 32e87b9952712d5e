//! Baseline greyscale JPEG decoding that gives libjpeg(-turbo)'s pixels exactly (its
//! "islow" integer IDCT and range limiting), as Pillow reads the training JPGs. Other
//! JPEG flavours (colour, progressive, 12-bit, arithmetic coding) return `None` and are
//! left to the general decoder.

use anyhow::{bail, Result};
use image::GrayImage;

/// Zig-zag position -> natural (row-major) position, with libjpeg's 16 guard entries.
pub(super) const NATURAL: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

/// A Huffman table in libjpeg's derived form plus a 9-bit lookahead.
#[derive(Clone)]
struct Huffman {
    maxcode: [i32; 18],
    valoffset: [i32; 17],
    values: Vec<u8>,
    /// (code length, symbol) for codes of at most 9 bits, indexed by the next 9 bits.
    fast: Vec<(u8, u8)>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Self> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > 256 || total > values.len() {
            bail!("bad Huffman table");
        }
        let mut maxcode = [-1i32; 18];
        let mut valoffset = [0i32; 17];
        let mut fast = vec![(0u8, 0u8); 512];
        let (mut code, mut p) = (0i32, 0usize);
        for len in 1..=16usize {
            let n = counts[len - 1] as usize;
            if n > 0 {
                valoffset[len] = p as i32 - code;
                for _ in 0..n {
                    if len <= 9 {
                        let shift = 9 - len;
                        let start = (code as usize) << shift;
                        for e in fast.iter_mut().skip(start).take(1 << shift) {
                            *e = (len as u8, values[p]);
                        }
                    }
                    code += 1;
                    p += 1;
                }
                maxcode[len] = code - 1;
            }
            if code >= (1 << len) && len < 16 && p < total {
                bail!("bad Huffman table");
            }
            code <<= 1;
        }
        maxcode[17] = i32::MAX;
        Ok(Huffman {
            maxcode,
            valoffset,
            values,
            fast,
        })
    }
}

/// MSB-first bit reader over entropy-coded data: skips stuffed zero bytes and, like
/// libjpeg, feeds zeros once a marker (or the end of the file) is reached.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    nbits: u32,
    at_marker: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            buf: 0,
            nbits: 0,
            at_marker: false,
        }
    }

    fn fill(&mut self) {
        while self.nbits <= 56 {
            let mut byte = 0u8;
            if !self.at_marker && self.pos < self.data.len() {
                let b = self.data[self.pos];
                if b == 0xFF {
                    match self.data.get(self.pos + 1) {
                        Some(0x00) => {
                            byte = 0xFF;
                            self.pos += 2;
                        }
                        _ => self.at_marker = true,
                    }
                } else {
                    byte = b;
                    self.pos += 1;
                }
            }
            self.buf |= (byte as u64) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    fn peek(&self, n: u32) -> u32 {
        (self.buf >> (64 - n)) as u32
    }

    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.nbits -= n;
    }

    fn get(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        self.fill();
        let v = self.peek(n) as i32;
        self.consume(n);
        v
    }

    fn decode(&mut self, h: &Huffman) -> u8 {
        self.fill();
        let (len, sym) = h.fast[self.peek(9) as usize];
        if len > 0 {
            self.consume(len as u32);
            return sym;
        }
        for len in 10..=16u32 {
            let code = self.peek(len) as i32;
            if code <= h.maxcode[len as usize] {
                self.consume(len);
                let i = (code + h.valoffset[len as usize]) as usize;
                return h.values.get(i).copied().unwrap_or(0);
            }
        }
        // libjpeg: a bad code warns and decodes as 0.
        self.consume(16);
        0
    }

    /// Drops buffered bits and steps over the next RSTn marker.
    fn restart(&mut self) -> Result<()> {
        self.buf = 0;
        self.nbits = 0;
        self.at_marker = false;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return Ok(());
            }
            self.pos += 1;
        }
        bail!("missing restart marker")
    }
}

fn extend(v: i32, s: u32) -> i32 {
    if s == 0 {
        0
    } else if v < (1 << (s - 1)) {
        v - (1 << s) + 1
    } else {
        v
    }
}

/// libjpeg's `jpeg_idct_islow` for one block of dequantised coefficients.
fn idct_islow(coef: &[i32; 64], out: &mut [u8], stride: usize) {
    const CONST_BITS: u32 = 13;
    const PASS1_BITS: u32 = 2;
    const F0_298: i64 = 2446;
    const F0_390: i64 = 3196;
    const F0_541: i64 = 4433;
    const F0_765: i64 = 6270;
    const F0_899: i64 = 7373;
    const F1_175: i64 = 9633;
    const F1_501: i64 = 12299;
    const F1_847: i64 = 15137;
    const F1_961: i64 = 16069;
    const F2_053: i64 = 16819;
    const F2_562: i64 = 20995;
    const F3_072: i64 = 25172;
    let descale = |x: i64, n: u32| (x + (1 << (n - 1))) >> n;
    // Even and odd parts shared by both passes; returns the 8 outputs before descaling.
    let butterfly = |v: [i64; 8]| -> [i64; 8] {
        let (z2, z3) = (v[2], v[6]);
        let z1 = (z2 + z3) * F0_541;
        let tmp2 = z1 + z3 * -F1_847;
        let tmp3 = z1 + z2 * F0_765;
        let tmp0 = (v[0] + v[4]) << CONST_BITS;
        let tmp1 = (v[0] - v[4]) << CONST_BITS;
        let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
        let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
        let (t0, t1, t2, t3) = (v[7], v[5], v[3], v[1]);
        let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
        let z5 = (z3 + z4) * F1_175;
        let (t0, t1, t2, t3) = (t0 * F0_298, t1 * F2_053, t2 * F3_072, t3 * F1_501);
        let (z1, z2) = (z1 * -F0_899, z2 * -F2_562);
        let z3 = z3 * -F1_961 + z5;
        let z4 = z4 * -F0_390 + z5;
        let (t0, t1, t2, t3) = (t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4);
        [
            tmp10 + t3,
            tmp11 + t2,
            tmp12 + t1,
            tmp13 + t0,
            tmp13 - t0,
            tmp12 - t1,
            tmp11 - t2,
            tmp10 - t3,
        ]
    };
    let mut ws = [0i64; 64];
    for c in 0..8 {
        let col: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + c] as i64);
        // libjpeg's shortcut for a column without AC terms (same result, less work).
        if col[1..].iter().all(|&v| v == 0) {
            for row in 0..8 {
                ws[row * 8 + c] = col[0] << PASS1_BITS;
            }
            continue;
        }
        let r = butterfly(col);
        for (row, v) in r.iter().enumerate() {
            ws[row * 8 + c] = descale(*v, CONST_BITS - PASS1_BITS) as i32 as i64;
        }
    }
    for row in 0..8 {
        let v: [i64; 8] = std::array::from_fn(|c| ws[row * 8 + c]);
        let r = butterfly(v);
        for (c, x) in r.iter().enumerate() {
            let idx = (descale(*x, CONST_BITS + PASS1_BITS + 3) as i32 & 1023) as usize;
            out[row * stride + c] = match idx {
                0..=127 => (idx + 128) as u8,
                128..=511 => 255,
                512..=895 => 0,
                _ => (idx - 896) as u8,
            };
        }
    }
}

fn be16(b: &[u8], at: usize) -> Result<usize> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]]) as usize),
        None => bail!("truncated JPEG header"),
    }
}

/// Decodes a baseline (or extended sequential Huffman) 8-bit single-component JPEG
/// exactly as libjpeg does; `Ok(None)` for any other kind of JPEG.
pub fn decode_gray_exact(bytes: &[u8]) -> Result<Option<GrayImage>> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        bail!("not a JPEG");
    }
    let mut quant = [[0i32; 64]; 4];
    let mut dc: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac: [Option<Huffman>; 4] = [None, None, None, None];
    let mut frame: Option<(usize, usize, u8, usize)> = None; // width, height, id, quant table
    let mut restart_interval = 0usize;
    let mut pos = 2;
    loop {
        // Next marker (fill bytes allowed).
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if bytes.get(pos) != Some(&0xFF) {
            bail!("corrupt JPEG: expected a marker at byte {pos}");
        }
        let marker = *bytes
            .get(pos + 1)
            .ok_or_else(|| anyhow::anyhow!("truncated JPEG"))?;
        pos += 2;
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 => bail!("JPEG ends before its image data"),
            _ => {}
        }
        let len = be16(bytes, pos)?;
        let seg = bytes
            .get(pos + 2..pos + len)
            .ok_or_else(|| anyhow::anyhow!("truncated JPEG segment"))?;
        match marker {
            0xDB => {
                let mut i = 0;
                while i < seg.len() {
                    let (pq, tq) = (seg[i] >> 4, (seg[i] & 15) as usize);
                    let size = if pq == 0 { 64 } else { 128 };
                    let table = seg.get(i + 1..i + 1 + size).filter(|_| tq < 4);
                    let Some(table) = table else {
                        bail!("bad quantisation table");
                    };
                    for k in 0..64 {
                        quant[tq][NATURAL[k]] = if pq == 0 {
                            table[k] as i32
                        } else {
                            u16::from_be_bytes([table[2 * k], table[2 * k + 1]]) as i32
                        };
                    }
                    i += 1 + size;
                }
            }
            0xC4 => {
                let mut i = 0;
                while i < seg.len() {
                    let (tc, th) = (seg[i] >> 4, (seg[i] & 15) as usize);
                    let counts: [u8; 16] = seg
                        .get(i + 1..i + 17)
                        .and_then(|c| c.try_into().ok())
                        .ok_or_else(|| anyhow::anyhow!("bad Huffman table"))?;
                    let n: usize = counts.iter().map(|&c| c as usize).sum();
                    let values = seg
                        .get(i + 17..i + 17 + n)
                        .ok_or_else(|| anyhow::anyhow!("bad Huffman table"))?
                        .to_vec();
                    if th >= 4 || tc > 1 {
                        bail!("bad Huffman table");
                    }
                    let h = Huffman::new(&counts, values)?;
                    if tc == 0 {
                        dc[th] = Some(h);
                    } else {
                        ac[th] = Some(h);
                    }
                    i += 17 + n;
                }
            }
            0xC0 | 0xC1 => {
                if seg.len() < 6 || seg[0] != 8 || seg[5] != 1 || seg.len() < 9 {
                    return Ok(None);
                }
                let h = u16::from_be_bytes([seg[1], seg[2]]) as usize;
                let w = u16::from_be_bytes([seg[3], seg[4]]) as usize;
                // Leave absurd sizes to the general decoder and its memory limits.
                if w == 0 || h == 0 || seg[8] > 3 || w * h > 1 << 28 {
                    return Ok(None);
                }
                frame = Some((w, h, seg[6], seg[8] as usize));
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xDD => restart_interval = be16(seg, 0)?,
            0xDA => {
                let Some((w, h, id, tq)) = frame else {
                    bail!("scan before frame header");
                };
                if seg.len() < 4 || seg[0] != 1 || seg[1] != id {
                    return Ok(None);
                }
                let (td, ta) = ((seg[2] >> 4) as usize, (seg[2] & 15) as usize);
                let (Some(Some(dct)), Some(Some(act))) = (dc.get(td), ac.get(ta)) else {
                    bail!("scan uses an undefined Huffman table");
                };
                return decode_scan(
                    bytes,
                    pos + len,
                    w,
                    h,
                    &quant[tq],
                    dct,
                    act,
                    restart_interval,
                )
                .map(Some);
            }
            _ => {}
        }
        pos += len;
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    bytes: &[u8],
    start: usize,
    w: usize,
    h: usize,
    q: &[i32; 64],
    dc: &Huffman,
    ac: &Huffman,
    restart_interval: usize,
) -> Result<GrayImage> {
    let (bw, bh) = (w.div_ceil(8), h.div_ceil(8));
    let stride = bw * 8;
    let mut pixels = vec![0u8; stride * bh * 8];
    let mut bits = Bits::new(bytes, start);
    let mut pred = 0i32;
    let mut coef = [0i32; 64];
    for b in 0..bw * bh {
        if restart_interval > 0 && b > 0 && b % restart_interval == 0 {
            bits.restart()?;
            pred = 0;
        }
        let mut block = [0i16; 64];
        let t = bits.decode(dc) as u32;
        if t > 15 {
            bail!("corrupt JPEG: bad DC size");
        }
        pred = pred.wrapping_add(extend(bits.get(t), t));
        block[0] = pred as i16;
        let mut k = 1usize;
        while k < 64 {
            let rs = bits.decode(ac);
            let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
            if s == 0 {
                if r != 15 {
                    break;
                }
                k += 16;
                continue;
            }
            k += r;
            block[NATURAL[k.min(79)]] = extend(bits.get(s), s) as i16;
            k += 1;
        }
        for i in 0..64 {
            coef[i] = block[i] as i32 * q[i];
        }
        let (by, bx) = (b / bw, b % bw);
        let at = by * 8 * stride + bx * 8;
        idct_islow(&coef, &mut pixels[at..], stride);
    }
    let mut out = Vec::with_capacity(w * h);
    for row in pixels.chunks_exact(stride).take(h) {
        out.extend_from_slice(&row[..w]);
    }
    Ok(GrayImage::from_raw(w as u32, h as u32, out).expect("w*h pixels"))
}
