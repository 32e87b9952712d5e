//! `flarecast bench model`: inference and training-step throughput of both networks,
//! optionally side by side with the plain PyTorch eager networks (alternating the two
//! programs round by round and reporting medians), with the achieved GFLOP/s and their
//! share of the processor's float32 peak.

use super::torch_baseline::{Layout, TorchBaseline};
use super::Mode;
use crate::device::synchronize;
use crate::hardware::F32Peak;
use crate::model::{Arch, AttnNet, Compute, InitScheme, Precision};
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn;
use tch::{Device, Kind, Tensor};

pub struct BenchConfig {
    pub device: Device,
    pub batch_size: i64,
    pub im_size: i64,
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
    /// Time the plain PyTorch networks with this Python, alternating with flarecast
    /// (float32 rows only: the baseline is the reference's float32 code).
    pub torch_python: Option<PathBuf>,
}

/// Images/s of one program: the median over rounds and every round's figure.
#[derive(Debug, Serialize)]
pub struct Rate {
    pub images_per_s: f64,
    pub rounds: Vec<f64>,
}

impl Rate {
    fn of(rounds: Vec<f64>) -> Self {
        let images_per_s = median(&mut rounds.clone());
        Rate {
            images_per_s,
            rounds,
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// PyTorch eager, measured in the same run.
#[derive(Debug, Serialize)]
pub struct TorchRates {
    pub default: Rate,
    pub channels_last: Rate,
    /// flarecast / PyTorch default layout (medians).
    pub ratio_default: f64,
    /// flarecast / PyTorch channels-last (medians).
    pub ratio_channels_last: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub arch: &'static str,
    pub precision: &'static str,
    pub mode: Mode,
    pub channels_last: bool,
    pub flarecast: Rate,
    /// The reference network's convolution and matmul arithmetic per second at the
    /// median rate (training counts 3x the forward pass).
    pub gflop_per_s: f64,
    /// `gflop_per_s` over the processor's float32 peak (CPU, float32 rows only).
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
        crate::setting::check_at_least_one("batch-size", "the batch size", batch)?;
        crate::setting::check_at_least_one("iters", "the timed iterations", self.iters)?;
        crate::model::check_im_size(self.im_size)
            .map_err(|e| crate::setting::bad("im-size", e.to_string()))
    }
}

pub fn run(cfg: &BenchConfig, mut report: impl FnMut(&BenchRow)) -> Result<Vec<BenchRow>> {
    cfg.check()?;
    let peak = cpu_peak(cfg.device);
    let mut torch = match &cfg.torch_python {
        Some(py) => Some(TorchBaseline::start(py, tch::get_num_threads())?),
        None => None,
    };
    let mut rows = Vec::new();
    for &arch in &cfg.archs {
        for &precision in &cfg.precisions {
            for &mode in &cfg.modes {
                let mut compute = Compute::for_device(cfg.device, precision);
                if let Some(cl) = cfg.channels_last {
                    compute.channels_last = cl;
                }
                let baseline = torch.as_mut().filter(|_| precision == Precision::F32);
                let row = measure_side_by_side(cfg, arch, compute, mode, baseline, peak.as_ref())?;
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn measure_side_by_side(
    cfg: &BenchConfig,
    arch: Arch,
    compute: Compute,
    mode: Mode,
    mut torch: Option<&mut TorchBaseline>,
    peak: Option<&F32Peak>,
) -> Result<BenchRow> {
    let mut ours = Runner::new(cfg, arch, compute, mode)?;
    let mut fc = Vec::new();
    let (mut td, mut tc) = (Vec::new(), Vec::new());
    let rounds = cfg.rounds.max(1);
    for round in 0..rounds {
        // Three programs, the order rotated each round so none always runs first.
        for slot in 0..3 {
            match (round + slot) % 3 {
                0 => fc.push(ours.time(cfg.iters)),
                k => {
                    if let Some(t) = torch.as_deref_mut() {
                        let layout = if k == 1 {
                            Layout::Default
                        } else {
                            Layout::ChannelsLast
                        };
                        let ips = t.measure(
                            arch,
                            mode,
                            layout,
                            cfg.batch_size,
                            cfg.im_size,
                            cfg.iters,
                            cfg.warmup,
                        )?;
                        if k == 1 {
                            td.push(ips)
                        } else {
                            tc.push(ips)
                        }
                    }
                }
            }
        }
    }
    let flarecast = Rate::of(fc);
    let gflop_per_s = flops_per_image(arch, cfg.im_size, mode) * flarecast.images_per_s / 1e9;
    let torch = torch.map(|_| {
        let (default, channels_last) = (Rate::of(td), Rate::of(tc));
        TorchRates {
            ratio_default: flarecast.images_per_s / default.images_per_s,
            ratio_channels_last: flarecast.images_per_s / channels_last.images_per_s,
            default,
            channels_last,
        }
    });
    Ok(BenchRow {
        arch: arch.name(),
        precision: if compute.kind == Kind::BFloat16 {
            "bf16"
        } else {
            "f32"
        },
        mode,
        channels_last: compute.channels_last,
        flarecast,
        gflop_per_s,
        peak_share: peak
            .filter(|_| compute.kind == Kind::Float)
            .map(|p| gflop_per_s / p.gflops),
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
        let mut net = AttnNet::new(&vs.root(), arch, InitScheme::default());
        net.set_compute(compute);
        let x = Tensor::rand(
            [cfg.batch_size, 1, cfg.im_size, cfg.im_size],
            (Kind::Float, cfg.device),
        );
        let y = Tensor::randint(2, [cfg.batch_size], (Kind::Int64, cfg.device));
        let mut opt = crate::train::sgd(&vs, 1e-3, 0.5)?;
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
                    opt.backward_step(&loss);
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
    fn medians_of_odd_and_even_rounds() {
        assert_eq!(Rate::of(vec![3.0, 1.0, 2.0]).images_per_s, 2.0);
        assert_eq!(Rate::of(vec![4.0, 1.0, 2.0, 3.0]).images_per_s, 2.5);
        assert_eq!(Rate::of(vec![3.0, 1.0, 2.0]).rounds, vec![3.0, 1.0, 2.0]);
    }
}
