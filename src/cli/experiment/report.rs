//! `experiment report`: the paper's table of a grid, printed.

use super::num;
use anyhow::Result;
use flarecast::calibrate::Method;
use flarecast::experiment::paper;
use flarecast::experiment::report::{self, ExperimentReport, ReportConfig};
use flarecast::text_table::{Col, Table};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(mut_arg("out", |a| a.help("An experiment folder, or any folder laid out {network}/seed{S}/fold{K}_res.csv (attention, no_attention, resnet34, ...).")))]
pub struct ReportArgs {
    #[command(flatten)]
    out: crate::cli::common_args::OutDir,
    /// Folder of full label tables Fold{K}_val.csv for the location analysis (default: the
    /// experiment's labels).
    #[arg(long)]
    details: Option<PathBuf>,
    #[command(flatten)]
    threshold: crate::cli::common_args::Threshold,
    /// Folder for the bar chart of TSS and HSS2 per fold and network.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Show the paper's published figures beside the results.
    #[arg(long)]
    compare_paper: bool,
    /// platt or isotonic: also give each fold's Brier and BSS calibrated by a map fitted
    /// on the other folds' predictions pooled (never its own).
    #[arg(long)]
    calibrate: Option<Method>,
    #[command(flatten)]
    json: crate::cli::common_args::Json,
}

pub fn report_cmd(a: ReportArgs) -> Result<()> {
    let r = report::report(&ReportConfig {
        out: a.out.dir.clone(),
        details: a.details.clone(),
        threshold: a.threshold.value,
        plots: a.plots.clone(),
        compare_paper: a.compare_paper,
        calibrate: a.calibrate,
    })?;
    if a.json.on {
        return crate::cli::print_json(&r);
    }
    print_report(&r);
    Ok(())
}

fn pm(mean: Option<f64>, std: Option<f64>, decimals: usize) -> String {
    match (mean, std) {
        (Some(m), Some(s)) => format!("{m:.decimals$}+-{s:.decimals$}"),
        (m, _) => num(m, decimals),
    }
}

