//! `flarecast bench explain`: Integrated Gradients images/s over a few hundred images,
//! flarecast against captum (K tuned) side by side, with the maps' largest difference.

use anyhow::{bail, Result};
use flarecast::bench::explain::{self as bench, ExplainBenchConfig};
use flarecast::explain::integrated::INTERNAL_BATCH;
use flarecast::explain::Options;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(mut_arg("arch", |a| a.default_value("attention,resnet18")))]
#[command(mut_arg("im_size", |a| a.default_value("256")))]
#[command(mut_arg("batch_size", |a| a.hide(true)))]
#[command(mut_arg("precision", |a| a.hide(true)))]
#[command(mut_arg("python", |a| a.help(
    "The Python holding torch and captum (default: the virtualenv setup.sh makes)")))]
#[command(mut_arg("threads", |a| a.help(
    "Intra-op threads of both programs (default: libtorch's choice, one per core)")))]
pub struct Args {
    /// --device, --im-size and --arch (--batch-size and --precision do not apply: both
    /// programs differentiate float32 networks).
    #[command(flatten)]
    net: super::NetArgs,
    /// Weights (any checkpoint flarecast reads) instead of random-initialised --arch
    /// networks; captum loads the same weights, as flarecast writes them to a .pth.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Images per round, uniform in [0, 1] (the same for both programs).
    #[arg(long, default_value_t = 256, value_parser = bench::IMAGES.flag())]
    images: usize,
    /// Integration steps (captum's n_steps).
    #[arg(long, default_value_t = 50, value_parser = Options::STEPS.flag())]
    steps: usize,
    /// Measurements per program, alternating the programs; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = flarecast::bench::model::ROUNDS.flag())]
    rounds: usize,
    /// flarecast's path points per pass (default: `explain`'s for the network and side).
    #[arg(long, value_parser = INTERNAL_BATCH.flag())]
    internal_batch_size: Option<usize>,
    /// Comma-separated captum internal_batch_size values tried (K images per call, one
    /// path point of each per pass) on the first images; the fastest is timed.
    #[arg(long, default_value = "8,16,32,64", value_delimiter = ',', value_parser = INTERNAL_BATCH.flag())]
    captum_k: Vec<usize>,
    /// Seed of the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    #[command(flatten)]
    python: super::Python,
    #[command(flatten)]
    threads: super::Threads,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let threads = args.threads.apply();
    let device = flarecast::device::parse_device(&args.net.device)?;
    let cfg = ExplainBenchConfig {
        device,
        im_size: flarecast::im_size::ImSize::of_setting(args.net.im_size.into())?,
        archs: args.net.arch.clone(),
        weights: args.model.clone(),
        images: args.images,
        steps: args.steps,
        rounds: args.rounds,
        internal_batch: args.internal_batch_size,
        captum_k: args.captum_k.clone(),
        seed: args.seed,
        python: args.python.path(),
        threads,
    };
    cfg.check()?;
    let json = args.json.on;
    if !json {
        println!(
            "bench explain: Integrated Gradients, {} images at {}x{}, {} steps, zero baseline, {} rounds (medians)",
            cfg.images, cfg.im_size, cfg.im_size, cfg.steps, cfg.rounds
        );
        println!(
            "processor: {}; device {}, {} threads for both programs",
            flarecast::bench::processor(device),
            flarecast::device::device_name(device),
            cfg.threads
        );
        println!(
            "{:<13} {:>6} {:>12} {:>9} {:>12} {:>9} {:>13}",
            "arch", "points", "flarecast/s", "captum K", "captum/s", "ratio", "max diff/peak"
        );
    }
    let report = bench::run(&cfg, &crate::cli::progress(json), |r| {
        if !json {
            println!(
                "{:<13} {:>6} {:>12.3} {:>9} {:>12.3} {:>8.2}x {:>13.2e}",
                r.arch,
                r.internal_batch,
                r.flarecast.images_per_s,
                r.captum_k,
                r.captum.images_per_s,
                r.ratio,
                r.max_relative_difference
            );
        }
    })?;
    if json {
        crate::cli::print_json(&report)?;
    } else {
        let captum = &report.captum;
        let allocator = super::allocator_setting()
            .unwrap_or_else(|| "the user's own (GLIBC_TUNABLES / MALLOC_*)".into());
        println!(
            "captum {} on torch {} ({} threads), allocator {}; images/s: all images / seconds; ratio: flarecast / captum; captum K tried: {}",
            captum["captum"].as_str().unwrap_or("?"),
            captum["torch"].as_str().unwrap_or("?"),
            captum["threads"],
            allocator,
            report
                .rows
                .iter()
                .map(|r| {
                    let tried: Vec<String> = r
                        .captum_tried
                        .iter()
                        .map(|t| format!("{}={:.3}/s", t.k, t.images_per_s))
                        .collect();
                    format!("{} {}", r.arch, tried.join(" "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if let Some(r) = report.rows.iter().find(|r| !r.within_tolerance) {
        bail!(
            "{}: flarecast's maps differ from captum's by {:.2e} of a map's peak (tolerance {:.0e})",
            r.arch,
            r.max_relative_difference,
            bench::TOLERANCE
        );
    }
    Ok(())
}
