//! `flarecast experiment run|cell|status|report`: a grid of training runs here or on a
//! SLURM cluster, and the paper's table of it.

use anyhow::{bail, Context, Result};
use flarecast::calibrate::Method;
use flarecast::evaluate;
use flarecast::experiment::local::{self, LocalConfig};
use flarecast::experiment::report::{self, ExperimentReport, ReportConfig};
use flarecast::experiment::slurm::{self, SlurmConfig};
use flarecast::experiment::summary::{Finished, RunSummary};
use flarecast::experiment::{self, cell, paper, state, Grid, Plan, PlanRequest, State};
use flarecast::model::Arch;
use flarecast::text_table::{Col, Table};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Run (or resume) the grid: one train + evaluate per (network, seed, fold).
    Run(RunArgs),
    /// Run one cell of a recorded grid (what the executors start).
    Cell(CellArgs),
    /// Every cell's state, from the files.
    Status(StatusArgs),
    /// The paper's table: per-fold scores, mean +- std, location analysis, bar chart.
    Report(ReportArgs),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Executor {
    Local,
    Slurm,
}

#[derive(clap::Args)]
#[command(mut_arg("out", |a| super::common_args::out_help(a, "Experiment folder: experiment.json, {attention,no_attention}/seed{S}/fold{K}_*.")))]
struct RunArgs {
    /// The fold's images and labels.
    #[command(flatten)]
    data: super::common_args::Data,
    #[command(flatten)]
    out: super::common_args::OutDir,
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    folds: Vec<u32>,
    /// Networks: attention, standard.
    #[arg(long, value_delimiter = ',', default_value = "attention,standard")]
    arch: Vec<Arch>,
    #[arg(long, value_delimiter = ',', default_values_t = [flarecast::recipe::Recipe::PAPER.seed])]
    seeds: Vec<u64>,
    #[arg(long, value_enum, default_value = "local")]
    executor: Executor,
    /// Cells at a time (default: one per CUDA device, else one). With slurm: the array's
    /// limit of tasks running at once (default: none).
    #[arg(long)]
    jobs: Option<usize>,
    /// An #SBATCH option for every task, e.g. --sbatch-arg=--partition=gpu
    /// --sbatch-arg=--gres=gpu:1 --sbatch-arg=--time=04:00:00.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// With slurm: wait for the array to finish, then report.
    #[arg(long)]
    wait: bool,
    /// Add the cells of a larger grid to the recorded one.
    #[arg(long)]
    extend: bool,
    /// Write experiment.json (and with slurm the batch script's plan) and stop.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    json: super::common_args::Json,
    /// Flags for every cell's `train` (after `--`), e.g. -- --epochs 30 --precision f32.
    #[arg(last = true, value_name = "TRAIN FLAGS")]
    train_flags: Vec<String>,
}

#[derive(clap::Args)]
#[command(mut_arg("out", |a| super::common_args::out_help(a, "Experiment folder (experiment.json and every cell's files).")))]
struct CellArgs {
    #[command(flatten)]
    out: super::common_args::OutDir,
    /// The cell's index in experiment.json.
    #[arg(long)]
    index: usize,
}

#[derive(clap::Args)]
#[command(mut_arg("out", |a| super::common_args::out_help(a, "Experiment folder (experiment.json and every cell's files).")))]
struct StatusArgs {
    #[command(flatten)]
    out: super::common_args::OutDir,
    #[command(flatten)]
    json: super::common_args::Json,
}

#[derive(clap::Args)]
#[command(mut_arg("out", |a| super::common_args::out_help(a, "An experiment folder, or any folder laid out {attention,no_attention}/seed{S}/fold{K}_res.csv.")))]
struct ReportArgs {
    #[command(flatten)]
    out: super::common_args::OutDir,
    /// Folder of full label tables Fold{K}_val.csv for the location analysis (default: the
    /// experiment's labels).
    #[arg(long)]
    details: Option<PathBuf>,
    #[command(flatten)]
    threshold: super::common_args::Threshold,
    /// Folder for the bar chart of TSS and HSS2 per fold and network.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Show the paper's published figures beside the results.
    #[arg(long)]
    compare_paper: bool,
    /// platt or isotonic: also give each fold's Brier and BSS calibrated by a map fitted
    /// on the other folds' predictions pooled (never its own).
    #[arg(long)]
    calibrate: Option<Method>,
    #[command(flatten)]
    json: super::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Sub::Run(a) => run_grid(a),
        Sub::Cell(a) => run_cell(a),
        Sub::Status(a) => status(a),
        Sub::Report(a) => report_cmd(a),
    }
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the flarecast executable")
}

