//! The binary opens libtorch's CUDA backend at start only where NVIDIA's driver library
//! exists (src/device/cuda_runtime.rs): without it every command starts without loading
//! cuDNN and cuBLAS, and a CUDA device asked for is refused naming the missing driver;
//! with a driver library on the loader's path the backend loads.

use crate::common;
use flarecast::device::cuda_runtime::{self, Backend};

fn version(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.arg("--version").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The CUDA line of `--version`.
fn cuda_line(text: &str) -> String {
    text.lines()
        .find(|l| l.starts_with("cuda:"))
        .unwrap_or_else(|| panic!("no cuda line in {text}"))
        .to_string()
}

/// Without a driver: `--version` and a CUDA device asked for name the missing driver.
/// With one (a GPU machine): the backend is loaded and `--version` counts the devices.
#[test]
fn cuda_is_refused_naming_a_missing_driver() {
    let text = version(&mut common::flarecast());
    match cuda_runtime::load() {
        Backend::NoDriver => {}
        Backend::Loaded => {
            let want = if tch::Cuda::is_available() {
                format!("cuda: available ({} device(s))", tch::Cuda::device_count())
            } else {
                "cuda: not available (0 device(s))".to_string()
            };
            assert_eq!(cuda_line(&text), want);
            return;
        }
        Backend::Failed(why) => panic!("a CUDA driver, but libtorch_cuda did not load: {why}"),
    }
    assert_eq!(
        cuda_line(&text),
        "cuda: not available (no NVIDIA driver (libcuda.so.1) on this machine)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = common::flarecast()
        .args(["predict", "--device", "cuda", "--model"])
        .arg(dir.path().join("m.pth"))
        .arg(dir.path().join("x.jpg"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("\"cuda\" requested but CUDA is not available: no NVIDIA driver"),
        "{err}"
    );
}

/// A stand-in libcuda.so.1 (no GPU behind it) on LD_LIBRARY_PATH: the binary takes it for
/// a driver and opens libtorch_cuda, which then finds no device.
#[test]
fn with_a_driver_library_the_backend_loads() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("stub.c");
    std::fs::write(
        &src,
        "int cuDriverGetVersion(int *v) { *v = 0; return 999; }\n",
    )
    .unwrap();
    let lib = dir.path().join("libcuda.so.1");
    let cc = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("a C compiler (cc), as the build uses");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let path = match std::env::var_os("LD_LIBRARY_PATH") {
        Some(old) => {
            let mut p = dir.path().as_os_str().to_owned();
            p.push(":");
            p.push(old);
            p
        }
        None => dir.path().as_os_str().to_owned(),
    };
    let text = version(common::flarecast().env("LD_LIBRARY_PATH", path));
    assert_eq!(
        cuda_line(&text),
        "cuda: not available (0 device(s))",
        "{text}"
    );
}
