//! Training as ranks of a c10d process group (Gloo on loopback): two ranks, started by
//! hand or by torchrun, end where the in-process `--devices cpu,cpu` replicas end; one
//! rank alone ends where a plain run ends; a killed rank ends the other with one line,
//! and the group resumes from the last checkpoint.

use crate::common;

use flarecast::data::{self, Loader, LoaderConfig, Shard, Split};
use flarecast::model;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// torchrun gives each rank one thread (OMP_NUM_THREADS=1), and libtorch's CPU results
/// depend on the thread count (BatchNorm's running variances by ~1e-3 here): every run
/// of these tests uses one thread, so that they compare like with like.
const THREADS: (&str, &str) = ("OMP_NUM_THREADS", "1");

/// A generous bound for one tiny run on a loaded machine.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Training flags of every run here: the standard CNN on a tiny fold, batch 5 so that
/// the last batch of 16 balanced items (one row) leaves rank 1 with an empty share.
fn train_args(root: &Path, out: &str, epochs: usize, devices: &str) -> Vec<String> {
    let root_s = |p: &str| root.join(p).to_str().unwrap().to_string();
    [
        "train",
        "--fold",
        "1",
        "--no-attention",
        "--epochs",
        &epochs.to_string(),
        "--batch-size",
        "5",
        "--im-size",
        "192",
        "--devices",
        devices,
        "--precision",
        "f32",
        "--workers",
        "1",
        "--images",
        &root_s("images"),
        "--labels",
        &root_s("labels"),
        "--out",
        &root_s(out),
        "--dist-timeout",
        "120s",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Processes a test started; all are killed (by pid) and reaped when it ends, even on
/// failure.
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Procs {
    /// Waits for every process to exit, within `limit`; returns their exit codes.
    fn wait_all(&mut self, limit: Duration) -> Vec<Option<i32>> {
        let start = Instant::now();
        let mut codes = vec![None; self.0.len()];
        let mut done = vec![false; self.0.len()];
        while done.iter().any(|d| !d) {
            for (i, (_, c)) in self.0.iter_mut().enumerate() {
                if !done[i] {
                    if let Some(status) = c.try_wait().unwrap() {
                        codes[i] = status.code();
                        done[i] = true;
                    }
                }
            }
            let names: Vec<&str> = (self.0.iter().zip(&done))
                .filter(|(_, d)| !**d)
                .map(|((n, _), _)| n.as_str())
                .collect();
            assert!(
                start.elapsed() < limit,
                "{names:?} still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        codes
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `flarecast ARGS` with the environment of rank `rank` of `world`, its output in
/// `{log}.out` / `{log}.err`.
fn spawn_rank(args: &[String], rank: usize, world: usize, port: u16, log: &Path) -> Child {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("flarecast"));
    for k in [
        "TORCHELASTIC_USE_AGENT_STORE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
    ] {
        cmd.env_remove(k);
    }
    cmd.args(args)
        .env(THREADS.0, THREADS.1)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("LOCAL_WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_default()
}

/// Runs the ranks of one group by hand and waits for them; returns rank 0's summary.
fn run_ranks(args: &[String], world: usize, logs: &Path) -> serde_json::Value {
    let port = free_port();
    let mut procs = Procs(
        (0..world)
            .map(|r| {
                let log = logs.join(format!("rank{r}"));
                (format!("rank {r}"), spawn_rank(args, r, world, port, &log))
            })
            .collect(),
    );
    let codes = procs.wait_all(RUN_LIMIT);
    let errs: Vec<String> = (0..world)
        .map(|r| format!("rank {r}: {}", read(logs.join(format!("rank{r}.err")))))
        .collect();
    assert!(codes.iter().all(|c| *c == Some(0)), "{codes:?}: {errs:?}");
    serde_json::from_str(&read(logs.join("rank0.out"))).expect("rank 0 prints its summary")
}

fn run_alone(args: &[String]) -> serde_json::Value {
    let out = common::assert_success(
        common::flarecast()
            .args(args)
            .env(THREADS.0, THREADS.1)
            .env_remove("RANK")
            .env_remove("WORLD_SIZE")
            .env_remove("SLURM_NTASKS")
            .output()
            .unwrap(),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn final_weights(root: &Path, out: &str) -> HashMap<String, Tensor> {
    model::weights::read_weights(&root.join(out).join("no_attention/fold1_final.safetensors"))
        .unwrap()
        .0
        .into_iter()
        .collect()
}

fn history(root: &Path, out: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&read(
        root.join(out).join("no_attention/fold1_history.json"),
    ))
    .unwrap()
}

/// The largest difference between two sets of weights (with BatchNorm buffers).
fn max_diff(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f64 {
    assert_eq!(
        a.keys().collect::<std::collections::BTreeSet<_>>(),
        b.keys().collect::<std::collections::BTreeSet<_>>()
    );
    a.iter()
        .map(|(k, t)| {
            (t.to_kind(Kind::Double) - b[k].to_kind(Kind::Double))
                .abs()
                .max()
                .double_value(&[])
        })
        .fold(0.0, f64::max)
}

/// Histories equal in every count and flag, and in every score within `tol` (timings
/// aside).
fn assert_same_history(a: &[serde_json::Value], b: &[serde_json::Value], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (ra, rb) in a.iter().zip(b) {
        for (key, va) in ra.as_object().unwrap() {
            if key == "seconds" || key == "images_per_s" {
                continue;
            }
            let vb = &rb[key];
            match (va.as_f64(), vb.as_f64()) {
                (Some(x), Some(y)) if !va.is_u64() => {
                    assert!(
                        (x - y).abs() <= tol,
                        "epoch {}: {key} {x} vs {y}",
                        ra["epoch"]
                    )
                }
                _ => assert_eq!(va, vb, "epoch {}: {key}", ra["epoch"]),
            }
        }
    }
}

/// The torchrun of the virtualenv holding torch.
fn torchrun() -> PathBuf {
    let t = common::torch_python().with_file_name("torchrun");
    assert!(t.exists(), "{} missing: run scripts/setup.sh", t.display());
    t
}

#[test]
fn rank_shards_of_each_batch_together_are_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    let samples = data::read_fold_split(&dir.path().join("labels"), 1, Split::Train).unwrap();
    let loader = |shard: Shard| {
        let cfg = LoaderConfig {
            im_size: flarecast::im_size::ImSize::new(192).unwrap(),
            batch_size: 5,
            workers: 1,
            shard,
            ..LoaderConfig::new(dir.path().join("images"))
        };
        Loader::new(cfg, samples.clone()).unwrap()
    };
    let whole = loader(Shard::WHOLE);
    let plan = data::balance(&whole.targets(), 4).unwrap();
    let parts = [
        loader(Shard { rank: 0, of: 2 }),
        loader(Shard { rank: 1, of: 2 }),
    ];
    let batches = |l: &Loader| -> Vec<data::Batch> {
        l.batches(&plan.items, 2)
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    };
    let w = batches(&whole);
    let (p0, p1) = (batches(&parts[0]), batches(&parts[1]));
    assert_eq!(w.len(), 4);
    assert_eq!((p0.len(), p1.len()), (4, 4));
    let rows: Vec<(usize, usize)> = p0
        .iter()
        .zip(&p1)
        .map(|(a, b)| (a.names.len(), b.names.len()))
        .collect();
    // torch.chunk's shares of 5, 5, 5 and 1 rows.
    assert_eq!(rows, [(3, 2), (3, 2), (3, 2), (1, 0)]);
    for ((w, a), b) in w.iter().zip(&p0).zip(&p1) {
        let names: Vec<&String> = a.names.iter().chain(&b.names).collect();
        assert_eq!(names, w.names.iter().collect::<Vec<_>>());
        assert!(Tensor::cat(&[&a.images, &b.images], 0).equal(&w.images));
    }
    let bad = LoaderConfig {
        shard: Shard { rank: 2, of: 2 },
        ..LoaderConfig::new(dir.path().join("images"))
    };
    assert!(Loader::new(bad, samples).is_err());
}

/// Two ranks by hand and two ranks under torchrun end with the weights and history of
/// the in-process replicas on the same flags.
#[test]
#[cfg_attr(
    not(flarecast_c10d),
    ignore = "built without Gloo's headers (libgloo-dev): distributed training unavailable"
)]
fn two_ranks_by_hand_and_by_torchrun_equal_in_process_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::write_tiny_fold(root, 12, 4, true);
    let replicas = run_alone(&train_args(root, "replicas", 2, "cpu,cpu"));
    assert_eq!(replicas["ranks"], 1);

    let logs = root.join("logs-hand");
    std::fs::create_dir_all(&logs).unwrap();
    let hand = run_ranks(&train_args(root, "hand", 2, "cpu"), 2, &logs);
    assert_eq!(hand["ranks"], 2);
    assert_eq!(hand["balanced_items"], replicas["balanced_items"]);
    // Rank 1 neither prints nor writes.
    assert_eq!(read(logs.join("rank1.out")), "");
    let d = max_diff(
        &final_weights(root, "replicas"),
        &final_weights(root, "hand"),
    );
    assert!(d <= 1e-5, "by hand: weights differ by {d:e}");
    assert_same_history(&history(root, "replicas"), &history(root, "hand"), 1e-5);

    // torchrun --standalone: its agent hosts the store (TORCHELASTIC_USE_AGENT_STORE).
    let mut cmd = Command::new(torchrun());
    cmd.args([
        "--standalone",
        "--nproc-per-node",
        "2",
        "--no-python",
        assert_cmd::cargo::cargo_bin("flarecast").to_str().unwrap(),
    ])
    .args(train_args(root, "torchrun", 2, "cpu"))
    .env(THREADS.0, THREADS.1)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(root.join("torchrun.out")).unwrap())
    .stderr(std::fs::File::create(root.join("torchrun.err")).unwrap());
    let mut procs = Procs(vec![("torchrun".into(), cmd.spawn().unwrap())]);
    let code = procs.wait_all(RUN_LIMIT)[0];
    assert_eq!(code, Some(0), "{}", read(root.join("torchrun.err")));
    // Rank 0's summary: one pretty-printed object, after anything torchrun printed.
    let out = read(root.join("torchrun.out"));
    let start = out.find("\n{").map_or(0, |i| i + 1);
    let summary: serde_json::Value = serde_json::Deserializer::from_str(&out[start..])
        .into_iter()
        .next()
        .expect("rank 0's summary")
        .unwrap();
    assert_eq!(summary["ranks"], 2);
    let d = max_diff(
        &final_weights(root, "replicas"),
        &final_weights(root, "torchrun"),
    );
    assert!(d <= 1e-5, "torchrun: weights differ by {d:e}");
    assert_same_history(&history(root, "replicas"), &history(root, "torchrun"), 1e-5);
}

/// With the class-weighted loss, two ranks (each its share of every batch of the 12
/// plain items: 3 + 2, 3 + 2, 1 + 1 rows) end with the weights and history of the
/// in-process replicas: the group divides by the whole batch's summed weight, not a
/// share's.
#[test]
#[cfg_attr(
    not(flarecast_c10d),
    ignore = "built without Gloo's headers (libgloo-dev): distributed training unavailable"
)]
fn weighted_loss_over_two_ranks_equals_in_process_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::write_tiny_fold(root, 12, 4, true);
    let weighted = |out: &str, devices: &str| {
        let mut args = train_args(root, out, 2, devices);
        args.extend(["--balance", "weighted-loss"].map(String::from));
        args
    };
    let replicas = run_alone(&weighted("replicas", "cpu,cpu"));
    assert_eq!(replicas["balanced_items"], 12);
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ranks = run_ranks(&weighted("ranks", "cpu"), 2, &logs);
    assert_eq!(ranks["ranks"], 2);
    let d = max_diff(
        &final_weights(root, "replicas"),
        &final_weights(root, "ranks"),
    );
    eprintln!("weighted loss, ranks against replicas: weights differ by {d:e}");
    assert!(d <= 1e-5, "weights differ by {d:e}");
    assert_same_history(&history(root, "replicas"), &history(root, "ranks"), 1e-5);
}

