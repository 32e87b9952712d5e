//! `bench epoch` and `bench evaluate`: the paper's PyTorch loop (scripts/reference_train.py)
//! reads the same tensors flarecast's loader makes, and both benches run both programs
//! end to end on a tiny synthetic fold.

use crate::common;
use flarecast::bench::epoch::{make_fold, FoldSpec};
use flarecast::data::{self, Augment, Item, Loader, LoaderConfig, Split};
use flarecast::im_size::ImSize;
use flarecast::progress::Progress;
use std::path::Path;
use tch::Tensor;

/// The image rows of a split as flarecast's loader gives them for `augment`, in table
/// order, at `side`.
fn loader_batch(images: &Path, samples: Vec<data::Sample>, side: u32, augment: Augment) -> Tensor {
    let n = samples.len();
    let mut cfg = LoaderConfig::new(images);
    cfg.im_size = ImSize::new(side.into()).unwrap();
    cfg.batch_size = n;
    cfg.workers = 0;
    cfg.shuffle = false;
    let loader = Loader::new(cfg, samples).unwrap();
    let items: Vec<Item> = (0..n).map(|index| Item { index, augment }).collect();
    let batch = loader.batches(&items, 0).unwrap().next().unwrap().unwrap();
    batch.images
}

fn read_npy(path: &Path) -> Tensor {
    Tensor::read_npy(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Largest difference in grey levels, and how many of the values differ at all.
fn levels_apart(a: &Tensor, b: &Tensor) -> (f64, i64, i64) {
    assert_eq!(a.size(), b.size());
    let d = ((a - b) * 255.0).abs().round();
    let max = d.max().double_value(&[]);
    let differing = d.gt(0.0).sum(tch::Kind::Int64).int64_value(&[]);
    (max, differing, d.numel() as i64)
}

/// The paper's transforms (PIL open, torchvision Resize(256), the flips, ToTensor) give
/// exactly flarecast's loader tensors on synthetic fold images and the real magnetogram
/// JPG: the same decode (libjpeg), the same antialiased bilinear resize (Pillow's), the
/// same flips. The rotation (RandomRotation(5), nearest, fill 0: Pillow's `rotate`) is
/// flarecast's `rotate_nearest` to within one grey level on at most 0.1 % of the pixels,
/// as tests/it/preprocess.rs holds it to torchvision.
#[test]
fn reference_loop_inputs_equal_flarecasts_loader() {
    let dir = tempfile::tempdir().unwrap();
    let fold = make_fold(dir.path(), &FoldSpec::quarters(8), &Progress::hidden()).unwrap();
    // The real magnetogram among the synthetic ones, in a table of its own.
    let real = "2014/04/20/HMI.m2014.04.20_00.00.00.jpg";
    let real_path = fold.images.join(real);
    std::fs::create_dir_all(real_path.parent().unwrap()).unwrap();
    std::fs::copy(common::magnetogram_jpg(), &real_path).unwrap();
    let mut samples = data::read_fold_split(&fold.labels, 1, Split::Train).unwrap();
    samples.truncate(4);
    samples.push(data::Sample {
        label: real.into(),
        target: 1,
    });
    let labels = dir.path().join("mixed");
    std::fs::create_dir_all(labels.join("simplified_data_labels")).unwrap();
    let mut csv = String::from("label,goes_class\n");
    for s in &samples {
        csv += &format!("{},{}\n", s.label, s.target);
    }
    std::fs::write(labels.join("simplified_data_labels/Fold1_train.csv"), csv).unwrap();
    std::fs::write(
        labels.join("simplified_data_labels/Fold1_val.csv"),
        "label,goes_class\n",
    )
    .unwrap();

    let dump = dir.path().join("dump");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference_train.py");
    let n = samples.len();
    let out = std::process::Command::new(common::torch_python())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-W", "ignore"])
        .arg(&script)
        .arg("--images")
        .arg(&fold.images)
        .arg("--labels")
        .arg(&labels)
        .args(["--fold", "1", "--im-size", "256", "--dump-angle", "3"])
        .args(["--dump-inputs", &n.to_string()])
        .arg("--dump-dir")
        .arg(&dump)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "reference_train.py --dump-inputs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (name, augment) in [
        ("plain", Augment::Original),
        ("hflip", Augment::HFlip),
        ("vflip", Augment::VFlip),
    ] {
        let ours = loader_batch(&fold.images, samples.clone(), 256, augment);
        let theirs = read_npy(&dump.join(format!("{name}.npy")));
        assert_eq!(ours.size(), vec![n as i64, 1, 256, 256]);
        let (max, differing, total) = levels_apart(&ours, &theirs);
        println!("{name}: {differing} of {total} values differ, by at most {max} grey levels");
        assert_eq!(
            differing, 0,
            "{name}: {differing} values differ (max {max})"
        );
        // Bit for bit: the same u8 -> f32 / 255.
        assert!(ours.equal(&theirs), "{name}: not bit-identical");
    }

    // The rotation the loader applies, at the pinned angle.
    let rotated: Vec<Tensor> = samples
        .iter()
        .map(|s| {
            let raw = data::load_sample(&fold.images, &s.label, 256).unwrap();
            let img = image::GrayImage::from_raw(256, 256, raw).unwrap();
            flarecast::preprocess::to_tensor(&flarecast::preprocess::rotate_nearest(&img, 3.0))
        })
        .collect();
    let ours = Tensor::stack(&rotated, 0);
    let theirs = read_npy(&dump.join("rotation.npy"));
    let (max, differing, total) = levels_apart(&ours, &theirs);
    println!("rotation +3 deg: {differing} of {total} values differ, by at most {max} grey levels");
    assert!(
        (differing as f64) <= 1e-3 * total as f64,
        "rotation: {differing} of {total} differ"
    );
    let d = ((&ours - &theirs) * 255.0).abs().round();
    let beyond_one = d.gt(1.0).sum(tch::Kind::Int64).int64_value(&[]);
    assert!(
        (beyond_one as f64) <= 1e-3 * total as f64,
        "rotation: {beyond_one} values more than one level apart"
    );
    let targets = read_npy(&dump.join("targets.npy"));
    let want: Vec<i64> = samples.iter().map(|s| s.target).collect();
    assert_eq!(Vec::<i64>::try_from(targets).unwrap(), want);
}

fn positive(v: &serde_json::Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what}: {x}");
    x
}

