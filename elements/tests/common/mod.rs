//! Helpers shared by the element tests: plugin registration, repository paths, decoding sample images.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

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

/// Waits (up to 30 s) until `cond` holds.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The runtime of model `name` loaded in this process's model server (the only one of that name).
pub fn loaded(name: &str) -> Arc<vigil_engine::ModelRuntime> {
    vigil_engine::ModelServer::global()
        .runtimes()
        .into_iter()
        .find(|r| r.name() == name)
        .unwrap_or_else(|| panic!("{name} is not loaded"))
}

/// A model repository in the temporary folder (removed on drop) with models of `models/` under
/// other names (configuration and labels copied, weights linked): `(model, name, slow)`. A `slow`
/// model's dynamic batcher holds a lone request that long, waiting for a batch of 8 — an
/// inference that lasts at least `slow`, and is seen waiting (`ModelStats::pending`).
pub struct TempRepository {
    pub path: PathBuf,
}

impl TempRepository {
    pub fn new(tag: &str, models: &[(&str, &str, Option<Duration>)]) -> TempRepository {
        let path = std::env::temp_dir().join(format!("vigil-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        for &(model, name, slow) in models {
            let source = models_dir().join(model);
            let dir = path.join(name);
            std::fs::create_dir_all(dir.join("1")).unwrap();
            let mut config = std::fs::read_to_string(source.join("config.pbtxt"))
                .unwrap()
                .replace(&format!("name: \"{model}\""), &format!("name: \"{name}\""));
            if let Some(delay) = slow {
                let (from, to) = (
                    "max_queue_delay_microseconds: 2000",
                    format!(
                        "max_queue_delay_microseconds: {}\n  preferred_batch_size: [ 8 ]",
                        delay.as_micros()
                    ),
                );
                assert!(config.contains(from), "{model}: {config}");
                config = config.replace(from, &to);
            }
            std::fs::write(dir.join("config.pbtxt"), config).unwrap();
            if source.join("labels.txt").is_file() {
                std::fs::copy(source.join("labels.txt"), dir.join("labels.txt")).unwrap();
            }
            let weights = std::fs::canonicalize(source.join("1/model.onnx")).unwrap();
            std::os::unix::fs::symlink(weights, dir.join("1/model.onnx")).unwrap();
        }
        TempRepository { path }
    }
}

impl Drop for TempRepository {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
