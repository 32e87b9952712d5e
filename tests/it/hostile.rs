//! Every subcommand against hostile files (empty, truncated, of the wrong type, with huge
//! dimensions in their headers, holding NaN): each run exits 1 with a one-line error that
//! names the file, never a panic (101) or an abort (134). Also the size limits on numbers
//! that come from flags or from a model's metadata, and weights holding NaN.

use crate::common;

use flarecast::model::{weights, ModelMeta};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Runs flarecast and asserts the failure contract: exit 1, exactly one stderr line, an
/// error naming `names`.
fn fails_naming(args: &[&std::ffi::OsStr], names: &str) -> String {
    let out = common::flarecast().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        out.status.code(),
        Some(1),
        "flarecast {}: exit {:?}\n{err}",
        shown.join(" "),
        out.status.code()
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "flarecast {}: {err}", shown.join(" "));
    assert!(
        lines[0].starts_with("flarecast: error: ") && lines[0].contains(names),
        "flarecast {}: the error does not name {names}: {err}",
        shown.join(" ")
    );
    err
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// The arguments of an `evaluate` of fold 1 on the CPU.
fn evaluate_fold1<'a>(
    model: &'a Path,
    labels: &'a Path,
    images: &'a Path,
    out: &'a Path,
) -> Vec<&'a std::ffi::OsStr> {
    vec![
        os("evaluate"),
        os("--model"),
        os(model),
        os("--fold"),
        os("1"),
        os("--labels"),
        os(labels),
        os("--images"),
        os(images),
        os("--out"),
        os(out),
        os("--device"),
        os("cpu"),
    ]
}

/// The arguments `COMMAND --device cpu --model MODEL` followed by `rest`.
fn model_run<'a>(
    command: &'a str,
    model: &'a Path,
    rest: &[&'a std::ffi::OsStr],
) -> Vec<&'a std::ffi::OsStr> {
    let mut args = vec![
        os(command),
        os("--device"),
        os("cpu"),
        os("--model"),
        os(model),
    ];
    args.extend_from_slice(rest);
    args
}

/// The golden attention weights with `edit` applied, saved as safetensors.
fn edited_model(dir: &Path, name: &str, meta: ModelMeta, edit: impl Fn(&str, &Tensor)) -> PathBuf {
    let (tensors, _) = weights::read_weights(&common::golden().join("attn.pth")).unwrap();
    for (n, t) in &tensors {
        edit(n, t);
    }
    let path = dir.join(name);
    weights::save_tensors(&path, &tensors, &meta).unwrap();
    path
}

fn attention_meta(im_size: i64) -> ModelMeta {
    ModelMeta::new(flarecast::model::Arch::from_attention(true), im_size)
}

/// A PNG header (signature and IHDR) claiming `w` x `h` 8-bit grey pixels, no data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&ihdr);
    v.extend_from_slice(&[0, 0, 0, 0]); // CRC left wrong on purpose
    v
}

/// The real JP2 with 100000 x 100000 pixels claimed in both its image header box and
/// its codestream's SIZ marker.
fn huge_jp2(real: &[u8]) -> Vec<u8> {
    let mut b = real.to_vec();
    let big = 100_000u32.to_be_bytes();
    let ihdr = b.windows(4).position(|w| w == b"ihdr").unwrap();
    let siz = b.windows(2).position(|w| w == [0xff, 0x51]).unwrap();
    for at in [ihdr + 4, ihdr + 8, siz + 6, siz + 10] {
        b[at..at + 4].copy_from_slice(&big);
    }
    b
}

