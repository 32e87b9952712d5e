//! TSS and HSS2 against the decision threshold, with each file's best TSS.

use super::style::{
    color, draw_curve, draw_dots, draw_legend, draw_png, legend_line, plot_err, short_name,
    styled_chart, styled_mesh, FULL, SIZE,
};
use crate::evaluate::predictions::PredictionFile;
use crate::metrics::{self, Confusion};
use anyhow::Result;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// `skill_vs_threshold.png`: each file's TSS and HSS2 over thresholds 0..=1.
pub fn skill_vs_threshold(dir: &Path, files: &[PredictionFile], threshold: f64) -> Result<PathBuf> {
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
