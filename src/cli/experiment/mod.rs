//! `flarecast experiment run|cell|status|report`: a grid of training runs here or on a
//! SLURM cluster, and the paper's table of it. One file per subcommand: `run` (the grid,
//! and `cell`, what its executors start), `status`, `report` (the tables).

mod report;
mod run;
mod status;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Run (or resume) the grid: one train + evaluate per (network, seed, fold).
    Run(run::RunArgs),
    /// Run one cell of a recorded grid (what the executors start).
    Cell(run::CellArgs),
    /// Every cell's state, from the files.
    Status(status::StatusArgs),
    /// The paper's table: per-fold scores, mean +- std, location analysis, bar chart.
    Report(report::ReportArgs),
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Sub::Run(a) => run::run_grid(a),
        Sub::Cell(a) => run::run_cell(a),
        Sub::Status(a) => status::status(a),
        Sub::Report(a) => report::report_cmd(a),
    }
}

/// A score to print, or `undefined` where the file cannot define it.
fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("undefined".into(), |x| format!("{x:.decimals$}"))
}
