//! Host side of the GPU pre-processing: the per-axis resize weights the kernels read, and
//! [`reference`], a plain-Rust evaluation of exactly what a kernel computes, which the GPU output is
//! compared with.
//!
//! # The same result as the CPU path, bit for bit
//!
//! The CPU path converts a frame to packed 8-bit RGB ([`crate::frame::to_packed4`]), resizes it with
//! `fast_image_resize`'s `Convolution(Bilinear)` ([`crate::preprocess::Preprocessor`]) and maps each
//! 8-bit value to `v * scale / std - mean / std` in `f32`. The kernels compute the same thing in the
//! same integer arithmetic, so their tensor equals the CPU path's up to the last float rounding of
//! that final affine map (FP32: within 1e-6; FP16: half-precision rounding):
//!
//! - YUV samples are converted with the fixed-point [`YuvMatrix`] of [`crate::frame`] (integers);
//! - the resize is Pillow's separable triangle filter (support `max(scale, 1)`, taps clamped to the
//!   image, weights normalised to sum 1), quantised as the resizer quantises it: per axis, weights
//!   scaled by `2^precision` and rounded to 16-bit integers, `precision` the largest (below 22) that
//!   keeps twice the largest weight under 2^15;
//! - the vertical pass runs first, on 8-bit source pixels; its result is rounded (`+ 2^(p-1)`, shift
//!   right by `p`) and clamped to 8 bits, then the horizontal pass does the same on those values —
//!   the order and the two roundings of the resizer for 8-bit pixels;
//! - placement and letterbox padding are [`Placement`]'s.
//!
//! The tests below check [`reference`] against the CPU path for every frame format: equal values.

use crate::frame::pixel;
pub use crate::frame::{FrameFormat, FrameLayout, YuvMatrix};
use crate::preprocess::{ColorOrder, Placement, PreprocessSpec};

/// One axis of the resize: for each destination pixel of the placed image, the first source pixel
/// and `taps` fixed-point weights (zero-padded), as the kernels read them.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisWeights {
    pub taps: usize,
    pub start: Vec<i32>,
    /// `start.len() * taps` weights in units of `2^-precision` (16-bit values).
    pub weights: Vec<i32>,
    /// Fraction bits of the weights.
    pub precision: u32,
}

/// Largest fraction bits of a weight: the 8-bit value times the weights' sum needs two more bits and
/// the sign one, in 32 bits.
const MAX_PRECISION: u32 = 32 - 8 - 2;

impl AxisWeights {
    /// The bilinear (triangle) convolution weights from `src` pixels to `dst` pixels, as the CPU
    /// path's resizer computes and quantises them (see the module docs).
    pub fn bilinear(src: u32, dst: u32) -> AxisWeights {
        let (src, dst) = (src.max(1), dst.max(1));
        let scale = f64::from(src) / f64::from(dst);
        let filter_scale = scale.max(1.0);
        let radius = filter_scale; // the triangle's support is 1
        let taps = radius.ceil() as usize * 2 + 1;
        let recip = 1.0 / filter_scale;
        let mut start = Vec::with_capacity(dst as usize);
        let mut real = vec![0f64; dst as usize * taps];
        for i in 0..dst as usize {
            let in_center = (i as f64 + 0.5) * scale;
            let lo = (in_center - radius).floor().max(0.0) as u32;
            let hi = (in_center + radius).ceil().min(f64::from(src)) as u32;
            let center = in_center - 0.5;
            let mut first = lo;
            let mut w = Vec::with_capacity(taps);
            let mut sum = 0f64;
            for x in lo..hi {
                let t = ((f64::from(x) - center) * recip).abs();
                let v = if t < 1.0 { 1.0 - t } else { 0.0 };
                if x == first && v == 0.0 {
                    first += 1; // leading zero weights are skipped
                } else {
                    w.push(v);
                    sum += v;
                }
            }
            assert!(
                w.len() <= taps,
                "bilinear weights: {} taps > {taps}",
                w.len()
            );
            if sum != 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            real[i * taps..i * taps + w.len()].copy_from_slice(&w);
            start.push(first as i32);
        }
        let max = real.iter().cloned().fold(0f64, f64::max);
        let mut precision = 0;
        for p in 0..MAX_PRECISION {
            precision = p;
            if (max * f64::from(1u32 << (p + 1))).round() as i64 >= 1 << 15 {
                break;
            }
        }
        let unit = f64::from(1u32 << precision);
        AxisWeights {
            taps,
            start,
            weights: real.iter().map(|v| (v * unit).round() as i32).collect(),
            precision,
        }
    }

