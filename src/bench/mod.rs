//! Throughput benchmarks, one file per `flarecast bench` target. They sit apart from the
//! modules they measure (which never depend on them), take every input as an argument,
//! and return `Serialize` rows for the CLI to print.

pub mod convert;
pub mod download;
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
