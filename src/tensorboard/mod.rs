//! TensorBoard event files, as TensorBoard reads them (`tensorboard --logdir`) and W&B
//! imports them (`wandb sync --sync-tensorboard`): `proto` holds tensorboard's messages,
//! `record` the TFRecord framing, `writer` one event file, `run_log` what a training run
//! logs into one.

mod proto;
mod record;
mod run_log;
mod writer;

pub use run_log::{RunLog, STEP_EVERY};
pub use writer::EventWriter;

use std::path::PathBuf;

/// Where a run writes its event files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Destination {
    /// The run's own folder for them, beside its other files.
    #[default]
    Beside,
    /// No event files.
    Off,
    Folder(PathBuf),
}

impl Destination {
    /// A setting's spelling: `none` for no files (`./none` is a folder of that name),
    /// anything else a folder.
    pub fn parse(s: &str) -> Result<Destination, String> {
        match s {
            "" => Err("give a folder, or none for no event files".into()),
            "none" => Ok(Destination::Off),
            _ => Ok(Destination::Folder(s.into())),
        }
    }

    /// The folder, `beside` giving the run's own; None when off.
    pub fn folder(&self, beside: impl FnOnce() -> PathBuf) -> Option<PathBuf> {
        match self {
            Destination::Beside => Some(beside()),
            Destination::Off => None,
            Destination::Folder(dir) => Some(dir.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_turns_the_files_off_and_anything_else_is_a_folder() {
        assert_eq!(Destination::parse("none"), Ok(Destination::Off));
        assert_eq!(
            Destination::parse("./none"),
            Ok(Destination::Folder("./none".into()))
        );
        assert!(Destination::parse("").is_err());
        let beside = || PathBuf::from("run/fold1_tb");
        assert_eq!(Destination::Beside.folder(beside), Some(beside()));
        assert_eq!(Destination::Off.folder(beside), None);
        assert_eq!(
            Destination::Folder("tb".into()).folder(beside),
            Some("tb".into())
        );
    }
}
