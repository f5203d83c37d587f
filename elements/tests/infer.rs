//! `vigilinfer` with real models on real images, through `gst_check::Harness`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

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

// ---- Properties set while the element infers (issue 20: no lock held across inference). ----

/// Objects of `out`'s meta as (label, confidence, box) for comparisons.
fn objects(frame: &FrameObjects) -> Vec<(String, f32, [f32; 4])> {
    frame
        .objects
        .iter()
        .map(|o| {
            let b = o.bbox;
            (o.label.clone(), o.confidence, [b.x, b.y, b.w, b.h])
        })
        .collect()
}

/// Pushes `buf` through `h` on another thread; its handle gives the harness back with the frame's
/// meta and how long the push took.
fn push_in_background(
    mut h: gst_check::Harness,
    buf: gst::Buffer,
) -> std::thread::JoinHandle<(gst_check::Harness, FrameObjects, Duration)> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let out = h.push_and_pull(buf).expect("a buffer out");
        let took = start.elapsed();
        let frame = out.meta::<VigilMeta>().expect("VigilMeta").frame().clone();
        (h, frame, took)
    })
}

/// The `vigilinfer` inside a harness made by `Harness::new_parse` (which puts it in a bin).
fn infer_element(h: &gst_check::Harness) -> gst::Element {
    let bin = h.element().expect("the harness' element");
    bin.downcast_ref::<gst::Bin>()
        .expect("a bin")
        .iterate_elements()
        .find(|e| e.factory().is_some_and(|f| f.name() == "vigilinfer"))
        .expect("vigilinfer in the bin")
}

/// Sets `threshold` on `element` from this thread and returns how long the call took.
fn time_set_threshold(element: &gst::Element, value: f32) -> Duration {
    let start = Instant::now();
    element.set_property("threshold", value);
    start.elapsed()
}

/// A property change must not wait for the inference in flight.
const SET_PROPERTY_LIMIT: Duration = Duration::from_millis(50);

/// Acceptance (issue 20): `threshold` set while a frame's inference waits in the local model's
/// batcher (a NanoDet whose `dynamic_batching` holds a lone request for 1 s) returns at once; the
/// frame in flight keeps the threshold it started with.
#[test]
fn threshold_set_during_a_local_inference_returns_at_once() {
    if !common::assets_installed("nanodet", "bus.jpg") {
        return;
    }
    let slow = Some(Duration::from_secs(1));
    let repo = common::TempRepository::new("infer", &[("nanodet", "nanodet_slow", slow)]);
    let (caps, buf) = common::decode_image(&common::media("bus.jpg"), "RGB");
    common::init();
    let desc = format!(
        "vigilinfer model-repository=\"{}\" model=nanodet_slow threshold=0.99 preprocess=cpu",
        repo.path.display()
    );
    let mut h = gst_check::Harness::new_parse(&desc);
    h.play();
    h.set_src_caps(caps);
    let element = infer_element(&h);
    let runtime = common::loaded("nanodet_slow");
    let pusher = push_in_background(h, buf);
    common::wait_until("the request to wait in the batcher", || {
        runtime.stats().pending == 1
    });

    let took = time_set_threshold(&element, 0.2);
    let in_flight = !pusher.is_finished();
    let (_h, frame, pushed) = pusher.join().unwrap();
    eprintln!("set_property: {took:?}; inference: {pushed:?}");
    assert!(
        in_flight,
        "the inference ended before set_property returned"
    );
    assert!(took < SET_PROPERTY_LIMIT, "set_property took {took:?}");
    assert!(
        pushed >= Duration::from_millis(900),
        "the inference took {pushed:?}"
    );
    assert!(frame.inferred);
    assert!(
        frame.objects.iter().all(|o| o.confidence >= 0.99),
        "the frame in flight keeps threshold 0.99: {:?}",
        objects(&frame)
    );
}

/// Acceptance (issue 20): `threshold` set while a frame's request waits for a remote inference
/// server (a fake one that answers after 1.5 s, seen to have received the request) returns at
/// once; the frame in flight keeps its threshold, the next frame has the new one.
#[test]
fn threshold_set_during_a_remote_inference_returns_at_once_and_applies_to_the_next_frame() {
    let server = FakeServer::start(Duration::from_millis(1500));
    let mut h = harness(&format!(
        "model=fake server-url={} server-timeout-ms=10000 threshold=0.5",
        server.url
    ));
    h.set_src_caps_str("video/x-raw,format=RGB,width=64,height=48,framerate=25/1");
    let element = infer_element(&h);
    let frame_buffer = || gst::Buffer::with_size(64 * 48 * 3).unwrap();
    let pusher = push_in_background(h, frame_buffer());
    server
        .requests
        .recv_timeout(Duration::from_secs(10))
        .expect("the server receives the request");

    let took = time_set_threshold(&element, 0.2);
    let in_flight = !pusher.is_finished();
    let (mut h, first, pushed) = pusher.join().unwrap();
    eprintln!("set_property: {took:?}; inference: {pushed:?}");
    assert!(
        in_flight,
        "the inference ended before set_property returned"
    );
    assert!(took < SET_PROPERTY_LIMIT, "set_property took {took:?}");
    assert!(
        pushed >= Duration::from_millis(1400),
        "the inference took {pushed:?}"
    );
    let scores = |f: &FrameObjects| f.objects.iter().map(|o| o.confidence).collect::<Vec<_>>();
    assert!(first.inferred);
    assert_eq!(scores(&first), vec![0.9], "frame 0 at threshold 0.5");

    server.delay_ms.store(0, Ordering::SeqCst);
    let second = h.push_and_pull(frame_buffer()).expect("a buffer out");
    let second = second.meta::<VigilMeta>().unwrap().frame().clone();
    let mut got = scores(&second);
    got.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(got, vec![0.9, 0.3], "frame 1 at threshold 0.2");
    assert_eq!(element.property::<u64>("frames-not-inferred"), 0);
}

