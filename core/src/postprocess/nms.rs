//! Greedy non-maximum suppression.

use super::Detection;

/// Sorts by score (descending) and drops every detection that overlaps a kept one by more than `iou`.
/// With `per_class`, only detections of the same class suppress each other. At most `max` are kept.
pub fn nms(mut dets: Vec<Detection>, iou: f32, per_class: bool, max: usize) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::with_capacity(dets.len().min(max));
    for d in dets {
        if keep.len() >= max {
            break;
        }
        let suppressed = keep
            .iter()
            .any(|k| (!per_class || k.class_id == d.class_id) && k.bbox.iou(&d.bbox) > iou);
        if !suppressed {
            keep.push(d);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::BBox;

    fn det(c: usize, s: f32, x: f32) -> Detection {
        Detection {
            class_id: c,
            score: s,
            bbox: BBox::new(x, 0.0, 10.0, 10.0),
        }
    }

    #[test]
    fn suppresses_overlaps_of_same_class_only() {
        let d = vec![
            det(0, 0.5, 1.0),
            det(0, 0.9, 0.0),
            det(1, 0.8, 0.0),
            det(0, 0.7, 50.0),
        ];
        let k = nms(d.clone(), 0.5, true, 100);
        assert_eq!(
            k,
            vec![det(0, 0.9, 0.0), det(1, 0.8, 0.0), det(0, 0.7, 50.0)]
        );
        let k = nms(d.clone(), 0.5, false, 100);
        assert_eq!(k, vec![det(0, 0.9, 0.0), det(0, 0.7, 50.0)]);
        assert_eq!(nms(d, 0.5, true, 1).len(), 1);
    }
}
