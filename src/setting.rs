//! A setting of a run that the library refuses. The error names the setting by its
//! config field (`im_size`), so a front end can add its own name for it (a flag, say).

use std::fmt;

#[derive(Debug)]
pub struct BadSetting {
    /// The config field the value came from, e.g. `im_size`.
    pub setting: &'static str,
    pub message: String,
}

impl fmt::Display for BadSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BadSetting {}

/// The error for a refused value of `setting`.
pub fn bad(setting: &'static str, message: impl Into<String>) -> anyhow::Error {
    BadSetting {
        setting,
        message: message.into(),
    }
    .into()
}

/// The refused setting behind `err`, if one is anywhere in its chain.
pub fn find(err: &anyhow::Error) -> Option<&BadSetting> {
    err.chain().find_map(|e| e.downcast_ref::<BadSetting>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_setting_is_found_under_contexts_and_reads_as_its_message() {
        let err = bad("batch_size", "batch size must be at least 1")
            .context("validation split")
            .context("fold 1");
        assert_eq!(find(&err).map(|b| b.setting), Some("batch_size"));
        assert_eq!(
            format!("{err:#}"),
            "fold 1: validation split: batch size must be at least 1"
        );
        assert!(find(&anyhow::anyhow!("image size 16 is outside 16..=8192")).is_none());
    }
}
