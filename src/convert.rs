//! JP2 tree -> JPG/PNG tree: decode (OpenJPEG), shrink with area averaging, encode, write
//! atomically under the same relative path with the new extension. Files run in parallel;
//! a corrupt input is reported and counted, never fatal to the run.

use crate::bounded::Count;
use crate::fsio::{self, write_atomic};
use crate::jp2;
use crate::preprocess::{self, TRAINING_QUALITY, TRAINING_SIZE};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use image::GrayImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.csv";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Format {
    Jpg,
    Png,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Jpg => "jpg",
            Format::Png => "png",
        }
    }
}

/// Largest output side: twice the full HMI resolution (64 MiB per decoded image).
pub const MAX_SIZE: u32 = 8192;

impl Options {
    /// Output sides a setting may give (0 keeps the decoded size).
    pub const SIZE: Count<u32> = Count::new("size", "output size", 0, MAX_SIZE);
    /// Threads a setting may ask for (0: one per core).
    pub const JOBS: Count<usize> = Count::new("jobs", "jobs", 0, 4096);
    pub const QUALITY: Count<u8> = Count::new("quality", "JPEG quality", 1, 100);
}

#[derive(Clone, Debug)]
pub struct Options {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Output side length (square); 0 keeps the decoded size.
    pub size: u32,
    pub format: Format,
    /// JPEG quality, 1..=100.
    pub quality: u8,
    /// Files converted at once (0 = all cores).
    pub jobs: usize,
    /// Decode at a reduced resolution from the wavelet pyramid before resizing.
    pub fast_reduce: bool,
    /// Convert even when the output is newer than the input.
    pub force: bool,
}

impl Options {
    /// The training images' conversion (512x512 JPG, quality 95, full decode) between
    /// two folders.
    pub fn training(input: PathBuf, output: PathBuf) -> Options {
        Options {
            input,
            output,
            size: TRAINING_SIZE,
            format: Format::Jpg,
            quality: TRAINING_QUALITY,
            jobs: 0,
            fast_reduce: false,
            force: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Converted,
    Skipped,
    Failed,
}

/// One manifest line per input file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub input: String,
    pub output: String,
    pub status: Status,
    /// From the JP2's FITS header (any case of the tag).
    pub t_obs: String,
    pub date_obs: String,
    /// Decoded size of the input (empty for skipped files).
    pub width: String,
    pub height: String,
    pub error: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub found: usize,
    pub converted: usize,
    pub skipped: usize,
    pub failed: usize,
    pub elapsed_s: f64,
    pub files_per_s: f64,
    pub manifest: String,
    /// Up to 10 failures: (input, reason).
    pub failures: Vec<(String, String)>,
}

/// All `.jp2` files under `root` (any case of the extension), sorted; temporary and
/// hidden files are left out.
pub fn list_jp2(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            if e.file_type()?.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("jp2"))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Removes temporary files an interrupted run left in the output tree.
fn remove_temp_files(dir: &Path) {
    let _ = fsio::remove_stale_temps(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_temp_files(&e.path());
        }
    }
}

