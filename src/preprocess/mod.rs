//! Input preprocessing exactly as the reference trains and predicts: an image is read as
//! 8-bit grey (Pillow's `convert("L")`; greyscale baseline JPEGs, the training data's
//! format, decoded bit for bit as libjpeg does), resized with torchvision `Resize(im_size)` on the
//! PIL image (Pillow's antialiased BILINEAR, bit for bit) and scaled by 1/255 into a
//! `[1, H, W]` float tensor. Preprocessed `.npy` float32 arrays are accepted as they are.
//!
//! - [`Input`]: the one reader of every command's input files (JPG, PNG, JP2, `.npy`),
//!   a JP2 made into the training image `convert` makes of it; [`training_image`] for
//!   an image file alone.
//! - [`decode_jp2_sized`], [`training_image_from_jp2`]: a JP2 at a size, as `convert`
//!   writes it, and as the training image it became (`from_jp2`).
//! - [`resize_like_pil`]: torchvision `Resize(size)` (shorter side to `size`).
//! - [`to_tensor`]: `ToTensor()` for an 8-bit grey image.
//! - [`augment`]: flips and the nearest-neighbour rotation used in training.

mod assumptions;
pub mod augment;
mod from_jp2;
mod input;
mod jpeg;
mod jpeg_encode;
mod npy;
mod resize;

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{DynamicImage, GrayImage, ImageFormat};
use tch::Tensor;

pub use assumptions::assumptions;
pub use augment::{hflip, rotate_nearest, vflip};
pub use from_jp2::{decode_jp2_sized, training_image_from_jp2, TRAINING_QUALITY, TRAINING_SIZE};
pub use input::{Input, Instance, Pixels};
pub use jpeg_encode::encode_gray as encode_gray_jpeg;
pub use resize::{resize_exact_like_pil, resize_like_pil, resized_dims};

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Jpeg,
    Png,
    Jp2,
    Npy,
    Unknown,
}

fn sniff(bytes: &[u8]) -> Sniffed {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Sniffed::Jpeg
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Sniffed::Png
    } else if bytes.starts_with(b"\x00\x00\x00\x0cjP  \r\n\x87\n")
        || bytes.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
    {
        Sniffed::Jp2
    } else if bytes.starts_with(b"\x93NUMPY") {
        Sniffed::Npy
    } else {
        Sniffed::Unknown
    }
}

/// A short printable view of the first bytes, for "this is not an image" errors.
fn preview(bytes: &[u8]) -> String {
    let head: String = bytes
        .iter()
        .take(24)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{head:?}")
}

/// Pillow's RGB -> L: ITU-R 601-2 luma in 16-bit fixed point, rounded.
fn pil_luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// [`pil_luma`] of an 8-bit RGB or RGBA pixel (alpha ignored).
fn luma8(p: &[u8]) -> u8 {
    pil_luma(p[0], p[1], p[2])
}

/// [`pil_luma`] of a 16-bit RGB or RGBA pixel: Pillow reads 16-bit RGB PNGs as 8-bit RGB
/// (the high byte).
fn luma16(p: &[u16]) -> u8 {
    pil_luma((p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8)
}

/// Pillow's `convert("L")` for the pixel layouts JPEG and PNG decode to.
fn to_gray8(img: DynamicImage) -> Result<GrayImage> {
    let (w, h) = (img.width(), img.height());
    let raw = match img {
        DynamicImage::ImageLuma8(g) => return Ok(g),
        // LA -> L and RGBA -> L ignore alpha in Pillow.
        DynamicImage::ImageLumaA8(g) => g.pixels().map(|p| p.0[0]).collect(),
        DynamicImage::ImageRgb8(c) => c.pixels().map(|p| luma8(&p.0)).collect(),
        DynamicImage::ImageRgba8(c) => c.pixels().map(|p| luma8(&p.0)).collect(),
        // Pillow opens 16-bit grey PNGs as mode I;16/I and clips to 0..255 on convert("L").
        DynamicImage::ImageLuma16(g) => g.pixels().map(|p| p.0[0].min(255) as u8).collect(),
        DynamicImage::ImageLumaA16(g) => g.pixels().map(|p| p.0[0].min(255) as u8).collect(),
        DynamicImage::ImageRgb16(c) => c.pixels().map(|p| luma16(&p.0)).collect(),
        DynamicImage::ImageRgba16(c) => c.pixels().map(|p| luma16(&p.0)).collect(),
        other => bail!("unsupported pixel format {:?}", other.color()),
    };
    Ok(GrayImage::from_raw(w, h, raw).expect("one byte per pixel"))
}

/// Whether an end-of-image marker follows the last start-of-scan, as in a complete JPEG
/// (the decoder would otherwise fill a truncated file with grey, where Pillow refuses it).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((sos, eoi), (Some(s), Some(e)) if e > s)
}

