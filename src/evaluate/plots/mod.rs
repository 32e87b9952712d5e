//! PNG plots: of a verification (ROC curves, reliability diagram, TSS and HSS2 against
//! the threshold, a confusion matrix per file), training curves from a history file, and
//! an experiment's skill bars. One file per chart family; `style` holds the look they
//! share and draws each PNG under a temporary name, renamed when complete.

mod confusion;
mod experiment;
mod reliability;
mod roc;
mod skill;
mod style;
mod training;

pub use experiment::{plot_skill_bars, SkillBar};
pub use reliability::reliability_plot;
pub use style::short_name;
pub use training::plot_history;

use super::predictions::PredictionFile;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Draws every plot of the prediction files into `dir`; returns the files written.
pub fn plot_predictions(
    dir: &Path,
    files: &[PredictionFile],
    threshold: f64,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = vec![
        roc::roc(dir, files)?,
        reliability::reliability(dir, files)?,
        skill::skill_vs_threshold(dir, files, threshold)?,
    ];
    let stems = unique_stems(files);
    for (f, stem) in files.iter().zip(stems) {
        written.push(confusion::confusion(dir, f, &stem, threshold)?);
    }
    Ok(written)
}

/// File stems, numbered when two files share one.
fn unique_stems(files: &[PredictionFile]) -> Vec<String> {
    let stems: Vec<String> = files
        .iter()
        .map(|f| {
            f.path
                .file_stem()
                .map_or("predictions".into(), |s| s.to_string_lossy().into_owned())
        })
        .collect();
    stems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if stems.iter().filter(|t| *t == s).count() > 1 {
                format!("{}_{}", i + 1, s)
            } else {
                s.clone()
            }
        })
        .collect()
}
