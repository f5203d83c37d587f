//! Secondary inference geometry: which objects of a frame a secondary model runs on (by label and
//! size), the crop of each (expanded, clamped to the frame, whole pixels) and how a detection inside a
//! crop becomes a child object of its parent in frame pixels.

use crate::objects::{BBox, Object};
use vigil_engine::preprocess::{Placement, Region};

/// Which objects qualify as parents of a secondary model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParentFilter {
    /// Labels of parents; empty = any label.
    pub labels: Vec<String>,
    /// Minimum width and height of a parent box in frame pixels.
    pub min_size: f32,
}

impl ParentFilter {
    /// From a comma-separated label list (`person, car`; empty = all) and a minimum size in pixels.
    pub fn new(labels: &str, min_size: u32) -> Self {
        ParentFilter {
            labels: labels
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            min_size: min_size as f32,
        }
    }

    /// `o` has one of the labels (or any label with none given) and a box at least `min_size` wide
    /// and high.
    pub fn accepts(&self, o: &Object) -> bool {
        (self.labels.is_empty() || self.labels.contains(&o.label))
            && o.bbox.w >= self.min_size
            && o.bbox.h >= self.min_size
            && o.bbox.w > 0.0
            && o.bbox.h > 0.0
    }
}

/// The crop of `bbox` grown by `expand` times its width/height on each side, clamped to a
/// `width` x `height` frame and rounded outwards to whole pixels; `None` when nothing of it is inside
/// the frame (or it is NaN).
pub fn crop_region(bbox: &BBox, expand: f32, width: u32, height: u32) -> Option<Region> {
    let e = if expand.is_finite() {
        expand.max(0.0)
    } else {
        0.0
    };
    let (dx, dy) = (bbox.w * e, bbox.h * e);
    let x1 = (bbox.x - dx).floor().clamp(0.0, width as f32);
    let y1 = (bbox.y - dy).floor().clamp(0.0, height as f32);
    let x2 = (bbox.x2() + dx).ceil().clamp(0.0, width as f32);
    let y2 = (bbox.y2() + dy).ceil().clamp(0.0, height as f32);
    // NaN fails both comparisons.
    if !(x2 - x1 >= 1.0 && y2 - y1 >= 1.0) {
        return None;
    }
    Some(Region {
        x: x1 as u32,
        y: y1 as u32,
        w: (x2 - x1) as u32,
        h: (y2 - y1) as u32,
    })
}

/// A detection `b` (model-input pixels of the crop `region` pre-processed with `placement`) in frame
/// pixels, clamped to the crop; `None` when nothing of it is inside the crop.
pub fn child_box(region: &Region, placement: &Placement, b: &BBox) -> Option<BBox> {
    let f = b.crop_to_frame(region, placement);
    let (rx, ry) = (region.x as f32, region.y as f32);
    let c = BBox::new(f.x - rx, f.y - ry, f.w, f.h).clamped(region.w as f32, region.h as f32);
    (c.w > 0.0 && c.h > 0.0).then(|| BBox::new(c.x + rx, c.y + ry, c.w, c.h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_engine::preprocess::ResizeMode;

    fn obj(label: &str, bbox: BBox) -> Object {
        Object::new(0, label, 0.9, bbox)
    }

    #[test]
    fn parents_by_label_and_size() {
        let f = ParentFilter::new(" person, car ,", 32);
        assert_eq!(f.labels, vec!["person", "car"]);
        assert!(f.accepts(&obj("person", BBox::new(0.0, 0.0, 32.0, 100.0))));
        assert!(!f.accepts(&obj("person", BBox::new(0.0, 0.0, 31.9, 100.0))));
        assert!(!f.accepts(&obj("bus", BBox::new(0.0, 0.0, 300.0, 300.0))));
        let any = ParentFilter::new("", 0);
        assert!(any.accepts(&obj("bus", BBox::new(0.0, 0.0, 3.0, 3.0))));
        assert!(!any.accepts(&obj("bus", BBox::new(0.0, 0.0, 0.0, 3.0))));
        assert!(!any.accepts(&obj("bus", BBox::new(0.0, 0.0, f32::NAN, 3.0))));
    }

    #[test]
    fn crops_expand_clamp_and_round_outwards() {
        let r = crop_region(&BBox::new(10.4, 20.6, 30.0, 40.0), 0.0, 100, 100).unwrap();
        assert_eq!(
            r,
            Region {
                x: 10,
                y: 20,
                w: 31,
                h: 41
            }
        );
        // 10 % on each side, clamped at the frame's left and bottom edges.
        let r = crop_region(&BBox::new(5.0, 50.0, 100.0, 50.0), 0.1, 200, 100).unwrap();
        assert_eq!(
            r,
            Region {
                x: 0,
                y: 45,
                w: 115,
                h: 55
            }
        );
        assert!(crop_region(&BBox::new(150.0, 0.0, 10.0, 10.0), 0.0, 100, 100).is_none());
        assert!(crop_region(&BBox::new(f32::NAN, 0.0, 10.0, 10.0), 0.0, 100, 100).is_none());
        // A non-finite expansion counts as none.
        let r = crop_region(&BBox::new(1.0, 1.0, 2.0, 2.0), f32::INFINITY, 10, 10).unwrap();
        assert_eq!(
            r,
            Region {
                x: 1,
                y: 1,
                w: 2,
                h: 2
            }
        );
    }

    #[test]
    fn child_boxes_map_back_to_frame_pixels_inside_the_crop() {
        // A 200x500 crop at (50, 400) letterboxed into 192x384: scale 0.768, centred horizontally.
        let region = Region {
            x: 50,
            y: 400,
            w: 200,
            h: 500,
        };
        let p = Placement::new(region.w, region.h, 192, 384, ResizeMode::Letterbox);
        assert_eq!((p.x, p.y, p.w, p.h), (19, 0, 154, 384));
        // A face at (50..90, 20..70) of the crop, in model pixels.
        let sx = p.scale_x;
        let sy = p.scale_y;
        let m = BBox::new(19.0 + 50.0 * sx, 20.0 * sy, 40.0 * sx, 50.0 * sy);
        let b = child_box(&region, &p, &m).unwrap();
        assert!(
            (b.x - 100.0).abs() < 1e-3 && (b.y - 420.0).abs() < 1e-3,
            "{b:?}"
        );
        assert!(
            (b.w - 40.0).abs() < 1e-3 && (b.h - 50.0).abs() < 1e-3,
            "{b:?}"
        );
        // In the letterbox padding left of the crop: clamped to the crop's edge, or dropped.
        let b = child_box(&region, &p, &BBox::new(0.0, 0.0, 29.0, 10.0)).unwrap();
        assert!(
            (b.x - 50.0).abs() < 1e-3 && b.w > 0.0 && b.w < 14.0,
            "{b:?}"
        );
        assert!(child_box(&region, &p, &BBox::new(0.0, 0.0, 10.0, 10.0)).is_none());
    }
}
