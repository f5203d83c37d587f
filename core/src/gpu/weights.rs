//! Host side of the GPU pre-processing: the per-axis resize weights the kernels read, the input frame
//! formats, and [`reference`], a plain-Rust evaluation of exactly what a kernel computes (the same
//! weights, colour conversion and normalisation, in `f32`), which the GPU output is compared with.
//!
//! # The resize filter, and how it relates to the CPU path
//!
//! The CPU path ([`crate::preprocess::Preprocessor`]) resizes with `fast_image_resize`'s
//! `Convolution(Bilinear)`: Pillow's separable triangle filter whose support grows with the
//! shrinking factor (anti-aliased), placed with [`Placement`] (stretch or letterbox). The weights
//! here are that filter, computed as Pillow computes them (`center = (i + 0.5) * scale`, support
//! `max(scale, 1)`, taps clamped to the image and normalised to sum 1), so the GPU samples the same
//! source pixels with the same weights. Two differences remain, both of rounding:
//!
//! - the CPU evaluates the weights in fixed point and rounds the resized image to 8 bits (twice: after
//!   each pass); the GPU keeps `f32` throughout. The difference is at most about one 8-bit level, i.e.
//!   `scale / std` in tensor units (0.017 for NanoDet's std of ~58; on average 0.28 of a level) — the tests measure it against the
//!   CPU path on a real frame;
//! - for YUV input the CPU converts with `gst_video::VideoConverter` (upstream of `vigilinfer`), the GPU
//!   with [`YuvMatrix`] per sample, chroma taken from the 2x2 block's sample (nearest).
//!
//! So the GPU output matches [`reference`] within 1e-3 (float rounding only), and the CPU path within
//! about one 8-bit level.

use crate::preprocess::{ColorOrder, Placement, PreprocessSpec};

/// Pixel layout of the frames given to the GPU pre-processor.
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
    pub(crate) fn family(self) -> usize {
        match self {
            FrameFormat::Rgba | FrameFormat::Bgra => 0,
            FrameFormat::Rgb | FrameFormat::Bgr => 1,
            FrameFormat::Nv12 => 2,
            FrameFormat::I420 => 3,
        }
    }

    /// Byte index of red and blue in a packed pixel (unused for YUV).
    pub(crate) fn red_blue(self) -> (usize, usize) {
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

/// YUV → RGB: `rgb = m · (Y - y_offset, U - 128, V - 128)`, rounded and clamped to 0..255 (as an
/// 8-bit converter's output).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuvMatrix {
    pub m: [f32; 9],
    pub y_offset: f32,
}

impl YuvMatrix {
    /// ITU-R BT.601, limited range (GStreamer's default for SD video).
    pub const BT601: YuvMatrix = YuvMatrix {
        m: [
            1.164_383, 0.0, 1.596_027, //
            1.164_383, -0.391_762, -0.812_968, //
            1.164_383, 2.017_232, 0.0,
        ],
        y_offset: 16.0,
    };
    /// ITU-R BT.709, limited range (GStreamer's default for HD video).
    pub const BT709: YuvMatrix = YuvMatrix {
        m: [
            1.164_383, 0.0, 1.792_741, //
            1.164_383, -0.213_249, -0.532_909, //
            1.164_383, 2.112_402, 0.0,
        ],
        y_offset: 16.0,
    };

    /// The matrix GStreamer assumes for a frame of this height when caps name none.
    pub fn default_for(height: u32) -> YuvMatrix {
        if height > 576 {
            YuvMatrix::BT709
        } else {
            YuvMatrix::BT601
        }
    }

    pub(crate) fn rgb(&self, y: u8, u: u8, v: u8) -> [f32; 3] {
        let (y, u, v) = (y as f32 - self.y_offset, u as f32 - 128.0, v as f32 - 128.0);
        let m = &self.m;
        let c = |r: usize| (m[3 * r] * y + m[3 * r + 1] * u + m[3 * r + 2] * v).round();
        [
            c(0).clamp(0.0, 255.0),
            c(1).clamp(0.0, 255.0),
            c(2).clamp(0.0, 255.0),
        ]
    }
}

