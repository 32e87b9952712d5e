//! `flarecast bench train`: end-to-end training images/s with the real loader against the
//! model-only step.

use anyhow::Result;
use flarecast::bench::train as tbench;
use flarecast::data::CacheMode;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    net: super::NetArgs,
    /// Timed batches per measurement.
    #[arg(long, default_value_t = 3)]
    batches: usize,
    /// Loader threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long, value_enum, default_value = "none")]
    cache: CacheMode,
    /// The 512x512 magnetogram JPG the benchmark's image tree is made of (the figures in
    /// README.md use the real one `convert` makes of the real HMI magnetogram).
    #[arg(long)]
    jpg: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let device = flarecast::device::parse_device(&args.net.device)?;
    let chosen = flarecast::device::choose_precisions(&args.net.precision, device);
    let jpg = args.jpg;
    let cfg = tbench::TrainBenchConfig {
        device,
        batch_size: args.net.batch_size,
        im_size: args.net.im_size,
        batches: args.batches,
        workers: args.workers.unwrap_or_else(flarecast::hardware::cores),
        cache: args.cache,
        archs: args.net.arch,
        precisions: chosen.iter().map(|c| c.precision).collect(),
    };
    let tmp = tempfile::Builder::new()
        .prefix("flarecast-bench-train")
        .tempdir()?;
    let dir = tmp.path().to_path_buf();
    let samples = tbench::make_dataset(&jpg, &dir, cfg.batch_size * (cfg.batches + 1))?;
    let json = args.json;
    if !json {
        println!(
            "bench train: device {}, {} threads, batch {} at {}, {} loader workers, cache {:?}, images: copies of {}",
            flarecast::device::device_name(device),
            tch::get_num_threads(),
            cfg.batch_size,
            cfg.im_size,
            cfg.workers,
            cfg.cache,
            jpg.display()
        );
        println!(
            "precision: {}",
            flarecast::device::describe_precisions(&chosen)
        );
        println!(
            "{:<13} {:<5} {:>12} {:>12} {:>12} {:>12}",
            "arch", "prec", "loader img/s", "model img/s", "e2e img/s", "loader cost"
        );
    }
    let rows = tbench::run(&cfg, &dir, samples, |r| {
        if !json {
            println!(
                "{:<13} {:<5} {:>12.1} {:>12.2} {:>12.2} {:>11.1}%",
                r.arch,
                r.precision,
                r.loader_images_per_s,
                r.model_images_per_s,
                r.end_to_end_images_per_s,
                100.0 * r.loader_cost
            );
        }
    })?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "device": flarecast::device::device_name(device), "rows": rows })
        );
    }
    Ok(())
}
