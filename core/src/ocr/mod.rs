//! OCR with PP-OCR models (detection → direction classification → recognition), as the Python
//! package `rapidocr-onnxruntime` 1.4.4 reads text, run through the model server.
//!
//! [`OcrEngine`] holds [`ModelHandle`]s of [`ModelServer::global`], so every engine (and every
//! element) naming the same repository and model shares its runtime and dynamic batcher. One call
//! of [`OcrEngine::read`] runs the detector on the image (or a region of it), crops each text box
//! ([`crop`]), queues all the crops to the classifier, then all of them to the recogniser (in
//! groups of equal width, [`rec::groups`]) before waiting for any, so they batch with each other
//! and with other callers' requests.
//!
//! With [`OcrEngine::remote`] the three models run on inference servers speaking Triton's protocol
//! (`vigil_kserve::client::RemoteModel`): the same requests, sent instead of queued (the servers'
//! batchers batch them); the recogniser's dictionary is still read from its ONNX file in the local
//! repository.
//!
//! The image is first brought within the reference's limits (longer side at most 2000, shorter at
//! least 30, resized to multiples of 32 when out of them; very flat images padded above and below);
//! boxes are mapped back to the caller's pixels.

pub mod cls;
pub mod crop;
pub mod det;
pub mod image;
pub mod metrics;
pub mod rec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::objects::BBox;
use vigil_engine::{EngineError, InferRequest, InferResponse, ModelHandle, ModelServer};
use vigil_kserve::client::{RemoteError, RemoteModel, RemoteOptions};

pub use det::{DetParams, Point, Quad};
pub use image::{BgrImage, ImageView, PixelFormat, Rect};

/// Errors of OCR; each names the model or the image problem.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OcrError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A remote model's servers did not answer (or refused the request).
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The recognition model has no usable character dictionary.
    #[error("model '{model}' ({}): {message}", .path.display())]
    Dictionary {
        model: String,
        path: PathBuf,
        message: String,
    },
    /// A model's output does not have the expected shape.
    #[error("model '{model}': unexpected output: {message}")]
    Output { model: String, message: String },
    /// The image cannot be read as given.
    #[error("bad image: {0}")]
    Image(String),
}

/// The parameters of OCR, with the reference's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrParams {
    pub det: DetParams,
    /// A crop is turned 180° when the classifier says so with a probability above this.
    pub cls_threshold: f32,
    /// Lines whose recognition score is under this are dropped.
    pub text_score: f32,
    /// Crops per recognition group (one width per group).
    pub rec_batch: usize,
    /// Images with a longer side above this are scaled down first.
    pub max_side_len: usize,
    /// Images with a shorter side under this are scaled up first.
    pub min_side_len: usize,
    /// Images this low or less, or flatter than `width_height_ratio`, are padded above and below.
    pub min_height: usize,
    pub width_height_ratio: f64,
    /// Priority of the requests (1 = highest, 0 = the models' default).
    pub priority: u32,
}

impl Default for OcrParams {
    fn default() -> Self {
        OcrParams {
            det: DetParams::default(),
            cls_threshold: 0.9,
            text_score: 0.5,
            rec_batch: 6,
            max_side_len: 2000,
            min_side_len: 30,
            min_height: 30,
            width_height_ratio: 8.0,
            priority: 0,
        }
    }
}

/// One line of text read.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrLine {
    /// Corners in the caller's pixels: top-left, top-right, bottom-right, bottom-left.
    pub quad: Quad,
    /// The axis-aligned box of `quad`.
    pub bbox: BBox,
    pub text: String,
    /// Recognition score: mean probability of the kept characters.
    pub score: f32,
    /// Detection score: mean text probability inside the box.
    pub box_score: f32,
}

/// Time spent per stage of one read. The model stages (`det`, `cls`, `rec`) run from queueing the
/// requests to their responses (the model server's queue and batching, ONNX Runtime, and for `rec`
/// the CTC decoding on the instance thread); the others are Vigil's own processing on the caller's
/// thread.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OcrTimings {
    /// Conversion of the region to packed BGR and the size limits (resize, padding).
    pub prepare: Duration,
    /// The detector's input: resize and normalisation.
    pub det_pre: Duration,
    pub det: Duration,
    /// DB post-processing: threshold, regions, boxes, scores, unclip.
    pub det_post: Duration,
    /// Perspective crops of the text boxes.
    pub crop: Duration,
    /// The classifier's inputs.
    pub cls_pre: Duration,
    /// The classifier's requests and the 180° turns.
    pub cls: Duration,
    /// The recogniser's inputs (grouping, resize, normalisation).
    pub rec_pre: Duration,
    pub rec: Duration,
    /// Everything else (the lines in the caller's pixels).
    pub other: Duration,
}

