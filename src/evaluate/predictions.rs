//! Prediction files: `timestamp,flare_prob,target` (more columns are ignored), one row
//! per instance; `timestamp` is the image path (the reference writes absolute paths).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

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

/// The part of an image path that names the instance: the `YYYY/MM/DD/HMI.m....` tail
/// when there is one (so absolute and relative paths agree), else the trimmed path.
pub fn instance_key(path: &str) -> String {
    match crate::instant::Instant::from_path(path.trim()) {
        Some((_, tail)) => tail.replace('\\', "/"),
        None => path.trim().to_string(),
    }
}

fn parse_target(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "1.0" | "True" | "true" => Some(true),
        "0" | "0.0" | "False" | "false" => Some(false),
        _ => None,
    }
}

/// Reads prediction files, in order; the first that fails is the error.
pub fn read_prediction_files(paths: &[PathBuf]) -> Result<Vec<PredictionFile>> {
    paths.iter().map(|p| read_predictions(p)).collect()
}

/// Reads a prediction file. Errors name the file and the 1-based line.
pub fn read_predictions(path: &Path) -> Result<PredictionFile> {
    let shown = path.display();
    let (mut reader, cols) = super::table::open_with_columns(
        path,
        "prediction file",
        ["timestamp", "flare_prob", "target"],
        "need timestamp,flare_prob,target",
    )?;
    let [ts_col, prob_col, target_col] = cols;
    let mut file = PredictionFile {
        path: path.to_path_buf(),
        timestamps: Vec::new(),
        keys: Vec::new(),
        probs: Vec::new(),
        targets: Vec::new(),
    };
    for row in super::table::rows(&mut reader, path) {
        let row = row?;
        let (line, get) = (row.line, |c: usize| row.get(c));
        let ts = row.required(ts_col, "timestamp")?;
        let prob: f64 = get(prob_col).parse().ok().with_context(|| {
            format!(
                "{shown}:{line}: flare_prob {:?} is not a number",
                get(prob_col)
            )
        })?;
        if !(0.0..=1.0).contains(&prob) {
            bail!(
                "{shown}:{line}: flare_prob {} is not a probability in [0, 1]",
                get(prob_col)
            );
        }
        let target = parse_target(get(target_col)).with_context(|| {
            format!("{shown}:{line}: target {:?} is not 0 or 1", get(target_col))
        })?;
        file.keys.push(instance_key(ts));
        file.timestamps.push(ts.to_string());
        file.probs.push(prob);
        file.targets.push(target);
    }
    if file.probs.is_empty() {
        bail!("{shown}: no predictions");
    }
    Ok(file)
}
