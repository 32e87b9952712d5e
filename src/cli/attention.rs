//! `flarecast attention`: the network's own maps (attention estimators, or Grad-CAM for
//! the standard CNN) as overlays, raw .npy maps and a panel; `explain` with its default
//! method.

use super::maps::{report, MapArgs};
use anyhow::Result;
use flarecast::explain;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    maps: MapArgs,
    /// Output directory for the PNG overlays and .npy maps.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let (model, im_size) = args.maps.load()?;
    let opts = args.maps.options()?;
    let inputs = args.maps.inputs()?;
    for note in flarecast::preprocess::assumptions_of_all(&inputs) {
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
