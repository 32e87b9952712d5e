//! Every duration and count flag of every command, at and past the ends of its range, at
//! zero, negative, in absurd units and as a non-number: each run exits 0, or 1 with one
//! line on stderr; never a panic (101), and never clap's usage error (2) for a value
//! clap took (`--flag=VALUE`). The runs fail fast on a missing input after parsing.

use crate::common;
use flarecast::bounded::{self, Count, Span, Whole};
use flarecast::data::LoaderConfig;
use flarecast::distributed::Group;
use flarecast::explain::Options;
use flarecast::forecast::source;
use flarecast::forecast::watch::Schedule;
use flarecast::im_size::ImSize;
use flarecast::label::{self, Fold};
use flarecast::recipe::Recipe;
use flarecast::{bench, convert, helioviewer, http, inference, synth};
use std::ffi::OsString;
use std::time::Duration;

/// Past any range, in any type, or no number at all.
const ABSURD_COUNTS: [&str; 5] = ["0", "-1", "18446744073709551616", "1e400", "ten"];

/// Nothing, past any range, beyond what a duration holds, or no duration at all.
const ABSURD_SPANS: [&str; 5] = ["0s", "-1s", "500000000000y", "1e400", "soon"];

/// One flag and the values it is given.
struct Flag {
    name: &'static str,
    values: Vec<String>,
}

/// A count flag: both ends of its range, one past each, and the absurd values.
fn count<T: Whole>(name: &'static str, range: Count<T>) -> Flag {
    let (min, max) = (range.min().to_i128(), range.max().to_i128());
    whole(name, min, max)
}

/// A flag clap parses as a whole number in `min..=max`, with the same values, each once
/// (one past a range's low end is often 0 or -1 already).
fn whole(name: &'static str, min: i128, max: i128) -> Flag {
    let ends = [min, max, min - 1, max + 1].map(|v| v.to_string());
    let mut values: Vec<String> = Vec::new();
    for value in ends.into_iter().chain(ABSURD_COUNTS.map(String::from)) {
        if !values.contains(&value) {
            values.push(value);
        }
    }
    Flag { name, values }
}

/// A duration flag: both ends of its range, a second past it, and the absurd values.
fn span(name: &'static str, range: Span) -> Flag {
    let past = range.max() + Duration::from_secs(1);
    let ends = [range.min(), range.max(), past].map(bounded::show);
    Flag {
        name,
        values: ends
            .into_iter()
            .chain(ABSURD_SPANS.map(String::from))
            .collect(),
    }
}

/// `--im-size`: clap reads a whole number, `ImSize` holds it to its range.
fn im_size() -> Flag {
    whole("--im-size", ImSize::MIN.into(), ImSize::MAX.into())
}

