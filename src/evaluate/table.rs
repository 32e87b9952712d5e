//! Opening a CSV table and finding its columns by name, with errors naming file and line.

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
