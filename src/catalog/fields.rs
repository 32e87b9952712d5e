//! Where each format keeps start time, class and location, and how those fields parse.

use super::{Flare, FluxScale, Format, GoesClass, RowError, Satellite};
use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, NaiveDateTime};

enum StartCol {
    DateTime(usize),
    /// SWPC: `YYYYMMDD` date and `HHMM` start.
    DateHhmm {
        date: usize,
        hhmm: usize,
    },
}

enum LocCols {
    None,
    /// Stonyhurst degrees in two numeric columns.
    LonLat {
        lon: usize,
        lat: usize,
    },
    /// `S06W07`-style codes; the second column is used where the first is blank.
    Code {
        main: usize,
        fallback: Option<usize>,
    },
}

/// Column indices (in header positions) of one catalogue.
pub(super) struct Columns {
    names: Vec<String>,
    start: StartCol,
    class: usize,
    loc: LocCols,
    satellite: Option<usize>,
    scale: Option<usize>,
}

fn find(header: &[String], name: &str) -> Option<usize> {
    header.iter().position(|h| h == name)
}

fn need(header: &[String], name: &str) -> Result<usize> {
    match find(header, name) {
        Some(i) => Ok(i),
        None => bail!("no column {name:?} in header {:?}", header.join(",")),
    }
}

impl Columns {
    pub(super) fn new(format: Format, header: &[String]) -> Result<Columns> {
        let (start, class, loc) = match format {
            Format::Integrated => (
                StartCol::DateTime(need(header, "start_time")?),
                need(header, "goes_class")?,
                LocCols::LonLat {
                    lon: need(header, "fl_lon")?,
                    lat: need(header, "fl_lat")?,
                },
            ),
            Format::Hek => (
                StartCol::DateTime(need(header, "event_starttime")?),
                match find(header, "goes_class") {
                    Some(i) => i,
                    None => need(header, "fl_goescls")?,
                },
                LocCols::LonLat {
                    lon: need(header, "hgs_lon")?,
                    lat: need(header, "hgs_lat")?,
                },
            ),
            Format::Swpc => (
                StartCol::DateHhmm {
                    date: need(header, "date")?,
                    hhmm: need(header, "start_time")?,
                },
                need(header, "goes_class")?,
                LocCols::None,
            ),
            Format::Ssw => {
                let start = StartCol::DateTime(need(header, "flare_start")?);
                let class = need(header, "class")?;
                let loc = match (find(header, "loc"), find(header, "aia_loc")) {
                    (Some(main), fallback) => LocCols::Code { main, fallback },
                    (None, Some(main)) => LocCols::Code {
                        main,
                        fallback: None,
                    },
                    (None, None) => bail!("no column \"loc\" in header {:?}", header.join(",")),
                };
                (start, class, loc)
            }
        };
        Ok(Columns {
            names: header.to_vec(),
            start,
            class,
            loc,
            satellite: find(header, "satellite").or_else(|| find(header, "goes_sat")),
            scale: find(header, "scale"),
        })
    }

    /// What makes two rows the same row: every field but unnamed (index) columns.
    pub(super) fn identity(&self, rec: &csv::StringRecord, header_len: usize) -> String {
        let shift = usize::from(rec.len() == header_len + 1);
        let mut key = String::new();
        for (i, field) in rec.iter().enumerate().skip(shift) {
            if self.names.get(i - shift).is_some_and(|n| !n.is_empty()) {
                key.push_str(field.trim());
                key.push('\u{1f}');
            }
        }
        key
    }

    /// Parses one record. A record one field longer than the header has a leading
    /// unnamed index column, so every field shifts by one.
    pub(super) fn flare(
        &self,
        rec: &csv::StringRecord,
        header_len: usize,
        file: &str,
        line: u64,
    ) -> Result<Flare, RowError> {
        let shift = usize::from(rec.len() == header_len + 1);
        let get = |i: usize| -> Result<&str, RowError> {
            rec.get(i + shift)
                .map(str::trim)
                .ok_or_else(|| RowError::ShortRow {
                    file: file.to_string(),
                    line,
                    column: self.names[i].clone(),
                    found: rec.len(),
                })
        };
        let bad_time = |i: usize, value: &str| RowError::Time {
            file: file.to_string(),
            line,
            column: self.names[i].clone(),
            value: value.to_string(),
        };
        let start = match self.start {
            StartCol::DateTime(i) => {
                let v = get(i)?;
                parse_time(v).ok_or_else(|| bad_time(i, v))?
            }
            StartCol::DateHhmm { date, hhmm } => {
                let (d, hm) = (get(date)?, get(hhmm)?);
                let day = NaiveDate::parse_from_str(d, "%Y%m%d").map_err(|_| bad_time(date, d))?;
                let time = parse_hhmm(hm).ok_or_else(|| bad_time(hhmm, hm))?;
                day.and_time(time)
            }
        };
        let cv = get(self.class)?;
        let class: GoesClass = cv.parse().map_err(|_| RowError::Class {
            file: file.to_string(),
            line,
            value: cv.to_string(),
        })?;
        let bad_loc = |i: usize, value: &str| RowError::Location {
            file: file.to_string(),
            line,
            column: self.names[i].clone(),
            value: value.to_string(),
        };
        let (lon, lat) = match self.loc {
            LocCols::None => (None, None),
            LocCols::LonLat { lon, lat } => {
                let (lo, la) = (get(lon)?, get(lat)?);
                (
                    parse_degrees(lo, 180.0).map_err(|_| bad_loc(lon, lo))?,
                    parse_degrees(la, 90.0).map_err(|_| bad_loc(lat, la))?,
                )
            }
            LocCols::Code { main, fallback } => {
                let mut col = main;
                let mut v = get(main)?;
                if let (true, Some(fb)) = (is_missing(v), fallback) {
                    col = fb;
                    v = get(fb)?;
                }
                match parse_code(v) {
                    Ok(Some((lon, lat))) => (Some(lon), Some(lat)),
                    Ok(None) => (None, None),
                    Err(()) => return Err(bad_loc(col, v)),
                }
            }
        };
        let satellite = match self.satellite {
            Some(i) => Satellite::parse(get(i)?),
            None => None,
        };
        let scale = match self.scale.map(get).transpose()? {
            Some(v) if !v.is_empty() => v.parse().map_err(|_| RowError::Scale {
                file: file.to_string(),
                line,
                value: v.to_string(),
            })?,
            _ => FluxScale::Operational,
        };
        Ok(Flare {
            start,
            class,
            lon,
            lat,
            satellite,
            scale,
        })
    }
}

