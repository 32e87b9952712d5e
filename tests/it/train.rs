//! Training: golden step parity through the trainer's code path, data-parallel replicas,
//! and a smoke run on a tiny generated fold (files, history, kill + resume).

use crate::common;

use flarecast::model::{self, Arch, Compute, InitScheme};
use flarecast::train::parallel::Replicas;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

fn golden(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(common::golden().join(name))
        .unwrap()
        .into_iter()
        .collect()
}

fn sgd(vs: &tch::nn::VarStore) -> tch::nn::Optimizer {
    tch::nn::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        wd: 0.5,
        nesterov: false,
    }
    .build(vs, 1e-3)
    .unwrap()
}

/// U(0, 1) values of `shape` from a generator seeded with `seed`: the same tensor in
/// every run, whatever other tests draw from libtorch's process-wide generator meanwhile
/// (`tch::manual_seed` would reseed theirs too).
fn uniform_input(shape: [i64; 4], seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product::<i64>() as usize;
    let values: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
    Tensor::from_slice(&values).reshape(shape)
}

/// The trainer's step (Replicas with one device) reproduces the reference's step.
#[test]
fn trainer_step_matches_reference_step() {
    for (pth, step, arch) in [
        ("attn.pth", "attn_step.safetensors", Arch::Attention),
        ("noattn.pth", "noattn_step.safetensors", Arch::StandardCnn),
    ] {
        let g = golden(step);
        let mut reps = Replicas::new(
            &[Device::Cpu],
            arch,
            InitScheme::default(),
            Compute::default(),
        )
        .unwrap();
        let (tensors, _) = model::weights::read_weights(&common::golden().join(pth)).unwrap();
        model::weights::assign(&mut reps.master_mut().vs, &tensors, pth).unwrap();
        let mut opt = sgd(&reps.master().vs);
        opt.zero_grad();
        let out = reps.forward_backward(&g["input"], &g["target"]).unwrap();
        opt.step();
        let want_loss = g["loss"].double_value(&[0]);
        assert!(
            (out.loss - want_loss).abs() < 1e-5,
            "{pth}: loss {} vs {want_loss}",
            out.loss
        );
        let vars = reps.master().vs.variables();
        for (key, want) in g
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("after.").map(|k| (k, v)))
        {
            let diff = (&vars[key].to_kind(Kind::Double) - want.to_kind(Kind::Double))
                .abs()
                .max()
                .double_value(&[]);
            assert!(diff <= 1e-5, "{pth} {key}: {diff:e}");
        }
    }
}

/// Two CPU replicas: one step equals summing the per-shard gradients of one model and
/// stepping once; BN running statistics are replica 0's.
#[test]
fn two_replicas_equal_summed_shard_gradients() {
    let x = uniform_input([4, 1, 192, 192], 7);
    let y = Tensor::from_slice(&[0i64, 1, 1, 0]);
    let (tensors, _) = model::weights::read_weights(&common::golden().join("attn.pth")).unwrap();

    let mut reps = Replicas::new(
        &[Device::Cpu, Device::Cpu],
        Arch::Attention,
        InitScheme::default(),
        Compute::default(),
    )
    .unwrap();
    model::weights::assign(&mut reps.master_mut().vs, &tensors, "attn.pth").unwrap();
    reps.broadcast().unwrap();
    let mut opt = sgd(&reps.master().vs);
    opt.zero_grad();
    reps.zero_replica_grads();
    let out = reps.forward_backward(&x, &y).unwrap();
    opt.step();
    reps.broadcast().unwrap();

    // By hand: one model, shard 0 then shard 1, loss = sum over shard / batch.
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let net = model::AttnNet::new(&vs.root(), Arch::Attention, InitScheme::default());
    model::weights::assign(&mut vs, &tensors, "attn.pth").unwrap();
    // Replica 0's running stats come from shard 0 only: snapshot them after shard 0.
    let mut hand_opt = sgd(&vs);
    hand_opt.zero_grad();
    let mut total = 0.0;
    let mut bn_after_shard0 = HashMap::new();
    for (k, (xs, ys)) in x.chunk(2, 0).iter().zip(y.chunk(2, 0).iter()).enumerate() {
        let logits = net.forward_t(xs, true).logits;
        let loss =
            logits.cross_entropy_loss::<Tensor>(ys, None, tch::Reduction::Sum, -100, 0.0) / 4.0;
        loss.backward();
        total += loss.double_value(&[]);
        if k == 0 {
            for (name, t) in vs.variables() {
                if name.contains("running_") {
                    bn_after_shard0.insert(name, t.copy());
                }
            }
        }
    }
    hand_opt.step();
    assert!(
        (out.loss - total).abs() < 1e-6,
        "loss {} vs {total}",
        out.loss
    );
    let got = reps.master().vs.variables();
    for (name, t) in vs.variables() {
        if name.contains("running_") || name.contains("num_batches") {
            continue;
        }
        let diff = (&got[&name] - &t).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name}: {diff:e}");
    }
    for (name, want) in &bn_after_shard0 {
        let diff = (&got[name] - want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name} is not replica 0's: {diff:e}");
    }
    // The broadcast left replica 1 identical to replica 0.
    let other = reps.replicas[1].vs.variables();
    for (name, t) in &got {
        assert!(t.equal(&other[name]), "{name} differs between replicas");
    }
}