struct Hostile {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Hostile {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// The directory of hostile files.
fn hostile() -> Hostile {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let w = |name: &str, bytes: &[u8]| std::fs::write(root.join(name), bytes).unwrap();
    let jpg = std::fs::read(common::magnetogram_jpg()).unwrap();
    let jp2 = std::fs::read(common::magnetogram_jp2()).unwrap();
    let pth = std::fs::read(common::golden().join("attn.pth")).unwrap();
    w("empty.jpg", b"");
    w("truncated.jpg", &jpg[..jpg.len() / 3]);
    w(
        "text.jpg",
        b"<html><body>Service unavailable</body></html>\n",
    );
    w("huge.png", &png_header(100_000, 100_000));
    w("truncated.jp2", &jp2[..jp2.len() / 4]);
    w("huge.jp2", &huge_jp2(&jp2));
    w("empty.npy", b"");
    w(
        "truncated.npy",
        &common::npy_bytes("(256, 256)", &[0u8; 1000]),
    );
    w(
        "huge.npy",
        &common::npy_bytes("(100000, 1, 100000, 100000)", &[0u8; 64]),
    );
    let mut nan = Vec::new();
    for _ in 0..256 * 256 {
        nan.extend_from_slice(&f32::NAN.to_le_bytes());
    }
    w("nan.npy", &common::npy_bytes("(256, 256)", &nan));
    w("empty.pth", b"");
    w("truncated.pth", &pth[..pth.len() / 2]);
    w("text.pth", b"model weights go here\n");
    // A safetensors header that claims a 2^60-byte header.
    let mut st = (1u64 << 60).to_le_bytes().to_vec();
    st.extend_from_slice(
        b"{\"a\":{\"dtype\":\"F32\",\"shape\":[100000,100000],\"data_offsets\":[0,40000000000]}}",
    );
    w("huge.safetensors", &st);
    w("empty.csv", b"");
    w("text.csv", b"\x00\x01\x02 binary \xff\xfe");
    w(
        "nan_predictions.csv",
        b"timestamp,flare_prob,target\n2011/01/01/HMI.m2011.01.01_00.00.00.jpg,nan,1\n\
          2011/01/01/HMI.m2011.01.01_01.00.00.jpg,0.2,0\n",
    );
    w(
        "truncated_predictions.csv",
        b"timestamp,flare_prob,target\n2011/01/01/HMI.m2011.01.01_00.00.00.jpg,0.5",
    );
    Hostile { _dir: dir, root }
}

#[test]
fn predict_attention_and_explain_refuse_hostile_inputs() {
    let h = hostile();
    let model = common::golden().join("attn.pth");
    for name in [
        "empty.jpg",
        "truncated.jpg",
        "text.jpg",
        "huge.png",
        "truncated.jp2",
        "huge.jp2",
        "empty.npy",
        "truncated.npy",
        "huge.npy",
        "nan.npy",
    ] {
        let input = h.path(name);
        fails_naming(&model_run("predict", &model, &[os(&input)]), name);
        // Every command reads its inputs the one way: the same files fail the same way.
        for command in ["attention", "explain"] {
            let out = h.path("maps");
            fails_naming(
                &model_run(command, &model, &[os("--out"), os(&out), os(&input)]),
                name,
            );
        }
    }
}

#[test]
fn predict_refuses_thresholds_outside_zero_one_and_a_zero_batch_size() {
    let model = common::golden().join("attn.pth");
    let image = common::magnetogram_jpg();
    for (flag, value, says) in [
        (
            "--threshold",
            "nan",
            "--threshold: NaN is not a probability in [0, 1]",
        ),
        (
            "--threshold",
            "5",
            "--threshold: 5 is not a probability in [0, 1]",
        ),
        (
            "--batch-size",
            "0",
            "--batch-size: batch size 0 is outside 1..=65536",
        ),
    ] {
        fails_naming(
            &[
                os("predict"),
                os("--device"),
                os("cpu"),
                os(flag),
                os(value),
                os("--model"),
                os(&model),
                os(&image),
            ],
            says,
        );
    }
}

#[test]
fn every_model_command_refuses_zero_and_oversized_numeric_flags_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::golden().join("attn.pth");
    let image = common::magnetogram_jpg();
    let out = dir.path().join("maps");
    let base = |command: &'static str| model_run(command, &model, &[os("--out"), os(&out)]);
    for (command, extra, says) in [
        (
            "explain",
            vec!["--method", "integrated-gradients", "--steps", "0"],
            "--steps: integration steps 0 is outside 2..=10000",
        ),
        (
            "explain",
            vec!["--method", "occlusion", "--window", "0"],
            "--window: occlusion window 0 is outside 1..=2048",
        ),
        (
            "explain",
            vec!["--method", "occlusion", "--window", "300"],
            "--window: occlusion window 300 is outside 1..=256",
        ),
        (
            "explain",
            vec!["--method", "occlusion", "--stride", "0"],
            "--stride: occlusion stride 0 is outside 1..=2048",
        ),
        (
            "explain",
            vec!["--batch-size", "0"],
            "--batch-size: batch size 0 is outside 1..=65536",
        ),
        (
            "attention",
            vec!["--batch-size", "0"],
            "--batch-size: batch size 0 is outside 1..=65536",
        ),
        (
            "attention",
            vec!["--estimator", "4"],
            "--estimator: estimator must be 1, 2, 3 or all, got \"4\"",
        ),
        (
            "attention",
            vec!["--im-size", "16"],
            "--im-size: image size 16 is outside 192..=2048",
        ),
    ] {
        let mut args = base(command);
        args.extend(extra.iter().map(os));
        args.push(os(&image));
        fails_naming(&args, says);
    }
    assert!(!out.exists(), "nothing is written for a refused flag");
    for (extra, says) in [
        (
            ["--threshold", "nan"],
            "--threshold: NaN is not a probability in [0, 1]",
        ),
        (
            ["--batch-size", "0"],
            "--batch-size: batch size 0 is outside 1..=65536",
        ),
    ] {
        let mut args = model_run("forecast", &model, &[os("--image"), os(&image)]);
        args.extend(extra.iter().map(os));
        fails_naming(&args, says);
    }
}

#[test]
fn every_model_command_refuses_hostile_weight_files() {
    let h = hostile();
    let image = common::magnetogram_jpg();
    let out = h.path("converted.safetensors");
    for name in [
        "empty.pth",
        "truncated.pth",
        "text.pth",
        "huge.safetensors",
        "empty.jpg",
    ] {
        let model = h.path(name);
        fails_naming(&model_run("predict", &model, &[os(&image)]), name);
        fails_naming(&[os("convert-weights"), os(&model), os(&out)], name);
        let maps = h.path("maps");
        fails_naming(
            &model_run("attention", &model, &[os("--out"), os(&maps), os(&image)]),
            name,
        );
    }
    assert!(!out.exists());
}

#[test]
fn evaluate_and_label_refuse_hostile_tables() {
    let h = hostile();
    for name in [
        "empty.csv",
        "text.csv",
        "nan_predictions.csv",
        "truncated_predictions.csv",
    ] {
        fails_naming(
            &[os("evaluate"), os("--predictions"), os(&h.path(name))],
            name,
        );
    }
    let list = common::realdata().join("original_labels/totalfiles_jpg_512.csv");
    for name in ["empty.csv", "text.csv"] {
        let out = h.path("labels");
        fails_naming(
            &[
                os("label"),
                os("--catalog"),
                os(&h.path(name)),
                os("--file-list"),
                os(&list),
                os("--out"),
                os(&out),
            ],
            name,
        );
    }
    // A file list that is not text.
    fails_naming(
        &[
            os("label"),
            os("--catalog"),
            os(&common::realdata()
                .join("catalogs/pandey_reconstructed_window_max_flares_2010-12_2018-07.csv")),
            os("--file-list"),
            os(&h.path("text.csv")),
        ],
        "text.csv",
    );
}

#[test]
fn train_refuses_hostile_label_tables() {
    let h = hostile();
    let labels = h.path("labels");
    std::fs::create_dir_all(labels.join("simplified_data_labels")).unwrap();
    for (k, name) in [(1, "empty.csv"), (2, "text.csv")] {
        for part in ["train", "val"] {
            std::fs::copy(
                h.path(name),
                labels.join(format!("simplified_data_labels/Fold{k}_{part}.csv")),
            )
            .unwrap();
        }
        fails_naming(
            &[
                os("train"),
                os("--fold"),
                os(&k.to_string()),
                os("--epochs"),
                os("1"),
                os("--devices"),
                os("cpu"),
                os("--images"),
                os(&h.root),
                os("--labels"),
                os(&labels),
                os("--out"),
                os(&h.path("models")),
            ],
            &format!("Fold{k}_train.csv"),
        );
    }
}

#[test]
fn convert_and_download_refuse_hostile_files() {
    let h = hostile();
    // A download folder whose manifest is not a manifest.
    let dl = h.path("jp2");
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::write(dl.join("manifest.jsonl"), b"{\"requested\": 12, \n\x00\xff").unwrap();
    fails_naming(
        &[
            os("download"),
            os("--dry-run"),
            os("--start"),
            os("2013-05-13T00:00:00"),
            os("--end"),
            os("2013-05-13T01:00:00"),
            os("--out"),
            os(&dl),
        ],
        "manifest.jsonl",
    );
    // convert: an input folder that is a file.
    fails_naming(
        &[
            os("convert"),
            os("--input"),
            os(&h.path("truncated.jp2")),
            os("--output"),
            os(&h.path("jpg")),
        ],
        "truncated.jp2",
    );
}

#[test]
fn weights_holding_nan_or_inf_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let nan = edited_model(
        dir.path(),
        "nan.safetensors",
        attention_meta(256),
        |n, t| {
            if n == "conv_block3.0.weight" {
                let _ = t.get(0).get(0).fill_(f64::NAN);
            }
        },
    );
    let inf = edited_model(
        dir.path(),
        "inf.safetensors",
        attention_meta(256),
        |n, t| {
            if n == "classify.bias" {
                let _ = t.get(1).fill_(f64::INFINITY);
            }
        },
    );
    let image = common::magnetogram_jpg();
    for (model, tensor) in [(&nan, "conv_block3.0.weight"), (&inf, "classify.bias")] {
        let err = fails_naming(&model_run("predict", model, &[os(&image)]), tensor);
        assert!(err.contains(&model.display().to_string()), "{err}");
        assert!(err.contains("NaN or infinite"), "{err}");
        fails_naming(
            &[
                os("convert-weights"),
                os(model),
                os(&dir.path().join("x.pth")),
            ],
            tensor,
        );
    }
}

