//! `vigilinfer`: runs a detector from a Triton-style model repository on video frames with ONNX Runtime.
//!
//! The model is looked up as `<model-repository>/<model>/<version>/model.onnx` with its `config.pbtxt` and
//! `labels.txt`; the pre-processing (size, colour order, mean/std, layout, stretch or letterbox) and the
//! output parser (`gfl`, `boxes`, `yolov8`, `centerface`) come from the entry's `parameters` (see
//! `vigil_core::modelspec`). Frames pass through unchanged; each one gets a `VigilMeta` with the detected
//! objects in frame coordinates (frames skipped by `interval` get an empty meta marked `inferred=false`).
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 filesrc location=samples/media/vtest.avi ! decodebin ! \
//!     videoconvert ! vigilinfer model-repository=models model=nanodet threshold=0.4 ! \
//!     vigiltrack ! vigilosd ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
//! ```
//!
//! With `process-mode=secondary` the element runs its model on the crops of the objects already in the
//! frame's `VigilMeta` (those labelled `operate-on-labels`, at least `min-object-size` pixels wide and
//! high, grown by `crop-expand`), submits all crops of a frame to the model's shared dynamic batcher at
//! once (so crops of one frame and of other streams are batched together) and appends the detections
//! as child objects (`parent` = the id of the object they were found in). Frames without meta or
//! without qualifying objects pass unchanged. Faces inside persons, blurred by `vigilosd`:
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 filesrc location=samples/media/bus.jpg ! jpegdec ! \
//!     imagefreeze num-buffers=50 ! videoconvert ! vigilinfer model=nanodet classes=person ! vigiltrack ! \
//!     vigilinfer model=centerface process-mode=secondary operate-on-labels=person threshold=0.5 \
//!     nms-iou=0.3 ! vigilosd blur-labels=face ! videoconvert ! autovideosink
//! ```
use gst::glib;
use gst::prelude::*;

mod imp;

/// What `vigilinfer` runs its model on.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstVigilInferProcessMode")]
pub enum ProcessMode {
    #[default]
    #[enum_value(name = "Primary: the whole frame", nick = "primary")]
    Primary = 0,
    #[enum_value(
        name = "Secondary: the crops of the objects already in the frame's meta",
        nick = "secondary"
    )]
    Secondary = 1,
}

glib::wrapper! {
    pub struct VigilInfer(ObjectSubclass<imp::VigilInfer>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    ProcessMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "vigilinfer",
        gst::Rank::NONE,
        VigilInfer::static_type(),
    )
}
