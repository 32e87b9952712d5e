//! Downloading HMI magnetogram JP2s from the Helioviewer API v2: resumable, bounded
//! concurrency with a request-rate cap, retries, atomic writes, a manifest per run.

pub mod api;
pub mod download;
pub mod manifest;

pub use download::{download, plan, Options, Plan, Summary};

/// Helioviewer source id of SDO/HMI line-of-sight magnetograms.
pub const HMI_MAGNETOGRAM: u32 = 19;
