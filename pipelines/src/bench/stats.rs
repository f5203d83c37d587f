//! The arithmetic of the benchmark: percentiles, least-squares slopes, spread; pure, unit-tested.

/// The `q` quantile (0..=1) of `values` by linear interpolation between the closest ranks (numpy's
/// default); `None` for no values.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// Least-squares line `y = a + b x` through the points; returns the slope `b`, `None` with fewer than
/// two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// Standard error of the least-squares slope (how far the slope may be from 0 by noise alone).
pub fn slope_stderr(points: &[(f64, f64)]) -> Option<f64> {
    let b = slope(points)?;
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let a = my - b * mx;
    let sse: f64 = points.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    Some((sse / (n - 2.0) / sxx).sqrt())
}

/// Whether `points` (time, value) grow steadily: the least-squares slope of their first half and of
/// their second half, each with whether it is above zero by more than two standard errors. A leak
/// grows in both halves; a one-time step (an allocator taking another arena, a pool filling up)
/// shows in one half only. `None` with fewer than 6 points.
pub fn growth(points: &[(f64, f64)]) -> Option<Growth> {
    if points.len() < 6 {
        return None;
    }
    let (a, b) = points.split_at(points.len() / 2);
    let half = |p: &[(f64, f64)]| -> Option<(f64, bool)> {
        let s = slope(p)?;
        let se = slope_stderr(p)?;
        Some((s, s > 2.0 * se))
    };
    let (first, first_up) = half(a)?;
    let (second, second_up) = half(b)?;
    Some(Growth {
        first,
        second,
        trend: first_up && second_up,
    })
}

/// See [`growth`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// Slope of the first half, per unit of time.
    pub first: f64,
    /// Slope of the second half.
    pub second: f64,
    /// Both halves grow by more than noise.
    pub trend: bool,
}

/// Mean and (population) standard deviation; `None` for no values.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let m = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n;
    Some((m, var.sqrt()))
}

/// The median of `values` (`None` for none).
pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 0.5)
}

/// Intervals between consecutive completion times of each stream (the first completion of each
/// stream has no previous one and is left out): the per-frame latencies of a stream whose frames are
/// processed one after another.
pub fn stream_intervals(completions: &[Vec<f64>]) -> Vec<f64> {
    let mut out = Vec::new();
    for times in completions {
        let mut t: Vec<f64> = times.clone();
        t.sort_by(f64::total_cmp);
        out.extend(t.windows(2).map(|w| w[1] - w[0]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_tells_a_leak_from_a_step() {
        let jitter = |i: usize| [0.3, -0.2, 0.1, -0.3, 0.2, 0.0][i % 6];
        let leak: Vec<(f64, f64)> = (0..40)
            .map(|i| (i as f64, 300.0 + 0.5 * i as f64 + jitter(i)))
            .collect();
        let g = growth(&leak).unwrap();
        assert!(g.trend && g.first > 0.4 && g.second > 0.4, "{g:?}");
        // One step of 0.7 in the middle of a flat line (the 10-minute soak's RSS).
        let step: Vec<(f64, f64)> = (0..40)
            .map(|i| (i as f64, if i < 13 { 341.6 } else { 342.3 }))
            .collect();
        let g = growth(&step).unwrap();
        assert!(!g.trend && g.second == 0.0, "{g:?}");
        assert!(slope(&step).unwrap() > 2.0 * slope_stderr(&step).unwrap());
        let flat: Vec<(f64, f64)> = (0..40).map(|i| (i as f64, 300.0 + jitter(i))).collect();
        assert!(!growth(&flat).unwrap().trend);
        assert_eq!(growth(&flat[..5]), None);
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(4.0));
        assert_eq!(percentile(&v, 0.5), Some(2.5));
        assert!((percentile(&v, 0.99).unwrap() - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(median(&[7.0]), Some(7.0));
    }

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        assert!((slope(&line).unwrap() - 2.0).abs() < 1e-12);
        assert!(slope_stderr(&line).unwrap() < 1e-9);
        let flat = [(0.0, 1.0), (1.0, -1.0), (2.0, 1.0), (3.0, -1.0)];
        let b = slope(&flat).unwrap();
        assert!(b.abs() < slope_stderr(&flat).unwrap() * 2.0, "slope {b}");
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
    }

    #[test]
    fn mean_std_and_intervals() {
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!((m, s), (5.0, 2.0));
        let iv = stream_intervals(&[vec![1.0, 1.5, 3.0], vec![10.0], vec![2.0, 2.25]]);
        assert_eq!(iv, vec![0.5, 1.5, 0.25]);
    }
}
