//! Throughput benchmarks, one file per `flarecast bench` target. They sit apart from the
//! modules they measure (which never depend on them), take every input as an argument,
//! and return `Serialize` rows for the CLI to print.

pub mod convert;
pub mod download;
pub mod epoch;
pub mod evaluate;
pub mod explain;
pub mod label;
pub mod loader;
pub mod model;
pub mod torch_baseline;
pub mod train;

use serde::Serialize;

/// What a network benchmark times: a forward pass, or forward + backward + SGD step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Inference,
    Train,
}

/// The processor a device's work runs on: the CPU's model name and cores, or the CUDA
/// device's name; every bench prints it with its figures.
pub fn processor(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => format!(
            "{}, {} cores",
            crate::hardware::cpu_model(),
            crate::hardware::cores()
        ),
        other => crate::device::device_name(other),
    }
}
