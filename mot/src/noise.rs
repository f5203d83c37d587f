//! Noisy detections made from ground truth, to test trackers without a detector.
//!
//! For every considered ground-truth box ([`MotRecord::is_considered`]) a detection is dropped with
//! probability `p_miss`; the others are jittered (Gaussian noise on position and size proportional
//! to the box size) and get a confidence drawn around `tp_score`. Every frame also gets a Poisson
//! number of false positives (mean `fp_per_frame`) placed uniformly inside the frame, sized like a
//! random ground-truth box, with confidences drawn around `fp_score`. The two score distributions
//! overlap, so a tracker's low-score association stage (ByteTrack) has true detections to recover
//! and false positives to reject.
//!
//! The output depends only on the ground truth and the [`NoiseConfig`] (its `seed` included): the
//! generator is a self-contained SplitMix64, and boxes are visited in frame and id order.

use thiserror::Error;
use vigil_core::rng::SplitMix64;

use super::eval::{Det, FrameDets};
use super::format::{MotRecord, Rect};

/// Rates of the noise; [`Default`] gives the values stated on each field.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseConfig {
    /// Seed of the random generator (default 42).
    pub seed: u64,
    /// Probability that a ground-truth box gets no detection (default 0.1).
    pub p_miss: f64,
    /// Standard deviation of the position noise as a fraction of the box width/height, and of the
    /// relative size noise (default 0.05).
    pub jitter: f64,
    /// Mean number of false positives per frame, Poisson distributed (default 0.5).
    pub fp_per_frame: f64,
    /// Frame size in pixels that false positives are placed in (default 640 x 480, TUD-Campus).
    pub frame_width: f64,
    pub frame_height: f64,
    /// Mean and standard deviation of true detections' confidence (default 0.75, 0.15).
    pub tp_score: (f64, f64),
    /// Mean and standard deviation of false positives' confidence (default 0.35, 0.15).
    pub fp_score: (f64, f64),
    /// Confidences are clamped to this range (default 0.01..=0.99).
    pub score_range: (f64, f64),
    /// Frames generated: `1..=num_frames`; `None` = up to the last ground-truth frame.
    pub num_frames: Option<u32>,
    /// Class of every detection (default 0).
    pub class_id: i32,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            p_miss: 0.1,
            jitter: 0.05,
            fp_per_frame: 0.5,
            frame_width: 640.0,
            frame_height: 480.0,
            tp_score: (0.75, 0.15),
            fp_score: (0.35, 0.15),
            score_range: (0.01, 0.99),
            num_frames: None,
            class_id: 0,
        }
    }
}

#[derive(Debug, Error, PartialEq)]
#[error("invalid noise config: {0}")]
pub struct NoiseError(String);

impl NoiseConfig {
    /// Checks that every rate is finite and in range.
    pub fn validate(&self) -> Result<(), NoiseError> {
        let bad = |m: String| Err(NoiseError(m));
        if !(0.0..=1.0).contains(&self.p_miss) {
            return bad(format!("p_miss {} is not within [0, 1]", self.p_miss));
        }
        if !(self.jitter.is_finite() && self.jitter >= 0.0) {
            return bad(format!("jitter {} is not a finite value >= 0", self.jitter));
        }
        if !(self.fp_per_frame.is_finite() && (0.0..=1000.0).contains(&self.fp_per_frame)) {
            return bad(format!(
                "fp_per_frame {} is not within [0, 1000]",
                self.fp_per_frame
            ));
        }
        let size_ok = |v: f64| v.is_finite() && v >= 1.0;
        if !size_ok(self.frame_width) || !size_ok(self.frame_height) {
            return bad(format!(
                "frame size {} x {} is not at least 1 x 1",
                self.frame_width, self.frame_height
            ));
        }
        for (name, (m, s)) in [("tp_score", self.tp_score), ("fp_score", self.fp_score)] {
            if !(m.is_finite() && s.is_finite() && s >= 0.0) {
                return bad(format!(
                    "{name} ({m}, {s}) needs a finite mean and std >= 0"
                ));
            }
        }
        let (lo, hi) = self.score_range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return bad(format!("score_range ({lo}, {hi}) is not a range"));
        }
        Ok(())
    }
}

