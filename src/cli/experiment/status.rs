//! `experiment status`: every cell's state, read from the files.

use anyhow::Result;
use flarecast::experiment::{slurm, state, Plan, State};
use flarecast::text_table::{Col, Table};

#[derive(clap::Args)]
#[command(mut_arg("out", |a| a.help("Experiment folder (experiment.json and every cell's files).")))]
pub struct StatusArgs {
    #[command(flatten)]
    out: crate::cli::common_args::OutDir,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn status(a: StatusArgs) -> Result<()> {
    let plan = Plan::require(&a.out.dir)?;
    let mut cells = state::status(&plan)?;
    let subs = slurm::submissions(&plan.out)?;
    for c in cells.iter_mut() {
        if c.record.job.is_none() && c.state == State::Submitted {
            c.record.job = slurm::job_of(&subs, c.index);
        }
    }
    if a.json.on {
        let counts: serde_json::Map<String, serde_json::Value> = state::counts(&cells)
            .into_iter()
            .map(|(s, n)| (s.name().to_string(), n.into()))
            .collect();
        return crate::cli::print_json(&serde_json::json!({ "cells": cells, "counts": counts }));
    }
    let mut t = Table::new(
        [
            Col::Right(5),
            Col::Left(12),
            Col::Right(5),
            Col::Right(4),
            Col::Left(11),
            Col::Left(10),
            Col::Left(0),
        ],
        [
            "cell",
            "network",
            "seed",
            "fold",
            "state",
            "job",
            "log / error",
        ],
    );
    for c in &cells {
        let mut detail = String::new();
        if matches!(
            c.state,
            State::Failed | State::Running | State::Interrupted | State::Submitted
        ) {
            if let Some(l) = &c.record.log {
                detail = l.display().to_string();
            }
        }
        if let Some(e) = c.record.error.as_ref().filter(|_| c.state == State::Failed) {
            detail = format!("{detail}: {e}");
        }
        t.row([
            c.index.to_string(),
            c.arch.clone(),
            c.seed.to_string(),
            c.fold.to_string(),
            c.state.name().into(),
            c.record.job.clone().unwrap_or_else(|| "-".into()),
            detail,
        ]);
    }
    print!("{t}");
    println!(
        "{}",
        state::counts(&cells)
            .iter()
            .map(|(s, n)| format!("{n} {}", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
