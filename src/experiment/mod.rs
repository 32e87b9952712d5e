//! A grid of training runs: one cell per (network, seed, fold), each a `train` and an
//! `evaluate --model` of its best checkpoint, run here (`local`) or as a SLURM job array
//! (`slurm`), both reporting a `summary`, resumed after a kill, and reported as the
//! paper's table (`report`).
//!
//! Layout of an experiment folder `{out}`:
//! - `experiment.json`: the grid and every cell's commands ([`plan`]), written first and
//!   read back rooted at the folder it is read from ([`recorded`]);
//! - `{network}/seed{S}/fold{K}_*`: a cell's checkpoints, history, resolved config,
//!   `fold{K}_res.csv` predictions, `fold{K}_cell.json` record and `fold{K}.log`;
//! - `.train/seed{S}/{network}`: links to the cells' folders, where `train` writes;
//! - `tensorboard/{network}/seed{S}/fold{K}`: each cell's TensorBoard events, one tree so
//!   `tensorboard --logdir {out}` shows every cell once;
//! - `slurm/`: the batch script, submissions and the array tasks' logs.
//!
//! Every command reads the state from these files; none keeps it in memory.

pub mod cell;
pub mod local;
pub mod paper;
pub mod plan;
pub mod recorded;
pub mod report;
pub mod slurm;
pub mod state;
pub mod summary;

pub use plan::{Cell, Grid, Plan, PlanRequest};
pub use state::State;

use anyhow::Result;

/// The plan of `req`: the recorded one when `{out}/experiment.json` agrees with it (or,
/// with `extend`, grows into it), else a new one; written (with the cells' folders)
/// before anything runs.
pub fn prepare(req: &PlanRequest, extend: bool) -> Result<Plan> {
    let plan = match Plan::read(&req.out)? {
        Some(recorded) => recorded.reconcile(req, extend)?,
        None => Plan::new(req)?,
    };
    plan.write()?;
    Ok(plan)
}