#[test]
fn image_sizes_from_flags_and_metadata_are_checked_where_they_enter() {
    let dir = tempfile::tempdir().unwrap();
    let image = common::magnetogram_jpg();
    let golden = common::golden().join("attn.pth");
    let err = fails_naming(
        &[
            os("predict"),
            os("--device"),
            os("cpu"),
            os("--im-size"),
            os("100000"),
            os("--model"),
            os(&golden),
            os(&image),
        ],
        "--im-size",
    );
    assert!(
        err.contains("image size 100000 is outside 192..=2048"),
        "{err}"
    );
    let out = dir.path().join("big.safetensors");
    fails_naming(
        &[
            os("convert-weights"),
            os("--im-size"),
            os("100000"),
            os(&golden),
            os(&out),
        ],
        "image size 100000 is outside 192..=2048",
    );
    assert!(!out.exists());
    // A model file whose metadata claims a huge size is refused on load.
    let big = edited_model(
        dir.path(),
        "meta.safetensors",
        attention_meta(100_000),
        |_, _| {},
    );
    let err = fails_naming(
        &model_run("predict", &big, &[os(&image)]),
        "meta.safetensors",
    );
    assert!(
        err.contains("image size 100000 is outside 192..=2048"),
        "{err}"
    );
    let jp2_dir = dir.path().join("jp2");
    std::fs::create_dir_all(&jp2_dir).unwrap();
    let err = fails_naming(
        &[
            os("convert"),
            os("--input"),
            os(&jp2_dir),
            os("--output"),
            os(&dir.path().join("jpg")),
            os("--size"),
            os("100000"),
        ],
        "100000",
    );
    assert!(
        err.contains("--size: output size 100000 is outside 0..=8192"),
        "{err}"
    );
}

