//! The paper's table of an experiment: per cell the scores of its `fold{K}_res.csv`; per
//! network and seed the mean and sample standard deviation (n - 1) over folds; over
//! seeds, the mean and sample standard deviation of the seeds' means; the location
//! analysis pooled over folds; a bar chart of TSS and HSS2; on request, Brier and BSS with
//! each fold's probabilities calibrated by a map fitted on the other folds' predictions
//! (never its own).
//!
//! It reads an experiment's folder (`experiment.json` and its cells' records) or any
//! folder laid out `{network}/seed{S}/fold{K}_res.csv` (network `attention`, `no_attention`,
//! `resnet34`, ...), such as the paper's own prediction files.

use super::paper::{self, PaperNetwork};
use super::plan::Plan;
use super::state::{self, State};
use crate::calibrate::{self, CrossFold, Method};
use crate::evaluate::{
    self, location_analysis, plots, read_details, FileCounts, FileScores, Location, PredictionFile,
    ScoreStats,
};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The networks' checkpoint folders, in the order the report shows them (the paper's two
/// first).
fn arch_dirs() -> impl Iterator<Item = &'static str> {
    crate::model::Arch::ALL.into_iter().map(|a| a.dir_name())
}

/// What to report.
pub struct ReportConfig {
    pub out: PathBuf,
    /// A folder of full label tables `Fold{K}_val.csv` for the location analysis; without
    /// it, the experiment's label folder (when there is an `experiment.json`).
    pub details: Option<PathBuf>,
    pub threshold: f64,
    /// Where the bar chart goes.
    pub plots: Option<PathBuf>,
    /// Put the paper's published figures beside the results.
    pub compare_paper: bool,
    /// Also score each fold calibrated on the other folds' predictions.
    pub calibrate: Option<Method>,
}

/// One cell of the table. Scores only for a finished cell.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub arch: String,
    pub seed: u64,
    pub fold: u32,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    #[serde(flatten)]
    pub scores: Option<FileCounts>,
}

/// The location analysis pooled over the folds with details.
#[derive(Clone, Debug, Serialize)]
pub struct PooledLocation {
    pub folds: Vec<u32>,
    /// Finished folds with no full label table: left out of the pool.
    pub without_details: Vec<u32>,
    #[serde(flatten)]
    pub location: Location,
}

/// One network and seed over its folds.
#[derive(Clone, Debug, Serialize)]
pub struct SeedSummary {
    pub arch: String,
    pub seed: u64,
    pub folds: Vec<u32>,
    /// Folds finished; the statistics need all of them.
    pub finished: Vec<u32>,
    /// Mean and sample standard deviation (n - 1) over the folds; null until every fold
    /// is finished.
    pub mean: Option<ScoreStats>,
    pub std: Option<ScoreStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<PooledLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_fold_calibration: Option<CrossFoldCalibration>,
}

