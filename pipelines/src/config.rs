//! The YAML pipeline configuration (`vigil run CONFIG.yaml`): parsing, defaults and up-front validation.
//!
//! Every key is documented on its field below and in `configs/README.md`. Relative paths are resolved
//! against the folder of the config file. Parsing uses `serde_norway` with `deny_unknown_fields`
//! everywhere, so a typo is an error that names the file, line, column and key:
//!
//! ```text
//! configs/x.yaml: line 7 column 3: inference: unknown field `thresold`, expected one of `model`, ...
//! ```
//!
//! [`Config::load`] parses a file; [`Config::validate`] checks everything that can be checked before a
//! pipeline is built (media files exist, the model loads, class names exist in the model's labels, output
//! files can be created, values are in range) and returns a [`Plan`] with absolute paths and URIs.

use serde::{Deserialize, Deserializer};
use std::collections::HashSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::shard::Shard;

/// A configuration error: always one line that names the config file and the key (and, for YAML syntax
/// and type errors, the line and column).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, type or unknown/missing key errors, with the location reported by the parser.
    #[error("{file}: {}{message}", location_prefix(.line, .column))]
    Parse {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// A value is invalid (`key` is the dotted path of the key, e.g. `sources[0].uri`; `line` is where
    /// the key stands in the file, when it can be found).
    #[error("{file}: {}{key}: {message}", location_prefix(.line, &None))]
    Invalid {
        file: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

/// The 1-based line of a dotted key path (`outputs.rtsp.port`, `sources[1].uri`) in block-style YAML,
/// found by indentation; `None` when it cannot be located (flow style, key absent).
pub(crate) fn locate_key(text: &str, key: &str) -> Option<usize> {
    // Split "a.b[2].c" into segments: Name("a"), Name("b"), Index(2), Name("c").
    enum Seg<'a> {
        Name(&'a str),
        Index(usize),
    }
    let mut segs = Vec::new();
    for part in key.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            segs.push(Seg::Name(name));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                segs.push(Seg::Index(i));
            }
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let content = |l: &str| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    };
    // Current search window: lines [start, end) whose indent is >= min_indent.
    let (mut start, mut end, mut min_indent) = (0usize, lines.len(), 0usize);
    let mut found = None;
    for seg in segs {
        let mut hit = None;
        match seg {
            Seg::Name(name) => {
                for (i, l) in lines.iter().enumerate().take(end).skip(start) {
                    if !content(l) || indent(l) < min_indent {
                        continue;
                    }
                    let t = l.trim_start().trim_start_matches("- ");
                    if t.strip_prefix(name)
                        .is_some_and(|r| r.trim_start().starts_with(':'))
                    {
                        hit = Some(i);
                        break;
                    }
                }
            }
            Seg::Index(n) => {
                let mut count = 0;
                let mut item_indent = None;
                for (i, l) in lines.iter().enumerate().take(end).skip(start) {
                    if !content(l) || indent(l) < min_indent {
                        continue;
                    }
                    let is_item = l.trim_start().starts_with("- ") || l.trim() == "-";
                    if is_item && item_indent.is_none_or(|ii| ii == indent(l)) {
                        item_indent = Some(indent(l));
                        if count == n {
                            hit = Some(i);
                            break;
                        }
                        count += 1;
                    }
                }
            }
        }
        let i = hit?;
        found = Some(i + 1);
        // The value of this key: the following lines indented deeper than the key's line (for a list
        // item, its own line too, since `- key: v` starts the item).
        let base = indent(lines[i]);
        let item = lines[i].trim_start().starts_with("- ");
        let mut j = i + 1;
        while j < lines.len() && (!content(lines[j]) || indent(lines[j]) > base) {
            j += 1;
        }
        start = if item { i } else { i + 1 };
        end = j;
        min_indent = if item { base } else { base + 1 };
    }
    found
}

fn location_prefix(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l} column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

/// Collapses any line breaks so that every error is a single line.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s
        .split(['\n', '\r'])
        .filter(|p| !p.trim().is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(part.trim());
    }
    out
}

/// A whole pipeline description: sources, one inference model, a tracker, overlay and outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `name`: the pipeline's name (letters, digits, `-`, `_`, `.`); used in log lines, as the GStreamer
    /// pipeline name and as the default RTSP mount `/<name>`. Required.
    pub name: String,
    /// `model_repository`: folder of the model repository (`<repo>/<model>/config.pbtxt`,
    /// `labels.txt`, `<version>/model.onnx`). Relative to the config file's folder. Required.
    pub model_repository: PathBuf,
    /// `sources`: one or more video sources (list). Required, non-empty.
    pub sources: Vec<SourceConfig>,
    /// `inference`: the detector run on every source. Optional when `ocr` or `inspection` is given
    /// (an OCR-only inspection needs no detector); without it no `vigilinfer`/`vigiltrack` is built
    /// and `tracker` is ignored.
    #[serde(default)]
    pub inference: Option<InferenceConfig>,
    /// `tracker`: multi-object tracker settings. Optional (default: `kind: iou` with its defaults).
    /// Ignored without `inference`.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// `ocr`: PP-OCR text reading (`vigilocr`) on every source, after the detector, analytics and
    /// secondary models. Optional; with `inspection` and without it, the defaults are used.
    #[serde(default)]
    pub ocr: Option<OcrConfig>,
    /// `inspection`: judge every item against a rules file (`vigilinspect`), after the OCR. Optional.
    #[serde(default)]
    pub inspection: Option<InspectionConfig>,
    /// `secondary`: models run on the crops of the objects found by `inference` (e.g. faces inside
    /// persons), after the tracker. Optional list; none by default.
    #[serde(default)]
    pub secondary: Vec<SecondaryConfig>,
    /// `overlay`: boxes/labels drawn on the video outputs. Optional (default: enabled, everything drawn).
    #[serde(default)]
    pub overlay: OverlayConfig,
    /// `outputs`: where results go (`rtsp`, `file`, `events`); all optional. With none, the pipeline
    /// still runs (useful for benchmarking) and prints progress and a summary.
    #[serde(default)]
    pub outputs: OutputsConfig,
    /// `realtime`: synchronise the outputs to the clock (play at the media's speed) instead of running as
    /// fast as possible. Optional; default `true` when an RTSP output exists, otherwise `false`.
    #[serde(default)]
    pub realtime: Option<bool>,
    /// `api`: the HTTP API (`GET /health`, `/metrics`, `/streams`; see docs/openapi.yaml). Optional;
    /// off when absent.
    #[serde(default)]
    pub api: Option<ApiConfig>,
}

/// `api`: where the HTTP API listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `api.address`: IP address or host name to bind. Default `127.0.0.1`. Any address other than a
    /// loopback one requires `api.token`.
    #[serde(default = "default_api_address")]
    pub address: String,
    /// `api.port`: TCP port; 0 = any free port (printed at start). Default 8080.
    #[serde(default = "default_api_port")]
    pub port: u16,
    /// `api.token`: bearer token every request must carry (`Authorization: Bearer <token>`).
    #[serde(default)]
    pub token: Option<String>,
}

fn default_api_address() -> String {
    "127.0.0.1".into()
}

fn default_api_port() -> u16 {
    8080
}

/// The `ocr` section: the `vigilocr` element of every source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrConfig {
    /// `ocr.det_model`: text detection model in the model repository. Default `ppocr_det`.
    #[serde(default = "default_det_model")]
    pub det_model: String,
    /// `ocr.cls_model`: text direction model; `null` or `""` = none (no 180° turn). Default
    /// `ppocr_cls`.
    #[serde(default = "default_cls_model")]
    pub cls_model: Option<String>,
    /// `ocr.rec_model`: text recognition model. Default `ppocr_rec`.
    #[serde(default = "default_rec_model")]
    pub rec_model: String,
    /// `ocr.operate_on`: read text only inside objects with these labels (of `inference` or
    /// `secondary` models); empty or absent = the whole frame.
    #[serde(default)]
    pub operate_on: Vec<ClassName>,
    /// `ocr.det_threshold`: probability threshold of the text map, 0..1. Default 0.3.
    #[serde(default = "default_ocr_det_threshold")]
    pub det_threshold: f64,
    /// `ocr.box_threshold`: minimum mean probability inside a text box, 0..1. Default 0.5.
    #[serde(default = "default_ocr_box_threshold")]
    pub box_threshold: f64,
    /// `ocr.unclip_ratio`: how much text boxes grow, 0..10. Default 1.6.
    #[serde(default = "default_ocr_unclip_ratio")]
    pub unclip_ratio: f64,
    /// `ocr.min_text_score`: lines recognised with a lower score are dropped, 0..1. Default 0.5.
    #[serde(default = "default_ocr_min_text_score")]
    pub min_text_score: f64,
    /// `ocr.server`: inference servers speaking Triton's protocol that run the three models
    /// (`vigilocr server-url`), as `inference.server`; the recogniser's ONNX file must still be in
    /// the local `model_repository` (its dictionary). Optional; in process by default.
    #[serde(default)]
    pub server: Option<OneOrMany>,
    /// `ocr.server_timeout_ms`: the deadline of one remote request. Default 1000.
    #[serde(default = "default_server_timeout_ms")]
    pub server_timeout_ms: u32,
}

impl Default for OcrConfig {
    fn default() -> Self {
        OcrConfig {
            det_model: default_det_model(),
            cls_model: default_cls_model(),
            rec_model: default_rec_model(),
            operate_on: Vec::new(),
            det_threshold: default_ocr_det_threshold(),
            box_threshold: default_ocr_box_threshold(),
            unclip_ratio: default_ocr_unclip_ratio(),
            min_text_score: default_ocr_min_text_score(),
            server: None,
            server_timeout_ms: default_server_timeout_ms(),
        }
    }
}

fn default_det_model() -> String {
    "ppocr_det".into()
}
fn default_cls_model() -> Option<String> {
    Some("ppocr_cls".into())
}
fn default_rec_model() -> String {
    "ppocr_rec".into()
}
/// An `f32` default as the decimal it was written as (0.3, not 0.30000001192092896).
fn f32_default(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}
fn default_ocr_det_threshold() -> f64 {
    f32_default(vigil_core::ocr::OcrParams::default().det.threshold)
}
fn default_ocr_box_threshold() -> f64 {
    f32_default(vigil_core::ocr::OcrParams::default().det.box_threshold)
}
fn default_ocr_unclip_ratio() -> f64 {
    vigil_core::ocr::OcrParams::default().det.unclip_ratio
}
fn default_ocr_min_text_score() -> f64 {
    f32_default(vigil_core::ocr::OcrParams::default().text_score)
}

/// The `inspection` section: the `vigilinspect` element of every source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionConfig {
    /// `inspection.rules`: the rules file (docs/inspection.md), relative to the config file's folder;
    /// loaded and checked by `vigil check`/`vigil run`. Required.
    pub rules: PathBuf,
    /// `inspection.snapshots`: folder for a JPEG of every FAIL item (`<item id>.jpg`, verdict drawn),
    /// relative to the config file's folder; created. Optional; none by default.
    #[serde(default)]
    pub snapshots: Option<PathBuf>,
}

/// One entry of `sources`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `sources[i].name`: unique name of the source (letters, digits, `-`, `_`, `.`); appears in events
    /// (`"source"`), progress lines and output names. Required.
    pub name: String,
    /// `sources[i].uri`: a file path (relative to the config file's folder) or a URI (`file://`,
    /// `rtsp://`, `rtsps://`, `http://`, `https://`, or any scheme GStreamer's `uridecodebin` handles).
    /// Local files must exist. Required unless `images` is given.
    #[serde(default)]
    pub uri: String,
    /// `sources[i].images`: image files as inspection items (one image = one item) instead of `uri`.
    #[serde(default)]
    pub images: Option<ImagesConfig>,
    /// `sources[i].loop`: restart a file at its end, timestamps continuing (demos). Default `false`.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// `sources[i].decoder`: `auto` (NVDEC through GStreamer's `nvcodec` decoders when they register,
    /// else software), `gpu` (NVDEC; a warning and software when missing) or `cpu`. Default `auto`.
    #[serde(default)]
    pub decoder: DecoderPolicy,
    /// `sources[i].drop_frame_interval`: keep only every N-th decoded frame (0 or 1 = every frame).
    /// Default 1.
    #[serde(default)]
    pub drop_frame_interval: Option<u32>,
    /// `sources[i].rtsp_transport`: lower transport of `rtsp://` sources: `auto` (UDP, then TCP),
    /// `tcp` or `udp`. Default `auto`.
    #[serde(default)]
    pub rtsp_transport: RtspTransport,
    /// `sources[i].latency_ms`: jitter-buffer latency of RTSP sources, in milliseconds. Default: the
    /// `vigilsrc` default.
    #[serde(default)]
    pub latency_ms: Option<u32>,
    /// `sources[i].reconnect`: reconnection of network sources with exponential backoff. Optional.
    #[serde(default)]
    pub reconnect: Option<ReconnectConfig>,
    /// `sources[i].live_queue`: decoded frames of a live source (a camera) held while the analysis
    /// is busy before the oldest are dropped (counted in `vigil_stream_frames_dropped_total`), 1..=300.
    /// Default: the `vigilsrc` default (2: stay real time). A larger queue rides out longer stalls
    /// (a slow inference server) at the cost of latency.
    #[serde(default)]
    pub live_queue: Option<u32>,
    /// `sources[i].analytics`: counting lines and zones in this camera's frame pixels (`anchor`,
    /// `hysteresis`, `forget_after`, `lines`, `zones`; see `vigil_core::analytics`). Optional; with it
    /// a `vigilanalytics` runs after `vigiltrack` on this source.
    #[serde(default)]
    pub analytics: Option<vigil_core::analytics::AnalyticsConfig>,
}

impl SourceConfig {
    /// A source added through the API (`POST /streams`): one JSON object, the fields of a YAML source
    /// entry but `images`. Errors name the field (`reconnect.interval_ms: invalid type: …`).
    pub fn from_api_json(body: &[u8]) -> Result<SourceConfig, String> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("body: malformed JSON: {e}"))?;
        check_json_objects(&value, "")?;
        if value.get("images").is_some() {
            return Err(
                "images: not accepted by the API (image sources are set in the config)".into(),
            );
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let at = e.path().to_string();
            // serde names the Rust type where a JSON object was expected.
            let what = e
                .inner()
                .to_string()
                .replace("struct SourceConfig", "a JSON object")
                .replace("`images`, ", "");
            if at == "." {
                format!("body: {what}")
            } else {
                format!("{at}: {what}")
            }
        })
    }
}

