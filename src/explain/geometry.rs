//! Where a heliographic position falls on a magnetogram: the disk's centre and radius in
//! pixels and the B0 angle, from a JP2's FITS header (CRPIX, CDELT, RSUN_OBS, CRLT_OBS)
//! or, for a JPG, measured from the image with B0 from the date; the orthographic
//! projection of Stonyhurst coordinates, with differential rotation between the
//! flare's time and the image's.

use crate::bounded::Count;
use crate::synth::sun;
use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use image::GrayImage;
use std::path::Path;

/// The solar disk on one image: centre (column, row of pixel centres, 0-based) and radius
/// in pixels, and the heliographic latitude of the disk centre (B0, degrees). The images
/// are north-up (Helioviewer re-centres and de-rotates them).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Disk {
    pub cx: f64,
    pub cy: f64,
    pub radius: f64,
    pub b0: f64,
}

impl Disk {
    /// The same disk on the image resized to `width` x `height` from `from_w` x `from_h`
    /// (pixel centres map as (x + 0.5) * scale - 0.5).
    pub fn resized(self, from_w: u32, from_h: u32, width: u32, height: u32) -> Disk {
        let (sx, sy) = (width as f64 / from_w as f64, height as f64 / from_h as f64);
        Disk {
            cx: (self.cx + 0.5) * sx - 0.5,
            cy: (self.cy + 0.5) * sy - 0.5,
            radius: self.radius * sx,
            b0: self.b0,
        }
    }

    /// Pixel (column, row) of Stonyhurst (lon, lat) in degrees; `None` behind the limb.
    pub fn project(&self, lon: f64, lat: f64) -> Option<(f64, f64)> {
        let c = sun::to_observer(lon, lat, self.b0);
        (c[2] >= 0.0).then(|| (self.cx + c[0] * self.radius, self.cy - c[1] * self.radius))
    }
}

/// The Stonyhurst longitude at `to` of a feature at `lon`, `lat` at `from` (synodic
/// differential rotation of magnetic features).
pub fn rotate(lon: f64, lat: f64, from: NaiveDateTime, to: NaiveDateTime) -> f64 {
    let days = (to - from).num_milliseconds() as f64 / 86_400_000.0;
    lon + sun::synodic_rate(lat) * days
}

/// The disk measured on a magnetogram: the extent of the pixels brighter than a quarter
/// of the on-disk median grey (the off-disk sky is black; strong negative fields inside
/// the disk are dark too, so the disk is taken from its outer extent, not its area).
pub fn measure_disk(img: &GrayImage, t: NaiveDateTime) -> Result<Disk> {
    let mut levels: Vec<u8> = img.pixels().map(|p| p[0]).filter(|&v| v > 8).collect();
    if levels.len() < 16 {
        bail!("no solar disk in the image (it is black)");
    }
    let mid = levels.len() / 2;
    let median = *levels.select_nth_unstable(mid).1;
    let threshold = (median / 2).max(9);
    let (w, h) = img.dimensions();
    let (mut x0, mut x1, mut y0, mut y1) = (u32::MAX, 0, u32::MAX, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p[0] >= threshold {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 == 0 || y0 == 0 || x1 == w - 1 || y1 == h - 1 {
        bail!("the solar disk touches the image's edge: not a full-disk magnetogram");
    }
    Ok(Disk {
        cx: (x0 + x1) as f64 / 2.0,
        cy: (y0 + y1) as f64 / 2.0,
        radius: ((x1 - x0) as f64 + (y1 - y0) as f64) / 4.0 + 0.5,
        b0: sun::b0_deg(t),
    })
}

/// The sides a FITS header may give a JP2's image, in whole pixels (HMI's are 4096).
const JP2_SIDE: Count<u32> = Count::new("naxis", "side", 1, 65_536);

/// The disk of a JP2 at its full resolution, from its FITS header.
pub fn jp2_disk(path: &Path) -> Result<(Disk, u32, u32)> {
    let xml = crate::jp2::fits_header_file(path)?
        .with_context(|| format!("{}: no FITS header (xml box)", path.display()))?;
    let num = |key: &str| -> Result<f64> {
        let v = crate::jp2::xml_value(&xml, key)
            .with_context(|| format!("{}: FITS header has no {key}", path.display()))?;
        v.parse::<f64>()
            .with_context(|| format!("{}: FITS {key} is {v:?}, not a number", path.display()))
    };
    let side = |key: &str| -> Result<u32> {
        let v = crate::jp2::xml_value(&xml, key)
            .with_context(|| format!("{}: FITS header has no {key}", path.display()))?;
        JP2_SIDE
            .parse(&v)
            .map_err(|e| anyhow::anyhow!("{}: FITS {key}: {e}", path.display()))
    };
    let (w, h) = (side("NAXIS1")?, side("NAXIS2")?);
    let cdelt = num("CDELT1")?;
    if cdelt <= 0.0 {
        bail!("{}: FITS CDELT1 is {cdelt}", path.display());
    }
    // FITS pixels are 1-based and count rows from the bottom; the image's rows run from
    // the top (north up).
    let disk = Disk {
        cx: num("CRPIX1")? - 1.0,
        cy: h as f64 - num("CRPIX2")?,
        radius: num("RSUN_OBS")? / cdelt,
        b0: num("CRLT_OBS")?,
    };
    Ok((disk, w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JP2 holding only its signature and an `xml ` box with these FITS values.
    fn header_only_jp2(dir: &Path, naxis1: &str) -> std::path::PathBuf {
        let xml = format!(
            "<fits><NAXIS1>{naxis1}</NAXIS1><NAXIS2>4096</NAXIS2><CDELT1>0.5</CDELT1>\
             <CRPIX1>2048.5</CRPIX1><CRPIX2>2048.5</CRPIX2><RSUN_OBS>950</RSUN_OBS>\
             <CRLT_OBS>1.5</CRLT_OBS></fits>"
        );
        let mut bytes = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10];
        bytes.extend_from_slice(&u32::try_from(xml.len() + 8).unwrap().to_be_bytes());
        bytes.extend_from_slice(b"xml ");
        bytes.extend_from_slice(xml.as_bytes());
        let path = dir.join("m.jp2");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_side_in_the_fits_header_outside_a_jp2s_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, w, h) = jp2_disk(&header_only_jp2(dir.path(), "4096")).unwrap();
        assert_eq!((w, h, disk.radius), (4096, 4096, 1900.0));
        for bad in ["1e20", "0", "-4096", "4096.5", "NaN"] {
            let path = header_only_jp2(dir.path(), bad);
            let err = format!("{:#}", jp2_disk(&path).unwrap_err());
            assert!(
                err.contains("m.jp2: FITS NAXIS1") && err.contains(bad),
                "{bad}: {err}"
            );
        }
    }
}
