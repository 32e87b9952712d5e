//! `flarecast download catalog` against local stand-ins of NCEI, HEK and SWPC (route
//! tables on the fixture server) serving real flares in each service's layout.

use crate::common;

use flarecast::testing::http::{Answer, Fault, Route, Server};
use std::path::{Path, PathBuf};

fn realdata_catalog(name: &str) -> PathBuf {
    common::realdata().join("catalogs").join(name)
}

const SWPC_LIST: &str = "hayesla_swpc_flarelist_20100101-20210810.csv";
const HEK_LIST: &str = "hayesla_final_flare_list_sc24.csv";

/// Lines of a real catalogue (header first) whose first data field after the index
/// starts with one of `prefixes`.
fn real_rows(name: &str, prefixes: &[&str]) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(realdata_catalog(name)).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .filter(|l| {
            let key = l.split(',').nth(1).unwrap_or("");
            prefixes.iter().any(|p| key.starts_with(p))
        })
        .map(str::to_string)
        .collect();
    (header, rows)
}

fn download(args: &[&str], url: &str, out: &Path) -> assert_cmd::assert::Assert {
    common::flarecast()
        .args(["download", "catalog"])
        .args(args)
        .args([
            "--api-url",
            url,
            "--retries",
            "1",
            "--backoff",
            "10ms",
            "--timeout",
            "10s",
            "--json",
            "--out",
        ])
        .arg(out)
        .assert()
}

fn summary(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

/// The NCEI source over September 2017.
const NCEI_SEPT_2017: [&str; 6] = [
    "--source",
    "ncei",
    "--start",
    "2017-09-01T00:00:00",
    "--end",
    "2017-10-01T00:00:00",
];

/// `labels.csv` of `catalog` over the reference's images from `start` to `end`.
fn labels(catalog: &Path, start: &str, end: &str, extra: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    common::flarecast()
        .arg("label")
        .arg("--catalog")
        .arg(catalog)
        .arg("--file-list")
        .arg(common::realdata().join("original_labels/totalfiles_jpg_512.csv"))
        .args(["--start", start, "--end", end])
        .args(extra)
        .arg("--out")
        .arg(out.path())
        .assert()
        .success();
    std::fs::read_to_string(out.path().join("labels.csv")).unwrap()
}

/// `YYYYMMDD` + `HHMM` (with the day rolled over when `hhmm` is before `after`) as SWPC's
/// JSON writes times.
fn swpc_time(date: &str, hhmm: &str, after: Option<&str>) -> String {
    let day = chrono::NaiveDate::parse_from_str(date, "%Y%m%d").unwrap();
    let hhmm = format!("{:0>4}", hhmm.trim());
    let day = match after {
        Some(a) if hhmm < format!("{:0>4}", a.trim()) => day.succ_opt().unwrap(),
        _ => day,
    };
    format!(
        "{}T{}:{}:00Z",
        day.format("%Y-%m-%d"),
        &hhmm[..2],
        &hhmm[2..]
    )
}

/// The SWPC feed of real event-list rows, plus a flare still in progress.
fn swpc_feed(rows: &[String]) -> String {
    let mut entries: Vec<String> = rows
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            // index,date,event_no,start,max,end,goes_sat,channel,class_ind,class,...
            let (date, start, max, end, sat, class) = (f[1], f[3], f[4], f[5], f[6], f[9]);
            let sat = sat.trim_start_matches('G');
            format!(
                r#"{{"time_tag": "{b}", "satellite": {sat}, "current_class": "{class}", "current_ratio": 0.1, "current_int_xrlong": 0.001, "begin_time": "{b}", "begin_class": "C1.0", "max_time": "{m}", "max_class": "{class}", "max_xrlong": 1e-5, "end_time": "{e}", "end_class": "C1.0", "max_ratio_time": null, "max_ratio": null}}"#,
                b = swpc_time(date, start, None),
                m = swpc_time(date, max, Some(start)),
                e = swpc_time(date, end, Some(start)),
            )
        })
        .collect();
    entries.push(r#"{"time_tag": "2012-03-10T23:50:00Z", "satellite": 15, "current_class": "M2.0", "current_ratio": 0.2, "current_int_xrlong": 0.01, "begin_time": "2012-03-10T23:41:00Z", "begin_class": "C5.0", "max_time": null, "max_class": null, "max_xrlong": null, "end_time": null, "end_class": null, "max_ratio_time": null, "max_ratio": null}"#.into());
    format!("[\n{}\n]\n", entries.join(",\n"))
}

