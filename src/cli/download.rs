//! `flarecast download [images|catalog]`.

use anyhow::{bail, Result};
use chrono::NaiveDateTime;
use flarecast::catalog::fetch::{self, Source};
use flarecast::helioviewer::{self, Options};
use flarecast::http;
use flarecast::instant::parse_time;
use flarecast::text_table::{Col::Right, Table};
use std::path::PathBuf;
use std::time::Duration;

/// `flarecast download --start ...` alone downloads images, as it always did.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// `download --start ...` without a subcommand: the images.
    #[command(flatten)]
    images: ImagesArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// HMI magnetogram JP2s from the Helioviewer API (resumable); the default.
    Images(ImagesArgs),
    /// The GOES flare catalogue from NOAA NCEI, HEK or SWPC, in the layout `label` reads.
    Catalog(CatalogArgs),
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        Some(Command::Images(i)) => run_images(i),
        Some(Command::Catalog(c)) => run_catalog(c),
        None => run_images(a.images),
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SourceArg {
    /// NOAA NCEI's science-quality GOES XRS flare report (1995 to now; science scale).
    Ncei,
    /// HEK flare events reported by SWPC (operational scale, with locations).
    Hek,
    /// SWPC's feed of the last 7 days (operational scale), for daily --append runs.
    Swpc,
}

#[derive(clap::Args)]
pub struct CatalogArgs {
    #[arg(long, value_enum)]
    source: SourceArg,
    /// Flares starting at or after this time (UTC); needed for ncei and hek.
    #[arg(long, value_parser = parse_time)]
    start: Option<NaiveDateTime>,
    /// Flares starting before this time (UTC); needed for ncei and hek.
    #[arg(long, value_parser = parse_time)]
    end: Option<NaiveDateTime>,
    /// Catalogue to write (replaced atomically, or merged into with --append).
    #[arg(long, default_value = "data_source/goes_flares.csv")]
    out: PathBuf,
    /// Where the source is read from instead of the public service: NCEI's CSV directory,
    /// HEK's search endpoint or SWPC's JSON feed.
    #[arg(long)]
    api_url: Option<String>,
    /// Merge the new flares into the catalogue at --out; flares already there are kept.
    #[arg(long)]
    append: bool,
    /// Extra attempts after a timeout, connection error, 429 or 5xx.
    #[arg(long, default_value_t = 5, value_parser = http::RETRIES.flag())]
    retries: u32,
    /// Limit for one request, body included.
    #[arg(long, default_value = "120s", value_parser = http::TIMEOUT.flag())]
    timeout: Duration,
    /// First wait before a retry (doubles each attempt, with jitter; Retry-After wins).
    #[arg(long, default_value = "2s", value_parser = http::BACKOFF.flag())]
    backoff: Duration,
    #[command(flatten)]
    json: super::common_args::Json,
}

