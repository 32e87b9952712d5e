//! Attention maps and Grad-CAM: the map math against PyTorch on the golden c1..c3, and
//! `flarecast attention` on the real magnetogram.

use crate::common;

use flarecast::explain;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// softmax -> bilinear (align_corners) upsampling -> min-max, as PyTorch computes it.
#[test]
fn heatmaps_match_pytorch_on_golden_maps() {
    let io: HashMap<String, Tensor> =
        Tensor::read_safetensors(common::golden().join("attn_io.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let dir = tempfile::tempdir().unwrap();
    for k in 1..=3usize {
        let c = io[&format!("c{k}")].narrow(0, 0, 1); // the real magnetogram's row
        let ours = explain::attention_heatmap(&c, explain::scale_of(k));
        assert_eq!(ours.size(), vec![256, 256]);
        let npy = dir.path().join(format!("c{k}.npy"));
        c.write_npy(&npy).unwrap();
        let out_npy = dir.path().join(format!("ref{k}.npy"));
        // Read the .npy by hand: the virtualenv has torch but not numpy.
        common::python(&format!(
            "import ast, struct, torch\n\
             import torch.nn.functional as F\n\
             b = open('{npy}', 'rb').read(); hl = struct.unpack('<H', b[8:10])[0]\n\
             shape = ast.literal_eval(b[10:10 + hl].decode())['shape']\n\
             c = torch.frombuffer(bytearray(b[10 + hl:]), dtype=torch.float32).reshape(shape)\n\
             n, _, h, w = c.shape\n\
             a = F.softmax(c.view(n, 1, -1), dim=2).view(n, 1, h, w)\n\
             up = F.interpolate(a, scale_factor={s}, mode='bilinear', align_corners=True)[0, 0]\n\
             up = (up - up.min()) / (up.max() - up.min())\n\
             open('{out}', 'wb').write(bytes(up.contiguous().view(-1).view(torch.uint8).tolist()))\n",
            npy = npy.display(),
            s = explain::scale_of(k),
            out = out_npy.display()
        ));
        let raw = std::fs::read(&out_npy).unwrap();
        let reference = Tensor::from_data_size(&raw, &[256, 256], Kind::Float);
        let diff = (&ours - &reference).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "estimator {k}: max |diff| {diff:e} vs PyTorch");
        // Estimator k's map really is 1/scale of the input: softmax sums to one there.
        let a = c.view([1, -1]).softmax(1, Kind::Float);
        assert!((a.sum(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-5);
    }
}

/// Runs `flarecast attention --device cpu --model MODEL --out OUT` with `rest` after it,
/// asserts that it succeeds, and gives its stdout.
fn attention_ok(model: &Path, out: &Path, rest: &[&std::ffi::OsStr]) -> String {
    let run = common::flarecast()
        .args(["attention", "--device", "cpu", "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(rest)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout).into_owned()
}

#[test]
fn attention_command_writes_overlays_panel_and_maps() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("maps");
    let model = common::golden().join("attn.pth");
    let jpg = common::magnetogram_jpg();
    let stdout = attention_ok(&model, &out, &[jpg.as_os_str()]);
    assert!(stdout.contains("P(FL) 0.457"), "{stdout}");
    let stem = "HMI.m2022.08.02_10.47.53";
    for (k, side) in [(1, 64), (2, 32), (3, 16)] {
        let png = image::open(out.join(format!("{stem}_est{k}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (256, 256));
        let map = Tensor::read_npy(out.join(format!("{stem}_c{k}.npy"))).unwrap();
        assert_eq!(map.size(), vec![side, side]);
    }
    // The raw map is the model's c2 of this image: the golden one within preprocessing noise.
    let io: HashMap<String, Tensor> =
        Tensor::read_safetensors(common::golden().join("attn_io.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let c2 = Tensor::read_npy(out.join(format!("{stem}_c2.npy"))).unwrap();
    let diff = (&c2 - io["c2"].get(0).squeeze())
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-4, "c2 differs from the golden map by {diff:e}");
    let panel = image::open(out.join(format!("{stem}_panel.png"))).unwrap();
    assert_eq!((panel.width(), panel.height()), (4 * 256 + 3 * 4, 256));
    // Off the disk the image is black, so the overlay there is 0.3 * JET only.
    let est1 = image::open(out.join(format!("{stem}_est1.png")))
        .unwrap()
        .to_rgb8();
    let corner = est1.get_pixel(0, 0).0;
    assert!(corner.iter().all(|&v| v <= 77), "{corner:?}");
}

#[test]
fn standard_cnn_gets_gradcam_and_csv_lists_work() {
    let dir = tempfile::tempdir().unwrap();
    // The reference's plots.csv names three instances; give each one the real image.
    let images = dir.path().join("images");
    let csv = common::realdata().join("original_labels/plots.csv");
    for line in std::fs::read_to_string(&csv).unwrap().lines().skip(1) {
        let rel = line.split(',').next().unwrap();
        let p = images.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(common::magnetogram_jpg(), &p).unwrap();
    }
    let out = dir.path().join("cam");
    let model = common::golden().join("noattn.pth");
    attention_ok(
        &model,
        &out,
        &[
            "--csv".as_ref(),
            csv.as_os_str(),
            "--images".as_ref(),
            images.as_os_str(),
        ],
    );
    for stem in [
        "HMI.m2013.05.13_06.00.00",
        "HMI.m2013.11.18_17.00.00",
        "HMI.m2014.02.02_23.00.00",
    ] {
        let cam = Tensor::read_npy(out.join(format!("{stem}_gradcam.npy"))).unwrap();
        assert_eq!(cam.size(), vec![256, 256]);
        assert_eq!(cam.max().double_value(&[]), 1.0);
        assert_eq!(cam.min().double_value(&[]), 0.0);
        assert!(out.join(format!("{stem}_gradcam.png")).exists());
    }
    // Grad-CAM is a function of the model and image: the library gives the same map.
    let m = flarecast::model::load_model(&model, Device::Cpu).unwrap();
    let x = flarecast::preprocess::Input::read(&common::magnetogram_jpg())
        .unwrap()
        .single(256)
        .unwrap()
        .tensor
        .unsqueeze(0);
    let cam = explain::gradcam(&m.net, &x, 5, None, 1).unwrap();
    let saved = Tensor::read_npy(out.join("HMI.m2013.05.13_06.00.00_gradcam.npy")).unwrap();
    assert!((cam - saved).abs().max().double_value(&[]) < 1e-6);
}
