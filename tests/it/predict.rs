//! `flarecast predict` end to end: golden probabilities, real images, bad input.

use crate::common;

use std::path::{Path, PathBuf};
use tch::Tensor;

fn golden_input_npy(dir: &Path, io: &str) -> PathBuf {
    let io: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(common::golden().join(io))
            .unwrap()
            .into_iter()
            .collect();
    let npy = dir.join("golden_input.npy");
    io["input"].write_npy(&npy).unwrap();
    npy
}

fn meta_probs(key: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(common::golden().join("meta.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    meta[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[1].as_f64().unwrap())
        .collect()
}

fn predict_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = common::flarecast()
        .arg("predict")
        .arg("--json")
        .args(args)
        .arg("--device")
        .arg("cpu")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "predict failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn golden_npy_reproduces_reference_probabilities() {
    for (pth, io, key, arch) in [
        ("attn.pth", "attn_io.safetensors", "attn_probs", "attention"),
        (
            "noattn.pth",
            "noattn_io.safetensors",
            "noattn_probs",
            "standard_cnn",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let npy = golden_input_npy(dir.path(), io);
        let model = common::golden().join(pth);
        let rows = predict_json(&["--model", model.to_str().unwrap(), npy.to_str().unwrap()]);
        let want = meta_probs(key);
        assert_eq!(rows.len(), 3);
        for (i, (row, p)) in rows.iter().zip(&want).enumerate() {
            assert_eq!(row["index"], i as u64);
            assert_eq!(row["model"], arch);
            assert_eq!(row["input"], npy.to_str().unwrap());
            let got = row["flare_prob"].as_f64().unwrap();
            assert!((got - p).abs() <= 1e-5, "{pth} row {i}: {got} vs {p}");
            let logits = row["logits"].as_array().unwrap();
            assert_eq!(logits.len(), 2);
        }
    }
}

#[test]
fn real_jpg_and_jp2_give_the_golden_magnetogram_probability() {
    // Row 0 of the golden input is this JPG through Resize(256); our preprocessing
    // gives the reference's probability.
    let want = meta_probs("attn_probs")[0];
    let model = common::golden().join("attn.pth");
    let jpg = common::magnetogram_jpg();
    let rows = predict_json(&["--model", model.to_str().unwrap(), jpg.to_str().unwrap()]);
    let got = rows[0]["flare_prob"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-5, "jpg: {got} vs {want}");
    // The 4096x4096 JP2 goes the reference's way (4096 -> 512 area -> JPEG -> 256); the
    // JPEG encoders differ at a few pixels, so a close probability.
    let jp2 = common::magnetogram_jp2();
    let rows = predict_json(&["--model", model.to_str().unwrap(), jp2.to_str().unwrap()]);
    let got = rows[0]["flare_prob"].as_f64().unwrap();
    assert!((got - want).abs() <= 5e-5, "jp2: {got} vs {want}");
}

/// A one-line error naming `name`, exit code 1, no panic.
fn assert_clean_failure(args: &[&str], name: &str) {
    let out = common::flarecast()
        .arg("predict")
        .args(args)
        .arg("--device")
        .arg("cpu")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(name), "error does not name {name}: {err}");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good_model = common::golden().join("attn.pth");
    let good_model = good_model.to_str().unwrap();
    let jpg = common::magnetogram_jpg();
    let jpg = jpg.to_str().unwrap();

    let bytes = std::fs::read(common::golden().join("attn.pth")).unwrap();
    let truncated = d.join("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_failure(
        &["--model", truncated.to_str().unwrap(), jpg],
        "truncated.pth",
    );

    let text = d.join("notes.pth");
    std::fs::write(&text, "these are not weights\n").unwrap();
    assert_clean_failure(&["--model", text.to_str().unwrap(), jpg], "notes.pth");

    let html = d.join("page.jpg");
    std::fs::write(
        &html,
        "<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
    )
    .unwrap();
    assert_clean_failure(&["--model", good_model, html.to_str().unwrap()], "page.jpg");

    let empty = d.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert_clean_failure(
        &["--model", good_model, empty.to_str().unwrap()],
        "empty.png",
    );

    let wrong = d.join("wrong.npy");
    Tensor::zeros([2, 3, 256, 256], (tch::Kind::Float, tch::Device::Cpu))
        .write_npy(&wrong)
        .unwrap();
    assert_clean_failure(
        &["--model", good_model, wrong.to_str().unwrap()],
        "wrong.npy",
    );

    let missing = d.join("missing.jpg");
    assert_clean_failure(
        &["--model", good_model, missing.to_str().unwrap()],
        "missing.jpg",
    );
}

#[test]
fn a_sixteen_bit_or_colour_image_is_read_as_pillow_does_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let grey = image::open(common::magnetogram_jpg()).unwrap().to_luma8();
    let p8 = dir.path().join("m8.png");
    grey.save(&p8).unwrap();
    let p16 = dir.path().join("m16.png");
    image::ImageBuffer::<image::Luma<u16>, _>::from_fn(grey.width(), grey.height(), |x, y| {
        image::Luma([grey.get_pixel(x, y).0[0] as u16 * 257])
    })
    .save(&p16)
    .unwrap();
    let rgb = dir.path().join("rgb.png");
    image::DynamicImage::ImageLuma8(grey.clone())
        .to_rgb8()
        .save(&rgb)
        .unwrap();
    let golden = common::golden().join("attn.pth");
    let run = |p: &Path| {
        let out = common::assert_success(
            common::flarecast()
                .args(["predict", "--json", "--device", "cpu", "--model"])
                .arg(&golden)
                .arg(p)
                .output()
                .unwrap(),
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["flare_prob"].as_f64().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (prob8, err8) = run(&p8);
    assert_eq!(err8, "");
    let (_, err16) = run(&p16);
    assert_eq!(
        err16,
        format!(
            "flarecast: warning: {}: 16-bit grey image; values above 255 are clipped to 255 (as Pillow's \
             convert(\"L\") does), so a 16-bit magnetogram saturates: convert it to 8 bits first\n",
            p16.display()
        )
    );
    // Grey stored as RGB gives the same luma, hence the same forecast, with a warning.
    let (prob_rgb, err_rgb) = run(&rgb);
    assert_eq!(prob_rgb, prob8);
    assert!(err_rgb.starts_with(&format!(
        "flarecast: warning: {}: colour image",
        rgb.display()
    )));
}

#[test]
fn a_jp2_from_another_instrument_is_forecast_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut jp2 = std::fs::read(common::magnetogram_jp2()).unwrap();
    // Same length, so every box keeps its size.
    let at = jp2.windows(10).position(|w| w == b"HMI_FRONT2").unwrap();
    jp2[at..at + 10].copy_from_slice(b"AIA_FRONT2");
    let p = dir.path().join("aia.jp2");
    std::fs::write(&p, &jp2).unwrap();
    let out = common::assert_success(
        common::flarecast()
            .args(["predict", "--device", "cpu", "--model"])
            .arg(common::golden().join("attn.pth"))
            .arg(&p)
            .output()
            .unwrap(),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "flarecast: warning: {}: the JP2 header names instrument AIA_FRONT2; the model was \
             trained on SDO/HMI magnetograms\n",
            p.display()
        )
    );
}

/// `flarecast predict ... | head -1`: when the reader goes away, predict stops with the
/// shell's status for a broken pipe (141) and no panic message.
#[test]
fn closed_stdout_ends_predict_quietly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("many.npy");
    Tensor::rand([64, 1, 256, 256], (tch::Kind::Float, tch::Device::Cpu))
        .write_npy(&npy)
        .unwrap();
    let model = common::golden().join("attn.pth");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flarecast"))
        .args(["predict", "--json", "--device", "cpu"])
        .args(["--batch-size", "1", "--model"])
        .args([&model, &npy])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("flare_prob"), "first line: {first}");
    // The reader is dropped here; the next line predict prints meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
