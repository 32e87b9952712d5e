//! Writing results so that a reader (or an interrupted run) never sees half a file.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Suffix of in-progress files. With the leading dot they are hidden and never carry a
/// result's extension, so nothing that lists `.jp2`/`.jpg` files can take one for a result.
pub const TEMP_SUFFIX: &str = ".part";

/// Writes `bytes` to `path` through a temporary name in the same folder, then renames.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = path.parent().context("output path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("output file name is not UTF-8")?;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}{TEMP_SUFFIX}", std::process::id()));
    let res = std::fs::write(&tmp, bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename to {}", path.display()))
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// True for a temporary file `write_atomic` leaves behind when the process is killed.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}
