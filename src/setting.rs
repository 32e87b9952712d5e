//! A setting of a run that the library refuses. The error names the setting by its
//! config field (`im_size`), so a front end can add its own name for it (a flag, say).
//! Counts and durations are refused this way by the ranges of `crate::bounded`.

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

/// Refuses a `setting` that is not a probability in [0, 1] (NaN included), naming it.
pub fn check_probability(setting: &'static str, value: f64) -> anyhow::Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(bad(
            setting,
            format!("{value} is not a probability in [0, 1]"),
        ))
    }
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

    #[test]
    fn probabilities_are_checked_with_the_value_named() {
        assert!(check_probability("threshold", 0.0).is_ok());
        assert!(check_probability("threshold", 1.0).is_ok());
        for v in [f64::NAN, 5.0, -0.1] {
            let err = check_probability("threshold", v).unwrap_err();
            assert_eq!(find(&err).map(|b| b.setting), Some("threshold"));
            assert_eq!(
                err.to_string(),
                format!("{v} is not a probability in [0, 1]")
            );
        }
    }
}
