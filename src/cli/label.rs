//! `flarecast label` and `flarecast bench label`.

use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use flarecast::catalog::{self, Flare, FluxScale, Format, GoesClass};
use flarecast::instant::{chrono_duration, parse_duration, parse_time};
use flarecast::label::{self, Config, Images, Labeller, Summary};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CatalogFormat {
    Auto,
    Integrated,
    Hek,
    Swpc,
    Ssw,
}

impl CatalogFormat {
    fn format(self) -> Option<Format> {
        match self {
            CatalogFormat::Auto => None,
            CatalogFormat::Integrated => Some(Format::Integrated),
            CatalogFormat::Hek => Some(Format::Hek),
            CatalogFormat::Swpc => Some(Format::Swpc),
            CatalogFormat::Ssw => Some(Format::Ssw),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// GOES flare catalogue (CSV): integrated list, HEK/SunPy export, SWPC event list or
    /// SSW/GEV joined list.
    #[arg(long)]
    catalog: PathBuf,
    /// Converted image tree (`YYYY/MM/DD/HMI.m....{jpg,png}`): only times with an image
    /// become instances.
    #[arg(
        long,
        required_unless_present = "file_list",
        conflicts_with = "file_list"
    )]
    images: Option<PathBuf>,
    /// Instead of --images: a list of image paths, one a line (any prefix before
    /// `YYYY/MM/DD/`), like the reference's totalfiles_jpg_512.csv.
    #[arg(long)]
    file_list: Option<PathBuf>,
    /// Output directory for labels.csv, Fold{1..4}_{train,val}.csv and simplified_data_labels/.
    #[arg(long, default_value = "data_labels")]
    out: PathBuf,
    /// First issue time, inclusive (UTC) [default: the catalogue's first day, clipped to the images].
    #[arg(long, value_parser = parse_time)]
    start: Option<NaiveDateTime>,
    /// Last issue time, inclusive (UTC) [default: the catalogue's last flare, clipped to the images].
    #[arg(long, value_parser = parse_time)]
    end: Option<NaiveDateTime>,
    /// Step between issue times.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    cadence: Duration,
    /// Forecast window after each issue time: flares with t < start <= t + window - 1 s.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    window: Duration,
    /// Smallest class counted positive (by flux), e.g. M1.0, M5.0, C1.0.
    #[arg(long, default_value = "M1.0")]
    threshold: GoesClass,
    /// Flux scale the classes are compared on: operational (NOAA's real-time classes, with
    /// the 0.7 factor up to GOES-15; the paper's labels) or science (the reprocessed
    /// fluxes, 1/0.7 larger for GOES-15 and earlier). Classes are converted per row from
    /// the catalogue's `scale` column (operational where absent).
    #[arg(long, default_value = "operational")]
    flux_scale: FluxScale,
    /// Catalogue layout; auto detects it from the header.
    #[arg(long, value_enum, default_value = "auto")]
    catalog_format: CatalogFormat,
    /// Skip catalogue rows that do not parse (class, time or location) and count them, instead of failing.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let catalog = catalog::read(
        &args.catalog,
        args.catalog_format.format(),
        args.skip_bad_rows,
    )?;
    for e in catalog.rejected.iter().take(5) {
        eprintln!("flarecast: warning: skipped {e}");
    }
    if catalog.rejected.len() > 5 {
        eprintln!(
            "flarecast: warning: skipped {} more bad rows",
            catalog.rejected.len() - 5
        );
    }
    if catalog.flares.is_empty() && catalog.rejected.is_empty() {
        eprintln!(
            "flarecast: warning: {} has a header but no flare rows: every instance will be negative",
            args.catalog.display()
        );
    }
    if catalog.duplicates > 0 {
        eprintln!(
            "flarecast: warning: dropped {} rows of {} that repeat an earlier row exactly",
            catalog.duplicates,
            args.catalog.display()
        );
    }
    let images = match (&args.images, &args.file_list) {
        (Some(dir), _) => Images::from_tree(dir)?,
        (None, Some(list)) => Images::from_file_list(list)?,
        (None, None) => bail!("give --images DIR or --file-list FILE"),
    };
    if images.is_empty() {
        let src = args
            .images
            .as_ref()
            .or(args.file_list.as_ref())
            .map(|p| p.display().to_string());
        bail!(
            "no HMI images (YYYY/MM/DD/HMI.m....jpg|png) found in {}",
            src.unwrap_or_default()
        );
    }
    let cfg = Config {
        start: args.start,
        end: args.end,
        cadence: chrono_duration(args.cadence),
        window: chrono_duration(args.window),
        threshold: args.threshold,
        flux_scale: args.flux_scale,
    };
    let summary = label::run(&cfg, &catalog, &images, &args.out)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary, &args.catalog);
    }
    Ok(())
}

fn pct(r: f64) -> String {
    format!("{:.1} %", 100.0 * r)
}

