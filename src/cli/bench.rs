//! `flarecast bench <target>`: throughput measurements printed as tables, each with the
//! ratio to a stated baseline.

use anyhow::Result;
use clap::Subcommand;
use flarecast::model::{Arch, PrecisionChoice};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Subcommand)]
enum Target {
    /// Model inference and training-step images/s (attention and standard CNN, f32/bf16).
    Model(super::predict::ModelBenchArgs),
    /// Labelling throughput over the full hourly range.
    Label(super::label::LabelBenchArgs),
    /// Download throughput against a local server, by concurrency.
    Download(super::download::DownloadBenchArgs),
    /// JP2 -> JPG conversion files/s, all cores vs one.
    Convert(super::convert::ConvertBenchArgs),
    /// End-to-end training images/s with the real loader vs the model-only step.
    Train(super::train::TrainBenchArgs),
}

pub fn run(args: Args) -> Result<()> {
    match args.target {
        Target::Model(a) => super::predict::bench(a),
        Target::Label(a) => super::label::bench(a),
        Target::Download(a) => super::download::bench(a),
        Target::Convert(a) => super::convert::bench(a),
        Target::Train(a) => super::train::bench(a),
    }
}

/// The options of every benchmark that runs the networks (`bench model`, `bench train`).
#[derive(clap::Args)]
pub struct BenchArgs {
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 256)]
    pub im_size: u32,
    /// Comma-separated: attention, standard.
    #[arg(long, default_value = "attention,standard", value_delimiter = ',')]
    pub arch: Vec<Arch>,
    /// Comma-separated: auto (bf16 where the hardware computes it natively, else f32),
    /// f32, bf16.
    #[arg(long, default_value = "auto", value_delimiter = ',')]
    pub precision: Vec<PrecisionChoice>,
}
