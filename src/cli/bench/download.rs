//! `flarecast bench download`: download throughput against a local server, by concurrency.

use anyhow::{Context, Result};
use flarecast::bench::download as dbench;
use flarecast::helioviewer::Options;
use flarecast::text_table::Col::Right;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Images downloaded at each concurrency.
    #[arg(long, default_value_t = 64, value_parser = dbench::IMAGES.flag())]
    images: usize,
    /// Latency the local server adds to every answer.
    #[arg(long, default_value = "50ms", value_parser = dbench::LATENCY.flag())]
    latency: Duration,
    /// Concurrencies to compare; the first is the baseline.
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = Options::CONCURRENCY.flag())]
    concurrency: Vec<usize>,
    /// JP2 served for every observation (the figures in README.md use the real HMI
    /// magnetogram).
    #[arg(long)]
    jp2: PathBuf,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(a: Args) -> Result<()> {
    let path = a.jp2;
    let jp2 = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    flarecast::jp2::validate(&jp2, &path.display().to_string())?;
    let rows = flarecast::bench::download::run(Arc::new(jp2), a.images, a.latency, &a.concurrency)?;
    let head = || {
        format!(
            "download from a local server, {} ms latency per answer, {} images of {} (2 requests each)",
            a.latency.as_millis(),
            a.images,
            path.display()
        )
    };
    let layout = (
        [Right(11), Right(8), Right(9), Right(9), Right(10), Right(8)],
        [
            "concurrency",
            "images",
            "requests",
            "seconds",
            "images/s",
            "ratio",
        ],
    );
    super::print_rows(a.json.on, &rows, head, layout, |r| {
        [
            r.concurrency.to_string(),
            r.images.to_string(),
            r.requests.to_string(),
            format!("{:.2}", r.seconds),
            format!("{:.1}", r.images_per_s),
            format!("{:.2}x", r.ratio),
        ]
    })
}
