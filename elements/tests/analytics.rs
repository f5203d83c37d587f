//! `vigilanalytics` through `gst_check::Harness`: synthetic tracked boxes crossing a line and entering and
//! leaving a zone, rules from a file and inline, bad rules refused at start, frames without meta.

mod common;

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::objects::{AnalyticsEventKind, BBox, FrameAnalytics, FrameObjects, Object};

/// A 320x240 frame at `n` * 100 ms whose objects are `(track id, label, anchor x, anchor y)`: 10x20
/// boxes whose bottom-centre is the given point.
fn frame(n: u64, inferred: bool, objects: &[(Option<u64>, &str, f32, f32)]) -> gst::Buffer {
    let mut buf = gst::Buffer::with_size(320 * 240 * 4).unwrap();
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(n * 100));
        let mut f = FrameObjects::new(320, 240);
        f.frame = n;
        f.inferred = inferred;
        for &(track, label, x, y) in objects {
            let class = if label == "person" { 0 } else { 2 };
            let mut o = Object::new(class, label, 0.9, BBox::new(x - 5.0, y - 20.0, 10.0, 20.0));
            o.track_id = track;
            f.objects.push(o);
        }
        f.renumber();
        VigilMeta::add(b, f);
    }
    buf
}

/// A vertical line at x = 100 (y 0..200), `in` = moving right; a zone x 200..300, y 0..100 that is
/// overcrowded above 1 object.
const RULES: &str = "{lines: [{name: door, points: [[100, 0], [100, 200]], in_direction: right}], \
                     zones: [{name: square, polygon: [[200, 0], [300, 0], [300, 100], [200, 100]], \
                     overcrowded_above: 1}]}";

fn harness(props: &str) -> gst_check::Harness {
    common::init();
    let mut h = gst_check::Harness::new_parse(&format!("vigilanalytics {props}"));
    h.set_src_caps_str("video/x-raw,format=RGBA,width=320,height=240,framerate=10/1");
    h.play();
    h
}

fn analytics(out: &gst::Buffer) -> FrameAnalytics {
    out.meta::<VigilMeta>()
        .unwrap()
        .frame()
        .analytics
        .clone()
        .expect("analytics in the meta")
}

fn counts(a: &FrameAnalytics, label: &str) -> (u64, u64) {
    a.lines[0]
        .counts
        .iter()
        .find(|c| c.label == label)
        .map_or((0, 0), |c| (c.r#in, c.out))
}

#[test]
fn tracks_cross_the_line_and_use_the_zone() {
    let mut h = harness(&format!("rules=\"{RULES}\""));
    // Track 1 (person) walks right across the line into the zone, stays 1 s, leaves it downwards.
    // Track 2 (car) drives left across the line. An untracked person stands in the zone.
    let path1 = [
        (60.0, 50.0),
        (90.0, 50.0),
        (110.0, 50.0),
        (150.0, 50.0),
        (220.0, 50.0),
    ];
    let mut all = Vec::new();
    let mut last = None;
    for (n, &(x, y)) in path1.iter().enumerate() {
        let car_x = 180.0 - 30.0 * n as f32;
        let out = h
            .push_and_pull(frame(
                n as u64,
                true,
                &[
                    (Some(1), "person", x, y),
                    (Some(2), "car", car_x, 150.0),
                    (None, "person", 280.0, 90.0),
                ],
            ))
            .unwrap();
        let a = analytics(&out);
        all.extend(a.events.clone());
        last = Some(a);
    }
    let a = last.unwrap();
    assert_eq!(counts(&a, "person"), (1, 0));
    assert_eq!(counts(&a, "car"), (0, 1));
    let zone = &a.zones[0];
    assert_eq!((zone.occupancy, zone.entries, zone.exits), (2, 1, 0));
    assert!(zone.overcrowded);
    let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&AnalyticsEventKind::ZoneOvercrowded),
        "{kinds:?}"
    );
    let crossing = all
        .iter()
        .find(|e| e.kind == AnalyticsEventKind::LineCrossed && e.track_id == Some(1))
        .unwrap();
    assert_eq!(crossing.direction.as_deref(), Some("in"));
    assert_eq!(crossing.name, "door");

    // Ten more frames (1 s) in the zone, on frames inference skipped (the tracker's predictions).
    for n in 5..15u64 {
        let out = h
            .push_and_pull(frame(n, false, &[(Some(1), "person", 220.0, 50.0)]))
            .unwrap();
        let a = analytics(&out);
        assert_eq!(a.zones[0].tracks.len(), 1);
        all.extend(a.events);
    }
    let out = h
        .push_and_pull(frame(15, true, &[(Some(1), "person", 220.0, 180.0)]))
        .unwrap();
    let a = analytics(&out);
    let exit = a
        .events
        .iter()
        .find(|e| e.kind == AnalyticsEventKind::ZoneExited)
        .expect("zone exit");
    assert_eq!(exit.track_id, Some(1));
    // Entered at frame 4 (0.4 s), left at frame 15 (1.5 s).
    assert!((exit.dwell_s.unwrap() - 1.1).abs() < 1e-6, "{exit:?}");
    assert_eq!((a.zones[0].entries, a.zones[0].exits), (1, 1));
    // The untracked person left at frame 5: one object in the zone is not overcrowded any more.
    assert!(
        all.iter()
            .any(|e| e.kind == AnalyticsEventKind::ZoneCleared)
    );
    assert!(!a.zones[0].overcrowded);
    // Counts are cumulative.
    assert_eq!(counts(&a, "person"), (1, 0));
}

