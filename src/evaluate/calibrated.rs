//! A prediction file scored raw and through a model's calibration: Brier, BSS and
//! reliability before and after. Here rather than in `calibrate` because `evaluate`
//! reports it for a calibrated model, and `calibrate` already reads prediction files
//! through `evaluate`.

use super::predictions::PredictionFile;
use crate::calibration::Calibration;
use crate::metrics::{self, ReliabilityBin};
use serde::Serialize;
use std::path::PathBuf;

/// Bins of the reliability tables.
pub const BINS: usize = 10;

/// Brier score, BSS and reliability of some probabilities.
#[derive(Clone, Debug, Serialize)]
pub struct Quality {
    pub brier: f64,
    /// None when the file has only one class (no climatology to beat).
    pub bss: Option<f64>,
    pub reliability: Vec<ReliabilityBin>,
}

impl Quality {
    pub fn of(probs: &[f64], targets: &[bool]) -> Quality {
        let events = targets.iter().filter(|&&t| t).count();
        let both = events > 0 && events < targets.len();
        Quality {
            brier: metrics::brier(probs, targets),
            bss: both.then(|| metrics::brier_skill(probs, targets)),
            reliability: metrics::reliability(probs, targets, BINS),
        }
    }
}

/// Raw and calibrated scores of a prediction file. The TSS and HSS2 at the decision
/// threshold are the raw probability's: calibration does not change them.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    pub method: String,
    pub raw: Quality,
    pub calibrated: Quality,
}

/// Compares a file's raw probabilities with their calibration.
pub fn compare(file: &PredictionFile, cal: &Calibration) -> Compared {
    let calibrated: Vec<f64> = file.probs.iter().map(|&p| cal.apply(p)).collect();
    Compared {
        method: cal.method().to_string(),
        raw: Quality::of(&file.probs, &file.targets),
        calibrated: Quality::of(&calibrated, &file.targets),
    }
}

/// The file's probabilities through `cal`, as a prediction file named `name`.
pub fn calibrated_file(file: &PredictionFile, cal: &Calibration, name: &str) -> PredictionFile {
    PredictionFile {
        path: PathBuf::from(name),
        probs: file.probs.iter().map(|&p| cal.apply(p)).collect(),
        ..file.clone()
    }
}
