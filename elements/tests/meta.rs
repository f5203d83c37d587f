//! `VigilMeta` survives the elements that copy metadata (videoconvert, queue, tee) and is rescaled by
//! videoscale, in a real pipeline.

mod common;

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::objects::{BBox, FrameObjects, Object};

#[test]
fn meta_is_rescaled_by_videoscale_and_kept_by_videoconvert() {
    common::init();
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time caps=video/x-raw,format=RGBA,width=320,height=240,framerate=10/1 ! \
         queue ! videoconvert ! video/x-raw,format=I420 ! videoscale ! video/x-raw,width=640,height=120 ! \
         tee ! queue ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();

    let mut buf = gst::Buffer::with_size(320 * 240 * 4).unwrap();
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::ZERO);
        let mut f = FrameObjects::new(320, 240);
        f.inferred = true;
        let mut o = Object::new(0, "person", 0.8, BBox::new(32.0, 24.0, 64.0, 48.0));
        o.track_id = Some(7);
        f.objects.push(o);
        VigilMeta::add(b, f);
    }
    src.push_buffer(buf).unwrap();
    src.end_of_stream().unwrap();
    let sample = sink.pull_sample().expect("a frame");
    pipeline.set_state(gst::State::Null).unwrap();

    let out = sample.buffer().unwrap();
    let frame = out
        .meta::<VigilMeta>()
        .expect("VigilMeta survived")
        .frame()
        .clone();
    assert_eq!((frame.width, frame.height), (640, 120));
    let o = &frame.objects[0];
    assert_eq!(o.track_id, Some(7));
    assert_eq!(o.bbox, BBox::new(64.0, 12.0, 128.0, 24.0));
}
