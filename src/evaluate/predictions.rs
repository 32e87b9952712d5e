//! Prediction files, the reference's format: `timestamp,flare_prob,target`, one row per
//! instance; `timestamp` is the image path (the reference writes absolute paths).
//! `evaluate --model` adds `goes_class,fl_lon,fl_lat` when it has the fold's full label
//! table; the reader ignores columns past the three. [`PredictionRow`] is the row, read
//! by [`read_predictions`] and written by [`PredictionWriter`] (or [`write_predictions`]),
//! the only reader and writer of the format.

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The reference's columns, in its order.
const COLUMNS: [&str; 3] = ["timestamp", "flare_prob", "target"];
/// The full label table's columns `evaluate --model` adds.
const DETAIL_COLUMNS: [&str; 3] = ["goes_class", "fl_lon", "fl_lat"];

/// One row of a prediction file. Written, `flare_prob` is printed as Rust's `{}` prints an
/// f64 (the shortest string that reads back exactly, never an exponent) and `target` as
/// `0`/`1`; read, `target` also accepts `1.0`, `True` and `true` (and their negatives).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    #[serde(deserialize_with = "cell::timestamp")]
    pub timestamp: String,
    #[serde(
        serialize_with = "cell::display",
        deserialize_with = "cell::probability"
    )]
    pub flare_prob: f64,
    #[serde(serialize_with = "cell::zero_one", deserialize_with = "cell::target")]
    pub target: bool,
    /// The instance's flare as the full label table writes it: all three or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goes_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fl_lon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fl_lat: Option<String>,
}

impl PredictionRow {
    /// A row of the reference's three columns.
    pub fn new(timestamp: String, flare_prob: f64, target: bool) -> Self {
        PredictionRow {
            timestamp,
            flare_prob,
            target,
            goes_class: None,
            fl_lon: None,
            fl_lat: None,
        }
    }
}

/// How each cell is checked on reading and printed on writing. A read error is the
/// message alone: [`read_predictions`] puts the file and line before it.
mod cell {
    use super::*;
    use serde::de::Error;

    pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "" => Err(D::Error::custom("empty timestamp")),
            _ => Ok(s),
        }
    }

    pub fn probability<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let s = String::deserialize(d)?;
        let p: f64 = s
            .parse()
            .map_err(|_| D::Error::custom(format!("flare_prob {s:?} is not a number")))?;
        if !(0.0..=1.0).contains(&p) {
            return Err(D::Error::custom(format!(
                "flare_prob {s} is not a probability in [0, 1]"
            )));
        }
        Ok(p)
    }

    pub fn target<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "1" | "1.0" | "True" | "true" => Ok(true),
            "0" | "0.0" | "False" | "false" => Ok(false),
            _ => Err(D::Error::custom(format!("target {s:?} is not 0 or 1"))),
        }
    }

    /// `{}`, not the csv crate's float printing (`1e-5`, `1.0`): the files stay as
    /// they have always been written.
    pub fn display<S: Serializer>(p: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }

    pub fn zero_one<S: Serializer>(t: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(*t))
    }
}

/// Writes a prediction file: the header, then one line per row (`\n` endings, a cell
/// quoted only where it must be).
pub struct PredictionWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> PredictionWriter<W> {
    /// Writes the header; with `details`, the full label table's three columns follow the
    /// reference's, and every row must have them.
    pub fn new(out: W, details: bool) -> Result<Self> {
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(out);
        let extra = if details { &DETAIL_COLUMNS[..] } else { &[] };
        csv.write_record(COLUMNS.iter().chain(extra))?;
        Ok(PredictionWriter { csv })
    }

    /// Writes one row; a row whose columns differ from the header's is an error.
    pub fn write(&mut self, row: &PredictionRow) -> Result<()> {
        Ok(self.csv.serialize(row)?)
    }

    /// Flushes what is buffered and gives the output back.
    pub fn finish(self) -> Result<W> {
        self.csv
            .into_inner()
            .map_err(|e| anyhow!("writing predictions: {}", e.error()))
    }
}

/// Writes `rows` as the prediction file `path` (atomically), with the detail columns
/// when `details`.
pub fn write_predictions(path: &Path, rows: &[PredictionRow], details: bool) -> Result<()> {
    crate::fsio::write_atomic_with(path, |file| {
        let mut w = PredictionWriter::new(file, details)?;
        for row in rows {
            w.write(row)?;
        }
        w.finish()?;
        Ok(())
    })
}