/// One axis of the resize: for each destination pixel of the placed image, the first source pixel
/// and `taps` weights (zero-padded), as the kernels read them.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisWeights {
    pub taps: usize,
    pub start: Vec<i32>,
    /// `start.len() * taps` weights.
    pub weights: Vec<f32>,
}

impl AxisWeights {
    /// Pillow's bilinear (triangle) convolution weights from `src` pixels to `dst` pixels.
    pub fn bilinear(src: u32, dst: u32) -> AxisWeights {
        let (src, dst) = (src.max(1) as f64, dst.max(1));
        let scale = src / dst as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // the triangle filter's support is 1
        let taps = (support.ceil() as usize) * 2 + 1;
        let mut start = Vec::with_capacity(dst as usize);
        let mut weights = vec![0f32; dst as usize * taps];
        for i in 0..dst as usize {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5).floor()).max(0.0) as i64;
            let xmax = ((center + support + 0.5).floor()).min(src) as i64;
            let n = (xmax - xmin).max(0) as usize;
            let mut w: Vec<f64> = (0..n)
                .map(|k| {
                    let t = ((k as i64 + xmin) as f64 - center + 0.5) / filterscale;
                    (1.0 - t.abs()).max(0.0)
                })
                .collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|x| *x /= sum);
            }
            assert!(n <= taps, "bilinear weights: {n} taps > {taps}");
            for (k, x) in w.into_iter().enumerate() {
                weights[i * taps + k] = x as f32;
            }
            start.push(xmin as i32);
        }
        AxisWeights {
            taps,
            start,
            weights,
        }
    }
}

/// Everything the kernels need besides the pixels: placement and the two axes.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub placement: Placement,
    pub x: AxisWeights,
    pub y: AxisWeights,
}

impl Geometry {
    pub fn new(spec: &PreprocessSpec, src_w: u32, src_h: u32) -> Geometry {
        let placement = Placement::new(src_w, src_h, spec.width, spec.height, spec.resize);
        Geometry {
            x: AxisWeights::bilinear(src_w, placement.w),
            y: AxisWeights::bilinear(src_h, placement.h),
            placement,
        }
    }
}

/// The RGB value (0..255) of source pixel (`x`, `y`) of `frame`.
pub(crate) fn fetch(frame: &[u8], l: &FrameLayout, m: &YuvMatrix, x: usize, y: usize) -> [f32; 3] {
    match l.format.family() {
        0 | 1 => {
            let bpp = if l.format.family() == 0 { 4 } else { 3 };
            let p = &frame[y * l.stride + x * bpp..];
            let (r, b) = l.format.red_blue();
            [p[r] as f32, p[1] as f32, p[b] as f32]
        }
        2 => {
            let yy = frame[y * l.stride + x];
            let c = l.u_offset + (y / 2) * l.stride_uv + (x / 2) * 2;
            m.rgb(yy, frame[c], frame[c + 1])
        }
        _ => {
            let yy = frame[y * l.stride + x];
            let c = (y / 2) * l.stride_uv + x / 2;
            m.rgb(yy, frame[l.u_offset + c], frame[l.v_offset + c])
        }
    }
}

