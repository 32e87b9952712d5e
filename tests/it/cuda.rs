//! CUDA: golden parity, the automatic precision and a training step on the GPU. The tests
//! are ignored by a plain `cargo test` (reported as ignored, never as passed): run them on
//! a GPU machine with `cargo test --test it cuda:: -- --ignored`, as scripts/gpu-check.sh
//! does; there, a missing CUDA device fails them.

use crate::common;

use flarecast::device::{self as fdevice, PrecisionChoice};
use flarecast::model::{self, Compute, Precision};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

fn cuda() -> Device {
    assert!(
        tch::Cuda::is_available(),
        "no CUDA device: these tests run on a GPU machine"
    );
    Device::Cuda(0)
}

fn golden(name: &str) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(common::golden().join(name))
        .unwrap()
        .into_iter()
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu).to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
#[ignore = "needs CUDA"]
fn golden_probabilities_on_cuda_in_f32_and_bf16() {
    let dev = cuda();
    let g = golden("attn_io.safetensors");
    let x = g["input"].to_device(dev);
    for (precision, tol) in [(Precision::F32, 2e-3), (Precision::Bf16, 5e-2)] {
        let mut m = model::load_model(&common::golden().join("attn.pth"), dev).unwrap();
        m.net
            .set_compute(Compute::for_device(dev, precision, m.net.arch()));
        let out = tch::no_grad(|| m.net.forward_t(&x, false));
        // cuDNN may compute float32 convolutions in TF32: a looser bound than the CPU's.
        let d = max_abs_diff(&out.logits.softmax(-1, Kind::Float), &g["probs"]);
        assert!(
            d <= tol,
            "{precision:?}: probabilities differ by {d:e} (> {tol:e})"
        );
    }
}

#[test]
#[ignore = "needs CUDA"]
fn auto_precision_follows_the_compute_capability() {
    let dev = cuda();
    let (major, minor) = flarecast::hardware::cuda_compute_capability(0)
        .expect("the driver reports the compute capability");
    let chosen = fdevice::choose_precision(PrecisionChoice::Auto, dev);
    let want = if major >= 8 {
        Precision::Bf16
    } else {
        Precision::F32
    };
    assert_eq!(
        chosen.precision, want,
        "compute capability {major}.{minor}: {}",
        chosen.reason
    );
}

#[test]
#[ignore = "needs CUDA"]
fn training_step_on_cuda_matches_the_golden_step() {
    let dev = cuda();
    let g = golden("noattn_step.safetensors");
    let mut m = model::load_model(&common::golden().join("noattn.pth"), dev).unwrap();
    m.net
        .set_compute(Compute::for_device(dev, Precision::F32, m.net.arch()));
    let mut opt = tch::nn::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        wd: 0.5,
        nesterov: false,
    }
    .build(&m.vs, 1e-3)
    .unwrap();
    let out = m.net.forward_t(&g["input"].to_device(dev), true);
    let loss = out
        .logits
        .cross_entropy_for_logits(&g["target"].to_device(dev));
    let d = max_abs_diff(&loss.reshape([1]), &g["loss"]);
    assert!(d <= 2e-3, "loss differs by {d:e}");
    opt.backward_step(&loss);
    let vars = m.vs.variables();
    let w = "classify.weight";
    let d = max_abs_diff(&vars[w], &g[&format!("after.{w}")]);
    assert!(d <= 1e-3, "{w} after one step differs by {d:e}");
}
