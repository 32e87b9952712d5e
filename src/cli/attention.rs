//! `flarecast attention`: the network's own maps (attention estimators, or Grad-CAM for
//! the standard CNN) as overlays, raw .npy maps and a panel; `explain` with its default
//! method.

use super::maps::{report, MapArgs};
use anyhow::Result;
use flarecast::explain;

#[derive(clap::Args)]
#[command(mut_arg("out", |a| super::common_args::out_default(a, "attention", "Output directory for the PNG overlays and .npy maps.")))]
#[command(mut_arg("model", super::model_args::one_model))]
pub struct Args {
    #[command(flatten)]
    maps: MapArgs,
    #[command(flatten)]
    out: super::common_args::OutDir,
}

pub fn run(args: Args) -> Result<()> {
    let model = args.maps.load()?;
    let opts = args.maps.options()?;
    let inputs = args.maps.inputs()?;
    let what = if model.loaded.net.arch().is_attention() {
        "attention"
    } else {
        "Grad-CAM"
    };
    let json = args.maps.json.on;
    explain::explain_images(
        &model.loaded,
        &inputs,
        model.im_size,
        None,
        &opts,
        &args.out.dir,
        |r| report(r, what, json),
    )?;
    Ok(())
}
