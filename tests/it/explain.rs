//! `flarecast explain`: output naming, and the methods against captum on the golden
//! weights and input.

use crate::common;

use flarecast::explain::{self, Method};
use std::collections::HashMap;
use tch::{Device, Tensor};

/// Two inputs with one file name (a/x.jpg, b/x.jpg) keep their folders in the output
/// names instead of overwriting each other.
#[test]
fn same_file_names_get_separate_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a/x.jpg"), dir.path().join("b/x.jpg"));
    for p in [&a, &b] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    }
    std::fs::copy(common::magnetogram_jpg(), &a).unwrap();
    // The second image is the first flipped, so the two maps differ.
    image::open(&a).unwrap().fliph().save(&b).unwrap();
    let out = dir.path().join("maps");
    let run_on = |command: &str, out: &std::path::Path, images: &[&std::path::PathBuf]| {
        let run = common::flarecast()
            .args([command, "--device", "cpu", "--estimator", "2", "--model"])
            .arg(common::golden().join("attn.pth"))
            .arg("--out")
            .arg(out)
            .args(images)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    };
    // Each image alone: its map under the plain file name.
    let (solo_a, solo_b) = (dir.path().join("solo_a"), dir.path().join("solo_b"));
    run_on("explain", &solo_a, &[&a]);
    run_on("explain", &solo_b, &[&b]);
    let alone_a = Tensor::read_npy(solo_a.join("x_c2.npy")).unwrap();
    let alone_b = Tensor::read_npy(solo_b.join("x_c2.npy")).unwrap();
    assert!((&alone_a - &alone_b).abs().max().double_value(&[]) > 1e-2);
    for command in ["attention", "explain"] {
        run_on(command, &out, &[&a, &b]);
        // Both maps are there, each the one of its own image.
        let ca = Tensor::read_npy(out.join("a/x_c2.npy")).unwrap();
        let cb = Tensor::read_npy(out.join("b/x_c2.npy")).unwrap();
        assert_eq!(ca.size(), vec![32, 32]);
        assert_eq!((&ca - &alone_a).abs().max().double_value(&[]), 0.0);
        assert_eq!((&cb - &alone_b).abs().max().double_value(&[]), 0.0);
        for p in [
            "a/x_est2.png",
            "b/x_est2.png",
            "a/x_panel.png",
            "b/x_panel.png",
        ] {
            assert!(out.join(p).exists(), "{p}");
        }
        assert!(!out.join("x_est2.png").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
    // The same image twice is refused, naming it.
    let run = common::flarecast()
        .args(["explain", "--device", "cpu", "--model"])
        .arg(common::golden().join("attn.pth"))
        .arg("--out")
        .arg(&out)
        .args([&a, &a])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("a/x.jpg") && err.contains("give each image once"),
        "{err}"
    );
}

/// Largest |ours - captum| over the largest |captum|.
fn relative_error(ours: &Tensor, captum: &Tensor) -> f64 {
    let diff = (ours - captum).abs().max().double_value(&[]);
    diff / captum.abs().max().double_value(&[])
}

