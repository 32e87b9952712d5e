//! The label tables are one result: concurrent runs, a run killed partway and a run over
//! tables of an earlier layout leave one whole set of tables in `--out`, never a mix.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

const PANDEY: &str = "pandey_reconstructed_window_max_flares_2010-12_2018-07.csv";

/// The 17 tables of a set, by their names in `--out`.
fn table_names() -> Vec<String> {
    let mut names = vec!["labels.csv".to_string()];
    for k in 1..=4 {
        for part in ["train", "val"] {
            names.push(format!("Fold{k}_{part}.csv"));
            names.push(format!("simplified_data_labels/Fold{k}_{part}.csv"));
        }
    }
    names
}

type Set = BTreeMap<String, Vec<u8>>;

/// The tables as a reader of `out` sees them; a missing table reads as empty.
fn read_set(out: &Path) -> Set {
    table_names()
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(out.join(&n)).unwrap_or_default();
            (n, bytes)
        })
        .collect()
}

/// A `label` command over 2014 of the paper's image list with `threshold`.
fn label_cmd(threshold: &str, out: &Path) -> Command {
    let real = common::realdata();
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("flarecast"));
    cmd.arg("label")
        .arg("--catalog")
        .arg(real.join("catalogs").join(PANDEY))
        .arg("--file-list")
        .arg(real.join("original_labels/totalfiles_jpg_512.csv"))
        .args([
            "--start",
            "2014-01-01T00:00:00",
            "--end",
            "2014-12-31T23:00:00",
        ])
        .args(["--threshold", threshold])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// The sets that M1.0 and C1.0 thresholds give, each written alone.
fn reference_sets(dir: &Path) -> (Set, Set) {
    let mut sets = Vec::new();
    for thr in ["M1.0", "C1.0"] {
        let out = dir.join(format!("alone_{thr}"));
        let st = label_cmd(thr, &out).status().unwrap();
        assert!(st.success());
        sets.push(read_set(&out));
    }
    let c = sets.pop().unwrap();
    let m = sets.pop().unwrap();
    for (name, bytes) in &m {
        assert!(bytes.len() > 1000, "{name} is {} bytes", bytes.len());
        if name == "labels.csv" {
            assert_ne!(
                bytes, &c[name],
                "the two thresholds must give different tables"
            );
        }
    }
    (m, c)
}

/// Which of the two sets `got` is, or a description of the mix.
fn which(got: &Set, m: &Set, c: &Set) -> Result<&'static str, String> {
    if got == m {
        return Ok("M1.0");
    }
    if got == c {
        return Ok("C1.0");
    }
    let mix: Vec<String> = got
        .iter()
        .map(|(n, b)| {
            let from = if b == &m[n] {
                "M1.0"
            } else if b == &c[n] {
                "C1.0"
            } else {
                "neither (spliced or partial)"
            };
            format!("{n}: {from}")
        })
        .collect();
    Err(mix.join("; "))
}

#[test]
fn two_concurrent_runs_leave_one_whole_set() {
    let dir = tempfile::tempdir().unwrap();
    let (m, c) = reference_sets(dir.path());
    let out = dir.path().join("shared_out");
    let mut winners = BTreeMap::new();
    for trial in 0..16 {
        let mut a = label_cmd("M1.0", &out).spawn().unwrap();
        let mut b = label_cmd("C1.0", &out).spawn().unwrap();
        let (sa, sb) = (a.wait().unwrap(), b.wait().unwrap());
        assert!(sa.success() && sb.success(), "trial {trial}: {sa} {sb}");
        let got = read_set(&out);
        let w = which(&got, &m, &c).unwrap_or_else(|mix| panic!("trial {trial}: {mix}"));
        *winners.entry(w).or_insert(0) += 1;
    }
    // Nothing but the tables and their folder: no temporaries of either run are left.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = table_names()
        .into_iter()
        .filter(|n| !n.contains('/'))
        .chain([".label_tables".into(), "simplified_data_labels".into()])
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    eprintln!("winners over 16 trials: {winners:?}");
}

