//! `wgml bench --plot FILE.png`: throughput against problem size, one line per
//! kernel (and variant), compute-bound rows (GFLOP/s) and memory-bound rows (GB/s)
//! in separate panels.
//!
//! The x axis is the work of one run, derived from the row itself: GFLOP per run
//! (`gflops · ms / 1000`) for compute-bound rows and MB moved per run
//! (`gbps · ms`) for memory-bound ones, on a log scale, so kernels of different
//! shapes share one axis. Train-step rows (images/s) are not drawn.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{GRID, bold, draw_err, font, render};
use crate::bench::BenchRow;
use crate::error::{Error, Result};

/// Colours of successive series (a qualitative palette).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(230, 110, 20),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One panel: its title, axis names and the series (name → (x, y) points).
struct Panel {
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    series: BTreeMap<String, Vec<(f64, f64)>>,
}

/// Writes the throughput plot of `rows` to `path`. Fails when no row has a
/// GFLOP/s or GB/s figure (there is nothing to draw).
pub fn write_bench_plot(path: &Path, rows: &[BenchRow]) -> Result<()> {
    let mut compute = Panel {
        title: "Compute-bound kernels",
        x_desc: "GFLOP per run (log)",
        y_desc: "GFLOP/s",
        series: BTreeMap::new(),
    };
    let mut memory = Panel {
        title: "Memory-bound kernels",
        x_desc: "MB moved per run (log)",
        y_desc: "GB/s",
        series: BTreeMap::new(),
    };
    for r in rows {
        let name = format!("{} ({})", r.kernel, r.variant);
        if let Some(g) = r.gflops.filter(|g| g.is_finite() && *g > 0.0) {
            compute.series.entry(name).or_default().push((g * r.ms / 1e3, g));
        } else if let Some(b) = r.gbps.filter(|b| b.is_finite() && *b > 0.0) {
            memory.series.entry(name).or_default().push((b * r.ms, b));
        }
    }
    let panels: Vec<&Panel> = [&compute, &memory]
        .into_iter()
        .filter(|p| !p.series.is_empty())
        .collect();
    if panels.is_empty() {
        return Err(Error::Report {
            path: path.display().to_string(),
            message: "no benchmark row has a GFLOP/s or GB/s figure to plot".into(),
        });
    }
    let adapter = rows.first().map(|r| r.adapter.as_str()).unwrap_or("");
    let title = format!("wgml bench on {adapter}");
    let size = (720 * panels.len() as u32, 560);
    render(path, size, |root| {
        let err = draw_err(path);
        let root = root.margin(10, 10, 10, 10);
        let root = root.titled(&title, bold(24.0)).map_err(&err)?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, panel) in areas.iter().zip(&panels) {
            draw_panel(area, path, panel)?;
        }
        Ok(())
    })
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, path: &Path, panel: &Panel) -> Result<()> {
    let err = draw_err(path);
    let points = || panel.series.values().flatten();
    let (mut x0, mut x1) = (f64::INFINITY, 0.0f64);
    let mut y1 = 0.0f64;
    for &(x, y) in points() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    // Half a decade of room on each side, so single points are not on the frame.
    let (x0, x1) = (x0 / 3.0, x1 * 3.0);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, bold(20.0))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..y1 * 1.15)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .x_label_formatter(&|v| format!("{v:.3}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style(font(13.0))
        .axis_desc_style(font(15.0))
        .light_line_style(GRID.mix(0.5))
        .bold_line_style(GRID)
        .draw()
        .map_err(&err)?;
    for (i, (name, pts)) in panel.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(&err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(&err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(font(13.0))
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .draw()
        .map_err(&err)?;
    Ok(())
}
