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

use crate::bounded::Count;
use crate::data::{self, Split};
use crate::device::PrecisionChoice;
use crate::im_size::ImSize;
use crate::label;
use crate::model::{Arch, Precision};
use crate::progress::Progress;
use crate::synth;
use anyhow::{bail, Context, Result};
use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const REFERENCE_MODEL: &str = include_str!("../../scripts/reference_model.py");
const REFERENCE_TRAIN: &str = include_str!("../../scripts/reference_train.py");

/// The fold the synthetic folds are made for: fold 1 validates on January-March.
pub const FOLD: u32 = 1;

/// Seeds of the simulated Sun tried for a fold whose splits hold both classes, and the
/// time the search may take once one was found.
const SEEDS: u64 = 2000;
const SEARCH_TIME: std::time::Duration = std::time::Duration::from_secs(20);

/// The paper's share of positive instances (9,000 of 63,649).
const PAPER_POSITIVE_RATE: f64 = 9000.0 / 63649.0;

/// Rounds a setting may ask for (each runs every program once).
pub const ROUNDS: Count<usize> = Count::new("rounds", "rounds", 1, 100);

/// Images of a synthetic fold in all: hourly, within `synth`'s ten years.
const MAX_FOLD: usize = 87_000;

/// Images of a synthetic fold (or of its validation quarter) a setting may ask for.
pub const INSTANCES: Count<usize> = Count::new("instances", "fold images", 8, 80_000);

/// The shape of a synthetic fold: instances of each split, and whether the training
/// split must hold both classes (training needs a positive to balance).
#[derive(Clone, Copy, Debug)]
pub struct FoldSpec {
    pub train: usize,
    pub val: usize,
    pub train_needs_both_classes: bool,
}

impl FoldSpec {
    /// A fold of `n` images, a quarter of them (at least one) validation, as a real fold's
    /// one quarter against three.
    pub fn quarters(n: usize) -> FoldSpec {
        let val = (n / 4).max(1);
        FoldSpec {
            train: n - val,
            val,
            train_needs_both_classes: true,
        }
    }
}

/// A synthetic fold on disk: `synth`'s 512x512 JPG tree and `label`'s tables for fold 1.
#[derive(Clone, Debug, Serialize)]
pub struct SynthFold {
    pub images: PathBuf,
    pub labels: PathBuf,
    pub fold: u32,
    /// The seed of the simulated Sun (the first whose splits hold both classes and whose
    /// training positive rate is the paper's 14 %, or the closest found).
    pub seed: u64,
    pub image_side: u32,
    pub cadence_hours: i64,
    pub train: usize,
    pub train_positive: usize,
    pub val: usize,
    pub val_positive: usize,
}

