use anyhow::Result;
use flarecast::instant::parse_time;
use flarecast::synth::{self, Params, Summary};
use std::time::Duration;

#[derive(clap::Args)]
#[command(mut_arg("out", |a| a.help("Output directory: images/YYYY/MM/DD/HMI.m*.jpg, catalog.csv, synth.json.")))]
pub struct Args {
    #[command(flatten)]
    out: super::common_args::OutDir,
    /// First image time (UTC). The default span, March and April, gives calendar-quarter
    /// folds 1 and 2 both training and validation instances.
    #[arg(long, default_value = "2014-03-01T00:00:00")]
    start: String,
    /// Number of days of images.
    #[arg(long, default_value_t = 60, value_parser = Params::DAYS.flag())]
    days: u32,
    /// Time between images, e.g. 1h, 3h, 12m.
    #[arg(long, default_value = "1h", value_parser = Params::CADENCE.flag())]
    cadence: Duration,
    /// Image width and height in pixels (Helioviewer-style JPGs are 512).
    #[arg(long, default_value_t = 512, value_parser = Params::SIZE.flag())]
    size: u32,
    /// Seed of the simulated Sun: the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replace an archive made with other parameters (or files synth did not write).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    json: super::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let params = Params {
        start: parse_time(&args.start)?,
        days: args.days,
        cadence_s: args.cadence.as_secs(),
        size: args.size,
        seed: args.seed,
    };
    params.validate()?;
    let summary = synth::generate(
        &params,
        &args.out.dir,
        args.force,
        &super::progress(args.json.on),
    )?;
    if args.json.on {
        super::print_json(&summary)?;
    } else {
        print_summary(&summary);
    }
    Ok(())
}

fn print_summary(s: &Summary) {
    let p = &s.params;
    println!(
        "synth: {} images of {}x{} ({} written, {} reused) in {:.1} s: {}",
        s.images,
        p.size,
        p.size,
        s.images_written,
        s.images_reused,
        s.seconds,
        s.out.join(synth::IMAGES).display()
    );
    println!(
        "  {}; {} active regions simulated",
        synth::describe(p),
        s.regions
    );
    println!(
        "flares: {} (C {}, M {}, X {}) in {}",
        s.flares,
        s.flares_c,
        s.flares_m,
        s.flares_x,
        s.out.join(synth::CATALOG).display()
    );
    println!(
        ">= M1.0 within 24 h: {} of {} instances positive ({:.1} %)",
        s.positives,
        s.images,
        100.0 * s.positive_rate
    );
    for q in &s.quarters {
        println!(
            "  Q{} {} (fold {} validation): {} instances, {} positive ({:.1} %)",
            q.quarter,
            flarecast::label::Fold::ALL[(q.quarter - 1) as usize].months(),
            q.quarter,
            q.instances,
            q.positives,
            100.0 * q.positive_rate
        );
    }
}
