//! Snapshots of inspected items: the item image with the verdict drawn on it
//! ([`Canvas::draw_inspection`]: evidence boxes in red with the rule name, the verdict banner),
//! encoded as JPEG to `<dir>/<item id>.jpg`.

use crate::draw::{Canvas, InspectionStyle, PixelFormat};
use crate::objects::Inspection;
use std::path::{Path, PathBuf};

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot of {width}x{height} {format:?} frame: {message}")]
    Frame {
        format: PixelFormat,
        width: u32,
        height: u32,
        message: String,
    },
    #[error("cannot encode JPEG: {0}")]
    Encode(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An item's image (owned copy of a frame's planes) and its verdict, ready to be written.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub item_id: String,
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// One buffer per plane ([`PixelFormat::n_planes`]).
    pub planes: Vec<Vec<u8>>,
    pub strides: Vec<usize>,
    pub inspection: Inspection,
    /// The size the inspection's boxes refer to (0 = the image's).
    pub frame_width: u32,
    pub frame_height: u32,
}

/// A file name for an item id: characters other than ASCII letters, digits, `-`, `_` and `.` become
/// `_`, and a leading `.` too (no hidden files, no paths). Empty ids give `item`.
pub fn file_name(item_id: &str) -> String {
    let mut s: String = item_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        s = "item".into();
    }
    s + ".jpg"
}

fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as f32 - 16.0) * 1.164;
    let (d, e) = (u as f32 - 128.0, v as f32 - 128.0);
    [c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d]
        .map(|x| x.round().clamp(0.0, 255.0) as u8)
}

impl Snapshot {
    /// The image as packed RGB (BT.601 limited range for YUV formats).
    pub fn to_rgb(&self) -> Result<Vec<u8>, SnapshotError> {
        let (w, h) = (self.width as usize, self.height as usize);
        let bad = |message: String| SnapshotError::Frame {
            format: self.format,
            width: self.width,
            height: self.height,
            message,
        };
        // Validates plane and stride sizes the way drawing does.
        {
            let mut planes = self.planes.clone();
            Canvas::new(
                self.format,
                self.width,
                self.height,
                planes.iter_mut().map(Vec::as_mut_slice),
                &self.strides,
            )
            .map_err(|e| bad(e.to_string()))?;
        }
        let mut rgb = vec![0u8; w * h * 3];
        let p = &self.planes;
        let s = &self.strides;
        match self.format {
            PixelFormat::I420 | PixelFormat::Nv12 => {
                for row in 0..h {
                    for col in 0..w {
                        let yv = p[0][row * s[0] + col];
                        let (u, v) = if self.format == PixelFormat::I420 {
                            (
                                p[1][(row / 2) * s[1] + col / 2],
                                p[2][(row / 2) * s[2] + col / 2],
                            )
                        } else {
                            let i = (row / 2) * s[1] + (col / 2) * 2;
                            (p[1][i], p[1][i + 1])
                        };
                        rgb[(row * w + col) * 3..][..3].copy_from_slice(&yuv_to_rgb(yv, u, v));
                    }
                }
            }
            f => {
                let bpp = f.bytes_per_pixel();
                let (ri, gi, bi) = match f {
                    PixelFormat::Bgra | PixelFormat::Bgrx | PixelFormat::Bgr => (2, 1, 0),
                    _ => (0, 1, 2),
                };
                for row in 0..h {
                    for col in 0..w {
                        let px = &p[0][row * s[0] + col * bpp..][..bpp];
                        rgb[(row * w + col) * 3..][..3].copy_from_slice(&[px[ri], px[gi], px[bi]]);
                    }
                }
            }
        }
        Ok(rgb)
    }

    /// The image with the verdict drawn on it, as packed RGB.
    pub fn render(&self, style: &InspectionStyle) -> Result<Vec<u8>, SnapshotError> {
        let mut rgb = self.to_rgb()?;
        let (w, h) = (self.width, self.height);
        let mut canvas = Canvas::packed(PixelFormat::Rgb, w, h, &mut rgb, w as usize * 3)
            .map_err(|e| SnapshotError::Encode(e.to_string()))?;
        canvas.draw_inspection(&self.inspection, self.frame_width, self.frame_height, style);
        Ok(rgb)
    }

