//! `flarecast verify`: forecasts scored against the flares that came.

use anyhow::{Context, Result};
use flarecast::instant::parse_time;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Forecast folders (their index.jsonl), index files or record files.
    #[arg(long = "forecasts", required = true, num_args = 1.., value_name = "DIR|FILE")]
    forecasts: Vec<PathBuf>,
    /// A GOES flare catalogue in any format `label` reads.
    #[arg(long)]
    catalog: PathBuf,
    /// The time up to which the catalogue is complete (UTC); forecasts whose window ends
    /// later are pending. Default: the start of its last flare.
    #[arg(long)]
    catalog_end: Option<String>,
    #[command(flatten)]
    json: super::common_args::Json,
    /// Folder for the ROC, reliability, skill and confusion plots.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Also write the decided forecasts as a prediction file (timestamp,flare_prob,target)
    /// that `flarecast evaluate --predictions` reads.
    #[arg(long)]
    predictions: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let end = args
        .catalog_end
        .as_deref()
        .map(parse_time)
        .transpose()
        .context("--catalog-end")?;
    let report = flarecast::verify::verify(
        &args.forecasts,
        &args.catalog,
        end,
        args.plots.as_deref(),
        args.predictions.as_deref(),
    )?;
    if args.json.on {
        return super::print_json(&report);
    }
    println!(
        "{} forecasts: {} decided, {} pending (catalogue complete to {}){}",
        report.forecasts,
        report.decided,
        report.pending,
        report.catalog_end,
        if report.duplicates > 0 {
            format!(
                "; {} repeated forecasts of one image ignored",
                report.duplicates
            )
        } else {
            String::new()
        }
    );
    if let Some(file) = &report.scores {
        let s = &file.scores;
        println!(
            "threshold {}: TP {} FP {} TN {} FN {}",
            report.threshold, s.tp, s.fp, s.tn, s.fn_
        );
        let f = |v: Option<f64>| v.map_or("undefined".to_string(), |v| format!("{v:.4}"));
        println!(
            "TSS {}  HSS2 {}  Brier {}  BSS {}  ROC AUC {}  event rate {}",
            f(s.tss),
            f(s.hss2),
            f(s.brier),
            f(s.bss),
            f(s.roc_auc),
            f(s.event_rate)
        );
        for why in &file.undefined {
            println!("undefined: {why}");
        }
    }
    if let Some(c) = &report.calibrated {
        super::calibrate::print_compared(c);
    }
    for p in &report.plots {
        println!("plot {p}");
    }
    if let Some(p) = &args.predictions {
        println!("predictions {}", p.display());
    }
    Ok(())
}