impl OcrTimings {
    /// The sum of all the stages.
    pub fn total(&self) -> Duration {
        self.prepare
            + self.det_pre
            + self.det
            + self.det_post
            + self.crop
            + self.cls_pre
            + self.cls
            + self.rec_pre
            + self.rec
            + self.other
    }

    /// Adds `o`'s stages to these.
    pub fn add(&mut self, o: &OcrTimings) {
        self.prepare += o.prepare;
        self.det_pre += o.det_pre;
        self.det += o.det;
        self.det_post += o.det_post;
        self.crop += o.crop;
        self.cls_pre += o.cls_pre;
        self.cls += o.cls;
        self.rec_pre += o.rec_pre;
        self.rec += o.rec;
        self.other += o.other;
    }
}

/// The model inputs of one read, `(shape without the batch dimension, data)` per request, kept by
/// [`OcrEngine::read_capturing`] (e.g. to time ONNX Runtime alone on the same tensors).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OcrTensors {
    pub det: Vec<(Vec<i64>, Vec<f32>)>,
    pub cls: Vec<(Vec<i64>, Vec<f32>)>,
    pub rec: Vec<(Vec<i64>, Vec<f32>)>,
}

/// The lines of one image in reading order, and the timings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OcrResult {
    pub lines: Vec<OcrLine>,
    pub timings: OcrTimings,
}

/// The first output of a model: its shape and values.
type Output = (Vec<usize>, Vec<f32>);

enum Runner {
    Local(Arc<ModelHandle>),
    Remote(Arc<RemoteModel>),
}

struct Model {
    runner: Runner,
    name: String,
}

/// A request sent to a model, answered by [`Pending::wait`].
enum Pending {
    Local(InferResponse<Option<Output>>),
    Remote(vigil_kserve::client::Pending),
}

impl Pending {
    /// The first output; `model` names the model in errors.
    fn wait(self, model: &str) -> Result<Output, OcrError> {
        let no_output = || OcrError::Output {
            model: model.to_owned(),
            message: "no output".into(),
        };
        match self {
            Pending::Local(r) => r.wait()?.ok_or_else(no_output),
            Pending::Remote(p) => {
                let outputs = p.wait()?;
                let (_, shape, data) = outputs.into_iter().next().ok_or_else(no_output)?;
                let values = data.as_slice().to_f32().ok_or_else(|| OcrError::Output {
                    model: model.to_owned(),
                    message: "the output is not numeric".into(),
                })?;
                let shape = shape
                    .iter()
                    .map(|&d| usize::try_from(d).unwrap_or(0))
                    .collect();
                Ok((shape, values.into_owned()))
            }
        }
    }
}

impl Model {
    fn acquire(repository: &Path, name: &str) -> Result<Model, OcrError> {
        Ok(Model {
            runner: Runner::Local(ModelServer::global().acquire(repository, name, None)?),
            name: name.to_owned(),
        })
    }

    fn connect(urls: &[String], name: &str, options: &RemoteOptions) -> Result<Model, OcrError> {
        Ok(Model {
            runner: Runner::Remote(RemoteModel::connect(urls, name, None, options.clone())?),
            name: name.to_owned(),
        })
    }

    fn input_name(&self) -> String {
        let first = match &self.runner {
            Runner::Local(handle) => handle.current().inputs().first().map(|i| i.name.clone()),
            Runner::Remote(remote) => remote.config().input.first().map(|i| i.name.clone()),
        };
        first.unwrap_or_else(|| "x".to_owned())
    }

