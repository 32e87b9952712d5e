//! `flarecast forecast` on local images: the ensemble equals `predict` member by member,
//! a JP2 is prepared exactly as `convert` + `predict` would, and the CCMC exchange files
//! read back in their documented layout.

use crate::common;

use flarecast::forecast::source;
use flarecast::instant::parse_time;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn golden(name: &str) -> String {
    common::golden().join(name).display().to_string()
}

fn run_json(args: &[&str]) -> Value {
    serde_json::from_slice(&common::run_ok(args).stdout).expect("JSON on stdout")
}

/// The JSON report of `forecast` by the ensemble of `models` from `image`, with `more`
/// arguments.
fn forecast_json(models: &[&str], image: &Path, more: &[&str]) -> Value {
    let mut args = vec!["forecast", "--json", "--device", "cpu"];
    for m in models {
        args.extend(["--model", m]);
    }
    args.extend(["--image", image.to_str().unwrap()]);
    args.extend_from_slice(more);
    run_json(&args)
}

/// The JSON report of `forecast` by the ensemble of the golden attention and standard
/// networks, from `image` at `at`, with `more` arguments.
fn golden_ensemble_forecast(image: &Path, at: &str, more: &[&str]) -> Value {
    let (attn, noattn) = (golden("attn.pth"), golden("noattn.pth"));
    forecast_json(&[&attn, &noattn], image, &[&["--at", at], more].concat())
}

/// Runs `flarecast forecast --device cpu ARGS`, asserts that it exits 1, and gives its
/// stderr.
fn forecast_refused(args: &[&str]) -> String {
    let out = common::flarecast()
        .args(["forecast", "--device", "cpu"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    err
}

/// `predict --json` probability of one image.
fn predict(model: &str, image: &Path) -> f64 {
    let out = common::run_ok(&[
        "predict",
        "--json",
        "--device",
        "cpu",
        "--model",
        model,
        image.to_str().unwrap(),
    ]);
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    line["flare_prob"].as_f64().unwrap()
}

#[test]
fn an_ensemble_of_the_golden_networks_equals_predict_on_each() {
    let jpg = common::magnetogram_jpg();
    let (attn, noattn) = (golden("attn.pth"), golden("noattn.pth"));
    let r = golden_ensemble_forecast(&jpg, "2022-08-02T11:00:00", &[]);
    let want = [predict(&attn, &jpg), predict(&noattn, &jpg)];
    let members: Vec<f64> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["probability"].as_f64().unwrap())
        .collect();
    assert_eq!(members.len(), 2);
    for (got, want) in members.iter().zip(want) {
        assert!((got - want).abs() <= 1e-6, "member {got} vs predict {want}");
    }
    let mean = (want[0] + want[1]) / 2.0;
    assert!((r["probability"].as_f64().unwrap() - mean).abs() <= 1e-6);
    assert_eq!(r["models"][0]["architecture"], "attention");
    assert_eq!(r["models"][1]["architecture"], "standard_cnn");
    assert_eq!(r["models"][0]["im_size"], 256);
    // The SHA-256 of the golden attention checkpoint, as `sha256sum` gives it.
    let sha = common::python(&format!(
        "import hashlib;print(hashlib.sha256(open({attn:?},'rb').read()).hexdigest())"
    ));
    assert_eq!(r["models"][0]["sha256"], sha.trim());
    // The 24 h window starts at the issue time; the image is 12 min 7 s old then.
    assert_eq!(r["image"]["time"], "2022-08-02T10:47:53Z");
    assert_eq!(r["prediction_window"]["start"], "2022-08-02T11:00:00Z");
    assert_eq!(r["prediction_window"]["end"], "2022-08-03T11:00:00Z");
    assert_eq!(r["issue_time"], "2022-08-02T11:00:00Z");
    assert_eq!(r["image_age_seconds"], 12 * 60 + 7);
    assert_eq!(r["window_rule"], "issue_time");
    // The replay rule: the image's hour starts the window, as `label` names the instance.
    let replay = golden_ensemble_forecast(&jpg, "2022-08-02T11:00:00", &["--window", "image-hour"]);
    assert_eq!(replay["prediction_window"]["start"], "2022-08-02T10:00:00Z");
    assert_eq!(replay["prediction_window"]["end"], "2022-08-03T10:00:00Z");
    assert_eq!(replay["window_rule"], "image_hour");
    assert_eq!(replay["probability"], r["probability"]);
    // An image from after the issue time is refused.
    let err = forecast_refused(&[
        "--model",
        &attn,
        "--image",
        jpg.to_str().unwrap(),
        "--at",
        "2022-08-02T10:00:00",
    ]);
    assert!(
        err.contains("after the issue time 2022-08-02T10:00:00Z"),
        "{err}"
    );
    assert_eq!(r["threshold_class"], "M1.0");
    assert_eq!(r["flare_forecast"], mean >= 0.5);
    let std = ((want[0] - want[1]) / 2.0).abs();
    assert!((r["spread"]["std"].as_f64().unwrap() - std).abs() <= 1e-9);
}

#[test]
fn a_forecast_from_a_jp2_equals_predict_on_the_jpg_convert_makes_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let jp2_dir = dir.path().join("jp2");
    std::fs::create_dir_all(&jp2_dir).unwrap();
    let jp2 = jp2_dir.join("2022_08_02__10_47_53_000__SDO_HMI_HMI_magnetogram.jp2");
    std::fs::copy(common::magnetogram_jp2(), &jp2).unwrap();
    let jpg_dir = dir.path().join("jpg");
    common::assert_success(
        common::flarecast()
            .args(["convert", "--input"])
            .arg(&jp2_dir)
            .arg("--output")
            .arg(&jpg_dir)
            .output()
            .unwrap(),
    );
    let jpg: PathBuf = jpg_dir.join("2022_08_02__10_47_53_000__SDO_HMI_HMI_magnetogram.jpg");
    let attn = golden("attn.pth");
    let r = forecast_json(&[&attn], &jp2, &[]);
    let from_jpg = predict(&attn, &jpg);
    assert_eq!(r["probability"].as_f64().unwrap(), from_jpg);
    // The observation time comes from the JP2's FITS header.
    assert_eq!(
        r["image"]["time"].as_str().unwrap()[..16],
        *"2022-08-02T10:47"
    );
}

