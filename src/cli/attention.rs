//! `flarecast attention`: the network's own maps (attention estimators, or Grad-CAM for
//! the standard CNN) as overlays, raw .npy maps and a panel; `explain` with its default
//! method.

use anyhow::{bail, Context, Result};
use flarecast::explain::{self, Options};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Weights: a PyTorch checkpoint (.pth/.pt) or flarecast .safetensors.
    #[arg(long)]
    model: PathBuf,
    /// Magnetograms (JPG/PNG/JP2).
    inputs: Vec<PathBuf>,
    /// Output directory for the PNG overlays and .npy maps.
    #[arg(long)]
    out: PathBuf,
    /// Which estimator's map: 1 (l1, 1/4 resolution), 2, 3, or all.
    #[arg(long, default_value = "all")]
    estimator: String,
    /// Side the images are resized to (default: the model's training size).
    #[arg(long)]
    im_size: Option<u32>,
    /// An instance list with a `timestamp` column of image paths (the reference's
    /// plots.csv), resolved against --images.
    #[arg(long, requires = "images")]
    csv: Option<PathBuf>,
    /// Image tree the --csv paths are relative to.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Grad-CAM layer for the standard CNN: 5 (conv_block5, 16x16 at 256) or 6 (conv_block6, 2x2).
    #[arg(long, default_value_t = 5)]
    gradcam_block: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn estimators(spec: &str) -> Result<Vec<usize>> {
    match spec {
        "all" => Ok(vec![1, 2, 3]),
        "1" | "2" | "3" => Ok(vec![spec.parse()?]),
        other => bail!("--estimator must be 1, 2, 3 or all, got {other:?}"),
    }
}

/// The positional images, then those of the --csv list.
pub fn inputs(
    mut inputs: Vec<PathBuf>,
    csv: Option<&PathBuf>,
    images: Option<&PathBuf>,
) -> Result<Vec<PathBuf>> {
    if let (Some(csv), Some(images)) = (csv, images) {
        inputs.extend(explain::instance_list(csv, images)?);
    }
    if inputs.is_empty() {
        bail!("no input images (give IMAGE paths or --csv with --images)");
    }
    Ok(inputs)
}

/// One line per image: its forecast and the files written.
pub fn report(r: &explain::ImageResult, what: &str) {
    let files: Vec<String> = r.written.iter().map(|p| p.display().to_string()).collect();
    let delta = r
        .delta
        .map(|d| format!(" (convergence delta {d:.3e})"))
        .unwrap_or_default();
    println!(
        "{}: P(FL) {:.4}; {what}{delta} -> {}",
        r.input.display(),
        r.prob,
        files.join(", ")
    );
}

pub fn run(args: Args) -> Result<()> {
    let device = flarecast::device::parse_device(&args.device)?;
    let model = flarecast::model::load_model(&args.model, device)?;
    if let Some(s) = args.im_size {
        flarecast::model::check_im_size(s.into()).context("--im-size")?;
    }
    let im_size = args.im_size.unwrap_or(model.meta.im_size as u32);
    let opts = Options {
        estimators: estimators(&args.estimator)?,
        gradcam_block: args.gradcam_block,
        ..Options::default()
    };
    let inputs = inputs(args.inputs, args.csv.as_ref(), args.images.as_ref())?;
    for note in inputs
        .iter()
        .flat_map(|p| flarecast::preprocess::assumptions(p))
    {
        eprintln!("flarecast: warning: {note}");
    }
    let what = if model.net.arch().is_attention() {
        "attention"
    } else {
        "Grad-CAM"
    };
    explain::explain_images(&model, &inputs, im_size, None, &opts, &args.out, |r| {
        report(r, what)
    })?;
    Ok(())
}
