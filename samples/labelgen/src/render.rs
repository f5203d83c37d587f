//! Drawing one item: the label (text in a TrueType font, decorations, smudge) on a background, placed
//! with rotation and jitter, then lighting, blur and sensor noise.

use std::path::{Path, PathBuf};

use ab_glyph::{Font, FontVec, PxScale, ScaleFont, point};
use image::RgbImage;

use crate::plan::{Defect, SmudgedField, Truth};
use crate::rng::Rng;

/// Debian `fonts-dejavu-core`: DejaVu Sans for the fields, DejaVu Serif Bold for the product line.
/// With DejaVu Sans Bold, RapidOCR 1.4.4 read the product's `0` as `O` (`1O0 G`, `2O0 G`) in 30 % of
/// the items; DejaVu Sans Mono read `LOT` as `L0T` (see samples/labelgen/README.md).
pub const DEFAULT_FONT_DIR: &str = "/usr/share/fonts/truetype/dejavu";
pub const REGULAR_FILE: &str = "DejaVuSans.ttf";
pub const BOLD_FILE: &str = "DejaVuSerif-Bold.ttf";
/// A space is this many times the font's space advance wide (twice as wide made the OCR split the
/// lines into words and lose some of them).
pub const WORD_SPACE: f32 = 1.0;

/// The ranges of the per-item variation (also written to `set.json`).
pub const ROTATION_DEG: f64 = 8.0;
pub const BLUR_SIGMA: (f64, f64) = (0.0, 0.9);
pub const NOISE_SIGMA: (f64, f64) = (1.0, 6.0);
pub const JPEG_QUALITY: (i64, i64) = (70, 95);

#[derive(Debug, thiserror::Error)]
pub enum FontError {
    #[error(
        "cannot read font {path}: {source} (install the Debian package fonts-dejavu-core, or pass --font)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a TrueType/OpenType font")]
    Parse { path: PathBuf },
}

/// The regular and bold faces.
pub struct Fonts {
    pub regular: FontVec,
    pub bold: FontVec,
    pub regular_path: PathBuf,
    pub bold_path: PathBuf,
}