fn finished_line(plan: &Plan, f: &Finished) -> String {
    let head = format!(
        "cell {} of {} ({}): {} in {:.0} s",
        f.index,
        plan.cells.len(),
        f.name,
        f.state.name(),
        f.seconds
    );
    if f.state != State::Done {
        return format!(
            "{head}: {}; log {}",
            f.error.as_deref().unwrap_or("no reason recorded"),
            f.log.display()
        );
    }
    let res = plan.cells[f.index].predictions(&plan.out);
    match evaluate::read_predictions(&res) {
        Ok(p) => {
            let s = evaluate::score(&p, 0.5).scores;
            format!("{head} (TSS {} HSS2 {})", num(s.tss, 4), num(s.hss2, 4))
        }
        Err(e) => format!("{head} ({e:#})"),
    }
}

fn run_grid(a: RunArgs) -> Result<()> {
    let req = PlanRequest {
        out: a.out.dir.clone(),
        images: a.data.images.clone(),
        labels: a.data.labels.clone(),
        grid: Grid {
            archs: a.arch.clone(),
            seeds: a.seeds.clone(),
            folds: a.folds.clone(),
        },
        train_flags: a.train_flags.clone(),
    };
    let plan = experiment::prepare(&req, a.extend)?;
    if a.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let exe = exe()?;
    let json = a.json.on;
    let say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "experiment {}: {} cells; grid and commands in {}",
        plan.out.display(),
        plan.cells.len(),
        Plan::path(&plan.out).display()
    ));
    if a.dry_run {
        for c in &plan.cells {
            say(format!(
                "cell {} {}: {} {}",
                c.index,
                c.name(),
                exe.display(),
                c.command.join(" ")
            ));
        }
        return Ok(());
    }
    let progress = super::progress(json);
    let mut on_finished = |f: &Finished| say(finished_line(&plan, f));
    let (summary, submission) = match a.executor {
        Executor::Local => {
            let cuda = tch::Cuda::device_count().max(0) as usize;
            let cfg = LocalConfig {
                exe,
                jobs: a.jobs.unwrap_or(cuda.max(1)),
                cuda_devices: local::cuda_devices(cuda),
            };
            (
                Some(local::run(&plan, &cfg, &progress, &mut on_finished)?),
                None,
            )
        }
        Executor::Slurm => {
            let cfg = SlurmConfig {
                exe,
                jobs: a.jobs.unwrap_or(0),
                sbatch_args: a.sbatch_args.clone(),
            };
            match slurm::submit(&plan, &cfg)? {
                None => {
                    say("every cell is done: nothing to submit".into());
                    (None, None)
                }
                Some(sub) => {
                    say(format!(
                        "submitted job {} (array {}) from {}; logs {}/cell-<index>.log",
                        sub.job,
                        slurm::array_list(&sub.cells),
                        sub.script.display(),
                        slurm::slurm_dir(&plan.out).display()
                    ));
                    let summary = if a.wait {
                        Some(slurm::wait(&plan, &sub, &progress, &mut on_finished)?)
                    } else {
                        say(format!(
                            "follow it with: flarecast experiment status --out {}",
                            plan.out.display()
                        ));
                        None
                    };
                    (summary, Some(sub))
                }
            }
        }
    };
    let waited = summary.is_some() || submission.is_none();
    let report = if waited {
        Some(report::report(&ReportConfig {
            out: plan.out.clone(),
            details: None,
            threshold: flarecast::metrics::DEFAULT_THRESHOLD,
            plots: None,
            compare_paper: false,
            calibrate: None,
        })?)
    } else {
        None
    };
    if json {
        super::print_json(&serde_json::json!({
            "run": summary,
            "submission": submission,
            "report": report,
        }))?;
    } else if let Some(r) = &report {
        println!();
        print_report(r);
    }
    if let Some(s) = &summary {
        fail_on_failed(&plan, s)?;
    }
    Ok(())
}

fn fail_on_failed(plan: &Plan, s: &RunSummary) -> Result<()> {
    let failed = s.failed();
    if !s.running_elsewhere.is_empty() {
        eprintln!(
            "left alone: cells {} are being run by another process",
            s.running_elsewhere
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} cells failed ({}); `flarecast experiment status --out {}` shows them, a rerun retries them",
            failed.len(),
            plan.cells.len(),
            failed
                .iter()
                .map(|f| format!("{}: {}", f.index, f.log.display()))
                .collect::<Vec<_>>()
                .join(", "),
            plan.out.display()
        );
    }
    Ok(())
}