#[test]
fn convert_weights_onto_a_folder_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let golden = common::golden().join("attn.pth");
    for name in ["existing_dir", "existing.pth", "existing.safetensors"] {
        let target = dir.path().join(name);
        std::fs::create_dir_all(&target).unwrap();
        fails_naming(&[os("convert-weights"), os(&golden), os(&target)], name);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert!(left.iter().all(|n| n.starts_with("existing")), "{left:?}");
        assert!(left.iter().all(|n| !n.contains("tmp")), "{left:?}");
        assert!(std::fs::read_dir(&target).unwrap().next().is_none());
    }
}

/// The benches read their inputs from the paths given: a missing one is named, and
/// nothing is left beside it.
#[test]
fn benches_name_a_missing_input() {
    let dir = tempfile::tempdir().unwrap();
    for (bench, flag, name) in [
        ("label", "--catalog", "flares.csv"),
        ("convert", "--jp2", "magnetogram.jp2"),
        ("train", "--jpg", "magnetogram.jpg"),
    ] {
        let missing = dir.path().join(name);
        let path = missing.to_str().unwrap();
        let mut args = vec![os("bench"), os(bench), os(flag), os(path)];
        if bench == "train" {
            args.extend([os("--device"), os("cpu")]);
        }
        fails_naming(&args, path);
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The network benches refuse an input side the network cannot run and a zero batch
/// before any work, naming the flag (a 128 px bench used to panic inside libtorch).
#[test]
fn network_benches_refuse_sizes_the_network_cannot_run() {
    let jpg = common::magnetogram_jpg();
    let jpg = jpg.to_str().unwrap();
    for (bench, flag, value) in [
        ("model", "--im-size", "128"),
        ("model", "--batch-size", "0"),
        ("train", "--im-size", "128"),
        ("train", "--batch-size", "0"),
    ] {
        let mut args = vec![
            os("bench"),
            os(bench),
            os("--device"),
            os("cpu"),
            os(flag),
            os(value),
        ];
        if bench == "train" {
            args.extend([os("--jpg"), os(jpg)]);
        }
        fails_naming(&args, flag);
    }
}

// Files built to exhaust or mislead the readers, concurrent writers and tables whose
// paths leave their tree.

/// Pickle opcodes (protocol 2) building a "billion laughs": 60 nested lists, each
/// holding its predecessor twice through memo references (2^60 items if copied). Memo
/// keys start at `base` so the bomb can sit inside another pickle.
fn laughs(base: u32) -> Vec<u8> {
    let mut p = vec![b']', b'r'];
    p.extend_from_slice(&base.to_le_bytes());
    for i in 1..=60u32 {
        p.push(b'(');
        for _ in 0..2 {
            p.push(b'j');
            p.extend_from_slice(&(base + i - 1).to_le_bytes());
        }
        p.extend_from_slice(b"lr");
        p.extend_from_slice(&(base + i).to_le_bytes());
    }
    p
}

/// The golden attn.pth's entries, in order.
fn golden_entries() -> Vec<(String, Vec<u8>)> {
    common::zip::entries(&std::fs::read(common::golden().join("attn.pth")).unwrap())
}

fn assert_same_tensors(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    let names = |v: &[(String, Tensor)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    for ((n, x), (_, y)) in a.iter().zip(b) {
        assert!(x.kind() == y.kind() && x.equal(y), "{n} differs");
    }
}

#[test]
fn a_pickle_bomb_is_refused_at_once_and_a_shared_one_read() {
    use flarecast::model::pth;
    let dir = tempfile::tempdir().unwrap();
    let mut pkl = vec![0x80, 2];
    pkl.extend(laughs(0));
    pkl.push(b'.');
    let bomb = common::zip::zip_of(
        &[("bomb/data.pkl".into(), pkl)],
        zip::CompressionMethod::Stored,
    );
    assert!(bomb.len() < 2048, "{} bytes", bomb.len());
    let path = dir.path().join("bomb.pth");
    std::fs::write(&path, &bomb).unwrap();
    // Shared references keep it a few hundred values: read in a blink, refused for what it
    // is (no state dict), not for what it would cost when copied. The bound is generous
    // for a loaded machine; a copying reader never returns.
    let t0 = std::time::Instant::now();
    let err = format!("{:#}", pth::read_state_dict_bytes(&bomb).unwrap_err());
    assert!(err.contains("no state dict"), "{err}");
    assert!(t0.elapsed().as_secs() < 20, "{:?}", t0.elapsed());
    fails_naming(
        &model_run("predict", &path, &[os(&common::magnetogram_jpg())]),
        "bomb.pth",
    );

    // The same bomb as one more entry of the golden state dict: the tensors read as stored.
    let mut entries = golden_entries();
    let (_, pkl) = entries
        .iter_mut()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .unwrap();
    assert_eq!(pkl.pop(), Some(b'.'));
    assert_eq!(pkl.pop(), Some(b'u')); // SETITEMS of the state dict
    pkl.extend_from_slice(b"X\x04\x00\x00\x00bomb");
    pkl.extend(laughs(1_000_000));
    pkl.extend_from_slice(b"u.");
    let with_bomb = pth::read_state_dict_bytes(&common::zip::zip_of(
        &entries,
        zip::CompressionMethod::Stored,
    ))
    .unwrap();
    let stored = pth::read_state_dict(&common::golden().join("attn.pth")).unwrap();
    assert_same_tensors(&with_bomb, &stored);

    // Nesting past the limit is refused, not recursed into.
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b'(', 10_000));
    deep.extend(std::iter::repeat_n(b'l', 10_000));
    deep.push(b'.');
    let deep = common::zip::zip_of(
        &[("d/data.pkl".into(), deep)],
        zip::CompressionMethod::Stored,
    );
    let err = format!("{:#}", pth::read_state_dict_bytes(&deep).unwrap_err());
    assert!(
        err.contains(&format!("deeper than {}", pth::MAX_DEPTH)),
        "{err}"
    );
}

#[test]
fn a_deflated_checkpoint_reads_equal_to_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let deflated = common::zip::zip_of(&golden_entries(), zip::CompressionMethod::Deflated);
    let path = dir.path().join("deflated.pth");
    std::fs::write(&path, &deflated).unwrap();
    let (got, _) = weights::read_weights(&path).unwrap();
    let (stored, _) = weights::read_weights(&common::golden().join("attn.pth")).unwrap();
    assert_same_tensors(&got, &stored);
    let m = weights::load_model(&path, tch::Device::Cpu).unwrap();
    assert!(m.net.arch() == flarecast::model::Arch::from_attention(true));

    // A storage that inflates to less than its tensor needs is a truncated file.
    let mut entries = golden_entries();
    let (name, short) = entries
        .iter_mut()
        .find(|(n, _)| n.ends_with("data/0"))
        .unwrap();
    let name = name.clone();
    short.truncate(100);
    let truncated = dir.path().join("short.pth");
    std::fs::write(
        &truncated,
        common::zip::zip_of(&entries, zip::CompressionMethod::Deflated),
    )
    .unwrap();
    let err = format!("{:#}", weights::read_weights(&truncated).unwrap_err());
    assert!(
        err.contains("short.pth") && err.contains(&name) && err.contains("holds 100 bytes"),
        "{err}"
    );
}

