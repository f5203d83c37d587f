//! Acceptance 5 (issue 5), privacy mode end to end: the real `vigil` binary runs `bus.jpg` looped as a
//! video with NanoDet (persons), CenterFace as a secondary model on the person crops and
//! `overlay.blur: [face]`, serving RTSP on a free port and writing events. An in-process RTSP client
//! decodes the H.264 output; inside each face box from the events (inset 4 px, away from the drawn
//! outline and H.264 ringing at its edges) the luma variance must drop below 20 % of the same box in
//! the original, unblurred image, while a textured region of the bus away from every box and label
//! keeps its variance within ±35 % (so it is not a blur of everything; the margin covers H.264 coding).
//!
//! Skips with a message when the sample media or the models are not installed (`make setup`).

use gst::prelude::*;
use gst_video::prelude::*;
use std::time::{Duration, Instant};
use vigil_tests::{TempDir, repo_root, skip, start_vigil};

/// An I420 frame's luma plane.
struct Luma {
    width: usize,
    height: usize,
    stride: usize,
    data: Vec<u8>,
}

impl Luma {
    fn from_sample(sample: &gst::Sample) -> Luma {
        let caps = sample.caps().expect("caps");
        let info = gst_video::VideoInfo::from_caps(caps).expect("video caps");
        let buffer = sample.buffer().expect("buffer");
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).expect("map");
        Luma {
            width: info.width() as usize,
            height: info.height() as usize,
            stride: frame.plane_stride()[0] as usize,
            data: frame.plane_data(0).expect("Y plane").to_vec(),
        }
    }

    /// Variance of the luma in `[x0, x1) x [y0, y1)`.
    fn variance(&self, (x0, y0, x1, y1): (usize, usize, usize, usize)) -> f64 {
        let v: Vec<f64> = (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .map(|(x, y)| self.data[y * self.stride + x] as f64)
            .collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64
    }
}

/// Decodes `launch` (ending in `appsink name=sink`) and returns the luma of its `n`-th frame.
fn nth_frame(launch: &str, n: usize, limit: Duration) -> Result<Luma, String> {
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| format!("{launch}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("{launch}: does not play: {e}"))?;
    let deadline = Instant::now() + limit;
    let mut got = 0;
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(format!("timed out after {got} frames"));
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(left.as_millis() as u64)) {
            Some(sample) => {
                got += 1;
                if got == n {
                    break Ok(Luma::from_sample(&sample));
                }
            }
            None => break Err(format!("end of stream or timeout after {got} frames")),
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[test]
fn faces_are_blurred_in_the_rtsp_output() {
    let root = repo_root();
    let media = root.join("samples/media/bus.jpg");
    let models = root.join("models");
    for needed in [
        media.clone(),
        models.join("nanodet/1/model.onnx"),
        models.join("centerface/1/model.onnx"),
    ] {
        if !needed.exists() {
            skip(format_args!(
                "{} is not installed (run `make setup`)",
                needed.display()
            ));
            return;
        }
    }
    gst::init().unwrap();
    let dir = TempDir::new("privacy");
    let events = dir.path().join("events.jsonl");
    // The shipped config with a free port, absolute paths and a temporary events file.
    let text = std::fs::read_to_string(root.join("configs/privacy.yaml"))
        .unwrap()
        .replace("port: 8554", "port: 0")
        .replace("../models", &models.display().to_string())
        .replace("../samples/media/bus.jpg", &media.display().to_string())
        .replace("../out/privacy-events.jsonl", &events.display().to_string());
    let config = dir.path().join("privacy.yaml");
    std::fs::write(&config, text).unwrap();
    let (vigil, info) = start_vigil(&config, Duration::from_secs(120)).unwrap();
    let url = info.rtsp.first().expect("an RTSP URL").clone();

    // The 10th decoded frame of the RTSP output (past the first key frame's start-up quality).
    let out = nth_frame(
        &format!(
            "rtspsrc location={url} protocols=tcp latency=200 ! rtph264depay ! h264parse ! \
             avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false"
        ),
        10,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("RTSP client: {e}; vigil stderr:\n{}", vigil.stderr_text()));
    vigil.stop_clean();
    // The original image, decoded the same way vigil's source decodes it.
    let original = nth_frame(
        &format!(
            "filesrc location=\"{}\" ! jpegdec ! videoconvert ! video/x-raw,format=I420 ! \
             appsink name=sink sync=false",
            media.display()
        ),
        1,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!((out.width, out.height), (original.width, original.height));

    // The faces from the events (the image is static: every frame has the same ones).
    let lines = vigil_tests::read_events(&events).unwrap();
    let frame = lines
        .iter()
        .rev()
        .find(|e| {
            e["objects"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["label"] == "face"))
        })
        .unwrap_or_else(|| panic!("no face in {} events", lines.len()));
    let faces: Vec<(usize, usize, usize, usize)> = frame["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["label"] == "face")
        .map(|o| {
            assert!(o["parent"].is_u64(), "a face has a parent: {o}");
            let b = &o["bbox"];
            let f = |k: &str| b[k].as_f64().unwrap();
            let inset = 4.0;
            (
                (f("x") + inset).ceil() as usize,
                (f("y") + inset).ceil() as usize,
                (f("x") + f("w") - inset).floor() as usize,
                (f("y") + f("h") - inset).floor() as usize,
            )
        })
        .collect();
    assert_eq!(faces.len(), 2, "bus.jpg has two faces found inside persons");
    for r in &faces {
        let (before, after) = (original.variance(*r), out.variance(*r));
        let ratio = after / before;
        eprintln!(
            "face {r:?}: luma variance {before:.1} -> {after:.1} ({:.1} %)",
            ratio * 100.0
        );
        assert!(
            ratio < 0.2,
            "face {r:?} not blurred: variance {before:.1} -> {after:.1}"
        );
    }
    // The bus's windows, inside the bus box but away from every outline and label.
    let control = (430, 250, 600, 370);
    let (before, after) = (original.variance(control), out.variance(control));
    eprintln!("control {control:?}: luma variance {before:.1} -> {after:.1}");
    assert!(
        before > 100.0,
        "the control region has texture ({before:.1})"
    );
    assert!(
        (0.65..1.35).contains(&(after / before)),
        "control region {control:?} changed: {before:.1} -> {after:.1}"
    );
}
