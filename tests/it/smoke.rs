//! The README's CI smoke recipe, driving the real binary: synthesise eight days, label,
//! train one epoch, evaluate, predict; `predict` agrees with `evaluate` on the same model.

use crate::common;

use std::path::Path;

fn run(dir: &Path, args: &[&str]) -> String {
    let out = common::flarecast()
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "flarecast {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ci_smoke_recipe_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    run(
        d,
        &[
            "synth",
            "--out",
            "a",
            "--start",
            "2014-03-28T00:00:00",
            "--days",
            "8",
            "--cadence",
            "6h",
            "--size",
            "192",
            "--seed",
            "1",
        ],
    );
    run(
        d,
        &[
            "label",
            "--catalog",
            "a/catalog.csv",
            "--images",
            "a/images",
            "--out",
            "l",
            "--start",
            "2014-03-28T00:00:00",
            "--end",
            "2014-04-04T18:00:00",
        ],
    );
    // Fold 1 validates on the four March days and trains on the four April days.
    let val = common::csv_rows(&d.join("l/simplified_data_labels/Fold1_val.csv"));
    let train = common::csv_rows(&d.join("l/simplified_data_labels/Fold1_train.csv"));
    assert_eq!((val.len(), train.len()), (16, 16));
    assert_eq!(val.iter().filter(|r| r[1] == "1").count(), 4);
    assert_eq!(train.iter().filter(|r| r[1] == "1").count(), 8);

    let summary = run(
        d,
        &[
            "train",
            "--fold",
            "1",
            "--attention",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--im-size",
            "192",
            "--device",
            "cpu",
            "--precision",
            "f32",
            "--images",
            "a/images",
            "--labels",
            "l",
            "--out",
            "m",
            "--json",
        ],
    );
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["epochs"], 1);
    assert_eq!(summary["val_instances"], 16);
    let model = "m/attention/fold1_final.safetensors";
    assert!(d.join(model).exists());

    run(
        d,
        &[
            "evaluate", "--model", model, "--fold", "1", "--labels", "l", "--images", "a/images",
            "--out", "e", "--device", "cpu",
        ],
    );
    let scored = common::csv_rows(&d.join("e/fold1_res.csv"));
    assert_eq!(scored.len(), 16);

    let image = &scored[5][0];
    let predicted = run(
        d,
        &[
            "predict",
            "--json",
            "--device",
            "cpu",
            "--im-size",
            "192",
            "--model",
            model,
            image,
        ],
    );
    let p: serde_json::Value = serde_json::from_str(predicted.trim()).unwrap();
    let (got, want) = (
        p["flare_prob"].as_f64().unwrap(),
        scored[5][1].parse::<f64>().unwrap(),
    );
    assert!(
        (got - want).abs() < 1e-5,
        "predict {got} vs evaluate {want} for {image}"
    );
}