#[test]
fn a_parameter_of_the_wrong_type_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tensors, _) = weights::read_weights(&common::golden().join("attn.pth")).unwrap();
    let (_, t) = tensors
        .iter_mut()
        .find(|(n, _)| n == "conv_block1.0.weight")
        .unwrap();
    // The float bytes reinterpreted, as a hostile or broken converter would write them.
    *t = t.view_dtype(tch::Kind::Int);
    let path = dir.path().join("int32.safetensors");
    weights::save_tensors(&path, &tensors, &attention_meta(256)).unwrap();
    let err = fails_naming(
        &model_run("predict", &path, &[os(&common::magnetogram_jpg())]),
        "int32.safetensors",
    );
    assert!(
        err.contains("conv_block1.0.weight is I32, the network expects F32"),
        "{err}"
    );
}

/// A tiny fold 1 under `root`: `images/` (256x256 PNG disks, every third one with a
/// bipole and labelled 1) and `labels/simplified_data_labels/Fold1_{train,val}.csv`.
fn tiny_fold(root: &Path) {
    let labels = root.join("labels/simplified_data_labels");
    std::fs::create_dir_all(&labels).unwrap();
    for (split, n, month) in [("train", 9, 4), ("val", 6, 1)] {
        let mut csv = String::from("label,goes_class\n");
        for i in 0..n {
            let target = i % 3 == 0;
            let t = chrono::NaiveDate::from_ymd_opt(2014, month, 1)
                .unwrap()
                .and_hms_opt(i, 0, 0)
                .unwrap();
            let rel = flarecast::instant::Instant::new(t).relative_path("png");
            let path = root.join("images").join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::GrayImage::from_fn(256, 256, |x, y| {
                let (dx, dy) = (x as f64 - 128.0, y as f64 - 128.0);
                let spot = target && (dx - 20.0).abs() < 10.0 && dy.abs() < 10.0;
                image::Luma([if dx * dx + dy * dy > 110.0 * 110.0 {
                    0
                } else if spot {
                    250
                } else {
                    120 + ((x * 7 + y * 13 + i * 31) % 9) as u8
                }])
            })
            .save(&path)
            .unwrap();
            csv.push_str(&format!("{rel},{}\n", target as u8));
        }
        std::fs::write(labels.join(format!("Fold1_{split}.csv")), csv).unwrap();
    }
}

