//! NanoDet-style Generalized Focal Loss heads.
//!
//! For each stride `s` the model has `N = ceil(H/s) * ceil(W/s)` cells and two outputs matched by shape:
//! class scores `[B,N,C]` (sigmoid already applied) and box distributions `[B,N,4*(R+1)]` (left, top,
//! right, bottom; `R+1` bins each). A side's distance is `sum(softmax(bins) * [0..R]) * s`; the anchor point is
//! `((col + offset) * s, (row + offset) * s)`.

use super::{Detection, PostprocessError, TensorView};
use crate::objects::BBox;

pub(super) struct GflParams<'a> {
    pub input_w: u32,
    pub input_h: u32,
    pub strides: &'a [u32],
    pub reg_max: usize,
    pub num_classes: usize,
    pub center_offset: f32,
}

pub(super) fn decode(
    outputs: &[TensorView],
    b: usize,
    p: GflParams,
    threshold: f32,
) -> Result<Vec<Detection>, PostprocessError> {
    let bins = p.reg_max + 1;
    let box_ch = 4 * bins;
    if p.num_classes == box_ch {
        return Err(PostprocessError::Missing(format!(
            "GFL heads: {} classes and {box_ch} box channels cannot be told apart by shape",
            p.num_classes
        )));
    }
    let mut out = Vec::new();
    let mut probs = vec![0f32; bins];
    for &s in p.strides {
        let gw = (p.input_w as usize).div_ceil(s as usize);
        let gh = (p.input_h as usize).div_ceil(s as usize);
        let n = gw * gh;
        let find = |ch: usize, what: &str| {
            outputs
                .iter()
                .find(|t| t.shape.len() == 3 && t.shape[1] == n && t.shape[2] == ch)
                .ok_or_else(|| {
                    PostprocessError::Missing(format!("[B,{n},{ch}] ({what} of stride {s})"))
                })
        };
        let cls = find(p.num_classes, "class scores")?.item(b)?;
        let reg = find(box_ch, "box distribution")?.item(b)?;
        for i in 0..n {
            let scores = &cls[i * p.num_classes..(i + 1) * p.num_classes];
            let (mut k, mut best) = (0usize, f32::NEG_INFINITY);
            for (j, &v) in scores.iter().enumerate() {
                if v > best {
                    best = v;
                    k = j;
                }
            }
            if best.is_nan() || best < threshold {
                continue;
            }
            let d = &reg[i * box_ch..(i + 1) * box_ch];
            let mut dist = [0f32; 4];
            for (side, bins_of_side) in d.chunks_exact(bins).enumerate() {
                dist[side] = expected_bin(bins_of_side, &mut probs) * s as f32;
            }
            let (row, col) = (i / gw, i % gw);
            let cx = (col as f32 + p.center_offset) * s as f32;
            let cy = (row as f32 + p.center_offset) * s as f32;
            out.push(Detection {
                class_id: k,
                score: best,
                bbox: BBox::from_corners(cx - dist[0], cy - dist[1], cx + dist[2], cy + dist[3]),
            });
        }
    }
    Ok(out)
}

/// `sum(softmax(logits) * index)`.
fn expected_bin(logits: &[f32], probs: &mut [f32]) -> f32 {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (p, &l) in probs.iter_mut().zip(logits) {
        *p = (l - m).exp();
        sum += *p;
    }
    probs
        .iter()
        .enumerate()
        .map(|(i, p)| i as f32 * p)
        .sum::<f32>()
        / sum
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn expected_bin_of_peaked_distribution() {
        let mut probs = vec![0.0; 3];
        let v = super::expected_bin(&[0.0, 100.0, 0.0], &mut probs);
        assert!((v - 1.0).abs() < 1e-4);
        let v = super::expected_bin(&[0.0, 0.0, 0.0], &mut probs);
        assert!((v - 1.0).abs() < 1e-4);
    }

    /// One stride-8 head on a 16x16 input (2x2 cells, 3 classes, reg_max 2): one confident cell.
    #[test]
    fn decodes_one_cell_and_matches_tensors_by_shape() {
        let n = 4;
        let mut cls = vec![0.0f32; n * 3];
        cls[3 * 3 + 2] = 0.9; // cell 3 (row 1, col 1), class 2
        let mut reg = vec![0.0f32; n * 12];
        // cell 3: left peaked at bin 1, top at bin 2, right at bin 0, bottom at bin 1
        for (side, bin) in [(0, 1), (1, 2), (2, 0), (3, 1)] {
            reg[3 * 12 + side * 3 + bin] = 50.0;
        }
        // order of outputs must not matter
        let outs = [
            TensorView::f32("b", &[1, 4, 12], &reg),
            TensorView::f32("a", &[1, 4, 3], &cls),
        ];
        let d = Decoder::Gfl {
            strides: vec![8],
            reg_max: 2,
            num_classes: 3,
            center_offset: 0.5,
        };
        let r = d.decode(&outs, 0, 16, 16, 0.5).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].class_id, 2);
        let bb = r[0].bbox;
        // centre (12, 12); l=8, t=16, r=0, b=8
        assert!((bb.x - 4.0).abs() < 1e-3, "{bb:?}");
        assert!((bb.y + 4.0).abs() < 1e-3, "{bb:?}");
        assert!(
            (bb.x2() - 12.0).abs() < 1e-3 && (bb.y2() - 20.0).abs() < 1e-3,
            "{bb:?}"
        );
        let missing = Decoder::Gfl {
            strides: vec![8, 16],
            reg_max: 2,
            num_classes: 3,
            center_offset: 0.5,
        };
        assert!(missing.decode(&outs, 0, 16, 16, 0.5).is_err());
    }
}
