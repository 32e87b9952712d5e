//! An experiment's bar chart: TSS and HSS2 side by side per run (fold and network).

use super::style::{
    centered, color, draw_legend, draw_png, plot_err, styled_chart, styled_mesh, FULL,
};
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

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
