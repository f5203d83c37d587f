//! Text detection (PP-OCR DB): the input size rule, and the post-processing of the probability
//! map into text quadrilaterals.
//!
//! Post-processing as the reference does it: threshold the map, dilate with a 2x2 kernel, take
//! each 8-connected region, its minimum-area rectangle, drop it when its short side is under
//! `min_size` or the mean probability inside it ("fast" box score) is under `box_threshold`,
//! grow it ("unclip": a rectangle offset by `d = area * unclip_ratio / perimeter` and boxed again is
//! the rectangle grown by `d` on each side), drop it when its short side is under `min_size + 2`,
//! scale it to the image, order its corners (top-left, top-right, bottom-right, bottom-left), clip
//! and drop boxes of 3 pixels or less. Boxes are sorted top to bottom, then left to right within
//! 10 pixels of height. (The reference also boxes the holes of regions; holes are ignored here.)

/// A point `(x, y)`.
pub type Point = [f64; 2];
/// A quadrilateral: top-left, top-right, bottom-right, bottom-left.
pub type Quad = [Point; 4];

/// The parameters of detection, with the reference's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DetParams {
    /// The shorter side is scaled up to this (`limit_type: min`).
    pub limit_side_len: usize,
    /// Probability threshold of the text map.
    pub threshold: f32,
    /// Minimum mean probability inside a box.
    pub box_threshold: f32,
    /// How much boxes grow.
    pub unclip_ratio: f64,
    /// Dilate the thresholded map with a 2x2 kernel.
    pub use_dilation: bool,
    /// Most regions considered.
    pub max_candidates: usize,
}

impl Default for DetParams {
    fn default() -> Self {
        DetParams {
            limit_side_len: 736,
            threshold: 0.3,
            box_threshold: 0.5,
            unclip_ratio: 1.6,
            use_dilation: true,
            max_candidates: 1000,
        }
    }
}

const MIN_SIZE: f64 = 3.0;

/// Python's `round` (half to even), as the reference's `round`/`np.round`.
fn round_even(v: f64) -> f64 {
    v.round_ties_even()
}

/// The detector's input size for an image of `width` x `height`: the shorter side scaled up to
/// `limit` (never down), each side rounded to a multiple of 32 (at least 32).
pub fn input_size(width: usize, height: usize, limit: usize) -> (usize, usize) {
    let (w, h) = (width as f64, height as f64);
    let ratio = if width.min(height) < limit {
        if height < width {
            limit as f64 / h
        } else {
            limit as f64 / w
        }
    } else {
        1.0
    };
    let rw = (w * ratio).trunc();
    let rh = (h * ratio).trunc();
    let rw = (round_even(rw / 32.0) * 32.0).max(32.0) as usize;
    let rh = (round_even(rh / 32.0) * 32.0).max(32.0) as usize;
    (rw, rh)
}

/// The thresholded (and dilated) map.
fn bitmap(prob: &[f32], w: usize, h: usize, p: &DetParams) -> Vec<bool> {
    let seg: Vec<bool> = prob.iter().map(|&v| v > p.threshold).collect();
    if !p.use_dilation {
        return seg;
    }
    // 2x2 kernel anchored at (1,1): a pixel is set when it or its left, upper or upper-left
    // neighbour is.
    let mut out = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut v = seg[y * w + x];
            if x > 0 {
                v |= seg[y * w + x - 1];
            }
            if y > 0 {
                v |= seg[(y - 1) * w + x];
                if x > 0 {
                    v |= seg[(y - 1) * w + x - 1];
                }
            }
            out[y * w + x] = v;
        }
    }
    out
}

/// The 8-connected regions of `bits`, each as its row extremes `(y, min x, max x)`, in raster order of
/// their first pixel.
fn regions(bits: &[bool], w: usize, h: usize) -> Vec<Vec<(usize, usize, usize)>> {
    let mut label = vec![u32::MAX; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !bits[start] || label[start] != u32::MAX {
            continue;
        }
        let id = out.len() as u32;
        let mut rows: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
        label[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let e = rows.entry(y).or_insert((x, x));
            e.0 = e.0.min(x);
            e.1 = e.1.max(x);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if bits[j] && label[j] == u32::MAX {
                        label[j] = id;
                        stack.push(j);
                    }
                }
            }
        }
        out.push(rows.into_iter().map(|(y, (a, b))| (y, a, b)).collect());
    }
    out
}

fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (counter-clockwise in image coordinates, no collinear points) by the monotone chain.
pub fn convex_hull(mut pts: Vec<Point>) -> Vec<Point> {
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut lower: Vec<Point> = Vec::new();
    for &p in &pts {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], p) <= 0.0 {
            lower.pop();
        }
        lower.push(p);
    }
    let mut upper: Vec<Point> = Vec::new();
    for &p in pts.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], p) <= 0.0 {
            upper.pop();
        }
        upper.push(p);
    }
    lower.pop();
    upper.pop();
    lower.extend(upper);
    lower
}

/// A rotated rectangle: centre, unit axis `u` (the other axis is `u` turned 90°), and the extents
/// along `u` and the other axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotatedRect {
    pub center: Point,
    pub axis: Point,
    pub width: f64,
    pub height: f64,
}

impl RotatedRect {
    pub fn short_side(&self) -> f64 {
        self.width.min(self.height)
    }

    /// The same rectangle grown by `d` on each side.
    pub fn grown(&self, d: f64) -> RotatedRect {
        RotatedRect {
            width: self.width + 2.0 * d,
            height: self.height + 2.0 * d,
            ..*self
        }
    }

    /// The corners in any order.
    pub fn corners(&self) -> [Point; 4] {
        let [ux, uy] = self.axis;
        let (vx, vy) = (-uy, ux);
        let (a, b) = (self.width / 2.0, self.height / 2.0);
        let [cx, cy] = self.center;
        [
            [cx - a * ux - b * vx, cy - a * uy - b * vy],
            [cx + a * ux - b * vx, cy + a * uy - b * vy],
            [cx + a * ux + b * vx, cy + a * uy + b * vy],
            [cx - a * ux + b * vx, cy - a * uy + b * vy],
        ]
    }
}

