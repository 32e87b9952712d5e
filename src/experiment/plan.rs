//! `{out}/experiment.json`: the grid and the exact command of every cell, written before
//! anything runs. Every other part of an experiment (cells, executors, status, report)
//! reads it back (`recorded`); nothing is kept in memory between commands.

use crate::model::Arch;
use crate::setting;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file that records an experiment.
pub const PLAN_FILE: &str = "experiment.json";
/// Version of the file's layout.
pub(super) const FORMAT: u32 = 1;
/// The SLURM executor's folder in an experiment: batch script, submissions, task logs.
pub const SLURM_DIR: &str = "slurm";

/// Train flags the experiment sets itself, per cell.
const OWN_TRAIN_FLAGS: [&str; 10] = [
    "--fold",
    "--attention",
    "--no-attention",
    "--arch",
    "--seed",
    "--images",
    "--labels",
    "--out",
    "--resume",
    "--json",
];

/// What varies over the grid: one cell per (arch, seed, fold), in that nesting order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    pub archs: Vec<Arch>,
    pub seeds: Vec<u64>,
    pub folds: Vec<u32>,
}

impl Grid {
    /// Refuses an empty axis, a repeated value, or a fold outside 1..4.
    pub fn validate(&self) -> Result<()> {
        if self.archs.is_empty() {
            return Err(setting::bad("arch", "no network given"));
        }
        if self.seeds.is_empty() {
            return Err(setting::bad("seeds", "no seed given"));
        }
        if self.folds.is_empty() {
            return Err(setting::bad("folds", "no fold given"));
        }
        if let Some(f) = self.folds.iter().find(|f| !(1..=4).contains(*f)) {
            return Err(setting::bad(
                "folds",
                format!("fold {f} is not one of 1..4"),
            ));
        }
        let repeated = |n: usize, mut v: Vec<String>| {
            v.sort();
            v.dedup();
            v.len() != n
        };
        if repeated(
            self.archs.len(),
            self.archs.iter().map(|a| a.name().into()).collect(),
        ) {
            return Err(setting::bad("arch", "a network is given twice"));
        }
        if repeated(
            self.seeds.len(),
            self.seeds.iter().map(|s| s.to_string()).collect(),
        ) {
            return Err(setting::bad("seeds", "a seed is given twice"));
        }
        if repeated(
            self.folds.len(),
            self.folds.iter().map(|f| f.to_string()).collect(),
        ) {
            return Err(setting::bad("folds", "a fold is given twice"));
        }
        Ok(())
    }

    /// The grid's (arch, seed, fold) triples in cell order.
    pub fn triples(&self) -> Vec<(Arch, u64, u32)> {
        let mut out = Vec::new();
        for &a in &self.archs {
            for &s in &self.seeds {
                for &f in &self.folds {
                    out.push((a, s, f));
                }
            }
        }
        out
    }
}

/// One training run of the grid and the commands that make it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub index: usize,
    pub arch: Arch,
    pub seed: u64,
    pub fold: u32,
    /// Folder of its files, relative to the experiment: `{attention|no_attention}/seed{S}`
    /// ([`cell_dir`]).
    pub dir: PathBuf,
    /// The command that runs the cell (after the flarecast executable).
    pub command: Vec<String>,
    /// `train` as the cell runs it the first time (`--resume` is added after a kill).
    pub train: Vec<String>,
    /// `evaluate` of the best checkpoint on the fold's validation split.
    pub evaluate: Vec<String>,
}

impl Cell {
    /// `attention seed 4 fold 1`.
    pub fn name(&self) -> String {
        format!(
            "{} seed {} fold {}",
            self.arch.dir_name(),
            self.seed,
            self.fold
        )
    }

    /// `{out}/{dir}/fold{K}_{what}`.
    pub fn file(&self, out: &Path, what: &str) -> PathBuf {
        out.join(&self.dir)
            .join(format!("fold{}_{what}", self.fold))
    }

    pub fn checkpoint(&self, out: &Path, which: &str) -> PathBuf {
        self.file(out, &format!("{which}.safetensors"))
    }

    pub fn predictions(&self, out: &Path) -> PathBuf {
        self.file(out, "res.csv")
    }

