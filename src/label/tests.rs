use super::*;
use crate::instant::parse_time;

fn t(s: &str) -> NaiveDateTime {
    parse_time(s).unwrap()
}

fn flare(start: &str, class: &str, lon: Option<f64>, lat: Option<f64>) -> Flare {
    Flare {
        start: t(start),
        class: class.parse().unwrap(),
        lon,
        lat,
        satellite: None,
        scale: crate::catalog::FluxScale::Operational,
    }
}

fn hourly_images(from: &str, hours: i64) -> Images {
    let names: Vec<String> = issue_times(
        t(from),
        t(from) + Duration::hours(hours - 1),
        Duration::hours(1),
    )
    .into_iter()
    .map(|t| Instant(t).relative_path("jpg"))
    .collect();
    Images::from_lines(names.iter().map(String::as_str))
}

fn cfg(threshold: &str) -> Config {
    Config {
        threshold: threshold.parse().unwrap(),
        ..Config::paper()
    }
}

#[test]
fn folds_by_calendar_quarter() {
    let months: Vec<u8> = (1..=12)
        .map(|m| {
            Fold::of(
                t(&format!("2015-{m:02}-15"))
                    .date()
                    .and_time(NaiveTime::MIN),
            )
            .number()
        })
        .collect();
    assert_eq!(months, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]);
}

#[test]
fn thresholds_m5_and_c1() {
    let flares = vec![
        flare("2012-01-01T05:00:00", "M4.9", None, None),
        flare("2012-01-02T05:00:00", "M5.0", None, None),
        flare("2012-01-03T05:00:00", "C1.0", None, None),
        flare("2012-01-04T05:00:00", "B9.9", None, None),
    ];
    let images = hourly_images("2012-01-01T00:00:00", 4 * 24);
    let issues = [
        "2012-01-01T00:00:00",
        "2012-01-02T00:00:00",
        "2012-01-03T00:00:00",
        "2012-01-04T00:00:00",
    ];
    let targets = |c: &Config| -> Vec<bool> {
        let rows = label(c, &flares, &images).unwrap();
        issues
            .iter()
            .map(|s| rows.iter().find(|r| r.instant.0 == t(s)).unwrap().target)
            .collect()
    };
    assert_eq!(targets(&cfg("M5.0")), [false, true, false, false]);
    assert_eq!(targets(&cfg("C1.0")), [true, true, true, false]);
    assert_eq!(targets(&cfg("M1.0")), [true, true, false, false]);
}

#[test]
fn rows_keep_only_instances_with_images() {
    let flares = vec![flare("2012-01-01T05:00:00", "X1.0", Some(10.0), Some(-5.0))];
    let images = Images::from_lines([
        "a/2012/01/01/HMI.m2012.01.01_02.00.00.jpg",
        "a/2012/01/01/HMI.m2012.01.01_04.00.00.jpg",
        "a/2012/01/01/HMI.m2012.01.01_04.30.00.jpg", // off the hourly grid
        "a/2012/01/01/HMI.m2012.01.01_06.00.00.jpg",
    ]);
    let c = Config {
        start: Some(t("2012-01-01T00:00:00")),
        end: Some(t("2012-01-01T23:00:00")),
        ..cfg("M1.0")
    };
    let rows = label(&c, &flares, &images).unwrap();
    let got: Vec<(String, bool)> = rows.iter().map(|r| (r.name.clone(), r.target)).collect();
    assert_eq!(
        got,
        [
            ("2012/01/01/HMI.m2012.01.01_02.00.00.jpg".to_string(), true),
            ("2012/01/01/HMI.m2012.01.01_04.00.00.jpg".to_string(), true),
            ("2012/01/01/HMI.m2012.01.01_06.00.00.jpg".to_string(), false),
        ]
    );
}

#[test]
fn default_range_is_catalogue_span_clipped_to_images() {
    let flares = vec![
        flare("2012-01-01T05:00:00", "C1.0", None, None),
        flare("2012-01-03T05:00:00", "C1.0", None, None),
    ];
    let images = hourly_images("2011-12-31T00:00:00", 24 * 10);
    let (s, e) = issue_range(&Config::paper(), &flares, &images).unwrap();
    assert_eq!((s, e), (t("2012-01-01T00:00:00"), t("2012-01-03T05:00:00")));
    let none = Images::default();
    assert!(issue_range(&Config::paper(), &[], &none).is_err());
}

#[test]
fn table_lines_in_reference_format() {
    let flares = vec![
        flare(
            "2011-02-15T01:44:00",
            "X2.2",
            Some(15.1159291056),
            Some(-21.0),
        ),
        flare("2011-02-14T17:20:00", "C6.6", Some(21.0), Some(-20.0)),
        flare("2011-02-14T19:00:00", "C4.8", None, None),
        flare("2011-02-16T05:00:00", "M1.0", None, Some(3.0)),
    ];
    let c = Config {
        start: Some(t("2011-02-14T00:00:00")),
        end: Some(t("2011-02-16T10:00:00")),
        ..Config::paper()
    };
    let images = hourly_images("2011-02-14T00:00:00", 60);
    let rows = label(&c, &flares, &images).unwrap();
    let line = |s: &str| full_line(rows.iter().find(|r| r.instant.0 == t(s)).unwrap());
    assert_eq!(
        line("2011-02-14T10:00:00"),
        "2011/02/14/HMI.m2011.02.14_10.00.00.jpg,1,X2.2,15.1159291056,-21.0,\"['C6.6', 'C4.8']\",\"[21.0, 'UNK']\",\"[-20.0, 'UNK']\""
    );
    assert_eq!(
        line("2011-02-15T06:00:00"),
        "2011/02/15/HMI.m2011.02.15_06.00.00.jpg,1,M1.0,UNK,3.0,0,0,0"
    );
    assert_eq!(
        line("2011-02-16T06:00:00"),
        "2011/02/16/HMI.m2011.02.16_06.00.00.jpg,0,NF,unk,unk,0,0,0"
    );
}

#[test]
fn writes_every_table_atomically() {
    let dir = std::env::temp_dir().join(format!("flarecast-label-unit-{}", std::process::id()));
    let flares = vec![flare("2012-04-01T05:00:00", "M1.0", None, None)];
    let images = Images::from_lines([
        "2012/03/31/HMI.m2012.03.31_23.00.00.jpg",
        "2012/04/01/HMI.m2012.04.01_00.00.00.jpg",
    ]);
    let catalog = Catalog {
        format: crate::catalog::Format::Integrated,
        flares,
        rejected: Vec::new(),
        duplicates: 0,
    };
    let c = Config {
        start: Some(t("2012-03-31T00:00:00")),
        end: Some(t("2012-04-01T00:00:00")),
        ..Config::paper()
    };
    let s = run(&c, &catalog, &images, &dir).unwrap();
    assert_eq!((s.instances, s.positives), (2, 2));
    assert_eq!(
        (s.folds[0].val, s.folds[0].train, s.folds[1].val),
        (1, 1, 1)
    );
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    assert_eq!(
        read("simplified_data_labels/Fold1_val.csv"),
        "label,goes_class\n2012/03/31/HMI.m2012.03.31_23.00.00.jpg,1\n"
    );
    assert_eq!(
        read("simplified_data_labels/Fold3_val.csv"),
        "label,goes_class\n"
    );
    assert_eq!(read("Fold2_train.csv").lines().count(), 2);
    assert_eq!(read("labels.csv").lines().count(), 3);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| crate::fsio::is_temp_name(&e.file_name().to_string_lossy()))
        .collect();
    assert!(leftovers.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