/// Makes (or, when `dir` already holds it, reuses) a synthetic fold of `spec` in `dir`:
/// `synth` images every `cadence` (hourly from 240 images up, spread over ten days below),
/// the validation ones in the last hours of March, the training ones from April 1, a
/// seed whose splits hold both classes at about the paper's positive rate, then `label`
/// with the paper's settings (24-hour windows, >= M1.0) over exactly those issue times.
pub fn make_fold(dir: &Path, spec: &FoldSpec, progress: &Progress) -> Result<SynthFold> {
    let n = spec.train + spec.val;
    if spec.val == 0 || !(2..=MAX_FOLD).contains(&n) {
        bail!(
            "a synthetic fold of {} training and {} validation images cannot be made (at least one validation image, {} in all at most)",
            spec.train,
            spec.val,
            MAX_FOLD
        );
    }
    let n32 = i32::try_from(n).context("fold images")?;
    let cadence_hours = (240 / i64::from(n32)).max(1);
    let step = Duration::hours(cadence_hours);
    let april = NaiveDate::from_ymd_opt(2014, 4, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .context("April 1")?;
    let start = april - step * i32::try_from(spec.val).context("validation images")?;
    let times: Vec<NaiveDateTime> = (0..n32).map(|i| start + step * i).collect();
    let hours = i64::from(n32) * cadence_hours;
    let days = u32::try_from((hours + 23) / 24).context("days of images")?;
    // The paper's balanced epoch shows each FL instance six ways (the rotation among
    // them) only where NF >= 6 FL: the first seed whose splits hold both classes and
    // whose positive rate is the paper's, else the closest one found in the search.
    let tolerance = (1.0 / spec.train.max(1) as f64).max(0.02);
    let search = std::time::Instant::now();
    let mut found: Option<(f64, synth::Params)> = None;
    for seed in 1..=SEEDS {
        let params = synth::Params {
            start,
            days,
            cadence_s: 3600 * u64::try_from(cadence_hours).context("cadence")?,
            size: crate::preprocess::TRAINING_SIZE,
            seed,
        };
        let plan = synth::plan(&params)?;
        let positive: Vec<bool> = times
            .iter()
            .map(|&t| synth::is_positive(&plan.flares, t))
            .collect();
        let (val, train) = positive.split_at(spec.val);
        let both = |s: &[bool]| s.iter().any(|&p| p) && s.iter().any(|&p| !p);
        if (!spec.train_needs_both_classes || both(train)) && (val.len() < 2 || both(val)) {
            let rate = train.iter().filter(|&&p| p).count() as f64 / train.len().max(1) as f64;
            let off = (rate - PAPER_POSITIVE_RATE).abs();
            if found.as_ref().is_none_or(|(best, _)| off < *best) {
                found = Some((off, params));
            }
            if off <= tolerance {
                break;
            }
        }
        if search.elapsed() > SEARCH_TIME && found.is_some() {
            break;
        }
    }
    let Some((_, params)) = found else {
        bail!("no seed from 1 to {SEEDS} gives a synthetic fold of {} training and {} validation images with both classes", spec.train, spec.val);
    };
    let archive = dir.join("archive");
    // The folder is this bench's own: an archive of other parameters is replaced.
    synth::generate(&params, &archive, true, progress)?;
    let images = archive.join(synth::IMAGES);
    let catalog_path = archive.join(synth::CATALOG);
    let catalog = crate::catalog::read(&catalog_path, None, false)?;
    let tree = label::Images::from_tree(&images, progress)?;
    let cfg = label::Config {
        start: times.first().copied(),
        end: times.last().copied(),
        cadence: step,
        ..label::Config::paper()
    };
    let labels = dir.join("labels");
    label::run(&cfg, &catalog, &tree, &labels)?;
    let train = data::read_fold_split(&labels, FOLD, Split::Train)?;
    let val = data::read_fold_split(&labels, FOLD, Split::Val)?;
    let positives = |s: &[data::Sample]| s.iter().filter(|x| x.target == 1).count();
    if train.len() != spec.train || val.len() != spec.val {
        bail!(
            "the synthetic fold in {} has {} training and {} validation instances, {} and {} were made",
            labels.display(),
            train.len(),
            val.len(),
            spec.train,
            spec.val
        );
    }
    if spec.train_needs_both_classes && positives(&train) == 0 {
        bail!(
            "the synthetic fold's training table in {} has no positive instance",
            labels.display()
        );
    }
    Ok(SynthFold {
        images,
        labels,
        fold: FOLD,
        seed: params.seed,
        image_side: params.size,
        cadence_hours,
        train: train.len(),
        train_positive: positives(&train),
        val: val.len(),
        val_positive: positives(&val),
    })
}

/// What one child process took.
#[derive(Clone, Debug)]
pub struct Finished {
    /// From before the start to after the exit.
    pub seconds: f64,
    /// The child's peak resident size (wait4's ru_maxrss: the process itself, or the
    /// largest of the children it waited for, not their sum).
    pub peak_rss_bytes: u64,
    pub stdout: String,
}

/// Runs `cmd` to its end: its wall time, its peak resident size and its stdout; a
/// failure is an error with the end of its stderr, naming `what`.
pub fn run_timed(mut cmd: Command, what: &str) -> Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {what} with {}",
            Path::new(cmd.get_program()).display()
        )
    })?;
    let pid = libc::pid_t::try_from(child.id()).context("child process id")?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes only into the status and rusage passed; `pid` is our
        // child, which nothing else waits for (`child` is never waited on).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("waiting for {what}"));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(child);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status =
        <std::process::ExitStatus as std::os::unix::process::ExitStatusExt>::from_raw(status);
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({status}):\n{}", tail.join("\n"));
    }
    // Linux gives ru_maxrss in KiB.
    let peak_rss_bytes = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    Ok(Finished {
        seconds,
        peak_rss_bytes,
        stdout,
    })
}

/// The JSON object a program printed last on stdout.
pub fn json_of(stdout: &str, what: &str) -> Result<serde_json::Value> {
    let text = stdout.trim();
    let start = text.rfind("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&text[start..])
        .or_else(|_| serde_json::from_str(text))
        .with_context(|| {
            let head: String = text.chars().take(300).collect();
            format!("{what} printed no JSON report: {head:?}")
        })
}

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
        crate::fsio::write_atomic(
            &dir.path().join("reference_model.py"),
            REFERENCE_MODEL.as_bytes(),
        )?;
        crate::fsio::write_atomic(
            &dir.path().join("reference_train.py"),
            REFERENCE_TRAIN.as_bytes(),
        )?;
        Ok(ReferenceScripts { dir })
    }

    /// `python reference_train.py`, with flarecast's allocator setting and no bytecode
    /// written beside the script.
    pub fn command(&self, python: &Path) -> Command {
        let mut cmd = Command::new(python);
        cmd.envs(crate::process::keep_freed_memory_env())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-W")
            .arg("ignore")
            .arg(self.dir.path().join("reference_train.py"));
        cmd
    }
}