/// Runs `base` with each value of each flag (`--flag=VALUE` after the base arguments,
/// `env` set) and holds every run to the contract.
fn holds(base: &[OsString], env: &dyn Fn() -> Vec<(String, String)>, flags: &[Flag]) {
    let mut broken = Vec::new();
    for flag in flags {
        for value in &flag.values {
            let mut cmd = common::flarecast();
            cmd.args(base)
                .arg(format!("{}={value}", flag.name))
                .envs(env())
                .timeout(Duration::from_secs(120));
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let one_line = err.lines().count() == 1 && err.starts_with("flarecast: error: ");
            let ok = match out.status.code() {
                Some(0) => true,
                Some(1) => one_line,
                _ => false,
            };
            if !ok {
                broken.push(format!(
                    "{}={value}: exit {:?}: {}",
                    flag.name,
                    out.status.code(),
                    err.lines().take(3).collect::<Vec<_>>().join(" | ")
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

fn args(list: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    list.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

/// A process group of one rank (torchrun's variables) on a free loopback port.
fn group_of_one() -> Vec<(String, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    [
        ("RANK", "0".to_string()),
        ("WORLD_SIZE", "1".to_string()),
        ("LOCAL_RANK", "0".to_string()),
        ("MASTER_ADDR", "127.0.0.1".to_string()),
        ("MASTER_PORT", port.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn train_flags() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let base = args(&[
        &"train",
        &"--devices",
        &"cpu",
        &"--images",
        &missing,
        &"--labels",
        &missing,
        &"--out",
        &dir.path().join("out"),
    ]);
    holds(
        &base,
        &no_env,
        &[
            count("--epochs", Recipe::EPOCHS),
            count("--batch-size", Recipe::BATCH_SIZE),
            count("--lr-step", Recipe::LR_STEP),
            count("--warmup-epochs", Recipe::WARMUP_EPOCHS),
            count("--patience", Recipe::PATIENCE),
            count("--workers", LoaderConfig::WORKERS),
            count("--fold", Fold::NUMBER),
            im_size(),
            whole("--seed", 0, u64::MAX.into()),
        ],
    );
    holds(
        &base,
        &group_of_one,
        &[span("--dist-timeout", Group::TIMEOUT)],
    );
}

#[test]
fn forecast_flags() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pth");
    let out = dir.path().join("out");
    let base = args(&[
        &"forecast",
        &"--device",
        &"cpu",
        &"--model",
        &missing,
        &"--out",
        &out,
    ]);
    holds(
        &base,
        &no_env,
        &[
            span("--every", Schedule::EVERY),
            span("--max-age", source::MAX_AGE),
        ],
    );
    let mut every = base.clone();
    every.extend(args(&[&"--every", &"1h"]));
    holds(
        &every,
        &no_env,
        &[
            span("--timeout", Schedule::TIMEOUT),
            span("--max-age", source::MAX_AGE),
            count("--cycles", Schedule::CYCLES),
        ],
    );
    holds(
        &base,
        &no_env,
        &[count("--batch-size", inference::BATCH_SIZE), im_size()],
    );
}

#[test]
fn model_command_flags() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pth");
    let image = dir.path().join("missing.jpg");
    for command in ["predict", "attention", "explain"] {
        let base = args(&[&command, &"--device", &"cpu", &"--model", &missing, &image]);
        let mut flags = vec![count("--batch-size", inference::BATCH_SIZE), im_size()];
        if command != "predict" {
            flags.push(count("--gradcam-block", Options::GRADCAM_BLOCK));
        }
        if command == "explain" {
            flags.extend([
                count("--steps", Options::STEPS),
                count("--window", Options::WINDOW),
                count("--stride", Options::STRIDE),
            ]);
        }
        holds(&base, &no_env, &flags);
    }
    let base = args(&[
        &"evaluate",
        &"--device",
        &"cpu",
        &"--model",
        &missing,
        &"--images",
        &dir.path(),
        &"--labels",
        &dir.path(),
    ]);
    holds(&base, &no_env, &[count("--fold", Fold::NUMBER)]);
}

#[test]
fn data_command_flags() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let out = |name: &str| dir.path().join(name);
    let base = args(&[
        &"label",
        &"--catalog",
        &missing,
        &"--images",
        &missing,
        &"--out",
        &out("labels"),
    ]);
    holds(
        &base,
        &no_env,
        &[
            span("--cadence", label::Config::CADENCE),
            span("--window", label::Config::WINDOW),
        ],
    );
    // An empty range: planned at once, nothing requested.
    let base = args(&[
        &"download",
        &"--start",
        &"2014-01-01T00:00:00",
        &"--end",
        &"2014-01-01T00:00:00",
        &"--dry-run",
        &"--out",
        &out("jp2"),
    ]);
    holds(
        &base,
        &no_env,
        &[
            span("--cadence", helioviewer::Options::CADENCE),
            span("--tolerance", helioviewer::Options::TOLERANCE),
            span("--timeout", http::TIMEOUT),
            span("--backoff", http::BACKOFF),
            count("--retries", http::RETRIES),
            count("--concurrency", helioviewer::Options::CONCURRENCY),
        ],
    );
    // ncei needs --start and --end: refused before any request.
    let base = args(&[
        &"download",
        &"catalog",
        &"--source",
        &"ncei",
        &"--out",
        &out("catalog.csv"),
    ]);
    holds(
        &base,
        &no_env,
        &[
            span("--timeout", http::TIMEOUT),
            span("--backoff", http::BACKOFF),
            count("--retries", http::RETRIES),
        ],
    );
    let base = args(&[&"convert", &"--input", &missing, &"--output", &out("jpg")]);
    holds(
        &base,
        &no_env,
        &[
            count("--size", convert::Options::SIZE),
            count("--jobs", convert::Options::JOBS),
            count("--quality", convert::Options::QUALITY),
        ],
    );
    let base = args(&[&"convert-weights", &missing, &out("w.safetensors")]);
    holds(&base, &no_env, &[im_size()]);
    // synth refuses to write into a file.
    std::fs::write(out("file"), "").unwrap();
    let base = args(&[&"synth", &"--out", &out("file").join("archive")]);
    holds(
        &base,
        &no_env,
        &[
            count("--days", synth::Params::DAYS),
            span("--cadence", synth::Params::CADENCE),
            count("--size", synth::Params::SIZE),
        ],
    );
    assert_eq!(std::fs::read(out("file")).unwrap(), b"");
}

#[test]
fn bench_flags() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let net = || [count("--batch-size", Recipe::BATCH_SIZE), im_size()];
    // No such mode: refused after the flags are read, before any network runs.
    let base = args(&[&"bench", &"model", &"--device", &"cpu", &"--mode", &"none"]);
    holds(&base, &no_env, &net());
    holds(
        &base,
        &no_env,
        &[
            count("--iters", bench::model::ITERS),
            count("--warmup", bench::model::WARMUP),
            count("--rounds", bench::model::ROUNDS),
            count("--threads", bench::model::THREADS),
        ],
    );
    let base = args(&[&"bench", &"train", &"--device", &"cpu", &"--jpg", &missing]);
    holds(&base, &no_env, &net());
    holds(
        &base,
        &no_env,
        &[
            count("--batches", bench::train::TrainBenchConfig::BATCHES),
            count("--workers", LoaderConfig::WORKERS),
        ],
    );
    holds(
        &base,
        &group_of_one,
        &[span("--dist-timeout", Group::TIMEOUT)],
    );
    let base = args(&[&"bench", &"download", &"--jp2", &missing]);
    holds(
        &base,
        &no_env,
        &[
            count("--images", bench::download::IMAGES),
            span("--latency", bench::download::LATENCY),
            count("--concurrency", helioviewer::Options::CONCURRENCY),
        ],
    );
    let base = args(&[&"bench", &"label", &"--catalog", &missing]);
    holds(&base, &no_env, &[count("--repeat", bench::label::REPEAT)]);
    let base = args(&[&"bench", &"convert", &"--jp2", &missing]);
    holds(
        &base,
        &no_env,
        &[
            count("--files", bench::convert::FILES),
            count("--size", convert::Options::SIZE),
        ],
    );
}

#[test]
fn absurd_group_timeouts_and_sizes_are_refused_naming_the_value_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    let out = dir.path().join("models");
    let train = |timeout: &str, env: Vec<(String, String)>| {
        let run = common::flarecast()
            .args([
                "train",
                "--devices",
                "cpu",
                "--epochs",
                "1",
                "--im-size",
                "192",
            ])
            .args(["--batch-size", "8", "--dist-timeout", timeout])
            .arg("--images")
            .arg(dir.path().join("images"))
            .arg("--labels")
            .arg(dir.path().join("labels"))
            .arg("--out")
            .arg(&out)
            .envs(env)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!out.exists(), "{err}");
        err
    };
    for t in ["500000000000y", "300y"] {
        assert_eq!(
            train(t, group_of_one()),
            format!("flarecast: error: --dist-timeout: group timeout {t} is outside 1s..=7d\n")
        );
    }
    let mut env = group_of_one();
    env.retain(|(k, _)| k != "WORLD_SIZE");
    env.push(("WORLD_SIZE".into(), "4294967297".into()));
    assert_eq!(
        train("10m", env),
        "flarecast: error: environment variable WORLD_SIZE=\"4294967297\": group size \
         4294967297 is outside 1..=65536\n"
    );
}
