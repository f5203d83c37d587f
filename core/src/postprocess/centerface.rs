//! CenterFace-style anchor-free face heads: per image a heatmap `[B,1,H/s,W/s]` (sigmoid applied), a
//! box-size map `[B,2,H/s,W/s]` (log of height and width in cells: channel 0 height, 1 width) and an
//! offset map `[B,2,H/s,W/s]` (sub-cell centre offset: channel 0 y, 1 x), `s` the output stride (4).
//!
//! A face is a heatmap cell that is a local maximum of its 3x3 neighbourhood and scores at least the
//! threshold; its centre is `((col + offset_x + 0.5) * s, (row + offset_y + 0.5) * s)` and its size
//! `exp(size) * s` per axis (model-input pixels). Overlapping faces are left to NMS (the caller's).

use super::{Detection, PostprocessError, TensorView};
use crate::objects::BBox;

/// The three tensors of one CenterFace head.
pub(super) struct Heads<'a> {
    pub heatmap: TensorView<'a>,
    pub size: TensorView<'a>,
    pub offset: TensorView<'a>,
}

/// Picks the heatmap (the 4-D output with 1 channel), size and offset (the 4-D outputs with 2
/// channels, in output order: size first) unless names are given.
pub(super) fn find_heads<'a>(
    outputs: &[TensorView<'a>],
    names: &[Option<String>; 3],
) -> Result<Heads<'a>, PostprocessError> {
    let by_name = |n: &str| {
        outputs
            .iter()
            .find(|t| t.name == n)
            .copied()
            .ok_or_else(|| PostprocessError::Missing(format!("name '{n}'")))
    };
    let with_channels = |c: usize| {
        outputs
            .iter()
            .filter(move |t| t.shape.len() == 4 && t.shape[1] == c)
            .copied()
    };
    let heatmap = match &names[0] {
        Some(n) => by_name(n)?,
        None => with_channels(1)
            .next()
            .ok_or_else(|| PostprocessError::Missing("shape [B,1,h,w] (heatmap)".into()))?,
    };
    let size = match &names[1] {
        Some(n) => by_name(n)?,
        None => with_channels(2)
            .find(|t| t.name != heatmap.name)
            .ok_or_else(|| PostprocessError::Missing("shape [B,2,h,w] (box size)".into()))?,
    };
    let offset = match &names[2] {
        Some(n) => by_name(n)?,
        None => with_channels(2)
            .find(|t| t.name != heatmap.name && t.name != size.name)
            .ok_or_else(|| PostprocessError::Missing("a second shape [B,2,h,w] (offset)".into()))?,
    };
    for (t, c) in [(&heatmap, 1), (&size, 2), (&offset, 2)] {
        if t.shape.len() != 4 || t.shape[1] != c || t.shape[2..] != heatmap.shape[2..] {
            return Err(PostprocessError::Shape {
                tensor: t.name.to_string(),
                detail: format!(
                    "has shape {:?}, expected [B,{c},{},{}] like the heatmap",
                    t.shape,
                    heatmap.shape.get(2).copied().unwrap_or(0),
                    heatmap.shape.get(3).copied().unwrap_or(0)
                ),
            });
        }
    }
    Ok(Heads {
        heatmap,
        size,
        offset,
    })
}

