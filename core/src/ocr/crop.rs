//! The crop of a text quadrilateral: a perspective warp of the quad onto an upright rectangle
//! (bicubic sampling, borders replicated, as the reference's `warpPerspective(INTER_CUBIC)`), turned
//! 90° counter-clockwise when it is at least 1.5 times taller than wide.

use super::det::Quad;
use super::image::BgrImage;

/// OpenCV's bicubic weights (A = -0.75) of the taps at -1, 0, 1, 2 for the fraction `t`.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let w0 = ((A * (t + 1.0) - 5.0 * A) * (t + 1.0) + 8.0 * A) * (t + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let w2 = ((A + 2.0) * (1.0 - t) - (A + 3.0)) * (1.0 - t) * (1.0 - t) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2]
}

/// Fractions of a pixel the warp resolves (OpenCV's `INTER_TAB_SIZE`).
const TAB: f64 = 32.0;

/// The upright crop of `quad` (top-left, top-right, bottom-right, bottom-left) from `img`: width
/// the longer of the top and bottom edges, height the longer of the side edges (whole pixels).
/// `None` when the quad is degenerate (under one pixel in a direction).
pub fn crop_quad(img: &BgrImage, quad: &Quad) -> Option<BgrImage> {
    let dist = |a: [f64; 2], b: [f64; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let w = dist(quad[0], quad[1]).max(dist(quad[2], quad[3])) as usize;
    let h = dist(quad[0], quad[3]).max(dist(quad[1], quad[2])) as usize;
    if w == 0 || h == 0 {
        return None;
    }
    let (wf, hf) = (w as f64, h as f64);
    let rect = [[0.0, 0.0], [wf, 0.0], [wf, hf], [0.0, hf]];
    // Destination pixel -> source point.
    let m = crate::homography::solve(&rect, quad)?;
    let mut out = BgrImage::new(w, h);
    let (sw, sh) = (img.width as i64, img.height as i64);
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            let d = m[6] * xf + m[7] * yf + m[8];
            let d = if d != 0.0 { TAB / d } else { 0.0 };
            let fx = ((m[0] * xf + m[1] * yf + m[2]) * d).round() as i64;
            let fy = ((m[3] * xf + m[4] * yf + m[5]) * d).round() as i64;
            let (ix, iy) = (fx.div_euclid(32), fy.div_euclid(32));
            let wx = cubic_weights(fx.rem_euclid(32) as f32 / TAB as f32);
            let wy = cubic_weights(fy.rem_euclid(32) as f32 / TAB as f32);
            let mut acc = [0f32; 3];
            for (j, wyj) in wy.iter().enumerate() {
                let sy = (iy + j as i64 - 1).clamp(0, sh - 1) as usize;
                for (i, wxi) in wx.iter().enumerate() {
                    let sx = (ix + i as i64 - 1).clamp(0, sw - 1) as usize;
                    let p = img.pixel(sx, sy);
                    let k = wyj * wxi;
                    for c in 0..3 {
                        acc[c] += k * p[c] as f32;
                    }
                }
            }
            let o = (y * w + x) * 3;
            for (dst, v) in out.data[o..o + 3].iter_mut().zip(acc) {
                *dst = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    if h as f64 / w as f64 >= 1.5 {
        out = out.rot90_ccw();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: usize, h: usize) -> BgrImage {
        let mut img = BgrImage::new(w, h);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = ((i * 37) % 251) as u8;
        }
        img
    }

    #[test]
    fn an_axis_aligned_quad_is_copied_exactly() {
        let img = pattern(50, 30);
        let q = [[5.0, 7.0], [25.0, 7.0], [25.0, 17.0], [5.0, 17.0]];
        let c = crop_quad(&img, &q).unwrap();
        assert_eq!((c.width, c.height), (20, 10));
        for y in 0..10 {
            for x in 0..20 {
                assert_eq!(c.pixel(x, y), img.pixel(x + 5, y + 7), "({x},{y})");
            }
        }
    }

    #[test]
    fn tall_crops_are_turned_and_degenerate_quads_refused() {
        let img = pattern(50, 50);
        let q = [[5.0, 5.0], [15.0, 5.0], [15.0, 35.0], [5.0, 35.0]];
        let c = crop_quad(&img, &q).unwrap();
        assert_eq!((c.width, c.height), (30, 10));
        // Turned counter-clockwise: the top-left of the crop is the source's top-right.
        assert_eq!(c.pixel(0, 0), img.pixel(14, 5));
        let flat = [[5.0, 5.0], [15.0, 5.0], [15.0, 5.0], [5.0, 5.0]];
        assert!(crop_quad(&img, &flat).is_none());
    }

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate() {
        for t in [0.0f32, 0.25, 0.5, 0.9] {
            let w = cubic_weights(t);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }
}
