//! One forecast per cycle into an output folder. Live (no start time): a cycle every
//! `every` of wall-clock time, each issued at that moment for the newest image then.
//! Replay (a start time): cycle k is issued at `start + k * every`, back to back, as an
//! archive allows. Every cycle is a record of its own (the newest image may repeat; its
//! age is in the record); with per-image windows a repeated image is the same forecast
//! and writes nothing. A cycle already in the folder's index is never written again, so a
//! restarted run goes on with the next cycle (live: not before the last one's cycle has
//! passed, so never more than a cycle later; a record issued after now is reported and
//! not waited for). Each cycle's requests end by its deadline (`timeout`, shorter than the
//! cycle), so a stalled server fails that cycle and the next runs on time. The stop flag
//! (set by SIGINT/SIGTERM) is looked at between cycles and while waiting, never mid-write.

use super::output::{self, Format};
use super::record::{self, now_utc, ImageInfo, Record, WindowRule};
use super::source::Fetch;
use super::{Forecaster, Source};
use crate::bounded::{days, secs, Count, Span};
use anyhow::Result;
use chrono::NaiveDateTime;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// When cycles run.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub every: Duration,
    /// Stop after this many cycles (None: until stopped).
    pub cycles: Option<u64>,
    /// Replay from this issue time instead of following the clock.
    pub start: Option<NaiveDateTime>,
    /// The deadline of one cycle's requests, from the cycle's start.
    pub timeout: Duration,
}

impl Schedule {
    /// Cycles a setting may ask for: from a few seconds (a test) to one a year.
    pub const EVERY: Span = Span::new("every", "cycle", secs(10), days(366));
    /// Cycles a run may be limited to: a century of hourly cycles is under a million.
    pub const CYCLES: Count<u64> = Count::new("cycles", "cycles", 1, 1_000_000);
    /// A forecast's deadline a setting may give.
    pub const TIMEOUT: Span = Span::new("timeout", "deadline", secs(1), days(1));

    /// Refuses a cycle, count or deadline outside its range, and a deadline that would let
    /// one cycle run into the next.
    pub fn check(&self) -> Result<()> {
        Self::EVERY.check(self.every)?;
        Self::TIMEOUT.check(self.timeout)?;
        if let Some(n) = self.cycles {
            Self::CYCLES.check(n)?;
            if let Some(start) = self.start {
                let last = self.replayed(start, n - 1);
                last.map_err(|e| crate::setting::bad("cycles", e.to_string()))?;
            }
        }
        if self.timeout >= self.every {
            return Err(crate::setting::bad(
                "timeout",
                format!(
                    "a cycle's deadline of {} is not shorter than the cycle of {}: a stalled \
                     cycle would delay the next",
                    humantime::format_duration(self.timeout),
                    humantime::format_duration(self.every)
                ),
            ));
        }
        Ok(())
    }

    /// The issue time of replayed cycle `k`: `start + k * every`, or an error where that
    /// is past the calendar's end.
    fn replayed(&self, start: NaiveDateTime, k: u64) -> Result<NaiveDateTime> {
        let millis = u128::from(k) * self.every.as_millis();
        i64::try_from(millis)
            .ok()
            .and_then(chrono::TimeDelta::try_milliseconds)
            .and_then(|d| start.checked_add_signed(d))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "cycle {k} of {} from {start} is past the calendar's end",
                    crate::bounded::show(self.every)
                )
            })
    }
}

/// The deadline of a forecast's requests when none is given: a quarter of the cycle, at
/// most five minutes (a forecast's two requests take seconds when the server is well).
pub fn default_timeout(every: Option<Duration>) -> Duration {
    let cap = Duration::from_secs(300);
    every.map_or(cap, |e| (e / 4).min(cap))
}

/// What the output folder gets.
#[derive(Clone, Debug)]
pub struct Outputs {
    pub dir: PathBuf,
    pub formats: Vec<Format>,
    pub attention_map: bool,
}

/// What one cycle did.
pub enum Event {
    /// The live run waits for the cycle after the last one in the folder (at most one
    /// cycle).
    Resuming {
        last_issue: NaiveDateTime,
        wait: Duration,
    },
    /// The folder's index holds a forecast issued after now: not waited for (its key
    /// still counts as issued).
    FutureIssue {
        issue_time: NaiveDateTime,
        now: NaiveDateTime,
    },
    /// A request of the cycle is retried.
    Retry { cycle: u64, message: String },
    Written {
        cycle: u64,
        record: Box<Record>,
        files: Vec<PathBuf>,
    },
    /// The folder has this cycle's forecast already (by issue time, or for per-image
    /// windows by image).
    AlreadyIssued {
        cycle: u64,
        at: NaiveDateTime,
        image: Option<ImageInfo>,
    },
    Failed {
        cycle: u64,
        at: NaiveDateTime,
        error: String,
    },
}

