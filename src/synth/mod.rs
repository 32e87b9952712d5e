//! A synthetic full-disk magnetogram archive with a flare catalogue that depends on
//! what the images show, so the whole pipeline can run without downloads.
//!
//! Active regions emerge, grow, decay and rotate differentially across the disk
//! ([`regions`]); each one flares at a rate and with a size distribution set by its
//! flux and complexity ([`flares`]); [`render`] draws them like Helioviewer's HMI JPGs.
//! Everything derives from one seed: the region population and the flares from one
//! ChaCha8 stream, each image's noise from its own stream (seed, image index), so images
//! can be rendered in parallel and in any order.

pub mod flares;
pub mod regions;
pub mod render;
pub mod sun;

use crate::bounded::{days, secs, Count, Span};
use crate::fsio::write_atomic;
use crate::instant::Instant;
use crate::progress::Progress;
use crate::setting;
use anyhow::{Context, Result};
use chrono::{Datelike, Duration, NaiveDateTime};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use flares::{goes_class, Flare};
pub use regions::Region;

/// Bumped whenever the generator's output changes for the same parameters, so an old
/// archive is not mistaken for a current one.
pub const GENERATOR_VERSION: u32 = 1;
pub const MANIFEST: &str = "synth.json";
pub const CATALOG: &str = "catalog.csv";
pub const IMAGES: &str = "images";
const JPEG_QUALITY: u8 = 95;

/// What defines an archive: the same parameters always give the same files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub start: NaiveDateTime,
    pub days: u32,
    pub cadence_s: u64,
    pub size: u32,
    pub seed: u64,
}

impl Params {
    /// Days of images: ten years at most.
    pub const DAYS: Count<u32> = Count::new("days", "days", 1, 3660);
    /// Time between images, in whole minutes ([`Params::validate`]).
    pub const CADENCE: Span = Span::new("cadence", "cadence", secs(60), days(366));
    /// Image side in pixels.
    pub const SIZE: Count<u32> = Count::new("size", "image size", 64, 4096);

    pub fn validate(&self) -> Result<()> {
        Self::DAYS.check(self.days)?;
        Self::CADENCE.check(std::time::Duration::from_secs(self.cadence_s))?;
        if !self.cadence_s.is_multiple_of(60) {
            return Err(setting::bad(
                "cadence",
                format!(
                    "a cadence of {} s is not a whole number of minutes",
                    self.cadence_s
                ),
            ));
        }
        Self::SIZE.check(self.size)?;
        Ok(())
    }

    /// The image times: from the start, every cadence, before start + days.
    pub fn instants(&self) -> Vec<NaiveDateTime> {
        let end = self.start + Duration::days(self.days as i64);
        let step = Duration::seconds(self.cadence_s as i64);
        std::iter::successors(Some(self.start), |t| Some(*t + step))
            .take_while(|t| *t < end)
            .collect()
    }

    fn hours_after_start(&self, t: NaiveDateTime) -> f64 {
        (t - self.start).num_seconds() as f64 / 3600.0
    }
}

/// The simulated Sun behind an archive: regions, flares and image times.
pub struct Plan {
    pub regions: Vec<Region>,
    pub flares: Vec<Flare>,
    pub instants: Vec<NaiveDateTime>,
}

/// Simulates the regions and the flare catalogue (no images). Flares are drawn up to a
/// day past the last image so its 24 h window is complete.
pub fn plan(params: &Params) -> Result<Plan> {
    params.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let hours = params.days as i64 * 24 + 24;
    let year = params.start.year() as f64 + params.start.ordinal0() as f64 / 365.25;
    let regions = regions::populate(&mut rng, hours as f64, year);
    let flares = flares::simulate(&mut rng, &regions, params.start, hours);
    Ok(Plan {
        regions,
        flares,
        instants: params.instants(),
    })
}

/// Renders the 8-bit grey image at `index` of the plan (its noise from stream index+1).
pub fn render_image(params: &Params, plan: &Plan, index: usize) -> Vec<u8> {
    let t = plan.instants[index];
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    rng.set_stream(index as u64 + 1);
    let disk = render::Disk::new(params.size as usize);
    render::render(
        &plan.regions,
        params.hours_after_start(t),
        sun::b0_deg(t),
        &disk,
        &mut rng,
    )
}

/// Whether a flare of class >= M1.0 starts in (t, t + 23:59:59], as the labeller decides.
pub fn is_positive(flares: &[Flare], t: NaiveDateTime) -> bool {
    let end = t + Duration::seconds(86399);
    let from = flares.partition_point(|f| f.start <= t);
    // Judged on the catalogue's class string (M1.0 and above), as the labeller reads it.
    flares[from..]
        .iter()
        .take_while(|f| f.start <= end)
        .any(|f| matches!(f.class().as_bytes().first(), Some(b'M' | b'X')))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QuarterStats {
    /// Calendar quarter of the instance's month (fold k validates on quarter k).
    pub quarter: u32,
    pub instances: usize,
    pub positives: usize,
    pub positive_rate: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub out: PathBuf,
    pub params: Params,
    pub images: usize,
    pub images_written: usize,
    pub images_reused: usize,
    pub regions: usize,
    pub flares: usize,
    pub flares_c: usize,
    pub flares_m: usize,
    pub flares_x: usize,
    pub positives: usize,
    pub positive_rate: f64,
    pub quarters: Vec<QuarterStats>,
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    generator: u32,
    params: Params,
    complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
}

fn encode_jpeg(pixels: &[u8], size: u32) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(64 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, JPEG_QUALITY)
        .encode(pixels, size, size, image::ExtendedColorType::L8)
        .context("JPEG encoding failed")?;
    Ok(buf)
}

