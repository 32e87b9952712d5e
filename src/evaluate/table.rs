//! CSV tables: opening one and finding its columns by name, and reading its rows, with
//! errors naming file and line.

use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;

/// Opens `path` (a `what`, for messages) and returns the reader and the index of each of
/// `names` in its header (a UTF-8 byte-order mark and padding are ignored). A missing
/// column is an error on line 1 that says `need` and lists the columns found.
pub(super) fn open_with_columns<const N: usize>(
    path: &Path,
    what: &str,
    names: [&str; N],
    need: &str,
) -> Result<(csv::Reader<File>, [usize; N])> {
    let shown = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("cannot read {what} {shown}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{shown}:1: cannot read the header"))?
        .clone();
    let mut cols = [0usize; N];
    for (slot, name) in cols.iter_mut().zip(names) {
        *slot = headers
            .iter()
            .position(|h| h.trim().trim_start_matches('\u{feff}') == name)
            .with_context(|| {
                format!(
                    "{shown}:1: missing column `{name}` ({need}; found {:?})",
                    headers.iter().collect::<Vec<_>>()
                )
            })?;
    }
    Ok((reader, cols))
}

/// A data row of the file at `path`: its 1-based line, and its cells.
pub(super) struct Row<'r> {
    pub line: u64,
    record: csv::StringRecord,
    path: &'r Path,
}

impl Row<'_> {
    /// The trimmed cell in column `c`; empty where the row is short.
    pub fn get(&self, c: usize) -> &str {
        self.record.get(c).unwrap_or("").trim()
    }

    /// The cell in column `c` (named `name`), which must not be empty.
    pub fn required(&self, c: usize, name: &str) -> Result<&str> {
        match self.get(c) {
            "" => anyhow::bail!("{}:{}: empty {name}", self.path.display(), self.line),
            cell => Ok(cell),
        }
    }
}

/// The data rows of `reader`; a row that cannot be read is an error naming `path`.
pub(super) fn rows<'r>(
    reader: &'r mut csv::Reader<File>,
    path: &'r Path,
) -> impl Iterator<Item = Result<Row<'r>>> + 'r {
    reader.records().map(move |record| {
        let record = record.with_context(|| format!("{}: malformed row", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        Ok(Row { line, record, path })
    })
}
