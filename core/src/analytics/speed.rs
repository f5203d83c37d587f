//! Speed on the ground plane: a camera's calibration (four image points and where they lie on the
//! ground, in metres) gives a homography from frame pixels to the ground plane; each track's anchor
//! is mapped through it, and its speed is the least-squares velocity of those positions over a
//! sliding window of stream time.
//!
//! ```yaml
//! calibration:                 # four image points, and their ground coordinates in metres …
//!   image: [[412, 310], [868, 305], [1180, 690], [95, 702]]
//!   world: [[0, 0], [7, 0], [7, 30], [0, 30]]
//!   # … or, instead of world, the image points are the corners of a rectangle on the ground, in
//!   # order around it: width metres from the 1st to the 2nd point, length from the 2nd to the 3rd.
//!   # width: 7
//!   # length: 30
//! speed: { unit: km/h, window_s: 1.0, min_distance_m: 1.0, limit: 50 }
//! ```
//!
//! A track's speed is known once its anchor has moved `min_distance_m` on the ground since it was
//! first seen and its detected positions span `window_s` (at least 90 % of it); positions of
//! predicted boxes (coasting, frames skipped by `interval`) are not used, the speed is kept.

use serde::{Deserialize, Serialize};

use super::config::{ConfigIssue, MAX_PIXELS, issue};
use crate::objects::{Point, Speed, SpeedUnit};

/// Largest magnitude of a ground coordinate, metres.
pub const MAX_METRES: f64 = 1_000_000.0;
/// Smallest distance between two ground points (and smallest rectangle side), metres.
pub const MIN_METRES: f64 = 0.01;
/// Default `speed.window_s`.
pub const DEFAULT_WINDOW_S: f64 = 1.0;
/// Default `speed.min_distance_m`.
pub const DEFAULT_MIN_DISTANCE_M: f64 = 1.0;
/// The fraction of `window_s` the detected positions must span before a speed is given.
const WINDOW_FILL: f64 = 0.9;
/// Three points whose angle has a sine below this are taken as on one line.
const MIN_SINE: f64 = 0.01;

/// The ground-plane calibration of one camera (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    /// Four points in frame pixels.
    pub image: [[f32; 2]; 4],
    /// Their ground coordinates in metres (any origin and orientation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<[[f64; 2]; 4]>,
    /// Instead of `world`: metres from the first image point to the second (and third to fourth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    /// Instead of `world`: metres from the second image point to the third (and fourth to first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<f64>,
}

/// How speeds are reported (`speed` next to `calibration`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedConfig {
    /// `km/h` (default), `m/s` or `mph`.
    #[serde(default)]
    pub unit: SpeedUnit,
    /// Seconds of stream time the velocity is fitted over. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<f64>,
    /// Metres a track must have moved on the ground before it has a speed. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_distance_m: Option<f64>,
    /// In `unit`: a `speed_above` event (name `speed`) when a track's speed rises above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

impl SpeedConfig {
    pub fn window_or_default(&self) -> f64 {
        self.window_s.unwrap_or(DEFAULT_WINDOW_S)
    }

    pub fn min_distance_or_default(&self) -> f64 {
        self.min_distance_m.unwrap_or(DEFAULT_MIN_DISTANCE_M)
    }

    /// Checks the numbers; `key` is this section's path (`speed`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigIssue> {
        if let Some(w) = self.window_s
            && !(w > 0.0 && w <= 60.0)
        {
            return Err(issue(
                format!("{key}.window_s"),
                format!("{w} is not a number of seconds in (0, 60]"),
            ));
        }
        if let Some(d) = self.min_distance_m
            && !(0.0..=1000.0).contains(&d)
        {
            return Err(issue(
                format!("{key}.min_distance_m"),
                format!("{d} is not a number of metres in 0..=1000"),
            ));
        }
        if let Some(l) = self.limit {
            check_limit(format!("{key}.limit"), l)?;
        }
        Ok(())
    }
}

/// A speed limit must be a positive, finite number.
pub(crate) fn check_limit(key: String, l: f64) -> Result<(), ConfigIssue> {
    if l > 0.0 && l.is_finite() && l < 1e6 {
        Ok(())
    } else {
        Err(issue(key, format!("{l} is not a speed above 0")))
    }
}