    /// One pass over `taps` values: the weighted sum rounded and clamped to 8 bits.
    #[inline]
    pub fn apply(&self, i: usize, value: impl Fn(usize) -> [u8; 3]) -> [u8; 3] {
        let mut acc = [1i32 << (self.precision - 1); 3];
        let w = &self.weights[i * self.taps..(i + 1) * self.taps];
        for (k, &wk) in w.iter().enumerate() {
            if wk == 0 {
                continue;
            }
            let v = value(self.start[i] as usize + k);
            for c in 0..3 {
                acc[c] += wk * i32::from(v[c]);
            }
        }
        acc.map(|a| (a >> self.precision).clamp(0, 255) as u8)
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
                    // Horizontal pass over the vertical pass's 8-bit results.
                    g.x.apply(ox, |sx| g.y.apply(oy, |sy| pixel(frame, l, m, sx, sy)))
                } else {
                    [spec.pad_value; 3]
                };
                let model = match spec.color {
                    ColorOrder::Rgb => rgb,
                    ColorOrder::Bgr => [rgb[2], rgb[1], rgb[0]],
                };
                for c in 0..3 {
                    let v = f32::from(model[c]) * a[c] + b[c];
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
            assert!(
                (10..=MAX_PRECISION).contains(&a.precision),
                "{}",
                a.precision
            );
            let one = 1i64 << a.precision;
            for i in 0..dst as usize {
                let w = &a.weights[i * a.taps..(i + 1) * a.taps];
                let sum: i64 = w.iter().map(|&v| i64::from(v)).sum();
                // Each weight is rounded on its own: the sum is off by at most half a unit each.
                assert!(
                    (sum - one).abs() <= a.taps as i64,
                    "{src}->{dst} pixel {i}: sum {sum} of {one}"
                );
                assert!(w.iter().all(|&v| (0..1 << 15).contains(&v)));
                let last = w.iter().rposition(|x| *x != 0).unwrap();
                assert!(a.start[i] >= 0 && a.start[i] as usize + last < src as usize);
            }
        }
        // Same size: the identity.
        let a = AxisWeights::bilinear(5, 5);
        for i in 0..5 {
            assert_eq!(a.start[i] as usize, i);
            assert_eq!(a.weights[i * a.taps], 1 << a.precision);
            assert_eq!(
                a.apply(i, |x| [x as u8 * 50, 7, 255]),
                [i as u8 * 50, 7, 255]
            );
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

    /// A frame of `format` whose content is `picture`'s (YUV: its channels read as Y, U, V).
    fn frame(format: FrameFormat, w: u32, h: u32) -> (FrameLayout, Vec<u8>) {
        let rgba = picture(w, h);
        let l = FrameLayout::packed(format, w, h);
        let mut f = vec![0u8; l.frame_bytes];
        let at = |x: usize, y: usize, c: usize| rgba[4 * (y * w as usize + x) + c];
        for y in 0..h as usize {
            for x in 0..w as usize {
                match format {
                    FrameFormat::Rgba | FrameFormat::Bgra | FrameFormat::Rgb | FrameFormat::Bgr => {
                        let bpp = if format.family() == 0 { 4 } else { 3 };
                        let (r, b) = format.red_blue();
                        let o = y * l.stride + x * bpp;
                        f[o + r] = at(x, y, 0);
                        f[o + 1] = at(x, y, 1);
                        f[o + b] = at(x, y, 2);
                        if bpp == 4 {
                            f[o + 3] = 255;
                        }
                    }
                    FrameFormat::Nv12 | FrameFormat::I420 => {
                        f[y * l.stride + x] = at(x, y, 0);
                        if x % 2 == 0 && y % 2 == 0 {
                            let c = (y / 2) * l.stride_uv;
                            let (u, v) = (at(x, y, 1), at(x, y, 2));
                            if format == FrameFormat::Nv12 {
                                f[l.u_offset + c + x] = u;
                                f[l.u_offset + c + x + 1] = v;
                            } else {
                                f[l.u_offset + c + x / 2] = u;
                                f[l.v_offset + c + x / 2] = v;
                            }
                        }
                    }
                }
            }
        }
        (l, f)
    }

    /// Acceptance 1 of the GPU path, on the host: the kernels' algorithm ([`reference`]) gives the
    /// CPU path's tensor ([`crate::frame::to_packed4`] + [`Preprocessor`]) for every frame format,
    /// stretch and letterbox (shrinking and enlarging), both colour orders and layouts: equal values.
    #[test]
    fn reference_is_the_cpu_path_for_every_format() {
        for (w, h) in [(333, 201), (50, 41)] {
            for format in FrameFormat::ALL {
                let (l, f) = frame(format, w, h);
                let m = YuvMatrix::default_for(h);
                for resize in [ResizeMode::Stretch, ResizeMode::Letterbox] {
                    for color in [ColorOrder::Rgb, ColorOrder::Bgr] {
                        for layout in [Layout::Nchw, Layout::Nhwc] {
                            let s = spec(resize, color, layout);
                            let mut packed = vec![0u8; (4 * w * h) as usize];
                            crate::frame::to_packed4(&f, &l, &m, color, &mut packed).unwrap();
                            let mut cpu = vec![0f32; s.tensor_len()];
                            Preprocessor::new(s.clone())
                                .run(&packed, w, h, &mut cpu)
                                .unwrap();
                            let gpu = reference(&s, &l, &m, &[&f]);
                            let worst = cpu
                                .iter()
                                .zip(&gpu)
                                .map(|(a, b)| (a - b).abs())
                                .fold(0f32, f32::max);
                            assert!(
                                worst == 0.0,
                                "{w}x{h} {format:?} {resize:?} {color:?} {layout:?}: \
                                 max |cpu - reference| {worst}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The same on a real photograph (shrinking 810x1080 to NanoDet's 416x416), when the sample is
    /// present.
    #[test]
    fn reference_is_the_cpu_path_on_a_real_frame() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/media/bus.jpg");
        let Ok(img) = image::open(&path) else {
            eprintln!("skipped: {} is not there", path.display());
            return;
        };
        let rgba = img.to_rgba8();
        let (w, h) = rgba.dimensions();
        let l = FrameLayout::packed(FrameFormat::Rgba, w, h);
        let mut s = spec(ResizeMode::Stretch, ColorOrder::Bgr, Layout::Nchw);
        (s.width, s.height) = (416, 416);
        let mut packed = vec![0u8; (4 * w * h) as usize];
        let m = YuvMatrix::BT601;
        crate::frame::to_packed4(rgba.as_raw(), &l, &m, s.color, &mut packed).unwrap();
        let mut cpu = vec![0f32; s.tensor_len()];
        Preprocessor::new(s.clone())
            .run(&packed, w, h, &mut cpu)
            .unwrap();
        assert_eq!(cpu, reference(&s, &l, &m, &[rgba.as_raw()]));
    }
}