/// One prediction file, column by column.
#[derive(Clone, Debug)]
pub struct PredictionFile {
    pub path: PathBuf,
    /// The `timestamp` column as written.
    pub timestamps: Vec<String>,
    /// The instance each row is about (see [`instance_key`]).
    pub keys: Vec<String>,
    pub probs: Vec<f64>,
    pub targets: Vec<bool>,
}

impl PredictionFile {
    /// The columns of `rows`, under the name `path`.
    pub fn from_rows(path: PathBuf, rows: &[PredictionRow]) -> Self {
        PredictionFile {
            path,
            timestamps: rows.iter().map(|r| r.timestamp.clone()).collect(),
            keys: rows.iter().map(|r| instance_key(&r.timestamp)).collect(),
            probs: rows.iter().map(|r| r.flare_prob).collect(),
            targets: rows.iter().map(|r| r.target).collect(),
        }
    }
}

/// The part of an image path that names the instance: the `YYYY/MM/DD/HMI.m....` tail
/// when there is one (so absolute and relative paths agree), else the trimmed path.
pub fn instance_key(path: &str) -> String {
    match crate::instant::Instant::from_path(path.trim()) {
        Some((_, tail)) => tail.replace('\\', "/"),
        None => path.trim().to_string(),
    }
}

/// Reads prediction files, in order; the first that fails is the error.
pub fn read_prediction_files(paths: &[PathBuf]) -> Result<Vec<PredictionFile>> {
    paths.iter().map(|p| read_predictions(p)).collect()
}

/// Reads a prediction file. Errors name the file and the 1-based line.
pub fn read_predictions(path: &Path) -> Result<PredictionFile> {
    let rows: Vec<PredictionRow> = read_rows(path)?.into_iter().map(|(_, r)| r).collect();
    if rows.is_empty() {
        bail!("{}: no predictions", path.display());
    }
    Ok(PredictionFile::from_rows(path.to_path_buf(), &rows))
}

/// Reads a prediction file as [`read_predictions`] does, refusing a row whose instance
/// (by [`instance_key`]) an earlier row already gave, naming both lines.
pub fn read_unique_predictions(path: &Path) -> Result<PredictionFile> {
    let rows = read_rows(path)?;
    let mut first: std::collections::HashMap<String, u64> = Default::default();
    for (line, row) in &rows {
        if let Some(earlier) = first.insert(instance_key(&row.timestamp), *line) {
            bail!(
                "{}:{line}: timestamp {:?} repeats the instance of line {earlier}: a prediction file has one row per instance",
                path.display(),
                row.timestamp
            );
        }
    }
    let rows: Vec<PredictionRow> = rows.into_iter().map(|(_, r)| r).collect();
    if rows.is_empty() {
        bail!("{}: no predictions", path.display());
    }
    Ok(PredictionFile::from_rows(path.to_path_buf(), &rows))
}

/// The rows of a prediction file with their 1-based lines: the three columns found by
/// name (in any order, with cells trimmed), each checked as [`PredictionRow`] reads it.
fn read_rows(path: &Path) -> Result<Vec<(u64, PredictionRow)>> {
    let (mut reader, cols) = super::table::open_with_columns(
        path,
        "prediction file",
        COLUMNS,
        "need timestamp,flare_prob,target",
    )?;
    let header = csv::StringRecord::from(&COLUMNS[..]);
    let mut rows = Vec::new();
    for row in super::table::rows(&mut reader, path) {
        let row = row?;
        let cells: csv::StringRecord = cols.iter().map(|&c| row.get(c)).collect();
        let parsed = cells
            .deserialize(Some(&header))
            .map_err(|e| anyhow!("{}:{}: {}", path.display(), row.line, cell_error(&e)))?;
        rows.push((row.line, parsed));
    }
    Ok(rows)
}