/// `train` of the standard CNN for `epochs` on the tiny fold under `root`, batches of 4.
fn tiny_train(root: &Path, epochs: usize) -> Vec<String> {
    let mut args = common::tiny_train_args(root, "--no-attention", "models", "4");
    args.extend(["--epochs".into(), epochs.to_string()]);
    args
}

#[test]
fn a_second_train_into_the_same_fold_is_refused_and_a_killed_ones_lock_taken_over() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    tiny_fold(dir.path());
    // The first run: long enough to be still running while the second starts.
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("flarecast"))
        .args(tiny_train(dir.path(), 500))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id();
    // Stop the run by its pid whatever happens below.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut lines = std::io::BufReader::new(first.stdout.take().unwrap()).lines();
    let first = Kill(first);
    // Its first epoch is done: it holds the fold (its stdout stays open meanwhile).
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("epoch 1/500")),
        "the first run ended before its first epoch"
    );
    let args = tiny_train(dir.path(), 1);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(os).collect();
    let err = fails_naming(&args, &format!("pid {pid}"));
    assert!(err.contains("started 20") && err.contains("fold1"), "{err}");
    // Killed, it leaves its lock file; the kernel dropped the lock, so the next run
    // takes it over, and removes it when done.
    drop(first);
    drop(lines);
    let lock = dir.path().join("models/no_attention/.fold1.lock");
    assert!(lock.exists());
    common::flarecast().args(&args).assert().success();
    assert!(!lock.exists());
    assert!(dir
        .path()
        .join("models/no_attention/fold1_final.safetensors")
        .exists());
}