fn run_catalog(a: CatalogArgs) -> Result<()> {
    let opts = fetch::Options {
        source: match a.source {
            SourceArg::Ncei => Source::Ncei,
            SourceArg::Hek => Source::Hek,
            SourceArg::Swpc => Source::Swpc,
        },
        start: a.start,
        end: a.end,
        out: a.out,
        url: a.api_url,
        append: a.append,
        retries: a.retries,
        timeout: a.timeout,
        backoff: a.backoff,
    };
    let s = fetch::download(&opts, &super::progress(a.json.on))?;
    for why in &s.rejected {
        eprintln!("flarecast: warning: row skipped: {why}");
    }
    if a.json.on {
        return super::print_json(&s);
    }
    println!(
        "{}: {} flares fetched from {} in {} requests; {} rows rejected, {} in progress left out, \
         {} outside the range, {} duplicates dropped",
        s.source.name(),
        s.fetched,
        s.url,
        s.requests,
        s.rows_rejected,
        s.in_progress_skipped,
        s.outside_range,
        s.duplicates_dropped
    );
    println!(
        "{}: {} rows ({} added, {} already there)",
        s.out, s.rows, s.added, s.already_present
    );
    let mut t = Table::new([Right(6); 6], ["year", "A", "B", "C", "M", "X"]);
    for y in &s.by_year {
        let counts = [y.a, y.b, y.c, y.m, y.x].map(|n| n.to_string());
        let [a, b, c, m, x] = counts;
        t.row([y.year.to_string(), a, b, c, m, x]);
    }
    print!("{t}");
    Ok(())
}

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// First requested time (UTC), e.g. 2013-05-13T00:00:00. (Optional in the type only:
    /// clap requires it unless a subcommand stands in for these options.)
    #[arg(long, value_parser = parse_time, required = true)]
    start: Option<NaiveDateTime>,
    /// End of the range (UTC, exclusive).
    #[arg(long, value_parser = parse_time, required = true)]
    end: Option<NaiveDateTime>,
    /// Step between requested times.
    #[arg(long, default_value = "12m", value_parser = Options::CADENCE.flag())]
    cadence: Duration,
    /// Helioviewer source id (19 = SDO/HMI magnetogram).
    #[arg(long, default_value_t = helioviewer::HMI_MAGNETOGRAM)]
    source_id: u32,
    /// Keep the closest image only when it is at most this far from the requested time.
    #[arg(long, default_value = "12m", value_parser = Options::TOLERANCE.flag())]
    tolerance: Duration,
    /// Output folder (YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.jp2 and manifest.jsonl).
    #[arg(long, default_value = "data/jp2")]
    out: PathBuf,
    /// Base URL of the Helioviewer API (another server speaking the same v2 requests works).
    #[arg(long, default_value = "https://api.helioviewer.org")]
    api_url: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = Options::CONCURRENCY.flag())]
    concurrency: usize,
    /// Cap on requests per second over all workers (0 = no cap).
    #[arg(long, default_value_t = 5.0)]
    max_rps: f64,
    /// Extra attempts after a timeout, connection error, 429 or 5xx.
    #[arg(long, default_value_t = 5, value_parser = http::RETRIES.flag())]
    retries: u32,
    /// Limit for one request, body included.
    #[arg(long, default_value = "60s", value_parser = http::TIMEOUT.flag())]
    timeout: Duration,
    /// First wait before a retry (doubles each attempt, with jitter; Retry-After wins).
    #[arg(long, default_value = "1s", value_parser = http::BACKOFF.flag())]
    backoff: Duration,
    /// Ask again for instants an earlier run found no image for.
    #[arg(long)]
    retry_missing: bool,
    /// Check the SHA-256 of files already on disk against the manifest (sizes are always
    /// checked) and fetch again those that differ.
    #[arg(long)]
    verify: bool,
    /// Show what would be requested, without any request.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    json: super::common_args::Json,
}

fn run_images(a: ImagesArgs) -> Result<()> {
    if !(a.max_rps >= 0.0 && a.max_rps.is_finite()) {
        bail!("--max-rps must be a number >= 0, got {}", a.max_rps);
    }
    let (Some(start), Some(end)) = (a.start, a.end) else {
        bail!("give --start and --end, or a subcommand (images, catalog)");
    };
    let opts = Options {
        start,
        end,
        cadence: a.cadence,
        source_id: a.source_id,
        tolerance: a.tolerance,
        out: a.out.clone(),
        api_url: a.api_url.clone(),
        concurrency: a.concurrency,
        max_rps: a.max_rps,
        retries: a.retries,
        timeout: a.timeout,
        backoff: a.backoff,
        retry_missing: a.retry_missing,
        verify: a.verify,
    };
    if a.dry_run {
        let p = helioviewer::plan(&opts)?;
        if a.json.on {
            super::print_json(&p)?;
        } else {
            println!(
                "{} instants {}: {} already on disk, {} known to have no image, {} to query at {}",
                p.instants,
                super::span(&p.first, &p.last),
                p.on_disk,
                p.known_missing,
                p.to_query,
                opts.api_url
            );
        }
        return Ok(());
    }
    let s = helioviewer::download(&opts, &super::progress(a.json.on))?;
    if a.json.on {
        super::print_json(&s)?;
    } else {
        println!(
            "{} instants: {} saved, {} skipped (already on disk), {} missing (no image within {}), {} failed; \
             {} observations fetched ({:.1} MB), {} requests in {:.1} s",
            s.requested,
            s.saved,
            s.skipped,
            s.missing,
            humantime::format_duration(opts.tolerance),
            s.failed,
            s.fetched,
            s.bytes_fetched as f64 / 1e6,
            s.requests,
            s.elapsed_s
        );
        for (t, why) in &s.failures {
            eprintln!("failed {t}: {why}");
        }
        println!("manifest: {}", s.manifest);
    }
    if s.failed > 0 {
        bail!(
            "{} of {} instants failed; run again to retry them (reasons in {})",
            s.failed,
            s.requested,
            s.manifest
        );
    }
    Ok(())
}
