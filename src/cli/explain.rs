//! `flarecast explain`: maps of where a model's evidence lies, by the chosen method, as
//! overlays, raw .npy maps and panels.

use super::maps::{report, MapArgs};
use anyhow::{bail, Result};
use flarecast::explain::pointing as point;
use flarecast::explain::{self, Baseline, Method, Options, Rule, Target};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(mut_arg("out", |a| super::common_args::out_default(a, "explain", "Output directory for the PNG overlays, .npy maps and panels.")))]
#[command(mut_arg("model", super::model_args::one_model))]
pub struct Args {
    #[command(flatten)]
    maps: MapArgs,
    /// Explanation method (default: attention for the attention network, Grad-CAM for
    /// the standard CNN); with --pointing, a comma-separated list.
    #[arg(long, value_enum, value_delimiter = ',')]
    method: Vec<Method>,
    #[command(flatten)]
    out: super::common_args::OutDir,
    /// The class whose logit is explained.
    #[arg(long, value_enum, default_value = "flare")]
    target: Target,
    /// Integrated Gradients' baseline.
    #[arg(long, value_enum, default_value = "zeros")]
    baseline: Baseline,
    /// Integrated Gradients' number of points on the path.
    #[arg(long, default_value_t = 50, value_parser = Options::STEPS.flag())]
    steps: usize,
    /// Integrated Gradients' quadrature (captum's default is Gauss-Legendre).
    #[arg(long, value_enum, default_value = "gauss-legendre")]
    rule: Rule,
    /// Integrated Gradients' path points per forward and backward pass, the points of
    /// consecutive images sharing a pass (captum's internal_batch_size). Default: as many
    /// as 2 GiB of the network's graph holds at the input side, at most 64 (for
    /// the attention network: 13 at 256, 23 at 192; ResNet-18: 46 at 256, 64 at 192).
    #[arg(long, value_parser = explain::integrated::INTERNAL_BATCH.flag())]
    internal_batch_size: Option<usize>,
    /// Occlusion window side in pixels.
    #[arg(long, default_value_t = 32, value_parser = Options::WINDOW.flag())]
    window: i64,
    /// Occlusion stride in pixels.
    #[arg(long, default_value_t = 16, value_parser = Options::STRIDE.flag())]
    stride: i64,
    /// Score where the maps point: each positive validation instance of --fold against
    /// its flare's site from --catalog, central and near-limb flares apart.
    #[arg(long, requires_all = ["catalog", "labels", "fold", "images"], conflicts_with = "csv")]
    pointing: bool,
    /// GOES flare catalogue with flare positions (for --pointing).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Label folder written by `flarecast label` (for --pointing).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Fold whose validation positives are scored (for --pointing).
    #[arg(long, value_parser = flarecast::label::Fold::NUMBER.flag())]
    fold: Option<u32>,
    /// Radius around the flare site, in solar radii (for --pointing).
    #[arg(long, default_value_t = 0.1)]
    radius: f64,
}

pub fn run(args: Args) -> Result<()> {
    let model = args.maps.load()?;
    let im_size = model.im_size;
    let model = &model.loaded;
    let opts = Options {
        target: args.target,
        baseline: args.baseline,
        rule: args.rule,
        steps: args.steps,
        internal_batch: args.internal_batch_size,
        window: args.window,
        stride: args.stride,
        ..args.maps.options()?
    };
    let methods = if args.method.is_empty() {
        vec![Method::default_for(model.net.arch())]
    } else {
        args.method.clone()
    };
    if args.pointing {
        return pointing(&args, model, &methods, &opts, im_size);
    }
    let [method] = methods[..] else {
        bail!("give one --method when writing maps (several are for --pointing)");
    };
    let inputs = args.maps.inputs()?;
    let json = args.maps.json.on;
    let bar = progress(inputs.len(), json);
    let started = std::time::Instant::now();
    let results = explain::explain_images(
        model,
        &inputs,
        im_size,
        Some(method),
        &opts,
        &args.out.dir,
        |r| {
            bar.suspend(|| report(r, method.name(), json))?;
            bar.inc(1);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    eprintln!(
        "explain: {} images, {} maps, in {:.1} s under {}",
        results.len(),
        method.name(),
        started.elapsed().as_secs_f64(),
        args.out.dir.display()
    );
    Ok(())
}

fn progress(len: usize, json: bool) -> indicatif::ProgressBar {
    super::progress(json).bar(len as u64, "{wide_bar} {pos}/{len}")
}

fn pointing(
    args: &Args,
    model: &flarecast::model::LoadedModel,
    methods: &[Method],
    opts: &Options,
    im_size: flarecast::im_size::ImSize,
) -> Result<()> {
    let (Some(catalog), Some(labels), Some(fold), Some(images)) =
        (&args.catalog, &args.labels, args.fold, &args.maps.images)
    else {
        bail!("--pointing needs --catalog, --labels, --fold and --images");
    };
    let spec = point::FoldSpec {
        catalog,
        labels,
        fold,
        images,
    };
    let bar = progress(0, args.maps.json.on);
    let report = point::pointing_fold(
        model,
        &spec,
        methods,
        opts,
        im_size,
        args.radius,
        |n| bar.set_length(n as u64),
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    if args.maps.json.on {
        super::print_json(&report)?;
    } else {
        print!("{}", point::table(&report));
    }
    Ok(())
}