/// Acceptance (issue 20): `threshold` changed while playing applies from the next frame: frame 0
/// at 0.99, frame 1 at 0.2 has exactly the objects of a run started at 0.2.
#[test]
fn threshold_set_while_playing_applies_to_the_next_frame() {
    if !common::assets_installed("nanodet", "bus.jpg") {
        return;
    }
    let (caps, buf) = common::decode_image(&common::media("bus.jpg"), "RGB");
    let mut reference = harness("model=nanodet threshold=0.2");
    let (_, want) = run_one(&mut reference, &caps, buf.clone());

    let mut h = harness("model=nanodet threshold=0.99");
    let (_, first) = run_one(&mut h, &caps, buf.clone());
    assert!(
        first.objects.len() < want.objects.len(),
        "0.99 keeps fewer objects ({}) than 0.2 ({})",
        first.objects.len(),
        want.objects.len()
    );
    assert!(first.objects.iter().all(|o| o.confidence >= 0.99));
    infer_element(&h).set_property("threshold", 0.2f32);
    let (_, next) = run_one(&mut h, &caps, buf);
    assert_eq!(next.frame, 1);
    assert_eq!(objects(&next), objects(&want));
}

/// A fake inference server speaking just enough of Triton's HTTP protocol for `vigilinfer
/// server-url`: model `fake` takes a 3x32x32 FP32 image and answers two boxes decoded by Vigil
/// (`vigil.postprocess: boxes`), scores 0.9 and 0.3, `delay_ms` after each request, which is told
/// on `requests` as it arrives.
struct FakeServer {
    url: String,
    delay_ms: Arc<AtomicU64>,
    requests: mpsc::Receiver<()>,
}

const FAKE_CONFIG: &str = r#"{"name": "fake", "max_batch_size": 0,
    "input": [{"name": "image", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW", "dims": [3, 32, 32]}],
    "output": [{"name": "boxes", "data_type": "TYPE_FP32", "dims": [1, 2, 6]}],
    "parameters": {"vigil.postprocess": {"string_value": "boxes"}}}"#;
const FAKE_METADATA: &str = r#"{"name": "fake", "versions": ["1"], "platform": "onnxruntime_onnx",
    "inputs": [{"name": "image", "datatype": "FP32", "shape": [3, 32, 32]}],
    "outputs": [{"name": "boxes", "datatype": "FP32", "shape": [1, 2, 6]}]}"#;
const FAKE_ANSWER: &str = r#"{"model_name": "fake", "model_version": "1",
    "outputs": [{"name": "boxes", "datatype": "FP32", "shape": [1, 2, 6],
                 "data": [2, 2, 12, 12, 0.9, 0, 16, 16, 30, 30, 0.3, 1]}]}"#;

impl FakeServer {
    fn start(delay: Duration) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let delay_ms = Arc::new(AtomicU64::new(delay.as_millis() as u64));
        let (tx, requests) = mpsc::channel();
        let delay = delay_ms.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (delay, tx) = (delay.clone(), tx.clone());
                std::thread::spawn(move || serve_connection(stream, &delay, &tx));
            }
        });
        FakeServer {
            url,
            delay_ms,
            requests,
        }
    }
}

/// Answers the requests of one keep-alive connection until the client closes it.
fn serve_connection(stream: TcpStream, delay_ms: &AtomicU64, requests: &mpsc::Sender<()>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = match request_line.split_whitespace().nth(1).unwrap_or("") {
            "/v2/models/fake/config" => ("200 OK", FAKE_CONFIG),
            "/v2/models/fake" => ("200 OK", FAKE_METADATA),
            "/v2/models/fake/infer" => {
                let _ = requests.send(());
                std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst)));
                ("200 OK", FAKE_ANSWER)
            }
            _ => ("404 Not Found", r#"{"error": "not found"}"#),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(answer.as_bytes()))
            .is_err()
        {
            return;
        }
    }
}
