//! Packed 8-bit BGR images and the resampling OCR needs: bilinear resize with OpenCV's
//! `INTER_LINEAR` geometry and fixed-point weights (the reference resizes that way), 90° and 180°
//! rotations.

/// A packed BGR image, 3 bytes a pixel, rows without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgrImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// The pixel layout of an [`ImageView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb,
    Bgr,
    /// RGBA or RGBx: the fourth byte is ignored.
    Rgba,
    /// BGRA or BGRx: the fourth byte is ignored.
    Bgra,
    /// One byte a pixel (grey).
    Gray,
}

impl PixelFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb | PixelFormat::Bgr => 3,
            PixelFormat::Rgba | PixelFormat::Bgra => 4,
            PixelFormat::Gray => 1,
        }
    }
}

/// A borrowed 8-bit image: `height` rows of `stride` bytes.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub format: PixelFormat,
    pub data: &'a [u8],
}

/// A rectangle of whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl ImageView<'_> {
    /// Checks that the sizes fit the data; a message saying what does not.
    pub fn check(&self) -> Result<(), String> {
        let bpp = self.format.bytes_per_pixel();
        if self.width == 0 || self.height == 0 {
            return Err(format!("empty image {}x{}", self.width, self.height));
        }
        if self.stride < self.width * bpp {
            return Err(format!(
                "stride {} is less than width {} x {bpp} bytes",
                self.stride, self.width
            ));
        }
        let need = self.stride * (self.height - 1) + self.width * bpp;
        if self.data.len() < need {
            return Err(format!(
                "{} bytes for a {}x{} image with stride {} (needs {need})",
                self.data.len(),
                self.width,
                self.height,
                self.stride
            ));
        }
        Ok(())
    }

    /// The part `rect` (clamped to the image) as a packed BGR image.
    pub fn to_bgr(&self, rect: Rect) -> BgrImage {
        let x0 = rect.x.min(self.width);
        let y0 = rect.y.min(self.height);
        let w = rect.width.min(self.width - x0);
        let h = rect.height.min(self.height - y0);
        let bpp = self.format.bytes_per_pixel();
        let mut data = vec![0u8; w * h * 3];
        if w > 0 {
            for (y, out) in (y0..y0 + h).zip(data.chunks_exact_mut(w * 3)) {
                let row = &self.data[y * self.stride + x0 * bpp..y * self.stride + (x0 + w) * bpp];
                let pixels = out.chunks_exact_mut(3).zip(row.chunks_exact(bpp));
                match self.format {
                    PixelFormat::Bgr => out.copy_from_slice(row),
                    PixelFormat::Bgra => pixels.for_each(|(o, p)| o.copy_from_slice(&p[..3])),
                    PixelFormat::Rgb | PixelFormat::Rgba => {
                        pixels.for_each(|(o, p)| o.copy_from_slice(&[p[2], p[1], p[0]]))
                    }
                    PixelFormat::Gray => pixels.for_each(|(o, p)| o.fill(p[0])),
                }
            }
        }
        BgrImage {
            width: w,
            height: h,
            data,
        }
    }
}

/// `(v/255 - 0.5)/0.5` of every byte value, computed as the per-pixel expression was (same bits).
fn normalize_table() -> &'static [f32; 256] {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|v| v as f32 / 255.0 / 0.5 - 1.0))
}

/// Fixed-point weight bits of OpenCV's linear resize.
const COEF_BITS: i32 = 11;
const COEF_ONE: f32 = (1 << COEF_BITS) as f32;

/// Source index and weights (fixed point) of each destination column or row, with OpenCV's
/// half-pixel geometry and clamping at the borders.
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, i32, i32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            f -= s as f32;
            if s < 0 {
                f = 0.0;
                s = 0;
            }
            if s >= src as i64 - 1 {
                f = 0.0;
                s = src as i64 - 1;
            }
            let a0 = ((1.0 - f) * COEF_ONE).round() as i32;
            let a1 = (f * COEF_ONE).round() as i32;
            (s as usize, a0, a1)
        })
        .collect()
}

