//! Safe writes: every file flarecast produces is written under a temporary name in its
//! destination folder and renamed into place, so a reader, a concurrent run or a killed
//! process never sees half a file. This is the crate's one way of writing an output.
//!
//! Temporary names are `.{name}.{random}.part`: hidden, unique per writer (two processes
//! writing the same output never share one), and never ending in a result's extension, so
//! nothing that lists `.jpg`/`.csv`/`.pth` files takes one for a result. A writer that is
//! killed leaves such a file behind; [`is_temp_name`] recognises it and
//! [`remove_stale_temps`] cleans a folder of them.
//!
//! A result made of several files is built in a temporary folder ([`AtomicDir`]) that
//! replaces the previous one in a single rename, so a reader sees the whole old set or the
//! whole new set, never some files of each. Files side by side that must appear together
//! are a [`FileSet`]: all written in full before any is renamed into place.
//!
//! [`check_outputs`] refuses a run whose output would replace one of its inputs (or
//! another output), whatever links or spellings lead there.

mod clash;
mod lock;
mod set;

pub use clash::{check_outputs, same_file, Role};
pub use lock::OutputLock;
pub use set::FileSet;

use anyhow::{Context, Result};
use std::fs;
use std::io::{BufWriter, Seek, SeekFrom, Write};
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
        let tmp = with_temp_builder(path, 0o666, |b| b.tempfile_in(dir))?;
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

/// Formats that go back to patch what they wrote (zip directories, PNG) need to seek.
impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.writer.seek(pos)
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

/// An output folder being built. Its files are written under [`AtomicDir::path`], a
/// hidden temporary folder beside the destination; [`AtomicDir::commit`] puts the whole
/// folder in place at once, replacing the previous one. Dropped without a commit, the
/// temporary folder is removed.
pub struct AtomicDir {
    dest: PathBuf,
    staging: tempfile::TempDir,
}

impl AtomicDir {
    /// Starts building the folder `dest`, creating its parent if needed.
    pub fn create(dest: &Path) -> Result<Self> {
        let parent = parent_dir(dest);
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let staging = with_temp_builder(dest, 0o777, |b| b.tempdir_in(parent))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            staging,
        })
    }

    /// Where to write the folder's contents until the commit.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Puts the folder in place in one rename and removes the folder it replaced.
    pub fn commit(self) -> Result<()> {
        let dest = self.dest;
        let staged = self.staging.keep();
        let replaced = swap_into_place(&staged, &dest)
            .with_context(|| format!("cannot move {} to {}", staged.display(), dest.display()));
        match replaced {
            Ok(Some(old)) => remove_tree(&old),
            Ok(None) => Ok(()),
            Err(e) => {
                let _ = fs::remove_dir_all(&staged);
                Err(e)
            }
        }
    }
}

/// Moves the folder `staged` to `dest`. A folder already at `dest` is exchanged with it in
/// one step (it is then at `staged`, returned for removal), so `dest` is never missing or
/// half-replaced.
fn swap_into_place(staged: &Path, dest: &Path) -> std::io::Result<Option<PathBuf>> {
    loop {
        match rename_noreplace(staged, dest) {
            Ok(()) => return Ok(None),
            Err(e) if is_exists(&e) => {}
            Err(e) => return Err(e),
        }
        match exchange(staged, dest) {
            Ok(()) => return Ok(Some(staged.to_path_buf())),
            // Removed between the two calls (by a concurrent writer): try again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
}

fn is_exists(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::AlreadyExists
        || e.kind() == std::io::ErrorKind::DirectoryNotEmpty
}

/// Exchanges the entries `a` and `b` (files, folders or links) atomically.
#[cfg(target_os = "linux")]
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

/// Renames `from` to `to`, failing with `AlreadyExists` where `to` exists.
#[cfg(target_os = "linux")]
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    renameat2(from, to, libc::RENAME_NOREPLACE)
}

#[cfg(target_os = "linux")]
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both paths are NUL-terminated C strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Without an atomic exchange, `b` is briefly missing between the two renames.
#[cfg(not(target_os = "linux"))]
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let aside = a.with_extension("exchange.part");
    fs::rename(b, &aside)?;
    fs::rename(a, b)?;
    fs::rename(&aside, a)
}

#[cfg(not(target_os = "linux"))]
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    fs::rename(from, to)
}

