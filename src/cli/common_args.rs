//! Options many commands share, each declared once: `--json`, `--threshold`, the data a
//! fold is read from (`--images`, `--labels`) and the output folder (`--out`). Commands
//! flatten them; one that needs another default or help for `--out` says so with
//! `#[command(mut_arg("out", ...))]`.

use flarecast::metrics::DEFAULT_THRESHOLD;
use std::path::PathBuf;

/// `--json`: what a script reads instead of the text report. A command with one result
/// prints one pretty object at the end; a stream prints one compact object per line;
/// progress, warnings and a stream's summary go to stderr.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct Json {
    /// Print JSON on stdout instead of text (one object for a summary, one line per item
    /// for a stream); progress and warnings stay on stderr.
    #[arg(id = "json", long = "json")]
    pub on: bool,
}

/// `--threshold`: the decision on the raw P(FL) (a calibrated probability never moves it).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Threshold {
    /// Forecast a flare when P(FL) >= threshold.
    #[arg(id = "threshold", long = "threshold", default_value_t = DEFAULT_THRESHOLD)]
    pub value: f64,
}

/// The labelled images a fold is read from.
#[derive(clap::Args, Clone, Debug)]
pub struct Data {
    /// Image tree the labels' paths are relative to.
    #[arg(long, default_value = "data/hmi_jpgs_512")]
    pub images: PathBuf,
    /// Label directory: simplified_data_labels/Fold{K}_{train,val}.csv, and Fold{K}_val.csv
    /// for the location analysis when present.
    #[arg(long, default_value = "data_labels")]
    pub labels: PathBuf,
}

/// `--out`: the folder a command writes into (its default, where it has one, is set by
/// the command with `mut_arg`; without one it is required).
#[derive(clap::Args, Clone, Debug)]
pub struct OutDir {
    /// Output folder.
    #[arg(id = "out", long = "out", value_name = "DIR")]
    pub dir: PathBuf,
}

/// What `#[command(mut_arg("out", |a| out_default(a, "results", "...")))]` makes of
/// `--out` in a command that writes to a default folder.
pub fn out_default(arg: clap::Arg, default: &'static str, help: &'static str) -> clap::Arg {
    arg.required(false).default_value(default).help(help)
}