#[test]
fn swpc_feed_labels_as_its_rows_and_append_adds_nothing_twice() {
    let days = [
        "20120304", "20120305", "20120306", "20120307", "20120308", "20120309", "20120310",
    ];
    let (header, rows) = real_rows(SWPC_LIST, &days);
    assert_eq!(rows.len(), 73, "a week of real SWPC events");
    let server = Server::start(vec![Route::answer(
        "/json/goes/primary/xray-flares-7-day.json",
        Answer::json(swpc_feed(&rows)),
    )])
    .unwrap();
    let url = format!("{}/json/goes/primary/xray-flares-7-day.json", server.url);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data_source/goes_flares.csv");
    let s = summary(&download(&["--source", "swpc"], &url, &out).success());
    assert_eq!(
        common::counts(
            &s,
            &["fetched", "in_progress_skipped", "rows", "rows_rejected"]
        ),
        [Some(73), Some(1), Some(73), Some(0)]
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.contains("\n2012-03-07 00:02:00,2012-03-07 00:24:00,2012-03-07 00:40:00,X5.4,,,,swpc,GOES-15,operational\n"), "{written}");
    assert_eq!(s["by_year"][0]["year"], 2012);
    assert_eq!(
        (s["by_year"][0]["x"].as_u64(), s["by_year"][0]["m"].as_u64()),
        (Some(3), Some(13))
    );

    // A daily run with --append: nothing new, nothing doubled, the file unchanged.
    for _ in 0..2 {
        let s = summary(&download(&["--source", "swpc", "--append"], &url, &out).success());
        assert_eq!(
            common::counts(&s, &["added", "already_present", "rows"]),
            [Some(0), Some(73), Some(73)]
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), written);
    }

    // Round trip: the catalogue labels exactly as the event-list rows it came from.
    let original = dir.path().join("swpc_rows.csv");
    std::fs::write(&original, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let (a, b) = ("2012-03-04T00:00:00", "2012-03-10T23:00:00");
    let ours = labels(&out, a, b, &[]);
    assert_eq!(ours, labels(&original, a, b, &[]));
    // The reference has 23 images that week; 17 of their windows hold an M or X flare.
    assert_eq!(ours.lines().count(), 1 + 23);
    assert_eq!(ours.lines().filter(|l| l.contains(".jpg,1,")).count(), 17);
}

/// One HEK answer page of real HEK-format rows; rows without a location get HEK's (0, 0).
fn hek_page(rows: &[String], overmax: bool) -> String {
    let events: Vec<String> = rows
        .iter()
        .map(|l| {
            // index,start,peak,end,class_ind,class,class_val,flux,noaa_ar,position,hgs_lat,hgs_lon,hpc_x,hpc_y
            let f: Vec<&str> = l.split(',').collect();
            let num = |s: &str| if s.trim().is_empty() { "0".to_string() } else { s.trim().to_string() };
            let t = |s: &str| s.trim().replace(' ', "T");
            format!(
                r#"{{"event_starttime": "{}", "event_peaktime": "{}", "event_endtime": "{}", "fl_goescls": "{}", "ar_noaanum": {}, "hpc_x": {}, "hpc_y": {}, "hgs_x": {}, "hgs_y": {}, "frm_name": "SWPC", "event_type": "FL"}}"#,
                t(f[1]), t(f[2]), t(f[3]), f[5], num(f[8]), num(f[12]), num(f[13]), num(f[11]), num(f[10])
            )
        })
        .collect();
    format!(
        r#"{{"result": [{}], "overmax": {overmax}}}"#,
        events.join(",\n")
    )
}