fn load_font(path: &Path) -> Result<FontVec, FontError> {
    let bytes = std::fs::read(path).map_err(|source| FontError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    FontVec::try_from_vec(bytes).map_err(|_| FontError::Parse {
        path: path.to_path_buf(),
    })
}

impl Fonts {
    pub fn load(regular: &Path, bold: &Path) -> Result<Fonts, FontError> {
        Ok(Fonts {
            regular: load_font(regular)?,
            bold: load_font(bold)?,
            regular_path: regular.to_path_buf(),
            bold_path: bold.to_path_buf(),
        })
    }

    /// DejaVu Sans and DejaVu Serif Bold from `dir`.
    pub fn dejavu(dir: &Path) -> Result<Fonts, FontError> {
        Fonts::load(&dir.join(REGULAR_FILE), &dir.join(BOLD_FILE))
    }
}

type Rgb = [f32; 3];

/// A float RGB image (0..255).
struct Plane {
    w: usize,
    h: usize,
    px: Vec<Rgb>,
}

impl Plane {
    fn new(w: usize, h: usize, c: Rgb) -> Self {
        Plane {
            w,
            h,
            px: vec![c; w * h],
        }
    }

    /// Blends colour `c` with coverage `a` (0..1) at (x, y); outside is ignored.
    fn blend(&mut self, x: i64, y: i64, c: Rgb, a: f32) {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 || a <= 0.0 {
            return;
        }
        let a = a.min(1.0);
        let p = &mut self.px[y as usize * self.w + x as usize];
        for k in 0..3 {
            p[k] += (c[k] - p[k]) * a;
        }
    }

    fn fill_rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb) {
        for y in y0.floor().max(0.0) as i64..y1.ceil() as i64 {
            for x in x0.floor().max(0.0) as i64..x1.ceil() as i64 {
                // Coverage of the pixel square by the rectangle, for smooth edges.
                let cx = ((x as f64 + 1.0).min(x1) - (x as f64).max(x0)).clamp(0.0, 1.0);
                let cy = ((y as f64 + 1.0).min(y1) - (y as f64).max(y0)).clamp(0.0, 1.0);
                self.blend(x, y, c, (cx * cy) as f32);
            }
        }
    }

    fn fill_ellipse(&mut self, cx: f64, cy: f64, rx: f64, ry: f64, c: Rgb) {
        for y in (cy - ry - 1.0).floor() as i64..=(cy + ry + 1.0).ceil() as i64 {
            for x in (cx - rx - 1.0).floor() as i64..=(cx + rx + 1.0).ceil() as i64 {
                let dx = (x as f64 + 0.5 - cx) / rx;
                let dy = (y as f64 + 0.5 - cy) / ry;
                let d = (dx * dx + dy * dy).sqrt();
                // About one pixel of soft edge.
                let a = ((1.0 - d) * rx.min(ry) + 0.5).clamp(0.0, 1.0);
                self.blend(x, y, c, a as f32);
            }
        }
    }

    /// Bilinear sample with the edge clamped.
    fn sample(&self, x: f64, y: f64) -> Rgb {
        let x = x.clamp(0.0, (self.w - 1) as f64);
        let y = y.clamp(0.0, (self.h - 1) as f64);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
        let p = |xx: usize, yy: usize| self.px[yy * self.w + xx];
        let mut out = [0.0; 3];
        for (k, o) in out.iter_mut().enumerate() {
            let top = p(x0, y0)[k] * (1.0 - fx) + p(x1, y0)[k] * fx;
            let bottom = p(x0, y1)[k] * (1.0 - fx) + p(x1, y1)[k] * fx;
            *o = top * (1.0 - fy) + bottom * fy;
        }
        out
    }

    /// Separable Gaussian blur.
    fn gaussian_blur(&mut self, sigma: f64) {
        if sigma < 0.2 {
            return;
        }
        let r = (sigma * 2.5).ceil() as i64;
        let mut k: Vec<f32> = (-r..=r)
            .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32)
            .collect();
        let sum: f32 = k.iter().sum();
        k.iter_mut().for_each(|v| *v /= sum);
        let (w, h) = (self.w as i64, self.h as i64);
        let mut tmp = self.px.clone();
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                for (j, kv) in k.iter().enumerate() {
                    let xx = (x + j as i64 - r).clamp(0, w - 1);
                    let p = self.px[(y * w + xx) as usize];
                    for c in 0..3 {
                        acc[c] += p[c] * kv;
                    }
                }
                tmp[(y * w + x) as usize] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                for (j, kv) in k.iter().enumerate() {
                    let yy = (y + j as i64 - r).clamp(0, h - 1);
                    let p = tmp[(yy * w + x) as usize];
                    for c in 0..3 {
                        acc[c] += p[c] * kv;
                    }
                }
                self.px[(y * w + x) as usize] = acc;
            }
        }
    }

    fn to_image(&self) -> RgbImage {
        let mut img = RgbImage::new(self.w as u32, self.h as u32);
        for (dst, src) in img.pixels_mut().zip(&self.px) {
            for (d, s) in dst.0.iter_mut().zip(src) {
                *d = s.round().clamp(0.0, 255.0) as u8;
            }
        }
        img
    }
}

/// Width of `text` in pixels at `size` (advances and kerning).
fn text_width(font: &FontVec, size: f32, text: &str) -> f32 {
    let sf = font.as_scaled(PxScale::from(size));
    let mut x = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            x += sf.kern(p, id);
        }
        x += advance(&sf, c, id);
        prev = Some(id);
    }
    x
}

fn advance<F: Font, S: ScaleFont<F>>(sf: &S, c: char, id: ab_glyph::GlyphId) -> f32 {
    sf.h_advance(id) * if c == ' ' { WORD_SPACE } else { 1.0 }
}

/// Draws `text` with its baseline at `baseline`, starting at `x`.
fn draw_text(
    plane: &mut Plane,
    font: &FontVec,
    size: f32,
    x: f32,
    baseline: f32,
    text: &str,
    ink: Rgb,
) {
    let scale = PxScale::from(size);
    let sf = font.as_scaled(scale);
    let mut pen = x;
    let mut prev = None;
    for c in text.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            pen += sf.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale, point(pen, baseline));
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| {
                plane.blend(
                    b.min.x as i64 + i64::from(gx),
                    b.min.y as i64 + i64::from(gy),
                    ink,
                    cov,
                );
            });
        }
        pen += advance(&sf, c, id);
        prev = Some(id);
    }
}

fn jitter_colour(rng: &mut Rng, base: Rgb, amount: f64) -> Rgb {
    let mut c = base;
    for v in &mut c {
        *v = (*v as f64 + rng.uniform(-amount, amount)).clamp(0.0, 255.0) as f32;
    }
    c
}

