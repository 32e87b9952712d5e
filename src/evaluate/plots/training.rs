//! Training curves: loss, TSS and HSS2 per epoch, training beside validation.

use super::style::{
    color, draw_curve, draw_dots, draw_legend, draw_png, plot_err, styled_chart, styled_mesh, PANEL,
};
use crate::train::history::Curves;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Loss, TSS and HSS2 per epoch for training and validation, side by side.
pub fn plot_history(dir: &Path, history: &[Curves]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let column = |get: fn(&Curves) -> f64| -> Vec<f64> { history.iter().map(get).collect() };
    let epoch = column(|c| c.epoch);
    draw_png(dir, "training.png", (1500, 520), |root| {
        let panels = root.split_evenly((1, 3));
        let first = epoch.first().copied().unwrap_or(0.0);
        let last = epoch.last().copied().unwrap_or(1.0).max(first + 1.0);
        let series = [
            ("Loss", column(|c| c.train_loss), column(|c| c.val_loss)),
            ("TSS", column(|c| c.train_tss), column(|c| c.val_tss)),
            ("HSS2", column(|c| c.train_hss2), column(|c| c.val_hss2)),
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
                let pts: Vec<(f64, f64)> =
                    epoch.iter().copied().zip(values.iter().copied()).collect();
                draw_curve(&mut chart, pts.clone(), c, label.to_string())?;
                draw_dots(&mut chart, &pts, 3, c)?;
            }
            draw_legend(&mut chart, PANEL, corner)?;
        }
        Ok(())
    })
}
