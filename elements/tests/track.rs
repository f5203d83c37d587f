//! `vigiltrack` through `gst_check::Harness` with real buffers carrying `VigilMeta`.

mod common;

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::objects::{BBox, FrameObjects, Object};

fn frame_buffer(n: u64, inferred: bool, boxes: &[(f32, f32)]) -> gst::Buffer {
    let mut buf = gst::Buffer::with_size(64 * 48 * 4).unwrap();
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(n * 40));
        let mut f = FrameObjects::new(64, 48);
        f.frame = n;
        f.inferred = inferred;
        for &(x, y) in boxes {
            f.objects
                .push(Object::new(0, "person", 0.9, BBox::new(x, y, 10.0, 20.0)));
        }
        f.renumber();
        VigilMeta::add(b, f);
    }
    buf
}

fn harness(props: &str) -> gst_check::Harness {
    common::init();
    let mut h = gst_check::Harness::new_parse(&format!("vigiltrack {props}"));
    h.set_src_caps_str("video/x-raw,format=RGBA,width=64,height=48,framerate=25/1");
    h.play();
    h
}

fn objects(out: &gst::Buffer) -> Vec<Object> {
    out.meta::<VigilMeta>().unwrap().frame().objects.clone()
}

#[test]
fn ids_are_stable_and_distinct() {
    let mut h = harness("");
    let mut seen = Vec::new();
    for n in 0..10u64 {
        let x = n as f32;
        let out = h
            .push_and_pull(frame_buffer(n, true, &[(x, 5.0), (50.0 - x, 20.0)]))
            .unwrap();
        let o = objects(&out);
        seen.push((o[0].track_id.unwrap(), o[1].track_id.unwrap()));
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    assert_ne!(seen[0].0, seen[0].1);
}

#[test]
fn skipped_frames_get_predicted_tracks() {
    let mut h = harness("max-age=10");
    let a = objects(
        &h.push_and_pull(frame_buffer(0, true, &[(0.0, 5.0)]))
            .unwrap(),
    );
    let b = objects(
        &h.push_and_pull(frame_buffer(1, true, &[(2.0, 5.0)]))
            .unwrap(),
    );
    assert_eq!(a[0].track_id, b[0].track_id);
    // a frame inference skipped: the track is there, moved on
    let c = objects(&h.push_and_pull(frame_buffer(2, false, &[])).unwrap());
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].track_id, a[0].track_id);
    assert!(c[0].bbox.x > 2.0, "{:?}", c[0].bbox);
    let d = objects(
        &h.push_and_pull(frame_buffer(3, true, &[(6.0, 5.0)]))
            .unwrap(),
    );
    assert_eq!(d[0].track_id, a[0].track_id);
}

#[test]
fn buffers_without_meta_pass_and_bad_tracker_is_refused() {
    let mut h = harness("");
    let out = h
        .push_and_pull(gst::Buffer::with_size(16).unwrap())
        .unwrap();
    assert!(out.meta::<VigilMeta>().is_none());

    common::init();
    let e = gst::ElementFactory::make("vigiltrack")
        .property("tracker", "kalman9000")
        .build()
        .unwrap();
    assert!(e.set_state(gst::State::Paused).is_err());
    e.set_state(gst::State::Null).unwrap();
    let d = gst::ElementFactory::make("vigiltrack").build().unwrap();
    assert_eq!(d.property::<String>("tracker"), "iou");
    assert_eq!(d.property::<f32>("iou-threshold"), 0.3);
    assert_eq!(d.property::<u32>("max-age"), 30);
    assert_eq!(d.property::<u32>("min-hits"), 1);
}
