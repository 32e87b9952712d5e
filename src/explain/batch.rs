//! Explaining a list of inputs: each read by the one input reader (images, JP2s, `.npy`
//! arrays), explained and written in turn, so a fold's worth of maps streams to disk.
//! Integrated Gradients take the path points of consecutive images through the network
//! together ([`integrated_stream`]), as captum's `internal_batch_size` does.

use super::integrated::{Attribution, Paths};
use super::{explain, ig_baseline, ig_explanation, names, write_outputs, Explanation, Graph};
use super::{Method, Options};
use crate::model::LoadedModel;
use crate::preprocess::Input;
use anyhow::{bail, Context, Result};
use image::GrayImage;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// What was written for one image.
#[derive(Debug, serde::Serialize)]
pub struct ImageResult {
    pub input: PathBuf,
    /// The instance's index within its file (0 for an image).
    pub index: usize,
    /// P(FL) of the image.
    pub prob: f64,
    /// Integrated Gradients' convergence delta.
    pub delta: Option<f64>,
    /// Overlays, then the panel.
    pub written: Vec<PathBuf>,
    /// What was assumed about the input file (given with its first instance).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Explains `inputs` resized to `im_size` with `method` (the network's own map when
/// `None`), writing under `out`; `done` sees each image's result as it is written (an
/// error from it ends the run). The settings are checked against each input's size.
pub fn explain_images(
    model: &LoadedModel,
    inputs: &[PathBuf],
    im_size: crate::im_size::ImSize,
    method: Option<Method>,
    opts: &Options,
    out: &Path,
    mut done: impl FnMut(&ImageResult) -> Result<()>,
) -> Result<Vec<ImageResult>> {
    if inputs.is_empty() {
        bail!("no input images");
    }
    let method = method.unwrap_or_else(|| Method::default_for(model.net.arch()));
    let stems = names::output_stems(inputs)?;
    // Taken at the first write, so a run refused earlier leaves no folder behind.
    let mut lock = None;
    let mut results = Vec::with_capacity(inputs.len());
    let mut write = |item: Item, exp: &Explanation| -> Result<()> {
        if lock.is_none() {
            lock = Some(crate::fsio::OutputLock::acquire(out, "maps")?);
        }
        let written = write_outputs(out, &item.stem, &item.gray, exp)?;
        let result = ImageResult {
            input: item.path,
            index: item.index,
            prob: exp.prob,
            delta: exp.delta,
            written,
            notes: item.notes,
        };
        done(&result)?;
        results.push(result);
        Ok(())
    };
    let items = read_items(inputs, &stems, im_size, opts, model.vs.device());
    if method == Method::IntegratedGradients {
        integrated_stream(model, opts, im_size.as_i64(), items, |item, exp| {
            write(item, &exp)
        })?;
    } else {
        for item in items {
            let item = item?;
            let exp = explain(model, &item.x, method, opts).with_context(|| item.label.clone())?;
            write(item, &exp)?;
        }
    }
    Ok(results)
}

/// One instance to explain: its input on the model's device and what its outputs need.
pub struct Item {
    pub path: PathBuf,
    pub index: usize,
    /// The instance as the network sees it: [1, 1, H, W].
    pub x: Tensor,
    pub gray: GrayImage,
    /// Its outputs' stem (`{stem}_{index}` for an instance of a stack).
    pub stem: String,
    /// Names it in errors.
    pub label: String,
    pub notes: Vec<String>,
}

/// The instances of `inputs`, read one file at a time as they are asked for.
fn read_items<'a>(
    inputs: &'a [PathBuf],
    stems: &'a [String],
    im_size: crate::im_size::ImSize,
    opts: &'a Options,
    device: tch::Device,
) -> impl Iterator<Item = Result<Item>> + 'a {
    inputs.iter().zip(stems).flat_map(move |(path, stem)| {
        let read = || -> Result<Vec<Result<Item>>> {
            let input = Input::read(path)?;
            let instances = input.instances(im_size.get())?;
            let several = instances.len() > 1;
            let mut notes = input.notes;
            Ok(instances
                .into_iter()
                .map(|inst| {
                    let gray = inst.gray()?;
                    opts.check(gray.height().into(), gray.width().into())?;
                    Ok(Item {
                        path: path.clone(),
                        index: inst.index,
                        x: inst.tensor.unsqueeze(0).to_device(device),
                        gray,
                        stem: if several {
                            format!("{stem}_{}", inst.index)
                        } else {
                            stem.clone()
                        },
                        label: inst.label,
                        notes: std::mem::take(&mut notes),
                    })
                })
                .collect())
        };
        match read() {
            Ok(items) => items,
            Err(e) => vec![Err(e)],
        }
    })
}

