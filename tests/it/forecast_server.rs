//! `flarecast forecast` against the local Helioviewer stand-in: image selection by
//! `getClosestImage` (refusing images after the forecast time or too old), fetch by id,
//! and `--every` with failing cycles, skipped images, signals and a synthetic archive
//! verified as `evaluate` scores it.

use crate::common;

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

/// The stand-in's one image: the magnetogram, taken `age` before now.
fn live_images(dir: &Path, age: chrono::Duration) -> Arc<Images> {
    let now = chrono::Utc::now().naive_utc();
    Images::new(vec![(now - age, magnetogram_jp2(dir))])
}

/// `flarecast forecast --device cpu --model noattn.pth --api-url SERVER`, ready for more
/// arguments.
fn forecast_cmd(server: &Server) -> std::process::Command {
    let model = common::golden().join("noattn.pth");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("flarecast"));
    cmd.args(["forecast", "--device", "cpu", "--model", s(&model)])
        .args(["--api-url", &server.url]);
    cmd
}

fn forecast(server: &Server, extra: &[&str]) -> std::process::Output {
    forecast_cmd(server)
        .arg("--json")
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
            "image_age_seconds",
            "issue_time",
            "members",
            "models",
            "prediction_window",
            "probability",
            "raw_probability",
            "spread",
            "threshold_class",
            "window_rule"
        ]
    );
    assert_eq!(r["image"]["time"], "2014-03-01T04:00:00Z");
    assert_eq!(
        r["image"]["id"],
        images.id_of(t("2014-03-01T04:00:00")).unwrap()
    );
    assert_eq!(r["image"]["source_id"], 19);
    // The window is the 24 hours after the issue time; the image is 50 minutes old then.
    assert_eq!(r["issue_time"], "2014-03-01T04:50:00Z");
    assert_eq!(r["prediction_window"]["start"], "2014-03-01T04:50:00Z");
    assert_eq!(r["prediction_window"]["end"], "2014-03-02T04:50:00Z");
    assert_eq!(r["window_rule"], "issue_time");
    assert_eq!(r["image_age_seconds"], 50 * 60);
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
        let failed: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("failed:") && !l.contains(": retry: "))
            .collect();
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
            err.contains("4 cycles: 2 forecasts written, 0 already issued, 2 failed"),
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
        err.contains("4 cycles: 2 forecasts written, 2 already issued, 0 failed"),
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
    let images = live_images(dir.path(), chrono::Duration::hours(1));
    let server = Server::start(images.routes()).unwrap();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let out_dir = dir.path().join(format!("live{signal}"));
        let child = spawn_forecast(&server, &["--every", "1h", "--out", s(&out_dir)]);
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
        "--window",
        "image-hour",
        "--out",
        s(&d.join("forecasts")),
        "--format",
        "json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("48 cycles: 48 forecasts written, 0 already issued, 0 failed"),
        "{err}"
    );
    let v = common::verify_json(
        &d.join("forecasts"),
        &d.join("archive/catalog.csv"),
        "2014-03-04T00:00:00",
        &[],
    );
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

/// The index's records, in order.
fn index_records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("index.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn issue_times(records: &[Value]) -> Vec<NaiveDateTime> {
    records
        .iter()
        .map(|r| t(r["issue_time"].as_str().unwrap()))
        .collect()
}

