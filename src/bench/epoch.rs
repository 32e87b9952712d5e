//! `flarecast bench epoch`: one epoch end to end, as a researcher waits for it, of
//! `flarecast train --epochs 1` against the paper's own PyTorch loop
//! (scripts/reference_train.py) on the same synthetic fold: each program a child process,
//! timed from its start to its exit, with its peak resident size; the rounds alternate
//! the programs. A row whose precision is f32 is timed against the loop as the paper's
//! train.py runs it; any other against the tuned loop (channels_last, bf16 autocast
//! where that row computes bf16, one DataLoader worker per core).
//!
//! What the two programs do in the epoch is the same: the balanced, augmented training
//! split once (SGD at the paper's rate and decay) and one validation pass, with the same
//! number of items, checked from what each reports.

use super::child::{run_reported, ProgramRun};
use super::fold::SynthFold;
use super::paper_loop::{self, choice_name, show_turn, ReferenceScripts, Row};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};

// Where tests reach the synthetic fold, which `bench::fold` holds.
pub use super::fold::{make_fold, FoldSpec};

/// What the epoch bench needs: the rows, and flarecast's loader threads (its default,
/// one per core, when not set).
pub struct EpochBenchConfig {
    pub programs: paper_loop::Config,
    pub workers: Option<usize>,
}

impl EpochBenchConfig {
    pub fn check(&self) -> Result<()> {
        self.programs.check(crate::recipe::Recipe::BATCH_SIZE)?;
        if let Some(w) = self.workers {
            crate::data::LoaderConfig::WORKERS.check(w)?;
        }
        Ok(())
    }
}

fn count(v: &serde_json::Value, key: &str, what: &str) -> Result<usize> {
    v[key]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .with_context(|| format!("{what}'s report has no {key}: {v}"))
}

/// Times one epoch of each program on `fold`, round by round (the order of the two
/// swapped every other round), reporting each finished row.
pub fn run(
    cfg: &EpochBenchConfig,
    fold: &SynthFold,
    progress: &Progress,
    mut report: impl FnMut(&Row),
) -> Result<Vec<Row>> {
    cfg.check()?;
    let programs = &cfg.programs;
    let scripts = ReferenceScripts::write()?;
    let scratch = tempfile::Builder::new()
        .prefix("flarecast-bench-epoch")
        .tempdir()?;
    let mut rows = Vec::new();
    let bar = programs.bar(progress);
    for &arch in &programs.archs {
        for p in &programs.precisions {
            let torch_loop = p.torch_loop();
            let mut ours = ProgramRun::new(
                format!("flarecast train --precision {}", choice_name(p.choice)),
                p.precision.name(),
            );
            let mut theirs = ProgramRun::new(
                format!("reference_train.py ({} loop)", torch_loop.name()),
                p.precision.name(),
            );
            let out = scratch.path().join("run");
            super::alternate(programs.rounds, |flarecast_now, round| {
                if flarecast_now {
                    show_turn(&bar, arch, p, "flarecast", round);
                    let what = format!("flarecast train ({} {})", arch.name(), p.precision.name());
                    let mut cmd = programs.flarecast(
                        ["train", "--epochs", "1", "--arch", arch.name()],
                        fold,
                        p,
                        &out,
                    );
                    if let Some(w) = cfg.workers {
                        cmd.arg("--workers").arg(w.to_string());
                    }
                    let (f, v) = run_reported(cmd, &what)?;
                    let images =
                        count(&v, "balanced_items", &what)? + count(&v, "val_instances", &what)?;
                    ours.add(&f, images, v["history"][0]["seconds"].as_f64())?;
                } else {
                    let who = format!("PyTorch {} loop", torch_loop.name());
                    show_turn(&bar, arch, p, &who, round);
                    let what = format!(
                        "scripts/reference_train.py ({} loop, {} {})",
                        torch_loop.name(),
                        arch.name(),
                        p.precision.name()
                    );
                    let mut cmd = programs.script(&scripts, fold, arch, p, torch_loop)?;
                    cmd.arg("--epochs").arg("1").arg("--out").arg(&out);
                    let (f, v) = paper_loop::run_script(cmd, &what, p)?;
                    let images = count(&v, "train_items", &what)? + count(&v, "val_images", &what)?;
                    theirs.add(&f, images, v["seconds"].as_f64())?;
                }
                // Each run's checkpoints are its own; the next starts clean.
                let _ = std::fs::remove_dir_all(&out);
                bar.inc(1);
                Ok(())
            })?;
            if ours.images != theirs.images {
                bail!(
                    "the two programs ran epochs of different sizes on {}: flarecast {} images, PyTorch {}",
                    fold.labels.display(),
                    ours.images,
                    theirs.images
                );
            }
            let row = Row::new(arch, p, torch_loop, ours, theirs);
            report(&row);
            rows.push(row);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}