fn run_cell(a: CellArgs) -> Result<()> {
    let o = cell::run_cell(&a.out.dir, a.index, &exe()?)?;
    if o.already_done {
        println!("cell {} ({}): done already", o.index, o.name);
    } else {
        println!(
            "cell {} ({}): done{}; predictions {}",
            o.index,
            o.name,
            if o.resumed { " (resumed)" } else { "" },
            o.predictions.display()
        );
    }
    Ok(())
}

fn status(a: StatusArgs) -> Result<()> {
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
        return super::print_json(&serde_json::json!({ "cells": cells, "counts": counts }));
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

fn report_cmd(a: ReportArgs) -> Result<()> {
    let r = report::report(&ReportConfig {
        out: a.out.dir.clone(),
        details: a.details.clone(),
        threshold: a.threshold.value,
        plots: a.plots.clone(),
        compare_paper: a.compare_paper,
        calibrate: a.calibrate,
    })?;
    if a.json.on {
        return super::print_json(&r);
    }
    print_report(&r);
    Ok(())
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("undefined".into(), |x| format!("{x:.decimals$}"))
}

fn pm(mean: Option<f64>, std: Option<f64>, decimals: usize) -> String {
    match (mean, std) {
        (Some(m), Some(s)) => format!("{m:.decimals$}+-{s:.decimals$}"),
        (m, _) => num(m, decimals),
    }
}

fn print_report(r: &ExperimentReport) {
    println!("threshold {}; mean +- {}", r.threshold, r.std);
    let paper_of = |arch: &str| {
        r.paper
            .as_ref()
            .and_then(|p| p.iter().find(|n| n.arch == arch))
    };
    for s in &r.summaries {
        let paper = paper_of(&s.arch);
        println!();
        println!("{} seed {}", s.arch, s.seed);
        let mut t = Table::new(
            [
                Col::Left(5),
                Col::Left(11),
                Col::Right(6),
                Col::Right(6),
                Col::Right(6),
                Col::Right(6),
                Col::Right(6),
                Col::Right(13),
                Col::Right(13),
                Col::Right(13),
                Col::Right(13),
                Col::Right(13),
                Col::Left(0),
            ],
            [
                "fold",
                "state",
                "n",
                "TP",
                "FP",
                "TN",
                "FN",
                "TSS",
                "HSS2",
                "Brier",
                "BSS",
                "ROC AUC",
                if paper.is_some() {
                    "paper TSS / HSS2"
                } else {
                    ""
                },
            ],
        );
        for row in r
            .rows
            .iter()
            .filter(|x| x.arch == s.arch && x.seed == s.seed)
        {
            let published = paper
                .and_then(|p| p.fold(row.fold))
                .map_or(String::new(), |f| format!("{:.4} / {:.4}", f.tss, f.hss2));
            match &row.scores {
                Some(c) => t.row([
                    row.fold.to_string(),
                    row.state.name().into(),
                    c.n.to_string(),
                    c.tp.to_string(),
                    c.fp.to_string(),
                    c.tn.to_string(),
                    c.fn_.to_string(),
                    num(c.tss, 4),
                    num(c.hss2, 4),
                    num(c.brier, 4),
                    num(c.bss, 4),
                    num(c.roc_auc, 4),
                    published,
                ]),
                None => {
                    let mut cells: [String; 13] = Default::default();
                    cells[0] = row.fold.to_string();
                    cells[1] = row.state.name().into();
                    cells[2] = "not finished".into();
                    cells[12] = row
                        .log
                        .as_ref()
                        .map_or(published, |l| format!("log {}", l.display()));
                    t.row(cells)
                }
            }
        }
        match (&s.mean, &s.std) {
            (Some(m), Some(sd)) => {
                let published = paper.map_or(String::new(), |p| {
                    format!("{:.3} / {:.3}", p.mean_tss, p.mean_hss2)
                });
                t.row([
                    "mean".into(),
                    format!("{} folds", s.folds.len()),
                    pm(m.n, None, 1),
                    pm(m.tp, None, 1),
                    pm(m.fp, None, 1),
                    pm(m.tn, None, 1),
                    pm(m.fn_, None, 1),
                    pm(m.tss, sd.tss, 4),
                    pm(m.hss2, sd.hss2, 4),
                    pm(m.brier, sd.brier, 4),
                    pm(m.bss, sd.bss, 4),
                    pm(m.roc_auc, sd.roc_auc, 4),
                    published,
                ]);
            }
            _ => {
                let mut cells: [String; 13] = Default::default();
                cells[0] = "mean".into();
                cells[1] = format!("{} of {} folds finished", s.finished.len(), s.folds.len());
                cells[2] = "not finished".into();
                t.row(cells);
            }
        }
        print!("{t}");
        if let Some(loc) = &s.location {
            print_location(loc, paper);
        }
        if let Some(c) = &s.cross_fold_calibration {
            print_cross_fold(c);
        }
    }
    for o in &r.over_seeds {
        println!();
        println!(
            "{} over seeds {} (mean +- sample std of the seeds' means)",
            o.arch,
            o.seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let sp = |x: Option<report::Spread>| {
            x.map_or("not finished".into(), |x| pm(Some(x.mean), x.std, 4))
        };
        println!(
            "TSS {}  HSS2 {}  Brier {}  BSS {}  ROC AUC {}",
            sp(o.tss),
            sp(o.hss2),
            sp(o.brier),
            sp(o.bss),
            sp(o.roc_auc)
        );
    }
    for p in &r.plots {
        println!("plot: {}", p.display());
    }
}

fn print_cross_fold(c: &report::CrossFoldCalibration) {
    println!(
        "calibrated ({:?}), each fold by a map fitted on the other folds' predictions; TSS and HSS2 stay the raw probability's",
        c.method
    );
    if let Some(why) = &c.unavailable {
        println!("  unavailable: {why}");
        return;
    }
    let mut t = Table::new(
        [
            Col::Left(5),
            Col::Left(14),
            Col::Right(11),
            Col::Right(11),
            Col::Right(11),
            Col::Right(11),
        ],
        [
            "fold",
            "fitted on",
            "Brier raw",
            "Brier cal",
            "BSS raw",
            "BSS cal",
        ],
    );
    for f in &c.folds {
        t.row([
            f.fold.to_string(),
            f.calibration.fitted_on.clone(),
            num(Some(f.compared.raw.brier), 4),
            num(Some(f.compared.calibrated.brier), 4),
            num(f.compared.raw.bss, 4),
            num(f.compared.calibrated.bss, 4),
        ]);
    }
    t.row([
        "mean".into(),
        String::new(),
        num(c.raw_brier, 4),
        num(c.calibrated_brier, 4),
        num(c.raw_bss, 4),
        num(c.calibrated_bss, 4),
    ]);
    print!("{t}");
}

fn print_location(loc: &report::PooledLocation, paper: Option<&paper::PaperNetwork>) {
    let folds = |v: &[u32]| {
        v.iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut head = format!(
        "location, pooled over folds {} (X- and M-class windows; central = |lon| <= 70 and |lat| <= 70)",
        folds(&loc.folds)
    );
    if !loc.without_details.is_empty() {
        head += &format!(
            "; no full label table for folds {}",
            folds(&loc.without_details)
        );
    }
    println!("{head}");
    let mut t = Table::new(
        [
            Col::Left(6),
            Col::Right(9),
            Col::Right(9),
            Col::Right(8),
            Col::Right(9),
            Col::Right(9),
            Col::Right(8),
            Col::Right(8),
            Col::Right(6),
        ],
        [
            "class", "limb pos", "limb neg", "recall", "cent pos", "cent neg", "recall", "unknown",
            "total",
        ],
    );
    for (name, c) in [("X", &loc.location.x), ("M", &loc.location.m)] {
        t.row([
            name.into(),
            c.limb.pos.to_string(),
            c.limb.neg.to_string(),
            format!("{:.4}", c.limb.recall),
            c.central.pos.to_string(),
            c.central.neg.to_string(),
            format!("{:.4}", c.central.recall),
            c.unknown.to_string(),
            c.total.to_string(),
        ]);
    }
    let paper = paper.filter(|p| !p.location.is_empty());
    if let Some(p) = paper {
        for l in p.location {
            let recall = |pos: u64, neg: u64| format!("{:.4}", pos as f64 / (pos + neg) as f64);
            t.row([
                format!("paper {}", l.class),
                l.limb_pos.to_string(),
                l.limb_neg.to_string(),
                recall(l.limb_pos, l.limb_neg),
                l.central_pos.to_string(),
                l.central_neg.to_string(),
                recall(l.central_pos, l.central_neg),
                "-".into(),
                l.total.to_string(),
            ]);
        }
    }
    print!("{t}");
    if paper.is_some() {
        println!("(the paper's rows count all four folds)");
    }
}
