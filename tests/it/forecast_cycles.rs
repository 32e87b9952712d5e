//! `forecast --every` over a local image tree under hostile settings and faults: absurd
//! cycles and ages refused before anything is written, a restarted live run over an index
//! holding a forecast from the future, a run whose every cycle fails, and a full disk in
//! the middle of a cycle.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A day of synthetic images every 6 hours from 2014-03-01, under `dir/archive`.
fn archive(dir: &Path) -> PathBuf {
    let out = dir.join("archive");
    common::run_ok(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--start",
        "2014-03-01T00:00:00",
        "--days",
        "1",
        "--cadence",
        "6h",
        "--size",
        "256",
        "--seed",
        "3",
    ]);
    out.join("images")
}

/// `forecast` of the golden attention network on the tree `images` into `out`, with
/// `more` flags.
fn forecast(images: &Path, out: &Path, more: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("flarecast"));
    cmd.args(["forecast", "--device", "cpu", "--model"])
        .arg(common::golden().join("attn.pth"))
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(more);
    cmd
}

/// Runs `cmd`, within two minutes.
fn run(cmd: std::process::Command) -> Output {
    assert_cmd::Command::from_std(cmd)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

fn run_ok(cmd: std::process::Command) {
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The files the index lists, with the index itself, sorted.
fn listed(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("index.jsonl")).unwrap();
    let mut v = vec!["index.jsonl".to_string()];
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        for f in record["files"].as_array().unwrap() {
            v.push(f.as_str().unwrap().to_string());
        }
    }
    v.sort();
    v
}

#[test]
fn absurd_cycles_ages_and_counts_are_refused_naming_the_value_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let images = archive(dir.path());
    let out = dir.path().join("forecasts");
    let replay = ["--at", "2014-03-01T06:00:00"];
    for (more, says) in [
        (
            vec!["--every", "500000000000y", "--cycles", "2"],
            "--every: cycle 500000000000y is outside 10s..=366d",
        ),
        (
            vec!["--every", "1h", "--max-age", "300000y"],
            "--max-age: image age 300000y is outside 1s..=36525d",
        ),
        (
            vec!["--max-age", "300000y"],
            "--max-age: image age 300000y is outside 1s..=36525d",
        ),
        (
            vec!["--every", "1h", "--cycles", "0"],
            "--cycles: cycles 0 is outside 1..=1000000",
        ),
        (
            vec!["--every", "366d", "--cycles", "1000000"],
            "--cycles: cycle 999999 of 366d from 2014-03-01 06:00:00 is past the calendar's end",
        ),
    ] {
        let done = run(forecast(&images, &out, &[&replay[..], &more].concat()));
        let err = stderr(&done);
        assert_eq!(done.status.code(), Some(1), "{more:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{more:?}: {err}");
        assert_eq!(err.trim_end(), format!("flarecast: error: {says}"));
        assert!(!out.exists(), "{more:?} wrote {}", out.display());
    }
}

#[test]
fn a_restarted_live_run_does_not_wait_for_a_forecast_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let images = archive(dir.path());
    let out = dir.path().join("forecasts");
    // A forecast issued four years from now (a clock set wrong, a copied folder).
    let future = chrono::Utc::now().naive_utc() + chrono::Duration::days(4 * 365);
    let future = future.format("%Y-%m-%dT%H:%M:%S").to_string();
    let age = ["--max-age", "36500d"];
    run_ok(forecast(
        &images,
        &out,
        &[&["--at", &future][..], &age].concat(),
    ));
    let started = std::time::Instant::now();
    let done = run(forecast(
        &images,
        &out,
        &[&["--every", "1h", "--cycles", "1"][..], &age].concat(),
    ));
    let err = stderr(&done);
    assert_eq!(done.status.code(), Some(0), "{err}");
    assert!(started.elapsed() < Duration::from_secs(100), "{err}");
    let future_t = future.replace('T', " ");
    assert!(
        err.contains(&format!(
            "index.jsonl holds a forecast issued at {future_t}, after now"
        )) && err.contains("ignored when scheduling the next cycle"),
        "{err}"
    );
    assert!(err.contains("1 cycles: 1 forecasts written"), "{err}");
    let index = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    assert_eq!(index.lines().count(), 2, "{index}");
}

#[test]
fn a_run_whose_every_cycle_failed_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let images = archive(dir.path());
    let out = dir.path().join("forecasts");
    // Before the archive's first image: every cycle fails.
    let done = run(forecast(
        &images,
        &out,
        &[
            "--at",
            "2013-01-01T00:00:00",
            "--every",
            "1h",
            "--cycles",
            "2",
        ],
    ));
    let err = stderr(&done);
    assert_eq!(done.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2 cycles: 0 forecasts written, 0 already issued, 2 failed"),
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "flarecast: error: every one of the 2 cycles failed; nothing was written to {}",
            out.display()
        )
    );
    assert!(names(&out).is_empty(), "{:?}", names(&out));
}

/// `cmd` run with files limited to `bytes` (a write beyond fails with EFBIG, as on a
/// full disk).
fn with_file_size_limit(mut cmd: std::process::Command, bytes: u64) -> Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal and setrlimit are async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run(cmd)
}

#[test]
fn a_cycle_failing_on_a_full_disk_leaves_no_file_its_index_does_not_list() {
    let dir = tempfile::tempdir().unwrap();
    let images = archive(dir.path());
    let out = dir.path().join("forecasts");
    let cycles = |n: &str| -> Vec<String> {
        [
            "--at",
            "2014-03-01T06:00:00",
            "--every",
            "1h",
            "--cycles",
            n,
        ]
        .map(String::from)
        .to_vec()
    };
    let first: Vec<String> = cycles("1");
    run_ok(forecast(
        &images,
        &out,
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let one_line = std::fs::metadata(out.join("index.jsonl")).unwrap().len();
    let largest = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    // Room for any one file of a cycle, not for an index of two lines.
    let limit = largest.max(one_line) + one_line / 2;
    assert!(limit < 2 * one_line, "{limit} {one_line}");
    let second = cycles("2");
    let done = with_file_size_limit(
        forecast(
            &images,
            &out,
            &second.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        limit,
    );
    let err = stderr(&done);
    assert!(
        err.contains("cycle 1 at 2014-03-01 07:00:00 failed: cannot write")
            && err.contains("index.jsonl"),
        "{err}"
    );
    assert!(
        err.contains("2 cycles: 0 forecasts written, 1 already issued, 1 failed"),
        "{err}"
    );
    assert_eq!(done.status.code(), Some(0), "{err}");
    assert_eq!(names(&out), listed(&out));
    // The formats in the other order: the first file fits, the second does not.
    let done = with_file_size_limit(
        forecast(
            &images,
            &out,
            &[
                "--at",
                "2014-03-01T12:00:00",
                "--format",
                "ccmc-text,json",
                "--every",
                "1h",
                "--cycles",
                "1",
            ],
        ),
        largest - 1,
    );
    let err = stderr(&done);
    assert_eq!(done.status.code(), Some(1), "{err}");
    assert_eq!(names(&out), listed(&out));
}