#[test]
fn jitter_on_the_line_counts_nothing() {
    let mut h = harness(&format!("rules=\"{RULES}\" hysteresis=8"));
    let xs = [80.0, 95.0, 104.0, 97.0, 106.0, 93.0, 107.0, 99.0];
    let mut a = None;
    for (n, &x) in xs.iter().enumerate() {
        let out = h
            .push_and_pull(frame(n as u64, true, &[(Some(3), "person", x, 50.0)]))
            .unwrap();
        a = Some(analytics(&out));
    }
    assert_eq!(counts(&a.unwrap(), "person"), (0, 0));
}

#[test]
fn rules_from_a_file_and_anchor_property() {
    let dir = std::env::temp_dir().join(format!("vigil-analytics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.yaml");
    std::fs::write(
        &path,
        "lines:\n  - name: door\n    points: [[100, 0], [100, 200]]\n    labels: [person]\n",
    )
    .unwrap();
    // A box whose bottom (y 215) passes below the line's end (y 200) but whose top (y 195) crosses
    // it: counted with the top-centre anchor only.
    let mut h = harness(&format!(
        "config={} anchor=top-center",
        path.to_string_lossy()
    ));
    for (n, x) in [(0u64, 80.0), (1, 120.0)] {
        let out = h
            .push_and_pull(frame(n, true, &[(Some(1), "person", x, 215.0)]))
            .unwrap();
        if n == 1 {
            // Default in side: right of points[0] → points[1] (downwards): x < 100 is `in`, so moving
            // right is `out`.
            assert_eq!(counts(&analytics(&out), "person"), (0, 1));
        }
    }
    let mut h = harness(&format!("config={}", path.to_string_lossy()));
    for (n, x) in [(0u64, 80.0), (1, 120.0)] {
        let out = h
            .push_and_pull(frame(n, true, &[(Some(1), "person", x, 215.0)]))
            .unwrap();
        if n == 1 {
            assert_eq!(counts(&analytics(&out), "person"), (0, 0));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn frames_without_meta_pass_untouched() {
    let mut h = harness(&format!("rules=\"{RULES}\""));
    let mut buf = gst::Buffer::with_size(16).unwrap();
    buf.get_mut()
        .unwrap()
        .copy_from_slice(0, &[7u8; 16])
        .unwrap();
    let out = h.push_and_pull(buf).unwrap();
    assert!(out.meta::<VigilMeta>().is_none());
    assert_eq!(out.map_readable().unwrap().as_slice(), &[7u8; 16]);
}

/// Starting with `props` fails with an error message containing `want`.
fn start_error(props: &str) -> String {
    common::init();
    let el = gst::ElementFactory::make("vigilanalytics").build().unwrap();
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("fakesrc").build().unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add_many([&src, &el, &sink]).unwrap();
    for kv in props.split(';').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap();
        el.set_property_from_str(k, v);
    }
    let _ = pipeline.set_state(gst::State::Paused);
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error message");
    let _ = pipeline.set_state(gst::State::Null);
    match msg.view() {
        // The message is the domain's generic text; the details are in the debug string.
        gst::MessageView::Error(e) => format!("{} ({})", e.error(), e.debug().unwrap_or_default()),
        _ => unreachable!(),
    }
}

#[test]
fn bad_rules_are_refused_at_start_naming_the_key() {
    let e = start_error("rules={lines: [{name: a, points: [[1, 2], [1, 2]]}]}");
    assert!(
        e.contains("property 'rules': lines[0].points: the two points are the same"),
        "{e}"
    );
    let e = start_error("rules={zones: [{name: z, polygon: [[0, 0], [1, 1]]}]}");
    assert!(
        e.contains("zones[0].polygon: a polygon needs at least 3 points"),
        "{e}"
    );
    let e = start_error("rules={lines: [{name: a, pionts: [[0, 0], [1, 1]]}]}");
    assert!(
        e.contains("property 'rules'") && e.contains("pionts"),
        "{e}"
    );
    let e = start_error("rules={lines: [{name: a, points: [[0, 0], [1, 1]]}]};anchor=feet");
    assert!(
        e.contains("property 'anchor': anchor 'feet' is not known"),
        "{e}"
    );
    let e = start_error("config=/nonexistent/rules.yaml");
    assert!(
        e.contains("property 'config': cannot read /nonexistent/rules.yaml"),
        "{e}"
    );
    let e = start_error("");
    assert!(e.contains("no rules"), "{e}");
}

#[test]
fn a_calibration_gives_speeds_to_objects_lines_and_events() {
    // The frame's x axis is the ground's: 10 px = 1 m (a top-down calibration covering both paths:
    // anchors outside it get no speed), 10 frames/s.
    let rules = "{calibration: {image: [[0, 0], [1000, 0], [1000, 1000], [0, 1000]], width: 100, length: 100}, \
                 speed: {unit: m/s, window_s: 1, limit: 15}, \
                 lines: [{name: walk, points: [[60, 0], [60, 100]]}, {name: road, points: [[400, 100], [400, 200]]}]}";
    let mut h = harness(&format!("rules=\"{rules}\""));
    let (mut speeds, mut events) = (Vec::new(), Vec::new());
    let mut last = None;
    for n in 0..30u64 {
        // 2 px per frame = 0.2 m per 0.1 s = 2 m/s; track 2 at 20 m/s.
        let out = h
            .push_and_pull(frame(
                n,
                true,
                &[
                    (Some(1), "person", 20.0 + 2.0 * n as f32, 50.0),
                    (Some(2), "car", 5.0 + 20.0 * n as f32, 150.0),
                ],
            ))
            .unwrap();
        let meta = out.meta::<VigilMeta>().unwrap();
        let f = meta.frame();
        speeds.push(f.objects[0].speed.map(|s| (s.value, s.unit.as_str())));
        events.extend(f.analytics.clone().unwrap().events);
        last = f.analytics.clone();
    }
    // None before the window is full, then 2 m/s.
    assert!(speeds[..9].iter().all(Option::is_none), "{speeds:?}");
    let (v, unit) = speeds[29].unwrap();
    assert!((v - 2.0).abs() < 1e-3 && unit == "m/s", "{v} {unit}");
    // The car: once above 15 m/s, and its crossing carries its speed.
    let above: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AnalyticsEventKind::SpeedAbove)
        .collect();
    assert_eq!(above.len(), 1, "{above:?}");
    assert_eq!((above[0].track_id, above[0].limit), (Some(2), Some(15.0)));
    let crossed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AnalyticsEventKind::LineCrossed)
        .collect();
    assert_eq!(crossed.len(), 2, "{crossed:?}");
    assert!(crossed.iter().all(|e| e.speed.is_some()), "{crossed:?}");
    let last = last.unwrap();
    let (walk, road) = (
        last.lines[0].speed.expect("walk's speeds"),
        last.lines[1].speed.expect("road's speeds"),
    );
    assert_eq!((walk.count, road.count), (1, 1));
    assert!((walk.mean - 2.0).abs() < 1e-3, "{walk:?}");
    assert!((road.max - 20.0).abs() < 1e-3, "{road:?}");
}
