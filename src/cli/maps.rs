//! The model, images and map options `attention` and `explain` share, and their report
//! line per image.

use super::model_args::ModelArgs;
use anyhow::{bail, Result};
use flarecast::explain::{self, ImageResult, Options};
use flarecast::inference::Model;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct MapArgs {
    /// The model, its device, precision, batch size and input size.
    #[command(flatten)]
    pub run: ModelArgs,
    /// Magnetograms (JPG/PNG/JP2) or preprocessed .npy arrays, read as `predict` reads
    /// them.
    pub inputs: Vec<PathBuf>,
    /// Attention estimators drawn: 1 (l1, 1/4 resolution), 2, 3 or all.
    #[arg(long, default_value = "all")]
    pub estimator: String,
    /// Grad-CAM layer for the standard CNN: 5 (conv_block5, 16x16 at 256) or 6 (conv_block6, 2x2).
    #[arg(long, default_value_t = 5, value_parser = Options::GRADCAM_BLOCK.flag())]
    pub gradcam_block: usize,
    /// Grad-CAM's layer by name, for any network: a stage of it (ResNet `layer1`..`layer4`,
    /// VGG16 `features.29` or `features`, AlexNet `features.11` or `features`,
    /// MobileNetV2 `features`; `conv_block5` or `conv_block6` for the paper's). Default:
    /// the last convolutional stage (conv_block5 for the paper's).
    #[arg(long)]
    pub layer: Option<String>,
    /// An instance list with a `timestamp` column of image paths (the reference's
    /// plots.csv), resolved against --images.
    #[arg(long, requires = "images")]
    pub csv: Option<PathBuf>,
    /// Image tree the --csv paths (or, with `explain --pointing`, the label table's) are
    /// relative to.
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[command(flatten)]
    pub json: super::common_args::Json,
}

impl MapArgs {
    /// The model on its device, at its precision and input size.
    pub fn load(&self) -> Result<Model> {
        self.run.settings()?.load(self.run.model()?)
    }

    /// The map options these arguments set (estimators, Grad-CAM layer, batch size); the
    /// rest default.
    pub fn options(&self) -> Result<Options> {
        Ok(Options {
            estimators: explain::parse_estimators(&self.estimator)?,
            gradcam_block: self.gradcam_block,
            layer: self.layer.clone(),
            batch: self.run.batch_size,
            ..Options::default()
        })
    }

    /// The positional images, then those of the --csv list.
    pub fn inputs(&self) -> Result<Vec<PathBuf>> {
        let mut inputs = self.inputs.clone();
        if let (Some(csv), Some(images)) = (&self.csv, &self.images) {
            inputs.extend(explain::instance_list(csv, images)?);
        }
        if inputs.is_empty() {
            bail!("no input images (give IMAGE paths or --csv with --images)");
        }
        Ok(inputs)
    }
}

/// One line per image: its forecast and the files written (its warnings on stderr), or
/// with `json` the result as one line of JSON.
pub fn report(r: &ImageResult, what: &str, json: bool) -> Result<()> {
    for note in &r.notes {
        eprintln!("flarecast: warning: {note}");
    }
    if json {
        return super::print_json_line(&serde_json::json!({
            "input": r.input, "index": r.index, "flare_prob": r.prob, "maps": what,
            "delta": r.delta, "written": r.written,
        }));
    }
    let files: Vec<String> = r.written.iter().map(|p| p.display().to_string()).collect();
    let delta = r
        .delta
        .map(|d| format!(" (convergence delta {d:.3e})"))
        .unwrap_or_default();
    println!(
        "{}: P(FL) {:.4}; {what}{delta} -> {}",
        r.input.display(),
        r.prob,
        files.join(", ")
    );
    Ok(())
}
