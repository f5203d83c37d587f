//! Boxes decoded inside the graph: `[B,K,6]` = `x1,y1,x2,y2,score,class`.

use super::{BoxUnits, Detection, PostprocessError, TensorView};
use crate::objects::BBox;

pub(super) fn decode(
    t: &TensorView,
    b: usize,
    units: BoxUnits,
    input_w: u32,
    input_h: u32,
    threshold: f32,
) -> Result<Vec<Detection>, PostprocessError> {
    let item = t.item(b)?;
    let (sx, sy) = match units {
        BoxUnits::Pixels => (1.0, 1.0),
        BoxUnits::Normalized => (input_w as f32, input_h as f32),
    };
    let mut out = Vec::new();
    for row in item.chunks_exact(6) {
        let score = row[4];
        if score.is_nan() || score < threshold || !row[5].is_finite() || row[5] < 0.0 {
            continue;
        }
        let (x1, y1, x2, y2) = (row[0] * sx, row[1] * sy, row[2] * sx, row[3] * sy);
        if !(x2 > x1 && y2 > y1) {
            continue;
        }
        out.push(Detection {
            class_id: row[5] as usize,
            score,
            bbox: BBox::from_corners(x1, y1, x2, y2),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn reads_rows_above_threshold() {
        let data = [
            10.0, 20.0, 30.0, 60.0, 0.9, 2.0, //
            0.0, 0.0, 5.0, 5.0, 0.1, 1.0, //
            // second batch item
            1.0, 1.0, 2.0, 2.0, 0.8, 0.0, //
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let t = TensorView::f32("det", &[2, 2, 6], &data);
        let d = Decoder::Boxes {
            output: None,
            units: BoxUnits::Pixels,
        };
        let r = d.decode(&[t], 0, 512, 512, 0.5).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].class_id, 2);
        assert_eq!(r[0].bbox, crate::objects::BBox::new(10.0, 20.0, 20.0, 40.0));
        let r = d.decode(&[t], 1, 512, 512, 0.5).unwrap();
        assert_eq!(r.len(), 1);
        let d = Decoder::Boxes {
            output: None,
            units: BoxUnits::Normalized,
        };
        let r = d.decode(&[t], 1, 100, 200, 0.5).unwrap();
        assert_eq!(
            r[0].bbox,
            crate::objects::BBox::new(100.0, 200.0, 100.0, 200.0)
        );
        assert!(d.decode(&[t], 2, 1, 1, 0.5).is_err());
    }
}
