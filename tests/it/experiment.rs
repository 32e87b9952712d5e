//! `flarecast experiment` end to end on a synthetic archive (2 folds x 2 networks, one
//! epoch at 192x192 in float32): the local executor with a run killed during its second
//! cell and resumed, the SLURM executor against a one-node cluster started by
//! `scripts/slurm-local.sh` (its uninterrupted run must equal the local one), and `report`
//! on the paper's own prediction files.

use crate::common;

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every cell's train flags beyond [`common::cell_train_flags`] (one epoch, the network's
/// smallest input, small batches, float32 on the CPU), so every executor computes the
/// same weights.
const TRAIN_FLAGS: [&str; 4] = ["--lr", "0.05", "--weight-decay", "0.0005"];

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_string()
}

/// The synthetic archive and its labels: images every 12 h from 2014-03-24 to 2014-04-08,
/// so fold 1 (January-March) and fold 2 (April-June) each validate on 16 instances (5 and
/// 3 positive) and train on the other 16.
struct Archive {
    images: PathBuf,
    labels: PathBuf,
}

fn make_archive(dir: &Path) -> Archive {
    common::synth_and_label_12h(dir, "2014-03-24T00:00:00", "16", "2014-04-08T12:00:00");
    Archive {
        images: dir.join("archive/images"),
        labels: dir.join("labels"),
    }
}

fn run_args(archive: &Archive, labels: &Path, out: &Path, executor: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "experiment",
        "run",
        "--images",
        &s(&archive.images),
        "--labels",
        &s(labels),
        "--out",
        &s(out),
        "--folds",
        "1,2",
        "--arch",
        "attention,standard",
        "--seeds",
        "4",
        "--executor",
        executor,
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    v.push("--".into());
    v.extend(
        common::cell_train_flags()
            .iter()
            .chain(&TRAIN_FLAGS)
            .map(|x| x.to_string()),
    );
    v
}

fn json_of(args: &[&str]) -> Value {
    let out = common::run_ok(args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "flarecast {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn status_json(out: &Path) -> Value {
    json_of(&["experiment", "status", "--out", &s(out), "--json"])
}

fn states(out: &Path) -> Vec<String> {
    status_json(out)["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap().to_string())
        .collect()
}

fn report_json(out: &Path) -> Value {
    json_of(&["experiment", "report", "--out", &s(out), "--json"])
}

/// The cells' files in the experiment's layout.
const CELLS: [(&str, u32); 4] = [
    ("attention", 1),
    ("attention", 2),
    ("no_attention", 1),
    ("no_attention", 2),
];

fn cell_file(out: &Path, arch: &str, fold: u32, what: &str) -> PathBuf {
    out.join(arch)
        .join("seed4")
        .join(format!("fold{fold}_{what}"))
}

fn tensors(path: &Path) -> HashMap<String, tch::Tensor> {
    flarecast::model::weights::read_weights(path)
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
        .0
        .into_iter()
        .collect()
}

/// Both experiments wrote the same weights and the same predictions in every cell.
fn assert_same_results(a: &Path, b: &Path) {
    for (arch, fold) in CELLS {
        for which in ["best.safetensors", "final.safetensors"] {
            let (ta, tb) = (
                tensors(&cell_file(a, arch, fold, which)),
                tensors(&cell_file(b, arch, fold, which)),
            );
            assert_eq!(ta.len(), tb.len());
            for (k, t) in &ta {
                assert!(t.equal(&tb[k]), "{arch} fold {fold} {which}: {k} differs");
            }
        }
        let read = |d: &Path| std::fs::read_to_string(cell_file(d, arch, fold, "res.csv")).unwrap();
        assert_eq!(read(a), read(b), "{arch} fold {fold}: predictions differ");
    }
}

/// A report's rows without the paths that name their experiment.
fn rows_without_paths(report: &Value) -> Vec<Value> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("predictions");
            r
        })
        .collect()
}

/// The local run of the grid, killed during its second cell and run again, shared by the
/// tests (training is what costs): its results, and what `status` showed after the kill.
struct Reference {
    _dir: tempfile::TempDir,
    archive: Archive,
    out: PathBuf,
    report: Value,
    states_after_kill: Vec<String>,
    status_after_kill: String,
    rerun_stdout: String,
}

fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let archive = make_archive(dir.path());
        let out = dir.path().join("local");
        let args = run_args(&archive, &archive.labels, &out, "local");
        kill_during_cell(&args, &out, 1);
        // The cell's process died with `run` (its lock is free): interrupted, not running.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = states(&out);
        while seen[1] == "running" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            seen = states(&out);
        }
        let status_after_kill = String::from_utf8_lossy(
            &common::run_ok(&["experiment", "status", "--out", &s(&out)]).stdout,
        )
        .into_owned();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let rerun = common::run_ok(&args);
        let report = report_json(&out);
        Reference {
            _dir: dir,
            archive,
            out,
            report,
            states_after_kill: seen,
            status_after_kill,
            rerun_stdout: String::from_utf8_lossy(&rerun.stdout).into_owned(),
        }
    })
}

/// Runs the grid until cell `index` has started `train`, then kills `run`.
fn kill_during_cell(args: &[String], out: &Path, index: usize) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("flarecast"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (arch, fold) = CELLS[index];
    let log = out.join(arch).join("seed4").join(format!("fold{fold}.log"));
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        assert!(Instant::now() < deadline, "cell {index} never started");
        if let Some(exit) = child.try_wait().unwrap() {
            panic!("run ended ({exit}) before cell {index} started");
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&format!("train --fold {fold}")) && states(out)[index] == "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The local executor: four cells, a run killed during its second cell and run again (it
/// goes on from there; the SLURM test checks its results equal those of an uninterrupted
/// run), the report's rows and means, and the bar chart.
#[test]
fn local_executor_runs_the_four_cells_resumes_a_killed_run_and_reports_them() {
    let r = reference();
    assert_eq!(
        r.states_after_kill,
        ["done", "interrupted", "pending", "pending"]
    );
    assert!(
        r.status_after_kill
            .contains("2 pending, 1 interrupted, 1 done"),
        "{}",
        r.status_after_kill
    );
    assert!(
        !r.rerun_stdout.contains("cell 0 of 4"),
        "{}",
        r.rerun_stdout
    );
    for k in 1..4 {
        assert!(
            r.rerun_stdout.contains(&format!("cell {k} of 4")),
            "{}",
            r.rerun_stdout
        );
    }
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(r.out.join("experiment.json")).unwrap())
            .unwrap();
    let cells = plan["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    assert_eq!(
        cells[3]["command"],
        serde_json::json!(["experiment", "cell", "--out", s(&r.out), "--index", "3"])
    );
    assert_eq!(states(&r.out), ["done"; 4]);

    let rows = r.report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (row, (arch, fold)) in rows.iter().zip(CELLS) {
        assert_eq!(row["arch"], arch);
        assert_eq!(row["fold"], fold);
        assert_eq!(row["state"], "done");
        // The row's counts are those of the cell's own prediction file.
        let res = std::fs::read_to_string(cell_file(&r.out, arch, fold, "res.csv")).unwrap();
        let n = res.lines().count() as u64 - 1;
        assert_eq!(n, 16);
        assert_eq!(row["n"], n);
        let sum: u64 = ["tp", "fp", "tn", "fn"]
            .iter()
            .map(|k| row[k].as_u64().unwrap())
            .sum();
        assert_eq!(sum, n);
        assert!(row["tss"].is_f64(), "{row}");
    }
    // Mean and sample standard deviation over the two folds of each network.
    let summaries = r.report["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2);
    for (k, sum) in summaries.iter().enumerate() {
        let tss: Vec<f64> = rows[2 * k..2 * k + 2]
            .iter()
            .map(|r| r["tss"].as_f64().unwrap())
            .collect();
        let mean = (tss[0] + tss[1]) / 2.0;
        let std = ((tss[0] - mean).powi(2) + (tss[1] - mean).powi(2)).sqrt();
        assert!((sum["mean"]["tss"].as_f64().unwrap() - mean).abs() < 1e-12);
        assert!((sum["std"]["tss"].as_f64().unwrap() - std).abs() < 1e-12);
        assert_eq!(sum["folds"], serde_json::json!([1, 2]));
        // The labels hold each fold's full table: the location analysis pools both.
        assert_eq!(sum["location"]["folds"], serde_json::json!([1, 2]));
    }
    assert!(r.report["std"].as_str().unwrap().contains("n - 1"));

    // Once more: every cell is done, nothing runs.
    let args = run_args(&r.archive, &r.archive.labels, &r.out, "local");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again = common::run_ok(&args);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(!text.contains(" of 4 ("), "{text}");
    // A different grid is refused, unless extended.
    let mut other = run_args(&r.archive, &r.archive.labels, &r.out, "local");
    let i = other.iter().position(|a| a == "1,2").unwrap();
    other[i] = "1,2,3".into();
    let refused = common::flarecast().args(&other).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--extend adds the new cells"), "{err}");

    // The bar chart of TSS and HSS2.
    let plots = tempfile::tempdir().unwrap();
    let out = common::run_ok(&[
        "experiment",
        "report",
        "--out",
        &s(&r.out),
        "--plots",
        &s(plots.path()),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attention seed 4"), "{text}");
    let png = image::open(plots.path().join("skill_by_fold.png")).unwrap();
    assert!(png.width() >= 600);
}

/// A one-node SLURM cluster of `scripts/slurm-local.sh`, stopped (by the script, by its
/// daemons' pids) when dropped, also when the test fails.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

fn slurm_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh")
}

impl Cluster {
    fn start(dir: PathBuf) -> Cluster {
        let out = Command::new("bash")
            .arg(slurm_script())
            .arg("start")
            .env("FLARECAST_SLURM_DIR", &dir)
            .output()
            .expect("run scripts/slurm-local.sh");
        let cluster = Cluster {
            conf: dir.join("slurm.conf"),
            dir,
        };
        assert!(
            out.status.success(),
            "SLURM could not start (the test needs root and `scripts/slurm-local.sh install`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(slurm_script())
            .arg("stop")
            .env("FLARECAST_SLURM_DIR", &self.dir)
            .status();
    }
}

/// `flarecast ARGS` against the cluster; its output.
fn with_cluster(cluster: &Cluster, args: &[String]) -> std::process::Output {
    common::flarecast()
        .args(args)
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .unwrap()
}

/// Polls `status` until `stop` is set, collecting every state each cell showed.
fn watch_states(
    out: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<BTreeSet<String>>> {
    std::thread::spawn(move || {
        let mut seen = vec![BTreeSet::new(); 4];
        loop {
            // One last look after the stop: the final states come just before it.
            let stopping = stop.load(std::sync::atomic::Ordering::SeqCst);
            let status = status_json(&out);
            for (k, c) in status["cells"].as_array().unwrap().iter().enumerate() {
                seen[k].insert(c["state"].as_str().unwrap().to_string());
            }
            if stopping {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    })
}

/// The SLURM executor's uninterrupted run gives the weights, predictions and report of
/// the killed and resumed local run; status shows every state; failed cells show their log.
#[test]
fn slurm_executor_matches_the_local_one_and_reports_a_failed_cell() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    // munged (as the munge user) needs every folder above its socket to be searchable.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cluster = Cluster::start(dir.path().join("slurm"));
    // A space, quotes and a `%` in the folder: sbatch reads its task logs' name and the
    // shell its command as they are.
    let out = dir.path().join("slurm exp 'a' \"b\" %j");
    // A copy of the labels without fold 2's training split: fold 2's cells fail.
    let labels = dir.path().join("labels");
    copy_dir(&r.archive.labels, &labels);
    let hidden = labels.join("simplified_data_labels/Fold2_train.csv");
    let aside = dir.path().join("Fold2_train.csv.aside");
    std::fs::rename(&hidden, &aside).unwrap();

    let mut args = run_args(&r.archive, &labels, &out, "slurm");
    let dash = args.iter().position(|a| a == "--").unwrap();
    args.splice(
        dash..dash,
        ["--wait".to_string(), "--jobs".into(), "2".into()],
    );
    let mut dry = args.clone();
    dry.insert(dash, "--dry-run".into());
    let planned = with_cluster(&cluster, &dry);
    assert!(
        planned.status.success(),
        "{}",
        String::from_utf8_lossy(&planned.stderr)
    );
    assert_eq!(states(&out), ["pending"; 4]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_states(out.clone(), stop.clone());
    let first = with_cluster(&cluster, &args);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_eq!(first.status.code(), Some(1), "{err}");
    assert!(err.contains("2 of 4 cells failed"), "{err}");
    let script = std::fs::read_to_string(out.join("slurm/experiment.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2\n"), "{script}");

    // The failed cells: failed, with their SLURM log, which holds train's error.
    let status = status_json(&out);
    let cells = status["cells"].as_array().unwrap();
    for (k, c) in cells.iter().enumerate() {
        let want = if k % 2 == 0 { "done" } else { "failed" };
        assert_eq!(c["state"], want, "cell {k}: {c}");
    }
    for k in [1, 3] {
        let log = PathBuf::from(cells[k]["log"].as_str().unwrap());
        assert_eq!(log, out.join(format!("slurm/cell-{k}.log")));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("Fold2_train.csv"), "{text}");
        assert!(cells[k]["error"].as_str().unwrap().contains("train failed"));
        assert!(err.contains(&s(&log)), "{err}");
    }
    let table = String::from_utf8_lossy(
        &common::run_ok(&["experiment", "status", "--out", &s(&out)]).stdout,
    )
    .into_owned();
    assert!(table.contains(&s(&out.join("slurm/cell-1.log"))), "{table}");

    // Fixed, a rerun submits only the failed cells, and waits for them.
    std::fs::rename(&aside, &hidden).unwrap();
    let second = with_cluster(&cluster, &args);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    let script = std::fs::read_to_string(out.join("slurm/experiment.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=1,3%2\n"), "{script}");
    let subs: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("slurm/submissions.json")).unwrap())
            .unwrap();
    assert_eq!(subs[1]["cells"], serde_json::json!([1, 3]));
    assert_eq!(states(&out), ["done"; 4]);
    let all: BTreeSet<&str> = seen.iter().flatten().map(String::as_str).collect();
    for state in ["submitted", "running", "done", "failed"] {
        assert!(all.contains(state), "status never showed {state}: {seen:?}");
    }
    for k in [1, 3] {
        assert!(
            seen[k].contains("failed") && seen[k].contains("done"),
            "cell {k}: {:?}",
            seen[k]
        );
    }

    assert_same_results(&r.out, &out);
    assert_eq!(
        rows_without_paths(&report_json(&out)),
        rows_without_paths(&r.report)
    );
    assert_eq!(report_json(&out)["summaries"], r.report["summaries"]);
    drop(cluster);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        // The label folder's tables are links into its hidden folder: copy what they name.
        if std::fs::metadata(e.path()).unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The paper's prediction files in the experiment's layout.
fn paper_layout(dir: &Path) -> PathBuf {
    let root = dir.join("paper");
    let seed = root.join("attention/seed4");
    std::fs::create_dir_all(&seed).unwrap();
    for k in [1, 3] {
        std::fs::copy(
            common::realdata().join(format!("original_results/attn_fold{k}_res.csv")),
            seed.join(format!("fold{k}_res.csv")),
        )
        .unwrap();
    }
    let details = dir.join("details");
    std::fs::create_dir_all(&details).unwrap();
    std::fs::copy(
        common::realdata().join("original_labels/Fold1_val.csv"),
        details.join("Fold1_val.csv"),
    )
    .unwrap();
    root
}

#[test]
fn report_reproduces_the_papers_folds_from_its_own_prediction_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = paper_layout(dir.path());
    let details = dir.path().join("details");
    let report = json_of(&[
        "experiment",
        "report",
        "--out",
        &s(&root),
        "--details",
        &s(&details),
        "--json",
    ]);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // The paper's table: attention folds 1 and 3.
    for (row, (fold, tp, fp, tn, fn_, tss, hss2)) in rows.iter().zip([
        (1, 1760, 2120, 10334, 574, 0.5838, 0.4600),
        (3, 1788, 3163, 11145, 576, 0.5353, 0.3674),
    ]) {
        assert_eq!(row["fold"], fold);
        assert_eq!(row["state"], "done");
        for (key, want) in [("tp", tp), ("fp", fp), ("tn", tn), ("fn", fn_)] {
            assert_eq!(row[key], want, "fold {fold} {key}");
        }
        assert!((row["tss"].as_f64().unwrap() - tss).abs() < 5e-5, "{row}");
        assert!((row["hss2"].as_f64().unwrap() - hss2).abs() < 5e-5, "{row}");
    }
    // Fold 1's location counts (fold 3 has no full label table here).
    let loc = &report["summaries"][0]["location"];
    assert_eq!(loc["folds"], serde_json::json!([1]));
    assert_eq!(loc["without_details"], serde_json::json!([3]));
    let zone = |class: &str, z: &str| {
        (
            loc[class][z]["pos"].as_u64().unwrap(),
            loc[class][z]["neg"].as_u64().unwrap(),
        )
    };
    assert_eq!(zone("X", "central"), (96, 0));
    assert_eq!(zone("X", "limb"), (24, 0));
    assert_eq!(zone("M", "central"), (1331, 286));
    assert_eq!(zone("M", "limb"), (309, 288));
    assert_eq!(loc["unmatched"], 0);

    // Beside the paper's figures.
    let text = String::from_utf8_lossy(
        &common::run_ok(&[
            "experiment",
            "report",
            "--out",
            &s(&root),
            "--details",
            &s(&details),
            "--compare-paper",
        ])
        .stdout,
    )
    .into_owned();
    assert!(text.contains("0.5838 / 0.4600"), "{text}");
    assert!(text.contains("paper X"), "{text}");
}

/// A prediction file with the confusion counts of a published fold.
fn file_with_counts(path: &Path, tp: u64, fp: u64, tn: u64, fn_: u64) {
    let mut csv = String::from("timestamp,flare_prob,target\n");
    let mut i = 0u64;
    for (n, prob, target) in [(tp, 0.9, 1), (fp, 0.9, 0), (tn, 0.1, 0), (fn_, 0.1, 1)] {
        for _ in 0..n {
            let t = chrono::NaiveDate::from_ymd_opt(2011, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                + chrono::Duration::hours(i as i64);
            let rel = flarecast::instant::Instant::new(t).relative_path("jpg");
            csv += &format!("{rel},{prob},{target}\n");
            i += 1;
        }
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, csv).unwrap();
}

#[test]
fn report_of_all_eight_published_folds_gives_the_papers_means() {
    let dir = tempfile::tempdir().unwrap();
    let published = [
        (
            "attention",
            [
                (1760, 2120, 10334, 574),
                (1205, 3267, 10588, 407),
                (1788, 3163, 11145, 576),
                (2058, 3460, 10572, 632),
            ],
        ),
        (
            "no_attention",
            [
                (1483, 1972, 10482, 851),
                (639, 1732, 12123, 973),
                (620, 1214, 13094, 1744),
                (1856, 2722, 11310, 834),
            ],
        ),
    ];
    for (arch, folds) in published {
        for (k, (tp, fp, tn, fn_)) in folds.into_iter().enumerate() {
            file_with_counts(
                &dir.path()
                    .join(format!("{arch}/seed4/fold{}_res.csv", k + 1)),
                tp,
                fp,
                tn,
                fn_,
            );
        }
    }
    let report = json_of(&["experiment", "report", "--out", &s(dir.path()), "--json"]);
    let summaries = report["summaries"].as_array().unwrap();
    let rounded = |v: &Value, d: i32| (v.as_f64().unwrap() * 10f64.powi(d)).round() / 10f64.powi(d);
    // The paper prints 0.537 +- 0.03 and 0.370 (attention), 0.355 and 0.302 (standard CNN;
    // its 0.302 is the mean of its per-fold figures rounded to 4 decimals, 0.30150).
    assert_eq!(summaries[0]["arch"], "attention");
    assert_eq!(rounded(&summaries[0]["mean"]["tss"], 4), 0.5373);
    assert_eq!(rounded(&summaries[0]["mean"]["hss2"], 4), 0.3696);
    // Sample standard deviation (n - 1); the population one would be 0.0282.
    assert_eq!(rounded(&summaries[0]["std"]["tss"], 4), 0.0326);
    assert_eq!(summaries[1]["arch"], "no_attention");
    assert_eq!(rounded(&summaries[1]["mean"]["tss"], 4), 0.3555);
    assert_eq!(rounded(&summaries[1]["mean"]["hss2"], 4), 0.3015);
}

#[test]
fn bad_experiments_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let fail = |args: &[&str]| {
        let out = common::flarecast().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err
    };
    let empty = s(dir.path());
    let err = fail(&["experiment", "report", "--out", &empty]);
    assert!(err.contains("no experiment.json"), "{err}");
    let err = fail(&["experiment", "status", "--out", &empty]);
    assert!(err.contains("no experiment here"), "{err}");
    let run = |out: &str, more: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "experiment",
            "run",
            "--images",
            &empty,
            "--labels",
            &empty,
            "--out",
            out,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(more.iter().map(|x| x.to_string()));
        v
    };
    let x = s(&dir.path().join("x"));
    let err = fail(
        &run(&x, &["--", "--fold", "2"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        err.contains("train flag --fold is set by the experiment"),
        "{err}"
    );
    let err = fail(
        &run(&x, &["--folds", "5"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains("--folds") && err.contains("fold 5"), "{err}");
    // Without sbatch on the PATH the SLURM executor says so.
    let out = common::flarecast()
        .args(run(&s(&dir.path().join("y")), &["--executor", "slurm"]))
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sbatch is not on the PATH"), "{err}");
}

/// `experiment report --calibrate platt` on the paper's own attention predictions (folds 1
/// and 3, real validation quarters): each fold calibrated by a map fitted on the other
/// fold alone. The raw P(FL) runs high (balanced training epochs against a 14-16 % event
/// rate) and scores below climatology; the map fitted on the other quarter turns the BSS
/// positive in both, and TSS and HSS2 stay the raw probability's.
#[test]
fn cross_fold_calibration_of_the_papers_predictions_scores_above_climatology() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("attention/seed1");
    std::fs::create_dir_all(&seed).unwrap();
    for k in [1, 3] {
        let src = common::realdata().join(format!("original_results/attn_fold{k}_res.csv"));
        std::fs::copy(src, seed.join(format!("fold{k}_res.csv"))).unwrap();
    }
    let out = s(dir.path());
    let plain = json_of(&["experiment", "report", "--out", &out, "--json"]);
    assert!(plain["summaries"][0]
        .get("cross_fold_calibration")
        .is_none());
    let calibrated = [
        "experiment",
        "report",
        "--out",
        &out,
        "--calibrate",
        "platt",
    ];
    let report = json_of(&[&calibrated[..], &["--json"]].concat());
    let summary = &report["summaries"][0];
    assert_eq!(
        summary["mean"], plain["summaries"][0]["mean"],
        "TSS/HSS2 untouched"
    );
    let cal = &summary["cross_fold_calibration"];
    assert_eq!(cal["method"], "platt");
    let folds = cal["folds"].as_array().unwrap();
    let near = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 5e-4;
    // (fold, fitted on, n, raw BSS, calibrated BSS), computed independently with numpy.
    let expect = [
        (1, 3, 14788, -0.4157, 0.2583),
        (3, 1, 16672, -0.7172, 0.1578),
    ];
    assert_eq!(folds.len(), 2);
    for (f, (fold, other, n, raw, calibrated)) in folds.iter().zip(expect) {
        assert_eq!(f["fold"], fold);
        assert_eq!(f["fitted_on_folds"], serde_json::json!([other]));
        assert_ne!(
            f["calibration"]["instances"], n,
            "never fitted on its own fold"
        );
        assert!(near(&f["raw"]["bss"], raw), "{f}");
        assert!(near(&f["calibrated"]["bss"], calibrated), "{f}");
    }
    assert!(near(&cal["raw_bss"], (-0.4157 - 0.7172) / 2.0));
    assert!(near(&cal["calibrated_bss"], (0.2583 + 0.1578) / 2.0));
    let text = common::run_ok(&calibrated);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("fitted on the other folds' predictions"),
        "{text}"
    );
}

/// A cross-fold calibration with too few events in the other folds is not fitted: the
/// report says why, naming the counts, and keeps the raw scores; a method it does not know
/// is refused naming the value.
#[test]
fn cross_fold_calibration_refuses_too_few_events_and_unknown_methods() {
    let dir = tempfile::tempdir().unwrap();
    for k in [1, 2] {
        let path = dir.path().join(format!("attention/seed1/fold{k}_res.csv"));
        file_with_counts(&path, 2, 3, 40, 1);
    }
    let out = s(dir.path());
    let report = json_of(&[
        "experiment",
        "report",
        "--out",
        &out,
        "--calibrate",
        "isotonic",
        "--json",
    ]);
    let cal = &report["summaries"][0]["cross_fold_calibration"];
    assert_eq!(cal["folds"], serde_json::json!([]));
    assert_eq!(cal["calibrated_bss"], Value::Null);
    let why = cal["unavailable"].as_str().unwrap();
    assert!(
        why.contains("the predictions of fold 2 has 3 flaring and 43 non-flaring instances")
            && why.contains("at least 10 of each"),
        "{why}"
    );
    assert!(report["summaries"][0]["mean"]["tss"].is_number());
    let bad = common::flarecast()
        .args([
            "experiment",
            "report",
            "--out",
            &out,
            "--calibrate",
            "sigmoid",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("sigmoid") && err.contains("platt or isotonic"),
        "{err}"
    );
}

fn s_ref(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Runs flarecast `args` and asserts the failure contract: exit 1 and one line on stderr,
/// which it returns.
fn fails(args: &[&str]) -> String {
    let out = common::flarecast().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    err
}

/// `experiment run ... --dry-run` of the attention network over folds 1 and 2 into `out`,
/// on empty image and label folders beside it (a cell of it fails at once, in `train`).
fn dry_plan(out: &Path, more: &[&str]) -> Vec<String> {
    let dir = out.parent().unwrap();
    let (images, labels) = (dir.join("images"), dir.join("labels"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    let mut args: Vec<String> = [
        "experiment",
        "run",
        "--images",
        &s(&images),
        "--labels",
        &s(&labels),
        "--out",
        &s(out),
        "--folds",
        "1,2",
        "--arch",
        "attention",
        "--seeds",
        "4",
        "--dry-run",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    args.extend(more.iter().map(|x| x.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_ok(&argv);
    args
}

fn cp_a(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success(), "cp -a {} {}", from.display(), to.display());
}

/// `--out` is the only root a copied experiment reads and writes: its cell records,
/// locks and logs in the copy, its status and report from the copy's files, its rerun
/// recording the copy's commands; the original is never touched.
#[test]
fn a_copied_experiment_runs_and_reports_its_own_files_and_leaves_the_original_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (e3, e3c) = (dir.path().join("e3"), dir.path().join("e3c"));
    let args = dry_plan(&e3, &[]);
    cp_a(&e3, &e3c);
    let original = common::tree::listing(&e3);

    // Train fails on the empty labels: the failure is recorded in the copy.
    let cell = common::flarecast()
        .args(["experiment", "cell", "--out", &s(&e3c), "--index", "0"])
        .output()
        .unwrap();
    assert_eq!(cell.status.code(), Some(1));
    assert_eq!(common::tree::listing(&e3), original);
    assert!(e3c.join("attention/seed4/fold1_cell.json").is_file());
    assert_eq!(states(&e3), ["pending", "pending"]);
    let status = status_json(&e3c);
    let c0 = &status["cells"][0];
    assert_eq!(c0["state"], "failed", "{c0}");
    assert_eq!(c0["log"], s(&e3c.join("attention/seed4/fold1.log")));
    let report = report_json(&e3c);
    assert_eq!(report["rows"][0]["log"], c0["log"]);

    // A rerun of the copy records its own commands.
    let mut again = args.clone();
    let i = again.iter().position(|a| *a == s(&e3)).unwrap();
    again[i] = s(&e3c);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    common::run_ok(&again);
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(e3c.join("experiment.json")).unwrap())
            .unwrap();
    assert_eq!(plan["out"], s(&e3c));
    assert_eq!(
        plan["cells"][1]["command"],
        serde_json::json!(["experiment", "cell", "--out", s(&e3c), "--index", "1"])
    );
    assert_eq!(common::tree::listing(&e3), original);
}

/// A copy of the finished local experiment with one cell's predictions removed: the
/// cell, run in the copy, evaluates the copy's checkpoint into the copy, as the original
/// did, and the original's cells are untouched.
#[test]
fn a_cell_of_a_copied_finished_experiment_runs_inside_the_copy() {
    let r = reference();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    cp_a(&r.out, &copy);
    let res = cell_file(&copy, "attention", 1, "res.csv");
    std::fs::remove_file(&res).unwrap();
    std::fs::remove_file(cell_file(&copy, "attention", 1, "cell.json")).unwrap();
    // Other tests rerun the original's grid (rewriting experiment.json): its cells' files
    // are what must not change.
    let cells = |root: &Path| {
        [
            common::tree::listing(&root.join("attention")),
            common::tree::listing(&root.join("no_attention")),
        ]
    };
    let original = cells(&r.out);
    common::run_ok(&["experiment", "cell", "--out", &s(&copy), "--index", "0"]);
    assert_eq!(cells(&r.out), original);
    assert_eq!(
        std::fs::read_to_string(&res).unwrap(),
        std::fs::read_to_string(cell_file(&r.out, "attention", 1, "res.csv")).unwrap()
    );
    let report = report_json(&copy);
    for row in report["rows"].as_array().unwrap() {
        let p = row["predictions"].as_str().unwrap();
        assert!(p.starts_with(&s(&copy)), "{row}");
    }
    assert_eq!(rows_without_paths(&report), rows_without_paths(&r.report));
}

/// A cell folder recorded outside the experiment (absolute, or climbing out through
/// `..`) is refused by every command, naming the cell, and nothing is written anywhere.
#[test]
fn a_recorded_cell_folder_outside_the_experiment_is_refused_naming_the_cell() {
    let dir = tempfile::tempdir().unwrap();
    let e = dir.path().join("e");
    let args = dry_plan(&e, &[]);
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let plan_file = e.join("experiment.json");
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    for bad in [
        s(&outside),
        "../outside".into(),
        "attention/../../outside".into(),
    ] {
        let mut plan = recorded.clone();
        plan["cells"][0]["dir"] = Value::String(bad.clone());
        std::fs::write(&plan_file, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
        let before = common::tree::listing(dir.path());
        let runs: [Vec<&str>; 4] = [
            vec!["experiment", "cell", "--out", s_ref(&e), "--index", "0"],
            vec!["experiment", "status", "--out", s_ref(&e)],
            vec!["experiment", "report", "--out", s_ref(&e)],
            args.iter().map(String::as_str).collect(),
        ];
        for argv in runs {
            let err = fails(&argv);
            assert!(
                err.contains("cell 0 (attention seed 4 fold 1)") && err.contains(&bad),
                "{argv:?}: {err}"
            );
            assert_eq!(common::tree::listing(dir.path()), before, "{argv:?}");
        }
    }
}

/// A moved experiment works where it now is, and its errors name its own
/// experiment.json.
#[test]
fn a_moved_experiment_works_where_it_is_and_names_its_own_record() {
    let dir = tempfile::tempdir().unwrap();
    let (e3, e4) = (dir.path().join("e3"), dir.path().join("e4"));
    let args = dry_plan(&e3, &[]);
    std::fs::rename(&e3, &e4).unwrap();
    let err = fails(&["experiment", "cell", "--out", s_ref(&e4), "--index", "7"]);
    assert!(
        err.contains(&s(&e4.join("experiment.json"))) && !err.contains(&s(&e3)),
        "{err}"
    );
    assert_eq!(states(&e4), ["pending", "pending"]);
    let mut moved = args.clone();
    let i = moved.iter().position(|a| *a == s(&e3)).unwrap();
    moved[i] = s(&e4);
    let folds = moved.iter().position(|a| a == "1,2").unwrap();
    moved[folds] = "1,2,3".into();
    let argv: Vec<&str> = moved.iter().map(String::as_str).collect();
    let err = fails(&argv);
    assert!(
        err.contains(&s(&e4.join("experiment.json"))) && err.contains("--extend"),
        "{err}"
    );
    moved[folds] = "1,2".into();
    let argv: Vec<&str> = moved.iter().map(String::as_str).collect();
    common::run_ok(&argv);
    assert!(!e3.exists());
}

/// `--dry-run` with the SLURM executor writes the batch script without submitting (no
/// sbatch needed). The folder, with a space, quotes and a `%`, is quoted for sbatch in
/// `#SBATCH --output` and for the shell in the task's command, which runs the cell in it.
#[test]
fn a_slurm_dry_run_writes_the_batch_script_with_the_folder_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exp 1 'a' \"b\" %j");
    dry_plan(
        &out,
        &[
            "--executor",
            "slurm",
            "--jobs",
            "2",
            "--sbatch-arg=--partition=local",
        ],
    );
    let script_path = out.join("slurm/experiment.sbatch");
    let script = std::fs::read_to_string(&script_path).unwrap();
    assert!(script.contains("#SBATCH --array=0-1%2\n"), "{script}");
    assert!(script.contains("#SBATCH --partition=local\n"), "{script}");
    let logs = s(&out.join("slurm/cell-"))
        .replace('%', "%%")
        .replace('"', "\\\"");
    assert!(
        script.contains(&format!("#SBATCH --output=\"{logs}%a.log\"\n")),
        "{script}"
    );
    assert_eq!(states(&out), ["pending", "pending"]);
    // The task's shell line, run as array task 1: the cell runs in the folder (and fails
    // in train, on the empty labels).
    let task = Command::new("sh")
        .arg(&script_path)
        .env("SLURM_ARRAY_TASK_ID", "1")
        .output()
        .unwrap();
    assert_eq!(task.status.code(), Some(1));
    assert_eq!(states(&out), ["pending", "failed"]);
}

/// `report` on a bare folder layout reads fold1..fold4 only: another fold number (0, 7,
/// one past 2^32, a leading zero) is refused naming the file, never read as a fold.
#[test]
fn report_refuses_fold_numbers_outside_one_to_four_naming_the_file() {
    for name in [
        "fold0_res.csv",
        "fold7_res.csv",
        "fold4294967297_res.csv",
        "fold01_res.csv",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("attention/seed4");
        file_with_counts(&seed.join("fold1_res.csv"), 2, 3, 40, 1);
        file_with_counts(&seed.join(name), 2, 3, 40, 1);
        let before = common::tree::listing(dir.path());
        let err = fails(&["experiment", "report", "--out", s_ref(dir.path())]);
        assert!(
            err.contains(&s(&seed.join(name))) && err.contains("1..4"),
            "{err}"
        );
        assert_eq!(common::tree::listing(dir.path()), before);
    }
}
