//! `bench explain`: Integrated Gradients over a few hundred images, flarecast
//! (`explain::integrated_stream`: the path points of consecutive images sharing each
//! forward and backward pass) against captum's `IntegratedGradients.attribute` as a
//! careful captum user runs it (scripts/captum_ig_bench.py: `internal_batch_size` K
//! tuned, as many threads, the same allocator setting), on the same weights and the same
//! inputs, alternating the programs round by round; the maps of both are compared.

use super::model::ROUNDS;
use super::python::{self, Script, Served};
use super::Rate;
use crate::bounded::Count;
use crate::device::synchronize;
use crate::explain::{self, integrated::INTERNAL_BATCH, Options};
use crate::im_size::ImSize;
use crate::model::{self, Arch, InitScheme, LoadedModel, ModelMeta, Network};
use crate::progress::Progress;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

const CAPTUM_IG_BENCH: Script = Script {
    name: "captum_ig_bench.py",
    text: include_str!("../../scripts/captum_ig_bench.py"),
};

/// Images explained per round a setting may give.
pub const IMAGES: Count<usize> = Count::new("images", "images", 1, 100_000);

/// The largest difference from captum's map a map may have, over that map's peak.
pub const TOLERANCE: f64 = 1e-4;

pub struct ExplainBenchConfig {
    pub device: Device,
    pub im_size: ImSize,
    /// Networks timed, each on random-initialised weights (ignored with `weights`).
    pub archs: Vec<Arch>,
    /// Given weights (any checkpoint flarecast reads) instead of random ones.
    pub weights: Option<PathBuf>,
    /// Images per round: uniform in [0, 1], drawn from `seed`.
    pub images: usize,
    pub steps: usize,
    pub rounds: usize,
    /// flarecast's path points per pass (`None`: `explain`'s default for the network and
    /// side).
    pub internal_batch: Option<usize>,
    /// captum's `internal_batch_size` values tried (K images per call); the fastest is
    /// timed.
    pub captum_k: Vec<usize>,
    pub seed: i64,
    /// The Python holding torch and captum.
    pub python: PathBuf,
    /// Intra-op threads of both programs.
    pub threads: i32,
}

impl ExplainBenchConfig {
    /// Refuses settings the benchmark cannot run, naming the setting.
    pub fn check(&self) -> Result<()> {
        IMAGES.check(self.images)?;
        Options::STEPS.check(self.steps)?;
        ROUNDS.check(self.rounds)?;
        if let Some(k) = self.internal_batch {
            INTERNAL_BATCH.check(k)?;
        }
        if self.captum_k.is_empty() {
            return Err(crate::setting::bad(
                "captum_k",
                "give at least one captum internal_batch_size",
            ));
        }
        for &k in &self.captum_k {
            INTERNAL_BATCH.check(k)?;
        }
        if self.weights.is_none() && self.archs.is_empty() {
            return Err(crate::setting::bad("arch", "give at least one network"));
        }
        Ok(())
    }
}

/// captum's time for one `internal_batch_size`, from the tuning run.
#[derive(Debug, Serialize)]
pub struct Tried {
    pub k: usize,
    pub images_per_s: f64,
}

/// One network's row.
#[derive(Debug, Serialize)]
pub struct ExplainRow {
    pub arch: &'static str,
    pub im_size: ImSize,
    pub images: usize,
    pub steps: usize,
    /// flarecast's path points per pass.
    pub internal_batch: usize,
    pub flarecast: Rate,
    /// captum's `internal_batch_size` timed: the fastest tried.
    pub captum_k: usize,
    pub captum_tried: Vec<Tried>,
    pub captum: Rate,
    /// flarecast / captum (medians).
    pub ratio: f64,
    /// The largest |flarecast - captum| of a map over that map's largest |captum|, over
    /// every image.
    pub max_relative_difference: f64,
    /// The largest |flarecast - captum| over all maps, and the largest |captum|.
    pub max_abs_difference: f64,
    pub max_abs_value: f64,
    /// The largest difference between the convergence deltas.
    pub max_delta_difference: f64,
    /// Every map within [`TOLERANCE`] of its peak.
    pub within_tolerance: bool,
}

/// What both programs ran on.
#[derive(Debug, Serialize)]
pub struct ExplainBench {
    pub processor: String,
    pub device: String,
    pub threads: i32,
    /// What the captum process reported at start (versions, threads, allocator setting).
    pub captum: serde_json::Value,
    pub rows: Vec<ExplainRow>,
}

/// The captum process, kept warm between rounds.
struct Captum {
    served: Served,
    info: serde_json::Value,
}

