//! Drawing of `vigilanalytics` results and track trails: line segments with their `in` arrow and
//! counts, zone outlines with their occupancy, a counters panel, and polylines for trails.

use super::{Canvas, Color, text_size, track_color};
use crate::objects::{FrameAnalytics, Point};
use std::fmt::Write as _;

/// Colour of counting lines.
pub const LINE_COLOR: Color = Color::new(255, 220, 0);
/// Colour of the `in` arrow of counting lines.
pub const IN_COLOR: Color = Color::new(0, 230, 0);
/// Colour of zones.
pub const ZONE_COLOR: Color = Color::new(0, 200, 255);
/// Colour of overcrowded zones.
pub const OVERCROWDED_COLOR: Color = Color::new(255, 40, 40);

/// What [`Canvas::draw_analytics`] draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsStyle {
    /// Counting lines, their `in` arrow and `in`/`out` totals.
    pub draw_lines: bool,
    /// Zone outlines and their occupancy.
    pub draw_zones: bool,
    /// The counters panel (top-left): per line and label `in`/`out`, per zone occupancy, entries, exits.
    pub draw_counters: bool,
    /// Line thickness in pixels.
    pub line_width: u32,
    /// Integer scale of the 8x8 font.
    pub font_scale: u32,
}

impl Default for AnalyticsStyle {
    fn default() -> Self {
        Self {
            draw_lines: true,
            draw_zones: true,
            draw_counters: true,
            line_width: 2,
            font_scale: 2,
        }
    }
}

