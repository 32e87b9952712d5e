//! `flarecast bench model`: inference and training-step throughput of both networks,
//! optionally side by side with the same networks in PyTorch as a careful user runs them
//! (eager, channels-last, torch.compile; bf16 through autocast), alternating the programs
//! round by round and reporting medians and the ratio against the fastest PyTorch variant
//! (the anchor), with the achieved GFLOP/s and their share of the processor's peak.

use super::torch_baseline::{TorchBaseline, Variant};
use super::{Mode, Rate};
use crate::bounded::Count;
use crate::device::synchronize;
use crate::hardware::F32Peak;
use crate::im_size::ImSize;
use crate::model::{Arch, Compute, InitScheme, Network, Precision};
use crate::recipe::Recipe;
use crate::train::step::StepOptimizer;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Timed iterations, warm-up iterations, rounds and intra-op threads a setting may give.
pub const ITERS: Count<usize> = Count::new("iters", "timed iterations", 1, 1_000_000);
pub const WARMUP: Count<usize> = Count::new("warmup", "warm-up iterations", 0, 1_000_000);
pub const ROUNDS: Count<usize> = Count::new("rounds", "rounds", 1, 1000);
pub const THREADS: Count<i32> = Count::new("threads", "threads", 1, 4096);

pub struct BenchConfig {
    pub device: Device,
    pub batch_size: i64,
    pub im_size: ImSize,
    /// Timed iterations per measurement (after `warmup` untimed ones).
    pub iters: usize,
    pub warmup: usize,
    /// Measurements per program and configuration; the median is reported.
    pub rounds: usize,
    pub archs: Vec<Arch>,
    pub precisions: Vec<Precision>,
    pub modes: Vec<Mode>,
    /// None: the default layout for the device; Some(b): force channels-last on or off.
    pub channels_last: Option<bool>,
    /// Time the PyTorch networks with this Python, alternating with flarecast, in the
    /// same precision as each row.
    pub torch_python: Option<PathBuf>,
    /// The PyTorch variants timed (each its own program in the rotation).
    pub torch_variants: Vec<Variant>,
}

/// One PyTorch variant, measured in the same run.
#[derive(Debug, Serialize)]
pub struct VariantRate {
    pub variant: Variant,
    /// None where the variant could not run here (`unavailable` says why).
    pub rate: Option<Rate>,
    pub unavailable: Option<String>,
    /// flarecast / this variant (medians).
    pub ratio: Option<f64>,
}

/// PyTorch's variants and the anchor: the fastest of them.
#[derive(Debug, Serialize)]
pub struct TorchRates {
    pub variants: Vec<VariantRate>,
    pub anchor: Option<Variant>,
    /// flarecast / the anchor (medians).
    pub ratio: Option<f64>,
}

