//! Seeded mutation tests of the readers that take files from strangers: weights (the
//! pickle inside a `.pth`, whole `.pth` zips, safetensors), JP2 boxes, `.npy` headers,
//! catalogues (CSV layouts, HEK and SWPC JSON, NCEI CSV), label tables and forecast
//! records. Each reader gets a few thousand mutations of real files and must answer with
//! a value or an error: a panic, a case that runs for seconds, or memory that grows
//! without bound fails the test. The mutations are seeded, so a failure repeats; its
//! message names the reader and the case.

use crate::common;

use flarecast::model::{pth, weights, Arch, ModelMeta};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// A single case taking this long is a hang (the readers take milliseconds).
const SLOW_CASE: Duration = Duration::from_secs(20);

/// Byte strings that mean something to one reader or another.
const TOKENS: &[&[u8]] = &[
    b"..",
    b"../",
    b"/",
    b"\n",
    b",",
    b"\"",
    b"'",
    b"(",
    b")",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"-1",
    b"0",
    b"nan",
    b"NaN",
    b"inf",
    b"1e309",
    b"-9223372036854775808",
    b"18446744073709551615",
    b"\xef\xbb\xbf",
    b"\xc3\xa9",
    b"\xe6\x97\xa5",
    b"\xff",
    b"\x00",
    b"null",
    b"true",
    b"HMI.m2014.03.02_05.00.00",
    b"2014/03/02/",
    b"X9.9",
    b"M1.0",
    b"jp2c",
    b"xml ",
    b"\xff\x4f",
    b"\xff\xd9",
];

/// Large, negative and boundary integers, written little- or big-endian over 4 bytes.
const NUMBERS: &[u32] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

struct Mutator(ChaCha8Rng);

impl Mutator {
    fn new(seed: u64) -> Self {
        Mutator(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A position in `focus` (clipped to `len`), or anywhere when `focus` is empty there.
    fn pos(&mut self, len: usize, focus: &Range<usize>) -> usize {
        let end = focus.end.min(len);
        if focus.start < end && self.0.random_bool(0.9) {
            self.0.random_range(focus.start..end)
        } else {
            self.0.random_range(0..len.max(1))
        }
    }

    /// One to four edits of `seed`, mostly inside `focus`.
    fn mutate(&mut self, seed: &[u8], focus: &Range<usize>) -> Vec<u8> {
        let mut b = seed.to_vec();
        for _ in 0..self.0.random_range(1..=4) {
            let at = self.pos(b.len(), focus).min(b.len());
            match self.0.random_range(0..9) {
                0 if at < b.len() => b[at] ^= 1 << self.0.random_range(0..8),
                1 if at < b.len() => b[at] = self.0.random(),
                2 => {
                    let n = self.0.random_range(1..=16).min(b.len() - at);
                    b.drain(at..at + n);
                }
                3 => {
                    let n = self.0.random_range(1..=16);
                    let junk: Vec<u8> = (0..n).map(|_| self.0.random()).collect();
                    b.splice(at..at, junk);
                }
                4 => {
                    // A chunk repeated: nested structures, repeated rows and boxes.
                    let from = self.pos(b.len(), focus).min(b.len());
                    let n = self.0.random_range(1..=256).min(b.len() - from);
                    let chunk = b[from..from + n].to_vec();
                    for _ in 0..self.0.random_range(1..=4) {
                        b.splice(at..at, chunk.iter().copied());
                    }
                }
                5 => {
                    let t = TOKENS[self.0.random_range(0..TOKENS.len())];
                    b.splice(at..at, t.iter().copied());
                }
                6 => {
                    let v = NUMBERS[self.0.random_range(0..NUMBERS.len())];
                    let bytes = if self.0.random_bool(0.5) {
                        v.to_le_bytes()
                    } else {
                        v.to_be_bytes()
                    };
                    let end = (at + 4).min(b.len());
                    b.splice(at..end, bytes);
                }
                7 => b.truncate(at),
                _ => {
                    // A byte from elsewhere in the file (an opcode, a digit, a delimiter).
                    if !b.is_empty() && at < b.len() {
                        let from = self.0.random_range(0..b.len());
                        b[at] = b[from];
                    }
                }
            }
        }
        b
    }
}

/// How the cases of one reader went.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    err: usize,
}

/// Feeds `cases` mutations of the seeds to `read` (true for a value, false for an
/// error) and fails on a panic or a slow case, naming the reader and the case.
fn fuzz(
    reader: &str,
    seed: u64,
    cases: usize,
    seeds: &[(Vec<u8>, Range<usize>)],
    mut read: impl FnMut(&[u8]) -> bool,
) -> Tally {
    let mut m = Mutator::new(seed);
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for case in 0..cases {
        let (seed_bytes, focus) = &seeds[case % seeds.len()];
        let input = m.mutate(seed_bytes, focus);
        let t0 = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| read(&input))) {
            Ok(true) => tally.ok += 1,
            Ok(false) => tally.err += 1,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("case {case}: panic: {msg}"));
            }
        }
        if t0.elapsed() > SLOW_CASE {
            failures.push(format!("case {case}: took {:?}", t0.elapsed()));
        }
    }
    assert!(
        failures.is_empty(),
        "{reader} (seed {seed}): {} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{reader}: {tally:?}");
    // Mutations that were all refused, or all accepted, would test little.
    assert!(tally.ok > 0 && tally.err > 0, "{reader}: {tally:?}");
    tally
}

