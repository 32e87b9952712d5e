//! The Heliophysics Event Knowledgebase: flare (FL) events reported by SWPC, asked for
//! one calendar month at a time (longer queries hang) and page by page while `overmax`
//! says more remain. Location (0, 0) means unknown and region 0 means none.

use super::{answer_start, json_answer, json_class, json_time, Fetched, Requests};
use crate::catalog::store::Record;
use crate::catalog::FluxScale;
use anyhow::{bail, Result};
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use serde_json::Value;

pub const DEFAULT_URL: &str = "https://www.lmsal.com/hek/her";

/// A query that keeps saying `overmax` past this many pages is not going to end.
const MAX_PAGES: u32 = 1000;

const TIME: &str = "%Y-%m-%dT%H:%M:%S";

/// [start, end) cut at calendar month boundaries.
pub fn months(start: NaiveDateTime, end: NaiveDateTime) -> Vec<(NaiveDateTime, NaiveDateTime)> {
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let (y, m) = (from.year(), from.month());
        let next = NaiveDate::from_ymd_opt(if m == 12 { y + 1 } else { y }, m % 12 + 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(end, |n| n.min(end));
        out.push((from, next));
        from = next;
    }
    out
}

/// The search URL of one page of one window.
pub fn page_url(base: &str, from: NaiveDateTime, to: NaiveDateTime, page: u32) -> String {
    format!(
        "{base}?cosec=2&cmd=search&type=column&event_type=fl&event_starttime={}&event_endtime={}\
         &event_coordsys=helioprojective&x1=-1200&x2=1200&y1=-1200&y2=1200\
         &param0=frm_name&op0==&value0=SWPC&page={page}",
        from.format(TIME),
        to.format(TIME)
    )
}

/// Fetches the flares of [start, end), month by month and page by page.
pub fn fetch(src: &Requests, start: NaiveDateTime, end: NaiveDateTime) -> Result<Fetched> {
    let windows = months(start, end);
    src.bar.set_length(windows.len() as u64);
    let mut out = Fetched::default();
    for (from, to) in windows {
        for page in 1.. {
            if page > MAX_PAGES {
                bail!("HEK still reports more results after {MAX_PAGES} pages for {from} to {to}");
            }
            let u = page_url(src.url, from, to, page);
            let (fetched, overmax) = parse(&(src.get)(&u)?, &u)?;
            out.extend(fetched);
            if !overmax {
                break;
            }
        }
        src.bar.inc(1);
    }
    Ok(out)
}

/// Parses one answer page: its events, and whether another page follows.
pub fn parse(body: &[u8], what: &str) -> Result<(Fetched, bool)> {
    let v = json_answer(body, what)?;
    let Some(events) = v.get("result").and_then(Value::as_array) else {
        bail!(
            "{what}: the answer has no \"result\" list: {}",
            answer_start(body)
        );
    };
    let overmax = match v.get("overmax") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => bail!("{what}: \"overmax\" is {other}, not true or false"),
    };
    let mut out = Fetched::default();
    for (i, e) in events.iter().enumerate() {
        match event(e) {
            Ok(r) => out.records.push(r),
            Err(why) => out.rejected.push(format!("{what}: event {}: {why}", i + 1)),
        }
    }
    Ok((out, overmax))
}