/// The message of the cell check that failed, without the csv crate's record position
/// (which counts the projected record, not the file's line).
fn cell_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.kind().to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(details: bool, rows: &[PredictionRow]) -> String {
        let mut w = PredictionWriter::new(Vec::new(), details).unwrap();
        for r in rows {
            w.write(r).unwrap();
        }
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn probabilities_print_as_they_always_have() {
        let rows: Vec<PredictionRow> = [0.0, 1.0, 1e-7, 0.1 + 0.2, 0.5, 2.5e-5]
            .iter()
            .enumerate()
            .map(|(i, &p)| PredictionRow::new(format!("2014-03-02T0{i}:00:00Z"), p, i % 2 == 0))
            .collect();
        assert_eq!(
            written(false, &rows),
            "timestamp,flare_prob,target\n\
             2014-03-02T00:00:00Z,0,1\n\
             2014-03-02T01:00:00Z,1,0\n\
             2014-03-02T02:00:00Z,0.0000001,1\n\
             2014-03-02T03:00:00Z,0.30000000000000004,0\n\
             2014-03-02T04:00:00Z,0.5,1\n\
             2014-03-02T05:00:00Z,0.000025,0\n"
        );
        assert_eq!(written(false, &[]), "timestamp,flare_prob,target\n");
    }

    #[test]
    fn every_probability_prints_as_display_does() {
        // Model outputs are float32 widened to f64; scores from elsewhere are any f64.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut rows = Vec::new();
        let mut want = String::from("timestamp,flare_prob,target\n");
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let p = match i % 3 {
                0 => u,
                1 => f64::from(u as f32),
                _ => u.powi(40),
            };
            want.push_str(&format!("t{i},{p},{}\n", u8::from(i % 2 == 0)));
            rows.push(PredictionRow::new(format!("t{i}"), p, i % 2 == 0));
        }
        assert_eq!(written(false, &rows), want);
    }

    #[test]
    fn details_follow_the_reference_columns_and_cells_are_quoted_only_when_needed() {
        let mut row = PredictionRow::new("/a,b/HMI.m2014.03.02_00.00.00.jpg".into(), 0.25, true);
        row.goes_class = Some("M1.2".into());
        row.fl_lon = Some("80.0".into());
        row.fl_lat = Some(String::new());
        assert_eq!(
            written(true, &[row.clone()]),
            "timestamp,flare_prob,target,goes_class,fl_lon,fl_lat\n\
             \"/a,b/HMI.m2014.03.02_00.00.00.jpg\",0.25,1,M1.2,80.0,\n"
        );
        // A row without them under a header with them is refused, and the other way round.
        let mut w = PredictionWriter::new(Vec::new(), true).unwrap();
        assert!(w
            .write(&PredictionRow::new("t".into(), 0.5, false))
            .is_err());
        let mut w = PredictionWriter::new(Vec::new(), false).unwrap();
        assert!(w.write(&row).is_err());
    }

    #[test]
    fn written_rows_read_back_and_bad_cells_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        let rows = [
            PredictionRow::new(
                "2022/08/02/HMI.m2022.08.02_10.00.00.jpg".into(),
                0.125,
                true,
            ),
            PredictionRow::new("x".into(), 1e-7, false),
        ];
        std::fs::write(&path, written(false, &rows)).unwrap();
        let file = read_predictions(&path).unwrap();
        assert_eq!(
            file.timestamps,
            ["2022/08/02/HMI.m2022.08.02_10.00.00.jpg", "x"]
        );
        assert_eq!(
            (file.probs, file.targets),
            (vec![0.125, 1e-7], vec![true, false])
        );

        // Columns by name, padded cells, a BOM, other columns, lenient targets.
        std::fs::write(
            &path,
            "\u{feff}target, extra ,flare_prob,timestamp\n 1.0 ,z, 0.5 , a \n",
        )
        .unwrap();
        let file = read_predictions(&path).unwrap();
        assert_eq!(
            (file.timestamps[0].as_str(), file.probs[0], file.targets[0]),
            ("a", 0.5, true)
        );

        let shown = path.display().to_string();
        for (body, want) in [
            ("a,x,1\n", "flare_prob \"x\" is not a number"),
            ("a,1.5,1\n", "flare_prob 1.5 is not a probability in [0, 1]"),
            ("a,NaN,1\n", "flare_prob NaN is not a probability in [0, 1]"),
            ("a,0.5,2\n", "target \"2\" is not 0 or 1"),
            (" ,0.5,1\n", "empty timestamp"),
        ] {
            std::fs::write(
                &path,
                format!("timestamp,flare_prob,target\nb,0.5,0\n{body}"),
            )
            .unwrap();
            let err = format!("{:#}", read_predictions(&path).unwrap_err());
            assert_eq!(err, format!("{shown}:3: {want}"));
        }
        std::fs::write(&path, "timestamp,flare_prob,target\n").unwrap();
        let err = read_predictions(&path).unwrap_err().to_string();
        assert_eq!(err, format!("{shown}: no predictions"));
        std::fs::write(&path, "timestamp,prob,target\na,0.5,1\n").unwrap();
        let err = read_predictions(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{shown}:1: missing column `flare_prob`")),
            "{err}"
        );
    }
}
