//! SWPC's JSON feed of the last 7 days of flares from the primary GOES satellite. A flare
//! still in progress (no `max_class` or `end_time` yet) is left out until it completes,
//! so a daily `--append` run picks it up once.

use super::{answer_start, json_answer, json_class, json_text, json_time, Fetched};
use crate::catalog::store::Record;
use crate::catalog::{FluxScale, Satellite};
use anyhow::{bail, Result};
use serde_json::Value;

pub const DEFAULT_URL: &str =
    "https://services.swpc.noaa.gov/json/goes/primary/xray-flares-7-day.json";

/// Parses the feed.
pub fn parse(body: &[u8], what: &str) -> Result<Fetched> {
    let v = json_answer(body, what)?;
    let Some(entries) = v.as_array() else {
        bail!(
            "{what}: the answer is not a list of flares: {}",
            answer_start(body)
        );
    };
    let mut out = Fetched::default();
    for (i, e) in entries.iter().enumerate() {
        let missing = |k: &str| e.get(k).is_none_or(Value::is_null);
        if missing("max_class") || missing("max_time") || missing("end_time") {
            out.in_progress += 1;
            continue;
        }
        match flare(e) {
            Ok(r) => out.records.push(r),
            Err(why) => out.rejected.push(format!("{what}: flare {}: {why}", i + 1)),
        }
    }
    Ok(out)
}

fn flare(e: &Value) -> Result<Record, String> {
    let class = json_class(e, "max_class")?;
    Ok(Record {
        start: json_time(e, "begin_time")?,
        peak: Some(json_time(e, "max_time")?),
        end: Some(json_time(e, "end_time")?),
        class,
        lon: None,
        lat: None,
        region: None,
        source: "swpc".into(),
        satellite: Satellite::parse(&json_text(e, "satellite")),
        scale: FluxScale::Operational,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const FEED: &str = r#"[
 {"time_tag": "2024-05-14T16:46:00Z", "satellite": 16, "current_class": "C4.1", "current_ratio": 0.1,
  "current_int_xrlong": 0.05, "begin_time": "2024-05-14T16:46:00Z", "begin_class": "C1.2",
  "max_time": "2024-05-14T16:51:00Z", "max_class": "X8.7", "max_xrlong": 8.7e-4,
  "end_time": "2024-05-14T17:02:00Z", "end_class": "M4.4", "max_ratio_time": "2024-05-14T16:50:00Z", "max_ratio": 0.3},
 {"time_tag": "2024-05-15T08:13:00Z", "satellite": 18, "current_class": "M1.1", "current_ratio": 0.1,
  "current_int_xrlong": 0.01, "begin_time": "2024-05-15T08:13:00Z", "begin_class": "C3.0",
  "max_time": "2024-05-15T08:37:00Z", "max_class": "M3.4", "max_xrlong": 3.4e-5,
  "end_time": "2024-05-15T08:48:00Z", "end_class": "C9.0", "max_ratio_time": null, "max_ratio": null},
 {"time_tag": "2024-05-15T10:02:00Z", "satellite": 16, "current_class": "M2.3", "current_ratio": 0.2,
  "current_int_xrlong": 0.02, "begin_time": "2024-05-15T09:58:00Z", "begin_class": "C5.0",
  "max_time": null, "max_class": null, "max_xrlong": null,
  "end_time": null, "end_class": null, "max_ratio_time": null, "max_ratio": null}
]"#;

    #[test]
    fn complete_flares_only() {
        let f = parse(FEED.as_bytes(), "feed").unwrap();
        assert_eq!(f.in_progress, 1);
        assert!(f.rejected.is_empty());
        let got: Vec<(String, String, String, Option<Satellite>)> = f
            .records
            .iter()
            .map(|r| {
                (
                    r.start.to_string(),
                    r.peak.unwrap().to_string(),
                    r.class.to_string(),
                    r.satellite.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "2024-05-14 16:46:00".into(),
                    "2024-05-14 16:51:00".into(),
                    "X8.7".into(),
                    Some(Satellite::Goes(16))
                ),
                (
                    "2024-05-15 08:13:00".into(),
                    "2024-05-15 08:37:00".into(),
                    "M3.4".into(),
                    Some(Satellite::Goes(18))
                ),
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_and_a_bad_class_is_listed() {
        let e = parse(&FEED.as_bytes()[..400], "feed")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feed: the answer is not JSON"), "{e}");
        let e = parse(br#"{"status": "maintenance"}"#, "feed")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a list of flares"), "{e}");
        let f = parse(
            br#"[{"begin_time": "2024-05-14T16:46:00Z", "max_time": "2024-05-14T16:51:00Z", "max_class": "N/A", "end_time": "2024-05-14T17:02:00Z"}]"#,
            "feed",
        )
        .unwrap();
        assert_eq!(
            f.rejected,
            ["feed: flare 1: max_class \"N/A\" is not a GOES class"]
        );
    }
}