/// Writes each case to one scratch file for the readers that take a path.
struct Scratch {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        Scratch { _dir: dir, path }
    }

    fn with(&self, bytes: &[u8]) -> &Path {
        std::fs::write(&self.path, bytes).unwrap();
        &self.path
    }
}

/// The process's peak resident memory, from /proc (None elsewhere).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn golden_pickle(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(common::golden().join(name)).unwrap();
    common::zip::entries(&bytes)
        .into_iter()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .unwrap()
        .1
}

/// A small checkpoint as `torch.save` lays it out: a few tensors of several types.
fn small_checkpoint() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.pth");
    let tensors = vec![
        (
            "conv_block1.0.weight".to_string(),
            Tensor::arange(24, (Kind::Float, tch::Device::Cpu)).reshape([2, 3, 2, 2]),
        ),
        ("bn.num_batches_tracked".to_string(), Tensor::from(7i64)),
        (
            "classify.bias".to_string(),
            Tensor::from_slice(&[0.5f64, -1.0]),
        ),
    ];
    pth::write_state_dict(&path, &tensors).unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn mutated_golden_pickles_decode_or_fail_cleanly() {
    let seeds: Vec<(Vec<u8>, Range<usize>)> = ["attn.pth", "noattn.pth"]
        .iter()
        .map(|n| {
            let p = golden_pickle(n);
            let len = p.len();
            (p, 0..len)
        })
        .collect();
    let shapes = pth::pickle_tensors(&seeds[0].0).unwrap();
    assert_eq!(
        shapes[0],
        ("conv_block1.0.weight".to_string(), vec![64, 1, 3, 3])
    );
    let t = fuzz("pickle", 25, 3000, &seeds, |b| {
        pth::pickle_tensors(b).is_ok()
    });
    assert!(t.ok > 100, "{t:?}");
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 6 << 30, "peak memory {} MiB", peak >> 20);
    }
}

#[test]
fn mutated_checkpoints_read_or_fail_cleanly() {
    let file = small_checkpoint();
    let parts = common::zip::entries(&file);
    let pkl_at = parts
        .iter()
        .position(|(n, _)| n.ends_with("data.pkl"))
        .unwrap();
    let pkl = parts[pkl_at].1.clone();
    // The pickle mutated inside an intact archive.
    fuzz(
        "checkpoint pickle",
        26,
        800,
        &[(pkl.clone(), 0..pkl.len())],
        |b| {
            let mut p = parts.clone();
            p[pkl_at].1 = b.to_vec();
            pth::read_state_dict_bytes(&common::zip::zip_of(&p, zip::CompressionMethod::Stored))
                .is_ok()
        },
    );
    // The archive itself mutated: headers, sizes, the central directory.
    fuzz(
        "checkpoint zip",
        27,
        800,
        &[(file.clone(), 0..file.len())],
        |b| pth::read_state_dict_bytes(b).is_ok(),
    );
}

#[test]
fn mutated_safetensors_read_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.safetensors");
    let tensors = vec![
        (
            "conv_block1.0.weight".to_string(),
            Tensor::arange(24, (Kind::Float, tch::Device::Cpu)).reshape([2, 3, 2, 2]),
        ),
        ("bn.num_batches_tracked".to_string(), Tensor::from(7i64)),
    ];
    let meta = ModelMeta::new(Arch::from_attention(true), 256);
    weights::save_tensors(&small, &tensors, &meta).unwrap();
    let header_end = |b: &[u8]| 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let small = std::fs::read(small).unwrap();
    let golden = std::fs::read(common::golden().join("attn_io.safetensors")).unwrap();
    let seeds = vec![
        (small.clone(), 0..header_end(&small)),
        (golden.clone(), 0..header_end(&golden)),
    ];
    fuzz("safetensors", 28, 1500, &seeds, |b| {
        weights::read_safetensors(b).is_ok()
    });
}