pub(super) fn decode(
    heads: &Heads,
    b: usize,
    stride: f32,
    threshold: f32,
) -> Result<Vec<Detection>, PostprocessError> {
    let (h, w) = (heads.heatmap.shape[2], heads.heatmap.shape[3]);
    let hm = heads.heatmap.item(b)?;
    let size = heads.size.item(b)?;
    let offset = heads.offset.item(b)?;
    let n = h * w;
    let mut out = Vec::new();
    for row in 0..h {
        for col in 0..w {
            let i = row * w + col;
            let score = hm[i];
            if score.is_nan() || score < threshold {
                continue;
            }
            // Keep only local maxima of the 3x3 neighbourhood (ties: the first cell in scan order).
            let mut peak = true;
            'n: for r in row.saturating_sub(1)..(row + 2).min(h) {
                for c in col.saturating_sub(1)..(col + 2).min(w) {
                    let j = r * w + c;
                    if hm[j] > score || (hm[j] == score && j < i) {
                        peak = false;
                        break 'n;
                    }
                }
            }
            if !peak {
                continue;
            }
            let (bh, bw) = (size[i].exp() * stride, size[n + i].exp() * stride);
            let cy = (row as f32 + offset[i] + 0.5) * stride;
            let cx = (col as f32 + offset[n + i] + 0.5) * stride;
            if !(bw.is_finite() && bh.is_finite() && cx.is_finite() && cy.is_finite()) {
                continue;
            }
            out.push(Detection {
                class_id: 0,
                score,
                bbox: BBox::new(cx - bw / 2.0, cy - bh / 2.0, bw, bh),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    /// A 1-image head of `h` x `w` cells with one face at `(row, col)`.
    fn head(h: usize, w: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (vec![0.0; h * w], vec![0.0; 2 * h * w], vec![0.0; 2 * h * w])
    }

    fn decoder() -> Decoder {
        Decoder::CenterFace {
            stride: 4,
            heatmap: None,
            size: None,
            offset: None,
        }
    }

    #[test]
    fn decodes_peaks_with_size_and_offset() {
        let (h, w) = (8usize, 10usize);
        let (mut hm, mut size, mut off) = head(h, w);
        // A face at row 2, col 3: score 0.9, height exp(2)*4, width exp(1.5)*4, offset y 0.25 x -0.5.
        let i = 2 * w + 3;
        hm[i] = 0.9;
        hm[i + 1] = 0.8; // a neighbour: not a peak
        size[i] = 2.0f32;
        size[h * w + i] = 1.5f32;
        off[i] = 0.25;
        off[h * w + i] = -0.5;
        // A weak face below the threshold.
        hm[6 * w + 8] = 0.3;
        let (one, two, ten) = ([1, 1, h, w], [1, 2, h, w], [1, 10, h, w]);
        let landmarks = vec![0.0; 10 * h * w];
        let outputs = [
            TensorView::f32("537", &one, &hm),
            TensorView::f32("538", &two, &size),
            TensorView::f32("539", &two, &off),
            TensorView::f32("540", &ten, &landmarks),
        ];
        let d = decoder().decode(&outputs, 0, 40, 32, 0.5).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        let (bh, bw) = (2f32.exp() * 4.0, 1.5f32.exp() * 4.0);
        let (cy, cx) = ((2.0 + 0.25 + 0.5) * 4.0, (3.0 - 0.5 + 0.5) * 4.0);
        assert_eq!(d[0].class_id, 0);
        assert_eq!(d[0].score, 0.9);
        let b = d[0].bbox;
        assert!((b.x - (cx - bw / 2.0)).abs() < 1e-4, "{b:?}");
        assert!((b.y - (cy - bh / 2.0)).abs() < 1e-4, "{b:?}");
        assert!((b.w - bw).abs() < 1e-4 && (b.h - bh).abs() < 1e-4, "{b:?}");
        // Lower threshold: the weak face too; the neighbour of the strong one stays suppressed.
        assert_eq!(decoder().decode(&outputs, 0, 40, 32, 0.2).unwrap().len(), 2);
        // Named outputs in another order: swapping size and offset changes the box.
        let named = Decoder::CenterFace {
            stride: 4,
            heatmap: Some("537".into()),
            size: Some("539".into()),
            offset: Some("538".into()),
        };
        let e = named.decode(&outputs, 0, 40, 32, 0.5).unwrap();
        assert_ne!(e[0].bbox, b);
    }

    #[test]
    fn reports_missing_or_mismatched_heads() {
        let hm = vec![0.0; 16];
        let outputs = [TensorView::f32("hm", &[1, 1, 4, 4], &hm)];
        let e = decoder().decode(&outputs, 0, 16, 16, 0.5).unwrap_err();
        assert!(e.to_string().contains("box size"), "{e}");
        let small = vec![0.0; 2 * 9];
        let outputs = [
            outputs[0],
            TensorView::f32("s", &[1, 2, 3, 3], &small),
            TensorView::f32("o", &[1, 2, 3, 3], &small),
        ];
        let e = decoder().decode(&outputs, 0, 16, 16, 0.5).unwrap_err();
        assert!(e.to_string().contains("like the heatmap"), "{e}");
        assert!(decoder().decode(&outputs[..1], 1, 16, 16, 0.5).is_err());
    }
}
