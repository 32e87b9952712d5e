//! `experiment.json` read back. The folder it is read from (`--out`) is the experiment's
//! only root: a copied or moved experiment works where it is, never where it was
//! recorded. The record is checked as `experiment run` checks a request (the grid, the
//! train flags); every cell must be one of the grid's, at its index, in the folder of
//! its network and seed (one outside the experiment is refused naming the cell); and the
//! cells' commands are made again under `--out` from the recorded images, labels and
//! train flags, so no path in the file makes a cell write elsewhere.

use super::plan::{self, Plan, PlanRequest, FORMAT};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

impl Plan {
    /// The plan recorded in `out`, if there is one, rooted at `out`.
    pub fn read(out: &Path) -> Result<Option<Plan>> {
        let path = Self::path(out);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let plan: Plan = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an experiment record", path.display()))?;
        if plan.format != FORMAT {
            bail!(
                "{}: format {} is not {FORMAT}, the one this flarecast writes",
                path.display(),
                plan.format
            );
        }
        // A new error, not a context: a refused grid in the file is the file's fault, so
        // the CLI must not name a flag for it.
        rooted(plan, out)
            .map(Some)
            .map_err(|e| anyhow!("{}: {e:#}", path.display()))
    }

    /// The plan recorded in `out`; an error when there is none.
    pub fn require(out: &Path) -> Result<Plan> {
        Self::read(out)?.with_context(|| {
            format!(
                "{}: no experiment here (experiment run writes it)",
                Self::path(out).display()
            )
        })
    }
}

/// The recorded plan, checked, with `out` as its folder and its cells' commands made
/// under it.
fn rooted(recorded: Plan, out: &Path) -> Result<Plan> {
    recorded.grid.validate()?;
    plan::check_train_flags(&recorded.train_flags)?;
    let req = PlanRequest {
        out: plan::absolute(out)?,
        images: recorded.images,
        labels: recorded.labels,
        grid: recorded.grid,
        train_flags: recorded.train_flags,
    };
    let mut missing = req.grid.triples();
    if recorded.cells.len() != missing.len() {
        bail!(
            "{} cells recorded for a grid of {}",
            recorded.cells.len(),
            missing.len()
        );
    }
    let mut cells = Vec::with_capacity(recorded.cells.len());
    for (index, c) in recorded.cells.iter().enumerate() {
        let name = format!("cell {index} ({})", c.name());
        if c.index != index {
            bail!("{name} is recorded with index {}", c.index);
        }
        let Some(k) = missing.iter().position(|t| *t == (c.arch, c.seed, c.fold)) else {
            bail!("{name} is not in the grid, or recorded twice");
        };
        missing.swap_remove(k);
        let own = plan::cell_dir(c.arch, c.seed);
        if c.dir != own {
            let shown = c.dir.to_string_lossy();
            bail!(
                "{name}: its folder {shown:?} {}",
                match crate::tree_path::inside(&shown) {
                    Err(e) => format!("is outside the experiment folder ({e})"),
                    Ok(_) => format!("is not {}, its network's and seed's", own.display()),
                }
            );
        }
        cells.push(plan::make_cell(&req, index, c.arch, c.seed, c.fold));
    }
    Ok(Plan {
        format: FORMAT,
        out: req.out,
        images: req.images,
        labels: req.labels,
        train_flags: req.train_flags,
        grid: req.grid,
        cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Grid;
    use crate::model::Arch;

    fn recorded_at(out: &str) -> Plan {
        Plan::new(&PlanRequest {
            out: out.into(),
            images: "/x/images".into(),
            labels: "/x/labels".into(),
            grid: Grid {
                archs: vec![Arch::Attention],
                seeds: vec![4],
                folds: vec![1, 2],
            },
            train_flags: vec!["--epochs".into(), "1".into()],
        })
        .unwrap()
    }

    #[test]
    fn a_plan_read_elsewhere_runs_its_cells_there() {
        let plan = rooted(recorded_at("/old/exp"), Path::new("/new/exp")).unwrap();
        assert_eq!(plan, recorded_at("/new/exp"));
        // Commands edited in the file are not what runs.
        let mut edited = recorded_at("/old/exp");
        edited.cells[0].train.push("--out=/elsewhere".into());
        let plan = rooted(edited, Path::new("/old/exp")).unwrap();
        assert_eq!(plan, recorded_at("/old/exp"));
    }

    #[test]
    fn cells_out_of_place_or_outside_the_folder_are_refused_naming_them() {
        let refused = |edit: &dyn Fn(&mut Plan)| {
            let mut p = recorded_at("/x/exp");
            edit(&mut p);
            format!("{:#}", rooted(p, Path::new("/x/exp")).unwrap_err())
        };
        let e = refused(&|p| p.cells[1].index = 0);
        assert!(
            e.contains("cell 1 (attention seed 4 fold 2) is recorded with index 0"),
            "{e}"
        );
        let e = refused(&|p| p.cells[1].fold = 1);
        assert!(
            e.contains("cell 1 (attention seed 4 fold 1) is not in the grid"),
            "{e}"
        );
        let e = refused(&|p| p.cells[0].dir = "/etc".into());
        assert!(
            e.contains("cell 0") && e.contains("\"/etc\" is outside"),
            "{e}"
        );
        let e = refused(&|p| p.cells[0].dir = "no_attention/seed4".into());
        assert!(e.contains("is not attention/seed4"), "{e}");
        let e = refused(&|p| {
            p.cells.pop();
        });
        assert!(e.contains("1 cells recorded for a grid of 2"), "{e}");
        let e = refused(&|p| p.train_flags.push("--out=/elsewhere".into()));
        assert!(e.contains("train flag --out=/elsewhere"), "{e}");
        let e = refused(&|p| p.grid.folds = vec![1, 7]);
        assert!(e.contains("fold 7"), "{e}");
    }
}
