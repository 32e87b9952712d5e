//! Conversion throughput (files/s, 4096 -> 512) with every core against a single core,
//! on copies of one real JP2.

use crate::bounded::Count;
use crate::convert::{convert_tree, Format, Options};
use anyhow::{ensure, Context, Result};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Row {
    pub mode: String,
    pub threads: usize,
    pub files: usize,
    pub seconds: f64,
    pub files_per_s: f64,
    /// Throughput relative to the single-core full decode.
    pub ratio: f64,
}

/// Copies a setting may ask for.
pub const FILES: Count<usize> = Count::new("files", "files", 1, 100_000);

/// Converts `files` copies of `jp2` to `size` px JPGs: one core, all cores, and all cores
/// with the reduced-resolution decode.
pub fn run(jp2: &Path, files: usize, size: u32) -> Result<Vec<Row>> {
    FILES.check(files)?;
    let scratch = tempfile::Builder::new()
        .prefix("flarecast-bench-convert")
        .tempdir()
        .context("cannot create a scratch folder")?;
    let input = scratch.path().join("jp2");
    for i in 0..files {
        // Distinct instants 12 minutes apart, named as the downloader names them.
        let t = chrono::NaiveDate::from_ymd_opt(2013, 5, 13)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .context("bench start time")?
            + chrono::Duration::minutes(12 * i as i64);
        let dst = input.join(crate::instant::Instant(t).relative_path("jp2"));
        std::fs::create_dir_all(dst.parent().context("no parent")?)?;
        std::fs::copy(jp2, &dst)
            .with_context(|| format!("cannot copy {} to {}", jp2.display(), dst.display()))?;
    }
    let cores = crate::hardware::cores();
    let mut rows = Vec::new();
    let cases: [(&str, usize, bool, bool); 3] = [
        ("one core, full decode + area", 1, false, true),
        ("all cores, full decode + area", cores, false, false),
        ("all cores, reduced decode", cores, true, false),
    ];
    for (i, (mode, threads, fast, pin)) in cases.into_iter().enumerate() {
        let opts = Options {
            input: input.clone(),
            output: scratch.path().join(format!("out{i}")),
            size,
            format: Format::Jpg,
            quality: 95,
            jobs: threads,
            fast_reduce: fast,
            force: true,
        };
        let s = if pin {
            on_one_core(|| convert_tree(&opts, &crate::progress::Progress::hidden()))?
        } else {
            convert_tree(&opts, &crate::progress::Progress::hidden())?
        };
        ensure!(
            s.converted == files,
            "bench convert ({mode}): {} of {files} converted: {:?}",
            s.converted,
            s.failures
        );
        let fps = files as f64 / s.elapsed_s;
        let base = rows.first().map(|r: &Row| r.files_per_s).unwrap_or(fps);
        rows.push(Row {
            mode: mode.to_string(),
            threads,
            files,
            seconds: s.elapsed_s,
            files_per_s: fps,
            ratio: fps / base,
        });
    }
    Ok(rows)
}

/// Runs `f` on a fresh thread restricted to one CPU. Threads it starts (the rayon pool and
/// OpenJPEG's decoder threads) inherit the restriction, so the work really gets one core.
fn on_one_core<R: Send>(f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_current_thread()?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the single-core benchmark thread panicked"))?
    })
}

#[cfg(target_os = "linux")]
fn pin_current_thread() -> Result<()> {
    // SAFETY: cpu_set_t is plain data; the calls only read/write the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        ensure!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0,
            "sched_getaffinity failed: {}",
            std::io::Error::last_os_error()
        );
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .context("no CPU in the affinity mask")?;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        ensure!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) == 0,
            "sched_setaffinity failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn pin_current_thread() -> Result<()> {
    anyhow::bail!("pinning to one core is only implemented on Linux")
}