fn print_summary(s: &Summary, catalog: &std::path::Path) {
    println!(
        "catalogue  {} ({}): {} flares read, {} rows rejected, {} duplicate rows dropped",
        catalog.display(),
        s.catalog_format,
        s.flares_read,
        s.rows_rejected,
        s.duplicates_dropped
    );
    println!(
        "scale      {}: {} classes converted, {} labels changed by the conversion",
        s.flux_scale, s.classes_converted, s.labels_changed
    );
    println!(
        "instances  {} from {} to {}; {} positive (>= {}), {}",
        s.instances,
        s.first.as_deref().unwrap_or("-"),
        s.last.as_deref().unwrap_or("-"),
        s.positives,
        s.threshold,
        pct(s.positive_rate)
    );
    println!("fold  val quarter  train  train pos  train rate    val  val pos  val rate");
    for (f, q) in s
        .folds
        .iter()
        .zip(flarecast::label::Fold::ALL.map(flarecast::label::Fold::months))
    {
        println!(
            "{:>4}  {:<11}  {:>5}  {:>9}  {:>10}  {:>5}  {:>7}  {:>8}",
            f.fold,
            q,
            f.train,
            f.train_positive,
            pct(f.train_positive_rate),
            f.val,
            f.val_positive,
            pct(f.val_positive_rate)
        );
    }
    println!("written    {}", s.out);
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Catalogue to label against [default: $FLARECAST_REALDATA/catalogs/jameskc_joined_her_gev_2010-04-13_2019-05-30.csv].
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// First issue time.
    #[arg(long, default_value = "2010-12-01T00:00:00", value_parser = parse_time)]
    start: NaiveDateTime,
    /// Last issue time.
    #[arg(long, default_value = "2018-12-30T23:00:00", value_parser = parse_time)]
    end: NaiveDateTime,
    /// Timed runs of each method; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The baseline: every window scans the whole catalogue.
fn naive<'a>(
    flares: &'a [Flare],
    issues: &[NaiveDateTime],
    cfg: &Config,
) -> Vec<(Option<&'a Flare>, usize, bool)> {
    let reach = cfg.window - chrono::Duration::seconds(1);
    issues
        .iter()
        .map(|&t| {
            let last = t + reach;
            let mut best: Option<&Flare> = None;
            let mut n = 0;
            for f in flares {
                if f.start > t && f.start <= last {
                    n += 1;
                    if best.is_none_or(|b| f.class > b.class) {
                        best = Some(f);
                    }
                }
            }
            let target = best.is_some_and(|b| b.class >= cfg.threshold);
            (best, n, target)
        })
        .collect()
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let path = match args.catalog {
        Some(p) => p,
        None => std::env::var_os("FLARECAST_REALDATA")
            .map_or_else(|| PathBuf::from("../shared/realdata"), PathBuf::from)
            .join("catalogs/jameskc_joined_her_gev_2010-04-13_2019-05-30.csv"),
    };
    let repeat = args.repeat.max(1);
    let t0 = Instant::now();
    let catalog = catalog::read(&path, None, false)
        .with_context(|| format!("bench catalogue {}", path.display()))?;
    let read_ms = t0.elapsed().as_secs_f64() * 1e3;
    let cfg = Config::paper();
    let issues = label::issue_times(args.start, args.end, cfg.cadence);
    if issues.is_empty() {
        bail!("no issue times between {} and {}", args.start, args.end);
    }

    let mut sweep_ms = Vec::new();
    let mut fast = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        let labeller = Labeller::new(&catalog.flares);
        fast = label::label_windows(&labeller, &issues, &cfg);
        sweep_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut naive_ms = Vec::new();
    let mut slow = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        slow = naive(&catalog.flares, &issues, &cfg);
        naive_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Both methods must agree before their speeds are worth comparing.
    for ((w, ranked, target), (best, n, naive_target)) in fast.iter().zip(&slow) {
        let same_top = match (ranked.first(), best) {
            (Some(a), Some(b)) => std::ptr::eq(*a, *b),
            (None, None) => true,
            _ => false,
        };
        if !same_top || w.len() != *n || target != naive_target {
            bail!("sweep and scan disagree on the window at {}", w.issue);
        }
    }
    let (sweep, scan) = (median_ms(sweep_ms), median_ms(naive_ms));
    let windows = issues.len();
    let positives = fast.iter().filter(|r| r.2).count();
    let per_s = |ms: f64| windows as f64 / (ms / 1e3);
    if args.json {
        let v = serde_json::json!({
            "catalog": path.display().to_string(),
            "flares": catalog.flares.len(),
            "windows": windows,
            "positives": positives,
            "read_ms": read_ms,
            "sweep_ms": sweep,
            "sweep_windows_per_s": per_s(sweep),
            "scan_ms": scan,
            "scan_windows_per_s": per_s(scan),
            "speedup": scan / sweep,
            "repeat": repeat,
        });
        println!("{v}");
    } else {
        println!(
            "label bench: {} flares ({}), {} hourly windows {} .. {}, {} positive, median of {repeat}",
            catalog.flares.len(),
            path.display(),
            windows,
            args.start,
            args.end,
            positives
        );
        println!("catalogue read             {read_ms:>10.1} ms");
        println!("method                           ms     windows/s");
        println!(
            "sweep (sort + two pointers) {sweep:>9.2} {:>13.0}",
            per_s(sweep)
        );
        println!(
            "scan per window (baseline)  {scan:>9.2} {:>13.0}",
            per_s(scan)
        );
        println!("speed-up over baseline      {:>9.1}x", scan / sweep);
    }
    Ok(())
}
