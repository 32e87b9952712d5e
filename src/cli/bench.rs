//! `flarecast bench <target>`: throughput measurements printed as tables, each with the
//! ratio to a stated baseline.

use anyhow::Result;
use clap::Subcommand;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Subcommand)]
enum Target {
    /// Model inference and training-step images/s (attention and standard CNN, f32/bf16).
    Model(super::predict::BenchArgs),
    /// Labelling throughput over the full hourly range.
    Label(super::label::BenchArgs),
    /// Download throughput against a local server, by concurrency.
    Download(super::download::BenchArgs),
    /// JP2 -> JPG conversion files/s, all cores vs one.
    Convert(super::convert::BenchArgs),
    /// End-to-end training images/s with the real loader vs the model-only step.
    Train(super::train::BenchArgs),
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
