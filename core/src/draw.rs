//! A small rasteriser that draws boxes and text straight into a video frame in memory.
//!
//! [`Canvas`] wraps the planes of one frame (packed RGB formats, or planar/semi-planar 4:2:0 YUV) and
//! draws filled rectangles, box outlines and 8x8 bitmap text (the public-domain `font8x8` glyphs,
//! scaled by an integer factor). Everything is clipped to the frame, so callers can pass boxes that lie
//! partly or wholly outside it (or are NaN) without checks of their own. Colours are given as RGB
//! ([`Color`]) and converted to BT.601 limited-range YUV for [`PixelFormat::I420`] and
//! [`PixelFormat::Nv12`]; chroma is written at half resolution.
//!
//! [`Canvas::draw_objects`] draws a whole [`FrameObjects`] (boxes plus a label line per object) the way
//! the `vigilosd` element does.
//!
//! ```
//! use vigil_core::draw::{Canvas, Color, PixelFormat};
//! use vigil_core::objects::BBox;
//!
//! let (w, h) = (64u32, 48u32);
//! let mut rgba = vec![0u8; (w * h * 4) as usize];
//! let mut canvas = Canvas::new(PixelFormat::Rgba, w, h, [rgba.as_mut_slice()], &[w as usize * 4]).unwrap();
//! canvas.rect_outline(&BBox::new(4.0, 4.0, 20.0, 10.0), 2, Color::new(255, 0, 0));
//! canvas.text(2, 30, "hi", 1, Color::WHITE, Some(Color::BLACK));
//! assert_eq!(&rgba[(4 * w as usize + 4) * 4..][..4], &[255, 0, 0, 255]);
//! ```

use crate::objects::{BBox, FrameObjects, Object};
use font8x8::legacy::BASIC_LEGACY;

// Lines, zones, counters and trails of `vigilanalytics` results (`draw/analytics.rs`).
mod analytics;
pub use analytics::AnalyticsStyle;
// PASS/FAIL banner and evidence boxes of `vigilinspect` verdicts (`draw/inspection.rs`).
mod inspection;
pub use inspection::{FAIL_COLOR, InspectionStyle, PASS_COLOR, banner_text};
use std::fmt::Write as _;
use thiserror::Error;

/// Pixel layouts the [`Canvas`] can draw on (names as in GStreamer's `video/x-raw` formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Packed R, G, B, A bytes.
    Rgba,
    /// Packed B, G, R, A bytes.
    Bgra,
    /// Packed R, G, B, unused bytes.
    Rgbx,
    /// Packed B, G, R, unused bytes.
    Bgrx,
    /// Packed R, G, B bytes.
    Rgb,
    /// Packed B, G, R bytes.
    Bgr,
    /// Planar 4:2:0: Y plane, then U and V planes at half width and height.
    I420,
    /// Semi-planar 4:2:0: Y plane, then one interleaved U/V plane at half width and height.
    Nv12,
}

impl PixelFormat {
    /// Every supported format.
    pub const ALL: [PixelFormat; 8] = [
        PixelFormat::Rgba,
        PixelFormat::Bgra,
        PixelFormat::Rgbx,
        PixelFormat::Bgrx,
        PixelFormat::Rgb,
        PixelFormat::Bgr,
        PixelFormat::I420,
        PixelFormat::Nv12,
    ];

    /// Number of planes a frame of this format has.
    pub fn n_planes(self) -> usize {
        match self {
            PixelFormat::I420 => 3,
            PixelFormat::Nv12 => 2,
            _ => 1,
        }
    }

    /// `true` for the YUV formats.
    pub fn is_yuv(self) -> bool {
        matches!(self, PixelFormat::I420 | PixelFormat::Nv12)
    }

    /// Bytes per pixel of a packed RGB format; 1 (the luma plane) for YUV formats.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgba | PixelFormat::Bgra | PixelFormat::Rgbx | PixelFormat::Bgrx => 4,
            PixelFormat::Rgb | PixelFormat::Bgr => 3,
            PixelFormat::I420 | PixelFormat::Nv12 => 1,
        }
    }

    /// Minimum bytes per row and number of rows of `plane` for a `width` x `height` frame.
    pub fn plane_size(self, plane: usize, width: u32, height: u32) -> (usize, usize) {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match (self, plane) {
            (PixelFormat::I420, 0) | (PixelFormat::Nv12, 0) => (w, h),
            (PixelFormat::I420, 1 | 2) => (cw, ch),
            (PixelFormat::Nv12, 1) => (cw * 2, ch),
            (_, 0) => (w * self.bytes_per_pixel(), h),
            _ => (0, 0),
        }
    }

    /// Byte offsets of R, G and B within a pixel of a packed format.
    fn rgb_offsets(self) -> [usize; 3] {
        match self {
            PixelFormat::Bgra | PixelFormat::Bgrx | PixelFormat::Bgr => [2, 1, 0],
            _ => [0, 1, 2],
        }
    }
}

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Color {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Color {
    pub const BLACK: Color = Color::new(0, 0, 0);
    pub const WHITE: Color = Color::new(255, 255, 255);

    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// BT.601 limited-range `[Y, U (Cb), V (Cr)]`: Y in 16..=235, U and V in 16..=240.
    pub fn to_yuv(self) -> [u8; 3] {
        let (r, g, b) = (self.r as f32, self.g as f32, self.b as f32);
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        [y, u, v].map(|c| c.round().clamp(0.0, 255.0) as u8)
    }

    /// Black or white, whichever reads better on top of `self`.
    pub fn contrasting(self) -> Color {
        let luma = 299 * self.r as u32 + 587 * self.g as u32 + 114 * self.b as u32;
        if luma >= 140_000 {
            Color::BLACK
        } else {
            Color::WHITE
        }
    }
}

/// The fixed palette behind [`class_color`] and [`track_color`]: saturated, mutually distinct colours.
pub const PALETTE: [Color; 20] = [
    Color::new(230, 25, 75),
    Color::new(60, 180, 75),
    Color::new(255, 225, 25),
    Color::new(0, 130, 200),
    Color::new(245, 130, 48),
    Color::new(145, 30, 180),
    Color::new(70, 240, 240),
    Color::new(240, 50, 230),
    Color::new(210, 245, 60),
    Color::new(250, 190, 212),
    Color::new(0, 128, 128),
    Color::new(220, 190, 255),
    Color::new(170, 110, 40),
    Color::new(255, 250, 200),
    Color::new(128, 0, 0),
    Color::new(170, 255, 195),
    Color::new(128, 128, 0),
    Color::new(255, 215, 180),
    Color::new(0, 0, 128),
    Color::new(128, 128, 128),
];

/// Deterministic colour of a class id (negative ids wrap around the palette too).
pub fn class_color(class_id: i32) -> Color {
    PALETTE[class_id.rem_euclid(PALETTE.len() as i32) as usize]
}

/// Deterministic colour of a track id. Consecutive ids get different colours, and the sequence is
/// offset from [`class_color`]'s so that track 0 and class 0 differ.
pub fn track_color(track_id: u64) -> Color {
    let n = PALETTE.len() as u64;
    // 7 is coprime with the palette size: `n` consecutive ids cover the whole palette.
    PALETTE[((track_id % n) * 7 + 3) as usize % PALETTE.len()]
}

/// The colour an object is drawn in: by track id when it has one, else by class.
pub fn object_color(object: &Object) -> Color {
    match object.track_id {
        Some(t) => track_color(t),
        None => class_color(object.class_id),
    }
}

/// Glyph width and height in font pixels.
pub const GLYPH_SIZE: u32 = 8;

/// Size in pixels of `text` drawn by [`Canvas::text`] with `scale` (one glyph per `char`).
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let scale = clamp_scale(scale);
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    (chars.saturating_mul(GLYPH_SIZE * scale), GLYPH_SIZE * scale)
}

