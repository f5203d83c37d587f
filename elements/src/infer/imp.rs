use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use std::sync::Arc;

use vigil_core::modelspec::ModelSpec;
use vigil_core::objects::{FrameObjects, Object};
use vigil_core::postprocess::{Detection, PostprocessError, nms};
use vigil_core::secondary::{ParentFilter, child_box, crop_region};
use vigil_engine::preprocess::{ColorOrder, Placement, PreprocessSpec, Preprocessor, Region};
use vigil_engine::runtime::warn_once;
use vigil_engine::{
    EngineError, FrameInput, InferRequest, ModelHandle, ModelRuntime, ModelServer, PollGuard,
    ReloadEvent,
};

use vigil_engine::frame::{FrameFormat, FrameLayout, YuvMatrix, to_packed4};
use vigil_engine::{NamedTensor, TensorData, TensorView};
use vigil_kserve::client::{RemoteError, RemoteModel, RemoteOptions};

use super::{Preprocess, ProcessMode};
use crate::frames::{first_offset, frame_format, layout_of, yuv_matrix};
use crate::meta::VigilMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigilinfer",
        gst::DebugColorFlags::empty(),
        Some("Vigil inference element"),
    )
});

const FORMATS: &[gst_video::VideoFormat] = &[
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Nv12,
    gst_video::VideoFormat::Rgba,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::Rgbx,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Bgr,
    gst_video::VideoFormat::Yuy2,
];

#[derive(Debug, Clone)]
struct Settings {
    model_repository: String,
    model: String,
    model_version: i64,
    threshold: f32,
    nms_iou: f32,
    classes: String,
    interval: u32,
    max_detections: u32,
    priority: u32,
    repository_poll_secs: u32,
    process_mode: ProcessMode,
    operate_on_labels: String,
    min_object_size: u32,
    crop_expand: f32,
    preprocess: Preprocess,
    /// Comma-separated `grpc://HOST:PORT` / `http://HOST:PORT`; empty = in process.
    server_url: String,
    server_timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model_repository: "models".into(),
            model: String::new(),
            model_version: -1,
            threshold: 0.4,
            nms_iou: 0.5,
            classes: String::new(),
            interval: 1,
            max_detections: 100,
            priority: 0,
            repository_poll_secs: 0,
            process_mode: ProcessMode::Primary,
            operate_on_labels: String::new(),
            min_object_size: 0,
            crop_expand: 0.0,
            preprocess: Preprocess::Auto,
            server_url: String::new(),
            server_timeout_ms: 1000,
        }
    }
}

/// Per-caps colour conversion of frames into packed RGBx/BGRx at the frame's size (scaling is done by
/// the pre-processor): Vigil's own conversion (`vigil_engine::frame::to_packed4`, the one the GPU
/// kernels reproduce bit for bit) for NV12, I420 and packed RGB formats, `gst_video::VideoConverter`
/// for the others. Neither: the frames already are packed 4-byte pixels in the model's order.
struct Converter {
    in_info: gst_video::VideoInfo,
    converter: Option<gst_video::VideoConverter>,
    /// Vigil's own conversion: the frame format and YUV matrix, and the output pixels.
    own: Option<(FrameFormat, YuvMatrix, Vec<u8>)>,
    image: gst::Buffer,
    image_info: gst_video::VideoInfo,
    color: ColorOrder,
}

impl Converter {
    /// Converts frames of `info` into packed 4-byte pixels in `color` order (no conversion when they
    /// already are).
    fn new(info: gst_video::VideoInfo, color: ColorOrder) -> Result<Self, String> {
        let format = match color {
            ColorOrder::Rgb => gst_video::VideoFormat::Rgbx,
            ColorOrder::Bgr => gst_video::VideoFormat::Bgrx,
        };
        let direct = match format {
            gst_video::VideoFormat::Rgbx => {
                [gst_video::VideoFormat::Rgbx, gst_video::VideoFormat::Rgba]
                    .contains(&info.format())
            }
            _ => [gst_video::VideoFormat::Bgrx, gst_video::VideoFormat::Bgra]
                .contains(&info.format()),
        } && info.stride()[0] as usize == 4 * info.width() as usize;
        let image_info = gst_video::VideoInfo::builder(format, info.width(), info.height())
            .fps(info.fps())
            .interlace_mode(info.interlace_mode())
            .build()
            .map_err(|e| format!("model input info: {e}"))?;
        let own = match (frame_format(info.format()), yuv_matrix(&info)) {
            (Some(f), Some(m)) if !direct => Some((
                f,
                m,
                vec![0u8; 4 * info.width() as usize * info.height() as usize],
            )),
            _ => None,
        };
        let converter = if direct || own.is_some() {
            None
        } else {
            Some(
                gst_video::VideoConverter::new(&info, &image_info, None)
                    .map_err(|e| format!("no converter from {:?}: {e}", info.format()))?,
            )
        };
        let image = gst::Buffer::with_size(if converter.is_none() {
            0
        } else {
            image_info.size()
        })
        .map_err(|e| format!("allocating the conversion buffer: {e}"))?;
        Ok(Converter {
            in_info: info,
            converter,
            own,
            image,
            image_info,
            color,
        })
    }
}

/// Where the model runs.
enum Backend {
    Local {
        /// The model as served by the process-wide model server: shared (with its dynamic batcher)
        /// by every `vigilinfer` naming the same repository, model and version; its runtime may be
        /// swapped by a reload.
        handle: Arc<ModelHandle>,
        /// The runtime whose configuration `spec` was read from (compared with the handle's current
        /// one on every inferred frame, so a reloaded model with another input takes effect at once).
        runtime: Arc<ModelRuntime>,
        /// Keeps the model's repository entry polled (property `repository-poll-secs`).
        _poll: Option<PollGuard>,
        /// The last model-control event of the server that was looked at (for logging reloads).
        events_seen: u64,
    },
    /// On the inference servers of `server-url` (their dynamic batchers batch the requests of
    /// every client).
    Remote(Arc<RemoteModel>),
}

/// The properties that may change while playing (`mutable_playing`), as one frame is processed
/// with them: copied from `Settings` once per buffer, at the start of `transform_ip`, so that a
/// property set while playing applies from the next frame on and no lock is needed for them later.
#[derive(Debug, Clone)]
struct FrameSettings {
    threshold: f32,
    nms_iou: f32,
    interval: u32,
    max_detections: usize,
    priority: u32,
    operate_on_labels: String,
    min_object_size: u32,
    crop_expand: f32,
}

impl Settings {
    fn for_frame(&self) -> FrameSettings {
        FrameSettings {
            threshold: self.threshold,
            nms_iou: self.nms_iou,
            interval: self.interval,
            max_detections: self.max_detections as usize,
            priority: self.priority,
            operate_on_labels: self.operate_on_labels.clone(),
            min_object_size: self.min_object_size,
            crop_expand: self.crop_expand,
        }
    }
}

