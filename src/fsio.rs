//! Safe writes: every file flarecast produces is written under a temporary name in its
//! destination folder and renamed into place, so a reader, a concurrent run or a killed
//! process never sees half a file. This is the crate's one way of writing an output.
//!
//! Temporary names are `.{name}.{random}.part`: hidden, unique per writer (two processes
//! writing the same output never share one), and never ending in a result's extension, so
//! nothing that lists `.jpg`/`.csv`/`.pth` files takes one for a result. A writer that is
//! killed leaves such a file behind; [`is_temp_name`] recognises it and
//! [`remove_stale_temps`] cleans a folder of them.

use anyhow::{Context, Result};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Suffix of in-progress files.
pub const TEMP_SUFFIX: &str = ".part";

/// An output file being written. It becomes visible at its path only on [`commit`];
/// dropped without a commit (an error, a panic), its temporary file is removed.
///
/// [`commit`]: AtomicFile::commit
pub struct AtomicFile {
    path: PathBuf,
    writer: BufWriter<tempfile::NamedTempFile>,
}

impl AtomicFile {
    /// Starts writing `path`, creating its folder if needed.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = parent_dir(path);
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let name = path
            .file_name()
            .with_context(|| format!("{} has no file name", path.display()))?
            .to_string_lossy();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(TEMP_SUFFIX).rand_bytes(6);
        // The mode of an ordinary new file (umask applies), not tempfile's private 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let tmp = builder
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 16, tmp),
        })
    }

    /// The path the file will have once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and renames the file into place, replacing any file already there.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        let tmp = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", path.display()))?;
        tmp.persist(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| Ok(w.write_all(bytes)?))
}

/// Writes `path` atomically from a closure that streams into the file; nothing appears
/// at `path` if the closure fails.
pub fn write_atomic_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut AtomicFile) -> Result<()>,
{
    let mut file = AtomicFile::create(path)?;
    write(&mut file).with_context(|| format!("cannot write {}", path.display()))?;
    file.commit()
}

/// True for a temporary file that a killed writer left behind.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Removes the temporary files that killed writers left directly in `dir` (not below
/// it); returns how many. A missing folder has none.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && is_temp_name(&entry.file_name().to_string_lossy()) {
            let path = entry.path();
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commit_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.csv");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new contents").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new contents");
        assert_eq!(names(&dir.path().join("sub")), vec!["out.csv"]);
    }

    #[test]
    fn a_failed_writer_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"half")?;
            anyhow::bail!("disk on fire")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("out.csv"), "{err:#}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), vec!["out.csv"]);
    }

    #[test]
    fn an_uncommitted_file_is_invisible_and_recognised_as_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.pth");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"weights").unwrap();
        f.flush().unwrap();
        assert!(!path.exists());
        let listed = names(dir.path());
        assert_eq!(listed.len(), 1);
        assert!(is_temp_name(&listed[0]), "{listed:?}");
        assert!(!listed[0].ends_with(".pth"));
        // A killed process never runs the drop: keep the file to model that leftover.
        let (_, kept) = f.writer.into_inner().unwrap().keep().unwrap();
        assert!(kept.exists());
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn two_writers_of_one_path_never_share_a_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        let mut a = AtomicFile::create(&path).unwrap();
        let mut b = AtomicFile::create(&path).unwrap();
        a.write_all(b"aaaa").unwrap();
        b.write_all(b"bb").unwrap();
        a.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"aaaa");
        b.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"bb");
    }

    #[cfg(unix)]
    #[test]
    fn committed_files_get_ordinary_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jpg");
        write_atomic(&path, b"x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // 0o666 less the umask: at least readable by the group, unlike tempfile's 0600.
        assert_ne!(mode & 0o044, 0, "mode {mode:o}");
    }
}
