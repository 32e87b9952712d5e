//! `experiment run`: record the grid and run its cells here or on SLURM; `experiment
//! cell`, one cell of a recorded grid (what the executors start).

use super::num;
use anyhow::{bail, Context, Result};
use flarecast::evaluate;
use flarecast::experiment::local::{self, LocalConfig};
use flarecast::experiment::report::{self, ReportConfig};
use flarecast::experiment::slurm::{self, SlurmConfig};
use flarecast::experiment::summary::{Finished, RunSummary};
use flarecast::experiment::{self, cell, Grid, Plan, PlanRequest, State};
use flarecast::model::Arch;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Executor {
    Local,
    Slurm,
}

#[derive(clap::Args)]
#[command(mut_arg("out", |a| a.help("Experiment folder: experiment.json, {network}/seed{S}/fold{K}_*.")))]
#[command(args_override_self = true)]
pub struct RunArgs {
    /// The fold's images and labels.
    #[command(flatten)]
    data: crate::cli::common_args::Data,
    #[command(flatten)]
    out: crate::cli::common_args::OutDir,
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    folds: Vec<u32>,
    /// Networks: attention, standard, alexnet, vgg16, resnet18, resnet34, resnet50,
    /// mobilenet_v2 (the report has a row for each).
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
    /// Write experiment.json (and with slurm the batch script) and stop.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
    /// Flags for every cell's `train` (after `--`), e.g. -- --epochs 30 --precision f32.
    #[arg(last = true, value_name = "TRAIN FLAGS")]
    train_flags: Vec<String>,
    /// Settings from a TOML file of these flags by name (`arch = ["attention",
    /// "resnet34"]`, `train-flags = ["--epochs", "30"]`); flags on the command line
    /// override it.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Print the resolved settings as a config file and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(clap::Args)]
#[command(mut_arg("out", |a| a.help("Experiment folder (experiment.json and every cell's files).")))]
pub struct CellArgs {
    #[command(flatten)]
    out: crate::cli::common_args::OutDir,
    /// The cell's index in experiment.json.
    #[arg(long)]
    index: usize,
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
            let s = evaluate::score(&p, flarecast::metrics::DEFAULT_THRESHOLD).scores;
            format!("{head} (TSS {} HSS2 {})", num(s.tss, 4), num(s.hss2, 4))
        }
        Err(e) => format!("{head} ({e:#})"),
    }
}

pub fn run_grid(a: RunArgs) -> Result<()> {
    let _ = &a.config; // read before parsing (cli::config_file)
    if a.print_config {
        print!(
            "{}",
            crate::cli::config_file::resolved().unwrap_or_default()
        );
        return Ok(());
    }
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
    if a.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let exe = exe()?;
    let slurm_cfg = SlurmConfig {
        exe: exe.clone(),
        jobs: a.jobs.unwrap_or(0),
        sbatch_args: a.sbatch_args.clone(),
    };
    // Before anything is written: a value the batch script cannot hold is refused.
    if matches!(a.executor, Executor::Slurm) {
        slurm::check(&a.out.dir, &slurm_cfg)?;
    }
    let plan = experiment::prepare(&req, a.extend)?;
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
        if matches!(a.executor, Executor::Slurm) {
            match slurm::write_script(&plan, &slurm_cfg)? {
                Some(s) => say(format!(
                    "batch script {} (array {}), not submitted",
                    s.path.display(),
                    slurm::array_list(&s.cells)
                )),
                None => say("every cell is done: no batch script".into()),
            }
        }
        return Ok(());
    }
    let progress = crate::cli::progress(json);
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
        Executor::Slurm => match slurm::submit(&plan, &slurm_cfg)? {
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
        },
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
        crate::cli::print_json(&serde_json::json!({
            "run": summary,
            "submission": submission,
            "report": report,
        }))?;
    } else if let Some(r) = &report {
        println!();
        super::report::print_report(r);
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

pub fn run_cell(a: CellArgs) -> Result<()> {
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
