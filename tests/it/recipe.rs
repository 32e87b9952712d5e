//! The training recipe's options against PyTorch: AdamW's steps on the golden weights,
//! the cosine schedule with warm-up, the class-weighted cross-entropy (whole and split);
//! and a tiny-fold run with every option away from the paper's, its history naming them.

use crate::common;

use flarecast::model::{self, Arch, Compute, InitScheme};
use flarecast::recipe::{Optimizer, Recipe, Schedule};
use flarecast::train::parallel::Replicas;
use flarecast::train::peers::Peers;
use flarecast::train::step::{batch_weight, optimizer, Stepper};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn scripts() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

fn golden_step(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(common::golden().join(name))
        .unwrap()
        .into_iter()
        .collect()
}

/// One CPU replica (or several) of `arch` holding the golden weights `pth`.
fn replicas(devices: &[Device], arch: Arch, pth: &str) -> Replicas {
    let mut reps = Replicas::new(devices, arch, InitScheme::default(), Compute::default()).unwrap();
    let (tensors, _) = model::weights::read_weights(&common::golden().join(pth)).unwrap();
    model::weights::assign(&mut reps.master_mut().vs, &tensors, pth).unwrap();
    reps.broadcast().unwrap();
    reps
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// The convolution biases that feed a train-mode BatchNorm: BatchNorm subtracts each
/// channel's batch mean, so their gradient is exactly 0 and what backward computes for
/// them is rounding noise, different in any two implementations.
fn pre_batchnorm_bias(key: &str) -> bool {
    key.starts_with("conv_block") && key.ends_with(".0.bias")
}

/// Two AdamW steps on the golden weights and batch equal two steps of torch.optim.AdamW on
/// the reference network. Adam divides each gradient element by its own magnitude, so an
/// element whose gradient is rounding noise (the biases before BatchNorm, and any weight
/// whose gradient is near 0) moves by up to lr either way in each implementation: the
/// optimizer is held to torch's on torch's gradients, every parameter and BatchNorm buffer
/// within 1e-5 after two steps (the moments of step 1 shape step 2), with the trainer's
/// forward and backward computing the losses and buffers; and the trainer's whole step
/// (`Stepper`, its own gradients) gives torch's losses at both steps, the second one after
/// the first update of every weight.
#[test]
fn adamw_steps_as_torch_adamw_on_the_golden_weights() {
    let (lr, wd, betas) = (1e-3, 0.05, (0.8, 0.99));
    for (pth, step, arch) in [
        ("attn.pth", "attn_step.safetensors", Arch::Attention),
        ("noattn.pth", "noattn_step.safetensors", Arch::StandardCnn),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().display().to_string();
        let script = format!(
            r#"
import json, sys, torch, torch.nn.functional as F
sys.dont_write_bytecode = True
sys.path.insert(0, {scripts:?})
from reference_model import load_reference, read_safetensors
net = load_reference({weights:?}).train()
io = read_safetensors({step:?})
opt = torch.optim.AdamW(net.parameters(), lr={lr}, betas=({b1}, {b2}), eps=1e-8,
                        weight_decay={wd}, amsgrad=False)
losses = []
for k in range(2):
    logits, _ = net(io["input"])
    loss = F.cross_entropy(logits, io["target"])
    opt.zero_grad()
    loss.backward()
    torch.save({{n: p.grad for n, p in net.named_parameters()}}, f"{out}/grads{{k}}.pth")
    opt.step()
    losses.append(loss.item())
torch.save(net.state_dict(), "{out}/after.pth")
print(json.dumps(losses))
"#,
            scripts = scripts().display().to_string(),
            weights = common::golden().join(pth).display().to_string(),
            step = common::golden().join(step).display().to_string(),
            b1 = betas.0,
            b2 = betas.1,
        );
        let want_losses: Vec<f64> = serde_json::from_str(common::python(&script).trim()).unwrap();
        let g = golden_step(step);
        let recipe = Recipe {
            optimizer: Optimizer::AdamW,
            lr,
            weight_decay: wd,
            betas,
            ..Recipe::PAPER
        };
        let check_losses = |what: &str, losses: &[f64]| {
            for (k, (got, want)) in losses.iter().zip(&want_losses).enumerate() {
                let err = (got - want).abs();
                eprintln!("{pth} {what}: step {} loss error {err:.2e}", k + 1);
                assert!(
                    err < 1e-5,
                    "{pth} {what} step {}: loss {got} vs {want}",
                    k + 1
                );
            }
        };

        // The optimizer `Stepper` builds, stepping on torch's gradients.
        let mut reps = replicas(&[Device::Cpu], arch, pth);
        let mut opt = optimizer(&reps.master().vs, &recipe).unwrap();
        let mut losses = vec![];
        for k in 0..2 {
            opt.zero_grad();
            let out = reps.forward_backward(&g["input"], &g["target"]).unwrap();
            losses.push(out.loss);
            let (torch_grads, _) =
                model::weights::read_weights(&dir.path().join(format!("grads{k}.pth"))).unwrap();
            let vars = reps.master().vs.variables();
            for (key, tg) in &torch_grads {
                let mut grad = vars[key].grad();
                grad.copy_(tg);
            }
            opt.step();
        }
        check_losses("torch's gradients", &losses);
        let (want, _) = model::weights::read_weights(&dir.path().join("after.pth")).unwrap();
        let got = reps.master().vs.variables();
        assert_eq!(got.len(), want.len(), "{pth}: state dict sizes");
        let (mut worst, mut worst_key) = (0.0f64, String::new());
        for (key, w) in &want {
            let g = got
                .get(key)
                .unwrap_or_else(|| panic!("{pth}: {key} missing"));
            let d = max_abs_diff(g, w);
            if d > worst {
                (worst, worst_key) = (d, key.clone());
            }
        }
        eprintln!("{pth} AdamW after 2 steps: largest |difference| {worst:.2e} ({worst_key})");
        assert!(worst <= 1e-5, "{pth} {worst_key}: {worst:e}");

        // The trainer's step, its own gradients.
        let mut stepper =
            Stepper::new(replicas(&[Device::Cpu], arch, pth), Peers::alone(), &recipe).unwrap();
        let rows = g["input"].size()[0] as usize;
        let losses: Vec<f64> = (0..2)
            .map(|k| {
                let what = format!("step {k}");
                stepper
                    .step(&g["input"], &g["target"], rows, &what)
                    .unwrap()
                    .loss
            })
            .collect();
        check_losses("Stepper", &losses);
    }
}

/// The cosine schedule's rate of every epoch, with and without warm-up, is torch's
/// SequentialLR(LinearLR(start_factor = 1/(W+1), total_iters = W), CosineAnnealingLR(T_max
/// = E - W)), milestones = [W]) (CosineAnnealingLR(T_max = E) alone without warm-up),
/// read before each of torch's epochs: flarecast's epoch e is torch's e - 1.
#[test]
fn cosine_schedule_with_warmup_is_torchs_epoch_by_epoch() {
    let cases = [(10usize, 0usize), (10, 1), (10, 3), (30, 5), (3, 1), (5, 4)];
    let lr = 3e-3;
    let script = format!(
        r#"
import json, torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
out = []
for epochs, warmup in {cases:?}:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr={lr})
    if warmup == 0:
        sched = CosineAnnealingLR(opt, T_max=epochs, eta_min=0)
    else:
        sched = SequentialLR(opt, [
            LinearLR(opt, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup),
            CosineAnnealingLR(opt, T_max=epochs - warmup, eta_min=0),
        ], milestones=[warmup])
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    out.append(rates)
print(json.dumps(out))
"#
    );
    let torch: Vec<Vec<f64>> = serde_json::from_str(common::python(&script).trim()).unwrap();
    let mut worst = 0.0f64;
    for ((epochs, warmup), want) in cases.iter().zip(&torch) {
        let recipe = Recipe {
            epochs: *epochs,
            schedule: Schedule::Cosine,
            warmup_epochs: *warmup,
            lr,
            ..Recipe::PAPER
        };
        recipe.check().unwrap();
        let got: Vec<f64> = (1..=*epochs).map(|e| recipe.lr_at(e)).collect();
        assert_eq!(got.len(), want.len());
        for (e, (g, w)) in got.iter().zip(want).enumerate() {
            let rel = (g - w).abs() / w.abs();
            worst = worst.max(rel);
            assert!(
                rel < 1e-12,
                "E {epochs} W {warmup} epoch {}: {g} vs torch {w}",
                e + 1
            );
        }
    }
    eprintln!("cosine schedule: largest relative difference from torch {worst:.2e}");
}

