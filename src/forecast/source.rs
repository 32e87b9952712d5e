//! The newest magnetogram at or before a forecast time, from the Helioviewer API v2 or
//! from a local image tree. Helioviewer has no "latest image" call: `getClosestImage`
//! with the forecast time returns the nearest image before *or after* it, days away during
//! data gaps, so its date is checked here; then that exact image is fetched by its id
//! (`getJP2Image?id=`), never by date, so the bytes are the image whose date was checked.

use super::record::ImageInfo;
use crate::bounded::{days, secs, Span};
use crate::http::snippet;
use crate::http::{Client, Expect, Retry, RetryPolicy};
use crate::instant::Instant;
use crate::preprocess::{training_image_from_jp2, Input, Pixels};
use anyhow::{anyhow, bail, Context, Result};
use chrono::{Duration, NaiveDateTime};
use std::path::PathBuf;
use std::time::Duration as StdDuration;

/// Where images come from.
#[derive(Clone, Debug)]
pub enum Origin {
    /// The Helioviewer API at this root, for one source id (19: HMI magnetograms).
    Helioviewer { api_url: String, source_id: u32 },
    /// A tree of training images `YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.{jpg,png}` (what
    /// `convert` or `synth` write), read again at every forecast.
    Tree(PathBuf),
}

/// The oldest image a setting may accept, as an age: a century reaches any archive.
pub const MAX_AGE: Span = Span::new("max_age", "image age", secs(1), days(36_525));

/// An image origin and the oldest image accepted.
#[derive(Clone, Debug)]
pub struct Source {
    pub origin: Origin,
    /// The oldest image accepted, as an age at the forecast time.
    pub max_age: Duration,
}

/// What `getClosestImage` said.
#[derive(Clone, Debug, PartialEq)]
pub struct Closest {
    pub id: u64,
    pub date: NaiveDateTime,
}

/// `getClosestImage?date=...&sourceId=...`.
pub fn closest_url(api: &str, t: NaiveDateTime, source_id: u32) -> String {
    format!(
        "{}/v2/getClosestImage/?date={}&sourceId={source_id}",
        api.trim_end_matches('/'),
        t.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// `getJP2Image?id=...`: the JP2 of one image.
pub fn image_by_id_url(api: &str, id: u64) -> String {
    format!("{}/v2/getJP2Image/?id={id}", api.trim_end_matches('/'))
}

/// Parses a `getClosestImage` answer: `{"id": 34205701, "date": "2014-01-02 00:00:02",
/// ...}` (the id may come as a string), or `{"error": "..."}`.
pub fn parse_closest(body: &[u8]) -> Result<Closest> {
    let text = std::str::from_utf8(body).context("answer is not UTF-8 text")?;
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .with_context(|| format!("answer is not JSON: {}", snippet(text)))?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        bail!("the API answered with an error: {err}");
    }
    let id = match v.get("id") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| anyhow!("answer has no image id: {}", snippet(text)))?;
    let date = v
        .get("date")
        .and_then(|d| d.as_str())
        .ok_or_else(|| anyhow!("answer has no image date: {}", snippet(text)))?;
    let date = NaiveDateTime::parse_from_str(date.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| crate::instant::parse_time(date))
        .map_err(|_| anyhow!("image date {date:?} is not YYYY-MM-DD HH:MM:SS"))?;
    Ok(Closest { id, date })
}

/// Accepts the image only if it was observed at or before `at` and no more than
/// `max_age` before it; the refusal names the image's date.
pub fn check_age(image: &Closest, at: NaiveDateTime, max_age: Duration) -> Result<()> {
    let date = image.date.format("%Y-%m-%d %H:%M:%S");
    if image.date > at {
        bail!(
            "the closest image (id {}, observed {date}) is after the forecast time {}: \
             no image at or before it is that close",
            image.id,
            at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    if at - image.date > max_age {
        bail!(
            "the newest image at or before {} (id {}, observed {date}) is {} old, more than \
             the {} allowed",
            at.format("%Y-%m-%d %H:%M:%S"),
            image.id,
            human(at - image.date),
            human(max_age)
        );
    }
    Ok(())
}

/// `2d 3h 4m`-style duration for messages.
fn human(d: Duration) -> String {
    humantime::format_duration(StdDuration::from_secs(d.num_seconds().max(0) as u64)).to_string()
}

/// Attempts per request (the first and two retries).
const ATTEMPTS: u32 = 3;

/// How one forecast fetches: the client (None for a tree), the time by which the whole
/// forecast's requests must be done, and who hears about retries.
pub struct Fetch<'a> {
    pub client: Option<&'a Client>,
    pub deadline: Option<std::time::Instant>,
    pub on_retry: &'a mut dyn FnMut(&str),
}

impl Fetch<'_> {
    fn get(&mut self, what: &str, url: &str, expect: Expect) -> Result<Vec<u8>> {
        let client = self.client.context("no HTTP client")?;
        let on_retry = &mut *self.on_retry;
        client
            .get_until(url, expect, self.deadline, &mut |r: &Retry| {
                on_retry(&format!("{what}: {r}"))
            })
            .map_err(|e| anyhow!("{what}: {}", e.reason))
    }
}

