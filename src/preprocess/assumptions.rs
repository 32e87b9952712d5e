//! What preprocessing assumes about an input that the file may not satisfy: an 8-bit
//! grey full-disk HMI magnetogram. Each mismatch is a sentence for a warning; reading the
//! image goes on as Pillow would (16-bit grey clipped to 255, colour to luma).

use image::{ColorType, ImageDecoder, ImageReader};
use std::path::Path;

/// Smallest side of an image taken as a full-disk magnetogram without a warning.
const MIN_FULL_DISK_SIDE: u32 = 64;

/// The assumptions `path` breaks, one sentence each naming the file; empty for an 8-bit
/// grey image of a plausible size (and, for a JP2 with a FITS header, from HMI). A file
/// that cannot be read gives none: reading it fails later with its own error.
pub fn assumptions(path: &Path) -> Vec<String> {
    let name = path.display();
    let mut notes = Vec::new();
    if let Ok(Some(instrument)) = crate::jp2::instrument_file(path) {
        if !instrument.to_ascii_uppercase().contains("HMI") {
            notes.push(format!(
                "{name}: the JP2 header names instrument {instrument}; the model was trained on SDO/HMI magnetograms"
            ));
        }
        return notes;
    }
    let Some((color, (w, h))) = header(path) else {
        return notes;
    };
    match color {
        ColorType::L8 | ColorType::La8 => {}
        ColorType::L16 | ColorType::La16 => notes.push(format!(
            "{name}: 16-bit grey image; values above 255 are clipped to 255 (as Pillow's convert(\"L\") does), so a 16-bit magnetogram saturates: convert it to 8 bits first"
        )),
        ColorType::Rgb16 | ColorType::Rgba16 => notes.push(format!(
            "{name}: 16-bit colour image; reduced to 8 bits and to grey by ITU-R 601 luma (as Pillow does); magnetograms are grey"
        )),
        other => notes.push(format!(
            "{name}: colour image ({other:?}); converted to grey by ITU-R 601 luma (as Pillow does); magnetograms are grey"
        )),
    }
    if w.min(h) < MIN_FULL_DISK_SIDE {
        notes.push(format!(
            "{name}: {w}x{h} pixels is too small for a full-disk magnetogram; it is upscaled to the model's size"
        ));
    }
    notes
}

/// Colour type and size from a PNG or JPEG header, without decoding the pixels.
fn header(path: &Path) -> Option<(ColorType, (u32, u32))> {
    let decoder = ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .into_decoder()
        .ok()?;
    Some((decoder.color_type(), decoder.dimensions()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_colour_and_tiny_images_are_noted() {
        let dir = tempfile::tempdir().unwrap();
        let p16 = dir.path().join("m16.png");
        image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(256, 256, image::Luma([300u16]))
            .save(&p16)
            .unwrap();
        let rgb = dir.path().join("rgb.png");
        image::RgbImage::from_pixel(256, 256, image::Rgb([1, 2, 3]))
            .save(&rgb)
            .unwrap();
        let tiny = dir.path().join("tiny.png");
        image::GrayImage::from_pixel(1, 1, image::Luma([7]))
            .save(&tiny)
            .unwrap();
        let grey = dir.path().join("grey.png");
        image::GrayImage::from_pixel(256, 256, image::Luma([7]))
            .save(&grey)
            .unwrap();
        let n16 = assumptions(&p16);
        assert_eq!(n16.len(), 1);
        assert!(n16[0].starts_with(&format!("{}: 16-bit grey image", p16.display())));
        assert!(assumptions(&rgb)[0].contains("colour image (Rgb8)"));
        assert!(assumptions(&tiny)[0].contains("1x1 pixels is too small"));
        assert!(assumptions(&grey).is_empty());
        assert!(assumptions(&dir.path().join("missing.png")).is_empty());
    }
}
