//! Pre-processing: the geometry of fitting a frame into a model input (stretch or letterbox) and the
//! normalisation of packed 8-bit RGB/BGR pixels into the model's float tensor (NCHW or NHWC).
//!
//! Scaling and colour conversion themselves are done by an optimised converter before this step
//! (`gst_video::VideoConverter` in `vigilinfer`); this module only does the per-channel affine map
//! `(px * scale - mean) / std` and the layout change, written so the compiler vectorises it.

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// Tensor layout of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// How a frame is fitted into the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// Scale both axes independently to the input size.
    Stretch,
    /// Keep the aspect ratio, centre, and pad the rest.
    Letterbox,
}

/// Everything needed to turn a frame into the model's input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessSpec {
    pub width: u32,
    pub height: u32,
    pub color: ColorOrder,
    pub layout: Layout,
    pub resize: ResizeMode,
    /// Per channel, in the model's channel order.
    pub mean: [f32; 3],
    /// Per channel, in the model's channel order.
    pub std: [f32; 3],
    /// Applied to the 0..255 pixel value before mean/std.
    pub scale: f32,
    /// Letterbox padding value (0..255, all channels).
    pub pad_value: u8,
}

impl PreprocessSpec {
    /// Number of f32 values of one image.
    pub fn tensor_len(&self) -> usize {
        3 * self.width as usize * self.height as usize
    }

    /// Shape of a batch of `n` images.
    pub fn batch_shape(&self, n: usize) -> [i64; 4] {
        let (w, h) = (self.width as i64, self.height as i64);
        match self.layout {
            Layout::Nchw => [n as i64, 3, h, w],
            Layout::Nhwc => [n as i64, h, w, 3],
        }
    }
}

/// Where a frame lands inside the model input, and how to map boxes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Destination rectangle in model-input pixels.
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// Model-input pixels per frame pixel, per axis.
    pub scale_x: f32,
    pub scale_y: f32,
}

impl Placement {
    /// Computes the placement of a `src_w` x `src_h` frame in a `dst_w` x `dst_h` input.
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, mode: ResizeMode) -> Placement {
        let (src_w, src_h) = (src_w.max(1), src_h.max(1));
        match mode {
            ResizeMode::Stretch => Placement {
                x: 0,
                y: 0,
                w: dst_w,
                h: dst_h,
                scale_x: dst_w as f32 / src_w as f32,
                scale_y: dst_h as f32 / src_h as f32,
            },
            ResizeMode::Letterbox => {
                let s = (dst_w as f32 / src_w as f32).min(dst_h as f32 / src_h as f32);
                let w = ((src_w as f32 * s).round() as u32).clamp(1, dst_w);
                let h = ((src_h as f32 * s).round() as u32).clamp(1, dst_h);
                Placement {
                    x: (dst_w - w) / 2,
                    y: (dst_h - h) / 2,
                    w,
                    h,
                    scale_x: w as f32 / src_w as f32,
                    scale_y: h as f32 / src_h as f32,
                }
            }
        }
    }

    /// Maps a rectangle `[x, y, w, h]` in model-input pixels to frame pixels.
    pub fn to_frame(&self, [x, y, w, h]: [f32; 4]) -> [f32; 4] {
        [
            (x - self.x as f32) / self.scale_x,
            (y - self.y as f32) / self.scale_y,
            w / self.scale_x,
            h / self.scale_y,
        ]
    }
}

/// A rectangle of whole frame pixels (an object's crop for secondary inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Region {
    /// Maps a rectangle `[x, y, w, h]` in model-input pixels of a crop pre-processed with
    /// `placement` to frame pixels.
    pub fn to_frame(&self, placement: &Placement, rect: [f32; 4]) -> [f32; 4] {
        let [x, y, w, h] = placement.to_frame(rect);
        [x + self.x as f32, y + self.y as f32, w, h]
    }
}

