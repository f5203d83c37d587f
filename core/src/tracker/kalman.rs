//! Constant-velocity Kalman filter on a box.
//!
//! The state is `[cx, cy, w, h, vcx, vcy, vw, vh]` (centre, size and their per-frame velocities) and the
//! measurement is `[cx, cy, w, h]`. Noise follows the DeepSORT/ByteTrack convention, with standard
//! deviations proportional to the box size (the width for `cx` and `w`, the height for `cy` and `h`, as in
//! BoT-SORT's `xywh` variant): position `σp = 1/20` of the size, velocity `σv = 1/160`.
//!
//! With the transition `F = [[I, I], [0, I]]` and diagonal `Q`, `R` and initial `P`, the 8×8 covariance
//! stays block diagonal: each coordinate with its velocity is an independent 2-state filter. The filter
//! therefore runs as four 2-state filters on plain arrays — the same numbers as the dense 8×8 form (a test
//! below checks this against a dense implementation) for a fraction of the arithmetic.

use crate::objects::BBox;

/// Standard deviation of the position noise, relative to the box size.
const STD_POSITION: f32 = 1.0 / 20.0;
/// Standard deviation of the velocity noise, relative to the box size.
const STD_VELOCITY: f32 = 1.0 / 160.0;
/// Smallest width/height a predicted box is given.
const MIN_SIZE: f32 = 1.0;

/// One coordinate and its velocity: mean `[p, v]` and symmetric covariance `[pp, pv, vv]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    mean: [f32; 2],
    cov: [f32; 3],
}

impl Axis {
    fn new(z: f32, scale: f32) -> Self {
        let sp = 2.0 * STD_POSITION * scale;
        let sv = 10.0 * STD_VELOCITY * scale;
        Self {
            mean: [z, 0.0],
            cov: [sp * sp, 0.0, sv * sv],
        }
    }

    /// `x = F x`, `P = F P Fᵀ + Q`.
    fn predict(&mut self, scale: f32) {
        let qp = (STD_POSITION * scale).powi(2);
        let qv = (STD_VELOCITY * scale).powi(2);
        let [pp, pv, vv] = self.cov;
        self.mean[0] += self.mean[1];
        self.cov = [pp + 2.0 * pv + vv + qp, pv + vv, vv + qv];
    }

    /// Kalman update with a measurement `z` of the position.
    fn update(&mut self, z: f32, scale: f32) {
        let r = (STD_POSITION * scale).powi(2);
        let [pp, pv, vv] = self.cov;
        let s = pp + r;
        if s.is_nan() || s <= 0.0 {
            return;
        }
        let (k0, k1) = (pp / s, pv / s);
        let y = z - self.mean[0];
        self.mean[0] += k0 * y;
        self.mean[1] += k1 * y;
        self.cov = [pp - k0 * pp, pv - k0 * pv, vv - k1 * pv];
    }
}

/// A constant-velocity Kalman filter on a box; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KalmanBox {
    /// cx, cy, w, h.
    axes: [Axis; 4],
}

fn measurement(b: &BBox) -> [f32; 4] {
    [b.x + b.w / 2.0, b.y + b.h / 2.0, b.w, b.h]
}

impl KalmanBox {
    /// A filter at `bbox` with zero velocity and a large velocity uncertainty.
    pub fn new(bbox: &BBox) -> Self {
        let z = measurement(bbox);
        let (w, h) = (bbox.w.abs().max(MIN_SIZE), bbox.h.abs().max(MIN_SIZE));
        let scales = [w, h, w, h];
        Self {
            axes: std::array::from_fn(|i| Axis::new(z[i], scales[i])),
        }
    }

    fn scales(&self) -> [f32; 4] {
        let w = self.axes[2].mean[0].abs().max(MIN_SIZE);
        let h = self.axes[3].mean[0].abs().max(MIN_SIZE);
        [w, h, w, h]
    }

    /// Advances the state by one frame.
    pub fn predict(&mut self) {
        let scales = self.scales();
        for (a, s) in self.axes.iter_mut().zip(scales) {
            a.predict(s);
        }
    }

    /// Corrects the state with a detected box.
    pub fn update(&mut self, bbox: &BBox) {
        let z = measurement(bbox);
        if z.iter().any(|v| !v.is_finite()) {
            return;
        }
        let scales = self.scales();
        for ((a, s), z) in self.axes.iter_mut().zip(scales).zip(z) {
            a.update(z, s);
        }
    }

    /// The box of the current state (width and height at least 1 pixel).
    pub fn bbox(&self) -> BBox {
        let w = self.axes[2].mean[0].max(MIN_SIZE);
        let h = self.axes[3].mean[0].max(MIN_SIZE);
        BBox::new(
            self.axes[0].mean[0] - w / 2.0,
            self.axes[1].mean[0] - h / 2.0,
            w,
            h,
        )
    }

    /// Velocity of `[cx, cy, w, h]` in pixels per frame.
    pub fn velocity(&self) -> [f32; 4] {
        std::array::from_fn(|i| self.axes[i].mean[1])
    }