    /// Renders, encodes and writes `<dir>/<file_name(item id)>`; returns the path.
    pub fn write(
        &self,
        dir: &Path,
        quality: u8,
        style: &InspectionStyle,
    ) -> Result<PathBuf, SnapshotError> {
        let rgb = self.render(style)?;
        let jpeg = encode_jpeg(&rgb, self.width, self.height, quality)?;
        let path = dir.join(file_name(&self.item_id));
        // Written under a temporary name and renamed, so readers never see half a file.
        let tmp = dir.join(format!(".{}.tmp", file_name(&self.item_id)));
        std::fs::write(&tmp, &jpeg)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                SnapshotError::Write {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        Ok(path)
    }
}

/// Encodes packed RGB as JPEG (`quality` 1..=100).
pub fn encode_jpeg(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{BBox, Finding, Verdict};

    fn failed() -> Inspection {
        Inspection {
            verdict: Verdict::Fail,
            failures: vec![Finding {
                rule: "lot-matches-product".into(),
                reason: "lot \"AB1234\" is not \"KX4821\"".into(),
                text: Some("AB1234".into()),
                bbox: Some(BBox::new(40.0, 60.0, 100.0, 20.0)),
                confidence: Some(0.9),
                ..Default::default()
            }],
            fields: Vec::new(),
        }
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name("label_0001.png"), "label_0001.png.jpg");
        assert_eq!(file_name("../etc/passwd"), "_._etc_passwd.jpg");
        assert_eq!(file_name("cam 1/7"), "cam_1_7.jpg");
        assert_eq!(file_name(""), "item.jpg");
    }

    #[test]
    fn yuv_and_packed_frames_convert_alike() {
        let (w, h) = (4u32, 2u32);
        // Grey 0x80 in I420 limited range is Y=126 (approx) -- use exact white and black instead.
        let white = crate::draw::Color::WHITE.to_yuv();
        let i420 = Snapshot {
            item_id: "x".into(),
            format: PixelFormat::I420,
            width: w,
            height: h,
            planes: vec![vec![white[0]; 8], vec![white[1]; 2], vec![white[2]; 2]],
            strides: vec![4, 2, 2],
            inspection: Inspection::default(),
            frame_width: 0,
            frame_height: 0,
        };
        let rgb = i420.to_rgb().unwrap();
        assert!(rgb.iter().all(|&v| v >= 254), "{rgb:?}");
        let bgrx = Snapshot {
            format: PixelFormat::Bgrx,
            planes: vec![[10u8, 20, 30, 0].repeat(8)],
            strides: vec![16],
            ..i420.clone()
        };
        assert_eq!(&bgrx.to_rgb().unwrap()[..3], &[30, 20, 10]);
        let short = Snapshot {
            planes: vec![vec![0; 3]],
            ..bgrx
        };
        assert!(matches!(short.to_rgb(), Err(SnapshotError::Frame { .. })));
    }

    #[test]
    fn snapshot_is_a_decodable_jpeg_with_the_verdict_drawn() {
        let dir = std::env::temp_dir().join(format!("vigil-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (w, h) = (320u32, 200u32);
        let snap = Snapshot {
            item_id: "label_0007.png".into(),
            format: PixelFormat::Rgb,
            width: w,
            height: h,
            planes: vec![vec![255u8; (w * h * 3) as usize]],
            strides: vec![w as usize * 3],
            inspection: failed(),
            frame_width: w,
            frame_height: h,
        };
        let path = snap.write(&dir, 90, &InspectionStyle::default()).unwrap();
        assert_eq!(path, dir.join("label_0007.png.jpg"));
        let img = image::load_from_memory(&std::fs::read(&path).unwrap())
            .unwrap()
            .to_rgb8();
        assert_eq!(img.dimensions(), (w, h));
        // Banner red, evidence outline red, the rest still white (JPEG tolerance).
        let near =
            |p: &image::Rgb<u8>, c: [u8; 3]| p.0.iter().zip(c).all(|(a, b)| a.abs_diff(b) < 40);
        assert!(
            near(img.get_pixel(300, 5), [220, 0, 0]),
            "{:?}",
            img.get_pixel(300, 5)
        );
        assert!(
            near(img.get_pixel(90, 79), [220, 0, 0]),
            "{:?}",
            img.get_pixel(90, 79)
        );
        assert!(near(img.get_pixel(90, 150), [255, 255, 255]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
