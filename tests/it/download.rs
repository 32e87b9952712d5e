//! `flarecast download` against a local Helioviewer stand-in serving the real HMI
//! magnetogram JP2, with injected faults.

use crate::common;

use chrono::{Duration as CDuration, NaiveDateTime};
use flarecast::helioviewer::api;
use flarecast::testing::helioviewer::{hmi_name, Config, Fault, Kind, LocalServer, UriStyle};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn t0() -> NaiveDateTime {
    NaiveDateTime::parse_from_str("2013-05-13T00:00:00", "%Y-%m-%dT%H:%M:%S").unwrap()
}

/// Requested instant i (12-minute steps from t0) as the server sees it in `date=`.
fn date(i: i64) -> String {
    (t0() + CDuration::minutes(12 * i))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn rel(i: i64) -> String {
    flarecast::instant::Instant(t0() + CDuration::minutes(12 * i)).relative_path("jp2")
}

fn magnetogram() -> Arc<Vec<u8>> {
    Arc::new(std::fs::read(common::magnetogram_jp2()).unwrap())
}

fn manifest(out: &Path) -> HashMap<String, serde_json::Value> {
    std::fs::read_to_string(out.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["requested"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn status(m: &HashMap<String, serde_json::Value>, i: i64) -> String {
    let key = (t0() + CDuration::minutes(12 * i))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    m[&key]["status"].as_str().unwrap().to_string()
}

fn reason(m: &HashMap<String, serde_json::Value>, i: i64) -> String {
    let key = (t0() + CDuration::minutes(12 * i))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    m[&key]["reason"].as_str().unwrap_or("").to_string()
}

fn download_args<'a>(url: &'a str, out: &'a str, end: &'a str) -> Vec<&'a str> {
    vec![
        "download",
        "--start",
        "2013-05-13T00:00:00",
        "--end",
        end,
        "--out",
        out,
        "--api-url",
        url,
        "--concurrency",
        "4",
        "--max-rps",
        "0",
        "--retries",
        "2",
        "--timeout",
        "1s",
        "--backoff",
        "20ms",
    ]
}

#[test]
fn faults_end_as_specified_and_rerun_fetches_nothing_new() {
    let t = |i: i64, secs: i64| t0() + CDuration::minutes(12 * i) + CDuration::seconds(secs);
    // Instants 0..=7 each have their own observation 53 s later; 8 and 9 share one (6 min
    // after 8); 10 and 11 have none within 12 minutes.
    let mut observations: Vec<_> = (0..8).map(|i| t(i, 53)).collect();
    observations.push(t(8, 360));
    observations.push(t(11, 60 * 60));
    let faults: HashMap<(String, Kind), Fault> = [
        ((date(1), Kind::Image), Fault::ServerError(1)),
        (
            (date(2), Kind::Uri),
            Fault::TooManyRequests { retry_after_s: 1 },
        ),
        ((date(3), Kind::Image), Fault::DropMidBody(1)),
        ((date(4), Kind::Image), Fault::TruncatedHalf),
        ((date(5), Kind::Image), Fault::HtmlPage),
        (
            (date(6), Kind::Image),
            Fault::Slow(Duration::from_millis(2500), u32::MAX),
        ),
        ((date(7), Kind::Image), Fault::NotFound),
    ]
    .into_iter()
    .collect();
    let server = LocalServer::start(Config {
        observations,
        jp2: magnetogram(),
        latency: Duration::ZERO,
        uri_style: UriStyle::Jpip,
        faults,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("jp2");
    let out_s = out.to_str().unwrap();
    let end = "2013-05-13T02:24:00";

    let started = std::time::Instant::now();
    let first = common::flarecast()
        .args(download_args(&server.url, out_s, end))
        .arg("--json")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(
        first.status.code(),
        Some(1),
        "failures give exit 1\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("4 of 12 instants failed"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (
            summary["saved"].as_u64(),
            summary["missing"].as_u64(),
            summary["failed"].as_u64(),
            summary["skipped"].as_u64()
        ),
        (Some(6), Some(2), Some(4), Some(0)),
        "{stdout}"
    );
    // 5 distinct observations fetched: 0, 1, 2, 3 and the one 8 and 9 share.
    assert_eq!(summary["fetched"].as_u64(), Some(5), "{stdout}");
    // The 429 asked for a 1 s pause.
    assert!(elapsed >= Duration::from_secs(1));

    let m = manifest(&out);
    assert_eq!(m.len(), 12);
    let want = [
        "saved", "saved", "saved", "saved", "failed", "failed", "failed", "failed", "saved",
        "saved", "missing", "missing",
    ];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(status(&m, i as i64), *w, "instant {i}: {:?}", m);
    }
    assert!(reason(&m, 4).contains("truncated"), "{}", reason(&m, 4));
    assert!(reason(&m, 5).contains("HTML"), "{}", reason(&m, 5));
    assert!(reason(&m, 6).contains("timed out"), "{}", reason(&m, 6));
    assert!(reason(&m, 7).contains("HTTP 404"), "{}", reason(&m, 7));
    assert!(
        reason(&m, 10).contains("closest image is 18m"),
        "{}",
        reason(&m, 10)
    );

    // Saved files are byte-identical to the served JP2, named by the requested time; the
    // manifest has their size, digest and observation.
    let jp2 = magnetogram();
    let sha: String = Sha256::digest(jp2.as_slice())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for i in [0, 1, 2, 3, 8, 9] {
        assert_eq!(
            std::fs::read(out.join(rel(i))).unwrap(),
            *jp2,
            "instant {i}"
        );
        let key = (t0() + CDuration::minutes(12 * i))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        assert_eq!(m[&key]["sha256"].as_str(), Some(sha.as_str()));
        assert_eq!(m[&key]["bytes"].as_u64(), Some(1_054_131));
    }
    assert_eq!(
        m["2013-05-13T01:48:00"]["source"].as_str(),
        Some(hmi_name(t(8, 360)).as_str())
    );
    assert_eq!(
        m["2013-05-13T01:48:00"]["observed"].as_str(),
        Some("2013-05-13T01:42:00.000")
    );
    // Nothing else on disk: no partial file, no temporary.
    let mut expected: Vec<String> = [0, 1, 2, 3, 8, 9].iter().map(|&i| rel(i)).collect();
    expected.push("manifest.jsonl".into());
    expected.sort();
    assert_eq!(files(&out), expected);

    // Requests: retried exactly where specified, one image fetch for the shared observation.
    for (i, kind, want, why) in [
        (0, Kind::Image, 1, "one fetch"),
        (1, Kind::Image, 2, "500 then success"),
        (2, Kind::Uri, 2, "429 then success"),
        (3, Kind::Image, 2, "dropped mid-body then success"),
        (4, Kind::Image, 3, "truncated body: retried, then failed"),
        (5, Kind::Image, 1, "HTML page: not retried"),
        (6, Kind::Image, 3, "timeouts: retried, then failed"),
        (7, Kind::Image, 1, "404: not retried"),
    ] {
        assert_eq!(server.count_for(kind, &date(i)), want, "instant {i}: {why}");
    }
    assert_eq!(
        server.count_for(Kind::Image, &date(8)) + server.count_for(Kind::Image, &date(9)),
        1
    );
    assert_eq!(
        server.count_for(Kind::Image, &date(10)) + server.count_for(Kind::Image, &date(11)),
        0
    );

    // Second run: saved and missing instants make no request; only the failed are retried.
    let before = server.requests().len();
    let second = common::flarecast()
        .args(download_args(&server.url, out_s, end))
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let s2: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&second.stdout)).unwrap();
    assert_eq!(
        (
            s2["skipped"].as_u64(),
            s2["saved"].as_u64(),
            s2["missing"].as_u64()
        ),
        (Some(6), Some(0), Some(2))
    );
    assert_eq!(s2["fetched"].as_u64(), Some(0));
    let new: Vec<_> = server.requests()[before..].to_vec();
    let failed_dates: Vec<String> = (4..8).map(date).collect();
    assert!(
        new.iter().all(|(_, d)| failed_dates.contains(d)),
        "unexpected requests on rerun: {new:?}"
    );
    assert_eq!(new.len(), 4 + 3 + 1 + 3 + 1, "{new:?}");
    let m2 = manifest(&out);
    assert_eq!(status(&m2, 0), "skipped");
    assert_eq!(
        m2["2013-05-13T00:00:00"]["sha256"].as_str(),
        Some(sha.as_str())
    );
    assert_eq!(status(&m2, 10), "missing");
    assert_eq!(files(&out), expected);
}

