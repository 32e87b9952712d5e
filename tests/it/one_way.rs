//! One way: every command that runs a network (predict, evaluate --model, forecast
//! --image, explain, attention), with its default flags, gives the same probability for
//! the same file and weights, and that probability is the reference PyTorch network's
//! (golden meta.json) to 1e-5: on the golden preprocessed inputs (.npy) and on the real
//! magnetogram's JPG and its JP2, read the way training images were made.
//!
//! The commands run on the CPU (CUDA hidden from them): the reference's numbers are the
//! CPU's float32 ones, and default flags are what is under test.

use crate::common;

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Runs flarecast with CUDA hidden and returns stdout; a failure fails the test.
fn run(args: &[&str]) -> String {
    let out = common::flarecast()
        .env("CUDA_VISIBLE_DEVICES", "")
        .args(args)
        .output()
        .expect("run flarecast");
    assert!(
        out.status.success(),
        "flarecast {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

fn json_lines(args: &[&str]) -> Vec<Value> {
    run(args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: {e}: {l}")))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The one probability a JSON-lines command gives for a one-instance input.
fn only_prob(rows: &[Value], key: &str, what: &str) -> f64 {
    assert_eq!(rows.len(), 1, "{what}: {rows:?}");
    rows[0][key]
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {rows:?}"))
}

/// P(FL) of `input` by `model` from each command, with default flags, by name.
fn every_command(model: &Path, input: &Path, work: &Path) -> Vec<(&'static str, f64)> {
    let (m, i) = (s(model), s(input));
    let mut got = Vec::new();
    let predict = json_lines(&["predict", "--json", "--model", m, i]);
    got.push(("predict", only_prob(&predict, "flare_prob", "predict")));
    let forecast: Value = serde_json::from_str(&run(&[
        "forecast",
        "--json",
        "--model",
        m,
        "--image",
        i,
        "--at",
        "2022-08-02T11:00:00",
    ]))
    .expect("forecast --json prints one object");
    got.push(("forecast", forecast["probability"].as_f64().unwrap()));
    let maps = work.join("explain");
    let explain = json_lines(&["explain", "--json", "--model", m, "--out", s(&maps), i]);
    got.push(("explain", only_prob(&explain, "flare_prob", "explain")));
    let maps = work.join("attention");
    let attention = json_lines(&["attention", "--json", "--model", m, "--out", s(&maps), i]);
    got.push((
        "attention",
        only_prob(&attention, "flare_prob", "attention"),
    ));
    if input.extension().is_none_or(|e| e != "npy") {
        got.push(("evaluate --model", evaluate(model, input, work)));
    }
    got
}

/// `evaluate --model` on a one-instance validation split holding `image`: the
/// probability it writes for it.
fn evaluate(model: &Path, image: &Path, work: &Path) -> f64 {
    let ext = image.extension().unwrap().to_str().unwrap();
    let name = format!("2022/08/02/HMI.m2022.08.02_10.47.53.{ext}");
    let images = work.join("tree");
    std::fs::create_dir_all(images.join("2022/08/02")).unwrap();
    std::fs::copy(image, images.join(&name)).unwrap();
    let labels = work.join("labels/simplified_data_labels");
    std::fs::create_dir_all(&labels).unwrap();
    std::fs::write(
        labels.join("Fold1_val.csv"),
        format!("label,goes_class\n{name},1\n"),
    )
    .unwrap();
    let out = work.join("eval");
    let report: Value = serde_json::from_str(&run(&[
        "evaluate",
        "--json",
        "--model",
        s(model),
        "--fold",
        "1",
        "--labels",
        s(&work.join("labels")),
        "--images",
        s(&images),
        "--out",
        s(&out),
    ]))
    .expect("evaluate --json prints one object");
    assert_eq!(report["files"][0]["n"], 1, "{report}");
    let res = std::fs::read_to_string(out.join("fold1_res.csv")).unwrap();
    let row = res.lines().nth(1).expect("one row");
    row.split(',').nth(1).unwrap().parse().unwrap()
}

/// Asserts every command gave `want` within `tol`, and all gave one probability.
fn assert_one_way(what: &str, got: &[(&str, f64)], want: f64, tol: f64) {
    for (cmd, p) in got {
        assert!(
            (p - want).abs() <= tol,
            "{what}: {cmd} gives {p}, the reference {want} (|diff| {:e} > {tol:e}); all: {got:?}",
            (p - want).abs()
        );
    }
    let (lo, hi) = got.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, p)| {
        (lo.min(*p), hi.max(*p))
    });
    assert!(hi - lo <= 1e-6, "{what}: the commands disagree: {got:?}");
}

#[test]
fn every_command_gives_the_reference_probability_for_the_golden_arrays() {
    for net in ["attn", "noattn"] {
        let input = common::golden_input(net);
        let model = common::golden().join(format!("{net}.pth"));
        for row in 0..3usize {
            let dir = tempfile::tempdir().unwrap();
            // The name carries an observation time, which `forecast` needs.
            let npy = dir
                .path()
                .join(format!("HMI.m2022.08.02_10.47.53_row{row}.npy"));
            common::write_npy(&npy, &input.get(row as i64));
            let got = every_command(&model, &npy, dir.path());
            assert_eq!(got.len(), 4);
            let want = common::golden_prob(net, row);
            assert_one_way(&format!("{net} row {row}"), &got, want, 1e-5);
        }
    }
}

#[test]
fn every_command_gives_the_reference_probability_for_the_real_jpg() {
    let model = common::golden().join("attn.pth");
    let dir = tempfile::tempdir().unwrap();
    let got = every_command(&model, &common::magnetogram_jpg(), dir.path());
    assert_eq!(got.len(), 5);
    assert_one_way("real JPG", &got, common::golden_prob("attn", 0), 1e-5);
}

#[test]
fn every_command_gives_one_probability_for_the_real_jp2() {
    let model = common::golden().join("attn.pth");
    let dir = tempfile::tempdir().unwrap();
    let jp2: PathBuf = common::magnetogram_jp2();
    let got = every_command(&model, &jp2, dir.path());
    assert_eq!(got.len(), 5);
    // The JP2 becomes its training JPG as `convert` makes it (decode, INTER_AREA to 512,
    // libjpeg's quality-95 encoding: the reference's JPG byte for byte), so the
    // probability is the reference's.
    assert_one_way("real JP2", &got, common::golden_prob("attn", 0), 1e-5);
}
