//! PNG plots of a verification: ROC curves, reliability diagram, TSS and HSS2 against the
//! threshold, a confusion matrix per file, and training curves from a history file.
//! Each PNG is drawn under a temporary name and renamed when complete.

use super::predictions::PredictionFile;
use crate::metrics::{self, Confusion};
use anyhow::{bail, Context, Result};
use plotters::chart::{MeshStyle, SeriesAnno};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (900, 700);
const FONT: &str = "sans-serif";

/// Text sizes and margin of a chart: full-size plots, and the smaller panels of
/// training.png.
#[derive(Clone, Copy)]
struct Look {
    caption: u32,
    label: u32,
    axis_desc: u32,
    margin: u32,
}

const FULL: Look = Look {
    caption: 28,
    label: 16,
    axis_desc: 18,
    margin: 20,
};
const PANEL: Look = Look {
    caption: 24,
    label: 15,
    axis_desc: 17,
    margin: 15,
};

type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart in `look` with an optional caption, `x_area` px for the x labels and 60 px
/// for the y labels. `top_margin` overrides the look's margin at the top.
fn styled_chart<'a, 'b>(
    area: &'a Area<'b>,
    look: Look,
    caption: Option<&str>,
    top_margin: Option<u32>,
    x_area: u32,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Chart<'a, 'b>> {
    let mut builder = ChartBuilder::on(area);
    if let Some(c) = caption {
        builder.caption(c, (FONT, look.caption));
    }
    builder.margin(look.margin);
    if let Some(m) = top_margin {
        builder.margin_top(m);
    }
    builder
        .x_label_area_size(x_area)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)
}

/// The chart's grid and axes in `look`; the caller adds what else it needs and draws.
fn styled_mesh<'a, 'c, 'b>(
    chart: &'c mut Chart<'a, 'b>,
    look: Look,
    x_desc: Option<&str>,
    y_desc: &str,
) -> MeshStyle<'a, 'c, RangedCoordf64, RangedCoordf64, BitMapBackend<'b>> {
    let mut mesh = chart.configure_mesh();
    if let Some(d) = x_desc {
        mesh.x_desc(d);
    }
    mesh.y_desc(y_desc)
        .label_style((FONT, look.label))
        .axis_desc_style((FONT, look.axis_desc));
    mesh
}

/// The legend box at `position`.
fn draw_legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    look: Look,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, look.label))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)
}

/// A legend entry: a line `len` px long in `style`.
fn legend_line<S: Into<ShapeStyle> + Copy>(
    style: S,
    len: i32,
) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + len, y)], style)
}

/// The dashed diagonal of the unit square (no skill on a ROC curve, perfect reliability).
fn draw_diagonal<'c, 'a, 'b>(
    chart: &'c mut Chart<'a, 'b>,
) -> Result<&'c mut SeriesAnno<'a, BitMapBackend<'b>>> {
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            6,
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(plot_err)
}

/// A solid curve in colour `c`, with its legend entry.
fn draw_curve<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    pts: Vec<(f64, f64)>,
    c: RGBColor,
    label: String,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(pts, c.stroke_width(2)))
        .map_err(plot_err)?
        .label(label)
        .legend(legend_line(c.stroke_width(2), 24));
    Ok(())
}

/// Filled dots of `radius` px at `pts`.
fn draw_dots(chart: &mut Chart, pts: &[(f64, f64)], radius: i32, c: RGBColor) -> Result<()> {
    chart
        .draw_series(pts.iter().map(|&p| Circle::new(p, radius, c.filled())))
        .map_err(plot_err)?;
    Ok(())
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    COLORS[i % COLORS.len()]
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!(
        "drawing failed: {e} (text needs a system font: install fontconfig and fonts-dejavu-core)"
    )
}

/// A text style anchored at its centre.
fn centered(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center))
}