/// A group of one rank takes the distributed path and ends exactly where a plain run
/// ends.
#[test]
#[cfg_attr(
    not(flarecast_c10d),
    ignore = "built without Gloo's headers (libgloo-dev): distributed training unavailable"
)]
fn one_rank_equals_a_plain_run_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::write_tiny_fold(root, 12, 4, true);
    run_alone(&train_args(root, "plain", 2, "cpu"));
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let one = run_ranks(&train_args(root, "one", 2, "cpu"), 1, &logs);
    assert_eq!(one["ranks"], 1);
    let (a, b) = (final_weights(root, "plain"), final_weights(root, "one"));
    for (k, t) in &a {
        assert!(t.equal(&b[k]), "{k} differs from the plain run");
    }
    assert_same_history(&history(root, "plain"), &history(root, "one"), 0.0);
}

/// Rank 1 is killed in epoch 2: rank 0 ends within the timeout with one error line
/// naming itself and what it waited for; the group resumed from `last` ends with the
/// uninterrupted in-process run's weights.
#[test]
#[cfg_attr(
    not(flarecast_c10d),
    ignore = "built without Gloo's headers (libgloo-dev): distributed training unavailable"
)]
fn a_killed_rank_ends_the_group_with_one_line_and_the_group_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::write_tiny_fold(root, 12, 4, true);
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let args = train_args(root, "group", 3, "cpu");
    let port = free_port();
    let mut procs = Procs(
        (0..2)
            .map(|r| {
                let log = logs.join(format!("rank{r}"));
                (format!("rank {r}"), spawn_rank(&args, r, 2, port, &log))
            })
            .collect(),
    );
    // Epoch lines go to rank 0's stderr under --json.
    let started = Instant::now();
    while !read(logs.join("rank0.err")).contains("epoch 1/3") {
        assert!(started.elapsed() < RUN_LIMIT, "epoch 1 never finished");
        if let Some(s) = procs.0[0].1.try_wait().unwrap() {
            panic!("rank 0 ended early ({s}): {}", read(logs.join("rank0.err")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    procs.0[1].1.kill().unwrap();
    procs.0[1].1.wait().unwrap();
    let killed_at = Instant::now();
    let (_, rank0) = &mut procs.0[0];
    let code = loop {
        if let Some(s) = rank0.try_wait().unwrap() {
            break s.code();
        }
        // Within --dist-timeout (120 s) and the watchdog's grace: a dead peer must not
        // hang rank 0 (the closed connection ends its wait at once).
        assert!(
            killed_at.elapsed() < Duration::from_secs(150),
            "rank 0 still waits for its dead peer"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = read(logs.join("rank0.err"));
    assert_eq!(code, Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| !l.starts_with("epoch ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with("flarecast: error: rank 0 of 2: gave up waiting for "),
        "{err}"
    );
    let run = root.join("group/no_attention");
    assert!(!run.join("fold1_final.safetensors").exists());
    assert!(run.join("fold1_last.safetensors").exists());
    let partial: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| flarecast::fsio::is_temp_name(n))
        .collect();
    assert!(partial.is_empty(), "half-written files: {partial:?}");
    drop(procs);

    let mut resume = args.clone();
    resume.push("--resume".into());
    let logs = root.join("logs-resume");
    std::fs::create_dir_all(&logs).unwrap();
    let resumed = run_ranks(&resume, 2, &logs);
    let from = resumed["resumed_from_epoch"].as_u64().unwrap();
    assert!((1..3).contains(&from), "resumed from epoch {from}");
    assert_eq!(resumed["history"].as_array().unwrap().len(), 3);

    run_alone(&train_args(root, "straight", 3, "cpu,cpu"));
    let d = max_diff(
        &final_weights(root, "straight"),
        &final_weights(root, "group"),
    );
    assert!(d <= 1e-5, "resumed group: weights differ by {d:e}");
    assert_same_history(&history(root, "straight"), &history(root, "group"), 1e-5);
}

/// A rank whose master never answers ends with one line naming the rank and the wait.
#[test]
#[cfg_attr(
    not(flarecast_c10d),
    ignore = "built without Gloo's headers (libgloo-dev): distributed training unavailable"
)]
fn a_rank_without_its_master_gives_up_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::write_tiny_fold(root, 6, 3, true);
    let mut args = train_args(root, "m", 1, "cpu");
    let i = args.iter().position(|a| a == "--dist-timeout").unwrap();
    args[i + 1] = "2s".into();
    let log = root.join("rank1");
    let started = Instant::now();
    let mut procs = Procs(vec![(
        "rank 1".into(),
        spawn_rank(&args, 1, 2, free_port(), &log),
    )]);
    let code = procs.wait_all(Duration::from_secs(60))[0];
    let err = read(log.with_extension("err"));
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "flarecast: error: rank 1 of 2: gave up waiting to join the group of 2 at 127.0.0.1:"
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!root.join("m").exists(), "a rank other than 0 wrote files");
}

/// Where the build has no Gloo, a launched rank says so in one line.
#[test]
#[cfg_attr(
    flarecast_c10d,
    ignore = "this build has Gloo's headers: distributed training is available"
)]
fn without_gloo_a_launched_rank_says_distributed_training_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::write_tiny_fold(root, 6, 3, true);
    let log = root.join("rank0");
    let mut procs = Procs(vec![(
        "rank 0".into(),
        spawn_rank(&train_args(root, "m", 1, "cpu"), 0, 2, free_port(), &log),
    )]);
    let code = procs.wait_all(Duration::from_secs(60))[0];
    let err = read(log.with_extension("err"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("distributed training is unavailable"), "{err}");
}

