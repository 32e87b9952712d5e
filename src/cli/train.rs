//! `flarecast train`.

use anyhow::{bail, Result};
use flarecast::data::{CacheMode, LoaderConfig};
use flarecast::device::PrecisionChoice;
use flarecast::im_size::ImSize;
use flarecast::label::Fold;
use flarecast::model::Arch;
use flarecast::recipe::{Balance, Optimizer, Recipe, Schedule, Select};
use flarecast::train::{self, history::EpochRecord, TrainConfig};
use std::path::PathBuf;
use std::sync::Arc;

const PAPER: Recipe = Recipe::PAPER;

/// How `train` runs as one rank of several (shown by `train --help`).
pub const DIST_HELP: &str = "\
More than one process (torch.distributed's c10d engine):
  When launched by torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK) or by
  SLURM's srun with more than one task (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the
  master is the first host of SLURM_JOB_NODELIST unless MASTER_ADDR is set, the port
  MASTER_PORT or one derived from SLURM_JOB_ID), train joins a process group: Gloo for CPU
  tensors, NCCL for CUDA tensors where the build has it. --batch-size stays the global
  batch; each rank trains its share of every batch on one device (--devices auto: the
  LOCAL_RANK-th GPU, else the CPU); gradients are summed in one all-reduce per step; rank 0
  alone writes checkpoints and history. Every wait of the group ends with an error after
  --dist-timeout.
    torchrun --standalone --nproc-per-node 2 --no-python flarecast train ...
    srun --ntasks 8 --ntasks-per-node 4 flarecast train ...";