/// The weighted cross-entropy of a batch is torch's `CrossEntropyLoss(weight=w)` with w =
/// n / (2 n_c) of a training split: the rows' weighted sum over the sum of their weights.
#[test]
fn weighted_loss_is_torchs_cross_entropy_with_class_weights() {
    // A split of 100 NF and 20 FL: weights 0.6 and 3.
    let split: Vec<i64> = (0..120).map(|i| i64::from(i % 6 == 0)).collect();
    let w = flarecast::data::class_weights(&split).unwrap();
    assert_eq!(w, [0.6, 3.0]);
    let g = golden_step("attn_step.safetensors");
    let targets = Tensor::from_slice(&[0i64, 0, 0, 1]);
    let script = format!(
        r#"
import json, sys, torch
sys.dont_write_bytecode = True
sys.path.insert(0, {scripts:?})
from reference_model import load_reference, read_safetensors
net = load_reference({weights:?}).train()
x = read_safetensors({step:?})["input"]
t = torch.tensor([0, 0, 0, 1])
w = torch.tensor([{w0}, {w1}])
logits, _ = net(x)
loss = torch.nn.CrossEntropyLoss(weight=w)(logits, t)
ce = torch.nn.functional.cross_entropy(logits, t, reduction="none")
by_hand = (w[t] * ce).sum() / w[t].sum()
print(json.dumps([loss.item(), by_hand.item()]))
"#,
        scripts = scripts().display().to_string(),
        weights = common::golden().join("attn.pth").display().to_string(),
        step = common::golden()
            .join("attn_step.safetensors")
            .display()
            .to_string(),
        w0 = w[0],
        w1 = w[1],
    );
    let torch: Vec<f64> = serde_json::from_str(common::python(&script).trim()).unwrap();
    assert!((torch[0] - torch[1]).abs() < 1e-6, "torch's own: {torch:?}");

    // The trainer's step: the weighted sum over the rows, divided by the batch's summed
    // weight over them, (3 * 0.6 + 3) / 4.
    let mut reps = replicas(&[Device::Cpu], Arch::Attention, "attn.pth");
    reps.class_weights = Some(w);
    let mut stepper = Stepper::new(reps, Peers::alone(), &Recipe::PAPER).unwrap();
    let out = stepper.step(&g["input"], &targets, 4, "a step").unwrap();
    assert_eq!(out.class_rows, [3.0, 1.0]);
    assert!((batch_weight(w, out.class_rows, 4) - 1.2).abs() < 1e-7);
    let err = (out.loss - torch[0]).abs();
    eprintln!(
        "weighted loss {} vs CrossEntropyLoss(weight) {}: error {err:.2e}",
        out.loss, torch[0]
    );
    assert!(err < 1e-5, "{} vs {}", out.loss, torch[0]);
}

