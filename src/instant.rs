//! The instance naming convention shared by every stage:
//! `YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.ext`, named by the issue (requested) time.

use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use std::fmt;
use std::time::Duration;

/// An issue time in UTC, to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub NaiveDateTime);

impl Instant {
    pub fn new(t: NaiveDateTime) -> Self {
        Instant(t)
    }

    /// `YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.{ext}` (ext without the dot).
    pub fn relative_path(&self, ext: &str) -> String {
        format!(
            "{}/HMI.m{}.{ext}",
            self.0.format("%Y/%m/%d"),
            self.0.format("%Y.%m.%d_%H.%M.%S")
        )
    }

    /// Finds the `YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.ext` tail anywhere in `path`
    /// (absolute paths, Windows separators and other prefixes are fine) and returns the
    /// instant with the tail itself.
    pub fn from_path(path: &str) -> Option<(Instant, &str)> {
        let norm_idx = path.rfind("HMI.m")?;
        let stem = &path[norm_idx + 5..];
        // "YYYY.MM.DD_HH.MM.SS" is 19 characters.
        let stamp = stem.get(..19)?;
        let t = NaiveDateTime::parse_from_str(stamp, "%Y.%m.%d_%H.%M.%S").ok()?;
        // The tail starts 11 characters ("YYYY/MM/DD/") before "HMI.m" when present.
        let start = norm_idx.checked_sub(11).unwrap_or(norm_idx);
        // `get`: in a name of other scripts, 11 bytes back may fall inside a character.
        let tail = path.get(start..).unwrap_or(&path[norm_idx..]);
        let dir_ok = tail.len() > 11
            && tail.get(..11).map(|d| d.replace('\\', "/"))
                == Some(format!("{}/", t.format("%Y/%m/%d")));
        let tail = if dir_ok { tail } else { &path[norm_idx..] };
        Some((Instant(t), tail))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// Parses a UTC time as given on the command line: `2010-12-01T00:00:00`, with an
/// optional trailing `Z`, a space instead of `T`, or a bare date (midnight).
pub fn parse_time(s: &str) -> Result<NaiveDateTime> {
    let t = s.trim().trim_end_matches('Z');
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(v) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(v);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_time(NaiveTime::MIN));
    }
    bail!("cannot parse time {s:?}: expected YYYY-MM-DDTHH:MM:SS (UTC)")
}

/// Parses a duration such as `1h`, `24h`, `12m`, `90s`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let d = humantime::parse_duration(s.trim())
        .with_context(|| format!("cannot parse duration {s:?}: expected e.g. 1h, 12m, 30s"))?;
    if d.is_zero() {
        bail!("duration {s:?} must be positive");
    }
    Ok(d)
}

/// A chrono duration from a std one (whole seconds and nanoseconds).
pub fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_round_trip() {
        let t = parse_time("2010-12-06T07:00:00").unwrap();
        let p = Instant(t).relative_path("jpg");
        assert_eq!(p, "2010/12/06/HMI.m2010.12.06_07.00.00.jpg");
        let full = format!("/data/hmi_jpgs_512/{p}");
        let (back, tail) = Instant::from_path(&full).unwrap();
        assert_eq!(back.0, t);
        assert_eq!(tail, p);
    }

    #[test]
    fn bare_file_name_and_garbage() {
        let (t, tail) = Instant::from_path("HMI.m2013.05.13_16.00.00.png").unwrap();
        assert_eq!(t.to_string(), "2013-05-13T16:00:00");
        assert_eq!(tail, "HMI.m2013.05.13_16.00.00.png");
        assert!(Instant::from_path("2013/05/13/HMI.m2013.13.13_16.00.00.png").is_none());
        assert!(Instant::from_path("nothing here").is_none());
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(
            parse_time("2013-05-13").unwrap().to_string(),
            "2013-05-13 00:00:00"
        );
        assert_eq!(
            parse_time("2013-05-13T01:02:03Z").unwrap().to_string(),
            "2013-05-13 01:02:03"
        );
        assert!(parse_time("13/05/2013").is_err());
        assert_eq!(parse_duration("12m").unwrap().as_secs(), 720);
        assert_eq!(parse_duration("24h").unwrap().as_secs(), 86400);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
