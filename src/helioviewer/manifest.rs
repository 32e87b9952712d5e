//! The download manifest: one JSON line per requested instant, appended as work finishes
//! (so an interrupted run keeps what it did) and compacted at the end of a run to the
//! latest row per instant, in time order.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "manifest.jsonl";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fetched (or copied from an identical observation) in this run.
    Saved,
    /// Already on disk: no request made.
    Skipped,
    /// The closest image is further than the tolerance from the requested time.
    Missing,
    /// No usable answer; `reason` says why.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Requested time T, `YYYY-MM-DDTHH:MM:SS`.
    pub requested: String,
    /// Path of the JP2 relative to the output folder (named by T).
    pub path: String,
    pub status: Status,
    /// Observation time of the closest image, `YYYY-MM-DDTHH:MM:SS.mmm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// The server's file name for that observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Row {
    /// A row that says only what was requested, where its file goes, and what became of it.
    pub fn new(requested: String, path: String, status: Status) -> Row {
        Row {
            requested,
            path,
            status,
            observed: None,
            source: None,
            bytes: None,
            sha256: None,
            reason: None,
        }
    }
}

/// Reads a manifest: the last row for each requested time wins. A half-written last line
/// (an interrupted run) is ignored; any other unreadable line is an error naming it.
pub fn read(path: &Path) -> Result<BTreeMap<String, Row>> {
    let mut rows = BTreeMap::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(rows),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let n = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Row>(line) {
            Ok(row) => {
                rows.insert(row.requested.clone(), row);
            }
            Err(_) if i + 1 == n => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("{} line {}: not a manifest row", path.display(), i + 1)
                })
            }
        }
    }
    Ok(rows)
}

/// Appends rows as they complete.
pub struct Appender {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        Ok(Appender {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Writes and flushes a batch of rows.
    pub fn append(&mut self, rows: &[Row]) -> Result<()> {
        for row in rows {
            serde_json::to_writer(&mut self.out, row)?;
            self.out.write_all(b"\n")?;
        }
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Rewrites the manifest with one row per instant, in time order (temporary name, rename).
pub fn compact(path: &Path) -> Result<usize> {
    let rows = read(path)?;
    crate::fsio::write_atomic_with(path, |out| {
        for row in rows.values() {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, status: Status) -> Row {
        Row::new(t.into(), format!("{t}.jp2"), status)
    }

    #[test]
    fn last_row_wins_and_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let mut a = Appender::open(&p).unwrap();
        a.append(&[
            row("2013-05-13T00:12:00", Status::Failed),
            row("2013-05-13T00:00:00", Status::Saved),
        ])
        .unwrap();
        a.append(&[row("2013-05-13T00:12:00", Status::Saved)])
            .unwrap();
        drop(a);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"requested\":\"2013-0")
            .unwrap();
        let rows = read(&p).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows["2013-05-13T00:12:00"].status, Status::Saved);
        assert_eq!(compact(&p).unwrap(), 2);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().next().unwrap().contains("00:00:00"));
    }
}