/// U(0, 1) values of `shape` from a generator seeded with `seed`.
fn uniform_input(shape: [i64; 4], seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product::<i64>() as usize;
    let values: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
    Tensor::from_slice(&values).reshape(shape)
}

fn grads(reps: &Replicas) -> HashMap<String, Tensor> {
    reps.master()
        .vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(k, t)| (k, t.grad().copy()))
        .collect()
}

/// A batch split over replicas, or over the ranks of a group, keeps the weighted mean of
/// the whole batch: its denominator is the whole batch's summed weight, never a shard's.
/// Shards sum over the batch's rows and report their rows of each class, from whose sum
/// the step forms the batch's weight and divides the loss and gradients by it (after the
/// all-reduce in a group); two replicas in one process and two ranks' shares both equal
/// the per-shard sums computed by hand.
#[test]
fn a_split_batch_keeps_the_whole_batchs_weighted_mean() {
    let w = [0.6, 3.0];
    let x = uniform_input([4, 1, 192, 192], 5);
    let y = Tensor::from_slice(&[0i64, 1, 0, 0]);
    let arch = Arch::StandardCnn;

    // By hand: each shard's weighted sum (its own BatchNorm statistics, as a replica or a
    // rank has them), over the whole batch's weight 0.6 * 3 + 3 = 4.8.
    let (tensors, _) = model::weights::read_weights(&common::golden().join("noattn.pth")).unwrap();
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let net = model::AttnNet::new(&vs.root(), arch, InitScheme::default());
    model::weights::assign(&mut vs, &tensors, "noattn.pth").unwrap();
    let wt = Tensor::from_slice(&w).to_kind(Kind::Float);
    let mut by_hand = 0.0;
    for (xs, ys) in x.chunk(2, 0).iter().zip(y.chunk(2, 0).iter()) {
        let logits = net.forward_t(xs, true).logits;
        let loss = logits.cross_entropy_loss(ys, Some(&wt), tch::Reduction::Sum, -100, 0.0) / 4.8;
        loss.backward();
        by_hand += loss.double_value(&[]);
    }

    // Two replicas in one process, divided as the step divides.
    let mut two = replicas(&[Device::Cpu, Device::Cpu], arch, "noattn.pth");
    two.class_weights = Some(w);
    let out = two.forward_backward(&x, &y).unwrap();
    assert_eq!(out.class_rows, [3.0, 1.0]);
    let weight = batch_weight(w, out.class_rows, 4);
    let replicas_loss = out.loss / weight;
    assert!(
        (replicas_loss - by_hand).abs() < 1e-6,
        "replicas {replicas_loss} vs {by_hand}"
    );

    // Two ranks, each with its share of the batch of 4 rows, summed as the all-reduce sums.
    let mut sum_loss = 0.0;
    let mut sum_rows = [0.0; 2];
    let mut rank_grads: Vec<HashMap<String, Tensor>> = vec![];
    for (xs, ys) in x.chunk(2, 0).iter().zip(y.chunk(2, 0).iter()) {
        let mut rank = replicas(&[Device::Cpu], arch, "noattn.pth");
        rank.class_weights = Some(w);
        let out = rank.forward_backward_share(xs, ys, 4).unwrap();
        sum_loss += out.loss;
        sum_rows = [
            sum_rows[0] + out.class_rows[0],
            sum_rows[1] + out.class_rows[1],
        ];
        rank_grads.push(grads(&rank));
    }
    assert_eq!(sum_rows, [3.0, 1.0]);
    let sum_weight = batch_weight(w, sum_rows, 4);
    let ranks_loss = sum_loss / sum_weight;
    assert!(
        (ranks_loss - by_hand).abs() < 1e-6,
        "ranks {ranks_loss} vs {by_hand}"
    );

    let hand: HashMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(k, t)| (k, t.grad()))
        .collect();
    // Relative to each tensor's largest gradient; the biases before BatchNorm have none
    // (their gradient is 0, computed as rounding noise: `pre_batchnorm_bias`). The first
    // convolution's gradient sums 2 x 192 x 192 products that largely cancel, so dividing
    // before or after backward moves it by ~1e-5 of its largest; a denominator of a
    // shard's weights instead of the batch's would be off by a factor of 2 or more.
    let replica_grads = grads(&two);
    let (mut worst, mut worst_key) = (0.0f64, String::new());
    for (k, h) in hand.iter().filter(|(k, _)| !pre_batchnorm_bias(k)) {
        let ranks = (&rank_grads[0][k] + &rank_grads[1][k]) / sum_weight;
        let scale = h.abs().max().double_value(&[]).max(1e-12);
        let replicas = &replica_grads[k] / weight;
        let d = (max_abs_diff(&replicas, h) / scale).max(max_abs_diff(&ranks, h) / scale);
        if d > worst {
            (worst, worst_key) = (d, k.clone());
        }
    }
    eprintln!(
        "split weighted batch: largest relative gradient difference {worst:.2e} ({worst_key})"
    );
    assert!(worst < 1e-4, "{worst_key}: {worst:e}");
}