#[test]
fn hek_month_by_month_paged_while_overmax_without_duplicates() {
    let (header, feb) = real_rows(HEK_LIST, &["2011-02"]);
    let (_, mar) = real_rows(HEK_LIST, &["2011-03"]);
    assert_eq!((feb.len(), mar.len()), (FEB_2011, MAR_2011));
    // February comes in two pages, the second repeating the first's last event.
    let half = feb.len() / 2;
    let page2: Vec<String> = feb[half - 1..].to_vec();
    let month = |start: &str, page: &str, body: String| {
        Route::answer("/hek/her", Answer::json(body))
            .param("event_starttime", start)
            .param("page", page)
            .param("param0", "frm_name")
            .param("value0", "SWPC")
    };
    let server = Server::start(vec![
        month("2011-02-01T00:00:00", "1", hek_page(&feb[..half], true)),
        month("2011-02-01T00:00:00", "2", hek_page(&page2, false)),
        month("2011-03-01T00:00:00", "1", hek_page(&mar, false)),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hek.csv");
    let url = format!("{}/hek/her", server.url);
    let s = summary(
        &download(
            &[
                "--source",
                "hek",
                "--start",
                "2011-02-01T00:00:00",
                "--end",
                "2011-04-01T00:00:00",
            ],
            &url,
            &out,
        )
        .success(),
    );
    assert_eq!(server.count("/hek/her"), 3);
    assert_eq!(
        common::counts(&s, &["fetched", "duplicates_dropped", "rows"]),
        [
            Some((FEB_2011 + 1 + MAR_2011) as u64),
            Some(1),
            Some((FEB_2011 + MAR_2011) as u64)
        ]
    );
    let months: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{}..{} p{}",
                r.param("event_starttime").unwrap(),
                r.param("event_endtime").unwrap(),
                r.param("page").unwrap()
            )
        })
        .collect();
    assert_eq!(
        months,
        [
            "2011-02-01T00:00:00..2011-03-01T00:00:00 p1",
            "2011-02-01T00:00:00..2011-03-01T00:00:00 p2",
            "2011-03-01T00:00:00..2011-04-01T00:00:00 p1"
        ]
    );
    // Round trip with locations: labels.csv equals the one from the original rows.
    let original = dir.path().join("hek_rows.csv");
    std::fs::write(
        &original,
        format!("{header}\n{}\n{}\n", feb.join("\n"), mar.join("\n")),
    )
    .unwrap();
    let (a, b) = ("2011-02-01T00:00:00", "2011-03-30T23:00:00");
    let ours = labels(&out, a, b, &[]);
    assert_eq!(ours, labels(&original, a, b, &[]));
    assert!(
        ours.contains(",1,X2.2,12.0,-20.0,"),
        "the X2.2 of 2011-02-15 at S20W12"
    );
}

/// Flares of the real HEK-format list in February and March 2011.
const FEB_2011: usize = 125;
const MAR_2011: usize = 167;

const NCEI_HEADER: &str = "time,start_time,end_time,flare_id,xrsb_irrad,flare_class,xrsb_irrad_source,background_irrad,integrated_irrad_peak,integrated_irrad_end,flare_loc_swpc_hgs_lon,flare_loc_swpc_hgs_lat,flare_loc_swpc_source,flare_loc_xrs_hgs_lon,flare_loc_xrs_hgs_lat,flare_loc_xrs_hpc_x,flare_loc_xrs_hpc_y,flare_loc_xrs_source,sequential_flare_num,event_id_swpc,peak_saturated,active_region";

/// The NCEI directory with a listing, two versions of 2017 and a mission-length file.
fn ncei_server(y2017: &str, fault: Option<Fault>) -> Server {
    let dir = "/platforms/goes/csv";
    let listing = String::from(
        "<html><body><pre>\n\
         <a href=\"sci_xrsf-l2-flrpt_geo_metadata.json\">sci_xrsf-l2-flrpt_geo_metadata.json</a>\n\
         <a href=\"sci_xrsf-l2-flrpt_geo_s19950101_e20250630_v1-0-1.csv\">sci_xrsf-l2-flrpt_geo_s19950101_e20250630_v1-0-1.csv</a>\n\
         <a href=\"sci_xrsf-l2-flrpt_geo_y2017_v1-0-0.csv\">sci_xrsf-l2-flrpt_geo_y2017_v1-0-0.csv</a>\n\
         <a href=\"sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv\">sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv</a>\n\
         </pre></body></html>\n"
    );
    let mut file = Route::answer(
        &format!("{dir}/sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv"),
        Answer::ok("text/csv", y2017.to_string()),
    );
    if let Some(f) = fault {
        file = file.fault(f);
    }
    Server::start(vec![
        Route::answer(dir, Answer::ok("text/html", listing)),
        file,
        // An old version must not be read.
        Route::answer(
            &format!("{dir}/sci_xrsf-l2-flrpt_geo_y2017_v1-0-0.csv"),
            Answer::text(410, "gone"),
        ),
    ])
    .unwrap()
}

