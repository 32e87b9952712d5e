//! NOAA NCEI's science-quality GOES XRS flare report: CSV files in one directory, yearly
//! (`sci_xrsf-l2-flrpt_geo_yYYYY_v1-0-1.csv`) and mission-length
//! (`sci_xrsf-l2-flrpt_geo_sYYYYMMDD_eYYYYMMDD_v1-0-1.csv`), found in the directory
//! listing because versions and end dates change. Classes are on the science scale.

use super::{Fetched, Requests};
use crate::catalog::fields::parse_time;
use crate::catalog::store::Record;
use crate::catalog::{FluxScale, GoesClass, Satellite};
use anyhow::{bail, Context, Result};
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use std::collections::BTreeMap;

pub const DEFAULT_URL: &str = "https://data.ngdc.noaa.gov/platforms/solar-space-observing-satellites/goes/multi/l2/data/xrsf-l2-flrpt_science/csv/";

const PREFIX: &str = "sci_xrsf-l2-flrpt_geo_";

/// The report files a directory listing names.
#[derive(Debug, Default, PartialEq)]
pub struct Listing {
    /// Year -> (version, file name), the highest version of each year.
    pub yearly: BTreeMap<i32, (Vec<u32>, String)>,
    /// (end date, version, file name) of the newest mission-length file.
    pub mission: Option<(NaiveDate, Vec<u32>, String)>,
}

fn version(v: &str) -> Option<Vec<u32>> {
    v.split('-').map(|p| p.parse().ok()).collect()
}

fn date8(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y%m%d").ok()
}

/// The report files named anywhere in a listing (an HTML index or plain text).
pub fn listing(text: &str) -> Listing {
    let mut out = Listing::default();
    for (at, _) in text.match_indices(PREFIX) {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .collect();
        let Some(stem) = name.strip_suffix(".csv") else {
            continue;
        };
        let rest = &stem[PREFIX.len()..];
        if let Some((year, v)) = rest.strip_prefix('y').and_then(|r| r.split_once("_v")) {
            if let (Ok(year), Some(v)) = (year.parse::<i32>(), version(v)) {
                if year.to_string().len() == 4
                    && out.yearly.get(&year).is_none_or(|(old, _)| *old < v)
                {
                    out.yearly.insert(year, (v, name.clone()));
                }
            }
        } else if let Some(r) = rest.strip_prefix('s') {
            let parts: Vec<&str> = r.splitn(3, '_').collect();
            if let [_, e, v] = parts[..] {
                let end = e.strip_prefix('e').and_then(date8);
                let v = v.strip_prefix('v').and_then(version);
                if let (Some(end), Some(v)) = (end, v) {
                    if out
                        .mission
                        .as_ref()
                        .is_none_or(|(d, ov, _)| (*d, ov) < (end, &v))
                    {
                        out.mission = Some((end, v, name.clone()));
                    }
                }
            }
        }
    }
    out
}

/// The files holding the flares of the years `first..=last`: the yearly files when each
/// year has one, else the mission-length file.
pub fn files_for(l: &Listing, first: i32, last: i32, url: &str) -> Result<Vec<String>> {
    let yearly: Option<Vec<String>> = (first..=last)
        .map(|y| l.yearly.get(&y).map(|(_, n)| n.clone()))
        .collect();
    match (yearly, &l.mission) {
        (Some(files), _) => Ok(files),
        (None, Some((_, _, name))) => Ok(vec![name.clone()]),
        (None, None) if l.yearly.is_empty() => bail!(
            "the listing at {url} names no flare report file ({PREFIX}y<year>_v<version>.csv)"
        ),
        (None, None) => bail!(
            "the listing at {url} has no flare report for every year from {first} to {last} \
             (it has {:?}) and no mission-length file",
            l.yearly.keys().collect::<Vec<_>>()
        ),
    }
}

/// Fetches the flares starting in [start, end).
pub fn fetch(src: &Requests, start: NaiveDateTime, end: NaiveDateTime) -> Result<Fetched> {
    let base = if src.url.ends_with('/') {
        src.url.to_string()
    } else {
        format!("{}/", src.url)
    };
    let body = (src.get)(&base)?;
    let l = listing(&String::from_utf8_lossy(&body));
    let last = (end - chrono::Duration::seconds(1)).year();
    let files = files_for(&l, start.year(), last, &base)?;
    src.bar.set_length(files.len() as u64 + 1);
    src.bar.inc(1);
    let mut out = Fetched::default();
    for name in files {
        let body = (src.get)(&format!("{base}{name}"))?;
        out.extend(parse(&body, &name)?);
        src.bar.inc(1);
    }
    Ok(out)
}

/// The report's columns flarecast reads (of its 22).
struct Cols {
    peak: usize,
    start: usize,
    end: usize,
    class: usize,
    source: usize,
    swpc_lon: usize,
    swpc_lat: usize,
    xrs_lon: usize,
    xrs_lat: usize,
    region: usize,
}

