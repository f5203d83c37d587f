//! `vigilinfer` with real models on real images, through `gst_check::Harness`.

mod common;

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::objects::FrameObjects;
use vigil_engine::preprocess::ColorOrder;

fn harness(props: &str) -> gst_check::Harness {
    common::init();
    let desc = format!(
        "vigilinfer model-repository=\"{}\" {props}",
        common::models_dir().display()
    );
    let mut h = gst_check::Harness::new_parse(&desc);
    h.play();
    h
}

fn run_one(
    h: &mut gst_check::Harness,
    caps: &gst::Caps,
    buf: gst::Buffer,
) -> (gst::Buffer, FrameObjects) {
    h.set_src_caps(caps.clone());
    let out = h.push_and_pull(buf).expect("a buffer out");
    let frame = out
        .meta::<VigilMeta>()
        .expect("VigilMeta on the output")
        .frame()
        .clone();
    (out, frame)
}

#[derive(serde::Deserialize)]
struct Reference {
    width: u32,
    height: u32,
    detections: Vec<RefDet>,
}

#[derive(serde::Deserialize)]
struct RefDet {
    label: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

/// Acceptance: NanoDet on bus.jpg matches the independent Python/ONNX Runtime reference
/// (`scripts/reference/nanodet_reference.py` → `tests/data/nanodet_bus_reference.json`):
/// same classes, boxes within 2 px, scores within 0.01.
#[test]
fn nanodet_matches_python_reference() {
    if !common::assets_installed("nanodet", "bus.jpg") {
        return;
    }
    let text =
        std::fs::read_to_string(common::repo_root().join("tests/data/nanodet_bus_reference.json"))
            .unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    let (caps, buf) = common::decode_image(&common::media("bus.png"), "RGB");
    let mut h = harness("model=nanodet threshold=0.4 nms-iou=0.5");
    let (out, frame) = run_one(&mut h, &caps, buf.clone());
    assert_eq!(
        (frame.width, frame.height),
        (reference.width, reference.height)
    );
    assert!(frame.inferred);
    // frames pass through untouched
    assert_eq!(
        out.map_readable().unwrap().as_slice(),
        buf.map_readable().unwrap().as_slice()
    );

    let mut got: Vec<_> = frame.objects.iter().collect();
    got.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    for o in &got {
        eprintln!(
            "vigil: {} {:.3} [{:.1}, {:.1}, {:.1}, {:.1}]",
            o.label,
            o.confidence,
            o.bbox.x,
            o.bbox.y,
            o.bbox.x2(),
            o.bbox.y2()
        );
    }
    assert_eq!(
        got.len(),
        reference.detections.len(),
        "number of detections"
    );
    for r in &reference.detections {
        // the Vigil object of the same class closest to the reference box
        let clamp = |v: f32, m: u32| v.clamp(0.0, m as f32);
        let rb = [
            clamp(r.bbox[0], reference.width),
            clamp(r.bbox[1], reference.height),
            clamp(r.bbox[2], reference.width),
            clamp(r.bbox[3], reference.height),
        ];
        let dist = |o: &vigil_core::objects::Object| {
            let b = [o.bbox.x, o.bbox.y, o.bbox.x2(), o.bbox.y2()];
            b.iter()
                .zip(rb)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max)
        };
        let best = got
            .iter()
            .filter(|o| o.label == r.label)
            .min_by(|a, b| dist(a).total_cmp(&dist(b)))
            .unwrap_or_else(|| panic!("no {} detected", r.label));
        assert!(
            dist(best) <= 2.0,
            "{} box {:?} vs reference {:?}",
            r.label,
            best.bbox,
            rb
        );
        assert!(
            (best.confidence - r.score).abs() <= 0.01,
            "{} score {} vs reference {}",
            r.label,
            best.confidence,
            r.score
        );
    }
}

/// Same model, same frame in I420 and RGBA: the converter handles the formats, detections agree.
#[test]
fn formats_and_class_filter() {
    if !common::assets_installed("nanodet", "bus.jpg") {
        return;
    }
    let (caps_rgb, buf_rgb) = common::decode_image(&common::media("bus.jpg"), "RGBA");
    let (caps_yuv, buf_yuv) = common::decode_image(&common::media("bus.jpg"), "I420");
    let (caps_nv12, buf_nv12) = common::decode_image(&common::media("bus.jpg"), "NV12");
    let mut h = harness("model=nanodet");
    let (_, a) = run_one(&mut h, &caps_rgb, buf_rgb);
    for (caps, buf) in [(&caps_yuv, buf_yuv.clone()), (&caps_nv12, buf_nv12)] {
        let mut h = harness("model=nanodet");
        let (_, b) = run_one(&mut h, caps, buf);
        assert_eq!(a.objects.len(), b.objects.len(), "{caps}");
        for (x, y) in a.objects.iter().zip(&b.objects) {
            assert_eq!(x.label, y.label);
            assert!(x.bbox.iou(&y.bbox) > 0.9, "{caps}: {x:?} vs {y:?}");
        }
    }
    let mut h = harness("model=nanodet classes=bus");
    let (_, c) = run_one(&mut h, &caps_yuv, buf_yuv);
    assert_eq!(c.objects.len(), 1);
    assert_eq!(c.objects[0].label, "bus");
    assert_eq!(c.objects[0].model, "nanodet");
}