fn clamp_scale(scale: u32) -> u32 {
    scale.clamp(1, 256)
}

/// The 8x8 glyph of `c`: one byte per row, bit 0 the leftmost pixel. Non-ASCII characters draw as `?`.
fn glyph(c: char) -> &'static [u8; 8] {
    let i = if c.is_ascii() {
        c as usize
    } else {
        b'?' as usize
    };
    &BASIC_LEGACY[i]
}

/// What overlay [`Canvas::draw_objects`] draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayStyle {
    /// Show the class label in the label line.
    pub draw_labels: bool,
    /// Show the confidence (two decimals) in the label line.
    pub draw_confidence: bool,
    /// Show `#<track id>` in the label line for tracked objects.
    pub draw_track_ids: bool,
    /// Box outline thickness in pixels.
    pub line_width: u32,
    /// Integer scale of the 8x8 font.
    pub font_scale: u32,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        Self {
            draw_labels: true,
            draw_confidence: true,
            draw_track_ids: true,
            line_width: 2,
            font_scale: 2,
        }
    }
}

/// Length of the dashes (and gaps) of a predicted box's outline, pixels.
pub const DASH: u32 = 6;

/// The label line of `object` under `style`, e.g. `person 0.83 #12`, then its speed when known
/// (`car 0.91 #4 52 km/h`); empty when nothing is to be shown.
/// An object without a label is named by its class id.
pub fn label_text(object: &Object, style: &OverlayStyle) -> String {
    let mut s = String::new();
    if style.draw_labels {
        if object.label.is_empty() {
            let _ = write!(s, "{}", object.class_id);
        } else {
            s.push_str(&object.label);
        }
    }
    if style.draw_confidence {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "{:.2}", object.confidence);
    }
    if style.draw_track_ids
        && let Some(t) = object.track_id
    {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "#{t}");
    }
    if let Some(v) = object.speed {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "{:.0} {}", v.value, v.unit.as_str());
    }
    s
}

/// Why a [`Canvas`] could not be made from the given planes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DrawError {
    #[error("{format:?} frame needs {needed} planes, got {got}")]
    MissingPlanes {
        format: PixelFormat,
        needed: usize,
        got: usize,
    },
    #[error("{format:?} frame needs {needed} plane strides, got {got}")]
    MissingStrides {
        format: PixelFormat,
        needed: usize,
        got: usize,
    },
    #[error("plane {plane}: stride {stride} is smaller than a row ({row_bytes} bytes)")]
    StrideTooSmall {
        plane: usize,
        stride: usize,
        row_bytes: usize,
    },
    #[error("plane {plane}: {len} bytes, but {needed} are needed for {width}x{height} {format:?}")]
    PlaneTooSmall {
        plane: usize,
        len: usize,
        needed: usize,
        width: u32,
        height: u32,
        format: PixelFormat,
    },
}

/// Coordinates beyond this are clamped before any arithmetic, so nothing can overflow.
const COORD_LIMIT: i64 = 1 << 40;

fn snap(v: f32) -> i64 {
    // `as` saturates and maps NaN to 0.
    (v.round() as i64).clamp(-COORD_LIMIT, COORD_LIMIT)
}

/// A colour prepared for one pixel format.
#[derive(Debug, Clone, Copy)]
struct Ink {
    /// Packed pixel bytes (alpha/padding byte 255).
    px: [u8; 4],
    y: u8,
    u: u8,
    v: u8,
}

/// One frame's planes, drawn on in place. See the [module docs](self).
pub struct Canvas<'a> {
    format: PixelFormat,
    width: usize,
    height: usize,
    planes: [&'a mut [u8]; 3],
    strides: [usize; 3],
}

impl std::fmt::Debug for Canvas<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canvas")
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("strides", &&self.strides[..self.format.n_planes()])
            .finish()
    }
}

