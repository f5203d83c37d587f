//! Decoded frames in memory — formats, plane layouts, YUV → RGB — and their conversion into the
//! packed 4-byte pixels the CPU pre-processor resizes ([`to_packed4`]).
//!
//! The YUV conversion is defined here, in integers, so that the CPU path and the GPU kernels
//! ([`crate::gpu`]) compute the same 8-bit RGB values bit for bit: each output channel is
//! `clamp((m · (Y - y_offset, U - 128, V - 128) + 2^15) >> 16, 0, 255)` with the coefficients of
//! [`YuvMatrix`] in 1/65536 units, and 4:2:0 chroma is taken from the sample of the pixel's 2x2
//! block (`(x / 2, y / 2)`; no interpolation). `vigilinfer` uses it for NV12 and I420 frames instead
//! of `gst_video::VideoConverter`, whose result differs by the chroma filter and rounding.

use crate::preprocess::ColorOrder;

/// Pixel layout of a decoded frame that Vigil pre-processes itself (on the CPU with
/// [`to_packed4`], on the GPU with [`crate::gpu::GpuPreprocessor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameFormat {
    /// 4:2:0, a Y plane then one interleaved U/V plane.
    Nv12,
    /// 4:2:0, Y, U and V planes.
    I420,
    /// Packed R, G, B, A (or x).
    Rgba,
    /// Packed B, G, R, A (or x).
    Bgra,
    /// Packed R, G, B.
    Rgb,
    /// Packed B, G, R.
    Bgr,
}

impl FrameFormat {
    pub const ALL: [FrameFormat; 6] = [
        FrameFormat::Nv12,
        FrameFormat::I420,
        FrameFormat::Rgba,
        FrameFormat::Bgra,
        FrameFormat::Rgb,
        FrameFormat::Bgr,
    ];

    /// The GStreamer format name (`RGBx`/`BGRx` frames are `Rgba`/`Bgra`: the 4th byte is ignored).
    pub fn name(self) -> &'static str {
        match self {
            FrameFormat::Nv12 => "NV12",
            FrameFormat::I420 => "I420",
            FrameFormat::Rgba => "RGBA",
            FrameFormat::Bgra => "BGRA",
            FrameFormat::Rgb => "RGB",
            FrameFormat::Bgr => "BGR",
        }
    }

    /// From a GStreamer format name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "NV12" => FrameFormat::Nv12,
            "I420" => FrameFormat::I420,
            "RGBA" | "RGBx" => FrameFormat::Rgba,
            "BGRA" | "BGRx" => FrameFormat::Bgra,
            "RGB" => FrameFormat::Rgb,
            "BGR" => FrameFormat::Bgr,
            _ => return None,
        })
    }

    /// Which kernel family reads it: 0 packed 4 bytes, 1 packed 3 bytes, 2 NV12, 3 I420.
    pub fn family(self) -> usize {
        match self {
            FrameFormat::Rgba | FrameFormat::Bgra => 0,
            FrameFormat::Rgb | FrameFormat::Bgr => 1,
            FrameFormat::Nv12 => 2,
            FrameFormat::I420 => 3,
        }
    }

    /// Byte index of red and blue in a packed pixel (unused for YUV).
    pub fn red_blue(self) -> (usize, usize) {
        match self {
            FrameFormat::Bgra | FrameFormat::Bgr => (2, 0),
            _ => (0, 2),
        }
    }
}

/// Rows and planes of one frame in memory (tightly packed frames: [`FrameLayout::packed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    pub format: FrameFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes per row of the first plane (packed pixels or Y).
    pub stride: usize,
    /// Bytes per row of the chroma plane(s).
    pub stride_uv: usize,
    /// Offset of the U/V (NV12) or U (I420) plane.
    pub u_offset: usize,
    /// Offset of the V plane (I420).
    pub v_offset: usize,
    /// Bytes of one frame.
    pub frame_bytes: usize,
}

