//! Behaviour shared by every tracker kind, and the differences between them.

use super::*;

fn obj(class_id: i32, conf: f32, x: f32, y: f32) -> Object {
    Object::new(class_id, "person", conf, BBox::new(x, y, 20.0, 40.0))
}

fn person(x: f32, y: f32) -> Object {
    obj(0, 0.9, x, y)
}

fn params(min_hits: u32) -> TrackerParams {
    TrackerParams {
        min_hits,
        ..Default::default()
    }
}

#[test]
fn kinds_parse_and_build() {
    for k in TrackerKind::ALL {
        assert_eq!(k.as_str().parse::<TrackerKind>(), Ok(k));
        let mut t = build(k, &TrackerParams::default());
        let mut o = vec![person(0.0, 0.0)];
        t.update(&mut o);
        // the first frame of a stream confirms at once
        assert_eq!(o[0].track_id, Some(1), "{k}");
    }
    assert_eq!(
        "ByteTrack".parse::<TrackerKind>(),
        Ok(TrackerKind::ByteTrack)
    );
    let e = "kalman9000".parse::<TrackerKind>().unwrap_err();
    assert!(e.contains("iou, sort, bytetrack, ocsort"), "{e}");
    assert_eq!(TrackerKind::Sort.default_min_hits(), 3);
    assert_eq!(TrackerKind::ByteTrack.default_min_hits(), 2);
}

#[test]
fn crossing_objects_keep_their_ids() {
    for k in TrackerKind::ALL {
        let mut t = build(k, &params(0));
        let mut ids = Vec::new();
        // Two people walking towards each other, crossing at frame 25 with their boxes overlapping.
        for f in 0..50 {
            let x = f as f32 * 4.0;
            let mut o = vec![person(x, 100.0), person(200.0 - x, 108.0)];
            t.update(&mut o);
            if let (Some(a), Some(b)) = (o[0].track_id, o[1].track_id) {
                ids.push((a, b));
            }
        }
        assert_eq!(ids.len(), 50, "{k}: {ids:?}");
        assert!(ids.iter().all(|p| *p == ids[0]), "{k}: {ids:?}");
        assert_ne!(ids[0].0, ids[0].1, "{k}");
    }
}

#[test]
fn missing_detections_keep_the_id() {
    for k in TrackerKind::ALL {
        let mut t = build(k, &params(0));
        let mut id = None;
        for f in 0..30 {
            let x = f as f32 * 3.0;
            // gone for frames 10..14 (4 inferred frames)
            let mut o = if (10..14).contains(&f) {
                vec![]
            } else {
                vec![person(x, 50.0)]
            };
            t.update(&mut o);
            if let Some(o) = o.first() {
                assert!(o.track_id.is_some(), "{k} frame {f}");
                if id.is_none() {
                    id = o.track_id;
                }
                assert_eq!(o.track_id, id, "{k} frame {f}");
            }
        }
    }
}

#[test]
fn lifecycle_states() {
    let mut t = SortTracker::new(SortConfig {
        min_hits: 2,
        max_age: 2,
        ..Default::default()
    });
    t.update(&mut []);
    let mut o = vec![person(0.0, 0.0)];
    t.update(&mut o);
    assert_eq!(o[0].track_id, None);
    assert_eq!(t.tracks()[0].state, TrackState::Tentative);
    let mut o = vec![person(1.0, 0.0)];
    t.update(&mut o);
    assert_eq!(o[0].track_id, Some(1));
    assert_eq!(t.tracks()[0].state, TrackState::Confirmed);
    t.update(&mut []);
    assert_eq!(t.tracks()[0].state, TrackState::Lost);
    assert_eq!(t.tracks()[0].id, Some(1));
    t.update(&mut []);
    assert_eq!(t.tracks()[0].state, TrackState::Lost);
    t.update(&mut []);
    assert!(t.tracks().is_empty(), "removed after max_age misses");
}

#[test]
fn one_frame_false_positive_never_gets_an_id() {
    for k in TrackerKind::ALL {
        let mut t = build(k, &params(2));
        let mut all_ids = Vec::new();
        for f in 0..20 {
            let x = f as f32 * 2.0;
            let mut o = vec![person(x, 10.0)];
            if f == 5 {
                o.push(person(300.0, 300.0));
            }
            t.update(&mut o);
            if f == 5 {
                assert_eq!(o[1].track_id, None, "{k}");
            }
            all_ids.extend(o.iter().filter_map(|o| o.track_id));
            if f % 3 == 0 {
                all_ids.extend(t.predict().iter().filter_map(|o| o.track_id));
            }
        }
        all_ids.sort_unstable();
        all_ids.dedup();
        assert_eq!(all_ids, vec![1], "{k}");
    }
}