fn ncei_2017() -> String {
    format!(
        "{NCEI_HEADER}\n\
         2017-09-04 20:33:00,2017-09-04 20:28:00,2017-09-04 20:37:00,201709042028,8.1e-05,M8.1,GOES-15,3e-06,0.05,0.07,11.0,-10.0,SWPC,12.1,-9.2,180,-240,XRS,5001,7001,0,2673\n\
         2017-09-06 12:02:00,2017-09-06 11:53:00,2017-09-06 12:10:00,201709061153,1.33e-03,X13.3,GOES-15,4e-06,1.2,1.8,34.0,-9.0,SWPC,33.1,-8.8,500,-200,XRS,5002,7002,1,2673\n\
         2017-09-07 10:15:00,2017-09-07 10:11:00,2017-09-07 10:18:00,201709071011,1.0e-05,M1.0,GOES-15,4e-06,0.01,0.02,,,,,,,,,5003,,0,\n\
         2017-09-08 07:49:00,2017-09-08 07:40:00,2017-09-08 07:58:00,201709080740,1.7e-05,M1.7,GOES-15,4e-06,0.02,0.03,,,,-95.5,12.0,-950,200,XRS,5004,,0,2674\n\
         2017-09-09 10:00:00,2017-09-09 09:50:00,2017-09-09 10:10:00,201709090950,,bad,GOES-15,4e-06,0.02,0.03,,,,,,,,,5005,,0,\n\
         2018-01-01 00:10:00,2018-01-01 00:05:00,2018-01-01 00:15:00,201801010005,1.1e-06,C1.1,GOES-15,4e-07,0.001,0.002,,,,,,,,,5006,,0,\n"
    )
}