impl FrameLayout {
    /// The layout of a frame without row padding (chroma rows of `ceil(width / 2)` samples).
    pub fn packed(format: FrameFormat, width: u32, height: u32) -> FrameLayout {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (stride, stride_uv, u_offset, v_offset, frame_bytes) = match format {
            FrameFormat::Rgba | FrameFormat::Bgra => (4 * w, 0, 0, 0, 4 * w * h),
            FrameFormat::Rgb | FrameFormat::Bgr => (3 * w, 0, 0, 0, 3 * w * h),
            FrameFormat::Nv12 => (w, 2 * cw, w * h, 0, w * h + 2 * cw * ch),
            FrameFormat::I420 => (w, cw, w * h, w * h + cw * ch, w * h + 2 * cw * ch),
        };
        FrameLayout {
            format,
            width,
            height,
            stride,
            stride_uv,
            u_offset,
            v_offset,
            frame_bytes,
        }
    }
}

/// ITU-R colour standards of YUV video (the `matrix` of the caps' colorimetry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YuvStandard {
    Bt601,
    Bt709,
    Bt2020,
}

impl YuvStandard {
    /// `(Kr, Kb)` of the standard.
    fn kr_kb(self) -> (f64, f64) {
        match self {
            YuvStandard::Bt601 => (0.299, 0.114),
            YuvStandard::Bt709 => (0.2126, 0.0722),
            YuvStandard::Bt2020 => (0.2627, 0.0593),
        }
    }
}

/// YUV → RGB in fixed point: per output channel `r`, `clamp((m[3r] * (Y - y_offset) + m[3r+1] *
/// (U - 128) + m[3r+2] * (V - 128) + 32768) >> 16, 0, 255)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YuvMatrix {
    /// Coefficients in 1/65536 units, rows R, G, B.
    pub m: [i32; 9],
    pub y_offset: i32,
}

/// Fraction bits of [`YuvMatrix::m`].
pub const YUV_FRACTION_BITS: u32 = 16;

impl YuvMatrix {
    /// ITU-R BT.601, limited range (GStreamer's default for SD video).
    pub const BT601: YuvMatrix = YuvMatrix {
        m: [76309, 0, 104597, 76309, -25675, -53279, 76309, 132201, 0],
        y_offset: 16,
    };
    /// ITU-R BT.709, limited range (GStreamer's default for HD video).
    pub const BT709: YuvMatrix = YuvMatrix {
        m: [76309, 0, 117489, 76309, -13975, -34925, 76309, 138438, 0],
        y_offset: 16,
    };

    /// The matrix of `standard`; `full_range`: Y and chroma use 0..255 (JPEG), else 16..235 / 16..240.
    pub fn new(standard: YuvStandard, full_range: bool) -> YuvMatrix {
        let (kr, kb) = standard.kr_kb();
        let kg = 1.0 - kr - kb;
        let (ys, cs) = if full_range {
            (1.0, 1.0)
        } else {
            (255.0 / 219.0, 255.0 / 224.0)
        };
        let m = [
            ys,
            0.0,
            2.0 * (1.0 - kr) * cs,
            ys,
            -2.0 * kb * (1.0 - kb) / kg * cs,
            -2.0 * kr * (1.0 - kr) / kg * cs,
            ys,
            2.0 * (1.0 - kb) * cs,
            0.0,
        ];
        YuvMatrix {
            m: m.map(|v: f64| (v * f64::from(1u32 << YUV_FRACTION_BITS)).round() as i32),
            y_offset: if full_range { 0 } else { 16 },
        }
    }

    /// The matrix GStreamer assumes for a frame of this height when caps name none.
    pub fn default_for(height: u32) -> YuvMatrix {
        if height > 576 {
            YuvMatrix::BT709
        } else {
            YuvMatrix::BT601
        }
    }

    /// The RGB value of one sample.
    #[inline]
    pub fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let (y, u, v) = (
            i32::from(y) - self.y_offset,
            i32::from(u) - 128,
            i32::from(v) - 128,
        );
        let m = &self.m;
        let c = |r: usize| channel(m[3 * r] * y + m[3 * r + 1] * u + m[3 * r + 2] * v);
        [c(0), c(1), c(2)]
    }
}

