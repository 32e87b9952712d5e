//! One writer per output: a run that writes a set of files (a training fold's checkpoints
//! and history, an evaluation's predictions, a folder of maps or forecasts) holds an
//! [`OutputLock`] on it, so a second run aimed at the same output is refused, naming the
//! first, instead of the two overwriting each other's files.
//!
//! The lock is `flock(2)` on a hidden `.{name}.lock` file that names its holder (pid and
//! start time). The kernel drops the lock when its holder dies however it dies, so a lock
//! file a killed run left behind is stale: the next run takes it over.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// An exclusive claim on an output, released (and its file removed) when dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    _file: File,
    stale: Option<String>,
}

impl OutputLock {
    /// Claims the output `name` in `dir` (creating `dir`), or fails naming the run that
    /// holds it.
    pub fn acquire(dir: &Path, name: &str) -> Result<OutputLock> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!(".{name}.lock"));
        // The holder removes the file when it is done: a file opened just before that is
        // no longer the lock, so open again (a bounded number of times).
        for _ in 0..100 {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            if !try_lock(&file).with_context(|| format!("cannot lock {}", path.display()))? {
                let holder = read_holder(&path);
                bail!(
                    "{}: {name} is being written by another flarecast run ({holder}); \
                     wait for it to end or write elsewhere",
                    dir.display()
                );
            }
            if !same_file(&file, &path) {
                continue;
            }
            let mut previous = String::new();
            let _ = file.read_to_string(&mut previous);
            let stale = Some(previous.trim().replace('\n', ", ")).filter(|s| !s.is_empty());
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| {
                    let started = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
                    write!(file, "pid {}\nstarted {started}\n", std::process::id())
                })
                .and_then(|_| file.flush())
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(OutputLock {
                path,
                _file: file,
                stale,
            });
        }
        bail!("{}: cannot take {}", dir.display(), path.display())
    }

    /// The holder a killed run left in the lock file, when this lock took it over.
    pub fn took_over(&self) -> Option<&str> {
        self.stale.as_deref()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still held, so no one locks a file that is about to vanish.
        let _ = fs::remove_file(&self.path);
    }
}

/// Who holds the lock, as its file says. The holder writes it just after locking: give
/// it a moment before reporting it unknown.
fn read_holder(path: &Path) -> String {
    for _ in 0..50 {
        if let Ok(text) = fs::read_to_string(path) {
            let text = text.trim();
            if text.contains("started") {
                return text.replace('\n', ", ");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    format!("pid unknown; its lock is {}", path.display())
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this File owns for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Without flock, the file's existence is the lock (a killed run's must be removed by hand).
#[cfg(not(unix))]
fn try_lock(file: &File) -> std::io::Result<bool> {
    Ok(file.metadata()?.len() == 0)
}

#[cfg(not(unix))]
fn same_file(_: &File, _: &Path) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_naming_the_first_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutputLock::acquire(dir.path(), "fold1").unwrap();
        assert!(first.took_over().is_none());
        let err = OutputLock::acquire(dir.path(), "fold1")
            .unwrap_err()
            .to_string();
        let pid = format!("pid {}", std::process::id());
        assert!(err.contains(&pid) && err.contains("started 20"), "{err}");
        assert!(err.contains("fold1"), "{err}");
        // Another output in the same folder is free.
        let other = OutputLock::acquire(dir.path(), "fold2").unwrap();
        drop(first);
        drop(other);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        OutputLock::acquire(dir.path(), "fold1").unwrap();
    }

    #[test]
    fn a_lock_file_left_by_a_killed_run_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // What a run killed with SIGKILL leaves: its file, no lock held (the kernel drops it).
        let left = "pid 4194303\nstarted 2026-01-01T00:00:00Z\n";
        fs::write(dir.path().join(".fold3.lock"), left).unwrap();
        let lock = OutputLock::acquire(dir.path(), "fold3").unwrap();
        assert_eq!(
            lock.took_over(),
            Some("pid 4194303, started 2026-01-01T00:00:00Z")
        );
        let now = fs::read_to_string(lock.path()).unwrap();
        assert!(
            now.starts_with(&format!("pid {}\n", std::process::id())),
            "{now}"
        );
    }
}
