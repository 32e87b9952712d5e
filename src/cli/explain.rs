//! `flarecast explain`: maps of where a model's evidence lies, by the chosen method, as
//! overlays, raw .npy maps and panels.

use super::attention::{estimators, inputs, report};
use anyhow::{Context, Result};
use flarecast::explain::{self, Baseline, Method, Options, Rule, Target};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Weights: a PyTorch checkpoint (.pth/.pt) or flarecast .safetensors.
    #[arg(long)]
    model: PathBuf,
    /// Magnetograms (JPG/PNG/JP2).
    inputs: Vec<PathBuf>,
    /// Explanation method (default: attention for the attention network, Grad-CAM for
    /// the standard CNN).
    #[arg(long, value_enum)]
    method: Option<Method>,
    /// Output directory for the PNG overlays, .npy maps and panels.
    #[arg(long, default_value = "explain")]
    out: PathBuf,
    /// The class whose logit is explained.
    #[arg(long, value_enum, default_value = "flare")]
    target: Target,
    /// Integrated Gradients' baseline.
    #[arg(long, value_enum, default_value = "zeros")]
    baseline: Baseline,
    /// Integrated Gradients' number of points on the path.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Integrated Gradients' quadrature (captum's default is Gauss-Legendre).
    #[arg(long, value_enum, default_value = "gauss-legendre")]
    rule: Rule,
    /// Occlusion window side in pixels.
    #[arg(long, default_value_t = 32)]
    window: i64,
    /// Occlusion stride in pixels.
    #[arg(long, default_value_t = 16)]
    stride: i64,
    /// Images per forward pass (path points, occluded copies).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Attention estimators drawn: 1, 2, 3 or all.
    #[arg(long, default_value = "all")]
    estimator: String,
    /// Grad-CAM layer: 5 (conv_block5, 16x16 at 256) or 6 (conv_block6, 2x2).
    #[arg(long, default_value_t = 5)]
    gradcam_block: usize,
    /// Side the images are resized to (default: the model's training size).
    #[arg(long)]
    im_size: Option<u32>,
    /// An instance list with a `timestamp` column of image paths, resolved against --images.
    #[arg(long, requires = "images")]
    csv: Option<PathBuf>,
    /// Image tree the --csv paths are relative to.
    #[arg(long)]
    images: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
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
        target: args.target,
        baseline: args.baseline,
        rule: args.rule,
        steps: args.steps,
        window: args.window,
        stride: args.stride,
        batch: args.batch,
    };
    let inputs = inputs(args.inputs, args.csv.as_ref(), args.images.as_ref())?;
    let method = args
        .method
        .unwrap_or_else(|| Method::default_for(model.net.arch()));
    let bar = indicatif::ProgressBar::new(inputs.len() as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let results = explain::explain_images(
        &model,
        &inputs,
        im_size,
        Some(method),
        &opts,
        &args.out,
        |r| {
            bar.suspend(|| report(r, method.name()));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    eprintln!(
        "explain: {} images, {} maps, in {:.1} s under {}",
        results.len(),
        method.name(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
