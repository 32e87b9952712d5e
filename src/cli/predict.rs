//! `flarecast predict`.

use super::model_args::ModelArgs;
use anyhow::Result;
use flarecast::predict::predict;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(mut_arg("model", super::model_args::one_model))]
pub struct Args {
    #[command(flatten)]
    run: ModelArgs,
    /// JPG/PNG/JP2 magnetograms (a JP2 made into its training JPG first, as `convert`
    /// does), or .npy float32 arrays already preprocessed ([H,W], [1,H,W] or [N,1,H,W]).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    threshold: super::common_args::Threshold,
    #[command(flatten)]
    json: super::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let path = args.run.model()?;
    let model = args.run.settings()?.load(path)?;
    let preds = predict(&model, args.inputs.iter().cloned(), args.threshold.value)?;
    let arch = model.loaded.net.arch().name();
    if !args.json.on {
        println!(
            "model: {} ({arch}{}), device {}, {} ({}), threshold {}",
            path.display(),
            super::model_args::trained_in(&model.loaded),
            flarecast::device::device_name(model.device),
            model.precision.precision.name(),
            model.precision.reason,
            args.threshold.value
        );
        if let Some(c) = &model.loaded.meta.calibration {
            println!(
                "calibrated: {} (P(cal)); the forecast is P(FL) >= threshold",
                flarecast::forecast::ensemble::describe_calibration(c)
            );
            println!(
                "{:>8}  {:>8}  {:>8}  {:<8}  input",
                "P(FL)", "P(cal)", "forecast", "index"
            );
        } else {
            println!("{:>8}  {:>8}  {:<8}  input", "P(FL)", "forecast", "index");
        }
    }
    for p in preds {
        let p = p?;
        for note in &p.notes {
            eprintln!("flarecast: warning: {note}");
        }
        if args.json.on {
            let mut line = serde_json::json!({
                "input": p.input.display().to_string(), "index": p.index, "flare_prob": p.flare_prob,
                "logits": p.logits, "flare": p.flare, "model": arch,
            });
            if let Some(c) = p.calibrated_prob {
                line["calibrated_prob"] = serde_json::json!(c);
            }
            super::print_json_line(&line)?;
        } else {
            let cal = p.calibrated_prob.map(|c| format!("{c:>8.4}  "));
            println!(
                "{:>8.4}  {}{:>8}  {:<8}  {}",
                p.flare_prob,
                cal.unwrap_or_default(),
                if p.flare { "FL" } else { "NF" },
                p.index,
                p.input.display()
            );
        }
    }
    Ok(())
}