#[test]
fn mutated_jp2_boxes_read_or_fail_cleanly() {
    let images = common::realdata().join("images");
    let seeds: Vec<(Vec<u8>, Range<usize>)> = [
        "2022_08_02__10_47_53_000__SDO_HMI_HMI_magnetogram.jp2",
        "2012_07_05__03_25_52_200__RHESSI_RHESSI_Back_Projection_25-50keV.jp2",
        "iris_1330A_20240415_060002.jp2",
    ]
    .iter()
    .map(|n| {
        let b = std::fs::read(images.join(n)).unwrap();
        // The boxes and the FITS header sit in front of the codestream.
        let codestream = b.windows(4).position(|w| w == b"jp2c").unwrap_or(b.len());
        (b, 0..codestream + 64)
    })
    .collect();
    fuzz("jp2 boxes", 29, 1500, &seeds, |b| {
        let dims = flarecast::jp2::dimensions_bytes(b, "case.jp2");
        let time = flarecast::jp2::obs_time_bytes(b, "case.jp2");
        dims.is_ok() && time.is_ok()
    });
}

/// A float32 .npy of `shape` holding `n` values.
fn npy(shape: &str, n: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..n)
        .flat_map(|i| (i as f32 / n as f32).to_le_bytes())
        .collect();
    common::npy_bytes(shape, &data)
}

#[test]
fn mutated_npy_headers_read_or_fail_cleanly() {
    let seeds: Vec<(Vec<u8>, Range<usize>)> = [("(8, 8)", 64), ("(2, 1, 8, 8)", 128)]
        .iter()
        .map(|&(shape, n)| (npy(shape, n), 0..128))
        .collect();
    let scratch = Scratch::new("case.npy");
    fuzz("npy", 30, 1500, &seeds, |b| {
        flarecast::preprocess::Input::read(scratch.with(b))
            .and_then(|input| input.instances(8))
            .is_ok()
    });
}

/// The first `n` lines of a real file.
fn head(path: &Path, n: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().take(n).collect();
    format!("{}\n", lines.join("\n")).into_bytes()
}

fn whole(b: Vec<u8>) -> (Vec<u8>, Range<usize>) {
    let len = b.len();
    (b, 0..len)
}

