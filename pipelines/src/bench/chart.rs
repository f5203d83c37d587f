//! `chart.png`: frames/s of every row as horizontal bars on a logarithmic axis (limits grey, Vigil blue,
//! peers orange), with `plotters`' bitmap backend. Text is drawn with `ab_glyph` (pure Rust) from a TrueType file:
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
        "vigil-noenc" => RGBColor(120, 170, 210),
        "peer" => RGBColor(255, 127, 14),
        "peer-nospin" => RGBColor(255, 187, 120),
        _ => RGBColor(150, 150, 150),
    }
}

/// Draws the chart of `report` to `path` (PNG).
pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    register_font()?;
    let rows = &report.rows;
    let n = rows.len().max(1);
    // A logarithmic axis: the decode rows run 100 times faster than the inference rows.
    let max = rows.iter().map(|r| r.fps).fold(1.0, f64::max) * 2.0;
    let min = rows
        .iter()
        .map(|r| r.fps)
        .filter(|f| *f > 0.0)
        .fold(max, f64::min)
        / 2.0;
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
        .build_cartesian_2d((min..max).log_scale(), (0..n).into_segmented())
        .map_err(|x| e(&x))?;
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => (n - 1)
                .checked_sub(*i)
                .and_then(|j| names.get(j).cloned())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("frames/s (logarithmic)")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            // The first row on top.
            let i = n - 1 - i;
            let mut bar = Rectangle::new(
                [
                    (min, SegmentValue::Exact(i)),
                    (r.fps.max(min), SegmentValue::Exact(i + 1)),
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
                (r.fps.max(min) * 1.03, SegmentValue::CenterOf(n - 1 - i)),
                ("sans-serif", 12).into_font(),
            )
        }))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Report, Row};
    use super::*;

    #[test]
    fn draws_a_png_with_a_bar_per_row() {
        let row = |group: &str, name: &str, fps: f64| Row {
            group: group.into(),
            name: name.into(),
            streams: 1,
            frames: 100,
            fps,
            p50_ms: None,
            p99_ms: None,
            peak_rss_mib: None,
            cpu_ms_per_frame: None,
            parity: None,
            gpu: None,
            note: String::new(),
        };
        let report = Report {
            mode: "test".into(),
            machine: super::super::report::Machine::detect(),
            video: "v".into(),
            frames_per_stream: 100,
            repeat: 1,
            rows: vec![
                row("limit", "ONNX Runtime alone, batch 4", 9.3),
                row("limit", "decode bound", 955.0),
                row("vigil", "Vigil end to end, 4 stream(s)", 7.9),
                row("peer", "Python peer, 4 stream(s)", 10.5),
            ],
            compute: Vec::new(),
            ratios: Vec::new(),
            notes: Vec::new(),
        };
        let dir = std::env::temp_dir().join(format!("vigil-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.png");
        write(&report, &path).unwrap();
        if let Some(keep) = std::env::var_os("VIGIL_KEEP_CHART") {
            std::fs::copy(&path, keep).unwrap();
        }
        let img = image::open(&path).unwrap().to_rgb8();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((img.width(), img.height()), (1100, 90 + 30 * 4));
        // Each colour of the three groups is drawn.
        for c in [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(150, 150, 150),
        ] {
            assert!(
                img.pixels().any(|p| p.0 == [c.0, c.1, c.2]),
                "no bar of colour {c:?}"
            );
        }
    }
}
