//! The catalogue file `download catalog` writes and appends to: the integrated layout
//! `label` reads (`start_time, goes_class, fl_lon, fl_lat`) with the peak and end times,
//! the NOAA region, and where each row comes from (source, satellite, flux scale).

use super::fields::parse_time;
use super::{FluxScale, GoesClass, Satellite};
use crate::fsio;
use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use std::collections::HashSet;
use std::path::Path;

/// The columns, in order.
pub const HEADER: [&str; 10] = [
    "start_time",
    "peak_time",
    "end_time",
    "goes_class",
    "fl_lon",
    "fl_lat",
    "noaa_ar",
    "source",
    "satellite",
    "scale",
];

const TIME: &str = "%Y-%m-%d %H:%M:%S";

/// One flare as a source reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub start: NaiveDateTime,
    pub peak: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    pub class: GoesClass,
    /// Stonyhurst degrees, west and north positive.
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    /// NOAA active region number (5 digits after 2002-06-14).
    pub region: Option<u32>,
    /// `ncei`, `hek` or `swpc`.
    pub source: String,
    pub satellite: Option<Satellite>,
    pub scale: FluxScale,
}

impl Record {
    /// Rows with the same start and peak are the same flare.
    pub fn key(&self) -> (NaiveDateTime, Option<NaiveDateTime>) {
        (self.start, self.peak)
    }

    fn fields(&self) -> [String; 10] {
        let time =
            |t: Option<NaiveDateTime>| t.map_or_else(String::new, |t| t.format(TIME).to_string());
        let num = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
        [
            self.start.format(TIME).to_string(),
            time(self.peak),
            time(self.end),
            self.class.to_string(),
            num(self.lon),
            num(self.lat),
            self.region.map_or_else(String::new, |r| r.to_string()),
            self.source.clone(),
            self.satellite
                .as_ref()
                .map_or_else(String::new, |s| s.to_string()),
            self.scale.to_string(),
        ]
    }
}

/// Writes the catalogue atomically: a reader sees the old file or the new one.
pub fn write(path: &Path, records: &[Record]) -> Result<()> {
    fsio::write_atomic_with(path, |file| {
        let mut w = csv::Writer::from_writer(file);
        w.write_record(HEADER)?;
        for r in records {
            w.write_record(r.fields())?;
        }
        w.flush()?;
        Ok(())
    })
}

/// Reads a catalogue this module wrote; anything else is an error naming the file and line.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let name = path.display().to_string();
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("opening {name}"))?;
    let header: Vec<String> = rdr
        .headers()
        .with_context(|| format!("reading the header of {name}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header != HEADER {
        bail!(
            "{name} is not a catalogue written by flarecast (header {:?}, expected {:?}): \
             cannot merge into it",
            header.join(","),
            HEADER.join(",")
        );
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("reading {name}"))?;
        let line = rec.position().map_or(0, |p| p.line());
        out.push(parse_row(&rec).map_err(|e| anyhow::anyhow!("{name}:{line}: {e}"))?);
    }
    Ok(out)
}

fn parse_row(rec: &csv::StringRecord) -> Result<Record, String> {
    let f = |i: usize| rec.get(i).unwrap_or("").trim();
    let time = |i: usize| -> Result<Option<NaiveDateTime>, String> {
        match f(i) {
            "" => Ok(None),
            v => parse_time(v)
                .map(Some)
                .ok_or_else(|| format!("{} {v:?} is not a time", HEADER[i])),
        }
    };
    let num = |i: usize| -> Result<Option<f64>, String> {
        match f(i) {
            "" => Ok(None),
            v => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{} {v:?} is not a number", HEADER[i])),
        }
    };
    Ok(Record {
        start: time(0)?.ok_or("start_time is empty")?,
        peak: time(1)?,
        end: time(2)?,
        class: f(3).parse().map_err(|e: super::ClassError| e.to_string())?,
        lon: num(4)?,
        lat: num(5)?,
        region: match f(6) {
            "" => None,
            v => Some(
                v.parse()
                    .map_err(|_| format!("noaa_ar {v:?} is not a region number"))?,
            ),
        },
        source: f(7).to_string(),
        satellite: Satellite::parse(f(8)),
        scale: f(9).parse()?,
    })
}