/// Why four points cannot calibrate: two equal, or three on one line.
fn degenerate(points: &[[f64; 2]; 4]) -> Option<String> {
    for i in 0..4 {
        for j in i + 1..4 {
            if points[i] == points[j] {
                return Some(format!("points {} and {} are the same", i + 1, j + 1));
            }
        }
    }
    for (i, j, k) in [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)] {
        let (a, b, c) = (points[i], points[j], points[k]);
        let (u, v) = ([b[0] - a[0], b[1] - a[1]], [c[0] - a[0], c[1] - a[1]]);
        let cross = u[0] * v[1] - u[1] * v[0];
        let norms = (u[0].hypot(u[1])) * (v[0].hypot(v[1]));
        if cross.abs() <= MIN_SINE * norms {
            return Some(format!(
                "points {}, {} and {} are on one line: four points, no three on a line, are needed",
                i + 1,
                j + 1,
                k + 1
            ));
        }
    }
    None
}

/// `v` as written in messages: in scientific notation when tiny or huge (`5e-324`, not 324 digits).
fn num(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-4..1e7).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Why four points are too close together to calibrate: two within `min` (`unit`).
fn too_close(points: &[[f64; 2]; 4], min: f64, unit: &str) -> Option<String> {
    for i in 0..4 {
        for j in i + 1..4 {
            let d = (points[i][0] - points[j][0]).hypot(points[i][1] - points[j][1]);
            if d < min {
                return Some(format!(
                    "points {} and {} are {} {unit} apart: at least {min} are needed",
                    i + 1,
                    j + 1,
                    num(d)
                ));
            }
        }
    }
    None
}

impl CalibrationConfig {
    /// The ground coordinates of the four image points: `world`, or the rectangle's corners.
    pub fn world_points(&self) -> Option<[[f64; 2]; 4]> {
        match (self.world, self.width, self.length) {
            (Some(w), None, None) => Some(w),
            (None, Some(w), Some(l)) => Some([[0.0, 0.0], [w, 0.0], [w, l], [0.0, l]]),
            _ => None,
        }
    }

    /// Checks the points and gives the homography; `key` is this section's path (`calibration`).
    pub fn validate(&self, key: &str) -> Result<Homography, ConfigIssue> {
        let image_key = format!("{key}.image");
        if !self
            .image
            .iter()
            .flatten()
            .all(|c| (-MAX_PIXELS..=MAX_PIXELS).contains(c))
        {
            return Err(issue(
                image_key,
                format!("coordinates must be numbers within ±{MAX_PIXELS} pixels"),
            ));
        }
        let world = match (self.world, self.width, self.length) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(issue(
                    format!("{key}.world"),
                    "give either world (four ground points) or width and length (a rectangle), not both",
                ));
            }
            (None, None, None) => {
                return Err(issue(
                    format!("{key}.world"),
                    "missing: the ground coordinates of the four image points in metres, or width \
                     and length of the rectangle they outline",
                ));
            }
            (None, Some(_), None) => {
                return Err(issue(
                    format!("{key}.length"),
                    "missing: a rectangle needs its width and its length",
                ));
            }
            (None, None, Some(_)) => {
                return Err(issue(
                    format!("{key}.width"),
                    "missing: a rectangle needs its width and its length",
                ));
            }
            (None, Some(w), Some(l)) => {
                for (k, v) in [("width", w), ("length", l)] {
                    if !(MIN_METRES..=MAX_METRES).contains(&v) {
                        return Err(issue(
                            format!("{key}.{k}"),
                            format!(
                                "{} is not a number of metres in {MIN_METRES}..={MAX_METRES}",
                                num(v)
                            ),
                        ));
                    }
                }
                [[0.0, 0.0], [w, 0.0], [w, l], [0.0, l]]
            }
            (Some(w), None, None) => {
                if !w
                    .iter()
                    .flatten()
                    .all(|c| (-MAX_METRES..=MAX_METRES).contains(c))
                {
                    return Err(issue(
                        format!("{key}.world"),
                        format!("coordinates must be numbers within ±{MAX_METRES} metres"),
                    ));
                }
                if let Some(why) = degenerate(&w).or_else(|| too_close(&w, MIN_METRES, "m")) {
                    return Err(issue(format!("{key}.world"), why));
                }
                w
            }
        };
        let image = self.image.map(|p| [f64::from(p[0]), f64::from(p[1])]);
        if let Some(why) = degenerate(&image).or_else(|| too_close(&image, 1.0, "pixel")) {
            return Err(issue(image_key, why));
        }
        Homography::from_points(&image, &world).map_err(|why| issue(key.to_string(), why))
    }
}