/// Waits for `child` at most `limit`, killing it (by its pid) when it runs longer.
fn wait_or_kill(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> (std::process::Output, std::time::Duration) {
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && t0.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (out, t0.elapsed())
}

fn spawn_forecast(server: &Server, extra: &[&str]) -> std::process::Child {
    forecast_cmd(server)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `forecast` with `extra` (two cycles, the first to fail) for at most 90 s: it
/// exits 0 and reports one forecast written and one failed. Its stderr and how long it
/// took.
fn two_cycles_one_failed(server: &Server, extra: &[&str]) -> (String, std::time::Duration) {
    let child = spawn_forecast(server, extra);
    let (out, took) = wait_or_kill(child, std::time::Duration::from_secs(90));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "took {took:?}: {err}");
    assert!(
        err.contains("2 cycles: 1 forecasts written, 0 already issued, 1 failed"),
        "{err}"
    );
    (err.into_owned(), took)
}

#[test]
fn a_replayed_month_has_one_record_per_cycle_each_from_its_issue_time_and_a_killed_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let jp2 = magnetogram_jp2(dir.path());
    // March 2014, an image every 6 hours; cycles every 3 hours, so every image serves two.
    let images: Vec<_> = (0..31 * 4)
        .map(|k| {
            (
                t("2014-03-01T00:00:00") + chrono::Duration::hours(6 * k),
                jp2.clone(),
            )
        })
        .collect();
    let images = Images::new(images);
    let out_dir = dir.path().join("march");
    let args = |cycles: &'static str| {
        vec![
            "--at",
            "2014-03-01T00:00:00",
            "--every",
            "3h",
            "--cycles",
            cycles,
            "--out",
            s(&out_dir),
            "--format",
            "json,ccmc-text",
        ]
    };
    // Killed mid-month, then run again: it goes on with the cycles not yet in the index.
    let server = Server::start(images.routes()).unwrap();
    let child = spawn_forecast(&server, &args("248"));
    let index = out_dir.join("index.jsonl");
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(300)
        && (!index.exists() || std::fs::read_to_string(&index).unwrap().lines().count() < 5)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = wait_or_kill(child, std::time::Duration::from_secs(10));
    let before = index_records(&out_dir).len();
    assert!(
        (5..248).contains(&before),
        "{before} records before the kill"
    );

    let server = Server::start(images.routes()).unwrap();
    let out = forecast(&server, &args("248"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "248 cycles: {} forecasts written, {before} already issued, 0 failed",
            248 - before
        )),
        "{err}"
    );
    // The cycles already issued cost no request.
    assert_eq!(server.count("/v2/getClosestImage"), 248 - before);

    let records = index_records(&out_dir);
    let mut issued = issue_times(&records);
    issued.sort();
    let want: Vec<NaiveDateTime> = (0..248)
        .map(|k| t("2014-03-01T00:00:00") + chrono::Duration::hours(3 * k))
        .collect();
    assert_eq!(issued, want, "one record per cycle, none twice");
    for r in &records {
        let issue = t(r["issue_time"].as_str().unwrap());
        let image = t(r["image"]["time"].as_str().unwrap());
        assert_eq!(t(r["prediction_window"]["start"].as_str().unwrap()), issue);
        assert_eq!(
            t(r["prediction_window"]["end"].as_str().unwrap()),
            issue + chrono::Duration::hours(24)
        );
        // The newest 6-hourly image at or before the issue time, and its age.
        assert_eq!(image.and_utc().timestamp() % (6 * 3600), 0);
        assert!(image <= issue && issue - image < chrono::Duration::hours(6));
        assert_eq!(r["image_age_seconds"], (issue - image).num_seconds());
        assert_eq!(r["window_rule"], "issue_time");
        for f in r["files"].as_array().unwrap() {
            assert!(out_dir.join(f.as_str().unwrap()).is_file(), "{f}");
        }
    }
    // Every record and text file is complete; no temporary is left.
    let names = files(&out_dir);
    assert_eq!(names.len(), 2 * 248 + 1, "{names:?}");
    assert!(names.iter().all(|f| !flarecast::fsio::is_temp_name(f)));
    let text = std::fs::read_to_string(out_dir.join("Flare_Forecast_flarecast_20140301_0300.txt"))
        .unwrap();
    assert!(
        text.contains("Prediction window start time: 2014-03-01T03:00Z\n"),
        "{text}"
    );
    assert!(text.contains("image 3h old at issue time"), "{text}");
}

