//! The integration tests, one binary: a module per command or concern, the shared
//! helpers in `common/`. `cargo test --test it explain::` runs one module.
//!
//! All the tests share this process and run on parallel threads, so none changes what
//! the others see: no test sets an environment variable or the working directory here
//! (a `flarecast` run gets them on its `Command`), seeds or sizes libtorch's process-wide
//! generator and thread pool (a seeded input comes from its own generator, as in
//! `train::uniform_input`), or takes a fixed port or path (port 0 and temporary
//! directories; `common::RefusedPort` for a port that must stay closed).

// A shared helper may have no caller yet (`run_json_lines`).
#[allow(dead_code)]
mod common;

mod attention;
mod baseline;
mod bench_epoch;
mod calibrate;
mod catalog;
mod config;
mod convert;
mod cuda;
mod cuda_backend;
mod data;
mod distributed;
mod download;
mod evaluate;
mod experiment;
mod explain;
mod explain_batched;
mod flags;
mod forecast;
mod forecast_cycles;
mod forecast_server;
mod fuzz;
mod hostile;
mod label;
mod label_output;
mod model;
mod networks;
mod one_way;
mod predict;
mod preprocess;
mod recipe;
mod resume;
mod smoke;
mod synth;
mod tensorboard;
mod train;
mod verify;
mod vision;
