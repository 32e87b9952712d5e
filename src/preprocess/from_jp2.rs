//! A JP2 made into an 8-bit image at a size, and into the training image the training
//! tree holds for it. `convert` writes the first (encoded as it is asked); `Input` reads
//! a JP2 as the second. Both sit here, below `convert`, so that the two cannot drift:
//! a JP2 given to any command goes through the very conversion the training images did.

use super::{decode_gray8_bytes, encode_gray_jpeg};
use crate::jp2;
use anyhow::{Context, Result};
use image::GrayImage;

/// The side and JPEG quality of the training images (the reference's 512x512 JPGs).
pub const TRAINING_SIZE: u32 = 512;
pub const TRAINING_QUALITY: u8 = 95;

/// JP2 bytes decoded and area-resized to `size` square (0 keeps the decoded size), and
/// the JP2's full decoded size. With `fast_reduce` the decode starts from the coarsest
/// wavelet level still at least `size` on both sides. `what` names the source in errors.
pub fn decode_jp2_sized(
    bytes: &[u8],
    what: &str,
    size: u32,
    fast_reduce: bool,
) -> Result<(GrayImage, (u32, u32))> {
    let (img, full) = decode(bytes, what, size, fast_reduce)?;
    let img = if size == 0 || img.dimensions() == (size, size) {
        img
    } else {
        jp2::resize_area(&img, size, size)
    };
    Ok((img, full))
}

/// Full decode, or with `fast_reduce` the coarsest wavelet level still at least `size`
/// on both sides. Returns the image and the full-resolution size.
fn decode(
    bytes: &[u8],
    what: &str,
    size: u32,
    fast_reduce: bool,
) -> Result<(GrayImage, (u32, u32))> {
    if !fast_reduce || size == 0 {
        let img = jp2::decode_gray8_bytes(bytes, what)?;
        let d = img.dimensions();
        return Ok((img, d));
    }
    let full = jp2::dimensions_bytes(bytes, what)?;
    let mut reduce = 0;
    while reduce < 5 && (full.0 >> (reduce + 1)) >= size && (full.1 >> (reduce + 1)) >= size {
        reduce += 1;
    }
    let img = jp2::decode_gray8_reduced_bytes(bytes, what, reduce)?;
    Ok((img, full))
}

/// The training image of a JP2's bytes: what `convert` writes for it (512x512 area
/// resize, quality-95 JPEG), decoded as a training JPG is decoded.
pub fn training_image_from_jp2(bytes: &[u8], what: &str) -> Result<GrayImage> {
    let (img, _) = decode_jp2_sized(bytes, what, TRAINING_SIZE, false)?;
    let jpg = encode_gray_jpeg(&img, TRAINING_QUALITY);
    decode_gray8_bytes(&jpg).with_context(|| format!("{what}: cannot read back its JPG conversion"))
}
