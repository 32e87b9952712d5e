//! flarecast against the paper's own PyTorch loop (scripts/reference_train.py), each
//! program a child process on the same synthetic fold, row by row (a network at a
//! precision): what `bench epoch` and `bench evaluate` share.

use super::child::{run_reported, Finished, ProgramRun};
use super::fold::SynthFold;
use super::python::{self, Script};
use crate::bounded::Count;
use crate::device::PrecisionChoice;
use crate::im_size::ImSize;
use crate::model::{Arch, Precision};
use crate::progress::Progress;
use anyhow::{bail, Result};
use indicatif::ProgressBar;
use serde::Serialize;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

const REFERENCE_TRAIN: Script = Script {
    name: "reference_train.py",
    text: include_str!("../../scripts/reference_train.py"),
};

/// Rounds a setting may ask for (each runs every program once).
pub const ROUNDS: Count<usize> = Count::new("rounds", "rounds", 1, 100);

/// scripts/reference_train.py and the network it imports, written to a folder of their
/// own for as long as this lives.
pub struct ReferenceScripts {
    dir: tempfile::TempDir,
}

impl ReferenceScripts {
    pub fn write() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("flarecast-reference-train")
            .tempdir()?;
        python::write_scripts(dir.path(), &[&python::REFERENCE_MODEL, &REFERENCE_TRAIN])?;
        Ok(ReferenceScripts { dir })
    }

    /// `python reference_train.py`, with flarecast's allocator setting and no bytecode
    /// written beside the script.
    pub fn command(&self, python: &Path) -> Command {
        python::command(python, &self.dir.path().join(REFERENCE_TRAIN.name))
    }
}

/// How the PyTorch loop of a row runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Loop {
    /// As the paper's train.py: float32, NCHW, 4 DataLoader workers.
    Paper,
    /// channels_last, bf16 autocast where the row computes bf16, a worker per core,
    /// persistent workers, inference_mode for inference.
    Tuned,
}

impl Loop {
    pub fn name(self) -> &'static str {
        match self {
            Loop::Paper => "paper",
            Loop::Tuned => "tuned",
        }
    }
}

/// `auto`, `f32` or `bf16`, as flarecast's flags spell a choice.
pub fn choice_name(c: PrecisionChoice) -> &'static str {
    match c {
        PrecisionChoice::Auto => "auto",
        PrecisionChoice::Fixed(p) => p.name(),
    }
}

/// The script's `--arch` for a network; only the paper's two are written there.
pub fn script_arch(arch: Arch) -> Result<&'static str> {
    match arch {
        Arch::Attention => Ok("attention"),
        Arch::StandardCnn => Ok("standard"),
        other => Err(crate::setting::bad(
            "arch",
            format!(
                "the paper's PyTorch loop runs its two networks (attention, standard), not {}",
                other.name()
            ),
        )),
    }
}

/// The input sides the paper's PyTorch networks run: their global feature is 1x1 only
/// from 192 to 383.
pub fn check_script_im_size(im_size: ImSize) -> Result<()> {
    if im_size.get() > 383 {
        return Err(crate::setting::bad(
            "im_size",
            format!(
                "the paper's PyTorch networks run sides 192..=383 (their global feature is 1x1 only there), not {im_size}"
            ),
        ));
    }
    Ok(())
}

/// One precision of a row: what the user chose, and what it resolved to.
#[derive(Clone, Copy, Debug)]
pub struct RowPrecision {
    pub choice: PrecisionChoice,
    pub precision: Precision,
}

impl RowPrecision {
    /// The PyTorch loop a row is held to: the paper's for f32 asked for, the tuned one
    /// otherwise.
    pub fn torch_loop(&self) -> Loop {
        if self.choice == PrecisionChoice::Fixed(Precision::F32) {
            Loop::Paper
        } else {
            Loop::Tuned
        }
    }
}

/// What a bench of both programs needs.
pub struct Config {
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

impl Config {
    /// Refuses what either program cannot run; `batch_sizes` are the ones flarecast's
    /// command takes.
    pub fn check(&self, batch_sizes: Count<usize>) -> Result<()> {
        ROUNDS.check(self.rounds)?;
        batch_sizes.check(self.batch_size)?;
        check_script_im_size(self.im_size)?;
        for &arch in &self.archs {
            script_arch(arch)?;
        }
        Ok(())
    }

