//! Does an explanation point where the flare happens? For each positive instance whose
//! forecast window's largest flare has a catalogue position, the flare's site is rotated
//! back to the image's time and projected onto the image; each map is scored by the
//! fraction of its mass within a radius of the site, and by a pointing-game hit when
//! its maximum lies there. Central (|lon| and |lat| <= 70 degrees) and near-limb flares
//! are reported apart, as the paper's location analysis does.

use super::geometry::{self, Disk};
use super::{explain, Method, Options};
use crate::catalog::Flare;
use crate::model::LoadedModel;
use crate::text_table::{
    Col::{Left, Right},
    Table,
};
use anyhow::{Context, Result};
use chrono::{Duration, NaiveDateTime};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Where a flare was: central or near the limb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Zone {
    Central,
    NearLimb,
}

impl Zone {
    /// The paper's split: central when |lon| <= 70 and |lat| <= 70 degrees.
    pub fn of(lon: f64, lat: f64) -> Zone {
        if lon.abs() <= 70.0 && lat.abs() <= 70.0 {
            Zone::Central
        } else {
            Zone::NearLimb
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Zone::Central => "central",
            Zone::NearLimb => "near-limb",
        }
    }
}

/// One map's score against one flare site.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Score {
    /// Fraction of the map's (non-negative) mass within the radius.
    pub mass: f64,
    /// The map's maximum lies within the radius.
    pub hit: bool,
}

/// Scores a non-negative map [H, W] against the site (column, row) with `radius` pixels.
pub fn score(heat: &Tensor, site: (f64, f64), radius: f64) -> Score {
    let inside = circle(heat.size(), site, radius, heat.device());
    let heat = heat.to_kind(Kind::Double).clamp_min(0.0);
    let total = heat.sum(Kind::Double).double_value(&[]);
    let mass = if total > 0.0 {
        (&heat * &inside).sum(Kind::Double).double_value(&[]) / total
    } else {
        0.0
    };
    let w = heat.size()[1];
    let arg = heat.view([-1]).argmax(0, false).int64_value(&[]);
    let (x, y) = ((arg % w) as f64, (arg / w) as f64);
    let hit = total > 0.0 && (x - site.0).powi(2) + (y - site.1).powi(2) <= radius * radius;
    Score { mass, hit }
}

/// 1.0 at the pixels whose centres lie within `radius` of `centre`, [H, W] double.
fn circle(size: Vec<i64>, centre: (f64, f64), radius: f64, device: tch::Device) -> Tensor {
    let opts = (Kind::Double, device);
    let ys = Tensor::arange(size[0], opts).view([-1, 1]);
    let xs = Tensor::arange(size[1], opts).view([1, -1]);
    let d2 = (xs - centre.0).square() + (ys - centre.1).square();
    d2.le(radius * radius).to_kind(Kind::Double)
}

/// The mass a map spread evenly over the disk would have within the radius: the chance level.
fn uniform_mass(size: Vec<i64>, disk: &Disk, site: (f64, f64), radius: f64) -> f64 {
    let on_disk = circle(
        size.clone(),
        (disk.cx, disk.cy),
        disk.radius,
        tch::Device::Cpu,
    );
    let near = circle(size, site, radius, tch::Device::Cpu);
    let total = on_disk.sum(Kind::Double).double_value(&[]);
    (on_disk * near).sum(Kind::Double).double_value(&[]) / total
}

/// The flare an instance at `t` is scored against: the window's (t, t + 24 h) largest
/// flare of class >= M1.0 that has a position.
pub fn window_flare(flares: &[Flare], t: NaiveDateTime) -> Option<&Flare> {
    let end = t + Duration::hours(24) - Duration::seconds(1);
    flares
        .iter()
        .filter(|f| f.start > t && f.start <= end && f.class.flux() >= 1e-5)
        .filter(|f| f.lon.is_some() && f.lat.is_some())
        .fold(None, |best: Option<&Flare>, f| match best {
            Some(b) if b.class.flux() >= f.class.flux() => Some(b),
            _ => Some(f),
        })
}

/// An image's disk, at the size the model sees it (`width` x `height`): from the FITS
/// header for a JP2, else measured on the (resized) image with B0 from the date.
pub fn image_disk(path: &Path, image: &image::GrayImage, t: NaiveDateTime) -> Result<Disk> {
    let is_jp2 = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jp2") || e.eq_ignore_ascii_case("j2k"));
    let (w, h) = image.dimensions();
    if is_jp2 {
        let (disk, fw, fh) = geometry::jp2_disk(path)?;
        Ok(disk.resized(fw, fh, w, h))
    } else {
        geometry::measure_disk(image, t).with_context(|| path.display().to_string())
    }
}

