//! `train --resume` against a `last` checkpoint that lies: an epoch counter at or past
//! the run's end (2^64 - 1 included) and weights holding NaN are refused with one line
//! naming the value and the file, before a step is taken and with every file left as it
//! was; and a killed run's temporary files of the fold are removed when the next starts.

use crate::common;

use flarecast::model::weights;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// `train` of the standard CNN for `epochs` on the tiny fold under `root`, into
/// `root/models`.
fn train(root: &Path, epochs: usize, more: &[&str]) -> std::process::Output {
    common::tiny_train(root, &[&["--epochs", &epochs.to_string()], more].concat())
}

fn run_dir(root: &Path) -> PathBuf {
    root.join("models/no_attention")
}

/// The tiny fold in a fresh folder, trained for one epoch: the folder and the run's.
fn trained_one_epoch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    common::assert_success(train(dir.path(), 1, &[]));
    let run = run_dir(dir.path());
    (dir, run)
}

/// Every file of the run's folder and its subfolders (the event files' among them) with
/// its bytes and modification time.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, SystemTime)> {
    let mut v = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if m.is_dir() {
            for (n, bytes, t) in snapshot(&e.path()) {
                v.push((format!("{name}/{n}"), bytes, t));
            }
        } else {
            let bytes = std::fs::read(e.path()).unwrap();
            v.push((name, bytes, m.modified().unwrap()));
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Rewrites `last` with its resume state's epoch set to `epoch` and its tensors passed
/// through `edit`.
fn edit_last(dir: &Path, epoch: Option<u64>, edit: impl Fn(&str, &tch::Tensor)) {
    let path = dir.join("fold1_last.safetensors");
    let (tensors, meta) = weights::read_weights(&path).unwrap();
    let mut meta = meta.unwrap();
    if let Some(epoch) = epoch {
        let training = meta.training.as_mut().unwrap();
        training["resume"]["epoch"] = serde_json::json!(epoch);
    }
    for (name, t) in &tensors {
        edit(name, t);
    }
    weights::save_tensors(&path, &tensors, &meta).unwrap();
}

/// Asserts the failure contract: exit 1, one line, naming each of `names`.
fn refused(out: &std::process::Output, names: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("flarecast: error: "), "{err}");
    for n in names {
        assert!(err.contains(n), "no {n:?} in: {err}");
    }
}

#[test]
fn an_epoch_counter_at_or_past_the_run_is_refused_and_nothing_is_rewritten() {
    let (dir, run) = trained_one_epoch();

    // Recorded epoch 1 of --epochs 1: nothing is left to train.
    let before = snapshot(&run);
    let out = train(dir.path(), 1, &["--resume"]);
    refused(
        &out,
        &[
            "--epochs",
            "fold1_last.safetensors",
            "has trained all 1 epochs of this run",
        ],
    );
    assert_eq!(snapshot(&run), before);

    for epoch in [5, u64::MAX] {
        edit_last(&run, Some(epoch), |_, _| {});
        let before = snapshot(&run);
        let out = train(dir.path(), 3, &["--resume"]);
        refused(
            &out,
            &[
                "--epochs",
                "fold1_last.safetensors",
                &format!("has trained {epoch} epochs, more than the 3 of this run"),
            ],
        );
        assert_eq!(snapshot(&run), before);
    }
}

#[test]
fn weights_holding_nan_in_last_are_refused_naming_the_tensor_and_the_file() {
    let (dir, run) = trained_one_epoch();
    edit_last(&run, None, |name, t| {
        if name == "classify.bias" {
            let _ = t.shallow_clone().fill_(f64::NAN);
        }
    });
    let before = snapshot(&run);
    let out = train(dir.path(), 2, &["--resume"]);
    refused(
        &out,
        &["fold1_last.safetensors", "tensor classify.bias holds 2 NaN"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("diverged"), "{err}");
    assert_eq!(snapshot(&run), before);
}

#[test]
fn a_killed_runs_temporary_files_of_the_fold_are_removed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    let run = run_dir(dir.path());
    std::fs::create_dir_all(&run).unwrap();
    // What a killed run of fold 1 leaves, and what a live run of fold 2 is writing.
    let ours = [
        ".fold1_last.safetensors.Ab12Cd.part",
        ".fold1_history.csv.Xy34Zw.part",
    ];
    let theirs = ".fold2_last.safetensors.Ef56Gh.part";
    for name in ours.iter().chain([&theirs]) {
        std::fs::write(run.join(name), b"half a checkpoint").unwrap();
    }
    common::assert_success(train(dir.path(), 1, &[]));
    for name in ours {
        assert!(!run.join(name).exists(), "{name} is still there");
    }
    assert!(run.join(theirs).exists(), "another fold's file was removed");
}
