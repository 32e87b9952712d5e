//! The local executor: the cells that are not done, `jobs` at a time, each as a
//! `flarecast experiment cell` process whose output goes to the cell's log. With CUDA,
//! each running cell sees one device of its own.

use super::cell::tied_to_parent;
use super::plan::Plan;
use super::state::{self, State};
use super::summary::{Finished, RunSummary};
use crate::progress::Progress;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the local executor runs.
pub struct LocalConfig {
    /// The flarecast executable the cells run.
    pub exe: PathBuf,
    /// Cells at a time.
    pub jobs: usize,
    /// Devices handed out one per running cell (`CUDA_VISIBLE_DEVICES`); empty: none set.
    pub cuda_devices: Vec<String>,
}

/// The CUDA devices a run hands out: those `CUDA_VISIBLE_DEVICES` names, else 0..count.
pub fn cuda_devices(count: usize) -> Vec<String> {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(|d| d.trim().to_string()).collect(),
        _ => (0..count).map(|i| i.to_string()).collect(),
    }
}

struct Running {
    index: usize,
    slot: usize,
    child: Child,
    log: PathBuf,
    started: Instant,
}

fn start(plan: &Plan, index: usize, slot: usize, cfg: &LocalConfig) -> Result<Running> {
    let cell = plan.cell(index)?;
    let log = cell.log(&plan.out, false);
    let file = crate::fsio::open_log(&log)?;
    let err = file
        .try_clone()
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut cmd = Command::new(&cfg.exe);
    cmd.args(&cell.command)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    if !cfg.cuda_devices.is_empty() {
        cmd.env(
            "CUDA_VISIBLE_DEVICES",
            &cfg.cuda_devices[slot % cfg.cuda_devices.len()],
        );
    }
    let child = tied_to_parent(&mut cmd)
        .spawn()
        .with_context(|| format!("cannot start {}", cfg.exe.display()))?;
    Ok(Running {
        index,
        slot,
        child,
        log,
        started: Instant::now(),
    })
}

fn finish(plan: &Plan, r: Running, exit_ok: bool) -> Result<Finished> {
    let cell = plan.cell(r.index)?;
    let status = state::cell_status(plan, cell)?;
    // A cell that exits without a record of done failed, whatever its record says.
    let state = if exit_ok && status.state == State::Done {
        State::Done
    } else {
        State::Failed
    };
    let error = status.record.error.clone().or_else(|| {
        (state == State::Failed)
            .then(|| format!("the cell process ended ({})", status.state.name()))
    });
    Ok(Finished {
        index: r.index,
        name: cell.name(),
        state,
        seconds: r.started.elapsed().as_secs_f64(),
        log: r.log,
        error,
    })
}

/// Runs every cell of `plan` that is not done, `cfg.jobs` at a time; `on_finished` hears
/// of each cell as it ends.
pub fn run(
    plan: &Plan,
    cfg: &LocalConfig,
    progress: &Progress,
    on_finished: &mut dyn FnMut(&Finished),
) -> Result<RunSummary> {
    let statuses = state::status(plan)?;
    let mut summary = RunSummary {
        cells: plan.cells.len(),
        ..Default::default()
    };
    let mut todo = Vec::new();
    for s in &statuses {
        match s.state {
            State::Done => summary.already_done += 1,
            State::Running => summary.running_elsewhere.push(s.index),
            _ => todo.push(s.index),
        }
    }
    let bar = progress.bar(
        todo.len() as u64,
        "{elapsed_precise} [{bar:30}] {pos}/{len} cells {msg}",
    );
    let jobs = cfg.jobs.max(1);
    let mut queue = todo.into_iter();
    let mut running: Vec<Running> = Vec::new();
    let mut free_slots: Vec<usize> = (0..jobs).rev().collect();
    loop {
        while running.len() < jobs {
            let Some(index) = queue.next() else { break };
            let slot = free_slots.pop().unwrap_or(0);
            running.push(start(plan, index, slot, cfg)?);
            bar.set_message(format!("running {}", plan.cell(index)?.name()));
        }
        if running.is_empty() {
            break;
        }
        let mut i = 0;
        let mut ended = false;
        while i < running.len() {
            let exit = running[i]
                .child
                .try_wait()
                .context("cannot wait for a cell")?;
            if let Some(exit) = exit {
                let r = running.swap_remove(i);
                free_slots.push(r.slot);
                let f = finish(plan, r, exit.success())?;
                bar.inc(1);
                bar.suspend(|| on_finished(&f));
                summary.finished.push(f);
                ended = true;
            } else {
                i += 1;
            }
        }
        if !ended {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    bar.finish_and_clear();
    summary.finished.sort_by_key(|f| f.index);
    Ok(summary)
}
