//! `flarecast evaluate`: score prediction files, or run a model on a fold's validation
//! split first and score what it predicts.

use super::model_args::ModelArgs;
use anyhow::Result;
use flarecast::evaluate::{self, plots, EvaluateConfig, FoldPredictConfig, Predictions, Report};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(mut_arg("out", |a| super::common_args::out_default(a, "results", "Where fold{K}_res.csv is written.")))]
#[command(mut_arg("model", |a| a
    .action(clap::ArgAction::Set)
    .requires("fold")
    .help("Weights to run on a fold's validation split (instead of --predictions): a PyTorch checkpoint (.pth/.pt) or flarecast .safetensors")))]
pub struct Args {
    /// Prediction files to score (`timestamp,flare_prob,target`).
    #[arg(long, num_args = 1.., required_unless_present = "model", conflicts_with = "model")]
    predictions: Vec<PathBuf>,
    /// Full label tables (`label,target,goes_class,fl_lon,fl_lat,...`) for the location
    /// analysis of X- and M-class instances.
    #[arg(long, num_args = 1..)]
    details: Vec<PathBuf>,
    #[command(flatten)]
    threshold: super::common_args::Threshold,
    /// Directory for PNG plots (ROC, reliability, skill against threshold, confusion).
    #[arg(long)]
    plots: Option<PathBuf>,
    /// A training history (`fold{K}_history.csv`) to plot as training curves (with --plots).
    #[arg(long, requires = "plots")]
    history: Option<PathBuf>,
    #[command(flatten)]
    json: super::common_args::Json,
    /// The model, its device, precision, batch size and input size (with --fold).
    #[command(flatten)]
    run: ModelArgs,
    /// Fold whose validation split is run (with --model).
    #[arg(long, requires = "model", value_parser = flarecast::label::Fold::NUMBER.flag())]
    fold: Option<u32>,
    /// The fold's images and labels.
    #[command(flatten)]
    data: super::common_args::Data,
    #[command(flatten)]
    out: super::common_args::OutDir,
}

pub fn run(args: Args) -> Result<()> {
    let predictions = match (args.run.models.first(), args.fold) {
        (Some(model), Some(fold)) => Predictions::Model(FoldPredictConfig {
            model: model.clone(),
            fold,
            labels: args.data.labels.clone(),
            images: args.data.images.clone(),
            out: args.out.dir.clone(),
            run: args.run.settings()?,
        }),
        _ => Predictions::Files(args.predictions.clone()),
    };
    let e = evaluate::run(
        &EvaluateConfig {
            predictions,
            details: args.details.clone(),
            threshold: args.threshold.value,
            plots: args.plots.clone(),
            history: args.history.clone(),
        },
        &super::progress(args.json.on),
    )?;
    if args.json.on {
        super::print_json(&e)?;
    } else {
        if let Some(p) = &e.predictions {
            println!("wrote {p}");
        }
        print_report(&e.report);
        if let Some(c) = &e.calibrated {
            super::calibrate::print_compared(c);
        }
        for p in &e.plots {
            println!("plot: {p}");
        }
    }
    Ok(())
}

/// A score with `decimals`, or "undefined", right-aligned in `width`.
fn cell(v: Option<f64>, width: usize, decimals: usize) -> String {
    match v {
        Some(x) => format!("{x:>width$.decimals$}"),
        None => format!("{:>width$}", "undefined"),
    }
}

fn print_report(r: &Report) {
    println!(
        "threshold {} (forecast flare when P(FL) >= threshold)",
        r.threshold
    );
    println!(
        "{:<28} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>13}",
        "file", "n", "TP", "FP", "TN", "FN", "TSS", "HSS2", "acc", "prec", "recall", "Brier", "BSS", "AUC", "best thr/TSS"
    );
    for file in &r.files {
        let name = plots::short_name(std::path::Path::new(&file.file));
        let f = &file.scores;
        let best = match (f.best_threshold, f.best_tss) {
            (Some(t), Some(s)) => format!("{t:>6.3}/{s:.4}"),
            _ => format!("{:>13}", "undefined"),
        };
        println!(
            "{:<28} {:>6} {:>6} {:>6} {:>6} {:>6} {} {} {} {} {} {} {} {} {best}",
            name,
            f.n,
            f.tp,
            f.fp,
            f.tn,
            f.fn_,
            cell(f.tss, 7, 4),
            cell(f.hss2, 7, 4),
            cell(f.accuracy, 6, 3),
            cell(f.precision, 6, 3),
            cell(f.recall, 6, 3),
            cell(f.brier, 7, 4),
            cell(f.bss, 7, 4),
            cell(f.roc_auc, 6, 4),
        );
        for why in &file.undefined {
            println!("{:<28} undefined: {why}", "");
        }
    }
    if r.files.len() > 1 {
        let (m, s) = (&r.mean, &r.std);
        for (key, mean, std) in [
            ("tss", m.tss, s.tss),
            ("hss2", m.hss2, s.hss2),
            ("accuracy", m.accuracy, s.accuracy),
            ("precision", m.precision, s.precision),
            ("recall", m.recall, s.recall),
            ("brier", m.brier, s.brier),
            ("bss", m.bss, s.bss),
            ("roc_auc", m.roc_auc, s.roc_auc),
            ("best_tss", m.best_tss, s.best_tss),
        ] {
            match (mean, std) {
                (Some(m), Some(s)) => println!(
                    "mean {key:<10} {m:.4} +- {s:.4} (sample std over {} files)",
                    r.files.len()
                ),
                (Some(m), None) => println!("mean {key:<10} {m:.4}"),
                (None, _) => println!("mean {key:<10} undefined (undefined in some file)"),
            }
        }
    }
    if let Some(loc) = &r.location {
        println!("location (X- and M-class windows; central = |lon| <= 70 and |lat| <= 70):");
        println!(
            "{:<6} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8} {:>6}",
            "class",
            "limb pos",
            "limb neg",
            "recall",
            "cent pos",
            "cent neg",
            "recall",
            "unknown",
            "total"
        );
        for (name, c) in [("X", &loc.x), ("M", &loc.m)] {
            println!(
                "{:<6} {:>9} {:>9} {:>8.4} {:>9} {:>9} {:>8.4} {:>8} {:>6}",
                name,
                c.limb.pos,
                c.limb.neg,
                c.limb.recall,
                c.central.pos,
                c.central.neg,
                c.central.recall,
                c.unknown,
                c.total
            );
        }
        if loc.unmatched > 0 {
            println!("{} predictions have no row in the details", loc.unmatched);
        }
    }
}