/// serde also reads a struct from a JSON array (its fields in order); in the API's body every object
/// must be written as one: the body, `reconnect`, `analytics` and each line and zone.
fn check_json_objects(v: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value;
    let want_object = |v: &Value, key: &str| match v {
        Value::Array(_) => Err(format!("{key}: expected a JSON object, found an array")),
        _ => Ok(()),
    };
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (k.as_str(), child) {
                    ("reconnect" | "analytics", _) => want_object(child, &key)?,
                    ("lines" | "zones", Value::Array(items)) => {
                        for (i, item) in items.iter().enumerate() {
                            want_object(item, &format!("{key}[{i}]"))?;
                        }
                    }
                    _ => {}
                }
                check_json_objects(child, &key)?;
            }
            Ok(())
        }
        Value::Array(items) if !at.is_empty() => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_json_objects(item, &format!("{at}[{i}]"))),
        Value::Array(_) => want_object(v, "body"),
        _ => Ok(()),
    }
}

/// The `sources[i].images` section: a folder, glob or file of images read by `vigilimagesrc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// `images.path`: a folder (its PNG/JPEG-like files), a glob in the file name (`items/*.jpg`) or
    /// one file, relative to the config file's folder. The folder must exist. Required.
    pub path: String,
    /// `images.watch`: after the files present at start, keep reading new files written into the
    /// folder (the source never ends). Default `false`.
    #[serde(default)]
    pub watch: bool,
    /// `images.poll_interval_ms`: how often a watched folder is polled (≥ 10). Default 500.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_ms: u32,
    /// `images.loop`: start again from the first file at the end (demos, soak tests). Default `false`.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// `images.fps`: items per second of the timestamps (1..=1000); none = as fast as the pipeline
    /// takes them (timestamps 40 ms apart). With `realtime`, the outputs play them at this rate.
    #[serde(default)]
    pub fps: Option<u32>,
    /// `images.sort`: `name` or `mtime`. Default `name`.
    #[serde(default)]
    pub sort: ImageSort,
    /// `images.min_size`: images narrower or lower than this are error items. Default 16.
    #[serde(default = "default_image_min_size")]
    pub min_size: u32,
    /// `images.max_size`: images wider or higher than this are error items. Default 8192.
    #[serde(default = "default_max_size")]
    pub max_size: u32,
    /// `images.output`: frame size of the encoded outputs (RTSP, MP4), which need one size: every
    /// image is scaled into it keeping its aspect ratio (black borders). Default: the first image's
    /// size (rounded up to even), or 640x480 when there is none yet.
    #[serde(default)]
    pub output: Option<FrameSize>,
}

fn default_poll_interval() -> u32 {
    500
}
fn default_image_min_size() -> u32 {
    vigil_core::items::SizeLimits::default().min_size
}
fn default_max_size() -> u32 {
    vigil_core::items::SizeLimits::default().max_size
}

/// `images.sort` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageSort {
    #[default]
    Name,
    Mtime,
}

/// A frame size (`{width, height}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

/// `sources[i].decoder` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderPolicy {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl DecoderPolicy {
    /// The `vigilsrc` `decoder` nick.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecoderPolicy::Auto => "auto",
            DecoderPolicy::Gpu => "gpu",
            DecoderPolicy::Cpu => "cpu",
        }
    }
}

/// `sources[i].rtsp_transport` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Auto,
    Tcp,
    Udp,
}

impl RtspTransport {
    /// The `vigilsrc` `rtsp-transport` nick.
    pub fn as_str(&self) -> &'static str {
        match self {
            RtspTransport::Auto => "auto",
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }
}

/// The `sources[i].reconnect` section (network sources only; a file fails at once).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    /// `reconnect.interval_ms`: delay before the first attempt (ms), doubled after each failure, ≥ 1.
    /// Default: the `vigilsrc` default.
    #[serde(default)]
    pub interval_ms: Option<u32>,
    /// `reconnect.max_interval_ms`: largest delay between attempts (ms), ≥ `interval_ms`.
    /// Default: the `vigilsrc` default.
    #[serde(default)]
    pub max_interval_ms: Option<u32>,
    /// `reconnect.attempts`: attempts before the source fails (-1 = forever, 0 = never).
    /// Default: the `vigilsrc` default.
    #[serde(default)]
    pub attempts: Option<i32>,
}

/// The `inference` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// `inference.model`: name of the model in the model repository (e.g. `nanodet`). Required.
    pub model: String,
    /// `inference.version`: model version (a numbered folder of the model). Optional; latest by default.
    #[serde(default)]
    pub version: Option<u64>,
    /// `inference.threshold`: minimum detection confidence, 0..1. Default 0.4.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// `inference.nms_iou`: IoU above which overlapping detections of a class are suppressed, 0..1.
    /// Default 0.5.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f64,
    /// `inference.classes`: keep only these classes (labels from the model's `labels.txt`, or class
    /// ids). Optional; all classes by default.
    #[serde(default)]
    pub classes: Option<Vec<ClassName>>,
    /// `inference.interval`: run the model on every N-th frame (the tracker predicts the others), ≥ 1.
    /// Default 1.
    #[serde(default = "default_interval")]
    pub interval: u32,
    /// `inference.max_detections`: at most this many objects per frame, ≥ 1. Default 100.
    #[serde(default = "default_max_detections")]
    pub max_detections: u32,
    /// `inference.preprocess`: where frames become the model's input tensor: `auto` (on the GPU
    /// inside the model server when the model's runtime can, else the CPU), `gpu` (the same, with
    /// one warning per process when it cannot) or `cpu`. Default `auto`.
    #[serde(default)]
    pub preprocess: PreprocessPolicy,
    /// `inference.server`: inference servers speaking Triton's protocol that run the model (and the
    /// `secondary` models) instead of this process: `grpc://HOST:PORT` or `http://HOST:PORT`, one or
    /// a list (failover and load spreading). The model's configuration comes from the servers; the
    /// local `model_repository` is read only for the model's labels, when the model's folder is
    /// there. Optional; in process by default.
    #[serde(default)]
    pub server: Option<OneOrMany>,
    /// `inference.server_timeout_ms`: the deadline of one remote request over all the servers it
    /// tries; frames no server answers in time pass without detections and are counted. Default 1000.
    #[serde(default = "default_server_timeout_ms")]
    pub server_timeout_ms: u32,
}

/// A value or a list of values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

fn default_server_timeout_ms() -> u32 {
    1000
}

/// `inference.preprocess` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreprocessPolicy {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl PreprocessPolicy {
    /// The `vigilinfer` `preprocess` nick.
    pub fn as_str(&self) -> &'static str {
        match self {
            PreprocessPolicy::Auto => "auto",
            PreprocessPolicy::Gpu => "gpu",
            PreprocessPolicy::Cpu => "cpu",
        }
    }
}

/// One entry of the `secondary` list: a model run on the crops of parent objects (`vigilinfer
/// process-mode=secondary`); its detections become child objects of their parent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    /// `secondary[i].model`: name of the model in the model repository (e.g. `centerface`). Required.
    pub model: String,
    /// `secondary[i].version`: model version. Optional; latest by default.
    #[serde(default)]
    pub version: Option<u64>,
    /// `secondary[i].operate_on`: labels of the parent objects whose crops the model runs on (labels of
    /// the `inference` model or of an earlier secondary model). Optional; all objects by default.
    #[serde(default)]
    pub operate_on: Option<Vec<ClassName>>,
    /// `secondary[i].min_size`: parents narrower or lower than this many pixels are skipped. Default 32.
    #[serde(default = "default_min_size")]
    pub min_size: u32,
    /// `secondary[i].crop_expand`: each side of a parent's crop grows by this fraction of the box's
    /// width/height, 0..=1. Default 0.
    #[serde(default)]
    pub crop_expand: f64,
    /// `secondary[i].threshold`: minimum confidence of a child detection, 0..1. Default 0.5.
    #[serde(default = "default_secondary_threshold")]
    pub threshold: f64,
    /// `secondary[i].nms_iou`: NMS overlap within a crop, 0..1. Default 0.3.
    #[serde(default = "default_secondary_nms_iou")]
    pub nms_iou: f64,
    /// `secondary[i].max_detections`: at most this many children per parent, ≥ 1. Default 10.
    #[serde(default = "default_secondary_max_detections")]
    pub max_detections: u32,
    /// `secondary[i].interval`: run on every N-th frame, ≥ 1. Default 1.
    #[serde(default = "default_interval")]
    pub interval: u32,
}

fn default_min_size() -> u32 {
    32
}
fn default_secondary_threshold() -> f64 {
    0.5
}
fn default_secondary_nms_iou() -> f64 {
    0.3
}
fn default_secondary_max_detections() -> u32 {
    10
}

/// A class filter entry: a label (`person`) or a class id (`0`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassName(pub String);

impl<'de> Deserialize<'de> for ClassName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ClassName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a class label or class id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClassName, E> {
                Ok(ClassName(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ClassName, E> {
                Ok(ClassName(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ClassName, E> {
                Ok(ClassName(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Tracker algorithms (`vigiltrack`'s `tracker` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    /// Greedy IoU matching of detections to tracks.
    #[default]
    Iou,
    /// SORT: Kalman filter and optimal IoU assignment.
    Sort,
    /// ByteTrack: SORT plus a second association of low-confidence detections.
    Bytetrack,
    /// OC-SORT: observation-centric SORT (momentum, recovery, re-update) with ByteTrack's second stage.
    Ocsort,
}

impl TrackerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TrackerKind::Iou => "iou",
            TrackerKind::Sort => "sort",
            TrackerKind::Bytetrack => "bytetrack",
            TrackerKind::Ocsort => "ocsort",
        }
    }
}

/// The `tracker` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    /// `tracker.kind`: the algorithm; `iou`, `sort`, `bytetrack` or `ocsort`. Default `iou`.
    #[serde(default)]
    pub kind: TrackerKind,
    /// `tracker.iou_threshold`: minimum IoU to match a detection to a track, 0..1. Default 0.3.
    #[serde(default = "default_iou_threshold")]
    pub iou_threshold: f64,
    /// `tracker.max_age`: inferred frames a track survives without a match (iou, sort, ocsort). Default 30.
    #[serde(default = "default_max_age")]
    pub max_age: u32,
    /// `tracker.track_buffer`: inferred frames a lost track is kept (bytetrack). Default 30.
    #[serde(default = "default_max_age")]
    pub track_buffer: u32,
    /// `tracker.min_hits`: matches before a track gets an id; 0 = the algorithm's default (iou 1, sort 3,
    /// bytetrack 2, ocsort 3). Default 0.
    #[serde(default)]
    pub min_hits: u32,
    /// `tracker.track_thresh`: confidence of the high-score detections (bytetrack, ocsort). Default 0.5.
    #[serde(default = "default_track_thresh")]
    pub track_thresh: f64,
    /// `tracker.low_thresh`: lowest confidence of the low-score detections (bytetrack, ocsort). Default 0.1.
    #[serde(default = "default_low_thresh")]
    pub low_thresh: f64,
    /// `tracker.new_track_thresh`: minimum confidence to start a track (bytetrack, ocsort). Default 0.6.
    #[serde(default = "default_new_track_thresh")]
    pub new_track_thresh: f64,
    /// `tracker.match_class`: associate detections only with tracks of their class. Default `true`.
    #[serde(default = "yes")]
    pub match_class: bool,
    /// `tracker.coast_frames`: inferred frames in a row a confirmed track that missed its detection is
    /// still reported at its predicted box (`predicted: true`), so lines and zones see it; 0 =
    /// detections only. Default: the algorithm's (iou 0, sort 1, bytetrack 2, ocsort 1).
    #[serde(default)]
    pub coast_frames: Option<u32>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            kind: TrackerKind::Iou,
            iou_threshold: default_iou_threshold(),
            max_age: default_max_age(),
            track_buffer: default_max_age(),
            min_hits: 0,
            track_thresh: default_track_thresh(),
            low_thresh: default_low_thresh(),
            new_track_thresh: default_new_track_thresh(),
            match_class: true,
            coast_frames: None,
        }
    }
}

/// The `overlay` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayConfig {
    /// `overlay.enabled`: draw boxes on the video outputs. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `overlay.labels`: draw class labels. Default `true`.
    #[serde(default = "yes")]
    pub labels: bool,
    /// `overlay.confidence`: draw confidences. Default `true`.
    #[serde(default = "yes")]
    pub confidence: bool,
    /// `overlay.track_ids`: draw track ids. Default `true`.
    #[serde(default = "yes")]
    pub track_ids: bool,
    /// `overlay.line_width`: box line width in pixels, 1..=16. Default 2.
    #[serde(default = "default_line_width")]
    pub line_width: u32,
    /// `overlay.font_scale`: text scale (8-pixel glyphs times this), 1..=8. Default 2.
    #[serde(default = "default_font_scale")]
    pub font_scale: u32,
    /// `overlay.blur`: labels of objects whose boxes are blurred before drawing (privacy mode, e.g.
    /// `[face]`; labels of the inference or secondary models). Optional; nothing blurred by default.
    /// Needs `enabled: true`.
    #[serde(default)]
    pub blur: Vec<ClassName>,
    // Analytics overlay (sources with `analytics`).
    /// `overlay.lines`: draw counting lines, their `in` arrow and totals. Default `true`.
    #[serde(default = "yes")]
    pub lines: bool,
    /// `overlay.zones`: draw zones and their occupancy. Default `true`.
    #[serde(default = "yes")]
    pub zones: bool,
    /// `overlay.counters`: draw the counters panel (top-left). Default `true`.
    #[serde(default = "yes")]
    pub counters: bool,
    /// `overlay.trails`: draw track trails. Default `false`.
    #[serde(default)]
    pub trails: bool,
    /// `overlay.trail_length`: positions per trail, 2..=1000. Default 30.
    #[serde(default = "default_trail_length")]
    pub trail_length: u32,
}

fn default_trail_length() -> u32 {
    30
}

impl Default for OverlayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            labels: true,
            confidence: true,
            track_ids: true,
            line_width: default_line_width(),
            font_scale: default_font_scale(),
            blur: Vec::new(),
            lines: true,
            zones: true,
            counters: true,
            trails: false,
            trail_length: default_trail_length(),
        }
    }
}

