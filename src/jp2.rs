//! JPEG 2000 (Helioviewer JP2) reading: structural validation, the FITS header in the
//! `xml ` box, decoding to 8-bit grey with OpenJPEG, and OpenCV-compatible area resizing.

mod boxes;
mod resize;

pub use boxes::{has_signature, xml_value, SIGNATURE};
pub use resize::resize_area;

use anyhow::{bail, Context, Result};
use image::GrayImage;
use std::path::Path;

/// What a JP2's FITS header says about when it was observed (values as written there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObsTime {
    /// `T_OBS` (HMI: `2022.08.02_10:48:52.509_TAI`).
    pub t_obs: Option<String>,
    /// `DATE-OBS`, or `DATE_OBS` when the former is absent.
    pub date_obs: Option<String>,
}

/// Checks that `bytes` is a complete JP2 (signature, boxes inside the file, codestream
/// from SOC to EOC). `what` names the source in the error.
pub fn validate(bytes: &[u8], what: &str) -> Result<()> {
    boxes::layout(bytes).with_context(|| format!("{what}: invalid JP2"))?;
    Ok(())
}

/// Width and height from the JP2 image header, without decoding.
pub fn dimensions_bytes(bytes: &[u8], what: &str) -> Result<(u32, u32)> {
    let layout = boxes::layout(bytes).with_context(|| format!("{what}: invalid JP2"))?;
    layout
        .dims
        .with_context(|| format!("{what}: JP2 has no image header (ihdr)"))
}

/// The observation time keys of the embedded FITS header (tag names in any case).
pub fn obs_time_bytes(bytes: &[u8], what: &str) -> Result<ObsTime> {
    let layout = boxes::layout(bytes).with_context(|| format!("{what}: invalid JP2"))?;
    Ok(match boxes::xml_text(bytes, &layout) {
        None => ObsTime::default(),
        Some(xml) => ObsTime {
            t_obs: xml_value(&xml, "T_OBS"),
            date_obs: xml_value(&xml, "DATE-OBS").or_else(|| xml_value(&xml, "DATE_OBS")),
        },
    })
}

/// The observation time keys of a JP2 file, reading only the box headers and the
/// `xml ` box (cheap for files that are not decoded, e.g. outputs already up to date).
pub fn obs_time_file(path: &Path) -> Result<ObsTime> {
    let xml = boxes::read_xml_box(path)
        .with_context(|| format!("{}: cannot read the JP2 header", path.display()))?;
    Ok(match xml {
        None => ObsTime::default(),
        Some(xml) => ObsTime {
            t_obs: xml_value(&xml, "T_OBS"),
            date_obs: xml_value(&xml, "DATE-OBS").or_else(|| xml_value(&xml, "DATE_OBS")),
        },
    })
}

/// The `INSTRUME` of a JP2 file's FITS header, reading only the box headers and the `xml `
/// box; None where the file has no FITS header or no such key.
pub fn instrument_file(path: &Path) -> Result<Option<String>> {
    let xml = boxes::read_xml_box(path)
        .with_context(|| format!("{}: cannot read the JP2 header", path.display()))?;
    Ok(xml.and_then(|x| xml_value(&x, "INSTRUME")))
}

/// The FITS header (the `xml ` box's text) of a JP2 file, without reading the codestream.
pub fn fits_header_file(path: &Path) -> Result<Option<String>> {
    boxes::read_xml_box(path)
        .with_context(|| format!("{}: cannot read the JP2 header", path.display()))
}

/// Reads a JP2 file and decodes it to 8-bit grey at full resolution.
pub fn decode_gray8(path: &Path) -> Result<GrayImage> {
    let bytes = read(path)?;
    decode_gray8_bytes(&bytes, &path.display().to_string())
}

/// Decodes JP2 bytes to 8-bit grey at full resolution; `what` names the source in errors.
pub fn decode_gray8_bytes(bytes: &[u8], what: &str) -> Result<GrayImage> {
    decode_reduced_bytes(bytes, what, 0)
}

/// Decodes a JP2 file at `1 / 2^reduce` of its size straight from the wavelet pyramid
/// (much faster than a full decode and resize, but a different low-pass filter).
pub fn decode_gray8_reduced(path: &Path, reduce: u32) -> Result<GrayImage> {
    let bytes = read(path)?;
    decode_gray8_reduced_bytes(&bytes, &path.display().to_string(), reduce)
}

/// [`decode_gray8_reduced`] on bytes.
pub fn decode_gray8_reduced_bytes(bytes: &[u8], what: &str, reduce: u32) -> Result<GrayImage> {
    decode_reduced_bytes(bytes, what, reduce)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn decode_reduced_bytes(bytes: &[u8], what: &str, reduce: u32) -> Result<GrayImage> {
    validate(bytes, what)?;
    let params = jpeg2k::DecodeParameters::new().reduce(reduce);
    let img = jpeg2k::Image::from_bytes_with(bytes, params)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{what}: JPEG 2000 decode failed"))?;
    to_gray8(&img).with_context(|| format!("{what}: unsupported JPEG 2000 image"))
}

/// One grey (or the luma of an RGB) 8-bit plane from the decoded components.
fn to_gray8(img: &jpeg2k::Image) -> Result<GrayImage> {
    let comps = img.components();
    let Some(c0) = comps.first() else {
        bail!("no image components")
    };
    let (w, h) = (c0.width(), c0.height());
    if w == 0 || h == 0 {
        bail!("empty image ({w}x{h})");
    }
    if !(1..=16).contains(&c0.precision()) {
        bail!("unsupported precision {} bits", c0.precision());
    }
    let same_size = |c: &jpeg2k::ImageComponent| c.width() == w && c.height() == h;
    let plane: Vec<u8> = if comps.len() >= 3 && comps[..3].iter().all(same_size) {
        // ITU-R BT.601 luma, as image's to_luma8 would give.
        let (r, g, b) = (comps[0].data_u8(), comps[1].data_u8(), comps[2].data_u8());
        r.zip(g.zip(b))
            .map(|(r, (g, b))| {
                ((r as u32 * 299 + g as u32 * 587 + b as u32 * 114 + 500) / 1000) as u8
            })
            .collect()
    } else if c0.precision() == 8 && !c0.is_signed() {
        // The common case (Helioviewer's 8-bit files): a straight copy, no rescaling.
        c0.data().iter().map(|&v| v.clamp(0, 255) as u8).collect()
    } else {
        c0.data_u8().collect()
    };
    GrayImage::from_raw(w, h, plane).context("decoded plane has the wrong size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_naming_the_source() {
        let e = decode_gray8_bytes(b"<html>Service unavailable</html>", "x.jp2").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("x.jp2") && msg.contains("not a JP2"), "{msg}");
        let e = decode_gray8(Path::new("/nonexistent/a.jp2")).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/a.jp2"));
    }
}
