//! A prediction file's confusion matrix at the threshold, each cell shaded by its share
//! of its row.

use super::style::{centered, draw_png, plot_err, short_name};
use crate::evaluate::predictions::PredictionFile;
use crate::metrics::Confusion;
use anyhow::Result;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// `confusion_{stem}.png`: the file's confusion matrix at `threshold`.
pub fn confusion(dir: &Path, f: &PredictionFile, stem: &str, threshold: f64) -> Result<PathBuf> {
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
