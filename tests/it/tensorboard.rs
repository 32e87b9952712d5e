//! `train`'s TensorBoard event files, read back by TensorBoard's own reader
//! (`EventAccumulator`, in the torch virtualenv): every epoch value equals the history's,
//! the settings are there as `add_text` writes text, `--tensorboard` picks the folder or
//! turns the files off, and a killed and resumed run shows each step once.

use crate::common;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Reads `dir`'s event files with TensorBoard: each file's events as they are (step, kind,
/// values) and what TensorBoard shows of the folder (scalars and texts per tag, orphans of
/// a restart purged as it does by default). Checks that the settings' summary is the one
/// `torch.utils.tensorboard`'s `add_text` makes of the same text.
const READER: &str = r#"
import glob, json, math, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from torch.utils.tensorboard.summary import text as torch_text

def num(x):
    return None if math.isnan(x) else x

files = []
for path in sorted(glob.glob(os.path.join(DIR, "events.out.tfevents.*"))):
    events = []
    for raw in RawEventFileLoader(path).Load():
        e = event_pb2.Event.FromString(raw)
        kind = e.WhichOneof("what")
        out = {"step": e.step, "kind": kind, "values": {}}
        if kind == "file_version":
            out["version"] = e.file_version
        elif kind == "session_log":
            out["status"] = event_pb2.SessionLog.SessionStatus.Name(e.session_log.status)
        elif kind == "summary":
            for v in e.summary.value:
                if v.HasField("simple_value"):
                    out["values"][v.tag] = num(v.simple_value)
                else:
                    s = v.tensor.string_val[0].decode()
                    same = e.summary == torch_text(v.tag[: -len("/text_summary")], s)
                    out["values"][v.tag] = {"text": s, "as_torch_writes": same}
        events.append(out)
    files.append({"name": os.path.basename(path), "events": events})

acc = EventAccumulator(DIR, size_guidance={"scalars": 0, "tensors": 0})
acc.Reload()
tags = acc.Tags()
shown = {
    "scalars": {t: [[e.step, num(e.value)] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "texts": {
        t: [
            [e.step, e.tensor_proto.string_val[0].decode(), acc.SummaryMetadata(t).plugin_data.plugin_name]
            for e in acc.Tensors(t)
        ]
        for t in tags["tensors"]
    },
}
print(json.dumps({"files": files, "shown": shown}))
"#;

#[derive(Debug)]
struct Board {
    files: Vec<Value>,
    /// What TensorBoard shows: per tag, (step, value) in its order.
    scalars: BTreeMap<String, Vec<(i64, Option<f64>)>>,
    /// Per tag, (step, text, plugin name).
    texts: BTreeMap<String, Vec<(i64, String, String)>>,
}

fn read_board(dir: &Path) -> Board {
    let script = format!(
        "DIR = {}\n{READER}",
        serde_json::to_string(&dir.display().to_string()).unwrap()
    );
    let out: Value = serde_json::from_str(&common::python(&script)).unwrap();
    let scalars = out["shown"]["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, points)| {
            let points = points
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64()))
                .collect();
            (tag.clone(), points)
        })
        .collect();
    let texts = out["shown"]["texts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, items)| {
            let items = items
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let s = |i: usize| t[i].as_str().unwrap().to_string();
                    (t[0].as_i64().unwrap(), s(1), s(2))
                })
                .collect();
            (tag.clone(), items)
        })
        .collect();
    Board {
        files: out["files"].as_array().unwrap().clone(),
        scalars,
        texts,
    }
}

