//! libtorch's CUDA backend, loaded when the process starts on a machine with NVIDIA's
//! driver. libtorch_cuda registers CUDA from its static initialisers and pulls in cuDNN,
//! cuBLAS and the rest: loading it cost about 0.15 s of CPU and 36,000 page faults per
//! process, which every command paid on machines that can never run CUDA. The binary is
//! therefore not linked against it (build.rs); `load` opens it instead, and must run
//! before libtorch is first asked about CUDA, since libtorch looks up its CUDA hooks once.

use std::ffi::CString;
use std::path::Path;
use std::sync::OnceLock;

/// Whether libtorch's CUDA backend is in this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Loaded,
    /// No CUDA driver (libcuda.so.1) on this machine: no CUDA device can exist.
    NoDriver,
    /// A driver, but libtorch_cuda did not load (the loader's reason).
    Failed(String),
}

impl Backend {
    /// Why CUDA is unavailable, in words for an error or `--version`; None when loaded.
    pub fn absence(&self) -> Option<String> {
        match self {
            Backend::Loaded => None,
            Backend::NoDriver => Some("no NVIDIA driver (libcuda.so.1) on this machine".into()),
            Backend::Failed(why) => Some(format!("libtorch_cuda.so did not load: {why}")),
        }
    }
}

/// Opens libtorch_cuda (once) where the CUDA driver library exists. Without the driver no
/// CUDA device can exist, so nothing is loaded and libtorch reports CUDA unavailable, as
/// it would with the backend.
pub fn load() -> &'static Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        if !driver_present() {
            return Backend::NoDriver;
        }
        match open_backend() {
            Ok(()) => Backend::Loaded,
            Err(why) => Backend::Failed(why),
        }
    })
}

/// The driver's user-space library, which every CUDA program loads (libtorch too).
fn driver_present() -> bool {
    open("libcuda.so.1", libc::RTLD_LAZY | libc::RTLD_GLOBAL).is_ok()
}

fn open_backend() -> Result<(), String> {
    // The build's libtorch first (build.rs records it), then the loader's search path.
    let flags = libc::RTLD_NOW | libc::RTLD_GLOBAL;
    let built = option_env!("FLARECAST_LIBTORCH_CUDA").filter(|p| Path::new(p).exists());
    match built {
        Some(path) => open(path, flags),
        None => open("libtorch_cuda.so", flags),
    }
}

fn open(name: &str, flags: libc::c_int) -> Result<(), String> {
    let name = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; the handle is kept for the process's lifetime, as
    // the loader keeps a linked library.
    if !unsafe { libc::dlopen(name.as_ptr(), flags) }.is_null() {
        return Ok(());
    }
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by the loader.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        return Err("unknown reason".into());
    }
    Err(unsafe { std::ffi::CStr::from_ptr(msg) }
        .to_string_lossy()
        .into_owned())
}
