//! JP2 decoding and the `convert` command against real Helioviewer files.

use crate::common;

use flarecast::jp2;

#[test]
fn magnetogram_resized_to_512_matches_opencv_area() {
    let img = jp2::decode_gray8(&common::magnetogram_jp2()).unwrap();
    assert_eq!(img.dimensions(), (4096, 4096));
    let small = jp2::resize_area(&img, 512, 512);
    let golden_path =
        common::realdata().join("images/derived/HMI.m2022.08.02_10.47.53_512_area.png");
    let golden = image::open(&golden_path).unwrap().to_luma8();
    assert_eq!(golden.dimensions(), (512, 512));
    let diffs: Vec<u8> = small
        .as_raw()
        .iter()
        .zip(golden.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let max = diffs.iter().copied().max().unwrap();
    let within = diffs.iter().filter(|&&d| d <= 1).count() as f64 / diffs.len() as f64;
    let exact = diffs.iter().filter(|&&d| d == 0).count() as f64 / diffs.len() as f64;
    println!(
        "512 area vs OpenCV: max |diff| = {max}, within 1: {:.4} %, exact: {:.4} %",
        within * 100.0,
        exact * 100.0
    );
    assert!(
        within >= 0.999,
        "only {:.4} % within 1 grey level (max diff {max})",
        within * 100.0
    );
}

/// DECODE_STATS.tsv: file -> (width, height, mean).
fn decode_stats() -> std::collections::HashMap<String, (u32, u32, f64)> {
    let p = common::realdata().join("images/derived/reference_decodes/DECODE_STATS.tsv");
    std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let (w, h) = f[1].split_once('x').unwrap();
            let mean = f[3]
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("mean="))
                .unwrap();
            (
                f[0].to_string(),
                (
                    w.parse().unwrap(),
                    h.parse().unwrap(),
                    mean.parse().unwrap(),
                ),
            )
        })
        .collect()
}

fn stats_sha(rel: &str) -> String {
    let p = common::realdata().join("images/derived/reference_decodes/DECODE_STATS.tsv");
    let text = std::fs::read_to_string(p).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{rel}\t")))
        .unwrap();
    line.rsplit('=').next().unwrap().trim().to_string()
}

#[test]
fn every_real_jp2_decodes_with_reference_dims_and_mean() {
    let stats = decode_stats();
    let root = common::realdata().join("images");
    let files = flarecast::convert::list_jp2(&root).unwrap();
    assert_eq!(files.len(), 9, "{files:?}");
    for f in files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        let (w, h, mean) = stats[&rel];
        let img = jp2::decode_gray8(&f).unwrap();
        assert_eq!(img.dimensions(), (w, h), "{rel}");
        let m = img.as_raw().iter().map(|&v| v as f64).sum::<f64>() / (w as f64 * h as f64);
        // Informational: the 9/7 wavelet is floating point, so only the tolerance is asserted.
        let sha: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
            img.as_raw(),
        ))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
        let same = if sha == stats_sha(&rel) {
            "identical pixels"
        } else {
            "pixels differ"
        };
        println!("{rel}: {w}x{h} mean {m:.4} (reference {mean:.4}), {same}");
        assert!((m - mean).abs() <= 0.5, "{rel}: mean {m} vs {mean}");
    }
}

#[test]
fn truncated_jp2_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::magnetogram_jp2()).unwrap();
    let p = dir.path().join("half.jp2");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let msg = format!("{:#}", jp2::decode_gray8(&p).unwrap_err());
    assert!(
        msg.contains(&p.display().to_string()) && msg.contains("truncated"),
        "{msg}"
    );
    // Cut just before the end-of-codestream marker: the boxes are fine, the codestream is not.
    let p2 = dir.path().join("no_eoc.jp2");
    let mut cut = bytes.clone();
    cut.truncate(cut.len() - 2);
    let jp2c = cut.windows(4).position(|w| w == b"jp2c").unwrap() - 4;
    let len = (cut.len() - jp2c) as u32;
    cut[jp2c..jp2c + 4].copy_from_slice(&len.to_be_bytes());
    std::fs::write(&p2, &cut).unwrap();
    let msg = format!("{:#}", jp2::decode_gray8(&p2).unwrap_err());
    assert!(msg.contains("no_eoc.jp2") && msg.contains("EOC"), "{msg}");
    // Not a JP2 at all.
    let p3 = dir.path().join("page.jp2");
    std::fs::write(&p3, b"<!DOCTYPE html><html><body>Not found</body></html>").unwrap();
    let msg = format!("{:#}", jp2::decode_gray8(&p3).unwrap_err());
    assert!(
        msg.contains("page.jp2") && msg.contains("not a JP2"),
        "{msg}"
    );
}

