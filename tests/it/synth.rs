//! The synthetic archive: deterministic for a seed, shaped like Helioviewer's HMI JPGs,
//! with a catalogue the labeller reads and a flare signal visible in the images.

use crate::common;

use chrono::NaiveDateTime;
use flarecast::synth::{self, Params};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// 2 days at 6 h cadence, 128 px: 8 images, a catalogue running one day past them.
const SMALL: [(&str, &str); 4] = [
    ("--days", "2"),
    ("--cadence", "6h"),
    ("--size", "128"),
    ("--start", "2014-03-01T00:00:00"),
];

/// SHA-256 of the small archive's catalogue for seed 7: a change of the generator shows
/// up here (bump `GENERATOR_VERSION` with it).
const SMALL_CATALOG_SHA256: &str =
    "6427540aa74e7e9cbaa05191dc010b04bf4c7e43e83433c51ca0c11ff969b719";

/// The small archive's arguments, with `extra` overriding or adding options.
fn small_args(seed: u64, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    for (flag, value) in SMALL {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(["--seed".to_string(), seed.to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn synth(out: &Path, seed: u64, extra: &[&str]) -> serde_json::Value {
    let output = common::flarecast()
        .arg("synth")
        .arg("--out")
        .arg(out)
        .args(small_args(seed, extra))
        .arg("--json")
        .output()
        .expect("run flarecast synth");
    assert!(
        output.status.success(),
        "synth failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("synth --json prints JSON")
}

/// Relative path -> SHA-256 of every image and the catalogue.
fn hashes(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.file_name().unwrap() != synth::MANIFEST {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, sha256(&std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn same_seed_same_files_other_seed_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let summary = synth(&a, 7, &[]);
    synth(&b, 7, &[]);
    synth(&c, 8, &[]);
    let (ha, hb, hc) = (hashes(&a), hashes(&b), hashes(&c));
    assert_eq!(ha.len(), 9, "8 images and the catalogue: {:?}", ha.keys());
    assert!(ha.contains_key("images/2014/03/02/HMI.m2014.03.02_18.00.00.jpg"));
    assert!(ha.contains_key("catalog.csv"));
    assert_eq!(ha, hb);
    assert_eq!(summary["images"], 8);
    assert_eq!(summary["images_written"], 8);
    // Another seed: another Sun, every file differs.
    assert_eq!(ha.keys().collect::<Vec<_>>(), hc.keys().collect::<Vec<_>>());
    for (k, v) in &ha {
        assert_ne!(v, &hc[k], "{k} is identical for seeds 7 and 8");
    }
    assert_eq!(
        ha["catalog.csv"],
        SMALL_CATALOG_SHA256,
        "{}",
        std::fs::read_to_string(a.join("catalog.csv")).unwrap()
    );
}

#[test]
fn rerun_reuses_and_other_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arch");
    let first = hashes(&{
        synth(&out, 3, &[]);
        out.clone()
    });
    let again = synth(&out, 3, &[]);
    assert_eq!(again["images_reused"], 8);
    assert_eq!(again["images_written"], 0);
    assert_eq!(hashes(&out), first);

    let refused = common::flarecast()
        .arg("synth")
        .arg("--out")
        .arg(&out)
        .args(small_args(4, &[]))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("different parameters") && err.contains("seed 3"),
        "{err}"
    );

    let forced = synth(&out, 4, &["--force"]);
    assert_eq!(forced["images_written"], 8);
    assert_ne!(hashes(&out)["catalog.csv"], first["catalog.csv"]);
}

#[test]
fn images_look_like_hmi_magnetograms() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arch");
    synth(&out, 7, &[]);
    let (size, radius) = (128usize, 197.0 / 512.0 * 128.0);
    let centre = (size as f64 - 1.0) / 2.0;
    let (mut strong_pos, mut strong_neg) = (0, 0);
    for (rel, _) in hashes(&out).iter().filter(|(k, _)| k.ends_with(".jpg")) {
        let img = image::open(out.join(rel)).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (128, 128));
        let (mut sum, mut n) = (0.0, 0.0);
        for (x, y, p) in img.enumerate_pixels() {
            let r = ((x as f64 - centre).powi(2) + (y as f64 - centre).powi(2)).sqrt();
            let v = p[0] as f64;
            if r > radius + 2.0 {
                // Black off the disk, up to JPEG ringing.
                assert!(v <= 10.0, "{rel}: off-disk pixel ({x},{y}) = {v}");
            } else if r < radius - 2.0 {
                sum += v;
                n += 1.0;
                strong_pos += (v > 127.0 + 60.0) as usize;
                strong_neg += (v < 127.0 - 60.0) as usize;
            }
        }
        let mean = sum / n;
        assert!((mean - 127.5).abs() < 1.5, "{rel}: disk mean {mean}");
    }
    assert!(
        strong_pos > 20 && strong_neg > 20,
        "active regions of both polarities: {strong_pos} {strong_neg}"
    );
}

#[test]
fn catalogue_is_in_the_integrated_format() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arch");
    synth(&out, 7, &["--days", "20"]);
    let text = std::fs::read_to_string(out.join("catalog.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("start_time,goes_class,fl_lon,fl_lat"));
    let mut last: Option<NaiveDateTime> = None;
    let mut rows = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 4, "{line}");
        let t = NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S").unwrap();
        assert!(last.is_none_or(|l| l <= t), "not sorted at {line}");
        last = Some(t);
        let (letter, number) = f[1].split_at(1);
        assert!(["C", "M", "X"].contains(&letter), "{line}");
        let (whole, decimal) = number.split_once('.').unwrap();
        assert!(
            decimal.len() == 1 && whole.parse::<u32>().unwrap() >= 1,
            "{line}"
        );
        if letter != "X" {
            assert!(whole.parse::<u32>().unwrap() <= 9, "{line}");
        }
        for (v, limit) in [(f[2], 90.0), (f[3], 60.0)] {
            if v != "UNK" {
                assert_eq!(v.split_once('.').unwrap().1.len(), 1, "{line}");
                assert!(v.parse::<f64>().unwrap().abs() <= limit, "{line}");
            }
        }
        rows += 1;
    }
    // 20 days plus the last window's day at about two flares a day.
    assert!(rows > 15, "{rows} flares");
}

#[test]
fn catalogue_labels_with_positives_and_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arch");
    let summary = synth(
        &out,
        1,
        &["--days", "30", "--cadence", "3h", "--size", "64"],
    );
    let labels = dir.path().join("labels");
    let output = common::flarecast()
        .arg("label")
        .arg("--catalog")
        .arg(out.join("catalog.csv"))
        .arg("--images")
        .arg(out.join("images"))
        .arg("--out")
        .arg(&labels)
        .args([
            "--start",
            "2014-03-01T00:00:00",
            "--end",
            "2014-03-30T21:00:00",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = std::fs::read_to_string(labels.join("Fold1_val.csv")).unwrap();
    let targets: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(targets.len(), 240);
    let positives = targets.iter().filter(|t| **t == "1").count();
    // The labeller agrees with synth's own count, and both classes occur.
    assert_eq!(positives as u64, summary["positives"].as_u64().unwrap());
    assert!(positives > 10 && positives < 200, "{positives} of 240");
}

/// Two image statistics on the disk: the unsigned strong field (sum of |grey - 127.5|
/// beyond 30 grey levels) and the length of strong-gradient inversion lines (pixels
/// above +50 with a pixel below -50 within 2 px).
fn field_stats(pixels: &[u8], size: usize) -> (f64, f64) {
    let centre = (size as f64 - 1.0) / 2.0;
    let radius = 197.0 / 512.0 * size as f64 - 1.0;
    let at = |x: usize, y: usize| pixels[y * size + x] as f64 - 127.5;
    let (mut strong, mut pil) = (0.0, 0.0);
    for y in 2..size - 2 {
        for x in 2..size - 2 {
            let (dx, dy) = (x as f64 - centre, y as f64 - centre);
            if dx * dx + dy * dy > radius * radius {
                continue;
            }
            let v = at(x, y);
            strong += (v.abs() - 30.0).max(0.0);
            if v > 50.0 && (y - 2..=y + 2).any(|yy| (x - 2..=x + 2).any(|xx| at(xx, yy) < -50.0)) {
                pil += 1.0;
            }
        }
    }
    (strong, pil)
}

#[test]
fn flaring_hours_show_stronger_and_more_sheared_fields() {
    // The default archive's first 60 days, twice a day, at the size the networks read.
    let params = Params {
        start: flarecast::instant::parse_time("2014-03-01T00:00:00").unwrap(),
        days: 60,
        cadence_s: 12 * 3600,
        size: 256,
        seed: 1,
    };
    let plan = synth::plan(&params).unwrap();
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (i, &t) in plan.instants.iter().enumerate() {
        let s = field_stats(&synth::render_image(&params, &plan, i), 256);
        if synth::is_positive(&plan.flares, t) {
            pos.push(s)
        } else {
            neg.push(s)
        }
    }
    let mean =
        |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (strong_pos, strong_neg) = (mean(&pos, |s| s.0), mean(&neg, |s| s.0));
    let (pil_pos, pil_neg) = (mean(&pos, |s| s.1), mean(&neg, |s| s.1));
    eprintln!(
        "{} positive, {} negative; strong field {strong_pos:.0} vs {strong_neg:.0}; PIL {pil_pos:.1} vs {pil_neg:.1}",
        pos.len(),
        neg.len()
    );
    // The best threshold on the inversion-line length alone already forecasts well.
    let tss = |th: f64| {
        let tp = pos.iter().filter(|s| s.1 >= th).count() as f64 / pos.len() as f64;
        let fp = neg.iter().filter(|s| s.1 >= th).count() as f64 / neg.len() as f64;
        tp - fp
    };
    let best = pos
        .iter()
        .chain(&neg)
        .map(|s| tss(s.1))
        .fold(f64::MIN, f64::max);
    eprintln!("best TSS of a threshold on the inversion-line length: {best:.3}");
    assert!(
        pos.len() > 15 && neg.len() > 60,
        "{} {}",
        pos.len(),
        neg.len()
    );
    assert!(
        strong_pos > 1.25 * strong_neg,
        "strong field {strong_pos:.0} vs {strong_neg:.0}"
    );
    assert!(
        pil_pos > 2.0 * pil_neg,
        "inversion lines {pil_pos:.1} vs {pil_neg:.1}"
    );
    assert!(best > 0.4, "TSS {best:.3}");
}

#[test]
fn bad_parameters_and_foreign_directories_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let fail = |args: &[&str]| {
        let output = common::flarecast()
            .arg("synth")
            .arg("--out")
            .arg(dir.path().join("x"))
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(fail(&["--size", "10"]).contains("--size: image size 10 is outside 64..=4096"));
    assert!(fail(&["--cadence", "90s"])
        .contains("--cadence: a cadence of 90 s is not a whole number of minutes"));
    assert!(fail(&["--start", "01/03/2014"]).contains("cannot parse time \"01/03/2014\""));
    assert!(fail(&["--days", "0"]).contains("--days: days 0 is outside 1..=3660"));
    assert!(fail(&["--cadence", "500000000000y"])
        .contains("--cadence: cadence 500000000000y is outside 1m..=366d"));
    // A directory with images that synth did not write is left alone.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(foreign.join("images")).unwrap();
    let output = common::flarecast()
        .arg("synth")
        .arg("--out")
        .arg(&foreign)
        .args(small_args(1, &[]))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not written by synth"));
}
