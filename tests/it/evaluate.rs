//! `flarecast evaluate` end to end: the paper's own prediction files against the scores
//! of the paper's validation results, the fold-1 location breakdown, plots, and bad input.

use crate::common;

use std::path::{Path, PathBuf};

fn results(name: &str) -> PathBuf {
    common::realdata().join("original_results").join(name)
}

fn fold1_details() -> PathBuf {
    common::realdata().join("original_labels/Fold1_val.csv")
}

fn evaluate_json(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = common::flarecast()
        .arg("evaluate")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "evaluate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn evaluate_error(args: &[&std::ffi::OsStr]) -> String {
    let out = common::flarecast()
        .arg("evaluate")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "evaluate accepted bad input");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--predictions PREDICTIONS --details DETAILS`.
fn with_details<'a>(predictions: &'a Path, details: &'a Path) -> [&'a std::ffi::OsStr; 4] {
    [
        "--predictions".as_ref(),
        predictions.as_os_str(),
        "--details".as_ref(),
        details.as_os_str(),
    ]
}

/// `evaluate --json` of MODEL on fold 1 of LABELS and IMAGES, on the CPU in batches of
/// `batch`, into OUT.
fn evaluate_fold1_json(
    model: &Path,
    labels: &Path,
    images: &Path,
    out: &Path,
    batch: &str,
) -> serde_json::Value {
    evaluate_json(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--fold".as_ref(),
        "1".as_ref(),
        "--labels".as_ref(),
        labels.as_os_str(),
        "--images".as_ref(),
        images.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--batch-size".as_ref(),
        batch.as_ref(),
    ])
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn reference_predictions_reproduce_spec_scores() {
    let (f1, f3) = (results("attn_fold1_res.csv"), results("attn_fold3_res.csv"));
    let v = evaluate_json(&["--predictions".as_ref(), f1.as_os_str(), f3.as_os_str()]);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    // The paper's results: TP FP TN FN, TSS, HSS2 of the attention model, folds 1 and 3.
    let expected = [
        (&f1, 14788, [1760, 2120, 10334, 574], 0.5838, 0.4600),
        (&f3, 16672, [1788, 3163, 11145, 576], 0.5353, 0.3674),
    ];
    for (s, (path, n, counts, tss, hss2)) in files.iter().zip(expected) {
        assert_eq!(s["file"], path.display().to_string());
        assert_eq!(s["n"], n);
        for (key, c) in ["tp", "fp", "tn", "fn"].iter().zip(counts) {
            assert_eq!(s[*key], c, "{key} of {}", path.display());
        }
        assert!(close(f(&s["tss"]), tss, 5e-5), "tss {}", s["tss"]);
        assert!(close(f(&s["hss2"]), hss2, 5e-5), "hss2 {}", s["hss2"]);
    }
    // Probabilistic scores, computed independently from the same files (Python, ranks
    // with ties at half, exhaustive threshold search).
    let prob = [
        (
            0.188174170,
            -0.415693311,
            0.878854717,
            0.462160856,
            0.597932697,
        ),
        (
            0.208970003,
            -0.717247720,
            0.842611581,
            0.457022578,
            0.556126706,
        ),
    ];
    for (s, (brier, bss, auc, thr, best)) in files.iter().zip(prob) {
        assert!(close(f(&s["brier"]), brier, 1e-8), "brier {}", s["brier"]);
        assert!(close(f(&s["bss"]), bss, 1e-8), "bss {}", s["bss"]);
        assert!(close(f(&s["roc_auc"]), auc, 1e-8), "auc {}", s["roc_auc"]);
        assert!(close(f(&s["best_threshold"]), thr, 1e-8));
        assert!(close(f(&s["best_tss"]), best, 1e-8));
    }
    // Mean and sample standard deviation over the two files.
    let (t1, t3) = (f(&files[0]["tss"]), f(&files[1]["tss"]));
    assert!(close(f(&v["mean"]["tss"]), (t1 + t3) / 2.0, 1e-12));
    assert!(close(
        f(&v["std"]["tss"]),
        (t1 - t3).abs() / 2f64.sqrt(),
        1e-12
    ));
    assert!(close(f(&v["mean"]["tp"]), 1774.0, 1e-9));
    assert!(v.get("location").is_none());
}

#[test]
fn single_file_has_no_standard_deviation_and_threshold_moves_counts() {
    let f1 = results("attn_fold1_res.csv");
    let v = evaluate_json(&[
        "--predictions".as_ref(),
        f1.as_os_str(),
        "--threshold".as_ref(),
        "0.4621608555316925".as_ref(),
    ]);
    assert!(v["std"]["tss"].is_null());
    // At the best threshold the TSS is the best TSS.
    let s = &v["files"][0];
    assert!(close(f(&s["tss"]), 0.597932697, 1e-8), "{}", s["tss"]);
    assert_eq!(f(&v["mean"]["tss"]), f(&s["tss"]));
}

#[test]
fn fold1_location_breakdown() {
    let f1 = results("attn_fold1_res.csv");
    let d = fold1_details();
    let v = evaluate_json(&with_details(&f1, &d));
    // Counted independently (Python join of Fold1_val.csv on the label path, class from
    // the first letter of goes_class, central = |lon| <= 70 and |lat| <= 70,
    // positive when flare_prob >= 0.5): X 96/0 central, 24/0 limb; M 1331/286 central,
    // 309/288 limb; no X or M instance of fold 1 has an unknown location.
    let loc = &v["location"];
    let zone = |class: &str, zone: &str| {
        (
            loc[class][zone]["pos"].as_u64().unwrap(),
            loc[class][zone]["neg"].as_u64().unwrap(),
            f(&loc[class][zone]["recall"]),
        )
    };
    assert_eq!(zone("X", "central"), (96, 0, 1.0));
    assert_eq!(zone("X", "limb"), (24, 0, 1.0));
    let (p, n, r) = zone("M", "central");
    assert_eq!((p, n), (1331, 286));
    assert!(close(r, 1331.0 / 1617.0, 1e-12));
    let (p, n, r) = zone("M", "limb");
    assert_eq!((p, n), (309, 288));
    assert!(close(r, 309.0 / 597.0, 1e-12));
    assert_eq!(loc["X"]["unknown"], 0);
    assert_eq!(loc["M"]["unknown"], 0);
    // Every X and M window of the fold is accounted for: 120 X, 2214 M.
    assert_eq!(loc["X"]["total"], 120);
    assert_eq!(loc["M"]["total"], 2214);
    assert_eq!(loc["unmatched"], 0);
}

/// An empty image tree with the day 2022-08-02 and a labels folder with its
/// `simplified_data_labels/`, under `root`: `(images, labels)`.
fn fold_tree(root: &Path) -> (PathBuf, PathBuf) {
    let images = root.join("images");
    let labels = root.join("labels");
    std::fs::create_dir_all(images.join("2022/08/02")).unwrap();
    std::fs::create_dir_all(labels.join("simplified_data_labels")).unwrap();
    (images, labels)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn unknown_locations_are_counted_apart() {
    let dir = tempfile::tempdir().unwrap();
    let preds = write(
        dir.path(),
        "p.csv",
        "timestamp,flare_prob,target\n\
         /abs/2012/03/07/HMI.m2012.03.07_00.00.00.jpg,0.9,1\n\
         /abs/2012/03/07/HMI.m2012.03.07_01.00.00.jpg,0.2,1\n\
         /abs/2012/03/07/HMI.m2012.03.07_02.00.00.jpg,0.7,1\n\
         /abs/2012/03/07/HMI.m2012.03.07_03.00.00.jpg,0.1,0\n\
         /abs/2012/03/07/HMI.m2012.03.07_04.00.00.jpg,0.6,1\n",
    );
    let details = write(
        dir.path(),
        "d.csv",
        "label,target,goes_class,fl_lon,fl_lat,rest_fl,rest_lon,rest_lat\n\
         2012/03/07/HMI.m2012.03.07_00.00.00.jpg,1,X5.4,-85.0,17.0,[],[],[]\n\
         2012/03/07/HMI.m2012.03.07_01.00.00.jpg,1,M2.0,unk,unk,[],[],[]\n\
         2012/03/07/HMI.m2012.03.07_02.00.00.jpg,1,M1.1,10.0,75.0,[],[],[]\n\
         2012/03/07/HMI.m2012.03.07_03.00.00.jpg,0,C3.0,0.0,0.0,[],[],[]\n\
         2012/03/07/HMI.m2012.03.07_04.00.00.jpg,1,M9.9,-70.0,70.0,[],[],[]\n",
    );
    let v = evaluate_json(&with_details(&preds, &details));
    let loc = &v["location"];
    // X at lon -85: limb, hit.
    assert_eq!(loc["X"]["limb"]["pos"], 1);
    assert_eq!(loc["X"]["central"]["pos"], 0);
    // M at lat 75: limb, hit; M at (-70, 70): central (inclusive), hit; M unk: apart.
    assert_eq!(loc["M"]["limb"]["pos"], 1);
    assert_eq!(loc["M"]["central"]["pos"], 1);
    assert_eq!(loc["M"]["central"]["neg"], 0);
    assert_eq!(loc["M"]["unknown"], 1);
    assert_eq!(loc["M"]["total"], 3);
}

#[test]
fn plots_are_written() {
    let dir = tempfile::tempdir().unwrap();
    // A history with its columns in another order and columns the plot does not use.
    let history = write(
        dir.path(),
        "fold1_history.csv",
        "epoch,lr,train_loss,train_tss,train_hss2,val_loss,val_tss,val_hss2,best,seconds\n\
         1,0.001,0.70,0.10,0.08,0.69,0.05,0.04,true,10.0\n\
         2,0.001,0.60,0.30,0.25,0.65,0.20,0.18,true,10.0\n\
         3,0.0005,0.50,0.45,0.40,0.62,0.30,0.27,true,10.0\n",
    );
    let out = dir.path().join("plots");
    let (f1, f3) = (results("attn_fold1_res.csv"), results("attn_fold3_res.csv"));
    let v = evaluate_json(&[
        "--predictions".as_ref(),
        f1.as_os_str(),
        f3.as_os_str(),
        "--plots".as_ref(),
        out.as_os_str(),
        "--history".as_ref(),
        history.as_os_str(),
    ]);
    let listed: Vec<&str> = v["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for name in [
        "roc.png",
        "reliability.png",
        "skill_vs_threshold.png",
        "confusion_attn_fold1_res.png",
        "confusion_attn_fold3_res.png",
        "training.png",
    ] {
        let p = out.join(name);
        assert!(listed.contains(&p.to_str().unwrap()), "{name} not listed");
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes.len() > 20_000, "{name}: only {} bytes", bytes.len());
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .unwrap()
            .to_rgb8();
        assert!(img.width() >= 600 && img.height() >= 500, "{name}");
        // Drawn, not blank: many pixels differ from the white background.
        let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(inked > 5_000, "{name}: {inked} non-white pixels");
    }
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
}

#[test]
fn history_missing_a_column_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let history = write(dir.path(), "h.csv", "epoch,train_loss\n1,0.5\n");
    let f1 = results("attn_fold1_res.csv");
    let err = evaluate_error(&[
        "--predictions".as_ref(),
        f1.as_os_str(),
        "--plots".as_ref(),
        dir.path().join("p").as_os_str(),
        "--history".as_ref(),
        history.as_os_str(),
    ]);
    assert!(err.contains("h.csv"), "{err}");
    assert!(err.contains("val_loss"), "{err}");
}

#[test]
fn missing_column_names_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "noprob.csv",
        "timestamp,target\n2012/03/07/HMI.m2012.03.07_00.00.00.jpg,1\n",
    );
    let err = evaluate_error(&["--predictions".as_ref(), p.as_os_str()]);
    assert!(err.contains(&format!("{}:1:", p.display())), "{err}");
    assert!(err.contains("flare_prob"), "{err}");
}

#[test]
fn probability_out_of_range_or_nan_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bad) in [("big.csv", "1.5"), ("neg.csv", "-0.1"), ("nan.csv", "NaN")] {
        let p = write(
            dir.path(),
            name,
            &format!(
                "timestamp,flare_prob,target\n\
                 2012/03/07/HMI.m2012.03.07_00.00.00.jpg,0.3,0\n\
                 2012/03/07/HMI.m2012.03.07_01.00.00.jpg,{bad},1\n"
            ),
        );
        let err = evaluate_error(&["--predictions".as_ref(), p.as_os_str()]);
        assert!(err.contains(&format!("{}:3:", p.display())), "{err}");
        assert!(err.contains(bad), "{err}");
    }
    let p = write(
        dir.path(),
        "target.csv",
        "timestamp,flare_prob,target\n2012/03/07/HMI.m2012.03.07_00.00.00.jpg,0.3,2\n",
    );
    let err = evaluate_error(&["--predictions".as_ref(), p.as_os_str()]);
    assert!(err.contains(&format!("{}:2:", p.display())), "{err}");
}

#[test]
fn details_matching_no_prediction_is_an_error() {
    // Fold 1's label table against fold 3's predictions: not one instance in common.
    let f3 = results("attn_fold3_res.csv");
    let d = fold1_details();
    let err = evaluate_error(&with_details(&f3, &d));
    assert!(err.contains(&d.display().to_string()), "{err}");
    assert!(err.contains("no row matches"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "d.csv", "label,target,goes_class\nx,0,NF\n");
    let f1 = results("attn_fold1_res.csv");
    let err = evaluate_error(&with_details(&f1, &bad));
    assert!(err.contains(&format!("{}:1:", bad.display())), "{err}");
    assert!(err.contains("fl_lon"), "{err}");
}

#[test]
fn table_output_shows_scores() {
    let f1 = results("attn_fold1_res.csv");
    common::flarecast()
        .arg("evaluate")
        .arg("--predictions")
        .arg(&f1)
        .assert()
        .success()
        .stdout(predicates::str::contains("attn_fold1_res.csv"))
        .stdout(predicates::str::contains("0.5838"))
        .stdout(predicates::str::contains("0.4600"));
}

#[test]
fn model_on_a_fold_writes_and_scores_its_predictions() {
    // Three instances of fold 1, all the real magnetogram, run through the golden
    // attention checkpoint; the full table beside the simplified one adds locations.
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = fold_tree(dir.path());
    let names: Vec<String> = (10..13)
        .map(|h| format!("2022/08/02/HMI.m2022.08.02_{h}.00.00.jpg"))
        .collect();
    for n in &names {
        std::fs::copy(common::magnetogram_jpg(), images.join(n)).unwrap();
    }
    write(
        &labels.join("simplified_data_labels"),
        "Fold1_val.csv",
        &format!(
            "label,goes_class\n{},1\n{},0\n{},0\n",
            names[0], names[1], names[2]
        ),
    );
    write(
        &labels,
        "Fold1_val.csv",
        &format!(
            "label,target,goes_class,fl_lon,fl_lat,rest_fl,rest_lon,rest_lat\n\
             {},1,M1.2,80.0,10.0,[],[],[]\n{},0,C1.0,5.0,5.0,[],[],[]\n{},0,NF,unk,unk,[],[],[]\n",
            names[0], names[1], names[2]
        ),
    );
    let out = dir.path().join("out");
    let model = common::golden().join("attn.pth");
    let v = evaluate_fold1_json(&model, &labels, &images, &out, "2");
    let res = out.join("fold1_res.csv");
    assert_eq!(v["predictions"], res.display().to_string());
    let text = std::fs::read_to_string(&res).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,flare_prob,target,goes_class,fl_lon,fl_lat")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3);
    // The reference's P(FL) of this magnetogram under these weights (row 0 of the golden
    // forward pass); our preprocessing of the JPG lands within 1e-5 of it.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::golden().join("meta.json")).unwrap())
            .unwrap();
    let want = meta["attn_probs"][0][1].as_f64().unwrap();
    for (row, (name, target)) in rows.iter().zip(names.iter().zip(["1", "0", "0"])) {
        assert_eq!(row[0], images.join(name).display().to_string());
        let p: f64 = row[1].parse().unwrap();
        assert!(close(p, want, 1e-5), "{p} vs the reference's {want}");
        assert_eq!(row[2], target);
    }
    assert_eq!(&rows[0][3..], ["M1.2", "80.0", "10.0"]);
    assert_eq!(&rows[2][3..], ["NF", "unk", "unk"]);
    // All forecast negative at 0.5: one miss, two correct rejections; the M flare near
    // the limb is the one miss.
    let s = &v["files"][0];
    assert_eq!((s["tp"].clone(), s["fp"].clone()), (0.into(), 0.into()));
    assert_eq!((s["tn"].clone(), s["fn"].clone()), (2.into(), 1.into()));
    assert_eq!(v["location"]["M"]["limb"]["neg"], 1);
    assert_eq!(v["location"]["M"]["total"], 1);
    assert!(!out.read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("tmp")));
}

/// A 256x256 grey disk with a bipolar pair of spots, like a downsized HMI magnetogram;
/// the spots move with `seed` so every image gets its own forecast.
fn synthetic_magnetogram(seed: u32) -> image::GrayImage {
    image::GrayImage::from_fn(256, 256, |x, y| {
        let (dx, dy) = (x as f64 - 128.0, y as f64 - 128.0);
        if dx * dx + dy * dy > 120.0 * 120.0 {
            return image::Luma([0]);
        }
        let cx = 60.0 + 17.0 * seed as f64;
        let cy = 90.0 + 9.0 * seed as f64;
        let spot =
            |sx: f64, sy: f64| (-((x as f64 - sx).powi(2) + (y as f64 - sy).powi(2)) / 60.0).exp();
        let noise = ((x * 7 + y * 13 + seed * 31) % 9) as f64 - 4.0;
        let v = 128.0 + 120.0 * spot(cx, cy) - 120.0 * spot(cx + 12.0, cy + 4.0) + noise;
        image::Luma([v.clamp(0.0, 255.0) as u8])
    })
}

#[test]
fn model_run_on_distinct_images_matches_predict() {
    // Eight different images in batches of 3 (the last one short): each row of
    // fold1_res.csv must be the forecast `flarecast predict` gives for that image.
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = (dir.path().join("images"), dir.path().join("labels"));
    std::fs::create_dir_all(images.join("2011/01/01")).unwrap();
    std::fs::create_dir_all(labels.join("simplified_data_labels")).unwrap();
    let classes = [
        ("0", "B1.0", "10.0", "5.0"),
        ("1", "M1.2", "-80.5", "12.0"),
        ("1", "X2.0", "30.0", "-20.0"),
        ("0", "C3.4", "unk", "unk"),
    ];
    let mut simple = String::from("label,goes_class\n");
    let mut full =
        String::from("label,target,goes_class,fl_lon,fl_lat,rest_fl,rest_lon,rest_lat\n");
    let mut paths = Vec::new();
    for i in 0..8u32 {
        let label = format!("2011/01/01/HMI.m2011.01.01_{i:02}.00.00.png");
        synthetic_magnetogram(i).save(images.join(&label)).unwrap();
        let (t, class, lon, lat) = classes[i as usize % 4];
        simple.push_str(&format!("{label},{t}\n"));
        full.push_str(&format!("{label},{t},{class},{lon},{lat},[],[],[]\n"));
        paths.push(images.join(&label));
    }
    write(
        &labels.join("simplified_data_labels"),
        "Fold1_val.csv",
        &simple,
    );
    write(&labels, "Fold1_val.csv", &full);
    let model = common::golden().join("attn.pth");
    let run = |out: &Path| evaluate_fold1_json(&model, &labels, &images, out, "3");
    let out = dir.path().join("out");
    let v = run(&out);
    let mut reader = csv::Reader::from_path(out.join("fold1_res.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "timestamp",
            "flare_prob",
            "target",
            "goes_class",
            "fl_lon",
            "fl_lat"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 8);

    let predicted = common::flarecast()
        .args(["predict", "--json", "--device", "cpu", "--model"])
        .arg(&model)
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        predicted.status.success(),
        "{}",
        String::from_utf8_lossy(&predicted.stderr)
    );
    let predicted: Vec<serde_json::Value> = String::from_utf8_lossy(&predicted.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut probs = Vec::new();
    let mut tp = 0;
    for (i, row) in rows.iter().enumerate() {
        let path = paths[i].display().to_string();
        assert_eq!(&row[0], path, "rows follow the label table");
        let (t, class, lon, lat) = classes[i % 4];
        assert_eq!((&row[2], &row[3], &row[4], &row[5]), (t, class, lon, lat));
        let p: f64 = row[1].parse().unwrap();
        let q = predicted
            .iter()
            .find(|j| j["input"] == path.as_str())
            .unwrap()["flare_prob"]
            .as_f64()
            .unwrap();
        assert!(close(p, q, 1e-6), "row {i}: evaluate {p} vs predict {q}");
        tp += u64::from(p >= 0.5 && t == "1");
        probs.push(p);
    }
    // The images really differ, so a row order mix-up could not pass.
    probs.sort_by(f64::total_cmp);
    probs.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    assert!(probs.len() >= 4, "{probs:?}");
    let s = &v["files"][0];
    assert_eq!(s["n"], 8);
    assert_eq!(s["tp"], tp);
    assert_eq!(s["tp"].as_u64().unwrap() + s["fn"].as_u64().unwrap(), 4);
    let loc = &v["location"];
    let n =
        |c: &str, z: &str| loc[c][z]["pos"].as_u64().unwrap() + loc[c][z]["neg"].as_u64().unwrap();
    assert_eq!(
        (
            n("M", "limb"),
            n("M", "central"),
            n("X", "central"),
            n("X", "limb")
        ),
        (2, 0, 2, 0)
    );

    // Without the full table only the reference's three columns are written.
    std::fs::remove_file(labels.join("Fold1_val.csv")).unwrap();
    let out2 = dir.path().join("out2");
    let v2 = run(&out2);
    let mut reader = csv::Reader::from_path(out2.join("fold1_res.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["timestamp", "flare_prob", "target"]
    );
    assert_eq!(reader.records().count(), 8);
    assert!(v2.get("location").is_none());
    assert_eq!(v2["files"][0]["tp"], v["files"][0]["tp"]);
}

#[test]
fn unparsable_values_and_bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let row = "2012/03/07/HMI.m2012.03.07_00.00.00.jpg";
    let word = write(
        dir.path(),
        "word.csv",
        &format!("timestamp,flare_prob,target\n{row},0.2,0\n{row},abc,1\n"),
    );
    let err = evaluate_error(&["--predictions".as_ref(), word.as_os_str()]);
    assert!(
        err.contains(&format!("{}:3:", word.display())) && err.contains("abc"),
        "{err}"
    );
    let empty = write(dir.path(), "empty.csv", "timestamp,flare_prob,target\n");
    let err = evaluate_error(&["--predictions".as_ref(), empty.as_os_str()]);
    assert!(
        err.contains("empty.csv") && err.contains("no predictions"),
        "{err}"
    );
    // A location that is neither a number nor unknown.
    let lon = write(
        dir.path(),
        "lon.csv",
        &format!(
            "label,target,goes_class,fl_lon,fl_lat\n{row},1,M1.0,10.0,5.0\n{row},1,M1.0,west,5.0\n"
        ),
    );
    let f1 = results("attn_fold1_res.csv");
    let err = evaluate_error(&with_details(&f1, &lon));
    assert!(
        err.contains(&format!("{}:3:", lon.display())) && err.contains("west"),
        "{err}"
    );
    let err = evaluate_error(&[
        "--predictions".as_ref(),
        f1.as_os_str(),
        "--threshold".as_ref(),
        "1.5".as_ref(),
    ]);
    assert!(err.contains("--threshold"), "{err}");
    // Neither predictions nor a model.
    let err = evaluate_error(&["--threshold".as_ref(), "0.5".as_ref()]);
    assert!(
        err.contains("--predictions") || err.contains("--model"),
        "{err}"
    );
}

#[test]
fn scores_an_all_positive_file_cannot_define_print_as_undefined() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("all_pos.csv");
    std::fs::write(
        &p,
        "timestamp,flare_prob,target\n\
         2011/01/01/HMI.m2011.01.01_00.00.00.jpg,0.9,1\n\
         2011/01/01/HMI.m2011.01.01_01.00.00.jpg,0.3,1\n\
         2011/01/01/HMI.m2011.01.01_02.00.00.jpg,0.7,1\n",
    )
    .unwrap();
    let v = evaluate_json(&[std::ffi::OsStr::new("--predictions"), p.as_os_str()]);
    let f = &v["files"][0];
    for key in ["tss", "bss", "roc_auc", "best_threshold", "best_tss"] {
        assert!(f[key].is_null(), "{key}: {}", f[key]);
        assert!(v["mean"][key].is_null(), "mean {key}: {}", v["mean"][key]);
    }
    assert_eq!(f["recall"].as_f64(), Some(2.0 / 3.0));
    assert_eq!(f["precision"].as_f64(), Some(1.0));
    assert_eq!(f["hss2"].as_f64(), Some(0.0));
    assert_eq!(
        f["undefined"],
        serde_json::json!([
            "no negative instance: TSS, BSS, ROC AUC and the best TSS are undefined"
        ])
    );
    let out = common::flarecast()
        .args(["evaluate", "--predictions"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().find(|l| l.starts_with("all_pos")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "all_pos.csv",
            "3",
            "2",
            "0",
            "0",
            "1",
            "undefined",
            "0.0000",
            "0.667",
            "1.000",
            "0.667",
            "0.1967",
            "undefined",
            "undefined",
            "undefined"
        ],
        "{text}"
    );
    assert!(
        text.contains(
            "undefined: no negative instance: TSS, BSS, ROC AUC and the best TSS are undefined"
        ),
        "{text}"
    );
    assert!(!text.contains("0.5000") && !text.contains("NaN"), "{text}");
}

/// `evaluate --model` on a fold with one image that is not a JPG (an HTML error page
/// saved under its name): refused before any prediction, in one line naming the image,
/// exit 1, and no predictions file (nor a temporary one) left in `--out`.
#[test]
fn model_on_a_fold_with_a_corrupt_image_names_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = fold_tree(dir.path());
    let good = "2022/08/02/HMI.m2022.08.02_10.00.00.jpg";
    let bad = "2022/08/02/HMI.m2022.08.02_11.00.00.jpg";
    std::fs::copy(common::magnetogram_jpg(), images.join(good)).unwrap();
    std::fs::write(images.join(bad), b"<html>404</html>").unwrap();
    write(
        &labels.join("simplified_data_labels"),
        "Fold1_val.csv",
        &format!("label,goes_class\n{good},1\n{bad},0\n"),
    );
    let out = dir.path().join("out");
    let model = common::golden().join("attn.pth");
    let result = common::flarecast()
        .args(["evaluate", "--fold", "1", "--device", "cpu", "--model"])
        .arg(&model)
        .arg("--labels")
        .arg(&labels)
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(bad), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in --out: {left:?}");
}
