//! Downloading a time range: for each requested instant T ask for the closest image, keep
//! it when it lies within the tolerance, fetch each distinct observation once, and store it
//! atomically under the name of T. Work goes in chunks so an interrupted run keeps every
//! completed chunk in the manifest.

use super::api;
use super::manifest::{self, Row, Status};
use crate::bounded::{days, secs, Count, Span};
use crate::fsio::{self, write_atomic};
use crate::http::{Client, Expect, RetryPolicy};
use crate::instant::{chrono_duration, Instant};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Options {
    /// First requested time; instants run from here in steps of `cadence` while < `end`.
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub cadence: Duration,
    pub source_id: u32,
    pub tolerance: Duration,
    pub out: PathBuf,
    pub api_url: String,
    pub concurrency: usize,
    /// Requests per second over all workers; 0 = no cap.
    pub max_rps: f64,
    pub retries: u32,
    pub timeout: Duration,
    /// First retry wait (doubled each attempt, with jitter).
    pub backoff: Duration,
    /// Ask again for instants an earlier run found no image for.
    pub retry_missing: bool,
    /// Check the SHA-256 of files already on disk against the manifest (their size is
    /// always checked); a file that fails is fetched again.
    pub verify: bool,
}

impl Options {
    /// Steps between requested times a setting may give.
    pub const CADENCE: Span = Span::new("cadence", "cadence", secs(1), days(366));
    /// How far from its requested time an image may be.
    pub const TOLERANCE: Span = Span::new("tolerance", "tolerance", secs(1), days(366));
    /// Requests in flight at once.
    pub const CONCURRENCY: Count<usize> = Count::new("concurrency", "concurrency", 1, 256);
}

/// What a dry run would do, without a request.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub instants: usize,
    pub on_disk: usize,
    pub known_missing: usize,
    pub to_query: usize,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub requested: usize,
    pub saved: usize,
    pub skipped: usize,
    pub missing: usize,
    pub failed: usize,
    /// Distinct observations fetched from the server.
    pub fetched: usize,
    pub bytes_fetched: u64,
    pub requests: u64,
    pub elapsed_s: f64,
    pub manifest: String,
    /// Up to 10 failures: (requested time, reason).
    pub failures: Vec<(String, String)>,
}

/// Most instants one request may make: 19 years at a 1-minute cadence (the paper's 8
/// years at 12 minutes are 350,000). Each needs a file check, a manifest row and
/// possibly a request, so a larger request is refused before any work.
pub const MAX_INSTANTS: i64 = 10_000_000;