/// Opens a log for appending, creating it and its folder. A log grows while a process
/// runs and is read while it grows, so it is the one output not written atomically.
pub fn open_log(path: &Path) -> Result<fs::File> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Makes `link` a symbolic link to `target` in one rename, whatever was there: a file or
/// link is replaced, a folder is exchanged with the link and then removed. Nothing is
/// done where `link` already points at `target`.
#[cfg(unix)]
pub fn symlink_atomic(target: &Path, link: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let parent = parent_dir(link);
    let tmp = with_temp_builder(link, 0o777, |b| {
        b.make_in(parent, |p| std::os::unix::fs::symlink(target, p))
    })?
    .into_temp_path();
    let is_dir = fs::symlink_metadata(link).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return tmp
            .persist(link)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot replace {}", link.display()));
    }
    exchange(&tmp, link).with_context(|| format!("cannot replace {}", link.display()))?;
    // `tmp` now names the folder that was at `link`.
    let old = tmp
        .keep()
        .with_context(|| format!("cannot replace {}", link.display()))?;
    remove_tree(&old)
}

/// Removes a folder this module displaced, including read-only sub-folders of it (a
/// previous result made read-only is still a previous result).
fn remove_tree(dir: &Path) -> Result<()> {
    if fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    make_dirs_writable(dir);
    fs::remove_dir_all(dir)
        .with_context(|| format!("cannot remove the replaced folder {}", dir.display()))
}

/// Gives the owner write access to `dir` and every folder below it (not following links).
fn make_dirs_writable(dir: &Path) {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&out[i], fs::Permissions::from_mode(0o700));
        }
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
}

/// Calls `make` with a builder of `.{name}.{random}.part` temporaries for `path` whose
/// mode is `mode` less the umask (an ordinary new file or folder, not tempfile's private
/// one).
fn with_temp_builder<R>(
    path: &Path,
    mode: u32,
    make: impl FnOnce(&tempfile::Builder) -> std::io::Result<R>,
) -> Result<R> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?
        .to_string_lossy();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(TEMP_SUFFIX).rand_bytes(6);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(not(unix))]
    let _ = mode;
    let dir = parent_dir(path);
    make(&builder).with_context(|| format!("cannot create a temporary entry in {}", dir.display()))
}

/// True for a temporary file that a killed writer left behind.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Removes the temporary files that killed writers left directly in `dir` (not below
/// it); returns how many. A missing folder has none.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    remove_stale_temps_of(dir, "")
}

/// [`remove_stale_temps`] for the outputs whose names start with `prefix` alone: a run
/// sharing its folder with others (a fold beside the other folds) removes its own.
pub fn remove_stale_temps_of(dir: &Path, prefix: &str) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.get(1..).is_some_and(|n| n.starts_with(prefix));
        if is_file && is_temp_name(&name) && ours {
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
    fn a_runs_own_stale_temporaries_are_removed_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ".fold1_last.safetensors.a1b2c3.part",
            ".fold2_last.safetensors.d4e5f6.part",
            "fold1_final.safetensors",
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_temps_of(dir.path(), "fold1_").unwrap(), 1);
        assert_eq!(
            names(dir.path()),
            [
                ".fold2_last.safetensors.d4e5f6.part",
                "fold1_final.safetensors"
            ]
        );
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
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

    #[test]
    fn a_committed_folder_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("tables");
        for (k, body) in [(0, "old"), (1, "new")] {
            let staged = AtomicDir::create(&dest).unwrap();
            assert!(is_temp_name(
                &staged.path().file_name().unwrap().to_string_lossy()
            ));
            fs::write(staged.path().join("a.csv"), format!("{body} a")).unwrap();
            if k == 0 {
                fs::write(staged.path().join("only_old.csv"), "x").unwrap();
            }
            if k == 1 {
                // Until the commit, readers see the old folder whole.
                assert_eq!(fs::read_to_string(dest.join("a.csv")).unwrap(), "old a");
                assert!(dest.join("only_old.csv").exists());
            }
            staged.commit().unwrap();
        }
        assert_eq!(names(&dest), vec!["a.csv"]);
        assert_eq!(fs::read_to_string(dest.join("a.csv")).unwrap(), "new a");
        assert_eq!(names(dir.path()), vec!["tables"]);
    }

    #[test]
    fn a_dropped_folder_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let staged = AtomicDir::create(&dir.path().join("tables")).unwrap();
        fs::write(staged.path().join("a.csv"), "x").unwrap();
        drop(staged);
        assert!(names(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_replaces_a_file_or_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("set/sub")).unwrap();
        fs::write(dir.path().join("set/a.csv"), "new").unwrap();
        fs::write(dir.path().join("a.csv"), "old").unwrap();
        fs::create_dir_all(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/b.csv"), "old").unwrap();
        symlink_atomic(Path::new("set/a.csv"), &dir.path().join("a.csv")).unwrap();
        symlink_atomic(Path::new("set/sub"), &dir.path().join("sub")).unwrap();
        symlink_atomic(Path::new("set/sub"), &dir.path().join("sub")).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("a.csv")).unwrap(), "new");
        assert_eq!(
            fs::read_link(dir.path().join("sub")).unwrap(),
            Path::new("set/sub")
        );
        assert_eq!(names(dir.path()), vec!["a.csv", "set", "sub"]);
    }
}