    /// Sets the velocity of the size (`w`, `h`) to zero, e.g. while a track is lost, so that a box
    /// predicted for many frames does not grow or shrink without bound.
    pub fn stop_size_change(&mut self) {
        self.axes[2].mean[1] = 0.0;
        self.axes[3].mean[1] = 0.0;
    }

    /// False once the state holds NaN or infinities (then the track should be dropped).
    pub fn is_finite(&self) -> bool {
        self.axes
            .iter()
            .all(|a| a.mean.iter().chain(&a.cov).all(|v| v.is_finite()))
    }

    /// The full 8×8 covariance in state order `[cx, cy, w, h, vcx, vcy, vw, vh]` (for inspection).
    pub fn covariance(&self) -> [[f32; 8]; 8] {
        let mut p = [[0.0; 8]; 8];
        for (i, a) in self.axes.iter().enumerate() {
            p[i][i] = a.cov[0];
            p[i][i + 4] = a.cov[1];
            p[i + 4][i] = a.cov[1];
            p[i + 4][i + 4] = a.cov[2];
        }
        p
    }

    /// The state `[cx, cy, w, h, vcx, vcy, vw, vh]`.
    pub fn state(&self) -> [f32; 8] {
        std::array::from_fn(|i| self.axes[i % 4].mean[i / 4])
    }
}

