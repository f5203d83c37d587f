//! `vigilosd` drawing `vigilanalytics` results (lines, zones, counters) and track trails, through
//! `gst_check::Harness` with RGBA buffers.

mod common;

use gstvigil::meta::VigilMeta;
use vigil_core::draw::{Color, track_color};
use vigil_core::objects::{
    BBox, FrameAnalytics, FrameObjects, LineStatus, Object, Point, ZoneStatus,
};

const W: u32 = 160;
const H: u32 = 120;
/// Counting lines are drawn in this colour (`vigil_core::draw` `LINE_COLOR`).
const LINE: Color = Color::new(255, 220, 0);
const ZONE: Color = Color::new(0, 200, 255);

fn harness(props: &str) -> gst_check::Harness {
    common::init();
    let mut h = gst_check::Harness::new_parse(&format!("vigilosd {props}"));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGBA,width={W},height={H},framerate=10/1"
    ));
    h.play();
    h
}

fn frame(objects: FrameObjects) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(vec![0u8; (W * H * 4) as usize]);
    VigilMeta::add(buffer.get_mut().unwrap(), objects);
    buffer
}

fn pixel(buffer: &gst::Buffer, x: u32, y: u32) -> [u8; 3] {
    let m = buffer.map_readable().unwrap();
    let i = ((y * W + x) * 4) as usize;
    [m[i], m[i + 1], m[i + 2]]
}

fn rgb(c: Color) -> [u8; 3] {
    [c.r, c.g, c.b]
}

/// No objects; a vertical line at x = 120 (y 20..110) and a zone x 10..50, y 70..110.
fn with_analytics() -> FrameObjects {
    let mut f = FrameObjects::new(W, H);
    f.analytics = Some(FrameAnalytics {
        lines: vec![LineStatus {
            name: "l".into(),
            points: [Point::new(120.0, 20.0), Point::new(120.0, 110.0)],
            counts: vec![],
            speed: None,
        }],
        zones: vec![ZoneStatus {
            name: "z".into(),
            polygon: vec![
                Point::new(10.0, 70.0),
                Point::new(50.0, 70.0),
                Point::new(50.0, 110.0),
                Point::new(10.0, 110.0),
            ],
            ..Default::default()
        }],
        events: vec![],
    });
    f
}

#[test]
fn lines_zones_and_counters_are_drawn_and_can_be_turned_off() {
    let out = harness("").push_and_pull(frame(with_analytics())).unwrap();
    assert_eq!(pixel(&out, 120, 100), rgb(LINE));
    assert_eq!(pixel(&out, 50, 100), rgb(ZONE));
    // The counters panel at the top-left: white text on black.
    let top: Vec<[u8; 3]> = (2..40).map(|x| pixel(&out, x, 8)).collect();
    assert!(top.contains(&[255, 255, 255]), "{top:?}");

    let out = harness("draw-lines=false draw-zones=false draw-counters=false")
        .push_and_pull(frame(with_analytics()))
        .unwrap();
    assert_eq!(pixel(&out, 120, 100), [0, 0, 0]);
    assert_eq!(pixel(&out, 50, 100), [0, 0, 0]);
    assert!((2..40).all(|x| pixel(&out, x, 8) == [0, 0, 0]));
}

/// A tracked person whose box bottom-centre is at (x, 60).
fn walker(x: f32) -> FrameObjects {
    let mut f = FrameObjects::new(W, H);
    let mut o = Object::new(0, "person", 0.9, BBox::new(x - 5.0, 40.0, 10.0, 20.0));
    o.track_id = Some(9);
    f.objects.push(o);
    f
}

#[test]
fn trails_follow_the_track() {
    // Off by default.
    let mut h = harness("draw-labels=false draw-confidence=false draw-track-ids=false");
    let mut out = None;
    for x in [20.0, 40.0, 60.0] {
        out = Some(h.push_and_pull(frame(walker(x))).unwrap());
    }
    assert_eq!(pixel(&out.unwrap(), 30, 60), [0, 0, 0]);

    let mut h = harness(
        "draw-trails=true trail-length=3 draw-labels=false draw-confidence=false draw-track-ids=false",
    );
    let mut out = None;
    for x in [20.0, 40.0, 60.0] {
        out = Some(h.push_and_pull(frame(walker(x))).unwrap());
    }
    let out = out.unwrap();
    // The bottom-centres (20, 60), (40, 60), (60, 60) joined in the track's colour.
    assert_eq!(pixel(&out, 30, 60), rgb(track_color(9)));
    // Two more frames: with trail-length 3 the start of the trail (x 20..40) is gone.
    for x in [80.0, 100.0] {
        let out = h.push_and_pull(frame(walker(x))).unwrap();
        if x == 100.0 {
            assert_eq!(pixel(&out, 30, 60), [0, 0, 0]);
            assert_eq!(pixel(&out, 70, 60), rgb(track_color(9)));
        }
    }
}
