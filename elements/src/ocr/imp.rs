use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::BaseTransformMode;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use vigil_core::objects::{Attribute, FrameObjects, Object};
use vigil_core::ocr::{ImageView, OcrEngine, OcrError, OcrParams, OcrResult, PixelFormat, Rect};

use crate::meta::VigilMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigilocr",
        gst::DebugColorFlags::empty(),
        Some("Vigil OCR element"),
    )
});

/// The label of the objects `vigilocr` appends.
pub const TEXT_LABEL: &str = "text";
/// The attribute holding a line's quadrilateral `x1,y1,..,x4,y4` (top-left, top-right,
/// bottom-right, bottom-left) in frame pixels; its confidence is the detection's box score.
pub const QUAD_ATTRIBUTE: &str = "quad";

#[derive(Debug, Clone)]
struct Settings {
    model_repository: String,
    det_model: String,
    cls_model: String,
    rec_model: String,
    det_threshold: f32,
    box_threshold: f32,
    unclip_ratio: f64,
    min_text_score: f32,
    operate_on_labels: String,
    /// Comma-separated `grpc://HOST:PORT` / `http://HOST:PORT`; empty = in process.
    server_url: String,
    server_timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let p = OcrParams::default();
        Self {
            model_repository: "models".into(),
            det_model: "ppocr_det".into(),
            cls_model: "ppocr_cls".into(),
            rec_model: "ppocr_rec".into(),
            det_threshold: p.det.threshold,
            box_threshold: p.det.box_threshold,
            unclip_ratio: p.det.unclip_ratio,
            min_text_score: p.text_score,
            operate_on_labels: String::new(),
            server_url: String::new(),
            server_timeout_ms: 1000,
        }
    }
}

impl Settings {
    fn params(&self) -> OcrParams {
        let mut p = OcrParams::default();
        p.det.threshold = self.det_threshold;
        p.det.box_threshold = self.box_threshold;
        p.det.unclip_ratio = self.unclip_ratio;
        p.text_score = self.min_text_score;
        p
    }