#[test]
fn ncei_report_from_the_listing_with_rejected_rows_listed() {
    let server = ncei_server(&ncei_2017(), None);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ncei.csv");
    let url = format!("{}/platforms/goes/csv/", server.url);
    let a = download(&NCEI_SEPT_2017, &url, &out)
        .success()
        .stderr(predicates::str::contains(
            "row skipped: sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv:6: flare_class \"bad\" is not a GOES class",
        ));
    let s = summary(&a);
    assert_eq!(
        common::counts(&s, &["fetched", "rows_rejected", "outside_range", "rows"]),
        [Some(5), Some(1), Some(1), Some(4)]
    );
    assert_eq!(
        server.count("/platforms/goes/csv/sci_xrsf-l2-flrpt_geo_y2017_v1-0-0.csv"),
        0
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "start_time,peak_time,end_time,goes_class,fl_lon,fl_lat,noaa_ar,source,satellite,scale\n\
         2017-09-04 20:28:00,2017-09-04 20:33:00,2017-09-04 20:37:00,M8.1,11,-10,12673,ncei,GOES-15,science\n\
         2017-09-06 11:53:00,2017-09-06 12:02:00,2017-09-06 12:10:00,X13.3,34,-9,12673,ncei,GOES-15,science\n\
         2017-09-07 10:11:00,2017-09-07 10:15:00,2017-09-07 10:18:00,M1.0,,,,ncei,GOES-15,science\n\
         2017-09-08 07:40:00,2017-09-08 07:49:00,2017-09-08 07:58:00,M1.7,-95.5,12,12674,ncei,GOES-15,science\n"
    );
    // On the paper's operational scale a science M1.0 of GOES-15 is a C7.0: the window
    // after 2017-09-06 12:00 holds only that flare, positive on one scale, not the other.
    let hour = |t: &str, extra: &[&str]| {
        labels(&out, t, t, extra)
            .lines()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let (noon, next_day) = ("2017-09-06T12:00:00", "2017-09-07T08:00:00");
    assert_eq!(
        hour(noon, &["--flux-scale", "science"]),
        "2017/09/06/HMI.m2017.09.06_12.00.00.jpg,1,M1.0,UNK,UNK,0,0,0"
    );
    assert_eq!(
        hour(noon, &[]),
        "2017/09/06/HMI.m2017.09.06_12.00.00.jpg,0,C7.0,UNK,UNK,0,0,0"
    );
    assert_eq!(
        hour(next_day, &[]),
        "2017/09/07/HMI.m2017.09.07_08.00.00.jpg,1,M1.1,-95.5,12.0,['C7.0'],['UNK'],['UNK']"
    );
}

#[test]
fn server_errors_garbage_and_cut_off_answers_leave_the_catalogue_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("goes.csv");
    let previous =
        "start_time,peak_time,end_time,goes_class,fl_lon,fl_lat,noaa_ar,source,satellite,scale\n\
                    2017-08-01 00:00:00,2017-08-01 00:10:00,,M1.0,,,,ncei,GOES-15,science\n";
    for (fault, says) in [
        (Fault::ServerError(100), "HTTP 500 (after 2 attempts)"),
        (Fault::HtmlPage, "is not an NCEI flare report"),
        (Fault::TruncatedHalf, "cut off"),
        (Fault::DropMidBody(100), "body"),
        (Fault::NotFound, "HTTP 404"),
    ] {
        std::fs::write(&out, previous).unwrap();
        let server = ncei_server(&ncei_2017(), Some(fault.clone()));
        let url = format!("{}/platforms/goes/csv/", server.url);
        for append in [false, true] {
            let mut args = NCEI_SEPT_2017.to_vec();
            if append {
                args.push("--append");
            }
            download(&args, &url, &out)
                .failure()
                .code(1)
                .stderr(predicates::str::contains(
                    "sci_xrsf-l2-flrpt_geo_y2017_v1-0-1.csv",
                ))
                .stderr(predicates::str::contains(says));
            assert_eq!(
                std::fs::read_to_string(&out).unwrap(),
                previous,
                "{fault:?}"
            );
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["goes.csv"], "no temporary left behind");
    }
    // SWPC and HEK answers that are not theirs.
    for (source, path, body) in [
        (
            "swpc",
            "/feed.json",
            "[{\"time_tag\": \"2024-05-14T16:46:00Z\", \"max_cl",
        ),
        ("hek", "/her", "<html><title>502 Proxy Error</title></html>"),
    ] {
        let server = Server::start(vec![Route::answer(path, Answer::json(body))]).unwrap();
        let mut args = vec!["--source", source];
        if source == "hek" {
            args.extend([
                "--start",
                "2011-02-01T00:00:00",
                "--end",
                "2011-02-02T00:00:00",
            ]);
        }
        download(&args, &format!("{}{path}", server.url), &out)
            .failure()
            .code(1)
            .stderr(predicates::str::contains("the answer is not JSON"));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), previous);
    }
}

#[test]
fn a_429_is_retried_after_retry_after_and_a_500_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("goes.csv");
    for fault in [
        Fault::TooManyRequests { retry_after_s: 1 },
        Fault::ServerError(1),
    ] {
        let server = ncei_server(&ncei_2017(), Some(fault));
        let url = format!("{}/platforms/goes/csv", server.url);
        let s = summary(&download(&NCEI_SEPT_2017, &url, &out).success());
        assert_eq!(
            common::counts(&s, &["rows", "requests"]),
            [Some(4), Some(3)]
        );
    }
    // Without retries the 429 is the error.
    let server = ncei_server(
        &ncei_2017(),
        Some(Fault::TooManyRequests { retry_after_s: 1 }),
    );
    common::flarecast()
        .args(["download", "catalog"])
        .args(NCEI_SEPT_2017)
        .args(["--retries", "0", "--api-url"])
        .arg(format!("{}/platforms/goes/csv", server.url))
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .code(1)
        .stderr(predicates::str::contains("HTTP 429"));
}