/// The requested instants: `start`, `start + cadence`, ... strictly before `end`.
pub fn instants(
    start: NaiveDateTime,
    end: NaiveDateTime,
    cadence: Duration,
) -> Result<Vec<NaiveDateTime>> {
    if end <= start {
        bail!("the end {end} must be after the start {start}");
    }
    let step = chrono_duration(cadence);
    if step <= chrono::Duration::zero() {
        bail!("cadence must be positive");
    }
    let span_ms = (end - start).num_milliseconds();
    let step_ms = step.num_milliseconds().max(1);
    let count = (span_ms + step_ms - 1) / step_ms;
    if count > MAX_INSTANTS {
        bail!(
            "{start} to {end} every {} makes {count} instants, more than the {MAX_INSTANTS} one run may request; ask for a shorter range or a longer cadence",
            humantime::format_duration(cadence)
        );
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut t = start;
    while t < end {
        out.push(t);
        t += step;
    }
    Ok(out)
}

pub fn plan(opts: &Options) -> Result<Plan> {
    let ts = instants(opts.start, opts.end, opts.cadence)?;
    let old = manifest::read(&opts.out.join(manifest::FILE_NAME))?;
    let (mut on_disk, mut known_missing) = (0, 0);
    for t in &ts {
        let path = opts.out.join(Instant(*t).relative_path("jp2"));
        if path.is_file() && intact(old.get(&Instant(*t).to_string()), &path, opts.verify) {
            on_disk += 1;
        } else if !opts.retry_missing && is_known_missing(&old, *t) {
            known_missing += 1;
        }
    }
    Ok(Plan {
        instants: ts.len(),
        on_disk,
        known_missing,
        to_query: ts.len() - on_disk - known_missing,
        first: ts.first().map(|t| Instant(*t).to_string()),
        last: ts.last().map(|t| Instant(*t).to_string()),
    })
}

fn is_known_missing(old: &BTreeMap<String, Row>, t: NaiveDateTime) -> bool {
    old.get(&Instant(t).to_string())
        .is_some_and(|r| r.status == Status::Missing)
}

/// A stored observation: a file holding its bytes and their digest.
#[derive(Clone)]
struct Stored {
    path: PathBuf,
    bytes: u64,
    sha256: String,
}

pub fn download(opts: &Options, progress: &Progress) -> Result<Summary> {
    let started = std::time::Instant::now();
    let ts = instants(opts.start, opts.end, opts.cadence)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let manifest_path = opts.out.join(manifest::FILE_NAME);
    let old = manifest::read(&manifest_path)?;
    remove_stale_temp_files(&opts.out, opts.start, opts.end);
    let policy = RetryPolicy {
        retries: opts.retries,
        backoff: opts.backoff,
        max_backoff: Duration::from_secs(120),
    };
    let client = Client::new(&opts.api_url, opts.timeout, opts.max_rps, policy)?;
    let mut appender = manifest::Appender::open(&manifest_path)?;

    // Observations already on disk from earlier runs: copies need no request.
    let mut known: HashMap<String, Stored> = HashMap::new();
    for r in old.values() {
        if let (Status::Saved | Status::Skipped, Some(src), Some(b), Some(h)) =
            (r.status, &r.source, r.bytes, &r.sha256)
        {
            known.insert(
                src.clone(),
                Stored {
                    path: opts.out.join(&r.path),
                    bytes: b,
                    sha256: h.clone(),
                },
            );
        }
    }

    let mut s = Summary {
        requested: ts.len(),
        manifest: manifest_path.display().to_string(),
        ..Default::default()
    };
    let fetched_bytes = AtomicU64::new(0);
    let fetched = AtomicUsize::new(0);
    let bar = progress.bar(
        ts.len() as u64,
        "download {bar:40} {pos}/{len} instants {per_sec} (eta {eta})",
    );
    let chunk = (opts.concurrency * 8).max(32);
    for part in ts.chunks(chunk) {
        let rows = run_chunk(
            opts,
            &client,
            &old,
            &mut known,
            part,
            &fetched,
            &fetched_bytes,
        )?;
        appender.append(&rows)?;
        for r in &rows {
            match r.status {
                Status::Saved => s.saved += 1,
                Status::Skipped => s.skipped += 1,
                Status::Missing => s.missing += 1,
                Status::Failed => {
                    s.failed += 1;
                    if s.failures.len() < 10 {
                        s.failures
                            .push((r.requested.clone(), r.reason.clone().unwrap_or_default()));
                    }
                }
            }
        }
        bar.inc(rows.len() as u64);
    }
    bar.finish_and_clear();
    drop(appender);
    manifest::compact(&manifest_path)?;
    s.fetched = fetched.load(Ordering::Relaxed);
    s.bytes_fetched = fetched_bytes.load(Ordering::Relaxed);
    s.requests = client.requests();
    s.elapsed_s = started.elapsed().as_secs_f64();
    Ok(s)
}

/// One chunk of instants: settle what is on disk, ask for the closest images, fetch each
/// distinct observation once and store it under every instant that maps to it.
fn run_chunk(
    opts: &Options,
    client: &Client,
    old: &BTreeMap<String, Row>,
    known: &mut HashMap<String, Stored>,
    ts: &[NaiveDateTime],
    fetched: &AtomicUsize,
    fetched_bytes: &AtomicU64,
) -> Result<Vec<Row>> {
    let mut rows = Vec::with_capacity(ts.len());
    let mut pending = Vec::new();
    for &t in ts {
        let key = Instant(t).to_string();
        let rel = Instant(t).relative_path("jp2");
        let path = opts.out.join(&rel);
        if path.is_file() && intact(old.get(&key), &path, opts.verify) {
            rows.push(skipped_row(old.get(&key), key, rel, &path)?);
        } else if !opts.retry_missing && is_known_missing(old, t) {
            rows.push(old[&key].clone());
        } else {
            pending.push(t);
        }
    }

    let answers = par_map(&pending, opts.concurrency, |&t| {
        let body = client
            .get(
                &api::uri_url(&opts.api_url, t, opts.source_id),
                Expect::Text,
            )
            .map_err(|e| e.reason)?;
        let uri = api::parse_uri_answer(&body).map_err(|e| format!("{e:#}"))?;
        api::observation(&uri).map_err(|e| format!("{e:#}"))
    });

    // Group the instants within tolerance by observation, in time order.
    let tol = chrono_duration(opts.tolerance);
    let mut groups: Vec<(String, NaiveDateTime, Vec<NaiveDateTime>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (&t, answer) in pending.iter().zip(answers) {
        let key = Instant(t).to_string();
        let rel = Instant(t).relative_path("jp2");
        match answer {
            Err(reason) => rows.push(failed_row(
                key,
                rel,
                None,
                format!("asking for the closest image: {reason}"),
            )),
            Ok((name, obs)) => {
                let off = (obs - t).abs();
                if off > tol {
                    rows.push(Row {
                        status: Status::Missing,
                        observed: Some(fmt_obs(obs)),
                        source: Some(name),
                        reason: Some(format!(
                            "closest image is {} from the requested time (tolerance {})",
                            humantime::format_duration(off.to_std().unwrap_or_default()),
                            humantime::format_duration(opts.tolerance)
                        )),
                        ..Row::new(key, rel, Status::Missing)
                    });
                } else {
                    let i = *index.entry(name.clone()).or_insert_with(|| {
                        groups.push((name, obs, Vec::new()));
                        groups.len() - 1
                    });
                    groups[i].2.push(t);
                }
            }
        }
    }

    let known_ref: &HashMap<String, Stored> = known;
    let results = par_map(&groups, opts.concurrency, |(name, _, group)| {
        fetch_and_store(
            opts,
            client,
            known_ref.get(name),
            name,
            group,
            fetched,
            fetched_bytes,
        )
    });

    for ((name, obs, group), result) in groups.into_iter().zip(results) {
        let outcome = |t: NaiveDateTime, saved: Result<&Stored, String>| {
            let key = Instant(t).to_string();
            let rel = Instant(t).relative_path("jp2");
            let row = match saved {
                Ok(st) => Row {
                    bytes: Some(st.bytes),
                    sha256: Some(st.sha256.clone()),
                    ..Row::new(key, rel, Status::Saved)
                },
                Err(reason) => failed_row(key, rel, None, reason),
            };
            Row {
                observed: Some(fmt_obs(obs)),
                source: Some(name.clone()),
                ..row
            }
        };
        match result {
            Err(reason) => rows.extend(group.iter().map(|&t| outcome(t, Err(reason.clone())))),
            Ok((stored, writes)) => {
                let mut first_written = None;
                for (&t, write) in group.iter().zip(writes) {
                    if write.is_ok() {
                        first_written
                            .get_or_insert_with(|| opts.out.join(Instant(t).relative_path("jp2")));
                    }
                    rows.push(outcome(t, write.map(|()| &stored)));
                }
                if let Some(path) = first_written {
                    known.insert(name.clone(), Stored { path, ..stored });
                }
            }
        }
    }
    rows.sort_by(|a, b| a.requested.cmp(&b.requested));
    Ok(rows)
}

/// Gets the bytes of one observation (from an earlier copy on disk, else from the server)
/// and writes them under each requested instant of the group. The outer error means no
/// usable bytes; the inner results are per instant.
fn fetch_and_store(
    opts: &Options,
    client: &Client,
    known: Option<&Stored>,
    name: &str,
    group: &[NaiveDateTime],
    fetched: &AtomicUsize,
    fetched_bytes: &AtomicU64,
) -> Result<(Stored, Vec<Result<(), String>>), String> {
    // An earlier copy counts only if it still has the recorded bytes.
    let local = known
        .and_then(|k| std::fs::read(&k.path).ok().map(|b| (k, b)))
        .filter(|(k, b)| b.len() as u64 == k.bytes && hex(&Sha256::digest(b)) == k.sha256)
        .map(|(_, b)| b)
        .filter(|b| crate::jp2::validate(b, name).is_ok());
    let bytes = match local {
        Some(b) => b,
        None => {
            let url = api::image_url(&opts.api_url, group[0], opts.source_id);
            let b = client
                .get(&url, Expect::Jp2)
                .map_err(|e| format!("fetching {name}: {}", e.reason))?;
            fetched.fetch_add(1, Ordering::Relaxed);
            fetched_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
            b
        }
    };
    let writes = group
        .iter()
        .map(|&t| {
            let path = opts.out.join(Instant(t).relative_path("jp2"));
            write_atomic(&path, &bytes).map_err(|e| format!("{e:#}"))
        })
        .collect();
    let stored = Stored {
        path: PathBuf::new(),
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(&bytes)),
    };
    Ok((stored, writes))
}

/// Whether a file already on disk is the one the manifest recorded: the same size, and
/// with `verify` the same SHA-256. A file the manifest does not know is taken as it is.
fn intact(row: Option<&Row>, path: &Path, verify: bool) -> bool {
    let Some(row) = row.filter(|r| matches!(r.status, Status::Saved | Status::Skipped)) else {
        return true;
    };
    let size_ok = match (row.bytes, std::fs::metadata(path)) {
        (Some(b), Ok(m)) => m.len() == b,
        (None, Ok(_)) => true,
        (_, Err(_)) => false,
    };
    if !size_ok || !verify {
        return size_ok;
    }
    match (&row.sha256, std::fs::read(path)) {
        (Some(h), Ok(bytes)) => hex(&Sha256::digest(&bytes)) == *h,
        (None, Ok(_)) => true,
        (_, Err(_)) => false,
    }
}

/// An instant whose file is already there: keep what the manifest knew about it, or
/// describe the file when the manifest has no row (a file placed by hand).
fn skipped_row(old: Option<&Row>, key: String, rel: String, path: &Path) -> Result<Row> {
    if let Some(r) =
        old.filter(|r| matches!(r.status, Status::Saved | Status::Skipped) && r.sha256.is_some())
    {
        return Ok(Row {
            status: Status::Skipped,
            reason: None,
            ..r.clone()
        });
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Row {
        bytes: Some(bytes.len() as u64),
        sha256: Some(hex(&Sha256::digest(&bytes))),
        ..Row::new(key, rel, Status::Skipped)
    })
}

fn failed_row(requested: String, path: String, observed: Option<String>, reason: String) -> Row {
    Row {
        observed,
        reason: Some(reason),
        ..Row::new(requested, path, Status::Failed)
    }
}

fn fmt_obs(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes temporary files an interrupted run left in the day folders of the range.
fn remove_stale_temp_files(out: &Path, start: NaiveDateTime, end: NaiveDateTime) {
    let mut day = start.date();
    while day <= end.date() {
        let _ = fsio::remove_stale_temps(&out.join(day.format("%Y/%m/%d").to_string()));
        match day.succ_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
}

/// Maps `f` over `items` on `workers` threads, keeping the order.
fn par_map<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every slot is filled by a worker")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instant::parse_time;

    #[test]
    fn half_open_range() {
        let ts = instants(
            parse_time("2013-05-13").unwrap(),
            parse_time("2013-05-14").unwrap(),
            Duration::from_secs(720),
        )
        .unwrap();
        assert_eq!(ts.len(), 120);
        assert_eq!(ts[119].to_string(), "2013-05-13 23:48:00");
        assert!(instants(
            parse_time("2013-05-14").unwrap(),
            parse_time("2013-05-13").unwrap(),
            Duration::from_secs(1)
        )
        .is_err());
        let err = instants(
            parse_time("1900-01-01").unwrap(),
            parse_time("2100-01-01").unwrap(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "1900-01-01 00:00:00 to 2100-01-01 00:00:00 every 1s makes 6311433600 instants, \
             more than the 10000000 one run may request; ask for a shorter range or a longer cadence"
        );
    }

    #[test]
    fn par_map_keeps_order() {
        let v: Vec<u32> = (0..100).collect();
        assert_eq!(
            par_map(&v, 7, |x| x * 2),
            (0..100).map(|x| x * 2).collect::<Vec<_>>()
        );
        assert!(par_map(&Vec::<u32>::new(), 4, |x| *x).is_empty());
    }
}