/// One scored instance.
#[derive(Debug, serde::Serialize)]
pub struct Instance {
    pub image: PathBuf,
    pub flare_start: NaiveDateTime,
    pub flare_class: String,
    /// The flare's Stonyhurst position (degrees) at its start.
    pub lon: f64,
    pub lat: f64,
    pub zone: Zone,
    /// The site on the model's input (pixels: column, row).
    pub x: f64,
    pub y: f64,
    /// Chance level: the mass of a map uniform over the disk.
    pub uniform_mass: f64,
    /// (map, score) for every method's maps.
    pub scores: Vec<(String, Score)>,
}

/// A summary row: one map over the instances of one zone.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub map: String,
    pub zone: Zone,
    pub instances: usize,
    pub mean_mass: f64,
    pub hits: usize,
    pub hit_rate: f64,
    pub mean_uniform_mass: f64,
}

/// The whole evaluation.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// Radius in solar radii.
    pub radius: f64,
    pub positives: usize,
    /// Positives without a located >= M1.0 flare in their window.
    pub unlocated: usize,
    /// Positives whose flare site was behind the limb at the image's time.
    pub behind_limb: usize,
    pub rows: Vec<Row>,
    pub instances: Vec<Instance>,
}

/// The instances to score: image path and issue time.
pub struct Positive {
    pub image: PathBuf,
    pub time: NaiveDateTime,
}

/// Where a fold's positives and their flares are.
pub struct FoldSpec<'a> {
    /// GOES catalogue with flare positions.
    pub catalog: &'a Path,
    /// Label folder written by `flarecast label`.
    pub labels: &'a Path,
    pub fold: u32,
    /// Image tree the label table's paths are relative to.
    pub images: &'a Path,
}

/// The positive validation instances of a fold.
pub fn fold_positives(spec: &FoldSpec) -> Result<Vec<Positive>> {
    let samples = crate::data::read_fold_split(spec.labels, spec.fold, crate::data::Split::Val)?;
    let mut positives = Vec::new();
    for s in samples.iter().filter(|s| s.target == 1) {
        let (t, _) = crate::instant::Instant::from_path(&s.label)
            .with_context(|| format!("{}: no time in the image name", s.label))?;
        positives.push(Positive {
            image: spec.images.join(&s.label),
            time: t.0,
        });
    }
    Ok(positives)
}

/// [`pointing`] on a fold's positives and its catalogue; `start` learns how many there are.
#[allow(clippy::too_many_arguments)]
pub fn pointing_fold(
    model: &LoadedModel,
    spec: &FoldSpec,
    methods: &[Method],
    opts: &Options,
    im_size: crate::im_size::ImSize,
    radius: f64,
    start: impl FnOnce(usize),
    done: impl FnMut(),
) -> Result<Report> {
    let flares = crate::catalog::read(spec.catalog, None, false)?.flares;
    let positives = fold_positives(spec)?;
    start(positives.len());
    pointing(
        model, &positives, &flares, methods, opts, im_size, radius, done,
    )
}

