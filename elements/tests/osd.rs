//! `vigilosd` through `gst_check::Harness` with real RGBA and I420 buffers.

use gst::glib;
use gst::prelude::*;
use gst_video::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::draw::{Color, class_color, track_color};
use vigil_core::objects::{BBox, FrameObjects, Object};

const W: u32 = 160;
const H: u32 = 120;

fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst::init");
        gstvigil::plugin_register_static().expect("register the vigil plugin");
    });
}

fn info(format: gst_video::VideoFormat) -> gst_video::VideoInfo {
    init();
    gst_video::VideoInfo::builder(format, W, H)
        .build()
        .expect("video info")
}

fn harness(info: &gst_video::VideoInfo) -> gst_check::Harness {
    init();
    let mut h = gst_check::Harness::new("vigilosd");
    h.set_src_caps(info.to_caps().expect("caps"));
    h
}

/// A frame whose bytes follow a pattern (so that "unchanged" is meaningful), with `objects` attached
/// as `VigilMeta` when given.
fn frame(info: &gst_video::VideoInfo, objects: Option<FrameObjects>) -> gst::Buffer {
    let data: Vec<u8> = (0..info.size()).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    let mut buffer = gst::Buffer::from_mut_slice(data);
    if let Some(objects) = objects {
        VigilMeta::add(buffer.get_mut().expect("new buffer is writable"), objects);
    }
    buffer
}

fn bytes(buffer: &gst::Buffer) -> Vec<u8> {
    buffer.map_readable().expect("readable").as_slice().to_vec()
}

/// The components of pixel (x, y): R, G, B, A for RGBA; Y, U, V for I420.
fn pixel(buffer: &gst::Buffer, info: &gst_video::VideoInfo, x: usize, y: usize) -> Vec<u8> {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info)
        .expect("map frame");
    let stride = |p: usize| frame.plane_stride()[p] as usize;
    match info.format() {
        gst_video::VideoFormat::Rgba => {
            frame.plane_data(0).expect("plane 0")[y * stride(0) + x * 4..][..4].to_vec()
        }
        gst_video::VideoFormat::I420 => vec![
            frame.plane_data(0).expect("Y")[y * stride(0) + x],
            frame.plane_data(1).expect("U")[(y / 2) * stride(1) + x / 2],
            frame.plane_data(2).expect("V")[(y / 2) * stride(2) + x / 2],
        ],
        f => panic!("test helper does not read {f:?}"),
    }
}

fn expected(info: &gst_video::VideoInfo, c: Color) -> Vec<u8> {
    match info.format() {
        gst_video::VideoFormat::Rgba => vec![c.r, c.g, c.b, 255],
        _ => c.to_yuv().to_vec(),
    }
}

/// One person at (40, 50) 60x40: box columns 40..100, rows 50..90.
fn person(track_id: Option<u64>) -> FrameObjects {
    let mut f = FrameObjects::new(W, H);
    let mut o = Object::new(0, "person", 0.83, BBox::new(40.0, 50.0, 60.0, 40.0));
    o.track_id = track_id;
    f.objects.push(o);
    f
}

/// Far from the box and its label (label rows 30..50 with the default font scale).
const FAR: [(usize, usize); 5] = [(5, 110), (150, 110), (70, 70), (0, 0), (150, 5)];

fn check_drawn(format: gst_video::VideoFormat, track_id: Option<u64>, color: Color) {
    let info = info(format);
    let mut h = harness(&info);
    let input = frame(&info, Some(person(track_id)));
    let before = input.clone();
    let out = h.push_and_pull(input).expect("output buffer");

    let c = expected(&info, color);
    for (x, y) in [
        (40, 70),
        (41, 70),
        (99, 70),
        (98, 70),
        (70, 50),
        (70, 51),
        (70, 89),
        (70, 88),
    ] {
        assert_eq!(
            pixel(&out, &info, x, y),
            c,
            "{format:?} box edge ({x}, {y})"
        );
    }
    // The label background: "person 0.83[ #12]" is wider than the frame, so it starts at x = 0,
    // directly above the box.
    assert_eq!(pixel(&out, &info, 1, 31), c, "{format:?} label background");
    for (x, y) in FAR {
        assert_eq!(
            pixel(&out, &info, x, y),
            pixel(&before, &info, x, y),
            "{format:?} far pixel ({x}, {y})"
        );
    }
    assert!(
        out.meta::<VigilMeta>().is_some(),
        "meta stays on the buffer"
    );
}

