//! Privacy blur: smooths the pixels inside a box of a frame in place so that details (faces, plates)
//! are gone, before the overlay is drawn.
//!
//! The blur is three passes of a separable box filter (together close to a Gaussian with sigma about
//! the radius) that reads only pixels of the box itself (edges are repeated), so nothing outside the
//! box is changed and nothing outside leaks in. The default radius is a quarter of the box's longer
//! side (at least 2 pixels): eyes, mouth and edges of a face disappear and only its average colours
//! remain. Works on every [`PixelFormat`] of the [`Canvas`]; for I420/NV12 the chroma planes are
//! blurred over the box's chroma samples with half the radius.
//!
//! ```
//! use vigil_core::blur::blur_box;
//! use vigil_core::draw::{Canvas, PixelFormat};
//! use vigil_core::objects::BBox;
//!
//! let (w, h) = (32u32, 32u32);
//! // A black/white checkerboard in the Y plane of an I420 frame.
//! let mut y: Vec<u8> = (0..w * h).map(|i| if (i % w + i / w) % 2 == 0 { 0 } else { 255 }).collect();
//! let (mut u, mut v) = (vec![128u8; 256], vec![128u8; 256]);
//! let mut canvas = Canvas::new(PixelFormat::I420, w, h, [&mut y[..], &mut u[..], &mut v[..]], &[32, 16, 16]).unwrap();
//! blur_box(&mut canvas, &BBox::new(8.0, 8.0, 16.0, 16.0), None);
//! assert!((120..=135).contains(&y[16 * 32 + 16]));   // inside: grey
//! assert_eq!(y[0], 0);                               // outside: unchanged
//! ```

use crate::draw::{Canvas, PixelFormat};
use crate::objects::BBox;

/// Box-filter passes per axis.
const PASSES: usize = 3;

/// The radius [`blur_box`] uses for a `w` x `h` box by default: a quarter of the longer side, at
/// least 2 pixels.
pub fn default_radius(w: u32, h: u32) -> u32 {
    (w.max(h) / 4).max(2)
}

/// Blurs the pixels inside `bbox` (rounded outwards to whole pixels and clipped to the frame) with
/// `radius` (`None` = [`default_radius`] of the clipped box). Boxes outside the frame, empty or NaN
/// boxes change nothing.
pub fn blur_box(canvas: &mut Canvas<'_>, bbox: &BBox, radius: Option<u32>) {
    let (fw, fh) = (canvas.width() as f32, canvas.height() as f32);
    let x0 = bbox.x.floor().clamp(0.0, fw);
    let y0 = bbox.y.floor().clamp(0.0, fh);
    let x1 = bbox.x2().ceil().clamp(0.0, fw);
    let y1 = bbox.y2().ceil().clamp(0.0, fh);
    // NaN fails both comparisons.
    if !(x1 - x0 >= 2.0 && y1 - y0 >= 2.0) {
        return;
    }
    let (x0, y0, x1, y1) = (x0 as usize, y0 as usize, x1 as usize, y1 as usize);
    let r = radius
        .unwrap_or_else(|| default_radius((x1 - x0) as u32, (y1 - y0) as u32))
        .max(1) as usize;
    let format = canvas.format();
    let (planes, strides) = canvas.planes_mut();
    match format {
        PixelFormat::I420 | PixelFormat::Nv12 => {
            blur_plane(planes[0], strides[0], 1, (x0, y0, x1, y1), r);
            let chroma = (x0 / 2, y0 / 2, x1.div_ceil(2), y1.div_ceil(2));
            let rc = (r / 2).max(1);
            if format == PixelFormat::I420 {
                blur_plane(planes[1], strides[1], 1, chroma, rc);
                blur_plane(planes[2], strides[2], 1, chroma, rc);
            } else {
                blur_plane(planes[1], strides[1], 2, chroma, rc);
            }
        }
        packed => blur_plane(
            planes[0],
            strides[0],
            packed.bytes_per_pixel(),
            (x0, y0, x1, y1),
            r,
        ),
    }
}

