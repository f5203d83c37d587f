//! Multi-object-tracking evaluation: MOTChallenge files, CLEAR-MOT and identity metrics, noisy
//! detections made from ground truth, and glue that runs a tracker over a sequence.
//!
//! The metrics follow py-motmetrics' defaults (`compare_to_groundtruth(gt, hyp, 'iou', distth=0.5)`
//! and the `motchallenge` metric set), so numbers computed here can be compared with published ones:
//!
//! * [`format`]: read and write MOTChallenge text files (`frame,id,x,y,w,h,conf,...`).
//! * [`metrics`]: the per-frame matching ([`MotAccumulator`]) and the summary ([`MotSummary`]: MOTA,
//!   MOTP, IDF1/IDP/IDR, FP, FN, ID switches, MT/PT/ML, fragmentations).
//! * [`noise`]: deterministic noisy detections from ground truth (misses, jitter, false positives,
//!   confidence scores).
//! * [`eval`]: run any tracker over frames of detections and evaluate its output; an adapter for
//!   [`vigil_core::tracker::Tracker`].
//!
//! ```
//! use vigil_mot::{evaluate, format::parse_mot};
//!
//! let gt = parse_mot("1,1,10,10,20,40,1,-1,-1,-1\n2,1,12,10,20,40,1,-1,-1,-1\n", "gt.txt").unwrap();
//! let hyp = parse_mot("1,7,10,10,20,40,-1\n2,7,13,10,20,40,-1\n", "hyp.txt").unwrap();
//! let s = evaluate(&gt, &hyp).unwrap();
//! assert_eq!(s.mota, 1.0);
//! assert_eq!(s.idf1, 1.0);
//! ```

pub mod eval;
pub mod format;
pub mod metrics;
pub mod noise;

pub use eval::{
    Det, FrameDets, TrackedBox, evaluate, evaluate_with, run_tracker, run_vigil_tracker, tracker_fn,
};
pub use format::{MotError, MotRecord, Rect};
pub use metrics::{Continuity, MatchConfig, MetricsError, MotAccumulator, MotSummary};
pub use noise::{NoiseConfig, noisy_detections};
