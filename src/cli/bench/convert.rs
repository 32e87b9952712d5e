//! `flarecast bench convert`: JP2 -> JPG conversion files/s, all cores against one.

use anyhow::Result;
use flarecast::preprocess::TRAINING_SIZE;
use flarecast::text_table::Col::{Left, Right};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Copies of the JP2 to convert in each configuration.
    #[arg(long, default_value_t = 16, value_parser = flarecast::bench::convert::FILES.flag())]
    files: usize,
    #[arg(long, default_value_t = TRAINING_SIZE, value_parser = flarecast::convert::Options::SIZE.flag())]
    size: u32,
    /// JP2 to copy (the figures in README.md use the real 4096x4096 HMI magnetogram).
    #[arg(long)]
    jp2: PathBuf,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(a: Args) -> Result<()> {
    let path = a.jp2;
    let rows = flarecast::bench::convert::run(&path, a.files, a.size)?;
    let head = || {
        format!(
            "convert {} copies of {} to {} px JPG (quality 95)",
            a.files,
            path.display(),
            a.size
        )
    };
    let layout = (
        [Left(32), Right(7), Right(6), Right(8), Right(8), Right(7)],
        ["mode", "threads", "files", "seconds", "files/s", "ratio"],
    );
    super::print_rows(a.json.on, &rows, head, layout, |r| {
        [
            r.mode.clone(),
            r.threads.to_string(),
            r.files.to_string(),
            format!("{:.2}", r.seconds),
            format!("{:.2}", r.files_per_s),
            format!("{:.2}x", r.ratio),
        ]
    })
}