/// Each fold calibrated on the other folds' predictions; the decision threshold's scores
/// (TSS, HSS2) stay the raw probability's.
#[derive(Clone, Debug, Serialize)]
pub struct CrossFoldCalibration {
    pub method: Method,
    pub folds: Vec<CrossFold>,
    /// Means over the folds.
    pub raw_brier: Option<f64>,
    pub calibrated_brier: Option<f64>,
    pub raw_bss: Option<f64>,
    pub calibrated_bss: Option<f64>,
    /// Why there are no folds (too few finished folds or events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

impl CrossFoldCalibration {
    fn of(method: Method, pool: &[(u32, &PredictionFile)]) -> Self {
        let (folds, unavailable) = match calibrate::cross_fold(pool, method) {
            Ok(f) => (f, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        let mean = |get: &dyn Fn(&CrossFold) -> Option<f64>| -> Option<f64> {
            let v: Option<Vec<f64>> = folds.iter().map(get).collect();
            v.filter(|v| !v.is_empty())
                .map(|v| v.iter().sum::<f64>() / v.len() as f64)
        };
        CrossFoldCalibration {
            method,
            raw_brier: mean(&|f| Some(f.compared.raw.brier)),
            calibrated_brier: mean(&|f| Some(f.compared.calibrated.brier)),
            raw_bss: mean(&|f| f.compared.raw.bss),
            calibrated_bss: mean(&|f| f.compared.calibrated.bss),
            folds,
            unavailable,
        }
    }
}

/// Mean and sample standard deviation of one score.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub std: Option<f64>,
}

/// One network over seeds: the seeds' fold means, summarised.
#[derive(Clone, Debug, Serialize)]
pub struct SeedsSummary {
    pub arch: String,
    pub seeds: Vec<u64>,
    pub tss: Option<Spread>,
    pub hss2: Option<Spread>,
    pub brier: Option<Spread>,
    pub bss: Option<Spread>,
    pub roc_auc: Option<Spread>,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct ExperimentReport {
    pub out: PathBuf,
    pub threshold: f64,
    /// Which standard deviation the summaries give.
    pub std: &'static str,
    pub rows: Vec<Row>,
    pub summaries: Vec<SeedSummary>,
    /// Only for networks run with several seeds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub over_seeds: Vec<SeedsSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paper: Option<Vec<PaperNetwork>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plots: Vec<PathBuf>,
}

pub const STD_NOTE: &str =
    "sample standard deviation (n - 1) over folds; over seeds, of the seeds' means over folds";

/// A row before its scores are read.
struct Entry {
    arch: String,
    seed: u64,
    fold: u32,
    state: State,
    predictions: PathBuf,
    log: Option<PathBuf>,
}

fn entries_of_plan(plan: &Plan) -> Result<Vec<Entry>> {
    let statuses = state::status(plan)?;
    Ok(plan
        .cells
        .iter()
        .zip(statuses)
        .map(|(c, s)| Entry {
            arch: c.arch.dir_name().into(),
            seed: c.seed,
            fold: c.fold,
            state: s.state,
            predictions: c.predictions(&plan.out),
            log: s.record.log.filter(|_| s.state != State::Done),
        })
        .collect())
}

/// The digits N of a name `{prefix}{N}{suffix}`; `None` for a name of another form (not
/// an entry of the layout).
fn digits<'a>(name: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The seed of a `seed{S}` folder, refused naming it when S is not written as the
/// experiment writes one (a leading zero, past u64), so two folders never read as one.
fn seed_of(name: &str, path: &Path) -> Result<Option<u64>> {
    let Some(d) = digits(name, "seed", "") else {
        return Ok(None);
    };
    match d.parse::<u64>() {
        Ok(s) if s.to_string() == d => Ok(Some(s)),
        _ => bail!(
            "{}: seed {d} is not written as a seed folder is (no leading zero, at most {})",
            path.display(),
            u64::MAX
        ),
    }
}

/// The fold of a `fold{K}_res.csv`, refused naming the file unless K is 1, 2, 3 or 4.
fn fold_of(name: &str, path: &Path) -> Result<Option<u32>> {
    let Some(d) = digits(name, "fold", "_res.csv") else {
        return Ok(None);
    };
    match d {
        "1" => Ok(Some(1)),
        "2" => Ok(Some(2)),
        "3" => Ok(Some(3)),
        "4" => Ok(Some(4)),
        _ => bail!("{}: fold {d} is not one of 1..4", path.display()),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// The prediction files of a folder laid out `{arch}/seed{S}/fold{K}_res.csv`.
fn entries_of_layout(out: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for arch in arch_dirs() {
        let arch_dir = out.join(arch);
        if !arch_dir.is_dir() {
            continue;
        }
        let mut seeds: Vec<(u64, PathBuf)> = Vec::new();
        for (n, p) in sorted_entries(&arch_dir)? {
            if !p.is_dir() {
                continue;
            }
            if let Some(seed) = seed_of(&n, &p)? {
                seeds.push((seed, p));
            }
        }
        seeds.sort();
        for (seed, seed_dir) in seeds {
            let mut folds: Vec<(u32, PathBuf)> = Vec::new();
            for (n, p) in sorted_entries(&seed_dir)? {
                if let Some(fold) = fold_of(&n, &p)? {
                    folds.push((fold, p));
                }
            }
            folds.sort();
            for (fold, path) in folds {
                entries.push(Entry {
                    arch: arch.into(),
                    seed,
                    fold,
                    state: State::Done,
                    predictions: path,
                    log: None,
                });
            }
        }
    }
    if entries.is_empty() {
        bail!(
            "{}: no experiment.json and no {{network}}/seed{{S}}/fold{{K}}_res.csv files (network: attention, no_attention, resnet34, ...)",
            out.display()
        );
    }
    Ok(entries)
}

/// The full label table of fold `k`, when the details folder has one.
fn details_table(dir: Option<&Path>, k: u32) -> Option<PathBuf> {
    let p = dir?.join(format!("Fold{k}_val.csv"));
    p.is_file().then_some(p)
}

fn pooled_location(
    files: &[(u32, &PredictionFile)],
    details_dir: Option<&Path>,
    threshold: f64,
) -> Result<Option<PooledLocation>> {
    let details_dir = match details_dir {
        Some(d) => d,
        None => return Ok(None),
    };
    let (with, without): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|(k, _)| details_table(Some(details_dir), *k).is_some());
    if with.is_empty() {
        return Ok(None);
    }
    let tables: Vec<PathBuf> = with
        .iter()
        .filter_map(|(k, _)| details_table(Some(details_dir), *k))
        .collect();
    let details = read_details(&tables)?;
    let pool: Vec<PredictionFile> = with.iter().map(|(_, f)| (*f).clone()).collect();
    details.check_every_file_matches(&pool)?;
    Ok(Some(PooledLocation {
        folds: with.iter().map(|(k, _)| *k).collect(),
        without_details: without.iter().map(|(k, _)| *k).collect(),
        location: location_analysis(&pool, &details, threshold),
    }))
}

fn spread(values: &[f64]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() >= 2)
        .then(|| (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some(Spread { mean, std })
}

fn over_seeds(arch: &str, summaries: &[&SeedSummary]) -> SeedsSummary {
    let means: Option<Vec<&ScoreStats>> = summaries.iter().map(|s| s.mean.as_ref()).collect();
    let field = |get: fn(&ScoreStats) -> Option<f64>| {
        let v: Option<Vec<f64>> = means.as_ref()?.iter().map(|m| get(m)).collect();
        spread(&v?)
    };
    SeedsSummary {
        arch: arch.into(),
        seeds: summaries.iter().map(|s| s.seed).collect(),
        tss: field(|m| m.tss),
        hss2: field(|m| m.hss2),
        brier: field(|m| m.brier),
        bss: field(|m| m.bss),
        roc_auc: field(|m| m.roc_auc),
    }
}

/// Builds the report of the experiment (or result folder) `cfg.out`.
pub fn report(cfg: &ReportConfig) -> Result<ExperimentReport> {
    crate::setting::check_probability("threshold", cfg.threshold)?;
    let plan = Plan::read(&cfg.out)?;
    let entries = match &plan {
        Some(p) => entries_of_plan(p)?,
        None => entries_of_layout(&cfg.out)?,
    };
    let details_dir: Option<PathBuf> = cfg
        .details
        .clone()
        .or_else(|| plan.as_ref().map(|p| p.labels.clone()));
    if let Some(d) = &cfg.details {
        if !d.is_dir() {
            bail!("{}: not a folder of Fold{{K}}_val.csv tables", d.display());
        }
    }
    let mut files: Vec<Option<PredictionFile>> = Vec::new();
    let mut rows = Vec::new();
    for e in &entries {
        let file = if e.state == State::Done {
            Some(evaluate::read_predictions(&e.predictions)?)
        } else {
            None
        };
        let scores: Option<FileScores> = file.as_ref().map(|f| evaluate::score(f, cfg.threshold));
        rows.push(Row {
            arch: e.arch.clone(),
            seed: e.seed,
            fold: e.fold,
            state: e.state,
            predictions: file.as_ref().map(|_| e.predictions.clone()),
            log: e.log.clone(),
            scores: scores.map(|s| s.scores),
        });
        files.push(file);
    }
    // Groups in the order of first appearance.
    let mut groups: BTreeMap<(usize, u64), Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let arch_rank = arch_dirs()
            .position(|a| a == e.arch)
            .unwrap_or(crate::model::Arch::ALL.len());
        groups.entry((arch_rank, e.seed)).or_default().push(i);
    }
    let mut summaries = Vec::new();
    for members in groups.values() {
        let first = &entries[members[0]];
        let finished: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| files[i].is_some())
            .collect();
        let scored: Vec<FileScores> = finished
            .iter()
            .map(|&i| evaluate::score(files[i].as_ref().expect("finished"), cfg.threshold))
            .collect();
        let complete = finished.len() == members.len();
        let (mean, std) = if complete {
            let (m, s) = evaluate::summarise(&scored);
            (Some(m), Some(s))
        } else {
            (None, None)
        };
        let pool: Vec<(u32, &PredictionFile)> = finished
            .iter()
            .map(|&i| (entries[i].fold, files[i].as_ref().expect("finished")))
            .collect();
        summaries.push(SeedSummary {
            arch: first.arch.clone(),
            seed: first.seed,
            folds: members.iter().map(|&i| entries[i].fold).collect(),
            finished: finished.iter().map(|&i| entries[i].fold).collect(),
            mean,
            std,
            location: pooled_location(&pool, details_dir.as_deref(), cfg.threshold)?,
            cross_fold_calibration: cfg
                .calibrate
                .filter(|_| complete)
                .map(|m| CrossFoldCalibration::of(m, &pool)),
        });
    }
    let mut over = Vec::new();
    for arch in arch_dirs() {
        let of_arch: Vec<&SeedSummary> = summaries.iter().filter(|s| s.arch == arch).collect();
        if of_arch.len() >= 2 {
            over.push(over_seeds(arch, &of_arch));
        }
    }
    let paper = cfg.compare_paper.then(|| {
        arch_dirs()
            .filter(|a| entries.iter().any(|e| e.arch == *a))
            .filter_map(|a| paper::network(a).copied())
            .collect()
    });
    let mut plotted = Vec::new();
    if let Some(dir) = &cfg.plots {
        let bars: Vec<plots::SkillBar> = rows
            .iter()
            .map(|r| plots::SkillBar {
                label: format!("{} s{} f{}", short_arch(&r.arch), r.seed, r.fold),
                tss: r.scores.as_ref().and_then(|s| s.tss),
                hss2: r.scores.as_ref().and_then(|s| s.hss2),
                finished: r.state == State::Done,
            })
            .collect();
        plotted.push(plots::plot_skill_bars(dir, "skill_by_fold.png", &bars)?);
    }
    Ok(ExperimentReport {
        out: cfg.out.clone(),
        threshold: cfg.threshold,
        std: STD_NOTE,
        rows,
        summaries,
        over_seeds: over,
        paper,
        plots: plotted,
    })
}

/// `attn` / `cnn`: short names for chart labels.
pub fn short_arch(arch: &str) -> &str {
    match arch {
        "attention" => "attn",
        "no_attention" => "cnn",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_numbers_are_read_as_the_experiment_writes_them() {
        let p = Path::new("x");
        assert_eq!(seed_of("seed0", p).unwrap(), Some(0));
        assert_eq!(
            seed_of("seed18446744073709551615", p).unwrap(),
            Some(u64::MAX)
        );
        assert_eq!(seed_of("seeds", p).unwrap(), None);
        for bad in ["seed04", "seed18446744073709551616"] {
            assert!(seed_of(bad, p).is_err(), "{bad}");
        }
        assert_eq!(fold_of("fold4_res.csv", p).unwrap(), Some(4));
        assert_eq!(fold_of("fold1_res.csv.bak", p).unwrap(), None);
        assert_eq!(fold_of("fold+1_res.csv", p).unwrap(), None);
        for bad in [
            "fold0_res.csv",
            "fold5_res.csv",
            "fold01_res.csv",
            "fold4294967297_res.csv",
        ] {
            assert!(fold_of(bad, p).is_err(), "{bad}");
        }
    }
}
