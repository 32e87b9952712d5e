//! `flarecast bench model`: inference and training-step images/s of both networks, with
//! GFLOP/s, the share of the processor's peak and optionally the tuned PyTorch anchor.

use anyhow::{bail, Context, Result};
use flarecast::bench::model::{self as bench, BenchConfig};
use flarecast::bench::{torch_baseline, Mode};
use flarecast::hardware::IsaCap;

#[derive(clap::Args)]
#[command(mut_arg("python", |a| a.help(
    "The Python holding torch for the baseline (default: the virtualenv setup.sh makes)")))]
pub struct Args {
    #[command(flatten)]
    net: super::NetArgs,
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 3, value_parser = bench::ITERS.flag())]
    iters: usize,
    /// Untimed warm-up iterations per configuration.
    #[arg(long, default_value_t = 1, value_parser = bench::WARMUP.flag())]
    warmup: usize,
    /// Measurements per program, alternating the programs; medians are reported
    /// (default: 3 with a baseline, else 1).
    #[arg(long, value_parser = bench::ROUNDS.flag())]
    rounds: Option<usize>,
    /// none, or torch: time the same networks in PyTorch (the --torch-variants, in each
    /// row's precision, with flarecast's allocator setting) in the same run, alternating
    /// with flarecast, and print the ratios against the fastest variant (the anchor).
    #[arg(long, default_value = "none", value_parser = ["none", "torch"])]
    baseline: String,
    /// Comma-separated PyTorch variants timed with --baseline torch: eager (NCHW),
    /// channels_last, compiled (channels_last and torch.compile).
    #[arg(
        long,
        default_value = "eager,channels_last,compiled",
        value_delimiter = ',',
        value_parser = ["eager", "channels_last", "compiled"]
    )]
    torch_variants: Vec<String>,
    #[command(flatten)]
    python: super::Python,
    /// Comma-separated: inference, train.
    #[arg(long, default_value = "inference,train", value_delimiter = ',')]
    mode: Vec<String>,
    /// Force the channels-last layout on or off (default: the device's best).
    #[arg(long)]
    channels_last: Option<bool>,
    #[command(flatten)]
    threads: super::Threads,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    args.threads.apply();
    let device = flarecast::device::parse_device(&args.net.device)?;
    let modes = args
        .mode
        .iter()
        .map(|m| match m.as_str() {
            "inference" | "infer" => Ok(Mode::Inference),
            "train" => Ok(Mode::Train),
            other => bail!("unknown mode {other:?}: expected inference or train"),
        })
        .collect::<Result<Vec<_>>>()?;
    let chosen = flarecast::device::choose_precisions(&args.net.precision, device);
    let torch = args.baseline == "torch";
    let cfg = BenchConfig {
        device,
        batch_size: i64::try_from(args.net.batch_size).context("--batch-size")?,
        im_size: flarecast::im_size::ImSize::of_setting(args.net.im_size.into())?,
        iters: args.iters,
        warmup: args.warmup,
        rounds: args.rounds.unwrap_or(if torch { 3 } else { 1 }),
        archs: args.net.arch.clone(),
        precisions: chosen.iter().map(|c| c.precision).collect(),
        modes,
        channels_last: args.channels_last,
        torch_variants: args
            .torch_variants
            .iter()
            .filter_map(|v| torch_baseline::Variant::parse(v))
            .collect(),
        torch_python: torch.then(|| args.python.path()),
    };
    cfg.check()?;
    let device_name = flarecast::device::device_name(device);
    let threads = tch::get_num_threads();
    let peak = bench::cpu_peak(device);
    let isa = IsaCap::from_env();
    if !args.json.on {
        println!(
            "bench model: device {device_name}, {threads} threads, batch {} at {}x{}, {} timed iterations x {} rounds (medians)",
            cfg.batch_size, cfg.im_size, cfg.im_size, cfg.iters, cfg.rounds
        );
        println!(
            "precision: {}",
            flarecast::device::describe_precisions(&chosen)
        );
        if let Some(p) = &peak {
            println!(
                "f32 peak: {:.0} GFLOP/s ({} cores x {}-bit vectors x {} FMA units x 2 x {:.2} GHz, {}); ISA cap: {}",
                p.gflops, p.cores, p.vector_bits, p.fma_units, p.ghz, p.clock_source, isa.describe()
            );
        }
        let torch_cols: String = if torch {
            cfg.torch_variants
                .iter()
                .map(|v| format!(" {:>13}", short(*v)))
                .chain([format!(" {:>13} {:>9}", "anchor", "vs anchor")])
                .collect()
        } else {
            String::new()
        };
        println!(
            "{:<13} {:<5} {:<10} {:>7} {:>9} {:>8} {:>6}{torch_cols}",
            "arch", "prec", "mode", "ch-last", "images/s", "GFLOP/s", "peak"
        );
    }
    let (rows, torch_info) = bench::run(&cfg, |r| {
        if !args.json.on {
            let torch_cols: String = match &r.torch {
                Some(t) => t
                    .variants
                    .iter()
                    .map(|v| match &v.rate {
                        Some(rate) => format!(" {:>13.2}", rate.images_per_s),
                        None => format!(" {:>13}", "n/a"),
                    })
                    .chain([format!(
                        " {:>13} {:>9}",
                        t.anchor.map_or("-", short),
                        t.ratio.map_or("-".into(), |x| format!("{x:.2}x"))
                    )])
                    .collect(),
                None => String::new(),
            };
            println!(
                "{:<13} {:<5} {:<10} {:>7} {:>9.2} {:>8} {:>6}{torch_cols}",
                r.arch,
                r.precision,
                format!("{:?}", r.mode).to_lowercase(),
                r.channels_last,
                r.flarecast.images_per_s,
                r.gflop_per_s.map_or("-".into(), |g| format!("{g:.1}")),
                r.peak_share
                    .map_or("-".into(), |s| format!("{:.0}%", 100.0 * s)),
            );
        }
    })?;
    if args.json.on {
        let precisions: Vec<_> = chosen
            .iter()
            .map(|c| serde_json::json!({"precision": c.precision.name(), "reason": c.reason}))
            .collect();
        let out = serde_json::json!({
            "device": device_name, "threads": threads, "batch_size": cfg.batch_size,
            "im_size": cfg.im_size, "iters": cfg.iters, "rounds": cfg.rounds,
            "precisions": precisions, "f32_peak": peak, "isa_cap": isa.describe(),
            "torch": torch_info, "rows": rows,
        });
        crate::cli::print_json(&out)?;
    } else if torch {
        println!(
            "PyTorch {} (scripts/reference_model.py) in images/s, each row's precision (bf16: torch.autocast), allocator: {}; anchor: the fastest; ratios: flarecast / anchor, medians",
            torch_info
                .as_ref()
                .and_then(|i| i["torch"].as_str())
                .unwrap_or("?"),
            super::allocator_note()
        );
        for r in &rows {
            for v in r.torch.iter().flat_map(|t| &t.variants) {
                if let Some(why) = &v.unavailable {
                    println!(
                        "{} {} {}: {} unavailable: {why}",
                        r.arch,
                        r.precision,
                        format!("{:?}", r.mode).to_lowercase(),
                        v.variant.name()
                    );
                }
            }
        }
    }
    Ok(())
}

fn short(v: torch_baseline::Variant) -> &'static str {
    match v {
        torch_baseline::Variant::Eager => "pt eager",
        torch_baseline::Variant::ChannelsLast => "pt ch-last",
        torch_baseline::Variant::Compiled => "pt compiled",
    }
}
