//! The files of a forecast in an output folder and the index (`index.jsonl`: one record
//! per line, with the files it was written to), written as one [`fsio::FileSet`]: all in
//! full under temporary names, then renamed into place with the index last. So the index
//! never names a file that is not complete, and a forecast that fails (a full disk)
//! leaves no file the index does not list.

use super::{ccmc, record::Record, Forecast, Forecaster};
use crate::explain;
use crate::fsio;
use crate::model::Arch;
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The index of an output folder.
pub const INDEX: &str = "index.jsonl";

/// What to write for each forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// flarecast's record, `flarecast_YYYYMMDD_HHMMSS.json`.
    Json,
    /// `Flare_Forecast_flarecast_YYYYMMDD_HHMM.json`.
    CcmcJson,
    /// `Flare_Forecast_flarecast_YYYYMMDD_HHMM.txt`.
    CcmcText,
}

impl std::str::FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "json" => Ok(Format::Json),
            "ccmc-json" => Ok(Format::CcmcJson),
            "ccmc-text" | "ccmc-txt" => Ok(Format::CcmcText),
            other => bail!("unknown format {other:?}: expected json, ccmc-json or ccmc-text"),
        }
    }
}

/// The files one forecast was written to.
#[derive(Clone, Debug)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

/// `flarecast_YYYYMMDD_HHMMSS` of the issue time.
pub fn record_stem(r: &Record) -> String {
    format!("flarecast_{}", r.issue_time.format("%Y%m%d_%H%M%S"))
}

/// The output lock of a run writing forecasts into a folder (see [`fsio::OutputLock`]).
pub const LOCK: &str = "forecast";

/// Writes the forecast's files into `dir` (and its attention map when asked), then adds
/// it to the index. Refused while another run writes forecasts into `dir`.
pub fn write(
    dir: &Path,
    forecaster: &Forecaster,
    forecast: &Forecast,
    formats: &[Format],
    attention_map: bool,
) -> Result<Written> {
    let _lock = fsio::OutputLock::acquire(dir, LOCK)?;
    write_held(dir, forecaster, forecast, formats, attention_map)
}

/// [`write`] by a run that holds `dir`'s [`LOCK`] already.
pub fn write_held(
    dir: &Path,
    forecaster: &Forecaster,
    forecast: &Forecast,
    formats: &[Format],
    attention_map: bool,
) -> Result<Written> {
    let r = &forecast.record;
    let mut set = fsio::FileSet::default();
    let mut files = Vec::new();
    for f in formats {
        let (path, bytes) = match f {
            Format::Json => (
                dir.join(format!("{}.json", record_stem(r))),
                serde_json::to_vec_pretty(r)?,
            ),
            Format::CcmcJson => (
                dir.join(format!("{}.json", ccmc::file_stem(r.issue_time))),
                serde_json::to_vec_pretty(&ccmc::json(r))?,
            ),
            Format::CcmcText => (
                dir.join(format!("{}.txt", ccmc::file_stem(r.issue_time))),
                ccmc::text(r).into_bytes(),
            ),
        };
        set.write(&path, &bytes)?;
        files.push(path);
    }
    if attention_map {
        let path = dir.join(format!("{}_attention.png", record_stem(r)));
        let png = attention_png(forecaster, forecast)?;
        set.write(&path, &png)?;
        files.push(path);
    }
    let index = dir.join(INDEX);
    set.write(&index, &index_with(&index, r, &files)?)?;
    set.commit()?;
    Ok(Written { files })
}

/// The forecast image beside each member's explanation: the attention network's three
/// attention overlays, or the other networks' Grad-CAM (conv_block5 of the standard CNN, the
/// last convolutional stage of the others), as one PNG panel.
pub fn attention_png(forecaster: &Forecaster, forecast: &Forecast) -> Result<Vec<u8>> {
    let ensemble = &forecaster.ensemble;
    let mut tiles = Vec::new();
    for m in &ensemble.members {
        let x = super::ensemble::member_input(&forecast.input, m.info.im_size)?;
        let gray = explain::tensor_to_gray(&x)?;
        if tiles.is_empty() {
            tiles.push(image::DynamicImage::ImageLuma8(gray.clone()).to_rgb8());
        }
        let x = x.to_device(ensemble.device);
        if m.model.net.arch() == Arch::Attention {
            let maps = explain::attention_maps(&m.model.net, &x)?;
            for (k, c) in maps.iter().enumerate() {
                let heat = explain::attention_heatmap(c, explain::scale_of(k + 1))
                    .to_device(tch::Device::Cpu);
                tiles.push(explain::overlay(&gray, &heat)?);
            }
        } else {
            let heat = explain::gradcam(&m.model.net, &x, 5, None, 1)?.to_device(tch::Device::Cpu);
            tiles.push(explain::overlay(&gray, &heat)?);
        }
    }
    let mut png = Vec::new();
    explain::panel(&tiles)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("cannot encode the attention map")?;
    Ok(png)
}

/// The index at `path` with one line more: the record and its files.
fn index_with(path: &Path, r: &Record, files: &[PathBuf]) -> Result<Vec<u8>> {
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let mut line = serde_json::to_value(r)?;
    line["files"] = serde_json::json!(files
        .iter()
        .map(|f| f
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()))
        .collect::<Vec<_>>());
    text.push_str(&serde_json::to_string(&line)?);
    text.push('\n');
    Ok(text.into_bytes())
}

/// The forecasts already in `dir`'s index: their keys ([`Record::key`]) and issue times.
pub struct Issued {
    pub keys: HashSet<String>,
    pub issue_times: Vec<chrono::NaiveDateTime>,
}

impl Issued {
    /// The latest issue time at or before `now`, and the latest after it (a record from
    /// the future: a clock set wrong, a copied folder).
    pub fn latest_around(
        &self,
        now: chrono::NaiveDateTime,
    ) -> (Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>) {
        let latest = |keep: fn(&chrono::NaiveDateTime, &chrono::NaiveDateTime) -> bool| {
            self.issue_times
                .iter()
                .filter(|t| keep(t, &now))
                .max()
                .copied()
        };
        (latest(|t, now| t <= now), latest(|t, now| t > now))
    }
}

/// What `dir`'s index holds (nothing when it has none).
pub fn issued(dir: &Path) -> Result<Issued> {
    let path = dir.join(INDEX);
    let records = if path.exists() {
        super::record::read_records(&path)?
    } else {
        Vec::new()
    };
    Ok(Issued {
        keys: records.iter().map(Record::key).collect(),
        issue_times: records.iter().map(|r| r.issue_time).collect(),
    })
}
