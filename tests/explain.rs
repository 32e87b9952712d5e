//! `flarecast explain`: output naming, and the methods against captum on the golden
//! weights and input.

mod common;

use tch::Tensor;

/// Two inputs with one file name (a/x.jpg, b/x.jpg) keep their folders in the output
/// names instead of overwriting each other.
#[test]
fn same_file_names_get_separate_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a/x.jpg"), dir.path().join("b/x.jpg"));
    for p in [&a, &b] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    }
    std::fs::copy(common::magnetogram_jpg(), &a).unwrap();
    // The second image is the first flipped, so the two maps differ.
    image::open(&a).unwrap().fliph().save(&b).unwrap();
    let out = dir.path().join("maps");
    let run_on = |command: &str, out: &std::path::Path, images: &[&std::path::PathBuf]| {
        let run = common::flarecast()
            .args([command, "--device", "cpu", "--estimator", "2", "--model"])
            .arg(common::golden().join("attn.pth"))
            .arg("--out")
            .arg(out)
            .args(images)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    };
    // Each image alone: its map under the plain file name.
    let (solo_a, solo_b) = (dir.path().join("solo_a"), dir.path().join("solo_b"));
    run_on("explain", &solo_a, &[&a]);
    run_on("explain", &solo_b, &[&b]);
    let alone_a = Tensor::read_npy(solo_a.join("x_c2.npy")).unwrap();
    let alone_b = Tensor::read_npy(solo_b.join("x_c2.npy")).unwrap();
    assert!((&alone_a - &alone_b).abs().max().double_value(&[]) > 1e-2);
    for command in ["attention", "explain"] {
        run_on(command, &out, &[&a, &b]);
        // Both maps are there, each the one of its own image.
        let ca = Tensor::read_npy(out.join("a/x_c2.npy")).unwrap();
        let cb = Tensor::read_npy(out.join("b/x_c2.npy")).unwrap();
        assert_eq!(ca.size(), vec![32, 32]);
        assert_eq!((&ca - &alone_a).abs().max().double_value(&[]), 0.0);
        assert_eq!((&cb - &alone_b).abs().max().double_value(&[]), 0.0);
        for p in [
            "a/x_est2.png",
            "b/x_est2.png",
            "a/x_panel.png",
            "b/x_panel.png",
        ] {
            assert!(out.join(p).exists(), "{p}");
        }
        assert!(!out.join("x_est2.png").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
    // The same image twice is refused, naming it.
    let run = common::flarecast()
        .args(["explain", "--device", "cpu", "--model"])
        .arg(common::golden().join("attn.pth"))
        .arg("--out")
        .arg(&out)
        .args([&a, &a])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("a/x.jpg") && err.contains("give each image once"),
        "{err}"
    );
}
