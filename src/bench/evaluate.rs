//! `flarecast bench evaluate`: `flarecast evaluate --model` over a synthetic validation
//! quarter against the same inference loop in PyTorch (scripts/reference_train.py
//! `--evaluate`, tuned: channels_last, bf16 autocast where the row computes bf16,
//! torch.inference_mode, a DataLoader worker per core), both on the same weights, each a
//! child process timed from its start to its exit, the rounds alternating the programs.
//! Both write P(FL) for every image; the largest difference between them is reported, so
//! a row shows the two computed the same thing.

use super::epoch::{
    choice_name, json_of, run_timed, script_args, Loop, ProgramRun, ReferenceScripts, RowPrecision,
    SynthFold, ROUNDS,
};
use crate::evaluate::{instance_key, read_predictions};
use crate::im_size::ImSize;
use crate::model::{Arch, InitScheme, ModelMeta, Network};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the inference bench needs.
pub struct EvaluateBenchConfig {
    /// The flarecast executable run as the child (the running one).
    pub exe: PathBuf,
    /// The Python holding torch.
    pub python: PathBuf,
    /// flarecast's `--device` (the PyTorch loop runs on the CPU).
    pub device: String,
    pub batch_size: usize,
    pub im_size: ImSize,
    pub archs: Vec<Arch>,
    pub precisions: Vec<RowPrecision>,
    pub rounds: usize,
}

impl EvaluateBenchConfig {
    pub fn check(&self) -> Result<()> {
        ROUNDS.check(self.rounds)?;
        crate::inference::BATCH_SIZE.check(self.batch_size)?;
        super::epoch::check_script_im_size(self.im_size)?;
        for &arch in &self.archs {
            super::epoch::script_arch(arch)?;
        }
        Ok(())
    }
}

/// One row: a network at one precision, flarecast against the tuned PyTorch loop.
#[derive(Clone, Debug, Serialize)]
pub struct EvaluateRow {
    pub arch: &'static str,
    /// The precision asked of flarecast (`auto`, `f32`, `bf16`).
    pub precision_choice: &'static str,
    pub flarecast: ProgramRun,
    pub torch_loop: Loop,
    pub torch: ProgramRun,
    /// flarecast's images/s over PyTorch's.
    pub speedup: f64,
    /// flarecast's peak resident size over PyTorch's.
    pub memory_ratio: f64,
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

fn flarecast_evaluate(
    cfg: &EvaluateBenchConfig,
    fold: &SynthFold,
    weights: &Path,
    p: &RowPrecision,
    out: &Path,
) -> Command {
    let mut cmd = Command::new(&cfg.exe);
    cmd.envs(crate::process::keep_freed_memory_env())
        .arg("evaluate")
        .arg("--model")
        .arg(weights)
        .arg("--fold")
        .arg(fold.fold.to_string())
        .arg("--images")
        .arg(&fold.images)
        .arg("--labels")
        .arg(&fold.labels)
        .arg("--out")
        .arg(out)
        .arg("--device")
        .arg(&cfg.device)
        .arg("--precision")
        .arg(choice_name(p.choice))
        .arg("--batch-size")
        .arg(cfg.batch_size.to_string())
        .arg("--im-size")
        .arg(cfg.im_size.get().to_string())
        .arg("--json");
    cmd
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
    cfg: &EvaluateBenchConfig,
    fold: &SynthFold,
    progress: &Progress,
    mut report: impl FnMut(&EvaluateRow),
) -> Result<Vec<EvaluateRow>> {
    cfg.check()?;
    let scripts = ReferenceScripts::write()?;
    let scratch = tempfile::Builder::new()
        .prefix("flarecast-bench-evaluate")
        .tempdir()?;
    let images = fold.val;
    let mut rows = Vec::new();
    let total = (cfg.archs.len() * cfg.precisions.len() * cfg.rounds * 2) as u64;
    let bar = progress.bar(total, "{msg} [{bar:30}] {pos}/{len} runs ({elapsed})");
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
            let (mut our_loops, mut their_loops) = (Vec::new(), Vec::new());
            let ours_csv = scratch.path().join("flarecast");
            let theirs_csv = scratch.path().join("torch.csv");
            for round in 0..cfg.rounds {
                for k in 0..2 {
                    if (k + round) % 2 == 0 {
                        bar.set_message(format!(
                            "{} {}: flarecast, round {}",
                            arch.name(),
                            p.precision.name(),
                            round + 1
                        ));
                        let what = format!(
                            "flarecast evaluate ({} {})",
                            arch.name(),
                            p.precision.name()
                        );
                        let _ = std::fs::remove_dir_all(&ours_csv);
                        let f = run_timed(
                            flarecast_evaluate(cfg, fold, &weights, p, &ours_csv),
                            &what,
                        )?;
                        json_of(&f.stdout, &what)?;
                        ours.add(&f, images, None, &mut our_loops)?;
                    } else {
                        bar.set_message(format!(
                            "{} {}: PyTorch, round {}",
                            arch.name(),
                            p.precision.name(),
                            round + 1
                        ));
                        let what = format!(
                            "scripts/reference_train.py --evaluate ({} {})",
                            arch.name(),
                            p.precision.name()
                        );
                        let mut cmd = scripts.command(&cfg.python);
                        script_args(
                            &mut cmd,
                            fold,
                            arch,
                            p,
                            torch_loop,
                            cfg.batch_size,
                            cfg.im_size,
                        )?;
                        cmd.arg("--evaluate")
                            .arg("--weights")
                            .arg(&weights)
                            .arg("--predictions")
                            .arg(&theirs_csv);
                        let f = run_timed(cmd, &what)?;
                        let v = json_of(&f.stdout, &what)?;
                        let reported = v["val_images"].as_u64().unwrap_or(0);
                        if reported != images as u64 {
                            bail!("{what} ran {reported} images, the quarter holds {images}");
                        }
                        let precision = v["precision"].as_str().unwrap_or("?");
                        if precision != p.precision.name() {
                            bail!(
                                "{what} ran in {precision}, {} was asked",
                                p.precision.name()
                            );
                        }
                        theirs.add(&f, images, v["seconds"].as_f64(), &mut their_loops)?;
                    }
                    bar.inc(1);
                }
            }
            let max_prob_difference = max_difference(
                &ours_csv.join(format!("fold{}_res.csv", fold.fold)),
                &theirs_csv,
                images,
            )?;
            let row = EvaluateRow {
                arch: arch.name(),
                precision_choice: choice_name(p.choice),
                speedup: ours.images_per_s / theirs.images_per_s,
                memory_ratio: ours.peak_rss_bytes as f64 / theirs.peak_rss_bytes.max(1) as f64,
                flarecast: ours,
                torch_loop,
                torch: theirs,
                max_prob_difference,
            };
            report(&row);
            rows.push(row);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}
