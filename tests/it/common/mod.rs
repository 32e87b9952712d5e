//! Paths shared by the integration tests: the real data and golden outputs that live
//! beside the repository (never inside it).

use std::path::PathBuf;

fn beside_repo(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared")
            .join(name),
    }
}

/// `../shared/realdata` (or `$FLARECAST_REALDATA`).
pub fn realdata() -> PathBuf {
    beside_repo("FLARECAST_REALDATA", "realdata")
}

/// `../shared/golden` (or `$FLARECAST_GOLDEN`).
pub fn golden() -> PathBuf {
    beside_repo("FLARECAST_GOLDEN", "golden")
}

/// The real HMI magnetogram JP2 and its reference 512x512 JPG conversion.
pub fn magnetogram_jp2() -> PathBuf {
    realdata().join("images/2022_08_02__10_47_53_000__SDO_HMI_HMI_magnetogram.jp2")
}

pub fn magnetogram_jpg() -> PathBuf {
    realdata().join("images/derived/HMI.m2022.08.02_10.47.53.jpg")
}

/// Rows of a CSV table (header skipped), split at commas.
pub fn csv_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// An SWPC event list holding one flare: the X5.4 starting 2012-03-07 00:02.
pub const SWPC_X5_4: &str = "date,event_no,start_time,max_time,end_time,goes_sat,goes_channel,goes_class_ind,goes_class,integrated_flux,noaa_ar,ts\n\
     0,20120307,1,0002,0024,0040,G15,1-8A,X,X5.4,1.0,11429,201203070002\n";

/// `flarecast label --catalog CATALOG --images IMAGES --out OUT`, ready for more
/// arguments.
pub fn label_tree(
    catalog: &std::path::Path,
    images: &std::path::Path,
    out: &std::path::Path,
) -> assert_cmd::Command {
    let mut cmd = flarecast();
    cmd.arg("label")
        .arg("--catalog")
        .arg(catalog)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out);
    cmd
}

/// An empty file at each of `names` under `root`, with its folders: an image tree for the
/// commands that read only the names.
pub fn empty_files(root: &std::path::Path, names: &[&str]) {
    for name in names {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"").unwrap();
    }
}

/// A real answer of the Helioviewer API, saved in `realdata/helioviewer_api`.
pub fn helioviewer_answer(name: &str) -> Vec<u8> {
    let path = realdata().join("helioviewer_api").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The built `flarecast` binary, ready for arguments.
pub fn flarecast() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("flarecast").expect("flarecast binary")
}

/// Runs `flarecast ARGS` and returns its output; a failure fails the test with
/// flarecast's stderr.
pub fn run_ok(args: &[&str]) -> std::process::Output {
    run_ok_in(flarecast(), args)
}

