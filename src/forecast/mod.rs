//! Forecasts from today's Sun: the newest HMI magnetogram (from Helioviewer, or a local
//! file) through the trained networks, as a record with the prediction window `label`
//! would give the image, in flarecast's JSON and the CCMC Flare Scoreboard formats; once,
//! or every cycle into a folder with an index.
//!
//! - [`record`]: the forecast record and its JSON.
//! - [`ccmc`]: the scoreboard's text and JSON exchange formats.
//! - [`ensemble`]: several checkpoints, each at its own architecture and input size.
//! - [`observed`]: when a local magnetogram was observed.
//! - [`source`]: the newest acceptable image from the Helioviewer API, fetched by id.
//! - [`output`]: the files of a forecast and the index, written atomically.
//! - [`watch`]: one forecast per cycle, skipping images already forecast.

pub mod ccmc;
pub mod ensemble;
pub mod observed;
pub mod output;
pub mod record;
pub mod source;
pub mod watch;

pub use ensemble::Ensemble;
pub use output::{Format, Written};
pub use record::Record;
pub use source::{Origin, Source};

use crate::preprocess::Input;
use anyhow::{Context, Result};
use chrono::NaiveDateTime;
use std::path::Path;

/// A forecast and the input it was made from (a training image, or a preprocessed array).
pub struct Forecast {
    pub record: Record,
    pub input: Input,
}

/// An ensemble with its decision threshold.
pub struct Forecaster {
    pub ensemble: Ensemble,
    pub threshold: f64,
}

impl Forecaster {
    pub fn new(ensemble: Ensemble, threshold: f64) -> Result<Forecaster> {
        crate::setting::check_probability("threshold", threshold)?;
        Ok(Forecaster {
            ensemble,
            threshold,
        })
    }

    /// The forecast from an input observed at `image_time`.
    pub fn forecast(
        &self,
        input: Input,
        image_info: record::ImageInfo,
        issue_time: NaiveDateTime,
    ) -> Result<Forecast> {
        let probs = self.ensemble.predict(&input)?;
        let record = Record::new(
            self.ensemble.infos(),
            issue_time,
            image_info,
            &probs,
            self.threshold,
        );
        Ok(Forecast { record, input })
    }

    /// The forecast from a local input file (JP2, JPG, PNG or `.npy`, read as every
    /// command reads it). Its observation time comes from the file (FITS header or name),
    /// else `image_time`.
    pub fn from_file(
        &self,
        path: &Path,
        image_time: Option<NaiveDateTime>,
        issue_time: NaiveDateTime,
    ) -> Result<Forecast> {
        let input = Input::read(path)?;
        let file_time = observed::observed_at(path)?;
        let time = file_time.or(image_time).with_context(|| {
            format!(
                "cannot tell when {} was observed: neither its header nor its name \
                 (HMI.mYYYY.MM.DD_HH.MM.SS or YYYY_MM_DD__HH_MM_SS) gives the time",
                path.display()
            )
        })?;
        let info = record::ImageInfo {
            time,
            source_id: None,
            id: None,
            file: Some(path.display().to_string()),
        };
        self.forecast(input, info, issue_time)
    }

    /// The forecast from the newest acceptable image at or before `at`.
    pub fn from_source(
        &self,
        source: &Source,
        client: Option<&crate::http::Client>,
        at: NaiveDateTime,
    ) -> Result<Forecast> {
        let image = source.newest(client, at)?;
        self.from_chosen(source, client, image, at)
    }

    /// The forecast from an image [`Source::newest`] chose.
    pub fn from_chosen(
        &self,
        source: &Source,
        client: Option<&crate::http::Client>,
        image: record::ImageInfo,
        at: NaiveDateTime,
    ) -> Result<Forecast> {
        let pixels = source.training_image(client, &image)?;
        self.forecast(pixels, image, at)
    }
}