struct State {
    /// Properties mutable in READY only, as `start` found them (what the backend, converter and
    /// class filter were built for); the others are read per frame (`FrameSettings`).
    process_mode: ProcessMode,
    preprocess: Preprocess,
    classes: String,
    backend: Backend,
    /// How to feed and decode the model: the pre-processor and class filter were built for it.
    spec: Arc<ModelSpec>,
    preprocessor: Preprocessor,
    class_filter: Arc<[usize]>,
    converter: Option<Converter>,
    /// Secondary mode: crops inferred so far.
    crops: u64,
    frames: u64,
    inferred: u64,
    infer_ns: u128,
    /// Whether the last inferred frame was pre-processed on the GPU (logged when it changes).
    on_gpu: Option<bool>,
    /// Frames pre-processed on the GPU.
    gpu_frames: u64,
}

/// A decoded answer: the detections of one image.
type Decoded = Result<Vec<Detection>, PostprocessError>;

/// A request queued on the local model or sent to the servers, awaited with no lock held. An error
/// in making the request is kept for the wait to report, as an answer's would be.
enum InFlight {
    Local(Result<vigil_engine::InferResponse<Decoded>, EngineError>),
    Remote(Result<vigil_kserve::client::Pending, RemoteError>),
}

impl InFlight {
    /// Waits for the answer (blocking: call it with no lock held) and decodes a remote one at
    /// `threshold`; `Err` when no inference server answered.
    fn wait(
        self,
        spec: &Arc<ModelSpec>,
        threshold: f32,
    ) -> Result<Result<Decoded, EngineError>, RemoteError> {
        match self {
            InFlight::Local(queued) => Ok(queued.and_then(|response| response.wait())),
            InFlight::Remote(sent) => sent
                .and_then(|pending| pending.wait())
                .map(|outputs| Ok(with_views(&outputs, decoder(spec, threshold)))),
        }
    }
}

/// What a whole frame's inference needs once `state` is released: handles shared with the state
/// (`Arc`s; a reload meanwhile replaces the state's, not these), never the state itself.
struct FrameJob {
    /// The objects found so far (none): the frame's number and size.
    frame: FrameObjects,
    spec: Arc<ModelSpec>,
    class_filter: Arc<[usize]>,
    /// The frame went to the model server for GPU pre-processing.
    on_gpu: bool,
    placement: Placement,
    started: Instant,
    in_flight: InFlight,
}

/// Secondary mode: the crops of one frame, all queued before the first is awaited.
struct CropsJob {
    spec: Arc<ModelSpec>,
    class_filter: Arc<[usize]>,
    started: Instant,
    /// Per crop: its parent's id, the crop's region and placement, the request.
    crops: Vec<(u32, Region, Placement, InFlight)>,
}

/// What `transform_ip` does with a frame after the state's part.
enum Step {
    /// Passes as it is (secondary mode: not inferred, or no qualifying object).
    Pass,
    /// Primary mode, skipped by `interval`: an empty meta marked not inferred.
    Skip(FrameObjects),
    Frame(FrameJob),
    Crops(CropsJob),
}

/// How to feed `runtime`'s model and decode its outputs as a detector (the `vigil.*` parameters of
/// its configuration); an error naming the model for one that is not a detector.
fn detector_spec(runtime: &ModelRuntime) -> Result<Arc<ModelSpec>, String> {
    ModelSpec::of_runtime(runtime).map(Arc::new).map_err(|e| {
        format!(
            "model '{}' version {}: {}",
            runtime.name(),
            runtime.version(),
            e.message
        )
    })
}