/// Clips the segment `p0–p1` to the rectangle `[x0, x1] x [y0, y1]` (Liang–Barsky); `None` when it
/// lies outside.
fn clip_segment(
    p0: Point,
    p1: Point,
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
) -> Option<(Point, Point)> {
    let (dx, dy) = (p1.x - p0.x, p1.y - p0.y);
    let (mut t0, mut t1) = (0.0f32, 1.0f32);
    for (p, q) in [
        (-dx, p0.x - x0),
        (dx, x1 - p0.x),
        (-dy, p0.y - y0),
        (dy, y1 - p0.y),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then(|| {
        (
            Point::new(p0.x + t0 * dx, p0.y + t0 * dy),
            Point::new(p0.x + t1 * dx, p0.y + t1 * dy),
        )
    })
}

impl Canvas<'_> {
    /// Draws the segment `p0–p1`, `thickness` pixels wide (squares stamped along it), clipped to the
    /// frame. Non-finite points draw nothing.
    pub fn line(&mut self, p0: Point, p1: Point, thickness: u32, color: Color) {
        if ![p0.x, p0.y, p1.x, p1.y].iter().all(|v| v.is_finite()) {
            return;
        }
        let t = thickness.clamp(1, 64) as f32;
        let (w, h) = (self.width as f32, self.height as f32);
        let Some((a, b)) = clip_segment(p0, p1, -t, -t, w + t, h + t) else {
            return;
        };
        let steps = (b.x - a.x).abs().max((b.y - a.y).abs()).ceil().max(1.0) as usize;
        let half = (t / 2.0).floor() as i64;
        let size = t as i64;
        let mut last = None;
        for i in 0..=steps {
            let f = i as f32 / steps as f32;
            let x = (a.x + f * (b.x - a.x)).round() as i64 - half;
            let y = (a.y + f * (b.y - a.y)).round() as i64 - half;
            if last == Some((x, y)) {
                continue;
            }
            last = Some((x, y));
            self.fill_px(x, y, x + size, y + size, color);
        }
    }

    /// Draws `points` joined by segments (and the last back to the first when `closed`).
    pub fn polyline(&mut self, points: &[Point], closed: bool, thickness: u32, color: Color) {
        for w in points.windows(2) {
            self.line(w[0], w[1], thickness, color);
        }
        if closed && points.len() > 2 {
            self.line(points[points.len() - 1], points[0], thickness, color);
        }
    }

    /// Draws `text` centred on `(x, y)` in the contrasting colour on a `bg` box.
    fn centered_text(&mut self, x: f32, y: f32, text: &str, scale: u32, bg: Color) {
        let (tw, th) = text_size(text, scale);
        let (px, py) = (
            (x - tw as f32 / 2.0).round() as i32,
            (y - th as f32 / 2.0).round() as i32,
        );
        self.text(px, py, text, scale, bg.contrasting(), Some(bg));
    }

    /// Draws a frame's analytics results, whose coordinates are in pixels of a `width` x `height`
    /// frame (rescaled to the canvas; 0 = the canvas's size): zones, lines with an arrow pointing to
    /// their `in` side and `in`/`out` totals, and the counters panel, as `style` says.
    pub fn draw_analytics(
        &mut self,
        analytics: &FrameAnalytics,
        width: u32,
        height: u32,
        style: &AnalyticsStyle,
    ) {
        let (sx, sy) = if width > 0 && height > 0 {
            (
                self.width as f32 / width as f32,
                self.height as f32 / height as f32,
            )
        } else {
            (1.0, 1.0)
        };
        let sc = |p: &Point| Point::new(p.x * sx, p.y * sy);
        let lw = style.line_width;
        let fs = style.font_scale;
        if style.draw_zones {
            for z in &analytics.zones {
                let color = if z.overcrowded {
                    OVERCROWDED_COLOR
                } else {
                    ZONE_COLOR
                };
                let poly: Vec<Point> = z.polygon.iter().map(sc).collect();
                self.polyline(&poly, true, lw, color);
                if let Some(p) = poly.first() {
                    let text = format!("{} {}", z.name, z.occupancy);
                    let (tw, th) = text_size(&text, fs);
                    self.centered_text(
                        p.x + tw as f32 / 2.0,
                        p.y + th as f32 / 2.0,
                        &text,
                        fs,
                        color,
                    );
                }
            }
        }
        if style.draw_lines {
            for l in &analytics.lines {
                let (a, b) = (sc(&l.points[0]), sc(&l.points[1]));
                self.line(a, b, lw, LINE_COLOR);
                let len = ((b.x - a.x).powi(2) + (b.y - a.y).powi(2)).sqrt();
                if !(len > 0.0 && len.is_finite()) {
                    continue;
                }
                let (dx, dy) = ((b.x - a.x) / len, (b.y - a.y) / len);
                // Right-hand normal on the screen (y down): the `in` side.
                let (nx, ny) = (-dy, dx);
                let mid = Point::new((a.x + b.x) / 2.0, (a.y + b.y) / 2.0);
                let arrow = 8.0 * fs as f32 + 8.0;
                let tip = Point::new(mid.x + nx * arrow, mid.y + ny * arrow);
                self.line(mid, tip, lw, IN_COLOR);
                let head = 3.0 * fs as f32 + 3.0;
                for s in [-1.0, 1.0] {
                    let p = Point::new(
                        tip.x - nx * head + s * dx * head,
                        tip.y - ny * head + s * dy * head,
                    );
                    self.line(tip, p, lw, IN_COLOR);
                }
                let (ins, outs) = l
                    .counts
                    .iter()
                    .fold((0, 0), |(i, o), c| (i + c.r#in, o + c.out));
                // Half the extent of a text box along the normal, plus a gap.
                let reach = |text: &str| {
                    let (tw, th) = text_size(text, fs);
                    nx.abs() * tw as f32 / 2.0 + ny.abs() * th as f32 / 2.0 + 2.0 * fs as f32
                };
                let (in_text, out_text) = (format!("in {ins}"), format!("out {outs}"));
                let off = arrow + reach(&in_text);
                self.centered_text(mid.x + nx * off, mid.y + ny * off, &in_text, fs, IN_COLOR);
                let off = reach(&out_text) + 2.0 * fs as f32;
                self.centered_text(
                    mid.x - nx * off,
                    mid.y - ny * off,
                    &out_text,
                    fs,
                    LINE_COLOR,
                );
                self.centered_text(a.x, a.y, &l.name, fs, LINE_COLOR);
            }
        }
        if style.draw_counters {
            let mut rows = Vec::new();
            for l in &analytics.lines {
                rows.push(format!("{}:", l.name));
                if l.counts.is_empty() {
                    rows.push("  in 0 out 0".into());
                }
                for c in &l.counts {
                    rows.push(format!("  {} in {} out {}", c.label, c.r#in, c.out));
                }
            }
            for z in &analytics.zones {
                let mut s = format!(
                    "{}: {} now, {} in, {} out",
                    z.name, z.occupancy, z.entries, z.exits
                );
                if z.overcrowded {
                    let _ = write!(s, " FULL");
                }
                rows.push(s);
            }
            let (_, th) = text_size("x", fs);
            let pad = fs as i32;
            let mut y = 2 * pad;
            for r in rows {
                self.text(2 * pad, y, &r, fs, Color::WHITE, Some(Color::BLACK));
                y += th as i32 + pad;
            }
        }
    }

    /// Draws each track's trail (points in pixels of a `width` x `height` frame; 0 = the canvas's
    /// size) as a polyline in the track's colour.
    pub fn draw_trails(
        &mut self,
        trails: &[(u64, Vec<Point>)],
        width: u32,
        height: u32,
        thickness: u32,
    ) {
        let (sx, sy) = if width > 0 && height > 0 {
            (
                self.width as f32 / width as f32,
                self.height as f32 / height as f32,
            )
        } else {
            (1.0, 1.0)
        };
        for (id, points) in trails {
            let pts: Vec<Point> = points
                .iter()
                .map(|p| Point::new(p.x * sx, p.y * sy))
                .collect();
            self.polyline(&pts, false, thickness, track_color(*id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::PixelFormat;
    use crate::objects::{LabelCounts, LineStatus, ZoneStatus};

    fn px(buf: &[u8], w: u32, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * w + x) * 4) as usize;
        [buf[i], buf[i + 1], buf[i + 2]]
    }

    #[test]
    fn line_covers_its_pixels_and_is_clipped() {
        let (w, h) = (40u32, 30u32);
        let mut buf = vec![0u8; (w * h * 4) as usize];
        let mut c = Canvas::new(
            PixelFormat::Rgba,
            w,
            h,
            [buf.as_mut_slice()],
            &[w as usize * 4],
        )
        .unwrap();
        let red = Color::new(255, 0, 0);
        c.line(Point::new(0.0, 0.0), Point::new(20.0, 20.0), 1, red);
        c.line(Point::new(-1e9, 25.0), Point::new(1e9, 25.0), 1, red);
        c.line(Point::new(f32::NAN, 0.0), Point::new(3.0, 3.0), 1, red);
        for i in 0..=20 {
            assert_eq!(px(&buf, w, i, i), [255, 0, 0], "diagonal at {i}");
        }
        assert_eq!(px(&buf, w, 5, 6), [0, 0, 0]);
        assert!((0..w).all(|x| px(&buf, w, x, 25) == [255, 0, 0]));
    }

    #[test]
    fn analytics_are_drawn_where_they_are() {
        let (w, h) = (200u32, 160u32);
        let mut buf = vec![0u8; (w * h * 4) as usize];
        let a = FrameAnalytics {
            lines: vec![LineStatus {
                name: "l".into(),
                points: [Point::new(100.0, 20.0), Point::new(100.0, 150.0)],
                counts: vec![LabelCounts {
                    label: "person".into(),
                    r#in: 2,
                    out: 1,
                }],
                speed: None,
            }],
            zones: vec![ZoneStatus {
                name: "z".into(),
                polygon: vec![
                    Point::new(20.0, 100.0),
                    Point::new(60.0, 100.0),
                    Point::new(60.0, 140.0),
                    Point::new(20.0, 140.0),
                ],
                overcrowded: true,
                ..Default::default()
            }],
            events: vec![],
        };
        {
            let mut c = Canvas::new(
                PixelFormat::Rgba,
                w,
                h,
                [buf.as_mut_slice()],
                &[w as usize * 4],
            )
            .unwrap();
            // Metadata of a 100x80 frame: everything doubles.
            let style = AnalyticsStyle {
                draw_counters: false,
                line_width: 1,
                font_scale: 1,
                ..Default::default()
            };
            let mut half = a.clone();
            half.scale(0.5, 0.5);
            c.draw_analytics(&half, 100, 80, &style);
        }
        let line = [LINE_COLOR.r, LINE_COLOR.g, LINE_COLOR.b];
        assert_eq!(px(&buf, w, 100, 60), line);
        assert_eq!(px(&buf, w, 100, 140), line);
        // The zone's right edge, red (overcrowded); its inside untouched.
        let red = [
            OVERCROWDED_COLOR.r,
            OVERCROWDED_COLOR.g,
            OVERCROWDED_COLOR.b,
        ];
        assert_eq!(px(&buf, w, 60, 120), red);
        assert_eq!(px(&buf, w, 40, 125), [0, 0, 0]);
        // The `in` arrow points to the right-hand side of top → bottom: left of the line.
        let green = [IN_COLOR.r, IN_COLOR.g, IN_COLOR.b];
        assert_eq!(px(&buf, w, 95, 85), green);
        assert_ne!(px(&buf, w, 105, 85), green);

        // Only the counters panel: white text on black at the top-left, nothing else.
        let mut buf = vec![7u8; (w * h * 4) as usize];
        {
            let mut c = Canvas::new(
                PixelFormat::Rgba,
                w,
                h,
                [buf.as_mut_slice()],
                &[w as usize * 4],
            )
            .unwrap();
            let style = AnalyticsStyle {
                draw_lines: false,
                draw_zones: false,
                font_scale: 1,
                ..Default::default()
            };
            c.draw_analytics(&a, w, h, &style);
        }
        let panel: Vec<[u8; 3]> = (2..60).map(|x| px(&buf, w, x, 5)).collect();
        assert!(panel.contains(&[255, 255, 255]) && panel.contains(&[0, 0, 0]));
        assert_eq!(px(&buf, w, 100, 60), [7, 7, 7]);
    }

    #[test]
    fn trails_are_polylines_in_track_colours() {
        let (w, h) = (50u32, 50u32);
        let mut buf = vec![0u8; (w * h * 4) as usize];
        {
            let mut c = Canvas::new(
                PixelFormat::Rgba,
                w,
                h,
                [buf.as_mut_slice()],
                &[w as usize * 4],
            )
            .unwrap();
            let trail = vec![
                Point::new(5.0, 5.0),
                Point::new(25.0, 5.0),
                Point::new(25.0, 25.0),
            ];
            c.draw_trails(&[(4, trail)], 0, 0, 1);
        }
        let col = track_color(4);
        assert_eq!(px(&buf, w, 15, 5), [col.r, col.g, col.b]);
        assert_eq!(px(&buf, w, 25, 15), [col.r, col.g, col.b]);
        assert_eq!(px(&buf, w, 15, 15), [0, 0, 0]);
    }
}