/// [`common::tiny_train`] with one loader worker.
fn tiny_train(root: &Path, more: &[&str]) -> std::process::Output {
    common::tiny_train(root, &[&["--workers", "1"], more].concat())
}

/// The TSS rule with a patience of one epoch.
const TSS_PATIENCE_1: [&str; 4] = ["--select", "tss", "--patience", "1"];

/// [`tiny_train`] for 3 epochs by [`TSS_PATIENCE_1`], `more` before, asserted to
/// succeed: its JSON summary.
fn three_epochs_by_tss(root: &Path, more: &[&str]) -> serde_json::Value {
    let args = [more, &TSS_PATIENCE_1, &["--epochs", "3", "--json"]].concat();
    serde_json::from_slice(&common::assert_success(tiny_train(root, &args)).stdout).unwrap()
}

/// Every option away from the paper's on a tiny fold: the run trains, its history and
/// configuration name the options, its rates are the warm-up's and the cosine's, its
/// `best` epochs follow val TSS and it stops where patience 1 says.
#[test]
fn a_tiny_fold_trains_with_every_option_and_its_history_names_them() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tiny_fold(dir.path(), 12, 4, true);
    let summary = three_epochs_by_tss(
        dir.path(),
        &[
            "--optimizer",
            "adamw",
            "--schedule",
            "cosine",
            "--warmup-epochs",
            "1",
            "--balance",
            "weighted-loss",
        ],
    );
    // No oversampling: 12 instances, 4 FL, weights 12 / 16 and 12 / 8.
    assert_eq!(summary["balanced_items"], 12);
    assert_eq!(summary["class_weights"], serde_json::json!([0.75, 1.5]));

    let run = dir.path().join("models/no_attention");
    let history: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(run.join("fold1_history.json")).unwrap())
            .unwrap();
    assert!(!history.is_empty() && history.len() <= 3);
    for r in &history {
        assert_eq!(r["optimizer"], "adamw");
        assert_eq!(r["schedule"], "cosine");
        assert_eq!(r["balance"], "weighted-loss");
        assert_eq!(r["select"], "tss");
        assert_eq!(r["patience"], 1);
        let n_train: u64 = ["train_tp", "train_fp", "train_tn", "train_fn"]
            .iter()
            .map(|k| r[k].as_u64().unwrap())
            .sum();
        assert_eq!(n_train, 12);
    }
    // Warm-up epoch 1 at lr / 2, then the cosine over epochs 2-3: lr, lr / 2.
    for (r, want) in history.iter().zip([5e-4, 1e-3, 5e-4]) {
        let lr = r["lr"].as_f64().unwrap();
        assert!((lr - want).abs() < 1e-15, "epoch {}: lr {lr}", r["epoch"]);
    }
    // The TSS rule and patience 1, replayed on the recorded scores.
    let mut best_tss = f64::NEG_INFINITY;
    let mut stop = None;
    for r in &history {
        let tss = r["val_tss"].as_f64().unwrap();
        let best = tss > best_tss;
        if best {
            best_tss = tss;
        }
        assert_eq!(r["best"], best, "epoch {}", r["epoch"]);
        assert_eq!(r["stale_epochs"], if best { 0 } else { 1 });
        // At the last epoch a run ends as any run does.
        assert_eq!(r["stopped_early"], !best && r["epoch"] != 3);
        if !best {
            stop = r["epoch"].as_u64();
        }
    }
    eprintln!(
        "tiny fold: {} epochs of 3, stopped early at {stop:?}",
        history.len()
    );
    assert_eq!(
        summary["stopped_early_at"].as_u64(),
        stop.filter(|&e| e < 3)
    );
    assert_eq!(
        history.len(),
        stop.map_or(3, |e| e as usize),
        "the run goes on after a stop"
    );
    let csv = std::fs::read_to_string(run.join("fold1_history.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(
            ",precision,optimizer,schedule,balance,select,patience,stale_epochs,stopped_early"
        ),
        "{header}"
    );
    // `final` is written at the stop, and the run's configuration names the recipe.
    let m = model::load_model(&run.join("fold1_final.safetensors"), Device::Cpu).unwrap();
    let training = m.meta.training.unwrap();
    let config = &training["config"];
    for (key, want) in [
        ("optimizer", serde_json::json!("adamw")),
        ("betas", serde_json::json!([0.9, 0.999])),
        ("schedule", serde_json::json!("cosine")),
        ("warmup_epochs", serde_json::json!(1)),
        ("balance", serde_json::json!("weighted-loss")),
        ("select", serde_json::json!("tss")),
        ("patience", serde_json::json!(1)),
    ] {
        assert_eq!(config[key], want, "{key}: {config}");
    }
}