    /// Sends one image tensor of `shape` (without the batch dimension); the answer is its first
    /// output.
    fn submit(
        &self,
        input: &str,
        shape: Vec<i64>,
        tensor: Vec<f32>,
        priority: u32,
    ) -> Result<Pending, OcrError> {
        match &self.runner {
            Runner::Local(handle) => {
                let request = InferRequest::new(input, shape, tensor).with_priority(priority);
                let response = handle.current().infer_async(request, |outs| {
                    outs.first().map(|o| (o.shape.to_vec(), o.data.to_vec()))
                })?;
                Ok(Pending::Local(response))
            }
            Runner::Remote(remote) => {
                let mut shape = shape;
                if remote.config().max_batch_size > 0 {
                    shape.insert(0, 1);
                }
                let input = (
                    input.to_owned(),
                    shape,
                    vigil_engine::TensorData::Fp32(tensor),
                );
                Ok(Pending::Remote(remote.infer_async(vec![input])?))
            }
        }
    }
}

/// The three models of OCR and the parameters.
pub struct OcrEngine {
    det: Model,
    cls: Option<Model>,
    rec: Model,
    charset: Arc<Vec<String>>,
    params: OcrParams,
}

/// The metadata key of the recogniser's dictionary.
pub const DICTIONARY_KEY: &str = "character";

impl OcrEngine {
    /// Loads (or shares) the models `det`, `cls` (`None`: no direction classifier) and `rec` of the
    /// repository; the recogniser's dictionary comes from its ONNX metadata (`character`).
    pub fn new(
        repository: &Path,
        det: &str,
        cls: Option<&str>,
        rec: &str,
        params: OcrParams,
    ) -> Result<OcrEngine, OcrError> {
        let det = Model::acquire(repository, det)?;
        let cls = cls.map(|c| Model::acquire(repository, c)).transpose()?;
        let handle = ModelServer::global().acquire(repository, rec, None)?;
        let path = handle.current().model_path().to_path_buf();
        let rec = Model {
            runner: Runner::Local(handle),
            name: rec.to_owned(),
        };
        Self::with_models(det, cls, rec, &path, params)
    }

    /// The models `det`, `cls` and `rec` on the inference servers of `urls` (`grpc://` or
    /// `http://`); the recogniser's dictionary from its ONNX file in `repository` (the version the
    /// repository's policy serves), which must be there.
    pub fn remote(
        repository: &Path,
        det: &str,
        cls: Option<&str>,
        rec: &str,
        params: OcrParams,
        urls: &[String],
        options: &RemoteOptions,
    ) -> Result<OcrEngine, OcrError> {
        let local = vigil_modelrepo::ModelRepository::open(repository)
            .and_then(|repo| repo.load(rec, None))
            .map_err(|e| OcrError::Dictionary {
                model: rec.to_owned(),
                path: repository.join(rec),
                message: format!(
                    "the recogniser's dictionary is read from its ONNX file in the local model \
                     repository: {e}"
                ),
            })?;
        let det = Model::connect(urls, det, options)?;
        let cls = cls.map(|c| Model::connect(urls, c, options)).transpose()?;
        let rec = Model::connect(urls, rec, options)?;
        Self::with_models(det, cls, rec, &local.model_path, params)
    }

    /// The engine of `det`, `cls`, `rec`, the dictionary read from the recogniser's ONNX `path`.
    fn with_models(
        det: Model,
        cls: Option<Model>,
        rec: Model,
        path: &Path,
        params: OcrParams,
    ) -> Result<OcrEngine, OcrError> {
        let path = path.to_path_buf();
        let dict_err = |message: String| OcrError::Dictionary {
            model: rec.name.clone(),
            path: path.clone(),
            message,
        };
        let dictionary = vigil_modelrepo::onnx::read_onnx_metadata(&path, DICTIONARY_KEY)
            .map_err(|e| dict_err(e.to_string()))?
            .ok_or_else(|| {
                dict_err(format!(
                    "the ONNX model has no metadata key '{DICTIONARY_KEY}' (the CTC dictionary)"
                ))
            })?;
        let charset = rec::charset(&dictionary);
        Ok(OcrEngine {
            det,
            cls,
            rec,
            charset: Arc::new(charset),
            params,
        })
    }

    /// The recogniser's model name.
    pub fn rec_model(&self) -> &str {
        &self.rec.name
    }

    pub fn params(&self) -> &OcrParams {
        &self.params
    }

    /// The characters the recogniser knows (index 0: CTC blank).
    pub fn charset(&self) -> &[String] {
        &self.charset
    }