/// `train` of the standard CNN on the tiny fold under `root` into `root/models`, batches
/// of 2: 16 balanced items make 8 optimizer steps an epoch.
fn train_args(root: &Path, epochs: usize, more: &[&str]) -> Vec<String> {
    let mut args = common::tiny_train_args(root, "--no-attention", "models", "2");
    args.extend(["--json".into(), "--epochs".into(), epochs.to_string()]);
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

fn train(args: &[String]) -> Value {
    let out = common::flarecast().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run_dir(root: &Path) -> PathBuf {
    root.join("models/no_attention")
}

fn history(root: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir(root).join("fold1_history.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every number the history records for an epoch (a flag as 1 or 0) but the epoch itself.
fn epoch_numbers(record: &Value) -> BTreeMap<String, f64> {
    record
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.as_str() != "epoch")
        .filter_map(|(name, v)| {
            let x = match v {
                Value::Number(n) => n.as_f64()?,
                Value::Bool(b) => f64::from(u8::from(*b)),
                _ => return None,
            };
            Some((format!("epoch/{name}"), x))
        })
        .collect()
}

/// Each epoch tag shows one value per epoch of the history, at its epoch, equal to the
/// history's value as float32; and there is no other epoch tag.
fn assert_epochs_match_history(board: &Board, history: &[Value]) {
    let mut want: BTreeMap<String, Vec<(i64, Option<f64>)>> = BTreeMap::new();
    for record in history {
        let epoch = record["epoch"].as_i64().unwrap();
        for (tag, x) in epoch_numbers(record) {
            // TensorBoard's scalars are float32.
            want.entry(tag)
                .or_default()
                .push((epoch, Some(f64::from(x as f32))));
        }
    }
    let got: BTreeMap<String, Vec<(i64, Option<f64>)>> = board
        .scalars
        .iter()
        .filter(|(tag, _)| tag.starts_with("epoch/"))
        .map(|(tag, v)| (tag.clone(), v.clone()))
        .collect();
    assert_eq!(got, want);
}

fn steps_of(board: &Board, tag: &str) -> Vec<i64> {
    board.scalars[tag].iter().map(|(s, _)| *s).collect()
}

/// The settings' JSON of a text logged by `train`: a fenced block.
fn settings_json(text: &str) -> Value {
    let body = text
        .strip_prefix("```json\n")
        .and_then(|t| t.strip_suffix("\n```"))
        .unwrap_or_else(|| panic!("not a fenced JSON block: {text}"));
    serde_json::from_str(body).unwrap()
}

/// Every (tag, step) of the scalar and text summaries of `files`' events, counted.
fn logged(files: &[Value]) -> BTreeMap<(String, i64), usize> {
    let mut n = BTreeMap::new();
    for f in files {
        for e in f["events"].as_array().unwrap() {
            for tag in e["values"].as_object().unwrap().keys() {
                *n.entry((tag.clone(), e["step"].as_i64().unwrap()))
                    .or_insert(0) += 1;
            }
        }
    }
    n
}

#[test]
fn epoch_values_equal_the_history_and_the_settings_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    train(&train_args(dir.path(), 2, &[]));
    let tb = run_dir(dir.path()).join("fold1_tb");
    let board = read_board(&tb);

    assert_eq!(board.files.len(), 1, "{:?}", board.files);
    let file = &board.files[0];
    assert!(
        file["name"]
            .as_str()
            .unwrap()
            .starts_with("events.out.tfevents."),
        "{file}"
    );
    let events = file["events"].as_array().unwrap();
    assert_eq!(events[0]["kind"], "file_version");
    assert_eq!(events[0]["version"], "brain.Event:2");
    assert_eq!(events[1]["kind"], "session_log");
    assert_eq!(events[1]["status"], "START");
    assert_eq!(events[1]["step"], 0);

    let history = history(dir.path());
    assert_eq!(history.len(), 2);
    assert_epochs_match_history(&board, &history);
    for tag in ["epoch/train_loss", "epoch/val_loss", "epoch/val_tss"] {
        assert!(board.scalars.contains_key(tag), "no {tag}");
    }

    // 8 steps an epoch: every tenth step and the last of each epoch.
    for tag in ["step/train_loss", "step/lr"] {
        assert_eq!(steps_of(&board, tag), [8, 10, 16], "{tag}");
    }
    for (_, loss) in &board.scalars["step/train_loss"] {
        assert!(loss.is_some_and(|l| l.is_finite() && l > 0.0), "{loss:?}");
    }
    for (_, lr) in &board.scalars["step/lr"] {
        assert_eq!(*lr, Some(f64::from(0.001f32)));
    }

    let texts = &board.texts["settings/text_summary"];
    assert_eq!(texts.len(), 1, "{texts:?}");
    let (step, text, plugin) = &texts[0];
    assert_eq!((*step, plugin.as_str()), (0, "text"));
    let settings = settings_json(text);
    assert_eq!(settings["fold"], 1);
    assert_eq!(settings["epochs"], 2);
    assert_eq!(settings["batch_size"], 2);
    // The settings the checkpoints record.
    let last = run_dir(dir.path()).join("fold1_last.safetensors");
    let (_, meta) = flarecast::model::weights::read_weights(&last).unwrap();
    assert_eq!(settings, meta.unwrap().training.unwrap()["config"]);
    let raw = &events
        .iter()
        .find(|e| e["values"].get("settings/text_summary").is_some())
        .unwrap()["values"]["settings/text_summary"];
    assert_eq!(raw["as_torch_writes"], true, "{raw}");
}

#[test]
fn a_killed_and_resumed_run_logs_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    let tb = dir.path().join("board");
    let tb_flag = tb.display().to_string();
    let args = train_args(dir.path(), 2, &["--tensorboard", &tb_flag]);

    // Killed as soon as epoch 1 has been reported, then resumed.
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("flarecast"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        if line.unwrap().starts_with("epoch 1/2") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run = run_dir(dir.path());
    assert!(
        !run.join("fold1_final.safetensors").exists(),
        "the run finished before it was killed"
    );
    let mut resume = args.clone();
    resume.push("--resume".into());
    let summary = train(&resume);
    assert_eq!(summary["resumed_from_epoch"], 1);
    assert!(!run.join("fold1_tb").exists(), "--tensorboard was not used");

    let board = read_board(&tb);
    assert_eq!(board.files.len(), 2, "{:?}", board.files);
    // The files as written: each (tag, step) once, the resumed run's after the
    // checkpoint's 8 steps (its settings at the first step it takes, 9).
    let counts = logged(&board.files);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let resumed = &board.files[1]["events"];
    assert_eq!(resumed[1]["kind"], "session_log");
    assert_eq!(resumed[1]["step"], 9);
    let resumed_tags: BTreeSet<(String, i64)> = logged(&board.files[1..]).into_keys().collect();
    for (tag, step) in &resumed_tags {
        let first = if tag.starts_with("epoch/") { 2 } else { 9 };
        assert!(*step >= first, "the resumed run logged {tag} at {step}");
    }

    // What TensorBoard shows: each step once, both epochs equal to the history's.
    for (tag, points) in &board.scalars {
        let steps: Vec<i64> = points.iter().map(|p| p.0).collect();
        let want: &[i64] = if tag.starts_with("epoch/") {
            &[1, 2]
        } else {
            &[8, 10, 16]
        };
        assert_eq!(steps, want, "{tag}");
    }
    assert_epochs_match_history(&board, &history(dir.path()));
    let texts = &board.texts["settings/text_summary"];
    let steps: Vec<i64> = texts.iter().map(|t| t.0).collect();
    assert_eq!(steps, [0, 9]);
    assert!(texts.iter().all(|t| settings_json(&t.1)["epochs"] == 2));
}

#[test]
fn tensorboard_none_writes_no_event_file() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    train(&train_args(dir.path(), 1, &["--tensorboard", "none"]));
    let run = run_dir(dir.path());
    assert!(run.join("fold1_last.safetensors").exists());
    let mut left = vec![dir.path().to_path_buf()];
    while let Some(d) = left.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains("tfevents") && name != "fold1_tb" && name != "none",
                "{}",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                left.push(e.path());
            }
        }
    }
}