/// A plane-to-plane projective map (3x3, row major, `h[8]` = 1 after normalisation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography {
    h: [f64; 9],
}

impl Homography {
    /// The map taking each `from[i]` to `to[i]` (direct linear transform on normalised points).
    /// Fails when the points do not determine one: a singular system, or an image region crossed by
    /// the horizon of the plane (the points are not in the same order around both quadrilaterals).
    pub fn from_points(from: &[[f64; 2]; 4], to: &[[f64; 2]; 4]) -> Result<Self, String> {
        let (nf, tf) = normaliser(from);
        let (nt, tt) = normaliser(to);
        let from_n = from.map(|p| apply(&nf, p));
        let to_n = to.map(|p| apply(&nt, p));
        let hn = crate::homography::solve(&from_n, &to_n)
            .ok_or("the points do not determine a ground plane (singular system)")?;
        // Denormalise: H = Tt⁻¹ · Hn · Tf.
        let h = mul(&mul(&inverse_similarity(&tt), &hn), &tf);
        let Some(h) = normalised(h) else {
            return Err("the points do not determine a ground plane (degenerate map)".into());
        };
        let out = Homography { h };
        let w: Vec<f64> = from.iter().map(|p| out.w(*p)).collect();
        if !(w.iter().all(|&w| w > 0.0) || w.iter().all(|&w| w < 0.0)) {
            return Err(
                "the image points and the ground points are not in the same order around their \
                 quadrilaterals (the map folds the plane)"
                    .into(),
            );
        }
        Ok(out)
    }

    fn w(&self, p: [f64; 2]) -> f64 {
        self.h[6] * p[0] + self.h[7] * p[1] + self.h[8]
    }

    /// The image of `p`, or `None` on (or beyond) the plane's horizon.
    pub fn map(&self, p: [f64; 2]) -> Option<[f64; 2]> {
        let h = &self.h;
        let w = self.w(p);
        if w.abs() < 1e-12 {
            return None;
        }
        let q = [
            (h[0] * p[0] + h[1] * p[1] + h[2]) / w,
            (h[3] * p[0] + h[4] * p[1] + h[5]) / w,
        ];
        q.iter().all(|c| c.is_finite()).then_some(q)
    }

    /// The image of a frame point on the ground plane, metres.
    pub fn ground(&self, p: Point) -> Option<[f64; 2]> {
        self.map([f64::from(p.x), f64::from(p.y)])
    }

    /// The inverse map (ground to frame pixels), when it exists.
    pub fn inverse(&self) -> Option<Homography> {
        let m = &self.h;
        let c = |a: usize, b: usize, c: usize, d: usize| m[a] * m[b] - m[c] * m[d];
        let adj = [
            c(4, 8, 5, 7),
            -c(1, 8, 2, 7),
            c(1, 5, 2, 4),
            -c(3, 8, 5, 6),
            c(0, 8, 2, 6),
            -c(0, 5, 2, 3),
            c(3, 7, 4, 6),
            -c(0, 7, 1, 6),
            c(0, 4, 1, 3),
        ];
        normalised(adj).map(|h| Homography { h })
    }
}

/// Scales `h` so that its last element is 1 (or its largest is 1 when that is 0); `None` when not finite.
fn normalised(h: [f64; 9]) -> Option<[f64; 9]> {
    let s = if h[8].abs() > 1e-12 {
        h[8]
    } else {
        h.iter().copied().fold(0.0, |a: f64, b| a.max(b.abs()))
    };
    let out = h.map(|v| v / s);
    (s != 0.0 && out.iter().all(|v| v.is_finite())).then_some(out)
}

/// A similarity (translation to the centroid, scale to a mean distance of √2) and its matrix.
fn normaliser(p: &[[f64; 2]; 4]) -> ([f64; 3], [f64; 9]) {
    let cx = p.iter().map(|q| q[0]).sum::<f64>() / 4.0;
    let cy = p.iter().map(|q| q[1]).sum::<f64>() / 4.0;
    let d = p.iter().map(|q| (q[0] - cx).hypot(q[1] - cy)).sum::<f64>() / 4.0;
    let s = if d > 0.0 {
        std::f64::consts::SQRT_2 / d
    } else {
        1.0
    };
    (
        [s, cx, cy],
        [s, 0.0, -s * cx, 0.0, s, -s * cy, 0.0, 0.0, 1.0],
    )
}

