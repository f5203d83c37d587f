//! `chart.png`: frames/s of every row as horizontal bars (limits grey, Vigil blue, peers orange), with
//! `plotters`' bitmap backend. Text is drawn with `ab_glyph` (pure Rust) from a TrueType file:
//! `VIGIL_CHART_FONT`, else DejaVu Sans from Debian's `fonts-dejavu-core` (installed by
//! `scripts/setup.sh apt`); no system font library is involved.

use super::Report;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::var_os("VIGIL_CHART_FONT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "chart font {}: {e} (install fonts-dejavu-core: scripts/setup.sh apt, or set VIGIL_CHART_FONT to a .ttf)",
                path.display()
            )
        })?;
        // plotters keeps the font for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("chart font {}: not a usable TrueType font", path.display()))
    })
    .clone()
}

fn colour(group: &str) -> RGBColor {
    match group {
        "vigil" => RGBColor(31, 119, 180),
        "peer" => RGBColor(255, 127, 14),
        _ => RGBColor(150, 150, 150),
    }
}

/// Draws the chart of `report` to `path` (PNG).
pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    register_font()?;
    let rows = &report.rows;
    let n = rows.len().max(1);
    let max = rows.iter().map(|r| r.fps).fold(1.0, f64::max) * 1.15;
    let height = 90 + 30 * n as u32;
    let e = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!(
        "vigil bench: frames/s ({}, {} cores, {})",
        report.machine.cpu, report.machine.cores, report.machine.date_utc
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(340)
        .build_cartesian_2d(0.0..max, (0..n).into_segmented())
        .map_err(|x| e(&x))?;
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("frames/s")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (r.fps, SegmentValue::Exact(i + 1)),
                ],
                colour(&r.group).filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(|x| e(&x))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(
                format!("{:.1}", r.fps),
                (r.fps + max * 0.005, SegmentValue::CenterOf(i)),
                ("sans-serif", 12).into_font(),
            )
        }))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
