use super::*;

fn parse_str(text: &str, skip: bool) -> Result<Catalog> {
    parse(text.as_bytes(), "cat.csv", None, skip)
}

fn row_error(text: &str) -> RowError {
    let e = parse_str(text, false).unwrap_err();
    e.downcast::<RowError>().expect("a RowError")
}

const INTEGRATED: &str = "start_time,goes_class,fl_lon,fl_lat,source_path\n\
2010-12-14 15:03:00,C2.3,55,16,a.csv\n\
2011-01-14 01:28:00,C1.6,UNK,UNK,a.csv\n\
2011-02-15 01:44:00,X2.2,15.1159291056,-21,a.csv\n";

#[test]
fn integrated_list() {
    let c = parse_str(INTEGRATED, false).unwrap();
    assert_eq!(c.format, Format::Integrated);
    assert_eq!(c.flares.len(), 3);
    assert_eq!(c.flares[0].start.to_string(), "2010-12-14 15:03:00");
    assert_eq!(c.flares[0].class.as_str(), "C2.3");
    assert_eq!((c.flares[0].lon, c.flares[0].lat), (Some(55.0), Some(16.0)));
    assert_eq!((c.flares[1].lon, c.flares[1].lat), (None, None));
    assert_eq!(c.flares[2].lon, Some(15.1159291056));
    assert!(c.rejected.is_empty());
}

#[test]
fn hek_with_unnamed_index_and_blank_padding() {
    // 13 names, 14 fields: a leading unnamed index; noaa_ar padded with blanks.
    let text = "event_starttime,event_peaktime,event_endtime,goes_class_ind,goes_class,goes_class_val,integrated_flux,noaa_ar,position_hgs,hgs_lat,hgs_lon,hpc_x,hpc_y\n\
0,2010-01-02 07:09:00,2010-01-02 07:24:00,2010-01-02 07:40:00,C,C1.0,1e-06,1.2E-03,11039,S26W41,-26.0,41.0,577.1,-391.8\n\
1,2010-01-02T14:08:00.000,2010-01-02 14:16:00,2010-01-02 14:24:00,C,C2.6,2.6e-06,1.4E-03,     ,S28W40,,,555.5,-421.9\n";
    let c = parse_str(text, false).unwrap();
    assert_eq!(c.format, Format::Hek);
    assert_eq!(c.flares[0].class.as_str(), "C1.0");
    // hgs_lat comes before hgs_lon in this export.
    assert_eq!(
        (c.flares[0].lon, c.flares[0].lat),
        (Some(41.0), Some(-26.0))
    );
    assert_eq!(c.flares[1].start.to_string(), "2010-01-02 14:08:00");
    assert_eq!((c.flares[1].lon, c.flares[1].lat), (None, None));
}

#[test]
fn swpc_date_and_hhmm() {
    let text = "date,event_no,start_time,max_time,end_time,goes_sat,goes_channel,goes_class_ind,goes_class,integrated_flux,noaa_ar,ts\n\
0,20100102,4300,0709,0724,0740,G14,1-8A,C,C1.0,1.2E-03,11039,201001020709\n\
1,20100102,4370,2357,0016,0024,G14,1-8A,M,M2.6,1.4E-03,     ,201001022357\n";
    let c = parse_str(text, false).unwrap();
    assert_eq!(c.format, Format::Swpc);
    assert_eq!(c.flares[0].start.to_string(), "2010-01-02 07:09:00");
    assert_eq!(c.flares[1].start.to_string(), "2010-01-02 23:57:00");
    assert_eq!(c.flares[1].class.as_str(), "M2.6");
    assert_eq!(c.flares[1].lon, None);
}