/// `bench train` as two ranks: each steps on its share of every batch and rank 0 reports
/// the gradients' all-reduce per step and its share of the step; rank 1 prints nothing.
#[test]
#[cfg_attr(
    not(flarecast_c10d),
    ignore = "built without Gloo's headers (libgloo-dev): distributed training unavailable"
)]
fn bench_train_as_two_ranks_times_the_all_reduce() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "bench",
        "train",
        "--device",
        "cpu",
        "--arch",
        "standard",
        "--precision",
        "f32",
        "--batch-size",
        "4",
        "--im-size",
        "192",
        "--batches",
        "2",
        "--workers",
        "1",
        "--jpg",
        common::magnetogram_jpg().to_str().unwrap(),
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let report = run_ranks(&args, 2, dir.path());
    assert_eq!(read(dir.path().join("rank1.out")), "");
    assert_eq!(report["ranks"], 2);
    let row = &report["rows"][0];
    let ms = row["all_reduce_ms_per_step"]
        .as_f64()
        .expect("all-reduce time");
    let share = row["all_reduce_share"].as_f64().expect("all-reduce share");
    assert!(ms > 0.0, "all-reduce {ms} ms per step");
    assert!(share > 0.0 && share < 1.0, "all-reduce share {share}");
    assert!(row["model_images_per_s"].as_f64().unwrap() > 0.0);

    // Alone, the same bench has no all-reduce to report.
    let alone = run_alone(&args);
    assert_eq!(alone["ranks"], 1);
    assert!(alone["rows"][0]["all_reduce_ms_per_step"].is_null());
}
