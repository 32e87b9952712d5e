//! `flarecast bench train`: end-to-end training images/s with the real loader against the
//! model-only step; under torchrun or srun, each rank steps on its share of every batch
//! and the gradients' all-reduce is timed.

use anyhow::Result;
use flarecast::bench::train as tbench;
use flarecast::data::CacheMode;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    net: super::NetArgs,
    /// Timed batches per measurement.
    #[arg(long, default_value_t = 3, value_parser = tbench::TrainBenchConfig::BATCHES.flag())]
    batches: usize,
    /// Loader threads (default: one per core).
    #[arg(long, value_parser = flarecast::data::LoaderConfig::WORKERS.flag())]
    workers: Option<usize>,
    #[arg(long, value_enum, default_value = "none")]
    cache: CacheMode,
    /// The 512x512 magnetogram JPG the benchmark's image tree is made of (the figures in
    /// README.md use the real one `convert` makes of the real HMI magnetogram).
    #[arg(long)]
    jpg: PathBuf,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
    #[command(flatten)]
    group: crate::cli::group_args::GroupArgs,
}

pub fn run(args: Args) -> Result<()> {
    let launch = args.group.launch()?;
    let device = match &launch {
        Some(l) => flarecast::distributed::rank_device(&args.net.device, l)?,
        None => flarecast::device::parse_device(&args.net.device)?,
    };
    let group = match &launch {
        Some(l) => Some(std::sync::Arc::new(args.group.join(l, device)?)),
        None => None,
    };
    // Rank 0 speaks for the group.
    let speaks = group.as_ref().is_none_or(|g| g.is_root());
    let chosen = flarecast::device::choose_precisions(&args.net.precision, device);
    let jpg = args.jpg;
    let cfg = tbench::TrainBenchConfig {
        device,
        batch_size: args.net.batch_size,
        im_size: flarecast::im_size::ImSize::of_setting(args.net.im_size.into())?,
        batches: args.batches,
        workers: args
            .workers
            .unwrap_or_else(flarecast::data::LoaderConfig::default_workers),
        cache: args.cache,
        archs: args.net.arch,
        precisions: chosen.iter().map(|c| c.precision).collect(),
        group,
    };
    cfg.check()?;
    let tmp = tempfile::Builder::new()
        .prefix("flarecast-bench-train")
        .tempdir()?;
    let dir = tmp.path().to_path_buf();
    let samples = tbench::make_dataset(&jpg, &dir, cfg.batch_size * (cfg.batches + 1))?;
    let json = args.json.on;
    let ranks = cfg.group.as_ref().map_or(1, |g| g.world());
    if speaks && !json {
        println!(
            "bench train: device {}{}, {} threads, batch {} at {}, {} loader workers, cache {:?}, images: copies of {}",
            flarecast::device::device_name(device),
            if ranks > 1 { format!(" x {ranks} ranks") } else { String::new() },
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
            "{:<13} {:<5} {:>12} {:>12} {:>12} {:>12}{}",
            "arch",
            "prec",
            "loader img/s",
            "model img/s",
            "e2e img/s",
            "loader cost",
            if ranks > 1 {
                "  all-reduce ms/step (share)"
            } else {
                ""
            }
        );
    }
    let rows = tbench::run(&cfg, &dir, samples, |r| {
        if speaks && !json {
            let reduce = match (r.all_reduce_ms_per_step, r.all_reduce_share) {
                (Some(ms), Some(share)) => format!("  {ms:>10.1} ({:.1}%)", 100.0 * share),
                _ => String::new(),
            };
            println!(
                "{:<13} {:<5} {:>12.1} {:>12.2} {:>12.2} {:>11.1}%{reduce}",
                r.arch,
                r.precision,
                r.loader_images_per_s,
                r.model_images_per_s,
                r.end_to_end_images_per_s,
                100.0 * r.loader_cost
            );
        }
    })?;
    if speaks && json {
        crate::cli::print_json(&serde_json::json!({
            "device": flarecast::device::device_name(device),
            "ranks": ranks,
            "rows": rows,
        }))?;
    }
    Ok(())
}
