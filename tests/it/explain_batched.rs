//! Integrated Gradients batched across images (`explain --internal-batch-size`): each
//! image's map and convergence delta equal those of the image explained alone and
//! captum's; `bench explain` runs end to end.

use crate::common;
use flarecast::bench::explain::uniform_images;
use flarecast::explain::{self, Method, Options};
use flarecast::model::load_model;
use std::path::Path;
use tch::{Device, Kind, Tensor};

const SIDE: i64 = 192;
const IMAGES: usize = 3;
const STEPS: usize = 3;

/// Largest |a - b| over the largest |b|.
fn relative(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    (&a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

/// captum's IntegratedGradients of the flare logit on `inputs` ([N, 1, H, W]) for the
/// golden attention network and a ResNet-18 drawn from seed 0 (its weights written to
/// `out/resnet18.pth`), all images in one call with internal_batch_size 2N (two path
/// points of each image per pass): `out/{net}_ig.npy` [N, 1, H, W], `{net}_delta.npy`.
fn captum(inputs: &Path, out: &Path) {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    common::python(&format!(
        r#"
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, {scripts:?})
import numpy as np, torch
from captum.attr import IntegratedGradients
from reference_model import Logits, load_reference
from torchvision_golden import build, redraw

torch.manual_seed(0)
resnet = build("resnet18")
redraw(resnet)
resnet.eval()
torch.save(resnet.state_dict(), {resnet:?})
x = torch.from_numpy(np.load({inputs:?}))
nets = {{"attention": Logits(load_reference({attn:?})).eval(), "resnet18": resnet}}
for name, m in nets.items():
    a, d = IntegratedGradients(m).attribute(
        x, baselines=torch.zeros_like(x), target=1, n_steps={STEPS},
        internal_batch_size=2 * x.shape[0], return_convergence_delta=True)
    np.save({out:?} + f"/{{name}}_ig.npy", a.detach().numpy().astype(np.float32))
    np.save({out:?} + f"/{{name}}_delta.npy", d.detach().double().numpy())
"#,
        scripts = scripts.display().to_string(),
        resnet = out.join("resnet18.pth").display().to_string(),
        inputs = inputs.display().to_string(),
        attn = common::golden().join("attn.pth").display().to_string(),
        out = out.display().to_string(),
    ));
}

/// Three 192-pixel images through the attention network and ResNet-18: `explain` over
/// all of them with 4 path points per pass (passes spanning two images, each image but
/// the last split between passes) gives each the map, delta and P(FL) it has alone (to
/// float rounding), and captum's map within 1e-4 of its peak and delta within 1e-4.
#[test]
fn batched_across_images_equals_one_at_a_time_and_captum() {
    let dir = tempfile::tempdir().unwrap();
    let x = uniform_images(7, IMAGES, SIDE);
    let stack = dir.path().join("inputs.npy");
    common::write_npy(&stack, &x);
    let files: Vec<String> = (0..IMAGES)
        .map(|i| {
            let p = dir.path().join(format!("im{i}.npy"));
            common::write_npy(&p, &x.narrow(0, i as i64, 1));
            p.display().to_string()
        })
        .collect();
    captum(&stack, dir.path());
    let one_at_a_time = Options {
        steps: STEPS,
        internal_batch: Some(STEPS),
        ..Options::default()
    };
    for (net, weights) in [
        ("attention", common::golden().join("attn.pth")),
        ("resnet18", dir.path().join("resnet18.pth")),
    ] {
        let out = dir.path().join(net);
        let (steps, side) = (STEPS.to_string(), SIDE.to_string());
        let mut args = vec![
            "explain",
            "--model",
            weights.to_str().unwrap(),
            "--im-size",
            &side,
            "--method",
            "integrated-gradients",
            "--steps",
            &steps,
            "--internal-batch-size",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        args.extend(files.iter().map(String::as_str));
        let lines = common::run_json_lines(&args);
        assert_eq!(lines.len(), IMAGES, "{net}: one line per image");
        let model = load_model(&weights, Device::Cpu).unwrap();
        let theirs = Tensor::read_npy(dir.path().join(format!("{net}_ig.npy"))).unwrap();
        let their_deltas = Tensor::read_npy(dir.path().join(format!("{net}_delta.npy"))).unwrap();
        for (i, line) in lines.iter().enumerate() {
            let batched = Tensor::read_npy(out.join(format!("im{i}_ig.npy"))).unwrap();
            let batched_delta = line["delta"].as_f64().unwrap();
            let xi = x.narrow(0, i as i64, 1);
            let alone =
                explain::explain(&model, &xi, Method::IntegratedGradients, &one_at_a_time).unwrap();
            let alone_delta = alone.delta.unwrap();
            let err = relative(&batched, &alone.maps[0].raw);
            assert!(err < 1e-5, "{net} image {i}: batched vs alone {err:e}");
            assert!(
                (batched_delta - alone_delta).abs() < 1e-5,
                "{net} image {i}: delta {batched_delta} batched, {alone_delta} alone"
            );
            assert!(
                (line["flare_prob"].as_f64().unwrap() - alone.prob).abs() < 1e-6,
                "{net} image {i}: P(FL)"
            );
            let captum = theirs.get(i as i64).squeeze();
            let err = relative(&batched, &captum);
            assert!(err < 1e-4, "{net} image {i}: vs captum {err:e}");
            let their_delta = their_deltas.double_value(&[i as i64]);
            assert!(
                (batched_delta - their_delta).abs() < 1e-4,
                "{net} image {i}: delta {batched_delta}, captum's {their_delta}"
            );
        }
    }
}

/// `bench explain` on a tiny case prints both programs' images/s and a difference
/// within the tolerance.
#[test]
fn bench_explain_runs_end_to_end() {
    let out = common::run_ok(&[
        "bench",
        "explain",
        "--device",
        "cpu",
        "--arch",
        "resnet18",
        "--im-size",
        "192",
        "--images",
        "2",
        "--steps",
        "2",
        "--rounds",
        "1",
        "--captum-k",
        "1,2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("processor: "), "{text}");
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("resnet18"))
        .unwrap_or_else(|| panic!("no resnet18 row: {text}"))
        .split_whitespace()
        .collect();
    // arch, points, flarecast/s, captum K, captum/s, ratio, max diff/peak
    assert_eq!(row.len(), 7, "{text}");
    let rate = |s: &str| s.trim_end_matches('x').parse::<f64>().unwrap();
    assert!(rate(row[2]) > 0.0 && rate(row[4]) > 0.0, "{text}");
    assert!(["1", "2"].contains(&row[3]), "{text}");
    assert!(rate(row[6]) < 1e-4, "{text}");
    assert!(text.contains("captum 0.9"), "{text}");
}

/// A pass of no path points is refused by the flag's name, before anything is read.
#[test]
fn zero_points_per_pass_is_refused() {
    let out = common::flarecast()
        .args([
            "explain",
            "--model",
            "missing.pth",
            "--method",
            "integrated-gradients",
            "--internal-batch-size",
            "0",
            "missing.npy",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--internal-batch-size") && err.contains("0 is outside 1..=4096"),
        "{err}"
    );
}
