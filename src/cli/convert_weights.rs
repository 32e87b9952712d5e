//! `flarecast convert-weights IN OUT`: PyTorch checkpoint <-> flarecast safetensors.

use anyhow::Result;
use flarecast::im_size::ImSize;
use flarecast::model::weights;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Weights to read: .pth/.pt (plain state_dict, {'model_state_dict': ...}, `module.`
    /// keys) or flarecast .safetensors.
    input: PathBuf,
    /// Where to write: .pth/.pt writes a PyTorch state_dict, anything else safetensors.
    output: PathBuf,
    /// Image size to record in the safetensors metadata (default: the input's, else 256).
    #[arg(long)]
    im_size: Option<i64>,
}

pub fn run(args: Args) -> Result<()> {
    let meta = weights::convert_weights(
        &args.input,
        &args.output,
        args.im_size.map(ImSize::of_setting).transpose()?,
    )?;
    println!(
        "{} -> {} ({}, im_size {})",
        args.input.display(),
        args.output.display(),
        meta.arch.name(),
        meta.im_size
    );
    Ok(())
}