#[test]
fn a_run_killed_partway_leaves_the_previous_set() {
    let dir = tempfile::tempdir().unwrap();
    let (m, c) = reference_sets(dir.path());
    let out = dir.path().join("out");
    assert!(label_cmd("M1.0", &out).status().unwrap().success());
    // Kill the C1.0 run at points spread over its whole run: before, while and after
    // it writes. Each time the tables read as one whole set.
    for step in 0..12u64 {
        let mut child = label_cmd("C1.0", &out).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(step * 70));
        let _ = child.kill();
        child.wait().unwrap();
        let got = read_set(&out);
        which(&got, &m, &c).unwrap_or_else(|mix| panic!("killed after {} ms: {mix}", step * 70));
    }
}

#[test]
fn tables_of_the_earlier_layout_are_replaced_whole_and_other_files_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = reference_sets(dir.path());
    // Plain files in a read-only simplified_data_labels/, as earlier versions wrote them,
    // beside a file of the user's.
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("simplified_data_labels")).unwrap();
    for n in table_names() {
        std::fs::write(out.join(&n), b"label,target\nold\n").unwrap();
    }
    std::fs::write(out.join("README.md"), b"mine\n").unwrap();
    let simple = out.join("simplified_data_labels");
    set_mode(&simple, 0o555);
    let run = label_cmd("M1.0", &out).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(read_set(&out), m);
    assert_eq!(std::fs::read(out.join("README.md")).unwrap(), b"mine\n");
}

#[test]
fn a_run_that_cannot_write_fails_naming_the_table_and_keeps_the_previous_set() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = reference_sets(dir.path());
    let out = dir.path().join("out");
    assert!(label_cmd("M1.0", &out).status().unwrap().success());
    // Files over 64 KiB cannot be written (EFBIG), whoever runs the test.
    let cmd = label_cmd("C1.0", &out);
    let inner: Vec<_> = std::iter::once(cmd.get_program().to_owned())
        .chain(cmd.get_args().map(|a| a.to_owned()))
        .collect();
    let run = Command::new("bash")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$@\"")
        .arg("bash")
        .args(inner)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("labels.csv") && err.contains("File too large"),
        "{err}"
    );
    assert_eq!(read_set(&out), m);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn labelling_two_centuries_at_one_second_walks_only_the_images() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("jpg");
    common::empty_files(
        &images,
        &[
            "2012/03/06/HMI.m2012.03.06_22.00.00.jpg",
            "2012/03/06/HMI.m2012.03.06_23.00.00.jpg",
            "2012/03/07/HMI.m2012.03.07_00.00.00.jpg",
            "2012/03/07/HMI.m2012.03.07_01.00.00.jpg",
        ],
    );
    let cat = dir.path().join("swpc.csv");
    std::fs::write(&cat, common::SWPC_X5_4).unwrap();
    let run = |start: &str, cadence: &str| -> serde_json::Value {
        let out = common::assert_success(
            common::label_tree(&cat, &images, &dir.path().join("labels"))
                .args(["--start", start, "--end", "2100-01-01T00:00:00"])
                .args(["--cadence", cadence, "--json"])
                .output()
                .unwrap(),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = run("1900-01-01T00:00:00", "1s");
    assert_eq!(
        common::counts(&s, &["instances", "positives"]),
        [Some(4), Some(3)]
    );
    // Every 2 hours from midnight: 22:00 and 00:00 are issue times, 23:00 and 01:00 not.
    let s = run("2012-03-06T00:00:00", "2h");
    assert_eq!(s["instances"].as_u64(), Some(2));
    assert_eq!(s["first"], "2012-03-06T22:00:00");
    assert_eq!(s["last"], "2012-03-07T00:00:00");
}
