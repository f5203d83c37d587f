//! Plane geometry in frame pixels (top-left origin, y down) for lines and zones.

use crate::objects::{BBox, Point};

/// The z component of `(b - a) × (p - a)`. In frame coordinates (y down) it is positive when `p` lies
/// to the **right** of the directed line `a → b` (as seen on the screen), negative to its left and 0 on
/// it.
pub fn cross(a: Point, b: Point, p: Point) -> f32 {
    (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)
}

/// Signed distance of `p` from the infinite line through `a` and `b` (positive on the right of
/// `a → b`, see [`cross`]); 0 for a degenerate line.
pub fn signed_distance(a: Point, b: Point, p: Point) -> f32 {
    let len = ((b.x - a.x).powi(2) + (b.y - a.y).powi(2)).sqrt();
    if len == 0.0 {
        0.0
    } else {
        cross(a, b, p) / len
    }
}

/// Whether the closed segments `p1–p2` and `q1–q2` share a point (touching and collinear overlap
/// count).
pub fn segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool {
    let d1 = cross(q1, q2, p1);
    let d2 = cross(q1, q2, p2);
    let d3 = cross(p1, p2, q1);
    let d4 = cross(p1, p2, q2);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    let on = |a: Point, b: Point, p: Point| {
        p.x >= a.x.min(b.x) && p.x <= a.x.max(b.x) && p.y >= a.y.min(b.y) && p.y <= a.y.max(b.y)
    };
    (d1 == 0.0 && on(q1, q2, p1))
        || (d2 == 0.0 && on(q1, q2, p2))
        || (d3 == 0.0 && on(p1, p2, q1))
        || (d4 == 0.0 && on(p1, p2, q2))
}

/// Whether `p` is inside the polygon (even-odd rule; points exactly on an edge may go either way).
pub fn point_in_polygon(p: Point, polygon: &[Point]) -> bool {
    let n = polygon.len();
    if n < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[j]);
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
            if p.x < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Distance from `p` to the segment `a–b`.
pub fn distance_to_segment(p: Point, a: Point, b: Point) -> f32 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0)
    };
    let (cx, cy) = (a.x + t * dx, a.y + t * dy);
    ((p.x - cx).powi(2) + (p.y - cy).powi(2)).sqrt()
}

/// Distance from `p` to the polygon's outline.
pub fn distance_to_polygon_edge(p: Point, polygon: &[Point]) -> f32 {
    let n = polygon.len();
    (0..n)
        .map(|i| distance_to_segment(p, polygon[i], polygon[(i + 1) % n]))
        .fold(f32::INFINITY, f32::min)
}

/// Twice the signed area of a polygon (0 for a degenerate one).
pub fn polygon_area2(polygon: &[Point]) -> f32 {
    let n = polygon.len();
    (0..n)
        .map(|i| {
            let (a, b) = (polygon[i], polygon[(i + 1) % n]);
            a.x * b.y - b.x * a.y
        })
        .sum()
}

/// The point of a box that represents an object for lines and zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    /// Middle of the bottom edge: where a person or vehicle touches the ground.
    #[default]
    BottomCenter,
    /// Centre of the box.
    Center,
    /// Middle of the top edge.
    TopCenter,
}

impl Anchor {
    pub const ALL: [Anchor; 3] = [Anchor::BottomCenter, Anchor::Center, Anchor::TopCenter];

