//! The torchvision networks (AlexNet, VGG16, ResNet-18/34/50, MobileNetV2) through the
//! commands: `train --arch` then `predict` and `evaluate` on a tiny fold; the three
//! checkpoint layouts against torchvision's own forward; an experiment of two of them;
//! their explanations against captum (scripts/captum_vision.py); `train --pretrained`
//! against torchvision's ImageNet layout; and what `explain` refuses and writes for them.

use crate::common;

use flarecast::explain::{self, graph, Method};
use flarecast::model::pretrained::load_pretrained;
use flarecast::model::{load_model, weights, Arch, InitScheme, Network};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_string()
}

/// The golden input's first row (the real magnetogram, [1, 1, 256, 256] in [0, 1]) as a
/// float32 .npy in `dir`: the one input torchvision, captum and flarecast all read.
fn magnetogram_npy(dir: &Path) -> (PathBuf, Tensor) {
    let x = common::golden_input("noattn").narrow(0, 0, 1).contiguous();
    assert_eq!(x.size(), [1, 1, 256, 256]);
    let path = dir.join("magnetogram.npy");
    common::write_npy(&path, &x);
    (path, x)
}

/// Runs `scripts/captum_vision.py WHAT INPUT OUT ARGS` in the torch virtualenv.
fn script(what: &str, input: &Path, out: &Path, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/captum_vision.py");
    let run = std::process::Command::new(common::torch_python())
        .arg(&path)
        .args([what, &s(input), &s(out)])
        .args(args)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "captum_vision.py {what}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn npy(path: &Path) -> Tensor {
    Tensor::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// max |ours - reference| over max |reference| (which must not be 0: a reference of
/// zeros would make the comparison trivial).
fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.size(), reference.size());
    let (a, b) = (ours.to_kind(Kind::Double), reference.to_kind(Kind::Double));
    let peak = b.abs().max().double_value(&[]);
    assert!(peak > 0.0, "the reference is all zeros");
    (&a - &b).abs().max().double_value(&[]) / peak
}

fn tensors_of(path: &Path) -> HashMap<String, Tensor> {
    weights::read_weights(path)
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
        .0
        .into_iter()
        .collect()
}

