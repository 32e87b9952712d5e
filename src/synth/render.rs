//! Renders a full-disk line-of-sight magnetogram the way Helioviewer's HMI JPGs look:
//! grey 127.5 = 0 G on the disk, black off the disk, saturation near +-1000 G.

use super::regions::{Blob, Region};
use super::sun;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

/// Disk radius as a fraction of the image width, measured on a real 512x512 HMI JPG
/// (197 px; RSUN_OBS 945.4" at 0.6"/px over 4096 px gives 196.96).
pub const RADIUS_FRACTION: f64 = 197.0 / 512.0;
/// Grey levels per gauss: the Helioviewer scaling saturates at about +-1000 G.
const GAIN: f64 = 127.5 / 980.0;
/// Instrument noise (grey levels, 1 sigma), measured on the quiet disk of the real JPG.
const NOISE_GREY: f64 = 2.2;
/// Quiet-Sun network: clusters on the visible hemisphere (supergranule boundaries), each
/// of a few small elements (independent of image size).
const NETWORK_CLUSTERS: usize = 900;
const NETWORK_PER_CLUSTER: usize = 9;

/// The disk geometry of one image size.
pub struct Disk {
    pub size: usize,
    pub radius: f64,
    pub centre: f64,
}

impl Disk {
    pub fn new(size: usize) -> Self {
        Disk {
            size,
            radius: RADIUS_FRACTION * size as f64,
            centre: (size as f64 - 1.0) / 2.0,
        }
    }

    /// Adds a Gaussian element of radial field to `field`, measured along the surface
    /// (so it is foreshortened near the limb). Its width is widened by the pixel
    /// footprint at constant flux, as area averaging from the 4096 px original does.
    fn splat(&self, field: &mut [f32], b: &Blob, b0: f64) {
        let c = sun::to_observer(b.lon, b.lat, b0);
        let s = b.sigma.to_radians();
        let pix = 0.5 / self.radius;
        let s2 = s * s + pix * pix;
        let amp = b.amp * s * s / s2;
        let reach = 3.5 * s2.sqrt();
        if c[2] < -reach {
            return;
        }
        let r = self.radius;
        let (px, py) = (self.centre + c[0] * r, self.centre - c[1] * r);
        let half = reach * r + 1.0;
        let max = self.size as f64 - 1.0;
        let (x0, x1) = ((px - half).floor().max(0.0), (px + half).ceil().min(max));
        let (y0, y1) = ((py - half).floor().max(0.0), (py + half).ceil().min(max));
        if x0 > x1 || y0 > y1 {
            return;
        }
        let inv = -0.5 / s2;
        let reach2 = reach * reach;
        for y in y0 as usize..=y1 as usize {
            let yy = (self.centre - y as f64) / r;
            let (first, last) = (y * self.size + x0 as usize, y * self.size + x1 as usize);
            for (x, cell) in (x0 as usize..).zip(&mut field[first..=last]) {
                let xx = (x as f64 - self.centre) / r;
                let rr = xx * xx + yy * yy;
                if rr >= 1.0 {
                    continue;
                }
                let zz = (1.0 - rr).sqrt();
                let d2 = (xx - c[0]).powi(2) + (yy - c[1]).powi(2) + (zz - c[2]).powi(2);
                if d2 < reach2 {
                    *cell += (amp * (inv * d2).exp()) as f32;
                }
            }
        }
    }
}

/// One standard-normal-ish deviate from a single u32 (Irwin-Hall of its four bytes):
/// cheap enough for a quarter of a million pixels per image.
fn quick_normal(rng: &mut ChaCha8Rng) -> f64 {
    let v = rng.next_u32();
    let sum = (v & 0xff) + ((v >> 8) & 0xff) + ((v >> 16) & 0xff) + (v >> 24);
    (sum as f64 - 510.0) / 147.8
}

/// The magnetogram at `t_h` hours after the archive's start, as 8-bit grey pixels.
pub fn render(regions: &[Region], t_h: f64, b0: f64, disk: &Disk, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = disk.size;
    let mut field = vec![0f32; n * n];
    let mut blobs = Vec::new();
    for region in regions {
        if t_h > region.t0_h && t_h < region.end_h() {
            region.blobs(t_h, &mut blobs);
        }
    }
    // Quiet-Sun network: clusters of small elements, mostly of one polarity each.
    for _ in 0..NETWORK_CLUSTERS {
        let lat = rng.random_range(-1.0f64..1.0).asin().to_degrees();
        let lon = rng.random_range(-95.0..95.0);
        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
        let coslat = lat.to_radians().cos().max(0.2);
        for _ in 0..NETWORK_PER_CLUSTER {
            let s = if rng.random::<f64>() < 0.8 {
                sign
            } else {
                -sign
            };
            let amp = 60.0 - 260.0 * (1.0 - rng.random::<f64>()).ln();
            let (du, dv) = (rng.random_range(-1.2..1.2), rng.random_range(-1.2..1.2));
            blobs.push(Blob {
                lon: lon + du / coslat,
                lat: lat + dv,
                sigma: 0.13,
                amp: s * amp,
            });
        }
    }
    for b in &blobs {
        disk.splat(&mut field, b, b0);
    }
    let mut pixels = vec![0u8; n * n];
    let r = disk.radius;
    for y in 0..n {
        let yy = disk.centre - y as f64;
        for x in 0..n {
            let xx = x as f64 - disk.centre;
            let dist = (xx * xx + yy * yy).sqrt();
            // Fraction of the pixel on the disk: a soft, one-pixel limb like the real one.
            let cover = (r + 0.5 - dist).clamp(0.0, 1.0);
            if cover == 0.0 {
                continue;
            }
            let mu = (1.0 - (dist / r).min(1.0).powi(2)).sqrt();
            let los = field[y * n + x] as f64 * mu;
            let grey = 127.5 + GAIN * los + NOISE_GREY * quick_normal(rng);
            pixels[y * n + x] = (grey.clamp(0.0, 255.0) * cover).round() as u8;
        }
    }
    pixels
}
