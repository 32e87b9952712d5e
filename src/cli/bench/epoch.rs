//! `flarecast bench epoch`: one training epoch end to end, `flarecast train --epochs 1`
//! against the paper's PyTorch loop (scripts/reference_train.py), on a synthetic fold.

use anyhow::{bail, Result};
use flarecast::bench::epoch::{self as bench, EpochBenchConfig, EpochRow, FoldSpec, RowPrecision};
use flarecast::text_table::{
    Col::{Left, Right},
    Table,
};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(mut_arg("batch_size", |a| a.default_value("128")))]
#[command(mut_arg("arch", |a| a.default_value("attention").help(
    "Comma-separated: attention, standard (the paper's two networks, which its PyTorch loop has)")))]
#[command(mut_arg("im_size", |a| a.help(
    "Side of the square input (192..=383, where the paper's PyTorch networks run)")))]
#[command(mut_arg("precision", |a| a.default_value("f32,auto").help(
    "Comma-separated, one row each: f32 (timed against the paper's loop in float32), auto \
     or bf16 (against the tuned loop in the precision flarecast computes)")))]
pub struct Args {
    #[command(flatten)]
    net: super::NetArgs,
    /// Images of the synthetic fold, 512x512 JPGs: a quarter of them (at least one) the
    /// validation split, the rest the training split.
    #[arg(long, default_value_t = 3000, value_parser = bench::INSTANCES.flag())]
    instances: usize,
    /// Epochs timed per program, alternating the programs; medians are reported.
    #[arg(long, default_value_t = 1, value_parser = bench::ROUNDS.flag())]
    rounds: usize,
    /// Where the synthetic fold is made and kept (its archive/ and labels/ are replaced
    /// when made for another size), so a later run of the same size reuses its images
    /// (default: a temporary folder, removed at the end).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// flarecast's loader threads (default: one per core).
    #[arg(long, value_parser = flarecast::data::LoaderConfig::WORKERS.flag())]
    workers: Option<usize>,
    /// The Python holding torch (default: the virtualenv setup.sh makes).
    #[arg(long)]
    python: Option<PathBuf>,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let device = flarecast::device::parse_device(&args.net.device)?;
    if device != tch::Device::Cpu {
        bail!("--device {}: bench epoch compares on the CPU, where the PyTorch loop runs; give --device cpu", args.net.device);
    }
    let chosen = flarecast::device::choose_precisions(&args.net.precision, device);
    let cfg = EpochBenchConfig {
        exe: std::env::current_exe()?,
        python: args
            .python
            .clone()
            .unwrap_or_else(flarecast::bench::torch_baseline::default_python),
        device: args.net.device.clone(),
        batch_size: args.net.batch_size,
        im_size: flarecast::im_size::ImSize::of_setting(args.net.im_size.into())?,
        archs: args.net.arch.clone(),
        precisions: args
            .net
            .precision
            .iter()
            .zip(&chosen)
            .map(|(&choice, c)| RowPrecision {
                choice,
                precision: c.precision,
            })
            .collect(),
        rounds: args.rounds,
        workers: args.workers,
    };
    cfg.check()?;
    let torch = bench::torch_version(&cfg.python)?;
    let progress = crate::cli::progress(args.json.on);
    let tmp;
    let work = match &args.work {
        Some(dir) => dir.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("flarecast-bench-epoch-fold")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let fold = bench::make_fold(&work, &FoldSpec::quarters(args.instances), &progress)?;
    let processor = flarecast::hardware::cpu_model();
    let cores = flarecast::hardware::cores();
    if !args.json.on {
        println!(
            "bench epoch: {processor}, {cores} cores, {} threads; batch {} at {}, one epoch (training + validation) per program, {} round(s), medians of wall time from start to exit",
            tch::get_num_threads(),
            cfg.batch_size,
            cfg.im_size,
            cfg.rounds
        );
        println!(
            "fold {}: {} training ({} FL) and {} validation ({} FL) synthetic {}x{} JPGs every {} h (seed {}) in {}",
            fold.fold,
            fold.train,
            fold.train_positive,
            fold.val,
            fold.val_positive,
            fold.image_side,
            fold.image_side,
            fold.cadence_hours,
            fold.seed,
            work.display()
        );
        println!(
            "precision: {}; PyTorch {torch} ({})",
            flarecast::device::describe_precisions(&chosen),
            cfg.python.display()
        );
    }
    let rows = bench::run(&cfg, &fold, &progress, |_| {})?;
    if args.json.on {
        return crate::cli::print_json(&serde_json::json!({
            "processor": processor,
            "torch": torch,
            "cores": cores,
            "threads": tch::get_num_threads(),
            "allocator": allocator_note(),
            "batch_size": cfg.batch_size,
            "im_size": cfg.im_size.get(),
            "rounds": cfg.rounds,
            "fold": fold,
            "rows": rows,
        }));
    }
    print!("{}", table(&rows));
    println!(
        "images: the balanced training items and the validation images of the epoch; loop s: the epoch as each program times it (flarecast: its history's epoch time, training, validation and the best checkpoint; PyTorch: training and validation), start-up, image check and the other saving left out; peak RSS: wait4's ru_maxrss of the child (its largest process, DataLoader workers not added up); allocator: {}",
        allocator_note()
    );
    Ok(())
}

fn table(rows: &[EpochRow]) -> Table<9> {
    let mut t = Table::new(
        [
            Left(12),
            Left(5),
            Left(38),
            Right(7),
            Right(9),
            Right(9),
            Right(9),
            Right(9),
            Right(14),
        ],
        [
            "arch",
            "prec",
            "program",
            "images",
            "seconds",
            "images/s",
            "loop s",
            "peak RSS",
            "flarecast/pt",
        ],
    );
    for r in rows {
        for (k, p) in [&r.flarecast, &r.torch].into_iter().enumerate() {
            t.row([
                if k == 0 {
                    r.arch.to_string()
                } else {
                    String::new()
                },
                p.precision.to_string(),
                p.program.clone(),
                p.images.to_string(),
                format!("{:.1}", p.median_seconds),
                format!("{:.2}", p.images_per_s),
                p.loop_seconds.map_or("-".into(), |s| format!("{s:.1}")),
                format!("{:.2} GiB", p.peak_rss_bytes as f64 / (1u64 << 30) as f64),
                if k == 0 {
                    format!("{:.2}x {:.2}x mem", r.speedup, r.memory_ratio)
                } else {
                    String::new()
                },
            ]);
        }
    }
    t
}

/// The allocator setting both programs ran with.
fn allocator_note() -> String {
    let env = flarecast::process::keep_freed_memory_env();
    if env.is_empty() {
        "the user's own (GLIBC_TUNABLES / MALLOC_*), both programs".into()
    } else {
        let set: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} for both programs", set.join(" "))
    }
}
