//! `vigiltrack` through `gst_check::Harness` with real buffers carrying `VigilMeta`.

mod common;

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::objects::{BBox, FrameObjects, Object};

fn frame_buffer(n: u64, inferred: bool, boxes: &[(f32, f32)]) -> gst::Buffer {
    let scored: Vec<(f32, f32, f32)> = boxes.iter().map(|&(x, y)| (x, y, 0.9)).collect();
    scored_frame_buffer(n, inferred, &scored)
}

/// A frame whose objects are `(x, y, confidence)`.
fn scored_frame_buffer(n: u64, inferred: bool, boxes: &[(f32, f32, f32)]) -> gst::Buffer {
    let mut buf = gst::Buffer::with_size(64 * 48 * 4).unwrap();
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(n * 40));
        let mut f = FrameObjects::new(64, 48);
        f.frame = n;
        f.inferred = inferred;
        for &(x, y, c) in boxes {
            f.objects
                .push(Object::new(0, "person", c, BBox::new(x, y, 10.0, 20.0)));
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
    assert_eq!(d.property::<u32>("min-hits"), 0);
    assert_eq!(d.property::<u32>("track-buffer"), 30);
    assert_eq!(d.property::<f32>("track-thresh"), 0.5);
    assert_eq!(d.property::<f32>("low-thresh"), 0.1);
    assert_eq!(d.property::<f32>("new-track-thresh"), 0.6);
    assert!(d.property::<bool>("match-class"));
    for kind in ["iou", "sort", "bytetrack", "ocsort"] {
        let e = gst::ElementFactory::make("vigiltrack")
            .property("tracker", kind)
            .build()
            .unwrap();
        assert!(e.set_state(gst::State::Paused).is_ok(), "{kind}");
        e.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn bytetrack_keeps_tracks_through_low_confidence_and_skipped_frames() {
    let mut h = harness("tracker=bytetrack track-thresh=0.5 track-buffer=5");
    let mut ids = Vec::new();
    for n in 0..12u64 {
        let x = n as f32;
        // the first object is only weakly detected in frames 4..8 (partly occluded)
        let c = if (4..8).contains(&n) { 0.3 } else { 0.9 };
        let out = h
            .push_and_pull(scored_frame_buffer(
                n,
                true,
                &[(x, 5.0, c), (50.0 - x, 20.0, 0.9)],
            ))
            .unwrap();
        let o = objects(&out);
        assert_eq!(o.len(), 2);
        ids.push((o[0].track_id, o[1].track_id));
    }
    assert!(ids[0].0.is_some() && ids[0].1.is_some(), "{ids:?}");
    assert!(ids.iter().all(|p| *p == ids[0]), "{ids:?}");
    assert_ne!(ids[0].0, ids[0].1);
    // frames inference skipped: both tracks predicted, moving on
    let p = objects(&h.push_and_pull(frame_buffer(12, false, &[])).unwrap());
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].track_id, ids[0].0);
    assert!(p[0].bbox.x > 11.0, "{:?}", p[0].bbox);
    assert_eq!(p[1].track_id, ids[0].1);
    assert!(p[1].bbox.x < 39.0, "{:?}", p[1].bbox);
    // a low-confidence detection alone starts nothing
    let mut h = harness("tracker=bytetrack");
    for n in 0..4u64 {
        let out = h
            .push_and_pull(scored_frame_buffer(n, true, &[(10.0, 10.0, 0.3)]))
            .unwrap();
        assert_eq!(objects(&out)[0].track_id, None);
    }
}

#[test]
fn coast_frames_reports_missed_tracks_as_predicted() {
    // bytetrack's default: 2 frames of coasting; the property reads -1 (the tracker's default).
    common::init();
    let e = gst::ElementFactory::make("vigiltrack").build().unwrap();
    assert_eq!(e.property::<i32>("coast-frames"), -1);
    e.set_property("coast-frames", 3i32);
    assert_eq!(e.property::<i32>("coast-frames"), 3);
    for (props, shown) in [
        ("tracker=bytetrack", 2),
        ("tracker=bytetrack coast-frames=1", 1),
        ("tracker=bytetrack coast-frames=0", 0),
    ] {
        let mut h = harness(props);
        for n in 0..5u64 {
            let o = objects(
                &h.push_and_pull(frame_buffer(n, true, &[(n as f32 * 2.0, 5.0)]))
                    .unwrap(),
            );
            assert!(!o[0].predicted && o[0].track_id.is_some(), "{props}");
        }
        for k in 1..=3u32 {
            let o = objects(
                &h.push_and_pull(frame_buffer(4 + u64::from(k), true, &[]))
                    .unwrap(),
            );
            if k <= shown {
                assert_eq!(o.len(), 1, "{props}: miss {k}: {o:?}");
                assert!(o[0].predicted, "{props}");
                assert_eq!(o[0].since_detection, k, "{props}");
                assert_eq!(o[0].track_id, Some(1), "{props}");
                // JSON: the flag and the count
                let v = serde_json::to_value(&o[0]).unwrap();
                assert_eq!(
                    (v["predicted"].clone(), v["since_detection"].clone()),
                    (true.into(), k.into())
                );
            } else {
                assert!(o.is_empty(), "{props}: miss {k}: {o:?}");
            }
        }
    }
}