/// Vigil's own YUV → RGB conversion (`vigil_engine::frame::to_packed4`, which `vigilinfer` uses for NV12
/// and I420 and the GPU kernels reproduce exactly) against GStreamer's `VideoConverter` on a real
/// picture: the same colours within rounding and chroma filtering (GStreamer interpolates NV12's
/// chroma, Vigil takes each 2x2 block's sample).
#[test]
fn own_yuv_conversion_agrees_with_gstreamer() {
    if !common::assets_installed("nanodet", "bus.jpg") {
        return;
    }
    use vigil_engine::frame::{FrameFormat, FrameLayout, YuvMatrix, YuvStandard, to_packed4};
    for (name, format) in [("I420", FrameFormat::I420), ("NV12", FrameFormat::Nv12)] {
        let (caps, buf) = common::decode_image(&common::media("bus.jpg"), name);
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        let (w, h) = (info.width(), info.height());
        let out_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgbx, w, h)
            .build()
            .unwrap();
        let conv = gst_video::VideoConverter::new(&info, &out_info, None).unwrap();
        let mut theirs = gst::Buffer::with_size(out_info.size()).unwrap();
        {
            let src = gst_video::VideoFrameRef::from_buffer_ref_readable(&buf, &info).unwrap();
            let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(
                theirs.get_mut().unwrap(),
                &out_info,
            )
            .unwrap();
            conv.frame_ref(&src, &mut dst);
        }
        let layout = FrameLayout {
            format,
            width: w,
            height: h,
            stride: info.stride()[0] as usize,
            stride_uv: info.stride()[1] as usize,
            u_offset: info.offset()[1],
            v_offset: info.offset().get(2).copied().unwrap_or(0),
            frame_bytes: info.size(),
        };
        let c = info.colorimetry();
        let standard = match c.matrix() {
            gst_video::VideoColorMatrix::Bt709 => YuvStandard::Bt709,
            _ => YuvStandard::Bt601,
        };
        let matrix = YuvMatrix::new(
            standard,
            c.range() == gst_video::VideoColorRange::Range0_255,
        );
        let mut ours = vec![0u8; (4 * w * h) as usize];
        let map = buf.map_readable().unwrap();
        to_packed4(&map, &layout, &matrix, ColorOrder::Rgb, &mut ours).unwrap();
        let theirs = theirs.map_readable().unwrap();
        let mut hist = [0usize; 256];
        for (a, b) in ours.chunks_exact(4).zip(theirs.chunks_exact(4)) {
            for c in 0..3 {
                hist[(i32::from(a[c]) - i32::from(b[c])).unsigned_abs() as usize] += 1;
            }
        }
        let n: usize = hist.iter().sum();
        let mean = hist.iter().enumerate().map(|(d, k)| d * k).sum::<usize>() as f64 / n as f64;
        let within2 = hist[..=2].iter().sum::<usize>() as f64 / n as f64;
        eprintln!(
            "{name} {w}x{h} ({c}): mean |vigil - gstreamer| {mean:.3} levels, {:.2} % within 2 levels",
            100.0 * within2
        );
        // Measured: I420 0.86 levels (GStreamer's fast path rounds its 8-bit fixed point coarser),
        // 99.6 % within 2; NV12 1.18 (its chroma is interpolated), 92 % within 2. A wrong matrix or
        // range is off by 8 levels on average.
        assert!(mean < 1.5, "{name}: mean difference {mean}");
        assert!(within2 > 0.9, "{name}: {within2} within 2 levels");
    }
}

/// `interval=3`: frames 0 and 3 are inferred, 1 and 2 carry an empty, not-inferred meta.
#[test]
fn interval_skips_frames() {
    if !common::assets_installed("nanodet", "bus.jpg") {
        return;
    }
    let (caps, buf) = common::decode_image(&common::media("bus.jpg"), "I420");
    let mut h = harness("model=nanodet interval=3");
    h.set_src_caps(caps);
    let mut inferred = Vec::new();
    for i in 0..4u64 {
        let mut b = buf.copy();
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(i * 40));
        let out = h.push_and_pull(b).unwrap();
        let f = out.meta::<VigilMeta>().unwrap().frame().clone();
        assert_eq!(f.frame, i);
        inferred.push((f.inferred, f.objects.is_empty()));
    }
    assert_eq!(
        inferred,
        vec![(true, false), (false, true), (false, true), (true, false)]
    );
}

/// CenterNet (boxes decoded in the graph, NHWC RGB, batch fixed at 1) finds the bus and people too.
#[test]
fn centernet_boxes_parser() {
    if !common::assets_installed("centernet", "bus.jpg") {
        return;
    }
    let (caps, buf) = common::decode_image(&common::media("bus.jpg"), "I420");
    let mut h = harness("model=centernet threshold=0.4");
    let (_, f) = run_one(&mut h, &caps, buf);
    let labels: Vec<_> = f.objects.iter().map(|o| o.label.as_str()).collect();
    assert!(labels.contains(&"bus"), "{labels:?}");
    assert!(
        labels.iter().filter(|l| **l == "person").count() >= 3,
        "{labels:?}"
    );
}

/// Bad configuration is an error at start, naming what is wrong — not a panic.
#[test]
fn missing_model_fails_to_start_with_clear_error() {
    common::init();
    let desc = format!(
        "videotestsrc num-buffers=1 ! vigilinfer model-repository=\"{}\" model=nope ! fakesink",
        common::models_dir().display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let text = format!("{} {:?}", err.error(), err.debug());
    eprintln!("{text}");
    assert!(text.contains("nope") && text.contains("models"), "{text}");
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn properties_have_documented_defaults() {
    common::init();
    let e = gst::ElementFactory::make("vigilinfer").build().unwrap();
    assert_eq!(e.property::<String>("model-repository"), "models");
    assert_eq!(e.property::<i64>("model-version"), -1);
    assert_eq!(e.property::<f32>("threshold"), 0.4);
    assert_eq!(e.property::<f32>("nms-iou"), 0.5);
    assert_eq!(e.property::<u32>("interval"), 1);
    e.set_property("threshold", 0.6f32);
    assert_eq!(e.property::<f32>("threshold"), 0.6);
}