/// The column names of a CSV header without a UTF-8 byte-order mark or padding; `name`
/// (the file) is for the error.
pub(crate) fn header_names<R: std::io::Read>(
    rdr: &mut csv::Reader<R>,
    name: &str,
) -> Result<Vec<String>> {
    Ok(rdr
        .headers()
        .with_context(|| format!("reading the header of {name}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect())
}

/// Catalogue time stamps: `2010-01-02 07:09:00`, ISO `T`, optional fraction and `Z`,
/// or minutes only.
pub(crate) fn parse_time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_end_matches('Z');
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

fn parse_hhmm(s: &str) -> Option<chrono::NaiveTime> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u32 = s[..2].parse().ok()?;
    let m: u32 = s[2..].parse().ok()?;
    chrono::NaiveTime::from_hms_opt(h, m, 0)
}

fn is_missing(v: &str) -> bool {
    v.is_empty() || v.eq_ignore_ascii_case("unk") || v.eq_ignore_ascii_case("nan")
}

/// A numeric coordinate; blank, `UNK` and `nan` are unknown.
fn parse_degrees(v: &str, limit: f64) -> Result<Option<f64>, ()> {
    let v = v.trim();
    if is_missing(v) {
        return Ok(None);
    }
    match v.parse::<f64>() {
        Ok(d) if d.is_finite() && d.abs() <= limit => Ok(Some(d)),
        _ => Err(()),
    }
}

/// `S06W07` -> (lon +7, lat -6): north and west positive.
fn parse_code(v: &str) -> Result<Option<(f64, f64)>, ()> {
    let v = v.trim();
    if is_missing(v) {
        return Ok(None);
    }
    let u = v.to_ascii_uppercase();
    let ns = u.chars().next().ok_or(())?;
    let ew_at = u.find(['E', 'W']).ok_or(())?;
    let lat: f64 = number(&u[1..ew_at])?;
    let lon: f64 = number(&u[ew_at + 1..])?;
    let lat = match ns {
        'N' => lat,
        'S' => -lat,
        _ => return Err(()),
    };
    let lon = if u[ew_at..].starts_with('W') {
        lon
    } else {
        -lon
    };
    if lat.abs() > 90.0 || lon.abs() > 180.0 {
        return Err(());
    }
    Ok(Some((lon, lat)))
}

fn number(s: &str) -> Result<f64, ()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse().map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_codes() {
        assert_eq!(parse_code("S06W07"), Ok(Some((7.0, -6.0))));
        assert_eq!(parse_code("N17E83"), Ok(Some((-83.0, 17.0))));
        assert_eq!(parse_code("n05e100"), Ok(Some((-100.0, 5.0))));
        assert_eq!(parse_code(""), Ok(None));
        assert_eq!(parse_code("UNK"), Ok(None));
        assert!(parse_code("X06W07").is_err());
        assert!(parse_code("S06").is_err());
        assert!(parse_code("S95W07").is_err());
        assert!(parse_code("SW07").is_err());
    }

    #[test]
    fn degrees_and_times() {
        assert_eq!(
            parse_degrees("-39.14127219935199", 180.0),
            Ok(Some(-39.14127219935199))
        );
        assert_eq!(parse_degrees("UNK", 90.0), Ok(None));
        assert_eq!(parse_degrees(" ", 90.0), Ok(None));
        assert!(parse_degrees("91", 90.0).is_err());
        assert!(parse_degrees("east", 180.0).is_err());
        let t = parse_time("2011-02-15T01:44:00.000").unwrap();
        assert_eq!(t.to_string(), "2011-02-15 01:44:00");
        assert_eq!(parse_time("2011-02-15 01:44").unwrap(), t);
        assert!(parse_time("2011-02-30 01:44:00").is_none());
        assert_eq!(parse_hhmm("0709").unwrap().to_string(), "07:09:00");
        assert!(parse_hhmm("2460").is_none());
        assert!(parse_hhmm("709").is_none());
    }
}
