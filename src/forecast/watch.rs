//! One forecast per cycle into an output folder. Live (no start time): a cycle every
//! `every` of wall-clock time, each for the newest image at that moment. Replay (a start
//! time): cycle k forecasts as of `start + k * every`, back to back, as an archive allows.
//! A cycle whose newest image was already forecast writes nothing; a cycle that fails
//! (server down, bad image) is reported and the next one runs. The stop flag (set by
//! SIGINT/SIGTERM) is looked at between cycles and while waiting, never mid-write.

use super::output::{self, Format};
use super::record::{now_utc, ImageInfo, Record};
use super::{Forecaster, Source};
use anyhow::Result;
use chrono::NaiveDateTime;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// When cycles run.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub every: Duration,
    /// Stop after this many cycles (None: until stopped).
    pub cycles: Option<u64>,
    /// Replay from this forecast time instead of following the clock.
    pub start: Option<NaiveDateTime>,
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
    Written {
        cycle: u64,
        record: Box<Record>,
        files: Vec<PathBuf>,
    },
    AlreadyForecast {
        cycle: u64,
        at: NaiveDateTime,
        image: ImageInfo,
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
    pub already_forecast: u64,
    pub failed: u64,
    pub stopped_by_signal: bool,
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
    std::fs::create_dir_all(&outputs.dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", outputs.dir.display()))?;
    let _lock = crate::fsio::OutputLock::acquire(&outputs.dir, output::LOCK)?;
    crate::fsio::remove_stale_temps(&outputs.dir)?;
    let mut seen = output::forecast_images(&outputs.dir)?;
    let client = source.connect()?;
    let mut summary = Summary::default();
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
            Some(s) => {
                s + crate::instant::chrono_duration(
                    schedule
                        .every
                        .saturating_mul(cycle.min(u32::MAX as u64) as u32),
                )
            }
            None => now_utc(),
        };
        let event = match one_cycle(forecaster, source, client.as_ref(), outputs, &seen, at) {
            Ok(Step::Written(record, files)) => {
                seen.insert(record.image.key());
                summary.written += 1;
                Event::Written {
                    cycle,
                    record: Box::new(record),
                    files,
                }
            }
            Ok(Step::Seen(image)) => {
                summary.already_forecast += 1;
                Event::AlreadyForecast { cycle, at, image }
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

enum Step {
    Written(Record, Vec<PathBuf>),
    Seen(ImageInfo),
}

fn one_cycle(
    forecaster: &Forecaster,
    source: &Source,
    client: Option<&crate::http::Client>,
    outputs: &Outputs,
    seen: &std::collections::HashSet<String>,
    at: NaiveDateTime,
) -> Result<Step> {
    let image = source.newest(client, at)?;
    if seen.contains(&image.key()) {
        return Ok(Step::Seen(image));
    }
    let forecast = forecaster.from_chosen(source, client, image, at)?;
    let written = output::write_held(
        &outputs.dir,
        forecaster,
        &forecast,
        &outputs.formats,
        outputs.attention_map,
    )?;
    Ok(Step::Written(forecast.record, written.files))
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