/// The `outputs` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    /// `outputs.rtsp`: serve the annotated video over RTSP (H.264). Optional.
    #[serde(default)]
    pub rtsp: Option<RtspConfig>,
    /// `outputs.file`: record the annotated video to an MP4 (H.264) file. Optional.
    #[serde(default)]
    pub file: Option<FileConfig>,
    /// `outputs.events`: write one `vigil.frame.v1` JSON event per frame (JSON lines). Optional.
    #[serde(default)]
    pub events: Option<EventsConfig>,
    /// `outputs.mosaic`: a tiled mosaic of every source, served on its own mount of the RTSP server
    /// (requires `outputs.rtsp`). Optional.
    #[serde(default)]
    pub mosaic: Option<MosaicConfig>,
    /// `outputs.mqtt`: publish JSON messages (`docs/events.md`) to an MQTT broker, one connection per
    /// stream (a `vigilmsgbroker` at the end of each stream's analysis chain). Optional.
    #[serde(default)]
    pub mqtt: Option<MqttOutputConfig>,
}

/// The `outputs.mqtt` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttOutputConfig {
    /// `outputs.mqtt.host`: broker host name or address. Default `127.0.0.1`.
    #[serde(default = "default_mqtt_host")]
    pub host: String,
    /// `outputs.mqtt.port`: broker port. Default 1883.
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// `outputs.mqtt.topic`: topic template with `{source}`, `{kind}`, `{event}`, `{name}`,
    /// `{schema}`. Default `vigil/{source}/{kind}`.
    #[serde(default = "default_mqtt_topic")]
    pub topic: String,
    /// `outputs.mqtt.qos`: 0, 1 or 2. Default 1.
    #[serde(default = "default_mqtt_qos")]
    pub qos: u8,
    /// `outputs.mqtt.client_id`: client id of each stream's connection; `{source}` is replaced by the
    /// stream's name, and `-<source>` is appended when it has no `{source}`. Default
    /// `vigil-<name>-{source}`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `outputs.mqtt.username` and `password`: credentials. Optional.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// `outputs.mqtt.tls`: connect with TLS (`ca`, `cert`, `key`: PEM files; all optional — without
    /// `ca` the system's roots are trusted). Optional.
    #[serde(default)]
    pub tls: Option<MqttTlsConfig>,
    /// `outputs.mqtt.keep_alive_s`: MQTT keep-alive in seconds (at least 5; 0 = off). Default 30.
    #[serde(default = "default_mqtt_keep_alive")]
    pub keep_alive_s: u32,
    /// `outputs.mqtt.buffer`: messages each stream holds while the broker is unreachable. Default 1000.
    #[serde(default = "default_mqtt_buffer")]
    pub buffer: u32,
    /// `outputs.mqtt.drop`: what a full buffer drops: `oldest` or `newest`. Default `oldest`.
    #[serde(default = "default_mqtt_drop")]
    pub drop: String,
    /// `outputs.mqtt.messages`: which messages: `frames`, `objects`, `analytics` (a list). Default
    /// `[analytics]`.
    #[serde(default = "default_mqtt_messages")]
    pub messages: Vec<String>,
    /// `outputs.mqtt.flush_timeout_ms`: how long a stream's end waits for its buffered messages.
    /// Default 5000.
    #[serde(default = "default_mqtt_flush")]
    pub flush_timeout_ms: u32,
}

/// The `outputs.mqtt.tls` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// `outputs.mqtt.tls.ca`: PEM file of the CAs that sign the broker's certificate.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `outputs.mqtt.tls.cert`: PEM client certificate (with `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// `outputs.mqtt.tls.key`: PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

fn default_mqtt_host() -> String {
    "127.0.0.1".into()
}
fn default_mqtt_port() -> u16 {
    1883
}
fn default_mqtt_topic() -> String {
    "vigil/{source}/{kind}".into()
}
fn default_mqtt_qos() -> u8 {
    1
}
fn default_mqtt_keep_alive() -> u32 {
    30
}
fn default_mqtt_buffer() -> u32 {
    1000
}
fn default_mqtt_drop() -> String {
    "oldest".into()
}
fn default_mqtt_messages() -> Vec<String> {
    vec!["analytics".into()]
}
fn default_mqtt_flush() -> u32 {
    5000
}

/// `outputs.mqtt` after validation (TLS paths absolute and readable).
#[derive(Debug, Clone)]
pub struct MqttPlan {
    pub host: String,
    pub port: u16,
    /// Topic template with `{shard}` replaced (by this process's shard index).
    pub topic: String,
    /// `outputs.mqtt.topic` as written (`{shard}` not replaced).
    pub topic_template: String,
    pub qos: u8,
    /// Client id template with `{shard}` replaced; [`MqttPlan::client_id`] gives a stream's.
    pub client_id: String,
    /// The client id template as written (`{shard}` not replaced).
    pub client_id_template: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<vigil_publish::TlsFiles>,
    pub keep_alive_s: u32,
    pub buffer: u32,
    pub drop: String,
    /// Comma-separated, as `vigilmsgbroker messages` takes it.
    pub messages: String,
    pub flush_timeout_ms: u32,
}

impl MqttPlan {
    /// The client id of stream `source`.
    pub fn client_id(&self, source: &str) -> String {
        if self.client_id.contains("{source}") {
            self.client_id.replace("{source}", source)
        } else {
            format!("{}-{source}", self.client_id)
        }
    }
}

/// The `outputs.mosaic` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MosaicConfig {
    /// `outputs.mosaic.mount`: mount path of the mosaic. Default `/<name>-mosaic`.
    #[serde(default)]
    pub mount: Option<String>,
    /// `outputs.mosaic.width`: mosaic width in pixels (even, 16..=7680). Default 1280.
    #[serde(default = "default_mosaic_width")]
    pub width: u32,
    /// `outputs.mosaic.height`: mosaic height in pixels (even, 16..=4320). Default 720.
    #[serde(default = "default_mosaic_height")]
    pub height: u32,
    /// `outputs.mosaic.columns`: tiles per row, or `auto` (the smallest square grid). Default `auto`.
    #[serde(default)]
    pub columns: Columns,
    /// `outputs.mosaic.fps`: frames per second of the mosaic (1..=60). Default 25.
    #[serde(default = "default_mosaic_fps")]
    pub fps: u32,
    /// `outputs.mosaic.tiles`: number of tiles, at least the number of sources (1..=64); tiles beyond
    /// the configured sources are kept for streams added at run time (`POST /streams`). Default: the
    /// number of sources.
    #[serde(default)]
    pub tiles: Option<u32>,
}

/// `outputs.mosaic.columns`: `auto` or a number of columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Columns {
    #[default]
    Auto,
    Fixed(u32),
}

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Columns;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`auto` or a number of columns")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Columns, E> {
                if v == "auto" {
                    Ok(Columns::Auto)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Columns, E> {
                u32::try_from(v)
                    .map(Columns::Fixed)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Columns, E> {
                u32::try_from(v)
                    .map(Columns::Fixed)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// `outputs.rtsp.encoder` and `outputs.file.encoder` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderChoice {
    /// `nvh264enc` when its factory exists, else `x264enc`.
    #[default]
    Auto,
    /// `x264enc` (software).
    X264,
    /// `nvh264enc` (NVENC); a warning and `x264enc` when it is missing.
    Nvh264enc,
}

/// The `outputs.rtsp.auth` section: RTSP basic authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `outputs.rtsp.auth.user`: user name (no `:`). Required.
    pub user: String,
    /// `outputs.rtsp.auth.password`: password. Required.
    pub password: String,
}

/// The `outputs.rtsp` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspConfig {
    /// `outputs.rtsp.address`: address to listen on. Default `127.0.0.1` (use `0.0.0.0` for all).
    #[serde(default = "default_rtsp_address")]
    pub address: String,
    /// `outputs.rtsp.port`: TCP port; `0` picks a free one. Default 8554.
    #[serde(default = "default_rtsp_port")]
    pub port: u16,
    /// `outputs.rtsp.mount`: mount path, starting with `/`. Default `/<name>`. With several sources,
    /// source `s` is served at `<mount>/<s>`.
    #[serde(default)]
    pub mount: Option<String>,
    /// `outputs.rtsp.bitrate_kbps`: H.264 bitrate in kbit/s. Default 2000.
    #[serde(default = "default_rtsp_bitrate")]
    pub bitrate_kbps: u32,
    /// `outputs.rtsp.encoder`: `auto` (`nvh264enc` when available, else `x264enc`), `x264` or
    /// `nvh264enc` (falls back to `x264enc` with one warning when missing). Default `auto`.
    #[serde(default)]
    pub encoder: EncoderChoice,
    /// `outputs.rtsp.auth`: require RTSP basic authentication (`user`, `password`) on every mount.
    /// Optional; without it anyone who can reach the port may watch.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

/// The `outputs.file` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `outputs.file.path`: MP4 file to write (relative to the config file's folder; folders are
    /// created). With several sources, source `s` goes to `<stem>-<s>.mp4`. Required.
    pub path: PathBuf,
    /// `outputs.file.bitrate_kbps`: H.264 bitrate in kbit/s. Default 4000.
    #[serde(default = "default_file_bitrate")]
    pub bitrate_kbps: u32,
    /// `outputs.file.encoder`: `auto` (`nvh264enc` when available, else `x264enc`), `x264` or
    /// `nvh264enc` (falls back to `x264enc` with one warning when missing). Default `auto`.
    #[serde(default)]
    pub encoder: EncoderChoice,
}

/// The `outputs.events` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// `outputs.events.path`: `-` for standard output, else a file (relative to the config file's
    /// folder; folders are created; an existing file is replaced). Required.
    pub path: String,
}

fn yes() -> bool {
    true
}
fn default_threshold() -> f64 {
    0.4
}
fn default_nms_iou() -> f64 {
    0.5
}
fn default_interval() -> u32 {
    1
}
fn default_max_detections() -> u32 {
    100
}
fn default_iou_threshold() -> f64 {
    0.3
}
fn default_max_age() -> u32 {
    30
}
fn default_track_thresh() -> f64 {
    0.5
}
fn default_low_thresh() -> f64 {
    0.1
}
fn default_new_track_thresh() -> f64 {
    0.6
}
fn default_line_width() -> u32 {
    2
}
fn default_font_scale() -> u32 {
    2
}
fn default_rtsp_address() -> String {
    "127.0.0.1".to_string()
}
fn default_rtsp_port() -> u16 {
    8554
}
fn default_rtsp_bitrate() -> u32 {
    2000
}
fn default_file_bitrate() -> u32 {
    4000
}
fn default_mosaic_width() -> u32 {
    1280
}
fn default_mosaic_height() -> u32 {
    720
}
fn default_mosaic_fps() -> u32 {
    25
}

/// A source after validation.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub name: String,
    /// URI given to `vigilsrc`.
    pub uri: String,
    /// Local file, when the source is one.
    pub path: Option<PathBuf>,
    /// Why this source cannot start (e.g. its file does not exist), with file, line and key. Only in
    /// configs with several sources: such a source fails alone and the others run.
    pub problem: Option<String>,
    /// An image source (`sources[i].images`), validated.
    pub images: Option<ImagesPlan>,
}

/// A validated `sources[i].images`: the `vigilimagesrc` properties and the encoded outputs' size.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagesPlan {
    /// Absolute folder, glob or file.
    pub location: String,
    pub watch: bool,
    pub poll_interval_ms: u32,
    pub looping: bool,
    /// Items per second; 0 = as fast as the pipeline takes them.
    pub fps: u32,
    /// `name` or `mtime`.
    pub sort: &'static str,
    pub min_size: u32,
    pub max_size: u32,
    /// Frame size of the encoded outputs.
    pub output: (u32, u32),
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsTarget {
    Stdout,
    File(PathBuf),
}

/// The validated model.
#[derive(Debug, Clone)]
pub struct ModelPlan {
    /// Absolute model repository folder.
    pub repository: PathBuf,
    pub name: String,
    /// The resolved version (latest when the config gave none).
    pub version: u64,
    /// The model file that will be loaded.
    pub model_file: PathBuf,
    /// Class labels, in class-id order.
    pub labels: Vec<String>,
    /// The `classes` filter as the `vigilinfer` `classes` property (comma separated, "" = all).
    pub classes: String,
    /// `inference.server`: the servers that run the model (empty = this process). For a remote
    /// model `version` 0 means the servers' choice and `model_file` is empty.
    pub servers: Vec<String>,
    pub server_timeout_ms: u32,
}

/// The validated `ocr` section (models resolved in the model repository).
#[derive(Debug, Clone)]
pub struct OcrPlan {
    /// Absolute model repository folder.
    pub repository: PathBuf,
    pub det_model: String,
    /// "" = no direction model.
    pub cls_model: String,
    pub rec_model: String,
    /// `operate-on-labels` (comma separated, "" = whole frame).
    pub operate_on: String,
    pub det_threshold: f64,
    pub box_threshold: f64,
    pub unclip_ratio: f64,
    pub min_text_score: f64,
    /// `ocr.server`: the servers that run the three models (empty = this process).
    pub servers: Vec<String>,
    pub server_timeout_ms: u32,
}

/// The validated `inspection` section.
#[derive(Debug, Clone)]
pub struct InspectionPlan {
    /// Absolute rules file (loaded and checked).
    pub rules: PathBuf,
    /// Absolute snapshot folder (created).
    pub snapshots: Option<PathBuf>,
}

/// A validated `secondary` entry.
#[derive(Debug, Clone)]
pub struct SecondaryPlan {
    pub model: ModelPlan,
    /// Parent labels as the `vigilinfer` `operate-on-labels` property (comma separated, "" = all).
    pub operate_on: String,
    pub min_size: u32,
    pub crop_expand: f64,
    pub threshold: f64,
    pub nms_iou: f64,
    pub max_detections: u32,
    pub interval: u32,
}

