//! `flarecast forecast` against the local Helioviewer stand-in: image selection by
//! `getClosestImage` (refusing images after the forecast time or too old), fetch by id,
//! and `--every` with failing cycles, skipped images, signals and a synthetic archive
//! verified as `evaluate` scores it.

mod common;

use chrono::NaiveDateTime;
use flarecast::testing::helioviewer::{Fault, Images};
use flarecast::testing::http::Server;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

fn t(s: &str) -> NaiveDateTime {
    flarecast::instant::parse_time(s).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The real 512x512 magnetogram JPG as a lossless JP2.
fn magnetogram_jp2(dir: &Path) -> Arc<Vec<u8>> {
    let img = image::open(common::magnetogram_jpg()).unwrap().to_luma8();
    let path = dir.join("m.jp2");
    common::jp2::write_lossless(&path, img.as_raw(), img.width(), img.height());
    Arc::new(std::fs::read(path).unwrap())
}

fn forecast(server: &Server, extra: &[&str]) -> std::process::Output {
    let attn = common::golden().join("noattn.pth");
    common::flarecast()
        .args([
            "forecast",
            "--json",
            "--device",
            "cpu",
            "--model",
            s(&attn),
            "--api-url",
            &server.url,
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_fixed_time_picks_the_newest_image_and_refuses_later_or_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let jp2 = magnetogram_jp2(dir.path());
    let images = Images::new(
        [
            "2014-03-01T00:00:00",
            "2014-03-01T04:00:00",
            "2014-03-01T06:00:00",
        ]
        .iter()
        .map(|d| (t(d), jp2.clone()))
        .collect(),
    );
    let server = Server::start(images.routes()).unwrap();
    let out = forecast(&server, &["--at", "2014-03-01T04:50:00"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "decision_threshold",
            "flare_forecast",
            "flarecast_version",
            "image",
            "issue_time",
            "members",
            "models",
            "prediction_window",
            "probability",
            "spread",
            "threshold_class"
        ]
    );
    assert_eq!(r["image"]["time"], "2014-03-01T04:00:00Z");
    assert_eq!(
        r["image"]["id"],
        images.id_of(t("2014-03-01T04:00:00")).unwrap()
    );
    assert_eq!(r["image"]["source_id"], 19);
    assert_eq!(r["issue_time"], "2014-03-01T04:50:00Z");
    assert_eq!(r["prediction_window"]["start"], "2014-03-01T04:00:00Z");
    assert_eq!(r["prediction_window"]["end"], "2014-03-02T04:00:00Z");
    // The image was fetched by the id getClosestImage gave, never by date.
    let by_id: Vec<String> = server
        .requests()
        .iter()
        .filter(|q| q.path.contains("getJP2Image"))
        .map(|q| format!("{:?}", q.query))
        .collect();
    assert_eq!(by_id.len(), 1);
    assert!(by_id[0].contains("34205702"), "{by_id:?}");

    // 05:30: the closest image is 06:00, after the forecast time.
    let out = forecast(&server, &["--at", "2014-03-01T05:30:00"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2014-03-01 06:00:00") && err.contains("after"),
        "{err}"
    );
    // 12:30: the newest image is 6 h 30 min old.
    let out = forecast(&server, &["--at", "2014-03-01T12:30:00", "--max-age", "6h"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2014-03-01 06:00:00") && err.contains("6h 30m old"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn every_cycle_survives_a_failed_one_and_leaves_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    let jp2 = magnetogram_jp2(dir.path());
    let times = [
        "2014-03-01T00:00:00",
        "2014-03-01T02:00:00",
        "2014-03-01T04:00:00",
        "2014-03-01T06:00:00",
    ];
    let images = Images::new(times.iter().map(|d| (t(d), jp2.clone())).collect());
    let out_dir = dir.path().join("forecasts");
    let args = [
        "--at",
        "2014-03-01T00:00:00",
        "--every",
        "2h",
        "--cycles",
        "4",
        "--out",
        s(&out_dir),
        "--format",
        "json,ccmc-text",
    ];
    {
        // Cycle 1: the server fails; cycle 2: the image comes back cut in half.
        let id4 = images.id_of(t("2014-03-01T04:00:00")).unwrap().to_string();
        let server = Server::start(vec![
            images
                .closest_route()
                .param("date", "2014-03-01T02:00:00Z")
                .fault(Fault::ServerError(100)),
            images
                .by_id_route()
                .param("id", &id4)
                .fault(Fault::TruncatedHalf),
            images.closest_route(),
            images.by_id_route(),
        ])
        .unwrap();
        let out = forecast(&server, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let failed: Vec<&str> = err.lines().filter(|l| l.contains("failed:")).collect();
        assert_eq!(failed.len(), 2, "{err}");
        assert!(
            failed[0].starts_with("cycle 1 at 2014-03-01 02:00:00 failed: ")
                && failed[0].contains("HTTP 500"),
            "{err}"
        );
        assert!(
            failed[1].starts_with("cycle 2 at 2014-03-01 04:00:00 failed: "),
            "{err}"
        );
        assert!(
            err.contains("4 cycles: 2 forecasts written, 0 already forecast, 2 failed"),
            "{err}"
        );
        // Only the two forecasts' files and the index: no temporary, nothing of the failed cycles.
        assert_eq!(
            files(&out_dir),
            [
                "Flare_Forecast_flarecast_20140301_0000.txt",
                "Flare_Forecast_flarecast_20140301_0600.txt",
                "flarecast_20140301_000000.json",
                "flarecast_20140301_060000.json",
                "index.jsonl"
            ]
        );
        let index = std::fs::read_to_string(out_dir.join("index.jsonl")).unwrap();
        assert_eq!(index.lines().count(), 2);
    }
    // Again with the server well: the two missing forecasts are made, the others skipped.
    let server = Server::start(images.routes()).unwrap();
    let out = forecast(&server, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("4 cycles: 2 forecasts written, 2 already forecast, 0 failed"),
        "{err}"
    );
    let index = std::fs::read_to_string(out_dir.join("index.jsonl")).unwrap();
    let times: Vec<String> = index
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["image"]["time"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        times,
        [
            "2014-03-01T00:00:00Z",
            "2014-03-01T06:00:00Z",
            "2014-03-01T02:00:00Z",
            "2014-03-01T04:00:00Z"
        ]
    );
}

#[test]
fn sigint_and_sigterm_end_a_live_run_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let jp2 = magnetogram_jp2(dir.path());
    let now = chrono::Utc::now().naive_utc();
    let images = Images::new(vec![(now - chrono::Duration::hours(1), jp2)]);
    let server = Server::start(images.routes()).unwrap();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let out_dir = dir.path().join(format!("live{signal}"));
        let attn = common::golden().join("noattn.pth");
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("flarecast"))
            .args([
                "forecast",
                "--device",
                "cpu",
                "--model",
                s(&attn),
                "--api-url",
                &server.url,
            ])
            .args(["--every", "1h", "--out", s(&out_dir)])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the first forecast, then signal during the hour's wait.
        let index = out_dir.join("index.jsonl");
        while !index.exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains("1 cycles: 1 forecasts written") && err.contains("stopped by signal"),
            "{err}"
        );
        assert!(files(&out_dir)
            .iter()
            .all(|f| !flarecast::fsio::is_temp_name(f)));
    }
}

#[test]
fn hourly_forecasts_served_by_the_test_server_verify_as_evaluate_scores_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::synth_two_days_hourly(&d.join("archive"));
    // Every image as a lossless JP2: served by id, and converted as training images.
    let mut served = Vec::new();
    let labels = flarecast::label::Images::from_tree(
        &d.join("archive/images"),
        &flarecast::progress::Progress::hidden(),
    )
    .unwrap();
    let mut at = labels.first().unwrap();
    while let Some((i, name)) = labels.at_or_before(at) {
        if i != at {
            break;
        }
        let img = image::open(d.join("archive/images").join(name))
            .unwrap()
            .to_luma8();
        let path = d.join("jp2").join(i.relative_path("jp2"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        common::jp2::write_lossless(&path, img.as_raw(), img.width(), img.height());
        served.push((i.0, Arc::new(std::fs::read(&path).unwrap())));
        at = flarecast::instant::Instant(i.0 + chrono::Duration::hours(1));
    }
    assert_eq!(served.len(), 48);
    let server = Server::start(Images::new(served).routes()).unwrap();
    let model = common::golden().join("noattn.pth");
    let out = common::run_ok(&[
        "forecast",
        "--device",
        "cpu",
        "--model",
        s(&model),
        "--api-url",
        &server.url,
        "--at",
        "2014-03-01T00:20:00",
        "--every",
        "1h",
        "--cycles",
        "48",
        "--max-age",
        "1h",
        "--out",
        s(&d.join("forecasts")),
        "--format",
        "json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("48 cycles: 48 forecasts written, 0 already forecast, 0 failed"),
        "{err}"
    );
    let v: Value = serde_json::from_slice(
        &common::run_ok(&[
            "verify",
            "--forecasts",
            s(&d.join("forecasts")),
            "--catalog",
            s(&d.join("archive/catalog.csv")),
            "--catalog-end",
            "2014-03-04T00:00:00",
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    // The same instances through convert -> label -> evaluate.
    common::run_ok(&[
        "convert",
        "--input",
        s(&d.join("jp2")),
        "--output",
        s(&d.join("jpg")),
    ]);
    let (e, _) = common::label_and_evaluate_two_days(d, &d.join("jpg"), s(&model));
    assert_eq!(v["decided"], 48);
    let (v, e) = (&v["scores"], &e["files"][0]);
    for key in [
        "n", "tp", "fp", "tn", "fn", "tss", "hss2", "brier", "bss", "roc_auc", "best_tss",
    ] {
        assert_eq!(v[key], e[key], "{key}");
    }
    assert!(
        v["tp"].as_u64().unwrap() + v["fp"].as_u64().unwrap() > 0,
        "{v}"
    );
}