impl TorchRates {
    fn of(flarecast: f64, measured: Vec<(Variant, Result<Vec<f64>, String>)>) -> Self {
        let variants: Vec<VariantRate> = measured
            .into_iter()
            .map(|(variant, r)| match r {
                Ok(rounds) => {
                    let rate = Rate::of(rounds);
                    VariantRate {
                        variant,
                        ratio: Some(flarecast / rate.images_per_s),
                        rate: Some(rate),
                        unavailable: None,
                    }
                }
                Err(e) => VariantRate {
                    variant,
                    rate: None,
                    unavailable: Some(e),
                    ratio: None,
                },
            })
            .collect();
        let best = variants
            .iter()
            .filter_map(|v| v.rate.as_ref().map(|r| (v.variant, r.images_per_s)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        TorchRates {
            anchor: best.map(|b| b.0),
            ratio: best.map(|b| flarecast / b.1),
            variants,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub arch: &'static str,
    pub precision: &'static str,
    pub mode: Mode,
    pub channels_last: bool,
    pub flarecast: Rate,
    /// The reference network's convolution and matmul arithmetic per second at the
    /// median rate (training counts 3x the forward pass); the paper's networks only.
    pub gflop_per_s: Option<f64>,
    /// `gflop_per_s` over the processor's peak in the row's precision (CPU; the bf16 peak
    /// where `hardware::bf16_peak_factor` knows it).
    pub peak_share: Option<f64>,
    pub torch: Option<TorchRates>,
}

/// The float32 peak of the cores libtorch computes on, for the CPU.
pub fn cpu_peak(device: Device) -> Option<F32Peak> {
    (device == Device::Cpu).then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        F32Peak::detect((tch::get_num_threads().max(1) as usize).min(cores))
    })
}

/// Runs every (arch, precision, mode) configuration; `report` sees each row as it lands.
impl BenchConfig {
    /// Refuses settings the benchmark cannot run, naming the flag.
    pub fn check(&self) -> Result<()> {
        let batch = usize::try_from(self.batch_size).unwrap_or(0);
        Recipe::BATCH_SIZE.check(batch)?;
        ITERS.check(self.iters)?;
        WARMUP.check(self.warmup)?;
        ROUNDS.check(self.rounds)?;
        Ok(())
    }
}

/// The rows, and what the PyTorch process reported at start (its version, threads, CPU
/// capability and allocator setting) where it ran.
pub fn run(
    cfg: &BenchConfig,
    mut report: impl FnMut(&BenchRow),
) -> Result<(Vec<BenchRow>, Option<serde_json::Value>)> {
    cfg.check()?;
    let peak = cpu_peak(cfg.device);
    let bf16_factor = crate::hardware::bf16_peak_factor(cfg.device);
    let mut torch = match &cfg.torch_python {
        Some(py) => Some(TorchBaseline::start(py, tch::get_num_threads())?),
        None => None,
    };
    let mut rows = Vec::new();
    for &arch in &cfg.archs {
        for &precision in &cfg.precisions {
            for &mode in &cfg.modes {
                let mut compute = Compute::for_device(cfg.device, precision, arch);
                if let Some(cl) = cfg.channels_last {
                    compute = Compute::new(compute.kind, cl);
                }
                let peak_gflops = peak.as_ref().and_then(|p| match precision {
                    Precision::F32 => Some(p.gflops),
                    Precision::Bf16 => bf16_factor.map(|f| f * p.gflops),
                });
                let row = measure_side_by_side(
                    cfg,
                    arch,
                    (precision, compute),
                    mode,
                    torch.as_mut(),
                    peak_gflops,
                )?;
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok((rows, torch.map(|t| t.info.clone())))
}

fn measure_side_by_side(
    cfg: &BenchConfig,
    arch: Arch,
    (precision, compute): (Precision, Compute),
    mode: Mode,
    mut torch: Option<&mut TorchBaseline>,
    peak_gflops: Option<f64>,
) -> Result<BenchRow> {
    let mut ours = Runner::new(cfg, arch, compute, mode)?;
    let variants: &[Variant] = if torch.is_some() {
        &cfg.torch_variants
    } else {
        &[]
    };
    let mut fc = Vec::new();
    let mut theirs: Vec<Result<Vec<f64>, String>> = vec![Ok(Vec::new()); variants.len()];
    let programs = 1 + variants.len();
    for round in 0..cfg.rounds.max(1) {
        // The order rotated each round so no program always runs first.
        for slot in 0..programs {
            let k = (round + slot) % programs;
            if k == 0 {
                fc.push(ours.time(cfg.iters));
                continue;
            }
            let (Some(t), Ok(rounds)) = (torch.as_deref_mut(), &mut theirs[k - 1]) else {
                continue;
            };
            match t.measure(
                arch,
                mode,
                variants[k - 1],
                precision,
                cfg.batch_size,
                cfg.im_size.as_i64(),
                cfg.iters,
                cfg.warmup,
            ) {
                Ok(ips) => rounds.push(ips),
                // A variant that fails here (torch.compile without a compiler, say) is
                // reported as unavailable; the others still run.
                Err(e) => theirs[k - 1] = Err(format!("{e:#}")),
            }
        }
    }
    let flarecast = Rate::of(fc);
    // Counted for the paper's networks only; torchvision's are timed without a count.
    let gflop_per_s = arch
        .is_paper()
        .then(|| flops_per_image(arch, cfg.im_size.as_i64(), mode) * flarecast.images_per_s / 1e9);
    let torch = torch.map(|_| {
        TorchRates::of(
            flarecast.images_per_s,
            variants.iter().copied().zip(theirs).collect(),
        )
    });
    Ok(BenchRow {
        arch: arch.name(),
        precision: precision.name(),
        mode,
        channels_last: compute.pass(mode == Mode::Train).channels_last,
        flarecast,
        gflop_per_s,
        peak_share: peak_gflops.zip(gflop_per_s).map(|(p, g)| g / p),
        torch,
    })
}

/// One configuration of flarecast, built and warmed up once, timed on request.
struct Runner {
    device: Device,
    batch_size: i64,
    step: Box<dyn FnMut()>,
}

impl Runner {
    fn new(cfg: &BenchConfig, arch: Arch, compute: Compute, mode: Mode) -> Result<Self> {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(cfg.device);
        let mut net = Network::new(&vs.root(), arch, InitScheme::default());
        net.set_compute(compute);
        let x = Tensor::rand(
            [
                cfg.batch_size,
                1,
                cfg.im_size.as_i64(),
                cfg.im_size.as_i64(),
            ],
            (Kind::Float, cfg.device),
        );
        let y = Tensor::randint(2, [cfg.batch_size], (Kind::Int64, cfg.device));
        let mut opt = StepOptimizer::sgd(&vs, 1e-3, 0.5)?;
        let mut step: Box<dyn FnMut()> = Box::new(move || {
            let _keep = &vs;
            match mode {
                Mode::Inference => {
                    let out = tch::no_grad(|| net.forward_t(&x, false));
                    let _ = out.flare_prob();
                }
                Mode::Train => {
                    let out = net.forward_t(&x, true);
                    let loss = out.logits.cross_entropy_for_logits(&y);
                    opt.backward_step(&vs, &loss);
                }
            }
        });
        for _ in 0..cfg.warmup {
            step();
        }
        synchronize(cfg.device);
        Ok(Runner {
            device: cfg.device,
            batch_size: cfg.batch_size,
            step,
        })
    }

    /// Images/s over `iters` steps.
    fn time(&mut self, iters: usize) -> f64 {
        synchronize(self.device);
        let start = Instant::now();
        for _ in 0..iters {
            (self.step)();
        }
        synchronize(self.device);
        (iters as i64 * self.batch_size) as f64 / start.elapsed().as_secs_f64()
    }
}

/// Floating-point operations of the reference network per image at `im_size`: every
/// convolution and the attention's 1x1 projections and weighted sums as the reference
/// computes them (2 per multiply-add); a training step counts 3 forward passes (forward,
/// input gradients, weight gradients).
pub fn flops_per_image(arch: Arch, im_size: i64, mode: Mode) -> f64 {
    let conv =
        |cin: i64, cout: i64, k: i64, side: i64| (2 * cin * cout * k * k * side * side) as f64;
    let s = im_size;
    let (s1, s2, s3, s4, s5) = (s, s / 2, s / 4, s / 8, s / 16);
    let s6 = ((s5 / 2 - 3) / 3 + 1).max(0);
    let sd = ((s6 - 2) / 2 + 1).max(0);
    let mut f = conv(1, 64, 3, s1)
        + conv(64, 128, 3, s2)
        + conv(128, 256, 3, s3)
        + conv(256, 512, 3, s4)
        + conv(512, 512, 3, s5)
        + conv(512, 512, 3, s6)
        + conv(512, 512, 2, sd);
    if arch.is_attention() {
        f += conv(256, 512, 1, s3);
        // op(l + g) and sum(a * l) on each estimator's 512-channel map.
        f += [s3, s4, s5]
            .iter()
            .map(|&side| 4.0 * 512.0 * (side * side) as f64)
            .sum::<f64>();
        f += 2.0 * 1536.0 * 2.0;
    } else {
        f += 2.0 * 512.0 * 2.0;
    }
    match mode {
        Mode::Inference => f,
        Mode::Train => 3.0 * f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_count_every_convolution_at_256() {
        let expect = 2.0
            * (1.0 * 64.0 * 9.0 * 65536.0
                + 64.0 * 128.0 * 9.0 * 16384.0
                + 128.0 * 256.0 * 9.0 * 4096.0
                + 256.0 * 512.0 * 9.0 * 1024.0
                + 512.0 * 512.0 * 9.0 * 256.0
                + 512.0 * 512.0 * 9.0 * 4.0
                + 512.0 * 512.0 * 4.0)
            + 2048.0;
        assert_eq!(
            flops_per_image(Arch::StandardCnn, 256, Mode::Inference),
            expect
        );
        assert_eq!(
            flops_per_image(Arch::StandardCnn, 256, Mode::Train),
            3.0 * expect
        );
        let attn = expect - 2048.0
            + 2.0 * 256.0 * 512.0 * 4096.0
            + 4.0 * 512.0 * (4096.0 + 1024.0 + 256.0)
            + 2.0 * 1536.0 * 2.0;
        assert_eq!(flops_per_image(Arch::Attention, 256, Mode::Inference), attn);
    }

    #[test]
    fn the_anchor_is_the_fastest_variant_that_ran() {
        let t = TorchRates::of(
            10.0,
            vec![
                (Variant::Eager, Ok(vec![4.0, 5.0, 6.0])),
                (Variant::ChannelsLast, Ok(vec![8.0])),
                (Variant::Compiled, Err("no compiler".into())),
            ],
        );
        assert_eq!(t.anchor, Some(Variant::ChannelsLast));
        assert_eq!(t.ratio, Some(1.25));
        assert_eq!(t.variants[0].ratio, Some(2.0));
        assert_eq!(t.variants[2].unavailable.as_deref(), Some("no compiler"));
        let none = TorchRates::of(10.0, vec![(Variant::Compiled, Err("x".into()))]);
        assert_eq!((none.anchor, none.ratio), (None, None));
    }
}