pub(super) fn print_report(r: &ExperimentReport) {
    println!("threshold {}; mean +- {}", r.threshold, r.std);
    let paper_of = |arch: &str| {
        r.paper
            .as_ref()
            .and_then(|p| p.iter().find(|n| n.arch == arch))
    };
    for s in &r.summaries {
        let paper = paper_of(&s.arch);
        println!();
        println!("{} seed {}", s.arch, s.seed);
        let mut t = Table::new(
            [
                Col::Left(5),
                Col::Left(11),
                Col::Right(6),
                Col::Right(6),
                Col::Right(6),
                Col::Right(6),
                Col::Right(6),
                Col::Right(13),
                Col::Right(13),
                Col::Right(13),
                Col::Right(13),
                Col::Right(13),
                Col::Left(0),
            ],
            [
                "fold",
                "state",
                "n",
                "TP",
                "FP",
                "TN",
                "FN",
                "TSS",
                "HSS2",
                "Brier",
                "BSS",
                "ROC AUC",
                if paper.is_some() {
                    "paper TSS / HSS2"
                } else {
                    ""
                },
            ],
        );
        for row in r
            .rows
            .iter()
            .filter(|x| x.arch == s.arch && x.seed == s.seed)
        {
            let published = paper
                .and_then(|p| p.fold(row.fold))
                .map_or(String::new(), |f| format!("{:.4} / {:.4}", f.tss, f.hss2));
            match &row.scores {
                Some(c) => t.row([
                    row.fold.to_string(),
                    row.state.name().into(),
                    c.n.to_string(),
                    c.tp.to_string(),
                    c.fp.to_string(),
                    c.tn.to_string(),
                    c.fn_.to_string(),
                    num(c.tss, 4),
                    num(c.hss2, 4),
                    num(c.brier, 4),
                    num(c.bss, 4),
                    num(c.roc_auc, 4),
                    published,
                ]),
                None => {
                    let mut cells: [String; 13] = Default::default();
                    cells[0] = row.fold.to_string();
                    cells[1] = row.state.name().into();
                    cells[2] = "not finished".into();
                    cells[12] = row
                        .log
                        .as_ref()
                        .map_or(published, |l| format!("log {}", l.display()));
                    t.row(cells)
                }
            }
        }
        match (&s.mean, &s.std) {
            (Some(m), Some(sd)) => {
                let published = paper.map_or(String::new(), |p| {
                    format!("{:.3} / {:.3}", p.mean_tss, p.mean_hss2)
                });
                t.row([
                    "mean".into(),
                    format!("{} folds", s.folds.len()),
                    pm(m.n, None, 1),
                    pm(m.tp, None, 1),
                    pm(m.fp, None, 1),
                    pm(m.tn, None, 1),
                    pm(m.fn_, None, 1),
                    pm(m.tss, sd.tss, 4),
                    pm(m.hss2, sd.hss2, 4),
                    pm(m.brier, sd.brier, 4),
                    pm(m.bss, sd.bss, 4),
                    pm(m.roc_auc, sd.roc_auc, 4),
                    published,
                ]);
            }
            _ => {
                let mut cells: [String; 13] = Default::default();
                cells[0] = "mean".into();
                cells[1] = format!("{} of {} folds finished", s.finished.len(), s.folds.len());
                cells[2] = "not finished".into();
                t.row(cells);
            }
        }
        print!("{t}");
        if let Some(loc) = &s.location {
            print_location(loc, paper);
        }
        if let Some(c) = &s.cross_fold_calibration {
            print_cross_fold(c);
        }
    }
    for o in &r.over_seeds {
        println!();
        println!(
            "{} over seeds {} (mean +- sample std of the seeds' means)",
            o.arch,
            o.seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let sp = |x: Option<report::Spread>| {
            x.map_or("not finished".into(), |x| pm(Some(x.mean), x.std, 4))
        };
        println!(
            "TSS {}  HSS2 {}  Brier {}  BSS {}  ROC AUC {}",
            sp(o.tss),
            sp(o.hss2),
            sp(o.brier),
            sp(o.bss),
            sp(o.roc_auc)
        );
    }
    for p in &r.plots {
        println!("plot: {}", p.display());
    }
}

fn print_cross_fold(c: &report::CrossFoldCalibration) {
    println!(
        "calibrated ({:?}), each fold by a map fitted on the other folds' predictions; TSS and HSS2 stay the raw probability's",
        c.method
    );
    if let Some(why) = &c.unavailable {
        println!("  unavailable: {why}");
        return;
    }
    let mut t = Table::new(
        [
            Col::Left(5),
            Col::Left(14),
            Col::Right(11),
            Col::Right(11),
            Col::Right(11),
            Col::Right(11),
        ],
        [
            "fold",
            "fitted on",
            "Brier raw",
            "Brier cal",
            "BSS raw",
            "BSS cal",
        ],
    );
    for f in &c.folds {
        t.row([
            f.fold.to_string(),
            f.calibration.fitted_on.clone(),
            num(Some(f.compared.raw.brier), 4),
            num(Some(f.compared.calibrated.brier), 4),
            num(f.compared.raw.bss, 4),
            num(f.compared.calibrated.bss, 4),
        ]);
    }
    t.row([
        "mean".into(),
        String::new(),
        num(c.raw_brier, 4),
        num(c.calibrated_brier, 4),
        num(c.raw_bss, 4),
        num(c.calibrated_bss, 4),
    ]);
    print!("{t}");
}

fn print_location(loc: &report::PooledLocation, paper: Option<&paper::PaperNetwork>) {
    let folds = |v: &[u32]| {
        v.iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut head = format!(
        "location, pooled over folds {} (X- and M-class windows; central = |lon| <= 70 and |lat| <= 70)",
        folds(&loc.folds)
    );
    if !loc.without_details.is_empty() {
        head += &format!(
            "; no full label table for folds {}",
            folds(&loc.without_details)
        );
    }
    println!("{head}");
    let mut t = Table::new(
        [
            Col::Left(6),
            Col::Right(9),
            Col::Right(9),
            Col::Right(8),
            Col::Right(9),
            Col::Right(9),
            Col::Right(8),
            Col::Right(8),
            Col::Right(6),
        ],
        [
            "class", "limb pos", "limb neg", "recall", "cent pos", "cent neg", "recall", "unknown",
            "total",
        ],
    );
    for (name, c) in [("X", &loc.location.x), ("M", &loc.location.m)] {
        t.row([
            name.into(),
            c.limb.pos.to_string(),
            c.limb.neg.to_string(),
            format!("{:.4}", c.limb.recall),
            c.central.pos.to_string(),
            c.central.neg.to_string(),
            format!("{:.4}", c.central.recall),
            c.unknown.to_string(),
            c.total.to_string(),
        ]);
    }
    let paper = paper.filter(|p| !p.location.is_empty());
    if let Some(p) = paper {
        for l in p.location {
            let recall = |pos: u64, neg: u64| format!("{:.4}", pos as f64 / (pos + neg) as f64);
            t.row([
                format!("paper {}", l.class),
                l.limb_pos.to_string(),
                l.limb_neg.to_string(),
                recall(l.limb_pos, l.limb_neg),
                l.central_pos.to_string(),
                l.central_neg.to_string(),
                recall(l.central_pos, l.central_neg),
                "-".into(),
                l.total.to_string(),
            ]);
        }
    }
    print!("{t}");
    if paper.is_some() {
        println!("(the paper's rows count all four folds)");
    }
}