impl Captum {
    fn start(python: &Path, scripts: &Path, threads: i32) -> Result<Self> {
        python::write_scripts(
            scripts,
            &[
                &CAPTUM_IG_BENCH,
                &python::REFERENCE_MODEL,
                &python::TORCHVISION_NETS,
            ],
        )?;
        let script = scripts.join(CAPTUM_IG_BENCH.name);
        let mut served = Served::spawn(python, &script, threads, ("captum", "captum"))
            .with_context(|| format!("cannot start captum with {}", python.display()))?;
        let info = served.reply().with_context(|| {
            format!(
                "{} did not start scripts/captum_ig_bench.py (are torch and captum installed?)",
                python.display()
            )
        })?;
        Ok(Captum { served, info })
    }

    fn ask(&mut self, req: serde_json::Value) -> Result<serde_json::Value> {
        self.served.ask(&req)
    }

    /// Images/s of captum over the first `images` (all when `None`) at K = `k`, saving
    /// its maps and deltas under `save` when given.
    fn run(&mut self, k: usize, images: Option<usize>, save: Option<&Path>) -> Result<f64> {
        let v = self.ask(serde_json::json!({
            "cmd": "run", "k": k, "images": images, "save": save,
        }))?;
        v["images_per_s"]
            .as_f64()
            .with_context(|| format!("captum reply without images_per_s: {v}"))
    }
}

/// The network on `device`: the given weights, or `arch` random-initialised from `seed`.
fn network(cfg: &ExplainBenchConfig, arch: Arch) -> Result<LoadedModel> {
    if let Some(path) = &cfg.weights {
        return model::load_model(path, cfg.device);
    }
    tch::manual_seed(cfg.seed);
    let vs = nn::VarStore::new(cfg.device);
    let net = Network::new(&vs.root(), arch, InitScheme::default());
    Ok(LoadedModel {
        vs,
        net,
        meta: ModelMeta::new(arch, cfg.im_size.as_i64()),
    })
}

/// `n` images [n, 1, side, side] uniform in [0, 1), from their own generator seeded by
/// `seed`.
pub fn uniform_images(seed: i64, n: usize, side: i64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed as u64);
    let len = n * (side * side) as usize;
    let v: Vec<f32> = (0..len).map(|_| rng.random::<f32>()).collect();
    Tensor::from_slice(&v).view([n as i64, 1, side, side])
}

/// Maps [N, H, W] and convergence deltas of N images.
type Maps = (Tensor, Vec<f64>);

/// flarecast's maps [N, H, W] and deltas of the first `images` of `x` [N, 1, H, W] (on
/// the CPU, each image moved to the model's device within the timing, as captum's are),
/// and its images/s.
fn flarecast_run(
    model: &LoadedModel,
    opts: &Options,
    x: &Tensor,
    images: usize,
    keep: bool,
) -> Result<(f64, Option<Maps>)> {
    let side = x.size()[3];
    let device = model.vs.device();
    let mut maps = Vec::new();
    let mut deltas = Vec::new();
    synchronize(device);
    let start = Instant::now();
    explain::integrated_stream(
        model,
        opts,
        side,
        (0..images).map(|i| Ok((i, x.narrow(0, i as i64, 1).to_device(device)))),
        |_, exp| {
            if keep {
                maps.push(exp.maps[0].raw.shallow_clone());
                deltas.push(exp.delta.unwrap_or(f64::NAN));
            }
            Ok(())
        },
    )?;
    synchronize(device);
    let rate = images as f64 / start.elapsed().as_secs_f64();
    Ok((rate, keep.then(|| (Tensor::stack(&maps, 0), deltas))))
}

