//! The reliability diagram: observed frequency against forecast probability per bin, one
//! curve per file, over a histogram of the forecasts.

use super::style::{
    color, draw_curve, draw_diagonal, draw_dots, draw_legend, draw_png, legend_line, plot_err,
    short_name, styled_chart, styled_mesh, FULL,
};
use crate::evaluate::predictions::PredictionFile;
use crate::metrics;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// `reliability.png` in `dir`.
pub fn reliability(dir: &Path, files: &[PredictionFile]) -> Result<PathBuf> {
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