    /// Reads the text of `image`, or of `region` of it; boxes are in `image`'s pixels.
    pub fn read(&self, image: &ImageView, region: Option<Rect>) -> Result<OcrResult, OcrError> {
        self.read_inner(image, region, None)
    }

    /// [`OcrEngine::read`] that also keeps a copy of every model input in `tensors`.
    pub fn read_capturing(
        &self,
        image: &ImageView,
        region: Option<Rect>,
        tensors: &mut OcrTensors,
    ) -> Result<OcrResult, OcrError> {
        self.read_inner(image, region, Some(tensors))
    }

    fn read_inner(
        &self,
        image: &ImageView,
        region: Option<Rect>,
        mut capture: Option<&mut OcrTensors>,
    ) -> Result<OcrResult, OcrError> {
        let t0 = Instant::now();
        image.check().map_err(OcrError::Image)?;
        let region = region.unwrap_or(Rect {
            x: 0,
            y: 0,
            width: image.width,
            height: image.height,
        });
        let raw = image.to_bgr(region);
        let mut timings = OcrTimings::default();
        if raw.width == 0 || raw.height == 0 {
            return Ok(OcrResult::default());
        }
        let (img, geometry) = self.prepare(raw);
        let p = &self.params;
        let mut mark = Instant::now();
        timings.prepare = mark - t0;
        // The time since the last mark, and a new mark.
        let mut lap = || {
            let now = Instant::now();
            let d = now - mark;
            mark = now;
            d
        };

        // Detection.
        let (dw, dh) = det::input_size(img.width, img.height, p.det.limit_side_len);
        let mut tensor = vec![0f32; 3 * dw * dh];
        img.resize_linear(dw, dh)
            .write_normalized(&mut tensor, dw, dh);
        let det_shape = vec![3, dh as i64, dw as i64];
        if let Some(c) = capture.as_deref_mut() {
            c.det.push((det_shape.clone(), tensor.clone()));
        }
        timings.det_pre = lap();
        let (shape, prob) = self
            .det
            .submit(&self.det.input_name(), det_shape, tensor, p.priority)?
            .wait(&self.det.name)?;
        timings.det = lap();
        let (mh, mw) = match shape.as_slice() {
            [.., h, w] if h * w == prob.len() => (*h, *w),
            _ => {
                return Err(OcrError::Output {
                    model: self.det.name.clone(),
                    message: format!("shape {shape:?}, expected [1, 1, H, W]"),
                });
            }
        };
        let boxes = det::boxes_from_map(&prob, mw, mh, img.width, img.height, &p.det);
        timings.det_post = lap();
        let mut items: Vec<(Quad, f32, BgrImage)> = boxes
            .into_iter()
            .filter_map(|(q, s)| crop::crop_quad(&img, &q).map(|c| (q, s, c)))
            .collect();
        timings.crop = lap();

        // Direction: all crops queued before waiting.
        if let Some(cls) = &self.cls {
            let inputs: Vec<Vec<f32>> = items.iter().map(|(_, _, c)| cls::input(c)).collect();
            let shape = vec![3, cls::CLS_HEIGHT as i64, cls::CLS_WIDTH as i64];
            if let Some(c) = capture.as_deref_mut() {
                c.cls
                    .extend(inputs.iter().map(|t| (shape.clone(), t.clone())));
            }
            timings.cls_pre = lap();
            let name = cls.input_name();
            let pending = inputs
                .into_iter()
                .map(|t| cls.submit(&name, shape.clone(), t, p.priority))
                .collect::<Result<Vec<_>, _>>()?;
            for (item, response) in items.iter_mut().zip(pending) {
                let (_, probs) = response.wait(&cls.name)?;
                if cls::is_flipped(&probs, p.cls_threshold) {
                    item.2 = item.2.rot180();
                }
            }
            timings.cls = lap();
        }

        // Recognition: every group's inputs made, then all queued before waiting.
        let crops: Vec<&BgrImage> = items.iter().map(|i| &i.2).collect();
        let mut inputs = Vec::with_capacity(crops.len());
        for (group, width) in rec::groups(&crops, p.rec_batch) {
            for i in group {
                let shape = vec![3, rec::REC_HEIGHT as i64, width as i64];
                inputs.push((i, shape, rec::input(crops[i], width)));
            }
        }
        if let Some(c) = capture {
            c.rec
                .extend(inputs.iter().map(|(_, s, t)| (s.clone(), t.clone())));
        }
        timings.rec_pre = lap();
        let name = self.rec.input_name();
        let mut pending = Vec::with_capacity(crops.len());
        for (i, shape, tensor) in inputs {
            pending.push((i, self.rec.submit(&name, shape, tensor, p.priority)?));
        }
        let mut texts: Vec<Option<(String, f32)>> = vec![None; crops.len()];
        let charset = &self.charset;
        for (i, response) in pending {
            let (shape, probs) = response.wait(&self.rec.name)?;
            let classes = shape.last().copied().unwrap_or(0);
            let decoded = (classes > 0 && classes == charset.len())
                .then(|| rec::ctc_decode(&probs, classes, charset));
            let decoded = decoded.ok_or_else(|| OcrError::Output {
                model: self.rec.name.clone(),
                message: format!(
                    "expected [1, T, {}] probabilities (the dictionary's characters, blank and space)",
                    self.charset.len()
                ),
            })?;
            texts[i] = Some(decoded);
        }
        timings.rec = lap();

        let lines = items
            .into_iter()
            .zip(texts)
            .filter_map(|((q, box_score, _), t)| {
                let (text, score) = t?;
                (score >= p.text_score).then(|| {
                    let quad = geometry.to_caller(&q, region);
                    OcrLine {
                        bbox: quad_bbox(&quad),
                        quad,
                        text,
                        score,
                        box_score,
                    }
                })
            })
            .collect();
        timings.other = lap();
        Ok(OcrResult { lines, timings })
    }