    fn labels(&self) -> Vec<String> {
        self.operate_on_labels
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

struct State {
    /// Remote models: whether the last frame was answered (a change is logged once).
    remote_ok: bool,
    /// Shared with the frame being read, which runs the models with no lock held.
    engine: Arc<OcrEngine>,
    /// `operate-on-labels` as `start` found it (the property is mutable in READY only).
    labels: Arc<[String]>,
    info: Option<gst_video::VideoInfo>,
}

/// What reading one frame takes out of the state: the engine, the labels to read inside, the caps.
struct Reading {
    engine: Arc<OcrEngine>,
    labels: Arc<[String]>,
    info: gst_video::VideoInfo,
}

#[derive(Default)]
pub struct VigilOcr {
    // Locks: `settings` (the properties, all mutable in READY only: read by `start`) and `state`
    // are never held together; should they ever be, `settings` comes first. `transform_ip` holds
    // `state` only to take the engine (`Arc`), the labels and the caps out of it, and again
    // briefly to note whether a server answered: the models run (locally through the engine's
    // batchers, or on the remote servers) with no lock held.
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Frames passed without text because no inference server answered.
    not_inferred: std::sync::atomic::AtomicU64,
}

#[glib::object_subclass]
impl ObjectSubclass for VigilOcr {
    const NAME: &'static str = "GstVigilOcr";
    type Type = super::VigilOcr;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for VigilOcr {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("model-repository")
                    .nick("Model repository")
                    .blurb("Folder of a Triton-style model repository holding the OCR models")
                    .default_value(Some(d.model_repository.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("det-model")
                    .nick("Detection model")
                    .blurb("Text detection model (PP-OCR DB) of the repository")
                    .default_value(Some(d.det_model.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("cls-model")
                    .nick("Direction model")
                    .blurb("Text direction classifier (0/180 degrees) of the repository; empty = none")
                    .default_value(Some(d.cls_model.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("rec-model")
                    .nick("Recognition model")
                    .blurb("Text recognition model (PP-OCR CTC, dictionary in its ONNX metadata key 'character') of the repository")
                    .default_value(Some(d.rec_model.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("det-threshold")
                    .nick("Detection threshold")
                    .blurb("Text probability above which a pixel of the detection map is text")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.det_threshold)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("box-threshold")
                    .nick("Box threshold")
                    .blurb("Minimum mean text probability inside a detected box")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.box_threshold)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("unclip-ratio")
                    .nick("Unclip ratio")
                    .blurb("How much detected boxes grow (offset = area x ratio / perimeter)")
                    .minimum(0.0)
                    .maximum(10.0)
                    .default_value(d.unclip_ratio)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("min-text-score")
                    .nick("Minimum text score")
                    .blurb("Lines whose recognition score (mean character probability) is lower are dropped")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.min_text_score)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("operate-on-labels")
                    .nick("Operate on labels")
                    .blurb("Comma-separated labels of the objects to read text inside (their lines get them as parent); empty = the whole frame")
                    .default_value(Some(d.operate_on_labels.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("server-url")
                    .nick("Inference servers")
                    .blurb("Comma-separated inference servers speaking Triton's protocol (grpc://HOST:PORT or http://HOST:PORT) that run the three models (as vigilinfer's server-url); the recogniser's dictionary is still read from its ONNX file in model-repository. Frames no server answers pass without text and are counted (frames-not-inferred). Empty: the models run in this process")
                    .default_value(Some(d.server_url.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("server-timeout-ms")
                    .nick("Inference server deadline")
                    .blurb("Remote models: the deadline of one request (milliseconds), over all the servers it tries")
                    .minimum(1)
                    .default_value(d.server_timeout_ms)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-not-inferred")
                    .nick("Frames not inferred")
                    .blurb("Remote models: frames that passed without text because no inference server answered")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let string = |v: &glib::Value| v.get::<Option<String>>().unwrap().unwrap_or_default();
        match pspec.name() {
            "model-repository" => s.model_repository = string(value),
            "det-model" => s.det_model = string(value),
            "cls-model" => s.cls_model = string(value),
            "rec-model" => s.rec_model = string(value),
            "det-threshold" => s.det_threshold = value.get().unwrap(),
            "box-threshold" => s.box_threshold = value.get().unwrap(),
            "unclip-ratio" => s.unclip_ratio = value.get().unwrap(),
            "min-text-score" => s.min_text_score = value.get().unwrap(),
            "operate-on-labels" => s.operate_on_labels = string(value),
            "server-url" => s.server_url = string(value),
            "server-timeout-ms" => s.server_timeout_ms = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "frames-not-inferred" {
            return self
                .not_inferred
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_value();
        }
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "model-repository" => s.model_repository.to_value(),
            "det-model" => s.det_model.to_value(),
            "cls-model" => s.cls_model.to_value(),
            "rec-model" => s.rec_model.to_value(),
            "det-threshold" => s.det_threshold.to_value(),
            "box-threshold" => s.box_threshold.to_value(),
            "unclip-ratio" => s.unclip_ratio.to_value(),
            "min-text-score" => s.min_text_score.to_value(),
            "operate-on-labels" => s.operate_on_labels.to_value(),
            "server-url" => s.server_url.to_value(),
            "server-timeout-ms" => s.server_timeout_ms.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for VigilOcr {}

impl ElementImpl for VigilOcr {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil OCR",
                "Filter/Analyzer/Video",
                "Reads text (PP-OCR detection, direction, recognition) in frames or in objects and appends it to VigilMeta as text objects",
                "The Vigil developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::pads::video_filter_templates(crate::pads::PACKED_FORMATS));
        TEMPLATES.as_ref()
    }
}

fn pixel_format(format: gst_video::VideoFormat) -> Option<PixelFormat> {
    use gst_video::VideoFormat as F;
    match format {
        F::Rgb => Some(PixelFormat::Rgb),
        F::Bgr => Some(PixelFormat::Bgr),
        F::Rgba | F::Rgbx => Some(PixelFormat::Rgba),
        F::Bgra | F::Bgrx => Some(PixelFormat::Bgra),
        _ => None,
    }
}

impl BaseTransformImpl for VigilOcr {
    const MODE: BaseTransformMode = BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let cls = (!s.cls_model.is_empty()).then_some(s.cls_model.as_str());
        let urls = vigil_kserve::client::url_list(&s.server_url);
        let repository = Path::new(&s.model_repository);
        let engine = if urls.is_empty() {
            OcrEngine::new(repository, &s.det_model, cls, &s.rec_model, s.params())
        } else {
            let options = vigil_kserve::client::RemoteOptions::from_env(s.server_timeout_ms);
            OcrEngine::remote(
                repository,
                &s.det_model,
                cls,
                &s.rec_model,
                s.params(),
                &urls,
                &options,
            )
        }
        .map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                [
                    "OCR models of model repository '{}': {}",
                    s.model_repository,
                    e
                ]
            )
        })?;
        *self.state.lock().unwrap() = Some(State {
            engine: Arc::new(engine),
            labels: s.labels().into(),
            info: None,
            remote_ok: true,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.state.lock().unwrap().take();
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {}", incaps))?;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.info = Some(info);
        }
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let found = self.read(buf)?;
        let Some((width, height, found)) = found else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let mut meta = match buf.meta_mut::<VigilMeta>() {
            Some(m) => m,
            None => VigilMeta::add(
                buf,
                FrameObjects {
                    width: width as u32,
                    height: height as u32,
                    inferred: true,
                    ..Default::default()
                },
            ),
        };
        let objects = &mut meta.frame_mut().objects;
        for mut o in found {
            o.id = objects.len() as u32;
            objects.push(o);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

impl VigilOcr {
    /// What reading a frame needs from the state, which is held only for this.
    fn take_from_state(&self) -> Result<Reading, gst::FlowError> {
        let guard = self.state.lock().unwrap();
        let Some(state) = guard.as_ref() else {
            drop(guard);
            gst::element_imp_error!(
                self,
                gst::CoreError::StateChange,
                ["vigilocr is not started"]
            );
            return Err(gst::FlowError::Error);
        };
        let Some(info) = state.info.clone() else {
            drop(guard);
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["vigilocr got a buffer before caps"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        Ok(Reading {
            engine: state.engine.clone(),
            labels: state.labels.clone(),
            info,
        })
    }

    /// Runs `f` on the state if the element is still started (`stop` may have cleared it while
    /// no lock was held), holding `state` for `f` only.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.state.lock().unwrap().as_mut().map(f)
    }

    /// No inference server answered for a frame: counted; the first such frame after an answer
    /// is posted as a warning.
    fn remote_failed(&self, e: &impl std::fmt::Display) {
        self.not_inferred
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.with_state(|s| std::mem::replace(&mut s.remote_ok, false)) == Some(true) {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                (
                    "frames pass without text while no inference server answers: {}",
                    e
                )
            );
        }
    }

    fn remote_answered(&self) {
        if self.with_state(|s| std::mem::replace(&mut s.remote_ok, true)) == Some(false) {
            gst::info!(CAT, imp = self, "an inference server answers again");
        }
    }

    /// The text objects of the frame `buf` with the frame size; `None` when the frame passes
    /// untouched (its item has an error). The models run with no lock held.
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
        buf: &gst::BufferRef,
    ) -> Result<Option<(usize, usize, Vec<Object>)>, gst::FlowError> {
        let existing = buf.meta::<VigilMeta>().map(|m| m.frame().clone());
        if existing
            .as_ref()
            .and_then(|f| f.item.as_ref())
            .is_some_and(|i| i.error.is_some())
        {
            gst::trace!(CAT, imp = self, "item with an error: passed through");
            return Ok(None);
        }
        let Reading {
            engine,
            labels,
            info,
        } = self.take_from_state()?;
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ["Cannot map the frame for reading"]
                );
                gst::FlowError::Error
            })?;
        let Some(format) = pixel_format(frame.format()) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["Unsupported format {:?}", frame.format()]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let (width, height) = (frame.width() as usize, frame.height() as usize);
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ["Cannot read the frame: {}", e]
            );
            gst::FlowError::Error
        })?;
        let view = ImageView {
            width,
            height,
            stride,
            format,
            data,
        };
        let mut found = Vec::new();
        for (parent, region) in regions(existing.as_ref(), &labels, width, height) {
            let result = match engine.read(&view, region) {
                Ok(result) => result,
                Err(OcrError::Remote(e)) => {
                    // No server answered: the frame passes without text, counted.
                    self.remote_failed(&e);
                    return Ok(Some((width, height, Vec::new())));
                }
                Err(e) => {
                    gst::element_imp_error!(self, gst::LibraryError::Failed, ["OCR failed: {}", e]);
                    return Err(gst::FlowError::Error);
                }
            };
            self.remote_answered();
            gst::trace!(
                CAT,
                imp = self,
                "{} lines (det {:?}, cls {:?}, rec {:?}, other {:?})",
                result.lines.len(),
                result.timings.det,
                result.timings.cls,
                result.timings.rec,
                result.timings.other
            );
            found.extend(text_objects(result, parent, engine.rec_model()));
        }
        Ok(Some((width, height, found)))
    }
}

/// The regions to read: the whole frame, or (with labels) each object of `frame` with one of them,
/// with its id as the parent of the lines found there.
fn regions(
    frame: Option<&FrameObjects>,
    labels: &[String],
    width: usize,
    height: usize,
) -> Vec<(Option<u32>, Option<Rect>)> {
    if labels.is_empty() {
        return vec![(None, None)];
    }
    frame
        .iter()
        .flat_map(|f| f.objects.iter())
        .filter(|o| labels.contains(&o.label))
        .filter_map(|o| {
            let x0 = o.bbox.x.max(0.0).floor() as usize;
            let y0 = o.bbox.y.max(0.0).floor() as usize;
            let x1 = ((o.bbox.x + o.bbox.w).ceil().max(0.0) as usize).min(width);
            let y1 = ((o.bbox.y + o.bbox.h).ceil().max(0.0) as usize).min(height);
            (x1 > x0 && y1 > y0).then_some((
                Some(o.id),
                Some(Rect {
                    x: x0,
                    y: y0,
                    width: x1 - x0,
                    height: y1 - y0,
                }),
            ))
        })
        .collect()
}

/// The lines of one region as `text` objects (`parent`: the object they were read in).
fn text_objects(result: OcrResult, parent: Option<u32>, model: &str) -> Vec<Object> {
    result
        .lines
        .into_iter()
        .map(|line| {
            let mut o = Object::new(0, TEXT_LABEL, line.score, line.bbox);
            o.text = Some(line.text);
            o.model = model.to_owned();
            o.parent = parent;
            let corners: Vec<String> = line
                .quad
                .iter()
                .flat_map(|p| [p[0].to_string(), p[1].to_string()])
                .collect();
            o.attributes.push(Attribute {
                name: QUAD_ATTRIBUTE.to_owned(),
                value: corners.join(","),
                confidence: line.box_score,
            });
            o
        })
        .collect()
}
