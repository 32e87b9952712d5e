//! The calibration a model's metadata carries: a map from the network's P(flare) to a
//! calibrated probability, and what it was fitted on. It depends on nothing else in the
//! crate, so `model` (which stores it) and `evaluate`, `forecast`, `verify` (which apply
//! it) reach it without reaching `calibrate`, the command that fits and writes it.
//!
//! - [`map`]: Platt scaling and isotonic regression, fitted and applied.

pub mod map;

use anyhow::{Context, Result};
use map::Map;
use serde::{Deserialize, Serialize};

/// A calibration as a model's metadata carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    #[serde(flatten)]
    pub map: Map,
    /// The prediction file it was fitted on (its name) and what that held.
    pub fitted_on: String,
    pub instances: usize,
    pub events: usize,
}

impl Calibration {
    pub fn apply(&self, p: f64) -> f64 {
        self.map.apply(p).clamp(0.0, 1.0)
    }

    pub fn method(&self) -> &'static str {
        self.map.method()
    }

    pub fn check(&self) -> Result<()> {
        self.map.check().context("calibration")
    }
}
