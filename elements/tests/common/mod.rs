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