#[derive(Default)]
pub struct VigilInfer {
    // Locks (in the style of gst-plugins-rs' fallbackswitch): `settings` holds the properties,
    // `state` what `start` built and the counters. Lock order: `settings` before `state` — but no
    // code path holds both: `set_property` takes `settings` only, and `transform_ip` copies the
    // frame's settings (`FrameSettings`) once, releases `settings`, then takes `state`. `state` is
    // held for a frame's bookkeeping and CPU work (reload follow-up, colour conversion,
    // pre-processing, queueing or sending the request), never across a blocking call: the wait
    // for an inference (the local model's batcher, the remote servers) runs with no lock held, on
    // `Arc` handles taken out of the state, and the counters are updated under a second short
    // hold (`with_state`; `stop` may have cleared the state meanwhile). Model loading happens in
    // `start` before `state` is taken. Reload and outage warnings are posted with no lock held;
    // nothing the application calls (`set_property`, `property`) takes `state`, so not even an
    // error posted under it (one that ends the stream) can block a bus handler on it.
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Frames that passed without detections because no inference server answered in time
    /// (read-only property `frames-not-inferred`).
    not_inferred: AtomicU64,
    /// Whether the last frame passed without the model (a change is reported once); an atomic, so
    /// that a frame the model answered costs one load and no lock.
    failing: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for VigilInfer {
    const NAME: &'static str = "GstVigilInfer";
    type Type = super::VigilInfer;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for VigilInfer {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("model-repository")
                    .nick("Model repository")
                    .blurb("Folder of a Triton-style model repository (<repo>/<model>/config.pbtxt, <repo>/<model>/<version>/model.onnx)")
                    .default_value(Some(d.model_repository.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Name of the model in the repository (its folder name)")
                    .default_value(Some(d.model.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt64::builder("model-version")
                    .nick("Model version")
                    .blurb("Version folder of the model to use; -1 = the latest allowed by the model's version policy")
                    .minimum(-1)
                    .default_value(d.model_version)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("threshold")
                    .nick("Score threshold")
                    .blurb("Minimum confidence of a detection")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("nms-iou")
                    .nick("NMS IoU")
                    .blurb("Overlap (intersection over union) above which a weaker detection of the same class is suppressed")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.nms_iou)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("classes")
                    .nick("Classes")
                    .blurb("Comma-separated labels or class numbers to keep (empty = all)")
                    .default_value(Some(d.classes.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Run the model on every Nth frame; the others get an empty meta marked not inferred (the tracker fills them)")
                    .minimum(1)
                    .default_value(d.interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-detections")
                    .nick("Maximum detections")
                    .blurb("Maximum number of objects kept per frame after NMS")
                    .minimum(1)
                    .default_value(d.max_detections)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("priority")
                    .nick("Priority")
                    .blurb("Request priority in the model's dynamic batcher (1 = highest, up to the model's priority_levels; 0 = the model's default_priority_level)")
                    .default_value(d.priority)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("repository-poll-secs")
                    .nick("Repository poll interval")
                    .blurb("Check the model's repository entry every N seconds and reload it when a version folder, config.pbtxt, labels or model file changes, without dropping frames (Triton's POLL mode; a broken new version is refused with a warning and the current one keeps serving); 0 = off")
                    .default_value(d.repository_poll_secs)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("process-mode", d.process_mode)
                    .nick("Process mode")
                    .blurb("primary: run the model on whole frames; secondary: run it on the crops of the objects already in the frame's VigilMeta and attach its detections as their children (parent = the object's id)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("operate-on-labels")
                    .nick("Operate on labels")
                    .blurb("Secondary mode: comma-separated labels of the parent objects whose crops are inferred (empty = every object)")
                    .default_value(Some(d.operate_on_labels.as_str()))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("min-object-size")
                    .nick("Minimum object size")
                    .blurb("Secondary mode: parent objects narrower or lower than this many pixels are skipped")
                    .default_value(d.min_object_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("preprocess", d.preprocess)
                    .nick("Pre-processing")
                    .blurb("Primary mode: where frames become the model's input tensor. cpu: here (colour conversion, resize, normalisation); gpu: inside the model server, a whole batch per kernel launch, the tensor staying on the GPU until inference, when the model's runtime can (KIND_GPU instances on CUDA/TensorRT, a CUDA device and NVRTC), else the CPU with one warning per process; auto: as gpu without the warning. NV12, I420, RGB(A/x), BGR(A/x) frames; others, and secondary mode, use the CPU")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("server-url")
                    .nick("Inference servers")
                    .blurb("Comma-separated inference servers speaking Triton's protocol (vigil serve, Triton): grpc://HOST:PORT or http://HOST:PORT. Set: the model's configuration comes from the first server that gives it, pre- and post-processing stay here (the vigil.* parameters of the served configuration), tensors go to the servers as binary data, round-robin; a server that fails is left out for a back-off (0.5 s doubling up to 5 s) and the request goes to the next one; frames no server answers within server-timeout-ms pass without detections (inferred=false) and are counted (frames-not-inferred). Labels: the model's labels file in model-repository when there. A bearer token for the servers is read from VIGIL_INFERENCE_TOKEN. Empty: the model runs in this process")
                    .default_value(Some(d.server_url.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("server-timeout-ms")
                    .nick("Inference server deadline")
                    .blurb("Remote inference: the deadline of one request (milliseconds), over all the servers it tries")
                    .minimum(1)
                    .default_value(d.server_timeout_ms)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-not-inferred")
                    .nick("Frames not inferred")
                    .blurb("Frames (secondary mode: frames with crops) that passed without the model's detections because no inference server answered (remote) or the model failed them (local: a Python-backend model raised or its process died)")
                    .read_only()
                    .build(),
                glib::ParamSpecFloat::builder("crop-expand")
                    .nick("Crop expansion")
                    .blurb("Secondary mode: each side of a parent's crop grows by this fraction of its width/height (clamped to the frame)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.crop_expand)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "model-repository" => {
                s.model_repository = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "model" => s.model = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "model-version" => s.model_version = value.get().unwrap(),
            "threshold" => s.threshold = value.get().unwrap(),
            "nms-iou" => s.nms_iou = value.get().unwrap(),
            "classes" => s.classes = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "interval" => s.interval = value.get().unwrap(),
            "max-detections" => s.max_detections = value.get().unwrap(),
            "priority" => s.priority = value.get().unwrap(),
            "repository-poll-secs" => s.repository_poll_secs = value.get().unwrap(),
            "process-mode" => s.process_mode = value.get().unwrap(),
            "operate-on-labels" => {
                s.operate_on_labels = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "min-object-size" => s.min_object_size = value.get().unwrap(),
            "crop-expand" => s.crop_expand = value.get().unwrap(),
            "preprocess" => s.preprocess = value.get().unwrap(),
            "server-url" => {
                s.server_url = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "server-timeout-ms" => s.server_timeout_ms = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
        // The properties that may change while playing are read once per frame (`FrameSettings`):
        // nothing to apply to the running state.
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "frames-not-inferred" {
            return self.not_inferred.load(Ordering::Relaxed).to_value();
        }
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "model-repository" => s.model_repository.to_value(),
            "model" => s.model.to_value(),
            "model-version" => s.model_version.to_value(),
            "threshold" => s.threshold.to_value(),
            "nms-iou" => s.nms_iou.to_value(),
            "classes" => s.classes.to_value(),
            "interval" => s.interval.to_value(),
            "max-detections" => s.max_detections.to_value(),
            "priority" => s.priority.to_value(),
            "repository-poll-secs" => s.repository_poll_secs.to_value(),
            "process-mode" => s.process_mode.to_value(),
            "operate-on-labels" => s.operate_on_labels.to_value(),
            "min-object-size" => s.min_object_size.to_value(),
            "crop-expand" => s.crop_expand.to_value(),
            "preprocess" => s.preprocess.to_value(),
            "server-url" => s.server_url.to_value(),
            "server-timeout-ms" => s.server_timeout_ms.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for VigilInfer {}

impl ElementImpl for VigilInfer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil inference",
                "Filter/Analyzer/Video",
                "Runs a detector from a Triton-style model repository (ONNX Runtime) and attaches the objects as VigilMeta",
                "The Vigil developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(FORMATS.iter().copied())
                .build();
            crate::pads::filter_templates(&caps)
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for VigilInfer {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        if settings.model.is_empty() {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ["property 'model' is not set"]
            ));
        }
        let (backend, spec) = if settings.server_url.trim().is_empty() {
            self.start_local(&settings)?
        } else {
            self.start_remote(&settings)?
        };
        let class_filter = spec.class_filter(&settings.classes).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ["property 'classes': {}", e])
        })?;
        let preprocessor = Preprocessor::new(spec.preprocess.clone());
        self.failing.store(false, Ordering::Relaxed);
        *self.state.lock().unwrap() = Some(State {
            process_mode: settings.process_mode,
            preprocess: settings.preprocess,
            classes: settings.classes,
            crops: 0,
            backend,
            spec,
            preprocessor,
            class_filter: class_filter.into(),
            converter: None,
            frames: 0,
            inferred: 0,
            infer_ns: 0,
            on_gpu: None,
            gpu_frames: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(s) = self.state.lock().unwrap().take()
            && s.inferred > 0
        {
            gst::info!(
                CAT,
                imp = self,
                "{} frames, {} inferred ({} crops, {} pre-processed on the GPU), {:.1} ms per inferred frame",
                s.frames,
                s.inferred,
                s.crops,
                s.gpu_frames,
                s.infer_ns as f64 / s.inferred as f64 / 1e6
            );
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid caps {}", incaps))?;
        let mut guard = self.state.lock().unwrap();
        let state = guard
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "not started"))?;
        let color = state.preprocessor.spec().color;
        state.converter =
            Some(Converter::new(info, color).map_err(|e| gst::loggable_error!(CAT, "{}", e))?);
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        // The settings of this frame, read once; `settings` is released before `state` is taken.
        let settings = self.settings.lock().unwrap().for_frame();
        let (step, events) = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                drop(guard);
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ["vigilinfer is not started"]
                );
                return Err(gst::FlowError::NotNegotiated);
            };
            let events = model_events(state);
            (self.prepare(state, &settings, buf), events)
        };
        // No lock is held from here on but for the short updates of `with_state`.
        self.log_model_events(events);
        match step? {
            Step::Pass => Ok(gst::FlowSuccess::Ok),
            Step::Skip(frame) => {
                append_meta(buf, frame, false);
                Ok(gst::FlowSuccess::Ok)
            }
            Step::Frame(job) => self.finish_frame(job, &settings, buf),
            Step::Crops(job) => self.finish_crops(job, &settings, buf),
        }
    }
}

impl VigilInfer {
    /// The model from this process's model server (loaded from `model-repository` on first use).
    fn start_local(
        &self,
        settings: &Settings,
    ) -> Result<(Backend, Arc<ModelSpec>), gst::ErrorMessage> {
        let version = u64::try_from(settings.model_version).ok();
        let handle = ModelServer::global()
            .acquire(
                std::path::Path::new(&settings.model_repository),
                &settings.model,
                version,
            )
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ["{}", e]))?;
        let events_seen = ModelServer::global().last_event_seq();
        let poll = match settings.repository_poll_secs {
            0 => None,
            secs => Some(
                ModelServer::global()
                    .poll(&handle, Duration::from_secs(secs.into()))
                    .map_err(|e| {
                        gst::error_msg!(
                            gst::CoreError::Failed,
                            ["cannot start polling the model repository: {}", e]
                        )
                    })?,
            ),
        };
        let runtime = handle.current();
        let spec = detector_spec(&runtime)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ["{}", e]))?;
        gst::info!(
            CAT,
            imp = self,
            "serving model '{}' version {} from {} ({}x{} {:?})",
            runtime.name(),
            runtime.version(),
            runtime.model_path().display(),
            spec.preprocess.width,
            spec.preprocess.height,
            spec.decoder
        );
        let backend = Backend::Local {
            handle,
            runtime,
            _poll: poll,
            events_seen,
        };
        Ok((backend, spec))
    }

    /// The model on the servers of `server-url`: its configuration from the first that gives it,
    /// its labels from `model-repository` when the model's folder is there.
    fn start_remote(
        &self,
        settings: &Settings,
    ) -> Result<(Backend, Arc<ModelSpec>), gst::ErrorMessage> {
        let urls = vigil_kserve::client::url_list(&settings.server_url);
        let options = RemoteOptions::from_env(settings.server_timeout_ms);
        let version = u64::try_from(settings.model_version).ok();
        let remote = RemoteModel::connect(&urls, &settings.model, version, options)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ["{}", e]))?;
        let dir = std::path::Path::new(&settings.model_repository).join(&settings.model);
        let labels = if dir.is_dir() {
            vigil_modelrepo::read_labels(&settings.model, &dir, remote.config())
                .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ["{}", e]))?
        } else {
            Vec::new()
        };
        let spec = ModelSpec::from_config(remote.config(), &labels)
            .map(Arc::new)
            .map_err(|e| {
                gst::error_msg!(
                    gst::LibraryError::Settings,
                    [
                        "model '{}' served by {}: {}",
                        settings.model,
                        urls.join(", "),
                        e.message
                    ]
                )
            })?;
        gst::info!(
            CAT,
            imp = self,
            "model '{}' on {} ({}x{} {:?}, {} labels)",
            settings.model,
            urls.join(", "),
            spec.preprocess.width,
            spec.preprocess.height,
            spec.decoder,
            labels.len()
        );
        Ok((Backend::Remote(remote), spec))
    }