/// Parses one report file. A body that is not the report, or that stops mid-row, is an
/// error; a row that does not parse is listed in `rejected`.
pub fn parse(body: &[u8], name: &str) -> Result<Fetched> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(body);
    let header = crate::catalog::fields::header_names(&mut rdr, name)?;
    let col = |n: &str| -> Result<usize> {
        match header.iter().position(|h| h == n) {
            Some(i) => Ok(i),
            None => bail!(
                "{name} is not an NCEI flare report: no column {n:?} in its header {}",
                crate::http::snippet(&header.join(","))
            ),
        }
    };
    let cols = Cols {
        peak: col("time")?,
        start: col("start_time")?,
        end: col("end_time")?,
        class: col("flare_class")?,
        source: col("xrsb_irrad_source")?,
        swpc_lon: col("flare_loc_swpc_hgs_lon")?,
        swpc_lat: col("flare_loc_swpc_hgs_lat")?,
        xrs_lon: col("flare_loc_xrs_hgs_lon")?,
        xrs_lat: col("flare_loc_xrs_hgs_lat")?,
        region: col("active_region")?,
    };
    if !body.ends_with(b"\n") {
        bail!(
            "{name} does not end with a line break: the download was cut off ({} bytes)",
            body.len()
        );
    }
    let mut out = Fetched::default();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("reading {name}"))?;
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let line = rec.position().map_or(0, |p| p.line());
        match row(&rec, &cols, header.len()) {
            Ok(r) => out.records.push(r),
            Err(why) => out.rejected.push(format!("{name}:{line}: {why}")),
        }
    }
    Ok(out)
}

fn row(rec: &csv::StringRecord, c: &Cols, width: usize) -> Result<Record, String> {
    if rec.len() != width {
        return Err(format!("{} fields where the header has {width}", rec.len()));
    }
    let f = |i: usize| rec.get(i).unwrap_or("").trim();
    let time = |i: usize, what: &str| -> Result<NaiveDateTime, String> {
        parse_time(f(i)).ok_or_else(|| format!("{what} {:?} is not a time", f(i)))
    };
    let start = time(c.start, "start_time")?;
    let class: GoesClass = f(c.class)
        .parse()
        .map_err(|_| format!("flare_class {:?} is not a GOES class", f(c.class)))?;
    // SWPC's location first, the XRS-derived one as a fallback.
    let (lon, lat) = match location(f(c.swpc_lon), f(c.swpc_lat)) {
        Some(l) => (Some(l.0), Some(l.1)),
        None => {
            location(f(c.xrs_lon), f(c.xrs_lat)).map_or((None, None), |l| (Some(l.0), Some(l.1)))
        }
    };
    Ok(Record {
        start,
        peak: Some(time(c.peak, "time")?),
        end: parse_time(f(c.end)),
        class,
        lon,
        lat,
        region: region(f(c.region), start),
        source: "ncei".into(),
        satellite: Satellite::parse(f(c.source)),
        scale: FluxScale::Science,
    })
}

/// Stonyhurst degrees, or None when missing or a fill value.
fn location(lon: &str, lat: &str) -> Option<(f64, f64)> {
    let lon: f64 = lon.parse().ok()?;
    let lat: f64 = lat.parse().ok()?;
    (lon.is_finite() && lat.is_finite() && lon.abs() <= 180.0 && lat.abs() <= 90.0)
        .then_some((lon, lat))
}

