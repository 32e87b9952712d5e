//! One cell: `train` (resumed from its last checkpoint when a run was killed) then
//! `evaluate --model` of the best checkpoint, both as child processes of the flarecast
//! executable, with the cell's record and lock around them.
//!
//! The cell is the unit an executor starts, whatever runs it (this machine, a SLURM array
//! task). `train` is one argv run by `exe`; a cell spread over several ranks would run the
//! same argv under a launcher (`srun --ntasks N`) here, and nothing else would change.

use super::plan::{Cell, Plan};
use super::state::{self, CellLock, CellRecord, Recorded};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// How a cell run ended.
#[derive(Clone, Debug, Serialize)]
pub struct CellOutcome {
    pub index: usize,
    pub name: String,
    /// It had finished before: nothing ran.
    pub already_done: bool,
    /// Training continued from the last checkpoint of a killed run.
    pub resumed: bool,
    pub predictions: PathBuf,
}

/// A child process that dies with its parent (`run` killed takes its cells with it, a
/// killed cell its `train`), so no orphan keeps writing a cell's files.
pub fn tied_to_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn run_step(exe: &Path, argv: &[String], what: &str) -> Result<()> {
    eprintln!("cell: {} {}", exe.display(), argv.join(" "));
    let status = tied_to_parent(Command::new(exe).args(argv))
        .status()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Removes what a killed writer of this cell left in its folder (temporaries of
/// `fold{K}_*` only: other folds' cells may be writing beside it).
fn remove_own_temps(out: &Path, cell: &Cell) -> Result<()> {
    let dir = out.join(&cell.dir);
    let prefix = format!(".fold{}_", cell.fold);
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && crate::fsio::is_temp_name(&name) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn train_and_evaluate(plan: &Plan, cell: &Cell, exe: &Path) -> Result<bool> {
    let out = &plan.out;
    let mut resumed = false;
    if !cell.checkpoint(out, "final").exists() {
        let mut train = cell.train.clone();
        if cell.checkpoint(out, "last").exists() {
            train.push("--resume".into());
            resumed = true;
        }
        run_step(exe, &train, "train")?;
    }
    let best = cell.checkpoint(out, "best");
    if !best.exists() {
        bail!(
            "training wrote no best checkpoint {} (no epoch improved validation TSS and HSS2)",
            best.display()
        );
    }
    run_step(exe, &cell.evaluate, "evaluate")?;
    let res = cell.predictions(out);
    if !res.exists() {
        bail!("evaluate wrote no {}", res.display());
    }
    Ok(resumed)
}

/// Runs cell `index` of the experiment in `out` with the flarecast executable `exe`;
/// returns at once when it is done already. Fails when another process is running it.
pub fn run_cell(out: &Path, index: usize, exe: &Path) -> Result<CellOutcome> {
    let plan = Plan::require(out)?;
    let cell = plan.cell(index)?.clone();
    let out = &plan.out;
    let name = cell.name();
    plan.make_cell_folder(&cell)?;
    let lock = CellLock::try_acquire(out, &cell)?;
    let Some(_lock) = lock else {
        bail!("cell {index} ({name}) is being run by another process");
    };
    let done = |already_done, resumed| CellOutcome {
        index,
        name: name.clone(),
        already_done,
        resumed,
        predictions: cell.predictions(out),
    };
    if state::cell_status(&plan, &cell)?.state == state::State::Done {
        return Ok(done(true, false));
    }
    remove_own_temps(out, &cell)?;
    let slurm_task = std::env::var("SLURM_ARRAY_TASK_ID").ok();
    let job = std::env::var("SLURM_ARRAY_JOB_ID")
        .ok()
        .zip(slurm_task.clone())
        .map(|(j, t)| format!("{j}_{t}"));
    let mut record = CellRecord {
        state: Some(Recorded::Running),
        host: Some(state::hostname()),
        pid: Some(std::process::id()),
        job,
        log: Some(cell.log(out, slurm_task.is_some())),
        started: Some(state::now()),
        ..Default::default()
    };
    state::write_record(out, &cell, &record)?;
    let clock = Instant::now();
    let result = train_and_evaluate(&plan, &cell, exe);
    record.finished = Some(state::now());
    record.seconds = Some(clock.elapsed().as_secs_f64());
    match result {
        Ok(resumed) => {
            record.state = Some(Recorded::Done);
            state::write_record(out, &cell, &record)?;
            Ok(done(false, resumed))
        }
        Err(e) => {
            record.state = Some(Recorded::Failed);
            record.error = Some(format!("{e:#}"));
            state::write_record(out, &cell, &record)?;
            Err(e.context(format!("cell {index} ({name})")))
        }
    }
}
