//! Optimal assignment (maximum total weight matching) of tracks to detections.
//!
//! The weight of a pair is typically its IoU; pairs below the association gate get weight 0 and are never
//! matched. The matching that maximises the sum of weights over the allowed pairs is found with the
//! Kuhn-Munkres (Hungarian) algorithm of the `pathfinding` crate, on weights scaled to integers.
//!
//! The problem splits into the connected components of the graph of allowed pairs, and an optimal matching
//! of the whole is the union of optimal matchings of the components. Gated IoU graphs of real scenes are
//! mostly single pairs and small clusters, so each component is solved on its own: a single row or column
//! directly, larger ones with Kuhn-Munkres on a small matrix. The result is the same as running it on the
//! whole matrix, at a fraction of the cost (O(n³) on the largest cluster instead of on all tracks).

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

/// Weights are scaled by this before the integer Kuhn-Munkres (IoU in 0..1 keeps 6 digits).
const SCALE: f32 = 1_000_000.0;

fn scaled(w: f32) -> i64 {
    if w.is_finite() && w > 0.0 {
        (w.min(1.0e6) * SCALE).round() as i64
    } else {
        0
    }
}

/// Reusable buffers for [`Assigner::solve`]; one per tracker, so that a frame allocates nothing in the
/// common case.
#[derive(Debug, Default, Clone)]
pub struct Assigner {
    parent: Vec<usize>,
    /// (component root, node) pairs, sorted to group the nodes of each component.
    order: Vec<(usize, usize)>,
    rows: Vec<usize>,
    cols: Vec<usize>,
}

impl Assigner {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            let p = self.parent[self.parent[x]];
            self.parent[x] = p;
            x = p;
        }
        x
    }

    /// Maximum weight matching on a `rows` × `cols` row-major `weights` matrix. A pair may be matched only
    /// when its weight is positive (and finite); each row and each column is matched at most once. The
    /// matched `(row, column)` pairs are written to `out` (cleared first), in no particular order. A
    /// `weights` slice shorter than `rows * cols` is treated as having no pairs.
    pub fn solve(
        &mut self,
        weights: &[f32],
        rows: usize,
        cols: usize,
        out: &mut Vec<(usize, usize)>,
    ) {
        out.clear();
        let Some(n) = rows.checked_mul(cols) else {
            return;
        };
        if n == 0 || weights.len() < n {
            return;
        }
        let allowed = |w: f32| scaled(w) > 0;
        // Union-find over rows (0..rows) and columns (rows..rows+cols).
        self.parent.clear();
        self.parent.extend(0..rows + cols);
        let mut edges = 0usize;
        for r in 0..rows {
            for c in 0..cols {
                if allowed(weights[r * cols + c]) {
                    edges += 1;
                    let (a, b) = (self.find(r), self.find(rows + c));
                    if a != b {
                        self.parent[a.max(b)] = a.min(b);
                    }
                }
            }
        }
        if edges == 0 {
            return;
        }
        self.order.clear();
        for node in 0..rows + cols {
            let root = self.find(node);
            self.order.push((root, node));
        }
        self.order.sort_unstable();
        let mut start = 0;
        while start < self.order.len() {
            let root = self.order[start].0;
            let mut end = start;
            self.rows.clear();
            self.cols.clear();
            while end < self.order.len() && self.order[end].0 == root {
                let node = self.order[end].1;
                if node < rows {
                    self.rows.push(node);
                } else {
                    self.cols.push(node - rows);
                }
                end += 1;
            }
            start = end;
            self.solve_component(weights, cols, out);
        }
    }

    /// One connected component: `self.rows` × `self.cols` (both sorted).
    fn solve_component(&self, weights: &[f32], cols: usize, out: &mut Vec<(usize, usize)>) {
        let w = |r: usize, c: usize| scaled(weights[r * cols + c]);
        match (self.rows.len(), self.cols.len()) {
            (0, _) | (_, 0) => {}
            (1, _) => {
                let r = self.rows[0];
                if let Some(&c) = self.cols.iter().max_by_key(|&&c| (w(r, c), usize::MAX - c)) {
                    out.push((r, c));
                }
            }
            (_, 1) => {
                let c = self.cols[0];
                if let Some(&r) = self.rows.iter().max_by_key(|&&r| (w(r, c), usize::MAX - r)) {
                    out.push((r, c));
                }
            }
            (nr, nc) => {
                // Kuhn-Munkres needs rows ≤ columns: transpose when there are more rows.
                let transposed = nr > nc;
                let (a, b) = if transposed {
                    (&self.cols, &self.rows)
                } else {
                    (&self.rows, &self.cols)
                };
                let mut data = Vec::with_capacity(a.len() * b.len());
                for &i in a {
                    for &j in b {
                        data.push(if transposed { w(j, i) } else { w(i, j) });
                    }
                }
                let Ok(m) = Matrix::from_vec(a.len(), b.len(), data) else {
                    return;
                };
                let (_, assignment) = kuhn_munkres(&m);
                for (ai, &bi) in assignment.iter().enumerate() {
                    let (Some(&i), Some(&j)) = (a.get(ai), b.get(bi)) else {
                        continue;
                    };
                    let (r, c) = if transposed { (j, i) } else { (i, j) };
                    // Rows matched to a column they have no edge to are unmatched.
                    if w(r, c) > 0 {
                        out.push((r, c));
                    }
                }
            }
        }
    }
}

