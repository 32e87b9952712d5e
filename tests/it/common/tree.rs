//! What a folder holds, to show that a refused run changed nothing on disk.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every entry under `dir` (links not followed) by its path relative to `dir`: a folder,
/// a link and its target, or a file's size, modification time and a hash of its bytes.
/// Empty when `dir` does not exist.
pub fn listing(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            walk(root, &path, out);
            "folder".to_string()
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&path).unwrap().hash(&mut h);
            format!(
                "{} bytes, modified {}.{:09}, hash {:016x}",
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                h.finish()
            )
        };
        out.insert(rel, what);
    }
}
