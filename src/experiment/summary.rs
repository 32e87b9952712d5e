//! What an executor reports of a run: each cell as it finished, and the counts. Both
//! executors (`local`, `slurm`) fill it, so it sits below them.

use super::state::State;
use serde::Serialize;
use std::path::PathBuf;

/// A finished cell, as the executor reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Finished {
    pub index: usize,
    pub name: String,
    pub state: State,
    pub seconds: f64,
    pub log: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub cells: usize,
    /// Done before this run.
    pub already_done: usize,
    /// Being run by another process: left alone.
    pub running_elsewhere: Vec<usize>,
    pub finished: Vec<Finished>,
}

impl RunSummary {
    pub fn failed(&self) -> Vec<&Finished> {
        self.finished
            .iter()
            .filter(|f| f.state != State::Done)
            .collect()
    }
}