/// Draws into `{dir}/{name}` through a temporary file.
fn draw_png(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<PathBuf> {
    let path = dir.join(name);
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    let result: Result<()> = (|| {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
        Ok(())
    })();
    result.with_context(|| format!("plotting {}", path.display()))?;
    let image = image::RgbImage::from_raw(size.0, size.1, pixels)
        .with_context(|| format!("plotting {}", path.display()))?;
    crate::fsio::write_atomic_with(&path, |file| {
        image.write_to(file, image::ImageFormat::Png)?;
        Ok(())
    })?;
    Ok(path)
}

/// A short label for a file in legends: its file name.
pub fn short_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Draws every plot of the prediction files into `dir`; returns the files written.
pub fn plot_predictions(
    dir: &Path,
    files: &[PredictionFile],
    threshold: f64,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = vec![
        roc(dir, files)?,
        reliability(dir, files)?,
        skill_vs_threshold(dir, files, threshold)?,
    ];
    let stems = unique_stems(files);
    for (f, stem) in files.iter().zip(stems) {
        written.push(confusion(dir, f, &stem, threshold)?);
    }
    Ok(written)
}

/// File stems, numbered when two files share one.
fn unique_stems(files: &[PredictionFile]) -> Vec<String> {
    let stems: Vec<String> = files
        .iter()
        .map(|f| {
            f.path
                .file_stem()
                .map_or("predictions".into(), |s| s.to_string_lossy().into_owned())
        })
        .collect();
    stems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if stems.iter().filter(|t| *t == s).count() > 1 {
                format!("{}_{}", i + 1, s)
            } else {
                s.clone()
            }
        })
        .collect()
}

fn roc(dir: &Path, files: &[PredictionFile]) -> Result<PathBuf> {
    draw_png(dir, "roc.png", SIZE, |root| {
        let mut chart = styled_chart(
            root,
            FULL,
            Some("ROC curve"),
            None,
            50,
            0f64..1f64,
            0f64..1f64,
        )?;
        styled_mesh(
            &mut chart,
            FULL,
            Some("False positive rate (POFD)"),
            "True positive rate (POD)",
        )
        .draw()
        .map_err(plot_err)?;
        draw_diagonal(&mut chart)?;
        for (i, f) in files.iter().enumerate() {
            let pts: Vec<(f64, f64)> = metrics::operating_points(&f.probs, &f.targets)
                .iter()
                .map(|p| (p.fpr(), p.tpr()))
                .collect();
            let auc = metrics::roc_auc(&f.probs, &f.targets);
            let label = format!("{} (AUC {auc:.3})", short_name(&f.path));
            draw_curve(&mut chart, pts, color(i), label)?;
        }
        draw_legend(&mut chart, FULL, SeriesLabelPosition::LowerRight)
    })
}

fn reliability(dir: &Path, files: &[PredictionFile]) -> Result<PathBuf> {
    reliability_named(dir, "reliability.png", files)
}

/// The reliability diagram of `files` (one curve each) alone, into `path`.
pub fn reliability_plot(path: &Path, files: &[PredictionFile]) -> Result<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().context("the plot has no file name")?;
    reliability_named(dir, &name.to_string_lossy(), files)
}

fn reliability_named(dir: &Path, name: &str, files: &[PredictionFile]) -> Result<PathBuf> {
    draw_png(dir, name, (900, 900), |root| {
        let (top, bottom) = root.split_vertically(640);
        let mut chart = styled_chart(
            &top,
            FULL,
            Some("Reliability diagram"),
            None,
            40,
            0f64..1f64,
            0f64..1f64,
        )?;
        styled_mesh(&mut chart, FULL, None, "Observed frequency")
            .draw()
            .map_err(plot_err)?;
        draw_diagonal(&mut chart)?
            .label("perfect reliability")
            .legend(legend_line(BLACK.mix(0.5), 24));
        let mut max_count = 1u64;
        let all_bins: Vec<_> = files
            .iter()
            .map(|f| metrics::reliability(&f.probs, &f.targets, 10))
            .collect();
        for (i, (f, bins)) in files.iter().zip(&all_bins).enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| (b.mean_prob, b.observed))
                .collect();
            max_count = max_count.max(bins.iter().map(|b| b.count).max().unwrap_or(1));
            let rate =
                f.targets.iter().filter(|&&t| t).count() as f64 / f.targets.len().max(1) as f64;
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, rate), (1.0, rate)],
                    3,
                    5,
                    c.mix(0.6).stroke_width(1),
                ))
                .map_err(plot_err)?;
            let label = format!("{} (climatology {rate:.3}, dashed)", short_name(&f.path));
            draw_curve(&mut chart, pts.clone(), c, label)?;
            draw_dots(&mut chart, &pts, 4, c)?;
        }
        draw_legend(&mut chart, FULL, SeriesLabelPosition::UpperLeft)?;
        // How many forecasts fall in each probability bin.
        let mut hist = styled_chart(
            &bottom,
            FULL,
            None,
            Some(0),
            50,
            0f64..1f64,
            0f64..(max_count as f64 * 1.05),
        )?;
        styled_mesh(&mut hist, FULL, Some("Forecast probability"), "Forecasts")
            .y_labels(4)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(plot_err)?;
        let n = files.len().max(1) as f64;
        for (i, bins) in all_bins.iter().enumerate() {
            let c = color(i);
            hist.draw_series(bins.iter().map(|b| {
                let w = (b.hi - b.lo) / n;
                let x0 = b.lo + w * i as f64;
                Rectangle::new(
                    [(x0 + 0.005, 0.0), (x0 + w - 0.005, b.count as f64)],
                    c.mix(0.7).filled(),
                )
            }))
            .map_err(plot_err)?;
        }
        Ok(())
    })
}