impl BgrImage {
    pub fn new(width: usize, height: usize) -> Self {
        BgrImage {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Bilinear resize to `width` x `height` as OpenCV's `resize(INTER_LINEAR)` of 8-bit images:
    /// half-pixel centres, 11-bit weights, the vertical pass rounded as its vector code does.
    pub fn resize_linear(&self, width: usize, height: usize) -> BgrImage {
        if width == self.width && height == self.height {
            return self.clone();
        }
        let xs = linear_taps(self.width, width);
        let ys = linear_taps(self.height, height);
        let last_x = self.width - 1;
        let last_y = self.height - 1;
        // Horizontal pass of one source row into `out` (width * 3 ints).
        let hrow = |y: usize, out: &mut [i32]| {
            let row = &self.data[y * self.width * 3..(y + 1) * self.width * 3];
            for (dx, &(sx, a0, a1)) in xs.iter().enumerate() {
                let sx1 = (sx + 1).min(last_x);
                for c in 0..3 {
                    out[dx * 3 + c] = row[sx * 3 + c] as i32 * a0 + row[sx1 * 3 + c] as i32 * a1;
                }
            }
        };
        let mut out = BgrImage::new(width, height);
        let mut r0 = vec![0i32; width * 3];
        let mut r1 = vec![0i32; width * 3];
        let mut cached: (Option<usize>, Option<usize>) = (None, None);
        for (dy, &(sy, b0, b1)) in ys.iter().enumerate() {
            let sy1 = (sy + 1).min(last_y);
            if cached.0 != Some(sy) {
                if cached.1 == Some(sy) {
                    std::mem::swap(&mut r0, &mut r1);
                    cached.0 = Some(sy);
                    cached.1 = None;
                } else {
                    hrow(sy, &mut r0);
                    cached.0 = Some(sy);
                }
            }
            if cached.1 != Some(sy1) {
                hrow(sy1, &mut r1);
                cached.1 = Some(sy1);
            }
            let dst = &mut out.data[dy * width * 3..(dy + 1) * width * 3];
            for i in 0..width * 3 {
                let v = (((b0 * (r0[i] >> 4)) >> 16) + ((b1 * (r1[i] >> 4)) >> 16) + 2) >> 2;
                dst[i] = v.clamp(0, 255) as u8;
            }
        }
        out
    }

    /// Rotated by 90° counter-clockwise (numpy's `rot90`).
    pub fn rot90_ccw(&self) -> BgrImage {
        let (w, h) = (self.height, self.width);
        let mut out = BgrImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                // new[y][x] = old[x][W_old - 1 - y]
                let p = self.pixel(self.width - 1 - y, x);
                let i = (y * w + x) * 3;
                out.data[i..i + 3].copy_from_slice(&p);
            }
        }
        out
    }

    /// Rotated by 180°.
    pub fn rot180(&self) -> BgrImage {
        let mut out = BgrImage::new(self.width, self.height);
        let n = self.width * self.height;
        for i in 0..n {
            let j = n - 1 - i;
            out.data[j * 3..j * 3 + 3].copy_from_slice(&self.data[i * 3..i * 3 + 3]);
        }
        out
    }

    /// Normalised `(px/255 - 0.5)/0.5` planes (NCHW, channel order B, G, R) written into `dst`, a
    /// `3 x dst_h x dst_w` tensor already filled with the padding value; the image goes top-left.
    pub fn write_normalized(&self, dst: &mut [f32], dst_w: usize, dst_h: usize) {
        let lut = normalize_table();
        let plane = dst_w * dst_h;
        let w = self.width.min(dst_w);
        let (planes, _) = dst.split_at_mut(3 * plane);
        let (p0, rest) = planes.split_at_mut(plane);
        let (p1, p2) = rest.split_at_mut(plane);
        for y in 0..self.height.min(dst_h) {
            let src = &self.data[y * self.width * 3..(y * self.width + w) * 3];
            let o = y * dst_w;
            let rows = (&mut p0[o..o + w], &mut p1[o..o + w], &mut p2[o..o + w]);
            for (((px, b), g), r) in src
                .chunks_exact(3)
                .zip(rows.0.iter_mut())
                .zip(rows.1.iter_mut())
                .zip(rows.2.iter_mut())
            {
                *b = lut[px[0] as usize];
                *g = lut[px[1] as usize];
                *r = lut[px[2] as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> BgrImage {
        let mut img = BgrImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                img.data[i] = (x * 10) as u8;
                img.data[i + 1] = (y * 10) as u8;
                img.data[i + 2] = 7;
            }
        }
        img
    }

    #[test]
    fn resize_by_two_interpolates_half_pixels() {
        let img = gradient(4, 2);
        let up = img.resize_linear(8, 4);
        // Columns of the source at 0,10,20,30; destination x=1 samples source 0.25 -> 2.5 -> 3.
        let row: Vec<u8> = (0..8).map(|x| up.pixel(x, 0)[0]).collect();
        assert_eq!(row, vec![0, 3, 8, 13, 18, 23, 28, 30]);
        assert!((0..8).all(|x| up.pixel(x, 3)[2] == 7));
        // Same size: a copy.
        assert_eq!(img.resize_linear(4, 2), img);
    }

    #[test]
    fn rotations() {
        let img = gradient(3, 2);
        let r = img.rot90_ccw();
        assert_eq!((r.width, r.height), (2, 3));
        // The top row of the rotated image is the right column of the source.
        assert_eq!(r.pixel(0, 0), img.pixel(2, 0));
        assert_eq!(r.pixel(1, 0), img.pixel(2, 1));
        assert_eq!(r.pixel(0, 2), img.pixel(0, 0));
        let f = img.rot180();
        assert_eq!(f.pixel(0, 0), img.pixel(2, 1));
        assert_eq!(f.rot180(), img);
    }

    #[test]
    fn views_convert_to_bgr() {
        let data = [
            1u8, 2, 3, 0, 4, 5, 6, 0, 9, 9, 9, 9, 7, 8, 9, 0, 10, 11, 12, 0, 9, 9, 9, 9,
        ];
        let view = ImageView {
            width: 2,
            height: 2,
            stride: 12,
            format: PixelFormat::Rgba,
            data: &data,
        };
        view.check().unwrap();
        let bgr = view.to_bgr(Rect {
            x: 1,
            y: 0,
            width: 5,
            height: 5,
        });
        assert_eq!((bgr.width, bgr.height), (1, 2));
        assert_eq!(bgr.data, vec![6, 5, 4, 12, 11, 10]);
        let short = ImageView {
            data: &data[..10],
            ..view
        };
        assert!(short.check().is_err());
    }
}