/// `train` flags of the tiny fold `common::write_tiny_fold(root, 2, 2, true)` writes: one
/// epoch, one batch of its two training instances (one FL) at the smallest side, float32
/// on the CPU.
fn tiny_train(root: &Path, out: &Path, arch: &str) -> Vec<String> {
    [
        "train",
        "--fold",
        "1",
        "--arch",
        arch,
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--im-size",
        "192",
        "--device",
        "cpu",
        "--precision",
        "f32",
        "--images",
        &s(&root.join("images")),
        "--labels",
        &s(&root.join("labels")),
        "--out",
        &s(out),
        "--json",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// flarecast's metadata in a safetensors file's header, read without its tensors (VGG16's
/// are half a gigabyte).
fn safetensors_meta(path: &Path) -> Value {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut len = [0u8; 8];
    f.read_exact(&mut len).unwrap();
    let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
    f.read_exact(&mut header).unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    let meta = header["__metadata__"]["flarecast"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no flarecast metadata", path.display()));
    serde_json::from_str(meta).unwrap()
}

fn json_of(args: &[String]) -> Value {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_json(&args)
}

/// `train --arch NAME` on a tiny fold (2 training and 2 validation instances, one FL
/// each), then `predict` on one validation image and `evaluate --model` on the fold:
/// checkpoints in `{out}/{name}/`, one probability for one image, one row per validation
/// image, and `predict` and `evaluate` agree.
fn train_predict_evaluate(arch: Arch) {
    let name = arch.name();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::write_tiny_fold(root, 2, 2, true);
    let out = root.join("models");
    let summary = json_of(&tiny_train(root, &out, name));
    assert_eq!(summary["arch"], name, "{summary}");
    assert_eq!(summary["epochs"], 1);
    assert_eq!(summary["train_instances"], 2);
    assert_eq!(summary["balanced_items"], 2);
    assert_eq!(
        (&summary["val_instances"], &summary["val_positive"]),
        (&Value::from(2), &Value::from(1))
    );
    assert!(summary["pretrained"].is_null(), "{summary}");
    let loss = summary["history"][0]["train_loss"].as_f64().unwrap();
    assert!(loss.is_finite(), "{summary}");

    // The checkpoints are under the network's own name, and only there.
    let run = out.join(name);
    let folders: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folders, [name], "{name}: folders under --out");
    let final_ckpt = run.join("fold1_final.safetensors");
    assert_eq!(summary["final_checkpoint"], s(&final_ckpt));
    // Their metadata (the weights load as the network: `predict` and `evaluate` below).
    for f in ["fold1_final.safetensors", "fold1_last.safetensors"] {
        let meta = safetensors_meta(&run.join(f));
        assert_eq!(meta["arch"], name, "{name} {f}");
        assert_eq!(meta["im_size"], 192, "{name} {f}");
    }
    assert!(run.join("fold1_history.csv").is_file());

    // evaluate --model: one row per validation image, probabilities in [0, 1].
    let eval = root.join("eval");
    let report = common::run_json(&[
        "evaluate",
        "--model",
        &s(&final_ckpt),
        "--fold",
        "1",
        "--labels",
        &s(&root.join("labels")),
        "--images",
        &s(&root.join("images")),
        "--out",
        &s(&eval),
        "--device",
        "cpu",
        "--json",
    ]);
    let files = report["files"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(files.len(), 1, "{report}");
    let counts: u64 = ["tp", "fp", "tn", "fn"]
        .iter()
        .map(|k| {
            files[0][k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k}: {report}"))
        })
        .sum();
    assert_eq!(counts, 2, "{report}");
    let rows = common::csv_rows(&eval.join("fold1_res.csv"));
    assert_eq!(rows.len(), 2, "{name}: {rows:?}");
    for r in &rows {
        let p: f64 = r[1].parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{name}: {r:?}");
    }
    assert_eq!(rows.iter().filter(|r| r[2] == "1").count(), 1);

    // predict on one validation image: one line, one probability, evaluate's.
    let image = &rows[0][0];
    let lines = common::run_json_lines(&[
        "predict",
        "--model",
        &s(&final_ckpt),
        image,
        "--json",
        "--device",
        "cpu",
    ]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let p = &lines[0];
    assert_eq!(p["model"], name);
    let prob = p["flare_prob"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&prob), "{p}");
    let want: f64 = rows[0][1].parse().unwrap();
    assert!(
        (prob - want).abs() < 1e-5,
        "{name}: predict {prob} vs evaluate {want} for {image}"
    );
}

#[test]
fn alexnet_trains_predicts_and_evaluates() {
    train_predict_evaluate(Arch::AlexNet);
}

#[test]
fn vgg16_trains_predicts_and_evaluates() {
    train_predict_evaluate(Arch::Vgg16);
}

#[test]
fn resnet18_trains_predicts_and_evaluates() {
    train_predict_evaluate(Arch::ResNet18);
}

#[test]
fn resnet34_trains_predicts_and_evaluates() {
    train_predict_evaluate(Arch::ResNet34);
}

#[test]
fn resnet50_trains_predicts_and_evaluates() {
    train_predict_evaluate(Arch::ResNet50);
}

#[test]
fn mobilenet_v2_trains_predicts_and_evaluates() {
    train_predict_evaluate(Arch::MobileNetV2);
}

/// ResNet-18 and MobileNetV2 saved by torch.save three ways (scripts/captum_vision.py
/// layouts), the magnetogram as .npy, and torchvision's eval-mode logits of it.
struct Layouts {
    dir: tempfile::TempDir,
    input: PathBuf,
    expected: Value,
}

fn layouts() -> Layouts {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = magnetogram_npy(dir.path());
    script("layouts", &input, dir.path(), &[]);
    let expected = read_json(&dir.path().join("layouts.json"));
    Layouts {
        dir,
        input,
        expected,
    }
}

/// Checkpoints torch.save wrote: they predict as torchvision does, and `explain` runs on
/// them (one test: the checkpoints are made once).
#[test]
fn torchvision_checkpoints_predict_and_explain() {
    let l = layouts();
    layouts_predict_as_torchvision(&l);
    explain_on_resnet18(&l);
}

/// A plain state dict, `{'model_state_dict': ...}` and DataParallel's `module.` keys all
/// load as the network, and `predict` on the .npy gives torchvision's probability and
/// logits within 1e-5.
fn layouts_predict_as_torchvision(l: &Layouts) {
    for net in ["resnet18", "mobilenet_v2"] {
        let want = &l.expected[net];
        let want_prob = want["prob"].as_f64().unwrap();
        let want_logits: Vec<f64> = serde_json::from_value(want["logits"].clone()).unwrap();
        for suffix in ["", "_msd", "_module"] {
            let file = l.dir.path().join(format!("{net}{suffix}.pth"));
            let lines = common::run_json_lines(&[
                "predict",
                "--model",
                &s(&file),
                &s(&l.input),
                "--json",
                "--device",
                "cpu",
            ]);
            assert_eq!(lines.len(), 1, "{lines:?}");
            let p = &lines[0];
            assert_eq!(p["model"], net, "{}", file.display());
            let prob = p["flare_prob"].as_f64().unwrap();
            assert!(
                (prob - want_prob).abs() < 1e-5,
                "{net}{suffix}: P(FL) {prob} vs torchvision {want_prob}"
            );
            let logits: Vec<f64> = serde_json::from_value(p["logits"].clone()).unwrap();
            let scale = want_logits.iter().fold(1f64, |m, v| m.max(v.abs()));
            for (a, b) in logits.iter().zip(&want_logits) {
                assert!(
                    (a - b).abs() < 1e-5 * scale,
                    "{net}{suffix}: logits {logits:?} vs torchvision {want_logits:?}"
                );
            }
            eprintln!(
                "{net}{suffix}: P(FL) {prob:.7} vs torchvision {want_prob:.7} (|diff| {:.1e})",
                (prob - want_prob).abs()
            );
        }
    }
}

/// `explain` on a ResNet-18: `--method attention` refused in one line naming the network
/// and the method to use instead; Grad-CAM and Guided Grad-CAM at `--layer layer3` write
/// their overlays, panels and raw maps, the latter at the layer asked for and in float32
/// even with `--precision bf16`; an unknown layer refused naming the network's stages.
fn explain_on_resnet18(l: &Layouts) {
    let model = l.dir.path().join("resnet18.pth");
    let out = tempfile::tempdir().unwrap();
    let explain_run = |extra: &[&str]| {
        let mut args = vec![
            "explain".to_string(),
            "--device".into(),
            "cpu".into(),
            "--model".into(),
            s(&model),
            "--out".into(),
            s(out.path()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(s(&l.input));
        common::flarecast().args(&args).output().unwrap()
    };
    let refused = explain_run(&["--method", "attention"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("resnet18") && err.contains("--method gradcam"),
        "{err}"
    );
    let bad_layer = explain_run(&["--method", "gradcam", "--layer", "layer5"]);
    assert_eq!(bad_layer.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad_layer.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("layer5") && err.contains("layer1, layer2, layer3, layer4"),
        "{err}"
    );

    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    ok(explain_run(&["--method", "gradcam"]));
    // In bf16 too: the maps are differentiated in float32 whatever the command computes.
    ok(explain_run(&[
        "--method",
        "guided-gradcam",
        "--layer",
        "layer3",
        "--precision",
        "bf16",
    ]));
    for png in [
        "magnetogram_gradcam.png",
        "magnetogram_guided_gradcam.png",
        "magnetogram_panel.png",
    ] {
        let img = image::open(out.path().join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert_eq!(img.height(), 256, "{png}");
    }
    // Grad-CAM is the normalised display map; the guided map is layer3's, not layer4's.
    let cam = npy(&out.path().join("magnetogram_gradcam.npy"));
    assert_eq!(cam.size(), [256, 256]);
    assert_eq!(cam.max().double_value(&[]), 1.0);
    assert_eq!(cam.min().double_value(&[]), 0.0);
    let guided = npy(&out.path().join("magnetogram_guided_gradcam.npy"));
    let loaded = load_model(&model, Device::Cpu).unwrap();
    let x = npy(&l.input);
    let at = |layer: &str| {
        let opts = explain::Options {
            layer: Some(layer.into()),
            ..explain::Options::default()
        };
        explain::explain(&loaded, &x, Method::GuidedGradcam, &opts)
            .unwrap()
            .maps
            .remove(0)
            .raw
    };
    // The command explains in float32 NCHW whatever its compute (here bf16 channels-last),
    // as the library does.
    let (e3, e4) = (
        rel_err(&guided, &at("layer3")),
        rel_err(&guided, &at("layer4")),
    );
    assert!(e3 < 1e-5 && e4 > 1e-2, "vs layer3 {e3:e}, vs layer4 {e4:e}");
}

/// Integrated Gradients, Guided Grad-CAM (at layer4 and layer3), guided backprop,
/// LayerGradCam and occlusion of a ResNet-18, and guided backprop, LayerGradCam and Guided
/// Grad-CAM of a MobileNetV2 (whose ReLU6 captum leaves alone) and of an AlexNet (at its
/// last ReLU, features.11, and after its last pool, features), on the magnetogram, equal
/// captum's within 1e-4 of each map's largest magnitude; IG's convergence delta within
/// 1e-4.
#[test]
fn explanations_match_captum_on_torchvision_networks() {
    let dir = tempfile::tempdir().unwrap();
    let (input, x) = magnetogram_npy(dir.path());
    // Occlusion: 3 x 3 placements on 256, overlapping, the last in each direction clipped.
    let (steps, window, stride) = (16, 112, 80);
    script(
        "captum",
        &input,
        dir.path(),
        &[
            "--steps",
            &steps.to_string(),
            "--window",
            &window.to_string(),
            "--stride",
            &stride.to_string(),
        ],
    );
    let captum = read_json(&dir.path().join("captum.json"));
    let reference = |name: &str| npy(&dir.path().join(format!("{name}.npy")));
    let opts = explain::Options {
        steps,
        window,
        stride,
        ..explain::Options::default()
    };
    let mut errors = Vec::new();
    let mut check = |what: String, ours: &Tensor, theirs: &Tensor| {
        let err = rel_err(ours, theirs);
        errors.push(format!("{what} {err:.1e}"));
        assert!(err < 1e-4, "{what}: relative error {err:e}");
    };
    for (net, stages) in [
        ("resnet18", &["layer4", "layer3"][..]),
        ("mobilenet_v2", &["features"][..]),
        ("alexnet", &["features.11", "features"][..]),
    ] {
        let model = load_model(&dir.path().join(format!("{net}.pth")), Device::Cpu).unwrap();
        let vision = model.net.vision().unwrap();
        let logits = tch::no_grad(|| model.net.forward_t(&x, false).logits);
        let want: Vec<f64> = serde_json::from_value(captum[net]["logits"].clone()).unwrap();
        check(
            format!("{net} logits"),
            &logits.view([2]),
            &Tensor::from_slice(&want),
        );

        let gbp = graph::guided_backprop(vision, &x, 1);
        if net == "resnet18" {
            // Rectifying at the ReLUs matters here: the plain gradient is far from captum's.
            let xg = x.detach().set_requires_grad(true);
            let score = graph::Graph::of(&model.net)
                .logits(&xg)
                .select(1, 1)
                .sum(Kind::Float);
            let plain = Tensor::run_backward(&[&score], &[&xg], false, false).remove(0);
            let theirs = reference("resnet18_guided_backprop");
            let err = rel_err(&plain.view([256, 256]), &theirs);
            assert!(
                err > 1e-1,
                "the plain gradient is within {err:e} of guided backprop"
            );
        }
        check(
            format!("{net} guided backprop"),
            &gbp.view([256, 256]),
            &reference(&format!("{net}_guided_backprop")),
        );
        for &stage in stages {
            let lgc = graph::layer_gradcam(vision, &x, stage, 1);
            let theirs = reference(&format!("{net}_layer_gradcam_{stage}"));
            let (h, w) = (theirs.size()[0], theirs.size()[1]);
            check(
                format!("{net} LayerGradCam {stage}"),
                &lgc.view([h, w]),
                &theirs,
            );
            let opts = explain::Options {
                layer: Some(stage.into()),
                ..opts.clone()
            };
            let exp = explain::explain(&model, &x, Method::GuidedGradcam, &opts).unwrap();
            check(
                format!("{net} GuidedGradCam {stage}"),
                &exp.maps[0].raw,
                &reference(&format!("{net}_guided_gradcam_{stage}")),
            );
        }
        if net != "resnet18" {
            continue;
        }
        let exp = explain::explain(&model, &x, Method::IntegratedGradients, &opts).unwrap();
        check(
            format!("{net} IG"),
            &exp.maps[0].raw,
            &reference("resnet18_ig"),
        );
        let (ours, theirs) = (
            exp.delta.unwrap(),
            captum[net]["ig_delta"].as_f64().unwrap(),
        );
        eprintln!("{net} IG delta {ours:.4e} vs captum {theirs:.4e}");
        assert!(
            (ours - theirs).abs() < 1e-4,
            "{net} IG delta {ours} vs captum {theirs}"
        );
        let exp = explain::explain(&model, &x, Method::Occlusion, &opts).unwrap();
        check(
            format!("{net} occlusion"),
            &exp.maps[0].raw,
            &reference("resnet18_occlusion"),
        );
    }
    eprintln!("vs captum: {}", errors.join("; "));
}

/// `train --pretrained` with a torchvision ImageNet state dict of ResNet-18 (3-channel
/// conv1, 1000-class fc; scripts/captum_vision.py pretrained): the first convolution is
/// the file's summed over the colour channels, everything else but `fc` is the file's,
/// and the network computes torchvision's layer4 on the grey image copied to RGB, with
/// `--pretrained-normalisation` on it normalised by ImageNet's mean and std (border
/// included, torchvision padding the unnormalised image). A checkpoint without the
/// BatchNorms' `num_batches_tracked` (as torchvision publishes ResNet's) loads the same.
#[test]
fn pretrained_imagenet_resnet18_starts_training() {
    let dir = tempfile::tempdir().unwrap();
    let (input, x) = magnetogram_npy(dir.path());
    script("pretrained", &input, dir.path(), &[]);
    let file = dir.path().join("imagenet.pth");
    let legacy = dir.path().join("imagenet_legacy.pth");
    let source = tensors_of(&file);
    let summed = npy(&dir.path().join("conv1_summed.npy"));
    let std = Tensor::from_slice(&[0.229f64, 0.224, 0.225]).view([1, 3, 1, 1]);
    let summed_normalised = (source["conv1.weight"].to_kind(Kind::Double) / &std).sum_dim_intlist(
        1,
        true,
        Kind::Double,
    );

    // Library: a fresh ResNet-18, loaded with and without the normalisation.
    for (path, fold) in [(&file, false), (&legacy, false), (&file, true)] {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = Network::new(&vs.root(), Arch::ResNet18, InitScheme::default());
        let fresh_fc = vs.variables()["fc.weight"].copy();
        let report = load_pretrained(&mut vs, Arch::ResNet18, path, fold).unwrap();
        let what = format!("{} fold {fold}", path.display());
        assert_eq!(report.first_conv, "conv1.weight");
        assert_eq!(report.channels_summed, 3);
        assert_eq!(report.replaced, ["fc.bias", "fc.weight"]);
        assert_eq!(report.classes_replaced, 1000);
        assert_eq!(report.normalisation_folded, fold);
        // 122 keys, fc's two replaced; the legacy file lacks the 20 batch counters.
        let counters = if path == &legacy { 20 } else { 0 };
        assert_eq!(
            (report.loaded, report.counters_started),
            (120 - counters, counters),
            "{what}"
        );
        let vars = vs.variables();
        assert!(
            vars["fc.weight"].equal(&fresh_fc),
            "{what}: fc is the fresh layer"
        );
        assert_eq!(vars["fc.weight"].size(), [2, 512]);
        assert!(vars["layer2.1.conv2.weight"].equal(&source["layer2.1.conv2.weight"]));
        assert!(vars["layer3.0.bn1.running_var"].equal(&source["layer3.0.bn1.running_var"]));
        let conv1 = &vars["conv1.weight"];
        let want = if fold { &summed_normalised } else { &summed };
        let err = rel_err(conv1, want);
        assert!(err < 1e-6, "{what}: conv1 off by {err:e}");
        let (_, layer4) = graph::forward_keeping(net.vision().unwrap(), &x, "layer4");
        let theirs = npy(&dir.path().join(if fold {
            "layer4_normalised.npy"
        } else {
            "layer4_plain.npy"
        }));
        let err = rel_err(&layer4.detach(), &theirs);
        eprintln!("pretrained {what}: layer4 vs torchvision {err:.1e}");
        assert!(err < 1e-5, "{what}: layer4 off by {err:e} of its magnitude");
    }

    // The command: the report in the summary, and conv1 the summed file's (lr 0: the
    // step changes no weight, only BatchNorm's running statistics).
    let root = dir.path().join("fold");
    common::write_tiny_fold(&root, 2, 2, true);
    for (path, fold) in [(&legacy, false), (&file, true)] {
        let out = root.join(if fold { "normalised" } else { "plain" });
        let mut args = tiny_train(&root, &out, "resnet18");
        args.extend(["--lr", "0", "--weight-decay", "0", "--pretrained"].map(String::from));
        args.push(s(path));
        if fold {
            args.push("--pretrained-normalisation".into());
        }
        let summary = json_of(&args);
        let p = &summary["pretrained"];
        assert_eq!(p["file"], s(path), "{summary}");
        assert_eq!(p["first_conv"], "conv1.weight");
        assert_eq!(p["channels_summed"], 3);
        assert_eq!(p["replaced"], serde_json::json!(["fc.bias", "fc.weight"]));
        assert_eq!(p["classes_replaced"], 1000);
        assert_eq!(p["normalisation_folded"], fold);
        assert_eq!(p["counters_started"], if fold { 0 } else { 20 });
        let trained = tensors_of(&out.join("resnet18/fold1_final.safetensors"));
        let want = if fold { &summed_normalised } else { &summed };
        let err = rel_err(&trained["conv1.weight"], want);
        assert!(err < 1e-6, "trained conv1 off by {err:e}");
        assert!(trained["layer1.0.conv1.weight"].equal(&source["layer1.0.conv1.weight"]));
        assert_eq!(trained["fc.weight"].size(), [2, 512]);
    }
}

/// `experiment run --arch resnet18,alexnet` on a synthetic archive (fold 1, one epoch at
/// 192): cells in `{exp}/{name}/seed{S}/`, and `experiment report` has a row and a
/// summary for each network, apart.
#[test]
fn experiment_runs_and_reports_two_torchvision_networks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::synth_and_label_12h(d, "2014-03-29T00:00:00", "6", "2014-04-03T12:00:00");
    let exp = d.join("exp");
    let run = [
        "experiment",
        "run",
        "--images",
        &s(&d.join("archive/images")),
        "--labels",
        &s(&d.join("labels")),
        "--out",
        &s(&exp),
        "--folds",
        "1",
        "--arch",
        "resnet18,alexnet",
        "--seeds",
        "4",
        "--executor",
        "local",
        "--",
    ];
    common::run_ok(&[&run[..], &common::cell_train_flags()].concat());
    let report = common::run_json(&["experiment", "report", "--out", &s(&exp), "--json"]);
    let rows = report["rows"].as_array().unwrap();
    let mut archs: Vec<&str> = rows.iter().map(|r| r["arch"].as_str().unwrap()).collect();
    archs.sort_unstable();
    assert_eq!(archs, ["alexnet", "resnet18"], "{report}");
    for row in rows {
        let arch = row["arch"].as_str().unwrap();
        assert_eq!(row["state"], "done", "{row}");
        assert_eq!(row["fold"], 1);
        let res = exp.join(arch).join("seed4/fold1_res.csv");
        let n = common::csv_rows(&res).len() as u64;
        assert_eq!(n, 6, "{}", res.display());
        assert_eq!(row["n"], n, "{row}");
        let m = load_model(
            &exp.join(arch).join("seed4/fold1_final.safetensors"),
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(m.net.arch().name(), arch);
    }
    let summaries = report["summaries"].as_array().unwrap();
    let mut grouped: Vec<(&str, &Value)> = summaries
        .iter()
        .map(|g| (g["arch"].as_str().unwrap(), &g["folds"]))
        .collect();
    grouped.sort_unstable_by_key(|g| g.0);
    assert_eq!(
        grouped,
        [
            ("alexnet", &serde_json::json!([1])),
            ("resnet18", &serde_json::json!([1]))
        ],
        "{report}"
    );
    // Each network's summary is its own row's, not the two pooled.
    for g in summaries {
        let row = rows.iter().find(|r| r["arch"] == g["arch"]).unwrap();
        for k in ["brier", "roc_auc", "tp", "fp", "tn", "fn"] {
            assert_eq!(g["mean"][k].as_f64(), row[k].as_f64(), "{k}: {g}");
        }
    }
    let text = common::run_ok(&["experiment", "report", "--out", &s(&exp)]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("resnet18 seed 4") && text.contains("alexnet seed 4"),
        "{text}"
    );
}
