//! The look every plot shares (sizes, fonts, colours, grid, legend, curves) and the
//! drawing of a PNG under a temporary name, renamed when complete.

use anyhow::{Context, Result};
use plotters::chart::{MeshStyle, SeriesAnno};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub const SIZE: (u32, u32) = (900, 700);
pub const FONT: &str = "sans-serif";

/// Text sizes and margin of a chart: full-size plots, and the smaller panels of
/// training.png.
#[derive(Clone, Copy)]
pub struct Look {
    pub caption: u32,
    pub label: u32,
    pub axis_desc: u32,
    pub margin: u32,
}

pub const FULL: Look = Look {
    caption: 28,
    label: 16,
    axis_desc: 18,
    margin: 20,
};
pub const PANEL: Look = Look {
    caption: 24,
    label: 15,
    axis_desc: 17,
    margin: 15,
};

pub type Area<'b> = DrawingArea<BitMapBackend<'b>, Shift>;
pub type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart in `look` with an optional caption, `x_area` px for the x labels and 60 px
/// for the y labels. `top_margin` overrides the look's margin at the top.
pub fn styled_chart<'a, 'b>(
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
pub fn styled_mesh<'a, 'c, 'b>(
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
pub fn draw_legend<'a, 'b: 'a>(
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
pub fn legend_line<S: Into<ShapeStyle> + Copy>(
    style: S,
    len: i32,
) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + len, y)], style)
}

/// The dashed diagonal of the unit square (no skill on a ROC curve, perfect reliability).
pub fn draw_diagonal<'c, 'a, 'b>(
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
pub fn draw_curve<'a, 'b: 'a>(
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
pub fn draw_dots(chart: &mut Chart, pts: &[(f64, f64)], radius: i32, c: RGBColor) -> Result<()> {
    chart
        .draw_series(pts.iter().map(|&p| Circle::new(p, radius, c.filled())))
        .map_err(plot_err)?;
    Ok(())
}

pub fn color(i: usize) -> RGBColor {
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

pub fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!(
        "drawing failed: {e} (text needs a system font: install fontconfig and fonts-dejavu-core)"
    )
}

/// A text style anchored at its centre.
pub fn centered(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center))
}

/// Draws into `{dir}/{name}` through a temporary file.
pub fn draw_png(
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
