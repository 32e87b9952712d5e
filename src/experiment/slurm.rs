//! The SLURM executor: `{out}/slurm/experiment.sbatch`, one job array with a task per
//! cell that is not done (`#SBATCH --array=LIST%jobs`), each task running
//! `flarecast experiment cell --out DIR --index $SLURM_ARRAY_TASK_ID` with its log in
//! `{out}/slurm/cell-{I}.log`; submitted with `sbatch`, optionally waited for by watching
//! the cells' records (and `squeue` for a job that ended without running them). The
//! script's text, and what it refuses to hold, are `script`'s.

mod script;

pub use script::{array_list, check};

use super::plan::{Plan, SLURM_DIR};
use super::state::{self, CellRecord, Recorded, State};
use super::summary::{Finished, RunSummary};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How the cells are submitted.
pub struct SlurmConfig {
    /// The flarecast executable the tasks run (it must be reachable from the nodes).
    pub exe: PathBuf,
    /// Tasks of the array running at once (`%jobs`); 0: no limit.
    pub jobs: usize,
    /// Extra `#SBATCH` options (partition, GPUs, time limit), one option each.
    pub sbatch_args: Vec<String>,
}

/// One submission, as `{out}/slurm/submissions.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Submission {
    pub job: String,
    pub cells: Vec<usize>,
    pub submitted: String,
    pub script: PathBuf,
}

pub fn slurm_dir(out: &Path) -> PathBuf {
    out.join(SLURM_DIR)
}

pub fn script_path(out: &Path) -> PathBuf {
    slurm_dir(out).join("experiment.sbatch")
}

fn submissions_path(out: &Path) -> PathBuf {
    slurm_dir(out).join("submissions.json")
}