fn train_args(root: &Path, out: &str, arch_flag: &str, epochs: usize) -> Vec<String> {
    let mut args = common::tiny_train_args(root, arch_flag, out, "8");
    args.extend(["--epochs".into(), epochs.to_string(), "--json".into()]);
    args
}

fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    model::weights::read_weights(path)
        .unwrap()
        .0
        .into_iter()
        .collect()
}

#[test]
fn tiny_fold_trains_both_nets_and_writes_checkpoints_and_history() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    for (flag, sub, arch) in [
        ("--attention", "attention", "attention"),
        ("--no-attention", "no_attention", "standard_cnn"),
    ] {
        let out = common::assert_success(
            common::flarecast()
                .args(train_args(dir.path(), "models", flag, 2))
                .output()
                .unwrap(),
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["arch"], arch);
        assert_eq!(summary["epochs"], 2);
        // 12 train instances, 4 FL: balanced to 8 NF + 8 FL items.
        assert_eq!(summary["train_instances"], 12);
        assert_eq!(summary["train_positive"], 4);
        assert_eq!(summary["balanced_items"], 16);
        assert_eq!(summary["val_instances"], 4);
        let run = dir.path().join("models").join(sub);
        for f in [
            "fold1_final.safetensors",
            "fold1_best.safetensors",
            "fold1_last.safetensors",
        ] {
            let m = model::load_model(&run.join(f), Device::Cpu).unwrap();
            assert_eq!(m.net.arch().name(), arch, "{f}");
            assert_eq!(m.meta.im_size, 192);
        }
        let history: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(run.join("fold1_history.json")).unwrap())
                .unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0]["epoch"], 1);
        assert_eq!(history[0]["lr"], 0.001);
        for r in &history {
            let n_val: u64 = ["val_tp", "val_fp", "val_tn", "val_fn"]
                .iter()
                .map(|k| r[k].as_u64().unwrap())
                .sum();
            assert_eq!(n_val, 4);
            let n_train: u64 = ["train_tp", "train_fp", "train_tn", "train_fn"]
                .iter()
                .map(|k| r[k].as_u64().unwrap())
                .sum();
            assert_eq!(n_train, 16);
            assert!(r["train_loss"].as_f64().unwrap().is_finite());
        }
        let csv = std::fs::read_to_string(run.join("fold1_history.csv")).unwrap();
        assert!(
            csv.starts_with("epoch,lr,train_loss,train_tss,train_hss2,"),
            "{csv}"
        );
        assert_eq!(csv.lines().count(), 3);
        // The final checkpoint holds the last epoch's weights.
        let last = read_tensors(&run.join("fold1_last.safetensors"));
        let fin = read_tensors(&run.join("fold1_final.safetensors"));
        for (k, t) in &fin {
            assert!(t.equal(&last[k]), "{k}");
        }
    }
}

#[test]
fn killed_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    common::assert_success(
        common::flarecast()
            .args(train_args(dir.path(), "straight", "--no-attention", 2))
            .output()
            .unwrap(),
    );

    // Same run, killed as soon as epoch 1 has been reported, then resumed.
    let bin = assert_cmd::cargo::cargo_bin("flarecast");
    let mut child = Command::new(bin)
        .args(train_args(dir.path(), "killed", "--no-attention", 2))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().starts_with("epoch 1/2") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run = dir.path().join("killed/no_attention");
    assert!(
        !run.join("fold1_final.safetensors").exists(),
        "the run finished before it was killed"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");

    let mut args = train_args(dir.path(), "killed", "--no-attention", 2);
    args.push("--resume".into());
    let resumed = common::assert_success(common::flarecast().args(&args).output().unwrap());
    let summary: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert!(summary["resumed_from_epoch"].as_u64().unwrap() >= 1);

    let a = read_tensors(
        &dir.path()
            .join("straight/no_attention/fold1_final.safetensors"),
    );
    let b = read_tensors(&run.join("fold1_final.safetensors"));
    for (k, t) in &a {
        assert!(
            t.equal(&b[k]),
            "{k} differs between the straight and the resumed run"
        );
    }
    let ha = std::fs::read_to_string(dir.path().join("straight/no_attention/fold1_history.csv"))
        .unwrap();
    let hb = std::fs::read_to_string(run.join("fold1_history.csv")).unwrap();
    let strip_timing = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split(',').take(17).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(strip_timing(&ha), strip_timing(&hb));
}