/// Blurs `[x0, x1) x [y0, y1)` (in samples of `bpp` interleaved bytes; already inside the plane) of
/// one plane, every byte channel independently.
fn blur_plane(
    plane: &mut [u8],
    stride: usize,
    bpp: usize,
    (x0, y0, x1, y1): (usize, usize, usize, usize),
    radius: usize,
) {
    let (w, h) = (x1 - x0, y1 - y0);
    if w == 0 || h == 0 {
        return;
    }
    // The region, one channel after the other, as rows of `w` values.
    let mut buf = vec![0u32; w * h * bpp];
    let mut tmp = vec![0u32; w.max(h)];
    for c in 0..bpp {
        let chan = &mut buf[c * w * h..(c + 1) * w * h];
        for y in 0..h {
            let row = &plane[(y0 + y) * stride + x0 * bpp..];
            for x in 0..w {
                chan[y * w + x] = row[x * bpp + c] as u32;
            }
        }
        for _ in 0..PASSES {
            for y in 0..h {
                box_1d(&mut chan[y * w..(y + 1) * w], 1, w, radius, &mut tmp);
            }
            for x in 0..w {
                box_1d(&mut chan[x..], w, h, radius, &mut tmp);
            }
        }
        for y in 0..h {
            let row = &mut plane[(y0 + y) * stride + x0 * bpp..];
            for x in 0..w {
                row[x * bpp + c] = chan[y * w + x].min(255) as u8;
            }
        }
    }
}

