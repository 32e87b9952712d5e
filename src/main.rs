//! The `flarecast` command line: parses arguments, calls one library function, prints.

mod cli;

fn main() {
    // Before anything asks libtorch about CUDA (device::cuda_runtime).
    flarecast::device::cuda_runtime::load();
    flarecast::process::keep_freed_memory();
    flarecast::process::quiet_exit_on_closed_stdout();
    let cli = cli::parse();
    if let Err(err) = cli::run(cli) {
        // One line a person can act on: the chain of contexts, outermost first.
        eprintln!("flarecast: error: {err:#}");
        std::process::exit(1);
    }
}
