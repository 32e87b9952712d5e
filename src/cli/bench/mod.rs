//! `flarecast bench <target>`: throughput measurements printed as tables, each with the
//! ratio to a stated baseline.

mod convert;
mod download;
mod epoch;
mod evaluate;
mod explain;
mod label;
mod model;
mod paper_loop;
mod train;

use anyhow::Result;
use clap::Subcommand;
use flarecast::device::PrecisionChoice;
use flarecast::model::Arch;
use flarecast::text_table::{Col, Table};
use std::path::PathBuf;

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

/// --python of the benches that time PyTorch too; a bench whose Python must hold more
/// says so in its help.
#[derive(clap::Args)]
pub struct Python {
    /// The Python holding torch (default: the virtualenv setup.sh makes).
    #[arg(long)]
    python: Option<PathBuf>,
}

impl Python {
    pub fn path(&self) -> PathBuf {
        self.python
            .clone()
            .unwrap_or_else(flarecast::bench::python::default_python)
    }
}

/// --threads of the benches that time the networks on the CPU.
#[derive(clap::Args)]
pub struct Threads {
    /// Intra-op threads (default: libtorch's choice, one per core).
    #[arg(long, value_parser = flarecast::bench::model::THREADS.flag())]
    threads: Option<i32>,
}

impl Threads {
    /// Sets libtorch's intra-op threads where given, before any work; the number it runs.
    pub fn apply(&self) -> i32 {
        if let Some(t) = self.threads {
            tch::set_num_threads(t);
        }
        tch::get_num_threads()
    }
}

/// The allocator setting flarecast gives itself and the PyTorch it runs
/// (`process::keep_freed_memory_env`), as `NAME=value` words; `None` where the user's own
/// stands.
fn allocator_setting() -> Option<String> {
    let env = flarecast::process::keep_freed_memory_env();
    let set: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    (!set.is_empty()).then(|| set.join(" "))
}

/// The allocator setting both programs ran with.
fn allocator_note() -> String {
    allocator_setting().map_or_else(
        || "the user's own (GLIBC_TUNABLES / MALLOC_*), both programs".into(),
        |set| format!("{set} for both programs"),
    )
}

/// Prints a bench's rows: as JSON with --json, else `head` and a table of `layout`'s
/// columns, a `line` a row.
fn print_rows<R: serde::Serialize, const N: usize>(
    json: bool,
    rows: &[R],
    head: impl FnOnce() -> String,
    (cols, names): ([Col; N], [&str; N]),
    line: impl Fn(&R) -> [String; N],
) -> Result<()> {
    if json {
        return crate::cli::print_json(&rows);
    }
    println!("{}", head());
    let mut t = Table::new(cols, names);
    for r in rows {
        t.row(line(r));
    }
    print!("{t}");
    Ok(())
}