#[test]
fn draws_box_and_label_on_rgba() {
    check_drawn(gst_video::VideoFormat::Rgba, Some(12), track_color(12));
}

#[test]
fn draws_box_and_label_on_i420() {
    check_drawn(gst_video::VideoFormat::I420, None, class_color(0));
}

#[test]
fn every_format_is_drawn_on() {
    use gst_video::VideoFormat as F;
    for format in [
        F::Rgba,
        F::Bgra,
        F::Rgbx,
        F::Bgrx,
        F::Rgb,
        F::Bgr,
        F::I420,
        F::Nv12,
    ] {
        let info = info(format);
        let mut h = harness(&info);
        let input = frame(&info, Some(person(Some(1))));
        let original = bytes(&input);
        let out = bytes(&h.push_and_pull(input).expect("output buffer"));
        assert_eq!(out.len(), original.len(), "{format:?}");
        let changed = out.iter().zip(&original).filter(|(a, b)| a != b).count();
        assert!(changed > 100, "{format:?}: {changed} bytes changed");
    }
}

#[test]
fn frame_without_meta_passes_through_unchanged() {
    for format in [gst_video::VideoFormat::Rgba, gst_video::VideoFormat::I420] {
        let info = info(format);
        let mut h = harness(&info);
        let input = frame(&info, None);
        let original = bytes(&input);
        let out = h.push_and_pull(input).expect("output buffer");
        assert_eq!(bytes(&out), original, "{format:?}");

        let input = frame(&info, Some(FrameObjects::new(W, H)));
        let out = h.push_and_pull(input).expect("output buffer");
        assert_eq!(bytes(&out), original, "{format:?} with empty meta");
    }
}

#[test]
fn properties_change_the_drawing() {
    let info = info(gst_video::VideoFormat::Rgba);
    let mut h = harness(&info);
    {
        let osd = h.element().expect("element");
        osd.set_property("line-width", 5u32);
        osd.set_property("draw-labels", false);
        osd.set_property("draw-confidence", false);
        osd.set_property("draw-track-ids", false);
    }
    let input = frame(&info, Some(person(Some(3))));
    let before = input.clone();
    let out = h.push_and_pull(input).expect("output buffer");
    let c = expected(&info, track_color(3));
    assert_eq!(pixel(&out, &info, 44, 70), c);
    assert_eq!(pixel(&out, &info, 45, 70), pixel(&before, &info, 45, 70));
    // No label line.
    for (x, y) in [(1, 31), (40, 40), (60, 49)] {
        assert_eq!(
            pixel(&out, &info, x, y),
            pixel(&before, &info, x, y),
            "({x}, {y})"
        );
    }
}

#[test]
fn properties_have_their_defaults() {
    init();
    let osd = gst::ElementFactory::make("vigilosd")
        .build()
        .expect("make vigilosd");
    assert!(osd.property::<bool>("draw-labels"));
    assert!(osd.property::<bool>("draw-confidence"));
    assert!(osd.property::<bool>("draw-track-ids"));
    assert_eq!(osd.property::<u32>("line-width"), 2);
    assert_eq!(osd.property::<u32>("font-scale"), 2);

    for (name, min, max, default) in [("line-width", 1, 32, 2), ("font-scale", 1, 8, 2)] {
        let pspec = osd.find_property(name).expect(name);
        let pspec = pspec
            .downcast_ref::<glib::ParamSpecUInt>()
            .expect("uint property");
        assert_eq!(
            (pspec.minimum(), pspec.maximum(), pspec.default_value()),
            (min, max, default),
            "{name}"
        );
        assert!(
            !pspec.blurb().unwrap_or_default().is_empty(),
            "{name} blurb"
        );
    }

    let factory = osd.factory().expect("factory");
    assert_eq!(
        factory.metadata(gst::ELEMENT_METADATA_LONGNAME),
        Some("Vigil overlay")
    );
    assert_eq!(
        factory.metadata(gst::ELEMENT_METADATA_KLASS),
        Some("Filter/Effect/Video")
    );
    assert_eq!(
        factory.metadata(gst::ELEMENT_METADATA_AUTHOR),
        Some("The Vigil developers")
    );
    assert_eq!(factory.rank(), gst::Rank::NONE);
}