fn apply(n: &[f64; 3], p: [f64; 2]) -> [f64; 2] {
    [n[0] * (p[0] - n[1]), n[0] * (p[1] - n[2])]
}

fn inverse_similarity(t: &[f64; 9]) -> [f64; 9] {
    let s = t[0];
    [
        1.0 / s,
        0.0,
        -t[2] / s,
        0.0,
        1.0 / s,
        -t[5] / s,
        0.0,
        0.0,
        1.0,
    ]
}

fn mul(a: &[f64; 9], b: &[f64; 9]) -> [f64; 9] {
    let mut c = [0.0; 9];
    for r in 0..3 {
        for k in 0..3 {
            c[r * 3 + k] = (0..3).map(|j| a[r * 3 + j] * b[j * 3 + k]).sum();
        }
    }
    c
}

/// One track's ground positions and speed.
#[derive(Debug, Clone, Default)]
pub struct SpeedTrack {
    /// Detected positions (stream time s, ground m) within the window, oldest first.
    samples: std::collections::VecDeque<(f64, [f64; 2])>,
    /// The first ground position of the track.
    first: Option<[f64; 2]>,
    /// The track has moved the minimum distance from `first`.
    moved: bool,
    /// Latest estimate, m/s.
    mps: Option<f64>,
}

impl SpeedTrack {
    /// Adds the position `g` (metres) at stream time `t` (s) when `detected`, and returns the
    /// track's speed in m/s when known (see the module documentation).
    pub fn update(
        &mut self,
        t: f64,
        g: [f64; 2],
        detected: bool,
        window: f64,
        min_distance: f64,
    ) -> Option<f64> {
        if !detected || !t.is_finite() {
            return self.mps;
        }
        if self.samples.back().is_some_and(|&(last, _)| t <= last) {
            // Stream time went back (a new segment): start again.
            self.samples.clear();
        }
        let first = *self.first.get_or_insert(g);
        if !self.moved {
            self.moved = (g[0] - first[0]).hypot(g[1] - first[1]) >= min_distance;
        }
        self.samples.push_back((t, g));
        while self
            .samples
            .front()
            .is_some_and(|&(s, _)| s < t - window - 1e-9)
        {
            self.samples.pop_front();
        }
        let span = t - self.samples.front().map_or(t, |s| s.0);
        if self.moved && span >= WINDOW_FILL * window {
            self.mps = least_squares_speed(&self.samples);
        }
        self.mps
    }

    /// The latest estimate, m/s.
    pub fn mps(&self) -> Option<f64> {
        self.mps
    }
}

/// The magnitude of the least-squares velocity of `(t, [x, y])` samples.
fn least_squares_speed(s: &std::collections::VecDeque<(f64, [f64; 2])>) -> Option<f64> {
    let n = s.len() as f64;
    if s.len() < 2 {
        return None;
    }
    let t0 = s.front()?.0;
    let mt = s.iter().map(|p| p.0 - t0).sum::<f64>() / n;
    let (mut stt, mut stx, mut sty) = (0.0, 0.0, 0.0);
    let mx = s.iter().map(|p| p.1[0]).sum::<f64>() / n;
    let my = s.iter().map(|p| p.1[1]).sum::<f64>() / n;
    for &(t, [x, y]) in s {
        let dt = t - t0 - mt;
        stt += dt * dt;
        stx += dt * (x - mx);
        sty += dt * (y - my);
    }
    if stt <= 0.0 {
        return None;
    }
    let v = (stx / stt).hypot(sty / stt);
    v.is_finite().then_some(v)
}