/// Resizes packed 4-byte pixels (RGBx/BGRx, tightly packed rows) into the model's input size with a
/// SIMD convolution resizer (bilinear, anti-aliased when shrinking — the same filter as Pillow's
/// `BILINEAR`), letterboxing if the spec says so, then fills the model tensor.
pub struct Preprocessor {
    spec: PreprocessSpec,
    resizer: fast_image_resize::Resizer,
    options: fast_image_resize::ResizeOptions,
    image: fast_image_resize::images::Image<'static>,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("spec", &self.spec)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("pre-processing a {width}x{height} frame: {reason}")]
pub struct PreprocessError {
    pub width: u32,
    pub height: u32,
    pub reason: String,
}

impl Preprocessor {
    pub fn new(spec: PreprocessSpec) -> Self {
        use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions};
        let image = fast_image_resize::images::Image::new(spec.width, spec.height, PixelType::U8x4);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .use_alpha(false);
        Self {
            spec,
            resizer: fast_image_resize::Resizer::new(),
            options,
            image,
        }
    }

    pub fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// The model-sized 4-byte image of the last call.
    pub fn image(&self) -> &[u8] {
        self.image.buffer()
    }

    /// Pre-processes one `width` x `height` frame of packed 4-byte pixels (first three bytes in the model's
    /// colour order) into `out` (`spec.tensor_len()` values) and returns where the frame landed.
    pub fn run(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        out: &mut [f32],
    ) -> Result<Placement, PreprocessError> {
        self.run_region(pixels, width, height, None, out)
    }

    /// Like [`Preprocessor::run`] for the part `region` of the frame (secondary inference on an
    /// object's crop; `None` = the whole frame). The returned placement maps model-input pixels to
    /// pixels of the region: add the region's origin ([`Region::to_frame`]) for frame pixels.
    pub fn run_region(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        region: Option<Region>,
        out: &mut [f32],
    ) -> Result<Placement, PreprocessError> {
        use fast_image_resize::PixelType;
        use fast_image_resize::images::{CroppedImageMut, ImageRef};
        let err = |reason: String| PreprocessError {
            width,
            height,
            reason,
        };
        if width == 0 || height == 0 {
            return Err(err("empty frame".into()));
        }
        let r = region.unwrap_or(Region {
            x: 0,
            y: 0,
            w: width,
            h: height,
        });
        if r.w == 0
            || r.h == 0
            || r.x.saturating_add(r.w) > width
            || r.y.saturating_add(r.h) > height
        {
            return Err(err(format!(
                "region {r:?} is empty or not inside the frame"
            )));
        }
        let placement = Placement::new(
            r.w,
            r.h,
            self.spec.width,
            self.spec.height,
            self.spec.resize,
        );
        let src = ImageRef::new(width, height, pixels, PixelType::U8x4)
            .map_err(|e| err(e.to_string()))?;
        let options = if region.is_some() {
            self.options
                .crop(r.x as f64, r.y as f64, r.w as f64, r.h as f64)
        } else {
            self.options
        };
        if self.spec.resize == ResizeMode::Letterbox {
            let v = self.spec.pad_value;
            self.image.buffer_mut().fill(v);
            let mut dst = CroppedImageMut::new(
                &mut self.image,
                placement.x,
                placement.y,
                placement.w,
                placement.h,
            )
            .map_err(|e| err(e.to_string()))?;
            self.resizer
                .resize(&src, &mut dst, &options)
                .map_err(|e| err(e.to_string()))?;
        } else {
            self.resizer
                .resize(&src, &mut self.image, &options)
                .map_err(|e| err(e.to_string()))?;
        }
        let stride = 4 * self.spec.width as usize;
        fill_tensor(self.image.buffer(), stride, 4, &self.spec, out);
        Ok(placement)
    }
}

