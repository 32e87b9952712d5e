//! `flarecast calibrate`: a calibrated copy of a model from a prediction file.

use anyhow::Result;
use flarecast::calibrate::{self, CalibrateConfig, Method};
use flarecast::evaluate::{Compared, Quality};
use flarecast::text_table::{Col::Right, Table};
use std::path::PathBuf;

const ABOUT: &str = "\
Fit a map from the model's P(FL) to a calibrated probability on a prediction file
(timestamp,flare_prob,target, as `evaluate` or `verify --predictions` write it; its
flare_prob must be the model's raw probability), and write the model with the map in its
metadata to a new .safetensors file (the model file is not touched). Fit it on months the
model was not trained on, and judge it on others. predict, evaluate, forecast and verify
then report the calibrated probability beside the raw one; the TSS/HSS2 decision
threshold stays on the raw probability.

The networks train on balanced epochs (flaring instances oversampled to the non-flaring
count), so the raw P(FL) runs high; platt (default) fits a logistic curve on its logit,
isotonic a non-decreasing step curve. At least 10 flaring and 10 non-flaring instances
are needed, each given once. Neither output (--out, --plot) may be an input or the other
output. Prints Brier, BSS and a reliability table before and after (on the fitting
file itself) and draws a reliability plot.";

#[derive(clap::Args)]
#[command(long_about = ABOUT)]
pub struct Args {
    /// The model to calibrate (.pth/.pt or flarecast .safetensors).
    #[arg(long)]
    model: PathBuf,
    /// The model's predictions on held-out instances: timestamp,flare_prob,target.
    #[arg(long)]
    predictions: PathBuf,
    /// platt or isotonic.
    #[arg(long, default_value = "platt")]
    method: Method,
    /// The calibrated model (default: MODEL_STEM_calibrated.safetensors beside the model).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The reliability plot (default: OUT_STEM_reliability.png beside --out).
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    json: super::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let summary = calibrate::calibrate(&CalibrateConfig {
        model: args.model,
        predictions: args.predictions,
        method: args.method,
        out: args.out,
        plot: args.plot,
    })?;
    if args.json.on {
        return super::print_json(&summary);
    }
    let c = &summary.compared;
    println!(
        "{} calibration fitted on {} ({} instances, {} flaring)",
        c.method, summary.predictions, summary.calibration.instances, summary.calibration.events
    );
    println!("on the fitting file (in-sample):");
    print_compared(c);
    println!("wrote {}", summary.output);
    println!("plot {}", summary.plot);
    Ok(())
}

/// Brier and BSS of the raw and calibrated probabilities, and their reliability table
/// (TSS and HSS2 at the threshold are the raw probability's, unchanged).
pub fn print_compared(c: &Compared) {
    let f = |v: Option<f64>| v.map_or("undefined".to_string(), |v| format!("{v:.4}"));
    for (name, q) in [("raw", &c.raw), ("calibrated", &c.calibrated)] {
        println!("{name}: Brier {:.4}  BSS {}", q.brier, f(q.bss));
    }
    println!("reliability ({}):", c.method);
    print!("{}", reliability_table(&c.raw, &c.calibrated));
}

/// Per bin: the count and the mean forecast of raw and calibrated, and the observed rate.
fn reliability_table(raw: &Quality, cal: &Quality) -> Table<7> {
    let mut t = Table::new(
        [
            Right(9),
            Right(6),
            Right(8),
            Right(8),
            Right(6),
            Right(8),
            Right(8),
        ],
        [
            "bin", "raw n", "raw p", "observed", "cal n", "cal p", "observed",
        ],
    );
    let cell = |v: f64, n: u64| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{v:.3}")
        }
    };
    for (r, c) in raw.reliability.iter().zip(&cal.reliability) {
        t.row([
            format!("{:.1}-{:.1}", r.lo, r.hi),
            r.count.to_string(),
            cell(r.mean_prob, r.count),
            cell(r.observed, r.count),
            c.count.to_string(),
            cell(c.mean_prob, c.count),
            cell(c.observed, c.count),
        ]);
    }
    t
}
