//! Process-wide settings the `flarecast` binary applies once, before any work starts.

/// Keeps memory that libtorch frees inside the process for its next allocation.
///
/// glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
/// `mmap` and returns it to the kernel on `free`. A training step at batch 16 and 256x256
/// allocates and frees activations of up to 268 MB each, so every step faulted in and
/// zeroed gigabytes of new pages: `perf` put a fifth of the step in the kernel's
/// `clear_page`. Served from the heap and never trimmed, the pages are reused from the
/// second step on: the step's system time fell from 6 s to 1.5 s. The price is memory:
/// freed blocks are not handed back, and the heap fragments, so the peak resident size
/// of that step rose from 2.1 GB to 3.3-3.7 GB.
///
/// Settings a user made through glibc's own environment variables are left alone.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !user_set_allocator() {
        // SAFETY: mallopt only changes allocator parameters; it is called before any
        // other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// The same setting as environment variables, for a child process timed against this
/// one (glibc reads them at start); empty where the user set the allocator themselves.
pub fn keep_freed_memory_env() -> Vec<(&'static str, &'static str)> {
    if user_set_allocator() {
        Vec::new()
    } else {
        vec![
            ("MALLOC_MMAP_MAX_", "0"),
            ("MALLOC_TRIM_THRESHOLD_", "2147483647"),
        ]
    }
}

fn user_set_allocator() -> bool {
    [
        "GLIBC_TUNABLES",
        "MALLOC_MMAP_MAX_",
        "MALLOC_TRIM_THRESHOLD_",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// Ends the process quietly when the reader of stdout has gone away (`flarecast ... |
/// head`), with the status a shell reports for a command stopped by SIGPIPE (141),
/// instead of a panic message. The signal itself stays ignored, as Rust sets it: network
/// writes that meet a closed connection must come back as errors, not end the process.
pub fn quiet_exit_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        // `print!`'s panic on a failed write; os error 32 is EPIPE.
        if message.starts_with("failed printing to stdout") && message.contains("os error 32") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}