/// [`run_ok`] on a command whose environment the caller prepared.
pub fn run_ok_in(mut cmd: assert_cmd::Command, args: &[&str]) -> std::process::Output {
    let out = cmd.args(args).output().expect("run flarecast");
    assert!(
        out.status.success(),
        "flarecast {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that a run succeeded, showing its stderr if not, and gives its output.
pub fn assert_success(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two days of hourly 256x256 synthetic images from 2014-03-01 (seed 3: positive and
/// negative windows) and their catalogue, in `out`.
pub fn synth_two_days_hourly(out: &std::path::Path) {
    let out = out.to_str().expect("UTF-8 path");
    run_ok(&[
        "synth",
        "--out",
        out,
        "--start",
        "2014-03-01T00:00:00",
        "--days",
        "2",
        "--cadence",
        "1h",
        "--size",
        "256",
        "--seed",
        "3",
    ]);
}

/// The train flags every tiny run here shares: 192 px, float32 on the CPU.
pub const CPU_F32_192: [&str; 6] = ["--im-size", "192", "--devices", "cpu", "--precision", "f32"];

/// The train flags of an experiment's cell on a synthetic archive: one epoch in batches
/// of 4, [`CPU_F32_192`].
pub fn cell_train_flags() -> Vec<&'static str> {
    [&["--epochs", "1", "--batch-size", "4"][..], &CPU_F32_192].concat()
}

/// Labels the images `images` of the synthetic archive in `dir/archive` by its catalogue
/// from `start` to `end`, with `more` arguments, into `dir/labels`.
pub fn label_archive(
    dir: &std::path::Path,
    images: &std::path::Path,
    start: &str,
    end: &str,
    more: &[&str],
) {
    let s = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_string();
    let (catalog, images, labels) = (
        s(&dir.join("archive/catalog.csv")),
        s(images),
        s(&dir.join("labels")),
    );
    let args = [
        "label",
        "--catalog",
        &catalog,
        "--images",
        &images,
        "--out",
        &labels,
        "--start",
        start,
        "--end",
        end,
    ];
    run_ok(&[&args[..], more].concat());
}

/// A synthetic archive in `dir/archive`, 192 px every 12 hours for `days` days from
/// `start` (seed 1), labelled at that cadence up to `end` into `dir/labels`.
pub fn synth_and_label_12h(dir: &std::path::Path, start: &str, days: &str, end: &str) {
    let s = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_string();
    run_ok(&[
        "synth",
        "--out",
        &s(&dir.join("archive")),
        "--start",
        start,
        "--days",
        days,
        "--cadence",
        "12h",
        "--size",
        "192",
        "--seed",
        "1",
    ]);
    label_archive(
        dir,
        &dir.join("archive/images"),
        start,
        end,
        &["--cadence", "12h"],
    );
}

/// Labels the archive of `synth_two_days_hourly` in `dir` (images from `images`), then
/// `evaluate --model` on fold 1 (all of March), one image per
/// forward pass as `forecast` runs: its JSON report and its per-instance file.
pub fn label_and_evaluate_two_days(
    dir: &std::path::Path,
    images: &std::path::Path,
    model: &str,
) -> (serde_json::Value, String) {
    let s = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_string();
    label_archive(
        dir,
        images,
        "2014-03-01T00:00:00",
        "2014-03-02T23:00:00",
        &[],
    );
    let out = run_ok(&[
        "evaluate",
        "--model",
        model,
        "--fold",
        "1",
        "--labels",
        &s(&dir.join("labels")),
        "--images",
        &s(images),
        "--out",
        &s(&dir.join("eval")),
        "--device",
        "cpu",
        "--batch-size",
        "1",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let res = std::fs::read_to_string(dir.join("eval/fold1_res.csv")).unwrap();
    (report, res)
}

/// The Python of the virtualenv holding the torch that flarecast links (scripts/setup.sh
/// installs it), to cross-check against PyTorch itself.
pub fn torch_python() -> PathBuf {
    let venv = std::env::var_os("FLARECAST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/flarecast/venv-torch-2.13.0")
        });
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/setup.sh",
        py.display()
    );
    py
}

/// Runs a Python script with torch available and returns its stdout.
pub fn python(script: &str) -> String {
    let out = std::process::Command::new(torch_python())
        .arg("-c")
        .arg(script)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
pub mod jp2;
pub mod tree;
pub mod zip;

/// `meta.json` of the golden outputs.
pub fn golden_meta() -> serde_json::Value {
    let path = golden().join("meta.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden meta.json")
}

/// The reference's P(FL) for row `row` of the golden input under `net` (`attn` or
/// `noattn`); row 0 is the real magnetogram's JPG.
pub fn golden_prob(net: &str, row: usize) -> f64 {
    golden_meta()[format!("{net}_probs")][row][1]
        .as_f64()
        .expect("a probability")
}

/// The golden input batch `[3, 1, 256, 256]` of `net` (`attn` or `noattn`: row 1, the
/// noise, differs between them).
pub fn golden_input(net: &str) -> tch::Tensor {
    let io = tch::Tensor::read_safetensors(golden().join(format!("{net}_io.safetensors"))).unwrap();
    io.into_iter()
        .find(|(k, _)| k == "input")
        .map(|(_, t)| t)
        .expect("the golden input")
}

/// The bytes of a float32 `.npy` whose header claims `shape`, with `data` after it.
pub fn npy_bytes(shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Writes `t` as a float32 `.npy` at `path`.
pub fn write_npy(path: &std::path::Path, t: &tch::Tensor) {
    t.write_npy(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The counts of a JSON summary under `keys` (`None` where one is not a count).
pub fn counts(summary: &serde_json::Value, keys: &[&str]) -> Vec<Option<u64>> {
    keys.iter().map(|k| summary[*k].as_u64()).collect()
}

/// Runs `flarecast ARGS` and parses its stdout as one JSON value (a summary).
pub fn run_json(args: &[&str]) -> serde_json::Value {
    run_json_in(flarecast(), args)
}

/// [`run_json`] on a command whose environment the caller prepared.
pub fn run_json_in(cmd: assert_cmd::Command, args: &[&str]) -> serde_json::Value {
    let out = run_ok_in(cmd, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "flarecast {args:?}: stdout is not one JSON value ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `verify --json` of the forecasts in `forecasts` against `catalog` as known up to
/// `catalog_end`, with `more` after: its summary.
pub fn verify_json(
    forecasts: &std::path::Path,
    catalog: &std::path::Path,
    catalog_end: &str,
    more: &[&str],
) -> serde_json::Value {
    let s = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_string();
    let (forecasts, catalog) = (s(forecasts), s(catalog));
    let args = [
        "verify",
        "--forecasts",
        &forecasts,
        "--catalog",
        &catalog,
        "--catalog-end",
        catalog_end,
        "--json",
    ];
    run_json(&[&args[..], more].concat())
}

/// Runs `flarecast ARGS` and parses its stdout as JSON lines (a stream of items).
pub fn run_json_lines(args: &[&str]) -> Vec<serde_json::Value> {
    let out = run_ok(args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("flarecast {args:?}: not a JSON line ({e}): {l}"))
        })
        .collect()
}

/// The arguments of `train` of fold 1 of the tiny fold under `root` (see
/// [`write_tiny_fold`]): `arch` (`--attention` or `--no-attention`) in batches of
/// `batch` at 192 px, f32 on the CPU, into `root/out`; the epochs and the rest are the
/// caller's.
pub fn tiny_train_args(root: &std::path::Path, arch: &str, out: &str, batch: &str) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--fold", "1", arch, "--batch-size", batch]
        .iter()
        .chain(&CPU_F32_192)
        .map(|s| s.to_string())
        .collect();
    for (flag, dir) in [
        ("--images", "images"),
        ("--labels", "labels"),
        ("--out", out),
    ] {
        args.push(flag.to_string());
        args.push(root.join(dir).to_str().expect("UTF-8 path").to_string());
    }
    args
}

/// Runs `train` of the standard CNN on the tiny fold under `root` into `root/models`
/// ([`tiny_train_args`], batches of 8) with `more` after, for at most five minutes.
pub fn tiny_train(root: &std::path::Path, more: &[&str]) -> std::process::Output {
    flarecast()
        .args(tiny_train_args(root, "--no-attention", "models", "8"))
        .args(more)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap()
}

/// A tiny fold 1 under `root` (`images/`, `labels/`): 256x256 grey disks; every third
/// instance is positive (with `positives`) and carries a bright/dark bipole.
pub fn write_tiny_fold(root: &std::path::Path, n_train: usize, n_val: usize, positives: bool) {
    let images = root.join("images");
    let labels = root.join("labels/simplified_data_labels");
    std::fs::create_dir_all(&labels).unwrap();
    let write_split = |name: &str, n: usize, month: u32| {
        let mut csv = String::from("label,goes_class\n");
        for i in 0..n {
            let target = positives && i % 3 == 0;
            let t = chrono::NaiveDate::from_ymd_opt(2014, month, 1 + (i / 24) as u32)
                .unwrap()
                .and_hms_opt((i % 24) as u32, 0, 0)
                .unwrap();
            let rel = flarecast::instant::Instant::new(t).relative_path("png");
            let path = images.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let img = image::GrayImage::from_fn(256, 256, |x, y| {
                let (dx, dy) = (x as f64 - 128.0, y as f64 - 128.0);
                if dx * dx + dy * dy > 110.0 * 110.0 {
                    return image::Luma([0]);
                }
                let noise = ((x * 7 + y * 13 + i as u32 * 31) % 9) as u8;
                let mut v = 123 + noise;
                if target {
                    let cx = 80.0 + (i % 5) as f64 * 20.0;
                    if (x as f64 - cx).abs() < 8.0 && (y as f64 - 110.0).abs() < 8.0 {
                        v = 250;
                    }
                    if (x as f64 - cx - 16.0).abs() < 8.0 && (y as f64 - 110.0).abs() < 8.0 {
                        v = 5;
                    }
                }
                image::Luma([v])
            });
            img.save(&path).unwrap();
            csv.push_str(&format!("{rel},{}\n", target as u8));
        }
        std::fs::write(labels.join(format!("Fold1_{name}.csv")), csv).unwrap();
    };
    write_split("train", n_train, 4);
    write_split("val", n_val, 1);
}

/// A prediction file of 200 over-confident forecasts (P(FL) from 0.2 to 0.95 while the
/// event rate climbs from 0 to 0.6 with it), as a network trained on balanced epochs
/// gives: the events are spread evenly along the probabilities, no randomness.
pub fn overconfident_predictions(path: &std::path::Path) -> (Vec<f64>, Vec<bool>) {
    let mut text = String::from("timestamp,flare_prob,target\n");
    let (mut probs, mut targets) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let p = 0.2 + 0.75 * i as f64 / 199.0;
        let rate = 0.6 * (p - 0.2) / 0.75;
        let t = ((i * 37) % 100) as f64 / 100.0 < rate;
        text.push_str(&format!("instance{i},{p},{}\n", u8::from(t)));
        probs.push(p);
        targets.push(t);
    }
    std::fs::write(path, text).unwrap();
    (probs, targets)
}

/// `calibrate --json` of `model` on `predictions` into `out`: its summary.
pub fn calibrate(
    model: &std::path::Path,
    predictions: &std::path::Path,
    out: &std::path::Path,
    method: &str,
) -> serde_json::Value {
    let s = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_string();
    let out = run_ok(&[
        "calibrate",
        "--model",
        &s(model),
        "--predictions",
        &s(predictions),
        "--method",
        method,
        "--out",
        &s(out),
        "--json",
    ]);
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

/// A loopback TCP port that refuses connections for as long as this lives: bound, never
/// listened on, so no other test's server (they share this process and bind port 0)
/// can be given it meanwhile.
pub struct RefusedPort {
    fd: libc::c_int,
    pub port: u16,
}

impl RefusedPort {
    pub fn bind() -> RefusedPort {
        // SAFETY: a socket this struct owns, bound to 127.0.0.1:0 and asked its port;
        // the address structs are plain C structs filled here.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let sa = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
            let bound = libc::bind(fd, sa, len) == 0 && libc::getsockname(fd, sa, &mut len) == 0;
            if !bound {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                panic!("bind 127.0.0.1:0: {e}");
            }
            RefusedPort {
                fd,
                port: u16::from_be(addr.sin_port),
            }
        }
    }
}

impl Drop for RefusedPort {
    fn drop(&mut self) {
        // SAFETY: the descriptor is this struct's and closed once.
        unsafe { libc::close(self.fd) };
    }
}