/// Detections for frames `1..=last` (every frame present, possibly empty) made from the considered
/// ground-truth boxes; see the module documentation.
pub fn noisy_detections(gt: &[MotRecord], cfg: &NoiseConfig) -> Result<Vec<FrameDets>, NoiseError> {
    cfg.validate()?;
    let mut gt: Vec<&MotRecord> = gt.iter().filter(|r| r.is_considered()).collect();
    gt.sort_by_key(|r| (r.frame, r.id));
    let last = cfg
        .num_frames
        .unwrap_or_else(|| gt.last().map_or(0, |r| r.frame));
    // Sizes false positives are drawn from.
    let sizes: Vec<(f64, f64)> = gt
        .iter()
        .map(|r| (r.rect.w, r.rect.h))
        .filter(|(w, h)| *w >= 1.0 && *h >= 1.0)
        .collect();
    let mut rng = SplitMix64::new(cfg.seed);
    let (lo, hi) = cfg.score_range;
    let score = |rng: &mut SplitMix64, (m, s): (f64, f64)| (m + s * rng.normal()).clamp(lo, hi);

    let mut out = Vec::with_capacity(last as usize);
    let mut next = 0;
    for frame in 1..=last {
        let mut dets = Vec::new();
        while next < gt.len() && gt[next].frame < frame {
            next += 1;
        }
        while next < gt.len() && gt[next].frame == frame {
            let r = gt[next].rect;
            next += 1;
            if rng.uniform() < cfg.p_miss {
                continue;
            }
            let j = cfg.jitter;
            let x = r.x + j * r.w * rng.normal();
            let y = r.y + j * r.h * rng.normal();
            let w = r.w * (1.0 + j * rng.normal()).max(0.2);
            let h = r.h * (1.0 + j * rng.normal()).max(0.2);
            dets.push(Det {
                rect: Rect::new(x, y, w, h),
                conf: score(&mut rng, cfg.tp_score),
                class_id: cfg.class_id,
            });
        }
        for _ in 0..rng.poisson(cfg.fp_per_frame) {
            let (bw, bh) = if sizes.is_empty() {
                (40.0, 100.0)
            } else {
                sizes[(rng.next_u64() % sizes.len() as u64) as usize]
            };
            let w = (bw * (0.7 + 0.6 * rng.uniform())).min(cfg.frame_width);
            let h = (bh * (0.7 + 0.6 * rng.uniform())).min(cfg.frame_height);
            let x = rng.uniform() * (cfg.frame_width - w);
            let y = rng.uniform() * (cfg.frame_height - h);
            dets.push(Det {
                rect: Rect::new(x, y, w, h),
                conf: score(&mut rng, cfg.fp_score),
                class_id: cfg.class_id,
            });
        }
        out.push(FrameDets { frame, dets });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt() -> Vec<MotRecord> {
        let mut v = Vec::new();
        for f in 1..=50u32 {
            for id in 1..=4i64 {
                let x = 20.0 + id as f64 * 120.0 + f as f64;
                v.push(MotRecord::new(f, id, Rect::new(x, 100.0, 50.0, 120.0), 1.0));
            }
        }
        v
    }

    #[test]
    fn deterministic_for_a_seed() {
        let cfg = NoiseConfig::default();
        let a = noisy_detections(&gt(), &cfg).unwrap();
        let b = noisy_detections(&gt(), &cfg).unwrap();
        assert_eq!(a, b);
        // Input order does not matter.
        let mut shuffled = gt();
        shuffled.reverse();
        assert_eq!(noisy_detections(&shuffled, &cfg).unwrap(), a);
        let c = noisy_detections(
            &gt(),
            &NoiseConfig {
                seed: 7,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn rates_are_roughly_as_configured() {
        let cfg = NoiseConfig {
            p_miss: 0.2,
            fp_per_frame: 2.0,
            num_frames: Some(60),
            ..Default::default()
        };
        let frames = noisy_detections(&gt(), &cfg).unwrap();
        assert_eq!(frames.len(), 60);
        assert!(
            frames
                .iter()
                .enumerate()
                .all(|(i, f)| f.frame == i as u32 + 1)
        );
        // Frames 51..60 have no ground truth: only false positives.
        let mut tp = 0usize;
        let mut fp = 0usize;
        let (mut tp_conf, mut fp_conf) = (0.0, 0.0);
        for f in &frames {
            for d in &f.dets {
                let hit = f.frame <= 50
                    && (1..=4).any(|id| {
                        let x = 20.0 + id as f64 * 120.0 + f.frame as f64;
                        d.rect.iou(&Rect::new(x, 100.0, 50.0, 120.0)) > 0.5
                    });
                assert!((0.01..=0.99).contains(&d.conf));
                if hit {
                    tp += 1;
                    tp_conf += d.conf;
                } else {
                    fp += 1;
                    fp_conf += d.conf;
                    assert!(d.rect.x >= 0.0 && d.rect.x + d.rect.w <= 640.0);
                    assert!(d.rect.y >= 0.0 && d.rect.y + d.rect.h <= 480.0);
                }
            }
        }
        // 200 boxes kept with p = 0.8 (sd ~ 5.7); 120 false positives expected (sd ~ 11), a few of
        // which may land on a ground-truth box.
        assert!((140..=180).contains(&tp), "tp {tp}");
        assert!((85..=155).contains(&fp), "fp {fp}");
        assert!(tp_conf / tp as f64 > 0.65 && fp_conf / (fp as f64) < 0.45);
    }

    #[test]
    fn no_noise_reproduces_ground_truth() {
        let cfg = NoiseConfig {
            p_miss: 0.0,
            jitter: 0.0,
            fp_per_frame: 0.0,
            ..Default::default()
        };
        let frames = noisy_detections(&gt(), &cfg).unwrap();
        assert_eq!(frames.len(), 50);
        for f in &frames {
            assert_eq!(f.dets.len(), 4);
            assert_eq!(
                f.dets[0].rect,
                Rect::new(140.0 + f.frame as f64, 100.0, 50.0, 120.0)
            );
        }
        // Boxes not considered are skipped; empty ground truth gives no frames.
        let mut g = gt();
        g[0].conf = 0.0;
        assert_eq!(noisy_detections(&g, &cfg).unwrap()[0].dets.len(), 3);
        assert!(noisy_detections(&[], &cfg).unwrap().is_empty());
    }

    #[test]
    fn bad_config_is_an_error() {
        for cfg in [
            NoiseConfig {
                p_miss: 1.5,
                ..Default::default()
            },
            NoiseConfig {
                jitter: f64::NAN,
                ..Default::default()
            },
            NoiseConfig {
                fp_per_frame: -1.0,
                ..Default::default()
            },
            NoiseConfig {
                frame_width: 0.0,
                ..Default::default()
            },
            NoiseConfig {
                score_range: (0.9, 0.1),
                ..Default::default()
            },
        ] {
            assert!(noisy_detections(&gt(), &cfg).is_err(), "{cfg:?}");
        }
    }

    #[test]
    fn generator_moments() {
        let mut r = SplitMix64::new(1);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let p: u32 = (0..n).map(|_| r.poisson(1.5)).sum();
        assert!((p as f64 / n as f64 - 1.5).abs() < 0.05);
        let p: u32 = (0..1000).map(|_| r.poisson(50.0)).sum();
        assert!((p as f64 / 1000.0 - 50.0).abs() < 1.0);
        assert_eq!(r.poisson(0.0), 0);
    }
}
