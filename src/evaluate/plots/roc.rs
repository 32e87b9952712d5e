//! ROC curves, one per prediction file, with their AUC.

use super::style::{
    color, draw_curve, draw_diagonal, draw_legend, draw_png, plot_err, short_name, styled_chart,
    styled_mesh, FULL, SIZE,
};
use crate::evaluate::predictions::PredictionFile;
use crate::metrics;
use anyhow::Result;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// `roc.png`: each file's ROC curve and AUC.
pub fn roc(dir: &Path, files: &[PredictionFile]) -> Result<PathBuf> {
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