#[test]
fn json_and_jpips_answers_and_dry_run() {
    for style in [UriStyle::Json, UriStyle::Jpips] {
        let server = server_of(3, magnetogram(), Duration::ZERO, style);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let dry = common::flarecast()
            .args(download_args(&server.url, out, "2013-05-13T00:36:00"))
            .arg("--dry-run")
            .output()
            .unwrap();
        assert!(dry.status.success());
        assert!(
            String::from_utf8_lossy(&dry.stdout).contains("3 instants"),
            "{}",
            String::from_utf8_lossy(&dry.stdout)
        );
        assert_eq!(server.requests().len(), 0, "a dry run makes no request");
        let run = common::flarecast()
            .args(download_args(&server.url, out, "2013-05-13T00:36:00"))
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{style:?}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(String::from_utf8_lossy(&run.stdout).contains("3 saved"));
        assert_eq!(server.count(Kind::Image), 3);
        for i in 0..3 {
            assert!(dir.path().join(rel(i)).is_file());
        }
    }
}

#[test]
fn killed_run_leaves_only_complete_files_and_resumes() {
    let server = server_of(40, magnetogram(), Duration::from_millis(60), UriStyle::Jpip);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let end = "2013-05-13T08:00:00";
    let bin = assert_cmd::cargo::cargo_bin("flarecast");
    let mut child = std::process::Command::new(&bin)
        .args(download_args(&server.url, out, end))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as the first file is complete, while later ones are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !files(dir.path()).iter().any(|f| f.ends_with(".jp2"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial: Vec<String> = files(dir.path())
        .into_iter()
        .filter(|f| f.ends_with(".jp2"))
        .collect();
    assert!(
        !partial.is_empty() && partial.len() < 40,
        "kill should land mid-run: {} files",
        partial.len()
    );
    for f in &partial {
        let b = std::fs::read(dir.path().join(f)).unwrap();
        flarecast::jp2::validate(&b, f).unwrap();
    }
    let before = server.count(Kind::Image);
    let run = common::flarecast()
        .args(download_args(&server.url, out, end))
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(s["skipped"].as_u64(), Some(partial.len() as u64));
    assert_eq!(s["saved"].as_u64(), Some(40 - partial.len() as u64));
    assert_eq!(server.count(Kind::Image) - before, 40 - partial.len());
    let all = files(dir.path());
    assert_eq!(all.iter().filter(|f| f.ends_with(".jp2")).count(), 40);
    assert!(
        all.iter()
            .all(|f| f.ends_with(".jp2") || f == "manifest.jsonl"),
        "leftovers: {all:?}"
    );
}

#[test]
fn unreachable_server_is_retried_then_failed_and_bad_ranges_are_refused() {
    // A port nobody listens on, held for the whole test.
    let refused = common::RefusedPort::bind();
    let url = format!("http://127.0.0.1:{}", refused.port);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let mut args = download_args(&url, out, "2013-05-13T00:12:00");
    let i = args.iter().position(|a| *a == "--retries").unwrap();
    args[i + 1] = "1";
    let r = common::flarecast().args(args).output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    let m = manifest(dir.path());
    let why = reason(&m, 0);
    assert!(
        why.contains("connection failed") && why.contains("after 2 attempts"),
        "{why}"
    );
    assert_eq!(files(dir.path()), vec!["manifest.jsonl".to_string()]);

    let r = common::flarecast()
        .args(download_args(&url, out, "2013-05-12T00:00:00"))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("flarecast: error:") && stderr.contains("must be after the start"),
        "{stderr}"
    );
}

#[test]
fn max_rps_caps_the_request_rate() {
    let server = plain_server(5, magnetogram());
    let dir = tempfile::tempdir().unwrap();
    let mut args = download_args(
        &server.url,
        dir.path().to_str().unwrap(),
        "2013-05-13T01:00:00",
    );
    let rps = args.iter().position(|a| *a == "--max-rps").unwrap();
    args[rps + 1] = "8";
    let started = std::time::Instant::now();
    common::flarecast().args(args).assert().success();
    // 10 requests at most 8 per second: the last starts >= 9/8 s after the first.
    assert_eq!(server.requests().len(), 10);
    assert!(
        started.elapsed() >= Duration::from_millis(1125),
        "{:?}",
        started.elapsed()
    );
}

/// A server with one observation 53 s after each of the first `n` 12-minute instants.
fn plain_server(n: i64, jp2: Arc<Vec<u8>>) -> LocalServer {
    server_of(n, jp2, Duration::ZERO, UriStyle::Jpip)
}

/// [`plain_server`] answering after `latency`, its image URIs in `uri_style`.
fn server_of(n: i64, jp2: Arc<Vec<u8>>, latency: Duration, uri_style: UriStyle) -> LocalServer {
    LocalServer::start(Config {
        observations: (0..n)
            .map(|i| t0() + CDuration::minutes(12 * i) + CDuration::seconds(53))
            .collect(),
        jp2,
        latency,
        uri_style,
        faults: HashMap::new(),
    })
    .unwrap()
}

#[test]
fn a_damaged_file_on_disk_is_fetched_again() {
    let server = plain_server(3, magnetogram());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("jp2");
    let out_s = out.to_str().unwrap();
    let end = "2013-05-13T00:36:00";
    let run = |extra: &[&str]| {
        let r = common::flarecast()
            .args(download_args(&server.url, out_s, end))
            .args(extra)
            .arg("--json")
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        (v["saved"].as_u64().unwrap(), v["skipped"].as_u64().unwrap())
    };
    assert_eq!(run(&[]), (3, 0));
    let jp2 = magnetogram();
    // Truncated after the download: the size differs, so it is fetched again.
    std::fs::write(out.join(rel(0)), &jp2[..jp2.len() / 2]).unwrap();
    // Same size, one byte changed: only --verify (the digest) notices.
    let mut flipped = jp2.to_vec();
    flipped[jp2.len() / 2] ^= 0xff;
    std::fs::write(out.join(rel(1)), &flipped).unwrap();
    assert_eq!(run(&[]), (1, 2));
    assert_eq!(std::fs::read(out.join(rel(0))).unwrap(), *jp2);
    assert_eq!(std::fs::read(out.join(rel(1))).unwrap(), flipped);
    assert_eq!(run(&["--verify"]), (1, 2));
    for i in 0..3 {
        assert_eq!(
            std::fs::read(out.join(rel(i))).unwrap(),
            *jp2,
            "instant {i}"
        );
    }
    assert_eq!(run(&["--verify"]), (0, 3));
}

#[test]
fn an_oversized_answer_is_refused_at_the_cap() {
    // A JP2 signature followed by 80 MB: over the 64 MiB cap for one image.
    let mut big = std::fs::read(common::magnetogram_jp2()).unwrap();
    big.resize(80_000_000, 0);
    let server = plain_server(1, Arc::new(big));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("jp2");
    let r = common::flarecast()
        .args(download_args(
            &server.url,
            out.to_str().unwrap(),
            "2013-05-13T00:12:00",
        ))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let m = manifest(&out);
    assert_eq!(status(&m, 0), "failed");
    assert!(
        reason(&m, 0).contains("body of 80000000 bytes is over the 67108864-byte limit"),
        "{}",
        reason(&m, 0)
    );
    assert!(!out.join(rel(0)).exists());
}

#[test]
fn a_request_of_billions_of_instants_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = common::flarecast()
        .args(["download", "--dry-run", "--cadence", "1s"])
        .args([
            "--start",
            "1900-01-01T00:00:00",
            "--end",
            "2100-01-01T00:00:00",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&r.stderr),
        "flarecast: error: 1900-01-01 00:00:00 to 2100-01-01 00:00:00 every 1s makes 6311433600 \
         instants, more than the 10000000 one run may request; ask for a shorter range or a \
         longer cadence\n"
    );
}

