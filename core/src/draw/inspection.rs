//! Drawing of `vigilinspect` verdicts: a PASS (green) / FAIL (red) banner across the top with the
//! failed rule names, and the failures' evidence boxes outlined in red with their rule name.

use super::{Canvas, Color, text_size};
use crate::objects::{Inspection, Verdict};

/// Banner colour of passed items.
pub const PASS_COLOR: Color = Color::new(0, 170, 0);
/// Banner and evidence colour of failed items.
pub const FAIL_COLOR: Color = Color::new(220, 0, 0);

/// How [`Canvas::draw_inspection`] draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectionStyle {
    /// Outline thickness of evidence boxes in pixels.
    pub line_width: u32,
    /// Integer scale of the 8x8 font.
    pub font_scale: u32,
}

impl Default for InspectionStyle {
    fn default() -> Self {
        Self {
            line_width: 2,
            font_scale: 2,
        }
    }
}

/// The banner text: `PASS`, or `FAIL: rule, rule` (each rule once).
pub fn banner_text(inspection: &Inspection) -> String {
    match inspection.verdict {
        Verdict::Pass => "PASS".into(),
        Verdict::Fail => {
            let mut rules: Vec<&str> = Vec::new();
            for f in &inspection.failures {
                if !rules.contains(&f.rule.as_str()) {
                    rules.push(&f.rule);
                }
            }
            if rules.is_empty() {
                "FAIL".into()
            } else {
                format!("FAIL: {}", rules.join(", "))
            }
        }
    }
}

impl Canvas<'_> {
    /// Outlines every failure's evidence box (scaled from a `frame_width` x `frame_height` frame to
    /// the canvas; 0 = same size) with its rule name, then draws the verdict banner across the top
    /// (text cut to the frame's width).
    pub fn draw_inspection(
        &mut self,
        inspection: &Inspection,
        frame_width: u32,
        frame_height: u32,
        style: &InspectionStyle,
    ) {
        let (sx, sy) = if frame_width > 0 && frame_height > 0 {
            (
                self.width() as f32 / frame_width as f32,
                self.height() as f32 / frame_height as f32,
            )
        } else {
            (1.0, 1.0)
        };
        for f in &inspection.failures {
            if let Some(b) = f.bbox {
                let b = b.scaled(sx, sy);
                self.rect_outline(&b, style.line_width, FAIL_COLOR);
                self.label(&b, &f.rule, style.font_scale, FAIL_COLOR);
            }
        }
        let color = match inspection.verdict {
            Verdict::Pass => PASS_COLOR,
            Verdict::Fail => FAIL_COLOR,
        };
        let scale = style.font_scale.max(1);
        let mut text = banner_text(inspection);
        let (glyph_w, _) = text_size("M", scale);
        let max_chars = (self.width().saturating_sub(2 * scale) / glyph_w.max(1)) as usize;
        if text.chars().count() > max_chars {
            text = text
                .chars()
                .take(max_chars.saturating_sub(2))
                .collect::<String>()
                + "..";
        }
        let (_, th) = text_size(&text, scale);
        self.fill_rect(0, 0, self.width(), th + 2 * scale, color);
        self.text(
            scale as i32,
            scale as i32,
            &text,
            scale,
            color.contrasting(),
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::PixelFormat;
    use crate::objects::{BBox, Finding};

    fn px(buf: &[u8], w: u32, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * w + x) * 3) as usize;
        [buf[i], buf[i + 1], buf[i + 2]]
    }

    #[test]
    fn pass_banner_is_green_and_evidence_is_outlined_in_red() {
        let (w, h) = (200u32, 100u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        let pass = Inspection::default();
        Canvas::packed(PixelFormat::Rgb, w, h, &mut buf, w as usize * 3)
            .unwrap()
            .draw_inspection(&pass, w, h, &InspectionStyle::default());
        assert_eq!(px(&buf, w, 199, 0), [0, 170, 0]);
        assert_eq!(
            px(&buf, w, 100, 60),
            [0, 0, 0],
            "below the banner untouched"
        );

        let mut buf = vec![0u8; (w * h * 3) as usize];
        let fail = Inspection {
            verdict: Verdict::Fail,
            failures: vec![Finding {
                rule: "lot-present".into(),
                reason: "lot not found".into(),
                // In a 100x50 frame: drawn at twice the size on the 200x100 canvas.
                bbox: Some(BBox::new(20.0, 30.0, 30.0, 10.0)),
                ..Default::default()
            }],
            fields: Vec::new(),
        };
        Canvas::packed(PixelFormat::Rgb, w, h, &mut buf, w as usize * 3)
            .unwrap()
            .draw_inspection(&fail, 100, 50, &InspectionStyle::default());
        assert_eq!(px(&buf, w, 199, 0), [220, 0, 0], "red banner");
        assert_eq!(
            px(&buf, w, 40, 79),
            [220, 0, 0],
            "evidence box bottom edge (y 60..80)"
        );
        assert_eq!(
            px(&buf, w, 70, 70),
            [0, 0, 0],
            "inside of the box untouched"
        );
        assert_eq!(banner_text(&fail), "FAIL: lot-present");
    }

    #[test]
    fn long_banner_is_cut_to_the_width() {
        let mut fail = Inspection {
            verdict: Verdict::Fail,
            ..Default::default()
        };
        for i in 0..20 {
            fail.failures.push(Finding {
                rule: format!("rule-{i}"),
                ..Default::default()
            });
        }
        let (w, h) = (64u32, 32u32);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        Canvas::packed(PixelFormat::Rgb, w, h, &mut buf, w as usize * 3)
            .unwrap()
            .draw_inspection(
                &fail,
                0,
                0,
                &InspectionStyle {
                    line_width: 1,
                    font_scale: 1,
                },
            );
        assert_eq!(px(&buf, w, 63, 0), [220, 0, 0]);
        assert!(banner_text(&fail).starts_with("FAIL: rule-0, rule-1"));
    }
}
