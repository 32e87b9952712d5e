//! The two flux scales GOES classes are given on. NOAA's operational XRS fluxes from
//! GOES-8 to GOES-15 carried a 0.7 factor; the science reprocessing removed it, and GOES-16
//! and later never had it. So for GOES-15 and earlier a science class is the operational
//! class divided by 0.7 (C7.0 operational is M1.0 science); for GOES-16+ both agree.

use super::{Flare, GoesClass};
use chrono::{NaiveDate, NaiveDateTime};
use std::fmt;
use std::str::FromStr;

/// Which scale a class is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FluxScale {
    /// NOAA's real-time classes (with the 0.7 factor up to GOES-15): the paper's labels.
    #[default]
    Operational,
    /// The science-quality reprocessing (no factor).
    Science,
}

impl FluxScale {
    pub fn name(self) -> &'static str {
        match self {
            FluxScale::Operational => "operational",
            FluxScale::Science => "science",
        }
    }
}

impl fmt::Display for FluxScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FluxScale {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "operational" => Ok(FluxScale::Operational),
            "science" => Ok(FluxScale::Science),
            _ => Err(format!(
                "{s:?} is not a flux scale (operational or science)"
            )),
        }
    }
}

/// The instrument a flare was measured with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Satellite {
    Goes(u8),
    /// Anything else a list names (SWPC's reports name `SDO` for EVE-derived events).
    Other(String),
}

impl Satellite {
    /// `G15`, `GOES-15`, `goes15`, `GOES 15` or `15` is GOES-15; other text is kept as
    /// given; blank is None.
    pub fn parse(text: &str) -> Option<Satellite> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        let upper = t.to_ascii_uppercase();
        let digits = upper
            .strip_prefix("GOES")
            .or_else(|| upper.strip_prefix('G'))
            .unwrap_or(&upper)
            .trim_start_matches(['-', ' ', '_']);
        match digits.parse::<u8>() {
            Ok(n) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Satellite::Goes(n))
            }
            _ => Some(Satellite::Other(t.to_string())),
        }
    }
}

impl fmt::Display for Satellite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Satellite::Goes(n) => write!(f, "GOES-{n}"),
            Satellite::Other(s) => f.write_str(s),
        }
    }
}

/// GOES-15, the last satellite whose operational fluxes carried the factor, left service
/// in March 2020; a flare of a list that names no satellite is taken to be from GOES-15
/// or earlier when it started before then.
fn last_factor_day() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2020, 3, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_else(|| unreachable!("2020-03-01 is a date"))
}

/// Whether the operational class of this flare carried the 0.7 factor: GOES-15 and
/// earlier yes, GOES-16+ and other instruments no, an unnamed satellite by date.
pub fn carries_factor(satellite: Option<&Satellite>, start: NaiveDateTime) -> bool {
    match satellite {
        Some(Satellite::Goes(n)) => *n <= 15,
        Some(Satellite::Other(_)) => false,
        None => start < last_factor_day(),
    }
}

/// The flare's class on `target`: unchanged when already there or when its satellite
/// never had the factor.
pub fn class_on(flare: &Flare, target: FluxScale) -> GoesClass {
    if flare.scale == target || !carries_factor(flare.satellite.as_ref(), flare.start) {
        return flare.class.clone();
    }
    match target {
        FluxScale::Science => flare.class.scaled(10, 7),
        FluxScale::Operational => flare.class.scaled(7, 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flare(start: &str, class: &str, sat: &str, scale: FluxScale) -> Flare {
        Flare {
            start: crate::instant::parse_time(start).unwrap(),
            class: class.parse().unwrap(),
            lon: None,
            lat: None,
            satellite: Satellite::parse(sat),
            scale,
        }
    }

    #[test]
    fn satellite_names() {
        for s in ["G15", "GOES-15", "goes15", "GOES 15", "15", " g15 "] {
            assert_eq!(Satellite::parse(s), Some(Satellite::Goes(15)), "{s}");
        }
        assert_eq!(
            Satellite::parse("SDO"),
            Some(Satellite::Other("SDO".into()))
        );
        assert_eq!(Satellite::parse("G"), Some(Satellite::Other("G".into())));
        assert_eq!(Satellite::parse("  "), None);
        assert_eq!(Satellite::Goes(16).to_string(), "GOES-16");
    }

    #[test]
    fn the_factor_applies_to_goes_15_and_earlier_only() {
        use FluxScale::*;
        let sci = |f: &Flare| class_on(f, Science).to_string();
        let op = |f: &Flare| class_on(f, Operational).to_string();
        // The 2017-09-06 flare: X9.3 operational from GOES-15.
        let f = flare("2017-09-06T11:53:00", "X9.3", "G15", Operational);
        assert_eq!((sci(&f), op(&f)), ("X13.2".into(), "X9.3".into()));
        let f = flare("2012-03-24T08:39:00", "C7.2", "SDO", Operational);
        assert_eq!(sci(&f), "C7.2");
        let f = flare("2024-05-14T16:46:00", "X8.7", "GOES-16", Science);
        assert_eq!(op(&f), "X8.7");
        let f = flare("2014-02-25T00:39:00", "X7.0", "GOES-15", Science);
        assert_eq!(op(&f), "X4.9");
        // No satellite named: by date.
        assert_eq!(
            sci(&flare("2019-05-06T05:04:00", "C9.9", "", Operational)),
            "M1.4"
        );
        assert_eq!(
            sci(&flare("2021-05-22T21:21:00", "M1.1", "", Operational)),
            "M1.1"
        );
    }

    #[test]
    fn scale_names() {
        assert_eq!("Science".parse(), Ok(FluxScale::Science));
        assert_eq!(" operational ".parse(), Ok(FluxScale::Operational));
        assert!("sci".parse::<FluxScale>().is_err());
    }
}