/// Integrated Gradients of a stream of images [1, 1, H, W] of side `side`, the path
/// points of consecutive images sharing each forward and backward pass
/// (`Options::points_per_pass` of them); `done` sees each image's explanation, in order,
/// as its last point is taken. Each explanation is the one [`explain`] gives the image
/// alone, up to float rounding.
pub fn integrated_stream<K: Keyed>(
    model: &LoadedModel,
    opts: &Options,
    side: i64,
    images: impl IntoIterator<Item = Result<K>>,
    mut done: impl FnMut(K, Explanation) -> Result<()>,
) -> Result<()> {
    let net = &model.net;
    let rows = opts.points_per_pass(net.arch(), side);
    let mut paths = Paths::new(
        Graph::of(net),
        opts.target.index(),
        opts.rule,
        opts.steps,
        rows,
    )?;
    let mut finished = |batch: Vec<((K, f64), Attribution)>| -> Result<()> {
        for ((key, prob), a) in batch {
            done(key, ig_explanation(prob, a))?;
        }
        Ok(())
    };
    for key in images {
        let queued = key.and_then(|key| {
            let label = key.label();
            let x = key.input().shallow_clone();
            crate::model::check_input(&x).with_context(|| label.clone())?;
            let prob = tch::no_grad(|| net.forward_t(&x, false).flare_prob()).double_value(&[0]);
            let base = ig_baseline(&x, opts.baseline);
            paths
                .push((key, prob), &x, &base)
                .with_context(|| format!("integrated gradients up to {label}"))
        });
        match queued {
            Ok(batch) => finished(batch)?,
            Err(e) => {
                // The images queued before the one refused are written, as they are one
                // at a time; the refusal is what is reported.
                if let Ok(rest) = paths.finish() {
                    let _ = finished(rest);
                }
                return Err(e);
            }
        }
    }
    finished(paths.finish().context("integrated gradients")?)
}

/// What [`integrated_stream`] needs of each image: the input and a name for errors.
pub trait Keyed {
    /// [1, 1, H, W] on the model's device.
    fn input(&self) -> &Tensor;
    fn label(&self) -> String;
}

impl Keyed for Item {
    fn input(&self) -> &Tensor {
        &self.x
    }
    fn label(&self) -> String {
        self.label.clone()
    }
}

impl Keyed for (usize, Tensor) {
    fn input(&self) -> &Tensor {
        &self.1
    }
    fn label(&self) -> String {
        format!("image {}", self.0)
    }
}

/// An instance list with a `timestamp` column of image paths (the reference's plots.csv
/// and prediction files), resolved against the image tree `images`.
pub fn instance_list(csv_path: &Path, images: &Path) -> Result<Vec<PathBuf>> {
    let mut rdr = csv::Reader::from_path(csv_path)
        .with_context(|| format!("reading {}", csv_path.display()))?;
    let headers = rdr.headers()?.clone();
    let col = headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == "timestamp")
        .with_context(|| format!("{}: no `timestamp` column", csv_path.display()))?;
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", csv_path.display(), i + 2))?;
        let ts = rec.get(col).unwrap_or_default();
        let rel = crate::instant::Instant::from_path(ts)
            .map(|(_, tail)| tail.to_string())
            .unwrap_or(ts.to_string());
        crate::tree_path::inside(&rel)
            .with_context(|| format!("{}: line {}: timestamp {ts:?}", csv_path.display(), i + 2))?;
        out.push(images.join(rel));
    }
    Ok(out)
}