    /// The name used in configs and the `anchor` property.
    pub fn as_str(&self) -> &'static str {
        match self {
            Anchor::BottomCenter => "bottom-center",
            Anchor::Center => "center",
            Anchor::TopCenter => "top-center",
        }
    }

    /// The anchor point of `b`.
    pub fn point(&self, b: &BBox) -> Point {
        let x = b.x + b.w / 2.0;
        match self {
            Anchor::BottomCenter => Point::new(x, b.y2()),
            Anchor::Center => Point::new(x, b.y + b.h / 2.0),
            Anchor::TopCenter => Point::new(x, b.y),
        }
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Anchor::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Anchor::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "anchor '{s}' is not known (available: {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f32, y: f32) -> Point {
        Point::new(x, y)
    }

    #[test]
    fn side_of_line_in_screen_coordinates() {
        // a → b points right; below (y larger) is its right-hand side on the screen.
        let (a, b) = (p(0.0, 0.0), p(10.0, 0.0));
        assert!(cross(a, b, p(5.0, 3.0)) > 0.0);
        assert!(cross(a, b, p(5.0, -3.0)) < 0.0);
        assert_eq!(cross(a, b, p(20.0, 0.0)), 0.0);
        assert!((signed_distance(a, b, p(3.0, -4.0)) + 4.0).abs() < 1e-6);
        assert_eq!(signed_distance(a, a, p(3.0, 4.0)), 0.0);
    }

    #[test]
    fn segment_intersection_respects_the_segment_ends() {
        let (a, b) = (p(10.0, 0.0), p(10.0, 10.0));
        assert!(segments_intersect(p(0.0, 5.0), p(20.0, 5.0), a, b));
        // Crosses the infinite line but below the segment's end.
        assert!(!segments_intersect(p(0.0, 15.0), p(20.0, 15.0), a, b));
        // Touching an end point counts.
        assert!(segments_intersect(p(0.0, 10.0), p(20.0, 10.0), a, b));
        // Parallel, apart.
        assert!(!segments_intersect(p(0.0, 0.0), p(0.0, 10.0), a, b));
        // Collinear overlap.
        assert!(segments_intersect(p(10.0, 5.0), p(10.0, 20.0), a, b));
        // Short of the line.
        assert!(!segments_intersect(p(0.0, 5.0), p(9.0, 5.0), a, b));
    }

    #[test]
    fn point_in_polygon_convex_and_concave() {
        let square = [p(0.0, 0.0), p(10.0, 0.0), p(10.0, 10.0), p(0.0, 10.0)];
        assert!(point_in_polygon(p(5.0, 5.0), &square));
        assert!(!point_in_polygon(p(15.0, 5.0), &square));
        assert!(!point_in_polygon(p(5.0, -1.0), &square));
        // A "U": the notch (5, 8) is outside.
        let u = [
            p(0.0, 0.0),
            p(10.0, 0.0),
            p(10.0, 10.0),
            p(7.0, 10.0),
            p(7.0, 3.0),
            p(3.0, 3.0),
            p(3.0, 10.0),
            p(0.0, 10.0),
        ];
        assert!(point_in_polygon(p(1.0, 8.0), &u));
        assert!(point_in_polygon(p(8.0, 8.0), &u));
        assert!(!point_in_polygon(p(5.0, 8.0), &u));
        assert!(point_in_polygon(p(5.0, 1.0), &u));
        assert!(!point_in_polygon(p(5.0, 5.0), &square[..2]));
    }

    #[test]
    fn distances_and_area() {
        let square = [p(0.0, 0.0), p(10.0, 0.0), p(10.0, 10.0), p(0.0, 10.0)];
        assert!((distance_to_polygon_edge(p(5.0, 3.0), &square) - 3.0).abs() < 1e-6);
        assert!((distance_to_polygon_edge(p(13.0, 14.0), &square) - 5.0).abs() < 1e-6);
        assert!((polygon_area2(&square).abs() - 200.0).abs() < 1e-6);
        assert_eq!(polygon_area2(&[p(0.0, 0.0), p(1.0, 1.0), p(2.0, 2.0)]), 0.0);
    }

    #[test]
    fn anchors() {
        let b = BBox::new(10.0, 20.0, 4.0, 10.0);
        assert_eq!(Anchor::BottomCenter.point(&b), p(12.0, 30.0));
        assert_eq!(Anchor::Center.point(&b), p(12.0, 25.0));
        assert_eq!(Anchor::TopCenter.point(&b), p(12.0, 20.0));
        assert_eq!("Bottom-Center".parse::<Anchor>(), Ok(Anchor::BottomCenter));
        assert!(
            "feet"
                .parse::<Anchor>()
                .unwrap_err()
                .contains("bottom-center")
        );
    }
}