impl<'a> Canvas<'a> {
    /// Wraps a frame's `planes` (at least [`PixelFormat::n_planes`]; extra ones are ignored) with their
    /// `strides` in bytes. Fails when a plane or stride is too small for `width` x `height`.
    pub fn new<I>(
        format: PixelFormat,
        width: u32,
        height: u32,
        planes: I,
        strides: &[usize],
    ) -> Result<Self, DrawError>
    where
        I: IntoIterator<Item = &'a mut [u8]>,
    {
        let needed = format.n_planes();
        let mut out: [&'a mut [u8]; 3] = [&mut [], &mut [], &mut []];
        let mut got = 0;
        for (slot, plane) in out.iter_mut().zip(planes).take(needed) {
            *slot = plane;
            got += 1;
        }
        if got < needed {
            return Err(DrawError::MissingPlanes {
                format,
                needed,
                got,
            });
        }
        if strides.len() < needed {
            return Err(DrawError::MissingStrides {
                format,
                needed,
                got: strides.len(),
            });
        }
        let mut st = [0usize; 3];
        for plane in 0..needed {
            let (row_bytes, rows) = format.plane_size(plane, width, height);
            let stride = strides[plane];
            if rows > 0 && stride < row_bytes {
                return Err(DrawError::StrideTooSmall {
                    plane,
                    stride,
                    row_bytes,
                });
            }
            let need = if rows == 0 || row_bytes == 0 {
                0
            } else {
                stride * (rows - 1) + row_bytes
            };
            let len = out[plane].len();
            if len < need {
                return Err(DrawError::PlaneTooSmall {
                    plane,
                    len,
                    needed: need,
                    width,
                    height,
                    format,
                });
            }
            st[plane] = stride;
        }
        Ok(Self {
            format,
            width: width as usize,
            height: height as usize,
            planes: out,
            strides: st,
        })
    }

    /// A canvas over a single-plane packed RGB frame.
    pub fn packed(
        format: PixelFormat,
        width: u32,
        height: u32,
        data: &'a mut [u8],
        stride: usize,
    ) -> Result<Self, DrawError> {
        Self::new(format, width, height, [data], &[stride])
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }

    pub fn width(&self) -> u32 {
        self.width as u32
    }

    pub fn height(&self) -> u32 {
        self.height as u32
    }

    /// The planes and their strides, for in-place filters in other modules (`crate::blur`).
    pub(crate) fn planes_mut(&mut self) -> (&mut [&'a mut [u8]; 3], [usize; 3]) {
        (&mut self.planes, self.strides)
    }

    fn ink(&self, c: Color) -> Ink {
        let [ro, go, bo] = self.format.rgb_offsets();
        let mut px = [255u8; 4];
        px[ro] = c.r;
        px[go] = c.g;
        px[bo] = c.b;
        let [y, u, v] = c.to_yuv();
        Ink { px, y, u, v }
    }

    /// Clips the half-open rectangle `[x0, x1) x [y0, y1)` to the frame.
    fn clip(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Option<(usize, usize, usize, usize)> {
        let cx0 = x0.max(0);
        let cy0 = y0.max(0);
        let cx1 = x1.min(self.width as i64);
        let cy1 = y1.min(self.height as i64);
        (cx0 < cx1 && cy0 < cy1).then_some((cx0 as usize, cy0 as usize, cx1 as usize, cy1 as usize))
    }

    /// Writes the packed pixel or the luma of `ink` to `[x0, x1)` of row `y` (already clipped).
    #[inline]
    fn span(&mut self, y: usize, x0: usize, x1: usize, ink: &Ink) {
        let bpp = self.format.bytes_per_pixel();
        let start = y * self.strides[0];
        let row = &mut self.planes[0][start + x0 * bpp..start + x1 * bpp];
        match bpp {
            1 => row.fill(ink.y),
            3 => row
                .chunks_exact_mut(3)
                .for_each(|p| p.copy_from_slice(&ink.px[..3])),
            _ => row
                .chunks_exact_mut(4)
                .for_each(|p| p.copy_from_slice(&ink.px)),
        }
    }

    /// Writes the chroma of `ink` to chroma samples `[cx0, cx1)` of chroma row `cy` (already clipped).
    #[inline]
    fn chroma_span(&mut self, cy: usize, cx0: usize, cx1: usize, ink: &Ink) {
        match self.format {
            PixelFormat::I420 => {
                let (su, sv) = (self.strides[1], self.strides[2]);
                self.planes[1][cy * su + cx0..cy * su + cx1].fill(ink.u);
                self.planes[2][cy * sv + cx0..cy * sv + cx1].fill(ink.v);
            }
            PixelFormat::Nv12 => {
                let s = self.strides[1];
                let uv = [ink.u, ink.v];
                self.planes[1][cy * s + cx0 * 2..cy * s + cx1 * 2]
                    .chunks_exact_mut(2)
                    .for_each(|p| p.copy_from_slice(&uv));
            }
            _ => {}
        }
    }

    fn fill_clipped(&mut self, (x0, y0, x1, y1): (usize, usize, usize, usize), ink: &Ink) {
        for y in y0..y1 {
            self.span(y, x0, x1, ink);
        }
        if self.format.is_yuv() {
            // Every chroma sample the rectangle touches takes its colour.
            let (cx0, cx1) = (x0 / 2, x1.div_ceil(2));
            for cy in y0 / 2..y1.div_ceil(2) {
                self.chroma_span(cy, cx0, cx1, ink);
            }
        }
    }

    fn fill_px(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Color) {
        if let Some(r) = self.clip(x0, y0, x1, y1) {
            let ink = self.ink(color);
            self.fill_clipped(r, &ink);
        }
    }

    /// Fills the `w` x `h` rectangle at `(x, y)` (clipped to the frame).
    ///
    /// In YUV formats every chroma sample the rectangle touches takes the colour, so a rectangle with
    /// odd edges colours the chroma of the neighbouring pixel in its 2x2 block too.
    pub fn fill_rect(&mut self, x: i32, y: i32, w: u32, h: u32, color: Color) {
        let (x, y) = (x as i64, y as i64);
        self.fill_px(x, y, x + w as i64, y + h as i64, color);
    }

    /// Draws the outline of `bbox` (snapped to whole pixels), `thickness` pixels wide, inside the box:
    /// the box's own edge pixels take the colour. Boxes thinner than two lines are filled.
    pub fn rect_outline(&mut self, bbox: &BBox, thickness: u32, color: Color) {
        let (x0, y0, x1, y1) = (snap(bbox.x), snap(bbox.y), snap(bbox.x2()), snap(bbox.y2()));
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        let t = thickness.max(1) as i64;
        if x1 - x0 <= 2 * t || y1 - y0 <= 2 * t {
            self.fill_px(x0, y0, x1, y1, color);
            return;
        }
        self.fill_px(x0, y0, x1, y0 + t, color);
        self.fill_px(x0, y1 - t, x1, y1, color);
        self.fill_px(x0, y0 + t, x0 + t, y1 - t, color);
        self.fill_px(x1 - t, y0 + t, x1, y1 - t, color);
    }

    /// [`rect_outline`](Canvas::rect_outline) with dashes: along each edge, from its corners, `dash`
    /// pixels drawn then `dash` left out (the corners always drawn). A box with edges shorter than
    /// three dashes gets the solid outline. The overlay's mark of a coasting track (`predicted`).
    pub fn rect_outline_dashed(&mut self, bbox: &BBox, thickness: u32, dash: u32, color: Color) {
        let (x0, y0, x1, y1) = (snap(bbox.x), snap(bbox.y), snap(bbox.x2()), snap(bbox.y2()));
        let (t, d) = (thickness.max(1) as i64, dash.max(1) as i64);
        if x1 - x0 < 3 * d || y1 - y0 < 3 * d || x1 - x0 <= 2 * t || y1 - y0 <= 2 * t {
            self.rect_outline(bbox, thickness, color);
            return;
        }
        // Dashes from `a` towards `b` (exclusive), plus one ending at `b`.
        let dashes = |a: i64, b: i64| {
            let mut v: Vec<(i64, i64)> = (0..)
                .map(|k| a + 2 * d * k)
                .take_while(|&s| s < b)
                .map(|s| (s, (s + d).min(b)))
                .collect();
            v.push((b - d, b));
            v
        };
        for (a, b) in dashes(x0, x1) {
            self.fill_px(a, y0, b, y0 + t, color);
            self.fill_px(a, y1 - t, b, y1, color);
        }
        for (a, b) in dashes(y0, y1) {
            self.fill_px(x0, a, x0 + t, b, color);
            self.fill_px(x1 - t, a, x1, b, color);
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`: 8x8 glyphs scaled by `scale` (1..=256),
    /// foreground `fg`, and the whole text box filled with `bg` first when given. Returns the text's
    /// size (see [`text_size`]); drawing is clipped to the frame.
    ///
    /// In YUV formats chroma is point-sampled: a chroma sample takes `fg` when the top-left pixel of
    /// its 2x2 block is a glyph pixel, so glyph edges don't bleed into the background.
    pub fn text(
        &mut self,
        x: i32,
        y: i32,
        text: &str,
        scale: u32,
        fg: Color,
        bg: Option<Color>,
    ) -> (u32, u32) {
        let scale = clamp_scale(scale);
        let (w, h) = text_size(text, scale);
        if let Some(bg) = bg {
            self.fill_rect(x, y, w, h, bg);
        }
        let (x, y, s) = (x as i64, y as i64, scale as i64);
        let Some((cx0, cy0, cx1, cy1)) = self.clip(x, y, x + w as i64, y + h as i64) else {
            return (w, h);
        };
        let ink = self.ink(fg);
        let cell = 8 * s;
        // Only glyphs that intersect the visible columns.
        let first = ((cx0 as i64 - x) / cell) as usize;
        let last = ((cx1 as i64 - 1 - x) / cell) as usize;
        let glyphs: Vec<&[u8; 8]> = text
            .chars()
            .skip(first)
            .take(last + 1 - first)
            .map(glyph)
            .collect();

        for py in cy0..cy1 {
            let gy = ((py as i64 - y) / s) as usize;
            for (i, g) in glyphs.iter().enumerate() {
                let mut bits = g[gy];
                let gx0 = x + (first + i) as i64 * cell;
                // Runs of set bits become one span each.
                let mut bit = 0i64;
                while bits != 0 {
                    let skip = bits.trailing_zeros() as i64;
                    bits >>= skip;
                    bit += skip;
                    let run = bits.trailing_ones() as i64;
                    bits = bits.checked_shr(run as u32).unwrap_or(0);
                    let sx0 = (gx0 + bit * s).max(cx0 as i64);
                    let sx1 = (gx0 + (bit + run) * s).min(cx1 as i64);
                    if sx0 < sx1 {
                        self.span(py, sx0 as usize, sx1 as usize, &ink);
                    }
                    bit += run;
                }
            }
        }

        if self.format.is_yuv() {
            let is_fg = |px: usize, py: usize| {
                let (dx, dy) = (px as i64 - x, py as i64 - y);
                let (gxi, gy) = ((dx / cell) as usize, (dy / s) as usize);
                let gx = ((dx % cell) / s) as u32;
                gxi.checked_sub(first)
                    .and_then(|i| glyphs.get(i))
                    .is_some_and(|g| (g[gy] >> gx) & 1 == 1)
            };
            let mut runs: Vec<(usize, usize, usize)> = Vec::new();
            for cy in cy0.div_ceil(2)..cy1.div_ceil(2) {
                let mut cx = cx0.div_ceil(2);
                let end = cx1.div_ceil(2);
                while cx < end {
                    if is_fg(2 * cx, 2 * cy) {
                        let start = cx;
                        while cx < end && is_fg(2 * cx, 2 * cy) {
                            cx += 1;
                        }
                        runs.push((cy, start, cx));
                    } else {
                        cx += 1;
                    }
                }
            }
            for (cy, a, b) in runs {
                self.chroma_span(cy, a, b, &ink);
            }
        }
        (w, h)
    }

    /// Draws a label box: `text` in the contrasting colour on a `color` background, above `bbox` when
    /// there is room, else inside its top edge, and always inside the frame when it fits.
    pub fn label(&mut self, bbox: &BBox, text: &str, scale: u32, color: Color) {
        if text.is_empty() {
            return;
        }
        let scale = clamp_scale(scale);
        let pad = scale as i64;
        let (tw, th) = text_size(text, scale);
        let (lw, lh) = (tw as i64 + 2 * pad, th as i64 + 2 * pad);
        let (fw, fh) = (self.width as i64, self.height as i64);
        let x = snap(bbox.x).clamp(0, (fw - lw).max(0));
        let top = snap(bbox.y);
        let y = if top - lh >= 0 { top - lh } else { top.max(0) };
        let y = y.min((fh - lh).max(0));
        self.fill_px(x, y, x + lw, y + lh, color);
        // x and y are within 0..=frame size here, which fits in i32 for any real frame.
        let (tx, ty) = (
            i32::try_from(x + pad).unwrap_or(i32::MAX),
            i32::try_from(y + pad).unwrap_or(i32::MAX),
        );
        self.text(tx, ty, text, scale, color.contrasting(), None);
    }

    /// Draws every object of `frame`: its box in [`object_color`] (dashed for a coasting track's
    /// predicted box, [`Object::predicted`]), then (on top of all boxes) its
    /// [`label_text`] via [`Canvas::label`]. Boxes are rescaled when `frame`'s size differs from the
    /// canvas's (a zero size means "same as the canvas").
    pub fn draw_objects(&mut self, frame: &FrameObjects, style: &OverlayStyle) {
        let (sx, sy) = if frame.width > 0 && frame.height > 0 {
            (
                self.width as f32 / frame.width as f32,
                self.height as f32 / frame.height as f32,
            )
        } else {
            (1.0, 1.0)
        };
        for o in &frame.objects {
            let (b, c) = (o.bbox.scaled(sx, sy), object_color(o));
            if o.predicted {
                self.rect_outline_dashed(&b, style.line_width, DASH, c);
            } else {
                self.rect_outline(&b, style.line_width, c);
            }
        }
        if style.draw_labels || style.draw_confidence || style.draw_track_ids {
            for o in &frame.objects {
                let text = label_text(o, style);
                self.label(
                    &o.bbox.scaled(sx, sy),
                    &text,
                    style.font_scale,
                    object_color(o),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BG: u8 = 0x11;

    /// A frame with padded strides, every byte (padding included) set to `BG`.
    struct TestFrame {
        format: PixelFormat,
        width: u32,
        height: u32,
        planes: Vec<Vec<u8>>,
        strides: Vec<usize>,
    }

    impl TestFrame {
        fn new(format: PixelFormat, width: u32, height: u32) -> Self {
            let mut planes = Vec::new();
            let mut strides = Vec::new();
            for p in 0..format.n_planes() {
                let (row, rows) = format.plane_size(p, width, height);
                let stride = row + 5;
                strides.push(stride);
                planes.push(vec![BG; stride * rows]);
            }
            Self {
                format,
                width,
                height,
                planes,
                strides,
            }
        }

        fn canvas(&mut self) -> Canvas<'_> {
            Canvas::new(
                self.format,
                self.width,
                self.height,
                self.planes.iter_mut().map(|p| p.as_mut_slice()),
                &self.strides,
            )
            .unwrap()
        }

        /// The pixel at (x, y): RGB (packed, plus the 4th byte or 255) or [Y, U, V, 255].
        fn pixel(&self, x: usize, y: usize) -> [u8; 4] {
            let f = self.format;
            match f {
                PixelFormat::I420 => [
                    self.planes[0][y * self.strides[0] + x],
                    self.planes[1][(y / 2) * self.strides[1] + x / 2],
                    self.planes[2][(y / 2) * self.strides[2] + x / 2],
                    255,
                ],
                PixelFormat::Nv12 => [
                    self.planes[0][y * self.strides[0] + x],
                    self.planes[1][(y / 2) * self.strides[1] + (x / 2) * 2],
                    self.planes[1][(y / 2) * self.strides[1] + (x / 2) * 2 + 1],
                    255,
                ],
                _ => {
                    let bpp = f.bytes_per_pixel();
                    let p = &self.planes[0][y * self.strides[0] + x * bpp..][..bpp];
                    let [r, g, b] = f.rgb_offsets();
                    [p[r], p[g], p[b], if bpp == 4 { p[3] } else { 255 }]
                }
            }
        }

        fn luma_or_rgb(&self, x: usize, y: usize) -> [u8; 4] {
            let p = self.pixel(x, y);
            if self.format.is_yuv() {
                [p[0], 0, 0, 0]
            } else {
                p
            }
        }

        fn expected(&self, c: Color) -> [u8; 4] {
            if self.format.is_yuv() {
                let [y, u, v] = c.to_yuv();
                [y, u, v, 255]
            } else {
                [c.r, c.g, c.b, 255]
            }
        }

        fn untouched(&self) -> [u8; 4] {
            let bpp4 = self.format.bytes_per_pixel() == 4;
            if self.format.is_yuv() || !bpp4 {
                [BG, BG, BG, 255]
            } else {
                [BG; 4]
            }
        }

        fn padding_untouched(&self) -> bool {
            (0..self.planes.len()).all(|p| {
                let (row, rows) = self.format.plane_size(p, self.width, self.height);
                (0..rows).all(|r| {
                    self.planes[p][r * self.strides[p] + row..(r + 1) * self.strides[p]]
                        .iter()
                        .all(|&b| b == BG)
                })
            })
        }
    }

    const RED: Color = Color::new(250, 20, 30);

    #[test]
    fn outline_colours_edges_and_leaves_inside_for_every_format() {
        for format in PixelFormat::ALL {
            let mut f = TestFrame::new(format, 40, 30);
            f.canvas()
                .rect_outline(&BBox::new(4.0, 6.0, 20.0, 16.0), 2, RED);
            let red = f.expected(RED);
            // Edges (YUV: pixels in 2x2 blocks fully covered by the line, so chroma is RED too).
            for (x, y) in [
                (4, 12),
                (5, 12),
                (23, 12),
                (22, 12),
                (10, 6),
                (10, 7),
                (10, 21),
                (10, 20),
                (4, 6),
                (23, 21),
            ] {
                assert_eq!(f.pixel(x, y), red, "{format:?} edge ({x},{y})");
            }
            // Inside and outside.
            for (x, y) in [
                (12, 12),
                (7, 9),
                (20, 18),
                (0, 0),
                (3, 12),
                (24, 12),
                (10, 5),
                (10, 22),
                (39, 29),
            ] {
                assert_eq!(
                    f.pixel(x, y),
                    f.untouched(),
                    "{format:?} untouched ({x},{y})"
                );
            }
            assert!(f.padding_untouched(), "{format:?} padding");
        }
    }

    #[test]
    fn dashed_outline_leaves_gaps_and_keeps_corners() {
        let mut f = TestFrame::new(PixelFormat::Rgb, 64, 48);
        // x 4..44, y 6..36; dashes of 6 from each corner: 4..10 drawn, 10..16 gap, 16..22 drawn, …
        f.canvas()
            .rect_outline_dashed(&BBox::new(4.0, 6.0, 40.0, 30.0), 2, 6, RED);
        let red = f.expected(RED);
        for (x, y) in [
            (4, 6),
            (9, 6),
            (16, 7),
            (43, 6),
            (43, 35),
            (4, 35),
            (4, 11),
            (42, 20),
        ] {
            assert_eq!(f.pixel(x, y), red, "dash at ({x},{y})");
        }
        for (x, y) in [(10, 6), (15, 7), (34, 35), (4, 13), (43, 17), (20, 20)] {
            assert_eq!(f.pixel(x, y), f.untouched(), "gap at ({x},{y})");
        }
        assert!(f.padding_untouched());
        // Too small for three dashes: the solid outline.
        let mut g = TestFrame::new(PixelFormat::Rgb, 64, 48);
        g.canvas()
            .rect_outline_dashed(&BBox::new(4.0, 6.0, 15.0, 30.0), 2, 6, RED);
        assert_eq!(g.pixel(12, 6), red);
        assert_eq!(g.pixel(4, 20), red);
    }

    #[test]
    fn packed_byte_order_and_alpha() {
        let c = Color::new(1, 2, 3);
        let cases = [
            (PixelFormat::Rgba, vec![1, 2, 3, 255]),
            (PixelFormat::Bgra, vec![3, 2, 1, 255]),
            (PixelFormat::Rgbx, vec![1, 2, 3, 255]),
            (PixelFormat::Bgrx, vec![3, 2, 1, 255]),
            (PixelFormat::Rgb, vec![1, 2, 3]),
            (PixelFormat::Bgr, vec![3, 2, 1]),
        ];
        for (format, bytes) in cases {
            let mut f = TestFrame::new(format, 4, 2);
            f.canvas().fill_rect(1, 1, 1, 1, c);
            let bpp = format.bytes_per_pixel();
            let s = f.strides[0];
            assert_eq!(
                &f.planes[0][s + bpp..s + 2 * bpp],
                bytes.as_slice(),
                "{format:?}"
            );
            assert!(
                f.planes[0][s + 2 * bpp..].iter().all(|&b| b == BG),
                "{format:?}"
            );
            assert!(
                f.planes[0][s..s + bpp].iter().all(|&b| b == BG),
                "{format:?}"
            );
        }
    }

    #[test]
    fn yuv_chroma_is_half_resolution() {
        for format in [PixelFormat::I420, PixelFormat::Nv12] {
            // Odd frame size: chroma planes are ceil(w/2) x ceil(h/2).
            let mut f = TestFrame::new(format, 33, 25);
            f.canvas().fill_rect(0, 0, 33, 25, Color::WHITE);
            assert!(f.padding_untouched());
            for y in 0..25 {
                for x in 0..33 {
                    assert_eq!(f.pixel(x, y), [235, 128, 128, 255], "{format:?} ({x},{y})");
                }
            }
            // A 1-pixel rect at an odd position colours its luma pixel and its block's chroma only.
            let mut f = TestFrame::new(format, 8, 8);
            f.canvas().fill_rect(3, 5, 1, 1, RED);
            let [y, u, v] = RED.to_yuv();
            assert_eq!(f.pixel(3, 5), [y, u, v, 255]);
            assert_eq!(f.pixel(2, 4), [BG, u, v, 255]);
            assert_eq!(f.pixel(4, 5), [BG, BG, BG, 255]);
            assert_eq!(f.pixel(3, 6), [BG, BG, BG, 255]);
        }
    }

    #[test]
    fn colour_conversion_bt601_limited() {
        assert_eq!(Color::WHITE.to_yuv(), [235, 128, 128]);
        assert_eq!(Color::BLACK.to_yuv(), [16, 128, 128]);
        assert_eq!(Color::new(255, 0, 0).to_yuv(), [81, 90, 240]);
        assert_eq!(Color::new(0, 255, 0).to_yuv(), [145, 54, 34]);
        assert_eq!(Color::new(0, 0, 255).to_yuv(), [41, 240, 110]);
        assert_eq!(Color::WHITE.contrasting(), Color::BLACK);
        assert_eq!(Color::new(0, 0, 128).contrasting(), Color::WHITE);
    }

    #[test]
    fn clipping_never_panics_and_clips() {
        let boxes = [
            BBox::new(-10.0, -10.0, 20.0, 20.0),
            BBox::new(30.0, 20.0, 100.0, 100.0),
            BBox::new(-100.0, -100.0, 50.0, 50.0),
            BBox::new(1000.0, 1000.0, 5.0, 5.0),
            BBox::new(-1e30, -1e30, 2e30, 2e30),
            BBox::new(f32::NAN, 3.0, f32::NAN, 4.0),
            BBox::new(f32::INFINITY, f32::NEG_INFINITY, 1.0, f32::INFINITY),
            BBox::new(5.0, 5.0, -3.0, 2.0),
            BBox::new(0.0, 0.0, 40.0, 30.0),
            BBox::new(39.6, 29.6, 0.3, 0.3),
        ];
        for format in PixelFormat::ALL {
            for (w, h) in [(40, 30), (1, 1), (0, 0), (3, 0), (7, 5)] {
                let mut f = TestFrame::new(format, w, h);
                let mut c = f.canvas();
                for b in &boxes {
                    c.rect_outline(b, 3, RED);
                    c.rect_outline(b, u32::MAX, RED);
                    c.label(b, "person 0.99 #1", 2, RED);
                }
                c.fill_rect(i32::MIN, i32::MIN, u32::MAX, u32::MAX, RED);
                c.fill_rect(i32::MAX, i32::MAX, u32::MAX, u32::MAX, RED);
                c.text(-20, -3, "clipped text", 3, Color::WHITE, Some(RED));
                c.text(i32::MAX, i32::MAX, "x", u32::MAX, Color::WHITE, Some(RED));
                c.text(i32::MIN, 0, "far left", 256, Color::WHITE, None);
                assert!(f.padding_untouched(), "{format:?} {w}x{h}");
            }
            // A box hanging over the top-left corner colours the frame's corner.
            let mut f = TestFrame::new(format, 40, 30);
            f.canvas()
                .rect_outline(&BBox::new(-5.0, -5.0, 20.0, 20.0), 2, RED);
            assert_eq!(f.pixel(0, 10), f.untouched(), "{format:?}");
            assert_eq!(f.pixel(13, 13), f.expected(RED), "{format:?}");
            assert_eq!(f.pixel(14, 0), f.expected(RED), "{format:?}");
        }
    }

    #[test]
    fn text_draws_foreground_and_background() {
        for format in PixelFormat::ALL {
            let mut f = TestFrame::new(format, 64, 32);
            let size = f.canvas().text(2, 4, "A1", 2, Color::WHITE, None);
            assert_eq!(size, (32, 16));
            let white = f.luma_or_rgb_expected(Color::WHITE);
            let count = |f: &TestFrame, c: [u8; 4]| {
                (0..32)
                    .flat_map(|y| (0..64).map(move |x| (x, y)))
                    .filter(|&(x, y)| f.luma_or_rgb(x, y) == c)
                    .count()
            };
            let fg = count(&f, white);
            assert!(fg > 20, "{format:?}: {fg} foreground pixels");
            // 'A' row 0 is 0x0C: glyph columns 2 and 3 set -> pixels x = 2 + 4..8 on rows 4..6.
            assert_eq!(f.luma_or_rgb(6, 4), white, "{format:?}");
            assert_eq!(f.luma_or_rgb(9, 5), white, "{format:?}");
            assert_eq!(f.luma_or_rgb(2, 4), f.luma_or_rgb_untouched(), "{format:?}");
            // Nothing outside the text box.
            assert_eq!(
                f.luma_or_rgb(40, 10),
                f.luma_or_rgb_untouched(),
                "{format:?}"
            );
            assert_eq!(
                f.luma_or_rgb(5, 21),
                f.luma_or_rgb_untouched(),
                "{format:?}"
            );
            if format.is_yuv() {
                // The glyph's chroma is white's (point-sampled at even pixels).
                assert_eq!(f.pixel(6, 4), [235, 128, 128, 255], "{format:?}");
            }

            let mut f = TestFrame::new(format, 64, 32);
            f.canvas().text(2, 4, "A1", 2, Color::WHITE, Some(RED));
            let (fg, bg) = (count(&f, white), count(&f, f.luma_or_rgb_expected(RED)));
            assert!(
                fg > 20 && bg > 200 && fg + bg == 32 * 16,
                "{format:?}: fg {fg} bg {bg}"
            );
            if format.is_yuv() {
                let [_, u, v] = RED.to_yuv();
                assert_eq!(f.pixel(2, 4), [RED.to_yuv()[0], u, v, 255]);
            }
        }
    }

    impl TestFrame {
        fn luma_or_rgb_expected(&self, c: Color) -> [u8; 4] {
            if self.format.is_yuv() {
                [c.to_yuv()[0], 0, 0, 0]
            } else {
                self.expected(c)
            }
        }

        fn luma_or_rgb_untouched(&self) -> [u8; 4] {
            if self.format.is_yuv() {
                [BG, 0, 0, 0]
            } else {
                self.untouched()
            }
        }
    }

    #[test]
    fn text_size_and_non_ascii() {
        assert_eq!(text_size("", 2), (0, 16));
        assert_eq!(text_size("ab", 3), (48, 24));
        assert_eq!(text_size("é", 1), (8, 8));
        assert_eq!(text_size("x", 0), (8, 8));
        assert_eq!(glyph('é'), glyph('?'));
    }

    #[test]
    fn canvas_rejects_bad_planes() {
        let mut small = vec![0u8; 10];
        assert!(matches!(
            Canvas::packed(PixelFormat::Rgba, 4, 4, &mut small, 16),
            Err(DrawError::PlaneTooSmall {
                plane: 0,
                len: 10,
                needed: 64,
                ..
            })
        ));
        let mut data = vec![0u8; 64];
        assert!(matches!(
            Canvas::packed(PixelFormat::Rgba, 4, 4, &mut data, 8),
            Err(DrawError::StrideTooSmall {
                plane: 0,
                stride: 8,
                row_bytes: 16
            })
        ));
        let mut y = vec![0u8; 16];
        let err = Canvas::new(PixelFormat::I420, 4, 4, [y.as_mut_slice()], &[4, 2, 2]).unwrap_err();
        assert_eq!(
            err,
            DrawError::MissingPlanes {
                format: PixelFormat::I420,
                needed: 3,
                got: 1
            }
        );
        assert!(err.to_string().contains("I420"));
        let (mut y, mut uv) = (vec![0u8; 16], vec![0u8; 8]);
        assert!(matches!(
            Canvas::new(
                PixelFormat::Nv12,
                4,
                4,
                [y.as_mut_slice(), uv.as_mut_slice()],
                &[4]
            ),
            Err(DrawError::MissingStrides { .. })
        ));
        // The last row needs no padding.
        let mut data = vec![0u8; 2 * 20 + 12];
        assert!(Canvas::packed(PixelFormat::Rgb, 4, 3, &mut data, 20).is_ok());
    }

    #[test]
    fn palette_is_deterministic_and_varied() {
        assert_eq!(class_color(3), class_color(3));
        assert_eq!(class_color(-1), PALETTE[PALETTE.len() - 1]);
        assert_ne!(track_color(0), class_color(0));
        for i in 0..PALETTE.len() as u64 {
            assert_ne!(track_color(i), track_color(i + 1));
            assert_ne!(class_color(i as i32), class_color(i as i32 + 1));
        }
        let distinct: std::collections::HashSet<_> =
            (0..PALETTE.len() as u64).map(track_color).collect();
        assert_eq!(distinct.len(), PALETTE.len());
        let mut o = Object::new(2, "car", 0.5, BBox::default());
        assert_eq!(object_color(&o), class_color(2));
        o.track_id = Some(9);
        assert_eq!(object_color(&o), track_color(9));
    }

    #[test]
    fn label_text_honours_style() {
        let mut o = Object::new(0, "person", 0.834, BBox::default());
        o.track_id = Some(12);
        let all = OverlayStyle::default();
        assert_eq!(label_text(&o, &all), "person 0.83 #12");
        let no_conf = OverlayStyle {
            draw_confidence: false,
            ..all.clone()
        };
        assert_eq!(label_text(&o, &no_conf), "person #12");
        let only_conf = OverlayStyle {
            draw_labels: false,
            draw_track_ids: false,
            ..all.clone()
        };
        assert_eq!(label_text(&o, &only_conf), "0.83");
        let none = OverlayStyle {
            draw_labels: false,
            draw_confidence: false,
            draw_track_ids: false,
            ..all.clone()
        };
        assert_eq!(label_text(&o, &none), "");
        o.track_id = None;
        o.label.clear();
        o.class_id = 7;
        assert_eq!(label_text(&o, &all), "7 0.83");
    }

    #[test]
    fn draw_objects_places_label_above_box_and_inside_frame() {
        let style = OverlayStyle {
            font_scale: 1,
            line_width: 1,
            ..OverlayStyle::default()
        };
        let mut frame = FrameObjects::new(80, 60);
        frame
            .objects
            .push(Object::new(1, "a", 0.5, BBox::new(10.0, 30.0, 20.0, 20.0)));
        let color = class_color(1);
        let mut f = TestFrame::new(PixelFormat::Rgb, 80, 60);
        f.canvas().draw_objects(&frame, &style);
        // Box edge.
        assert_eq!(f.pixel(10, 40), f.expected(color));
        // Label "a 0.50" is 6*8+2 = 50 wide, 10 high, directly above the box: rows 20..30.
        assert_eq!(f.pixel(10, 20), f.expected(color));
        assert_eq!(f.pixel(59, 29), f.expected(color));
        assert_eq!(f.pixel(60, 25), f.untouched());
        assert_eq!(f.pixel(10, 19), f.untouched());
        assert_eq!(f.pixel(20, 40), f.untouched());

        // A box at the top: the label goes inside it; a box at the right edge: label shifted left.
        let mut frame = FrameObjects::new(0, 0);
        frame
            .objects
            .push(Object::new(1, "a", 0.5, BBox::new(70.0, 0.0, 10.0, 20.0)));
        let mut f = TestFrame::new(PixelFormat::Rgb, 80, 60);
        f.canvas().draw_objects(&frame, &style);
        assert_eq!(f.pixel(30, 0), f.expected(color));
        assert_eq!(f.pixel(79, 9), f.expected(color));
        assert_eq!(f.pixel(29, 5), f.untouched());

        // Metadata for a different frame size is rescaled.
        let mut frame = FrameObjects::new(40, 30);
        frame
            .objects
            .push(Object::new(1, "a", 0.5, BBox::new(5.0, 15.0, 10.0, 10.0)));
        let none = OverlayStyle {
            draw_labels: false,
            draw_confidence: false,
            draw_track_ids: false,
            ..style
        };
        let mut f = TestFrame::new(PixelFormat::Rgb, 80, 60);
        f.canvas().draw_objects(&frame, &none);
        assert_eq!(f.pixel(10, 40), f.expected(color));
        assert_eq!(f.pixel(29, 40), f.expected(color));
        assert_eq!(f.pixel(10, 29), f.untouched());
        assert_eq!(f.pixel(10, 20), f.untouched());
    }
}
