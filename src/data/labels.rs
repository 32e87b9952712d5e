//! The fold label tables: `{labels}/simplified_data_labels/Fold{k}_{train,val}.csv` with
//! the header `label,goes_class`, where `label` is an image path relative to the image
//! directory and `goes_class` the 0/1 target (1 = a >= M1.0 flare within 24 h).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One labelled instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Image path relative to the image directory, as written in the table.
    pub label: String,
    /// 0 (no flare) or 1 (flare).
    pub target: i64,
}

/// Training or validation part of a fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// `{labels}/simplified_data_labels/Fold{fold}_{split}.csv`.
pub fn fold_csv(labels: &Path, fold: u32, split: Split) -> PathBuf {
    labels
        .join("simplified_data_labels")
        .join(format!("Fold{fold}_{}.csv", split.name()))
}

/// Reads a `label,goes_class` table. Errors name the file and line.
pub fn read_labels(path: &Path) -> Result<Vec<Sample>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("cannot read label table {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header", path.display()))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let (Some(label_col), Some(target_col)) = (col("label"), col("goes_class")) else {
        bail!(
            "{}: header must hold `label` and `goes_class`, found {:?}",
            path.display(),
            headers.iter().collect::<Vec<_>>()
        );
    };
    let mut samples = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{}:{line}: malformed row", path.display()))?;
        let label = record.get(label_col).unwrap_or("").trim();
        let target = record.get(target_col).unwrap_or("").trim();
        if label.is_empty() {
            bail!("{}:{line}: empty label", path.display());
        }
        crate::tree_path::inside(label)
            .with_context(|| format!("{}:{line}: label {label:?}", path.display()))?;
        let target = match target {
            "0" => 0,
            "1" => 1,
            other => bail!(
                "{}:{line}: goes_class {other:?} is not 0 or 1",
                path.display()
            ),
        };
        samples.push(Sample {
            label: label.to_string(),
            target,
        });
    }
    Ok(samples)
}

/// Reads one split of a fold; an empty split is an error.
pub fn read_fold_split(labels: &Path, fold: u32, split: Split) -> Result<Vec<Sample>> {
    let path = fold_csv(labels, fold, split);
    let samples = read_labels(&path)?;
    if samples.is_empty() {
        bail!("{}: no labelled instances", path.display());
    }
    Ok(samples)
}

/// (negatives, positives) in a set of samples.
pub fn class_counts(samples: &[Sample]) -> (usize, usize) {
    let pos = samples.iter().filter(|s| s.target == 1).count();
    (samples.len() - pos, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_table_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.csv");
        std::fs::write(&p, "label,goes_class\na.jpg,0\nb.jpg,M1.0\n").unwrap();
        let e = format!("{:#}", read_labels(&p).unwrap_err());
        assert!(e.contains("bad.csv:3") && e.contains("\"M1.0\""), "{e}");
        std::fs::write(&p, "path,target\na.jpg,0\n").unwrap();
        let e = format!("{:#}", read_labels(&p).unwrap_err());
        assert!(e.contains("`label` and `goes_class`"), "{e}");
        let e = format!(
            "{:#}",
            read_fold_split(dir.path(), 2, Split::Val).unwrap_err()
        );
        assert!(e.contains("Fold2_val.csv"), "{e}");
    }
}
