//! The model-running options of every command that runs a network (predict, evaluate,
//! forecast, explain, attention): defined once, so their names, defaults, help and
//! checks are the same everywhere. The checks themselves are the library's
//! (`inference::Settings`).

use anyhow::Result;
use flarecast::device::PrecisionChoice;
use flarecast::im_size::ImSize;
use flarecast::inference::{Settings, BATCH_SIZE, DEFAULT_BATCH_SIZE};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Weights: a PyTorch checkpoint (.pth/.pt; the paper's attn_fold{1..4}.pth load as
    /// they are) or flarecast .safetensors. `forecast` takes several: an ensemble.
    #[arg(id = "model", long = "model", value_name = "MODEL")]
    pub models: Vec<PathBuf>,
    /// cpu, cuda, cuda:N or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// f32 (the reference's numbers), bf16, or auto (bf16 where the hardware computes it
    /// natively and faster than f32, else f32).
    #[arg(long, default_value = "f32")]
    pub precision: PrecisionChoice,
    /// Images per forward pass (for explain: path points, occluded copies).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, visible_alias = "batch", value_parser = BATCH_SIZE.flag())]
    pub batch_size: usize,
    /// Side the images are resized to (default: the size the model was trained at, 256
    /// for PyTorch checkpoints).
    #[arg(long)]
    pub im_size: Option<u32>,
}

impl ModelArgs {
    /// The library's settings these options give (an input side outside the networks'
    /// range is refused here, naming `--im-size`).
    pub fn settings(&self) -> Result<Settings> {
        Ok(Settings {
            device: self.device.clone(),
            precision: self.precision,
            batch_size: self.batch_size,
            im_size: self
                .im_size
                .map(|s| ImSize::of_setting(s.into()))
                .transpose()?,
        })
    }

    /// The one model of a command that runs one (clap has refused a second `--model`).
    pub fn model(&self) -> Result<&Path> {
        match self.models.as_slice() {
            [m] => Ok(m),
            _ => Err(flarecast::setting::bad(
                "model",
                format!("one model is run here, {} given", self.models.len()),
            )),
        }
    }
}

/// What `#[command(mut_arg("model", one_model))]` makes of `--model` where a command
/// runs exactly one network.
pub fn one_model(arg: clap::Arg) -> clap::Arg {
    arg.required(true).action(clap::ArgAction::Set)
}

/// `--model` where a command runs an ensemble (repeat it).
pub fn some_models(arg: clap::Arg) -> clap::Arg {
    arg.required(true)
}

/// ", trained in bf16" where the checkpoint says which precision it was trained in.
pub fn trained_in(model: &flarecast::model::LoadedModel) -> String {
    model
        .meta
        .precision
        .map(|p| format!(", trained in {}", p.name()))
        .unwrap_or_default()
}
