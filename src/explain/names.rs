//! Output names for a list of input images: the file stem where it is unique, otherwise
//! the path relative to the inputs' common folder, so two inputs never share an output.

use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// The longest folder every path lies in (lexically).
fn common_dir(paths: &[&Path]) -> PathBuf {
    let mut common: Vec<Component> = match paths.first().and_then(|p| p.parent()) {
        Some(p) => p.components().collect(),
        None => return PathBuf::new(),
    };
    for p in &paths[1..] {
        let parts: Vec<Component> = p
            .parent()
            .map(|d| d.components().collect())
            .unwrap_or_default();
        let same = common
            .iter()
            .zip(&parts)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(same);
    }
    common.iter().collect()
}

/// One output stem per input, in order: `name` for a unique file name, else the path
/// below the common folder without extension (`a/x`, `b/x`). The same path given twice
/// is an error naming it.
pub fn output_stems(inputs: &[PathBuf]) -> Result<Vec<String>> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for p in inputs {
        *count.entry(stem(p)).or_default() += 1;
    }
    let clashing: Vec<&Path> = inputs
        .iter()
        .filter(|p| count[&stem(p)] > 1)
        .map(|p| p.as_path())
        .collect();
    let base = common_dir(&clashing);
    let mut seen: HashMap<String, &Path> = HashMap::new();
    let mut out = Vec::with_capacity(inputs.len());
    for p in inputs {
        let s = if count[&stem(p)] > 1 {
            let rel = p.strip_prefix(&base).unwrap_or(p).with_extension("");
            let parts: Vec<String> = rel
                .components()
                .filter_map(|c| match c {
                    Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            parts.join("/")
        } else {
            stem(p)
        };
        if let Some(prev) = seen.insert(s.clone(), p) {
            bail!(
                "{} and {} would both write {s}_*: give each image once",
                prev.display(),
                p.display()
            );
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stems(paths: &[&str]) -> Result<Vec<String>> {
        output_stems(&paths.iter().map(PathBuf::from).collect::<Vec<_>>())
    }

    #[test]
    fn unique_names_stay_short_and_clashes_keep_their_folders() {
        assert_eq!(stems(&["d/x.jpg", "e/y.jpg"]).unwrap(), vec!["x", "y"]);
        assert_eq!(
            stems(&["a/x.jpg", "b/x.jpg", "c/z.jpg"]).unwrap(),
            vec!["a/x", "b/x", "z"]
        );
        assert_eq!(
            stems(&["/d/2013/05/x.jpg", "/d/2014/05/x.jpg"]).unwrap(),
            vec!["2013/05/x", "2014/05/x"]
        );
        // x.jpg and x.png differ only in the extension.
        assert_eq!(
            stems(&["a/x.jpg", "a/x.png"]).unwrap_err().to_string(),
            "a/x.jpg and a/x.png would both write x_*: give each image once"
        );
        assert!(stems(&["a/x.jpg", "a/x.jpg"]).is_err());
    }
}