/// One line of the label.
struct Line {
    prefix: &'static str,
    value: String,
    bold: bool,
    size: f32,
    /// Smudge covers this line's value.
    smudge: bool,
}

/// Draws the label (paper, decorations, text, smudge) in its own frame, `lw` x `lh` pixels.
fn draw_label(truth: &Truth, fonts: &Fonts, lw: usize, lh: usize, rng: &mut Rng) -> Plane {
    let paper = jitter_colour(rng, [244.0, 241.0, 232.0], 10.0);
    let ink: Rgb = if rng.chance(0.25) {
        jitter_colour(rng, [25.0, 35.0, 95.0], 12.0)
    } else {
        jitter_colour(rng, [28.0, 28.0, 28.0], 18.0)
    };
    // The smudge has a stream of its own, so an item looks the same with and without it.
    let mut smudge_rng = Rng::new(u64::from(rng.next_u32()), 0);
    let mut label = Plane::new(lw, lh, paper);
    let (lwf, lhf) = (lw as f64, lh as f64);
    let margin_x = (0.05 * lwf).max(12.0);
    let margin_y = 0.07 * lhf;

    // Border.
    if rng.chance(0.6) {
        let t = rng.uniform(2.0, 4.0);
        let inset = rng.uniform(3.0, 7.0);
        let (x0, y0, x1, y1) = (inset, inset, lwf - inset, lhf - inset);
        label.fill_rect(x0, y0, x1, y0 + t, ink);
        label.fill_rect(x0, y1 - t, x1, y1, ink);
        label.fill_rect(x0, y0, x0 + t, y1, ink);
        label.fill_rect(x1 - t, y0, x1, y1, ink);
    }

    let smudged = (truth.defect == Some(Defect::Smudged))
        .then_some(truth.smudged_field)
        .flatten();
    let field_size = (0.105 * lhf) as f32;
    let mut product_size = (0.125 * lhf) as f32;
    let avail = (lwf - 2.0 * margin_x) as f32;
    let pw = text_width(&fonts.bold, product_size, &truth.product);
    if pw > avail {
        product_size *= avail / pw;
    }
    let mut lines = vec![Line {
        prefix: "",
        value: truth.product.clone(),
        bold: true,
        size: product_size,
        smudge: false,
    }];
    // A missing LOT line leaves its place empty (the printer skipped it).
    let (prefix, value) = match &truth.lot {
        Some(lot) => ("LOT: ", lot.clone()),
        None => ("", String::new()),
    };
    let smudge = smudged == Some(SmudgedField::Lot);
    lines.push(Line {
        prefix,
        value,
        bold: false,
        size: field_size,
        smudge,
    });
    lines.push(Line {
        prefix: "EXP: ",
        value: truth.expiry.clone(),
        bold: false,
        size: field_size,
        smudge: false,
    });
    let smudge = smudged == Some(SmudgedField::Serial);
    lines.push(Line {
        prefix: "SN: ",
        value: truth.serial.clone(),
        bold: false,
        size: field_size,
        smudge,
    });

    // Text, top-down; the blot of a smudge is drawn after its line.
    let mut y = margin_y as f32;
    let mut fields_right = 0.0f32;
    let fields_top = y + product_size * 1.3;
    for (i, line) in lines.iter().enumerate() {
        let font = if line.bold {
            &fonts.bold
        } else {
            &fonts.regular
        };
        let sf = font.as_scaled(PxScale::from(line.size));
        let baseline = y + sf.ascent();
        let x = margin_x as f32;
        let text = format!("{}{}", line.prefix, line.value);
        draw_text(&mut label, font, line.size, x, baseline, &text, ink);
        if i > 0 {
            fields_right = fields_right.max(x + text_width(font, line.size, &text));
        }
        if line.smudge {
            let vx0 = x + text_width(font, line.size, line.prefix);
            let vx1 = x + text_width(font, line.size, &text);
            let top = baseline - line.size * 0.78;
            let bottom = baseline + line.size * 0.12;
            draw_smudge(
                &mut label,
                vx0 as f64,
                top as f64,
                vx1 as f64,
                bottom as f64,
                &mut smudge_rng,
            );
        }
        y += line.size * if i == 0 { 1.3 } else { 1.28 };
    }
    let fields_bottom = y;

    // A logo-ish block to the right of the fields, where there is room.
    let logo_w = 0.22 * lwf;
    let logo_x0 = lwf - margin_x - logo_w;
    if rng.chance(0.6) && logo_x0 > fields_right as f64 + 16.0 {
        let logo_h = (fields_bottom - fields_top) as f64 * rng.uniform(0.5, 0.8);
        let ly0 = fields_top as f64 + rng.uniform(0.0, 0.15) * logo_h;
        let accent = jitter_colour(rng, [180.0, 60.0, 50.0], 50.0);
        label.fill_rect(logo_x0, ly0, logo_x0 + logo_w, ly0 + logo_h, accent);
        label.fill_ellipse(
            logo_x0 + logo_w / 2.0,
            ly0 + logo_h / 2.0,
            logo_w * 0.3,
            logo_h * 0.3,
            paper,
        );
    }

    // A barcode-like stripe pattern at the bottom.
    let bar_top = fields_bottom as f64 + 0.02 * lhf;
    let bar_bottom = lhf - margin_y;
    if rng.chance(0.6) && bar_bottom - bar_top > 8.0 {
        let mut x = margin_x;
        let end = margin_x + rng.uniform(0.4, 0.8) * (lwf - 2.0 * margin_x);
        while x < end {
            let bw = rng.int(1, 4) as f64;
            label.fill_rect(x, bar_top, (x + bw).min(end), bar_bottom, ink);
            x += bw + rng.int(1, 4) as f64;
        }
    }
    label
}