#[test]
fn real_jp2_uri_answers_parse() {
    let want = "jpip://api.helioviewer.org:8090/AIA/2014/01/02/335/2014_01_02__00_00_02_62__SDO_AIA_AIA_335.jp2";
    let text = common::helioviewer_answer(
        "getJP2Image_date-2014-01-01T23-59-59Z_sourceId-14_jpip-true.txt",
    );
    assert_eq!(api::parse_uri_answer(&text).unwrap(), want);
    let json = common::helioviewer_answer(
        "getJP2Image_date-2014-01-01T23-59-59Z_sourceId-14_jpip-true_json-true.documented.json",
    );
    assert_eq!(api::parse_uri_answer(&json).unwrap(), want);
    let escaped = br#"{"uri":"jpips:\/\/api.helioviewer.org:8090\/HMI\/2022\/08\/02\/magnetogram\/2022_08_02__10_47_53_000__SDO_HMI_HMI_magnetogram.jp2"}"#;
    let uri = api::parse_uri_answer(escaped).unwrap();
    assert!(uri.starts_with("jpips://api.helioviewer.org:8090/HMI/2022/08/02/"));
    // The real JPX answer is a movie, not a .jp2: rejected.
    assert!(api::parse_uri_answer(&common::helioviewer_answer(
        "getJPX_real_php_json_encode_output.test_fixture.json"
    ))
    .is_err());
    assert!(api::parse_uri_answer(b"<html><body>Error</body></html>").is_err());
    assert!(api::parse_uri_answer(br#"{"error":"No images found"}"#)
        .unwrap_err()
        .to_string()
        .contains("No images"));
}