/// A speed in `unit` from m/s.
pub fn speed_in(mps: f64, unit: SpeedUnit) -> Speed {
    Speed {
        value: (mps * unit.per_mps()) as f32,
        unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f64; 2], b: [f64; 2], tol: f64) -> bool {
        (a[0] - b[0]).abs() <= tol && (a[1] - b[1]).abs() <= tol
    }

    #[test]
    fn homography_maps_the_four_points_and_inverts() {
        let image = [
            [412.0, 310.0],
            [868.0, 305.0],
            [1180.0, 690.0],
            [95.0, 702.0],
        ];
        let world = [[0.0, 0.0], [7.0, 0.0], [7.0, 30.0], [0.0, 30.0]];
        let h = Homography::from_points(&image, &world).unwrap();
        for (i, w) in image.iter().zip(&world) {
            assert!(close(h.map(*i).unwrap(), *w, 1e-9), "{i:?} -> {w:?}");
        }
        let inv = h.inverse().unwrap();
        for (i, w) in image.iter().zip(&world) {
            assert!(close(inv.map(*w).unwrap(), *i, 1e-6), "{w:?} -> {i:?}");
        }
        // The centre of the rectangle on the ground is where the image diagonals cross.
        let c = inv.map([3.5, 15.0]).unwrap();
        let g = h.map(c).unwrap();
        assert!(close(g, [3.5, 15.0], 1e-9));
    }

    #[test]
    fn calibration_errors_name_the_key() {
        let mut c = CalibrationConfig {
            image: [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]],
            world: None,
            width: Some(3.0),
            length: Some(4.0),
        };
        let h = c.validate("calibration").unwrap();
        assert!(close(h.map([100.0, 100.0]).unwrap(), [3.0, 4.0], 1e-9));
        let err = |c: &CalibrationConfig| c.validate("calibration").unwrap_err().to_string();
        c.image[2] = [200.0, 0.0];
        assert_eq!(
            err(&c),
            "calibration.image: points 1, 2 and 3 are on one line: four points, no three on a line, are needed"
        );
        c.image[2] = [100.0, 0.0];
        assert_eq!(err(&c), "calibration.image: points 2 and 3 are the same");
        c.image[2] = [100.0, 100.0];
        c.length = None;
        assert_eq!(
            err(&c),
            "calibration.length: missing: a rectangle needs its width and its length"
        );
        c.length = Some(-1.0);
        assert!(err(&c).starts_with("calibration.length: -1 is not a number of metres"));
        // A needle: found by schemathesis (5e-324 m wide), refused by name.
        c.length = Some(20.0);
        c.width = Some(5e-324);
        assert!(
            err(&c).starts_with("calibration.width: 5e-324 is not a number of metres in 0.01..="),
            "{}",
            err(&c)
        );
        c.width = None;
        c.length = None;
        assert!(err(&c).starts_with("calibration.world: missing"));
        c.world = Some([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 5.0]]);
        assert!(err(&c).starts_with("calibration.world: points 1, 2 and 3 are on one line"));
        // A bow tie: the ground points in another order than the image points.
        c.world = Some([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.2, 4.5]]);
        let e = err(&c);
        assert!(
            e.starts_with(
                "calibration: the image points and the ground points are not in the same order"
            ),
            "{e}"
        );
        c.world = Some([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [0.0, 4.0]]);
        c.width = Some(3.0);
        assert!(err(&c).starts_with("calibration.world: give either world"));
        c.width = None;
        c.image[0] = [f32::NAN, 0.0];
        assert!(err(&c).starts_with("calibration.image: coordinates must be numbers"));
    }

    #[test]
    fn speed_is_the_fitted_velocity_once_the_window_is_full() {
        let mut s = SpeedTrack::default();
        // 10 m/s along x, 25 frames/s.
        let mut got = Vec::new();
        for k in 0..50 {
            let t = k as f64 / 25.0;
            got.push(s.update(t, [10.0 * t, 2.0], true, 1.0, 1.0));
        }
        // Not before 0.9 s of samples.
        assert!(got[..23].iter().all(Option::is_none), "{got:?}");
        let v = got[49].unwrap();
        assert!((v - 10.0).abs() < 1e-9, "{v}");
        // Predicted positions are not used; the speed is kept.
        assert_eq!(s.update(2.04, [0.0, 0.0], false, 1.0, 1.0), Some(v));
        // A track that stays still has none.
        let mut still = SpeedTrack::default();
        for k in 0..50 {
            let t = k as f64 / 25.0;
            assert_eq!(still.update(t, [0.01 * t, 0.0], true, 1.0, 1.0), None);
        }
    }

    #[test]
    fn units() {
        assert!((speed_in(10.0, SpeedUnit::Kmh).value - 36.0).abs() < 1e-4);
        assert!((speed_in(10.0, SpeedUnit::Mps).value - 10.0).abs() < 1e-6);
        assert!((speed_in(10.0, SpeedUnit::Mph).value - 22.369_363).abs() < 1e-3);
    }
}
