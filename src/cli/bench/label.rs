//! `flarecast bench label`: the labelling sweep against a per-window catalogue scan.

use anyhow::Result;
use chrono::NaiveDateTime;
use flarecast::instant::parse_time;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Catalogue to label against, in any format `label` reads (the figures in README.md
    /// use the real jameskc joined HER/GEV list).
    #[arg(long)]
    catalog: PathBuf,
    /// First issue time.
    #[arg(long, default_value = "2010-12-01T00:00:00", value_parser = parse_time)]
    start: NaiveDateTime,
    /// Last issue time.
    #[arg(long, default_value = "2018-12-30T23:00:00", value_parser = parse_time)]
    end: NaiveDateTime,
    /// Timed runs of each method; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = flarecast::bench::label::REPEAT.flag())]
    repeat: usize,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let r = flarecast::bench::label::run(&args.catalog, args.start, args.end, args.repeat)?;
    if args.json.on {
        crate::cli::print_json(&r)?;
        return Ok(());
    }
    println!(
        "label bench: {} flares ({}), {} hourly windows {} .. {}, {} positive, median of {}",
        r.flares, r.catalog, r.windows, args.start, args.end, r.positives, r.repeat
    );
    println!("catalogue read             {:>10.1} ms", r.read_ms);
    println!("method                           ms     windows/s");
    println!(
        "sweep (sort + two pointers) {:>9.2} {:>13.0}",
        r.sweep_ms, r.sweep_windows_per_s
    );
    println!(
        "scan per window (baseline)  {:>9.2} {:>13.0}",
        r.scan_ms, r.scan_windows_per_s
    );
    println!("speed-up over baseline      {:>9.1}x", r.speedup);
    Ok(())
}
