//! `train --config`: the resolved settings a run writes repeat it bit for bit, a flag
//! overrides the file, and a bad file is refused naming its line and key.

use crate::common;
use std::path::Path;

fn train(root: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let images = root.join("images");
    let labels = root.join("labels");
    let mut args = vec![
        "train",
        "--images",
        images.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--device",
        "cpu",
        "--precision",
        "f32",
        "--tensorboard",
        "none",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    common::flarecast()
        .current_dir(root)
        .args(&args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The flags' run, then `--config` of the file it wrote into another folder: the same
/// weights (bit for bit, f32) and the same history; the written file names what it ran on.
#[test]
fn a_written_config_repeats_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::write_tiny_fold(root, 9, 3, true);
    let flags = [
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--im-size",
        "192",
        "--lr",
        "0.01",
        "--seed",
        "11",
        "--workers",
        "1",
    ];
    ok(&train(root, "first", &flags));
    let written = root.join("first/attention/fold1_config.toml");
    let text = std::fs::read_to_string(&written).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["epochs"].as_integer(), Some(2));
    assert_eq!(table["lr"].as_float(), Some(0.01));
    assert_eq!(table["seed"].as_integer(), Some(11));
    assert_eq!(table["out"].as_str(), Some("first"));
    let ran_on = table["ran_on"].as_table().unwrap();
    assert_eq!(ran_on["precision"].as_str(), Some("f32"));
    assert_eq!(ran_on["images_read"].as_integer(), Some(12));
    assert_eq!(
        ran_on["flarecast"].as_str(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let sha = ran_on["val_labels_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);

    // The file alone (its own flags, no others) into another folder.
    let again = common::flarecast()
        .current_dir(root)
        .args([
            "train",
            "--config",
            written.to_str().unwrap(),
            "--out",
            "second",
        ])
        .output()
        .unwrap();
    ok(&again);
    for file in ["fold1_final.safetensors", "fold1_best.safetensors"] {
        let a = std::fs::read(root.join("first/attention").join(file)).unwrap();
        let b = std::fs::read(root.join("second/attention").join(file)).unwrap();
        // The header holds the run's settings (its --out among them): compare the weights.
        let (ta, tb) = (weights(&a), weights(&b));
        assert_eq!(ta.len(), tb.len());
        for ((na, va), (nb, vb)) in ta.iter().zip(&tb) {
            assert_eq!(na, nb);
            assert!(va.equal(vb), "{file}: {na} differs");
        }
    }
    let history = |d: &str| {
        let h: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(d).join("attention/fold1_history.json")).unwrap(),
        )
        .unwrap();
        let mut rows = h
            .as_array()
            .cloned()
            .unwrap_or_else(|| h["epochs"].as_array().cloned().unwrap());
        for r in &mut rows {
            // Wall-clock figures differ between any two runs.
            if let Some(o) = r.as_object_mut() {
                o.retain(|k, _| !(k.contains("second") || k.contains("per_s") || k == "time"));
            }
        }
        rows
    };
    assert_eq!(history("first"), history("second"));
}

fn weights(bytes: &[u8]) -> Vec<(String, tch::Tensor)> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let mut v = tch::Tensor::read_safetensors(&p).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A flag on the command line overrides the file; `--print-config` shows the result.
#[test]
fn a_flag_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(
        &file,
        "epochs = 3\narch = \"resnet18\"\nlr = 0.01\nno-augment = true\n",
    )
    .unwrap();
    let out = common::run_ok(&[
        "train",
        "--config",
        file.to_str().unwrap(),
        "--images",
        "/data/images",
        "--labels",
        "/data/labels",
        "--epochs",
        "7",
        "--print-config",
    ]);
    let t: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(t["epochs"].as_integer(), Some(7));
    assert_eq!(t["arch"].as_str(), Some("resnet18"));
    assert_eq!(t["lr"].as_float(), Some(0.01));
    assert_eq!(t["no-augment"].as_bool(), Some(true));
    assert_eq!(t["batch-size"].as_integer(), Some(128));
    assert_eq!(t["images"].as_str(), Some("/data/images"));
}

/// An unknown key and a wrong type are refused with the file, line and key; nothing runs.
#[test]
fn a_bad_file_names_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expect) in [
        (
            "epochs = 3\nlearning-rate = 0.1\n",
            ":2: learning-rate: unknown setting",
        ),
        (
            "lr = 0.1\n\nepochs = \"thirty\"\n",
            ":3: epochs: invalid value 'thirty'",
        ),
        ("no-augment = 1\n", ":1: no-augment: expected true or false"),
        (
            "seed = true\n",
            ":1: seed: expected a value for --seed, got boolean",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = common::flarecast()
            .args([
                "train",
                "--config",
                file.to_str().unwrap(),
                "--images",
                "/x",
                "--labels",
                "/y",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("{}{expect}", file.display())),
            "{err}"
        );
    }
}

/// `experiment run --config`: the grid and every cell's train flags from the file, the
/// command line's train flags after the file's (so they win in each cell's `train`).
#[test]
fn an_experiment_takes_its_grid_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grid.toml");
    std::fs::write(
        &file,
        "arch = [\"attention\", \"resnet18\"]\nseeds = [4, 5]\ntrain-flags = [\"--epochs\", \"2\"]\n",
    )
    .unwrap();
    let out = common::run_ok(&[
        "experiment",
        "run",
        "--config",
        file.to_str().unwrap(),
        "--images",
        "/d/images",
        "--labels",
        "/d/labels",
        "--out",
        "/d/exp",
        "--seeds",
        "9",
        "--print-config",
        "--",
        "--im-size",
        "192",
    ]);
    let t: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let strings = |k: &str| -> Vec<String> {
        t[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect()
    };
    assert_eq!(strings("arch"), ["attention", "resnet18"]);
    assert_eq!(t["seeds"].as_integer(), Some(9));
    assert_eq!(
        strings("train-flags"),
        ["--epochs", "2", "--im-size", "192"]
    );
}