/// Rounds a fixed-point channel value and clamps it to 0..255.
#[inline(always)]
fn channel(sum: i32) -> u8 {
    ((sum + (1 << (YUV_FRACTION_BITS - 1))) >> YUV_FRACTION_BITS).clamp(0, 255) as u8
}

/// The RGB value of pixel (`x`, `y`) of `frame`.
#[inline]
pub fn pixel(frame: &[u8], l: &FrameLayout, m: &YuvMatrix, x: usize, y: usize) -> [u8; 3] {
    match l.format {
        FrameFormat::Rgba | FrameFormat::Bgra | FrameFormat::Rgb | FrameFormat::Bgr => {
            let bpp = if l.format.family() == 0 { 4 } else { 3 };
            let p = &frame[y * l.stride + x * bpp..];
            let (r, b) = l.format.red_blue();
            [p[r], p[1], p[b]]
        }
        FrameFormat::Nv12 => {
            let c = l.u_offset + (y / 2) * l.stride_uv + (x / 2) * 2;
            m.rgb(frame[y * l.stride + x], frame[c], frame[c + 1])
        }
        FrameFormat::I420 => {
            let c = (y / 2) * l.stride_uv + x / 2;
            m.rgb(
                frame[y * l.stride + x],
                frame[l.u_offset + c],
                frame[l.v_offset + c],
            )
        }
    }
}

/// Why a frame cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("converting a {width}x{height} {format} frame: {reason}")]
pub struct FrameError {
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    pub reason: String,
}

impl FrameLayout {
    /// Bytes a buffer must hold for this layout (the last row of each plane may be short of the
    /// stride).
    pub fn required_bytes(&self) -> usize {
        let (w, h) = (self.width as usize, self.height as usize);
        if w == 0 || h == 0 {
            return 0;
        }
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match self.format {
            FrameFormat::Rgba | FrameFormat::Bgra => (h - 1) * self.stride + 4 * w,
            FrameFormat::Rgb | FrameFormat::Bgr => (h - 1) * self.stride + 3 * w,
            FrameFormat::Nv12 => {
                let y = (h - 1) * self.stride + w;
                y.max(self.u_offset + (ch - 1) * self.stride_uv + 2 * cw)
            }
            FrameFormat::I420 => {
                let y = (h - 1) * self.stride + w;
                let c = (ch - 1) * self.stride_uv + cw;
                y.max(self.u_offset + c).max(self.v_offset + c)
            }
        }
    }
}

/// Converts `frame` into tightly packed 4-byte pixels (`4 * width * height` bytes in `out`) whose
/// first three bytes are R, G, B in `color` order and whose fourth is 255: the input of
/// [`crate::preprocess::Preprocessor`]. YUV frames are converted with `m` (see the module docs).
pub fn to_packed4(
    frame: &[u8],
    l: &FrameLayout,
    m: &YuvMatrix,
    color: ColorOrder,
    out: &mut [u8],
) -> Result<(), FrameError> {
    let (w, h) = (l.width as usize, l.height as usize);
    let err = |reason: String| FrameError {
        format: l.format.name(),
        width: l.width,
        height: l.height,
        reason,
    };
    if w == 0 || h == 0 {
        return Err(err("empty frame".into()));
    }
    if frame.len() < l.required_bytes() {
        return Err(err(format!(
            "{} bytes given, {} needed",
            frame.len(),
            l.required_bytes()
        )));
    }
    if out.len() < 4 * w * h {
        return Err(err(format!(
            "output of {} bytes, {} needed",
            out.len(),
            4 * w * h
        )));
    }
    // Byte positions of R and B in the output pixel.
    let (or, ob) = match color {
        ColorOrder::Rgb => (0, 2),
        ColorOrder::Bgr => (2, 0),
    };
    match l.format {
        FrameFormat::Rgba | FrameFormat::Bgra | FrameFormat::Rgb | FrameFormat::Bgr => {
            let bpp = if l.format.family() == 0 { 4 } else { 3 };
            let (r, b) = l.format.red_blue();
            for y in 0..h {
                let src = &frame[y * l.stride..y * l.stride + bpp * w];
                let dst = &mut out[4 * w * y..4 * w * (y + 1)];
                for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(bpp)) {
                    d[or] = s[r];
                    d[1] = s[1];
                    d[ob] = s[b];
                    d[3] = 255;
                }
            }
        }
        FrameFormat::Nv12 | FrameFormat::I420 => match color {
            ColorOrder::Rgb => yuv_to_packed4::<false>(frame, l, m, out),
            ColorOrder::Bgr => yuv_to_packed4::<true>(frame, l, m, out),
        },
    }
    Ok(())
}