    /// Where the cell's output goes: a SLURM array task's `{out}/slurm/cell-{I}.log`, else
    /// the local executor's `{out}/{dir}/fold{K}.log`.
    pub fn log(&self, out: &Path, slurm: bool) -> PathBuf {
        if slurm {
            out.join(SLURM_DIR).join(format!("cell-{}.log", self.index))
        } else {
            out.join(&self.dir).join(format!("fold{}.log", self.fold))
        }
    }
}

/// A cell's folder in the experiment: `{attention|no_attention}/seed{S}`.
pub fn cell_dir(arch: Arch, seed: u64) -> PathBuf {
    PathBuf::from(arch.dir_name()).join(format!("seed{seed}"))
}

/// The recorded experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    /// The experiment's folder (absolute). Read back, the folder it was read from
    /// (`--out`), whatever the file recorded.
    pub out: PathBuf,
    pub images: PathBuf,
    pub labels: PathBuf,
    /// Flags given to every cell's `train` (after `--`).
    pub train_flags: Vec<String>,
    pub grid: Grid,
    pub cells: Vec<Cell>,
}

/// What a plan is made from.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    pub out: PathBuf,
    pub images: PathBuf,
    pub labels: PathBuf,
    pub grid: Grid,
    pub train_flags: Vec<String>,
}

pub(super) fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `train` writes `{out}/{arch}/fold{K}_*`; a cell gives it `{out}/.train/seed{S}`, whose
/// `{arch}` entry links to the cell's folder `{out}/{arch}/seed{S}`, so the seed level
/// sits where the experiment's layout puts it and `train` needs no option for it.
pub fn train_root(out: &Path, seed: u64) -> PathBuf {
    out.join(".train").join(format!("seed{seed}"))
}

/// A cell's TensorBoard run: `tensorboard/{network}/seed{S}/fold{K}` in the experiment.
pub fn tensorboard_dir(out: &Path, arch: Arch, seed: u64, fold: u32) -> PathBuf {
    out.join("tensorboard")
        .join(arch.dir_name())
        .join(format!("seed{seed}"))
        .join(format!("fold{fold}"))
}

/// The device `evaluate` runs on: the first of train's `--device` (or its alias
/// `--devices`), else its default.
fn evaluate_device(train_flags: &[String]) -> Option<String> {
    let mut it = train_flags.iter();
    while let Some(f) = it.next() {
        if let Some(v) = f
            .strip_prefix("--device=")
            .or_else(|| f.strip_prefix("--devices="))
        {
            return v.split(',').next().map(str::to_string);
        }
        if f == "--device" || f == "--devices" {
            return it
                .next()
                .and_then(|v| v.split(',').next().map(str::to_string));
        }
    }
    None
}

/// Refuses a train flag the experiment sets itself for each cell.
pub(super) fn check_train_flags(flags: &[String]) -> Result<()> {
    for f in flags {
        let name = f.split('=').next().unwrap_or(f);
        if OWN_TRAIN_FLAGS.contains(&name) {
            bail!("train flag {f} is set by the experiment for each cell (its fold, network, seed, images, labels and folder)");
        }
    }
    Ok(())
}

/// Cell `index` of the request, with its commands.
pub(super) fn make_cell(req: &PlanRequest, index: usize, arch: Arch, seed: u64, fold: u32) -> Cell {
    let dir = cell_dir(arch, seed);
    let cell_dir = req.out.join(&dir);
    // The paper's two by the reference's spellings, the others by name.
    let arch_flags: Vec<String> = match arch {
        Arch::Attention => vec!["--attention=1".into()],
        Arch::StandardCnn => vec!["--no-attention".into()],
        other => vec!["--arch".into(), other.name().into()],
    };
    let mut train: Vec<String> = vec!["train".into(), "--fold".into(), fold.to_string()];
    train.extend(arch_flags);
    train.extend([
        "--seed".into(),
        seed.to_string(),
        "--images".into(),
        s(&req.images),
        "--labels".into(),
        s(&req.labels),
        "--out".into(),
        s(&train_root(&req.out, seed)),
        // Outside the `.train` links, so `tensorboard --logdir EXPERIMENT` sees each cell
        // once; a --tensorboard among the train flags comes later and wins.
        "--tensorboard".into(),
        s(&tensorboard_dir(&req.out, arch, seed, fold)),
    ]);
    train.extend(req.train_flags.iter().cloned());
    let mut evaluate: Vec<String> = vec![
        "evaluate".into(),
        "--model".into(),
        s(&cell_dir.join(format!("fold{fold}_best.safetensors"))),
        "--fold".into(),
        fold.to_string(),
        "--labels".into(),
        s(&req.labels),
        "--images".into(),
        s(&req.images),
        "--out".into(),
        s(&cell_dir),
    ];
    if let Some(d) = evaluate_device(&req.train_flags) {
        evaluate.extend(["--device".into(), d]);
    }
    Cell {
        index,
        arch,
        seed,
        fold,
        dir,
        command: vec![
            "experiment".into(),
            "cell".into(),
            "--out".into(),
            s(&req.out),
            "--index".into(),
            index.to_string(),
        ],
        train,
        evaluate,
    }
}

