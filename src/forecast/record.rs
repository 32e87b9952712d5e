//! The forecast record: one JSON object per forecast, with everything needed to
//! reproduce it (models and their hashes, the exact image and its age) and to verify it
//! later (the prediction window: the 24 hours after the issue time, or for replays the
//! per-image window `label` gives the image).

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The flare class the probability is for: a flare of this class or larger.
pub const THRESHOLD_CLASS: &str = "M1.0";
/// Length of the prediction window.
pub const WINDOW_HOURS: i64 = 24;

/// One ensemble member's checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: String,
    pub sha256: String,
    pub architecture: String,
    /// The image side the member sees (from its checkpoint).
    pub im_size: i64,
    /// The member's probability calibration (from its checkpoint), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

/// The magnetogram a forecast was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Observation time (UTC).
    #[serde(with = "utc")]
    pub time: NaiveDateTime,
    /// Helioviewer source id (19: SDO/HMI magnetogram); None for a local file.
    pub source_id: Option<u32>,
    /// Helioviewer image id; None for a local file.
    pub id: Option<u64>,
    /// The local file, when the image was not fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl ImageInfo {
    /// What identifies the image: its Helioviewer id, else its time and file.
    pub fn key(&self) -> String {
        match self.id {
            Some(id) => format!("id:{id}"),
            None => format!(
                "{}:{}",
                fmt_utc(self.time),
                self.file.as_deref().unwrap_or("")
            ),
        }
    }
}

/// The 24 hours a forecast is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(with = "utc")]
    pub start: NaiveDateTime,
    #[serde(with = "utc")]
    pub end: NaiveDateTime,
}

/// Where a forecast's window starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowRule {
    /// (T, T + 24 h] for a forecast issued at T: what an operational forecast covers.
    #[default]
    IssueTime,
    /// 24 hours from the start of the image's hour, the instance `label` makes of the
    /// image (the paper's rule): for replaying an archive so `verify` equals `evaluate`.
    /// Not an operational window: it may start before the forecast is issued.
    ImageHour,
}

impl WindowRule {
    /// What records written before the rule was recorded used.
    fn unrecorded() -> WindowRule {
        WindowRule::ImageHour
    }

    pub fn name(self) -> &'static str {
        match self {
            WindowRule::IssueTime => "issue_time",
            WindowRule::ImageHour => "image_hour",
        }
    }

    /// The window of a forecast issued at `issue_time` from an image observed at `image`.
    pub fn window(self, issue_time: NaiveDateTime, image: NaiveDateTime) -> Window {
        match self {
            WindowRule::IssueTime => Window::of_issue(issue_time),
            WindowRule::ImageHour => Window::of_image(image),
        }
    }

    /// A sentence for people reading the files.
    pub fn describe(self) -> &'static str {
        match self {
            WindowRule::IssueTime => "the 24 hours after the issue time",
            WindowRule::ImageHour => {
                "24 hours from the start of the image's hour (the per-image rule of the \
                 paper's labels, for replaying an archive; not an operational window)"
            }
        }
    }
}

impl std::str::FromStr for WindowRule {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "issue-time" | "issue_time" => Ok(WindowRule::IssueTime),
            "image-hour" | "image_hour" => Ok(WindowRule::ImageHour),
            other => bail!("unknown window rule {other:?}: expected issue-time or image-hour"),
        }
    }
}

impl Window {
    /// The window of a forecast issued at `t`: flares starting after `t`, up to 24 hours
    /// later, as `label` labels an instance at `t`.
    pub fn of_issue(t: NaiveDateTime) -> Window {
        Window {
            start: t,
            end: t + Duration::hours(WINDOW_HOURS),
        }
    }

    /// The window of an image observed at `t`: 24 hours from the start of its hour, the
    /// instance time `label` gives the image (flares starting after `start`, up to `end`).
    pub fn of_image(t: NaiveDateTime) -> Window {
        let start = t
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(t);
        Window {
            start,
            end: start + Duration::hours(WINDOW_HOURS),
        }
    }

    pub fn duration(&self) -> Duration {
        self.end - self.start
    }
}

/// One member's forecast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub model: String,
    /// Calibrated when the member has a calibration, else the network's output.
    pub probability: f64,
    /// The network's output, when `probability` is calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_probability: Option<f64>,
}

/// How far the members disagree.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub min: f64,
    pub max: f64,
    /// Population standard deviation of the members' probabilities (0 for one model).
    pub std: f64,
}

impl Spread {
    pub fn of(probs: &[f64]) -> Spread {
        let n = probs.len().max(1) as f64;
        let mean = probs.iter().sum::<f64>() / n;
        Spread {
            min: probs.iter().copied().fold(f64::INFINITY, f64::min),
            max: probs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            std: (probs.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n).sqrt(),
        }
    }
}

