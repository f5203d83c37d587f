//! How a quantized detector's detections agree with the original's on the same frames: each
//! candidate box is matched with the unmatched reference box of the same class it overlaps most
//! (IoU ≥ the minimum), candidates taken by descending score; precision, recall and F1 of the
//! candidate against the reference, and the score drift of the matched pairs.

use vigil_core::postprocess::Detection;

/// Summed over frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Agreement {
    pub frames: usize,
    /// Boxes of the reference (the FP32 model).
    pub reference: usize,
    /// Boxes of the candidate (the quantized model).
    pub candidate: usize,
    pub matched: usize,
    /// Sum and largest absolute score difference of the matched pairs.
    pub drift_sum: f64,
    pub drift_max: f64,
    /// Unmatched boxes (of either side) scored under the `near` score given to [`Agreement::add`]:
    /// those that crossed the threshold rather than moved or vanished.
    pub unmatched_near_threshold: usize,
}

impl Agreement {
    pub fn precision(&self) -> f64 {
        ratio(self.matched, self.candidate)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.matched, self.reference)
    }

    /// 1 when neither model found anything.
    pub fn f1(&self) -> f64 {
        let total = self.reference + self.candidate;
        if total == 0 {
            1.0
        } else {
            2.0 * self.matched as f64 / total as f64
        }
    }

    /// Mean absolute score difference of the matched pairs.
    pub fn drift_mean(&self) -> f64 {
        if self.matched == 0 {
            0.0
        } else {
            self.drift_sum / self.matched as f64
        }
    }

    /// Adds one frame's detections; unmatched boxes scored under `near` are counted apart.
    pub fn add(
        &mut self,
        reference: &[Detection],
        candidate: &[Detection],
        min_iou: f32,
        near: f32,
    ) {
        self.frames += 1;
        self.reference += reference.len();
        self.candidate += candidate.len();
        let mut order: Vec<&Detection> = candidate.iter().collect();
        order.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut used = vec![false; reference.len()];
        let mut near_count = 0;
        for c in order {
            let best = reference
                .iter()
                .enumerate()
                .filter(|(i, r)| !used[*i] && r.class_id == c.class_id)
                .map(|(i, r)| (i, r.bbox.iou(&c.bbox)))
                .filter(|&(_, iou)| iou >= min_iou)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((i, _)) = best {
                used[i] = true;
                self.matched += 1;
                let d = f64::from((reference[i].score - c.score).abs());
                self.drift_sum += d;
                self.drift_max = self.drift_max.max(d);
            } else if c.score < near {
                near_count += 1;
            }
        }
        near_count += reference
            .iter()
            .zip(&used)
            .filter(|(r, used)| !**used && r.score < near)
            .count();
        self.unmatched_near_threshold += near_count;
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::objects::BBox;

    fn det(class_id: usize, x: f32, score: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: BBox::new(x, 10.0, 50.0, 100.0),
        }
    }

    #[test]
    fn boxes_match_by_class_and_overlap() {
        let reference = [det(0, 0.0, 0.9), det(0, 200.0, 0.6), det(2, 400.0, 0.5)];
        // The first matches; the second overlaps the second reference box too little; the third
        // has the wrong class; the fourth is extra.
        let candidate = [
            det(0, 3.0, 0.85),
            det(0, 240.0, 0.6),
            det(1, 400.0, 0.5),
            det(0, 600.0, 0.45),
        ];
        let mut a = Agreement::default();
        a.add(&reference, &candidate, 0.5, 0.55);
        assert_eq!((a.reference, a.candidate, a.matched), (3, 4, 1));
        // Unmatched under 0.55: the reference's 0.5, the candidate's 0.5 and 0.45.
        assert_eq!(a.unmatched_near_threshold, 3);
        assert!((a.precision() - 0.25).abs() < 1e-9);
        assert!((a.recall() - 1.0 / 3.0).abs() < 1e-9);
        assert!((a.f1() - 2.0 / 7.0).abs() < 1e-9);
        assert!((a.drift_mean() - 0.05).abs() < 1e-6);
    }

    #[test]
    fn a_reference_box_is_matched_once() {
        let mut a = Agreement::default();
        a.add(
            &[det(0, 0.0, 0.9)],
            &[det(0, 0.0, 0.8), det(0, 1.0, 0.7)],
            0.5,
            0.45,
        );
        assert_eq!(a.matched, 1);
        assert!((a.drift_max - 0.1).abs() < 1e-6);
        let mut none = Agreement::default();
        none.add(&[], &[], 0.5, 0.45);
        assert_eq!(none.f1(), 1.0);
    }
}