/// Converts every JP2 under `opts.input`; writes `manifest.csv` in `opts.output`.
pub fn convert_tree(opts: &Options, progress: &Progress) -> Result<Summary> {
    let started = std::time::Instant::now();
    if !opts.input.is_dir() {
        bail!("input folder {} does not exist", opts.input.display());
    }
    Options::SIZE.check(opts.size)?;
    Options::JOBS.check(opts.jobs)?;
    if opts.format == Format::Jpg {
        Options::QUALITY.check(opts.quality)?;
    }
    let files = list_jp2(&opts.input)?;
    std::fs::create_dir_all(&opts.output)
        .with_context(|| format!("cannot create {}", opts.output.display()))?;
    remove_temp_files(&opts.output);
    let bar = progress.bar(
        files.len() as u64,
        "convert {bar:40} {pos}/{len} files {per_sec} (eta {eta})",
    );
    let jobs = if opts.jobs == 0 {
        crate::hardware::cores()
    } else {
        opts.jobs
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .context("cannot start worker threads")?;
    let rows: Vec<Row> = pool.install(|| {
        files
            .par_iter()
            .map(|f| {
                let row = convert_one(opts, f);
                bar.inc(1);
                row
            })
            .collect()
    });
    bar.finish_and_clear();
    write_manifest(&opts.output.join(MANIFEST), &rows)?;
    let mut s = Summary {
        found: files.len(),
        manifest: opts.output.join(MANIFEST).display().to_string(),
        ..Default::default()
    };
    for r in &rows {
        match r.status {
            Status::Converted => s.converted += 1,
            Status::Skipped => s.skipped += 1,
            Status::Failed => {
                s.failed += 1;
                if s.failures.len() < 10 {
                    s.failures.push((r.input.clone(), r.error.clone()));
                }
            }
        }
    }
    s.elapsed_s = started.elapsed().as_secs_f64();
    s.files_per_s = s.converted as f64 / s.elapsed_s.max(1e-9);
    Ok(s)
}

/// The output path of an input: same relative path, new extension.
pub fn output_path(opts: &Options, input: &Path) -> PathBuf {
    let rel = input.strip_prefix(&opts.input).unwrap_or(input);
    opts.output.join(rel).with_extension(opts.format.ext())
}

fn convert_one(opts: &Options, input: &Path) -> Row {
    let out = output_path(opts, input);
    let mut row = Row {
        input: input
            .strip_prefix(&opts.input)
            .unwrap_or(input)
            .display()
            .to_string(),
        output: out
            .strip_prefix(&opts.output)
            .unwrap_or(&out)
            .display()
            .to_string(),
        status: Status::Failed,
        t_obs: String::new(),
        date_obs: String::new(),
        width: String::new(),
        height: String::new(),
        error: String::new(),
    };
    if !opts.force && is_up_to_date(input, &out) {
        row.status = Status::Skipped;
        if let Ok(t) = jp2::obs_time_file(input) {
            row.t_obs = t.t_obs.unwrap_or_default();
            row.date_obs = t.date_obs.unwrap_or_default();
        }
        return row;
    }
    match convert_file(input, &out, opts) {
        Ok(info) => {
            row.status = Status::Converted;
            row.t_obs = info.obs.t_obs.unwrap_or_default();
            row.date_obs = info.obs.date_obs.unwrap_or_default();
            row.width = info.width.to_string();
            row.height = info.height.to_string();
        }
        Err(e) => row.error = format!("{e:#}"),
    }
    row
}

fn is_up_to_date(input: &Path, out: &Path) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(input), mtime(out)) {
        (Some(i), Some(o)) => o >= i,
        _ => false,
    }
}

/// What was learnt from one converted input.
pub struct FileInfo {
    pub width: u32,
    pub height: u32,
    pub obs: jp2::ObsTime,
}

/// Decodes `input`, resizes it and writes `output` atomically.
pub fn convert_file(input: &Path, output: &Path, opts: &Options) -> Result<FileInfo> {
    let what = input.display().to_string();
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {what}"))?;
    let obs = jp2::obs_time_bytes(&bytes, &what)?;
    let (encoded, full) = convert_bytes(&bytes, &what, opts)
        .with_context(|| format!("cannot make {}", output.display()))?;
    write_atomic(output, &encoded)?;
    Ok(FileInfo {
        width: full.0,
        height: full.1,
        obs,
    })
}

/// The image file `convert` makes of JP2 bytes (`opts`' size, format, quality and
/// reduction; its paths are not used), and the JP2's full decoded size. `what` names the
/// source in errors.
pub fn convert_bytes(bytes: &[u8], what: &str, opts: &Options) -> Result<(Vec<u8>, (u32, u32))> {
    let (img, full) = preprocess::decode_jp2_sized(bytes, what, opts.size, opts.fast_reduce)?;
    let encoded = encode(&img, opts.format, opts.quality).context("cannot encode the image")?;
    Ok((encoded, full))
}

fn encode(img: &GrayImage, format: Format, quality: u8) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    match format {
        // libjpeg's bytes, as Pillow wrote the training JPGs.
        Format::Jpg => buf = preprocess::encode_gray_jpeg(img, quality),
        Format::Png => {
            let enc = image::codecs::png::PngEncoder::new(&mut buf);
            img.write_with_encoder(enc)?;
        }
    }
    Ok(buf)
}

fn write_manifest(path: &Path, rows: &[Row]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write the manifest: {e}"))?;
    write_atomic(path, &bytes)
}