/// `Key: value` header lines of the CCMC text file, in order.
fn header(text: &str) -> Vec<(String, String)> {
    text.lines()
        .take_while(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("Key: value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_ccmc_text_and_json_read_back_in_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let jpg = common::magnetogram_jpg();
    let r = golden_ensemble_forecast(
        &jpg,
        "2022-08-02T11:05:00",
        &["--out", dir.path().to_str().unwrap()],
    );
    let p = r["probability"].as_f64().unwrap();
    let std = r["spread"]["std"].as_f64().unwrap();

    let text = std::fs::read_to_string(
        dir.path()
            .join("Flare_Forecast_flarecast_20220802_1105.txt"),
    )
    .unwrap();
    let h = header(&text);
    let keys: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "Forecasting method",
            "Issue time",
            "Prediction window start time",
            "Prediction window end time",
            "Probability bins",
            "Input data",
            "Prediction window (hours)"
        ]
    );
    assert!(h[0].1.starts_with("flarecast "), "{}", h[0].1);
    assert_eq!(h[1].1, "2022-08-02T11:05Z");
    assert_eq!(h[2].1, "2022-08-02T11:05Z");
    assert_eq!(h[3].1, "2022-08-03T11:05Z");
    assert_eq!(h[4].1, "M+");
    assert!(h[5].1.contains("2022-08-02T10:47:53Z"), "{}", h[5].1);
    assert_eq!(h[6].1, "24");
    // The M+ bin only, said in the file; the full-disk line: bin, probability, uncertainty, level.
    assert!(text.contains("M+ bin (>= M1.0) only"), "{text}");
    let mut after = text
        .lines()
        .skip_while(|l| *l != "#Full Disk Forecast")
        .skip(1);
    assert!(after.next().unwrap().starts_with('#'));
    let fields: Vec<&str> = after.next().unwrap().split_whitespace().collect();
    assert_eq!(fields[0], "M+");
    assert_eq!(fields[1], format!("{p:.4}"));
    assert_eq!(fields[2], format!("{std:.4}"));
    assert_eq!(after.next(), None);

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.path()
                .join("Flare_Forecast_flarecast_20220802_1105.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sub = &json["forecast_submission"];
    assert_eq!(sub["issue_time"], "2022-08-02T11:05Z");
    let fd = &sub["full_disk_forecasts"].as_array().unwrap()[0];
    assert_eq!(fd["prediction_window"]["start_time"], "2022-08-02T11:05Z");
    assert_eq!(fd["prediction_window"]["end_time"], "2022-08-03T11:05Z");
    let probs = fd["flare_probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), 1, "M+ only, no X bin");
    assert_eq!(probs[0]["class"], "M+");
    assert_eq!(probs[0]["probability"].as_f64().unwrap(), p);
    assert_eq!(sub["region_forecasts"].as_array().unwrap().len(), 0);

    // The record beside them, and the index line naming every file.
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("flarecast_20220802_110500.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record, r);
    let index = std::fs::read_to_string(dir.path().join("index.jsonl")).unwrap();
    assert_eq!(index.lines().count(), 1);
    let line: Value = serde_json::from_str(index.lines().next().unwrap()).unwrap();
    assert_eq!(line["probability"].as_f64().unwrap(), p);
    assert_eq!(
        line["files"],
        serde_json::json!([
            "flarecast_20220802_110500.json",
            "Flare_Forecast_flarecast_20220802_1105.json",
            "Flare_Forecast_flarecast_20220802_1105.txt"
        ])
    );
}

#[test]
fn bad_requests_fail_with_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let attn = golden("attn.pth");
    // An image whose time neither its name nor a header gives.
    let anon = dir.path().join("sun.jpg");
    std::fs::copy(common::magnetogram_jpg(), &anon).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--image".into(), anon.display().to_string()],
            "cannot tell when",
        ),
        (
            vec![
                "--image".into(),
                common::magnetogram_jpg().display().to_string(),
                "--threshold".into(),
                "1.5".into(),
            ],
            "threshold",
        ),
        (vec!["--at".into(), "yesterday".into()], "yesterday"),
    ];
    for (extra, want) in cases {
        let args: Vec<&str> = ["--model", attn.as_str()]
            .into_iter()
            .chain(extra.iter().map(String::as_str))
            .collect();
        let err = forecast_refused(&args);
        assert!(err.contains(want), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn real_closest_image_answers_parse() {
    for name in [
        "getClosestImage_date-2014-01-01T23-59-59Z_sourceId-14.documented_openapi.json",
        "getClosestImage_date-2014-01-01T23-59-59Z_sourceId-14.documented_v2xml.json",
    ] {
        let c = source::parse_closest(&common::helioviewer_answer(name)).unwrap();
        assert_eq!(c.id, 34205701);
        assert_eq!(c.date, parse_time("2014-01-02T00:00:02").unwrap());
    }
    let c = source::parse_closest(br#"{"id":"12","date":"2014-01-02 00:00:02.620"}"#).unwrap();
    assert_eq!(c.id, 12);
    let e = source::parse_closest(br#"{"error":"No images found"}"#).unwrap_err();
    assert!(e.to_string().contains("No images found"), "{e}");
    assert!(source::parse_closest(b"<html>maintenance</html>").is_err());
}

#[test]
fn images_after_the_time_or_too_old_are_refused_with_their_date() {
    // The real answer for 2014-01-01T23:59:59 is an image 3 s later.
    let c = source::parse_closest(&common::helioviewer_answer(
        "getClosestImage_date-2014-01-01T23-59-59Z_sourceId-14.documented_openapi.json",
    ))
    .unwrap();
    for (at, says) in [
        ("2014-01-01T23:59:59", "after"),
        ("2014-01-02T08:00:02", "8h old"),
    ] {
        let at = parse_time(at).unwrap();
        let e = source::check_age(&c, at, chrono::Duration::hours(6))
            .unwrap_err()
            .to_string();
        assert!(e.contains("2014-01-02 00:00:02") && e.contains(says), "{e}");
    }
    source::check_age(
        &c,
        parse_time("2014-01-02T06:00:02").unwrap(),
        chrono::Duration::hours(6),
    )
    .unwrap();
}

#[test]
fn a_calibrated_forecast_carries_the_calibrated_probability_in_every_ccmc_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("held_out.csv");
    common::overconfident_predictions(&csv);
    let (attn, noattn) = (
        common::golden().join("attn.pth"),
        common::golden().join("noattn.pth"),
    );
    let cal_attn = d.join("attn_cal.safetensors");
    let cal_noattn = d.join("noattn_cal.safetensors");
    common::calibrate(&attn, &csv, &cal_attn, "platt");
    common::calibrate(&noattn, &csv, &cal_noattn, "platt");
    let jpg = common::magnetogram_jpg();
    let out = d.join("out");
    let run = |models: [&Path; 2], more: &[&str]| -> Value {
        let models = models.map(|m| m.to_str().unwrap());
        forecast_json(
            &models,
            &jpg,
            &[&["--at", "2022-08-02T11:05:00"], more].concat(),
        )
    };
    let raw = run([&attn, &noattn], &[]);
    let r = run([&cal_attn, &cal_noattn], &["--out", out.to_str().unwrap()]);
    // The raw probabilities and the decision are the uncalibrated ensemble's.
    assert_eq!(r["raw_probability"], raw["probability"]);
    assert_eq!(r["flare_forecast"], raw["flare_forecast"]);
    for k in 0..2 {
        assert_eq!(
            r["members"][k]["raw_probability"],
            raw["members"][k]["probability"]
        );
    }
    let p = r["probability"].as_f64().unwrap();
    let m: Vec<f64> = (0..2)
        .map(|k| r["members"][k]["probability"].as_f64().unwrap())
        .collect();
    assert!((p - (m[0] + m[1]) / 2.0).abs() < 1e-12);
    assert!(
        (p - raw["probability"].as_f64().unwrap()).abs() > 1e-3,
        "calibration moved it"
    );
    assert!(r["calibration"]
        .as_str()
        .unwrap()
        .starts_with("platt, fitted on held_out.csv (200 instances, "));
    let std = r["spread"]["std"].as_f64().unwrap();
    assert!((std - (m[0] - m[1]).abs() / 2.0).abs() < 1e-12);

    // The text file, line by line as OPERATIONS.md lays it out.
    let text =
        std::fs::read_to_string(out.join("Flare_Forecast_flarecast_20220802_1105.txt")).unwrap();
    let h = header(&text);
    let want = [
        ("Forecasting method", None),
        ("Issue time", Some("2022-08-02T11:05Z")),
        ("Prediction window start time", Some("2022-08-02T11:05Z")),
        ("Prediction window end time", Some("2022-08-03T11:05Z")),
        ("Probability bins", Some("M+")),
        ("Input data", None),
        ("Prediction window (hours)", Some("24")),
    ];
    assert_eq!(h.len(), want.len(), "{text}");
    for ((k, v), (wk, wv)) in h.iter().zip(want) {
        assert_eq!(k, wk);
        if let Some(wv) = wv {
            assert_eq!(v, wv, "{k}");
        }
    }
    assert!(
        h[0].1.starts_with("flarecast ") && h[0].1.contains("2 models"),
        "{}",
        h[0].1
    );
    assert!(
        h[5].1.contains("observed 2022-08-02T10:47:53Z"),
        "{}",
        h[5].1
    );
    let how = format!(
        "{}; {}",
        r["models"][0]["calibration"].as_str().unwrap(),
        r["models"][1]["calibration"].as_str().unwrap()
    );
    assert_eq!(r["calibration"], how.as_str());
    let line = format!(
        "# Probability: calibrated ({how}); the networks' raw probability is {:.4}\n",
        r["raw_probability"].as_f64().unwrap()
    );
    assert!(text.contains(&line), "{text}");
    assert!(
        text.contains("# Prediction window: the 24 hours after the issue time; image 17m 7s old"),
        "{text}"
    );
    let mut after = text
        .lines()
        .skip_while(|l| *l != "#Full Disk Forecast")
        .skip(1);
    assert_eq!(after.next(), Some("#Bin Probability Uncertainty Level"));
    let fields: Vec<&str> = after.next().unwrap().split_whitespace().collect();
    assert_eq!(
        fields,
        ["M+", &format!("{p:.4}"), &format!("{std:.4}"), "-"]
    );
    assert_eq!(after.next(), None);

    // The JSON submission, key by key.
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("Flare_Forecast_flarecast_20220802_1105.json")).unwrap(),
    )
    .unwrap();
    let sub = json["forecast_submission"].as_object().unwrap();
    let mut keys: Vec<&str> = sub.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "full_disk_forecasts",
            "input_data",
            "issue_time",
            "model",
            "notes",
            "region_forecasts"
        ]
    );
    assert_eq!(sub["issue_time"], "2022-08-02T11:05Z");
    assert_eq!(sub["model"]["short_name"], "flarecast");
    let fd = sub["full_disk_forecasts"].as_array().unwrap();
    assert_eq!(fd.len(), 1);
    assert_eq!(
        fd[0]["prediction_window"],
        serde_json::json!({"start_time": "2022-08-02T11:05Z", "end_time": "2022-08-03T11:05Z"})
    );
    let probs = fd[0]["flare_probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), 1);
    assert_eq!(probs[0]["class"], "M+");
    assert_eq!(probs[0]["probability"].as_f64().unwrap(), p);
    assert_eq!(probs[0]["uncertainty"].as_f64().unwrap(), std);
    assert_eq!(sub["region_forecasts"], serde_json::json!([]));
    let notes = sub["notes"].as_str().unwrap();
    assert!(notes.contains("Probability: calibrated (platt"), "{notes}");
    assert!(notes.contains("M+ bin (>= M1.0) only"), "{notes}");

    // An ensemble of a calibrated and an uncalibrated member is refused.
    let err = forecast_refused(&[
        "--model",
        cal_attn.to_str().unwrap(),
        "--model",
        noattn.to_str().unwrap(),
        "--image",
        jpg.to_str().unwrap(),
    ]);
    assert!(
        err.contains("1 of the 2 models carry a calibration"),
        "{err}"
    );
}