#[derive(clap::Args)]
#[command(mut_arg("out", |a| super::common_args::out_default(a, "trained_models", "Output directory: checkpoints go to {out}/attention, {out}/no_attention or {out}/<network name>.")))]
#[command(args_override_self = true)]
pub struct Args {
    /// Cross-validation fold 1..4 (validation quarter: 1 Jan-Mar, 2 Apr-Jun, 3 Jul-Sep, 4 Oct-Dec).
    #[arg(long, default_value_t = 1, value_parser = Fold::NUMBER.flag())]
    fold: u32,
    /// Train the attention network (the default). `--attention=0` / `--attention=1` as
    /// in the reference's train.py are accepted too.
    #[arg(long, num_args = 0..=1, default_missing_value = "1", value_name = "0|1")]
    attention: Option<String>,
    /// Train the standard CNN instead.
    #[arg(long, conflicts_with = "attention")]
    no_attention: bool,
    /// The network by name: attention, standard, alexnet, vgg16, resnet18, resnet34,
    /// resnet50 or mobilenet_v2 (torchvision's, one channel in, two classes out).
    /// --attention and --no-attention are the paper's spellings of the first two.
    #[arg(long, conflicts_with_all = ["attention", "no_attention"])]
    arch: Option<Arch>,
    /// Start a torchvision network from an ImageNet checkpoint (its state dict as
    /// torchvision saves it): the first convolution summed over the colour channels, the
    /// classifier replaced by a fresh 2-class layer.
    #[arg(long, requires = "arch", conflicts_with = "init_weights")]
    pretrained: Option<PathBuf>,
    /// With --pretrained: fold ImageNet's mean and standard deviation into the first
    /// convolution, so it sees the grey image as torchvision's pipeline would.
    #[arg(long, requires = "pretrained")]
    pretrained_normalisation: bool,
    /// Epochs to run (exactly; the reference runs one fewer).
    #[arg(long, default_value_t = PAPER.epochs, value_parser = Recipe::EPOCHS.flag())]
    epochs: usize,
    /// Instances per step (in a process group the global batch).
    #[arg(long, default_value_t = PAPER.batch_size, value_parser = Recipe::BATCH_SIZE.flag())]
    batch_size: usize,
    /// Side the images are resized to (192..=2048).
    #[arg(long, default_value_t = PAPER.im_size.get())]
    im_size: u32,
    /// The optimizer, with --lr and --weight-decay, SGD's --momentum and AdamW's --betas.
    /// --resume is refused with adamw or a momentum above 0: libtorch keeps that state
    /// inside its optimizer and tch cannot save it.
    #[arg(long, value_enum, default_value_t = PAPER.optimizer)]
    optimizer: Optimizer,
    /// Learning rate (the step schedule's first, the cosine's peak).
    #[arg(long, default_value_t = PAPER.lr)]
    lr: f64,
    /// Weight decay (the paper's 0.5): SGD's L2 term, AdamW's decoupled decay.
    #[arg(long, default_value_t = PAPER.weight_decay)]
    weight_decay: f64,
    /// SGD's momentum in [0, 1) (the paper's 0: plain SGD).
    #[arg(long, default_value_t = PAPER.momentum)]
    momentum: f64,
    /// AdamW's moment decays, each in [0, 1) (default 0.9,0.999, torch's).
    #[arg(long, value_name = "B1,B2", value_parser = parse_betas)]
    betas: Option<(f64, f64)>,
    /// The learning rate's schedule, epochs counted from 1 (torch's epoch i is epoch i + 1).
    /// The cosine spans --epochs, so a resumed cosine run keeps them.
    #[arg(long, value_enum, default_value_t = PAPER.schedule)]
    schedule: Schedule,
    /// Epochs between learning-rate decays.
    #[arg(long, default_value_t = PAPER.lr_step, value_parser = Recipe::LR_STEP.flag())]
    lr_step: usize,
    /// Learning-rate decay factor.
    #[arg(long, default_value_t = PAPER.lr_gamma)]
    lr_gamma: f64,
    /// Linear warm-up of N epochs (fewer than --epochs) before the schedule: epoch e <= N
    /// runs at e / (N + 1) of the schedule's rate (the cosine's is lr then), torch's
    /// LinearLR(start_factor = 1 / (N + 1), total_iters = N) chained to the schedule by
    /// SequentialLR(milestones = [N]).
    #[arg(long, default_value_t = PAPER.warmup_epochs, value_parser = Recipe::WARMUP_EPOCHS.flag())]
    warmup_epochs: usize,
    /// How the training split's class imbalance is met.
    #[arg(long, value_enum, default_value_t = PAPER.balance)]
    balance: Balance,
    /// The rule for best (its checkpoint, and what --patience waits for).
    #[arg(long, value_enum, default_value_t = PAPER.select)]
    select: Select,
    /// Stop once N epochs in a row gave no better best (by --select); final is written at
    /// the stop and the summary and history name the epoch (default: every epoch runs).
    #[arg(long, value_name = "N", value_parser = Recipe::PATIENCE.flag())]
    patience: Option<usize>,
    /// The fold's images and labels.
    #[command(flatten)]
    data: super::common_args::Data,
    #[command(flatten)]
    out: super::common_args::OutDir,
    /// cpu, cuda, cuda:N or auto (all CUDA devices, else CPU); a comma-separated list
    /// (cuda:0,cuda:1 or cpu,cpu) trains one data-parallel replica on each.
    #[arg(long, visible_alias = "devices", default_value = "auto")]
    device: String,
    /// auto (bf16 where the hardware computes it natively and faster, else f32), f32, or bf16 mixed
    /// precision (float32 master weights).
    #[arg(long, default_value = "auto")]
    precision: PrecisionChoice,
    /// Loader threads (default: one per core).
    #[arg(long, value_parser = LoaderConfig::WORKERS.flag())]
    workers: Option<usize>,
    /// Keep decoded images: none, memory (RAM) or device (GPU/CPU tensor).
    #[arg(long, value_enum, default_value = "none")]
    cache: CacheMode,
    /// Seeds the initial weights, the shuffle and the augmentations.
    #[arg(long, default_value_t = PAPER.seed)]
    seed: u64,
    /// Start from these weights (.pth/.pt/.safetensors) instead of the random init.
    #[arg(long)]
    init_weights: Option<PathBuf>,
    /// Continue from {out}/<arch>/fold{K}_last.safetensors.
    #[arg(long)]
    resume: bool,
    /// Show every training item as the original (no flips or rotations).
    #[arg(long)]
    no_augment: bool,
    /// Leave out unreadable images (listed in the summary) instead of failing.
    #[arg(long)]
    skip_bad_images: bool,
    /// Train even when the validation split holds one class only. TSS and HSS2 are then
    /// undefined, so no epoch is chosen as best (only last and final are written).
    #[arg(long)]
    allow_one_class_val: bool,
    /// TensorBoard event files go to this folder, or nowhere with `none` (default:
    /// {out}/<arch>/fold{K}_tb, beside the checkpoints).
    #[arg(long, value_name = "DIR|none", value_parser = flarecast::tensorboard::Destination::parse)]
    tensorboard: Option<flarecast::tensorboard::Destination>,
    #[command(flatten)]
    json: super::common_args::Json,
    #[command(flatten)]
    group: super::group_args::GroupArgs,
    /// Settings from a TOML file of these flags by name (`epochs = 30`, `arch =
    /// "resnet34"`); flags on the command line override it. Every run writes its resolved
    /// settings as {out}/<arch>/fold{K}_config.toml, a valid --config.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Print the resolved settings (defaults, --config and flags) as a config file and exit.
    #[arg(long)]
    print_config: bool,
}