#[test]
fn mutated_catalogues_read_or_fail_cleanly() {
    let cats = common::realdata().join("catalogs");
    let seeds: Vec<(Vec<u8>, Range<usize>)> = [
        "hayesla_final_flare_list_sc24.csv",
        "hayesla_swpc_flarelist_20100101-20210810.csv",
        "jameskc_joined_her_gev_2010-04-13_2019-05-30.csv",
        "pandey_reconstructed_window_max_flares_2010-12_2018-07.csv",
        "swansf_goes_flares_integrated_SCHEMA_SAMPLE_4rows.csv",
    ]
    .iter()
    .map(|n| whole(head(&cats.join(n), 12)))
    .collect();
    fuzz("catalogue csv", 31, 1500, &seeds, |b| {
        let strict = flarecast::catalog::parse(b, "case.csv", None, false).is_ok();
        let lenient = flarecast::catalog::parse(b, "case.csv", None, true).is_ok();
        strict && lenient
    });

    use flarecast::catalog::fetch::{hek, ncei, swpc};
    let hek_page = br#"{"result": [{"event_starttime": "2011-02-13T17:28:00", "event_peaktime": "2011-02-13T17:38:00", "event_endtime": "2011-02-13T17:47:00", "fl_goescls": "M6.6", "ar_noaanum": 11158, "hpc_x": 85.2, "hpc_y": -217.5, "hgs_x": 4.0, "hgs_y": -20.0, "frm_name": "SWPC", "event_type": "FL"}, {"event_starttime": "2011-02-14T17:20:00", "event_peaktime": "2011-02-14T17:26:00", "event_endtime": "2011-02-14T17:32:00", "fl_goescls": "M2.2", "ar_noaanum": 0, "hpc_x": 0, "hpc_y": 0, "hgs_x": 0, "hgs_y": 0, "frm_name": "SWPC", "event_type": "FL"}], "overmax": false}"#.to_vec();
    let swpc_feed = br#"[{"time_tag": "2012-03-07T00:02:00Z", "satellite": 15, "current_class": "X5.4", "current_ratio": 0.1, "current_int_xrlong": 0.001, "begin_time": "2012-03-07T00:02:00Z", "begin_class": "C1.0", "max_time": "2012-03-07T00:24:00Z", "max_class": "X5.4", "max_xrlong": 0.00054, "end_time": "2012-03-07T00:40:00Z", "end_class": "C1.0", "max_ratio_time": null, "max_ratio": null}, {"time_tag": "2012-03-10T23:50:00Z", "satellite": 15, "current_class": "M2.0", "current_ratio": 0.2, "current_int_xrlong": 0.01, "begin_time": "2012-03-10T23:41:00Z", "begin_class": "C5.0", "max_time": null, "max_class": null, "max_xrlong": null, "end_time": null, "end_class": null, "max_ratio_time": null, "max_ratio": null}]"#.to_vec();
    fuzz("hek json", 32, 800, &[whole(hek_page)], |b| {
        hek::parse(b, "case.json").is_ok()
    });
    fuzz("swpc json", 33, 800, &[whole(swpc_feed)], |b| {
        swpc::parse(b, "case.json").is_ok()
    });
    let ncei = b"time,start_time,end_time,flare_id,xrsb_irrad,flare_class,xrsb_irrad_source,background_irrad,integrated_irrad_peak,integrated_irrad_end,flare_loc_swpc_hgs_lon,flare_loc_swpc_hgs_lat,flare_loc_swpc_source,flare_loc_xrs_hgs_lon,flare_loc_xrs_hgs_lat,flare_loc_xrs_hpc_x,flare_loc_xrs_hpc_y,flare_loc_xrs_source,sequential_flare_num,event_id_swpc,peak_saturated,active_region\n\
        2017-09-04 20:33:00,2017-09-04 20:28:00,2017-09-04 20:37:00,201709042028,8.1e-05,M8.1,GOES-15,3e-06,0.05,0.07,11.0,-10.0,SWPC,12.1,-9.2,180,-240,XRS,5001,7001,0,2673\n\
        2017-09-07 10:15:00,2017-09-07 10:11:00,2017-09-07 10:18:00,201709071011,1.0e-05,M1.0,GOES-15,4e-06,0.01,0.02,,,,,,,,,5003,,0,\n"
        .to_vec();
    fuzz("ncei csv", 34, 800, &[whole(ncei)], |b| {
        ncei::parse(b, "case.csv").is_ok()
    });
}

#[test]
fn mutated_label_tables_read_or_fail_cleanly() {
    let labels = common::realdata().join("original_labels");
    let seeds = vec![
        whole(head(
            &labels.join("simplified_data_labels/Fold1_val.csv"),
            20,
        )),
        whole(head(
            &labels.join("simplified_data_labels/Fold1_train.csv"),
            20,
        )),
    ];
    let scratch = Scratch::new("Fold1_val.csv");
    fuzz("label table", 35, 1500, &seeds, |b| {
        flarecast::data::read_labels(scratch.with(b)).is_ok()
    });
}

#[test]
fn mutated_forecast_records_read_or_fail_cleanly() {
    use flarecast::forecast::record::{ImageInfo, ModelInfo, Record, WindowRule};
    let t = chrono::NaiveDate::from_ymd_opt(2014, 3, 2)
        .unwrap()
        .and_hms_opt(5, 0, 0)
        .unwrap();
    let models = vec![ModelInfo {
        path: "attn_fold1.pth".into(),
        sha256: "ab".repeat(32),
        architecture: "attention".into(),
        im_size: 256,
        calibration: None,
    }];
    let image = ImageInfo {
        time: t,
        source_id: Some(19),
        id: Some(123456),
        file: None,
    };
    let record = Record::new(models, t, image, &[0.25], 0.5, WindowRule::IssueTime);
    let pretty = serde_json::to_vec_pretty(&record).unwrap();
    let mut line = serde_json::to_value(&record).unwrap();
    line["files"] = serde_json::json!(["flarecast_20140302_050000.json"]);
    let index = format!("{line}\n{line}\n").into_bytes();
    let json = Scratch::new("record.json");
    fuzz("forecast record", 36, 800, &[whole(pretty)], |b| {
        flarecast::forecast::record::read_records(json.with(b)).is_ok()
    });
    let jsonl = Scratch::new("index.jsonl");
    fuzz("forecast index", 37, 800, &[whole(index)], |b| {
        flarecast::forecast::record::read_records(jsonl.with(b)).is_ok()
    });
}
