//! What `bench epoch` and `bench evaluate` share: their flags, the setting and the
//! synthetic fold made of them, the lines heading their output, their JSON and their
//! table.

use anyhow::{bail, Result};
use flarecast::bench::fold::{self, FoldSpec, SynthFold};
use flarecast::bench::paper_loop::{self, Row, RowPrecision};
use flarecast::device::Chosen;
use flarecast::progress::Progress;
use flarecast::text_table::{
    Col::{self, Left, Right},
    Table,
};
use std::path::PathBuf;

/// The flags of a bench of flarecast against the paper's PyTorch loop. Each command
/// gives --instances and --rounds their defaults and help, and --precision its help.
#[derive(clap::Args)]
#[command(mut_arg("batch_size", |a| a.default_value("128")))]
#[command(mut_arg("arch", |a| a.default_value("attention").help(
    "Comma-separated: attention, standard (the paper's two networks, which its PyTorch loop has)")))]
#[command(mut_arg("im_size", |a| a.help(
    "Side of the square input (192..=383, where the paper's PyTorch networks run)")))]
#[command(mut_arg("precision", |a| a.default_value("f32,auto")))]
pub struct LoopArgs {
    #[command(flatten)]
    pub net: super::NetArgs,
    #[arg(long, required = false, value_parser = fold::INSTANCES.flag())]
    pub instances: usize,
    #[arg(long, required = false, value_parser = paper_loop::ROUNDS.flag())]
    pub rounds: usize,
    /// Where the synthetic fold is made and kept (its archive/ and labels/ are replaced
    /// when made for another size), so a later run of the same size reuses its images
    /// (default: a temporary folder, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
}

impl LoopArgs {
    /// The rows both programs run (on the CPU only, where the PyTorch loop runs; `bench`
    /// names the command), and each precision as chosen.
    pub fn programs(
        &self,
        bench: &str,
        python: PathBuf,
    ) -> Result<(paper_loop::Config, Vec<Chosen>)> {
        let net = &self.net;
        let device = flarecast::device::parse_device(&net.device)?;
        if device != tch::Device::Cpu {
            bail!("--device {}: bench {bench} compares on the CPU, where the PyTorch loop runs; give --device cpu", net.device);
        }
        // One row per distinct choice, not per distinct precision: `f32` and `auto` are two
        // rows (the paper's loop and the tuned one) even where auto resolves to f32.
        let mut choices = Vec::new();
        for &c in &net.precision {
            if !choices.contains(&c) {
                choices.push(c);
            }
        }
        let chosen: Vec<Chosen> = choices
            .iter()
            .map(|&c| flarecast::device::choose_precision(c, device))
            .collect();
        let programs = paper_loop::Config {
            exe: std::env::current_exe()?,
            python,
            device: net.device.clone(),
            batch_size: net.batch_size,
            im_size: flarecast::im_size::ImSize::of_setting(net.im_size.into())?,
            archs: net.arch.clone(),
            precisions: choices
                .iter()
                .zip(&chosen)
                .map(|(&choice, c)| RowPrecision {
                    choice,
                    precision: c.precision,
                })
                .collect(),
            rounds: self.rounds,
        };
        Ok((programs, chosen))
    }