    /// Brings the image within the size limits (and pads flat images) as the reference does.
    fn prepare(&self, img: BgrImage) -> (BgrImage, Geometry) {
        let p = &self.params;
        let (raw_w, raw_h) = (img.width, img.height);
        let mut g = Geometry {
            ratio_w: 1.0,
            ratio_h: 1.0,
            top: 0,
            raw_w,
            raw_h,
        };
        let rescale = |img: BgrImage, ratio: f64, g: &mut Geometry| {
            let side = |v: usize| {
                ((((v as f64 * ratio).trunc()) / 32.0).round_ties_even() * 32.0).max(32.0) as usize
            };
            let (w, h) = (side(img.width), side(img.height));
            g.ratio_w = img.width as f64 / w as f64;
            g.ratio_h = img.height as f64 / h as f64;
            img.resize_linear(w, h)
        };
        let mut img = img;
        let longer = img.width.max(img.height);
        if longer > p.max_side_len {
            let ratio = p.max_side_len as f64 / longer as f64;
            img = rescale(img, ratio, &mut g);
        }
        let shorter = img.width.min(img.height);
        if shorter < p.min_side_len {
            let ratio = p.min_side_len as f64 / shorter as f64;
            img = rescale(img, ratio, &mut g);
        }
        let (w, h) = (img.width, img.height);
        let flat = p.width_height_ratio > 0.0 && w as f64 / h as f64 > p.width_height_ratio;
        if h <= p.min_height || flat {
            let new_h = ((w as f64 / p.width_height_ratio) as usize).max(p.min_height) * 2;
            let pad = new_h.abs_diff(h) / 2;
            let mut padded = BgrImage::new(w, h + 2 * pad);
            padded.data[pad * w * 3..(pad + h) * w * 3].copy_from_slice(&img.data);
            img = padded;
            g.top = pad;
        }
        (img, g)
    }
}

/// How the image given to the detector relates to the caller's region.
struct Geometry {
    ratio_w: f64,
    ratio_h: f64,
    top: usize,
    raw_w: usize,
    raw_h: usize,
}

impl Geometry {
    fn to_caller(&self, q: &Quad, region: Rect) -> Quad {
        q.map(|[x, y]| {
            let x = (x * self.ratio_w).clamp(0.0, self.raw_w as f64);
            let y = ((y - self.top as f64) * self.ratio_h).clamp(0.0, self.raw_h as f64);
            [x + region.x as f64, y + region.y as f64]
        })
    }
}

/// The axis-aligned box of a quad.
pub fn quad_bbox(q: &Quad) -> BBox {
    let xs = q.iter().map(|p| p[0]);
    let ys = q.iter().map(|p| p[1]);
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    BBox::new(x0 as f32, y0 as f32, (x1 - x0) as f32, (y1 - y0) as f32)
}
