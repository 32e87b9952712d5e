//! Which issue times have an image: a converted tree `YYYY/MM/DD/HMI.m....{jpg,png}` or a
//! list of paths such as the reference's `totalfiles_jpg_512.csv`.

use crate::instant::Instant;
use crate::progress::Progress;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

const EXTENSIONS: [&str; 3] = ["jpg", "png", "jpeg"];

/// Images by issue time, each with its instance name (`YYYY/MM/DD/HMI.m....ext`).
#[derive(Debug, Default)]
pub struct Images {
    by_time: BTreeMap<Instant, String>,
    /// Entries that are not instance images (other files, list lines without a time).
    pub ignored: usize,
}

impl Images {
    /// Image names found under `dir` (any depth), keyed by time; JPG wins over PNG.
    pub fn from_tree(dir: &Path, progress: &Progress) -> Result<Images> {
        let bar = progress.spinner("scanning images");
        let mut images = Images::default();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d)
                .with_context(|| format!("reading directory {}", d.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("reading directory {}", d.display()))?;
                let kind = entry
                    .file_type()
                    .with_context(|| format!("reading {}", entry.path().display()))?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else {
                    images.add(&entry.file_name().to_string_lossy());
                    bar.inc(1);
                }
            }
        }
        bar.finish_and_clear();
        Ok(images)
    }

    /// Image names from a list, one path a line, any prefix before `YYYY/MM/DD/`,
    /// optional UTF-8 byte-order mark, CRLF or LF.
    pub fn from_file_list(path: &Path) -> Result<Images> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading file list {}", path.display()))?;
        Ok(Self::from_lines(
            text.trim_start_matches('\u{feff}').lines(),
        ))
    }

    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Images {
        let mut images = Images::default();
        for line in lines {
            let line = line.trim();
            if !line.is_empty() {
                images.add(line);
            }
        }
        images
    }

    fn add(&mut self, path: &str) {
        let parsed = Instant::from_path(path).and_then(|(t, tail)| {
            let ext = tail.rsplit_once('.')?.1.to_ascii_lowercase();
            EXTENSIONS.contains(&ext.as_str()).then_some((t, ext))
        });
        let Some((t, ext)) = parsed else {
            self.ignored += 1;
            return;
        };
        let name = t.relative_path(&ext);
        match self.by_time.get(&t) {
            Some(old) if old.ends_with(".jpg") => {}
            _ => {
                self.by_time.insert(t, name);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }

    /// The instance name of the image at `t`, if there is one.
    pub fn get(&self, t: Instant) -> Option<&str> {
        self.by_time.get(&t).map(String::as_str)
    }

    /// The images from `start` to `end`, both inclusive, in time order.
    pub fn range(&self, start: Instant, end: Instant) -> impl Iterator<Item = (Instant, &str)> {
        self.by_time
            .range(start..=end)
            .map(|(t, n)| (*t, n.as_str()))
    }

    /// The latest image at or before `t`, with its instance name.
    pub fn at_or_before(&self, t: Instant) -> Option<(Instant, &str)> {
        self.by_time
            .range(..=t)
            .next_back()
            .map(|(i, n)| (*i, n.as_str()))
    }

    pub fn first(&self) -> Option<Instant> {
        self.by_time.keys().next().copied()
    }

    pub fn last(&self) -> Option<Instant> {
        self.by_time.keys().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_with_prefixes_and_junk() {
        let im = Images::from_lines([
            "/data/hmi_jpgs_512/2010/12/21/HMI.m2010.12.21_21.00.00.jpg",
            "C:\\x\\2010\\12\\21\\HMI.m2010.12.21_09.00.00.png",
            "HMI.m2010.12.22_00.00.00.jpg",
            "labels_store/totalfiles_jpg_512.csv",
            "2010/12/23/HMI.m2010.12.23_00.00.00.fits",
            "",
        ]);
        assert_eq!(im.len(), 3);
        assert_eq!(im.ignored, 2);
        let t = |s: &str| Instant(crate::instant::parse_time(s).unwrap());
        assert_eq!(
            im.get(t("2010-12-21T21:00:00")),
            Some("2010/12/21/HMI.m2010.12.21_21.00.00.jpg")
        );
        assert_eq!(
            im.get(t("2010-12-21T09:00:00")),
            Some("2010/12/21/HMI.m2010.12.21_09.00.00.png")
        );
        assert_eq!(
            im.get(t("2010-12-22T00:00:00")),
            Some("2010/12/22/HMI.m2010.12.22_00.00.00.jpg")
        );
        assert_eq!(im.first(), Some(t("2010-12-21T09:00:00")));
        assert_eq!(im.last(), Some(t("2010-12-22T00:00:00")));
    }
}
