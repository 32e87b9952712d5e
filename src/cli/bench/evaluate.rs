//! `flarecast bench evaluate`: `flarecast evaluate --model` over a synthetic validation
//! quarter against the tuned PyTorch inference loop, on the same weights.

use anyhow::{bail, Result};
use flarecast::bench::epoch::{self as fold_bench, FoldSpec, RowPrecision};
use flarecast::bench::evaluate::{self as bench, EvaluateBenchConfig, EvaluateRow};
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
    "Comma-separated, one row each: auto (bf16 where the hardware computes it natively and \
     faster, else f32), f32, bf16; PyTorch runs each row in the precision flarecast computes")))]
pub struct Args {
    #[command(flatten)]
    net: super::NetArgs,
    /// Validation images of the synthetic fold (512x512 JPGs).
    #[arg(long, default_value_t = 2000, value_parser = fold_bench::INSTANCES.flag())]
    instances: usize,
    /// Passes timed per program, alternating the programs; medians are reported.
    #[arg(long, default_value_t = 2, value_parser = fold_bench::ROUNDS.flag())]
    rounds: usize,
    /// Where the synthetic fold is made and kept (its archive/ and labels/ are replaced
    /// when made for another size), so a later run of the same size reuses its images
    /// (default: a temporary folder, removed at the end).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// The Python holding torch (default: the virtualenv setup.sh makes).
    #[arg(long)]
    python: Option<PathBuf>,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    let device = flarecast::device::parse_device(&args.net.device)?;
    if device != tch::Device::Cpu {
        bail!("--device {}: bench evaluate compares on the CPU, where the PyTorch loop runs; give --device cpu", args.net.device);
    }
    let chosen = flarecast::device::choose_precisions(&args.net.precision, device);
    let cfg = EvaluateBenchConfig {
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
    };
    cfg.check()?;
    let torch = fold_bench::torch_version(&cfg.python)?;
    let progress = crate::cli::progress(args.json.on);
    let tmp;
    let work = match &args.work {
        Some(dir) => dir.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("flarecast-bench-evaluate-fold")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    // A few training images make the fold whole; only the validation split is run.
    let spec = FoldSpec {
        train: 4,
        val: args.instances,
        train_needs_both_classes: false,
    };
    let fold = fold_bench::make_fold(&work, &spec, &progress)?;
    let processor = flarecast::hardware::cpu_model();
    let cores = flarecast::hardware::cores();
    if !args.json.on {
        println!(
            "bench evaluate: {processor}, {cores} cores, {} threads; batch {} at {}, {} round(s), medians of wall time from start to exit",
            tch::get_num_threads(),
            cfg.batch_size,
            cfg.im_size,
            cfg.rounds
        );
        println!(
            "fold {} validation: {} synthetic {}x{} JPGs ({} FL) every {} h (seed {}) in {}; both programs run the same freshly initialised weights",
            fold.fold,
            fold.val,
            fold.image_side,
            fold.image_side,
            fold.val_positive,
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
            "batch_size": cfg.batch_size,
            "im_size": cfg.im_size.get(),
            "rounds": cfg.rounds,
            "fold": fold,
            "rows": rows,
        }));
    }
    print!("{}", table(&rows));
    println!(
        "PyTorch: scripts/reference_train.py --evaluate --tuned (channels_last, bf16 autocast in bf16 rows, inference_mode, a DataLoader worker per core); loop s: the time PyTorch reports for its loop; peak RSS: wait4's ru_maxrss of the child (its largest process, DataLoader workers not added up); max |dP|: the largest difference in P(FL) between the two programs' predictions"
    );
    Ok(())
}

fn table(rows: &[EvaluateRow]) -> Table<10> {
    let mut t = Table::new(
        [
            Left(12),
            Left(5),
            Left(42),
            Right(7),
            Right(9),
            Right(9),
            Right(9),
            Right(9),
            Right(14),
            Right(9),
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
            "max |dP|",
        ],
    );
    for r in rows {
        for (k, p) in [&r.flarecast, &r.torch].into_iter().enumerate() {
            let first = k == 0;
            t.row([
                if first {
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
                if first {
                    format!("{:.2}x {:.2}x mem", r.speedup, r.memory_ratio)
                } else {
                    String::new()
                },
                if first {
                    format!("{:.1e}", r.max_prob_difference)
                } else {
                    String::new()
                },
            ]);
        }
    }
    t
}
