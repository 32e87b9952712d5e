//! The integration tests, one binary: a module per command or concern, the shared
//! helpers in `common/`. `cargo test --test it explain::` runs one module.

// A shared helper may have no caller yet (`run_json_lines`).
#[allow(dead_code)]
mod common;

mod attention;
mod baseline;
mod calibrate;
mod catalog;
mod convert;
mod cuda;
mod data;
mod distributed;
mod download;
mod evaluate;
mod experiment;
mod explain;
mod forecast;
mod forecast_server;
mod fuzz;
mod hostile;
mod label;
mod label_output;
mod model;
mod one_way;
mod predict;
mod preprocess;
mod smoke;
mod synth;
mod train;
mod verify;
