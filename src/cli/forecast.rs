//! `flarecast forecast`: today's Sun in, a 24-hour flare forecast out.

use super::model_args::ModelArgs;
use anyhow::{bail, Context, Result};
use flarecast::forecast::source::{self, Fetch};
use flarecast::forecast::watch::{self, Event, Outputs, Schedule};
use flarecast::forecast::{output, Ensemble, Forecaster, Format, Origin, Source, WindowRule};
use flarecast::instant::{chrono_duration, parse_time};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const ABOUT: &str = "\
Forecast the probability of a >= M1.0 GOES flare in the next 24 hours from the newest
SDO/HMI magnetogram.

Without --image, flarecast asks the Helioviewer API (getClosestImage) for the image
closest to --at, refuses it if it was observed after --at or more than --max-age before
it (the API returns images from either side, days away during data gaps), fetches that
exact image by its id, and prepares it exactly as a training image is made (JP2 -> 512x512
area resize -> the JPEG round trip of `convert` -> the model's input size), so the model
sees what it was trained on. With --image, a local JP2 is prepared the same way; a JPG or
PNG is taken as a training image as it is. With --images DIR, the newest image at or
before --at in a local tree of training images is used (a mirror kept current by
`download` and `convert`, or a `synth` archive).

Several --model make an ensemble: the forecast is the mean probability, and each member's
probability and the spread are reported. Each member's architecture (attention network or
standard CNN) and input size come from its own checkpoint, so they may be mixed. PyTorch
checkpoints load as they are, including the paper's published fold checkpoints
(attn_fold1.pth .. attn_fold4.pth in the reference repository's trained_models), as do
flarecast's .safetensors.

The prediction window of a forecast issued at T (--at, or now) is (T, T + 24 h]: flares
starting after the issue time, as `label` labels an instance at T; the image is the
newest at or before T and its age at T is in the record. --window image-hour instead
starts the window at the image's hour, the window `flarecast label` gives that image (the
paper's per-image rule), so that `flarecast verify` over a replayed archive scores
exactly as `evaluate` scores the labelled instances; that is not an operational window
(it can start before the forecast is issued) and the files say so. The record (on stdout:
a summary line, or with --json the record as one JSON object; and in --out) names the
flarecast version, each model's path, SHA-256 and architecture, the issue time, the
image's time, source id, id and age, the window and its rule, the threshold class M1.0,
the probability, the members, the spread and the yes/no decision at --threshold. --out
also writes the CCMC Flare Scoreboard text and JSON exchange files (flarecast forecasts
the M+ bin only and says so; it gives no X probability).

--every keeps running: one forecast per cycle into --out (the newest image may repeat; each
cycle is a record of its own), each file written atomically, an index of every forecast
in --out/index.jsonl; each written forecast is a line on stdout, with --json its record as
one line of JSON. A cycle already in the index is never written again: a restarted run
goes on with the next cycle (live, not before a cycle after the last one issued, so it
waits at most one cycle; a forecast in the index issued after now is reported and ignored
for this). Each cycle's requests end by --timeout (default a quarter of the cycle, at most
5 min), each retry reported on stderr, so a stalled server fails that cycle only; a failed
cycle (server down, bad image, full disk) prints one line, leaves no file its index does
not list, and the next goes on; a run whose every cycle failed exits 1. SIGINT/SIGTERM let
the current write finish and exit 0. With --at now (the default) cycles follow the clock;
with a fixed --at they replay an archive: cycle k is issued at --at + k * --every, back
to back. With --window image-hour a cycle whose newest image was already forecast writes
nothing (its window would be the same).

Examples:
  flarecast forecast --model attn_fold1.pth --model attn_fold2.pth --model attn_fold3.pth \\
      --model attn_fold4.pth --out forecasts --attention-map
  flarecast forecast --model m.safetensors --out forecasts --every 1h
  flarecast forecast --model m.safetensors --image HMI.m2014.03.02_05.00.00.jpg";

