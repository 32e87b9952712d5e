//! Link flarecast against the libtorch that torch-sys found, so the binary runs without
//! LD_LIBRARY_PATH, and record libtorch_cuda for the binary to open where a driver exists;
//! compile the c10d shim of
//! `src/distributed/` where Gloo's headers exist (cfg `flarecast_c10d`) and the fused
//! inference convolution, training's fused BatchNorm functions and ReLU6 in place of
//! `src/model/fast/` and the one-pass SGD update of `src/train/` (cfg
//! `flarecast_fused_conv`).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(flarecast_c10d)");
    println!("cargo::rustc-check-cfg=cfg(flarecast_fused_conv)");
    println!("cargo:rerun-if-changed=src/distributed/c10d_shim.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/fused_conv.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/bn_pool_relu.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/first_block.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/relu6.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/packed_linear.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/bn_act.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/max_pool2.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/conv_train.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/bn_batch_stats.h");
    println!("cargo:rerun-if-changed=src/train/sgd_update.cpp");
    println!("cargo:rerun-if-changed=src/model/fast/cpu_kernel.h");
    println!("cargo:rerun-if-changed=src/model/fast/batch_norm_args.h");
    println!("cargo:rerun-if-changed=src/shim_error.h");
    println!("cargo:rerun-if-changed=src/shim_openmp.h");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=RUSTC_WORKSPACE_WRAPPER");
    // torch-sys (links = "tch") exports the directory holding libtorch*.so.
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        if let Some(v) = libtorch_version(std::path::Path::new(&lib_dir)) {
            println!("cargo:rustc-env=FLARECAST_LIBTORCH_VERSION={v}");
        }
        let cuda = Path::new(&lib_dir).join("libtorch_cuda.so");
        if cuda.exists() {
            // libtorch_cuda registers the CUDA backend from static initialisers only, so
            // the linker's --as-needed drops it. The binary opens it at start where a
            // driver exists (src/device/cuda_runtime.rs); the test binaries, which use
            // CUDA in-process, link it.
            println!("cargo:rustc-env=FLARECAST_LIBTORCH_CUDA={}", cuda.display());
            println!("cargo:rustc-link-arg-tests=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
        // The C++ shims are the build script's whole cost and independent of each other:
        // compile them side by side (each `cc` build also spreads its own files).
        let lib_dir = Path::new(&lib_dir);
        std::thread::scope(|s| {
            s.spawn(|| build_c10d_shim(lib_dir));
            build_fused_conv(lib_dir);
        });
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

/// The directory holding `gloo/config.h` (Debian's libgloo-dev puts it in /usr/include).
fn gloo_include() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("GLOO_INCLUDE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(["/usr/include", "/usr/local/include"].map(PathBuf::from));
    dirs.into_iter().find(|d| d.join("gloo/config.h").exists())
}

/// Where NCCL can be built in: libtorch_cuda, `nccl.h` (the wheel's nvidia-nccl) and a CUDA
/// toolkit's headers (`crt/host_config.h` is not in the wheels). Returns the include dirs.
fn nccl_includes(lib_dir: &Path) -> Option<Vec<PathBuf>> {
    if !lib_dir.join("libtorch_cuda.so").exists() {
        return None;
    }
    let site = lib_dir.parent()?.parent()?;
    let nccl = [
        site.join("nvidia/nccl/include"),
        PathBuf::from("/usr/include"),
    ]
    .into_iter()
    .find(|d| d.join("nccl.h").exists())?;
    let cuda_home = std::env::var_os("CUDA_HOME").map(PathBuf::from);
    let cuda = cuda_home
        .into_iter()
        .chain([PathBuf::from("/usr/local/cuda")])
        .map(|d| d.join("include"))
        .find(|d| d.join("crt/host_config.h").exists() && d.join("cuda_runtime_api.h").exists())?;
    Some(vec![nccl, cuda])
}

/// C++ shims over libtorch, built against the wheel's headers with the ABI the wheel was
/// built with; `src/` holds the header the shims share (`shim_error.h`).
fn torch_cpp(files: &[&str], torch: &Path) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files(files)
        .include("src")
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        // ATen's parallel_for is an inline template that runs on OpenMP threads only in
        // code compiled with OpenMP; without it every shim's loop ran on one thread.
        .flag("-fopenmp")
        // torch's headers use C++20 bit-field initialisers that g++ accepts in C++17.
        .flag_if_supported("-Wno-c++20-extensions")
        .warnings(false);
    build
}

/// Whether this run of the build script is for clippy, which cargo runs as the
/// workspace's rustc wrapper: clippy only type-checks and links nothing, so the C++ shims
/// are not compiled for it (their cfgs are still set, so the Rust behind them is linted).
/// Its build-script run is not shared with a build's, and compiling the shims twice cost
/// CI about 150 s on 2 cores.
fn lint_only() -> bool {
    std::env::var_os("RUSTC_WORKSPACE_WRAPPER").is_some_and(|w| {
        Path::new(&w)
            .file_stem()
            .is_some_and(|s| s.to_string_lossy().starts_with("clippy-driver"))
    })
}

/// `build.compile(name)`, skipped under clippy (`lint_only`).
fn compile_unless_linting(build: &cc::Build, name: &str) {
    if !lint_only() {
        build.compile(name);
    }
}

/// The shims' symbols live in libtorch_cpu and libc10.
fn link_torch_cpu(lib_dir: &Path) {
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The shims' OpenMP calls go to the runtime libtorch_cpu itself loads (the wheel's
/// libgomp), so their threads and ATen's are one pool, sized by at::set_num_threads.
fn link_torch_openmp() {
    println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
}

/// Compiles `src/model/fast/fused_conv.cpp` (oneDNN's fused inference convolution, found
/// in libtorch's dispatcher at run time), `bn_pool_relu.cpp` (training's BatchNorm, max
/// pooling and ReLU as one autograd function), `first_block.cpp` (the first block at
/// inference in one pass), `bn_act.cpp` (training's BatchNorm, a residual sum and ReLU or
/// ReLU6 as one), `relu6.cpp` (ReLU6 in place without autograd's copy), `max_pool2.cpp`
/// (training's NCHW 2x2 max pooling in vector loops), `conv_train.cpp` (training's
/// convolutions with an AVX2 weight gradient), `packed_linear.cpp` (MKL's linear
/// with a weight packed once) and
/// `src/train/sgd_update.cpp` (plain SGD's update in one pass) against the wheel's headers.
fn build_fused_conv(lib_dir: &Path) {
    let Some(torch) = lib_dir.parent() else {
        return;
    };
    if !torch.join("include/ATen/ATen.h").exists() {
        println!(
            "cargo:warning=libtorch's ATen headers not found under {}: inference runs \
             without the fused convolution",
            torch.display()
        );
        return;
    }
    // One library, its files compiled in parallel. Training's fused BatchNorm + pooling +
    // ReLU and the first block's kernels are loops that do the work, so they are
    // optimised whatever the profile; the convolution's glue costs a second more at -O3.
    let mut build = torch_cpp(
        &[
            "src/model/fast/fused_conv.cpp",
            "src/model/fast/bn_pool_relu.cpp",
            "src/model/fast/first_block.cpp",
            "src/model/fast/relu6.cpp",
            "src/model/fast/packed_linear.cpp",
            "src/model/fast/bn_act.cpp",
            "src/model/fast/max_pool2.cpp",
            "src/model/fast/conv_train.cpp",
            "src/train/sgd_update.cpp",
        ],
        torch,
    );
    build.opt_level(3);
    compile_unless_linting(&build, "flarecast_fast_kernels");
    link_torch_cpu(lib_dir);
    link_torch_openmp();
    println!("cargo:rustc-cfg=flarecast_fused_conv");
}

/// Compiles `src/distributed/c10d_shim.cpp` against the wheel's c10d headers and Gloo's
/// headers; without the latter the build goes on and distributed training is unavailable.
fn build_c10d_shim(lib_dir: &Path) {
    let Some(gloo) = gloo_include() else {
        println!(
            "cargo:warning=Gloo headers (gloo/config.h) not found: distributed training is \
             unavailable in this build; install libgloo-dev (scripts/setup.sh does) or set \
             GLOO_INCLUDE_DIR, and rebuild"
        );
        return;
    };
    let Some(torch) = lib_dir.parent() else {
        return;
    };
    let mut build = torch_cpp(&["src/distributed/c10d_shim.cpp"], torch);
    build
        .include(&gloo)
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag("-DUSE_C10D_GLOO");
    if let Some(dirs) = nccl_includes(lib_dir) {
        build
            .define("USE_C10D_NCCL", None)
            .define("FLARECAST_NCCL", None);
        for d in dirs {
            build.include(d);
        }
    }
    compile_unless_linting(&build, "flarecast_c10d");
    // The shim's symbols live in libtorch_cpu (Gloo inside it) and libc10.
    link_torch_cpu(lib_dir);
    println!("cargo:rustc-cfg=flarecast_c10d");
}