/// [`to_packed4`] for NV12 and I420 (sizes checked by the caller), row by row: the chroma terms once
/// per chroma row (each repeated for the two pixels that share it), then a loop over the row's
/// pixels that the compiler vectorises (with AVX2 where the CPU has it).
fn yuv_to_packed4<const BGR: bool>(frame: &[u8], l: &FrameLayout, m: &YuvMatrix, out: &mut [u8]) {
    let (w, h) = (l.width as usize, l.height as usize);
    let mm = &m.m;
    let half = 1 << (YUV_FRACTION_BITS - 1);
    let cw = w.div_ceil(2);
    // Per pixel of the current chroma row: the chroma term of R, G and B, rounding included.
    let mut terms = [vec![0i32; 2 * cw], vec![0i32; 2 * cw], vec![0i32; 2 * cw]];
    let mut packed = vec![0u32; w];
    for y in 0..h {
        if y % 2 == 0 {
            let row = (y / 2) * l.stride_uv;
            let (u_at, v_at, step) = match l.format {
                FrameFormat::Nv12 => (l.u_offset + row, l.u_offset + row + 1, 2),
                _ => (l.u_offset + row, l.v_offset + row, 1),
            };
            for cx in 0..cw {
                let u = i32::from(frame[u_at + step * cx]) - 128;
                let v = i32::from(frame[v_at + step * cx]) - 128;
                for (k, t) in terms.iter_mut().enumerate() {
                    let term = mm[3 * k + 1] * u + mm[3 * k + 2] * v + half;
                    t[2 * cx] = term;
                    t[2 * cx + 1] = term;
                }
            }
        }
        let luma = &frame[y * l.stride..y * l.stride + w];
        let luma_coef = [mm[0], mm[3], mm[6]];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { yuv_row_avx2::<BGR>(luma, &terms, luma_coef, m.y_offset, &mut packed) };
        } else {
            yuv_row::<BGR>(luma, &terms, luma_coef, m.y_offset, &mut packed);
        }
        #[cfg(not(target_arch = "x86_64"))]
        yuv_row::<BGR>(luma, &terms, luma_coef, m.y_offset, &mut packed);
        for (d, v) in out[4 * w * y..4 * w * (y + 1)]
            .chunks_exact_mut(4)
            .zip(&packed)
        {
            d.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// One row: `packed[x]` = the pixel's bytes R, G, B, 255 (or B, G, R, 255) as a little-endian u32.
#[inline(always)]
fn yuv_row<const BGR: bool>(
    luma: &[u8],
    terms: &[Vec<i32>; 3],
    luma_coef: [i32; 3],
    y_offset: i32,
    packed: &mut [u32],
) {
    let w = packed.len();
    let (luma, tr, tg, tb) = (&luma[..w], &terms[0][..w], &terms[1][..w], &terms[2][..w]);
    let c = |v: i32| (v >> YUV_FRACTION_BITS).clamp(0, 255) as u32;
    for x in 0..w {
        let yy = i32::from(luma[x]) - y_offset;
        let r = c(yy * luma_coef[0] + tr[x]);
        let g = c(yy * luma_coef[1] + tg[x]);
        let b = c(yy * luma_coef[2] + tb[x]);
        packed[x] = if BGR {
            b | g << 8 | r << 16 | 0xff00_0000
        } else {
            r | g << 8 | b << 16 | 0xff00_0000
        };
    }
}

/// [`yuv_row`] compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn yuv_row_avx2<const BGR: bool>(
    luma: &[u8],
    terms: &[Vec<i32>; 3],
    luma_coef: [i32; 3],
    y_offset: i32,
    packed: &mut [u32],
) {
    yuv_row::<BGR>(luma, terms, luma_coef, y_offset, packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_are_the_standards() {
        assert_eq!(YuvMatrix::new(YuvStandard::Bt601, false), YuvMatrix::BT601);
        assert_eq!(YuvMatrix::new(YuvStandard::Bt709, false), YuvMatrix::BT709);
        // Limited-range white, black and grey.
        for m in [YuvMatrix::BT601, YuvMatrix::BT709] {
            assert_eq!(m.rgb(235, 128, 128), [255; 3]);
            assert_eq!(m.rgb(16, 128, 128), [0; 3]);
            assert_eq!(m.rgb(126, 128, 128), [128; 3]);
        }
        let full = YuvMatrix::new(YuvStandard::Bt709, true);
        assert_eq!(full.rgb(200, 128, 128), [200; 3]);
        // Pure red in BT.601: Y 81, U 90, V 240.
        let r = YuvMatrix::BT601.rgb(81, 90, 240);
        assert!(r[0] >= 254 && r[1] <= 1 && r[2] <= 1, "{r:?}");
        // Pure blue in BT.709: Y 32, U 240, V 118.
        let b = YuvMatrix::BT709.rgb(32, 240, 118);
        assert!(b[2] >= 253 && b[0] <= 2 && b[1] <= 2, "{b:?}");
    }

    #[test]
    fn yuv_layouts() {
        let l = FrameLayout::packed(FrameFormat::I420, 5, 3);
        assert_eq!(
            (l.stride, l.stride_uv, l.u_offset, l.v_offset, l.frame_bytes),
            (5, 3, 15, 21, 27)
        );
        assert_eq!(l.required_bytes(), 27);
        let l = FrameLayout::packed(FrameFormat::Nv12, 4, 2);
        assert_eq!((l.stride_uv, l.u_offset, l.frame_bytes), (4, 8, 12));
        assert_eq!(l.required_bytes(), 12);
    }

    /// The converter against the per-pixel definition, for every format and both colour orders,
    /// on odd sizes (a last chroma column and row of one pixel).
    #[test]
    fn to_packed4_is_the_per_pixel_conversion() {
        let (w, h) = (7u32, 5u32);
        for format in FrameFormat::ALL {
            let l = FrameLayout::packed(format, w, h);
            let frame: Vec<u8> = (0..l.frame_bytes).map(|i| (i * 37 % 251) as u8).collect();
            for color in [ColorOrder::Rgb, ColorOrder::Bgr] {
                let mut out = vec![0u8; 4 * (w * h) as usize];
                to_packed4(&frame, &l, &YuvMatrix::BT709, color, &mut out).unwrap();
                for y in 0..h as usize {
                    for x in 0..w as usize {
                        let [r, g, b] = pixel(&frame, &l, &YuvMatrix::BT709, x, y);
                        let want = match color {
                            ColorOrder::Rgb => [r, g, b, 255],
                            ColorOrder::Bgr => [b, g, r, 255],
                        };
                        let i = 4 * (y * w as usize + x);
                        assert_eq!(out[i..i + 4], want, "{format:?} {color:?} ({x}, {y})");
                    }
                }
            }
        }
    }

    #[test]
    fn short_buffers_are_refused_by_name() {
        let l = FrameLayout::packed(FrameFormat::Nv12, 8, 4);
        let mut out = vec![0u8; 4 * 32];
        let e = to_packed4(&[0; 40], &l, &YuvMatrix::BT601, ColorOrder::Rgb, &mut out).unwrap_err();
        assert!(
            e.to_string().contains("8x4 NV12") && e.to_string().contains("48 needed"),
            "{e}"
        );
        let e = to_packed4(
            &[0; 48],
            &l,
            &YuvMatrix::BT601,
            ColorOrder::Rgb,
            &mut out[..10],
        )
        .unwrap_err();
        assert!(e.to_string().contains("output"), "{e}");
    }
}