/// A run whose rule can choose no epoch (TSS on a one-class validation split) stops after
/// `--patience` epochs, before its last: the summary and history say where, `final` and
/// `last` hold that epoch's weights, and a resume at the same patience has nothing to train.
#[test]
fn patience_stops_a_run_before_its_last_epoch() {
    let dir = tempfile::tempdir().unwrap();
    // One validation instance, a flare: TSS is undefined.
    common::write_tiny_fold(dir.path(), 12, 1, true);
    let one_class = ["--allow-one-class-val"];
    let summary = three_epochs_by_tss(dir.path(), &one_class);
    assert_eq!(summary["stopped_early_at"], 1);
    assert_eq!(summary["epochs"], 3);
    assert_eq!(summary["best_epoch"], serde_json::Value::Null);
    let history = summary["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["stopped_early"], true);
    assert_eq!(history[0]["stale_epochs"], 1);
    let run = dir.path().join("models/no_attention");
    let (fin, last) = (
        model::weights::read_weights(&run.join("fold1_final.safetensors"))
            .unwrap()
            .0,
        model::weights::read_weights(&run.join("fold1_last.safetensors"))
            .unwrap()
            .0,
    );
    let last: HashMap<String, Tensor> = last.into_iter().collect();
    for (k, t) in &fin {
        assert!(t.equal(&last[k]), "{k}");
    }
    let again = tiny_train(
        dir.path(),
        &[
            &one_class[..],
            &TSS_PATIENCE_1,
            &["--epochs", "3", "--resume"],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--patience") && err.contains("nothing is left to train"),
        "{err}"
    );
}

/// `--resume` is refused with an optimizer whose state a checkpoint cannot hold, and with
/// a recipe other than the one the run started with.
#[test]
fn resume_refuses_optimizer_state_and_a_changed_recipe() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, says) in [
        (&["--optimizer", "adamw"][..], "AdamW's moment estimates"),
        (&["--momentum", "0.9"][..], "SGD's momentum buffers"),
    ] {
        let out = tiny_train(
            dir.path(),
            &[flags, &["--epochs", "2", "--resume"]].concat(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("--resume") && err.contains(says) && err.contains("tch"),
            "{err}"
        );
    }

    common::write_tiny_fold(dir.path(), 12, 4, true);
    common::assert_success(tiny_train(dir.path(), &["--epochs", "1"]));
    for (flag, value) in [
        ("--select", "tss"),
        ("--balance", "none"),
        ("--schedule", "cosine"),
        ("--warmup-epochs", "1"),
    ] {
        let out = tiny_train(dir.path(), &["--epochs", "2", "--resume", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        let key = flag.trim_start_matches("--").replace('-', "_");
        assert_eq!(out.status.code(), Some(1), "{flag}: {err}");
        assert!(
            err.contains(&format!("cannot resume with {key} = ")),
            "{flag}: {err}"
        );
    }
}
