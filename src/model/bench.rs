//! `flarecast bench model`: inference and training-step throughput of both networks.

use super::{Arch, AttnNet, Compute, InitScheme, Precision};
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Reference PyTorch 2.13 eager float32 throughput on a 2-core AMD EPYC (images/s, batch 16
/// at 256x256, 2 threads): (arch, mode) -> images/s.
pub fn reference_images_per_s(arch: Arch, mode: Mode) -> f64 {
    match (arch, mode) {
        (Arch::Attention, Mode::Train) => 2.2,
        (Arch::Attention, Mode::Inference) => 7.9,
        (Arch::StandardCnn, Mode::Train) => 3.75,
        (Arch::StandardCnn, Mode::Inference) => 9.6,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Inference,
    Train,
}

pub struct BenchConfig {
    pub device: Device,
    pub batch_size: i64,
    pub im_size: i64,
    /// Timed iterations per configuration (after `warmup` untimed ones).
    pub iters: usize,
    pub warmup: usize,
    pub archs: Vec<Arch>,
    pub precisions: Vec<Precision>,
    pub modes: Vec<Mode>,
    /// None: the default layout for the device; Some(b): force channels-last on or off.
    pub channels_last: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub arch: &'static str,
    pub precision: &'static str,
    pub mode: Mode,
    pub channels_last: bool,
    pub images_per_s: f64,
    pub reference_images_per_s: f64,
    pub ratio: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Runs every (arch, precision, mode) configuration; `report` sees each row as it lands.
pub fn run(cfg: &BenchConfig, mut report: impl FnMut(&BenchRow)) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for &arch in &cfg.archs {
        for &precision in &cfg.precisions {
            for &mode in &cfg.modes {
                let mut compute = Compute::for_device(cfg.device, precision);
                if let Some(cl) = cfg.channels_last {
                    compute.channels_last = cl;
                }
                let ips = measure(cfg, arch, compute, mode)?;
                let reference = reference_images_per_s(arch, mode);
                let row = BenchRow {
                    arch: arch.name(),
                    precision: precision.name(),
                    mode,
                    channels_last: compute.channels_last,
                    images_per_s: ips,
                    reference_images_per_s: reference,
                    ratio: ips / reference,
                };
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// Images per second of one configuration on a fixed random batch.
pub fn measure(cfg: &BenchConfig, arch: Arch, compute: Compute, mode: Mode) -> Result<f64> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(cfg.device);
    let mut net = AttnNet::new(&vs.root(), arch, InitScheme::default());
    net.set_compute(compute);
    let x = Tensor::rand(
        [cfg.batch_size, 1, cfg.im_size, cfg.im_size],
        (Kind::Float, cfg.device),
    );
    let y = Tensor::randint(2, [cfg.batch_size], (Kind::Int64, cfg.device));
    let mut opt = nn::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        wd: 0.5,
        nesterov: false,
    }
    .build(&vs, 1e-3)?;
    let mut step = || match mode {
        Mode::Inference => {
            let out = tch::no_grad(|| net.forward_t(&x, false));
            let _ = out.flare_prob();
        }
        Mode::Train => {
            let out = net.forward_t(&x, true);
            let loss = out.logits.cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
        }
    };
    for _ in 0..cfg.warmup {
        step();
    }
    sync(cfg.device);
    let start = Instant::now();
    for _ in 0..cfg.iters {
        step();
    }
    sync(cfg.device);
    let secs = start.elapsed().as_secs_f64();
    Ok((cfg.iters as i64 * cfg.batch_size) as f64 / secs)
}
