//! A program run as a child process, timed from its start to its exit with its peak
//! resident size, and its measurements over the rounds.

use super::median;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// What one child process took.
#[derive(Clone, Debug)]
pub struct Finished {
    /// From before the start to after the exit.
    pub seconds: f64,
    /// The child's peak resident size (wait4's ru_maxrss: the process itself, or the
    /// largest of the children it waited for, not their sum).
    pub peak_rss_bytes: u64,
    pub stdout: String,
}

/// Runs `cmd` to its end: its wall time, its peak resident size and its stdout; a
/// failure is an error with the end of its stderr, naming `what`.
pub fn run_timed(mut cmd: Command, what: &str) -> Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {what} with {}",
            Path::new(cmd.get_program()).display()
        )
    })?;
    let pid = libc::pid_t::try_from(child.id()).context("child process id")?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes only into the status and rusage passed; `pid` is our
        // child, which nothing else waits for (`child` is never waited on).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("waiting for {what}"));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(child);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status =
        <std::process::ExitStatus as std::os::unix::process::ExitStatusExt>::from_raw(status);
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} failed ({status}):\n{}", tail.join("\n"));
    }
    // Linux gives ru_maxrss in KiB.
    let peak_rss_bytes = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    Ok(Finished {
        seconds,
        peak_rss_bytes,
        stdout,
    })
}

/// Runs `cmd` to its end as [`run_timed`] does, with the JSON report it printed last.
pub fn run_reported(cmd: Command, what: &str) -> Result<(Finished, serde_json::Value)> {
    let f = run_timed(cmd, what)?;
    let v = json_of(&f.stdout, what)?;
    Ok((f, v))
}

/// The JSON object a program printed last on stdout.
pub fn json_of(stdout: &str, what: &str) -> Result<serde_json::Value> {
    let text = stdout.trim();
    let start = text.rfind("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&text[start..])
        .or_else(|_| serde_json::from_str(text))
        .with_context(|| {
            let head: String = text.chars().take(300).collect();
            format!("{what} printed no JSON report: {head:?}")
        })
}

/// One program's measurements over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramRun {
    pub program: String,
    /// The precision it computed in.
    pub precision: &'static str,
    /// Images of the epoch: the balanced training items plus the validation images
    /// (inference: the validation images).
    pub images: usize,
    /// Wall time of each round, start to exit.
    pub seconds: Vec<f64>,
    pub median_seconds: f64,
    /// `images / median_seconds`: what the researcher waits for.
    pub images_per_s: f64,
    /// The time the program itself reports for its loop (its start-up, image check and
    /// saving left out), median over the rounds.
    pub loop_seconds: Option<f64>,
    /// Largest peak resident size of the rounds.
    pub peak_rss_bytes: u64,
    /// The loop time of each round that reported one.
    #[serde(skip)]
    loops: Vec<f64>,
}

impl ProgramRun {
    pub fn new(program: String, precision: &'static str) -> Self {
        ProgramRun {
            program,
            precision,
            images: 0,
            seconds: Vec::new(),
            median_seconds: 0.0,
            images_per_s: 0.0,
            loop_seconds: None,
            peak_rss_bytes: 0,
            loops: Vec::new(),
        }
    }

    /// Adds a round: its run, the images it reports and its own loop time.
    pub fn add(&mut self, f: &Finished, images: usize, loop_seconds: Option<f64>) -> Result<()> {
        if !self.seconds.is_empty() && images != self.images {
            bail!(
                "{} reported {images} images in one round and {} in another",
                self.program,
                self.images
            );
        }
        self.images = images;
        self.seconds.push(f.seconds);
        self.peak_rss_bytes = self.peak_rss_bytes.max(f.peak_rss_bytes);
        self.median_seconds = median(&self.seconds);
        self.images_per_s = images as f64 / self.median_seconds;
        if let Some(l) = loop_seconds {
            self.loops.push(l);
            self.loop_seconds = Some(median(&self.loops));
        }
        Ok(())
    }
}
