//! GOES flare catalogues read into one flare type. Four real formats are recognised from
//! the header: the integrated list (`start_time, goes_class, fl_lon, fl_lat`), HEK/SunPy
//! exports (`event_starttime, goes_class|fl_goescls, hgs_lon, hgs_lat`), the SWPC event
//! list (`date` + `HHMM` `start_time`, no location) and the SSW/GEV joined list
//! (`flare_start, class, loc` like `S06W07`). Optional `satellite` (or `goes_sat`) and
//! `scale` columns say where each class comes from; exact duplicate rows are dropped.

mod class;
pub mod fetch;
mod fields;
mod scale;
pub mod store;

pub use class::{ClassError, GoesClass};
pub use scale::{carries_factor, class_on, FluxScale, Satellite};

use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// One flare: start time (UTC), class, and Stonyhurst longitude/latitude in degrees
/// (west and north positive) when the catalogue knows them; the satellite when named and
/// the flux scale of the class (operational where the catalogue does not say).
#[derive(Clone, Debug, PartialEq)]
pub struct Flare {
    pub start: NaiveDateTime,
    pub class: GoesClass,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub satellite: Option<Satellite>,
    pub scale: FluxScale,
}

/// The catalogue layouts that are understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Integrated,
    Hek,
    Swpc,
    Ssw,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Integrated => "integrated",
            Format::Hek => "hek",
            Format::Swpc => "swpc",
            Format::Ssw => "ssw",
        }
    }

    /// The layout a header belongs to, or None.
    pub fn detect(header: &[String]) -> Option<Format> {
        let has = |n: &str| header.iter().any(|h| h == n);
        if has("flare_start") && has("class") {
            Some(Format::Ssw)
        } else if has("event_starttime") && (has("goes_class") || has("fl_goescls")) {
            Some(Format::Hek)
        } else if has("date") && has("start_time") && has("goes_class") && !has("fl_lon") {
            Some(Format::Swpc)
        } else if has("start_time") && has("goes_class") {
            Some(Format::Integrated)
        } else {
            None
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A catalogue row that cannot be used. `line` counts lines of the file from 1, header
/// included, as an editor shows them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("{file}:{line}: GOES class {value:?} does not parse (expected a letter A, B, C, M or X and a number, e.g. M2.3)")]
    Class {
        file: String,
        line: u64,
        value: String,
    },
    #[error("{file}:{line}: {column} {value:?} is not a time")]
    Time {
        file: String,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{file}:{line}: {column} {value:?} is not a location")]
    Location {
        file: String,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{file}:{line}: scale {value:?} is neither operational nor science")]
    Scale {
        file: String,
        line: u64,
        value: String,
    },
    #[error("{file}:{line}: the row has {found} fields, too few for column {column}")]
    ShortRow {
        file: String,
        line: u64,
        column: String,
        found: usize,
    },
}

impl RowError {
    pub fn line(&self) -> u64 {
        match self {
            RowError::Class { line, .. }
            | RowError::Time { line, .. }
            | RowError::Location { line, .. }
            | RowError::Scale { line, .. }
            | RowError::ShortRow { line, .. } => *line,
        }
    }
}

/// A read catalogue: flares in file order plus the rows skipped with `skip_bad_rows`
/// and the number of rows dropped as exact repeats of an earlier row.
#[derive(Debug)]
pub struct Catalog {
    pub format: Format,
    pub flares: Vec<Flare>,
    pub rejected: Vec<RowError>,
    pub duplicates: usize,
}

/// Reads a catalogue file. `format: None` detects it from the header. A bad row is an
/// error naming file, line and value unless `skip_bad_rows`, which collects it instead.
pub fn read(path: &Path, format: Option<Format>, skip_bad_rows: bool) -> Result<Catalog> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening catalogue {}", path.display()))?;
    parse(
        std::io::BufReader::new(file),
        &path.display().to_string(),
        format,
        skip_bad_rows,
    )
}

/// `read` on any reader; `name` is the file name used in messages.
pub fn parse(
    input: impl Read,
    name: &str,
    format: Option<Format>,
    skip_bad_rows: bool,
) -> Result<Catalog> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(input);
    let header: Vec<String> = fields::header_names(&mut rdr, name)?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let format = match format.or_else(|| Format::detect(&header)) {
        Some(f) => f,
        None => bail!(
            "{name}: unknown catalogue layout (header {:?}); expected start_time/goes_class/fl_lon/fl_lat, \
             event_starttime/goes_class/hgs_lon/hgs_lat, date/start_time/goes_class or flare_start/class/loc",
            header.join(",")
        ),
    };
    let cols = fields::Columns::new(format, &header)
        .with_context(|| format!("{name}: {format} catalogue"))?;
    let mut flares = Vec::new();
    let mut rejected = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(e).with_context(|| format!("reading {name}")),
        }
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        match cols.flare(&record, header.len(), name, line) {
            Ok(_) if !seen.insert(cols.identity(&record, header.len())) => duplicates += 1,
            Ok(f) => flares.push(f),
            Err(e) if skip_bad_rows => rejected.push(e),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Catalog {
        format,
        flares,
        rejected,
        duplicates,
    })
}

#[cfg(test)]
mod tests;
