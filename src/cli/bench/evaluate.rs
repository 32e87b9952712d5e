//! `flarecast bench evaluate`: `flarecast evaluate --model` over a synthetic validation
//! quarter against the tuned PyTorch inference loop, on the same weights.

use super::paper_loop::{self, LoopArgs};
use anyhow::Result;
use flarecast::bench::evaluate as bench;
use flarecast::bench::fold::FoldSpec;
use flarecast::text_table::{Col::Right, Table};

#[derive(clap::Args)]
#[command(mut_arg("instances", |a| a.default_value("2000").help(
    "Validation images of the synthetic fold (512x512 JPGs)")))]
#[command(mut_arg("rounds", |a| a.default_value("2").help(
    "Passes timed per program, alternating the programs; medians are reported")))]
#[command(mut_arg("precision", |a| a.help(
    "Comma-separated, one row each: auto (bf16 where the hardware computes it natively and \
     faster, else f32), f32, bf16; PyTorch runs each row in the precision flarecast computes")))]
pub struct Args {
    #[command(flatten)]
    fold: LoopArgs,
    #[command(flatten)]
    python: super::Python,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let (cfg, chosen) = args.fold.programs("evaluate", args.python.path())?;
    bench::check(&cfg)?;
    let progress = crate::cli::progress(args.json.on);
    let run = args
        .fold
        .start("evaluate", &cfg, FoldSpec::validation, &progress)?;
    if !args.json.on {
        let fold = &run.fold;
        run.print_head("evaluate", "", &cfg);
        println!(
            "fold {} validation: {} synthetic {}x{} JPGs ({} FL) every {} h (seed {}) in {}; both programs run the same freshly initialised weights",
            fold.fold,
            fold.val,
            fold.image_side,
            fold.image_side,
            fold.val_positive,
            fold.cadence_hours,
            fold.seed,
            run.work.display()
        );
        run.print_precisions(&chosen, &cfg);
    }
    let rows = bench::run(&cfg, &run.fold, &progress, |_| {})?;
    if args.json.on {
        return crate::cli::print_json(&run.report(&cfg, &rows));
    }
    let table: Table<10> = paper_loop::table(
        42,
        &[(Right(9), "max |dP|")],
        rows.iter()
            .map(|r| (&r.row, vec![format!("{:.1e}", r.max_prob_difference)])),
    );
    print!("{table}");
    println!(
        "PyTorch: scripts/reference_train.py --evaluate --tuned (channels_last, bf16 autocast in bf16 rows, inference_mode, a DataLoader worker per core); loop s: the time PyTorch reports for its loop; peak RSS: wait4's ru_maxrss of the child (its largest process, DataLoader workers not added up); max |dP|: the largest difference in P(FL) between the two programs' predictions"
    );
    Ok(())
}