/// Runs every network; `report` sees each row as it lands.
pub fn run(
    cfg: &ExplainBenchConfig,
    progress: &Progress,
    mut report: impl FnMut(&ExplainRow),
) -> Result<ExplainBench> {
    cfg.check()?;
    let dir = tempfile::Builder::new()
        .prefix("flarecast-bench-explain")
        .tempdir()?;
    let mut captum = Captum::start(&cfg.python, dir.path(), cfg.threads)?;
    let archs: Vec<Option<Arch>> = match cfg.weights {
        Some(_) => vec![None],
        None => cfg.archs.iter().copied().map(Some).collect(),
    };
    let side = cfg.im_size.as_i64();
    // The inputs, the same for every network and both programs.
    let x = uniform_images(cfg.seed, cfg.images, side);
    let inputs = dir.path().join("inputs.npy");
    x.write_npy(&inputs)?;
    let tune_images = cfg
        .images
        .min(cfg.captum_k.iter().copied().max().unwrap_or(1));
    let steps_per_net = cfg.captum_k.len() + 2 * cfg.rounds + 1;
    let bar = progress.bar(
        (archs.len() * steps_per_net) as u64,
        "{msg} [{bar:30}] {pos}/{len} runs ({elapsed})",
    );
    let mut rows = Vec::new();
    for arch in archs {
        let model = network(cfg, arch.unwrap_or(Arch::Attention))?;
        let arch = model.net.arch();
        let weights = dir.path().join("weights.pth");
        model::pth::write_state_dict(&weights, &model::weights::named_tensors(&model.vs))?;
        captum.ask(serde_json::json!({
            "cmd": "load", "arch": arch.name(), "weights": weights, "inputs": inputs,
            "steps": cfg.steps, "target": explain::Target::Flare.index(),
            "device": crate::device::device_name(cfg.device),
        }))?;
        let opts = Options {
            steps: cfg.steps,
            internal_batch: cfg.internal_batch,
            ..Options::default()
        };
        let internal_batch = opts.points_per_pass(arch, side);
        // captum's K tuned on the first images (which also warms it up).
        let mut tried = Vec::new();
        for &k in &cfg.captum_k {
            bar.set_message(format!("{} captum K={k}", arch.name()));
            let ips = captum.run(k, Some(tune_images), None)?;
            tried.push(Tried {
                k,
                images_per_s: ips,
            });
            bar.inc(1);
        }
        let best_k = tried
            .iter()
            .max_by(|a, b| a.images_per_s.total_cmp(&b.images_per_s))
            .map(|t| t.k)
            .expect("a K tried");
        // Enough images for a full pass.
        let warm = cfg.images.min(internal_batch.div_ceil(cfg.steps) + 1);
        bar.set_message(format!("{} flarecast warm-up", arch.name()));
        flarecast_run(&model, &opts, &x, warm, false)?;
        bar.inc(1);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let mut kept = None;
        let saved = dir.path().join("captum");
        super::alternate(cfg.rounds, |flarecast_now, round| {
            if flarecast_now {
                bar.set_message(format!("{} flarecast round {}", arch.name(), round + 1));
                let (ips, maps) = flarecast_run(&model, &opts, &x, cfg.images, round == 0)?;
                ours.push(ips);
                if maps.is_some() {
                    kept = maps;
                }
            } else {
                bar.set_message(format!("{} captum round {}", arch.name(), round + 1));
                let save = (round == 0).then_some(saved.as_path());
                theirs.push(captum.run(best_k, None, save)?);
            }
            bar.inc(1);
            Ok(())
        })?;
        let (maps, deltas) = kept.expect("the first round keeps its maps");
        let row = compare(
            arch,
            cfg,
            internal_batch,
            (Rate::of(ours), Rate::of(theirs)),
            (best_k, tried),
            (&maps, &deltas),
            &saved,
        )?;
        report(&row);
        rows.push(row);
    }
    bar.finish_and_clear();
    Ok(ExplainBench {
        processor: super::processor(cfg.device),
        device: crate::device::device_name(cfg.device),
        threads: cfg.threads,
        captum: captum.info.clone(),
        rows,
    })
}

/// The row of one network: both rates and flarecast's maps against captum's saved ones.
fn compare(
    arch: Arch,
    cfg: &ExplainBenchConfig,
    internal_batch: usize,
    (flarecast, captum): (Rate, Rate),
    (captum_k, captum_tried): (usize, Vec<Tried>),
    (maps, deltas): (&Tensor, &[f64]),
    saved: &Path,
) -> Result<ExplainRow> {
    let theirs = Tensor::read_npy(saved.join("maps.npy"))?;
    let their_deltas = Tensor::read_npy(saved.join("deltas.npy"))?;
    let their_deltas = Vec::<f64>::try_from(&their_deltas.to_kind(Kind::Double))?;
    let n = cfg.images as i64;
    let ours = maps.to_kind(Kind::Double).view([n, -1]);
    let theirs = theirs.to_kind(Kind::Double).view([n, -1]);
    let diff = (&ours - &theirs).abs().amax([1i64].as_slice(), false);
    let peak = theirs.abs().amax([1i64].as_slice(), false);
    let rel = Vec::<f64>::try_from(&(&diff / peak.clamp_min(f64::MIN_POSITIVE)))?;
    let max_relative_difference = rel.iter().copied().fold(0.0, f64::max);
    let max_delta_difference = deltas
        .iter()
        .zip(&their_deltas)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    Ok(ExplainRow {
        arch: arch.name(),
        im_size: cfg.im_size,
        images: cfg.images,
        steps: cfg.steps,
        internal_batch,
        ratio: flarecast.images_per_s / captum.images_per_s,
        flarecast,
        captum_k,
        captum_tried,
        captum,
        max_relative_difference,
        max_abs_difference: diff.max().double_value(&[]),
        max_abs_value: theirs.abs().max().double_value(&[]),
        max_delta_difference,
        within_tolerance: max_relative_difference <= TOLERANCE,
    })
}
