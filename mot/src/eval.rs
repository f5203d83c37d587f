//! Running a tracker over a sequence of detections and evaluating its output.
//!
//! The glue is independent of the tracker implementations: [`run_tracker`] takes any
//! `FnMut(&[Det]) -> Vec<TrackedBox>` called once per frame, in frame order, empty frames included.
//! [`tracker_fn`] adapts a [`Tracker`] (it builds [`Object`]s from the detections, calls
//! [`Tracker::update`] and reports the objects that got a `track_id`), and [`run_vigil_tracker`]
//! combines both. [`write_detections`] and [`read_detections`] store detections as a MOTChallenge
//! detection file (`frame,-1,x,y,w,h,conf,-1,-1,-1`), so that another tracker (a Python reference,
//! say) can be run on exactly the same input.

use std::collections::BTreeMap;
use std::path::Path;

use super::format::{MotError, MotRecord, Rect, read_mot, write_mot};
use super::metrics::{MetricsError, MotAccumulator, MotSummary};
use vigil_core::objects::Object;
use vigil_core::tracker::Tracker;

/// A detection given to a tracker.
#[derive(Debug, Clone, PartialEq)]
pub struct Det {
    pub rect: Rect,
    pub conf: f64,
    pub class_id: i32,
}

/// The detections of one frame (`frame` is 1-based, as in MOTChallenge files).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameDets {
    pub frame: u32,
    pub dets: Vec<Det>,
}

/// A box reported by a tracker for the current frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedBox {
    pub track_id: u64,
    pub rect: Rect,
    pub conf: f64,
}

/// Runs `track` on every frame (in the order given) and collects its boxes as MOTChallenge records
/// (the hypothesis). Track ids are written as `i64` (ids above `i64::MAX` wrap to negative values,
/// staying distinct).
pub fn run_tracker(
    frames: &[FrameDets],
    track: &mut dyn FnMut(&[Det]) -> Vec<TrackedBox>,
) -> Vec<MotRecord> {
    let mut out = Vec::new();
    for f in frames {
        for t in track(&f.dets) {
            out.push(MotRecord::new(f.frame, t.track_id as i64, t.rect, t.conf));
        }
    }
    out
}

/// The objects a tracker gets for detections: one per detection, in order (`id` = index, label = the
/// class id as text).
pub fn det_objects<'a>(dets: impl Iterator<Item = &'a Det>) -> Vec<Object> {
    dets.enumerate()
        .map(|(i, d)| {
            let mut o = Object::new(
                d.class_id,
                d.class_id.to_string(),
                d.conf as f32,
                d.rect.to_bbox(),
            );
            o.id = i as u32;
            o
        })
        .collect()
}

/// Adapts a [`Tracker`]: each call builds one [`Object`] per detection (label = class id), calls
/// `track` (the coasting tracks' predicted boxes included) and returns the objects that have a `track_id`, with the box and confidence the
/// tracker left on them.
pub fn tracker_fn(tracker: &mut dyn Tracker) -> impl FnMut(&[Det]) -> Vec<TrackedBox> + '_ {
    move |dets: &[Det]| {
        let mut objects = det_objects(dets.iter());
        tracker.track(&mut objects);
        objects
            .iter()
            .filter_map(|o| {
                o.track_id.map(|track_id| TrackedBox {
                    track_id,
                    rect: Rect::from_bbox(&o.bbox),
                    conf: o.confidence as f64,
                })
            })
            .collect()
    }
}

/// [`run_tracker`] with a [`Tracker`] through [`tracker_fn`].
pub fn run_vigil_tracker(frames: &[FrameDets], tracker: &mut dyn Tracker) -> Vec<MotRecord> {
    let mut f = tracker_fn(tracker);
    run_tracker(frames, &mut f)
}

/// Evaluates a hypothesis against ground truth with py-motmetrics' defaults (IoU ≥ 0.5). Ground-truth
/// boxes whose consider flag is 0 are left out; every frame in which either side has a box is
/// evaluated.
pub fn evaluate(gt: &[MotRecord], hyp: &[MotRecord]) -> Result<MotSummary, MetricsError> {
    evaluate_with(gt, hyp, MotAccumulator::new())
}

/// [`evaluate`] with a configured (empty) accumulator, e.g. another IoU threshold.
pub fn evaluate_with(
    gt: &[MotRecord],
    hyp: &[MotRecord],
    mut acc: MotAccumulator,
) -> Result<MotSummary, MetricsError> {
    type Frame = (Vec<(i64, Rect)>, Vec<(i64, Rect)>);
    let mut frames: BTreeMap<u32, Frame> = BTreeMap::new();
    for r in gt.iter().filter(|r| r.is_considered()) {
        frames.entry(r.frame).or_default().0.push((r.id, r.rect));
    }
    for r in hyp {
        frames.entry(r.frame).or_default().1.push((r.id, r.rect));
    }
    for (frame, (g, h)) in &frames {
        acc.update(*frame, g, h)?;
    }
    Ok(acc.summary())
}

/// Detections as MOTChallenge detection records (`id` = -1; the class is not stored).
pub fn detections_to_records(frames: &[FrameDets]) -> Vec<MotRecord> {
    frames
        .iter()
        .flat_map(|f| {
            f.dets
                .iter()
                .map(|d| MotRecord::new(f.frame, -1, d.rect, d.conf))
        })
        .collect()
}

