//! flarecast's networks in PyTorch (the paper's as scripts/reference_model.py writes
//! them, the others torchvision's as scripts/torchvision_golden.py builds them) as a
//! careful PyTorch user runs them, as the measured anchor: one Python process, kept warm, that times a
//! configuration on request, so a benchmark can alternate between flarecast and PyTorch
//! round by round. The process gets the allocator setting flarecast gives itself.

use super::Mode;
use crate::model::{Arch, Precision};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

const REFERENCE_MODEL: &str = include_str!("../../scripts/reference_model.py");
const TORCH_BASELINE: &str = include_str!("../../scripts/torch_baseline.py");
const TORCHVISION_NETS: &str = include_str!("../../scripts/torchvision_golden.py");

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

/// The Python holding torch: `$FLARECAST_VENV` or the virtualenv scripts/setup.sh makes,
/// else `python3` on the PATH.
pub fn default_python() -> PathBuf {
    let venv = std::env::var_os("FLARECAST_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/flarecast/venv-torch-2.13.0"))
        });
    venv.map(|v| v.join("bin/python"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// A running baseline process.
pub struct TorchBaseline {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
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
        crate::fsio::write_atomic(
            &scripts.path().join("reference_model.py"),
            REFERENCE_MODEL.as_bytes(),
        )?;
        crate::fsio::write_atomic(
            &scripts.path().join("torchvision_golden.py"),
            TORCHVISION_NETS.as_bytes(),
        )?;
        let script = scripts.path().join("torch_baseline.py");
        crate::fsio::write_atomic(&script, TORCH_BASELINE.as_bytes())?;
        let mut child = Command::new(python)
            .envs(crate::process::keep_freed_memory_env())
            .arg("-W")
            .arg("ignore")
            .arg(&script)
            .arg("--serve")
            .arg("--threads")
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start the PyTorch baseline with {}",
                    python.display()
                )
            })?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut me = TorchBaseline {
            child,
            stdin,
            stdout,
            info: serde_json::Value::Null,
            _scripts: scripts,
        };
        me.info = me.read_reply().with_context(|| {
            format!(
                "{} did not start the PyTorch baseline (is torch installed?)",
                python.display()
            )
        })?;
        Ok(me)
    }

    fn read_reply(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the PyTorch baseline process exited");
        }
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("unexpected baseline output {:?}", line.trim()))?;
        if let Some(e) = v.get("error") {
            bail!("PyTorch baseline: {}", e.as_str().unwrap_or("error"));
        }
        Ok(v)
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
        let stdin = self.stdin.as_mut().expect("baseline stdin open");
        writeln!(stdin, "{}", serde_json::to_string(&req)?)?;
        stdin.flush()?;
        let v = self.read_reply()?;
        v["images_per_s"]
            .as_f64()
            .with_context(|| format!("baseline reply without images_per_s: {v}"))
    }
}

impl Drop for TorchBaseline {
    fn drop(&mut self) {
        // End of input ends the serving loop.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