/// One box-filter pass over `n` values `step` apart starting at `data[0]`, edges repeated; the mean
/// is rounded to the nearest integer.
fn box_1d(data: &mut [u32], step: usize, n: usize, radius: usize, tmp: &mut [u32]) {
    let r = radius as isize;
    let last = n as isize - 1;
    let at = |data: &[u32], i: isize| data[i.clamp(0, last) as usize * step];
    let width = 2 * radius as u32 + 1;
    let mut sum: u32 = (-r..=r).map(|i| at(data, i)).sum();
    for (i, t) in tmp.iter_mut().enumerate().take(n) {
        *t = (sum + width / 2) / width;
        let i = i as isize;
        sum = sum + at(data, i + r + 1) - at(data, i - r);
    }
    for (i, &t) in tmp.iter().enumerate().take(n) {
        data[i * step] = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean and variance of the given values.
    fn variance(v: &[f64]) -> f64 {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64
    }

    /// A noisy RGBA frame (deterministic pseudo-random values).
    fn noisy(w: u32, h: u32, bpp: usize) -> Vec<u8> {
        let mut s = 12345u32;
        (0..w as usize * h as usize * bpp)
            .map(|_| {
                s = s.wrapping_mul(1103515245).wrapping_add(12345);
                (s >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn blurs_inside_the_box_only_in_packed_formats() {
        let (w, h) = (64u32, 48u32);
        for format in [PixelFormat::Rgba, PixelFormat::Bgr, PixelFormat::Rgbx] {
            let bpp = format.bytes_per_pixel();
            let orig = noisy(w, h, bpp);
            let mut px = orig.clone();
            let stride = w as usize * bpp;
            let mut canvas = Canvas::packed(format, w, h, &mut px, stride).unwrap();
            blur_box(&mut canvas, &BBox::new(10.3, 8.0, 30.0, 20.5), None);
            let inside = |data: &[u8]| -> Vec<f64> {
                let mut v = Vec::new();
                for y in 8..29 {
                    for x in 10..41 {
                        v.push(data[y * stride + x * bpp] as f64);
                    }
                }
                v
            };
            let (before, after) = (variance(&inside(&orig)), variance(&inside(&px)));
            assert!(after < before * 0.02, "{format:?}: {before} -> {after}");
            // The mean colour stays (within rounding).
            let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
            assert!((mean(inside(&orig)) - mean(inside(&px))).abs() < 6.0);
            // Nothing outside [10, 41) x [8, 29) changed.
            for y in 0..h as usize {
                for x in 0..w as usize {
                    if !((10..41).contains(&x) && (8..29).contains(&y)) {
                        let i = y * stride + x * bpp;
                        assert_eq!(orig[i..i + bpp], px[i..i + bpp], "{format:?} at {x},{y}");
                    }
                }
            }
        }
    }

    #[test]
    fn blurs_luma_and_chroma_of_yuv_frames() {
        let (w, h) = (32u32, 32u32);
        let y_orig = noisy(w, h, 1);
        let uv_orig = noisy(w / 2, h / 2, 2);
        let box_ = BBox::new(4.0, 6.0, 20.0, 20.0);
        // NV12
        let (mut y, mut uv) = (y_orig.clone(), uv_orig.clone());
        let mut c = Canvas::new(
            PixelFormat::Nv12,
            w,
            h,
            [&mut y[..], &mut uv[..]],
            &[32, 32],
        )
        .unwrap();
        blur_box(&mut c, &box_, None);
        let region = |d: &[u8], stride: usize, bpp: usize, r: (usize, usize, usize, usize)| {
            let mut v = Vec::new();
            for yy in r.1..r.3 {
                for xx in r.0..r.2 {
                    v.push(d[yy * stride + xx * bpp] as f64);
                }
            }
            v
        };
        let luma = (4, 6, 24, 26);
        assert!(
            variance(&region(&y, 32, 1, luma)) < 0.05 * variance(&region(&y_orig, 32, 1, luma))
        );
        let chroma = (2, 3, 12, 13);
        for off in 0..2 {
            let a = variance(&region(&uv[off..], 32, 2, chroma));
            let b = variance(&region(&uv_orig[off..], 32, 2, chroma));
            assert!(a < 0.2 * b, "chroma {off}: {b} -> {a}");
        }
        assert_eq!(y[0..32], y_orig[0..32]);
        assert_eq!(uv[0..4], uv_orig[0..4]);
        // I420: the U plane is blurred too.
        let (mut y, mut u, mut v) = (y_orig.clone(), noisy(16, 16, 1), vec![128u8; 256]);
        let u_orig = u.clone();
        let mut c = Canvas::new(
            PixelFormat::I420,
            w,
            h,
            [&mut y[..], &mut u[..], &mut v[..]],
            &[32, 16, 16],
        )
        .unwrap();
        blur_box(&mut c, &box_, None);
        assert!(
            variance(&region(&u, 16, 1, chroma)) < 0.2 * variance(&region(&u_orig, 16, 1, chroma))
        );
        assert!(v.iter().all(|&x| x == 128));
    }

    #[test]
    fn degenerate_boxes_change_nothing() {
        let (w, h) = (16u32, 16u32);
        let orig = noisy(w, h, 4);
        let mut px = orig.clone();
        let mut c = Canvas::packed(PixelFormat::Rgba, w, h, &mut px, 64).unwrap();
        for b in [
            BBox::new(f32::NAN, 0.0, 4.0, 4.0),
            BBox::new(20.0, 20.0, 4.0, 4.0),
            BBox::new(-10.0, -10.0, 5.0, 5.0),
            BBox::new(3.0, 3.0, 0.5, 8.0),
            BBox::new(0.0, 0.0, f32::INFINITY, 4.0),
        ] {
            blur_box(&mut c, &b, None);
        }
        // The infinite box is clamped to the frame's width: rows 0..4 blurred, the rest unchanged.
        assert_eq!(px[4 * 64..], orig[4 * 64..]);
        // A radius larger than the box is fine (edges repeated): a uniform box stays uniform.
        let mut flat = vec![77u8; 16 * 16 * 3];
        let mut c = Canvas::packed(PixelFormat::Rgb, 16, 16, &mut flat, 48).unwrap();
        blur_box(&mut c, &BBox::new(2.0, 2.0, 5.0, 5.0), Some(50));
        assert!(flat.iter().all(|&x| x == 77));
        assert_eq!(default_radius(40, 60), 15);
        assert_eq!(default_radius(4, 3), 2);
    }
}
