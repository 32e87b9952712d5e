//! Fetching the GOES flare catalogue from the services researchers use (NOAA NCEI's
//! science-quality report, HEK, SWPC's 7-day feed), normalised into one catalogue file
//! that `label` reads, written atomically, optionally merged into the existing one.

pub mod hek;
pub mod ncei;
pub mod swpc;

use super::fields::parse_time;
use super::store::{self, Record};
use super::GoesClass;
use crate::http::{snippet, Client, Expect, RetryPolicy};
use crate::progress::Progress;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{Datelike, NaiveDateTime};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where the catalogue comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Ncei,
    Hek,
    Swpc,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Ncei => "ncei",
            Source::Hek => "hek",
            Source::Swpc => "swpc",
        }
    }

    /// The public service: NCEI's CSV directory, HEK's search endpoint, SWPC's feed.
    pub fn default_url(self) -> &'static str {
        match self {
            Source::Ncei => ncei::DEFAULT_URL,
            Source::Hek => hek::DEFAULT_URL,
            Source::Swpc => swpc::DEFAULT_URL,
        }
    }
}

/// What to fetch and where to put it.
#[derive(Clone, Debug)]
pub struct Options {
    pub source: Source,
    /// Flares starting in [start, end); SWPC's feed needs neither (it holds 7 days).
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    pub out: PathBuf,
    /// Where the source is read from; None: the public service.
    pub url: Option<String>,
    /// Merge into the catalogue at `out` instead of replacing it.
    pub append: bool,
    pub retries: u32,
    pub timeout: Duration,
    pub backoff: Duration,
}

/// Rows read from a source.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<Record>,
    /// `where: why` for each row that did not parse.
    pub rejected: Vec<String>,
    /// SWPC flares still in progress (no peak or end yet), left for a later run.
    pub in_progress: usize,
}

impl Fetched {
    fn extend(&mut self, other: Fetched) {
        self.records.extend(other.records);
        self.rejected.extend(other.rejected);
        self.in_progress += other.in_progress;
    }
}

/// How a source's files are fetched: from `url`, by `get`, each counted on `bar`.
pub struct Requests<'a> {
    pub url: &'a str,
    pub get: &'a dyn Fn(&str) -> Result<Vec<u8>>,
    pub bar: &'a indicatif::ProgressBar,
}

/// Parses an answer as JSON; the error names `what` and shows the answer's start.
fn json_answer(body: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(body).with_context(|| {
        format!(
            "{what}: the answer is not JSON (cut off or an error page?): {}",
            answer_start(body)
        )
    })
}

/// The start of an answer, for error messages.
fn answer_start(body: &[u8]) -> String {
    snippet(&String::from_utf8_lossy(body))
}

/// A JSON field as trimmed text (a number as written); empty when absent or of another type.
fn json_text(e: &Value, key: &str) -> String {
    match e.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A JSON time field; the error names the field and its value.
fn json_time(e: &Value, key: &str) -> Result<NaiveDateTime, String> {
    let v = json_text(e, key);
    parse_time(&v).ok_or_else(|| format!("{key} {v:?} is not a time"))
}

/// A JSON GOES class field; the error names the field and its value.
fn json_class(e: &Value, key: &str) -> Result<GoesClass, String> {
    let v = json_text(e, key);
    v.parse()
        .map_err(|_| format!("{key} {v:?} is not a GOES class"))
}

/// Flares per class letter in one year.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct YearCount {
    pub year: i32,
    pub a: usize,
    pub b: usize,
    pub c: usize,
    pub m: usize,
    pub x: usize,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub source: Source,
    pub url: String,
    pub out: String,
    /// Rows the source gave that parsed.
    pub fetched: usize,
    pub rows_rejected: usize,
    /// `where: why` of every rejected row.
    pub rejected: Vec<String>,
    pub in_progress_skipped: usize,
    pub outside_range: usize,
    /// Rows repeating a flare the source had already given (same start and peak).
    pub duplicates_dropped: usize,
    /// Rows the catalogue already held (with append).
    pub already_present: usize,
    pub added: usize,
    /// Rows in the catalogue written.
    pub rows: usize,
    /// The written catalogue by year and class.
    pub by_year: Vec<YearCount>,
    pub requests: u64,
}