/// Integrated Gradients, Guided Grad-CAM and occlusion of both networks on the real
/// magnetogram equal captum's (scripts/captum_maps.py) within 1e-4 relative.
#[test]
fn methods_match_captum_on_golden_weights() {
    let dir = tempfile::tempdir().unwrap();
    // Few steps and windows keep the test short; overlapping windows (stride < window)
    // still exercise occlusion's averaging.
    let (steps, window, stride) = (8, 128, 64);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/captum_maps.py");
    let run = std::process::Command::new(common::torch_python())
        .arg(&script)
        .arg(common::golden())
        .arg(dir.path())
        .args(["--steps", &steps.to_string()])
        .args(["--window", &window.to_string()])
        .args(["--stride", &stride.to_string()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "captum: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let deltas: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("deltas.json")).unwrap())
            .unwrap();
    let opts = explain::Options {
        steps,
        window,
        stride,
        ..explain::Options::default()
    };
    for net in ["attn", "noattn"] {
        let model =
            flarecast::model::load_model(&common::golden().join(format!("{net}.pth")), Device::Cpu)
                .unwrap();
        let io: HashMap<String, Tensor> =
            Tensor::read_safetensors(common::golden().join(format!("{net}_io.safetensors")))
                .unwrap()
                .into_iter()
                .collect();
        let x = io["input"].narrow(0, 0, 1);
        for (method, block, file) in [
            (Method::IntegratedGradients, 5, "ig"),
            (Method::GuidedGradcam, 5, "guided_gradcam5"),
            (Method::GuidedGradcam, 6, "guided_gradcam6"),
            (Method::Occlusion, 5, "occlusion"),
        ] {
            let opts = explain::Options {
                gradcam_block: block,
                ..opts.clone()
            };
            let exp = explain::explain(&model, &x, method, &opts).unwrap();
            let captum = Tensor::read_npy(dir.path().join(format!("{net}_{file}.npy"))).unwrap();
            let ours = &exp.maps[0].raw;
            assert_eq!(ours.size(), vec![256, 256]);
            let peak = captum.abs().max().double_value(&[]);
            if peak == 0.0 {
                // No positive Grad-CAM evidence at that block: captum's map is all zeros,
                // and so must ours be. Which maps are empty depends on the processor's
                // rounding of near-zero weighted sums (the standard CNN's block 5
                // everywhere; the attention network's block 6 on AVX2 too).
                assert_eq!(
                    method,
                    Method::GuidedGradcam,
                    "{net} {file}: empty captum map"
                );
                assert_eq!(
                    ours.abs().max().double_value(&[]),
                    0.0,
                    "{net} {file}: captum's map is empty, ours is not"
                );
                continue;
            }
            let err = relative_error(ours, &captum);
            assert!(err < 1e-4, "{net} {file}: relative error {err:e}");
            if method == Method::IntegratedGradients {
                let theirs = deltas[net].as_f64().unwrap();
                let ours = exp.delta.unwrap();
                assert!(
                    (ours - theirs).abs() < 1e-4,
                    "{net} delta {ours} vs {theirs}"
                );
            }
        }
    }
}

/// `explain --pointing` on a synthetic fold: every scored flare site is where the
/// archive put it (to one pixel), the table and `--json` give the same numbers.
#[test]
fn pointing_on_a_synthetic_fold() {
    use chrono::NaiveDateTime;
    use flarecast::synth;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let labels = dir.path().join("labels");
    let (start, days) = ("2014-03-10T00:00:00", 12);
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(common::flarecast()
        .args([
            "synth",
            "--out",
            archive.to_str().unwrap(),
            "--start",
            start,
        ])
        .args([
            "--days",
            &days.to_string(),
            "--cadence",
            "6h",
            "--size",
            "256",
            "--seed",
            "1",
        ])
        .output()
        .unwrap());
    ok(common::flarecast()
        .args(["label", "--catalog"])
        .arg(archive.join("catalog.csv"))
        .arg("--images")
        .arg(archive.join("images"))
        .arg("--out")
        .arg(&labels)
        .args(["--start", start, "--end", "2014-03-20T18:00:00"])
        .output()
        .unwrap());
    let pointing = |json: bool| {
        let mut cmd = common::flarecast();
        cmd.args(["explain", "--pointing", "--device", "cpu", "--fold", "1"])
            .args(["--method", "attention,gradcam", "--model"])
            .arg(common::golden().join("attn.pth"))
            .arg("--catalog")
            .arg(archive.join("catalog.csv"))
            .arg("--labels")
            .arg(&labels)
            .arg("--images")
            .arg(archive.join("images"));
        if json {
            cmd.arg("--json");
        }
        ok(cmd.output().unwrap())
    };
    let report: serde_json::Value = serde_json::from_str(&pointing(true)).unwrap();
    let instances = report["instances"].as_array().unwrap();
    assert!(instances.len() >= 5, "{report}");

    // The truth: the archive's own flares and regions, rotated to the image's time and
    // drawn with the renderer's disk (centre (n-1)/2, radius RADIUS_FRACTION * n).
    let params = synth::Params {
        start: NaiveDateTime::parse_from_str(start, "%Y-%m-%dT%H:%M:%S").unwrap(),
        days,
        cadence_s: 6 * 3600,
        size: 256,
        seed: 1,
    };
    let plan = synth::plan(&params).unwrap();
    let hours = |t: NaiveDateTime| (t - params.start).num_seconds() as f64 / 3600.0;
    let (centre, radius) = (127.5, synth::render::RADIUS_FRACTION * 256.0);
    let mut zones = std::collections::HashSet::new();
    for inst in instances {
        let flare_start = NaiveDateTime::parse_from_str(
            inst["flare_start"].as_str().unwrap(),
            "%Y-%m-%dT%H:%M:%S",
        )
        .unwrap();
        let image = inst["image"].as_str().unwrap();
        let t_img = flarecast::instant::Instant::from_path(image).unwrap().0 .0;
        let flare = plan
            .flares
            .iter()
            .find(|f| f.start == flare_start && f.location.is_some())
            .unwrap();
        let region = plan.regions.iter().find(|r| r.id == flare.region).unwrap();
        let (lon, lat) = flare.location.unwrap();
        let lon_img = lon + region.lon_at(hours(t_img)) - region.lon_at(hours(flare.start));
        let c = synth::sun::to_observer(lon_img, lat, synth::sun::b0_deg(t_img));
        let (x, y) = (centre + c[0] * radius, centre - c[1] * radius);
        let (gx, gy) = (inst["x"].as_f64().unwrap(), inst["y"].as_f64().unwrap());
        assert!(
            (gx - x).abs() <= 1.0 && (gy - y).abs() <= 1.0,
            "{image}: site ({gx:.2}, {gy:.2}), archive ({x:.2}, {y:.2})"
        );
        zones.insert(inst["zone"].as_str().unwrap().to_string());
    }
    assert!(zones.contains("central"), "{zones:?}");

    // The table says what the JSON says.
    let table = pointing(false);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{report}"); // est1..3 and gradcam, two zones each
    for row in rows {
        let line = format!(
            "{:<22} {:<9} {:>9} {:>9.4} {:>6} {:>8.4} {:>9.4}",
            row["map"].as_str().unwrap(),
            row["zone"].as_str().unwrap(),
            row["instances"].as_u64().unwrap(),
            row["mean_mass"].as_f64().unwrap(),
            row["hits"].as_u64().unwrap(),
            row["hit_rate"].as_f64().unwrap(),
            row["mean_uniform_mass"].as_f64().unwrap()
        );
        assert!(table.contains(&line), "{line}\n{table}");
        // Scores are fractions; hits never exceed instances.
        let mass = row["mean_mass"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&mass));
        assert!(row["hits"].as_u64().unwrap() <= row["instances"].as_u64().unwrap());
    }
    let n: u64 = rows
        .iter()
        .filter(|r| r["map"] == "gradcam")
        .map(|r| r["instances"].as_u64().unwrap())
        .sum();
    assert_eq!(n as usize, instances.len());
}