/// The minimum-area rectangle around `points` (rotating calipers on the hull).
pub fn min_area_rect(points: &[Point]) -> RotatedRect {
    let hull = convex_hull(points.to_vec());
    match hull.len() {
        0 => {
            return RotatedRect {
                center: [0.0, 0.0],
                axis: [1.0, 0.0],
                width: 0.0,
                height: 0.0,
            };
        }
        1 => {
            return RotatedRect {
                center: hull[0],
                axis: [1.0, 0.0],
                width: 0.0,
                height: 0.0,
            };
        }
        _ => {}
    }
    let mut best: Option<(f64, RotatedRect)> = None;
    for i in 0..hull.len() {
        let a = hull[i];
        let b = hull[(i + 1) % hull.len()];
        let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
        if len == 0.0 {
            continue;
        }
        let u = [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
        let v = [-u[1], u[0]];
        let (mut umin, mut umax, mut vmin, mut vmax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in &hull {
            let pu = p[0] * u[0] + p[1] * u[1];
            let pv = p[0] * v[0] + p[1] * v[1];
            umin = umin.min(pu);
            umax = umax.max(pu);
            vmin = vmin.min(pv);
            vmax = vmax.max(pv);
        }
        let area = (umax - umin) * (vmax - vmin);
        if best.as_ref().is_none_or(|(a, _)| area < *a - 1e-9) {
            let (cu, cv) = ((umin + umax) / 2.0, (vmin + vmax) / 2.0);
            best = Some((
                area,
                RotatedRect {
                    center: [cu * u[0] + cv * v[0], cu * u[1] + cv * v[1]],
                    axis: u,
                    width: umax - umin,
                    height: vmax - vmin,
                },
            ));
        }
    }
    best.map(|(_, r)| r).unwrap_or(RotatedRect {
        center: hull[0],
        axis: [1.0, 0.0],
        width: 0.0,
        height: 0.0,
    })
}

/// Corners ordered top-left, top-right, bottom-right, bottom-left: the two left-most by y, then
/// the two right-most by y.
pub fn order_points(pts: [Point; 4]) -> Quad {
    let mut s = pts;
    s.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (mut l, mut r) = ([s[0], s[1]], [s[2], s[3]]);
    l.sort_by(|a, b| a[1].total_cmp(&b[1]));
    r.sort_by(|a, b| a[1].total_cmp(&b[1]));
    [l[0], r[0], r[1], l[1]]
}

fn inside_convex(q: &[Point; 4], p: Point) -> bool {
    let mut pos = false;
    let mut neg = false;
    for i in 0..4 {
        let c = cross(q[i], q[(i + 1) % 4], p);
        pos |= c > 1e-9;
        neg |= c < -1e-9;
    }
    !(pos && neg)
}

/// Mean probability over the pixels of the box `q` (corners truncated to whole pixels, as the
/// reference fills them).
fn box_score(prob: &[f32], w: usize, h: usize, q: &[Point; 4]) -> f64 {
    let clampi = |v: f64, hi: usize| (v as i64).clamp(0, hi as i64 - 1) as usize;
    let xmin = clampi(q.iter().map(|p| p[0]).fold(f64::MAX, f64::min).floor(), w);
    let xmax = clampi(q.iter().map(|p| p[0]).fold(f64::MIN, f64::max).ceil(), w);
    let ymin = clampi(q.iter().map(|p| p[1]).fold(f64::MAX, f64::min).floor(), h);
    let ymax = clampi(q.iter().map(|p| p[1]).fold(f64::MIN, f64::max).ceil(), h);
    let t: [Point; 4] = q.map(|p| [p[0].trunc(), p[1].trunc()]);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in ymin..=ymax {
        for x in xmin..=xmax {
            if inside_convex(&t, [x as f64, y as f64]) {
                sum += prob[y * w + x] as f64;
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Half away from zero, as Clipper rounds.
fn round_away(v: f64) -> f64 {
    if v < 0.0 {
        (v - 0.5).trunc()
    } else {
        (v + 0.5).trunc()
    }
}

/// The convex polygon `poly` offset outwards by `delta` with round joins, as Clipper's offset
/// (arc tolerance 0.25) makes it on whole pixels: each corner becomes an arc of points rounded to
/// integers. Ideally a rectangle grown by `delta` on each side with rounded corners; the rounding
/// moves its minimum-area rectangle by a fraction of a pixel, which the reference's boxes show.
pub fn offset_round(poly: &[Point], delta: f64) -> Vec<Point> {
    let n = poly.len();
    if n < 3 || delta <= 0.0 {
        return poly.to_vec();
    }
    let cx = poly.iter().map(|p| p[0]).sum::<f64>() / n as f64;
    let cy = poly.iter().map(|p| p[1]).sum::<f64>() / n as f64;
    // Outward unit normal of each edge i -> i+1.
    let normals: Vec<Option<Point>> = (0..n)
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % n]);
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let len = (dx * dx + dy * dy).sqrt();
            if len == 0.0 {
                return None;
            }
            let mut nrm = [dy / len, -dx / len];
            let mid = [(a[0] + b[0]) / 2.0 - cx, (a[1] + b[1]) / 2.0 - cy];
            if nrm[0] * mid[0] + nrm[1] * mid[1] < 0.0 {
                nrm = [-nrm[0], -nrm[1]];
            }
            Some(nrm)
        })
        .collect();
    let tol = 0.25f64.min(delta * 0.25);
    let mut steps = std::f64::consts::PI / (1.0 - tol / delta).acos();
    steps = steps.min(delta * std::f64::consts::PI);
    let step_angle = 2.0 * std::f64::consts::PI / steps;
    let mut out = Vec::new();
    for j in 0..n {
        let k = (j + n - 1) % n;
        let (Some(nk), Some(nj)) = (normals[k], normals[j]) else {
            continue;
        };
        let v = poly[j];
        let push = |out: &mut Vec<Point>, nrm: Point| {
            out.push([
                round_away(v[0] + nrm[0] * delta),
                round_away(v[1] + nrm[1] * delta),
            ]);
        };
        let sin_a = nk[0] * nj[1] - nj[0] * nk[1];
        let cos_a = nk[0] * nj[0] + nk[1] * nj[1];
        if (sin_a * delta).abs() < 1.0 && cos_a > 0.0 {
            push(&mut out, nk);
            continue;
        }
        let a = sin_a.atan2(cos_a);
        let count = ((steps / (2.0 * std::f64::consts::PI) * a.abs()).round() as usize).max(1);
        let dir = a.signum();
        let base = nk[1].atan2(nk[0]);
        for i in 0..count {
            let t = base + dir * step_angle * i as f64;
            push(&mut out, [t.cos(), t.sin()]);
        }
        push(&mut out, nj);
    }
    out
}

/// Text boxes in the pixels of an image of `dest_w` x `dest_h` from the probability map
/// (`map_w` x `map_h`), with their box scores, sorted in reading order.
pub fn boxes_from_map(
    prob: &[f32],
    map_w: usize,
    map_h: usize,
    dest_w: usize,
    dest_h: usize,
    p: &DetParams,
) -> Vec<(Quad, f32)> {
    let bits = bitmap(prob, map_w, map_h, p);
    let mut boxes = Vec::new();
    for rows in regions(&bits, map_w, map_h)
        .into_iter()
        .take(p.max_candidates)
    {
        let mut pts = Vec::with_capacity(rows.len() * 2);
        for (y, a, b) in rows {
            pts.push([a as f64, y as f64]);
            if b != a {
                pts.push([b as f64, y as f64]);
            }
        }
        let rect = min_area_rect(&pts);
        if rect.short_side() < MIN_SIZE {
            continue;
        }
        let corners = rect.corners();
        let score = box_score(prob, map_w, map_h, &corners);
        if score < p.box_threshold as f64 {
            continue;
        }
        // Unclip: the offset distance from the rectangle's area and perimeter; the reference
        // offsets the corners truncated to whole pixels, so the grown box is the rectangle of those.
        let d = rect.width * rect.height * p.unclip_ratio / (2.0 * (rect.width + rect.height));
        let truncated = corners.map(|c| [c[0].trunc(), c[1].trunc()]);
        let grown = min_area_rect(&offset_round(&truncated, d));
        if grown.short_side() < MIN_SIZE + 2.0 {
            continue;
        }
        let scaled = grown.corners().map(|c| {
            [
                round_even(c[0] / map_w as f64 * dest_w as f64).clamp(0.0, dest_w as f64),
                round_even(c[1] / map_h as f64 * dest_h as f64).clamp(0.0, dest_h as f64),
            ]
        });
        let mut q = order_points(scaled);
        for c in q.iter_mut() {
            c[0] = c[0].clamp(0.0, dest_w as f64 - 1.0).trunc();
            c[1] = c[1].clamp(0.0, dest_h as f64 - 1.0).trunc();
        }
        let dist = |a: Point, b: Point| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        if dist(q[0], q[1]).trunc() <= 3.0 || dist(q[0], q[3]).trunc() <= 3.0 {
            continue;
        }
        boxes.push((q, score as f32));
    }
    sort_reading_order(&mut boxes);
    boxes
}

/// Top to bottom by the top-left corner, then left to right among neighbours less than 10 pixels
/// apart in height (the reference's order).
pub fn sort_reading_order<T>(boxes: &mut [(Quad, T)]) {
    boxes.sort_by(|a, b| {
        a.0[0][1]
            .total_cmp(&b.0[0][1])
            .then(a.0[0][0].total_cmp(&b.0[0][0]))
    });
    for i in 0..boxes.len().saturating_sub(1) {
        for j in (0..=i).rev() {
            if (boxes[j + 1].0[0][1] - boxes[j].0[0][1]).abs() < 10.0
                && boxes[j + 1].0[0][0] < boxes[j].0[0][0]
            {
                boxes.swap(j, j + 1);
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_size_scales_the_short_side_up_to_the_limit_in_multiples_of_32() {
        // 324x223: ratio 736/223 -> 1069x736 -> 1056x736.
        assert_eq!(input_size(324, 223, 736), (1056, 736));
        // 556x257 -> 1592x736 -> 1600x736.
        assert_eq!(input_size(556, 257, 736), (1600, 736));
        // Never scaled down; only rounded.
        assert_eq!(input_size(1000, 800, 736), (992, 800));
        assert_eq!(input_size(10, 10, 0), (32, 32));
    }

    #[test]
    fn min_area_rect_of_a_rotated_rectangle() {
        let c = [10.0, 20.0];
        let a = 30f64.to_radians();
        let u = [a.cos(), a.sin()];
        let r = RotatedRect {
            center: c,
            axis: u,
            width: 40.0,
            height: 10.0,
        };
        let m = min_area_rect(&r.corners());
        let (w, h) = if m.width > m.height {
            (m.width, m.height)
        } else {
            (m.height, m.width)
        };
        assert!((w - 40.0).abs() < 1e-9 && (h - 10.0).abs() < 1e-9);
        assert!((m.center[0] - 10.0).abs() < 1e-9 && (m.center[1] - 20.0).abs() < 1e-9);
        // Growing keeps the centre and adds 2d to each side.
        let g = m.grown(2.0);
        assert!((g.width * g.height - 44.0 * 14.0).abs() < 1e-6);
    }

    #[test]
    fn round_offset_of_a_rectangle_is_boxed_by_the_grown_rectangle() {
        let rect = [[10.0, 10.0], [110.0, 10.0], [110.0, 30.0], [10.0, 30.0]];
        let pts = offset_round(&rect, 5.0);
        assert!(pts.len() > 8, "round joins add points: {pts:?}");
        assert!(
            pts.iter()
                .all(|p| p[0].fract() == 0.0 && p[1].fract() == 0.0)
        );
        let r = min_area_rect(&pts);
        let (w, h) = (r.width.max(r.height), r.width.min(r.height));
        assert!((w - 110.0).abs() < 1e-6 && (h - 30.0).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn order_points_from_any_order() {
        let q = order_points([[10.0, 5.0], [0.0, 0.0], [0.0, 5.0], [10.0, 0.0]]);
        assert_eq!(q, [[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [0.0, 5.0]]);
    }

    #[test]
    fn a_text_blob_becomes_a_grown_box_in_image_pixels() {
        // A 40x10 map with a 20x4 blob at (10,3); image twice the size.
        let (w, h) = (40, 10);
        let mut prob = vec![0.0f32; w * h];
        for y in 3..7 {
            for x in 10..30 {
                prob[y * w + x] = 0.9;
            }
        }
        let boxes = boxes_from_map(&prob, w, h, 80, 20, &DetParams::default());
        assert_eq!(boxes.len(), 1);
        let (q, score) = boxes[0];
        // The box (with the dilated row and column) holds 80 pixels of 0.9 among 21x5.
        assert!((score - 0.9 * 80.0 / 105.0).abs() < 1e-4, "{score}");
        // Dilation adds a row and a column: pixels 10..=30 x 3..=7, rectangle 20x4 between centres.
        // d = 20*4*1.6/48 = 2.67, offset on whole pixels: x 7..33, y 0..10; scaled by 2, clipped.
        assert_eq!(q, [[14.0, 0.0], [66.0, 0.0], [66.0, 19.0], [14.0, 19.0]]);
        // Weak blobs are dropped.
        let weak: Vec<f32> = prob.iter().map(|v| v * 0.5).collect();
        assert!(boxes_from_map(&weak, w, h, 80, 20, &DetParams::default()).is_empty());
    }

    #[test]
    fn reading_order_swaps_boxes_on_the_same_line() {
        let b = |x: f64, y: f64| ([[x, y], [x + 5.0, y], [x + 5.0, y + 5.0], [x, y + 5.0]], ());
        let mut boxes = vec![b(50.0, 0.0), b(0.0, 4.0), b(0.0, 30.0)];
        sort_reading_order(&mut boxes);
        let xs: Vec<f64> = boxes.iter().map(|b| b.0[0][0]).collect();
        assert_eq!(xs, vec![0.0, 50.0, 0.0]);
    }
}