fn skill_vs_threshold(dir: &Path, files: &[PredictionFile], threshold: f64) -> Result<PathBuf> {
    draw_png(dir, "skill_vs_threshold.png", SIZE, |root| {
        let grid: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
        let curves: Vec<Vec<Confusion>> = files
            .iter()
            .map(|f| {
                grid.iter()
                    .map(|&t| Confusion::from_probs(&f.probs, &f.targets, t))
                    .collect()
            })
            .collect();
        let lo = curves
            .iter()
            .flatten()
            .map(|c| c.tss().min(c.hss2()))
            .fold(0.0f64, f64::min);
        let mut chart = styled_chart(
            root,
            FULL,
            Some("TSS and HSS2 against the decision threshold"),
            None,
            50,
            0f64..1f64,
            (lo - 0.02).min(0.0)..1f64,
        )?;
        styled_mesh(
            &mut chart,
            FULL,
            Some("Threshold on P(flare)"),
            "Skill score",
        )
        .draw()
        .map_err(plot_err)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(threshold, (lo - 0.02).min(0.0)), (threshold, 1.0)],
                4,
                4,
                BLACK.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(format!("threshold {threshold}; dots: best TSS"))
            .legend(legend_line(BLACK.stroke_width(2), 24));
        for (i, (f, cs)) in files.iter().zip(&curves).enumerate() {
            let c = color(i);
            let name = short_name(&f.path);
            let tss: Vec<(f64, f64)> = grid.iter().zip(cs).map(|(&t, c)| (t, c.tss())).collect();
            let hss: Vec<(f64, f64)> = grid.iter().zip(cs).map(|(&t, c)| (t, c.hss2())).collect();
            draw_curve(&mut chart, tss, c, format!("{name} TSS"))?;
            chart
                .draw_series(DashedLineSeries::new(hss, 8, 5, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(format!("{name} HSS2 (dashed)"))
                .legend(legend_line(c.stroke_width(2), 10));
            let best = metrics::best_tss_threshold(&f.probs, &f.targets);
            draw_dots(&mut chart, &[best], 5, c)?;
        }
        draw_legend(&mut chart, FULL, SeriesLabelPosition::UpperRight)
    })
}

fn confusion(dir: &Path, f: &PredictionFile, stem: &str, threshold: f64) -> Result<PathBuf> {
    let c = Confusion::from_probs(&f.probs, &f.targets, threshold);
    draw_png(dir, &format!("confusion_{stem}.png"), (700, 640), |root| {
        let title = format!("{} at threshold {threshold}", short_name(&f.path));
        root.draw(&Text::new(title, (350, 28), centered(24)))
            .map_err(plot_err)?;
        let sub = format!("TSS {:.4}   HSS2 {:.4}   n {}", c.tss(), c.hss2(), c.n());
        root.draw(&Text::new(sub, (350, 60), centered(18)))
            .map_err(plot_err)?;
        let (x0, y0, cell) = (160, 130, 230);
        let n = c.n().max(1) as f64;
        // Rows: actual flare / no flare; columns: forecast flare / no flare.
        let cells = [
            (0, 0, c.tp, "TP", c.tp + c.fn_),
            (1, 0, c.fn_, "FN", c.tp + c.fn_),
            (0, 1, c.fp, "FP", c.fp + c.tn),
            (1, 1, c.tn, "TN", c.fp + c.tn),
        ];
        for (col, row, count, name, row_total) in cells {
            let share = count as f64 / row_total.max(1) as f64;
            let good = col == row;
            let base = if good {
                RGBColor(44, 160, 44)
            } else {
                RGBColor(214, 39, 40)
            };
            let fill = base.mix(0.15 + 0.7 * share);
            let (cx, cy) = (x0 + col * cell, y0 + row * cell);
            root.draw(&Rectangle::new(
                [(cx, cy), (cx + cell, cy + cell)],
                fill.filled(),
            ))
            .map_err(plot_err)?;
            root.draw(&Rectangle::new(
                [(cx, cy), (cx + cell, cy + cell)],
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?;
            let mid = (cx + cell / 2, cy + cell / 2);
            root.draw(&Text::new(
                format!("{name} {count}"),
                (mid.0, mid.1 - 20),
                centered(30),
            ))
            .map_err(plot_err)?;
            let pct = format!(
                "{:.1}% of row, {:.1}% of all",
                100.0 * share,
                100.0 * count as f64 / n
            );
            root.draw(&Text::new(pct, (mid.0, mid.1 + 22), centered(15)))
                .map_err(plot_err)?;
        }
        for (i, label) in ["forecast flare", "forecast no flare"].iter().enumerate() {
            root.draw(&Text::new(
                *label,
                (x0 + cell / 2 + i as i32 * cell, y0 - 18),
                centered(18),
            ))
            .map_err(plot_err)?;
        }
        for (i, label) in ["flare", "no flare"].iter().enumerate() {
            let y = y0 + cell / 2 + i as i32 * cell;
            root.draw(&Text::new("observed", (x0 - 75, y - 12), centered(18)))
                .map_err(plot_err)?;
            root.draw(&Text::new(*label, (x0 - 75, y + 12), centered(18)))
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// The training-curve columns of a `fold{K}_history.csv`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub epoch: Vec<f64>,
    pub train_loss: Vec<f64>,
    pub val_loss: Vec<f64>,
    pub train_tss: Vec<f64>,
    pub val_tss: Vec<f64>,
    pub train_hss2: Vec<f64>,
    pub val_hss2: Vec<f64>,
}

/// Reads the trainer's history CSV by column name. Errors name the file and line.
pub fn read_history(path: &Path) -> Result<History> {
    let shown = path.display();
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read history {shown}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{shown}:1: cannot read the header"))?
        .clone();
    const NAMES: [&str; 7] = [
        "epoch",
        "train_loss",
        "val_loss",
        "train_tss",
        "val_tss",
        "train_hss2",
        "val_hss2",
    ];
    let mut cols = [0usize; 7];
    for (slot, name) in cols.iter_mut().zip(NAMES) {
        *slot = headers
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| {
                format!("{shown}:1: missing column `{name}` in the training history")
            })?;
    }
    let mut columns: [Vec<f64>; 7] = Default::default();
    for record in reader.records() {
        let record = record.with_context(|| format!("{shown}: malformed row"))?;
        let line = record.position().map_or(0, |p| p.line());
        for ((col, name), values) in cols.iter().zip(NAMES).zip(columns.iter_mut()) {
            let raw = record.get(*col).unwrap_or("").trim();
            let v: f64 = raw
                .parse()
                .ok()
                .with_context(|| format!("{shown}:{line}: {name} {raw:?} is not a number"))?;
            values.push(v);
        }
    }
    if columns[0].is_empty() {
        bail!("{shown}: no epochs");
    }
    let [epoch, train_loss, val_loss, train_tss, val_tss, train_hss2, val_hss2] = columns;
    Ok(History {
        epoch,
        train_loss,
        val_loss,
        train_tss,
        val_tss,
        train_hss2,
        val_hss2,
    })
}

/// Loss, TSS and HSS2 per epoch for training and validation, side by side.
pub fn plot_history(dir: &Path, history: &History) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    draw_png(dir, "training.png", (1500, 520), |root| {
        let panels = root.split_evenly((1, 3));
        let first = history.epoch.first().copied().unwrap_or(0.0);
        let last = history
            .epoch
            .last()
            .copied()
            .unwrap_or(1.0)
            .max(first + 1.0);
        let series = [
            ("Loss", &history.train_loss, &history.val_loss),
            ("TSS", &history.train_tss, &history.val_tss),
            ("HSS2", &history.train_hss2, &history.val_hss2),
        ];
        for (k, (panel, (name, train, val))) in panels.iter().zip(series).enumerate() {
            // Loss falls, skill rises: keep the legend out of the curves' way.
            let corner = if k == 0 {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::LowerRight
            };
            let all = train
                .iter()
                .chain(val.iter())
                .copied()
                .filter(|v| v.is_finite());
            let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.08).max(1e-3);
            let caption = format!("{name} per epoch");
            let mut chart = styled_chart(
                panel,
                PANEL,
                Some(&caption),
                None,
                45,
                first..last,
                (lo - pad)..(hi + pad),
            )?;
            styled_mesh(&mut chart, PANEL, Some("Epoch"), name)
                // One label per epoch (at most 12); a tick between epochs stays blank, so a
                // rounded "2 2" never appears.
                .x_labels(((last - first) as usize + 1).min(12))
                .x_label_formatter(&|v| {
                    if (v - v.round()).abs() < 1e-6 {
                        format!("{v:.0}")
                    } else {
                        String::new()
                    }
                })
                .draw()
                .map_err(plot_err)?;
            for (i, (label, values)) in [("train", train), ("validation", val)]
                .into_iter()
                .enumerate()
            {
                let c = color(i);
                let pts: Vec<(f64, f64)> = history
                    .epoch
                    .iter()
                    .copied()
                    .zip(values.iter().copied())
                    .collect();
                draw_curve(&mut chart, pts.clone(), c, label.to_string())?;
                draw_dots(&mut chart, &pts, 3, c)?;
            }
            draw_legend(&mut chart, PANEL, corner)?;
        }
        Ok(())
    })
}

/// One group of the skill bar chart: a run's TSS and HSS2 (`None` where undefined), or a
/// run not finished yet.
#[derive(Clone, Debug)]
pub struct SkillBar {
    pub label: String,
    pub tss: Option<f64>,
    pub hss2: Option<f64>,
    pub finished: bool,
}

/// `{dir}/{name}`: TSS and HSS2 side by side for each run (fold and network); a run not
/// finished is marked as such instead of a bar.
pub fn plot_skill_bars(dir: &Path, name: &str, bars: &[SkillBar]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let width = (160 + 90 * bars.len() as u32).max(600);
    draw_png(dir, name, (width, 560), |root| {
        let values = bars.iter().flat_map(|b| [b.tss, b.hss2]).flatten();
        let lo = values.fold(0.0f64, f64::min);
        let n = bars.len().max(1) as f64;
        let mut chart = styled_chart(
            root,
            FULL,
            Some("TSS and HSS2 per fold and network"),
            None,
            70,
            0.0..n,
            (lo - 0.05)..1.0,
        )?;
        styled_mesh(&mut chart, FULL, None, "skill")
            .disable_x_mesh()
            .x_labels(0)
            .draw()
            .map_err(plot_err)?;
        for (k, (metric, offset)) in [("TSS", 0.12), ("HSS2", 0.5)].into_iter().enumerate() {
            let c = color(k);
            let rects: Vec<Rectangle<(f64, f64)>> = bars
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let v = if k == 0 { b.tss } else { b.hss2 }?;
                    let x = i as f64 + offset;
                    Some(Rectangle::new([(x, 0.0), (x + 0.38, v)], c.filled()))
                })
                .collect();
            chart
                .draw_series(rects)
                .map_err(plot_err)?
                .label(metric)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
        }
        let below = lo - 0.05;
        for (i, b) in bars.iter().enumerate() {
            let x = i as f64 + 0.5;
            let (px, py) = chart.backend_coord(&(x, below));
            root.draw(&Text::new(b.label.clone(), (px, py + 18), centered(14)))
                .map_err(plot_err)?;
            let note = if !b.finished {
                Some("not finished")
            } else if b.tss.is_none() || b.hss2.is_none() {
                Some("undefined")
            } else {
                None
            };
            if let Some(note) = note {
                let (px, py) = chart.backend_coord(&(x, 0.5));
                root.draw(&Text::new(note, (px, py), centered(14)))
                    .map_err(plot_err)?;
            }
        }
        draw_legend(&mut chart, FULL, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}
