//! `flarecast label` on the real catalogues against the paper's own label files, and the
//! catalogue reader on every real catalogue format.

use crate::common;

use flarecast::catalog::{self, Format};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn catalog_path(name: &str) -> PathBuf {
    common::realdata().join("catalogs").join(name)
}

const PANDEY: &str = "pandey_reconstructed_window_max_flares_2010-12_2018-07.csv";
const HAYESLA: &str = "hayesla_final_flare_list_sc24.csv";
const SWPC: &str = "hayesla_swpc_flarelist_20100101-20210810.csv";
const JAMESKC: &str = "jameskc_joined_her_gev_2010-04-13_2019-05-30.csv";
const SWANSF: &str = "swansf_goes_flares_integrated_SCHEMA_SAMPLE_4rows.csv";

fn reference(rel: &str) -> PathBuf {
    common::realdata().join("original_labels").join(rel)
}

/// Labels `catalog` over the reference's image list and issue range, with `more`
/// arguments, into a fresh directory.
fn label_reference_range(catalog: &str, more: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let out = tempfile::tempdir().unwrap();
    let assert = common::flarecast()
        .arg("label")
        .arg("--catalog")
        .arg(catalog_path(catalog))
        .arg("--file-list")
        .arg(reference("totalfiles_jpg_512.csv"))
        .args([
            "--start",
            "2010-12-01T00:00:00",
            "--end",
            "2018-12-30T23:00:00",
        ])
        .args(more)
        .args(["--json", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let summary = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    (out, summary)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// label -> target of a `label,goes_class` (0/1) table, or of a full table.
fn targets(p: &Path) -> HashMap<String, String> {
    let mut r = csv::Reader::from_path(p).unwrap();
    let h = r.headers().unwrap().clone();
    let col = h.iter().position(|c| c == "target").unwrap_or(1);
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[col].to_string())
        })
        .collect()
}

/// `flarecast label --catalog CATALOG --file-list LIST --out OUT`, ready for more
/// arguments and the assertions.
fn label_cmd(
    catalog: impl AsRef<std::ffi::OsStr>,
    list: impl AsRef<std::ffi::OsStr>,
    out: impl AsRef<std::ffi::OsStr>,
) -> assert_cmd::Command {
    let mut cmd = common::flarecast();
    cmd.args(["label", "--catalog"])
        .arg(catalog)
        .arg("--file-list")
        .arg(list)
        .arg("--out")
        .arg(out);
    cmd
}

/// [`label_cmd`] with `--json`: asserts that it succeeds with `says` in its stderr
/// (`{catalog}` there standing for the catalogue's path; `""` for any stderr) and gives
/// the counts of its summary under `keys`.
fn label_counts(
    catalog: &Path,
    list: &Path,
    out: &Path,
    says: &str,
    keys: &[&str],
) -> Vec<Option<u64>> {
    let says = says.replace("{catalog}", &catalog.display().to_string());
    let assert = label_cmd(catalog, list, out)
        .arg("--json")
        .assert()
        .success()
        .stderr(predicates::str::contains(says));
    let summary: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    common::counts(&summary, keys)
}