/// Every submission of the experiment, oldest first.
pub fn submissions(out: &Path) -> Result<Vec<Submission>> {
    let path = submissions_path(out);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .with_context(|| format!("{}: not a submission list", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The job of the latest submission holding cell `index`.
pub fn job_of(subs: &[Submission], index: usize) -> Option<String> {
    subs.iter()
        .rev()
        .find(|s| s.cells.contains(&index))
        .map(|s| s.job.clone())
}

/// `name` on the PATH, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether SLURM still knows job `job` (queued, running or completing).
fn job_known(job: &str) -> Result<bool> {
    if on_path("squeue").is_none() {
        return Ok(false);
    }
    let out = Command::new("squeue")
        .args(["-h", "-j", job, "-o", "%i"])
        .output()
        .context("cannot run squeue")?;
    Ok(out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty())
}

/// A batch script written for the cells that need a run.
pub struct Script {
    pub path: PathBuf,
    pub cells: Vec<usize>,
}

/// Writes `{out}/slurm/experiment.sbatch` for the cells of `plan` that are not done
/// (nothing when every cell is done): what `submit` hands sbatch, and all a dry run does.
pub fn write_script(plan: &Plan, cfg: &SlurmConfig) -> Result<Option<Script>> {
    let cells: Vec<usize> = state::status(plan)?
        .iter()
        .filter(|s| s.state.needs_run())
        .map(|s| s.index)
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let text = script::script(plan, &cells, cfg)?;
    let path = script_path(&plan.out);
    crate::fsio::write_atomic(&path, text.as_bytes())?;
    Ok(Some(Script { path, cells }))
}

/// Submits the cells of `plan` that are not done as one array; `None` when every cell
/// is done.
pub fn submit(plan: &Plan, cfg: &SlurmConfig) -> Result<Option<Submission>> {
    check(&plan.out, cfg)?;
    let Some(sbatch) = on_path("sbatch") else {
        bail!("sbatch is not on the PATH: the SLURM executor submits the cells with sbatch (run on a SLURM login node, or use --executor local)");
    };
    let out = &plan.out;
    let subs = submissions(out)?;
    if let Some(last) = subs.last() {
        if job_known(&last.job)? {
            bail!(
                "job {} of the last submission is still known to SLURM (squeue -j {}); wait for it or scancel it before submitting again",
                last.job,
                last.job
            );
        }
    }
    let Some(Script {
        path: script_file,
        cells: indices,
    }) = write_script(plan, cfg)?
    else {
        return Ok(None);
    };
    // Recorded before sbatch, so no task can start before its cell reads as submitted.
    let before: Vec<(usize, Option<CellRecord>)> = indices
        .iter()
        .map(|&i| Ok((i, state::read_record(out, &plan.cells[i])?)))
        .collect::<Result<_>>()?;
    for &i in &indices {
        let record = CellRecord {
            state: Some(Recorded::Submitted),
            log: Some(plan.cells[i].log(out, true)),
            started: None,
            ..Default::default()
        };
        state::write_record(out, &plan.cells[i], &record)?;
    }
    let result = Command::new(&sbatch)
        .arg("--parsable")
        .arg(&script_file)
        .output()
        .with_context(|| format!("cannot run {}", sbatch.display()));
    let job = match result {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            // --parsable prints `jobid` or `jobid;cluster`.
            text.trim().split(';').next().unwrap_or("").to_string()
        }
        other => {
            for (i, r) in &before {
                match r {
                    Some(r) => state::write_record(out, &plan.cells[*i], r)?,
                    None => {
                        let _ = std::fs::remove_file(state::record_path(out, &plan.cells[*i]));
                    }
                }
            }
            return Err(match other {
                Ok(o) => anyhow::anyhow!(
                    "sbatch {} failed: {}",
                    script_file.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => e,
            });
        }
    };
    let submission = Submission {
        job,
        cells: indices,
        submitted: state::now(),
        script: script_file,
    };
    let mut all = subs;
    all.push(submission.clone());
    let json = serde_json::to_string_pretty(&all)?;
    crate::fsio::write_atomic(&submissions_path(out), format!("{json}\n").as_bytes())?;
    Ok(Some(submission))
}

/// Waits until every cell of `sub` has ended (done or failed), from the cells' records;
/// a cell still unfinished once SLURM no longer knows the job failed. `on_finished`
/// hears of each cell as it ends.
pub fn wait(
    plan: &Plan,
    sub: &Submission,
    progress: &Progress,
    on_finished: &mut dyn FnMut(&Finished),
) -> Result<RunSummary> {
    let out = &plan.out;
    let mut summary = RunSummary {
        cells: plan.cells.len(),
        already_done: plan.cells.len() - sub.cells.len(),
        ..Default::default()
    };
    let bar = progress.bar(
        sub.cells.len() as u64,
        "{elapsed_precise} [{bar:30}] {pos}/{len} cells {msg}",
    );
    bar.set_message(format!("job {}", sub.job));
    let started = Instant::now();
    let mut open: Vec<usize> = sub.cells.clone();
    while !open.is_empty() {
        // Read before asking SLURM, so a cell that ended just before its job did is seen.
        let gone = !job_known(&sub.job)?;
        let mut still = Vec::new();
        for &i in &open {
            let cell = &plan.cells[i];
            let s = state::cell_status(plan, cell)?;
            let ended = match s.state {
                State::Done | State::Failed | State::Interrupted => true,
                State::Pending | State::Submitted | State::Running => gone,
            };
            if !ended {
                still.push(i);
                continue;
            }
            let state = if s.state == State::Done {
                State::Done
            } else {
                State::Failed
            };
            let error = s.record.error.clone().or_else(|| {
                (state == State::Failed)
                    .then(|| format!("job {} ended with the cell {}", sub.job, s.state.name()))
            });
            let f = Finished {
                index: i,
                name: cell.name(),
                state,
                seconds: s
                    .record
                    .seconds
                    .unwrap_or_else(|| started.elapsed().as_secs_f64()),
                log: cell.log(out, true),
                error,
            };
            bar.inc(1);
            bar.suspend(|| on_finished(&f));
            summary.finished.push(f);
        }
        open = still;
        if !open.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // The tasks exit just after their cells' records say so: let SLURM see them go, so a
    // rerun straight after does not find the job still known.
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_known(&sub.job)? && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    bar.finish_and_clear();
    summary.finished.sort_by_key(|f| f.index);
    Ok(summary)
}
