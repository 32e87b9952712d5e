//! The plain PyTorch baseline (scripts/reference_model.py) is the paper's architecture:
//! it loads the golden state dicts strictly and reproduces the golden outputs and one
//! golden training step.

mod common;

#[test]
fn reference_model_reproduces_the_golden_outputs_and_step() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference_model.py");
    let out = std::process::Command::new(common::torch_python())
        .arg("-W")
        .arg("ignore")
        .arg(&script)
        .arg("--check")
        .arg(common::golden())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "reference_model.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    // One training step sums gradients in the processor's kernel order: on an AVX2-only
    // CPU a weight lands 1.04e-6 from the golden step (made with AVX-512), so steps are
    // held to the 1e-5 the outputs are.
    let expect = [
        ("attn", &["logits", "probs", "c1", "c2", "c3"][..], 1e-5),
        ("noattn", &["logits", "probs"][..], 1e-5),
        (
            "attn_step",
            &[
                "loss",
                "after.classify.weight",
                "after.conv_block1.1.running_var",
            ][..],
            1e-5,
        ),
        (
            "noattn_step",
            &["loss", "after.dense.weight", "after.conv_block6.0.weight"][..],
            1e-5,
        ),
    ];
    for (net, outputs, tol) in expect {
        let got = report[net]
            .as_object()
            .unwrap_or_else(|| panic!("{net} missing: {report}"));
        for o in outputs {
            assert!(got.contains_key(*o), "{net}.{o} not checked: {report}");
        }
        for (k, v) in got {
            let err = v.as_f64().unwrap();
            assert!(err <= tol, "{net}.{k}: error {err:e} > {tol:e}");
        }
    }
    // Every tensor of the golden step file is compared.
    assert_eq!(report["attn_step"].as_object().unwrap().len(), 17);
    assert_eq!(report["noattn_step"].as_object().unwrap().len(), 14);
}