/// What the kernel computes for `frames` (each `l.frame_bytes` long, all with layout `l`), in `f32`
/// (FP16 output is this rounded to half precision): the batch tensor in `spec.layout`.
pub fn reference(
    spec: &PreprocessSpec,
    l: &FrameLayout,
    m: &YuvMatrix,
    frames: &[&[u8]],
) -> Vec<f32> {
    let g = Geometry::new(spec, l.width, l.height);
    let (w, h) = (spec.width as usize, spec.height as usize);
    let p = g.placement;
    let a: [f32; 3] = std::array::from_fn(|c| spec.scale / spec.std[c]);
    let b: [f32; 3] = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
    let mut out = vec![0f32; frames.len() * 3 * w * h];
    for (n, frame) in frames.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                let inside = x >= p.x as usize
                    && x < (p.x + p.w) as usize
                    && y >= p.y as usize
                    && y < (p.y + p.h) as usize;
                let rgb = if inside {
                    let (ox, oy) = (x - p.x as usize, y - p.y as usize);
                    let mut acc = [0f32; 3];
                    for j in 0..g.y.taps {
                        let wy = g.y.weights[oy * g.y.taps + j];
                        if wy == 0.0 {
                            continue;
                        }
                        let sy = g.y.start[oy] as usize + j;
                        let mut row = [0f32; 3];
                        for i in 0..g.x.taps {
                            let wx = g.x.weights[ox * g.x.taps + i];
                            if wx == 0.0 {
                                continue;
                            }
                            let px = fetch(frame, l, m, g.x.start[ox] as usize + i, sy);
                            for c in 0..3 {
                                row[c] += wx * px[c];
                            }
                        }
                        for c in 0..3 {
                            acc[c] += wy * row[c];
                        }
                    }
                    acc
                } else {
                    [spec.pad_value as f32; 3]
                };
                let model = match spec.color {
                    ColorOrder::Rgb => rgb,
                    ColorOrder::Bgr => [rgb[2], rgb[1], rgb[0]],
                };
                for c in 0..3 {
                    let v = model[c] * a[c] + b[c];
                    let i = match spec.layout {
                        crate::preprocess::Layout::Nchw => ((n * 3 + c) * h + y) * w + x,
                        crate::preprocess::Layout::Nhwc => ((n * h + y) * w + x) * 3 + c,
                    };
                    out[i] = v;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::{Layout, Preprocessor, ResizeMode};

    fn spec(resize: ResizeMode, color: ColorOrder, layout: Layout) -> PreprocessSpec {
        PreprocessSpec {
            width: 96,
            height: 64,
            color,
            layout,
            resize,
            mean: [103.53, 116.28, 123.675],
            std: [57.375, 57.12, 58.395],
            scale: 1.0,
            pad_value: 114,
        }
    }

    /// A smooth test picture with edges (a gradient and a bright rectangle), RGBA.
    fn picture(w: u32, h: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((4 * w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                let inside = (w / 4..w / 2).contains(&x) && (h / 3..2 * h / 3).contains(&y);
                let r = if inside { 250 } else { (x * 255 / w) as u8 };
                v.extend_from_slice(&[r, (y * 255 / h) as u8, ((x + y) % 256) as u8, 255]);
            }
        }
        v
    }

    #[test]
    fn weights_sum_to_one_and_stay_inside_the_source() {
        for (src, dst) in [
            (1920, 416),
            (768, 416),
            (100, 416),
            (416, 416),
            (7, 3),
            (3, 7),
        ] {
            let a = AxisWeights::bilinear(src, dst);
            assert_eq!(a.start.len(), dst as usize);
            for i in 0..dst as usize {
                let w = &a.weights[i * a.taps..(i + 1) * a.taps];
                let sum: f32 = w.iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-5,
                    "{src}->{dst} pixel {i}: sum {sum}"
                );
                let last = w.iter().rposition(|x| *x != 0.0).unwrap();
                assert!(a.start[i] >= 0 && a.start[i] as usize + last < src as usize);
            }
        }
        // Same size: the identity.
        let a = AxisWeights::bilinear(5, 5);
        for i in 0..5 {
            assert_eq!(a.start[i] as usize, i);
            assert_eq!(a.weights[i * a.taps], 1.0);
        }
    }

    #[test]
    fn letterbox_geometry_is_the_cpu_placement() {
        let s = spec(ResizeMode::Letterbox, ColorOrder::Rgb, Layout::Nchw);
        let g = Geometry::new(&s, 1920, 1080);
        assert_eq!(
            g.placement,
            Placement::new(1920, 1080, 96, 64, ResizeMode::Letterbox)
        );
        assert_eq!(
            (g.placement.x, g.placement.y, g.placement.w, g.placement.h),
            (0, 5, 96, 54)
        );
        assert_eq!(g.x.start.len(), 96);
        assert_eq!(g.y.start.len(), 54);
    }

    /// The kernels' algorithm (this reference) against the CPU path on the same RGBA frame, for
    /// stretch and letterbox, both colour orders and layouts: identical placement and padding, and
    /// values within one 8-bit level (the CPU rounds its resized image to 8 bits; see the module docs).
    #[test]
    fn reference_matches_the_cpu_path_within_one_level() {
        let (w, h) = (333, 201);
        let rgba = picture(w, h);
        for resize in [ResizeMode::Stretch, ResizeMode::Letterbox] {
            for color in [ColorOrder::Rgb, ColorOrder::Bgr] {
                for layout in [Layout::Nchw, Layout::Nhwc] {
                    let s = spec(resize, color, layout);
                    // The CPU path takes pixels already in the model's colour order.
                    let input: Vec<u8> = match color {
                        ColorOrder::Rgb => rgba.clone(),
                        ColorOrder::Bgr => rgba
                            .chunks_exact(4)
                            .flat_map(|p| [p[2], p[1], p[0], p[3]])
                            .collect(),
                    };
                    let mut cpu = vec![0f32; s.tensor_len()];
                    Preprocessor::new(s.clone())
                        .run(&input, w, h, &mut cpu)
                        .unwrap();
                    let l = FrameLayout::packed(FrameFormat::Rgba, w, h);
                    let gpu = reference(&s, &l, &YuvMatrix::BT601, &[&rgba]);
                    let level = s.scale / s.std.iter().cloned().fold(f32::MAX, f32::min);
                    let (mut worst, mut sum) = (0f32, 0f64);
                    for (a, b) in cpu.iter().zip(&gpu) {
                        worst = worst.max((a - b).abs());
                        sum += f64::from((a - b).abs());
                    }
                    let mean = sum / cpu.len() as f64;
                    eprintln!(
                        "{resize:?} {color:?} {layout:?}: max |cpu - gpu reference| {worst:.5} \
                         ({:.2} levels), mean {mean:.6}",
                        worst / level
                    );
                    assert!(
                        worst <= 1.01 * level,
                        "{resize:?} {color:?} {layout:?}: {worst}"
                    );
                    assert!(mean < 0.35 * f64::from(level), "{resize:?}: mean {mean}");
                }
            }
        }
    }

    #[test]
    fn yuv_layouts_and_conversion() {
        let l = FrameLayout::packed(FrameFormat::I420, 5, 3);
        assert_eq!(
            (l.stride, l.stride_uv, l.u_offset, l.v_offset, l.frame_bytes),
            (5, 3, 15, 21, 27)
        );
        let l = FrameLayout::packed(FrameFormat::Nv12, 4, 2);
        assert_eq!((l.stride_uv, l.u_offset, l.frame_bytes), (4, 8, 12));
        // Limited-range white, black and grey.
        assert_eq!(YuvMatrix::BT601.rgb(235, 128, 128), [255.0; 3]);
        assert_eq!(YuvMatrix::BT601.rgb(16, 128, 128), [0.0; 3]);
        assert_eq!(YuvMatrix::BT709.rgb(126, 128, 128), [128.0; 3]);
        // Pure red in BT.601: Y 81, U 90, V 240.
        let r = YuvMatrix::BT601.rgb(81, 90, 240);
        assert!(r[0] >= 254.0 && r[1] <= 1.0 && r[2] <= 1.0, "{r:?}");
    }
}