/// The RTSP output after validation.
#[derive(Debug, Clone)]
pub struct RtspPlan {
    pub address: String,
    pub port: u16,
    /// Mount per source, in source order.
    pub mounts: Vec<String>,
    /// `outputs.rtsp.mount` (or `/<name>`): a stream `s` added at run time is served at `<base>/<s>`.
    pub base_mount: String,
    pub bitrate_kbps: u32,
    pub encoder: EncoderChoice,
    /// `(user, password)` for RTSP basic authentication.
    pub auth: Option<(String, String)>,
    /// The tiled mosaic of all sources.
    pub mosaic: Option<MosaicPlan>,
}

/// The mosaic output after validation.
#[derive(Debug, Clone)]
pub struct MosaicPlan {
    pub mount: String,
    pub width: u32,
    pub height: u32,
    pub columns: u32,
    pub rows: u32,
    pub fps: u32,
}

impl MosaicPlan {
    /// Number of tiles (`columns × rows`).
    pub fn capacity(&self) -> usize {
        (self.columns * self.rows) as usize
    }

    /// `(x, y, width, height)` of tile `i` (row by row; sizes even, at least 2).
    pub fn tile(&self, i: usize) -> (i32, i32, i32, i32) {
        let (c, r) = (self.columns.max(1) as usize, self.rows.max(1) as usize);
        let w = (self.width as usize / c) & !1;
        let h = (self.height as usize / r) & !1;
        (
            ((i % c) * w) as i32,
            ((i / c) * h) as i32,
            w.max(2) as i32,
            h.max(2) as i32,
        )
    }
}

/// Everything needed to build the pipeline, with absolute paths; produced by [`Config::validate`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The config file as given (for messages).
    pub file: String,
    pub config: Config,
    pub sources: Vec<SourcePlan>,
    /// The detector (`inference`); `None` for an OCR-only configuration.
    pub model: Option<ModelPlan>,
    /// The OCR (`ocr`, or its defaults when only `inspection` is given).
    pub ocr: Option<OcrPlan>,
    /// The inspection (`inspection`).
    pub inspection: Option<InspectionPlan>,
    /// The `secondary` models, in config order (each runs after the tracker, on the previous ones'
    /// output).
    pub secondary: Vec<SecondaryPlan>,
    /// `overlay.blur` as the `vigilosd` `blur-labels` property (comma separated, "" = none).
    pub blur: String,
    pub rtsp: Option<RtspPlan>,
    /// MP4 file per source, in source order.
    pub files: Option<Vec<PathBuf>>,
    pub events: Option<EventsTarget>,
    /// `outputs.mqtt`, validated.
    pub mqtt: Option<MqttPlan>,
    pub realtime: bool,
    /// The HTTP API's socket address and token, when configured.
    pub api: Option<(std::net::SocketAddr, Option<String>)>,
    /// The config file's folder (relative paths of streams added at run time resolve against it).
    pub base: PathBuf,
    /// The shard this plan runs ([`Plan::for_shard`]); [`Shard::WHOLE`] for the whole fleet.
    pub shard: Shard,
    /// Number of sources in the whole config (before [`Plan::for_shard`] kept its shard's).
    pub fleet_sources: usize,
}

/// The largest `sources[i].live_queue` (frames).
const MAX_LIVE_QUEUE: u32 = 300;

/// `{shard}` in `outputs.mqtt.topic` and `client_id`: the shard index of the process.
pub const SHARD_PLACEHOLDER: &str = "{shard}";

impl Plan {
    /// The plan of one shard of this fleet: the sources whose name falls in `shard` (with their RTSP
    /// mounts and MP4 files, named as in the whole fleet so that no name depends on the split), and
    /// the outputs one process has for all its streams made distinct: the events file gets
    /// `-shard<I>` before its extension, the mosaic mount `-shard<I>` and a grid for the shard's own
    /// sources, `{shard}` in the MQTT topic and client id becomes the index. [`Shard::WHOLE`] gives
    /// the plan unchanged.
    pub fn for_shard(mut self, shard: Shard) -> Plan {
        self.shard = shard;
        if !shard.is_split() {
            return self;
        }
        let keep: Vec<bool> = self.sources.iter().map(|s| shard.owns(&s.name)).collect();
        let filter = |v: &mut Vec<_>| {
            let mut k = keep.iter();
            v.retain(|_| *k.next().unwrap_or(&false));
        };
        filter(&mut self.sources);
        if let Some(files) = &mut self.files {
            let mut k = keep.iter();
            files.retain(|_| *k.next().unwrap_or(&false));
        }
        let suffix = format!("-shard{}", shard.index);
        if let Some(r) = &mut self.rtsp {
            let mut k = keep.iter();
            r.mounts.retain(|_| *k.next().unwrap_or(&false));
            if let (Some(m), Some(cfg)) = (&mut r.mosaic, &self.config.outputs.mosaic) {
                m.mount.push_str(&suffix);
                if cfg.tiles.is_none() {
                    let n = (self.sources.len() as u32).max(1);
                    m.columns = match cfg.columns {
                        Columns::Auto => (1..=n).find(|c| c * c >= n).unwrap_or(1),
                        Columns::Fixed(c) => c.clamp(1, n),
                    };
                    m.rows = n.div_ceil(m.columns);
                }
            }
        }
        if let Some(EventsTarget::File(p)) = &mut self.events {
            let stem = p.file_stem().map(|s| s.to_string_lossy().to_string());
            let name = match (stem, p.extension()) {
                (Some(stem), Some(ext)) => format!("{stem}{suffix}.{}", ext.to_string_lossy()),
                (Some(stem), None) => format!("{stem}{suffix}"),
                (None, _) => format!("events{suffix}"),
            };
            p.set_file_name(name);
        }
        if let Some(m) = &mut self.mqtt {
            let index = shard.index.to_string();
            m.topic = m.topic_template.replace(SHARD_PLACEHOLDER, &index);
            m.client_id = m.client_id_template.replace(SHARD_PLACEHOLDER, &index);
        }
        self
    }

    /// Sources that can start (no [`SourcePlan::problem`]).
    pub fn startable_sources(&self) -> impl Iterator<Item = (usize, &SourcePlan)> {
        self.sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.problem.is_none())
    }

    /// Checks a source added at run time (the body of `POST /streams`): name, URI (relative paths
    /// against the config file's folder; local files must exist) and reconnect values. Errors name the
    /// key, e.g. `uri: no such file /x/y.mp4`.
    pub fn check_added_source(&self, s: &SourceConfig) -> Result<SourcePlan, String> {
        check_name(&s.name).map_err(|m| format!("name: {m}"))?;
        check_source_timing(s).map_err(|(k, m)| format!("{k}: {m}"))?;
        if let Some(a) = &s.analytics {
            let labels = self.model.as_ref().map(|m| m.labels.as_slice());
            if labels.is_none() {
                return Err("analytics: needs inference (it counts tracked objects)".into());
            }
            check_analytics(a, labels.unwrap_or_default())
                .map_err(|(k, m)| format!("analytics{k}: {m}"))?;
        }
        resolve_source(&self.base, s).map_err(|(k, m)| format!("{k}: {m}"))
    }

    /// Parses and checks the JSON body of `POST /streams` ([`SourceConfig`]) as
    /// [`Plan::check_added_source`] does, without building anything. Errors are the API's 400
    /// messages (`body: …` for JSON that is not a source, else the key, e.g. `uri: no such file …`).
    pub fn parse_added_source(&self, body: &[u8]) -> Result<(SourceConfig, SourcePlan), String> {
        let cfg = SourceConfig::from_api_json(body)?;
        let plan = self.check_added_source(&cfg)?;
        Ok((cfg, plan))
    }

    /// The RTSP mount of a stream `name` added at run time: `<outputs.rtsp.mount>/<name>`.
    pub fn added_mount(&self, name: &str) -> Option<String> {
        self.rtsp.as_ref().map(|r| {
            let sep = if r.base_mount.ends_with('/') { "" } else { "/" };
            format!("{}{sep}{name}", r.base_mount)
        })
    }

    /// The MP4 file of a stream `name` added at run time: `<stem>-<name>.<ext>` beside
    /// `outputs.file.path`.
    pub fn added_file(&self, name: &str) -> Option<PathBuf> {
        let f = self.config.outputs.file.as_ref()?;
        let p = normalize(&self.base.join(&f.path));
        let stem = p.file_stem()?.to_string_lossy().to_string();
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_string())
            .unwrap_or_else(|| "mp4".into());
        Some(p.with_file_name(format!("{stem}-{name}.{ext}")))
    }
}

