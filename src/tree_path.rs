//! Paths read from files (a label table's rows, an instance list, a forecast index) are
//! relative to a tree (the image folder, the forecast folder) and must stay inside it: a
//! table from a stranger must not make flarecast read `../../../../etc/passwd`.

use anyhow::{bail, Result};
use std::path::{Component, Path};

/// Checks that `rel` names something inside the tree it is relative to: not absolute,
/// and no `..` that climbs above the tree's root (`a/../b` stays inside). The check is
/// on the text alone; links inside the tree are the tree owner's business.
pub fn inside(rel: &str) -> Result<&Path> {
    let path = Path::new(rel);
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                bail!("path {rel:?} is absolute; it must be relative to its folder")
            }
            Component::ParentDir if depth == 0 => {
                bail!("path {rel:?} leaves its folder (through `..`)")
            }
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            Component::Normal(_) => depth += 1,
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::inside;

    #[test]
    fn paths_that_leave_their_tree_are_refused() {
        for ok in [
            "2014/03/02/HMI.m2014.03.02_05.00.00.jpg",
            "./a.jpg",
            "a/../b.jpg",
            "a/b/../../c",
        ] {
            assert!(inside(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("../../../../etc/passwd", "leaves its folder"),
            ("a/../../b", "leaves its folder"),
            ("./..", "leaves its folder"),
            ("/etc/passwd", "is absolute"),
        ] {
            let e = inside(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
        }
    }
}
