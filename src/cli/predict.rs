//! `flarecast predict`.

use anyhow::{Context, Result};
use flarecast::device::PrecisionChoice;
use flarecast::model::{self as fmodel, Compute};
use flarecast::predict::{predict, Options};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Weights: a PyTorch checkpoint (.pth/.pt) or flarecast .safetensors.
    #[arg(long)]
    model: PathBuf,
    /// JPG/PNG/JP2 magnetograms, or .npy float32 arrays already preprocessed
    /// ([H,W], [1,H,W] or [N,1,H,W]).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Side the images are resized to (default: the size the model was trained at, 256
    /// for PyTorch checkpoints).
    #[arg(long)]
    im_size: Option<u32>,
    /// cpu, cuda, cuda:N or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    device: String,
    /// auto (bf16 where the hardware computes it natively, else f32), f32 or bf16.
    #[arg(long, default_value = "auto")]
    precision: PrecisionChoice,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Decision threshold on P(FL) for the forecast column.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// One JSON object per input instance (JSON lines) instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let device = flarecast::device::parse_device(&args.device)?;
    let mut model = fmodel::load_model(&args.model, device)?;
    model.net.set_compute(Compute::for_device(
        device,
        flarecast::device::choose_precision(args.precision, device).precision,
    ));
    let im_size = match args.im_size {
        Some(s) => {
            fmodel::check_im_size(s.into()).context("--im-size")?;
            s
        }
        None => model.meta.im_size as u32,
    };
    let opts = Options {
        device,
        im_size,
        batch_size: args.batch_size,
    };
    let preds = predict(&model, args.inputs.iter().cloned(), opts);
    let arch = model.net.arch().name();
    if args.json {
        for p in preds {
            let p = p?;
            for note in &p.notes {
                eprintln!("flarecast: warning: {note}");
            }
            let line = serde_json::json!({
                "input": p.input.display().to_string(), "index": p.index, "flare_prob": p.flare_prob,
                "logits": p.logits, "model": arch,
            });
            println!("{line}");
        }
    } else {
        println!(
            "model: {} ({arch}), device {}, threshold {}",
            args.model.display(),
            flarecast::device::device_name(device),
            args.threshold
        );
        println!("{:>8}  {:>8}  {:<8}  input", "P(FL)", "forecast", "index");
        for p in preds {
            let p = p?;
            for note in &p.notes {
                eprintln!("flarecast: warning: {note}");
            }
            let fc = if p.flare_prob >= args.threshold {
                "FL"
            } else {
                "NF"
            };
            println!(
                "{:>8.4}  {:>8}  {:<8}  {}",
                p.flare_prob,
                fc,
                p.index,
                p.input.display()
            );
        }
    }
    Ok(())
}
