//! The other processes a run trains with, behind one small interface: alone, every call is
//! free and local; in a process group (DDP) rank 0 decides how the run starts, each rank
//! steps on its share of every batch, and sums travel in one collective each. The
//! protocol in `train/mod.rs` calls these without asking which it is.

use super::checkpoint::ResumeState;
use crate::distributed::bucket::{self, GradBucket};
use crate::distributed::Group;
use crate::metrics::Confusion;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn;

/// This process alone, or one rank of a group with the gradients it reduces.
pub struct Peers {
    group: Option<(Arc<Group>, GradBucket)>,
}

/// How rank 0 tells every rank the run starts, typed end to end.
#[derive(Serialize, Deserialize)]
enum Start {
    Fresh,
    Resumed(ResumeState),
    Failed(String),
}

impl Peers {
    /// Trains alone.
    pub fn alone() -> Peers {
        Peers { group: None }
    }

    /// One rank of `group`, reducing the gradients of `vs`'s trainable variables.
    pub fn in_group(group: Arc<Group>, vs: &nn::VarStore) -> Result<Peers> {
        let grads = GradBucket::new(vs)?;
        grads.prime();
        Ok(Peers {
            group: Some((group, grads)),
        })
    }

    /// `group` when there is one, else alone.
    pub fn new(group: Option<&Arc<Group>>, vs: &nn::VarStore) -> Result<Peers> {
        match group {
            Some(g) => Peers::in_group(Arc::clone(g), vs),
            None => Ok(Peers::alone()),
        }
    }

    pub fn is_group(&self) -> bool {
        self.group.is_some()
    }

    /// The state the run starts from: `decide`'s on rank 0 (or alone), handed to every
    /// rank; a failure on rank 0 ends every rank, naming it.
    pub fn start(&self, decide: impl FnOnce() -> Result<ResumeState>) -> Result<ResumeState> {
        let Some((g, _)) = &self.group else {
            return decide();
        };
        let local = if g.is_root() {
            decide()
        } else {
            Ok(ResumeState::fresh())
        };
        let message = match &local {
            Ok(s) if s.epoch == 0 && s.history.is_empty() => Start::Fresh,
            Ok(s) => Start::Resumed(s.clone()),
            Err(e) => Start::Failed(format!("{e:#}")),
        };
        let bytes = g.broadcast_bytes(
            &serde_json::to_vec(&message)?,
            "waiting for rank 0's starting state",
        )?;
        let state = if g.is_root() {
            local?
        } else {
            match serde_json::from_slice(&bytes)? {
                Start::Fresh => ResumeState::fresh(),
                Start::Resumed(s) => s,
                Start::Failed(e) => bail!(
                    "rank {} of {}: rank 0 could not start: {e}",
                    g.rank(),
                    g.world()
                ),
            }
        };
        Ok(state)
    }

    /// Makes every rank's variables rank 0's (weights and BatchNorm buffers).
    pub fn share_variables(&self, vs: &nn::VarStore, what: &str) -> Result<()> {
        match &self.group {
            Some((g, _)) => bucket::broadcast_variables(g, vs, what),
            None => Ok(()),
        }
    }

    /// Readies the gradients for a step: zeroed in place, never dropped, so a rank with no
    /// rows in a batch still receives the others'.
    pub fn prime(&self) {
        if let Some((_, grads)) = &self.group {
            grads.prime();
        }
    }

    /// Sums every rank's gradients and `extra` in one all-reduce; alone, `extra` as it is.
    pub fn sum_gradients(&self, extra: &[f64], what: &str) -> Result<Vec<f64>> {
        match &self.group {
            Some((g, grads)) => grads.all_reduce(g, extra, what),
            None => Ok(extra.to_vec()),
        }
    }

    /// Sums confusion counts (and `extra` values) over the group in one all-reduce.
    pub fn sum_counts(
        &self,
        c: &Confusion,
        extra: &[f64],
        what: &str,
    ) -> Result<(Confusion, Vec<f64>)> {
        let Some((g, _)) = &self.group else {
            return Ok((*c, extra.to_vec()));
        };
        let mut values = vec![c.tp as f64, c.fp as f64, c.tn as f64, c.fn_ as f64];
        values.extend_from_slice(extra);
        let v = bucket::all_reduce_values(g, &values, what)?;
        let count = |x: f64| x.round() as u64;
        Ok((
            Confusion {
                tp: count(v[0]),
                fp: count(v[1]),
                tn: count(v[2]),
                fn_: count(v[3]),
            },
            v[4..].to_vec(),
        ))
    }

    /// Waits for every rank (rank 0 serves the store, so the others leave after it).
    pub fn barrier(&self, what: &str) -> Result<()> {
        match &self.group {
            Some((g, _)) => g.barrier(what),
            None => Ok(()),
        }
    }
}