fn train_error(root: &Path) -> String {
    let out = common::flarecast()
        .args(train_args(root, "m", "--attention", 1))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_folds_fail_before_training() {
    // No positives in the training split.
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 6, 3, false);
    let err = train_error(dir.path());
    assert!(
        err.contains("no positive") || err.contains("no FL"),
        "{err}"
    );

    // A label naming a missing image.
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 6, 3, true);
    let csv = dir
        .path()
        .join("labels/simplified_data_labels/Fold1_train.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("2014/04/09/HMI.m2014.04.09_00.00.00.png,1\n");
    std::fs::write(&csv, text).unwrap();
    let err = train_error(dir.path());
    assert!(err.contains("HMI.m2014.04.09_00.00.00.png"), "{err}");

    // An input size the network cannot take.
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 6, 3, true);
    let mut args = train_args(dir.path(), "m", "--attention", 1);
    let i = args.iter().position(|a| a == "--im-size").unwrap();
    args[i + 1] = "128".into();
    let out = common::flarecast().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--im-size: image size 128 is outside 192..=2048"),
        "{err}"
    );

    // An empty validation split.
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 6, 3, true);
    std::fs::write(
        dir.path()
            .join("labels/simplified_data_labels/Fold1_val.csv"),
        "label,goes_class\n",
    )
    .unwrap();
    let err = train_error(dir.path());
    assert!(
        err.contains("Fold1_val.csv") || err.contains("validation"),
        "{err}"
    );
}

#[test]
fn a_diverging_run_fails_and_keeps_the_last_finite_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    common::assert_success(
        common::flarecast()
            .args(train_args(dir.path(), "models", "--no-attention", 1))
            .output()
            .unwrap(),
    );
    let run = dir.path().join("models/no_attention");
    let names = [
        "fold1_last.safetensors",
        "fold1_final.safetensors",
        "fold1_best.safetensors",
    ];
    let before: Vec<Option<Vec<u8>>> = names
        .iter()
        .map(|n| std::fs::read(run.join(n)).ok())
        .collect();
    assert!(before[0].is_some() && before[1].is_some());

    // The same fold with an absurd learning rate: the weights blow up in the first epoch.
    let mut args = train_args(dir.path(), "models", "--no-attention", 2);
    args.extend(["--lr".to_string(), "1e6".to_string()]);
    let bad = common::flarecast().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("epoch 1:") && stderr.contains("keeps the last good weights"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // Nothing of the diverged epoch was written: the good run's checkpoints are intact and load.
    for (name, old) in names.iter().zip(&before) {
        assert_eq!(&std::fs::read(run.join(name)).ok(), old, "{name}");
        if old.is_some() {
            model::load_model(&run.join(name), Device::Cpu).unwrap();
        }
    }
}

#[test]
fn a_one_class_validation_split_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    // Every validation instance negative: TSS and HSS2 are undefined there.
    let val = dir
        .path()
        .join("labels/simplified_data_labels/Fold1_val.csv");
    let text = std::fs::read_to_string(&val).unwrap();
    let negatives: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| match (i, l.rsplit_once(',')) {
            (0, _) | (_, None) => format!("{l}\n"),
            (_, Some((name, _))) => format!("{name},0\n"),
        })
        .collect();
    std::fs::write(&val, negatives).unwrap();

    let err = train_error(dir.path());
    assert!(err.contains("0 of 4 instances are positive"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let mut args = train_args(dir.path(), "models", "--no-attention", 1);
    args.push("--allow-one-class-val".to_string());
    let out = common::assert_success(common::flarecast().args(&args).output().unwrap());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["val_positive"], 0);
    assert!(summary["best_epoch"].is_null(), "{summary}");
    let run = dir.path().join("models/no_attention");
    assert!(!run.join("fold1_best.safetensors").exists());
    assert!(run.join("fold1_last.safetensors").exists());
}
