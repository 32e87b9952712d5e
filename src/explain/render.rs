//! Pictures of maps: min-max normalisation, the JET colour map, the paper's 0.7/0.3
//! overlay, panels, and writing PNG and .npy files through `fsio`.

use crate::fsio;
use anyhow::{bail, Context, Result};
use image::{GrayImage, Rgb, RgbImage};
use std::path::Path;
use tch::{Kind, Tensor};

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
    let values = Vec::<f32>::try_from(
        heat.to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .view([-1]),
    )?;
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
    let t = t.squeeze().to_device(tch::Device::Cpu);
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

/// Writes a PNG atomically.
pub fn write_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    fsio::write_atomic(path, buf.get_ref())
}

/// Writes a float32 tensor as .npy atomically.
pub fn write_npy(t: &Tensor, path: &Path) -> Result<()> {
    let t = t
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let shape = t.size();
    let values = Vec::<f32>::try_from(t.view([-1]))?;
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    fsio::write_atomic(path, &bytes)
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
    fn npy_round_trips_through_libtorch() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0]).view([2, 3]);
        let p = dir.path().join("m.npy");
        write_npy(&t, &p).unwrap();
        let back = Tensor::read_npy(&p).unwrap();
        assert_eq!(back.size(), vec![2, 3]);
        assert_eq!(
            Vec::<f32>::try_from(back.view([-1])).unwrap(),
            vec![1.5, -2.0, 3.25, 0.0, 7.0, 8.0]
        );
    }
}
