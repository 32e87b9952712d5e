//! When a local magnetogram was observed: a JP2's FITS `DATE-OBS`/`T_OBS`, else an
//! `HMI.mYYYY.MM.DD_HH.MM.SS` or Helioviewer `YYYY_MM_DD__HH_MM_SS` file name.

use anyhow::{Context, Result};
use chrono::NaiveDateTime;
use std::path::Path;

/// The observation time `path` gives, if any (the header first, then the name).
pub fn observed_at(path: &Path) -> Result<Option<NaiveDateTime>> {
    let what = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name_time = crate::instant::Instant::from_path(&name)
        .map(|(i, _)| i.0)
        .or_else(|| {
            crate::helioviewer::api::observation(&name)
                .ok()
                .map(|(_, t)| t)
        });
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {what}"))?;
    if crate::jp2::has_signature(&bytes) {
        let obs = crate::jp2::obs_time_bytes(&bytes, &what)?;
        let header_time = obs
            .date_obs
            .as_deref()
            .and_then(fits_time)
            .or_else(|| obs.t_obs.as_deref().and_then(fits_time));
        return Ok(header_time.or(name_time));
    }
    Ok(name_time)
}

/// A FITS time (`2022-08-02T10:47:53.50`, or HMI's `2022.08.02_10:48:52.509_TAI`), to
/// the second.
fn fits_time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_end_matches("_TAI").trim_end_matches('Z');
    let s = s.split('.').collect::<Vec<_>>();
    // Drop a fraction of a second: the last '.'-separated part after the seconds.
    let joined = if s.len() > 1
        && s.last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
    {
        s[..s.len() - 1].join(".")
    } else {
        s.join(".")
    };
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y.%m.%d_%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&joined, fmt) {
            return Some(t);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_times() {
        let t = |s| fits_time(s).map(|t| t.to_string());
        assert_eq!(
            t("2022-08-02T10:47:53.50").as_deref(),
            Some("2022-08-02 10:47:53")
        );
        assert_eq!(
            t("2022.08.02_10:48:52.509_TAI").as_deref(),
            Some("2022-08-02 10:48:52")
        );
        assert_eq!(
            t("2022-08-02T10:47:53Z").as_deref(),
            Some("2022-08-02 10:47:53")
        );
        assert_eq!(t("yesterday"), None);
    }
}
