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
//!
//! `preprocess` (primary mode) chooses where a frame becomes the model's input tensor. `cpu`: here,
//! on the streaming thread (colour conversion by `VideoConverter` when needed, SIMD resize,
//! normalisation), and the request carries the f32 tensor. `gpu` and `auto` (the default): when the
//! model's current runtime takes frame requests (`ModelRuntime::gpu_preprocessing`: `KIND_GPU`
//! instances on the CUDA or TensorRT provider, a CUDA device and NVRTC) the request carries the
//! mapped frame's bytes and layout (NV12, I420, RGBA/RGBx, BGRA/BGRx, RGB, BGR), and the instance
//! pre-processes the whole batch with one kernel launch, the tensor staying on the device until the
//! model has run; otherwise the CPU path runs, with one warning per process for `gpu` (`auto` only
//! logs at debug level). Frames of other formats (YUY2) always take the CPU path; so does secondary
//! mode (crops). The choice is made again on every frame, so a reload that changes the runtime
//! takes effect at once; a runtime that stops taking frames (an instance could not make its GPU
//! pre-processor) sends that frame and the next through the CPU path, with one warning. Frames
//! arriving in CUDA memory (`nvh264dec`) are mapped for reading, which gives host bytes: they are
//! uploaded again by the pre-processor (a copy that a CUDA-memory path would save).
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 filesrc location=samples/media/bikes.mp4 ! decodebin ! \
//!     vigilinfer model=nanodet preprocess=gpu ! vigiltrack ! vigilosd ! videoconvert ! autovideosink
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

/// Where `vigilinfer` pre-processes frames (primary mode).
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstVigilInferPreprocess")]
pub enum Preprocess {
    #[default]
    #[enum_value(
        name = "Auto: inside the model server on the GPU when its runtime can, else on the CPU",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(
        name = "CPU: colour conversion, resize and normalisation here",
        nick = "cpu"
    )]
    Cpu = 1,
    #[enum_value(
        name = "GPU: inside the model server on the GPU (one warning and the CPU where it cannot)",
        nick = "gpu"
    )]
    Gpu = 2,
}

glib::wrapper! {
    pub struct VigilInfer(ObjectSubclass<imp::VigilInfer>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    ProcessMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    Preprocess::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "vigilinfer",
        gst::Rank::NONE,
        VigilInfer::static_type(),
    )
}
