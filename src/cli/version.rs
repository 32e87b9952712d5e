//! `flarecast --version`: the crate version plus what libtorch can use here.

/// Queried only when `--version` is asked for: checking for CUDA loads the driver.
pub fn long() -> String {
    let cuda = match flarecast::device::cuda_runtime::load().absence() {
        Some(why) => format!("not available ({why})"),
        None if tch::Cuda::is_available() => {
            format!("available ({} device(s))", tch::Cuda::device_count())
        }
        None => "not available (0 device(s))".to_string(),
    };
    format!(
        "{}\nlibtorch {}\ncuda: {cuda}\ncudnn: {}\ndistributed: {}",
        env!("CARGO_PKG_VERSION"),
        libtorch_version(),
        if tch::Cuda::cudnn_is_available() {
            "available"
        } else {
            "not available"
        },
        flarecast::distributed::describe(),
    )
}

fn libtorch_version() -> String {
    // The version of the libtorch the binary was linked against, recorded at build time.
    option_env!("FLARECAST_LIBTORCH_VERSION")
        .unwrap_or("unknown")
        .to_string()
}
