//! Training across processes and machines on torch's own c10d engine: a TCPStore
//! rendezvous and a Gloo (CPU) or NCCL (CUDA) process group, as `torch.distributed`
//! forms them, so `torchrun` and SLURM's `srun` launch flarecast like any PyTorch job.
//!
//! `launch` reads the launcher's environment; `group` owns the C++ shim
//! (`c10d_shim.cpp`, built by build.rs where Gloo's headers exist, else this module
//! says distributed training is unavailable); `bucket` lays tensors out for the
//! collectives. `train` uses them for DDP-style data parallelism.

pub mod bucket;
mod group;
pub mod launch;

pub use group::{nccl_built, Backend, Group, UNAVAILABLE};
pub use launch::{Launch, Launcher};

use anyhow::{bail, Result};
use tch::Device;

/// What this build can do across processes, for `--version`.
pub fn describe() -> String {
    match UNAVAILABLE {
        Some(why) => format!("unavailable ({why})"),
        None if nccl_built() => "gloo, nccl (torchrun, SLURM)".into(),
        None => "gloo (torchrun, SLURM); no nccl in this build".into(),
    }
}

/// The device a rank trains on for `--devices spec`: `auto` picks the rank's GPU
/// (LOCAL_RANK-th, as torchrun assigns them) where CUDA exists, else the CPU; `cuda` is
/// the rank's GPU; an explicit single device is used as given. Each rank trains on one
/// device, as DDP.
pub fn rank_device(spec: &str, launch: &Launch) -> Result<Device> {
    let spec = spec.trim();
    if spec.contains(',') {
        bail!(
            "each rank of a process group trains on one device, not {spec:?}: start one rank \
             per device (torchrun --nproc-per-node N)"
        );
    }
    let gpus = tch::Cuda::device_count() as usize;
    let local_gpu = || -> Result<Device> {
        if launch.local_rank >= gpus {
            bail!(
                "rank {} (local rank {}) has no GPU of its own: {gpus} CUDA device(s) here",
                launch.rank,
                launch.local_rank
            );
        }
        Ok(Device::Cuda(launch.local_rank))
    };
    match spec {
        "auto" if gpus == 0 => Ok(Device::Cpu),
        "auto" | "cuda" | "gpu" => local_gpu(),
        other => crate::device::parse_device(other),
    }
}