impl Config {
    /// Reads and parses `path` (no validation beyond the YAML schema).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::parse(&text, &file)
    }

    /// Parses YAML `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        serde_norway::from_str(text).map_err(|e| parse_error(file, &e))
    }

    /// Reads, parses and validates `path`.
    pub fn load_and_validate(path: &Path) -> Result<Plan, ConfigError> {
        let config = Config::load(path)?;
        config.validate(path)
    }

    /// Validates this config, which was read from `path` (relative paths are resolved against its
    /// folder). Checks media files, the model (loads it), class names, output paths and value ranges.
    pub fn validate(&self, path: &Path) -> Result<Plan, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.clone(),
            line: locate_key(&text, key),
            key: key.to_string(),
            message,
        };
        let base = absolute(path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));

        check_name(&self.name).map_err(|m| invalid("name", m))?;

        // Sources.
        if self.sources.is_empty() {
            return Err(invalid("sources", "at least one source is required".into()));
        }
        let mut names = HashSet::new();
        let mut sources = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            check_name(&s.name).map_err(|m| invalid(&format!("sources[{i}].name"), m))?;
            if !names.insert(s.name.as_str()) {
                return Err(invalid(
                    &format!("sources[{i}].name"),
                    format!("duplicate source name '{}'", s.name),
                ));
            }
            check_source_timing(s).map_err(|(k, m)| invalid(&format!("sources[{i}].{k}"), m))?;
            match resolve_source(&base, s) {
                Ok(p) => sources.push(p),
                // With several sources, a missing or unreadable file fails that source alone.
                Err((k, m)) if self.sources.len() > 1 => {
                    let problem = invalid(&format!("sources[{i}].{k}"), m).to_string();
                    sources.push(SourcePlan {
                        name: s.name.clone(),
                        uri: s.uri.trim().to_string(),
                        path: None,
                        problem: Some(problem),
                        images: None,
                    });
                }
                Err((k, m)) => return Err(invalid(&format!("sources[{i}].{k}"), m)),
            }
        }
        if sources.iter().all(|s| s.problem.is_some()) {
            // No source can start: the first reason is the error.
            let i = 0;
            let s = &self.sources[i];
            let (k, m) = resolve_source(&base, s).err().unwrap_or_default();
            return Err(invalid(&format!("sources[{i}].{k}"), m));
        }

        // Value ranges.
        if self.inference.is_none() && self.ocr.is_none() && self.inspection.is_none() {
            return Err(invalid(
                "inference",
                "required unless ocr or inspection is given (nothing would analyse the sources)"
                    .into(),
            ));
        }
        if let Some(inf) = &self.inference {
            if inf.model.trim().is_empty() {
                return Err(invalid("inference.model", "must not be empty".into()));
            }
            unit_range(inf.threshold).map_err(|m| invalid("inference.threshold", m))?;
            unit_range(inf.nms_iou).map_err(|m| invalid("inference.nms_iou", m))?;
            if inf.interval == 0 {
                return Err(invalid("inference.interval", "must be at least 1".into()));
            }
            if inf.max_detections == 0 {
                return Err(invalid(
                    "inference.max_detections",
                    "must be at least 1".into(),
                ));
            }
        }
        let tr = &self.tracker;
        unit_range(tr.iou_threshold).map_err(|m| invalid("tracker.iou_threshold", m))?;
        unit_range(tr.track_thresh).map_err(|m| invalid("tracker.track_thresh", m))?;
        unit_range(tr.low_thresh).map_err(|m| invalid("tracker.low_thresh", m))?;
        unit_range(tr.new_track_thresh).map_err(|m| invalid("tracker.new_track_thresh", m))?;
        if tr.low_thresh > tr.track_thresh {
            return Err(invalid(
                "tracker.low_thresh",
                format!(
                    "{} is above tracker.track_thresh ({})",
                    tr.low_thresh, tr.track_thresh
                ),
            ));
        }
        if !(1..=16).contains(&self.overlay.line_width) {
            return Err(invalid(
                "overlay.line_width",
                format!("{} is not in 1..=16", self.overlay.line_width),
            ));
        }
        if !(1..=8).contains(&self.overlay.font_scale) {
            return Err(invalid(
                "overlay.font_scale",
                format!("{} is not in 1..=8", self.overlay.font_scale),
            ));
        }
        if !(2..=1000).contains(&self.overlay.trail_length) {
            return Err(invalid(
                "overlay.trail_length",
                format!("{} is not in 2..=1000", self.overlay.trail_length),
            ));
        }

        // Model.
        let repository = normalize(&base.join(&self.model_repository));
        let model = match &self.inference {
            None => None,
            Some(inf) => {
                let servers = inf
                    .server
                    .as_ref()
                    .map(OneOrMany::to_vec)
                    .unwrap_or_default();
                let model = if servers.is_empty() {
                    crate::model::check_model(&repository, &inf.model, inf.version)
                } else {
                    for (i, url) in servers.iter().enumerate() {
                        let key = match inf.server {
                            Some(OneOrMany::Many(_)) => format!("inference.server[{i}]"),
                            _ => "inference.server".to_string(),
                        };
                        vigil_kserve::client::check_url(url)
                            .map_err(|e| invalid(&key, e.message))?;
                    }
                    crate::model::remote_model(&repository, &inf.model, inf.version)
                }
                .map_err(|e| invalid(e.key, one_line(&e.message)))?;
                let model = ModelPlan {
                    server_timeout_ms: inf.server_timeout_ms.max(1),
                    servers,
                    ..model
                };
                let classes = match &inf.classes {
                    None => String::new(),
                    Some(list) => {
                        let mut out = Vec::new();
                        for (i, c) in list.iter().enumerate() {
                            let key = format!("inference.classes[{i}]");
                            let name = c.0.trim();
                            let known = model.labels.iter().any(|l| l == name)
                                || name.parse::<usize>().is_ok_and(|id| {
                                    model.labels.is_empty() || id < model.labels.len()
                                });
                            if name.is_empty() || name.contains(',') {
                                return Err(invalid(&key, format!("invalid class '{name}'")));
                            }
                            if !known {
                                return Err(invalid(
                                    &key,
                                    format!(
                                        "unknown class '{name}' for model '{}' (see {})",
                                        model.name,
                                        repository.join(&model.name).join("labels.txt").display()
                                    ),
                                ));
                            }
                            out.push(name.to_string());
                        }
                        if out.is_empty() {
                            return Err(invalid(
                                "inference.classes",
                                "an empty list keeps nothing; remove the key to keep all classes"
                                    .into(),
                            ));
                        }
                        out.join(",")
                    }
                };
                Some(ModelPlan { classes, ..model })
            }
        };

        // Secondary models: each loads, its parents are labels of the models before it. Errors in a
        // list item written in flow style (`operate_on: [a, b]`) name the line of the list's key.
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            file: file.clone(),
            line: locate_key(&text, key).or_else(|| {
                key.rsplit_once('[')
                    .and_then(|(list, _)| locate_key(&text, list))
            }),
            key: key.to_string(),
            message,
        };
        let mut known_labels: Vec<String> =
            model.as_ref().map(|m| m.labels.clone()).unwrap_or_default();
        if model.is_none() && !self.secondary.is_empty() {
            return Err(invalid(
                "secondary",
                "needs inference (secondary models run on the detector's objects)".into(),
            ));
        }
        let mut secondary = Vec::new();
        for (i, sc) in self.secondary.iter().enumerate() {
            let key = |k: &str| format!("secondary[{i}].{k}");
            if sc.model.trim().is_empty() {
                return Err(invalid(&key("model"), "must not be empty".into()));
            }
            unit_range(sc.threshold).map_err(|m| invalid(&key("threshold"), m))?;
            unit_range(sc.nms_iou).map_err(|m| invalid(&key("nms_iou"), m))?;
            unit_range(sc.crop_expand).map_err(|m| invalid(&key("crop_expand"), m))?;
            if sc.interval == 0 {
                return Err(invalid(&key("interval"), "must be at least 1".into()));
            }
            if sc.max_detections == 0 {
                return Err(invalid(&key("max_detections"), "must be at least 1".into()));
            }
            // With `inference.server`, the secondary models run on the same servers.
            let servers = model
                .as_ref()
                .map(|m| m.servers.clone())
                .unwrap_or_default();
            let m = if servers.is_empty() {
                crate::model::check_model(&repository, &sc.model, sc.version)
            } else {
                crate::model::remote_model(&repository, &sc.model, sc.version)
            }
            .map_err(|e| {
                let k = match e.key.strip_prefix("inference.") {
                    Some(rest) => key(rest),
                    None => e.key.to_string(),
                };
                invalid(&k, one_line(&e.message))
            })?;
            let m = ModelPlan {
                server_timeout_ms: model.as_ref().map_or(1000, |m| m.server_timeout_ms),
                servers,
                ..m
            };
            let mut parents = Vec::new();
            for (j, c) in sc.operate_on.iter().flatten().enumerate() {
                let name = c.0.trim();
                let k = key(&format!("operate_on[{j}]"));
                if name.is_empty() || name.contains(',') {
                    return Err(invalid(&k, format!("invalid label '{name}'")));
                }
                if !known_labels.iter().any(|l| l == name) {
                    return Err(invalid(
                        &k,
                        format!(
                            "'{name}' is not a label of model '{}' nor of an earlier secondary model",
                            model.as_ref().map(|m| m.name.as_str()).unwrap_or_default()
                        ),
                    ));
                }
                parents.push(name.to_string());
            }
            if sc.operate_on.as_ref().is_some_and(|l| l.is_empty()) {
                return Err(invalid(
                    &key("operate_on"),
                    "an empty list selects nothing; remove the key to run on all objects".into(),
                ));
            }
            known_labels.extend(m.labels.iter().cloned());
            secondary.push(SecondaryPlan {
                model: m,
                operate_on: parents.join(","),
                min_size: sc.min_size,
                crop_expand: sc.crop_expand,
                threshold: sc.threshold,
                nms_iou: sc.nms_iou,
                max_detections: sc.max_detections,
                interval: sc.interval,
            });
        }
        let mut blur = Vec::new();
        for (j, c) in self.overlay.blur.iter().enumerate() {
            let name = c.0.trim();
            let k = format!("overlay.blur[{j}]");
            if name.is_empty() || name.contains(',') {
                return Err(invalid(&k, format!("invalid label '{name}'")));
            }
            if !known_labels.iter().any(|l| l == name) {
                return Err(invalid(
                    &k,
                    format!("'{name}' is not a label of the inference or secondary models"),
                ));
            }
            blur.push(name.to_string());
        }
        if !blur.is_empty() && !self.overlay.enabled {
            return Err(invalid(
                "overlay.blur",
                "blurring is done by the overlay; it needs overlay.enabled: true".into(),
            ));
        }
        let blur = blur.join(",");
        // Analytics rules per source (geometry, names; labels must be the model's).
        for (i, s) in self.sources.iter().enumerate() {
            if let Some(a) = &s.analytics {
                let key = format!("sources[{i}].analytics");
                let Some(model) = &model else {
                    return Err(invalid(
                        &key,
                        "needs inference (lines and zones count the detector's tracked objects)"
                            .into(),
                    ));
                };
                check_analytics(a, &model.labels).map_err(|(k, m)| ConfigError::Invalid {
                    file: file.clone(),
                    line: locate_key_or_parent(&text, &format!("{key}{k}")),
                    key: format!("{key}{k}"),
                    message: m,
                })?;
            }
        }

        // OCR (its defaults when only `inspection` is given) and inspection.
        let ocr_config = match (&self.ocr, &self.inspection) {
            (Some(o), _) => Some(o.clone()),
            (None, Some(_)) => Some(OcrConfig::default()),
            (None, None) => None,
        };
        let ocr = match &ocr_config {
            None => None,
            Some(o) => {
                let servers = o.server.as_ref().map(OneOrMany::to_vec).unwrap_or_default();
                for (i, url) in servers.iter().enumerate() {
                    let key = match o.server {
                        Some(OneOrMany::Many(_)) => format!("ocr.server[{i}]"),
                        _ => "ocr.server".to_string(),
                    };
                    vigil_kserve::client::check_url(url).map_err(|e| invalid(&key, e.message))?;
                }
                let cls = o
                    .cls_model
                    .as_deref()
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_string();
                for (key, name) in [
                    ("ocr.det_model", o.det_model.trim()),
                    ("ocr.cls_model", cls.as_str()),
                    ("ocr.rec_model", o.rec_model.trim()),
                ] {
                    if name.is_empty() {
                        if key == "ocr.cls_model" {
                            continue;
                        }
                        return Err(invalid(key, "must not be empty".into()));
                    }
                    // Remote models: only the recogniser's file is read here (its dictionary).
                    if !servers.is_empty() && key != "ocr.rec_model" {
                        continue;
                    }
                    crate::model::check_model(&repository, name, None).map_err(|e| {
                        let k = if e.key == "model_repository" {
                            e.key
                        } else {
                            key
                        };
                        invalid(k, one_line(&e.message))
                    })?;
                }
                for (key, v) in [
                    ("ocr.det_threshold", o.det_threshold),
                    ("ocr.box_threshold", o.box_threshold),
                    ("ocr.min_text_score", o.min_text_score),
                ] {
                    unit_range(v).map_err(|m| invalid(key, m))?;
                }
                if !(0.0..=10.0).contains(&o.unclip_ratio) {
                    return Err(invalid(
                        "ocr.unclip_ratio",
                        format!("{} is not in 0..=10", o.unclip_ratio),
                    ));
                }
                let mut labels = Vec::new();
                for (j, c) in o.operate_on.iter().enumerate() {
                    let name = c.0.trim();
                    let k = format!("ocr.operate_on[{j}]");
                    if name.is_empty() || name.contains(',') {
                        return Err(invalid(&k, format!("invalid label '{name}'")));
                    }
                    if !known_labels.iter().any(|l| l == name) {
                        return Err(invalid(
                            &k,
                            format!("'{name}' is not a label of the inference or secondary models"),
                        ));
                    }
                    labels.push(name.to_string());
                }
                Some(OcrPlan {
                    repository: repository.clone(),
                    det_model: o.det_model.trim().to_string(),
                    cls_model: cls,
                    rec_model: o.rec_model.trim().to_string(),
                    operate_on: labels.join(","),
                    det_threshold: o.det_threshold,
                    box_threshold: o.box_threshold,
                    unclip_ratio: o.unclip_ratio,
                    min_text_score: o.min_text_score,
                    servers,
                    server_timeout_ms: o.server_timeout_ms.max(1),
                })
            }
        };
        let inspection = match &self.inspection {
            None => None,
            Some(ins) => {
                let rules = normalize(&base.join(&ins.rules));
                vigil_core::inspect::Rules::load(&rules)
                    .map_err(|e| invalid("inspection.rules", one_line(&e.to_string())))?;
                let snapshots = match &ins.snapshots {
                    None => None,
                    Some(d) => {
                        let d = normalize(&base.join(d));
                        std::fs::create_dir_all(&d).map_err(|e| {
                            invalid(
                                "inspection.snapshots",
                                format!("cannot create {}: {e}", d.display()),
                            )
                        })?;
                        Some(d)
                    }
                };
                Some(InspectionPlan { rules, snapshots })
            }
        };

        // Outputs.
        let rtsp = match &self.outputs.rtsp {
            None => None,
            Some(r) => {
                if r.address.trim().is_empty() {
                    return Err(invalid("outputs.rtsp.address", "must not be empty".into()));
                }
                if r.bitrate_kbps == 0 {
                    return Err(invalid(
                        "outputs.rtsp.bitrate_kbps",
                        "must be at least 1".into(),
                    ));
                }
                let mount = r.mount.clone().unwrap_or_else(|| format!("/{}", self.name));
                if !mount.starts_with('/')
                    || mount.contains(char::is_whitespace)
                    || mount.contains(['?', '#'])
                {
                    return Err(invalid(
                        "outputs.rtsp.mount",
                        format!("'{mount}' must start with '/' and be a plain path"),
                    ));
                }
                let mount = if mount.len() > 1 {
                    mount.trim_end_matches('/').to_string()
                } else {
                    mount
                };
                let base_mount = mount.clone();
                let mounts = if sources.len() == 1 {
                    vec![mount]
                } else {
                    let sep = if mount.ends_with('/') { "" } else { "/" };
                    sources
                        .iter()
                        .map(|s| format!("{mount}{sep}{}", s.name))
                        .collect()
                };
                let auth = match &r.auth {
                    None => None,
                    Some(a) => {
                        if a.user.is_empty() || a.user.contains(':') {
                            return Err(invalid(
                                "outputs.rtsp.auth.user",
                                "must be non-empty and without ':'".into(),
                            ));
                        }
                        Some((a.user.clone(), a.password.clone()))
                    }
                };
                let mosaic = match &self.outputs.mosaic {
                    None => None,
                    Some(m) => {
                        let mount = m
                            .mount
                            .clone()
                            .unwrap_or_else(|| format!("/{}-mosaic", self.name));
                        if !mount.starts_with('/')
                            || mount.len() < 2
                            || mount.contains(char::is_whitespace)
                            || mount.contains(['?', '#'])
                        {
                            return Err(invalid(
                                "outputs.mosaic.mount",
                                format!("'{mount}' must start with '/' and be a plain path"),
                            ));
                        }
                        let mount = mount.trim_end_matches('/').to_string();
                        if mounts.contains(&mount) {
                            return Err(invalid(
                                "outputs.mosaic.mount",
                                format!("'{mount}' is already a source's mount"),
                            ));
                        }
                        for (key, v, hi) in [("width", m.width, 7680), ("height", m.height, 4320)] {
                            if !(16..=hi).contains(&v) || v % 2 != 0 {
                                return Err(invalid(
                                    &format!("outputs.mosaic.{key}"),
                                    format!("{v} is not an even number in 16..={hi}"),
                                ));
                            }
                        }
                        if !(1..=60).contains(&m.fps) {
                            return Err(invalid(
                                "outputs.mosaic.fps",
                                format!("{} is not in 1..=60", m.fps),
                            ));
                        }
                        let n = sources.len() as u32;
                        if let Some(t) = m.tiles
                            && !(n..=64.max(n)).contains(&t)
                        {
                            return Err(invalid(
                                "outputs.mosaic.tiles",
                                format!("{t} is not in {n}..=64 (at least one tile per source)"),
                            ));
                        }
                        let n = m.tiles.unwrap_or(n);
                        let columns = match m.columns {
                            Columns::Auto => (1..=n).find(|c| c * c >= n).unwrap_or(1),
                            Columns::Fixed(0) => {
                                return Err(invalid(
                                    "outputs.mosaic.columns",
                                    "must be at least 1 (or auto)".into(),
                                ));
                            }
                            Columns::Fixed(c) => c.min(n),
                        };
                        let rows = n.div_ceil(columns);
                        Some(MosaicPlan {
                            mount,
                            width: m.width,
                            height: m.height,
                            columns,
                            rows,
                            fps: m.fps,
                        })
                    }
                };
                Some(RtspPlan {
                    address: r.address.trim().to_string(),
                    port: r.port,
                    mounts,
                    base_mount,
                    bitrate_kbps: r.bitrate_kbps,
                    encoder: r.encoder,
                    auth,
                    mosaic,
                })
            }
        };
        if self.outputs.mosaic.is_some() && rtsp.is_none() {
            return Err(invalid(
                "outputs.mosaic",
                "needs outputs.rtsp (the mosaic is served by the RTSP server)".into(),
            ));
        }
        let files = match &self.outputs.file {
            None => None,
            Some(f) => {
                if f.bitrate_kbps == 0 {
                    return Err(invalid(
                        "outputs.file.bitrate_kbps",
                        "must be at least 1".into(),
                    ));
                }
                let p = normalize(&base.join(&f.path));
                if p.file_name().is_none() || p.is_dir() {
                    return Err(invalid(
                        "outputs.file.path",
                        format!("{} is not a file path", p.display()),
                    ));
                }
                let paths: Vec<PathBuf> = if sources.len() == 1 {
                    vec![p]
                } else {
                    let stem = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_default();
                    let ext = p
                        .extension()
                        .map(|e| e.to_string_lossy().to_string())
                        .unwrap_or_else(|| "mp4".into());
                    sources
                        .iter()
                        .map(|s| p.with_file_name(format!("{stem}-{}.{ext}", s.name)))
                        .collect()
                };
                for q in &paths {
                    check_writable(q).map_err(|m| invalid("outputs.file.path", m))?;
                }
                Some(paths)
            }
        };
        let events = match &self.outputs.events {
            None => None,
            Some(e) if e.path.trim() == "-" => Some(EventsTarget::Stdout),
            Some(e) => {
                if e.path.trim().is_empty() {
                    return Err(invalid(
                        "outputs.events.path",
                        "must not be empty (use \"-\" for standard output)".into(),
                    ));
                }
                let p = normalize(&base.join(&e.path));
                if p.is_dir() {
                    return Err(invalid(
                        "outputs.events.path",
                        format!("{} is a folder", p.display()),
                    ));
                }
                check_writable(&p).map_err(|m| invalid("outputs.events.path", m))?;
                Some(EventsTarget::File(p))
            }
        };
        if let (Some(files), Some(EventsTarget::File(ev))) = (&files, &events)
            && files.contains(ev)
        {
            return Err(invalid(
                "outputs.events.path",
                "is the same file as outputs.file.path".into(),
            ));
        }
        let mqtt = match &self.outputs.mqtt {
            None => None,
            Some(m) => Some(check_mqtt(m, &self.name, &base).map_err(|(k, e)| invalid(&k, e))?),
        };
        let sources_len = sources.len();
        let realtime = self.realtime.unwrap_or(rtsp.is_some());
        let api = match &self.api {
            None => None,
            Some(a) => {
                let addr = crate::api::bind_address(&a.address, a.port)
                    .map_err(|e| invalid("api.address", one_line(&e.to_string())))?;
                let token = a.token.clone().filter(|t| !t.is_empty());
                if !addr.ip().is_loopback() && token.is_none() {
                    return Err(invalid(
                        "api.token",
                        format!(
                            "required when the API listens on {} (not a loopback address)",
                            addr.ip()
                        ),
                    ));
                }
                Some((addr, token))
            }
        };
        Ok(Plan {
            file,
            config: self.clone(),
            sources,
            model,
            ocr,
            inspection,
            secondary,
            blur,
            rtsp,
            files,
            events,
            mqtt,
            realtime,
            api,
            base,
            shard: Shard::WHOLE,
            fleet_sources: sources_len,
        })
    }
}