#[test]
fn sort_false_positive_stays_tentative_and_is_removed() {
    let mut t = SortTracker::new(SortConfig::default());
    t.update(&mut [person(0.0, 0.0)]);
    let mut o = vec![person(0.0, 0.0), person(300.0, 300.0)];
    t.update(&mut o);
    assert_eq!(o[1].track_id, None);
    let states: Vec<TrackState> = t.tracks().iter().map(|t| t.state).collect();
    assert_eq!(states, vec![TrackState::Confirmed, TrackState::Tentative]);
    t.update(&mut [person(0.0, 0.0)]);
    assert_eq!(t.tracks().len(), 1);
}

/// An object whose detector confidence drops (partial occlusion) for 10 frames.
fn fading(f: u32) -> Object {
    let conf = if (5..15).contains(&f) { 0.3 } else { 0.9 };
    obj(0, conf, f as f32 * 2.0, 20.0)
}

#[test]
fn low_confidence_detections_keep_a_bytetrack_track_alive() {
    // SORT given the detector's confident detections only (confidence ≥ 0.5) loses the object.
    let mut sort = SortTracker::new(SortConfig {
        min_confidence: 0.5,
        max_age: 3,
        min_hits: 2,
        ..Default::default()
    });
    let mut byte = ByteTracker::new(ByteTrackConfig {
        track_thresh: 0.5,
        track_buffer: 3,
        ..Default::default()
    });
    let mut oc = OcSortTracker::new(OcSortConfig {
        track_thresh: 0.5,
        max_age: 3,
        ..Default::default()
    });
    let trackers: [(&str, &mut dyn Tracker); 3] = [
        ("sort", &mut sort),
        ("bytetrack", &mut byte),
        ("ocsort", &mut oc),
    ];
    for (name, t) in trackers {
        let mut ids = Vec::new();
        for f in 0..25 {
            let mut o = vec![fading(f)];
            t.update(&mut o);
            ids.push(o[0].track_id);
        }
        let first = ids[0];
        assert_eq!(first, Some(1), "{name}");
        let last = ids[24];
        if name == "sort" {
            assert!(ids[5..15].iter().all(Option::is_none), "{name}: {ids:?}");
            assert_ne!(last, first, "{name}: {ids:?}");
        } else {
            assert!(ids.iter().all(|i| *i == first), "{name}: {ids:?}");
        }
    }
}

#[test]
fn low_confidence_detections_do_not_start_tracks() {
    let mut t = ByteTracker::new(ByteTrackConfig::default());
    t.update(&mut []);
    for _ in 0..5 {
        let mut o = vec![obj(0, 0.3, 10.0, 10.0), obj(0, 0.55, 100.0, 10.0)];
        t.update(&mut o);
        // 0.3 is low-score; 0.55 is high-score but below new_track_thresh (0.6)
        assert_eq!(o[0].track_id, None);
        assert_eq!(o[1].track_id, None);
    }
    assert!(t.tracks().is_empty());
}

#[test]
fn predict_continues_confirmed_tracks_only() {
    for k in [
        TrackerKind::Sort,
        TrackerKind::ByteTrack,
        TrackerKind::OcSort,
    ] {
        let no_coasting = TrackerParams {
            coast_frames: Some(0),
            ..Default::default()
        };
        let mut t = build(k, &no_coasting);
        for f in 0..10 {
            let mut o = vec![person(f as f32 * 5.0, 0.0)];
            if f >= 8 {
                // a new tentative track in frames 8 and 9 (sort and ocsort need 3 hits)
                o.push(person(400.0, 400.0));
            }
            t.update(&mut o);
        }
        let p1 = t.predict();
        let p2 = t.predict();
        let n = if k == TrackerKind::ByteTrack { 2 } else { 1 };
        assert_eq!(p1.len(), n, "{k}: {p1:?}");
        assert_eq!(p1[0].track_id, Some(1), "{k}");
        assert_eq!(p1[0].confidence, 0.9);
        // predicted on, about 5 px per frame
        assert!((p1[0].bbox.x - 50.0).abs() < 1.5, "{k}: {p1:?}");
        assert!((p2[0].bbox.x - 55.0).abs() < 1.5, "{k}: {p2:?}");
        let mut o = vec![person(60.0, 0.0)];
        t.update(&mut o);
        assert_eq!(o[0].track_id, Some(1), "{k}");
        // a lost track is not drawn on skipped frames (without coasting)
        t.update(&mut []);
        assert!(t.predict().is_empty(), "{k}");
    }
}