/// An opaque dark blot over the box, with ragged edges reaching past it above, below and to the
/// right, never left of `x0 - clip` (the line's prefix stays readable).
fn draw_smudge(plane: &mut Plane, x0: f64, y0: f64, x1: f64, y1: f64, rng: &mut Rng) {
    let colour = jitter_colour(rng, [45.0, 38.0, 32.0], 15.0);
    let h = y1 - y0;
    let pad = 0.2 * h;
    let left = x0 - 0.15 * h;
    let (bx0, by0, bx1, by1) = (x0 - pad, y0 - pad, x1 + pad, y1 + pad);
    let n = ((bx1 - bx0) / (0.4 * h)).ceil() as usize + 2;
    let blobs: Vec<(f64, f64, f64, f64)> = (0..n)
        .map(|i| {
            let cx = bx0 + (bx1 - bx0) * i as f64 / (n - 1) as f64 + rng.uniform(-0.2, 0.2) * h;
            let cy = (by0 + by1) / 2.0 + rng.uniform(-0.15, 0.15) * h;
            (
                cx,
                cy,
                h * rng.uniform(0.45, 0.8),
                h * rng.uniform(0.5, 0.75),
            )
        })
        .collect();
    for y in (by0 - h).floor() as i64..=(by1 + h).ceil() as i64 {
        for x in left.floor() as i64..=(bx1 + h).ceil() as i64 {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let mut a: f64 = if px >= bx0 && px <= bx1 && py >= by0 && py <= by1 {
                1.0
            } else {
                0.0
            };
            for &(cx, cy, rx, ry) in &blobs {
                let d = (((px - cx) / rx).powi(2) + ((py - cy) / ry).powi(2)).sqrt();
                a = a.max(((1.0 - d) * rx.min(ry) + 0.5).clamp(0.0, 1.0));
            }
            a *= (px - left).clamp(0.0, 1.0);
            plane.blend(x, y, colour, a as f32);
        }
    }
}

/// The drawn item and its JPEG quality.
pub struct Rendered {
    pub image: RgbImage,
    pub jpeg_quality: u8,
}

