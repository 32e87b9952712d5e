//! `flarecast bench <target>`: throughput measurements printed as tables, each with the
//! ratio to a stated baseline.

mod convert;
mod download;
mod epoch;
mod evaluate;
mod explain;
mod label;
mod model;
mod train;

use anyhow::Result;
use clap::Subcommand;
use flarecast::device::PrecisionChoice;
use flarecast::model::Arch;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Subcommand)]
enum Target {
    /// Model inference and training-step images/s (any network, f32/bf16).
    Model(model::Args),
    /// Labelling throughput over the full hourly range.
    Label(label::Args),
    /// Download throughput against a local server, by concurrency.
    Download(download::Args),
    /// JP2 -> JPG conversion files/s, all cores vs one.
    Convert(convert::Args),
    /// End-to-end training images/s with the real loader vs the model-only step.
    Train(train::Args),
    /// One training epoch end to end against the paper's PyTorch loop, side by side.
    Epoch(epoch::Args),
    /// A validation quarter's inference against the tuned PyTorch loop, side by side.
    Evaluate(evaluate::Args),
    /// Integrated Gradients over many images against captum, side by side.
    Explain(explain::Args),
}

pub fn run(args: Args) -> Result<()> {
    match args.target {
        Target::Model(a) => model::run(a),
        Target::Label(a) => label::run(a),
        Target::Download(a) => download::run(a),
        Target::Convert(a) => convert::run(a),
        Target::Train(a) => train::run(a),
        Target::Epoch(a) => epoch::run(a),
        Target::Evaluate(a) => evaluate::run(a),
        Target::Explain(a) => explain::run(a),
    }
}

/// The options of every benchmark that runs the networks (`bench model`, `bench train`).
#[derive(clap::Args)]
pub struct NetArgs {
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 16, value_parser = flarecast::recipe::Recipe::BATCH_SIZE.flag())]
    pub batch_size: usize,
    /// Side of the square input (192..=2048).
    #[arg(long, default_value_t = flarecast::im_size::ImSize::PAPER.get())]
    pub im_size: u32,
    /// Comma-separated networks: attention, standard, alexnet, vgg16, resnet18, resnet34,
    /// resnet50, mobilenet_v2.
    #[arg(long, default_value = "attention,standard", value_delimiter = ',')]
    pub arch: Vec<Arch>,
    /// Comma-separated: auto (bf16 where the hardware computes it natively and faster,
    /// else f32), f32, bf16.
    #[arg(long, default_value = "auto", value_delimiter = ',')]
    pub precision: Vec<PrecisionChoice>,
}
