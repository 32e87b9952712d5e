//! Explaining a list of inputs: each read by the one input reader (images, JP2s, `.npy`
//! arrays), explained and written in turn, so a fold's worth of maps streams to disk.

use super::{explain, names, write_outputs, Method, Options};
use crate::model::LoadedModel;
use crate::preprocess::Input;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

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
    let device = model.vs.device();
    let mut results = Vec::with_capacity(inputs.len());
    for (path, stem) in inputs.iter().zip(&stems) {
        let input = Input::read(path)?;
        let instances = input.instances(im_size.get())?;
        let several = instances.len() > 1;
        let mut notes = input.notes;
        for inst in instances {
            let gray = inst.gray()?;
            opts.check(gray.height().into(), gray.width().into())?;
            let x = inst.tensor.unsqueeze(0).to_device(device);
            let exp = explain(model, &x, method, opts).with_context(|| inst.label.clone())?;
            if lock.is_none() {
                lock = Some(crate::fsio::OutputLock::acquire(out, "maps")?);
            }
            let stem = if several {
                format!("{stem}_{}", inst.index)
            } else {
                stem.clone()
            };
            let written = write_outputs(out, &stem, &gray, &exp)?;
            let result = ImageResult {
                input: path.clone(),
                index: inst.index,
                prob: exp.prob,
                delta: exp.delta,
                written,
                notes: std::mem::take(&mut notes),
            };
            done(&result)?;
            results.push(result);
        }
    }
    Ok(results)
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
