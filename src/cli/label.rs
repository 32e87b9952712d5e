//! `flarecast label`.

use anyhow::{bail, Result};
use chrono::NaiveDateTime;
use flarecast::catalog::{self, FluxScale, Format, GoesClass};
use flarecast::instant::{chrono_duration, parse_time};
use flarecast::label::{self, Config, Images, Summary};
use std::path::PathBuf;
use std::time::Duration;

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
#[command(mut_arg("out", |a| super::common_args::out_default(a, "data_labels", "Output directory for labels.csv, Fold{1..4}_{train,val}.csv and simplified_data_labels/.")))]
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
    #[command(flatten)]
    out: super::common_args::OutDir,
    /// First issue time, inclusive (UTC) [default: the catalogue's first day, clipped to the images].
    #[arg(long, value_parser = parse_time)]
    start: Option<NaiveDateTime>,
    /// Last issue time, inclusive (UTC) [default: the catalogue's last flare, clipped to the images].
    #[arg(long, value_parser = parse_time)]
    end: Option<NaiveDateTime>,
    /// Step between issue times.
    #[arg(long, default_value = "1h", value_parser = Config::CADENCE.flag())]
    cadence: Duration,
    /// Forecast window after each issue time: flares with t < start <= t + window - 1 s.
    #[arg(long, default_value = "24h", value_parser = Config::WINDOW.flag())]
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
    #[command(flatten)]
    json: super::common_args::Json,
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
        (Some(dir), _) => Images::from_tree(dir, &super::progress(args.json.on))?,
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
    let summary = label::run(&cfg, &catalog, &images, &args.out.dir)?;
    if args.json.on {
        super::print_json(&summary)?;
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
        "instances  {} {}; {} positive (>= {}), {}",
        s.instances,
        super::span(&s.first, &s.last),
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