#[derive(clap::Args)]
#[command(long_about = ABOUT, mut_arg("model", super::model_args::some_models))]
pub struct Args {
    /// The ensemble (repeat --model), its device, precision and input size.
    #[command(flatten)]
    run: ModelArgs,
    /// Forecast time (UTC, e.g. 2014-03-02T05:00:00) or `now`: the newest image at or
    /// before it is used. With --every, the first cycle's time of a replay.
    #[arg(long, default_value = "now")]
    at: String,
    /// A local magnetogram (JP2, JPG, PNG, or a preprocessed .npy) instead of Helioviewer,
    /// read as every command reads its inputs.
    #[arg(long, conflicts_with_all = ["every", "images"])]
    image: Option<PathBuf>,
    /// Instead of Helioviewer, the newest image of a local tree of training images
    /// (YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.jpg, as `convert` and `synth` write),
    /// read again every cycle.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Helioviewer API root.
    #[arg(long, default_value = "https://api.helioviewer.org")]
    api_url: String,
    /// Helioviewer source id (19: SDO/HMI line-of-sight magnetogram).
    #[arg(long, default_value_t = flarecast::helioviewer::HMI_MAGNETOGRAM)]
    source_id: u32,
    /// Oldest image accepted, as an age at the forecast time (e.g. 6h, 2d).
    #[arg(long, default_value = "6h", value_parser = source::MAX_AGE.flag())]
    max_age: Duration,
    #[command(flatten)]
    threshold: super::common_args::Threshold,
    /// Folder for the record, the CCMC files, the attention map and index.jsonl.
    #[arg(long)]
    out: Option<PathBuf>,
    /// What --out gets, comma-separated: json (the record), ccmc-json, ccmc-text.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "json,ccmc-json,ccmc-text"
    )]
    format: Vec<Format>,
    /// Also write the forecast image beside each member's attention overlays (attention
    /// network) or Grad-CAM (standard CNN), as one PNG in --out.
    #[arg(long, requires = "out")]
    attention_map: bool,
    /// Keep running: one forecast per cycle of this length (e.g. 1h) into --out.
    #[arg(long, requires = "out", value_parser = Schedule::EVERY.flag())]
    every: Option<Duration>,
    /// Stop after this many cycles.
    #[arg(long, requires = "every", value_parser = Schedule::CYCLES.flag())]
    cycles: Option<u64>,
    /// Deadline of one forecast's requests (e.g. 30s, 2m): every attempt and retry
    /// included. Default: a quarter of --every, at most 5m.
    #[arg(long, value_parser = Schedule::TIMEOUT.flag())]
    timeout: Option<Duration>,
    /// Where the window starts: issue-time (T, T + 24h], or image-hour, the per-image
    /// window of `label` for replaying an archive (not an operational window).
    #[arg(long, default_value = "issue-time")]
    window: WindowRule,
    #[command(flatten)]
    json: super::common_args::Json,
}

