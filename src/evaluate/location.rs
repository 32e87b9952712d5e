//! Where the flares were: the reference's full label tables
//! (`label,target,goes_class,fl_lon,fl_lat,...`, `goes_class` the window's maximum class)
//! joined to the predictions, to count hits and misses of X- and M-class instances on
//! the central disk (|lon| <= 70 and |lat| <= 70) and near the limb (otherwise).

use super::predictions::{instance_key, PredictionFile};
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Beyond this longitude or latitude (degrees) a flare counts as near the limb.
pub const CENTRAL_LIMIT_DEG: f64 = 70.0;

/// One row of a full label table.
#[derive(Clone, Debug, PartialEq)]
pub struct DetailsRow {
    /// `label` as written.
    pub label: String,
    /// The window's maximum GOES class (`NF` when none).
    pub goes_class: String,
    /// Stonyhurst longitude and latitude; `None` when unknown (`unk`, `UNK`, empty).
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    /// Which file, for errors.
    pub source: usize,
}

/// Full label tables, indexed by instance.
#[derive(Clone, Debug, Default)]
pub struct Details {
    pub files: Vec<PathBuf>,
    pub rows: HashMap<String, DetailsRow>,
    /// Raw text of the location columns by key (to write them back out unchanged).
    pub raw: HashMap<String, (String, String, String)>,
}

fn parse_coord(s: &str) -> Result<Option<f64>, ()> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("unk") || s.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    s.parse::<f64>().map(Some).map_err(|_| ())
}

/// Reads full label tables. Errors name the file and the 1-based line.
pub fn read_details(paths: &[PathBuf]) -> Result<Details> {
    let mut details = Details {
        files: paths.to_vec(),
        ..Default::default()
    };
    for (source, path) in paths.iter().enumerate() {
        read_one(path, source, &mut details)?;
    }
    Ok(details)
}

fn read_one(path: &Path, source: usize, details: &mut Details) -> Result<()> {
    let shown = path.display();
    let (mut reader, cols) = super::table::open_with_columns(
        path,
        "label table",
        ["label", "goes_class", "fl_lon", "fl_lat"],
        "a full label table has label,target,goes_class,fl_lon,fl_lat",
    )?;
    let [label_col, class_col, lon_col, lat_col] = cols;
    let mut n = 0;
    for row in super::table::rows(&mut reader, path) {
        let row = row?;
        let (line, get) = (row.line, |c: usize| row.get(c));
        let label = row.required(label_col, "label")?;
        let coord = |c: usize, name: &str| {
            parse_coord(get(c)).map_err(|()| {
                anyhow::anyhow!("{shown}:{line}: {name} {:?} is not a number or unk", get(c))
            })
        };
        let row = DetailsRow {
            label: label.to_string(),
            goes_class: get(class_col).to_string(),
            lon: coord(lon_col, "fl_lon")?,
            lat: coord(lat_col, "fl_lat")?,
            source,
        };
        let key = instance_key(label);
        details.raw.insert(
            key.clone(),
            (
                get(class_col).to_string(),
                get(lon_col).to_string(),
                get(lat_col).to_string(),
            ),
        );
        details.rows.insert(key, row);
        n += 1;
    }
    if n == 0 {
        bail!("{shown}: no rows");
    }
    Ok(())
}

impl Details {
    /// Every details file must describe at least one predicted instance; otherwise it is
    /// the wrong file (another fold, another naming).
    pub fn check_every_file_matches(&self, files: &[PredictionFile]) -> Result<()> {
        let mut matched = vec![false; self.files.len()];
        for f in files {
            for k in &f.keys {
                if let Some(r) = self.rows.get(k) {
                    matched[r.source] = true;
                }
            }
        }
        for (path, ok) in self.files.iter().zip(matched) {
            if !ok {
                let example = self
                    .rows
                    .values()
                    .find(|r| self.files[r.source] == *path)
                    .map(|r| r.label.as_str());
                bail!(
                    "{}: no row matches any prediction (rows from line 2 on, e.g. {:?}, name no instance of {})",
                    path.display(),
                    example.unwrap_or(""),
                    files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", ")
                );
            }
        }
        Ok(())
    }
}

/// Forecasts in one zone: predicted positive, predicted negative, and pos / (pos + neg).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ZoneCounts {
    pub pos: u64,
    pub neg: u64,
    pub recall: f64,
}

impl ZoneCounts {
    fn add(&mut self, predicted: bool) {
        if predicted {
            self.pos += 1
        } else {
            self.neg += 1
        }
        self.recall = self.pos as f64 / (self.pos + self.neg) as f64;
    }
}

/// One flare class's breakdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ClassLocation {
    pub central: ZoneCounts,
    pub limb: ZoneCounts,
    /// Instances of the class with no known location.
    pub unknown: u64,
    /// Of which predicted positive.
    pub unknown_pos: u64,
    /// All instances of the class matched to a prediction.
    pub total: u64,
}

/// The X and M breakdowns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Location {
    #[serde(rename = "X")]
    pub x: ClassLocation,
    #[serde(rename = "M")]
    pub m: ClassLocation,
    /// Predictions with no row in the details.
    pub unmatched: u64,
}

/// Counts the X- and M-class instances of `files` by zone, forecast positive when
/// `prob >= threshold`.
pub fn location_analysis(files: &[PredictionFile], details: &Details, threshold: f64) -> Location {
    let mut loc = Location::default();
    for f in files {
        for (k, &p) in f.keys.iter().zip(&f.probs) {
            let Some(row) = details.rows.get(k) else {
                loc.unmatched += 1;
                continue;
            };
            let class = match row
                .goes_class
                .chars()
                .next()
                .map(|c| c.to_ascii_uppercase())
            {
                Some('X') => &mut loc.x,
                Some('M') => &mut loc.m,
                _ => continue,
            };
            let predicted = p >= threshold;
            class.total += 1;
            match (row.lon, row.lat) {
                (Some(lon), Some(lat))
                    if lon.abs() <= CENTRAL_LIMIT_DEG && lat.abs() <= CENTRAL_LIMIT_DEG =>
                {
                    class.central.add(predicted)
                }
                (Some(_), Some(_)) => class.limb.add(predicted),
                _ => {
                    class.unknown += 1;
                    class.unknown_pos += u64::from(predicted);
                }
            }
        }
    }
    loc
}
