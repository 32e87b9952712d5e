//! A cell's state, from its files only: `fold{K}_cell.json` (written by the cell, or by the
//! SLURM executor when it submits) and the cell's lock, held while a process runs it.
//! A cell recorded as running whose lock is free was killed: it is interrupted.

use super::plan::{Cell, Plan};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// What a cell's record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    Submitted,
    Running,
    Done,
    Failed,
}

/// A cell's state as `status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nothing ran or was submitted yet.
    Pending,
    /// In a SLURM array, not started.
    Submitted,
    Running,
    /// Recorded as running, but no process holds it: killed; the next run resumes it.
    Interrupted,
    Done,
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Submitted => "submitted",
            State::Running => "running",
            State::Interrupted => "interrupted",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    /// Whether a run still has something to do for the cell.
    pub fn needs_run(self) -> bool {
        !matches!(self, State::Done | State::Running)
    }
}

/// `fold{K}_cell.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// What the last writer recorded (`status` tells `state` from it and the lock).
    #[serde(rename = "recorded")]
    pub state: Option<Recorded>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// SLURM job of the cell (`{array job}_{task}`), or the array job when submitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// UTC times, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn record_path(out: &Path, cell: &Cell) -> PathBuf {
    cell.file(out, "cell.json")
}

/// Named apart from the output lock `train` and `evaluate` take on `.fold{K}.lock` in
/// the same folder while the cell runs them.
fn lock_path(out: &Path, cell: &Cell) -> PathBuf {
    out.join(&cell.dir)
        .join(format!(".fold{}.cell.lock", cell.fold))
}

/// The cell's record, its log named under `out`.
pub fn read_record(out: &Path, cell: &Cell) -> Result<Option<CellRecord>> {
    let path = record_path(out, cell);
    let mut record: CellRecord = match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .with_context(|| format!("{}: not a cell record", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // The record names the log by its absolute path, which a copied or moved experiment
    // carries from where it was written: shown is the cell's own log of that name.
    record.log = record.log.and_then(|recorded| {
        [false, true]
            .map(|slurm| cell.log(out, slurm))
            .into_iter()
            .find(|own| own.file_name() == recorded.file_name())
    });
    Ok(Some(record))
}

pub fn write_record(out: &Path, cell: &Cell, record: &CellRecord) -> Result<()> {
    let json = serde_json::to_string_pretty(record)?;
    crate::fsio::write_atomic(&record_path(out, cell), format!("{json}\n").as_bytes())
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The exclusive lock of a cell, held for as long as a process runs it (released by the
/// kernel when the process dies, however it dies).
pub struct CellLock {
    _file: File,
}

fn open_lock(path: &Path) -> Result<File> {
    // The lock file is empty and never read: it is not an output, only a name to lock.
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock {}", path.display()))
}

fn try_flock(file: &File) -> bool {
    // SAFETY: flock on an open descriptor.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl CellLock {
    /// The cell's lock, or `None` when another process holds it.
    pub fn try_acquire(out: &Path, cell: &Cell) -> Result<Option<CellLock>> {
        let path = lock_path(out, cell);
        let file = open_lock(&path)?;
        Ok(try_flock(&file).then_some(CellLock { _file: file }))
    }
}

/// Whether a process holds the cell's lock now.
fn is_held(out: &Path, cell: &Cell) -> Result<bool> {
    let path = lock_path(out, cell);
    if !path.exists() {
        return Ok(false);
    }
    let file = open_lock(&path)?;
    // Taken here means nobody held it; dropping the file releases it again.
    Ok(!try_flock(&file))
}

/// One cell's state and where to look.
#[derive(Clone, Debug, Serialize)]
pub struct CellStatus {
    pub index: usize,
    pub arch: String,
    pub seed: u64,
    pub fold: u32,
    pub state: State,
    #[serde(flatten)]
    pub record: CellRecord,
}

/// The state of `cell` from its files.
pub fn cell_status(plan: &Plan, cell: &Cell) -> Result<CellStatus> {
    let record = read_record(&plan.out, cell)?.unwrap_or_default();
    let state = match record.state {
        None => State::Pending,
        Some(Recorded::Done) if cell.predictions(&plan.out).exists() => State::Done,
        // A record of done without its predictions: they were removed; run it again.
        Some(Recorded::Done) => State::Interrupted,
        Some(Recorded::Failed) => State::Failed,
        Some(Recorded::Submitted) => State::Submitted,
        Some(Recorded::Running) if is_held(&plan.out, cell)? => State::Running,
        Some(Recorded::Running) => State::Interrupted,
    };
    Ok(CellStatus {
        index: cell.index,
        arch: cell.arch.dir_name().into(),
        seed: cell.seed,
        fold: cell.fold,
        state,
        record,
    })
}

/// Every cell's state, in cell order.
pub fn status(plan: &Plan) -> Result<Vec<CellStatus>> {
    plan.cells.iter().map(|c| cell_status(plan, c)).collect()
}

/// How many cells are in each state, in state order, states with none left out.
pub fn counts(cells: &[CellStatus]) -> Vec<(State, usize)> {
    let mut out: Vec<(State, usize)> = Vec::new();
    let mut states: Vec<State> = cells.iter().map(|c| c.state).collect();
    states.sort();
    for s in states {
        match out.last_mut() {
            Some((last, n)) if *last == s => *n += 1,
            _ => out.push((s, 1)),
        }
    }
    out
}
