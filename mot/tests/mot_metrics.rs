//! The MOT metrics against py-motmetrics / the MOTChallenge devkit on TUD-Campus, and the IoU
//! tracker on noisy detections made from its ground truth.
//!
//! The data is the project's copy `tests/data/mot/TUD-Campus/{gt.txt,test.txt}` (from py-motmetrics
//! 1.4.0, see the README there). The tests print `SKIPPED` and pass when it is missing.

use std::path::{Path, PathBuf};

use vigil_core::tracker::{IouTracker, IouTrackerConfig};
use vigil_mot::eval::{read_detections, write_detections};
use vigil_mot::format::{read_ground_truth, read_mot};
use vigil_mot::{
    Continuity, Det, MatchConfig, MotAccumulator, NoiseConfig, TrackedBox, evaluate, evaluate_with,
    noisy_detections, run_tracker, run_vigil_tracker,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/mot/TUD-Campus")
}

/// The TUD-Campus folder, or `None` (after printing SKIPPED) when its files are absent.
fn tud_campus(test: &str) -> Option<PathBuf> {
    let dir = data_dir();
    if dir.join("gt.txt").is_file() && dir.join("test.txt").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {test}: {} has no gt.txt/test.txt", dir.display());
        None
    }
}

#[test]
fn mot_tud_campus_matches_py_motmetrics() {
    let Some(dir) = tud_campus("mot_tud_campus_matches_py_motmetrics") else {
        return;
    };
    let gt = read_ground_truth(dir.join("gt.txt")).unwrap();
    let hyp = read_mot(dir.join("test.txt")).unwrap();
    assert_eq!(gt.len(), 359, "every ground-truth box is considered");
    let s = evaluate(&gt, &hyp).unwrap();
    eprintln!("TUD-Campus test.txt vs gt.txt:\n{s}");
    eprintln!(
        "num_frames {} gt {} FP {} FN {} IDSW {} MOTP {:.4} (IoU {:.1}%) MOTA {:.2}% IDF1 {:.2}%",
        s.num_frames,
        s.num_gt,
        s.fp,
        s.fn_,
        s.num_switches,
        s.motp,
        s.motp_iou() * 100.0,
        s.mota * 100.0,
        s.idf1 * 100.0
    );
    // py-motmetrics (motchallenge metrics) and the MOTChallenge devkit:
    // IDF1 55.8 IDP 73.0 IDR 45.1 Rcll 58.2 Prcn 94.1 GT 8 MT 1 PT 6 ML 1 FP 13 FN 150 IDs 7 FM 7
    // MOTA 52.6 MOTP 0.277 (devkit: 72.3).
    let near = |v: f64, want: f64| (v * 100.0 - want).abs() <= 0.1;
    assert!(near(s.mota, 52.6), "MOTA {}", s.mota);
    assert!(near(s.idf1, 55.8), "IDF1 {}", s.idf1);
    assert!(near(s.idp, 73.0), "IDP {}", s.idp);
    assert!(near(s.idr, 45.1), "IDR {}", s.idr);
    assert!(near(s.recall, 58.2), "recall {}", s.recall);
    assert!(near(s.precision, 94.1), "precision {}", s.precision);
    assert!(near(s.motp, 27.7), "MOTP {}", s.motp);
    assert_eq!(s.num_frames, 71);
    assert_eq!(s.num_gt, 359);
    assert_eq!(s.num_predictions, 222);
    assert_eq!((s.fp, s.fn_, s.num_switches), (13, 150, 7));
    assert_eq!(s.num_unique_objects, 8);
    assert_eq!(
        (s.mostly_tracked, s.partially_tracked, s.mostly_lost),
        (1, 6, 1)
    );
    assert_eq!(s.num_fragmentations, 7);
    // MOTA from the counts, exactly.
    assert_eq!(s.mota, 1.0 - (150.0 + 13.0 + 7.0) / 359.0);

    // The devkit keeps only the previous frame's matches: the same result on this sequence.
    let acc = MotAccumulator::with_config(MatchConfig {
        continuity: Continuity::PreviousFrame,
        ..Default::default()
    })
    .unwrap();
    let d = evaluate_with(&gt, &hyp, acc).unwrap();
    assert_eq!(
        (d.fp, d.fn_, d.num_switches, d.idtp, d.num_fragmentations),
        (13, 150, 7, 162, 7)
    );
}