/// Decodes JPEG or PNG bytes to 8-bit grey (no file name in the error; callers add it).
pub fn decode_gray8_bytes(bytes: &[u8]) -> Result<GrayImage> {
    let format = match sniff(bytes) {
        Sniffed::Jpeg => ImageFormat::Jpeg,
        Sniffed::Png => ImageFormat::Png,
        Sniffed::Jp2 => bail!("JPEG 2000 data must be read from a file"),
        Sniffed::Npy => bail!("a .npy array, not an image"),
        Sniffed::Unknown if bytes.is_empty() => bail!("empty file (0 bytes)"),
        Sniffed::Unknown => bail!(
            "not a JPEG, PNG or JPEG 2000 image (starts with {})",
            preview(bytes)
        ),
    };
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        bail!("truncated or corrupt JPEG image (no end-of-image marker after the scan)");
    }
    if format == ImageFormat::Jpeg {
        if let Some(img) = jpeg::decode_gray_exact(bytes).context("corrupt JPEG image")? {
            return Ok(img);
        }
    }
    let img = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| anyhow::anyhow!("corrupt {format:?} image: {e}"))?;
    to_gray8(img)
}

/// Reads a JPG, PNG or JP2 file as the training image it is or makes: 8-bit grey as
/// Pillow's `Image.open(p).convert("L")` reads a JPG or PNG, and for a JP2 what `convert`
/// writes for it, read back. The format is taken from the file's contents, not its
/// extension.
pub fn training_image(path: &Path) -> Result<GrayImage> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
    let img = if sniff(&bytes) == Sniffed::Jp2 {
        training_image_from_jp2(&bytes, &name)?
    } else {
        decode_gray8_bytes(&bytes).with_context(|| format!("cannot load image {name}"))?
    };
    if img.width() == 0 || img.height() == 0 {
        bail!("image {name} has no pixels");
    }
    Ok(img)
}

/// torchvision `ToTensor()` for an 8-bit grey image: `[1, H, W]` float32 in [0, 1].
pub fn to_tensor(img: &GrayImage) -> Tensor {
    let (w, h) = img.dimensions();
    Tensor::from_slice(img.as_raw())
        .view([1, h as i64, w as i64])
        .to_kind(tch::Kind::Float)
        / 255.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pil_luma_matches_pillow() {
        // Grey stays grey; pure colours give Pillow's L values.
        assert_eq!(pil_luma(123, 123, 123), 123);
        assert_eq!(pil_luma(255, 0, 0), 76);
        assert_eq!(pil_luma(0, 255, 0), 150);
        assert_eq!(pil_luma(0, 0, 255), 29);
    }

    #[test]
    fn to_tensor_scales_by_255() {
        let img = GrayImage::from_raw(2, 1, vec![0, 255]).unwrap();
        let t = to_tensor(&img);
        assert_eq!(t.size(), vec![1, 1, 2]);
        assert_eq!(
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
            vec![0.0, 1.0]
        );
    }

    #[test]
    fn bad_bytes_are_named() {
        let e = decode_gray8_bytes(b"<!DOCTYPE html><html>").unwrap_err();
        assert!(e.to_string().contains("not a JPEG"), "{e}");
        let e = decode_gray8_bytes(b"").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
