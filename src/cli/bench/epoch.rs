//! `flarecast bench epoch`: one training epoch end to end, `flarecast train --epochs 1`
//! against the paper's PyTorch loop (scripts/reference_train.py), on a synthetic fold.

use super::paper_loop::{self, LoopArgs};
use anyhow::Result;
use flarecast::bench::epoch::{self as bench, EpochBenchConfig};
use flarecast::bench::fold::FoldSpec;

#[derive(clap::Args)]
#[command(mut_arg("instances", |a| a.default_value("3000").help(
    "Images of the synthetic fold, 512x512 JPGs: a quarter of them (at least one) the \
     validation split, the rest the training split")))]
#[command(mut_arg("rounds", |a| a.default_value("1").help(
    "Epochs timed per program, alternating the programs; medians are reported")))]
#[command(mut_arg("precision", |a| a.help(
    "Comma-separated, one row each: f32 (timed against the paper's loop in float32), auto \
     or bf16 (against the tuned loop in the precision flarecast computes)")))]
pub struct Args {
    #[command(flatten)]
    fold: LoopArgs,
    /// flarecast's loader threads (default: one per core).
    #[arg(long, value_parser = flarecast::data::LoaderConfig::WORKERS.flag())]
    workers: Option<usize>,
    #[command(flatten)]
    python: super::Python,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let (programs, chosen) = args.fold.programs("epoch", args.python.path())?;
    let cfg = EpochBenchConfig {
        programs,
        workers: args.workers,
    };
    cfg.check()?;
    let programs = &cfg.programs;
    let progress = crate::cli::progress(args.json.on);
    let run = args
        .fold
        .start("epoch", programs, FoldSpec::quarters, &progress)?;
    if !args.json.on {
        let fold = &run.fold;
        run.print_head(
            "epoch",
            "one epoch (training + validation) per program, ",
            programs,
        );
        println!(
            "fold {}: {} training ({} FL) and {} validation ({} FL) synthetic {}x{} JPGs every {} h (seed {}) in {}",
            fold.fold,
            fold.train,
            fold.train_positive,
            fold.val,
            fold.val_positive,
            fold.image_side,
            fold.image_side,
            fold.cadence_hours,
            fold.seed,
            run.work.display()
        );
        run.print_precisions(&chosen, programs);
    }
    let rows = bench::run(&cfg, &run.fold, &progress, |_| {})?;
    if args.json.on {
        let mut report = run.report(programs, &rows);
        report["allocator"] = super::allocator_note().into();
        return crate::cli::print_json(&report);
    }
    let table: flarecast::text_table::Table<9> =
        paper_loop::table(38, &[], rows.iter().map(|r| (r, Vec::new())));
    print!("{table}");
    println!(
        "images: the balanced training items and the validation images of the epoch; loop s: the epoch as each program times it (flarecast: its history's epoch time, training, validation and the best checkpoint; PyTorch: training and validation), start-up, image check and the other saving left out; peak RSS: wait4's ru_maxrss of the child (its largest process, DataLoader workers not added up); allocator: {}",
        super::allocator_note()
    );
    Ok(())
}