/// A person walking right 5 px per frame for 10 frames, then `missing` frames without its detection,
/// then found again; `coast` frames of coasting. Returns each inferred frame's objects (`track`).
fn walk_with_gap(k: TrackerKind, coast: u32, missing: usize) -> Vec<Vec<Object>> {
    let mut t = build(
        k,
        &TrackerParams {
            coast_frames: Some(coast),
            ..Default::default()
        },
    );
    let mut frames = Vec::new();
    for f in 0..(10 + missing + 3) {
        let mut o = if (10..10 + missing).contains(&f) {
            vec![]
        } else {
            vec![person(f as f32 * 5.0, 0.0)]
        };
        t.track(&mut o);
        frames.push(o);
    }
    frames
}

#[test]
fn confirmed_tracks_coast_through_missed_detections() {
    for k in TrackerKind::ALL {
        let frames = walk_with_gap(k, 2, 3);
        for (f, want) in [(10, 1), (11, 2)] {
            let o = &frames[f];
            assert_eq!(o.len(), 1, "{k} frame {f}: {o:?}");
            assert!(o[0].predicted, "{k} frame {f}");
            assert_eq!(o[0].since_detection, want, "{k} frame {f}");
            assert_eq!(o[0].track_id, Some(1), "{k} frame {f}");
            assert_eq!(o[0].id, 0);
            // on its path, about 5 px per frame
            assert!(
                (o[0].bbox.x - f as f32 * 5.0).abs() < 3.0,
                "{k} frame {f}: {o:?}"
            );
        }
        // past coast_frames: not reported, but kept and found again with its id
        assert!(frames[12].is_empty(), "{k}: {:?}", frames[12]);
        let back = &frames[13];
        assert_eq!(
            (back[0].track_id, back[0].predicted),
            (Some(1), false),
            "{k}"
        );
        assert_eq!(back[0].since_detection, 0);
        // coasting off: detections only
        let off = walk_with_gap(k, 0, 3);
        assert!(off[10..13].iter().all(Vec::is_empty), "{k}");
    }
}

#[test]
fn coasting_tracks_are_predicted_on_skipped_frames_and_follow_detections() {
    for k in [
        TrackerKind::Sort,
        TrackerKind::ByteTrack,
        TrackerKind::OcSort,
    ] {
        let mut t = build(
            k,
            &TrackerParams {
                coast_frames: Some(3),
                ..Default::default()
            },
        );
        for f in 0..10 {
            t.track(&mut vec![person(f as f32 * 5.0, 0.0)]);
        }
        // a missed detection, next to a detection of someone else: both reported, coasting last
        let mut o = vec![person(300.0, 300.0)];
        t.track(&mut o);
        assert_eq!(o.len(), 2, "{k}: {o:?}");
        assert!(!o[0].predicted && o[1].predicted, "{k}: {o:?}");
        assert_eq!((o[1].id, o[1].track_id), (1, Some(1)), "{k}");
        // a skipped frame: the coasting track is still shown, flagged
        let p = t.predict();
        let coasting: Vec<&Object> = p.iter().filter(|o| o.track_id == Some(1)).collect();
        assert_eq!(coasting.len(), 1, "{k}: {p:?}");
        assert!(
            coasting[0].predicted && coasting[0].since_detection == 1,
            "{k}"
        );
    }
}

#[test]
fn classes_do_not_mix_unless_asked() {
    for k in TrackerKind::ALL {
        let mut t = build(k, &params(1));
        let mut o = vec![person(0.0, 0.0)];
        t.update(&mut o);
        let mut o = vec![obj(2, 0.9, 1.0, 0.0)];
        t.update(&mut o);
        assert_eq!(o[0].track_id, Some(2), "{k}: another class, another track");
        let mut t = build(
            k,
            &TrackerParams {
                match_class: false,
                min_hits: 1,
                ..Default::default()
            },
        );
        let mut o = vec![person(0.0, 0.0)];
        t.update(&mut o);
        let mut o = vec![obj(2, 0.9, 1.0, 0.0)];
        t.update(&mut o);
        assert_eq!(o[0].track_id, Some(1), "{k}");
    }
}

