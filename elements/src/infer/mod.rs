//! `vigilinfer`: runs a detector from a Triton-style model repository on video frames with ONNX Runtime.
//!
//! The model is looked up as `<model-repository>/<model>/<version>/model.onnx` with its `config.pbtxt` and
//! `labels.txt`; the pre-processing (size, colour order, mean/std, layout, stretch or letterbox) and the
//! output parser (`gfl`, `boxes`, `yolov8`) come from the entry's `parameters` (see
//! `vigil_core::modelspec`). Frames pass through unchanged; each one gets a `VigilMeta` with the detected
//! objects in frame coordinates (frames skipped by `interval` get an empty meta marked `inferred=false`).
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 filesrc location=samples/media/vtest.avi ! decodebin ! \
//!     videoconvert ! vigilinfer model-repository=models model=nanodet threshold=0.4 ! \
//!     vigiltrack ! vigilosd ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
//! ```
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct VigilInfer(ObjectSubclass<imp::VigilInfer>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vigilinfer",
        gst::Rank::NONE,
        VigilInfer::static_type(),
    )
}