impl Source {
    /// The HTTP client for Helioviewer (None for a tree), with short retries: each
    /// attempt gets a third of `timeout`, the deadline of a whole forecast, so a stalled
    /// answer leaves time for another; a cycle that fails is retried by the next cycle.
    pub fn connect(&self, timeout: StdDuration) -> Result<Option<Client>> {
        let Origin::Helioviewer { api_url, .. } = &self.origin else {
            return Ok(None);
        };
        Ok(Some(Client::new(
            api_url,
            (timeout / ATTEMPTS).max(StdDuration::from_millis(100)),
            0.0,
            RetryPolicy {
                retries: ATTEMPTS - 1,
                backoff: StdDuration::from_millis(500),
                max_backoff: StdDuration::from_secs(5),
            },
        )?))
    }

    /// The newest acceptable image at or before `at`.
    pub fn newest(&self, fetch: &mut Fetch, at: NaiveDateTime) -> Result<ImageInfo> {
        match &self.origin {
            Origin::Helioviewer { api_url, source_id } => {
                let url = closest_url(api_url, at, *source_id);
                let body = fetch.get(&format!("getClosestImage for {at}"), &url, Expect::Text)?;
                let image =
                    parse_closest(&body).with_context(|| format!("getClosestImage for {at}"))?;
                check_age(&image, at, self.max_age)?;
                Ok(ImageInfo {
                    time: image.date,
                    source_id: Some(*source_id),
                    id: Some(image.id),
                    file: None,
                })
            }
            Origin::Tree(dir) => {
                let images =
                    crate::label::Images::from_tree(dir, &crate::progress::Progress::hidden())?;
                let (t, name) = images
                    .at_or_before(Instant(at))
                    .with_context(|| format!("{} has no image at or before {at}", dir.display()))?;
                let age = at - t.0;
                if age > self.max_age {
                    bail!(
                        "the newest image at or before {} in {} ({name}, observed {}) is {} \
                         old, more than the {} allowed",
                        at.format("%Y-%m-%d %H:%M:%S"),
                        dir.display(),
                        t.0.format("%Y-%m-%d %H:%M:%S"),
                        human(age),
                        human(self.max_age)
                    );
                }
                Ok(ImageInfo {
                    time: t.0,
                    source_id: None,
                    id: None,
                    file: Some(dir.join(name).display().to_string()),
                })
            }
        }
    }

    /// The training image of an image [`Source::newest`] chose: fetched by id and prepared
    /// as `convert` prepares a JP2, or read from the tree as every command reads a file.
    pub fn training_image(&self, fetch: &mut Fetch, image: &ImageInfo) -> Result<Input> {
        match (&self.origin, image.id, &image.file) {
            (Origin::Helioviewer { api_url, .. }, Some(id), _) => {
                let bytes = fetch.get(
                    &format!("getJP2Image for image {id}"),
                    &image_by_id_url(api_url, id),
                    Expect::Jp2,
                )?;
                let what = format!("image {id} ({})", image.time);
                Ok(Input {
                    path: what.clone().into(),
                    pixels: Pixels::Image(training_image_from_jp2(&bytes, &what)?),
                    notes: Vec::new(),
                })
            }
            (_, _, Some(file)) => Input::read(std::path::Path::new(file)),
            _ => bail!("the image has neither an id nor a file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instant::parse_time;

    #[test]
    fn urls() {
        let t = parse_time("2014-03-02T05:00:00").unwrap();
        assert_eq!(
            closest_url("http://h/", t, 19),
            "http://h/v2/getClosestImage/?date=2014-03-02T05:00:00Z&sourceId=19"
        );
        assert_eq!(
            image_by_id_url("http://h", 7),
            "http://h/v2/getJP2Image/?id=7"
        );
    }
}