/// Fetches, normalises and writes the catalogue. Any failure leaves `out` as it was.
pub fn download(opts: &Options, progress: &Progress) -> Result<Summary> {
    let bar = progress.bar(0, "catalog {bar:40} {pos}/{len} requests");
    let summary = download_with(opts, &bar);
    bar.finish_and_clear();
    summary
}

fn download_with(opts: &Options, bar: &indicatif::ProgressBar) -> Result<Summary> {
    let url = opts
        .url
        .clone()
        .unwrap_or_else(|| opts.source.default_url().to_string());
    let range = match (opts.start, opts.end) {
        (Some(s), Some(e)) if e <= s => {
            bail!("the time range is empty: end {e} is not after start {s}")
        }
        (Some(s), Some(e)) => Some((s, e)),
        (None, None) if opts.source == Source::Swpc => None,
        _ => bail!(
            "the {} source needs both a start and an end time",
            opts.source.name()
        ),
    };
    // Read the catalogue to merge into first: a file that cannot be merged fails before any request.
    let existing = if opts.append && opts.out.exists() {
        store::read(&opts.out)?
    } else {
        Vec::new()
    };
    let policy = RetryPolicy {
        retries: opts.retries,
        backoff: opts.backoff,
        max_backoff: Duration::from_secs(120),
    };
    let client = Client::new(&url, opts.timeout, 2.0, policy)?;
    let get = |u: &str| -> Result<Vec<u8>> {
        client
            .get(u, Expect::Text)
            .map_err(|e| anyhow!("fetching {u}: {}", e.reason))
    };
    let requests = Requests {
        url: &url,
        get: &get,
        bar,
    };
    let fetched = match (opts.source, range) {
        (Source::Ncei, Some((s, e))) => ncei::fetch(&requests, s, e)?,
        (Source::Hek, Some((s, e))) => hek::fetch(&requests, s, e)?,
        (Source::Swpc, _) => {
            bar.set_length(1);
            let f = swpc::parse(&get(&url)?, &url)?;
            bar.inc(1);
            f
        }
        (_, None) => unreachable!("checked above"),
    };
    let Fetched {
        mut records,
        rejected,
        in_progress,
    } = fetched;
    let fetched_rows = records.len();
    if let Some((s, e)) = range {
        records.retain(|r| r.start >= s && r.start < e);
    }
    let outside_range = fetched_rows - records.len();
    let duplicates_dropped = store::dedup(&mut records);
    let merged = store::merge(existing, records);
    store::write(&opts.out, &merged.records)?;
    Ok(Summary {
        source: opts.source,
        url,
        out: opts.out.display().to_string(),
        fetched: fetched_rows,
        rows_rejected: rejected.len(),
        rejected,
        in_progress_skipped: in_progress,
        outside_range,
        duplicates_dropped,
        already_present: merged.already_present,
        added: merged.added,
        rows: merged.records.len(),
        by_year: by_year(&merged.records),
        requests: client.requests(),
    })
}

fn by_year(records: &[Record]) -> Vec<YearCount> {
    let mut years: BTreeMap<i32, YearCount> = BTreeMap::new();
    for r in records {
        let year = r.start.year();
        let y = years.entry(year).or_insert_with(|| YearCount {
            year,
            ..YearCount::default()
        });
        match r.class.letter() {
            'A' => y.a += 1,
            'B' => y.b += 1,
            'C' => y.c += 1,
            'M' => y.m += 1,
            _ => y.x += 1,
        }
    }
    years.into_values().collect()
}
