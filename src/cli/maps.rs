//! The model, images and map options `attention` and `explain` share, and their report
//! line per image.

use anyhow::{bail, Context, Result};
use flarecast::explain::{self, ImageResult, Options};
use flarecast::model::LoadedModel;
use std::path::PathBuf;
use tch::Device;

#[derive(clap::Args)]
pub struct MapArgs {
    /// Weights: a PyTorch checkpoint (.pth/.pt) or flarecast .safetensors.
    #[arg(long)]
    pub model: PathBuf,
    /// Magnetograms (JPG/PNG/JP2).
    pub inputs: Vec<PathBuf>,
    /// Attention estimators drawn: 1 (l1, 1/4 resolution), 2, 3 or all.
    #[arg(long, default_value = "all")]
    pub estimator: String,
    /// Grad-CAM layer for the standard CNN: 5 (conv_block5, 16x16 at 256) or 6 (conv_block6, 2x2).
    #[arg(long, default_value_t = 5)]
    pub gradcam_block: usize,
    /// Side the images are resized to (default: the model's training size).
    #[arg(long)]
    pub im_size: Option<u32>,
    /// An instance list with a `timestamp` column of image paths (the reference's
    /// plots.csv), resolved against --images.
    #[arg(long, requires = "images")]
    pub csv: Option<PathBuf>,
    /// Image tree the --csv paths (or, with `explain --pointing`, the label table's) are
    /// relative to.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl MapArgs {
    /// The model on its device, and the side images are resized to.
    pub fn load(&self) -> Result<(LoadedModel, u32)> {
        let device: Device = flarecast::device::parse_device(&self.device)?;
        let model = flarecast::model::load_model(&self.model, device)?;
        if let Some(s) = self.im_size {
            flarecast::model::check_im_size(s.into()).context("--im-size")?;
        }
        let im_size = self.im_size.unwrap_or(model.meta.im_size as u32);
        Ok((model, im_size))
    }

    /// The map options these arguments set (estimators, Grad-CAM layer); the rest default.
    pub fn options(&self) -> Result<Options> {
        let estimators = match self.estimator.as_str() {
            "all" => vec![1, 2, 3],
            spec @ ("1" | "2" | "3") => vec![spec.parse()?],
            other => bail!("--estimator must be 1, 2, 3 or all, got {other:?}"),
        };
        Ok(Options {
            estimators,
            gradcam_block: self.gradcam_block,
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

/// One line per image: its forecast and the files written.
pub fn report(r: &ImageResult, what: &str) {
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
}
