//! Which device and which precision a run uses: `cpu`, `cuda`, `cuda:N`, `auto`, and
//! lists of them; `auto`, `f32` or `bf16` resolved against the hardware (`precision`).
//! `crate::hardware` detects; this module decides.

pub mod cuda_runtime;
mod precision;

pub use precision::{
    choose as choose_precision, choose_all as choose_precisions, describe as describe_precisions,
    Chosen, PrecisionChoice,
};

use anyhow::{bail, Result};
use tch::Device;

/// One device: `cpu`, `cuda` (= `cuda:0`), `cuda:N`, or `auto` (first CUDA device, else CPU).
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim();
    let dev = match s {
        "cpu" => Device::Cpu,
        "auto" => Device::cuda_if_available(),
        "cuda" | "gpu" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Device::Cuda(i),
            _ => bail!("unknown device {s:?}: expected cpu, cuda, cuda:N or auto"),
        },
    };
    if let Device::Cuda(i) = dev {
        if let Some(why) = cuda_runtime::load().absence() {
            bail!("device {s:?} requested but CUDA is not available: {why}");
        }
        let n = tch::Cuda::device_count() as usize;
        if i >= n {
            bail!("device {s:?} requested but {n} CUDA device(s) are available");
        }
    }
    Ok(dev)
}

/// A device list for data-parallel replicas: `auto` (all CUDA devices, else one CPU),
/// or a comma-separated list such as `cuda:0,cuda:1` or `cpu,cpu`.
pub fn parse_devices(s: &str) -> Result<Vec<Device>> {
    if s.trim() == "auto" {
        let n = tch::Cuda::device_count() as usize;
        return Ok(if n == 0 {
            vec![Device::Cpu]
        } else {
            (0..n).map(Device::Cuda).collect()
        });
    }
    s.split(',').map(parse_device).collect()
}

/// `cpu` or `cuda:N`, for messages and JSON.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Waits for the device's queued work (a CUDA device computes asynchronously), so that a
/// clock read afterwards covers it.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists_and_rejects_garbage() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(
            parse_devices("cpu,cpu").unwrap(),
            vec![Device::Cpu, Device::Cpu]
        );
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        if tch::Cuda::device_count() == 0 {
            assert!(parse_device("cuda:0").is_err());
            assert_eq!(parse_devices("auto").unwrap(), vec![Device::Cpu]);
        }
    }
}