#[test]
fn pandey_catalogue_reproduces_the_reference_labels() {
    let (out, s) = label_reference_range(PANDEY, &[]);
    // Simplified fold-1 tables are byte-identical to the paper's.
    for part in ["Fold1_train.csv", "Fold1_val.csv"] {
        let ours = read(&out.path().join("simplified_data_labels").join(part));
        let theirs = read(&reference(&format!("simplified_data_labels/{part}")));
        assert_eq!(ours.lines().count(), theirs.lines().count(), "{part}");
        for (i, (a, b)) in ours.lines().zip(theirs.lines()).enumerate() {
            assert_eq!(a, b, "{part} line {}", i + 1);
        }
        assert_eq!(ours, theirs, "{part}");
    }
    // The full fold-1 validation table: same instances and targets; the same class
    // wherever the reference's class is C, M or X (the catalogue holds no B flares).
    let mut ours = csv::Reader::from_path(out.path().join("Fold1_val.csv")).unwrap();
    let mut theirs = csv::Reader::from_path(reference("Fold1_val.csv")).unwrap();
    assert_eq!(
        ours.headers().unwrap(),
        vec![
            "label",
            "target",
            "goes_class",
            "fl_lon",
            "fl_lat",
            "rest_fl",
            "rest_lon",
            "rest_lat"
        ]
    );
    let (ours, theirs): (Vec<_>, Vec<_>) = (
        ours.records().map(Result::unwrap).collect(),
        theirs.records().map(Result::unwrap).collect(),
    );
    assert_eq!(ours.len(), 14_788);
    assert_eq!(theirs.len(), 14_788);
    let mut compared_classes = 0;
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(&a[0], &b[0]);
        assert_eq!(&a[1], &b[1], "target of {}", &a[0]);
        if b[2].starts_with(['C', 'M', 'X']) {
            assert_eq!(&a[2], &b[2], "class of {}", &a[0]);
            compared_classes += 1;
        }
    }
    assert_eq!(compared_classes, 7_851);
    // The reference labelling's totals: 63,649 instances, 9,000 positive; per-fold validation sizes.
    assert_eq!(s["instances"], 63_649);
    assert_eq!(s["positives"], 9_000);
    assert_eq!(s["flares_read"], 2_739);
    assert_eq!(s["rows_rejected"], 0);
    assert_eq!(s["first"], "2010-12-06T07:00:00");
    assert_eq!(s["last"], "2018-12-30T23:00:00");
    let val: Vec<(u64, u64)> = s["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["val"].as_u64().unwrap(),
                f["val_positive"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        val,
        [
            (14_788, 2_334),
            (15_467, 1_612),
            (16_672, 2_364),
            (16_722, 2_690)
        ]
    );
    // Every fold's train and val partition labels.csv.
    let all = targets(&out.path().join("labels.csv"));
    assert_eq!(all.len(), 63_649);
    for k in 1..=4 {
        let tr = targets(&out.path().join(format!("Fold{k}_train.csv")));
        let va = targets(
            &out.path()
                .join(format!("simplified_data_labels/Fold{k}_val.csv")),
        );
        assert_eq!(tr.len() + va.len(), all.len(), "fold {k}");
        assert!(tr.iter().chain(&va).all(|(k, v)| all[k] == *v));
    }
}

#[test]
fn hayesla_catalogue_misses_22_positive_labels() {
    let (out, s) = label_reference_range(HAYESLA, &[]);
    assert_eq!(s["catalog_format"], "hek");
    assert_eq!(s["instances"], 63_649);
    // Fold 1's train and val tables together hold every reference instance.
    let mut reference_all = targets(&reference("simplified_data_labels/Fold1_train.csv"));
    reference_all.extend(targets(&reference("simplified_data_labels/Fold1_val.csv")));
    assert_eq!(reference_all.len(), 63_649);
    let ours = targets(&out.path().join("labels.csv"));
    assert_eq!(ours.len(), 63_649);
    let differ: Vec<&String> = reference_all
        .keys()
        .filter(|k| ours[*k] != reference_all[*k])
        .collect();
    // The catalogue lacks 22 M flares: 22 reference positives become negatives, nothing else.
    assert_eq!(differ.len(), 22);
    assert!(differ
        .iter()
        .all(|k| reference_all[*k] == "1" && ours[*k] == "0"));
    assert_eq!(s["positives"], 9_000 - 22);
}