#[test]
fn convert_tree_counts_a_corrupt_file_converts_the_rest_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("jp2");
    let output = dir.path().join("jpg");
    let good = input.join("2022/08/02/HMI.m2022.08.02_10.48.00.jp2");
    let small = input.join("2024/04/15/HMI.m2024.04.15_06.00.00.jp2");
    let bad = input.join("2022/08/02/HMI.m2022.08.02_11.00.00.jp2");
    for p in [&good, &small, &bad] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    }
    std::fs::copy(common::magnetogram_jp2(), &good).unwrap();
    std::fs::copy(
        common::realdata().join("images/iris_1330A_20240415_060002.jp2"),
        &small,
    )
    .unwrap();
    let bytes = std::fs::read(common::magnetogram_jp2()).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();

    let args = [
        "convert",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--jobs",
        "2",
        "--json",
    ];
    let r = common::flarecast().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HMI.m2022.08.02_11.00.00.jp2") && stderr.contains("truncated"),
        "{stderr}"
    );
    let s: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        (
            s["found"].as_u64(),
            s["converted"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );

    // The converted magnetogram is the reference pipeline's image up to JPEG coding noise.
    let ours = image::open(output.join("2022/08/02/HMI.m2022.08.02_10.48.00.jpg"))
        .unwrap()
        .to_luma8();
    let theirs = image::open(common::magnetogram_jpg()).unwrap().to_luma8();
    assert_eq!(ours.dimensions(), (512, 512));
    let diffs: Vec<u8> = ours
        .as_raw()
        .iter()
        .zip(theirs.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
    let max = *diffs.iter().max().unwrap();
    println!("our JPG vs reference JPG: mean |diff| {mean:.3}, max {max}");
    assert!(mean < 1.0, "mean |diff| {mean}");
    // Non-square 176x196 input resized to 512x512.
    assert_eq!(
        image::open(output.join("2024/04/15/HMI.m2024.04.15_06.00.00.jpg"))
            .unwrap()
            .to_luma8()
            .dimensions(),
        (512, 512)
    );
    assert!(!output
        .join("2022/08/02/HMI.m2022.08.02_11.00.00.jpg")
        .exists());

    let mut rdr = csv::Reader::from_path(output.join("manifest.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    let row = |name: &str| rows.iter().find(|r| r[0].ends_with(name)).unwrap().clone();
    let g = row("10.48.00.jp2");
    assert_eq!(
        (&g[2], &g[3], &g[4], &g[5], &g[6]),
        (
            "converted",
            "2022.08.02_10:48:52.509_TAI",
            "2022-08-02T10:47:53.000",
            "4096",
            "4096"
        )
    );
    assert_eq!(&row("06.00.00.jp2")[4], "2024-04-15T06:00:02.277");
    let b = row("11.00.00.jp2");
    assert_eq!(&b[2], "failed");
    assert!(b[7].contains("truncated"), "{:?}", b);
    // Only results and the manifest in the output tree: no temporaries.
    let names: Vec<String> = walk(&output);
    assert_eq!(names.len(), 3, "{names:?}");

    // Rerun: up-to-date outputs are skipped (their T_OBS still reported).
    let r2 = common::flarecast().args(args).output().unwrap();
    let s2: serde_json::Value = serde_json::from_slice(&r2.stdout).unwrap();
    assert_eq!(
        (
            s2["converted"].as_u64(),
            s2["skipped"].as_u64(),
            s2["failed"].as_u64()
        ),
        (Some(0), Some(2), Some(1))
    );
    let m = std::fs::read_to_string(output.join("manifest.csv")).unwrap();
    assert!(m.contains("skipped,2022.08.02_10:48:52.509_TAI"), "{m}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn png_output_is_the_golden_resize_and_fast_reduce_is_close() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/2022/08/02");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(
        common::magnetogram_jp2(),
        input.join("HMI.m2022.08.02_10.48.00.jp2"),
    )
    .unwrap();
    // A temporary left by a killed run is cleaned up, never listed as a result.
    let stale = dir
        .path()
        .join("png/2022/08/02/.HMI.m2022.08.02_10.48.00.png.999.0.part");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"partial").unwrap();
    let golden = image::open(
        common::realdata().join("images/derived/HMI.m2022.08.02_10.47.53_512_area.png"),
    )
    .unwrap()
    .to_luma8();
    let run = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut cmd = common::flarecast();
        cmd.args([
            "convert",
            "--input",
            dir.path().join("in").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        cmd.args(extra).assert().success();
        out
    };
    let png = run("png", &["--format", "png"]);
    let ours = image::open(png.join("2022/08/02/HMI.m2022.08.02_10.48.00.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(
        ours.as_raw(),
        golden.as_raw(),
        "lossless output must equal OpenCV's INTER_AREA resize"
    );
    assert!(!stale.exists());

    // The default JPG is the reference pipeline's file, byte for byte (libjpeg at quality
    // 95, as Pillow saved the training images).
    let jpg = run("jpg", &[]);
    let ours = std::fs::read(jpg.join("2022/08/02/HMI.m2022.08.02_10.48.00.jpg")).unwrap();
    let reference = std::fs::read(common::magnetogram_jpg()).unwrap();
    assert_eq!(
        ours.len(),
        reference.len(),
        "JPG size against the reference's"
    );
    assert!(ours == reference, "JPG bytes differ from the reference's");

    let fast = run("fast", &["--format", "png", "--fast-reduce"]);
    let reduced = image::open(fast.join("2022/08/02/HMI.m2022.08.02_10.48.00.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(reduced.dimensions(), (512, 512));
    let diffs: Vec<u8> = reduced
        .as_raw()
        .iter()
        .zip(golden.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
    println!(
        "reduced decode vs area: mean |diff| {mean:.3}, max {}",
        diffs.iter().max().unwrap()
    );
    assert!(mean < 2.0 && mean > 0.0, "mean |diff| {mean}");
}
