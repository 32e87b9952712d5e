//! Link flarecast against the libtorch that torch-sys found, so the binary runs without
//! LD_LIBRARY_PATH and sees CUDA where a driver exists.
fn main() {
    // torch-sys (links = "tch") exports the directory holding libtorch*.so.
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        // libtorch_cuda registers the CUDA backend from static initialisers only; without
        // --no-as-needed the linker drops it and CUDA is silently absent.
        if let Some(v) = libtorch_version(std::path::Path::new(&lib_dir)) {
            println!("cargo:rustc-env=FLARECAST_LIBTORCH_VERSION={v}");
        }
        if std::path::Path::new(&lib_dir)
            .join("libtorch_cuda.so")
            .exists()
        {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}

/// The version string of the libtorch in `lib_dir`: PyTorch's `torch/version.py`, or the
/// `build-version` file of a standalone libtorch archive.
fn libtorch_version(lib_dir: &std::path::Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                let v = rest.trim_start_matches([' ', '=', ':']).trim();
                let v = v
                    .rsplit('=')
                    .next()
                    .unwrap_or(v)
                    .trim()
                    .trim_matches(['\'', '"']);
                return Some(v.to_string());
            }
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|s| s.trim().to_string())
}