#[test]
fn every_real_catalogue_reads() {
    let letters = |c: &catalog::Catalog| {
        let mut n = HashMap::new();
        for f in &c.flares {
            *n.entry(f.class.letter()).or_insert(0usize) += 1;
        }
        let mut v: Vec<(char, usize)> = n.into_iter().collect();
        v.sort();
        v
    };
    let with_loc = |c: &catalog::Catalog| {
        c.flares
            .iter()
            .filter(|f| f.lon.is_some() && f.lat.is_some())
            .count()
    };

    let p = catalog::read(&catalog_path(PANDEY), None, false).unwrap();
    assert_eq!(p.format, Format::Integrated);
    assert_eq!(letters(&p), [('C', 2174), ('M', 520), ('X', 45)]);
    assert_eq!(p.flares.iter().filter(|f| f.lat.is_none()).count(), 9);
    assert_eq!(p.flares[1].lon, Some(-39.14127219935199));

    let h = catalog::read(&catalog_path(HAYESLA), None, false).unwrap();
    assert_eq!(h.format, Format::Hek);
    assert_eq!(letters(&h), [('C', 7809), ('M', 748), ('X', 49)]);
    assert_eq!(with_loc(&h), 8606 - 304);
    // Row 1: S26W41 -> hgs_lat -26, hgs_lon 41.
    assert_eq!(
        (h.flares[0].lon, h.flares[0].lat),
        (Some(41.0), Some(-26.0))
    );

    let w = catalog::read(&catalog_path(SWPC), None, false).unwrap();
    assert_eq!(w.format, Format::Swpc);
    assert_eq!(w.flares.len(), 8833);
    assert_eq!(w.flares[2].start.to_string(), "2010-01-02 22:57:00");
    assert_eq!(with_loc(&w), 0);

    let j = catalog::read(&catalog_path(JAMESKC), None, false).unwrap();
    assert_eq!(j.format, Format::Ssw);
    // 16,676 rows, 5 of them exact repeats of an earlier row (all B-class).
    assert_eq!(j.duplicates, 5);
    assert_eq!(
        letters(&j),
        [('A', 2), ('B', 6993), ('C', 8795), ('M', 822), ('X', 59)]
    );
    assert_eq!(
        [&p, &h, &w].map(|c| c.duplicates),
        [0, 0, 0],
        "the other real catalogues repeat no row"
    );
    assert_eq!((j.flares[0].lon, j.flares[0].lat), (Some(7.0), Some(-6.0)));

    let s = catalog::read(&catalog_path(SWANSF), None, false).unwrap();
    assert_eq!(s.format, Format::Integrated);
    let got: Vec<(String, String, Option<f64>)> = s
        .flares
        .iter()
        .map(|f| (f.start.to_string(), f.class.to_string(), f.lon))
        .collect();
    assert_eq!(
        got[0],
        ("2010-05-01 01:34:00".into(), "C5.7".into(), Some(-73.0))
    );
    assert_eq!(got[1].2, Some(-87.6829534893));
    assert_eq!(s.flares.len(), 4);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_rows_fail_with_file_line_and_value_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        dir.path(),
        "files.csv",
        "\u{feff}/x/2011/03/09/HMI.m2011.03.09_00.00.00.jpg\r\n",
    );
    for (bad_row, message) in [
        ("2011-03-09 23:13:00,Q1.0,9,8", "GOES class \"Q1.0\""),
        ("2011-03-09 23:13:00,X1.2.3,9,8", "GOES class \"X1.2.3\""),
        ("2011-03-09 23:13:00,M,9,8", "GOES class \"M\""),
        ("2011-03-09 23:13:00,,9,8", "GOES class \"\""),
        (
            "2011-03-32 23:13:00,M1.0,9,8",
            "start_time \"2011-03-32 23:13:00\" is not a time",
        ),
    ] {
        let cat = write(
            dir.path(),
            "cat.csv",
            &format!("start_time,goes_class,fl_lon,fl_lat\n2011-03-09 01:00:00,C1.0,1,2\n{bad_row}\n2011-03-09 02:00:00,M1.0,UNK,UNK\n"),
        );
        let out = dir.path().join("out");
        label_cmd(&cat, &list, &out)
            .assert()
            .failure()
            .code(1)
            .stderr(predicates::str::contains(format!(
                "{}:3: {message}",
                cat.display()
            )));
        assert!(!out.exists(), "nothing written on error");
        let assert = label_cmd(&cat, &list, &out)
            .args(["--skip-bad-rows", "--json"])
            .assert()
            .success()
            .stderr(predicates::str::contains("skipped"));
        let s: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
        assert_eq!(
            common::counts(&s, &["flares_read", "rows_rejected"]),
            [Some(2), Some(1)]
        );
        assert_eq!(
            common::counts(&s, &["instances", "positives"]),
            [Some(1), Some(1)]
        );
        assert_eq!(
            read(&out.join("Fold1_val.csv")),
            "label,target,goes_class,fl_lon,fl_lat,rest_fl,rest_lon,rest_lat\n\
             2011/03/09/HMI.m2011.03.09_00.00.00.jpg,1,M1.0,UNK,UNK,['C1.0'],[1.0],[2.0]\n"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn image_tree_threshold_and_summary_table() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("jpg");
    common::empty_files(
        &images,
        &[
            "2012/03/06/HMI.m2012.03.06_22.00.00.jpg",
            "2012/03/06/HMI.m2012.03.06_23.00.00.png",
            "2012/03/07/HMI.m2012.03.07_00.00.00.jpg",
            "2012/03/07/HMI.m2012.03.07_01.00.00.jpg",
            "2012/03/07/notes.txt",
        ],
    );
    // SWPC-style rows: X5.4 starting 2012-03-07 00:02, X1.3 at 01:05.
    let cat = write(
        dir.path(),
        "swpc.csv",
        &format!(
            "{}1,20120307,2,0105,0114,0123,G15,1-8A,X,X1.3,1.0,11429,201203070105\n",
            common::SWPC_X5_4
        ),
    );
    let out = dir.path().join("labels");
    common::label_tree(&cat, &images, &out)
        .args(["--start", "2012-03-06T00:00:00", "--end", "2012-03-07T23:00:00", "--threshold", "X2.0"])
        .assert()
        .success()
        .stdout(predicates::str::contains("instances  4 from 2012-03-06T22:00:00 to 2012-03-07T01:00:00; 3 positive (>= X2.0), 75.0 %"))
        .stdout(predicates::str::contains("   1  Jan-Mar          0          0       0.0 %      4        3    75.0 %"));
    assert_eq!(
        read(&out.join("labels.csv")),
        "label,target,goes_class,fl_lon,fl_lat,rest_fl,rest_lon,rest_lat\n\
         2012/03/06/HMI.m2012.03.06_22.00.00.jpg,1,X5.4,UNK,UNK,['X1.3'],['UNK'],['UNK']\n\
         2012/03/06/HMI.m2012.03.06_23.00.00.png,1,X5.4,UNK,UNK,['X1.3'],['UNK'],['UNK']\n\
         2012/03/07/HMI.m2012.03.07_00.00.00.jpg,1,X5.4,UNK,UNK,['X1.3'],['UNK'],['UNK']\n\
         2012/03/07/HMI.m2012.03.07_01.00.00.jpg,0,X1.3,UNK,UNK,0,0,0\n"
    );
    assert_eq!(
        read(&out.join("simplified_data_labels/Fold1_val.csv")),
        "label,goes_class\n2012/03/06/HMI.m2012.03.06_22.00.00.jpg,1\n2012/03/06/HMI.m2012.03.06_23.00.00.png,1\n\
         2012/03/07/HMI.m2012.03.07_00.00.00.jpg,1\n2012/03/07/HMI.m2012.03.07_01.00.00.jpg,0\n"
    );
    assert_eq!(read(&out.join("Fold2_val.csv")).lines().count(), 1);
}

#[test]
fn bench_label_agrees_with_the_scan_and_reports_rates() {
    let assert = common::flarecast()
        .args([
            "bench",
            "label",
            "--repeat",
            "1",
            "--json",
            "--start",
            "2017-09-01T00:00:00",
            "--end",
            "2017-09-30T23:00:00",
        ])
        .arg("--catalog")
        .arg(catalog_path(JAMESKC))
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(v["flares"], 16_671);
    assert_eq!(v["windows"], 720);
    assert_eq!(v["positives"], 178);
    // The rates are the counted windows over the measured times.
    let ms = |key: &str| v[key].as_f64().unwrap();
    assert_eq!(ms("sweep_windows_per_s"), 720.0 / (ms("sweep_ms") / 1e3));
    assert_eq!(ms("scan_windows_per_s"), 720.0 / (ms("scan_ms") / 1e3));
    assert_eq!(ms("speedup"), ms("scan_ms") / ms("sweep_ms"));
}

#[test]
fn sweep_finds_the_flares_a_scan_of_the_whole_catalogue_finds() {
    // September 2017, hourly: every window's flares by the sweep against a plain scan of
    // every catalogue row, (t, t + 23:59:59] as the reference takes them.
    let c = catalog::read(&catalog_path(JAMESKC), None, false).unwrap();
    let cfg = flarecast::label::Config::paper();
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2017, 9, d).unwrap();
    let (start, end) = (
        day(1).and_hms_opt(0, 0, 0).unwrap(),
        day(30).and_hms_opt(23, 0, 0).unwrap(),
    );
    let issues = flarecast::label::issue_times(start, end, cfg.cadence);
    let labeller = flarecast::label::Labeller::new(&c.flares);
    let swept = flarecast::label::label_windows(&labeller, &issues, &cfg);
    assert_eq!(swept.len(), 720);
    let reach = chrono::Duration::hours(24) - chrono::Duration::seconds(1);
    let mut positives = 0;
    for ((window, ranked, target), &t) in swept.iter().zip(&issues) {
        assert_eq!(window.issue, t);
        let scanned: Vec<&catalog::Flare> = c
            .flares
            .iter()
            .filter(|f| f.start > t && f.start <= t + reach)
            .collect();
        assert_eq!(ranked.len(), scanned.len(), "window at {t}");
        assert!(
            scanned
                .iter()
                .all(|f| ranked.iter().any(|r| std::ptr::eq(*r, *f))),
            "window at {t}"
        );
        let largest = scanned.iter().map(|f| &f.class).max();
        assert_eq!(ranked.first().map(|f| &f.class), largest, "window at {t}");
        assert_eq!(*target, largest.is_some_and(|c| *c >= cfg.threshold));
        positives += usize::from(*target);
    }
    assert_eq!(positives, 178);
}