pub fn run(args: Args) -> Result<()> {
    // A single forecast claims its folder before the work (--every claims it in the loop).
    let lock = match (&args.out, &args.every) {
        (Some(dir), None) => Some(flarecast::fsio::OutputLock::acquire(dir, output::LOCK)?),
        _ => None,
    };
    let at = match args.at.trim() {
        "now" => None,
        t => Some(parse_time(t).context("--at")?),
    };
    let max_age = chrono_duration(args.max_age);
    let forecaster = Forecaster::new(
        Ensemble::load(&args.run.models, &args.run.settings()?)?,
        args.threshold.value,
    )?
    .with_window_rule(args.window);
    let every = args.every;
    let timeout = args
        .timeout
        .unwrap_or_else(|| watch::default_timeout(every));
    let origin = match &args.images {
        Some(dir) => Origin::Tree(dir.clone()),
        None => Origin::Helioviewer {
            api_url: args.api_url.clone(),
            source_id: args.source_id,
        },
    };
    let source = Source { origin, max_age };
    if let Some(every) = every {
        return run_every(&args, &forecaster, &source, every, timeout, at);
    }
    let issue_time = at.unwrap_or_else(flarecast::forecast::record::now_utc);
    let forecast = match &args.image {
        Some(path) => forecaster.from_file(path, None, issue_time)?,
        None => {
            let client = source.connect(timeout)?;
            let mut fetch = Fetch {
                client: client.as_ref(),
                deadline: Some(std::time::Instant::now() + timeout),
                on_retry: &mut |m: &str| eprintln!("flarecast: retry: {m}"),
            };
            forecaster.from_source(&source, &mut fetch, issue_time)?
        }
    };
    for note in &forecast.input.notes {
        eprintln!("flarecast: warning: {note}");
    }
    if args.json.on {
        super::print_json(&forecast.record)?;
    } else {
        println!("{}", forecast.record.summary());
    }
    if let (Some(dir), Some(_held)) = (&args.out, &lock) {
        let written = output::write_held(
            dir,
            &forecaster,
            &forecast,
            &args.format,
            args.attention_map,
        )?;
        for f in &written.files {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}

fn run_every(
    args: &Args,
    forecaster: &Forecaster,
    source: &Source,
    every: std::time::Duration,
    timeout: std::time::Duration,
    start: Option<chrono::NaiveDateTime>,
) -> Result<()> {
    let Some(dir) = &args.out else {
        bail!("--every needs --out");
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the signal handler")?;
    }
    let outputs = Outputs {
        dir: dir.clone(),
        formats: args.format.clone(),
        attention_map: args.attention_map,
    };
    let schedule = Schedule {
        every,
        cycles: args.cycles,
        start,
        timeout,
    };
    let summary = watch::run(
        forecaster,
        source,
        &outputs,
        &schedule,
        &stop,
        &mut |e| match e {
            Event::Written { cycle, record, .. } => {
                if args.json.on {
                    // A closed stdout ends the run as any failed write does.
                    if let Err(e) = super::print_json_line(record) {
                        eprintln!("cycle {cycle}: {e}");
                    }
                } else {
                    println!("cycle {cycle}: {}", record.summary())
                }
            }
            Event::Resuming { last_issue, wait } => eprintln!(
                "the last forecast in {} was issued at {last_issue}: the next cycle starts in {}",
                dir.display(),
                humantime::format_duration(std::time::Duration::from_secs(wait.as_secs()))
            ),
            Event::FutureIssue { issue_time, now } => eprintln!(
                "flarecast: warning: {} holds a forecast issued at {issue_time}, after now \
                 ({now}): ignored when scheduling the next cycle",
                dir.join(output::INDEX).display()
            ),
            Event::Retry { cycle, message } => {
                eprintln!("cycle {cycle}: retry: {message}")
            }
            Event::AlreadyIssued {
                cycle,
                at,
                image: Some(image),
            } => eprintln!(
                "cycle {cycle} at {at}: the newest image ({}) was already forecast",
                image.time
            ),
            Event::AlreadyIssued {
                cycle,
                at,
                image: None,
            } => eprintln!("cycle {cycle} at {at}: already issued"),
            Event::Failed { cycle, at, error } => {
                eprintln!("cycle {cycle} at {at} failed: {error}")
            }
        },
    )?;
    eprintln!(
        "{} cycles: {} forecasts written, {} already issued, {} failed{}; index {}",
        summary.cycles,
        summary.written,
        summary.already_issued,
        summary.failed,
        if summary.stopped_by_signal {
            " (stopped by signal)"
        } else {
            ""
        },
        dir.join(output::INDEX).display()
    );
    if summary.all_failed() {
        bail!(
            "every one of the {} cycles failed; nothing was written to {}",
            summary.cycles,
            dir.display()
        );
    }
    Ok(())
}