/// Counts over a run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub cycles: u64,
    pub written: u64,
    pub already_issued: u64,
    pub failed: u64,
    pub stopped_by_signal: bool,
}

impl Summary {
    /// Cycles ran and none gave a forecast or found one there already.
    pub fn all_failed(&self) -> bool {
        self.cycles > 0 && self.failed == self.cycles
    }
}

/// Runs cycles until the schedule ends or `stop` is set; `report` hears every cycle.
pub fn run(
    forecaster: &Forecaster,
    source: &Source,
    outputs: &Outputs,
    schedule: &Schedule,
    stop: &AtomicBool,
    report: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    schedule.check()?;
    std::fs::create_dir_all(&outputs.dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", outputs.dir.display()))?;
    let _lock = crate::fsio::OutputLock::acquire(&outputs.dir, output::LOCK)?;
    crate::fsio::remove_stale_temps(&outputs.dir)?;
    let issued = output::issued(&outputs.dir)?;
    let client = source.connect(schedule.timeout)?;
    let mut summary = Summary::default();
    if schedule.start.is_none() {
        resume_live(&issued, schedule.every, stop, report);
    }
    let mut seen = issued.keys;
    let mut cycle = 0u64;
    loop {
        if schedule.cycles.is_some_and(|n| cycle >= n) {
            break;
        }
        if stop.load(Ordering::SeqCst) {
            summary.stopped_by_signal = true;
            break;
        }
        let started = Instant::now();
        let at = match schedule.start {
            Some(s) => schedule.replayed(s, cycle)?,
            None => now_utc(),
        };
        let mut fetch = Fetch {
            client: client.as_ref(),
            deadline: Some(started + schedule.timeout),
            on_retry: &mut |m: &str| {
                report(&Event::Retry {
                    cycle,
                    message: m.to_string(),
                })
            },
        };
        let step = one_cycle(forecaster, source, &mut fetch, outputs, &seen, at);
        let event = match step {
            Ok(Step::Written(record, files)) => {
                seen.insert(record.key());
                summary.written += 1;
                Event::Written {
                    cycle,
                    record,
                    files,
                }
            }
            Ok(Step::Seen(image)) => {
                summary.already_issued += 1;
                Event::AlreadyIssued { cycle, at, image }
            }
            Err(e) => {
                summary.failed += 1;
                Event::Failed {
                    cycle,
                    at,
                    error: format!("{e:#}"),
                }
            }
        };
        report(&event);
        cycle += 1;
        summary.cycles = cycle;
        let last = schedule.cycles.is_some_and(|n| cycle >= n);
        if schedule.start.is_none() && !last {
            wait(schedule.every.saturating_sub(started.elapsed()), stop);
        }
    }
    summary.stopped_by_signal |= stop.load(Ordering::SeqCst);
    Ok(summary)
}

/// A restarted live run goes on a cycle after the last forecast issued, so it waits at
/// most one cycle; a forecast issued after now is reported and not waited for.
fn resume_live(
    issued: &output::Issued,
    every: Duration,
    stop: &AtomicBool,
    report: &mut dyn FnMut(&Event),
) {
    let now = now_utc();
    let (last, future) = issued.latest_around(now);
    if let Some(issue_time) = future {
        report(&Event::FutureIssue { issue_time, now });
    }
    let Some(last) = last else {
        return;
    };
    let next = last.checked_add_signed(crate::instant::chrono_duration(every));
    if let Some(Ok(d)) = next.map(|n| (n - now).to_std()) {
        let d = d.min(every);
        report(&Event::Resuming {
            last_issue: last,
            wait: d,
        });
        wait(d, stop);
    }
}

enum Step {
    Written(Box<Record>, Vec<PathBuf>),
    /// Already in the folder (the image, when it had to be looked up to tell).
    Seen(Option<ImageInfo>),
}

fn one_cycle(
    forecaster: &Forecaster,
    source: &Source,
    fetch: &mut Fetch,
    outputs: &Outputs,
    seen: &HashSet<String>,
    at: NaiveDateTime,
) -> Result<Step> {
    // An operational cycle is known by its issue time alone: no request needed to skip it.
    let per_image = forecaster.window_rule == WindowRule::ImageHour;
    if !per_image && seen.contains(&record::issue_key(at)) {
        return Ok(Step::Seen(None));
    }
    let image = source.newest(fetch, at)?;
    if per_image && seen.contains(&record::image_key(&image)) {
        return Ok(Step::Seen(Some(image)));
    }
    let forecast = forecaster.from_chosen(source, fetch, image, at)?;
    let written = output::write_held(
        &outputs.dir,
        forecaster,
        &forecast,
        &outputs.formats,
        outputs.attention_map,
    )?;
    Ok(Step::Written(Box::new(forecast.record), written.files))
}

/// Sleeps for `d`, waking early when `stop` is set.
fn wait(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}