/// Writes one image into `out` (length `spec.tensor_len()`).
///
/// `pixels` holds `spec.height` rows of `spec.width` packed pixels of `bpp` bytes (3 or 4; a 4th byte is
/// ignored) whose first three bytes are in `spec.color` order, each row starting `stride` bytes after the
/// previous one.
pub fn fill_tensor(
    pixels: &[u8],
    stride: usize,
    bpp: usize,
    spec: &PreprocessSpec,
    out: &mut [f32],
) {
    match bpp {
        3 => fill::<3>(pixels, stride, spec, out),
        4 => fill::<4>(pixels, stride, spec, out),
        _ => panic!("fill_tensor: {bpp} bytes per pixel is not supported"),
    }
}

fn fill<const BPP: usize>(pixels: &[u8], stride: usize, spec: &PreprocessSpec, out: &mut [f32]) {
    let (w, h) = (spec.width as usize, spec.height as usize);
    assert!(out.len() >= 3 * w * h, "tensor buffer too small");
    assert!(
        stride >= BPP * w && pixels.len() >= stride * (h.saturating_sub(1)) + BPP * w,
        "pixel buffer too small"
    );
    let a: [f32; 3] = std::array::from_fn(|c| spec.scale / spec.std[c]);
    let b: [f32; 3] = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
    match spec.layout {
        Layout::Nchw => {
            let plane = w * h;
            let (p0, rest) = out.split_at_mut(plane);
            let (p1, p2) = rest.split_at_mut(plane);
            for y in 0..h {
                let row = &pixels[y * stride..y * stride + BPP * w];
                let o = y * w;
                let (r0, r1, r2) = (&mut p0[o..o + w], &mut p1[o..o + w], &mut p2[o..o + w]);
                for (x, px) in row.chunks_exact(BPP).enumerate() {
                    r0[x] = px[0] as f32 * a[0] + b[0];
                    r1[x] = px[1] as f32 * a[1] + b[1];
                    r2[x] = px[2] as f32 * a[2] + b[2];
                }
            }
        }
        Layout::Nhwc => {
            for y in 0..h {
                let row = &pixels[y * stride..y * stride + BPP * w];
                let o = &mut out[y * 3 * w..(y + 1) * 3 * w];
                for (dst, px) in o.chunks_exact_mut(3).zip(row.chunks_exact(BPP)) {
                    dst[0] = px[0] as f32 * a[0] + b[0];
                    dst[1] = px[1] as f32 * a[1] + b[1];
                    dst[2] = px[2] as f32 * a[2] + b[2];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout) -> PreprocessSpec {
        PreprocessSpec {
            width: 2,
            height: 2,
            color: ColorOrder::Bgr,
            layout,
            resize: ResizeMode::Stretch,
            mean: [10.0, 20.0, 30.0],
            std: [2.0, 4.0, 5.0],
            scale: 1.0,
            pad_value: 0,
        }
    }

    #[test]
    fn nchw_and_nhwc_normalise_per_channel() {
        // 2x2 image, stride 8 (2 bytes of row padding)
        let px = [10, 20, 30, 12, 24, 35, 0, 0, 14, 28, 40, 16, 32, 45, 0, 0];
        let mut out = vec![0.0; 12];
        fill_tensor(&px, 8, 3, &spec(Layout::Nchw), &mut out);
        assert_eq!(
            out,
            vec![0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0]
        );
        fill_tensor(&px, 8, 3, &spec(Layout::Nhwc), &mut out);
        assert_eq!(
            out,
            vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]
        );
        // 4 bytes per pixel: the 4th is ignored
        let px4 = [
            10, 20, 30, 99, 12, 24, 35, 99, 14, 28, 40, 99, 16, 32, 45, 99,
        ];
        fill_tensor(&px4, 8, 4, &spec(Layout::Nchw), &mut out);
        assert_eq!(
            out,
            vec![0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0]
        );
    }

    #[test]
    fn preprocessor_resizes_and_letterboxes() {
        // 4x2 frame: left half red, right half blue (RGBx)
        let mut px = Vec::new();
        for _y in 0..2 {
            for x in 0..4 {
                px.extend_from_slice(if x < 2 {
                    &[255, 0, 0, 0]
                } else {
                    &[0, 0, 255, 0]
                });
            }
        }
        let mut s = spec(Layout::Nchw);
        s.mean = [0.0; 3];
        s.std = [1.0; 3];
        s.width = 4;
        s.height = 4;
        s.resize = ResizeMode::Letterbox;
        s.pad_value = 7;
        let mut p = Preprocessor::new(s);
        let mut out = vec![0.0; 48];
        let pl = p.run(&px, 4, 2, &mut out).unwrap();
        assert_eq!((pl.x, pl.y, pl.w, pl.h), (0, 1, 4, 2));
        // channel 0, row 0 is padding; row 1 starts red
        assert_eq!(&out[0..4], &[7.0; 4]);
        assert_eq!(out[4], 255.0);
        assert_eq!(out[7], 0.0);
        // channel 2 of the blue side
        assert_eq!(out[32 + 4 + 3], 255.0);
        assert!(p.run(&px, 0, 2, &mut out).is_err());
        assert!(p.run(&px[..8], 4, 2, &mut out).is_err());
    }

    #[test]
    fn letterbox_centres_and_maps_back() {
        let p = Placement::new(800, 400, 416, 416, ResizeMode::Letterbox);
        assert_eq!((p.x, p.y, p.w, p.h), (0, 104, 416, 208));
        let [x, y, w, h] = p.to_frame([0.0, 104.0, 416.0, 208.0]);
        assert!(x.abs() < 1e-3 && y.abs() < 1e-3);
        assert!((w - 800.0).abs() < 1e-2 && (h - 400.0).abs() < 1e-2);
    }

    #[test]
    fn stretch_maps_axes_independently() {
        let p = Placement::new(810, 1080, 416, 416, ResizeMode::Stretch);
        let [x, y, w, h] = p.to_frame([208.0, 208.0, 41.6, 41.6]);
        assert!((x - 405.0).abs() < 1e-3 && (y - 540.0).abs() < 1e-3);
        assert!((w - 81.0).abs() < 1e-3 && (h - 108.0).abs() < 1e-3);
        assert_eq!(spec(Layout::Nhwc).batch_shape(4), [4, 2, 2, 3]);
    }

    #[test]
    fn region_crops_before_resizing_and_maps_back_to_the_frame() {
        // 8x4 frame: each pixel's R value is 10*x, G is 10*y (RGBx).
        let (fw, fh) = (8u32, 4u32);
        let mut px = Vec::new();
        for y in 0..fh {
            for x in 0..fw {
                px.extend_from_slice(&[10 * x as u8, 10 * y as u8, 0, 0]);
            }
        }
        let mut s = spec(Layout::Nchw);
        s.color = ColorOrder::Rgb;
        s.mean = [0.0; 3];
        s.std = [1.0; 3];
        (s.width, s.height) = (2, 2);
        let mut p = Preprocessor::new(s);
        let mut out = vec![0.0; 12];
        // The 2x2 region at (5, 1) lands 1:1 in the 2x2 input: exactly its pixels.
        let region = Region {
            x: 5,
            y: 1,
            w: 2,
            h: 2,
        };
        let pl = p.run_region(&px, fw, fh, Some(region), &mut out).unwrap();
        assert_eq!(&out[0..4], &[50.0, 60.0, 50.0, 60.0]);
        assert_eq!(&out[4..8], &[10.0, 10.0, 20.0, 20.0]);
        assert_eq!(
            region.to_frame(&pl, [1.0, 0.0, 1.0, 2.0]),
            [6.0, 1.0, 1.0, 2.0]
        );
        // A region outside the frame or empty is an error, not a panic.
        for bad in [
            Region {
                x: 7,
                y: 0,
                w: 2,
                h: 2,
            },
            Region {
                x: 0,
                y: 0,
                w: 0,
                h: 2,
            },
            Region {
                x: u32::MAX,
                y: 0,
                w: 2,
                h: 2,
            },
        ] {
            let e = p.run_region(&px, fw, fh, Some(bad), &mut out).unwrap_err();
            assert!(e.to_string().contains("not inside the frame"), "{e}");
        }
    }
}