/// Hard hypotheses (many false positives, misses and switches) made from noisy detections, with
/// the values py-motmetrics 1.4.0 computes for them: the hypothesis written with
/// `vigil_mot::format::write_mot`, then in Python
/// `acc = mm.utils.compare_to_groundtruth(mm.io.loadtxt(gt, min_confidence=1), mm.io.loadtxt(hyp),
/// 'iou', distth=0.5)` and `mm.metrics.create().compute(acc, metrics=mm.metrics.motchallenge_metrics
/// + ['idtp'])`.
#[test]
fn mot_noisy_hypotheses_match_py_motmetrics() {
    let Some(dir) = tud_campus("mot_noisy_hypotheses_match_py_motmetrics") else {
        return;
    };
    let gt = read_ground_truth(dir.join("gt.txt")).unwrap();
    struct Case {
        seed: u64,
        p_miss: f64,
        fp_per_frame: f64,
        jitter: f64,
        /// Track id = index of the detection in its frame (else: a new id for every detection).
        frame_local_ids: bool,
        /// FP, FN, IDSW, FM, IDTP, MT, PT, ML
        counts: [u64; 8],
        /// MOTA, MOTP, IDF1
        ratios: [f64; 3],
    }
    let cases = [
        Case {
            seed: 1,
            p_miss: 0.3,
            fp_per_frame: 3.0,
            jitter: 0.15,
            frame_local_ids: true,
            counts: [274, 172, 97, 84, 66, 0, 8, 0],
            ratios: [-0.512535, 0.343875, 0.160976],
        },
        Case {
            seed: 2,
            p_miss: 0.2,
            fp_per_frame: 1.0,
            jitter: 0.1,
            frame_local_ids: false,
            counts: [89, 89, 262, 64, 8, 3, 5, 0],
            ratios: [-0.225627, 0.294644, 0.022284],
        },
        Case {
            seed: 3,
            p_miss: 0.05,
            fp_per_frame: 8.0,
            jitter: 0.2,
            frame_local_ids: true,
            counts: [707, 163, 76, 86, 65, 0, 7, 1],
            ratios: [-1.635097, 0.372374, 0.103011],
        },
    ];
    for c in cases {
        let cfg = NoiseConfig {
            seed: c.seed,
            p_miss: c.p_miss,
            fp_per_frame: c.fp_per_frame,
            jitter: c.jitter,
            ..Default::default()
        };
        let dets = noisy_detections(&gt, &cfg).unwrap();
        let mut n = 0u64;
        let mut ids = |d: &[Det]| {
            d.iter()
                .enumerate()
                .map(|(i, d)| {
                    n += 1;
                    TrackedBox {
                        track_id: if c.frame_local_ids { i as u64 } else { n },
                        rect: d.rect,
                        conf: d.conf,
                    }
                })
                .collect()
        };
        let s = evaluate(&gt, &run_tracker(&dets, &mut ids)).unwrap();
        eprintln!("seed {}:\n{s}", c.seed);
        let counts = [
            s.fp,
            s.fn_,
            s.num_switches,
            s.num_fragmentations,
            s.idtp,
            s.mostly_tracked as u64,
            s.partially_tracked as u64,
            s.mostly_lost as u64,
        ];
        assert_eq!(counts, c.counts, "seed {}", c.seed);
        for (v, want) in [s.mota, s.motp, s.idf1].into_iter().zip(c.ratios) {
            assert!((v - want).abs() < 1e-6, "seed {}: {v} != {want}", c.seed);
        }
    }
}

#[test]
fn mot_tud_campus_copy_matches_shared() {
    let Some(dir) = tud_campus("mot_tud_campus_copy_matches_shared") else {
        return;
    };
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/mot/TUD-Campus");
    if !shared.is_dir() {
        eprintln!(
            "SKIPPED mot_tud_campus_copy_matches_shared: no {}",
            shared.display()
        );
        return;
    }
    for f in ["gt.txt", "test.txt"] {
        let (Ok(a), Ok(b)) = (std::fs::read(dir.join(f)), std::fs::read(shared.join(f))) else {
            eprintln!("SKIPPED mot_tud_campus_copy_matches_shared: {f} unreadable");
            return;
        };
        assert!(a == b, "{f}: the project's copy differs from shared/");
    }
}

#[test]
fn mot_ground_truth_as_hypothesis_is_perfect() {
    let Some(dir) = tud_campus("mot_ground_truth_as_hypothesis_is_perfect") else {
        return;
    };
    let gt = read_ground_truth(dir.join("gt.txt")).unwrap();
    let s = evaluate(&gt, &gt).unwrap();
    assert_eq!((s.mota, s.idf1, s.motp), (1.0, 1.0, 0.0), "{s}");
}

#[test]
fn mot_iou_tracker_on_noisy_tud_campus() {
    let Some(dir) = tud_campus("mot_iou_tracker_on_noisy_tud_campus") else {
        return;
    };
    let gt = read_ground_truth(dir.join("gt.txt")).unwrap();
    let cfg = NoiseConfig::default();
    let dets = noisy_detections(&gt, &cfg).unwrap();
    assert_eq!(dets.len(), 71);
    let n_dets: usize = dets.iter().map(|f| f.dets.len()).sum();

    // Detections alone (every detection its own track): the detection quality bound on MOTA.
    let mut n = 0u64;
    let mut each_new = |d: &[Det]| {
        d.iter()
            .map(|d| {
                n += 1;
                TrackedBox {
                    track_id: n,
                    rect: d.rect,
                    conf: d.conf,
                }
            })
            .collect()
    };
    let raw = evaluate(&gt, &run_tracker(&dets, &mut each_new)).unwrap();

    let mut tracker = IouTracker::new(IouTrackerConfig::default());
    let hyp = run_vigil_tracker(&dets, &mut tracker);
    let s = evaluate(&gt, &hyp).unwrap();
    eprintln!(
        "noisy TUD-Campus: {cfg:?}\n{n_dets} detections; detections without tracking: FP {} FN {}\n\
         IouTracker (default config):\n{s}\nMOTA {:.1}% IDF1 {:.1}% IDSW {}",
        raw.fp,
        raw.fn_,
        s.mota * 100.0,
        s.idf1 * 100.0,
        s.num_switches
    );
    assert!(s.mota.is_finite() && s.idf1.is_finite());
    assert!(s.mota > 0.5, "{s}");
    assert!(s.idf1 > 0.5, "{s}");

    // The same detections through a MOTChallenge detection file give the same result.
    let tmp = std::env::temp_dir().join(format!("vigil-mot-noisy-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let path = tmp.join("det.txt");
    write_detections(&path, &dets).unwrap();
    let back = read_detections(&path, cfg.class_id, Some(dets.len() as u32)).unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(back, dets);
    let mut tracker = IouTracker::new(IouTrackerConfig::default());
    let s2 = evaluate(&gt, &run_vigil_tracker(&back, &mut tracker)).unwrap();
    assert_eq!(s2, s);
}