/// Scores `methods` on `positives` against the catalogue's `flares`; `radius` in solar
/// radii; `done` is called after each positive.
#[allow(clippy::too_many_arguments)]
pub fn pointing(
    model: &LoadedModel,
    positives: &[Positive],
    flares: &[Flare],
    methods: &[Method],
    opts: &Options,
    im_size: crate::im_size::ImSize,
    radius: f64,
    mut done: impl FnMut(),
) -> Result<Report> {
    if !(radius > 0.0 && radius.is_finite()) {
        return Err(crate::setting::bad(
            "radius",
            format!("the pointing radius must be a positive number, got {radius}"),
        ));
    }
    let device = model.vs.device();
    let mut instances = Vec::new();
    let (mut unlocated, mut behind_limb) = (0, 0);
    for p in positives {
        let Some(flare) = window_flare(flares, p.time) else {
            unlocated += 1;
            done();
            continue;
        };
        let (lon, lat) = (flare.lon.unwrap_or_default(), flare.lat.unwrap_or_default());
        let inst = crate::preprocess::Input::read(&p.image)?.single(im_size.get())?;
        let gray = inst.gray()?;
        opts.check(gray.height().into(), gray.width().into())?;
        let disk = image_disk(&p.image, &gray, p.time)?;
        let lon_then = geometry::rotate(lon, lat, flare.start, p.time);
        let Some(site) = disk.project(lon_then, lat) else {
            behind_limb += 1;
            done();
            continue;
        };
        let radius_px = radius * disk.radius;
        let x = inst.tensor.unsqueeze(0).to_device(device);
        let mut scores = Vec::new();
        for &method in methods {
            let exp =
                explain(model, &x, method, opts).with_context(|| p.image.display().to_string())?;
            for map in &exp.maps {
                let label = if method == Method::Attention {
                    format!("attention {}", map.name)
                } else {
                    method.name().to_string()
                };
                scores.push((label, score(&map.heat, site, radius_px)));
            }
        }
        let (w, h) = gray.dimensions();
        instances.push(Instance {
            image: p.image.clone(),
            flare_start: flare.start,
            flare_class: flare.class.to_string(),
            lon,
            lat,
            zone: Zone::of(lon, lat),
            x: site.0,
            y: site.1,
            uniform_mass: uniform_mass(vec![h as i64, w as i64], &disk, site, radius_px),
            scores,
        });
        done();
    }
    Ok(Report {
        radius,
        positives: positives.len(),
        unlocated,
        behind_limb,
        rows: summarise(&instances),
        instances,
    })
}

/// Per map and zone: instances, mean mass, hits and hit rate, chance mass.
fn summarise(instances: &[Instance]) -> Vec<Row> {
    let mut maps: Vec<String> = Vec::new();
    for i in instances {
        for (m, _) in &i.scores {
            if !maps.contains(m) {
                maps.push(m.clone());
            }
        }
    }
    let mut rows = Vec::new();
    for map in &maps {
        for zone in [Zone::Central, Zone::NearLimb] {
            let mut n = 0;
            let (mut mass, mut hits, mut uniform) = (0.0, 0, 0.0);
            for i in instances.iter().filter(|i| i.zone == zone) {
                if let Some((_, s)) = i.scores.iter().find(|(m, _)| m == map) {
                    n += 1;
                    mass += s.mass;
                    hits += s.hit as usize;
                    uniform += i.uniform_mass;
                }
            }
            let mean = |v: f64| if n > 0 { v / n as f64 } else { 0.0 };
            rows.push(Row {
                map: map.clone(),
                zone,
                instances: n,
                mean_mass: mean(mass),
                hits,
                hit_rate: mean(hits as f64),
                mean_uniform_mass: mean(uniform),
            });
        }
    }
    rows
}

/// The summary as a text table.
pub fn table(report: &Report) -> String {
    let mut t = Table::new(
        [
            Left(22),
            Left(9),
            Right(9),
            Right(9),
            Right(6),
            Right(8),
            Right(9),
        ],
        [
            "map",
            "zone",
            "instances",
            "mass",
            "hits",
            "hit rate",
            "chance",
        ],
    );
    for r in &report.rows {
        t.row([
            r.map.clone(),
            r.zone.name().into(),
            r.instances.to_string(),
            format!("{:.4}", r.mean_mass),
            r.hits.to_string(),
            format!("{:.4}", r.hit_rate),
            format!("{:.4}", r.mean_uniform_mass),
        ]);
    }
    let mut out = t.to_string();
    out += &format!(
        "{} positives: {} scored, {} without a located >= M1.0 flare, {} with the site behind the limb; radius {} solar radii\n",
        report.positives,
        report.instances.len(),
        report.unlocated,
        report.behind_limb,
        report.radius
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_and_hit() {
        let mut heat = Tensor::zeros([9, 9], (Kind::Float, tch::Device::Cpu));
        let _ = heat.get(2).get(3).fill_(3.0);
        let _ = heat.get(8).get(8).fill_(1.0);
        let s = score(&heat, (3.0, 2.0), 1.5);
        assert_eq!(
            s,
            Score {
                mass: 0.75,
                hit: true
            }
        );
        let s = score(&heat, (8.0, 8.0), 1.0);
        assert_eq!(
            s,
            Score {
                mass: 0.25,
                hit: false
            }
        );
        let _ = heat.zero_();
        assert_eq!(
            score(&heat, (0.0, 0.0), 2.0),
            Score {
                mass: 0.0,
                hit: false
            }
        );
        assert_eq!(Zone::of(-71.0, 10.0), Zone::NearLimb);
        assert_eq!(Zone::of(70.0, -70.0), Zone::Central);
    }
}