/// Validates `outputs.mqtt`; errors are (key path, message).
fn check_mqtt(m: &MqttOutputConfig, name: &str, base: &Path) -> Result<MqttPlan, (String, String)> {
    let key = |k: &str| format!("outputs.mqtt.{k}");
    if m.host.trim().is_empty() {
        return Err((key("host"), "must not be empty".into()));
    }
    if m.port == 0 {
        return Err((key("port"), "must be 1..=65535".into()));
    }
    // `{shard}` is this process's shard index ([`Plan::for_shard`]); 0 for an unsplit fleet.
    vigil_publish::TopicTemplate::parse(&m.topic.replace(SHARD_PLACEHOLDER, "0"))
        .map_err(|e| (key("topic"), e))?;
    if m.qos > 2 {
        return Err((key("qos"), format!("{} is not 0, 1 or 2", m.qos)));
    }
    if m.buffer == 0 {
        return Err((key("buffer"), "must be at least 1".into()));
    }
    if vigil_publish::DropPolicy::parse(&m.drop).is_none() {
        return Err((key("drop"), format!("'{}' is not oldest or newest", m.drop)));
    }
    let messages = m.messages.join(",");
    vigil_core::events::MessageSelection::parse(&messages).map_err(|e| (key("messages"), e))?;
    if m.password.is_some() && m.username.is_none() {
        return Err((key("password"), "needs outputs.mqtt.username".into()));
    }
    let client_id = m
        .client_id
        .clone()
        .unwrap_or_else(|| format!("vigil-{name}-{{source}}"));
    if client_id.trim().is_empty() {
        return Err((key("client_id"), "must not be empty".into()));
    }
    let tls = match &m.tls {
        None => None,
        Some(t) => {
            let abs = |p: &Option<PathBuf>| p.as_ref().map(|p| normalize(&base.join(p)));
            let files = vigil_publish::TlsFiles {
                ca: abs(&t.ca),
                cert: abs(&t.cert),
                key: abs(&t.key),
            };
            // Reads and checks every file now, so that a bad one is a config error.
            vigil_publish::mqtt::tls_config(&files).map_err(|e| {
                let k = match &e {
                    vigil_publish::PublishError::TlsFile { what: "CA", .. } => "tls.ca",
                    vigil_publish::PublishError::TlsFile {
                        what: "client certificate",
                        ..
                    } => "tls.cert",
                    vigil_publish::PublishError::TlsFile { .. } => "tls.key",
                    _ => "tls",
                };
                (key(k), one_line(&e.to_string()))
            })?;
            Some(files)
        }
    };
    Ok(MqttPlan {
        host: m.host.trim().to_string(),
        port: m.port,
        topic: m.topic.replace(SHARD_PLACEHOLDER, "0"),
        topic_template: m.topic.clone(),
        qos: m.qos,
        client_id: client_id.replace(SHARD_PLACEHOLDER, "0"),
        client_id_template: client_id,
        username: m.username.clone(),
        password: m.password.clone(),
        tls,
        keep_alive_s: m.keep_alive_s,
        buffer: m.buffer,
        drop: m.drop.clone(),
        messages,
        flush_timeout_ms: m.flush_timeout_ms,
    })
}

/// Converts a serde_norway error into a one-line [`ConfigError::Parse`] with the location up front.
fn parse_error(file: &str, e: &serde_norway::Error) -> ConfigError {
    let mut message = e.to_string();
    let (line, column) = match e.location() {
        Some(loc) => {
            let needle = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(pos) = message.find(&needle) {
                message.replace_range(pos..pos + needle.len(), "");
            }
            (Some(loc.line()), Some(loc.column()))
        }
        None => (None, None),
    };
    ConfigError::Parse {
        file: file.to_string(),
        line,
        column,
        message: one_line(&message),
    }
}

/// Checks a source's analytics rules (see `AnalyticsConfig::validate`) and that their labels are
/// classes of the model; errors are `(key below `analytics`, starting with '.' or empty, message)`.
fn check_analytics(
    a: &vigil_core::analytics::AnalyticsConfig,
    labels: &[String],
) -> Result<(), (String, String)> {
    if a.is_empty() {
        return Err((
            String::new(),
            "no lines, no zones and no calibration".into(),
        ));
    }
    a.validate()
        .map_err(|e| (format!(".{}", e.key), e.message))?;
    let rules = a
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| (format!(".lines[{i}].labels"), &l.labels))
        .chain(
            a.zones
                .iter()
                .enumerate()
                .map(|(i, z)| (format!(".zones[{i}].labels"), &z.labels)),
        );
    for (key, list) in rules {
        for (j, l) in list.iter().enumerate() {
            if !labels.is_empty() && !labels.iter().any(|m| m == l) {
                return Err((
                    format!("{key}[{j}]"),
                    format!("unknown label '{l}' (not a class of the model)"),
                ));
            }
        }
    }
    Ok(())
}

/// [`locate_key`], or the line of the nearest enclosing key that can be found (list items written in
/// flow style cannot be located by indentation).
fn locate_key_or_parent(text: &str, key: &str) -> Option<usize> {
    let mut k = key;
    loop {
        if let Some(line) = locate_key(text, k) {
            return Some(line);
        }
        let cut = k.rfind(['.', '['])?;
        k = &k[..cut];
    }
}

/// Longest name of a pipeline or source (it becomes part of file names and RTSP mounts).
pub const MAX_NAME_LEN: usize = 64;

/// Checks a pipeline or source name: 1 to [`MAX_NAME_LEN`] letters, digits, `-`, `_`, `.`, not only
/// dots (`.` and `..` would climb out of an RTSP mount or a folder).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "'{}' contains '{}'; use letters, digits, '-', '_' and '.'",
            name.escape_debug(),
            c.escape_debug()
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "'{name}' is {} characters long, more than {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.chars().all(|c| c == '.') {
        return Err(format!("'{name}' is only dots, a path step, not a name"));
    }
    Ok(())
}

fn unit_range(v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{v} is not in 0..1"))
    }
}

/// Checks that `path` can be written: its folder is created if needed; an existing file is opened for
/// appending (not truncated), a new one is created and removed again.
fn check_writable(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create folder {}: {e}", dir.display()))?;
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The most `sources[i].latency_ms` may be (10 s). The pipeline's latency is its live sources'
/// largest and every synchronised output of every stream waits for it, so a bigger jitter buffer on
/// one camera would hold all the others back by as much.
pub const MAX_LATENCY_MS: u32 = 10_000;

/// Checks `latency_ms` and `reconnect` of a source; errors are `(key below the source, message)`.
fn check_source_timing(s: &SourceConfig) -> Result<(), (&'static str, String)> {
    if let Some(q) = s.live_queue
        && !(1..=MAX_LIVE_QUEUE).contains(&q)
    {
        return Err(("live_queue", format!("{q} is not in 1..={MAX_LIVE_QUEUE}")));
    }
    if let Some(l) = s.latency_ms
        && l > MAX_LATENCY_MS
    {
        return Err((
            "latency_ms",
            format!(
                "{l} is more than {MAX_LATENCY_MS} (10 s): the pipeline's latency is its sources' \
                 largest, and every stream's outputs would wait that long"
            ),
        ));
    }
    if let Some(r) = &s.reconnect {
        if r.interval_ms == Some(0) {
            return Err(("reconnect.interval_ms", "must be at least 1".into()));
        }
        if let (Some(a), Some(b)) = (r.interval_ms, r.max_interval_ms)
            && b < a
        {
            return Err((
                "reconnect.max_interval_ms",
                format!("{b} is less than interval_ms {a}"),
            ));
        }
        if r.attempts.is_some_and(|a| a < -1) {
            return Err((
                "reconnect.attempts",
                "must be -1 (forever), 0 or more".into(),
            ));
        }
    }
    Ok(())
}

/// Resolves a source's `uri` or `images`; errors are `(key below sources[i], message)`.
fn resolve_source(base: &Path, s: &SourceConfig) -> Result<SourcePlan, (String, String)> {
    if let Some(im) = &s.images {
        if !s.uri.trim().is_empty() {
            return Err((
                "images".into(),
                "give either uri or images, not both".into(),
            ));
        }
        let images = resolve_images(base, im).map_err(|(k, m)| (format!("images.{k}"), m))?;
        return Ok(SourcePlan {
            name: s.name.clone(),
            uri: images.location.clone(),
            path: None,
            problem: None,
            images: Some(images),
        });
    }
    resolve_uri(base, s).map_err(|m| ("uri".to_string(), m))
}

fn resolve_images(base: &Path, im: &ImagesConfig) -> Result<ImagesPlan, (&'static str, String)> {
    use vigil_core::items::{Location, SizeLimits, SortOrder};
    if im.path.trim().is_empty() {
        return Err(("path", "must not be empty".into()));
    }
    let location = normalize(&base.join(im.path.trim()));
    let text = location.to_string_lossy().to_string();
    let loc = Location::parse(&text).map_err(|e| ("path", e.to_string()))?;
    if im.fps.is_some_and(|f| !(1..=1000).contains(&f)) {
        return Err((
            "fps",
            format!(
                "{} is not in 1..=1000 (leave it out for as fast as possible)",
                im.fps.unwrap_or_default()
            ),
        ));
    }
    if im.poll_interval_ms < 10 {
        return Err(("poll_interval_ms", "must be at least 10".into()));
    }
    if !(1..=65535).contains(&im.max_size) {
        return Err(("max_size", format!("{} is not in 1..=65535", im.max_size)));
    }
    if im.min_size == 0 || im.min_size > im.max_size {
        return Err((
            "min_size",
            format!("{} is not in 1..=max_size ({})", im.min_size, im.max_size),
        ));
    }
    let sort = match im.sort {
        ImageSort::Name => SortOrder::Name,
        ImageSort::Mtime => SortOrder::Mtime,
    };
    let output = match im.output {
        Some(o) => {
            for (k, v) in [("output.width", o.width), ("output.height", o.height)] {
                if !(16..=8192).contains(&v) || v % 2 != 0 {
                    return Err((k, format!("{v} is not an even number in 16..=8192")));
                }
            }
            (o.width, o.height)
        }
        None => {
            let limits = SizeLimits {
                min_size: im.min_size,
                max_size: im.max_size,
            };
            let entries = loc.list(sort).map_err(|e| ("path", e.to_string()))?;
            vigil_core::items::first_size(&entries, limits)
                .map(|(w, h)| ((w + 1) & !1, (h + 1) & !1))
                .unwrap_or((640, 480))
        }
    };
    Ok(ImagesPlan {
        location: text,
        watch: im.watch,
        poll_interval_ms: im.poll_interval_ms,
        looping: im.looping,
        fps: im.fps.unwrap_or(0),
        sort: match im.sort {
            ImageSort::Name => "name",
            ImageSort::Mtime => "mtime",
        },
        min_size: im.min_size,
        max_size: im.max_size,
        output,
    })
}

fn resolve_uri(base: &Path, s: &SourceConfig) -> Result<SourcePlan, String> {
    let uri = s.uri.trim();
    if uri.is_empty() {
        return Err("required (a file, URI or image sequence), or give images instead".into());
    }
    match uri_scheme(uri) {
        Some(sc) if sc.eq_ignore_ascii_case("file") => {
            let path = file_uri_to_path(uri).ok_or_else(|| format!("invalid file URI '{uri}'"))?;
            check_media_file(&path)?;
            Ok(SourcePlan {
                name: s.name.clone(),
                uri: uri.to_string(),
                path: Some(path),
                problem: None,
                images: None,
            })
        }
        Some(_) => Ok(SourcePlan {
            name: s.name.clone(),
            uri: uri.to_string(),
            path: None,
            problem: None,
            images: None,
        }),
        None => {
            let path = normalize(&base.join(uri));
            // An image sequence (`frames/img_%05d.jpg`): its folder must exist; `vigilsrc` reports a
            // pattern that matches no file.
            if let Some(text) = path.to_str()
                && gstvigil::source::sequence::SeqPattern::parse(text).is_some()
            {
                let dir = path.parent().unwrap_or(Path::new("/"));
                if !dir.is_dir() {
                    return Err(format!(
                        "no folder {} for the image sequence {}",
                        dir.display(),
                        path.display()
                    ));
                }
                return Ok(SourcePlan {
                    name: s.name.clone(),
                    uri: text.to_string(),
                    path: Some(path.clone()),
                    problem: None,
                    images: None,
                });
            }
            check_media_file(&path)?;
            let uri = path_to_file_uri(&path);
            Ok(SourcePlan {
                name: s.name.clone(),
                uri,
                path: Some(path),
                problem: None,
                images: None,
            })
        }
    }
}

fn check_media_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("no such file {}", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(m) if m.is_dir() => Err(format!("{} is a folder, not a media file", path.display())),
        // Opening a FIFO blocks until a writer comes; a device never ends.
        Ok(m) if !m.is_file() => Err(format!(
            "{} is not a regular file (a FIFO, socket or device)",
            path.display()
        )),
        Ok(_) => std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
    }
}