#[test]
fn evaluate_maps_and_forecasts_refuse_a_second_writer() {
    let dir = tempfile::tempdir().unwrap();
    tiny_fold(dir.path());
    let model = common::golden().join("attn.pth");
    let image = common::magnetogram_jpg();
    let me = format!("pid {}", std::process::id());
    let held = |out: &Path, name: &str| flarecast::fsio::OutputLock::acquire(out, name).unwrap();

    let eval = dir.path().join("eval");
    let lock = held(&eval, "fold1_res");
    let (labels, images) = (dir.path().join("labels"), dir.path().join("images"));
    let evaluate = evaluate_fold1(&model, &labels, &images, &eval);
    fails_naming(&evaluate, &me);
    assert!(!eval.join("fold1_res.csv").exists());
    drop(lock);
    common::flarecast().args(evaluate).assert().success();

    let maps = dir.path().join("maps");
    let _lock = held(&maps, "maps");
    let attention = model_run("attention", &model, &[os("--out"), os(&maps), os(&image)]);
    fails_naming(&attention, &me);

    let forecasts = dir.path().join("forecasts");
    let forecast = model_run(
        "forecast",
        &model,
        &[
            os("--image"),
            os(&image),
            os("--at"),
            os("2022-08-02T11:00:00"),
            os("--out"),
            os(&forecasts),
        ],
    );
    let lock = held(&forecasts, "forecast");
    fails_naming(&forecast, &me);
    drop(lock);
    common::flarecast().args(forecast).assert().success();
}

