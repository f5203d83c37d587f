//! YOLOv8-style output `[B,4+C,N]`: per candidate `cx,cy,w,h` (model-input pixels) then `C` class scores.

use super::{Detection, PostprocessError, TensorView};
use crate::objects::BBox;

pub(super) fn decode(
    t: &TensorView,
    b: usize,
    threshold: f32,
) -> Result<Vec<Detection>, PostprocessError> {
    let item = t.item(b)?;
    let (rows, n) = (t.shape[1], t.shape[2]);
    if rows <= 4 {
        return Err(PostprocessError::Shape {
            tensor: t.name.to_string(),
            detail: format!("has shape {:?}, expected [B,4+C,N] with C > 0", t.shape),
        });
    }
    let c = rows - 4;
    // Best class per candidate, scanning class rows so memory is read contiguously.
    let mut best = vec![(0usize, f32::NEG_INFINITY); n];
    for k in 0..c {
        let row = &item[(4 + k) * n..(5 + k) * n];
        for (bst, &s) in best.iter_mut().zip(row) {
            if s > bst.1 {
                *bst = (k, s);
            }
        }
    }
    let mut out = Vec::new();
    for (i, &(k, s)) in best.iter().enumerate() {
        if s >= threshold {
            let (cx, cy, w, h) = (item[i], item[n + i], item[2 * n + i], item[3 * n + i]);
            out.push(Detection {
                class_id: k,
                score: s,
                bbox: BBox::new(cx - w / 2.0, cy - h / 2.0, w, h),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn picks_best_class_per_candidate() {
        // C = 2, N = 3
        #[rustfmt::skip]
        let data = [
            100.0, 10.0, 50.0,   // cx
            100.0, 10.0, 50.0,   // cy
            20.0, 4.0, 10.0,     // w
            40.0, 4.0, 10.0,     // h
            0.1, 0.9, 0.2,       // class 0
            0.8, 0.2, 0.3,       // class 1
        ];
        let t = TensorView::f32("output0", &[1, 6, 3], &data);
        let d = Decoder::Yolov8 {
            output: None,
            num_classes: 2,
        };
        let mut r = d.decode(&[t], 0, 640, 640, 0.5).unwrap();
        r.sort_by(|a, b| b.score.total_cmp(&a.score));
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].class_id, r[0].score), (0, 0.9));
        assert_eq!(r[0].bbox, crate::objects::BBox::new(8.0, 8.0, 4.0, 4.0));
        assert_eq!((r[1].class_id, r[1].score), (1, 0.8));
        assert_eq!(r[1].bbox, crate::objects::BBox::new(90.0, 80.0, 20.0, 40.0));
        let wrong = Decoder::Yolov8 {
            output: None,
            num_classes: 80,
        };
        assert!(wrong.decode(&[t], 0, 640, 640, 0.5).is_err());
    }
}
