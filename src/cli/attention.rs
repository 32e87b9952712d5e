//! `flarecast attention`: the network's own maps (attention estimators, or Grad-CAM for
//! the standard CNN) as overlays, raw .npy maps and a panel; `explain` with its default
//! method.

use super::maps::{report, MapArgs};
use anyhow::Result;
use flarecast::explain;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(mut_arg("model", super::model_args::one_model))]
pub struct Args {
    #[command(flatten)]
    maps: MapArgs,
    /// Output directory for the PNG overlays and .npy maps.
    #[arg(long, default_value = "attention")]
    out: PathBuf,
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
    let json = args.maps.json;
    explain::explain_images(
        &model.loaded,
        &inputs,
        model.im_size,
        None,
        &opts,
        &args.out,
        |r| report(r, what, json),
    )?;
    Ok(())
}