#[test]
fn paths_that_leave_their_tree_are_refused_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    tiny_fold(dir.path());
    let model = common::golden().join("attn.pth");
    let (labels, images) = (dir.path().join("labels"), dir.path().join("images"));
    let tables = labels.join("simplified_data_labels");
    for (split, row) in [
        ("val", "../../../../etc/passwd,1"),
        ("train", "/etc/passwd,0"),
    ] {
        let table = tables.join(format!("Fold1_{split}.csv"));
        let mut text = std::fs::read_to_string(&table).unwrap();
        text.push_str(row);
        text.push('\n');
        std::fs::write(&table, text).unwrap();
    }
    let bad_val = "Fold1_val.csv:8: label \"../../../../etc/passwd\"";
    let err = fails_naming(
        &evaluate_fold1(&model, &labels, &images, &dir.path().join("eval")),
        bad_val,
    );
    assert!(err.contains("leaves its folder"), "{err}");
    let args = tiny_train(dir.path(), 1);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(os).collect();
    let err = fails_naming(&args, "Fold1_train.csv:11: label \"/etc/passwd\"");
    assert!(err.contains("is absolute"), "{err}");

    // An instance list for the maps.
    let list = dir.path().join("plots.csv");
    std::fs::write(&list, "timestamp\n../../../etc/hostname\n").unwrap();
    fails_naming(
        &model_run(
            "attention",
            &model,
            &[
                os("--out"),
                os(&dir.path().join("maps")),
                os("--csv"),
                os(&list),
                os("--images"),
                os(&images),
            ],
        ),
        "plots.csv: line 2: timestamp \"../../../etc/hostname\"",
    );

    // A forecast index whose files leave its folder.
    let forecasts = dir.path().join("forecasts");
    common::flarecast()
        .args(model_run(
            "forecast",
            &model,
            &[
                os("--image"),
                os(&common::magnetogram_jpg()),
                os("--at"),
                os("2022-08-02T11:00:00"),
                os("--out"),
                os(&forecasts),
            ],
        ))
        .assert()
        .success();
    let index = forecasts.join("index.jsonl");
    let mut line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&index).unwrap().trim()).unwrap();
    line["files"] = serde_json::json!(["../../../etc/passwd"]);
    std::fs::write(&index, format!("{line}\n")).unwrap();
    let err = format!(
        "{:#}",
        flarecast::forecast::record::read_records(&index).unwrap_err()
    );
    assert!(
        err.contains("index.jsonl:1") && err.contains("\"../../../etc/passwd\" leaves its folder"),
        "{err}"
    );
}

/// Values written into the SLURM batch script: an `--sbatch-arg` or an `--out` holding a
/// newline (which would start a line the node runs) or another control character is
/// refused naming the value, before anything is written, with or without `--dry-run`.
#[test]
fn shell_lines_in_sbatch_options_or_the_experiment_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = (dir.path().join("images"), dir.path().join("labels"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    let exp = dir.path().join("exp");
    let injected = dir.path().join("exp\ntouch PWNED");
    let before = common::tree::listing(dir.path());
    for (out, sbatch_arg, flag, value) in [
        (
            &exp,
            "--partition=x\ntouch PWNED",
            "--sbatch-arg",
            r#""--partition=x\ntouch PWNED""#.to_string(),
        ),
        (
            &exp,
            "--comment=a\rb",
            "--sbatch-arg",
            r#""--comment=a\rb""#.to_string(),
        ),
        (
            &injected,
            "--partition=x",
            "--out",
            format!("{:?}", injected.to_str().unwrap()),
        ),
    ] {
        for dry in [false, true] {
            let mut args = vec![
                os("experiment"),
                os("run"),
                os("--images"),
                os(&images),
                os("--labels"),
                os(&labels),
                os("--out"),
                os(out),
                os("--executor"),
                os("slurm"),
                os("--sbatch-arg"),
                os(sbatch_arg),
            ];
            if dry {
                args.push(os("--dry-run"));
            }
            let err = fails_naming(&args, &value);
            assert!(err.contains(flag), "{err}");
            assert_eq!(common::tree::listing(dir.path()), before, "{err}");
        }
    }
}
