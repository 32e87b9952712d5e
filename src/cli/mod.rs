//! Subcommands. Each file holds one subcommand's arguments and its thin driver.

mod attention;
mod bench;
mod calibrate;
mod common_args;
pub(crate) mod config_file;
mod convert;
mod convert_weights;
mod download;
mod evaluate;
mod experiment;
mod explain;
mod flag_value;
mod forecast;
mod group_args;
mod label;
mod maps;
mod model_args;
mod predict;
mod synth;
mod train;
mod verify;
mod version;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use flarecast::progress::Progress;
use std::io::IsTerminal;

#[derive(Parser)]
#[command(
    name = "flarecast",
    about = "Full-disk solar flare forecasting (>= M1.0 in 24 h) from HMI magnetograms",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Print the version, the libtorch version and the CUDA/cuDNN devices it sees.
    #[arg(short = 'V', long, global = false)]
    version: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Download HMI magnetogram JP2s (the default, or `download images`) or the GOES flare
    /// catalogue (`download catalog`).
    Download(download::Args),
    /// Convert a JP2 tree to JPG/PNG at a smaller size (area averaging).
    Convert(convert::Args),
    /// Label hourly instances from a GOES flare catalogue; write the 4 quarterly folds.
    Label(label::Args),
    /// Train the attention or standard CNN on one fold.
    #[command(after_long_help = train::DIST_HELP)]
    Train(train::Args),
    /// Score a model or prediction files: TSS, HSS2, Brier, ROC, location analysis, plots.
    Evaluate(evaluate::Args),
    /// A grid of training runs (networks x seeds x folds) here or on SLURM, and the paper's table.
    Experiment(experiment::Args),
    /// Forecast probabilities for images or preprocessed arrays.
    Predict(predict::Args),
    /// Forecast P(>= M1.0 flare in 24 h) from the newest HMI magnetogram (Helioviewer or a file).
    Forecast(forecast::Args),
    /// Score forecasts against a flare catalogue: outcomes, pending forecasts, TSS, plots.
    Verify(verify::Args),
    /// Fit a probability calibration on a prediction file into a new weights file.
    Calibrate(calibrate::Args),
    /// Attention maps (or Grad-CAM for the standard CNN) overlaid on magnetograms.
    Attention(attention::Args),
    /// Explain forecasts: Integrated Gradients, (Guided) Grad-CAM, occlusion, attention.
    Explain(explain::Args),
    /// Convert weights between PyTorch checkpoints (.pth/.pt) and flarecast safetensors.
    ConvertWeights(convert_weights::Args),
    /// Write a synthetic magnetogram archive and flare catalogue.
    Synth(synth::Args),
    /// Throughput benchmarks.
    Bench(bench::Args),
}

/// The command line, or the process ends: a refused flag value as one line and exit 1
/// (as a setting the library refuses), any other usage error as clap reports it.
pub fn parse() -> Cli {
    // `--config FILE` of `train` and `experiment run`: the file's flags come first, so the
    // command line's override them.
    let args = match config_file::expand_and_resolve(&Cli::command(), std::env::args_os().collect())
    {
        Ok(args) => args,
        Err(err) => {
            eprintln!("flarecast: error: {err:#}");
            std::process::exit(1)
        }
    };
    match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => match flag_value::refused(&err) {
            Some(line) => {
                eprintln!("flarecast: error: {line}");
                std::process::exit(1)
            }
            None => err.exit(),
        },
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        // No subcommand means --version (clap shows the help when nothing is given).
        println!("flarecast {}", version::long());
        return Ok(());
    };
    let result = match command {
        Command::Download(a) => download::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Label(a) => label::run(a),
        Command::Train(a) => train::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Experiment(a) => experiment::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Forecast(a) => forecast::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Attention(a) => attention::run(a),
        Command::Explain(a) => explain::run(a),
        Command::ConvertWeights(a) => convert_weights::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Bench(a) => bench::run(a),
    };
    result.map_err(name_flag)
}

/// Progress on stderr while a person watches: on a terminal, and not under `--json`.
fn progress(json: bool) -> Progress {
    Progress::new(!json && std::io::stderr().is_terminal())
}

/// Names the flag behind a setting the library refused: `--im-size: image size 128 ...`.
fn name_flag(err: anyhow::Error) -> anyhow::Error {
    match flarecast::setting::find(&err) {
        Some(bad) => {
            let flag = format!("--{}", bad.setting.replace('_', "-"));
            err.context(flag)
        }
        None => err,
    }
}

/// "from FIRST to LAST", with "-" for an end that is not known.
fn span(first: &Option<String>, last: &Option<String>) -> String {
    let end = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
    format!("from {} to {}", end(first), end(last))
}

/// Prints `value` as indented JSON on stdout: what `--json` gives a script for a summary
/// (one object per run).
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `value` as one line of JSON on stdout: what `--json` gives a script for each
/// item of a stream (JSON lines: predictions, forecast cycles).
fn print_json_line(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