#[test]
fn a_flare_between_the_image_and_the_issue_time_is_not_counted_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jp2 = magnetogram_jp2(d);
    let images = Images::new(vec![(t("2014-03-01T04:00:00"), jp2)]);
    let server = Server::start(images.routes()).unwrap();
    let catalog = d.join("catalog.csv");
    std::fs::write(
        &catalog,
        "start_time,peak_time,end_time,goes_class,fl_lon,fl_lat,noaa_ar,source,satellite,scale\n\
         2014-03-01 05:00:00,2014-03-01 05:10:00,2014-03-01 05:20:00,M5.0,10,10,1,ncei,GOES-15,science\n\
         2014-03-03 00:00:00,2014-03-03 00:10:00,2014-03-03 00:20:00,C1.0,10,10,1,ncei,GOES-15,science\n",
    )
    .unwrap();
    let verify = |forecasts: &Path| -> Value {
        common::verify_json(forecasts, &catalog, "2014-03-04T00:00:00", &[])
    };
    // Issued at 06:00 from the 04:00 image: the M5.0 at 05:00 was over before the issue.
    for (window, observed, largest) in [
        ("issue-time", false, Value::Null),
        ("image-hour", true, Value::from("M5.0")),
    ] {
        let out_dir = d.join(window);
        let out = forecast(
            &server,
            &[
                "--at",
                "2014-03-01T06:00:00",
                "--window",
                window,
                "--out",
                s(&out_dir),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = verify(&out_dir);
        let o = &v["outcomes"][0];
        assert_eq!(v["decided"], 1, "{v}");
        assert_eq!(o["issue_time"], "2014-03-01T06:00:00Z");
        assert_eq!(o["flare_observed"], observed, "{window}: {o}");
        assert_eq!(o["largest_flare"], largest, "{window}: {o}");
    }
    // The replay's files say the window is not an operational one.
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("image-hour/flarecast_20140301_060000.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["window_rule"], "image_hour");
    assert_eq!(record["prediction_window"]["start"], "2014-03-01T04:00:00Z");
    let text =
        std::fs::read_to_string(d.join("image-hour/Flare_Forecast_flarecast_20140301_0600.txt"))
            .unwrap();
    assert!(text.contains("not an operational window"), "{text}");
}

#[test]
fn a_dripping_server_fails_its_cycle_by_the_deadline_reporting_each_retry_and_the_next_runs() {
    let dir = tempfile::tempdir().unwrap();
    let jp2 = magnetogram_jp2(dir.path());
    let images = Images::new(vec![
        (t("2014-03-01T00:00:00"), jp2.clone()),
        (t("2014-03-01T02:00:00"), jp2),
    ]);
    let id0 = images.id_of(t("2014-03-01T00:00:00")).unwrap().to_string();
    // The first image's JP2 comes at one byte a second, every time.
    let server = Server::start(vec![
        images.by_id_route().param("id", &id0).fault(Fault::Drip {
            interval: std::time::Duration::from_secs(1),
            n: u32::MAX,
        }),
        images.closest_route(),
        images.by_id_route(),
    ])
    .unwrap();
    let out_dir = dir.path().join("f");
    let (err, took) = two_cycles_one_failed(
        &server,
        &[
            "--at",
            "2014-03-01T00:00:00",
            "--every",
            "2h",
            "--cycles",
            "2",
            "--timeout",
            "6s",
            "--out",
            s(&out_dir),
        ],
    );
    // A 6 s deadline: the run ends long before one 60 s attempt would have.
    assert!(
        took < std::time::Duration::from_secs(45),
        "took {took:?}: {err}"
    );
    let retries: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cycle 0: retry: "))
        .collect();
    assert!(!retries.is_empty(), "{err}");
    assert!(
        retries[0].contains(&format!(
            "getJP2Image for image {id0}: attempt 1 of 3 failed: "
        )),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("cycle 0 at 2014-03-01 00:00:00 failed: getJP2Image")),
        "{err}"
    );
    let records = index_records(&out_dir);
    assert_eq!(issue_times(&records), [t("2014-03-01T02:00:00")]);

    // A deadline as long as the cycle is refused, naming the flag.
    let out = forecast(
        &server,
        &["--every", "1h", "--timeout", "1h", "--out", s(&out_dir)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--timeout") && err.contains("not shorter"),
        "{err}"
    );
}

#[test]
fn a_live_cycle_after_a_stalled_one_starts_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let images = live_images(dir.path(), chrono::Duration::minutes(30));
    // The first three attempts at the JP2 (all the first cycle can make) drip.
    let server = Server::start(vec![
        images.by_id_route().fault(Fault::Drip {
            interval: std::time::Duration::from_secs(1),
            n: 3,
        }),
        images.closest_route(),
    ])
    .unwrap();
    let out_dir = dir.path().join("live");
    let (err, _) = two_cycles_one_failed(
        &server,
        &[
            "--every",
            "10s",
            "--cycles",
            "2",
            "--timeout",
            "3s",
            "--out",
            s(&out_dir),
        ],
    );
    let failed = err
        .lines()
        .find(|l| l.starts_with("cycle 0 at ") && l.contains(" failed: "))
        .unwrap_or_else(|| panic!("{err}"));
    let at = "cycle 0 at ".len();
    let first = t(&failed[at..at + 19].replace(' ', "T"));
    let second = issue_times(&index_records(&out_dir))[0];
    // The second cycle is issued a cycle after the first, not after the stall.
    let gap = (second - first).num_seconds();
    assert!((9..=14).contains(&gap), "gap {gap} s: {err}");
}