fn number(e: &Value, key: &str) -> Option<f64> {
    match e.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn event(e: &Value) -> Result<Record, String> {
    let time = |key: &str| json_time(e, key);
    let class = json_class(e, "fl_goescls")?;
    let (lon, lat) = match (number(e, "hgs_x"), number(e, "hgs_y")) {
        (Some(x), Some(y)) if (x, y) != (0.0, 0.0) && x.abs() <= 180.0 && y.abs() <= 90.0 => {
            (Some(x), Some(y))
        }
        _ => (None, None),
    };
    let region = number(e, "ar_noaanum")
        .filter(|n| (1.0..100_000.0).contains(n) && n.fract() == 0.0)
        .map(|n| n as u32);
    Ok(Record {
        start: time("event_starttime")?,
        peak: time("event_peaktime").ok(),
        end: time("event_endtime").ok(),
        class,
        lon,
        lat,
        region,
        source: "hek".into(),
        satellite: None,
        scale: FluxScale::Operational,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::fields::parse_time;

    fn t(s: &str) -> NaiveDateTime {
        parse_time(s).unwrap()
    }

    #[test]
    fn month_windows() {
        let w = months(t("2011-01-20T06:00:00"), t("2011-03-02T00:00:00"));
        let got: Vec<String> = w.iter().map(|(a, b)| format!("{a}/{b}")).collect();
        assert_eq!(
            got,
            [
                "2011-01-20 06:00:00/2011-02-01 00:00:00",
                "2011-02-01 00:00:00/2011-03-01 00:00:00",
                "2011-03-01 00:00:00/2011-03-02 00:00:00"
            ]
        );
        assert_eq!(
            months(t("2011-12-01T00:00:00"), t("2012-01-01T00:00:00")).len(),
            1
        );
        assert!(months(t("2011-12-01T00:00:00"), t("2011-12-01T00:00:00")).is_empty());
        assert_eq!(
            page_url("http://h/her", t("2011-02-01T00:00:00"), t("2011-03-01T00:00:00"), 2),
            "http://h/her?cosec=2&cmd=search&type=column&event_type=fl&event_starttime=2011-02-01T00:00:00\
             &event_endtime=2011-03-01T00:00:00&event_coordsys=helioprojective&x1=-1200&x2=1200&y1=-1200\
             &y2=1200&param0=frm_name&op0==&value0=SWPC&page=2"
        );
    }

    #[test]
    fn events_with_unknown_location_and_region() {
        let body = br#"{"result": [
            {"event_starttime": "2011-02-15T01:44:00", "event_peaktime": "2011-02-15T01:56:00",
             "event_endtime": "2011-02-15T02:06:00", "fl_goescls": "X2.2", "ar_noaanum": 11158,
             "hpc_x": 188.4, "hpc_y": -212.1, "hgs_x": 10.0, "hgs_y": -20.0, "frm_name": "SWPC"},
            {"event_starttime": "2011-02-16T01:32:00", "event_peaktime": "2011-02-16T01:39:00",
             "event_endtime": "2011-02-16T01:46:00", "fl_goescls": "M1.0", "ar_noaanum": 0,
             "hpc_x": 0.0, "hpc_y": 0.0, "hgs_x": 0, "hgs_y": 0, "frm_name": "SWPC"},
            {"event_starttime": "2011-02-17T01:32:00", "fl_goescls": "", "ar_noaanum": null}
        ], "overmax": true}"#;
        let (f, overmax) = parse(body, "page").unwrap();
        assert!(overmax);
        assert_eq!(f.records.len(), 2);
        let a = &f.records[0];
        assert_eq!(
            (a.class.as_str(), a.lon, a.lat, a.region),
            ("X2.2", Some(10.0), Some(-20.0), Some(11158))
        );
        assert_eq!(a.peak.unwrap().to_string(), "2011-02-15 01:56:00");
        let b = &f.records[1];
        assert_eq!((b.lon, b.lat, b.region), (None, None, None));
        assert_eq!(
            f.rejected,
            ["page: event 3: fl_goescls \"\" is not a GOES class"]
        );
        let (_, overmax) = parse(br#"{"result": []}"#, "p").unwrap();
        assert!(!overmax);
    }

    #[test]
    fn garbage_and_cut_off_answers_are_errors() {
        for (body, says) in [
            (
                &br#"{"result": [{"event_starttime": "2011-02-15T01:44:00", "fl_go"#[..],
                "not JSON",
            ),
            (b"<html>Proxy Error</html>", "not JSON"),
            (br#"{"error": "query too large"}"#, "no \"result\" list"),
        ] {
            let e = parse(body, "http://h/her?page=1").unwrap_err().to_string();
            assert!(
                e.starts_with("http://h/her?page=1: ") && e.contains(says),
                "{e}"
            );
        }
    }
}