    /// `flarecast <words>` on the fold at a row's precision, writing under `out` and
    /// reporting JSON, as a child with the allocator setting flarecast gives itself.
    pub fn flarecast<S: AsRef<OsStr>>(
        &self,
        words: impl IntoIterator<Item = S>,
        fold: &SynthFold,
        p: &RowPrecision,
        out: &Path,
    ) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.envs(crate::process::keep_freed_memory_env())
            .args(words)
            .arg("--fold")
            .arg(fold.fold.to_string())
            .arg("--images")
            .arg(&fold.images)
            .arg("--labels")
            .arg(&fold.labels)
            .arg("--out")
            .arg(out)
            .arg("--device")
            .arg(&self.device)
            .arg("--precision")
            .arg(choice_name(p.choice))
            .arg("--batch-size")
            .arg(self.batch_size.to_string())
            .arg("--im-size")
            .arg(self.im_size.get().to_string())
            .arg("--json");
        cmd
    }

    /// scripts/reference_train.py on the fold for a row, with the flags common to
    /// training and inference.
    pub fn script(
        &self,
        scripts: &ReferenceScripts,
        fold: &SynthFold,
        arch: Arch,
        p: &RowPrecision,
        torch_loop: Loop,
    ) -> Result<Command> {
        let mut cmd = scripts.command(&self.python);
        cmd.arg("--images")
            .arg(&fold.images)
            .arg("--labels")
            .arg(&fold.labels)
            .arg("--fold")
            .arg(fold.fold.to_string())
            .arg("--arch")
            .arg(script_arch(arch)?)
            .arg("--batch-size")
            .arg(self.batch_size.to_string())
            .arg("--im-size")
            .arg(self.im_size.get().to_string())
            .arg("--precision")
            .arg(p.precision.name())
            .arg("--json");
        if torch_loop == Loop::Tuned {
            cmd.arg("--tuned");
        }
        Ok(cmd)
    }

    /// The bar over every run of every row.
    pub fn bar(&self, progress: &Progress) -> ProgressBar {
        let total = (self.archs.len() * self.precisions.len() * self.rounds * 2) as u64;
        progress.bar(total, "{msg} [{bar:30}] {pos}/{len} runs ({elapsed})")
    }
}

/// Shows on `bar` whose turn it is in a row's `round` (from 0).
pub fn show_turn(bar: &ProgressBar, arch: Arch, p: &RowPrecision, who: &str, round: usize) {
    bar.set_message(format!(
        "{} {}: {who}, round {}",
        arch.name(),
        p.precision.name(),
        round + 1
    ));
}

/// Runs the PyTorch loop's `cmd` for a row: the run and its report, refused unless it
/// computed in the row's precision.
pub fn run_script(
    cmd: Command,
    what: &str,
    p: &RowPrecision,
) -> Result<(Finished, serde_json::Value)> {
    let (f, v) = run_reported(cmd, what)?;
    let precision = v["precision"].as_str().unwrap_or("?");
    if precision != p.precision.name() {
        bail!(
            "{what} ran in {precision}, {} was asked",
            p.precision.name()
        );
    }
    Ok((f, v))
}

/// One row: a network at one precision, flarecast against its PyTorch loop.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
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
}

impl Row {
    pub fn new(
        arch: Arch,
        p: &RowPrecision,
        torch_loop: Loop,
        flarecast: ProgramRun,
        torch: ProgramRun,
    ) -> Self {
        Row {
            arch: arch.name(),
            precision_choice: choice_name(p.choice),
            speedup: flarecast.images_per_s / torch.images_per_s,
            memory_ratio: flarecast.peak_rss_bytes as f64 / torch.peak_rss_bytes.max(1) as f64,
            flarecast,
            torch_loop,
            torch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_loop_holds_f32_and_the_tuned_one_the_rest() {
        let f32 = RowPrecision {
            choice: PrecisionChoice::Fixed(Precision::F32),
            precision: Precision::F32,
        };
        assert_eq!(f32.torch_loop(), Loop::Paper);
        let auto = RowPrecision {
            choice: PrecisionChoice::Auto,
            precision: Precision::F32,
        };
        assert_eq!(auto.torch_loop(), Loop::Tuned);
    }
}