fn parse_arch(args: &Args) -> Result<Arch> {
    if let Some(arch) = args.arch {
        return Ok(arch);
    }
    if args.no_attention {
        return Ok(Arch::StandardCnn);
    }
    match args.attention.as_deref() {
        None | Some("1") | Some("true") => Ok(Arch::Attention),
        Some("0") | Some("false") => Ok(Arch::StandardCnn),
        // The reference treats any integer other than 1 as the standard CNN.
        Some(other) if other.parse::<i64>().is_ok() => Ok(Arch::StandardCnn),
        Some(other) => bail!("--attention takes 0 or 1, got {other:?}"),
    }
}

/// `B1,B2`: two numbers.
fn parse_betas(text: &str) -> Result<(f64, f64), String> {
    let parse = |t: &str| (t.trim().parse::<f64>()).map_err(|_| format!("{t:?} is not a number"));
    match text.split_once(',') {
        Some((b1, b2)) => Ok((parse(b1)?, parse(b2)?)),
        None => Err("not two numbers B1,B2".into()),
    }
}

fn epoch_line(r: &EpochRecord, epochs: usize) -> String {
    format!(
        "epoch {}/{epochs}: lr {:.2e} train loss {:.4} TSS {:.4} HSS2 {:.4} | val loss {:.4} TSS {:.4} HSS2 {:.4}{} | {:.1}s {:.1} img/s",
        r.epoch,
        r.lr,
        r.train_loss,
        r.train_tss,
        r.train_hss2,
        r.val_loss,
        r.val_tss,
        r.val_hss2,
        if r.best { " (best)" } else { "" },
        r.seconds,
        r.images_per_s
    )
}