    /// Local backend: follows a reload that replaced the model's runtime (its pre-processing and
    /// class filter are rebuilt when they changed).
    fn follow_reload(
        &self,
        state: &mut State,
        runtime: &Arc<ModelRuntime>,
    ) -> Result<(), gst::FlowError> {
        let Backend::Local {
            runtime: current, ..
        } = &mut state.backend
        else {
            return Ok(());
        };
        if Arc::ptr_eq(runtime, current) {
            return Ok(());
        }
        let spec = detector_spec(runtime).map_err(|e| {
            gst::element_imp_error!(self, gst::LibraryError::Settings, ["{}", e]);
            gst::FlowError::Error
        })?;
        *current = runtime.clone();
        if spec.preprocess != state.spec.preprocess {
            state.preprocessor = Preprocessor::new(spec.preprocess.clone());
        }
        state.class_filter = spec
            .class_filter(&state.classes)
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::LibraryError::Settings,
                    ["property 'classes': {}", e]
                );
                gst::FlowError::Error
            })?
            .into();
        gst::info!(
            CAT,
            imp = self,
            "now served by '{}' version {}",
            runtime.name(),
            runtime.version()
        );
        state.spec = spec;
        Ok(())
    }

    /// Runs `f` on the state if the element is still started (`stop` may have cleared it while
    /// no lock was held), holding `state` for `f` only.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.lock().unwrap().as_mut().map(f)
    }

    /// Remote inference failed for a frame: see [`Self::not_inferred`].
    fn remote_failed(&self, e: &RemoteError) {
        self.not_inferred(&format!("no inference server answers: {e}"));
    }

    /// The local model failed a frame without the model being unusable (an execution error: a
    /// Python-backend model raised, or its process died and is started again): see
    /// [`Self::not_inferred`]. Other engine errors stop the element.
    fn local_failed(&self, e: &EngineError) -> Result<(), gst::FlowError> {
        match e {
            EngineError::Run { .. }
            | EngineError::Execution { .. }
            | EngineError::ResponseLost { .. } => {
                self.not_inferred(&format!("the model failed a frame: {e}"));
                Ok(())
            }
            _ => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ["{}", e]);
                Err(gst::FlowError::Error)
            }
        }
    }

    /// A frame passes without the model's detections: counted (`frames-not-inferred`); the first
    /// failure after a success is posted as a warning (the next success is logged), so one bad
    /// request never stops the stream.
    fn not_inferred(&self, why: &str) {
        self.not_inferred.fetch_add(1, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::AcqRel) {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                ("frames pass without detections while {}", why)
            );
        } else {
            gst::debug!(CAT, imp = self, "not inferred: {}", why);
        }
    }

    fn answered(&self) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::AcqRel) {
            gst::info!(CAT, imp = self, "the model answers again");
        }
    }

    /// The frame format to send to the model server for GPU pre-processing, or `None` for the CPU
    /// path: `preprocess` is not `cpu`, the runtime takes frames and the GPU pre-processor reads
    /// `format`. `gpu` that cannot be honoured warns once per process; `auto` logs at debug level.
    fn gpu_format(
        &self,
        preprocess: Preprocess,
        on_gpu: &mut Option<bool>,
        runtime: &ModelRuntime,
        format: gst_video::VideoFormat,
    ) -> Option<FrameFormat> {
        if preprocess == Preprocess::Cpu {
            return None;
        }
        let decision = FrameFormat::from_name(format.to_str())
            .ok_or_else(|| {
                format!(
                    "{} frames are not read by the GPU pre-processor",
                    format.to_str()
                )
            })
            .and_then(|f| {
                runtime
                    .frame_support()
                    .map(|()| f)
                    .map_err(|e| format!("model '{}': {e}", runtime.name()))
            });
        let now = decision.is_ok();
        if *on_gpu != Some(now) {
            *on_gpu = Some(now);
            match &decision {
                Ok(_) => gst::info!(CAT, imp = self, "pre-processing on the GPU"),
                Err(why) => {
                    gst::debug!(CAT, imp = self, "pre-processing on the CPU: {}", why);
                    if preprocess == Preprocess::Gpu {
                        warn_once(
                            "vigilinfer:preprocess=gpu",
                            &format!(
                                "vigilinfer preprocess=gpu: {why}; frames are pre-processed on \
                                 the CPU"
                            ),
                        );
                    }
                }
            }
        }
        decision.ok()
    }

    /// The state's part of a frame (`state` held): counts it, follows a reload, then for an
    /// inferred frame pre-processes it and queues or sends its requests — all that returns at once.
    fn prepare(
        &self,
        state: &mut State,
        settings: &FrameSettings,
        buf: &gst::BufferRef,
    ) -> Result<Step, gst::FlowError> {
        let frame_no = state.frames;
        state.frames += 1;
        let inferring = frame_no.is_multiple_of(settings.interval.max(1).into());
        // The runtime serving the model now (a reload may have replaced it since the last frame);
        // `None` for a remote model.
        let runtime = match &state.backend {
            Backend::Local { handle, .. } => Some(handle.current()),
            Backend::Remote(_) => None,
        };
        if inferring {
            if let Some(runtime) = &runtime {
                self.follow_reload(state, runtime)?;
            }
            self.follow_color(state)?;
        }
        let Some(conv) = state.converter.as_ref() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["no caps before the first frame"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let mut frame = FrameObjects::new(conv.in_info.width(), conv.in_info.height());
        frame.frame = frame_no;
        match (state.process_mode, inferring) {
            (ProcessMode::Secondary, false) => Ok(Step::Pass),
            (ProcessMode::Secondary, true) => Ok(self
                .queue_crops(state, settings, buf, runtime.as_ref())?
                .map_or(Step::Pass, Step::Crops)),
            (ProcessMode::Primary, false) => Ok(Step::Skip(frame)),
            (ProcessMode::Primary, true) => self
                .queue_frame(state, settings, buf, runtime, frame)
                .map(Step::Frame),
        }
    }

    /// Rebuilds the converter when the model's colour order changed (a reload).
    fn follow_color(&self, state: &mut State) -> Result<(), gst::FlowError> {
        let color = state.spec.preprocess.color;
        if let Some(conv) = state.converter.as_ref()
            && conv.color != color
        {
            let info = conv.in_info.clone();
            state.converter = Some(Converter::new(info, color).map_err(|e| {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ["{}", e]);
                gst::FlowError::NotNegotiated
            })?);
        }
        Ok(())
    }

    /// Primary mode: pre-processes the whole frame (here, or in the model server on the GPU)
    /// and queues or sends its request.
    fn queue_frame(
        &self,
        state: &mut State,
        settings: &FrameSettings,
        buf: &gst::BufferRef,
        runtime: Option<Arc<ModelRuntime>>,
        frame: FrameObjects,
    ) -> Result<FrameJob, gst::FlowError> {
        let started = Instant::now();
        let conv = state
            .converter
            .as_ref()
            .ok_or(gst::FlowError::NotNegotiated)?;
        // Frames whose colour matrix Vigil does not convert itself stay on the CPU path
        // (`VideoConverter`), which the GPU could not reproduce.
        let (format, convertible) = (conv.in_info.format(), yuv_matrix(&conv.in_info).is_some());
        let gpu_format = match &runtime {
            Some(rt) if convertible => {
                self.gpu_format(state.preprocess, &mut state.on_gpu, rt, format)
            }
            _ => None,
        };
        let (placement, in_flight) = match (gpu_format, &runtime) {
            (Some(format), Some(rt)) => self.queue_on_gpu(state, settings, buf, rt, format)?,
            _ => self.queue_on_cpu(state, settings, buf, runtime.as_ref())?,
        };
        Ok(FrameJob {
            frame,
            spec: state.spec.clone(),
            class_filter: state.class_filter.clone(),
            on_gpu: gpu_format.is_some(),
            placement,
            started,
            in_flight,
        })
    }

    /// GPU pre-processing inside the model server: the request carries the frame itself.
    fn queue_on_gpu(
        &self,
        state: &State,
        settings: &FrameSettings,
        buf: &gst::BufferRef,
        runtime: &Arc<ModelRuntime>,
        format: FrameFormat,
    ) -> Result<(Placement, InFlight), gst::FlowError> {
        let spec = &state.spec;
        let conv = state
            .converter
            .as_ref()
            .ok_or(gst::FlowError::NotNegotiated)?;
        let input = map_frame(buf, &conv.in_info, format, &spec.preprocess).map_err(|e| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ["{}", e]);
            gst::FlowError::Error
        })?;
        let p = &spec.preprocess;
        let (width, height) = (conv.in_info.width(), conv.in_info.height());
        let placement = Placement::new(width, height, p.width, p.height, p.resize);
        let request = InferRequest::from_frame(input).with_priority(settings.priority);
        let queued = runtime.infer_async(request, decoder(spec, settings.threshold));
        Ok((placement, InFlight::Local(queued)))
    }

    /// CPU path: colour conversion (when needed) into packed RGBx/BGRx, then resize + normalise
    /// into the request's tensor (the request owns it while it waits in the batcher).
    fn queue_on_cpu(
        &self,
        state: &mut State,
        settings: &FrameSettings,
        buf: &gst::BufferRef,
        runtime: Option<&Arc<ModelRuntime>>,
    ) -> Result<(Placement, InFlight), gst::FlowError> {
        let spec = state.spec.clone();
        let conv = state
            .converter
            .as_mut()
            .ok_or(gst::FlowError::NotNegotiated)?;
        let (width, height) = (conv.in_info.width(), conv.in_info.height());
        let mut tensor = vec![0f32; spec.preprocess.tensor_len()];
        let preprocessor = &mut state.preprocessor;
        let placement = with_packed_pixels(self, buf, conv, |pixels| {
            preprocessor.run(pixels, width, height, &mut tensor)
        })?
        .map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ["{}", e]);
            gst::FlowError::Error
        })?;
        let in_flight = queue_tensor(&state.backend, runtime, &spec, tensor, settings);
        Ok((placement, in_flight))
    }

    /// Waits for a whole frame's answer (no lock held) and attaches its objects; a frame the model
    /// server could not pre-process on the GPU goes again through the CPU path.
    fn finish_frame(
        &self,
        job: FrameJob,
        settings: &FrameSettings,
        buf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let FrameJob {
            mut frame,
            spec,
            placement,
            ..
        } = job;
        let decoded = match job.in_flight.wait(&spec, settings.threshold) {
            Ok(Err(e @ EngineError::NoGpuPreprocessing { .. })) => {
                warn_once(
                    "vigilinfer:gpu-preprocessing-lost",
                    &format!("vigilinfer: {e}; frames are pre-processed on the CPU"),
                );
                let retry = self.requeue_on_cpu(settings, buf, frame, job.started)?;
                return self.finish_frame(retry, settings, buf);
            }
            Ok(Err(e)) => {
                self.local_failed(&e)?;
                append_meta(buf, frame, false);
                return Ok(gst::FlowSuccess::Ok);
            }
            Ok(decoded) => decoded,
            Err(e) => {
                self.remote_failed(&e);
                append_meta(buf, frame, false);
                return Ok(gst::FlowSuccess::Ok);
            }
        };
        self.answered();
        let (iou, max) = (settings.nms_iou, settings.max_detections);
        let dets = self.detections(decoded, &spec.model, &job.class_filter, iou, max)?;
        let elapsed = job.started.elapsed().as_nanos();
        self.with_state(|s| {
            s.infer_ns += elapsed;
            s.inferred += 1;
            s.gpu_frames += u64::from(job.on_gpu);
        });
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        for d in dets {
            let bbox = d.bbox.to_frame(&placement).clamped(fw, fh);
            if bbox.w <= 0.0 || bbox.h <= 0.0 {
                continue;
            }
            let mut o = Object::new(d.class_id as i32, spec.label(d.class_id), d.score, bbox);
            o.model.clone_from(&spec.model);
            frame.objects.push(o);
        }
        gst::trace!(
            CAT,
            imp = self,
            "frame {}: {} objects",
            frame.frame,
            frame.objects.len()
        );
        append_meta(buf, frame, true);
        Ok(gst::FlowSuccess::Ok)
    }

    /// The CPU path for a local frame whose GPU request was refused (`state` held again briefly),
    /// on the runtime the state's spec comes from.
    fn requeue_on_cpu(
        &self,
        settings: &FrameSettings,
        buf: &gst::BufferRef,
        frame: FrameObjects,
        started: Instant,
    ) -> Result<FrameJob, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        // Stopped meanwhile: the frame is not needed any more.
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let runtime = match &state.backend {
            Backend::Local { runtime, .. } => runtime.clone(),
            Backend::Remote(_) => unreachable!("remote frames are pre-processed here"),
        };
        let (placement, in_flight) = self.queue_on_cpu(state, settings, buf, Some(&runtime))?;
        Ok(FrameJob {
            frame,
            spec: state.spec.clone(),
            class_filter: state.class_filter.clone(),
            on_gpu: false,
            placement,
            started,
            in_flight,
        })
    }

    /// Secondary mode: pre-processes the crops of the frame's qualifying objects and queues them
    /// all at once (so the model's batcher can batch them with each other and with other streams'
    /// requests); `None` when no object qualifies.
    fn queue_crops(
        &self,
        state: &mut State,
        settings: &FrameSettings,
        buf: &gst::BufferRef,
        runtime: Option<&Arc<ModelRuntime>>,
    ) -> Result<Option<CropsJob>, gst::FlowError> {
        let filter = ParentFilter::new(&settings.operate_on_labels, settings.min_object_size);
        let parents: Vec<(u32, vigil_core::objects::BBox)> = match buf.meta::<VigilMeta>() {
            None => return Ok(None),
            Some(meta) => meta
                .frame()
                .objects
                .iter()
                .filter(|o| filter.accepts(o))
                .map(|o| (o.id, o.bbox))
                .collect(),
        };
        if parents.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let spec = state.spec.clone();
        let conv = state
            .converter
            .as_mut()
            .ok_or(gst::FlowError::NotNegotiated)?;
        let (width, height) = (conv.in_info.width(), conv.in_info.height());
        let (preprocessor, backend) = (&mut state.preprocessor, &state.backend);
        let crops = with_packed_pixels(self, buf, conv, |pixels| {
            let mut crops = Vec::with_capacity(parents.len());
            for &(parent, bbox) in &parents {
                let Some(region) = crop_region(&bbox, settings.crop_expand, width, height) else {
                    continue;
                };
                let mut tensor = vec![0f32; spec.preprocess.tensor_len()];
                let placement = preprocessor
                    .run_region(pixels, width, height, Some(region), &mut tensor)
                    .map_err(|e| {
                        gst::element_imp_error!(self, gst::StreamError::Format, ["{}", e]);
                        gst::FlowError::Error
                    })?;
                let in_flight = queue_tensor(backend, runtime, &spec, tensor, settings);
                crops.push((parent, region, placement, in_flight));
            }
            Ok(crops)
        })??;
        Ok(Some(CropsJob {
            spec,
            class_filter: state.class_filter.clone(),
            started,
            crops,
        }))
    }

    /// Secondary mode: waits for the answers of a frame's crops (no lock held) and appends the
    /// detections as children of their objects.
    fn finish_crops(
        &self,
        job: CropsJob,
        settings: &FrameSettings,
        buf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (iou, max) = (settings.nms_iou, settings.max_detections);
        let spec = &job.spec;
        let n_crops = job.crops.len() as u64;
        let mut children = Vec::new();
        let mut remote_error = None;
        let mut local_error = None;
        for (parent, region, placement, in_flight) in job.crops {
            let decoded = match in_flight.wait(spec, settings.threshold) {
                Ok(Err(e)) => {
                    local_error = Some(e);
                    continue;
                }
                Ok(decoded) => decoded,
                Err(e) => {
                    remote_error = Some(e);
                    continue;
                }
            };
            for d in self.detections(decoded, &spec.model, &job.class_filter, iou, max)? {
                let Some(bbox) = child_box(&region, &placement, &d.bbox) else {
                    continue;
                };
                let mut o = Object::new(d.class_id as i32, spec.label(d.class_id), d.score, bbox);
                o.model.clone_from(&spec.model);
                o.parent = Some(parent);
                children.push(o);
            }
        }
        match (remote_error, local_error) {
            (Some(e), _) => self.remote_failed(&e),
            (None, Some(e)) => self.local_failed(&e)?,
            (None, None) => self.answered(),
        }
        let elapsed = job.started.elapsed().as_nanos();
        self.with_state(|s| {
            s.crops += n_crops;
            s.inferred += 1;
            s.infer_ns += elapsed;
        });
        gst::trace!(
            CAT,
            imp = self,
            "{} crops: {} child objects",
            n_crops,
            children.len()
        );
        if let Some(mut meta) = buf.meta_mut::<VigilMeta>() {
            let f = meta.frame_mut();
            for mut o in children {
                o.id = f.objects.len() as u32;
                f.objects.push(o);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// The detections of one response: an engine or decoding error is posted on the bus (naming
    /// the model) and ends the stream; then the class filter and NMS.
    fn detections(
        &self,
        response: Result<Decoded, EngineError>,
        model: &str,
        filter: &[usize],
        iou: f32,
        max: usize,
    ) -> Result<Vec<Detection>, gst::FlowError> {
        let decoded = response
            .map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Failed, ["{}", e]);
                gst::FlowError::Error
            })?
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Decode,
                    ["model '{}': {}", model, e]
                );
                gst::FlowError::Error
            })?;
        let dets: Vec<_> = decoded
            .into_iter()
            .filter(|d| filter.is_empty() || filter.contains(&d.class_id))
            .collect();
        Ok(nms(dets, iou, true, max))
    }

    /// Logs the reloads of the model (by polling or explicit control) since the last frame: a
    /// refused reload is also posted as a warning message.
    fn log_model_events(&self, events: Vec<ReloadEvent>) {
        for event in events {
            if event.ok {
                gst::info!(CAT, imp = self, "{}", event.message);
            } else {
                gst::element_imp_warning!(self, gst::ResourceError::Read, ("{}", event.message));
            }
        }
    }
}