    /// Checks the Python, then makes the fold `spec` gives for --instances.
    pub fn start(
        &self,
        bench: &str,
        programs: &paper_loop::Config,
        spec: fn(usize) -> FoldSpec,
        progress: &Progress,
    ) -> Result<Run> {
        let torch = flarecast::bench::python::torch_version(&programs.python)?;
        let (work, tmp) = match &self.work {
            Some(dir) => (dir.clone(), None),
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix(&format!("flarecast-bench-{bench}-fold"))
                    .tempdir()?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let fold = fold::make_fold(&work, &spec(self.instances), progress)?;
        Ok(Run {
            torch,
            work,
            fold,
            processor: flarecast::hardware::cpu_model(),
            cores: flarecast::hardware::cores(),
            _tmp: tmp,
        })
    }
}

/// A checked setting's run: the torch the Python holds, and the synthetic fold made in
/// --work (or a temporary folder, removed with this).
pub struct Run {
    pub torch: String,
    pub work: PathBuf,
    pub fold: SynthFold,
    pub processor: String,
    pub cores: usize,
    _tmp: Option<tempfile::TempDir>,
}

impl Run {
    /// The first line: the command, the processor and the setting, `each` saying what
    /// a program runs.
    pub fn print_head(&self, bench: &str, each: &str, programs: &paper_loop::Config) {
        println!(
            "bench {bench}: {}, {} cores, {} threads; batch {} at {}, {each}{} round(s), medians of wall time from start to exit",
            self.processor,
            self.cores,
            tch::get_num_threads(),
            programs.batch_size,
            programs.im_size,
            programs.rounds
        );
    }

    /// The line after the fold's: the precisions and the PyTorch run.
    pub fn print_precisions(&self, chosen: &[Chosen], programs: &paper_loop::Config) {
        println!(
            "precision: {}; PyTorch {} ({})",
            flarecast::device::describe_precisions(chosen),
            self.torch,
            programs.python.display()
        );
    }

    /// The `--json` report of `rows`.
    pub fn report(
        &self,
        programs: &paper_loop::Config,
        rows: &impl serde::Serialize,
    ) -> serde_json::Value {
        serde_json::json!({
            "processor": self.processor,
            "torch": self.torch,
            "cores": self.cores,
            "threads": tch::get_num_threads(),
            "batch_size": programs.batch_size,
            "im_size": programs.im_size.get(),
            "rounds": programs.rounds,
            "fold": self.fold,
            "rows": rows,
        })
    }
}

/// The table of `rows`: each row's flarecast line, then its PyTorch line, the program
/// column `program` wide; the columns `more` after those both benches print take each
/// row's `extra` cells on its flarecast line.
pub fn table<'a, const N: usize>(
    program: usize,
    more: &[(Col, &str)],
    rows: impl IntoIterator<Item = (&'a Row, Vec<String>)>,
) -> Table<N> {
    let cols = [
        Left(12),
        Left(5),
        Left(program),
        Right(7),
        Right(9),
        Right(9),
        Right(9),
        Right(9),
        Right(14),
    ];
    let heads = [
        "arch",
        "prec",
        "program",
        "images",
        "seconds",
        "images/s",
        "loop s",
        "peak RSS",
        "flarecast/pt",
    ];
    let mut t = Table::new(
        array(cols.into_iter().chain(more.iter().map(|m| m.0))),
        array(heads.into_iter().chain(more.iter().map(|m| m.1))),
    );
    for (r, extra) in rows {
        for (k, p) in [&r.flarecast, &r.torch].into_iter().enumerate() {
            let first = k == 0;
            let only_first = |s: String| if first { s } else { String::new() };
            let cells = [
                only_first(r.arch.to_string()),
                p.precision.to_string(),
                p.program.clone(),
                p.images.to_string(),
                format!("{:.1}", p.median_seconds),
                format!("{:.2}", p.images_per_s),
                p.loop_seconds.map_or("-".into(), |s| format!("{s:.1}")),
                format!("{:.2} GiB", p.peak_rss_bytes as f64 / (1u64 << 30) as f64),
                only_first(format!("{:.2}x {:.2}x mem", r.speedup, r.memory_ratio)),
            ];
            t.row(array(
                cells
                    .into_iter()
                    .chain(extra.iter().cloned().map(only_first)),
            ));
        }
    }
    t
}

/// The first `N` items (there are that many: a column per heading, a cell per column).
fn array<T, const N: usize>(items: impl IntoIterator<Item = T>) -> [T; N] {
    let mut items = items.into_iter();
    std::array::from_fn(|_| items.next().expect("a cell for every column"))
}