#[test]
fn ocsort_recovers_a_track_that_stopped_while_occluded() {
    // Moving right at 6 px/frame, hidden for 6 frames during which it stops; it reappears where it was
    // last seen. The Kalman prediction has moved on (36 px, more than the box width): SORT and ByteTrack
    // start a new track, OC-SORT's recovery on the last observation keeps the id.
    let run = |k: TrackerKind| {
        let mut t = build(k, &params(0));
        let mut ids = Vec::new();
        for f in 0..30 {
            let x = if f < 10 { f as f32 * 6.0 } else { 54.0 };
            let mut o = if (10..16).contains(&f) {
                vec![]
            } else {
                vec![person(x, 0.0)]
            };
            t.update(&mut o);
            ids.extend(o.iter().filter_map(|o| o.track_id));
        }
        ids.dedup();
        ids
    };
    assert_eq!(run(TrackerKind::OcSort), vec![1]);
    assert_eq!(run(TrackerKind::Sort), vec![1, 2]);
    assert_eq!(run(TrackerKind::ByteTrack), vec![1, 2]);
}

#[test]
fn ids_are_unique_per_tracker_and_start_at_one() {
    for k in TrackerKind::ALL {
        let mut a = build(k, &params(1));
        let mut b = build(k, &params(1));
        let mut seen = Vec::new();
        for f in 0..10 {
            // a new object every frame, far from the earlier ones
            let mut o = vec![person(f as f32 * 50.0, 0.0)];
            a.update(&mut o);
            seen.extend(o.iter().filter_map(|o| o.track_id));
        }
        let mut o = vec![person(0.0, 300.0)];
        b.update(&mut o);
        assert_eq!(o[0].track_id, Some(1), "{k}: another stream starts at 1");
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n, "{k}: {seen:?}");
        assert_eq!(seen[0], 1);
    }
}

#[test]
fn garbage_boxes_do_not_panic() {
    for k in TrackerKind::ALL {
        let mut t = build(k, &params(1));
        for _ in 0..10 {
            let mut o = vec![
                Object::new(0, "x", f32::NAN, BBox::new(f32::NAN, 0.0, 10.0, 10.0)),
                Object::new(0, "x", 0.9, BBox::new(0.0, 0.0, 0.0, 0.0)),
                Object::new(0, "x", 0.9, BBox::new(1e30, -1e30, f32::INFINITY, 5.0)),
                Object::new(0, "x", 0.9, BBox::new(5.0, 5.0, -3.0, 10.0)),
            ];
            t.update(&mut o);
            let _ = t.predict();
        }
    }
}

#[test]
fn predicted_boxes_stay_in_the_frame() {
    let mut det = person(90.0, 0.0);
    det.id = 0;
    let mut leaving = person(95.0, 10.0); // 20 wide: 5 px inside a 100 px frame
    leaving.predicted = true;
    leaving.track_id = Some(2);
    let mut edge = person(85.0, 10.0); // 15 of 20 px inside
    edge.predicted = true;
    edge.track_id = Some(3);
    let mut o = vec![det.clone(), leaving, edge];
    keep_in_frame(&mut o, 100, 100, false);
    assert_eq!(o.len(), 2, "{o:?}");
    assert_eq!(o[0], det, "detections untouched, even past the edge");
    assert_eq!((o[1].track_id, o[1].id), (Some(3), 1));
    assert_eq!((o[1].bbox.x, o[1].bbox.w), (85.0, 15.0));
    // A skipped frame: every tracked object is a prediction.
    let mut tracked = person(95.0, 0.0);
    tracked.track_id = Some(1);
    let mut o = vec![tracked];
    keep_in_frame(&mut o, 100, 100, true);
    assert!(o.is_empty());
}

#[test]
fn a_detection_between_two_tracks_goes_to_the_one_seen_last() {
    // A (x 0) and B (x 14) stand still; A's detection is missed twice, then one detection comes
    // between them, a little closer to A (IoU 0.51 with A, 0.45 with B): it is B's.
    for k in [
        TrackerKind::Sort,
        TrackerKind::ByteTrack,
        TrackerKind::OcSort,
    ] {
        let mut t = build(k, &TrackerParams::default());
        let mut first = vec![person(0.0, 0.0), person(14.0, 0.0)];
        t.update(&mut first);
        let (a, b) = (first[0].track_id, first[1].track_id);
        assert!(a.is_some() && b.is_some() && a != b, "{k}");
        for _ in 0..2 {
            let mut only_b = vec![person(14.0, 0.0)];
            t.update(&mut only_b);
            assert_eq!(only_b[0].track_id, b, "{k}");
        }
        let between = person(6.5, 0.0);
        let iou = |x: f32| between.bbox.iou(&BBox::new(x, 0.0, 20.0, 40.0));
        assert!(iou(0.0) > iou(14.0) + 0.05, "{k}");
        let mut last = vec![between];
        t.update(&mut last);
        assert_eq!(last[0].track_id, b, "{k}");
    }
}
