//! The Helioviewer API v2 requests the downloader makes and the answers it understands.

use crate::http::snippet;
use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// `getJP2Image?...&jpip=true`: the URI of the image closest to `t` (no image bytes).
pub fn uri_url(api: &str, t: NaiveDateTime, source_id: u32) -> String {
    format!("{}&jpip=true", image_url(api, t, source_id))
}

/// `getJP2Image?...`: the JP2 bytes of the image closest to `t`.
pub fn image_url(api: &str, t: NaiveDateTime, source_id: u32) -> String {
    format!(
        "{}/v2/getJP2Image/?date={}&sourceId={source_id}",
        api.trim_end_matches('/'),
        t.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The image URI from a `jpip=true` answer: plain text (`jpip://...`, `jpips://...`) or
/// the JSON form `{"uri": "jpip:\/\/..."}`.
pub fn parse_uri_answer(body: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(body)
        .context("answer is not UTF-8 text")?
        .trim();
    let uri = if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("answer is not valid JSON: {}", snippet(text)))?;
        if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
            bail!("the API answered with an error: {err}");
        }
        match v.get("uri").and_then(|u| u.as_str()) {
            Some(u) => u.to_string(),
            None => bail!("JSON answer has no \"uri\": {}", snippet(text)),
        }
    } else {
        text.to_string()
    };
    let known = ["jpip://", "jpips://", "http://", "https://"];
    if !known.iter().any(|p| uri.starts_with(p)) || !uri.ends_with(".jp2") {
        bail!(
            "expected a jpip:// or jpips:// URI of a .jp2 file, got {}",
            snippet(&uri)
        );
    }
    Ok(uri)
}

/// The file name of a URI and the observation time it carries:
/// `YYYY_MM_DD__HH_MM_SS[_fff]__INSTRUMENT...jp2` (HMI has 3 fraction digits, AIA 2).
pub fn observation(uri: &str) -> Result<(String, NaiveDateTime)> {
    let name = uri.rsplit('/').next().unwrap_or(uri).to_string();
    let t = observation_from_name(&name)
        .with_context(|| format!("cannot read an observation time from the file name {name:?}"))?;
    Ok((name, t))
}

fn observation_from_name(name: &str) -> Option<NaiveDateTime> {
    let b = name.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = name.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    // "YYYY_MM_DD__HH_MM_SS" is 20 characters.
    if b.len() < 20
        || b[4] != b'_'
        || b[7] != b'_'
        || &b[10..12] != b"__"
        || b[14] != b'_'
        || b[17] != b'_'
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let (h, m, s) = (digits(12..14)?, digits(15..17)?, digits(18..20)?);
    // Optional fraction: "_fff" before the "__" that starts the instrument.
    let mut milli = 0;
    if b.get(20) == Some(&b'_') && b.get(21) != Some(&b'_') {
        let end = name[21..].find('_').map(|i| 21 + i)?;
        let frac = &name[21..end];
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let padded = format!("{frac:0<3}");
        milli = padded[..3].parse().ok()?;
    }
    let time = NaiveTime::from_hms_milli_opt(h, m, s, milli)?;
    Some(date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observation_times_from_names() {
        let (name, t) = observation(
            "jpip://h:8090/AIA/2014/01/02/335/2014_01_02__00_00_02_62__SDO_AIA_AIA_335.jp2",
        )
        .unwrap();
        assert_eq!(name, "2014_01_02__00_00_02_62__SDO_AIA_AIA_335.jp2");
        assert_eq!(t.to_string(), "2014-01-02 00:00:02.620");
        let (_, t) = observation("2022_08_02__10_47_53_000__SDO_HMI_HMI_magnetogram.jp2").unwrap();
        assert_eq!(t.to_string(), "2022-08-02 10:47:53");
        let (_, t) = observation("2022_04_01__00_00_45__SOLO-EUI-FSI_EUI_FSI_174.jp2").unwrap();
        assert_eq!(t.to_string(), "2022-04-01 00:00:45");
        assert!(observation("iris_1330A_20240415_060002.jp2").is_err());
        assert!(observation("2022_13_02__10_47_53_000__SDO_HMI_HMI_magnetogram.jp2").is_err());
    }

    #[test]
    fn urls() {
        let t = crate::instant::parse_time("2013-05-13T00:12:00").unwrap();
        assert_eq!(
            uri_url("https://api.helioviewer.org/", t, 19),
            "https://api.helioviewer.org/v2/getJP2Image/?date=2013-05-13T00:12:00Z&sourceId=19&jpip=true"
        );
    }
}