/// The torch version `python` holds, checked before any timing starts (torch,
/// torchvision, Pillow and numpy must import).
pub fn torch_version(python: &Path) -> Result<String> {
    let out = Command::new(python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-c")
        .arg("import torch, torchvision, PIL, numpy; print(torch.__version__)")
        .output()
        .with_context(|| format!("cannot start {}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{} cannot import torch, torchvision, Pillow and numpy (scripts/setup.sh installs them): {}",
            python.display(),
            err.trim().lines().last().unwrap_or("")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
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
pub struct EpochBenchConfig {
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
    /// flarecast's loader threads (its default, one per core, when not set).
    pub workers: Option<usize>,
}

impl EpochBenchConfig {
    pub fn check(&self) -> Result<()> {
        ROUNDS.check(self.rounds)?;
        crate::recipe::Recipe::BATCH_SIZE.check(self.batch_size)?;
        check_script_im_size(self.im_size)?;
        for &arch in &self.archs {
            script_arch(arch)?;
        }
        if let Some(w) = self.workers {
            crate::data::LoaderConfig::WORKERS.check(w)?;
        }
        Ok(())
    }
}

/// One program's measurements over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramRun {
    pub program: String,
    /// The precision it computed in.
    pub precision: &'static str,
    /// Images of the epoch: the balanced training items plus the validation images
    /// (inference: the validation images).
    pub images: usize,
    /// Wall time of each round, start to exit.
    pub seconds: Vec<f64>,
    pub median_seconds: f64,
    /// `images / median_seconds`: what the researcher waits for.
    pub images_per_s: f64,
    /// The time the program itself reports for its loop (its start-up, image check and
    /// saving left out), median over the rounds.
    pub loop_seconds: Option<f64>,
    /// Largest peak resident size of the rounds.
    pub peak_rss_bytes: u64,
}

impl ProgramRun {
    pub fn new(program: String, precision: &'static str) -> Self {
        ProgramRun {
            program,
            precision,
            images: 0,
            seconds: Vec::new(),
            median_seconds: 0.0,
            images_per_s: 0.0,
            loop_seconds: None,
            peak_rss_bytes: 0,
        }
    }

    /// Adds a round: its run, the images it reports and its own loop time.
    pub fn add(
        &mut self,
        f: &Finished,
        images: usize,
        loop_seconds: Option<f64>,
        loops: &mut Vec<f64>,
    ) -> Result<()> {
        if !self.seconds.is_empty() && images != self.images {
            bail!(
                "{} reported {images} images in one round and {} in another",
                self.program,
                self.images
            );
        }
        self.images = images;
        self.seconds.push(f.seconds);
        self.peak_rss_bytes = self.peak_rss_bytes.max(f.peak_rss_bytes);
        self.median_seconds = median(&self.seconds);
        self.images_per_s = images as f64 / self.median_seconds;
        if let Some(l) = loop_seconds {
            loops.push(l);
            self.loop_seconds = Some(median(loops));
        }
        Ok(())
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// One row: a network at one precision, flarecast against its PyTorch loop.
#[derive(Clone, Debug, Serialize)]
pub struct EpochRow {
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

/// `flarecast train --epochs 1` on the fold, as a child.
fn flarecast_train(
    cfg: &EpochBenchConfig,
    fold: &SynthFold,
    arch: Arch,
    p: &RowPrecision,
    out: &Path,
) -> Command {
    let mut cmd = Command::new(&cfg.exe);
    cmd.envs(crate::process::keep_freed_memory_env())
        .arg("train")
        .arg("--epochs")
        .arg("1")
        .arg("--fold")
        .arg(fold.fold.to_string())
        .arg("--arch")
        .arg(arch.name())
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
    if let Some(w) = cfg.workers {
        cmd.arg("--workers").arg(w.to_string());
    }
    cmd
}

/// The PyTorch loop's flags common to training and inference for a row.
pub fn script_args(
    cmd: &mut Command,
    fold: &SynthFold,
    arch: Arch,
    p: &RowPrecision,
    torch_loop: Loop,
    batch_size: usize,
    im_size: ImSize,
) -> Result<()> {
    cmd.arg("--images")
        .arg(&fold.images)
        .arg("--labels")
        .arg(&fold.labels)
        .arg("--fold")
        .arg(fold.fold.to_string())
        .arg("--arch")
        .arg(script_arch(arch)?)
        .arg("--batch-size")
        .arg(batch_size.to_string())
        .arg("--im-size")
        .arg(im_size.get().to_string())
        .arg("--precision")
        .arg(p.precision.name())
        .arg("--json");
    if torch_loop == Loop::Tuned {
        cmd.arg("--tuned");
    }
    Ok(())
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
    mut report: impl FnMut(&EpochRow),
) -> Result<Vec<EpochRow>> {
    cfg.check()?;
    let scripts = ReferenceScripts::write()?;
    let scratch = tempfile::Builder::new()
        .prefix("flarecast-bench-epoch")
        .tempdir()?;
    let mut rows = Vec::new();
    let total = (cfg.archs.len() * cfg.precisions.len() * cfg.rounds * 2) as u64;
    let bar = progress.bar(total, "{msg} [{bar:30}] {pos}/{len} runs ({elapsed})");
    for &arch in &cfg.archs {
        for p in &cfg.precisions {
            let torch_loop = p.torch_loop();
            let mut ours = ProgramRun::new(
                format!("flarecast train --precision {}", choice_name(p.choice)),
                p.precision.name(),
            );
            let mut theirs = ProgramRun::new(
                format!("reference_train.py ({} loop)", torch_loop.name()),
                p.precision.name(),
            );
            let (mut our_loops, mut their_loops) = (Vec::new(), Vec::new());
            for round in 0..cfg.rounds {
                for k in 0..2 {
                    let flarecast_now = (k + round) % 2 == 0;
                    let out = scratch.path().join(format!("run{round}-{k}"));
                    if flarecast_now {
                        bar.set_message(format!(
                            "{} {}: flarecast, round {}",
                            arch.name(),
                            p.precision.name(),
                            round + 1
                        ));
                        let what =
                            format!("flarecast train ({} {})", arch.name(), p.precision.name());
                        let f = run_timed(flarecast_train(cfg, fold, arch, p, &out), &what)?;
                        let v = json_of(&f.stdout, &what)?;
                        let images = count(&v, "balanced_items", &what)?
                            + count(&v, "val_instances", &what)?;
                        let looped = v["history"][0]["seconds"].as_f64();
                        ours.add(&f, images, looped, &mut our_loops)?;
                    } else {
                        bar.set_message(format!(
                            "{} {}: PyTorch {} loop, round {}",
                            arch.name(),
                            p.precision.name(),
                            torch_loop.name(),
                            round + 1
                        ));
                        let what = format!(
                            "scripts/reference_train.py ({} loop, {} {})",
                            torch_loop.name(),
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
                        cmd.arg("--epochs").arg("1").arg("--out").arg(&out);
                        let f = run_timed(cmd, &what)?;
                        let v = json_of(&f.stdout, &what)?;
                        let images =
                            count(&v, "train_items", &what)? + count(&v, "val_images", &what)?;
                        let precision = v["precision"].as_str().unwrap_or("?");
                        if precision != p.precision.name() {
                            bail!(
                                "{what} ran in {precision}, {} was asked",
                                p.precision.name()
                            );
                        }
                        theirs.add(&f, images, v["seconds"].as_f64(), &mut their_loops)?;
                    }
                    // Each run's checkpoints are its own; the next starts clean.
                    let _ = std::fs::remove_dir_all(&out);
                    bar.inc(1);
                }
            }
            if ours.images != theirs.images {
                bail!(
                    "the two programs ran epochs of different sizes on {}: flarecast {} images, PyTorch {}",
                    fold.labels.display(),
                    ours.images,
                    theirs.images
                );
            }
            let row = EpochRow {
                arch: arch.name(),
                precision_choice: choice_name(p.choice),
                speedup: ours.images_per_s / theirs.images_per_s,
                memory_ratio: ours.peak_rss_bytes as f64 / theirs.peak_rss_bytes.max(1) as f64,
                flarecast: ours,
                torch_loop,
                torch: theirs,
            };
            report(&row);
            rows.push(row);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn quarters_keep_a_quarter_for_validation() {
        let s = FoldSpec::quarters(16);
        assert_eq!((s.train, s.val), (12, 4));
        let s = FoldSpec::quarters(3000);
        assert_eq!((s.train, s.val), (2250, 750));
    }

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