/// Renders one item, `width` x `height`, from its truth; `rng` is the item's own stream.
pub fn render_item(
    truth: &Truth,
    fonts: &Fonts,
    width: u32,
    height: u32,
    rng: &mut Rng,
) -> Rendered {
    let (w, h) = (width as usize, height as usize);
    let (wf, hf) = (width as f64, height as f64);

    // Background: a belt colour with a texture.
    let base = jitter_colour(rng, [90.0, 95.0, 100.0], 45.0);
    let mut canvas = Plane::new(w, h, base);
    let texture = rng.index(3);
    let (freq, dir, amp) = (
        rng.uniform(0.05, 0.3),
        rng.uniform(0.0, std::f64::consts::PI),
        rng.uniform(4.0, 14.0),
    );
    for y in 0..h {
        for x in 0..w {
            let v = match texture {
                0 => rng.normal() * amp * 0.5,
                1 => (freq * (x as f64 * dir.cos() + y as f64 * dir.sin())).sin() * amp,
                _ => {
                    if ((x / 16) + (y / 16)) % 2 == 0 {
                        amp * 0.5
                    } else {
                        -amp * 0.5
                    }
                }
            } as f32;
            let p = &mut canvas.px[y * w + x];
            for c in p.iter_mut() {
                *c += v;
            }
        }
    }

    // The label: size, rotation, position.
    let scale = rng.uniform(0.88, 1.0);
    let lw = (wf * 0.78 * scale).round() as usize;
    let lh = (hf * 0.70 * scale).round() as usize;
    let label = draw_label(truth, fonts, lw, lh, rng);
    let theta = rng.uniform(-ROTATION_DEG, ROTATION_DEG).to_radians();
    let (sin, cos) = theta.sin_cos();
    let (hw, hh) = (lw as f64 / 2.0, lh as f64 / 2.0);
    // Half extents of the rotated label; the centre moves only as far as keeps it inside.
    let ex = hw * cos.abs() + hh * sin.abs();
    let ey = hw * sin.abs() + hh * cos.abs();
    let room_x = (wf / 2.0 - ex - 4.0).max(0.0);
    let room_y = (hf / 2.0 - ey - 4.0).max(0.0);
    let cx = wf / 2.0 + rng.uniform(-room_x, room_x);
    let cy = hf / 2.0 + rng.uniform(-room_y, room_y);
    let shadow = rng.uniform(0.15, 0.35) as f32;
    let (sdx, sdy) = (rng.uniform(2.0, 6.0), rng.uniform(2.0, 6.0));
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            // Soft shadow: the label's coverage shifted by (sdx, sdy), darkening the background.
            let (su, sv) = inverse(px - sdx, py - sdy, cx, cy, cos, sin);
            let sa = coverage(su, sv, hw, hh, 3.0);
            if sa > 0.0 {
                let p = &mut canvas.px[y * w + x];
                for c in p.iter_mut() {
                    *c *= 1.0 - shadow * sa;
                }
            }
            let (u, v) = inverse(px, py, cx, cy, cos, sin);
            let a = coverage(u, v, hw, hh, 1.0);
            if a > 0.0 {
                let c = label.sample(u + hw - 0.5, v + hh - 0.5);
                canvas.blend(x as i64, y as i64, c, a);
            }
        }
    }

    // Lighting: contrast, brightness and a gradient or a vignette.
    let contrast = rng.uniform(0.75, 1.1) as f32;
    let brightness = rng.uniform(-30.0, 20.0) as f32;
    let light = rng.index(3);
    let (gdir, gamp) = (
        rng.uniform(0.0, std::f64::consts::TAU),
        rng.uniform(10.0, 30.0),
    );
    let vignette = rng.uniform(0.1, 0.3);
    let diag = (wf * wf + hf * hf).sqrt() / 2.0;
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f64 - wf / 2.0, y as f64 - hf / 2.0);
            let (gain, offset) = match light {
                0 => (1.0, (dx * gdir.cos() + dy * gdir.sin()) / diag * gamp),
                1 => (
                    1.0 - vignette * ((dx * dx + dy * dy).sqrt() / diag).powi(2),
                    0.0,
                ),
                _ => (1.0, 0.0),
            };
            let p = &mut canvas.px[y * w + x];
            for c in p.iter_mut() {
                *c = ((*c - 128.0) * contrast + 128.0 + brightness) * gain as f32 + offset as f32;
            }
        }
    }

    canvas.gaussian_blur(rng.uniform(BLUR_SIGMA.0, BLUR_SIGMA.1));
    let noise = rng.uniform(NOISE_SIGMA.0, NOISE_SIGMA.1);
    for p in &mut canvas.px {
        let n = (rng.normal() * noise) as f32;
        for c in p.iter_mut() {
            *c += n;
        }
    }
    Rendered {
        image: canvas.to_image(),
        jpeg_quality: rng.int(JPEG_QUALITY.0, JPEG_QUALITY.1) as u8,
    }
}

/// Canvas point to label coordinates relative to the label centre (rotation by -theta).
fn inverse(px: f64, py: f64, cx: f64, cy: f64, cos: f64, sin: f64) -> (f64, f64) {
    let (dx, dy) = (px - cx, py - cy);
    (dx * cos + dy * sin, -dx * sin + dy * cos)
}

/// 1 inside the rectangle of half extents (hw, hh), falling to 0 over `soft` pixels at its edge.
fn coverage(u: f64, v: f64, hw: f64, hh: f64, soft: f64) -> f32 {
    let d = (hw - u.abs()).min(hh - v.abs());
    ((d / soft) + 0.5).clamp(0.0, 1.0) as f32
}
