//! The Python the benches time PyTorch in: which interpreter, whether it holds torch, the
//! scripts they embed (written out for it), and a script kept warm between rounds,
//! answering one JSON line with one JSON line.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A script of scripts/ embedded in the binary, under its file name: the scripts import
/// each other by that name from the folder they are written to.
pub struct Script {
    pub name: &'static str,
    pub text: &'static str,
}

/// The paper's networks in PyTorch, which every bench script imports.
pub const REFERENCE_MODEL: Script = Script {
    name: "reference_model.py",
    text: include_str!("../../scripts/reference_model.py"),
};

/// torchvision's networks as flarecast builds them (one input channel, two classes).
pub const TORCHVISION_NETS: Script = Script {
    name: "torchvision_golden.py",
    text: include_str!("../../scripts/torchvision_golden.py"),
};

/// Writes `scripts` into `dir`.
pub fn write_scripts(dir: &Path, scripts: &[&Script]) -> Result<()> {
    for s in scripts {
        crate::fsio::write_atomic(&dir.join(s.name), s.text.as_bytes())?;
    }
    Ok(())
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

/// The torch version `python` holds, checked before any timing starts (torch,
/// torchvision, Pillow and numpy must import).
pub fn torch_version(python: &Path) -> Result<String> {
    let out = Command::new(python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-c")
        .arg("import torch, torchvision, PIL, numpy; print(torch.__version__)")
        .output()
        .with_context(|| format!("cannot start {}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{} cannot import torch, torchvision, Pillow and numpy (scripts/setup.sh installs them): {}",
            python.display(),
            err.trim().lines().last().unwrap_or("")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `python script`, with flarecast's allocator setting (so both programs allocate
/// alike) and no bytecode written beside the script.
pub fn command(python: &Path, script: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.envs(crate::process::keep_freed_memory_env())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-W")
        .arg("ignore")
        .arg(script);
    cmd
}

/// A script run with `--serve --threads N`: each request a JSON line on its stdin, each
/// answer one on its stdout (one with an `error` member is an error); its stdin closed
/// ends it.
pub struct Served {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// What its errors call it ("PyTorch baseline") and its output ("baseline").
    name: &'static str,
    output: &'static str,
}

impl Served {
    /// Starts `script` in `python` with `threads` intra-op threads; its stderr is ours.
    pub fn spawn(
        python: &Path,
        script: &Path,
        threads: i32,
        (name, output): (&'static str, &'static str),
    ) -> std::io::Result<Self> {
        let mut child = command(python, script)
            .arg("--serve")
            .arg("--threads")
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Served {
            child,
            stdin,
            stdout,
            name,
            output,
        })
    }

    /// The next answer (the first is what the script reports at start).
    pub fn reply(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the {} process exited", self.name);
        }
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("unexpected {} output {:?}", self.output, line.trim()))?;
        if let Some(e) = v.get("error") {
            bail!("{}: {}", self.name, e.as_str().unwrap_or("error"));
        }
        Ok(v)
    }

    /// Sends `request` and waits for its answer.
    pub fn ask(&mut self, request: &impl Serialize) -> Result<serde_json::Value> {
        let stdin = self.stdin.as_mut().expect("served stdin open");
        writeln!(stdin, "{}", serde_json::to_string(request)?)?;
        stdin.flush()?;
        self.reply()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // End of input ends the serving loop.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
