//! `flarecast calibrate`: a map fitted on a prediction file into a new weights file, which
//! `predict` then applies beside the raw probability; too few events are refused.

use crate::common;

use serde_json::Value;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn brier(probs: &[f64], targets: &[bool]) -> f64 {
    probs
        .iter()
        .zip(targets)
        .map(|(p, &t)| (p - f64::from(u8::from(t))).powi(2))
        .sum::<f64>()
        / probs.len() as f64
}

fn predict_json(model: &Path) -> Value {
    let out = common::run_ok(&[
        "predict",
        "--json",
        "--device",
        "cpu",
        "--model",
        s(model),
        s(&common::magnetogram_jpg()),
    ]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn platt_and_isotonic_maps_lower_the_brier_score_and_predict_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("held_out.csv");
    let (probs, targets) = common::overconfident_predictions(&csv);
    let model = common::golden().join("noattn.pth");
    let before = std::fs::read(&model).unwrap();
    let rate = targets.iter().filter(|&&t| t).count() as f64 / targets.len() as f64;
    let raw_brier = brier(&probs, &targets);
    let raw = predict_json(&model);
    for method in ["platt", "isotonic"] {
        let out = d.join(format!("noattn_{method}.safetensors"));
        let v = common::calibrate(&model, &csv, &out, method);
        assert_eq!(v["calibration"]["method"], method);
        assert_eq!(v["calibration"]["instances"], 200);
        assert_eq!(v["calibration"]["fitted_on"], "held_out.csv");
        assert_eq!(
            v["calibration"]["events"],
            targets.iter().filter(|&&t| t).count()
        );
        let (rb, cb) = (
            v["raw"]["brier"].as_f64().unwrap(),
            v["calibrated"]["brier"].as_f64().unwrap(),
        );
        assert!((rb - raw_brier).abs() < 1e-12, "{rb} vs {raw_brier}");
        let raw_bss = 1.0 - raw_brier / (rate * (1.0 - rate));
        assert!((v["raw"]["bss"].as_f64().unwrap() - raw_bss).abs() < 1e-12);
        assert!(
            raw_bss < 0.0,
            "the file is over-confident: raw BSS {raw_bss}"
        );
        assert!(
            cb < rb && v["calibrated"]["bss"].as_f64().unwrap() > 0.0,
            "{v}"
        );
        assert_eq!(v["raw"]["reliability"].as_array().unwrap().len(), 10);
        let plot = std::fs::read(v["plot"].as_str().unwrap()).unwrap();
        assert_eq!(&plot[..8], b"\x89PNG\r\n\x1a\n");

        // predict: the raw probability as before, and the map applied to it.
        let p = predict_json(&out);
        assert_eq!(p["flare_prob"], raw["flare_prob"]);
        let x = raw["flare_prob"].as_f64().unwrap();
        let cal = &v["calibration"];
        let want = if method == "platt" {
            let (a, b) = (cal["a"].as_f64().unwrap(), cal["b"].as_f64().unwrap());
            let z = (x.clamp(1e-7, 1.0 - 1e-7) / (1.0 - x.clamp(1e-7, 1.0 - 1e-7))).ln();
            1.0 / (1.0 + (-(a * z + b)).exp())
        } else {
            let xs: Vec<f64> = cal["x"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let ys: Vec<f64> = cal["y"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let k = xs.partition_point(|&v| v <= x);
            if k == 0 {
                ys[0]
            } else if k == xs.len() {
                ys[k - 1]
            } else {
                ys[k - 1] + (ys[k] - ys[k - 1]) * (x - xs[k - 1]) / (xs[k] - xs[k - 1])
            }
        };
        let got = p["calibrated_prob"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{method}: {got} vs {want}");
    }
    // The original is untouched, and the uncalibrated model reports no calibrated value.
    assert_eq!(std::fs::read(&model).unwrap(), before);
    assert!(raw.get("calibrated_prob").is_none(), "{raw}");
}

#[test]
fn too_few_events_or_overwriting_the_model_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("few.csv");
    let mut text = String::from("timestamp,flare_prob,target\n");
    for i in 0..100 {
        text.push_str(&format!("i{i},0.7,{}\n", u8::from(i < 9)));
    }
    std::fs::write(&csv, text).unwrap();
    let model = common::golden().join("noattn.pth");
    let out = d.join("cal.safetensors");
    let run = |args: &[&str]| {
        let o = common::flarecast().args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        "calibrate",
        "--model",
        s(&model),
        "--predictions",
        s(&csv),
        "--out",
        s(&out),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("few.csv has 9 flaring and 91 non-flaring instances")
            && err.contains("at least 10 of each"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 1, "only the CSV");

    // The calibrated model never replaces the model.
    let copy = d.join("m.safetensors");
    common::run_ok(&["convert-weights", s(&model), s(&copy)]);
    let good = d.join("good.csv");
    common::overconfident_predictions(&good);
    let before = std::fs::read(&copy).unwrap();
    let (code, err) = run(&[
        "calibrate",
        "--model",
        s(&copy),
        "--predictions",
        s(&good),
        "--out",
        s(&copy),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--out") && err.contains("is the same file as the model"),
        "{err}"
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}

#[test]
fn a_weights_file_with_a_broken_calibration_is_refused_naming_it() {
    use flarecast::calibration::{map::Map, Calibration};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    let (tensors, _) =
        flarecast::model::weights::read_weights(&common::golden().join("noattn.pth")).unwrap();
    let mut meta =
        flarecast::model::ModelMeta::new(flarecast::model::Arch::from_attention(false), 256);
    meta.calibration = Some(Calibration {
        map: Map::Isotonic {
            x: vec![0.1, 0.5],
            y: vec![0.9, 0.2],
        },
        fitted_on: "x.csv".into(),
        instances: 100,
        events: 20,
    });
    flarecast::model::weights::save_tensors(&path, &tensors, &meta).unwrap();
    let o = common::flarecast()
        .args(["predict", "--device", "cpu", "--model", s(&path)])
        .arg(common::magnetogram_jpg())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.safetensors") && err.contains("not non-decreasing"),
        "{err}"
    );
}

/// Every output of `calibrate` (the calibrated model, the plot) is checked against every
/// input (the model, the predictions) and against the other output, also through a
/// symbolic or hard link: a clash is refused naming both paths, and nothing is written.
#[test]
fn an_output_naming_an_input_or_the_other_output_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("m.safetensors");
    common::run_ok(&[
        "convert-weights",
        s(&common::golden().join("noattn.pth")),
        s(&model),
    ]);
    let csv = d.join("held_out.csv");
    common::overconfident_predictions(&csv);
    let link = d.join("link.safetensors");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let hard = d.join("hard.png");
    std::fs::hard_link(&model, &hard).unwrap();
    let csv_link = d.join("csv.png");
    std::os::unix::fs::symlink(&csv, &csv_link).unwrap();
    let out = d.join("cal.safetensors");
    let png = d.join("p.png");
    let run = |model: &Path, out: &Path, plot: &Path| {
        common::flarecast()
            .args(["calibrate", "--model", s(model), "--predictions", s(&csv)])
            .args(["--out", s(out), "--plot", s(plot)])
            .output()
            .unwrap()
    };
    for (m, o, p, flag, named) in [
        // --plot onto an input.
        (&model, &out, &model, "--plot", [&model, &model]),
        (&model, &out, &link, "--plot", [&link, &model]),
        (&model, &out, &hard, "--plot", [&hard, &model]),
        (&model, &out, &csv, "--plot", [&csv, &csv]),
        (&model, &out, &csv_link, "--plot", [&csv_link, &csv]),
        // --out onto the model, through a link.
        (&model, &link, &png, "--out", [&link, &model]),
        (&link, &model, &png, "--out", [&model, &link]),
        // --plot onto --out.
        (&model, &out, &out, "--plot", [&out, &out]),
    ] {
        let before = common::tree::listing(d);
        let o = run(m, o, p);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(flag) && named.iter().all(|n| err.contains(s(n))),
            "{err}"
        );
        assert_eq!(common::tree::listing(d), before, "{err}");
    }
    // Apart, they are written.
    let o = run(&model, &out, &png);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A prediction file holds one row per instance. Two instances repeated ten times each
/// (ten "flaring" and ten "non-flaring" rows) are refused naming the first repeated line,
/// never fitted as twenty instances; nothing is written.
#[test]
fn repeated_rows_are_refused_naming_the_first_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("repeated.csv");
    let mut text = String::from("timestamp,flare_prob,target\n");
    for _ in 0..10 {
        text.push_str("2014/03/02/HMI.m2014.03.02_00.00.00.jpg,0.8,1\n");
        text.push_str("2014/03/02/HMI.m2014.03.02_01.00.00.jpg,0.3,0\n");
    }
    std::fs::write(&csv, text).unwrap();
    let before = common::tree::listing(d);
    let o = common::flarecast()
        .args(["calibrate", "--model"])
        .arg(common::golden().join("noattn.pth"))
        .args([
            "--predictions",
            s(&csv),
            "--out",
            s(&d.join("cal.safetensors")),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}:4", s(&csv))) && err.contains("line 2"),
        "{err}"
    );
    assert_eq!(common::tree::listing(d), before);
}