/// The scheme of a source's `uri` (`rtsp` of `rtsp://…`): letters, digits, `+`, `-` and `.` before
/// `://`; `None` for a path.
pub fn uri_scheme(uri: &str) -> Option<&str> {
    uri.find("://").map(|i| &uri[..i]).filter(|sc| {
        !sc.is_empty()
            && sc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// `file:///a%20b` → `/a b`.
pub fn file_uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = &uri[uri.find("://")? + 3..];
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// `/a b` → `file:///a%20b` (RFC 3986 unreserved characters and `/` are kept).
pub fn path_to_file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut s = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Makes `p` absolute (against the current folder) without touching the file system.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        normalize(p)
    } else {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        normalize(&cwd.join(p))
    }
}

/// Lexically removes `.` and `..` components.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod locate_tests {
    use super::locate_key;

    #[test]
    fn finds_nested_keys_and_list_items() {
        let text = "# c\nname: x\nsources:\n  - name: a\n    uri: a.avi\n  - name: b\n    uri: b.avi\ninference:\n  model: m\noutputs:\n  rtsp:\n    port: 70000\n";
        assert_eq!(locate_key(text, "name"), Some(2));
        assert_eq!(locate_key(text, "sources[0].uri"), Some(5));
        assert_eq!(locate_key(text, "sources[1].uri"), Some(7));
        assert_eq!(locate_key(text, "sources[1].name"), Some(6));
        assert_eq!(locate_key(text, "inference.model"), Some(9));
        assert_eq!(locate_key(text, "outputs.rtsp.port"), Some(12));
        assert_eq!(locate_key(text, "outputs.file.path"), None);
        assert_eq!(locate_key(text, "sources[2].uri"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: t\nmodel_repository: models\nsources:\n  - name: a\n    uri: rtsp://x/y\ninference:\n  model: m\n";

    #[test]
    fn parses_minimal_config_with_defaults() {
        let c = Config::parse(MINIMAL, "x.yaml").unwrap();
        assert_eq!(c.name, "t");
        assert_eq!(c.inference.as_ref().unwrap().threshold, 0.4);
        assert_eq!(c.inference.as_ref().unwrap().interval, 1);
        assert!(c.overlay.enabled && c.overlay.track_ids);
        assert_eq!(c.tracker.kind, TrackerKind::Iou);
        assert!(c.outputs.rtsp.is_none() && c.realtime.is_none());
    }

    #[test]
    fn latency_above_ten_seconds_is_refused_naming_the_key() {
        let source = |latency| {
            let mut c = Config::parse(MINIMAL, "x.yaml").unwrap();
            c.sources[0].latency_ms = latency;
            c.sources.remove(0)
        };
        assert!(check_source_timing(&source(None)).is_ok());
        assert!(check_source_timing(&source(Some(MAX_LATENCY_MS))).is_ok());
        let (key, m) = check_source_timing(&source(Some(u32::MAX))).unwrap_err();
        assert_eq!(key, "latency_ms");
        assert!(m.starts_with("4294967295 is more than 10000 (10 s)"), "{m}");
    }

    #[test]
    fn parses_every_tracker_kind_and_its_keys() {
        for kind in ["iou", "sort", "bytetrack", "ocsort"] {
            let text = format!(
                "{MINIMAL}tracker:\n  kind: {kind}\n  track_thresh: 0.6\n  low_thresh: 0.2\n  \
                 new_track_thresh: 0.7\n  track_buffer: 50\n  min_hits: 2\n  match_class: false\n"
            );
            let c = Config::parse(&text, "x.yaml").unwrap();
            assert_eq!(c.tracker.kind.as_str(), kind);
            assert_eq!(c.tracker.track_buffer, 50);
            assert_eq!(c.tracker.min_hits, 2);
            assert!(!c.tracker.match_class);
            assert_eq!(
                (
                    c.tracker.track_thresh,
                    c.tracker.low_thresh,
                    c.tracker.new_track_thresh
                ),
                (0.6, 0.2, 0.7)
            );
        }
        let c = Config::parse(MINIMAL, "x.yaml").unwrap();
        assert_eq!(c.tracker.min_hits, 0, "the algorithm's default");
        assert_eq!(c.tracker.track_buffer, 30);
        let e = Config::parse(&format!("{MINIMAL}tracker: {{kind: deepsort}}\n"), "x.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("deepsort") && e.contains("bytetrack"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = MINIMAL.replace("  model: m\n", "  model: m\n  thresold: 0.3\n");
        let e = Config::parse(&text, "configs/x.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("configs/x.yaml: line 8 column 3: "), "{e}");
        assert!(e.contains("thresold"), "{e}");
        assert!(e.contains("inference"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn syntax_error_is_one_line_with_location() {
        let e = Config::parse("name: [a\nsources: {\n", "bad.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.yaml: line "), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn wrong_type_names_key() {
        let text = MINIMAL.replace("  model: m\n", "  model: m\n  interval: often\n");
        let e = Config::parse(&text, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("line 8") && e.contains("interval"), "{e}");
    }

    #[test]
    fn file_output_encoder_parses_and_defaults_to_auto() {
        let text = format!("{MINIMAL}outputs:\n  file: {{ path: out.mp4, encoder: x264 }}\n");
        let c = Config::parse(&text, "x.yaml").unwrap();
        assert_eq!(
            c.outputs.file.as_ref().unwrap().encoder,
            EncoderChoice::X264
        );
        let text = format!("{MINIMAL}outputs:\n  file: {{ path: out.mp4 }}\n");
        let c = Config::parse(&text, "x.yaml").unwrap();
        assert_eq!(
            c.outputs.file.as_ref().unwrap().encoder,
            EncoderChoice::Auto
        );
        let text = format!("{MINIMAL}outputs:\n  file: {{ path: out.mp4, encoder: vaapi }}\n");
        let e = Config::parse(&text, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("vaapi") || e.contains("encoder"), "{e}");
    }

    #[test]
    fn source_options_mosaic_encoder_and_auth_parse() {
        let text = "name: t\nmodel_repository: models\nsources:\n  - name: a\n    uri: rtsp://x/y\n    loop: true\n    decoder: cpu\n    drop_frame_interval: 2\n    rtsp_transport: tcp\n    latency_ms: 300\n    reconnect: { interval_ms: 500, max_interval_ms: 8000, attempts: -1 }\ninference:\n  model: m\noutputs:\n  rtsp: { encoder: nvh264enc, auth: { user: u, password: p } }\n  mosaic: { width: 640, height: 360, columns: 3 }\n";
        let c = Config::parse(text, "x.yaml").unwrap();
        let s = &c.sources[0];
        assert!(s.looping);
        assert_eq!(s.decoder, DecoderPolicy::Cpu);
        assert_eq!(s.drop_frame_interval, Some(2));
        assert_eq!(s.rtsp_transport, RtspTransport::Tcp);
        assert_eq!(s.latency_ms, Some(300));
        assert_eq!(s.reconnect.as_ref().unwrap().attempts, Some(-1));
        let r = c.outputs.rtsp.as_ref().unwrap();
        assert_eq!(r.encoder, EncoderChoice::Nvh264enc);
        assert_eq!(r.auth.as_ref().unwrap().user, "u");
        let m = c.outputs.mosaic.as_ref().unwrap();
        assert_eq!(
            (m.width, m.height, m.columns, m.fps),
            (640, 360, Columns::Fixed(3), 25)
        );
        let auto = text.replace("columns: 3", "columns: auto");
        let c = Config::parse(&auto, "x.yaml").unwrap();
        assert_eq!(c.outputs.mosaic.unwrap().columns, Columns::Auto);
        let bad = text.replace("columns: 3", "columns: many");
        assert!(Config::parse(&bad, "x.yaml").is_err());
        let bad = text.replace("decoder: cpu", "decoder: fpga");
        let e = Config::parse(&bad, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("decoder") || e.contains("fpga"), "{e}");
        let bad = text.replace("attempts: -1", "attempts: 3, tries: 2");
        assert!(Config::parse(&bad, "x.yaml").is_err());
    }

    #[test]
    fn inference_preprocess_values_and_errors() {
        let c = Config::parse(MINIMAL, "x.yaml").unwrap();
        assert_eq!(c.inference.unwrap().preprocess, PreprocessPolicy::Auto);
        for (text, want) in [
            ("gpu", PreprocessPolicy::Gpu),
            ("cpu", PreprocessPolicy::Cpu),
            ("auto", PreprocessPolicy::Auto),
        ] {
            let yaml = MINIMAL.replace(
                "  model: m\n",
                &format!("  model: m\n  preprocess: {text}\n"),
            );
            let c = Config::parse(&yaml, "x.yaml").unwrap();
            assert_eq!(c.inference.unwrap().preprocess, want);
            assert_eq!(want.as_str(), text);
        }
        let yaml = MINIMAL.replace("  model: m\n", "  model: m\n  preprocess: fpga\n");
        let e = Config::parse(&yaml, "x.yaml").unwrap_err().to_string();
        assert!(
            e.contains("x.yaml") && e.contains("inference.preprocess") && e.contains("fpga"),
            "{e}"
        );
    }

    #[test]
    fn classes_accept_labels_and_ids() {
        let text = MINIMAL.replace("  model: m\n", "  model: m\n  classes: [person, 2]\n");
        let c = Config::parse(&text, "x.yaml").unwrap();
        assert_eq!(
            c.inference.unwrap().classes.unwrap(),
            vec![ClassName("person".into()), ClassName("2".into())]
        );
    }

    #[test]
    fn image_sources_are_validated_with_key_and_line() {
        let dir = std::env::temp_dir().join(format!("vigil-config-images-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("items")).unwrap();
        let cfg = dir.join("c.yaml");
        let with = |images: &str| {
            let text = MINIMAL.replace("    uri: rtsp://x/y\n", images);
            std::fs::write(&cfg, &text).unwrap();
            Config::load_and_validate(&cfg).unwrap_err().to_string()
        };
        let e = with("    images:\n      path: nowhere/*.png\n");
        assert_eq!(
            e,
            format!(
                "{}: line 6: sources[0].images.path: no such folder {}",
                cfg.display(),
                dir.join("nowhere").display()
            )
        );
        let e = with("    uri: a.avi\n    images:\n      path: items\n");
        assert!(
            e.ends_with("line 6: sources[0].images: give either uri or images, not both"),
            "{e}"
        );
        let e = with("    images:\n      path: items\n      fps: 0\n");
        assert!(
            e.contains("line 7: sources[0].images.fps: 0 is not in 1..=1000"),
            "{e}"
        );
        let e = with("    images:\n      path: items\n      output: {width: 101, height: 80}\n");
        assert!(
            e.contains("sources[0].images.output.width: 101 is not an even number"),
            "{e}"
        );
        let e = with("    images:\n      path: items\n      sort: size\n");
        assert!(
            e.contains("line 7") && e.contains("unknown variant `size`"),
            "{e}"
        );
        let e = with("    images: {path: items, min_size: 100, max_size: 50}\n");
        assert!(
            e.contains("sources[0].images.min_size: 100 is not in 1..=max_size (50)"),
            "{e}"
        );
        // A good image section passes the sources (and fails later, at the model repository).
        let e = with("    images:\n      path: items\n      watch: true\n");
        assert!(e.contains("model_repository"), "{e}");
        let c = Config::parse(
            &MINIMAL.replace(
                "    uri: rtsp://x/y\n",
                "    images: {path: items, loop: true, fps: 5, sort: mtime, output: {width: 640, height: 480}}\n",
            ),
            "x.yaml",
        )
        .unwrap();
        let plan = resolve_source(&dir, &c.sources[0]).unwrap();
        let im = plan.images.unwrap();
        assert_eq!(
            (
                im.looping,
                im.fps,
                im.sort,
                im.output,
                im.min_size,
                im.max_size
            ),
            (true, 5, "mtime", (640, 480), 16, 8192)
        );
        assert_eq!(im.location, dir.join("items").display().to_string());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_media_file_names_key_and_absolute_path() {
        let dir = std::env::temp_dir().join(format!("vigil-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("c.yaml");
        let text = MINIMAL.replace("rtsp://x/y", "../nowhere/v.avi");
        std::fs::write(&cfg, &text).unwrap();
        let e = Config::load_and_validate(&cfg).unwrap_err().to_string();
        let expected = normalize(&dir.join("../nowhere/v.avi"));
        assert_eq!(
            e,
            format!(
                "{}: line 5: sources[0].uri: no such file {}",
                cfg.display(),
                expected.display()
            )
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn analytics_keys_parse_and_errors_name_key_and_line() {
        let text = MINIMAL.replace(
                "    uri: rtsp://x/y\n",
                "    uri: rtsp://x/y\n    analytics:\n      anchor: center\n      lines:\n        - name: a\n          points: [[10, 0], [10, 100]]\n          labels: [person]\n          in_direction: right\n        - name: b\n          points: [[5, 5], [5, 5]]\n      zones:\n        - {name: z, polygon: [[0, 0], [1, 0], [1, 1]], labels: [persn], overcrowded_above: 2}\n",
        );
        let c = Config::parse(&text, "x.yaml").unwrap();
        let a = c.sources[0].analytics.as_ref().unwrap();
        assert_eq!(a.anchor, Some(vigil_core::analytics::Anchor::Center));
        assert_eq!(a.lines.len(), 2);
        assert_eq!(a.zones[0].overcrowded_above, Some(2));
        let labels = vec!["person".to_string(), "car".to_string()];
        let (key, message) = check_analytics(a, &labels).unwrap_err();
        assert_eq!(key, ".lines[1].points");
        assert!(message.contains("the two points are the same"), "{message}");
        let full = format!("sources[0].analytics{key}");
        assert_eq!(locate_key_or_parent(&text, &full), Some(14));
        let mut fixed = a.clone();
        fixed.lines.pop();
        let (key, message) = check_analytics(&fixed, &labels).unwrap_err();
        assert_eq!(key, ".zones[0].labels[0]");
        assert_eq!(message, "unknown label 'persn' (not a class of the model)");
        // Flow style: the zone item is found, not its label list.
        let full = format!("sources[0].analytics{key}");
        assert_eq!(locate_key_or_parent(&text, &full), Some(16));
        fixed.zones[0].labels = vec!["person".into()];
        check_analytics(&fixed, &labels).unwrap();
        fixed.lines.clear();
        fixed.zones.clear();
        assert_eq!(check_analytics(&fixed, &labels).unwrap_err().0, "");
        // Unknown keys and wrong shapes are parse errors with a line.
        let bad = text.replace("in_direction: right", "in_dir: right");
        let e = Config::parse(&bad, "x.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with("x.yaml: line 12 column") && e.contains("in_dir"),
            "{e}"
        );
        let bad = text.replace("anchor: center", "anchor: feet");
        let e = Config::parse(&bad, "x.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with("x.yaml: line 7 column") && e.contains("feet"),
            "{e}"
        );
    }

    #[test]
    fn calibration_and_speed_errors_name_key_and_line() {
        let text = MINIMAL.replace(
            "    uri: rtsp://x/y\n",
            "    uri: rtsp://x/y\n    analytics:\n      calibration:\n        image: [[0, 0], [100, 0], [200, 0], [0, 100]]\n        width: 3.5\n        length: 20\n      speed: { unit: m/s, limit: 15 }\n",
        );
        let c = Config::parse(&text, "x.yaml").unwrap();
        let a = c.sources[0].analytics.as_ref().unwrap();
        assert_eq!(
            a.speed.as_ref().unwrap().unit,
            vigil_core::objects::SpeedUnit::Mps
        );
        let labels = vec!["person".to_string()];
        let (key, message) = check_analytics(a, &labels).unwrap_err();
        assert_eq!(key, ".calibration.image");
        assert!(
            message.starts_with("points 1, 2 and 3 are on one line"),
            "{message}"
        );
        let full = format!("sources[0].analytics{key}");
        assert_eq!(locate_key_or_parent(&text, &full), Some(8));
        let fixed = text.replace("[200, 0]", "[100, 100]");
        let c = Config::parse(&fixed, "x.yaml").unwrap();
        check_analytics(c.sources[0].analytics.as_ref().unwrap(), &labels).unwrap();
        // Units are spelled as in the events.
        let bad = fixed.replace("unit: m/s", "unit: kph");
        let e = Config::parse(&bad, "x.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with("x.yaml: line 11 column") && e.contains("kph"),
            "{e}"
        );
    }

    #[test]
    fn uri_helpers() {
        assert_eq!(
            path_to_file_uri(Path::new("/a b/c.avi")),
            "file:///a%20b/c.avi"
        );
        assert_eq!(
            file_uri_to_path("file:///a%20b/c.avi").unwrap(),
            PathBuf::from("/a b/c.avi")
        );
        assert_eq!(
            normalize(Path::new("/x/configs/../samples/./v.avi")),
            PathBuf::from("/x/samples/v.avi")
        );
        assert_eq!(one_line("a\nb\r\n\nc"), "a; b; c");
    }

    /// A config in a temporary folder using the repository's models and bus.jpg; `None` when the
    /// models are not installed.
    fn secondary_config(name: &str, body: &str) -> Option<(PathBuf, Result<Plan, ConfigError>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let models = normalize(&absolute(&root.join("models")));
        if !models.join("centerface/1/model.onnx").exists()
            || !models.join("nanodet/1/model.onnx").exists()
        {
            return None;
        }
        let media = normalize(&absolute(&root.join("samples/media/bus.jpg")));
        let dir = std::env::temp_dir().join(format!("vigil-sec-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("c.yaml");
        let text = format!(
            "name: t\nmodel_repository: {}\nsources:\n  - name: a\n    uri: {}\ninference:\n  model: nanodet\n{body}",
            models.display(),
            media.display()
        );
        std::fs::write(&cfg, text).unwrap();
        let r = Config::load_and_validate(&cfg);
        std::fs::remove_dir_all(&dir).ok();
        Some((cfg, r))
    }

    /// An OCR-only inspection config in a temporary folder (rules written beside it); `None` when
    /// the PP-OCR models are not installed.
    fn inspection_config(
        name: &str,
        body: &str,
        rules: &str,
    ) -> Option<(PathBuf, Result<Plan, ConfigError>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let models = normalize(&absolute(&root.join("models")));
        if ["ppocr_det", "ppocr_cls", "ppocr_rec"]
            .iter()
            .any(|m| !models.join(m).join("1/model.onnx").exists())
        {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("vigil-insp-{name}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("items")).unwrap();
        std::fs::write(dir.join("rules.yaml"), rules).unwrap();
        let cfg = dir.join("c.yaml");
        let text = format!(
            "name: t\nmodel_repository: {}\nsources:\n  - name: a\n    images:\n      path: items\n{body}",
            models.display(),
        );
        std::fs::write(&cfg, text).unwrap();
        let r = Config::load_and_validate(&cfg);
        std::fs::remove_dir_all(&dir).ok();
        Some((cfg, r))
    }

    #[test]
    fn ocr_and_inspection_without_inference_are_validated() {
        let rules = "fields:\n  - {name: lot, pattern: 'LOT (\\w+)'}\nrules:\n  - {name: lot-present, field: lot, present: true}\n";
        let good = "ocr:\n  cls_model: null\n  min_text_score: 0.6\ninspection:\n  rules: rules.yaml\n  snapshots: fail\n";
        let Some((cfg, plan)) = inspection_config("good", good, rules) else {
            return;
        };
        let plan = plan.unwrap();
        assert!(plan.model.is_none());
        let o = plan.ocr.as_ref().unwrap();
        assert_eq!(
            (
                o.det_model.as_str(),
                o.cls_model.as_str(),
                o.rec_model.as_str()
            ),
            ("ppocr_det", "", "ppocr_rec")
        );
        assert_eq!((o.min_text_score, o.det_threshold), (0.6, 0.3));
        let i = plan.inspection.as_ref().unwrap();
        assert_eq!(i.rules, cfg.parent().unwrap().join("rules.yaml"));
        assert_eq!(i.snapshots, Some(cfg.parent().unwrap().join("fail")));
        // inspection alone runs the OCR with its defaults.
        let (_, plan) =
            inspection_config("alone", "inspection:\n  rules: rules.yaml\n", rules).unwrap();
        assert_eq!(plan.unwrap().ocr.unwrap().cls_model, "ppocr_cls");

        let err = |name: &str, body: &str, rules: &str| {
            let (cfg, r) = inspection_config(name, body, rules).unwrap();
            let e = r.unwrap_err().to_string();
            assert!(e.starts_with(&cfg.display().to_string()), "{e}");
            e
        };
        let e = err("none", "", rules);
        assert!(
            e.contains("inference: required unless ocr or inspection"),
            "{e}"
        );
        let e = err(
            "model",
            &good.replace("min_text_score: 0.6", "rec_model: nope"),
            rules,
        );
        assert!(e.contains("line 9: ocr.rec_model: "), "{e}");
        let e = err("range", &good.replace("0.6", "1.5"), rules);
        assert!(e.contains("line 9: ocr.min_text_score: "), "{e}");
        let e = err(
            "operate",
            &good.replace("min_text_score: 0.6", "operate_on: [label]"),
            rules,
        );
        assert!(
            e.contains("ocr.operate_on[0]: 'label' is not a label"),
            "{e}"
        );
        // A rules error names the config key and the rules file, its key and line.
        let e = err("rules", good, &rules.replace("field: lot", "field: lott"));
        assert!(e.contains("line 11: inspection.rules: "), "{e}");
        assert!(e.contains("rules.yaml: line 4: rules[0].field: "), "{e}");
        let e = err("missing", &good.replace("rules.yaml", "nope.yaml"), rules);
        assert!(
            e.contains("inspection.rules: ") && e.contains("nope.yaml"),
            "{e}"
        );
    }

    #[test]
    fn secondary_models_and_blur_are_validated() {
        let good = "secondary:\n  - model: centerface\n    operate_on: [person]\n    min_size: 40\noverlay:\n  blur: [face]\n";
        let Some((_, plan)) = secondary_config("good", good) else {
            return;
        };
        let plan = plan.unwrap();
        assert_eq!(plan.secondary.len(), 1);
        let s = &plan.secondary[0];
        assert_eq!(s.model.name, "centerface");
        assert_eq!(s.model.labels, vec!["face"]);
        assert_eq!((s.operate_on.as_str(), s.min_size), ("person", 40));
        assert_eq!((s.threshold, s.nms_iou, s.max_detections), (0.5, 0.3, 10));
        assert_eq!(plan.blur, "face");

        let err = |name: &str, body: &str| {
            let (cfg, r) = secondary_config(name, body).unwrap();
            let e = r.unwrap_err().to_string();
            assert!(e.starts_with(&cfg.display().to_string()), "{e}");
            e
        };
        let e = err("label", &good.replace("[person]", "[person, persn]"));
        assert!(
            e.contains("line 10: secondary[0].operate_on[1]: 'persn' is not a label"),
            "{e}"
        );
        let e = err("blur", &good.replace("[face]", "[nose]"));
        assert!(e.contains("line 13: overlay.blur[0]: 'nose'"), "{e}");
        let e = err("model", &good.replace("centerface", "facefinder"));
        assert!(e.contains("line 9: secondary[0].model: "), "{e}");
        let e = err("range", &good.replace("min_size: 40", "crop_expand: 1.5"));
        assert!(e.contains("secondary[0].crop_expand: "), "{e}");
        let e = err(
            "disabled",
            &good.replace("  blur:", "  enabled: false\n  blur:"),
        );
        assert!(
            e.contains("overlay.blur: blurring is done by the overlay"),
            "{e}"
        );
        let e = err("key", &good.replace("min_size", "min_sise"));
        assert!(e.contains("unknown field `min_sise`"), "{e}");
        // Faces as parents only after the model that makes them.
        let e = err("order", &good.replace("[person]", "[face]"));
        assert!(e.contains("secondary[0].operate_on[0]: 'face'"), "{e}");
    }

    #[test]
    fn mqtt_output_parses_with_defaults_and_checks_values() {
        let text = format!("{MINIMAL}outputs:\n  mqtt: {{ port: 1884 }}\n");
        let c = Config::parse(&text, "x.yaml").unwrap();
        let m = c.outputs.mqtt.clone().unwrap();
        let plan = check_mqtt(&m, "t", Path::new("/")).unwrap();
        assert_eq!(
            (plan.host.as_str(), plan.port, plan.qos),
            ("127.0.0.1", 1884, 1)
        );
        assert_eq!(plan.topic, "vigil/{source}/{kind}");
        assert_eq!(plan.messages, "analytics");
        assert_eq!((plan.buffer, plan.drop.as_str()), (1000, "oldest"));
        assert_eq!(plan.client_id("cam"), "vigil-t-cam");
        assert!(plan.tls.is_none());

        let with = |extra: &str| {
            let text = format!("{MINIMAL}outputs:\n  mqtt: {{ {extra} }}\n");
            let c = Config::parse(&text, "x.yaml").unwrap();
            check_mqtt(
                c.outputs.mqtt.as_ref().unwrap(),
                "t",
                Path::new("/nonexistent"),
            )
        };
        let p = with("client_id: gate, messages: [frames, objects, analytics]").unwrap();
        assert_eq!(p.client_id("cam"), "gate-cam");
        assert_eq!(p.messages, "frames,objects,analytics");
        let p = with("client_id: \"x-{source}-y\"").unwrap();
        assert_eq!(p.client_id("cam"), "x-cam-y");
        for (extra, key) in [
            ("topic: \"a/#\"", "outputs.mqtt.topic"),
            ("qos: 3", "outputs.mqtt.qos"),
            ("buffer: 0", "outputs.mqtt.buffer"),
            ("drop: middle", "outputs.mqtt.drop"),
            ("messages: []", "outputs.mqtt.messages"),
            ("password: p", "outputs.mqtt.password"),
            ("host: \" \"", "outputs.mqtt.host"),
            ("tls: { ca: ca.pem }", "outputs.mqtt.tls.ca"),
            ("tls: { cert: c.pem }", "outputs.mqtt.tls"),
        ] {
            let (k, m) = with(extra).unwrap_err();
            assert_eq!(k, key, "{extra}: {m}");
        }
        let (_, m) = with("tls: { ca: ca.pem }").unwrap_err();
        assert!(m.contains("/nonexistent/ca.pem"), "{m}");
        let e = Config::parse(
            &format!("{MINIMAL}outputs:\n  mqtt:\n    prot: 1\n"),
            "x.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown field `prot`") && e.contains("line 10"),
            "{e}"
        );
    }
}