#[test]
fn science_scale_makes_the_c7_to_m1_flares_of_goes_15_and_earlier_positive() {
    let c = catalog::read(&catalog_path(SWPC), None, false).unwrap();
    let m1: catalog::GoesClass = "M1.0".parse().unwrap();
    let c7: catalog::GoesClass = "C7.0".parse().unwrap();
    let (science, converted) = flarecast::label::on_scale(&c.flares, catalog::FluxScale::Science);
    // Every GOES-13/14/15 class is converted (8,634 rows); GOES-16 and SDO rows are not.
    assert_eq!(converted, 8_228 + 306 + 100);
    let crossing: Vec<&catalog::Flare> = c
        .flares
        .iter()
        .zip(&science)
        .filter(|(op, sci)| op.class < m1 && sci.class >= m1)
        .map(|(op, _)| op)
        .collect();
    // 420 flares: 399 from GOES-15, 12 from GOES-14, 9 from GOES-13. The list's other
    // C7.0-C9.9 flares (8 from GOES-16, one from SDO) stay below M1.0.
    assert_eq!(crossing.len(), 420);
    assert!(crossing
        .iter()
        .all(|f| f.class >= c7 && matches!(f.satellite, Some(catalog::Satellite::Goes(13..=15)))));
    let candidates = c
        .flares
        .iter()
        .filter(|f| f.class >= c7 && f.class < m1)
        .count();
    assert_eq!(candidates, 429);

    // Through `flarecast label`: the default operational scale changes nothing; the
    // science scale turns exactly the windows those flares reach into positives.
    let label = |scale: &str| {
        let (out, s) = label_reference_range(SWPC, &["--flux-scale", scale]);
        (s, targets(&out.path().join("labels.csv")))
    };
    let (op, op_targets) = label("operational");
    let (sci, sci_targets) = label("science");
    assert_eq!(
        (
            op["classes_converted"].as_u64(),
            op["labels_changed"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(sci["flux_scale"], "science");
    let changed: Vec<&String> = op_targets
        .keys()
        .filter(|k| op_targets[*k] != sci_targets[*k])
        .collect();
    assert!(changed
        .iter()
        .all(|k| op_targets[*k] == "0" && sci_targets[*k] == "1"));
    assert_eq!(sci["labels_changed"].as_u64(), Some(changed.len() as u64));
    assert_eq!(
        sci["positives"].as_u64().unwrap() - op["positives"].as_u64().unwrap(),
        changed.len() as u64
    );
    assert_eq!(changed.len(), LABELS_CHANGED_BY_SCIENCE_SCALE);
    assert_eq!(
        (op["positives"].as_u64(), sci["positives"].as_u64()),
        (Some(8_978), Some(11_951))
    );
}

/// Hourly instances of the paper's range that the 420 converted flares make positive
/// (8,978 positives become 11,951; a separate Python count of the same windows agrees).
const LABELS_CHANGED_BY_SCIENCE_SCALE: usize = 2_973;

#[test]
fn exact_duplicate_rows_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        dir.path(),
        "files.csv",
        "2011/03/09/HMI.m2011.03.09_00.00.00.jpg\n",
    );
    // The M1.0 row appears twice (an index column aside); the C1.0 twice with a
    // different location, which is a different row.
    let cat = write(
        dir.path(),
        "cat.csv",
        ",start_time,goes_class,fl_lon,fl_lat\n\
         0,2011-03-09 01:00:00,C1.0,1,2\n\
         1,2011-03-09 02:00:00,M1.0,3,4\n\
         2,2011-03-09 01:00:00,C1.0,1,5\n\
         3,2011-03-09 02:00:00,M1.0,3,4\n",
    );
    let out = dir.path().join("out");
    assert_eq!(
        label_counts(
            &cat,
            &list,
            &out,
            "dropped 1 rows of {catalog} that repeat an earlier row exactly",
            &["flares_read", "duplicates_dropped"]
        ),
        [Some(3), Some(1)]
    );
    assert_eq!(
        read(&out.join("labels.csv")),
        "label,target,goes_class,fl_lon,fl_lat,rest_fl,rest_lon,rest_lat\n\
         2011/03/09/HMI.m2011.03.09_00.00.00.jpg,1,M1.0,3.0,4.0,\"['C1.0', 'C1.0']\",\"[1.0, 1.0]\",\"[2.0, 5.0]\"\n"
    );
    // The real SSW list repeats 5 rows; the label bench reads 16,671 flares from it.
    assert_eq!(
        label_counts(
            &catalog_path(JAMESKC),
            &list,
            &out,
            "",
            &["flares_read", "duplicates_dropped"]
        ),
        [Some(16_671), Some(5)]
    );
}

#[test]
fn a_catalogue_without_rows_warns_and_a_range_without_images_fails() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(
        dir.path(),
        "files.csv",
        "2011/03/09/HMI.m2011.03.09_00.00.00.jpg\n2011/03/09/HMI.m2011.03.09_01.00.00.jpg\n",
    );
    let empty = write(
        dir.path(),
        "empty.csv",
        "start_time,goes_class,fl_lon,fl_lat\n",
    );
    let out = dir.path().join("out");
    assert_eq!(
        label_counts(
            &empty,
            &list,
            &out,
            "warning: {catalog} has a header but no flare rows",
            &["instances", "positives"]
        ),
        [Some(2), Some(0)]
    );

    let cat = write(
        dir.path(),
        "cat.csv",
        "start_time,goes_class,fl_lon,fl_lat\n2012-01-01 00:00:00,M1.0,1,2\n",
    );
    let out = dir.path().join("out2");
    label_cmd(&cat, &list, &out)
        .args([
            "--start",
            "2012-01-01T00:00:00",
            "--end",
            "2012-01-31T23:00:00",
        ])
        .assert()
        .failure()
        .code(1)
        .stderr(predicates::str::contains(
            "no image at any issue time from 2012-01-01 00:00:00 to 2012-01-31 23:00:00 \
             (the 2 images run from 2011-03-09T00:00:00 to 2011-03-09T01:00:00): nothing to label",
        ));
    assert!(!out.exists(), "no empty folds written");
}