#[test]
fn ssw_codes_with_aia_fallback() {
    let text = ",flare_start,flare_peak,flare_end,class,aia_loc,aia_xcen,aia_ycen,loc,noaa_ar\n\
0,2010-04-13 04:39:00,2010-04-13 04:43:00,2010-04-13 04:49:00,B3.7,S06W07,127.9,-188.2,,11062\n\
1,2010-04-17 04:30:00,2010-04-17 05:57:00,2010-04-17 08:24:00,M2.2,N17E83,-913.1,282.8,N15E80,\n\
2,2010-04-17 21:34:00,2010-04-18 02:18:00,2010-04-18 04:16:00,C1.3,,,,,\n";
    let c = parse_str(text, false).unwrap();
    assert_eq!(c.format, Format::Ssw);
    assert_eq!((c.flares[0].lon, c.flares[0].lat), (Some(7.0), Some(-6.0)));
    assert_eq!(
        (c.flares[1].lon, c.flares[1].lat),
        (Some(-80.0), Some(15.0))
    );
    assert_eq!((c.flares[2].lon, c.flares[2].lat), (None, None));
}

#[test]
fn each_bad_class_names_file_line_and_value() {
    for bad in ["M", "Q1.0", "X1.2.3", ""] {
        let text = format!("{INTEGRATED}2011-03-09 23:13:00,{bad},9,8,a.csv\n");
        let e = row_error(&text);
        assert_eq!(
            e,
            RowError::Class {
                file: "cat.csv".into(),
                line: 5,
                value: bad.into()
            }
        );
        let msg = e.to_string();
        assert!(msg.starts_with("cat.csv:5: GOES class"), "{msg}");
        assert!(msg.contains(&format!("{bad:?}")), "{msg}");
    }
}

#[test]
fn bad_time_and_location_name_the_value() {
    let e = row_error(&format!("{INTEGRATED}2011-02-30 01:00:00,M1.0,9,8,a.csv\n"));
    assert_eq!(
        e.to_string(),
        "cat.csv:5: start_time \"2011-02-30 01:00:00\" is not a time"
    );
    let e = row_error(&format!("{INTEGRATED}yesterday,M1.0,9,8,a.csv\n"));
    assert_eq!(e.line(), 5);
    let e = row_error(&format!(
        "{INTEGRATED}2011-03-01 01:00:00,M1.0,east,8,a.csv\n"
    ));
    assert_eq!(
        e.to_string(),
        "cat.csv:5: fl_lon \"east\" is not a location"
    );
    let e = row_error("start_time,goes_class,fl_lon,fl_lat\n2011-03-01 01:00:00,M1.0\n");
    assert!(
        matches!(
            e,
            RowError::ShortRow {
                line: 2,
                found: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn skip_bad_rows_counts_them() {
    let text = format!(
        "{INTEGRATED}2011-03-09 23:13:00,M,9,8,a.csv\n2011-03-10 00:00:00,M1.0,9,8,a.csv\n\
         bad time,M1.0,9,8,a.csv\n2011-03-11 00:00:00,Q1.0,9,8,a.csv\n"
    );
    assert!(parse_str(&text, false).is_err());
    let c = parse_str(&text, true).unwrap();
    assert_eq!(c.flares.len(), 4);
    let lines: Vec<u64> = c.rejected.iter().map(RowError::line).collect();
    assert_eq!(lines, [5, 7, 8]);
}

#[test]
fn unknown_header_and_forced_format() {
    let e = parse_str("when,what\n2011-01-01,M1\n", false).unwrap_err();
    assert!(e.to_string().contains("unknown catalogue layout"), "{e}");
    let e = parse(
        "start_time,goes_class\n".as_bytes(),
        "x.csv",
        Some(Format::Ssw),
        false,
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("no column \"flare_start\""),
        "{e:#}"
    );
}

#[test]
fn byte_order_mark_and_crlf() {
    let text = "\u{feff}start_time,goes_class,fl_lon,fl_lat\r\n2012-03-07 00:02:00,X5.4,-27,17\r\n";
    let c = parse_str(text, false).unwrap();
    assert_eq!(c.flares[0].class.as_str(), "X5.4");
    assert_eq!(c.flares[0].lat, Some(17.0));
}
