//! The CCMC Flare Scoreboard exchange formats, so a forecast can be submitted to the
//! scoreboard or compared with operational ones: the text file
//! `Flare_Forecast_<model>_<yyyymmdd>_<hhmm>.txt` and the JSON submission layout.
//! flarecast forecasts the M+ bin (>= M1.0) only; both formats say so rather than carry
//! an X probability the model never made.

use super::record::{Record, WindowRule, WINDOW_HOURS};
use chrono::NaiveDateTime;

/// The method name the scoreboard files carry.
pub const METHOD: &str = "flarecast";
/// The one probability bin flarecast forecasts.
pub const BIN: &str = "M+";
/// Why there is no X bin.
pub const ONLY_M_NOTE: &str =
    "flarecast forecasts the M+ bin (>= M1.0) only; it gives no separate X probability";

/// `2014-03-02T05:00Z`: the scoreboard's minute-resolution time.
pub fn fmt_minute(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

/// `Flare_Forecast_flarecast_YYYYMMDD_HHMM` (the issue time), without extension.
pub fn file_stem(issue_time: NaiveDateTime) -> String {
    format!(
        "Flare_Forecast_{METHOD}_{}",
        issue_time.format("%Y%m%d_%H%M")
    )
}

/// The uncertainty the files carry: the ensemble's standard deviation, none for one model.
fn uncertainty(r: &Record) -> Option<f64> {
    (r.members.len() > 1).then_some(r.spread.std)
}

fn input_data(r: &Record) -> String {
    let mut s = format!(
        "SDO/HMI line-of-sight magnetogram observed {}",
        super::record::fmt_utc(r.image.time)
    );
    match (r.image.source_id, r.image.id) {
        (Some(src), Some(id)) => s.push_str(&format!(" (Helioviewer source {src}, image {id})")),
        _ => {
            if let Some(f) = &r.image.file {
                s.push_str(&format!(" (file {f})"));
            }
        }
    }
    s
}

/// What the files say of the window: where it starts, and for a replay's per-image window
/// that it is not an operational one.
fn window_note(r: &Record) -> String {
    let mut s = format!("Prediction window: {}", r.window_rule.describe());
    if r.window_rule == WindowRule::IssueTime {
        s.push_str(&format!(
            "; image {} old at issue time",
            super::record::human_age(r.image_age_seconds)
        ));
    }
    s
}

/// What the files say of the probability: calibrated (how), or the networks' own output.
fn probability_note(r: &Record) -> String {
    match &r.calibration {
        Some(how) => format!(
            "Probability: calibrated ({how}); the networks' raw probability is {:.4}",
            r.raw()
        ),
        None => "Probability: the networks' raw output, not calibrated".to_string(),
    }
}

/// The text exchange file.
pub fn text(r: &Record) -> String {
    let unc = uncertainty(r).map_or("-".to_string(), |u| format!("{u:.4}"));
    let models: Vec<&str> = r.models.iter().map(|m| m.architecture.as_str()).collect();
    format!(
        "Forecasting method: {METHOD} {version} (full-disk CNN, Pandey et al.; {n} model{s}: {models})\n\
         Issue time: {issue}\n\
         Prediction window start time: {start}\n\
         Prediction window end time: {end}\n\
         Probability bins: {BIN}\n\
         Input data: {input}\n\
         Prediction window (hours): {WINDOW_HOURS}\n\
         # {ONLY_M_NOTE}\n\
         # {window}\n\
         # {probability}\n\
         # Uncertainty: standard deviation over the ensemble members (- for one model); Level: not given\n\
         #Full Disk Forecast\n\
         #Bin Probability Uncertainty Level\n\
         {BIN} {p:.4} {unc} -\n",
        version = r.flarecast_version,
        n = r.models.len(),
        s = if r.models.len() == 1 { "" } else { "s" },
        models = models.join(", "),
        issue = fmt_minute(r.issue_time),
        start = fmt_minute(r.prediction_window.start),
        end = fmt_minute(r.prediction_window.end),
        input = input_data(r),
        window = window_note(r),
        probability = probability_note(r),
        p = r.probability,
    )
}

/// The JSON submission.
pub fn json(r: &Record) -> serde_json::Value {
    let mut prob = serde_json::json!({ "class": BIN, "probability": r.probability });
    if let Some(u) = uncertainty(r) {
        prob["uncertainty"] = serde_json::json!(u);
    }
    serde_json::json!({
        "forecast_submission": {
            "model": { "short_name": METHOD, "version": r.flarecast_version },
            "issue_time": fmt_minute(r.issue_time),
            "input_data": input_data(r),
            "full_disk_forecasts": [{
                "prediction_window": {
                    "start_time": fmt_minute(r.prediction_window.start),
                    "end_time": fmt_minute(r.prediction_window.end),
                },
                "flare_probabilities": [prob],
            }],
            "region_forecasts": [],
            "notes": format!("{ONLY_M_NOTE}. {}. {}", window_note(r), probability_note(r)),
        }
    })
}
