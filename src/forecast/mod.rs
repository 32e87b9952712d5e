//! Forecasts from today's Sun: the newest HMI magnetogram (from Helioviewer, or a local
//! file) through the trained networks, as a record whose prediction window is the 24
//! hours after the issue time (or, for replays, the window `label` gives the image), in
//! flarecast's JSON and the CCMC Flare Scoreboard formats; once, or every cycle into a
//! folder with an index.
//!
//! - [`record`]: the forecast record and its JSON.
//! - [`ccmc`]: the scoreboard's text and JSON exchange formats.
//! - [`ensemble`]: several checkpoints, each at its own architecture and input size.
//! - [`observed`]: when a local magnetogram was observed.
//! - [`source`]: the newest acceptable image from the Helioviewer API, fetched by id.
//! - [`output`]: the files of a forecast and the index, written atomically.
//! - [`watch`]: one forecast per cycle, each cycle within its deadline, never twice.

pub mod ccmc;
pub mod ensemble;
pub mod observed;
pub mod output;
pub mod record;
pub mod source;
pub mod watch;

pub use ensemble::Ensemble;
pub use output::{Format, Written};
pub use record::{Record, WindowRule};
pub use source::{Origin, Source};

use crate::preprocess::Input;
use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use std::path::Path;

/// A forecast and the input it was made from (a training image, or a preprocessed array).
pub struct Forecast {
    pub record: Record,
    pub input: Input,
}

/// An ensemble with its decision threshold and window rule.
pub struct Forecaster {
    pub ensemble: Ensemble,
    pub threshold: f64,
    pub window_rule: WindowRule,
}

impl Forecaster {
    pub fn new(ensemble: Ensemble, threshold: f64) -> Result<Forecaster> {
        crate::setting::check_probability("threshold", threshold)?;
        Ok(Forecaster {
            ensemble,
            threshold,
            window_rule: WindowRule::IssueTime,
        })
    }

    /// The same forecaster with windows by `rule`.
    pub fn with_window_rule(mut self, rule: WindowRule) -> Forecaster {
        self.window_rule = rule;
        self
    }

    /// The forecast from an input observed at `image_time`.
    pub fn forecast(
        &self,
        input: Input,
        image_info: record::ImageInfo,
        issue_time: NaiveDateTime,
    ) -> Result<Forecast> {
        if image_info.time > issue_time {
            bail!(
                "the image was observed at {}, after the issue time {}: a forecast can \
                 only use images from before it is issued",
                record::fmt_utc(image_info.time),
                record::fmt_utc(issue_time)
            );
        }
        let raw = self.ensemble.predict(&input)?;
        let calibrated = self.ensemble.calibrate(&raw);
        let record = Record::calibrated(
            self.ensemble.infos(),
            issue_time,
            image_info,
            &raw,
            calibrated.as_deref(),
            self.threshold,
            self.window_rule,
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
        fetch: &mut source::Fetch,
        at: NaiveDateTime,
    ) -> Result<Forecast> {
        let image = source.newest(fetch, at)?;
        self.from_chosen(source, fetch, image, at)
    }

    /// The forecast from an image [`Source::newest`] chose.
    pub fn from_chosen(
        &self,
        source: &Source,
        fetch: &mut source::Fetch,
        image: record::ImageInfo,
        at: NaiveDateTime,
    ) -> Result<Forecast> {
        let input = source.training_image(fetch, &image)?;
        self.forecast(input, image, at)
    }
}