/// The result of merging new rows into a catalogue.
#[derive(Debug)]
pub struct Merged {
    /// Every row, by start then peak time.
    pub records: Vec<Record>,
    /// New rows that were not there yet.
    pub added: usize,
    /// New rows the catalogue already held (same start and peak).
    pub already_present: usize,
}

/// `existing` plus the rows of `new` it lacks; an existing row wins over a new one.
pub fn merge(existing: Vec<Record>, new: Vec<Record>) -> Merged {
    let mut seen: HashSet<_> = existing.iter().map(Record::key).collect();
    let mut records = existing;
    let (mut added, mut already_present) = (0, 0);
    for r in new {
        if seen.insert(r.key()) {
            records.push(r);
            added += 1;
        } else {
            already_present += 1;
        }
    }
    records.sort_by_key(Record::key);
    Merged {
        records,
        added,
        already_present,
    }
}

/// Drops rows whose flare an earlier row already gave; returns how many.
pub fn dedup(records: &mut Vec<Record>) -> usize {
    let mut seen = HashSet::new();
    let before = records.len();
    records.retain(|r| seen.insert(r.key()));
    before - records.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(start: &str, peak: &str, class: &str) -> Record {
        Record {
            start: parse_time(start).unwrap(),
            peak: parse_time(peak),
            end: None,
            class: class.parse().unwrap(),
            lon: Some(-27.5),
            lat: None,
            region: Some(11429),
            source: "swpc".into(),
            satellite: Satellite::parse("15"),
            scale: FluxScale::Operational,
        }
    }

    #[test]
    fn writes_what_it_reads_and_label_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("goes.csv");
        let rows = vec![
            record("2012-03-07 00:02:00", "2012-03-07 00:24:00", "X5.4"),
            record("2012-03-07 01:05:00", "", "X1.3"),
        ];
        write(&path, &rows).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "start_time,peak_time,end_time,goes_class,fl_lon,fl_lat,noaa_ar,source,satellite,scale\n\
             2012-03-07 00:02:00,2012-03-07 00:24:00,,X5.4,-27.5,,11429,swpc,GOES-15,operational\n\
             2012-03-07 01:05:00,,,X1.3,-27.5,,11429,swpc,GOES-15,operational\n"
        );
        assert_eq!(read(&path).unwrap(), rows);
        let c = crate::catalog::read(&path, None, false).unwrap();
        assert_eq!(c.format, crate::catalog::Format::Integrated);
        assert_eq!(c.flares[0].satellite, Some(Satellite::Goes(15)));
        assert_eq!(c.flares[1].class.as_str(), "X1.3");
        assert_eq!((c.flares[1].lon, c.flares[1].lat), (Some(-27.5), None));
    }

    #[test]
    fn merge_keeps_existing_rows_and_adds_only_new_flares() {
        let a = record("2012-03-07 00:02:00", "2012-03-07 00:24:00", "X5.4");
        let b = record("2012-03-07 01:05:00", "2012-03-07 01:14:00", "X1.3");
        let mut b_revised = b.clone();
        b_revised.class = "X1.4".parse().unwrap();
        let m = merge(vec![b.clone()], vec![b_revised, a.clone()]);
        assert_eq!((m.added, m.already_present), (1, 1));
        assert_eq!(m.records, vec![a.clone(), b.clone()]);
        let mut v = vec![a.clone(), b.clone(), a.clone()];
        assert_eq!(dedup(&mut v), 1);
        assert_eq!(v, vec![a, b]);
    }

    #[test]
    fn a_foreign_file_is_not_merged_into() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paper.csv");
        std::fs::write(&path, "start_time,goes_class,fl_lon,fl_lat\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("is not a catalogue written by flarecast"), "{e}");
        std::fs::write(
            &path,
            format!(
                "{}\n2012-03-07 00:02:00,,,Q1,,,,swpc,,operational\n",
                HEADER.join(",")
            ),
        )
        .unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("paper.csv:2: \"Q1\" is not a GOES class"), "{e}");
    }
}
