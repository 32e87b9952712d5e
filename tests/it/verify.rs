//! Forecasts replayed hourly over a synthetic archive, then verified against its flare
//! catalogue: the outcomes are `label`'s targets and the scores `evaluate`'s, instance by
//! instance.

use crate::common;

use serde_json::Value;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// 2 days of hourly 256x256 images (seed 3: positive and negative windows).
fn archive(dir: &Path) {
    common::synth_two_days_hourly(&dir.join("archive"));
}

/// `forecast` by `model` from the local tree `images`: `cycles` hourly cycles from
/// 2014-03-01T00:20 by the image-hour rule, as JSON into `out`.
fn hourly_forecasts(model: &str, images: &Path, cycles: &str, out: &Path) -> std::process::Output {
    common::run_ok(&[
        "forecast",
        "--model",
        model,
        "--images",
        s(images),
        "--at",
        "2014-03-01T00:20:00",
        "--every",
        "1h",
        "--cycles",
        cycles,
        "--out",
        s(out),
        "--format",
        "json",
        "--device",
        "cpu",
        "--window",
        "image-hour",
    ])
}

fn verify(dir: &Path, forecasts: &Path) -> Value {
    common::verify_json(
        forecasts,
        &dir.join("archive/catalog.csv"),
        "2014-03-04T00:00:00",
        &["--predictions", s(&dir.join("verified.csv"))],
    )
}

/// The scores both reports share are equal, and every instance has the same probability
/// and target.
fn assert_same_scores(verify: &Value, evaluate: &Value, res: &str, verified: &str) {
    let e = &evaluate["files"][0];
    let v = &verify["scores"];
    for key in [
        "n", "tp", "fp", "tn", "fn", "tss", "hss2", "brier", "bss", "roc_auc", "best_tss",
    ] {
        assert_eq!(
            v[key], e[key],
            "{key}: verify {} evaluate {}",
            v[key], e[key]
        );
    }
    let rows = |text: &str| -> Vec<(f64, String)> {
        text.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].parse().unwrap(), f[2].trim().to_string())
            })
            .collect()
    };
    let (a, b) = (rows(res), rows(verified));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x.0 - y.0).abs() <= 1e-6, "{x:?} vs {y:?}");
        assert_eq!(x.1.trim_end_matches(".0"), y.1, "target");
    }
}

#[test]
fn hourly_forecasts_from_a_local_tree_verify_as_evaluate_scores_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    archive(d);
    let model = common::golden().join("noattn.pth");
    let model = s(&model);
    let images = d.join("archive/images");
    // 50 hourly cycles over 48 images: the last two find nothing new.
    let out = hourly_forecasts(model, &images, "50", &d.join("forecasts"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("50 cycles: 48 forecasts written, 2 already issued, 0 failed"),
        "{err}"
    );
    let v = verify(d, &d.join("forecasts"));
    assert_eq!(
        (v["forecasts"].as_u64(), v["decided"].as_u64()),
        (Some(48), Some(48))
    );
    let (e, res) = common::label_and_evaluate_two_days(d, &images, model);
    let verified = std::fs::read_to_string(d.join("verified.csv")).unwrap();
    assert_same_scores(&v, &e, &res, &verified);
    // The decisions split at 0.5 on this archive, so TSS is not trivially 0.
    let sc = &v["scores"];
    assert!(
        sc["tp"].as_u64().unwrap() + sc["fp"].as_u64().unwrap() > 0,
        "{sc}"
    );
    assert!(
        sc["tn"].as_u64().unwrap() + sc["fn"].as_u64().unwrap() > 0,
        "{sc}"
    );

    // With the catalogue known only to 2014-03-02T12:00, windows ending later are pending.
    let v = common::verify_json(
        &d.join("forecasts"),
        &d.join("archive/catalog.csv"),
        "2014-03-02T12:00:00",
        &[],
    );
    // Windows start at 00:00..12:00 on March 1 and end by 12:00 on March 2: 13 decided.
    assert_eq!(
        (v["decided"].as_u64(), v["pending"].as_u64()),
        (Some(13), Some(35))
    );

    // With a calibrated model: the scores at the threshold are the raw probability's,
    // unchanged; Brier and BSS of both are reported.
    let csv = d.join("held_out.csv");
    common::overconfident_predictions(&csv);
    let cal_model = d.join("noattn_cal.safetensors");
    common::calibrate(
        &common::golden().join("noattn.pth"),
        &csv,
        &cal_model,
        "platt",
    );
    hourly_forecasts(s(&cal_model), &images, "48", &d.join("calibrated"));
    let c = verify(d, &d.join("calibrated"));
    let plain = verify(d, &d.join("forecasts"));
    assert_eq!(c["scores"], plain["scores"]);
    let cal = &c["calibrated"];
    assert_eq!(cal["raw"]["brier"], plain["scores"]["brier"]);
    assert_ne!(cal["calibrated"]["brier"], cal["raw"]["brier"]);
    assert!(plain.get("calibrated").is_none());
    for (o, p) in c["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(plain["outcomes"].as_array().unwrap())
    {
        assert_eq!(o["raw_probability"], p["probability"]);
        assert_eq!(o["calibrated"], true);
        assert_eq!(o["flare_forecast"], p["flare_forecast"]);
    }
}
