//! flarecast's networks in PyTorch (the paper's as scripts/reference_model.py writes
//! them, the others torchvision's as scripts/torchvision_golden.py builds them) as a
//! careful PyTorch user runs them, as the measured anchor: one Python process, kept warm, that times a
//! configuration on request, so a benchmark can alternate between flarecast and PyTorch
//! round by round. The process gets the allocator setting flarecast gives itself.

use super::python::{self, Script, Served};
use super::Mode;
use crate::model::{Arch, Precision};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

const TORCH_BASELINE: Script = Script {
    name: "torch_baseline.py",
    text: include_str!("../../scripts/torch_baseline.py"),
};

/// The ways a PyTorch user runs the networks, each timed as its own program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Contiguous NCHW, PyTorch's default.
    Eager,
    /// `torch.channels_last` for the model and the input.
    ChannelsLast,
    /// Channels-last and `torch.compile` (inductor, default mode).
    Compiled,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Eager, Variant::ChannelsLast, Variant::Compiled];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Eager => "eager",
            Variant::ChannelsLast => "channels_last",
            Variant::Compiled => "compiled",
        }
    }

    /// Parses a name as `name` spells it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// A running baseline process.
pub struct TorchBaseline {
    served: Served,
    /// What the process reported at start: torch version, threads, ATen's CPU capability.
    pub info: serde_json::Value,
    _scripts: tempfile::TempDir,
}

#[derive(Serialize)]
struct Request {
    arch: &'static str,
    mode: &'static str,
    variant: &'static str,
    precision: &'static str,
    batch_size: i64,
    im_size: i64,
    iters: usize,
    warmup: usize,
}

impl TorchBaseline {
    /// Starts `python` on the embedded scripts with `threads` intra-op threads.
    pub fn start(python: &Path, threads: i32) -> Result<Self> {
        let scripts = tempfile::Builder::new()
            .prefix("flarecast-baseline")
            .tempdir()?;
        python::write_scripts(
            scripts.path(),
            &[
                &python::REFERENCE_MODEL,
                &python::TORCHVISION_NETS,
                &TORCH_BASELINE,
            ],
        )?;
        let script = scripts.path().join(TORCH_BASELINE.name);
        let mut served = Served::spawn(python, &script, threads, ("PyTorch baseline", "baseline"))
            .with_context(|| {
                format!(
                    "cannot start the PyTorch baseline with {}",
                    python.display()
                )
            })?;
        let info = served.reply().with_context(|| {
            format!(
                "{} did not start the PyTorch baseline (is torch installed?)",
                python.display()
            )
        })?;
        Ok(TorchBaseline {
            served,
            info,
            _scripts: scripts,
        })
    }

    /// Images/s of `iters` timed steps (after `warmup` untimed ones the first time this
    /// configuration runs); bf16 runs under `torch.autocast`.
    #[allow(clippy::too_many_arguments)]
    pub fn measure(
        &mut self,
        arch: Arch,
        mode: Mode,
        variant: Variant,
        precision: Precision,
        batch_size: i64,
        im_size: i64,
        iters: usize,
        warmup: usize,
    ) -> Result<f64> {
        let req = Request {
            arch: arch.name(),
            mode: match mode {
                Mode::Train => "train",
                Mode::Inference => "inference",
            },
            variant: variant.name(),
            precision: precision.name(),
            batch_size,
            im_size,
            iters,
            warmup,
        };
        let v = self.served.ask(&req)?;
        v["images_per_s"]
            .as_f64()
            .with_context(|| format!("baseline reply without images_per_s: {v}"))
    }
}