/// Both programs' figures in a row: images/s from the images and the median wall time,
/// peak memory, and the ratios from them.
fn check_row(row: &serde_json::Value, images: u64) {
    for program in ["flarecast", "torch"] {
        let p = &row[program];
        assert_eq!(p["images"], images, "{program}: {row}");
        let ips = positive(&p["images_per_s"], "images/s");
        let secs = positive(&p["median_seconds"], "seconds");
        assert!((ips - images as f64 / secs).abs() < 1e-9 * ips, "{row}");
        assert_eq!(p["seconds"].as_array().unwrap().len(), 1, "{row}");
        positive(&p["peak_rss_bytes"], "peak RSS");
    }
    let ratio = row["flarecast"]["images_per_s"].as_f64().unwrap()
        / row["torch"]["images_per_s"].as_f64().unwrap();
    assert!((row["speedup"].as_f64().unwrap() - ratio).abs() < 1e-9 * ratio);
    positive(&row["memory_ratio"], "memory ratio");
}

/// `bench BENCH --json` of the standard CNN at 192 on `instances` synthetic images, one
/// round on the CPU at `precision`, against the virtualenv's PyTorch: its report.
fn bench_tiny(bench: &str, instances: &str, precision: &str) -> serde_json::Value {
    let python = common::torch_python();
    common::run_json(&[
        "bench",
        bench,
        "--instances",
        instances,
        "--im-size",
        "192",
        "--rounds",
        "1",
        "--arch",
        "standard",
        "--precision",
        precision,
        "--device",
        "cpu",
        "--python",
        python.to_str().unwrap(),
        "--json",
    ])
}

/// `bench epoch` on 8 synthetic images at 192: flarecast's epoch at f32 against the
/// paper's loop, at `auto` against the tuned loop, both programs with the same number of
/// images (6 training instances balanced, 2 validation).
#[test]
fn bench_epoch_times_flarecast_and_the_paper_loop_on_a_tiny_fold() {
    let report = bench_tiny("epoch", "8", "f32,auto");
    assert!(!report["processor"].as_str().unwrap().is_empty());
    assert_eq!(report["fold"]["train"], 6, "{report}");
    assert_eq!(report["fold"]["val"], 2, "{report}");
    assert!(report["fold"]["train_positive"].as_u64().unwrap() > 0);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(rows[0]["precision_choice"], "f32");
    assert_eq!(rows[0]["torch_loop"], "paper");
    assert_eq!(rows[0]["torch"]["precision"], "f32");
    assert_eq!(rows[1]["precision_choice"], "auto");
    assert_eq!(rows[1]["torch_loop"], "tuned");
    assert_eq!(
        rows[1]["torch"]["precision"],
        rows[1]["flarecast"]["precision"]
    );
    for row in rows {
        let images = row["flarecast"]["images"].as_u64().unwrap();
        // The balanced training items (at least the 6 instances) and the 2 validation ones.
        assert!(images >= 8, "{row}");
        check_row(row, images);
        positive(&row["flarecast"]["loop_seconds"], "flarecast loop");
        positive(&row["torch"]["loop_seconds"], "PyTorch loop");
    }
}

/// `bench evaluate` on a 16-image validation quarter at 192: both programs run the same
/// weights in f32 and give the same P(FL).
#[test]
fn bench_evaluate_times_flarecast_and_the_tuned_loop_on_a_tiny_quarter() {
    let report = bench_tiny("evaluate", "16", "f32");
    assert_eq!(report["fold"]["val"], 16, "{report}");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    let row = &rows[0];
    assert_eq!(row["torch_loop"], "tuned");
    assert_eq!(row["torch"]["precision"], "f32");
    check_row(row, 16);
    let dp = row["max_prob_difference"].as_f64().unwrap();
    assert!(dp < 1e-4, "P(FL) differs by {dp:e} between the programs");
}

/// Both benches refuse what they cannot run before any work (no fold made, no program
/// started), naming the flag: sizes out of range, a side the paper's PyTorch network
/// cannot run, a network the PyTorch loop does not have.
#[test]
fn bench_epoch_and_evaluate_refuse_bad_settings_naming_the_flag() {
    for bench in ["epoch", "evaluate"] {
        for (flag, value) in [
            ("--instances", "7"),
            ("--rounds", "0"),
            ("--batch-size", "0"),
            ("--im-size", "128"),
            ("--im-size", "384"),
            ("--arch", "resnet18"),
        ] {
            let out = common::flarecast()
                .args(["bench", bench, "--device", "cpu", flag, value])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "bench {bench} {flag} {value} ran");
            assert!(err.contains(flag), "bench {bench} {flag} {value}: {err}");
        }
    }
}
