//! `flarecast bench evaluate`: `flarecast evaluate --model` over a synthetic validation
//! quarter against the same inference loop in PyTorch (scripts/reference_train.py
//! `--evaluate`, tuned: channels_last, bf16 autocast where the row computes bf16,
//! torch.inference_mode, a DataLoader worker per core), both on the same weights, each a
//! child process timed from its start to its exit, the rounds alternating the programs.
//! Both write P(FL) for every image; the largest difference between them is reported, so
//! a row shows the two computed the same thing.

use super::child::{run_reported, ProgramRun};
use super::fold::SynthFold;
use super::paper_loop::{self, choice_name, show_turn, Loop, ReferenceScripts, Row};
use crate::evaluate::{instance_key, read_predictions};
use crate::im_size::ImSize;
use crate::model::{Arch, InitScheme, ModelMeta, Network};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Refuses what either program cannot run, before any work.
pub fn check(cfg: &paper_loop::Config) -> Result<()> {
    cfg.check(crate::inference::BATCH_SIZE)
}

/// One row: a network at one precision, flarecast against the tuned PyTorch loop.
#[derive(Clone, Debug, Serialize)]
pub struct EvaluateRow {
    #[serde(flatten)]
    pub row: Row,
    /// The largest |P(FL) flarecast - P(FL) PyTorch| over the images (last round).
    pub max_prob_difference: f64,
}

/// Freshly initialised weights of `arch` (the paper's scheme) as a flarecast
/// `.safetensors` at `im_size`, which both programs load.
pub fn write_weights(dir: &Path, arch: Arch, im_size: ImSize) -> Result<PathBuf> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = Network::new(&vs.root(), arch, InitScheme::default());
    let path = dir.join(format!("{}_init.safetensors", arch.name()));
    crate::model::save_model(&path, &vs, &ModelMeta::new(arch, im_size.as_i64()))?;
    Ok(path)
}

/// P(FL) by instance from a `timestamp,flare_prob,target` file.
fn probabilities(path: &Path) -> Result<HashMap<String, f64>> {
    let file = read_predictions(path)?;
    Ok(file
        .timestamps
        .iter()
        .map(|t| instance_key(t))
        .zip(file.probs.iter().copied())
        .collect())
}

/// The largest difference between two prediction files of the same images.
fn max_difference(ours: &Path, theirs: &Path, images: usize) -> Result<f64> {
    let (a, b) = (probabilities(ours)?, probabilities(theirs)?);
    if a.len() != images || b.len() != images {
        bail!(
            "{} holds {} predictions and {} holds {}, for {images} images",
            ours.display(),
            a.len(),
            theirs.display(),
            b.len()
        );
    }
    let mut worst = 0f64;
    for (key, p) in &a {
        let q = b
            .get(key)
            .with_context(|| format!("{} has no prediction for {key}", theirs.display()))?;
        worst = worst.max((p - q).abs());
    }
    Ok(worst)
}

/// Times the validation quarter's inference in each program, round by round (the order
/// of the two swapped every other round), reporting each finished row.
pub fn run(
    cfg: &paper_loop::Config,
    fold: &SynthFold,
    progress: &Progress,
    mut report: impl FnMut(&EvaluateRow),
) -> Result<Vec<EvaluateRow>> {
    check(cfg)?;
    let scripts = ReferenceScripts::write()?;
    let scratch = tempfile::Builder::new()
        .prefix("flarecast-bench-evaluate")
        .tempdir()?;
    let images = fold.val;
    let mut rows = Vec::new();
    let bar = cfg.bar(progress);
    for &arch in &cfg.archs {
        let weights = write_weights(scratch.path(), arch, cfg.im_size)?;
        for p in &cfg.precisions {
            let torch_loop = Loop::Tuned;
            let mut ours = ProgramRun::new(
                format!("flarecast evaluate --precision {}", choice_name(p.choice)),
                p.precision.name(),
            );
            let mut theirs = ProgramRun::new(
                "reference_train.py --evaluate (tuned loop)".to_string(),
                p.precision.name(),
            );
            // The last round's predictions stay for the comparison.
            let ours_csv = scratch.path().join("flarecast");
            let theirs_csv = scratch.path().join("torch.csv");
            super::alternate(cfg.rounds, |flarecast_now, round| {
                let name = format!("{} {}", arch.name(), p.precision.name());
                if flarecast_now {
                    show_turn(&bar, arch, p, "flarecast", round);
                    let what = format!("flarecast evaluate ({name})");
                    let _ = std::fs::remove_dir_all(&ours_csv);
                    let model = [
                        OsStr::new("evaluate"),
                        OsStr::new("--model"),
                        weights.as_os_str(),
                    ];
                    let (f, _) = run_reported(cfg.flarecast(model, fold, p, &ours_csv), &what)?;
                    ours.add(&f, images, None)?;
                } else {
                    show_turn(&bar, arch, p, "PyTorch", round);
                    let what = format!("scripts/reference_train.py --evaluate ({name})");
                    let mut cmd = cfg.script(&scripts, fold, arch, p, torch_loop)?;
                    cmd.arg("--evaluate")
                        .arg("--weights")
                        .arg(&weights)
                        .arg("--predictions")
                        .arg(&theirs_csv);
                    let (f, v) = paper_loop::run_script(cmd, &what, p)?;
                    let reported = v["val_images"].as_u64().unwrap_or(0);
                    if reported != images as u64 {
                        bail!("{what} ran {reported} images, the quarter holds {images}");
                    }
                    theirs.add(&f, images, v["seconds"].as_f64())?;
                }
                bar.inc(1);
                Ok(())
            })?;
            let max_prob_difference = max_difference(
                &ours_csv.join(format!("fold{}_res.csv", fold.fold)),
                &theirs_csv,
                images,
            )?;
            let row = EvaluateRow {
                row: Row::new(arch, p, torch_loop, ours, theirs),
                max_prob_difference,
            };
            report(&row);
            rows.push(row);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}