impl Plan {
    /// The plan of a request: paths made absolute, train flags checked.
    pub fn new(req: &PlanRequest) -> Result<Plan> {
        req.grid.validate()?;
        check_train_flags(&req.train_flags)?;
        let req = PlanRequest {
            out: absolute(&req.out)?,
            images: absolute(&req.images)?,
            labels: absolute(&req.labels)?,
            ..req.clone()
        };
        let cells = req
            .grid
            .triples()
            .into_iter()
            .enumerate()
            .map(|(i, (a, s, f))| make_cell(&req, i, a, s, f))
            .collect();
        Ok(Plan {
            format: FORMAT,
            out: req.out.clone(),
            images: req.images.clone(),
            labels: req.labels.clone(),
            train_flags: req.train_flags.clone(),
            grid: req.grid.clone(),
            cells,
        })
    }

    pub fn path(out: &Path) -> PathBuf {
        out.join(PLAN_FILE)
    }

    /// The folder of `cell` and the link its `train` writes through, pointing at that
    /// folder (whatever a copied experiment's link says).
    pub fn make_cell_folder(&self, cell: &Cell) -> Result<()> {
        let dir = self.out.join(&cell.dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let root = train_root(&self.out, cell.seed);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let target = Path::new("../..").join(&cell.dir);
        crate::fsio::symlink_atomic(&target, &root.join(cell.arch.dir_name()))
    }

    /// Writes `experiment.json` and the folders and links the cells' `train` needs.
    pub fn write(&self) -> Result<()> {
        for c in &self.cells {
            self.make_cell_folder(c)?;
        }
        let json = serde_json::to_string_pretty(self)?;
        crate::fsio::write_atomic(&Self::path(&self.out), format!("{json}\n").as_bytes())
    }

    pub fn cell(&self, index: usize) -> Result<&Cell> {
        self.cells.get(index).with_context(|| {
            format!(
                "{}: no cell {index} (the grid has {} cells, 0..{})",
                Self::path(&self.out).display(),
                self.cells.len(),
                self.cells.len().saturating_sub(1)
            )
        })
    }

    /// The plan a new request makes of this recorded one: the same plan when they agree;
    /// with `extend`, this plan with the new cells appended (indices of the recorded cells
    /// never change); otherwise an error saying what differs.
    pub fn reconcile(&self, req: &PlanRequest, extend: bool) -> Result<Plan> {
        let wanted = Plan::new(req)?;
        let shown = Self::path(&self.out).display().to_string();
        // `out` needs no comparison: a recorded plan is rooted where it is read.
        for (what, old, new) in [
            ("images", s(&self.images), s(&wanted.images)),
            ("labels", s(&self.labels), s(&wanted.labels)),
            (
                "train flags",
                self.train_flags.join(" "),
                wanted.train_flags.join(" "),
            ),
        ] {
            if old != new {
                bail!("{shown} was run with {what} {old:?}, not {new:?}: use another --out for another experiment");
            }
        }
        if self.grid == wanted.grid {
            return Ok(self.clone());
        }
        let old = self.grid.triples();
        let new = wanted.grid.triples();
        let missing: Vec<_> = old.iter().filter(|t| !new.contains(t)).collect();
        if !extend || !missing.is_empty() {
            let describe = |g: &Grid| {
                format!(
                    "arch {} seeds {} folds {}",
                    g.archs
                        .iter()
                        .map(|a| a.dir_name())
                        .collect::<Vec<_>>()
                        .join(","),
                    g.seeds
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    g.folds
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            let hint = if missing.is_empty() {
                "; --extend adds the new cells"
            } else {
                "; an extension must keep every recorded cell"
            };
            bail!(
                "{shown} records the grid {}, not {}{hint}",
                describe(&self.grid),
                describe(&wanted.grid)
            );
        }
        let mut plan = self.clone();
        union(&mut plan.grid.archs, &wanted.grid.archs);
        union(&mut plan.grid.seeds, &wanted.grid.seeds);
        union(&mut plan.grid.folds, &wanted.grid.folds);
        let req = PlanRequest {
            out: plan.out.clone(),
            images: plan.images.clone(),
            labels: plan.labels.clone(),
            grid: plan.grid.clone(),
            train_flags: plan.train_flags.clone(),
        };
        for (a, s, f) in new.into_iter().filter(|t| !old.contains(t)) {
            let i = plan.cells.len();
            plan.cells.push(make_cell(&req, i, a, s, f));
        }
        Ok(plan)
    }
}

/// Appends the values of `b` that `a` lacks.
fn union<T: PartialEq + Copy>(a: &mut Vec<T>, b: &[T]) {
    for x in b {
        if !a.contains(x) {
            a.push(*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(folds: Vec<u32>, flags: &[&str]) -> PlanRequest {
        PlanRequest {
            out: "/x/exp".into(),
            images: "/x/images".into(),
            labels: "/x/labels".into(),
            grid: Grid {
                archs: vec![Arch::Attention, Arch::StandardCnn],
                seeds: vec![4],
                folds,
            },
            train_flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn cells_nest_arch_seed_fold_and_carry_their_commands() {
        let plan = Plan::new(&request(vec![1, 2], &["--epochs", "1", "--devices", "cpu"])).unwrap();
        let names: Vec<String> = plan.cells.iter().map(Cell::name).collect();
        assert_eq!(
            names,
            [
                "attention seed 4 fold 1",
                "attention seed 4 fold 2",
                "no_attention seed 4 fold 1",
                "no_attention seed 4 fold 2"
            ]
        );
        let c = &plan.cells[3];
        assert_eq!(
            c.train.join(" "),
            "train --fold 2 --no-attention --seed 4 --images /x/images --labels /x/labels \
             --out /x/exp/.train/seed4 --tensorboard /x/exp/tensorboard/no_attention/seed4/fold2 \
             --epochs 1 --devices cpu"
        );
        assert_eq!(
            c.evaluate.join(" "),
            "evaluate --model /x/exp/no_attention/seed4/fold2_best.safetensors --fold 2 \
             --labels /x/labels --images /x/images --out /x/exp/no_attention/seed4 --device cpu"
        );
        assert_eq!(
            c.command.join(" "),
            "experiment cell --out /x/exp --index 3"
        );
    }

    #[test]
    fn a_different_grid_is_refused_unless_extended_and_extension_keeps_indices() {
        let plan = Plan::new(&request(vec![1], &[])).unwrap();
        assert_eq!(plan.reconcile(&request(vec![1], &[]), false).unwrap(), plan);
        let err = plan
            .reconcile(&request(vec![1, 2], &[]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--extend adds the new cells"), "{err}");
        let ext = plan.reconcile(&request(vec![1, 2], &[]), true).unwrap();
        assert_eq!(ext.cells[..2], plan.cells[..]);
        assert_eq!(ext.cells[2].name(), "attention seed 4 fold 2");
        assert_eq!(ext.cells[3].name(), "no_attention seed 4 fold 2");
        assert_eq!(ext.cells[3].index, 3);
        let err = ext
            .reconcile(&request(vec![2], &[]), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must keep every recorded cell"), "{err}");
        let err = plan
            .reconcile(&request(vec![1], &["--epochs", "2"]), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train flags"), "{err}");
    }

    #[test]
    fn flags_the_experiment_sets_are_refused_in_train_flags() {
        let err = Plan::new(&request(vec![1], &["--fold=2"])).unwrap_err();
        assert!(err
            .to_string()
            .contains("train flag --fold=2 is set by the experiment"));
        let err = Plan::new(&request(vec![5], &[])).unwrap_err();
        assert_eq!(setting::find(&err).unwrap().setting, "folds");
    }
}
