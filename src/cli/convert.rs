//! `flarecast convert`.

use anyhow::{bail, Result};
use flarecast::convert::{self, Format, Options};
use flarecast::preprocess::{TRAINING_QUALITY, TRAINING_SIZE};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Folder of JP2 files (searched recursively).
    #[arg(long, default_value = "data/jp2")]
    input: PathBuf,
    /// Output folder: the same tree with the new extension, and manifest.csv.
    #[arg(long, default_value = "data/hmi_jpgs_512")]
    output: PathBuf,
    /// Output side length in pixels (area averaging); 0 keeps the decoded size.
    #[arg(long, default_value_t = TRAINING_SIZE, value_parser = Options::SIZE.flag())]
    size: u32,
    #[arg(long, value_enum, default_value_t = Format::Jpg)]
    format: Format,
    /// JPEG quality (1-100).
    #[arg(long, default_value_t = TRAINING_QUALITY, value_parser = Options::QUALITY.flag())]
    quality: u8,
    /// Files converted at once (default: all cores).
    #[arg(long, default_value_t = 0, value_parser = Options::JOBS.flag())]
    jobs: usize,
    /// Decode straight at a reduced resolution from the wavelet pyramid (about 10x
    /// faster; a different low-pass filter than area averaging).
    #[arg(long)]
    fast_reduce: bool,
    /// Convert even when the output exists and is newer than the input.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: super::common_args::Json,
}

pub fn run(a: Args) -> Result<()> {
    let opts = Options {
        input: a.input,
        output: a.output,
        size: a.size,
        format: a.format,
        quality: a.quality,
        jobs: a.jobs,
        fast_reduce: a.fast_reduce,
        force: a.force,
    };
    let s = convert::convert_tree(&opts, &super::progress(a.json.on))?;
    if a.json.on {
        super::print_json(&s)?;
    } else {
        println!(
            "{} JP2 files: {} converted, {} skipped (up to date), {} failed in {:.1} s ({:.1} files/s)",
            s.found, s.converted, s.skipped, s.failed, s.elapsed_s, s.files_per_s
        );
        println!("manifest: {}", s.manifest);
    }
    for (f, why) in &s.failures {
        eprintln!("failed {f}: {why}");
    }
    if s.failed > 0 {
        bail!(
            "{} of {} files failed to convert (listed in {})",
            s.failed,
            s.found,
            s.manifest
        );
    }
    Ok(())
}