/// [`Assigner::solve`] with fresh buffers.
pub fn assign(weights: &[f32], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    Assigner::new().solve(weights, rows, cols, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
        v.sort_unstable();
        v
    }

    fn total(w: &[f32], cols: usize, m: &[(usize, usize)]) -> f32 {
        m.iter().map(|&(r, c)| w[r * cols + c]).sum()
    }

    /// Best total weight by trying every matching (small matrices only).
    fn brute(w: &[f32], rows: usize, cols: usize) -> f32 {
        fn go(w: &[f32], rows: usize, cols: usize, r: usize, used: &mut Vec<bool>) -> f32 {
            if r == rows {
                return 0.0;
            }
            let mut best = go(w, rows, cols, r + 1, used);
            for c in 0..cols {
                let x = w[r * cols + c];
                if !used[c] && x > 0.0 {
                    used[c] = true;
                    best = best.max(x + go(w, rows, cols, r + 1, used));
                    used[c] = false;
                }
            }
            best
        }
        go(w, rows, cols, 0, &mut vec![false; cols])
    }

    #[test]
    fn optimal_beats_greedy() {
        // Greedy would take (0,0)=0.9 and leave row 1 unmatched; optimal takes 0.8 + 0.7.
        let w = [0.9, 0.8, 0.7, 0.0];
        assert_eq!(sorted(assign(&w, 2, 2)), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn rectangular_and_empty() {
        assert!(assign(&[], 0, 0).is_empty());
        assert!(assign(&[], 0, 5).is_empty());
        assert!(assign(&[], 3, 0).is_empty());
        assert!(assign(&[0.5], 2, 2).is_empty(), "short slice");
        assert!(assign(&[0.0; 6], 2, 3).is_empty(), "no allowed pair");
        // 3 rows, 2 columns
        let w = [0.5, 0.0, 0.6, 0.4, 0.0, 0.9];
        let m = sorted(assign(&w, 3, 2));
        assert_eq!(m, vec![(1, 0), (2, 1)]);
        // 2 rows, 4 columns
        let w = [0.1, 0.2, 0.0, 0.3, 0.0, 0.0, 0.5, 0.4];
        assert_eq!(sorted(assign(&w, 2, 4)), vec![(0, 3), (1, 2)]);
        // one row, one column
        assert_eq!(assign(&[0.3], 1, 1), vec![(0, 0)]);
        assert!(assign(&[f32::NAN], 1, 1).is_empty());
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut a = Assigner::new();
        let mut out = Vec::new();
        for _ in 0..300 {
            let rows = 1 + (rnd() * 6.0) as usize;
            let cols = 1 + (rnd() * 6.0) as usize;
            let w: Vec<f32> = (0..rows * cols)
                .map(|_| {
                    let x = rnd();
                    if x < 0.5 { 0.0 } else { x }
                })
                .collect();
            a.solve(&w, rows, cols, &mut out);
            let mut rs: Vec<usize> = out.iter().map(|p| p.0).collect();
            let mut cs: Vec<usize> = out.iter().map(|p| p.1).collect();
            rs.sort_unstable();
            cs.sort_unstable();
            rs.dedup();
            cs.dedup();
            assert_eq!(rs.len(), out.len(), "a row twice: {out:?}");
            assert_eq!(cs.len(), out.len(), "a column twice: {out:?}");
            assert!(out.iter().all(|&(r, c)| w[r * cols + c] > 0.0));
            let best = brute(&w, rows, cols);
            assert!(
                (total(&w, cols, &out) - best).abs() < 1e-4,
                "{rows}x{cols} {w:?}: {out:?} vs {best}"
            );
        }
    }
}
