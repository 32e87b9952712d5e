//! Download throughput against the local server with injected latency: the same archive
//! fetched at several concurrencies into fresh folders.

use crate::bounded::{secs, Count, Span};
use crate::helioviewer::{download, Options, HMI_MAGNETOGRAM};
use crate::testing::helioviewer::{Config, LocalServer, UriStyle};
use anyhow::{ensure, Context, Result};
use chrono::NaiveDateTime;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Row {
    pub concurrency: usize,
    pub images: usize,
    pub requests: u64,
    pub seconds: f64,
    pub images_per_s: f64,
    /// Throughput relative to the first row (the baseline).
    pub ratio: f64,
}

/// Images a run may download at each concurrency.
pub const IMAGES: Count<usize> = Count::new("images", "images", 1, 100_000);
/// The latency the local server may add to every answer.
pub const LATENCY: Span = Span::new("latency", "latency", Duration::from_millis(1), secs(60));

/// Downloads `images` instants at each concurrency from a local server that waits
/// `latency` before every answer and serves `jp2` for every observation.
pub fn run(
    jp2: Arc<Vec<u8>>,
    images: usize,
    latency: Duration,
    concurrencies: &[usize],
) -> Result<Vec<Row>> {
    // Instants are counted in chrono's i32 multiples of the cadence.
    let instants = i32::try_from(IMAGES.check(images)?)?;
    let start = NaiveDateTime::parse_from_str("2013-05-13T00:00:00", "%Y-%m-%dT%H:%M:%S")?;
    let cadence = Duration::from_secs(720);
    let step = crate::instant::chrono_duration(cadence);
    // One observation 53 s after each requested instant, as HMI's 720 s series has.
    let observations = (0..instants)
        .map(|i| start + step * i + chrono::Duration::seconds(53))
        .collect();
    let server = LocalServer::start(Config {
        observations,
        jp2,
        latency,
        uri_style: UriStyle::Jpips,
        faults: Default::default(),
    })?;
    let mut rows: Vec<Row> = Vec::new();
    for &c in concurrencies {
        let dir = tempfile::Builder::new()
            .prefix("flarecast-bench-download")
            .tempdir()
            .context("cannot create a scratch folder")?;
        let opts = Options {
            start,
            end: start + step * instants,
            cadence,
            source_id: HMI_MAGNETOGRAM,
            tolerance: cadence,
            out: dir.path().to_path_buf(),
            api_url: server.url.clone(),
            concurrency: c,
            max_rps: 0.0,
            retries: 2,
            timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(100),
            retry_missing: false,
            verify: false,
        };
        let s = download(&opts, &crate::progress::Progress::hidden())?;
        ensure!(
            s.saved == images,
            "bench download at concurrency {c}: {} of {images} saved ({:?})",
            s.saved,
            s.failures
        );
        let ips = images as f64 / s.elapsed_s;
        let base = rows.first().map(|r| r.images_per_s).unwrap_or(ips);
        rows.push(Row {
            concurrency: c,
            images,
            requests: s.requests,
            seconds: s.elapsed_s,
            images_per_s: ips,
            ratio: ips / base,
        });
    }
    Ok(rows)
}