/// A forecast, as written to `flarecast_*.json`, the index and stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub flarecast_version: String,
    pub models: Vec<ModelInfo>,
    /// The time the forecast is issued for (the requested time, or now).
    #[serde(with = "utc")]
    pub issue_time: NaiveDateTime,
    pub image: ImageInfo,
    /// How old the image was at the issue time, in seconds.
    #[serde(default)]
    pub image_age_seconds: i64,
    pub prediction_window: Window,
    /// Where the window starts: at the issue time, or (replays) at the image's hour.
    #[serde(default = "WindowRule::unrecorded")]
    pub window_rule: WindowRule,
    /// The probability is for a flare of this class or larger starting in the window.
    pub threshold_class: String,
    /// The ensemble mean of the members' probabilities: calibrated when they are.
    pub probability: f64,
    /// The ensemble mean of the networks' own outputs (equal to `probability` without a
    /// calibration): what the decision and TSS/HSS2 use.
    #[serde(default)]
    pub raw_probability: Option<f64>,
    /// How `probability` was calibrated (None: it is the raw probability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    pub members: Vec<Member>,
    /// Over the members' probabilities (calibrated when they are).
    pub spread: Spread,
    /// The decision rule: a flare is forecast when the raw probability >= this.
    pub decision_threshold: f64,
    pub flare_forecast: bool,
}

impl Record {
    /// A record from the members' probabilities (in model order).
    pub fn new(
        models: Vec<ModelInfo>,
        issue_time: NaiveDateTime,
        image: ImageInfo,
        member_probs: &[f64],
        decision_threshold: f64,
        window_rule: WindowRule,
    ) -> Record {
        Record::calibrated(
            models,
            issue_time,
            image,
            member_probs,
            None,
            decision_threshold,
            window_rule,
        )
    }

    /// A record from the members' raw probabilities and, when the members are calibrated,
    /// their calibrated ones (the record's probability then).
    pub fn calibrated(
        models: Vec<ModelInfo>,
        issue_time: NaiveDateTime,
        image: ImageInfo,
        raw_probs: &[f64],
        calibrated: Option<&[f64]>,
        decision_threshold: f64,
        window_rule: WindowRule,
    ) -> Record {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let raw = mean(raw_probs);
        let member_probs = calibrated.unwrap_or(raw_probs);
        let probability = mean(member_probs);
        let calibration = calibrated.and_then(|_| {
            let methods: Vec<&str> = models
                .iter()
                .filter_map(|m| m.calibration.as_deref())
                .collect();
            (!methods.is_empty()).then(|| methods.join("; "))
        });
        Record {
            flarecast_version: env!("CARGO_PKG_VERSION").to_string(),
            members: models
                .iter()
                .zip(member_probs)
                .zip(raw_probs)
                .map(|((m, &p), &r)| Member {
                    model: m.path.clone(),
                    probability: p,
                    raw_probability: calibrated.map(|_| r),
                })
                .collect(),
            models,
            issue_time,
            image_age_seconds: (issue_time - image.time).num_seconds(),
            prediction_window: window_rule.window(issue_time, image.time),
            window_rule,
            image,
            threshold_class: THRESHOLD_CLASS.to_string(),
            probability,
            raw_probability: Some(raw),
            calibration,
            spread: Spread::of(member_probs),
            decision_threshold,
            flare_forecast: raw >= decision_threshold,
        }
    }

    /// The networks' own probability (records from before calibration existed carry only
    /// `probability`, which was it).
    pub fn raw(&self) -> f64 {
        self.raw_probability.unwrap_or(self.probability)
    }

    /// What identifies a forecast in a folder: its window and its image. Operational
    /// windows start at the issue time, so each cycle is a forecast of its own; per-image
    /// windows make a repeated image the same forecast.
    pub fn key(&self) -> String {
        match self.window_rule {
            WindowRule::IssueTime => issue_key(self.issue_time),
            WindowRule::ImageHour => image_key(&self.image),
        }
    }

    /// One line for a person: the probability, the decision, the window and the image.
    pub fn summary(&self) -> String {
        let spread = if self.members.len() > 1 {
            format!(
                " (ensemble of {}: {:.3}..{:.3}, std {:.3})",
                self.members.len(),
                self.spread.min,
                self.spread.max,
                self.spread.std
            )
        } else {
            String::new()
        };
        let calibrated = match &self.calibration {
            Some(_) => format!(" calibrated (raw {:.3})", self.raw()),
            None => String::new(),
        };
        format!(
            "P(>= {} flare between {} and {}) = {:.3}{calibrated}{spread}: {} at threshold {}; \
             image {} ({} old){}",
            self.threshold_class,
            fmt_utc(self.prediction_window.start),
            fmt_utc(self.prediction_window.end),
            self.probability,
            if self.flare_forecast {
                "FLARE"
            } else {
                "no flare"
            },
            self.decision_threshold,
            fmt_utc(self.image.time),
            human_age(self.image_age_seconds),
            match self.window_rule {
                WindowRule::IssueTime => "",
                WindowRule::ImageHour => "; per-image window, not an operational one",
            },
        )
    }