/// The model-control events of the server about this element's model since the last frame
/// (to log once `state` is released).
fn model_events(state: &mut State) -> Vec<ReloadEvent> {
    let Backend::Local {
        handle,
        events_seen,
        ..
    } = &mut state.backend
    else {
        return Vec::new();
    };
    let events = ModelServer::global().events_after(*events_seen);
    if let Some(last) = events.last() {
        *events_seen = last.seq;
    }
    events
        .into_iter()
        .filter(|e| {
            e.repository == handle.repository()
                && e.model == handle.name()
                && e.requested_version == handle.requested_version()
        })
        .collect()
}

/// Queues `tensor` (one pre-processed image) on the local runtime or sends it to the servers;
/// returns at once.
fn queue_tensor(
    backend: &Backend,
    runtime: Option<&Arc<ModelRuntime>>,
    spec: &Arc<ModelSpec>,
    tensor: Vec<f32>,
    settings: &FrameSettings,
) -> InFlight {
    match (runtime, backend) {
        (Some(runtime), _) => {
            let mut shape = spec.input_shape(1);
            if spec.batched {
                shape.remove(0);
            }
            let request = InferRequest::new(spec.input_name.clone(), shape, tensor)
                .with_priority(settings.priority);
            InFlight::Local(runtime.infer_async(request, decoder(spec, settings.threshold)))
        }
        (None, Backend::Remote(remote)) => InFlight::Remote(
            remote_input(remote, spec, &tensor).and_then(|input| remote.infer_async(vec![input])),
        ),
        (None, Backend::Local { .. }) => unreachable!("a local model has a runtime"),
    }
}

