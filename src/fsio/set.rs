//! Files that appear together (a forecast's files and the index line naming them): each
//! is written in full under its temporary name first, and only then are all renamed into
//! place, in the order given. An error while writing any of them (a full disk) leaves
//! none; a rename that fails takes back the ones already made.

use super::AtomicFile;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Default)]
pub struct FileSet {
    staged: Vec<AtomicFile>,
}

impl FileSet {
    /// Writes `bytes` to a temporary file for `path`, to the disk (not a buffer), so that
    /// a full disk fails here rather than at the commit.
    pub fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut file = AtomicFile::create(path)?;
        file.write_all(bytes)
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.staged.push(file);
        Ok(())
    }

    /// Renames every file into place; returns their paths. On an error, the files this
    /// set renamed are removed and those it had not reached are never seen.
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        let mut done = Vec::with_capacity(self.staged.len());
        for file in self.staged {
            let path = file.path().to_path_buf();
            if let Err(e) = file.commit() {
                for p in &done {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
            done.push(path);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_appears_before_the_commit_and_a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = FileSet::default();
        set.write(&dir.path().join("a.json"), b"a").unwrap();
        set.write(&dir.path().join("b.txt"), b"b").unwrap();
        assert!(names(dir.path())
            .iter()
            .all(|n| super::super::is_temp_name(n)));
        let done = set.commit().unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(names(dir.path()), ["a.json", "b.txt"]);

        let mut set = FileSet::default();
        set.write(&dir.path().join("c.json"), b"c").unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        // No folder can be made under a file: the set fails and its first file goes too.
        assert!(set.write(&dir.path().join("file/d.txt"), b"d").is_err());
        drop(set);
        assert_eq!(names(dir.path()), ["a.json", "b.txt", "file"]);
    }

    #[test]
    fn a_failed_rename_takes_back_the_files_already_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = FileSet::default();
        set.write(&dir.path().join("a.json"), b"a").unwrap();
        set.write(&dir.path().join("index.jsonl"), b"i").unwrap();
        // A folder where the last file goes: its rename fails.
        std::fs::create_dir(dir.path().join("index.jsonl")).unwrap();
        std::fs::write(dir.path().join("index.jsonl/x"), "").unwrap();
        assert!(set.commit().is_err());
        assert_eq!(names(dir.path()), ["index.jsonl"]);
    }
}
