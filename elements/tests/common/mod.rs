//! Helpers shared by the element tests: plugin registration, repository paths, decoding sample images.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Once;

use gst::prelude::*;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstvigil::plugin_register_static().expect("vigil plugin registers");
    });
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn models_dir() -> PathBuf {
    repo_root().join("models")
}

pub fn media(name: &str) -> PathBuf {
    repo_root().join("samples/media").join(name)
}

/// True when the model weights and sample media that `make setup` installs are present; otherwise prints
/// why the calling test does nothing.
pub fn assets_installed(model: &str, media_file: &str) -> bool {
    let m = models_dir().join(model).join("1/model.onnx");
    let f = media(media_file);
    for p in [&m, &f] {
        if !p.is_file() {
            eprintln!(
                "SKIPPED: {} is not installed; run `make setup`",
                p.display()
            );
            return false;
        }
    }
    true
}

/// Decodes an image file into one raw video buffer of `format`, with its caps.
pub fn decode_image(path: &std::path::Path, format: &str) -> (gst::Caps, gst::Buffer) {
    init();
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format={format} ! appsink name=sink sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink.pull_sample().expect("a decoded frame");
    pipeline.set_state(gst::State::Null).unwrap();
    (
        sample.caps().unwrap().to_owned(),
        sample.buffer().unwrap().to_owned(),
    )
}

/// Runs `desc` (a launch line with appsinks `sink0` … `sink{streams-1}`) to end-of-stream: each sink is
/// drained on its own thread by `per_frame`, called with the stream index and each frame's
/// `VigilMeta` objects (every frame must carry one); returns the frames counted per stream. Asserts that
/// the pipeline ends with end-of-stream, not an error.
pub fn run_streams(
    desc: &str,
    streams: usize,
    per_frame: impl Fn(usize, vigil_core::objects::FrameObjects) + Clone + Send + 'static,
) -> Vec<usize> {
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sinks: Vec<gst_app::AppSink> = (0..streams)
        .map(|i| {
            pipeline
                .by_name(&format!("sink{i}"))
                .unwrap()
                .downcast()
                .unwrap()
        })
        .collect();
    pipeline.set_state(gst::State::Playing).unwrap();
    let counters: Vec<_> = sinks
        .into_iter()
        .enumerate()
        .map(|(i, sink)| {
            let per_frame = per_frame.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while let Ok(sample) = sink.pull_sample() {
                    let frame = sample
                        .buffer()
                        .unwrap()
                        .meta::<gstvigil::meta::VigilMeta>()
                        .map(|m| m.frame().clone())
                        .expect("every frame has VigilMeta");
                    per_frame(i, frame);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let frames = counters.into_iter().map(|c| c.join().unwrap()).collect();
    let msg = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(5),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(msg.as_ref().map(|m| m.type_()), Some(gst::MessageType::Eos)),
        "{msg:?}"
    );
    frames
}