/// Decodes one image's outputs into detections at `threshold` (for a local model, on the
/// instance's thread).
fn decoder(
    spec: &Arc<ModelSpec>,
    threshold: f32,
) -> impl FnOnce(&[TensorView<'_>]) -> Decoded + Send + 'static {
    let spec = spec.clone();
    move |outputs| {
        let (w, h) = (spec.preprocess.width, spec.preprocess.height);
        spec.decoder.decode(outputs, 0, w, h, threshold)
    }
}

/// Calls `f` with the frame's pixels as packed 4-byte pixels in the model's colour order (converted
/// into `conv`'s buffer when needed).
fn with_packed_pixels<R>(
    imp: &VigilInfer,
    buf: &gst::BufferRef,
    conv: &mut Converter,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, gst::FlowError> {
    let map_err = |what: &str| {
        gst::element_imp_error!(imp, gst::CoreError::Failed, ["could not map {}", what]);
        gst::FlowError::Error
    };
    if let Some((format, matrix, pixels)) = conv.own.as_mut() {
        let map = buf.map_readable().map_err(|_| map_err("the input frame"))?;
        let layout = layout_of(&conv.in_info, buf, *format);
        let start = first_offset(&conv.in_info, buf).min(map.len());
        let color = conv.color;
        if let Err(e) = to_packed4(&map[start..], &layout, matrix, color, pixels) {
            gst::element_imp_error!(imp, gst::StreamError::Format, ["{}", e]);
            return Err(gst::FlowError::Error);
        }
        return Ok(f(pixels));
    }
    let src = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &conv.in_info)
        .map_err(|_| map_err("the input frame"))?;
    if let Some(converter) = &conv.converter {
        {
            let image = conv
                .image
                .get_mut()
                .ok_or_else(|| map_err("the conversion buffer"))?;
            let mut dst =
                gst_video::VideoFrameRef::from_buffer_ref_writable(image, &conv.image_info)
                    .map_err(|_| map_err("the conversion buffer"))?;
            converter.frame_ref(&src, &mut dst);
        }
        let map = conv
            .image
            .map_readable()
            .map_err(|_| map_err("the conversion buffer"))?;
        Ok(f(map.as_slice()))
    } else {
        let data = src.plane_data(0).map_err(|_| map_err("the input plane"))?;
        Ok(f(data))
    }
}

/// The frame of `buf` as a frame request: its bytes from the first plane on (one copy of the whole-
/// buffer mapping, strides and plane offsets kept, as `layout_of` reads them for the CPU path) and the
/// YUV matrix of its colorimetry — the CPU path's matrix, so both compute the same tensor.
fn map_frame(
    buf: &gst::BufferRef,
    info: &gst_video::VideoInfo,
    format: FrameFormat,
    spec: &PreprocessSpec,
) -> Result<FrameInput, String> {
    let yuv = yuv_matrix(info).ok_or_else(|| {
        format!(
            "colour matrix {:?} is not one Vigil converts",
            info.colorimetry().matrix()
        )
    })?;
    let map = buf
        .map_readable()
        .map_err(|_| "could not map the input frame".to_owned())?;
    let start = first_offset(info, buf).min(map.len());
    let data = map[start..].to_vec();
    let layout = layout_of(info, buf, format);
    if data.len() < layout.required_bytes() {
        return Err(format!(
            "the {}x{} {} frame has {} bytes, its layout needs {}",
            layout.width,
            layout.height,
            format.name(),
            data.len(),
            layout.required_bytes()
        ));
    }
    Ok(FrameInput {
        layout: FrameLayout {
            frame_bytes: data.len(),
            ..layout
        },
        data,
        spec: spec.clone(),
        yuv: Some(yuv),
    })
}

/// The remote request's input: `tensor` (the pre-processed image) in the served input's data type
/// and shape (with the batch dimension of 1 when the model batches).
fn remote_input(
    remote: &RemoteModel,
    spec: &ModelSpec,
    tensor: &[f32],
) -> Result<NamedTensor, RemoteError> {
    let config = remote.config();
    let input = config.input.first().ok_or_else(|| RemoteError {
        kind: vigil_kserve::client::ErrorKind::Config,
        message: format!("model '{}' has no input", remote.name()),
    })?;
    let data = TensorData::from_f32(input.data_type, tensor).ok_or_else(|| RemoteError {
        kind: vigil_kserve::client::ErrorKind::Config,
        message: format!(
            "model '{}': input '{}' has data type {}, not one an image is sent as",
            remote.name(),
            input.name,
            input.data_type
        ),
    })?;
    let mut shape = spec.input_shape(1);
    if !spec.batched && input.dims.len() == 3 {
        shape.remove(0);
    }
    Ok((spec.input_name.clone(), shape, data))
}

/// Runs `f` on views of a remote answer's outputs (numeric outputs widened to f32).
fn with_views<R>(outputs: &[NamedTensor], f: impl FnOnce(&[TensorView<'_>]) -> R) -> R {
    let shapes: Vec<Vec<usize>> = outputs
        .iter()
        .map(|(_, shape, _)| {
            shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(0))
                .collect()
        })
        .collect();
    let values: Vec<Cow<'_, [f32]>> = outputs
        .iter()
        .map(|(_, _, data)| data.as_slice().to_f32().unwrap_or(Cow::Borrowed(&[])))
        .collect();
    let views: Vec<TensorView<'_>> = outputs
        .iter()
        .zip(shapes.iter().zip(&values))
        .map(|((name, _, data), (shape, values))| TensorView {
            name,
            shape,
            data: values,
            raw: data.as_slice(),
        })
        .collect();
    f(&views)
}

/// Adds `frame`'s objects to the buffer's meta (after any objects an upstream element attached).
fn append_meta(buf: &mut gst::BufferRef, mut frame: FrameObjects, inferred: bool) {
    frame.inferred = inferred;
    if let Some(mut existing) = buf.meta_mut::<VigilMeta>() {
        let f = existing.frame_mut();
        f.inferred |= inferred;
        f.objects.extend(frame.objects);
        f.renumber();
        return;
    }
    frame.renumber();
    VigilMeta::add(buf, frame);
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_engine::gpu::reference;
    use vigil_engine::preprocess::{Layout, ResizeMode};

    fn spec() -> PreprocessSpec {
        PreprocessSpec {
            width: 20,
            height: 14,
            color: ColorOrder::Bgr,
            layout: Layout::Nchw,
            resize: ResizeMode::Letterbox,
            mean: [103.53, 116.28, 123.675],
            std: [57.375, 57.12, 58.395],
            scale: 1.0,
            pad_value: 114,
        }
    }

    /// `map_frame` on GStreamer frames with padded rows (odd sizes: strides rounded up to 4 bytes)
    /// gives a layout under which the GPU reference sees the same pixels as under a tightly packed
    /// copy of the visible rows.
    #[test]
    fn mapped_frames_keep_strides_and_planes() {
        gst::init().unwrap();
        for (gst_format, format) in [
            (gst_video::VideoFormat::I420, FrameFormat::I420),
            (gst_video::VideoFormat::Nv12, FrameFormat::Nv12),
            (gst_video::VideoFormat::Rgb, FrameFormat::Rgb),
            (gst_video::VideoFormat::Bgrx, FrameFormat::Bgra),
        ] {
            let (w, h) = (31u32, 17u32);
            let info = gst_video::VideoInfo::builder(gst_format, w, h)
                .build()
                .unwrap();
            let mut buffer = gst::Buffer::with_size(info.size()).unwrap();
            {
                let b = buffer.get_mut().unwrap();
                let mut map = b.map_writable().unwrap();
                for (i, v) in map.iter_mut().enumerate() {
                    *v = (i.wrapping_mul(2_654_435_761) >> 11) as u8;
                }
            }
            let input = map_frame(&buffer, &info, format, &spec()).unwrap();
            assert_eq!(input.layout.format, format);
            assert_eq!((input.layout.width, input.layout.height), (w, h));
            assert_eq!(input.layout.stride, info.stride()[0] as usize);
            assert!(input.data.len() >= input.layout.frame_bytes);

            // The visible bytes, tightly packed.
            let packed = FrameLayout::packed(format, w, h);
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info).unwrap();
            let mut bytes = Vec::new();
            let planes: Vec<(u32, usize, usize)> = match format {
                FrameFormat::I420 => vec![
                    (0, w as usize, h as usize),
                    (1, w.div_ceil(2) as usize, h.div_ceil(2) as usize),
                    (2, w.div_ceil(2) as usize, h.div_ceil(2) as usize),
                ],
                FrameFormat::Nv12 => vec![
                    (0, w as usize, h as usize),
                    (1, 2 * w.div_ceil(2) as usize, h.div_ceil(2) as usize),
                ],
                FrameFormat::Rgb => vec![(0, 3 * w as usize, h as usize)],
                _ => vec![(0, 4 * w as usize, h as usize)],
            };
            for (p, row, rows) in planes {
                let stride = info.stride()[p as usize] as usize;
                let data = frame.plane_data(p).unwrap();
                for r in 0..rows {
                    bytes.extend_from_slice(&data[r * stride..r * stride + row]);
                }
            }
            assert_eq!(bytes.len(), packed.frame_bytes, "{format:?}");
            let m = input.yuv.unwrap();
            let gpu = reference(&spec(), &input.layout, &m, &[&input.data]);
            assert_eq!(
                gpu,
                reference(&spec(), &packed, &m, &[&bytes]),
                "{format:?}"
            );

            // The CPU path on the same buffer (the element's converter, then the pre-processor)
            // computes exactly the GPU path's tensor.
            let mut conv = Converter::new(info.clone(), spec().color).unwrap();
            let mut cpu = vec![0f32; spec().tensor_len()];
            let mut pre = Preprocessor::new(spec());
            let imp = VigilInfer::default();
            with_packed_pixels(&imp, buffer.as_ref(), &mut conv, |px| {
                pre.run(px, w, h, &mut cpu).unwrap()
            })
            .unwrap();
            assert_eq!(cpu, gpu, "{format:?}: CPU path vs GPU reference");
        }
    }
}