pub fn run(args: Args) -> Result<()> {
    let _ = &args.config; // read before parsing (cli::config_file)
    if args.print_config {
        print!("{}", super::config_file::resolved().unwrap_or_default());
        return Ok(());
    }
    let arch = parse_arch(&args)?;
    let launch = args.group.launch()?;
    let devices = match &launch {
        Some(l) => vec![flarecast::distributed::rank_device(&args.device, l)?],
        None => flarecast::device::parse_devices(&args.device)?,
    };
    let precision = flarecast::device::choose_precision(args.precision, devices[0]).precision;
    let cfg = TrainConfig {
        fold: args.fold,
        arch,
        recipe: Recipe {
            epochs: args.epochs,
            batch_size: args.batch_size,
            im_size: ImSize::of_setting(args.im_size.into())?,
            optimizer: args.optimizer,
            lr: args.lr,
            weight_decay: args.weight_decay,
            momentum: args.momentum,
            betas: args.betas.unwrap_or(PAPER.betas),
            schedule: args.schedule,
            lr_step: args.lr_step,
            lr_gamma: args.lr_gamma,
            warmup_epochs: args.warmup_epochs,
            balance: args.balance,
            select: args.select,
            patience: args.patience,
            seed: args.seed,
        },
        images: args.data.images.clone(),
        labels: args.data.labels.clone(),
        out: args.out.dir.clone(),
        devices,
        precision,
        workers: args.workers.unwrap_or_else(LoaderConfig::default_workers),
        cache: args.cache,
        init_weights: args.init_weights.clone(),
        pretrained: args.pretrained.clone().map(|file| train::Pretrained {
            file,
            fold_normalisation: args.pretrained_normalisation,
        }),
        resume: args.resume,
        augment: !args.no_augment,
        skip_bad_images: args.skip_bad_images,
        allow_one_class_val: args.allow_one_class_val,
        tensorboard: args.tensorboard.clone().unwrap_or_default(),
        group: None,
        settings: super::config_file::resolved().map(str::to_string),
    };
    cfg.validate()?;
    let cfg = match &launch {
        Some(l) => {
            let group = args.group.join(l, cfg.devices[0])?;
            TrainConfig {
                group: Some(Arc::new(group)),
                ..cfg
            }
        }
        None => cfg,
    };
    // Rank 0 speaks for the group; the others stay quiet unless they fail.
    let speaks = cfg.writes();
    let json = args.json.on;
    let progress = if speaks {
        super::progress(json)
    } else {
        flarecast::progress::Progress::hidden()
    };
    let summary = train::train(&cfg, &progress, &mut |r, epochs| {
        if !speaks {
            return;
        }
        let line = epoch_line(r, epochs);
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    })?;
    if !speaks {
        return Ok(());
    }
    if json {
        super::print_json(&summary)?;
    } else {
        println!(
            "trained {} on fold {} for {} epochs ({}{}; {}): {}; final val TSS {:.4} HSS2 {:.4}",
            summary.arch,
            summary.fold,
            summary
                .stopped_early_at
                .map_or(summary.epochs.to_string(), |e| format!(
                    "{e} of {}",
                    summary.epochs
                )),
            summary.devices.join(","),
            if summary.ranks > 1 {
                format!(", {} ranks", summary.ranks)
            } else {
                String::new()
            },
            summary.precision,
            summary.best_epoch.map_or(
                "no best epoch (TSS undefined on a one-class validation split)".into(),
                |e| format!(
                    "best epoch {e} with val TSS {:.4} HSS2 {:.4}",
                    summary.best_val_tss, summary.best_val_hss2
                )
            ),
            summary.final_val_tss,
            summary.final_val_hss2
        );
        if let Some(e) = summary.stopped_early_at {
            println!(
                "stopped early after epoch {e}: no better best in its last {} epochs",
                args.patience.unwrap_or(0)
            );
        }
        println!(
            "train {} instances ({} FL, {} balanced items), val {} ({} FL)",
            summary.train_instances,
            summary.train_positive,
            summary.balanced_items,
            summary.val_instances,
            summary.val_positive
        );
        if let Some(p) = &summary.pretrained {
            println!("{p}");
        }
        if !summary.skipped_images.is_empty() {
            println!(
                "skipped {} unreadable images:",
                summary.skipped_images.len()
            );
            for s in &summary.skipped_images {
                println!("  {s}");
            }
        }
        println!(
            "checkpoints: {}, {}, {}; history: {}",
            summary.final_checkpoint.display(),
            if summary.best_epoch.is_some() {
                summary.best_checkpoint.display().to_string()
            } else {
                "no best".into()
            },
            summary.last_checkpoint.display(),
            summary.history_csv.display()
        );
    }
    Ok(())
}
