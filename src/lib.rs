//! flarecast: full-disk solar flare forecasting (>= M1.0 within 24 h) from HMI
//! magnetograms with the attention-based CNN of Pandey et al., on libtorch.
//!
//! Each stage of the pipeline is one module; the `flarecast` binary is a thin clap layer.

pub mod bench;
pub mod bounded;
pub mod calibrate;
pub mod calibration;
pub mod catalog;
pub mod convert;
pub mod data;
pub mod device;
pub mod distributed;
pub mod evaluate;
pub mod experiment;
pub mod explain;
pub mod forecast;
pub mod fsio;
pub mod hardware;
pub mod helioviewer;
pub mod http;
pub mod im_size;
pub mod inference;
pub mod instant;
pub mod jp2;
pub mod label;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod preprocess;
pub mod process;
pub mod progress;
pub mod recipe;
pub mod setting;
pub mod synth;
pub mod tensorboard;
#[doc(hidden)]
pub mod testing;
pub mod text_table;
pub mod train;
pub mod tree_path;
pub mod verify;
