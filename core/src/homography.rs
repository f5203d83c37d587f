//! Plane-to-plane projective maps from four point pairs, shared by the OCR crops and the ground-plane
//! calibration of the analytics.

/// The homography (3x3, row major, last element 1) mapping `from[i]` to `to[i]`: the 8x8 linear
/// system solved by Gaussian elimination with partial pivoting, on the points as given (as OpenCV's
/// `getPerspectiveTransform`, which the OCR crops follow); `None` when degenerate. Callers with
/// badly scaled points normalise them first (`analytics::speed`).
pub fn solve(from: &[[f64; 2]; 4], to: &[[f64; 2]; 4]) -> Option<[f64; 9]> {
    let mut a = [[0f64; 9]; 8];
    for i in 0..4 {
        let ([x, y], [u, v]) = (from[i], to[i]);
        a[i] = [x, y, 1.0, 0.0, 0.0, 0.0, -x * u, -y * u, u];
        a[i + 4] = [0.0, 0.0, 0.0, x, y, 1.0, -x * v, -y * v, v];
    }
    // Gaussian elimination with partial pivoting.
    for c in 0..8 {
        let p = (c..8).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        let pivot = a[c];
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                for (v, p) in row.iter_mut().zip(pivot).skip(c) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut h = [0f64; 9];
    for i in 0..8 {
        h[i] = a[i][8] / a[i][i];
    }
    h[8] = 1.0;
    Some(h)
}