/// Decides whether existing images in `out` may be reused, refusing to mix archives.
fn check_existing(out: &Path, params: &Params, force: bool) -> Result<bool> {
    let manifest_path = out.join(MANIFEST);
    if manifest_path.exists() {
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?;
        let old: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a synth manifest", manifest_path.display()))?;
        if old.generator == GENERATOR_VERSION && old.params == *params {
            return Ok(true);
        }
        if !force {
            return Err(setting::bad(
                "force",
                format!(
                    "{} holds a synthetic archive made with different parameters ({}, generator {}); \
                     replace it explicitly or choose another directory",
                    out.display(),
                    describe(&old.params),
                    old.generator
                ),
            ));
        }
        // It is our own archive: clear it so no image of the old one survives.
        for name in [IMAGES, CATALOG] {
            let p = out.join(name);
            if p.is_dir() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            } else if p.exists() {
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        return Ok(false);
    }
    if !force && (out.join(IMAGES).exists() || out.join(CATALOG).exists()) {
        return Err(setting::bad(
            "force",
            format!(
                "{} already holds {IMAGES}/ or {CATALOG} not written by synth (no {MANIFEST}); \
                 choose an empty directory or overwrite it explicitly",
                out.display()
            ),
        ));
    }
    Ok(false)
}

pub fn describe(p: &Params) -> String {
    format!(
        "start {}, {} days, cadence {} s, size {}, seed {}",
        p.start.format("%Y-%m-%dT%H:%M:%S"),
        p.days,
        p.cadence_s,
        p.size,
        p.seed
    )
}

fn write_manifest(out: &Path, manifest: &Manifest) -> Result<()> {
    let json = serde_json::to_string_pretty(manifest)?;
    write_atomic(&out.join(MANIFEST), format!("{json}\n").as_bytes())
}

/// Per-quarter positive rates of the image times, as the labeller will see them.
pub fn quarter_stats(flares: &[Flare], instants: &[NaiveDateTime]) -> Vec<QuarterStats> {
    let mut q: Vec<QuarterStats> = (1..=4)
        .map(|quarter| QuarterStats {
            quarter,
            ..Default::default()
        })
        .collect();
    for &t in instants {
        let s = &mut q[(t.month0() / 3) as usize];
        s.instances += 1;
        s.positives += is_positive(flares, t) as usize;
    }
    for s in &mut q {
        s.positive_rate = if s.instances > 0 {
            s.positives as f64 / s.instances as f64
        } else {
            0.0
        };
    }
    q.retain(|s| s.instances > 0);
    q
}

/// Writes (or completes) the archive in `out`: images, catalogue and manifest.
pub fn generate(params: &Params, out: &Path, force: bool, progress: &Progress) -> Result<Summary> {
    let started = std::time::Instant::now();
    params.validate()?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let reuse = check_existing(out, params, force)?;
    write_manifest(
        out,
        &Manifest {
            generator: GENERATOR_VERSION,
            params: params.clone(),
            complete: false,
            summary: None,
        },
    )?;

    let plan = plan(params)?;
    let images = out.join(IMAGES);
    let reused = AtomicUsize::new(0);
    let bar = progress.bar(
        plan.instants.len() as u64,
        "synth {bar:40} {pos}/{len} images {elapsed} (eta {eta})",
    );
    let rendered = (0..plan.instants.len())
        .into_par_iter()
        .try_for_each(|i| -> Result<()> {
            let path = images.join(Instant(plan.instants[i]).relative_path("jpg"));
            if reuse && path.is_file() {
                reused.fetch_add(1, Ordering::Relaxed);
            } else {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let jpeg = encode_jpeg(&render_image(params, &plan, i), params.size)?;
                write_atomic(&path, &jpeg)?;
            }
            bar.inc(1);
            Ok(())
        });
    bar.finish_and_clear();
    rendered?;

    let mut csv = Vec::new();
    flares::write_catalog(&mut csv, &plan.flares)?;
    write_atomic(&out.join(CATALOG), &csv)?;

    let count = |letter: char| {
        plan.flares
            .iter()
            .filter(|f| f.class().starts_with(letter))
            .count()
    };
    let quarters = quarter_stats(&plan.flares, &plan.instants);
    let positives: usize = quarters.iter().map(|q| q.positives).sum();
    let reused = reused.into_inner();
    let summary = Summary {
        out: out.to_path_buf(),
        params: params.clone(),
        images: plan.instants.len(),
        images_written: plan.instants.len() - reused,
        images_reused: reused,
        regions: plan.regions.len(),
        flares: plan.flares.len(),
        flares_c: count('C'),
        flares_m: count('M'),
        flares_x: count('X'),
        positives,
        positive_rate: positives as f64 / plan.instants.len().max(1) as f64,
        quarters,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_manifest(
        out,
        &Manifest {
            generator: GENERATOR_VERSION,
            params: params.clone(),
            complete: true,
            summary: Some(summary.clone()),
        },
    )?;
    Ok(summary)
}
