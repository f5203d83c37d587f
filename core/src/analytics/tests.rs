use super::*;
use crate::objects::BBox;

/// A vertical line at x = 100 from y = 0 to y = 200, `in` = moving right.
fn line_cfg(labels: &[&str]) -> LineConfig {
    LineConfig {
        name: "door".into(),
        points: [[100.0, 0.0], [100.0, 200.0]],
        labels: labels.iter().map(|s| s.to_string()).collect(),
        in_direction: Some(Direction::Right),
    }
}

fn zone_cfg(above: Option<u32>) -> ZoneConfig {
    ZoneConfig {
        name: "square".into(),
        polygon: vec![[200.0, 0.0], [300.0, 0.0], [300.0, 100.0], [200.0, 100.0]],
        labels: vec![],
        overcrowded_above: above,
        speed_limit: None,
    }
}

/// An object whose bottom-centre anchor is at (x, y).
fn obj(track: Option<u64>, label: &str, x: f32, y: f32) -> Object {
    let mut o = Object::new(
        if label == "person" { 0 } else { 2 },
        label,
        0.9,
        BBox::new(x - 5.0, y - 20.0, 10.0, 20.0),
    );
    o.track_id = track;
    o
}

fn counts(a: &FrameAnalytics, label: &str) -> (u64, u64) {
    a.lines[0]
        .counts
        .iter()
        .find(|c| c.label == label)
        .map_or((0, 0), |c| (c.r#in, c.out))
}

fn kinds(a: &FrameAnalytics) -> Vec<AnalyticsEventKind> {
    a.events.iter().map(|e| e.kind).collect()
}

fn run(an: &mut Analytics, path: &[(f32, f32)]) -> FrameAnalytics {
    let mut last = FrameAnalytics::default();
    for (i, &(x, y)) in path.iter().enumerate() {
        last = an.process(&mut [obj(Some(1), "person", x, y)], i as f64 * 0.1);
    }
    last
}

fn analytics(lines: Vec<LineConfig>, zones: Vec<ZoneConfig>) -> Analytics {
    Analytics::new(&AnalyticsConfig {
        lines,
        zones,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn crossing_counts_once_with_direction() {
    let mut an = analytics(vec![line_cfg(&[])], vec![]);
    let first = an.process(&mut [obj(Some(1), "person", 80.0, 100.0)], 0.0);
    assert_eq!(counts(&first, "person"), (0, 0));
    let a = an.process(&mut [obj(Some(1), "person", 120.0, 100.0)], 0.1);
    assert_eq!(counts(&a, "person"), (1, 0));
    // Reported oriented so that `in` (moving right) ends on the right-hand side of points[0] → points[1].
    assert_eq!(
        a.lines[0].points,
        [Point::new(100.0, 200.0), Point::new(100.0, 0.0)]
    );
    assert_eq!(a.events.len(), 1);
    let e = &a.events[0];
    assert_eq!(e.kind, AnalyticsEventKind::LineCrossed);
    assert_eq!(e.direction.as_deref(), Some("in"));
    assert_eq!((e.track_id, e.label.as_deref()), (Some(1), Some("person")));
    // Staying on the far side adds nothing.
    let a = an.process(&mut [obj(Some(1), "person", 150.0, 100.0)], 0.2);
    assert_eq!(counts(&a, "person"), (1, 0));
    assert!(a.events.is_empty());

    // The other way round is `out`.
    let a = run(
        &mut analytics(vec![line_cfg(&[])], vec![]),
        &[(130.0, 50.0), (60.0, 60.0)],
    );
    assert_eq!(counts(&a, "person"), (0, 1));
    assert_eq!(a.events[0].direction.as_deref(), Some("out"));
}

#[test]
fn default_in_side_is_the_right_of_the_points_order() {
    // Points top → bottom: the right-hand side on the screen is x < 100, so moving left is `in`.
    let mut cfg = line_cfg(&[]);
    cfg.in_direction = None;
    let a = run(
        &mut analytics(vec![cfg], vec![]),
        &[(130.0, 50.0), (60.0, 60.0)],
    );
    assert_eq!(counts(&a, "person"), (1, 0));
}

#[test]
fn jitter_around_the_line_is_not_a_crossing() {
    // Default hysteresis 5 px: wobbling within ±5 px of x = 100, even across it, counts nothing.
    let mut an = analytics(vec![line_cfg(&[])], vec![]);
    let a = run(
        &mut an,
        &[
            (90.0, 100.0),
            (97.0, 100.0),
            (103.0, 100.0),
            (96.0, 100.0),
            (104.0, 100.0),
            (98.0, 100.0),
        ],
    );
    assert_eq!(counts(&a, "person"), (0, 0));
    // Then a real crossing is one `in`.
    let a = an.process(&mut [obj(Some(1), "person", 110.0, 100.0)], 1.0);
    assert_eq!(counts(&a, "person"), (1, 0));
}

#[test]
fn back_and_forth_counts_each_direction_at_most_once() {
    let mut an = analytics(vec![line_cfg(&[])], vec![]);
    let a = run(
        &mut an,
        &[
            (90.0, 100.0),
            (110.0, 100.0),
            (90.0, 100.0),
            (110.0, 100.0),
            (90.0, 100.0),
            (110.0, 100.0),
        ],
    );
    assert_eq!(counts(&a, "person"), (1, 1));
    // A second track doing the same counts on its own.
    let a = an.process(&mut [obj(Some(2), "person", 90.0, 10.0)], 2.0);
    assert_eq!(counts(&a, "person"), (1, 1));
    let a = an.process(&mut [obj(Some(2), "person", 110.0, 10.0)], 2.1);
    assert_eq!(counts(&a, "person"), (2, 1));
}

#[test]
fn passing_beyond_the_segment_end_is_not_a_crossing() {
    // The line ends at y = 200; passing at y = 250 crosses its extension only.
    let a = run(
        &mut analytics(vec![line_cfg(&[])], vec![]),
        &[(50.0, 250.0), (150.0, 250.0)],
    );
    assert_eq!(counts(&a, "person"), (0, 0));
    // A path through the margin band: the chord from the last confirmed point counts.
    let a = run(
        &mut analytics(vec![line_cfg(&[])], vec![]),
        &[(90.0, 100.0), (98.0, 100.0), (102.0, 100.0), (112.0, 100.0)],
    );
    assert_eq!(counts(&a, "person"), (1, 0));
}

#[test]
fn untracked_objects_do_not_cross() {
    let mut an = analytics(vec![line_cfg(&[])], vec![]);
    an.process(&mut [obj(None, "person", 80.0, 100.0)], 0.0);
    let a = an.process(&mut [obj(None, "person", 120.0, 100.0)], 0.1);
    assert!(a.lines[0].counts.is_empty());
}

#[test]
fn counts_per_class_and_label_filter() {
    let mut an = analytics(vec![line_cfg(&[])], vec![]);
    an.process(
        &mut [
            obj(Some(1), "person", 80.0, 50.0),
            obj(Some(2), "car", 80.0, 150.0),
            obj(Some(3), "car", 130.0, 100.0),
        ],
        0.0,
    );
    let a = an.process(
        &mut [
            obj(Some(1), "person", 120.0, 50.0),
            obj(Some(2), "car", 120.0, 150.0),
            obj(Some(3), "car", 70.0, 100.0),
        ],
        0.1,
    );
    assert_eq!(counts(&a, "person"), (1, 0));
    assert_eq!(counts(&a, "car"), (1, 1));
    // Label order of first crossing.
    let labels: Vec<&str> = a.lines[0].counts.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["person", "car"]);

    let mut an = analytics(vec![line_cfg(&["car"])], vec![]);
    an.process(
        &mut [
            obj(Some(1), "person", 80.0, 50.0),
            obj(Some(2), "car", 80.0, 150.0),
        ],
        0.0,
    );
    let a = an.process(
        &mut [
            obj(Some(1), "person", 120.0, 50.0),
            obj(Some(2), "car", 120.0, 150.0),
        ],
        0.1,
    );
    assert_eq!(counts(&a, "person"), (0, 0));
    assert_eq!(counts(&a, "car"), (1, 0));
}

#[test]
fn zone_entry_exit_and_dwell() {
    let mut an = analytics(vec![], vec![zone_cfg(None)]);
    let a = an.process(&mut [obj(Some(7), "person", 150.0, 50.0)], 1.0);
    assert_eq!((a.zones[0].occupancy, a.zones[0].entries), (0, 0));
    let a = an.process(&mut [obj(Some(7), "person", 250.0, 50.0)], 1.5);
    assert_eq!(kinds(&a), [AnalyticsEventKind::ZoneEntered]);
    assert_eq!((a.zones[0].occupancy, a.zones[0].entries), (1, 1));
    let a = an.process(&mut [obj(Some(7), "person", 260.0, 50.0)], 3.0);
    assert_eq!(a.zones[0].tracks.len(), 1);
    assert_eq!(a.zones[0].tracks[0].track_id, 7);
    assert!((a.zones[0].tracks[0].dwell_s - 1.5).abs() < 1e-9);
    // Just outside the outline (within the margin): still inside.
    let a = an.process(&mut [obj(Some(7), "person", 303.0, 50.0)], 3.5);
    assert!(a.events.is_empty());
    assert_eq!(a.zones[0].occupancy, 1);
    let a = an.process(&mut [obj(Some(7), "person", 320.0, 50.0)], 4.0);
    assert_eq!(kinds(&a), [AnalyticsEventKind::ZoneExited]);
    assert_eq!(a.events[0].dwell_s, Some(2.5));
    assert_eq!(a.events[0].track_id, Some(7));
    assert_eq!((a.zones[0].occupancy, a.zones[0].exits), (0, 1));
    assert!(a.zones[0].tracks.is_empty());
}

#[test]
fn zone_occupancy_counts_untracked_objects_and_filters_labels() {
    let mut z = zone_cfg(None);
    z.labels = vec!["person".into()];
    let mut an = analytics(vec![], vec![z]);
    let a = an.process(
        &mut [
            obj(None, "person", 250.0, 50.0),
            obj(Some(1), "person", 260.0, 50.0),
            obj(Some(2), "car", 270.0, 50.0),
            obj(None, "person", 50.0, 50.0),
        ],
        0.0,
    );
    assert_eq!(a.zones[0].occupancy, 2);
    assert_eq!(a.zones[0].entries, 1);
}

#[test]
fn overcrowding_rises_and_clears() {
    let mut an = analytics(vec![], vec![zone_cfg(Some(2))]);
    let inside = |n: u64| -> Vec<Object> {
        (0..n)
            .map(|i| obj(Some(i + 1), "person", 210.0 + i as f32 * 10.0, 50.0))
            .collect()
    };
    let a = an.process(&mut inside(2), 0.0);
    assert!(!a.zones[0].overcrowded);
    assert!(!kinds(&a).contains(&AnalyticsEventKind::ZoneOvercrowded));
    let a = an.process(&mut inside(3), 0.1);
    assert!(a.zones[0].overcrowded);
    let e = a
        .events
        .iter()
        .find(|e| e.kind == AnalyticsEventKind::ZoneOvercrowded)
        .unwrap();
    assert_eq!((e.count, e.threshold), (Some(3), Some(2)));
    // Still overcrowded: no second event.
    let a = an.process(&mut inside(4), 0.2);
    assert!(a.zones[0].overcrowded);
    assert!(
        a.events
            .iter()
            .all(|e| e.kind != AnalyticsEventKind::ZoneOvercrowded)
    );
    // Two leave (far away): cleared.
    let mut objs = inside(2);
    objs.push(obj(Some(3), "person", 500.0, 500.0));
    objs.push(obj(Some(4), "person", 500.0, 500.0));
    let a = an.process(&mut objs, 0.3);
    assert!(!a.zones[0].overcrowded);
    let e = a
        .events
        .iter()
        .find(|e| e.kind == AnalyticsEventKind::ZoneCleared)
        .unwrap();
    assert_eq!(e.count, Some(2));
    assert_eq!(a.zones[0].exits, 2);
}

#[test]
fn vanished_tracks_are_forgotten_and_exit_their_zones() {
    let mut an = Analytics::new(&AnalyticsConfig {
        forget_after: Some(3),
        zones: vec![zone_cfg(None)],
        lines: vec![line_cfg(&[])],
        ..Default::default()
    })
    .unwrap();
    an.process(&mut [obj(Some(5), "person", 250.0, 50.0)], 0.0);
    an.process(&mut [obj(Some(5), "person", 250.0, 50.0)], 0.4);
    // Frames 2, 3, 4 without it: still remembered (unseen for 3 frames at most).
    for i in 2..5 {
        let a = an.process(&mut [], i as f64 * 0.1);
        assert!(a.events.is_empty(), "frame {i}");
        assert_eq!(a.zones[0].occupancy, 0);
        assert_eq!(a.zones[0].tracks.len(), 1);
    }
    let a = an.process(&mut [], 0.5);
    assert_eq!(kinds(&a), [AnalyticsEventKind::ZoneExited]);
    assert_eq!(a.events[0].dwell_s, Some(0.4));
    assert_eq!((a.zones[0].entries, a.zones[0].exits), (1, 1));
    assert!(a.zones[0].tracks.is_empty());
}

#[test]
fn reset_clears_counts() {
    let mut an = analytics(vec![line_cfg(&[])], vec![zone_cfg(None)]);
    let a = run(&mut an, &[(80.0, 50.0), (250.0, 50.0)]);
    assert_eq!(counts(&a, "person"), (1, 0));
    assert_eq!(a.zones[0].entries, 1);
    an.reset();
    let a = an.process(&mut [], 0.0);
    assert!(a.lines[0].counts.is_empty());
    assert_eq!(a.zones[0].entries, 0);
}

#[test]
fn invalid_rules_are_refused() {
    let err = Analytics::new(&AnalyticsConfig {
        zones: vec![ZoneConfig {
            polygon: vec![[0.0, 0.0], [1.0, 1.0]],
            ..zone_cfg(None)
        }],
        ..Default::default()
    })
    .err()
    .unwrap();
    assert_eq!(err.key, "zones[0].polygon");
}

/// A person walking right 4 px per frame from x = 40, across the door line (x = 100) at frame 15;
/// its detections removed on `removed` frames; through ByteTrack with `coast` frames of coasting,
/// then the analytics. Returns (frame of each `line_crossed` event, the last frame's counts).
fn crossing_without_detections(
    coast: u32,
    removed: std::ops::Range<usize>,
) -> (Vec<usize>, (u64, u64)) {
    let mut tracker = crate::tracker::build(
        crate::tracker::TrackerKind::ByteTrack,
        &crate::tracker::TrackerParams {
            coast_frames: Some(coast),
            ..Default::default()
        },
    );
    let mut an = analytics(vec![line_cfg(&[])], vec![]);
    let (mut crossed, mut last) = (Vec::new(), FrameAnalytics::default());
    for f in 0..30 {
        let mut objects = if removed.contains(&f) {
            vec![]
        } else {
            let mut o = obj(None, "person", 40.0 + 4.0 * f as f32, 100.0);
            o.track_id = None;
            vec![o]
        };
        tracker.track(&mut objects);
        last = an.process(&mut objects, f as f64 / 25.0);
        if last
            .events
            .iter()
            .any(|e| e.kind == AnalyticsEventKind::LineCrossed)
        {
            crossed.push(f);
        }
    }
    (crossed, counts(&last, "person"))
}

#[test]
fn a_line_crossed_while_the_detection_is_missing_counts_once_at_its_frame() {
    // Anchor x = 40 + 4 f: beyond the 5 px margin (x > 105) from frame 17 on.
    let (with_all, n) = crossing_without_detections(2, 0..0);
    assert_eq!((with_all, n), (vec![17], (1, 0)));
    // The detections of frames 16 and 17 removed: the coasting track crosses at frame 17.
    let (coasting, n) = crossing_without_detections(2, 16..18);
    assert_eq!((coasting, n), (vec![17], (1, 0)));
    // Without coasting the crossing is counted (once) only when the detection is back.
    let (late, n) = crossing_without_detections(0, 16..18);
    assert_eq!((late, n), (vec![18], (1, 0)));
}

/// The synthetic speed scene: a camera looking down a road, the ground plane (metres, x across
/// the road, y along it) seen through `camera` (ground → frame pixels, a perspective map).
fn camera() -> Homography {
    // Frame points of the ground rectangle x 0..8 m, y 10..60 m (a 1280x720 frame, the far end
    // narrower): a known perspective.
    let ground = [[0.0, 10.0], [8.0, 10.0], [8.0, 60.0], [0.0, 60.0]];
    let image = [
        [180.0, 700.0],
        [1100.0, 700.0],
        [700.0, 260.0],
        [580.0, 260.0],
    ];
    Homography::from_points(&ground, &image).unwrap()
}

/// Speeds estimated for cars driving along the road at `kmh` (one lane each), boxes rendered
/// through the camera (a 1.8 m wide, 1.5 m high box at the ground point) with ±`jitter` px of
/// deterministic noise, 25 frames/s, through ByteTrack and the analytics; per car the speeds of
/// its last 30 frames. The calibration is the ground rectangle x 0..8 m, y 10..`far` m.
fn synthetic_speeds(
    kmh: &[f64],
    jitter: f32,
    limit: Option<f64>,
    far: f64,
) -> (Vec<Vec<f32>>, Vec<AnalyticsEvent>) {
    let cam = camera();
    let cal = {
        let ground = [[0.0, 10.0], [8.0, 10.0], [8.0, far], [0.0, far]];
        let image = ground.map(|g| {
            let p = cam.map(g).unwrap();
            [p[0] as f32, p[1] as f32]
        });
        CalibrationConfig {
            image,
            world: Some(ground),
            width: None,
            length: None,
        }
    };
    let mut an = Analytics::new(&AnalyticsConfig {
        lines: vec![LineConfig {
            name: "gate".into(),
            points: [[0.0, 480.0], [1280.0, 480.0]],
            labels: vec![],
            in_direction: None,
        }],
        calibration: Some(cal),
        speed: Some(SpeedConfig {
            limit,
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap();
    let mut tracker = crate::tracker::build(
        crate::tracker::TrackerKind::ByteTrack,
        &crate::tracker::TrackerParams::default(),
    );
    let mut rng = crate::rng::SplitMix64::new(7);
    let mut speeds = vec![Vec::new(); kmh.len()];
    let mut events = Vec::new();
    let frames = 75;
    for f in 0..frames {
        let t = f as f64 / 25.0;
        let mut objects = Vec::new();
        for (i, v) in kmh.iter().enumerate() {
            // Lane centre at x = 1 + 2 i m, from y = 12 m away from the camera.
            let g = [1.0 + 2.0 * i as f64, 12.0 + v / 3.6 * t];
            let foot = cam.map(g).unwrap();
            let right = cam.map([g[0] + 0.9, g[1]]).unwrap();
            let half = (right[0] - foot[0]) as f32;
            let h = half / 0.9 * 1.5;
            let mut n = || (rng.uniform() as f32 * 2.0 - 1.0) * jitter;
            let (x, y) = (foot[0] as f32 + n(), foot[1] as f32 + n());
            let mut o = Object::new(2, "car", 0.9, BBox::new(x - half, y - h, 2.0 * half, h));
            o.id = i as u32;
            objects.push(o);
        }
        tracker.track(&mut objects);
        let a = an.process(&mut objects, t);
        events.extend(a.events);
        if f >= frames - 30 {
            for o in &objects {
                let lane = kmh
                    .iter()
                    .enumerate()
                    .min_by_key(|(i, _)| {
                        let x = cam
                            .inverse()
                            .unwrap()
                            .map([f64::from(o.bbox.x + o.bbox.w / 2.0), f64::from(o.bbox.y2())]);
                        (x.map_or(f64::MAX, |g| (g[0] - (1.0 + 2.0 * *i as f64)).abs()) * 1000.0)
                            as i64
                    })
                    .map(|(i, _)| i)
                    .unwrap();
                if let Some(s) = o.speed {
                    assert_eq!(s.unit, SpeedUnit::Kmh);
                    speeds[lane].push(s.value);
                }
            }
        }
    }
    (speeds, events)
}

#[test]
fn speeds_of_a_synthetic_perspective_scene_are_within_3_percent() {
    let kmh = [30.0, 50.0, 90.0];
    // The calibrated stretch (to 100 m) covers every car's path.
    let (speeds, events) = synthetic_speeds(&kmh, 1.0, Some(70.0), 100.0);
    for (v, got) in kmh.iter().zip(&speeds) {
        assert_eq!(
            got.len(),
            30,
            "{v} km/h: a speed on each of the last 30 frames"
        );
        for s in got {
            let err = (f64::from(*s) - v).abs() / v;
            assert!(err <= 0.03, "{v} km/h estimated {s} ({:.1} %)", err * 100.0);
        }
    }
    // One speed_above event, for the 90 km/h car, and the crossings carry speeds.
    let above: Vec<&AnalyticsEvent> = events
        .iter()
        .filter(|e| e.kind == AnalyticsEventKind::SpeedAbove)
        .collect();
    assert_eq!(above.len(), 1, "{above:?}");
    let s = above[0].speed.unwrap();
    assert!(s.value > 70.0 && above[0].limit == Some(70.0) && above[0].name == "speed");
    // Without noise the estimate is exact to rounding.
    let (exact, _) = synthetic_speeds(&kmh, 0.0, None, 100.0);
    for (v, got) in kmh.iter().zip(&exact) {
        assert!(
            got.iter().all(|s| (f64::from(*s) - v).abs() < 0.01),
            "{v}: {got:?}"
        );
    }
}

#[test]
fn anchors_outside_the_calibration_get_no_speed() {
    // Calibrated to 60 m: the 90 km/h car passes 60 m at 1.92 s (frame 48) and has a speed on only
    // the first 4 of the last 30 frames (1.8..3.0 s); the 30 km/h car stays inside (12..37 m).
    let (speeds, _) = synthetic_speeds(&[30.0, 90.0], 1.0, None, 60.0);
    assert_eq!(speeds[0].len(), 30, "{speeds:?}");
    assert!((3..=5).contains(&speeds[1].len()), "{speeds:?}");
}

#[test]
fn speed_rules_need_a_calibration_and_name_the_key() {
    let err = |c: AnalyticsConfig| Analytics::new(&c).err().unwrap().to_string();
    assert_eq!(
        err(AnalyticsConfig {
            speed: Some(SpeedConfig::default()),
            ..Default::default()
        }),
        "speed: needs a calibration (four image points and their ground coordinates)"
    );
    assert_eq!(
        err(AnalyticsConfig {
            zones: vec![ZoneConfig {
                speed_limit: Some(30.0),
                ..zone_cfg(None)
            }],
            ..Default::default()
        }),
        "zones[0].speed_limit: needs a calibration to measure speeds"
    );
    let cal = CalibrationConfig {
        image: [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]],
        world: None,
        width: Some(3.0),
        length: Some(10.0),
    };
    assert!(
        err(AnalyticsConfig {
            calibration: Some(cal.clone()),
            speed: Some(SpeedConfig {
                window_s: Some(0.0),
                ..Default::default()
            }),
            ..Default::default()
        })
        .starts_with("speed.window_s: 0 is not")
    );
    assert!(
        err(AnalyticsConfig {
            calibration: Some(cal),
            speed: Some(SpeedConfig {
                limit: Some(-5.0),
                ..Default::default()
            }),
            ..Default::default()
        })
        .starts_with("speed.limit: -5 is not a speed")
    );
}