    /// Checks what a record read from a file must satisfy to be scored.
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.probability) {
            bail!("probability {} is not in [0, 1]", self.probability);
        }
        if !(0.0..=1.0).contains(&self.raw()) {
            bail!("raw probability {} is not in [0, 1]", self.raw());
        }
        if self.prediction_window.end <= self.prediction_window.start {
            bail!("the prediction window ends before it starts");
        }
        if self.image.time > self.issue_time {
            bail!(
                "the image ({}) is later than the issue time ({})",
                fmt_utc(self.image.time),
                fmt_utc(self.issue_time)
            );
        }
        self.threshold_class
            .parse::<crate::catalog::GoesClass>()
            .map_err(|e| anyhow::anyhow!("threshold class: {e}"))?;
        Ok(())
    }
}

/// [`Record::key`] of an operational forecast issued at `t`.
pub fn issue_key(t: NaiveDateTime) -> String {
    format!("issued {}", fmt_utc(t))
}

/// [`Record::key`] of a per-image forecast from `image`.
pub fn image_key(image: &ImageInfo) -> String {
    format!("image {}", image.key())
}

/// Reads forecast records: a record file (`.json`, one object) or an index (JSON lines).
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let parse = |s: &str, line: usize| -> Result<Record> {
        let r: Record = serde_json::from_str(s).with_context(|| {
            format!("{}:{line}: not a flarecast forecast record", path.display())
        })?;
        r.check()
            .with_context(|| format!("{}:{line}", path.display()))?;
        check_index_files(s).with_context(|| format!("{}:{line}", path.display()))?;
        Ok(r)
    };
    // A pretty-printed record spans lines; an index has one record per line.
    if path.extension().is_some_and(|e| e == "json") {
        return Ok(vec![parse(&text, 1)?]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse(l, i + 1))
        .collect()
}

/// An index line's `files` are names in the index's own folder: none may leave it.
fn check_index_files(line: &str) -> Result<()> {
    #[derive(Deserialize)]
    struct Files {
        #[serde(default)]
        files: Vec<String>,
    }
    let listed: Files = serde_json::from_str(line).context("malformed `files`")?;
    for f in &listed.files {
        crate::tree_path::inside(f).context("in `files`")?;
    }
    Ok(())
}

/// `47m`, `2h 3m`: an image's age for people.
pub fn human_age(seconds: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(seconds.max(0) as u64)).to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn fmt_utc(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now, in UTC, to the second.
pub fn now_utc() -> NaiveDateTime {
    let now: DateTime<Utc> = Utc::now();
    let t = now.naive_utc();
    t.with_nanosecond(0).unwrap_or(t)
}

/// Times in records: `YYYY-MM-DDTHH:MM:SSZ` (fractions of a second kept when present).
mod utc {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let s = String::deserialize(d)?;
        crate::instant::parse_time(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instant::parse_time;

    #[test]
    fn the_window_starts_at_the_issue_time_or_for_replays_at_the_image_hour() {
        let (issue, image) = (
            parse_time("2014-03-02T06:30:00").unwrap(),
            parse_time("2014-03-02T04:47:53").unwrap(),
        );
        let w = WindowRule::IssueTime.window(issue, image);
        assert_eq!(fmt_utc(w.start), "2014-03-02T06:30:00Z");
        assert_eq!(fmt_utc(w.end), "2014-03-03T06:30:00Z");
        let w = WindowRule::ImageHour.window(issue, image);
        assert_eq!(fmt_utc(w.start), "2014-03-02T04:00:00Z");
        assert_eq!(fmt_utc(w.end), "2014-03-03T04:00:00Z");
    }

    #[test]
    fn mean_members_spread_and_decision() {
        let model = |p: &str| ModelInfo {
            path: p.into(),
            sha256: "00".into(),
            architecture: "attention".into(),
            im_size: 256,
            calibration: None,
        };
        let image = ImageInfo {
            time: parse_time("2014-03-02T04:47:53").unwrap(),
            source_id: Some(19),
            id: Some(7),
            file: None,
        };
        let r = Record::new(
            vec![model("a"), model("b")],
            parse_time("2014-03-02T05:00:00").unwrap(),
            image,
            &[0.25, 0.75],
            0.5,
            WindowRule::IssueTime,
        );
        assert_eq!(r.probability, 0.5);
        assert!(r.flare_forecast);
        assert_eq!(r.spread.std, 0.25);
        assert_eq!((r.spread.min, r.spread.max), (0.25, 0.75));
        assert_eq!(r.members[1].model, "b");
        assert_eq!(r.image_age_seconds, 12 * 60 + 7);
        assert_eq!(fmt_utc(r.prediction_window.start), "2014-03-02T05:00:00Z");
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains("\"issue_time\":\"2014-03-02T05:00:00Z\""),
            "{json}"
        );
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