#[cfg(test)]
// The dense reference filter is written with indices, like the formulas.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;

    /// A straightforward dense 8×8 Kalman filter (f64) with the same model, to check the decoupled one.
    struct Dense {
        x: [f64; 8],
        p: [[f64; 8]; 8],
    }

    type M8 = [[f64; 8]; 8];

    fn mul(a: &M8, b: &M8) -> M8 {
        let mut c = [[0.0; 8]; 8];
        for i in 0..8 {
            for j in 0..8 {
                c[i][j] = (0..8).map(|k| a[i][k] * b[k][j]).sum();
            }
        }
        c
    }

    fn transpose(a: &M8) -> M8 {
        let mut t = [[0.0; 8]; 8];
        for i in 0..8 {
            for j in 0..8 {
                t[i][j] = a[j][i];
            }
        }
        t
    }

    /// Inverse of a 4×4 matrix by Gauss-Jordan elimination with partial pivoting.
    fn inv4(m: [[f64; 4]; 4]) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 8]; 4];
        for i in 0..4 {
            a[i][..4].copy_from_slice(&m[i]);
            a[i][4 + i] = 1.0;
        }
        for c in 0..4 {
            let piv = (c..4)
                .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
                .unwrap();
            a.swap(c, piv);
            let d = a[c][c];
            for v in a[c].iter_mut() {
                *v /= d;
            }
            for r in 0..4 {
                if r != c {
                    let f = a[r][c];
                    for k in 0..8 {
                        a[r][k] -= f * a[c][k];
                    }
                }
            }
        }
        let mut out = [[0.0; 4]; 4];
        for i in 0..4 {
            out[i].copy_from_slice(&a[i][4..]);
        }
        out
    }

    impl Dense {
        fn new(b: &BBox) -> Self {
            let z = measurement(b).map(f64::from);
            let (w, h) = (f64::from(b.w), f64::from(b.h));
            let s = [w, h, w, h];
            let (sp, sv) = (f64::from(STD_POSITION), f64::from(STD_VELOCITY));
            let mut p = [[0.0; 8]; 8];
            for i in 0..4 {
                p[i][i] = (2.0 * sp * s[i]).powi(2);
                p[i + 4][i + 4] = (10.0 * sv * s[i]).powi(2);
            }
            let mut x = [0.0; 8];
            x[..4].copy_from_slice(&z);
            Self { x, p }
        }

        fn scales(&self) -> [f64; 4] {
            [self.x[2], self.x[3], self.x[2], self.x[3]]
        }

        fn predict(&mut self) {
            let s = self.scales();
            let (sp, sv) = (f64::from(STD_POSITION), f64::from(STD_VELOCITY));
            let mut f = [[0.0; 8]; 8];
            for i in 0..8 {
                f[i][i] = 1.0;
            }
            for i in 0..4 {
                f[i][i + 4] = 1.0;
            }
            let mut x = [0.0; 8];
            for i in 0..8 {
                x[i] = (0..8).map(|k| f[i][k] * self.x[k]).sum();
            }
            self.x = x;
            let mut p = mul(&mul(&f, &self.p), &transpose(&f));
            for i in 0..4 {
                p[i][i] += (sp * s[i]).powi(2);
                p[i + 4][i + 4] += (sv * s[i]).powi(2);
            }
            self.p = p;
        }

        fn update(&mut self, b: &BBox) {
            let z = measurement(b).map(f64::from);
            let s = self.scales();
            let sp = f64::from(STD_POSITION);
            // H = [I 0]: S = P[:4,:4] + R, K = P[:, :4] S⁻¹
            let mut sm = [[0.0; 4]; 4];
            for i in 0..4 {
                for j in 0..4 {
                    sm[i][j] = self.p[i][j];
                }
                sm[i][i] += (sp * s[i]).powi(2);
            }
            let si = inv4(sm);
            let mut k = [[0.0; 4]; 8];
            for i in 0..8 {
                for j in 0..4 {
                    k[i][j] = (0..4).map(|m| self.p[i][m] * si[m][j]).sum();
                }
            }
            let y: Vec<f64> = (0..4).map(|i| z[i] - self.x[i]).collect();
            for i in 0..8 {
                self.x[i] += (0..4).map(|j| k[i][j] * y[j]).sum::<f64>();
            }
            // P = (I - K H) P
            let mut p = self.p;
            for i in 0..8 {
                for j in 0..8 {
                    p[i][j] -= (0..4).map(|m| k[i][m] * self.p[m][j]).sum::<f64>();
                }
            }
            self.p = p;
        }
    }

    fn close(a: f32, b: f64, tol: f64) -> bool {
        (f64::from(a) - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn matches_the_dense_filter() {
        let b0 = BBox::new(100.0, 50.0, 40.0, 80.0);
        let mut k = KalmanBox::new(&b0);
        let mut d = Dense::new(&b0);
        for f in 1..40 {
            k.predict();
            d.predict();
            if f % 5 != 0 {
                let t = f as f32;
                let b = BBox::new(100.0 + 3.0 * t, 50.0 - t, 40.0 + 0.2 * t, 80.0 + 0.1 * t);
                k.update(&b);
                d.update(&b);
            }
            let (s, p) = (k.state(), k.covariance());
            for i in 0..8 {
                assert!(
                    close(s[i], d.x[i], 1e-4),
                    "frame {f} x[{i}]: {s:?} {:?}",
                    d.x
                );
                for j in 0..8 {
                    assert!(
                        close(p[i][j], d.p[i][j], 1e-3),
                        "frame {f} P[{i}][{j}]: {} vs {}",
                        p[i][j],
                        d.p[i][j]
                    );
                }
            }
        }
    }

    #[test]
    fn prediction_continues_the_velocity() {
        let mut k = KalmanBox::new(&BBox::new(0.0, 0.0, 20.0, 40.0));
        // A box moving 4 px/frame right and 2 px/frame down.
        for f in 1..=30 {
            k.predict();
            let t = f as f32;
            k.update(&BBox::new(4.0 * t, 2.0 * t, 20.0, 40.0));
        }
        let v = k.velocity();
        assert!(
            (v[0] - 4.0).abs() < 0.2 && (v[1] - 2.0).abs() < 0.2,
            "{v:?}"
        );
        assert!(v[2].abs() < 0.1 && v[3].abs() < 0.1, "{v:?}");
        let before = k.bbox();
        k.predict();
        k.predict();
        let after = k.bbox();
        assert!(
            (after.x - before.x - 8.0).abs() < 0.5,
            "{before:?} {after:?}"
        );
        assert!(
            (after.y - before.y - 4.0).abs() < 0.5,
            "{before:?} {after:?}"
        );
        assert!((after.w - 20.0).abs() < 0.5 && (after.h - 40.0).abs() < 0.5);
    }

    #[test]
    fn update_converges_and_uncertainty_shrinks() {
        let truth = BBox::new(50.0, 60.0, 30.0, 60.0);
        let mut k = KalmanBox::new(&BBox::new(40.0, 70.0, 36.0, 50.0));
        let p0 = k.covariance()[0][0];
        for i in 0..50 {
            k.predict();
            // ±1 px of measurement noise around a still box
            let n = if i % 2 == 0 { 1.0 } else { -1.0 };
            k.update(&BBox::new(truth.x + n, truth.y - n, truth.w, truth.h));
        }
        let b = k.bbox();
        assert!(
            (b.x - truth.x).abs() < 1.0 && (b.y - truth.y).abs() < 1.0,
            "{b:?}"
        );
        assert!(
            (b.w - truth.w).abs() < 1.0 && (b.h - truth.h).abs() < 1.0,
            "{b:?}"
        );
        assert!(k.covariance()[0][0] < p0);
        let v = k.velocity();
        assert!(v.iter().all(|v| v.abs() < 0.3), "{v:?}");
        // without updates the uncertainty grows again
        let p = k.covariance()[0][0];
        k.predict();
        assert!(k.covariance()[0][0] > p);
        assert!(k.is_finite());
    }

    #[test]
    fn bad_input_is_ignored() {
        let mut k = KalmanBox::new(&BBox::new(0.0, 0.0, 10.0, 10.0));
        k.update(&BBox::new(f32::NAN, 0.0, 10.0, 10.0));
        assert!(k.is_finite());
        let b = KalmanBox::new(&BBox::new(5.0, 5.0, 0.0, 0.0)).bbox();
        assert!(b.w >= 1.0 && b.h >= 1.0);
    }
}