/// NOAA numbers regions with 4 digits in the report; from 2002-06-14 they passed 10000.
fn region(v: &str, start: NaiveDateTime) -> Option<u32> {
    let n: f64 = v.parse().ok()?;
    if !(1.0..100_000.0).contains(&n) {
        return None;
    }
    let n = n as u32;
    let rollover = NaiveDate::from_ymd_opt(2002, 6, 14)?;
    Some(if n < 10_000 && start.date() > rollover {
        n + 10_000
    } else {
        n
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"<html><body><h1>Index of csv</h1><pre>
<a href="sci_xrsf-l2-flrpt_geo_metadata.json">sci_xrsf-l2-flrpt_geo_metadata.json</a> 2025-01-03 10:00  12K
<a href="sci_xrsf-l2-flrpt_geo_s19950101_e20241231_v1-0-0.csv">sci_xrsf-l2-flrpt_geo_s19950101_e20241231_v1-0-0.csv</a>
<a href="sci_xrsf-l2-flrpt_geo_s19950101_e20250630_v1-0-1.csv">sci_xrsf-l2-flrpt_geo_s19950101_e20250630_v1-0-1.csv</a>
<a href="sci_xrsf-l2-flrpt_geo_y2016_v1-0-0.csv">sci_xrsf-l2-flrpt_geo_y2016_v1-0-0.csv</a>
<a href="sci_xrsf-l2-flrpt_geo_y2017_v1-0-0.csv">sci_xrsf-l2-flrpt_geo_y2017_v1-0-0.csv</a>
<a href="sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv">sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv</a>
</pre></body></html>"#;

    #[test]
    fn listing_picks_the_newest_version_and_mission_file() {
        let l = listing(LISTING);
        assert_eq!(
            l.yearly
                .values()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>(),
            [
                "sci_xrsf-l2-flrpt_geo_y2016_v1-0-0.csv",
                "sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv"
            ]
        );
        assert_eq!(
            l.mission.as_ref().map(|m| m.2.as_str()),
            Some("sci_xrsf-l2-flrpt_geo_s19950101_e20250630_v1-0-1.csv")
        );
        assert_eq!(
            files_for(&l, 2016, 2017, "u").unwrap(),
            [
                "sci_xrsf-l2-flrpt_geo_y2016_v1-0-0.csv",
                "sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv"
            ]
        );
        // 2018 has no yearly file: the mission-length file holds every year.
        assert_eq!(
            files_for(&l, 2017, 2018, "u").unwrap(),
            ["sci_xrsf-l2-flrpt_geo_s19950101_e20250630_v1-0-1.csv"]
        );
        let e = files_for(
            &listing("<html>Service Unavailable</html>"),
            2017,
            2017,
            "http://x/",
        )
        .unwrap_err();
        assert!(e.to_string().contains("names no flare report file"), "{e}");
    }

    pub(crate) const HEADER: &str = "time,start_time,end_time,flare_id,xrsb_irrad,flare_class,xrsb_irrad_source,background_irrad,integrated_irrad_peak,integrated_irrad_end,flare_loc_swpc_hgs_lon,flare_loc_swpc_hgs_lat,flare_loc_swpc_source,flare_loc_xrs_hgs_lon,flare_loc_xrs_hgs_lat,flare_loc_xrs_hpc_x,flare_loc_xrs_hpc_y,flare_loc_xrs_source,sequential_flare_num,event_id_swpc,peak_saturated,active_region";

    #[test]
    fn rows_locations_regions_and_rejects() {
        let body = format!(
            "{HEADER}\n\
             2017-09-06 12:02:00,2017-09-06 11:53:00,2017-09-06 12:10:00,201709061153,1.33e-03,X13.3,GOES-15,1e-6,0.1,0.2,34,-9,SWPC,33.1,-8.8,500,-200,XRS,1,42,0,2673\n\
             2001-04-02 21:51:00,2001-04-02 21:32:00,2001-04-02 22:03:00,200104022132,2.0e-03,X20.0,GOES-8,1e-6,0.1,0.2,,,,-70.5,18.2,-880,300,XRS,2,,1,9393\n\
             2017-09-07 01:00:00,2017-09-07 00:50:00,,201709070050,2.0e-06,C2.0,GOES-15,1e-6,0.1,0.2,,,,,,,,,3,,0,\n\
             2017-09-08 01:00:00,2017-09-08 00:50:00,,201709080050,2.0e-06,Z2.0,GOES-15,1e-6,0.1,0.2,,,,,,,,,4,,0,\n"
        );
        let f = parse(body.as_bytes(), "y2017.csv").unwrap();
        assert_eq!(f.records.len(), 3);
        let x = &f.records[0];
        assert_eq!(x.start.to_string(), "2017-09-06 11:53:00");
        assert_eq!(x.peak.unwrap().to_string(), "2017-09-06 12:02:00");
        assert_eq!(
            (x.class.as_str(), x.lon, x.lat),
            ("X13.3", Some(34.0), Some(-9.0))
        );
        assert_eq!(
            (x.region, x.satellite.clone()),
            (Some(12673), Some(Satellite::Goes(15)))
        );
        assert_eq!(x.scale, FluxScale::Science);
        // Before 2002-06-14 regions keep 4 digits; the XRS location fills in.
        let y = &f.records[1];
        assert_eq!(
            (y.region, y.lon, y.lat),
            (Some(9393), Some(-70.5), Some(18.2))
        );
        assert_eq!(
            (f.records[2].lon, f.records[2].region, f.records[2].end),
            (None, None, None)
        );
        assert_eq!(
            f.rejected,
            ["y2017.csv:5: flare_class \"Z2.0\" is not a GOES class"]
        );
    }

    #[test]
    fn garbage_and_cut_off_bodies_are_errors() {
        let e = parse(b"<html><body>502 Bad Gateway</body></html>\n", "y.csv").unwrap_err();
        assert!(e.to_string().contains("is not an NCEI flare report"), "{e}");
        let body = format!("{HEADER}\n2017-09-06 12:02:00,2017-09-06 11:53:00,2017-09-06 12:1");
        let e = parse(body.as_bytes(), "y.csv").unwrap_err();
        assert!(e.to_string().contains("cut off"), "{e}");
    }
}