/// Writes detections to a MOTChallenge detection file (`frame,-1,x,y,w,h,conf,-1,-1,-1`; numbers
/// in their shortest exact form, so a reader gets the same boxes).
pub fn write_detections(path: impl AsRef<Path>, frames: &[FrameDets]) -> Result<(), MotError> {
    write_mot(path, &detections_to_records(frames))
}

/// Reads a MOTChallenge detection file into frames `1..=last`, where `last` is the larger of
/// `num_frames` and the last frame in the file (a file does not tell how many empty frames end the
/// sequence); frames without a line are empty. Detections get class `class_id`.
pub fn read_detections(
    path: impl AsRef<Path>,
    class_id: i32,
    num_frames: Option<u32>,
) -> Result<Vec<FrameDets>, MotError> {
    let recs = read_mot(path)?;
    let last = recs
        .iter()
        .map(|r| r.frame)
        .max()
        .unwrap_or(0)
        .max(num_frames.unwrap_or(0));
    let mut frames: Vec<FrameDets> = (1..=last)
        .map(|frame| FrameDets {
            frame,
            dets: Vec::new(),
        })
        .collect();
    for r in recs {
        // frames are >= 1 (checked by the parser) and <= last.
        if let Some(f) = frames.get_mut(r.frame as usize - 1) {
            f.dets.push(Det {
                rect: r.rect,
                conf: r.conf,
                class_id,
            });
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::tracker::{IouTracker, IouTrackerConfig};

    fn gt() -> Vec<MotRecord> {
        let mut v = Vec::new();
        for f in 1..=30u32 {
            v.push(MotRecord::new(
                f,
                1,
                Rect::new(10.0 + 2.0 * f as f64, 50.0, 40.0, 100.0),
                1.0,
            ));
            v.push(MotRecord::new(
                f,
                2,
                Rect::new(400.0 - 2.0 * f as f64, 60.0, 40.0, 100.0),
                1.0,
            ));
        }
        v
    }

    fn dets_from(gt: &[MotRecord]) -> Vec<FrameDets> {
        let last = gt.iter().map(|r| r.frame).max().unwrap_or(0);
        (1..=last)
            .map(|frame| FrameDets {
                frame,
                dets: gt
                    .iter()
                    .filter(|r| r.frame == frame)
                    .map(|r| Det {
                        rect: r.rect,
                        conf: 0.9,
                        class_id: 0,
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn iou_tracker_on_clean_detections_is_perfect() {
        let gt = gt();
        let mut t = IouTracker::new(IouTrackerConfig::default());
        let hyp = run_vigil_tracker(&dets_from(&gt), &mut t);
        assert_eq!(hyp.len(), gt.len());
        let s = evaluate(&gt, &hyp).unwrap();
        assert_eq!(s.mota, 1.0, "{s}");
        assert_eq!(s.idf1, 1.0, "{s}");
        assert!(s.motp < 1e-6);
        assert!(s.to_string().contains("MOTA"));
    }

    #[test]
    fn closure_trackers_and_switch_counting() {
        let gt = gt();
        // A "tracker" that renumbers object 1 at frame 16: one switch, IDF1 below 1.
        let mut frame = 0;
        let mut f = |dets: &[Det]| {
            frame += 1;
            dets.iter()
                .enumerate()
                .map(|(i, d)| TrackedBox {
                    track_id: if i == 0 && frame > 15 {
                        99
                    } else {
                        i as u64 + 1
                    },
                    rect: d.rect,
                    conf: d.conf,
                })
                .collect()
        };
        let hyp = run_tracker(&dets_from(&gt), &mut f);
        let s = evaluate(&gt, &hyp).unwrap();
        assert_eq!((s.num_switches, s.fp, s.fn_), (1, 0, 0));
        assert!((s.mota - (1.0 - 1.0 / 60.0)).abs() < 1e-12);
        assert!((s.idf1 - 45.0 / 60.0).abs() < 1e-12, "{s}");
    }

    #[test]
    fn ground_truth_not_considered_is_ignored() {
        let mut gt = gt();
        for r in gt.iter_mut().filter(|r| r.id == 2) {
            r.conf = 0.0;
        }
        let hyp: Vec<MotRecord> = gt.iter().filter(|r| r.id == 1).cloned().collect();
        let s = evaluate(&gt, &hyp).unwrap();
        assert_eq!((s.num_gt, s.mota), (30, 1.0));
    }

    #[test]
    fn detection_file_round_trip() {
        let frames = vec![
            FrameDets {
                frame: 1,
                dets: vec![Det {
                    rect: Rect::new(1.0 / 3.0, 2.5, 10.125, 20.0),
                    conf: 0.123456789,
                    class_id: 0,
                }],
            },
            FrameDets {
                frame: 2,
                dets: vec![],
            },
            FrameDets {
                frame: 3,
                dets: vec![Det {
                    rect: Rect::new(5.0, 6.0, 7.0, 8.0),
                    conf: 0.5,
                    class_id: 0,
                }],
            },
        ];
        let dir = std::env::temp_dir().join(format!("vigil-mot-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("det.txt");
        write_detections(&p, &frames).unwrap();
        assert_eq!(read_detections(&p, 0, None).unwrap(), frames);
        assert_eq!(read_detections(&p, 0, Some(4)).unwrap().len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn duplicate_hypothesis_ids_are_an_error() {
        let gt = gt();
        let mut hyp = gt.clone();
        hyp[1].id = 1; // frame 1 has two boxes of track 1
        let e = evaluate(&gt, &hyp).unwrap_err();
        assert_eq!(
            e.to_string(),
            "frame 1: hypothesis id 1 appears more than once"
        );
    }
}
