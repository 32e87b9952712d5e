//! An output must never replace one of the run's inputs, nor another of its outputs.
//! Paths are compared as the files they name: through links, `..` and hard links, not as
//! text.

use crate::setting;
use anyhow::Result;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `p` absolute, with the links of its folder resolved (and its own, when it exists).
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), p.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// Whether `a` and `b` name one file: the same inode where both exist, else the same
/// resolved path.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => resolved(a) == resolved(b),
    }
}

/// A path a run reads or writes, and what it is ("the model").
pub struct Role<'a> {
    pub what: &'a str,
    pub path: &'a Path,
}

/// Refuses an output (the refused setting, and its role) that is one of the inputs or
/// an output before it, naming both paths.
pub fn check_outputs(outputs: &[(&'static str, Role)], inputs: &[Role]) -> Result<()> {
    for (k, (setting, out)) in outputs.iter().enumerate() {
        let earlier = outputs[..k].iter().map(|(_, r)| r);
        if let Some(other) = inputs
            .iter()
            .chain(earlier)
            .find(|r| same_file(out.path, r.path))
        {
            return Err(setting::bad(
                setting,
                format!(
                    "{} ({}) is the same file as {} {}: an output never replaces an input or another output",
                    out.path.display(),
                    out.what,
                    other.what,
                    other.path.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_parent_folders_name_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let model = d.join("m.safetensors");
        std::fs::write(&model, b"x").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::os::unix::fs::symlink(&model, d.join("link")).unwrap();
        std::fs::hard_link(&model, d.join("hard")).unwrap();
        std::os::unix::fs::symlink(d, d.join("sub/up")).unwrap();
        for same in [
            "link",
            "hard",
            "sub/../m.safetensors",
            "sub/up/m.safetensors",
        ] {
            assert!(same_file(&d.join(same), &model), "{same}");
        }
        // Outputs that do not exist yet.
        assert!(same_file(&d.join("sub/up/new.png"), &d.join("new.png")));
        assert!(!same_file(&d.join("new.png"), &model));
        let err = check_outputs(
            &[
                (
                    "out",
                    Role {
                        what: "the calibrated model",
                        path: &d.join("new.safetensors"),
                    },
                ),
                (
                    "plot",
                    Role {
                        what: "the plot",
                        path: &d.join("sub/up/new.safetensors"),
                    },
                ),
            ],
            &[Role {
                what: "the model",
                path: &model,
            }],
        )
        .unwrap_err();
        assert_eq!(setting::find(&err).unwrap().setting, "plot");
        assert!(err.to_string().contains("the calibrated model"), "{err}");
    }
}
