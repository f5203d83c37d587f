use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use vigil_core::backoff::{Backoff, BackoffPolicy};
use vigil_core::timestamps::{TimestampRepair, live_offset, shifted, signed};

use super::sequence::{
    SeqPattern, first_index_by_probing, frame_time, indices_in, is_still_image_path, printf_escape,
    sequence_run, uri_sequence_pattern,
};
use super::{DecoderPolicy, RtspTransport};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigilsrc",
        gst::DebugColorFlags::empty(),
        Some("Vigil source bin"),
    )
});

/// Frames the queue holds for sources that are not live (a thread boundary, not a buffer).
const NON_LIVE_QUEUE_BUFFERS: u32 = 4;
/// Name of the element message announcing state changes.
pub const STATE_MESSAGE: &str = "vigilsrc-state";
/// Whether the "no NVDEC decoder" warning was issued in this process, for `decoder=gpu` and
/// `decoder=auto` (each is issued once per process, not once per source or stream).
static NVDEC_ABSENT_WARNED_GPU: AtomicBool = AtomicBool::new(false);
static NVDEC_ABSENT_WARNED_AUTO: AtomicBool = AtomicBool::new(false);
/// Bytes of an image's beginning that are typefound.
const TYPEFIND_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone)]
struct Settings {
    uri: Option<String>,
    looping: bool,
    decoder: DecoderPolicy,
    drop_frame_interval: u32,
    rtsp_transport: RtspTransport,
    latency: u32,
    reconnect_interval: u32,
    reconnect_max_interval: u32,
    reconnect_attempts: i32,
    live_queue_size: u32,
    data_timeout: u32,
    image_framerate: gst::Fraction,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            uri: None,
            looping: false,
            decoder: DecoderPolicy::Auto,
            drop_frame_interval: 0,
            rtsp_transport: RtspTransport::Auto,
            latency: super::DEFAULT_LATENCY_MS,
            reconnect_interval: 1000,
            reconnect_max_interval: 30_000,
            reconnect_attempts: -1,
            live_queue_size: 2,
            data_timeout: 10_000,
            image_framerate: gst::Fraction::new(25, 1),
        }
    }
}

/// What the source is doing, as shown by the `state` property and `vigilsrc-state` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceState {
    Connecting,
    Connected,
    Reconnecting,
    Failed,
    Eos,
}

impl SourceState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Failed => "failed",
            Self::Eos => "eos",
        }
    }
}

/// Turns a `uri` property value into a URI: URIs are kept, paths become `file://` URIs.
fn to_uri(value: &str) -> Result<String, String> {
    if glib::uri_parse_scheme(value).is_some() && value.contains("://") {
        return Ok(value.to_string());
    }
    let abs = std::path::absolute(value).map_err(|e| format!("path '{value}': {e}"))?;
    glib::filename_to_uri(&abs, None)
        .map(|u| u.to_string())
        .map_err(|e| format!("path '{}': {e}", abs.display()))
}

fn is_network(uri: &str) -> bool {
    let l = uri.to_ascii_lowercase();
    !(l.starts_with("file:") || l.starts_with("multifile:"))
}

/// The `multifile://` URI of a `multifilesrc` location.
fn multifile_uri(location: &str) -> String {
    match glib::filename_to_uri(location, None) {
        Ok(file_uri) => format!("multi{file_uri}"),
        Err(_) => format!("multifile://{location}"),
    }
}

/// The media type of an image file (typefound from its beginning) with the framerate, as
/// `multifilesrc` announces it: `image/jpeg, framerate=25/1`.
fn image_caps(path: &std::path::Path, fps: gst::Fraction) -> Result<gst::Caps, String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TYPEFIND_BYTES).read_to_end(&mut head))
        .map_err(|e| e.to_string())?;
    let (caps, _) = gst_base::functions::type_find_helper_for_data(None::<&gst::Object>, &head)
        .map_err(|_| "unknown file type".to_string())?;
    let name = caps.structure(0).map(|s| s.name().to_string());
    match name {
        Some(n) if n.starts_with("image/") => Ok(gst::Caps::builder(n.as_str())
            .field("framerate", fps)
            .build()),
        _ => Err(format!("not an image ({caps})")),
    }
}

fn is_live_scheme(uri: &str) -> bool {
    let l = uri.to_ascii_lowercase();
    [
        "rtsp", "rtsps", "rtspt", "rtspu", "udp", "srt", "rtmp", "rtp",
    ]
    .iter()
    .any(|s| l.starts_with(&format!("{s}:")))
}

/// Hardware decoders: NVDEC (`nv*dec`) and the other hardware APIs GStreamer wraps.
fn is_hardware_decoder(f: &gst::ElementFactory) -> bool {
    if !f.has_type(gst::ElementFactoryType::DECODER) {
        return false;
    }
    let klass = f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or("");
    let name = f.name();
    klass.contains("Hardware")
        || [
            "nv", "va", "vaapi", "msdk", "qsv", "v4l2", "omx", "d3d11", "d3d12", "vtdec", "amf",
        ]
        .iter()
        .any(|p| name.starts_with(p))
}

fn is_nvdec(f: &gst::ElementFactory) -> bool {
    f.has_type(gst::ElementFactoryType::DECODER) && f.name().starts_with("nv")
}

/// Whether `uridecodebin` should keep autoplugging below a pad with these caps: streams that are not
/// video are exposed as they are (not decoded) and end in a `fakesink`.
fn wants_decoding(caps: &gst::CapsRef) -> bool {
    let Some(s) = caps.structure(0) else {
        return true;
    };
    let name = s.name();
    if name.starts_with("audio/")
        || name.starts_with("text/")
        || name.starts_with("subpicture/")
        || name.starts_with("subtitle/")
        || name.starts_with("application/x-subtitle")
        || name == "application/x-ssa"
        || name == "application/x-ass"
    {
        return false;
    }
    if name == "application/x-rtp" {
        return s.get::<&str>("media").map_or(true, |m| m == "video");
    }
    true
}

/// What `multifilesrc` reads for an image sequence or a still image.
#[derive(Debug, Clone)]
struct ImageSource {
    /// `multifilesrc`'s `location`: a `sprintf` pattern (a still image: its path with `%` doubled).
    location: String,
    start_index: i32,
    /// A still image's index; -1 for a sequence, which ends at its first missing file.
    stop_index: i32,
    /// The first image's media type with the framerate (`image/png, framerate=25/1`).
    caps: gst::Caps,
    /// The `multifile://` URI that `uridecodebin` opens.
    uri: String,
}

/// Timestamps and frame size of an image sequence or still image.
#[derive(Debug)]
struct ImageFlow {
    fps_n: i32,
    fps_d: i32,
    /// Frames decoded since the start (their PTS is `frames / framerate`).
    frames: u64,
    /// The capsfilter that keeps every frame at the first image's size and format.
    filter: gst::Element,
    size_fixed: bool,
}

/// The stream's running-time bookkeeping between the inner decoder and the queue.
#[derive(Debug, Default)]
struct Flow {
    /// The upstream segment buffers are in.
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// Added to running times (ns) so that they continue across reconnections and loops: a file's
    /// loop goes on after its last frame; a live source's frames leave at the pipeline's running
    /// time (never more than `LIVE_AHEAD_NS` ahead of the clock, checked on every frame, so that no
    /// synchronised sink holds the stream, and never before the previous frame):
    /// [`live_offset`].
    offset: i64,
    /// Set when a new source (or a loop restart) begins: the next buffer chooses `offset` again.
    rebase: bool,
    /// End (ns) of the last buffer in output running time.
    last_end: Option<u64>,
    stream_started: bool,
    segment_sent: bool,
    /// Buffers seen since start (for `drop-frame-interval`).
    index: u64,
    drop_flush_start: bool,
    drop_flush_stop: bool,
    /// When the last buffer came from the decoder.
    last_frame: Option<Instant>,
    /// Set for image sequences and still images: buffers are stamped at `image-framerate`.
    image: Option<ImageFlow>,
    /// Every decoded frame leaves with a PTS after the previous one and a duration.
    stamps: TimestampRepair,
}

/// What [`VigilSrc::stamp_buffer`] made of a decoded frame.
enum Stamped {
    /// Before the first time segment: the buffer passes as it is.
    Unsegmented,
    /// Outside the segment (clipped by a seek): dropped.
    Clipped,
    Frame {
        stamp: vigil_core::timestamps::Stamp,
        /// The frame's own DTS in output running time.
        dts: Option<gst::ClockTime>,
        /// `drop-frame-interval` keeps it.
        keep: bool,
    },
}

enum Cmd {
    Reconnect(Duration),
    Loop,
    Stop,
}

struct Worker {
    tx: mpsc::Sender<Cmd>,
    handle: std::thread::JoinHandle<()>,
}

/// The `uridecodebin` of one (re)connection.
struct Current {
    decodebin: gst::Element,
    generation: u64,
    fakesinks: Vec<gst::Element>,
    video_linked: bool,
    stream_types: Vec<String>,
}

struct Runtime {
    uri: String,
    network: bool,
    live: bool,
    running: bool,
    current: Option<Current>,
    generation: u64,
    backoff: Backoff,
    reconnect_pending: bool,
    failed: bool,
    worker: Option<Worker>,
    last_reason: String,
    /// When the current `uridecodebin` was created.
    built_at: Instant,
    /// Set when the URI is an image sequence or a still image.
    image: Option<ImageSource>,
    /// Between the decoder and the queue: `videoconvert ! videoscale ! capsfilter` for images,
    /// `deinterlace ! videoflip` for video.
    chain: Vec<gst::Element>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            uri: String::new(),
            network: false,
            live: false,
            running: false,
            current: None,
            generation: 0,
            backoff: Backoff::new(BackoffPolicy::default()),
            reconnect_pending: false,
            failed: false,
            worker: None,
            last_reason: String::new(),
            built_at: Instant::now(),
            image: None,
            chain: Vec::new(),
        }
    }
}

pub struct VigilSrc {
    settings: Mutex<Settings>,
    runtime: Mutex<Runtime>,
    flow: Mutex<Flow>,
    state: Mutex<SourceState>,
    /// True until the current `uridecodebin` delivers its first frame.
    awaiting_first: AtomicBool,
    reconnects: AtomicU64,
    frames_out: AtomicU64,
    frames_dropped: AtomicU64,
    queue: gst::Element,
    srcpad: gst::GhostPad,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[glib::object_subclass]
impl ObjectSubclass for VigilSrc {
    const NAME: &'static str = "GstVigilSrc";
    type Type = super::VigilSrc;
    type ParentType = gst::Bin;

    fn with_class(klass: &Self::Class) -> Self {
        let queue = gst::ElementFactory::make("queue")
            .name("queue")
            .build()
            .expect("the queue element (GStreamer core) exists");
        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::GhostPad::builder_from_template(&templ)
            .name("src")
            .build();
        Self {
            settings: Mutex::new(Settings::default()),
            runtime: Mutex::new(Runtime::default()),
            flow: Mutex::new(Flow::default()),
            state: Mutex::new(SourceState::Connecting),
            awaiting_first: AtomicBool::new(true),
            reconnects: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            queue,
            srcpad,
        }
    }
}

impl ObjectImpl for VigilSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("uri")
                    .nick("URI")
                    .blurb("Source URI (file://, rtsp://, http(s)://) or file path (made a file:// URI); a path with a printf-style number (/data/img_%05d.jpg) is an image sequence")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("loop")
                    .nick("Loop")
                    .blurb("Restart a file or image sequence at its end; timestamps keep increasing")
                    .default_value(d.looping)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("decoder", d.decoder)
                    .nick("Decoder")
                    .blurb("Decoder policy: auto (NVDEC when available, else software), gpu (NVDEC, warn and fall back), cpu (software only)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("drop-frame-interval")
                    .nick("Drop frame interval")
                    .blurb("Output every Nth decoded frame only (0 or 1 = every frame)")
                    .default_value(d.drop_frame_interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("rtsp-transport", d.rtsp_transport)
                    .nick("RTSP transport")
                    .blurb("Lower transport for rtsp:// URIs: tcp, udp or auto (rtspsrc's default)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb("Jitter buffer latency of RTSP sources, in milliseconds")
                    .default_value(d.latency)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("reconnect-interval")
                    .nick("Reconnect interval")
                    .blurb("Delay before the first reconnection attempt of a network source, in milliseconds; doubles after each failure")
                    .minimum(1)
                    .default_value(d.reconnect_interval)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("reconnect-max-interval")
                    .nick("Reconnect maximum interval")
                    .blurb("Largest delay between reconnection attempts, in milliseconds")
                    .minimum(1)
                    .default_value(d.reconnect_max_interval)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("reconnect-attempts")
                    .nick("Reconnect attempts")
                    .blurb("Reconnection attempts of a network source before it fails (-1 = forever, 0 = never)")
                    .minimum(-1)
                    .default_value(d.reconnect_attempts)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("live-queue-size")
                    .nick("Live queue size")
                    .blurb("Frames queued for a live source before the oldest are dropped (counted in frames-dropped)")
                    .minimum(1)
                    .default_value(d.live_queue_size)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("data-timeout")
                    .nick("Data timeout")
                    .blurb("Milliseconds without a frame (the first one, or any while playing a live source) after which a network source reconnects and a file fails; 0 = never")
                    .default_value(d.data_timeout)
                    .mutable_ready()
                    .build(),
                gst::ParamSpecFraction::builder("image-framerate")
                    .nick("Image framerate")
                    .blurb("Frames per second of image sequences and still images: their timestamps and caps framerate")
                    .minimum(gst::Fraction::new(1, i32::MAX))
                    .maximum(gst::Fraction::new(i32::MAX, 1))
                    .default_value(d.image_framerate)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("state")
                    .nick("State")
                    .blurb("Source state: connecting, connected, reconnecting, failed or eos")
                    .default_value(Some(SourceState::Connecting.as_str()))
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("reconnects")
                    .nick("Reconnects")
                    .blurb("Successful reconnections (a rebuilt source delivered a frame)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-out")
                    .nick("Frames out")
                    .blurb("Frames pushed out of the source pad")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-dropped")
                    .nick("Frames dropped")
                    .blurb("Frames of a live source dropped because downstream was slower than the source")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("timestamps-repaired")
                    .nick("Timestamps repaired")
                    .blurb("Frames the decoder handed out without a timestamp, or not after the previous frame, that the source stamped itself (previous time + one frame interval)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "uri" => {
                let v = value.get::<Option<String>>().ok().flatten();
                s.uri = match v.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(v) => match to_uri(v) {
                        Ok(u) => Some(u),
                        Err(e) => {
                            gst::error!(CAT, imp = self, "uri: {e}");
                            Some(v.to_string())
                        }
                    },
                };
            }
            "loop" => s.looping = value.get().unwrap_or_default(),
            "decoder" => s.decoder = value.get().unwrap_or_default(),
            "drop-frame-interval" => s.drop_frame_interval = value.get().unwrap_or_default(),
            "rtsp-transport" => s.rtsp_transport = value.get().unwrap_or_default(),
            "latency" => s.latency = value.get().unwrap_or(super::DEFAULT_LATENCY_MS),
            "reconnect-interval" => s.reconnect_interval = value.get().unwrap_or(1000),
            "reconnect-max-interval" => s.reconnect_max_interval = value.get().unwrap_or(30_000),
            "reconnect-attempts" => s.reconnect_attempts = value.get().unwrap_or(-1),
            "live-queue-size" => s.live_queue_size = value.get().unwrap_or(2),
            "data-timeout" => s.data_timeout = value.get().unwrap_or(10_000),
            "image-framerate" => {
                s.image_framerate = value
                    .get()
                    .unwrap_or_else(|_| Settings::default().image_framerate)
            }
            other => gst::warning!(CAT, imp = self, "property {other} is not writable"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "uri" => lock(&self.settings).uri.to_value(),
            "loop" => lock(&self.settings).looping.to_value(),
            "decoder" => lock(&self.settings).decoder.to_value(),
            "drop-frame-interval" => lock(&self.settings).drop_frame_interval.to_value(),
            "rtsp-transport" => lock(&self.settings).rtsp_transport.to_value(),
            "latency" => lock(&self.settings).latency.to_value(),
            "reconnect-interval" => lock(&self.settings).reconnect_interval.to_value(),
            "reconnect-max-interval" => lock(&self.settings).reconnect_max_interval.to_value(),
            "reconnect-attempts" => lock(&self.settings).reconnect_attempts.to_value(),
            "live-queue-size" => lock(&self.settings).live_queue_size.to_value(),
            "data-timeout" => lock(&self.settings).data_timeout.to_value(),
            "image-framerate" => lock(&self.settings).image_framerate.to_value(),
            "state" => lock(&self.state).as_str().to_value(),
            "reconnects" => self.reconnects.load(Ordering::Relaxed).to_value(),
            "frames-out" => self.frames_out.load(Ordering::Relaxed).to_value(),
            "frames-dropped" => self.frames_dropped.load(Ordering::Relaxed).to_value(),
            "timestamps-repaired" => lock(&self.flow).stamps.repaired().to_value(),
            other => {
                gst::warning!(CAT, imp = self, "unknown property {other}");
                pspec.default_value().clone()
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add(&self.queue)
            .expect("queue is added to an empty bin");
        let qsrc = self.queue.static_pad("src").expect("queue has a src pad");
        self.srcpad
            .set_target(Some(&qsrc))
            .expect("ghost pad targets the queue");
        obj.add_pad(&self.srcpad)
            .expect("the src pad is added once");

        let weak = obj.downgrade();
        qsrc.add_probe(gst::PadProbeType::BUFFER, move |_pad, _info| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().frames_out.fetch_add(1, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
        let weak = obj.downgrade();
        self.queue.connect("overrun", false, move |_| {
            if let Some(obj) = weak.upgrade() {
                let imp = obj.imp();
                if lock(&imp.runtime).live {
                    imp.frames_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None
        });
    }
}

impl GstObjectImpl for VigilSrc {}

impl ElementImpl for VigilSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil source",
                "Source/Video/Bin",
                "Decodes a file, image sequence, RTSP or HTTP URI into raw video; reconnects network sources with backoff, loops files, drops frames",
                "The Vigil developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder_full()
                .structure(gst::Structure::new_empty("video/x-raw"))
                .structure_with_any_features(gst::Structure::new_empty("video/x-raw"))
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("src template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => {
                if let Err(msg) = self.start() {
                    self.post_error_message(msg);
                    self.stop_worker();
                    self.teardown_all();
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => self.stop_worker(),
            gst::StateChange::PausedToPlaying => lock(&self.flow).last_frame = Some(Instant::now()),
            _ => {}
        }
        let ret = self.parent_change_state(transition);
        match transition {
            gst::StateChange::ReadyToPaused if ret.is_err() => {
                self.stop_worker();
                self.teardown_all();
            }
            gst::StateChange::PausedToReady => self.teardown_all(),
            _ => {}
        }
        ret
    }
}

impl BinImpl for VigilSrc {
    fn handle_message(&self, msg: gst::Message) {
        use gst::MessageView;
        let origin = self.origin(msg.src());
        match msg.view() {
            MessageView::Error(e) => match origin {
                Origin::Stale => {
                    gst::debug!(CAT, imp = self, "error of a replaced source: {}", e.error());
                }
                Origin::Current(_) => {
                    let reason = match e.debug() {
                        Some(d) => format!("{} ({d})", e.error()),
                        None => e.error().to_string(),
                    };
                    let network = lock(&self.runtime).network;
                    if network {
                        self.schedule_reconnect(&reason, Some((e.error(), e.debug())));
                    } else {
                        self.fail(&e.error(), e.debug().map(|d| d.to_string()));
                    }
                }
                Origin::Other => self.parent_handle_message(msg),
            },
            MessageView::Warning(_) if origin == Origin::Stale => {}
            MessageView::AsyncStart(_) | MessageView::AsyncDone(_)
                if origin == Origin::Stale || matches!(origin, Origin::Current(g) if g > 0) =>
            {
                // A rebuilt source changes state on its own: the pipeline must not lose its state.
                gst::debug!(
                    CAT,
                    imp = self,
                    "keeping {:?} of a rebuilt source",
                    msg.type_()
                );
            }
            MessageView::Element(e)
                if matches!(origin, Origin::Current(_))
                    && e.structure()
                        .is_some_and(|s| s.name() == "GstRTSPSrcTimeout") =>
            {
                self.parent_handle_message(msg.clone());
                self.schedule_reconnect("no data from the RTSP server (timeout)", None);
            }
            _ => self.parent_handle_message(msg),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The current `uridecodebin` (its generation) or one of its descendants.
    Current(u64),
    /// A `uridecodebin` that was replaced, or anything inside it.
    Stale,
    /// The queue, a fakesink or the bin itself.
    Other,
}

impl VigilSrc {
    fn origin(&self, src: Option<&gst::Object>) -> Origin {
        let Some(src) = src else {
            return Origin::Other;
        };
        let rt = lock(&self.runtime);
        if let Some(cur) = &rt.current
            && (src == cur.decodebin.upcast_ref::<gst::Object>()
                || src.has_as_ancestor(&cur.decodebin))
        {
            return Origin::Current(cur.generation);
        }
        drop(rt);
        // Anything that is no longer inside this bin, or inside a uridecodebin that is not current.
        let obj = self.obj();
        if src == obj.upcast_ref::<gst::Object>() {
            return Origin::Other;
        }
        if !src.has_as_ancestor(&*obj) {
            return Origin::Stale;
        }
        let mut p = Some(src.clone());
        while let Some(o) = p {
            if o.downcast_ref::<gst::Element>()
                .and_then(|e| e.factory())
                .is_some_and(|f| f.name() == "uridecodebin")
            {
                return Origin::Stale;
            }
            p = o.parent();
        }
        Origin::Other
    }

    fn set_state(&self, state: SourceState, attempt: u32, reason: &str) {
        {
            let mut s = lock(&self.state);
            let changed = *s != state;
            *s = state;
            if !changed && state != SourceState::Reconnecting {
                return;
            }
        }
        self.post_state(state, attempt, reason);
    }

    /// Logs a state and posts it as a `vigilsrc-state` element message.
    fn post_state(&self, state: SourceState, attempt: u32, reason: &str) {
        let uri = self.uri();
        match state {
            SourceState::Reconnecting | SourceState::Failed => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "{uri}: {} (attempt {attempt}): {reason}",
                    state.as_str()
                )
            }
            _ => gst::info!(CAT, imp = self, "{uri}: {}", state.as_str()),
        }
        let s = gst::Structure::builder(STATE_MESSAGE)
            .field("state", state.as_str())
            .field("uri", uri.as_str())
            .field("attempt", attempt)
            .field("reason", reason)
            .build();
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    /// Prepares a run: URI, queue mode, worker thread, first `uridecodebin`.
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let Some(uri) = settings.uri.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ["vigilsrc: property 'uri' is not set"]
            ));
        };
        if glib::uri_parse_scheme(uri.as_str()).is_none() {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ["vigilsrc: '{}' is neither a URI nor a usable path", uri]
            ));
        }
        let network = is_network(&uri);
        let image = if network {
            None
        } else {
            self.local_source(&uri, settings.image_framerate)?
        };
        let live = is_live_scheme(&uri);
        self.configure_queue(live, settings.live_queue_size);
        *lock(&self.flow) = Flow::default();
        *lock(&self.state) = SourceState::Connecting;
        self.awaiting_first.store(true, Ordering::SeqCst);

        let (tx, rx) = mpsc::channel();
        let weak = self.obj().downgrade();
        let handle = std::thread::Builder::new()
            .name("vigilsrc-worker".into())
            .spawn(move || worker_loop(weak, rx))
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Failed,
                    ["vigilsrc: cannot start its worker thread: {}", e]
                )
            })?;
        {
            let mut rt = lock(&self.runtime);
            let mut policy = BackoffPolicy::from_millis(
                settings.reconnect_interval,
                settings.reconnect_max_interval,
                settings.reconnect_attempts,
            );
            policy.jitter = 0.0;
            *rt = Runtime {
                uri: uri.clone(),
                network,
                live,
                running: true,
                backoff: Backoff::new(policy),
                worker: Some(Worker { tx, handle }),
                image: image.clone(),
                ..Runtime::default()
            };
        }
        if image.is_none() {
            self.add_video_chain()?;
        } else {
            let filter = self.add_image_chain()?;
            let fps = settings.image_framerate;
            lock(&self.flow).image = Some(ImageFlow {
                fps_n: fps.numer(),
                fps_d: fps.denom(),
                frames: 0,
                filter,
                size_fixed: false,
            });
        }
        let decodebin = self.make_decodebin(&uri, 0, &settings)?;
        lock(&self.runtime).current = Some(Current {
            decodebin: decodebin.clone(),
            generation: 0,
            fakesinks: Vec::new(),
            video_linked: false,
            stream_types: Vec::new(),
        });
        self.obj()
            .add(&decodebin)
            .map_err(|e| gst::error_msg!(gst::CoreError::Failed, ["vigilsrc: {}", e]))?;
        self.post_state(SourceState::Connecting, 0, "");
        Ok(())
    }

    /// A file URI: `None` for a media file, or what `multifilesrc` reads for an image sequence (a
    /// printf-style pattern) or a still image. A missing file or a pattern matching no file is an error.
    fn local_source(
        &self,
        uri: &str,
        fps: gst::Fraction,
    ) -> Result<Option<ImageSource>, gst::ErrorMessage> {
        let decoded = glib::filename_from_uri(uri).map(|(p, _)| p);
        if let Ok(path) = &decoded
            && path.is_file()
        {
            // A still image is a sequence of one image; anything else goes to uridecodebin as it is.
            let Some(p) = path.to_str().filter(|_| is_still_image_path(path)) else {
                return Ok(None);
            };
            return Ok(match image_caps(path, fps) {
                Ok(caps) => Some(ImageSource {
                    location: printf_escape(p),
                    start_index: 0,
                    stop_index: 0,
                    caps,
                    uri: multifile_uri(&printf_escape(p)),
                }),
                Err(e) => {
                    gst::debug!(CAT, imp = self, "{}: not read as a still image: {e}", p);
                    None
                }
            });
        }
        if let Some(pattern) = uri_sequence_pattern(uri) {
            return self.sequence_source(uri, &pattern, fps).map(Some);
        }
        let path = decoded.map_err(|e| {
            gst::error_msg!(gst::ResourceError::NotFound, ["vigilsrc: {}: {}", uri, e])
        })?;
        Err(gst::error_msg!(
            gst::ResourceError::NotFound,
            [
                "vigilsrc: file '{}' does not exist or is not a file (uri {})",
                path.display(),
                uri
            ]
        ))
    }

    /// An image sequence: its first image (the lowest index in its folder, or 0 or 1 when the number
    /// is in a folder name) and its media type.
    fn sequence_source(
        &self,
        uri: &str,
        pattern: &SeqPattern,
        fps: gst::Fraction,
    ) -> Result<ImageSource, gst::ErrorMessage> {
        let location = pattern.printf();
        let run = match pattern.folder_and_name_prefix() {
            Some((folder, _)) => {
                let names: Vec<String> = std::fs::read_dir(folder)
                    .map(|dir| {
                        dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                let indices = indices_in(pattern, names.iter().map(String::as_str));
                sequence_run(&indices).map(|(first, last)| (first, Some(last)))
            }
            None => first_index_by_probing(pattern, |f| std::path::Path::new(f).is_file())
                .map(|first| (first, None)),
        };
        let Some((first, last)) = run else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                (
                    "vigilsrc: no file matches the image sequence pattern '{}'",
                    location
                ),
                ["uri {}", uri]
            ));
        };
        let first_file = pattern.expand(first);
        let caps = image_caps(std::path::Path::new(&first_file), fps).map_err(|e| {
            gst::error_msg!(
                gst::StreamError::WrongType,
                (
                    "vigilsrc: image sequence '{}': {}: {}",
                    location,
                    first_file,
                    e
                ),
                ["uri {}", uri]
            )
        })?;
        match last {
            Some(last) => gst::info!(
                CAT,
                imp = self,
                "image sequence {location}: {} images ({first} to {last}), {caps}",
                last - first + 1
            ),
            None => gst::info!(
                CAT,
                imp = self,
                "image sequence {location} from {first}, {caps}"
            ),
        }
        Ok(ImageSource {
            uri: multifile_uri(&location),
            location,
            start_index: first as i32,
            stop_index: -1,
            caps,
        })
    }

    /// `videoconvert ! videoscale ! capsfilter` linked to the queue; returns the capsfilter, which gets
    /// the first image's size and format.
    fn add_image_chain(&self) -> Result<gst::Element, gst::ErrorMessage> {
        let chain = ["videoconvert", "videoscale", "capsfilter"]
            .into_iter()
            .map(|f| make_element(f, "gst-plugins-base"))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = chain[2].clone();
        self.link_chain(chain)?;
        Ok(filter)
    }

    /// `deinterlace fields=top ! videoflip video-direction=auto` linked to the queue: interlaced
    /// frames are deinterlaced (one frame out per frame in, so frame counts stay the container's) and
    /// frames with an orientation tag (phones) are turned upright; both pass progressive, untagged
    /// frames through untouched.
    fn add_video_chain(&self) -> Result<(), gst::ErrorMessage> {
        let deinterlace = make_element("deinterlace", "gst-plugins-good")?;
        deinterlace.set_property_from_str("fields", "top");
        let flip = make_element("videoflip", "gst-plugins-good")?;
        flip.set_property_from_str("video-direction", "auto");
        self.link_chain(vec![deinterlace, flip])
    }

    /// Adds `chain` to the bin, links it and its last element to the queue.
    fn link_chain(&self, chain: Vec<gst::Element>) -> Result<(), gst::ErrorMessage> {
        let obj = self.obj();
        let linked = obj
            .add_many(&chain)
            .and_then(|_| gst::Element::link_many(&chain))
            .and_then(|_| chain[chain.len() - 1].link(&self.queue));
        lock(&self.runtime).chain = chain;
        linked.map_err(|e| gst::error_msg!(gst::CoreError::Failed, ["vigilsrc: {}", e]))
    }

    /// Where the decoder's video pad links: the first element of the chain, or the queue.
    fn link_target(&self) -> Option<gst::Pad> {
        let first = lock(&self.runtime).chain.first().cloned();
        match first {
            Some(e) => e.static_pad("sink"),
            None => self.queue.static_pad("sink"),
        }
    }

    fn configure_queue(&self, live: bool, live_size: u32) {
        let q = &self.queue;
        q.set_property("max-size-bytes", 0u32);
        q.set_property("max-size-time", 0u64);
        if live {
            q.set_property_from_str("leaky", "downstream");
            q.set_property("max-size-buffers", live_size.max(1));
        } else {
            q.set_property_from_str("leaky", "no");
            q.set_property("max-size-buffers", NON_LIVE_QUEUE_BUFFERS);
        }
    }

    fn stop_worker(&self) {
        let worker = {
            let mut rt = lock(&self.runtime);
            rt.running = false;
            rt.worker.take()
        };
        if let Some(w) = worker {
            let _ = w.tx.send(Cmd::Stop);
            if w.handle.thread().id() != std::thread::current().id() {
                let _ = w.handle.join();
            }
        }
    }

    /// Removes the current `uridecodebin` and its fakesinks from the bin.
    fn teardown_all(&self) {
        let cur = lock(&self.runtime).current.take();
        if let Some(cur) = cur {
            self.teardown(cur);
        }
        let chain = std::mem::take(&mut lock(&self.runtime).chain);
        let obj = self.obj();
        for e in chain {
            let _ = e.set_state(gst::State::Null);
            let _ = obj.remove(&e);
        }
    }

    fn teardown(&self, cur: Current) {
        let obj = self.obj();
        // Locked first: until it is out of this bin, a state change of the pipeline (PLAYING to
        // PAUSED at a stop, on another thread than a reconnection's) would bring the stopped source
        // back up to the bin's state, and it was then disposed in PAUSED (GStreamer-CRITICAL).
        cur.decodebin.set_locked_state(true);
        for f in &cur.fakesinks {
            f.set_locked_state(true);
        }
        // Every element of the old source, held until it is stopped: `uridecodebin` removes its
        // `rtspsrc` itself while stopping, and one that is still PAUSED then (its connection task
        // busy) was disposed so, aborting the process (GStreamer-CRITICAL, then g_mutex_clear on a
        // locked mutex).
        let held: Vec<gst::Element> = cur
            .decodebin
            .downcast_ref::<gst::Bin>()
            .map(|b| b.iterate_recurse().into_iter().flatten().collect())
            .unwrap_or_default();
        if let Err(e) = cur.decodebin.set_state(gst::State::Null) {
            gst::warning!(
                CAT,
                imp = self,
                "{}: cannot stop: {e}",
                cur.decodebin.name()
            );
        }
        stop_stragglers(&cur.decodebin);
        for e in held {
            stop_straggler(&e);
            if e.current_state() != gst::State::Null {
                // Disposing it now would abort the process: its last reference is kept instead.
                gst::warning!(
                    CAT,
                    imp = self,
                    "{}: still {:?} after it was stopped twice; it is kept",
                    e.path_string(),
                    e.current_state()
                );
                std::mem::forget(e);
            }
        }
        if let Some(sink) = self.link_target()
            && let Some(peer) = sink.peer()
        {
            let _ = peer.unlink(&sink);
        }
        let _ = obj.remove(&cur.decodebin);
        keep_unless_stopped(self, &cur.decodebin);
        for f in cur.fakesinks {
            let _ = f.set_state(gst::State::Null);
            let _ = obj.remove(&f);
            keep_unless_stopped(self, &f);
        }
    }

    fn make_decodebin(
        &self,
        uri: &str,
        generation: u64,
        settings: &Settings,
    ) -> Result<gst::Element, gst::ErrorMessage> {
        let image = lock(&self.runtime).image.clone();
        let db = gst::ElementFactory::make("uridecodebin")
            .name(format!("uridecodebin{generation}"))
            .property("uri", image.as_ref().map_or(uri, |i| i.uri.as_str()))
            .build()
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::MissingPlugin,
                    [
                        "vigilsrc: uridecodebin is missing (gst-plugins-base): {}",
                        e
                    ]
                )
            })?;

        if generation > 0 {
            // A rebuilt source joins a running pipeline: it completes its asynchronous state changes on
            // its own instead of making the pipeline lose its state.
            db.set_property("async-handling", true);
        }
        db.connect("autoplug-continue", false, |args| {
            let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
            Some(caps.is_none_or(|c| wants_decoding(&c)).to_value())
        });

        let weak = self.obj().downgrade();
        // Images are decoded in software (jpegdec, pngdec): the policy is about video decoders.
        let policy = if image.is_some() {
            DecoderPolicy::Cpu
        } else {
            settings.decoder
        };
        db.connect("autoplug-sort", false, move |args| {
            let none = glib::Value::from_type(glib::ValueArray::static_type());
            let Some(obj) = weak.upgrade() else {
                return Some(none);
            };
            let factories = args.get(3).and_then(|v| v.get::<glib::ValueArray>().ok());
            let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
            match factories {
                Some(f) => Some(
                    obj.imp()
                        .sort_decoders(policy, &f, caps.as_ref())
                        .map_or(none, |a| a.to_value()),
                ),
                None => Some(none),
            }
        });

        let weak = self.obj().downgrade();
        let (transport, latency, live_size, looping) = (
            settings.rtsp_transport,
            settings.latency,
            settings.live_queue_size,
            settings.looping,
        );
        db.connect("source-setup", false, move |args| {
            let (Some(obj), Some(source)) = (
                weak.upgrade(),
                args.get(1).and_then(|v| v.get::<gst::Element>().ok()),
            ) else {
                return None;
            };
            let imp = obj.imp();
            match &image {
                Some(image) => imp.setup_image_source(&source, image, looping),
                None => imp.setup_source(&source, transport, latency, live_size),
            }
            None
        });

        let weak = self.obj().downgrade();
        db.connect_pad_added(move |_db, pad| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().pad_added(generation, pad);
            }
        });
        let weak = self.obj().downgrade();
        db.connect_no_more_pads(move |_db| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().no_more_pads(generation);
            }
        });
        Ok(db)
    }

    /// `multifilesrc` of an image sequence or still image: first (and last) index, media type with the
    /// framerate (what the decoder stamps frames with), and looping: `multifilesrc` goes back to the first
    /// image itself, without an end of stream or a seek.
    fn setup_image_source(&self, source: &gst::Element, image: &ImageSource, looping: bool) {
        if source.factory().is_none_or(|f| f.name() != "multifilesrc") {
            gst::warning!(
                CAT,
                imp = self,
                "unexpected source {} for an image sequence",
                source.name()
            );
            return;
        }
        source.set_property("location", image.location.as_str());
        source.set_property("start-index", image.start_index);
        source.set_property("index", image.start_index);
        source.set_property("stop-index", image.stop_index);
        source.set_property("loop", looping);
        source.set_property("caps", &image.caps);
        gst::debug!(
            CAT,
            imp = self,
            "multifilesrc {} from {} ({})",
            image.location,
            image.start_index,
            image.caps
        );
    }

    fn setup_source(
        &self,
        source: &gst::Element,
        transport: RtspTransport,
        latency: u32,
        live_size: u32,
    ) {
        let is_rtsp = source.factory().is_some_and(|f| f.name() == "rtspsrc");
        if is_rtsp {
            source.set_property("latency", latency);
            match transport {
                RtspTransport::Tcp => source.set_property_from_str("protocols", "tcp"),
                RtspTransport::Udp => source.set_property_from_str("protocols", "udp+udp-mcast"),
                RtspTransport::Auto => {}
            }
        }
        let live = is_rtsp
            || (source.find_property("is-live").is_some() && source.property::<bool>("is-live"));
        let changed = {
            let mut rt = lock(&self.runtime);
            let changed = rt.live != live;
            rt.live = live;
            changed
        };
        if changed {
            self.configure_queue(live, live_size);
        }
        gst::debug!(CAT, imp = self, "source {} (live: {live})", source.name());
    }

    /// `autoplug-sort`: the candidate factories in the order the policy wants, or `None` to keep them.
    fn sort_decoders(
        &self,
        policy: DecoderPolicy,
        factories: &glib::ValueArray,
        caps: Option<&gst::Caps>,
    ) -> Option<glib::ValueArray> {
        let list: Vec<gst::ElementFactory> = factories
            .iter()
            .filter_map(|v| v.get::<gst::ElementFactory>().ok())
            .collect();
        let has_decoder = list
            .iter()
            .any(|f| f.has_type(gst::ElementFactoryType::DECODER));
        if !has_decoder {
            return None;
        }
        let sorted: Vec<gst::ElementFactory> = match policy {
            DecoderPolicy::Cpu => list
                .iter()
                .filter(|f| !is_hardware_decoder(f))
                .cloned()
                .collect(),
            DecoderPolicy::Auto | DecoderPolicy::Gpu => {
                let mut l = list.clone();
                l.sort_by_key(|f| !is_nvdec(f));
                l
            }
        };
        if policy != DecoderPolicy::Cpu && !list.iter().any(is_nvdec) {
            // Once per process and policy: without an NVIDIA driver GStreamer's nvcodec plugin
            // registers no decoder, and every stream of every source would say so again.
            let warned = match policy {
                DecoderPolicy::Gpu => &NVDEC_ABSENT_WARNED_GPU,
                _ => &NVDEC_ABSENT_WARNED_AUTO,
            };
            if !warned.swap(true, Ordering::SeqCst) {
                let nick = if policy == DecoderPolicy::Gpu {
                    "gpu"
                } else {
                    "auto"
                };
                let caps = caps.map(|c| c.to_string()).unwrap_or_default();
                let text = format!(
                    "decoder={nick}: no NVDEC decoder is available for this stream (GStreamer's \
                     nvcodec plugin registers nvh264dec/nvh265dec only with an NVIDIA driver); \
                     using a software decoder (warned once per process)"
                );
                gst::warning!(CAT, imp = self, "{text} ({caps})");
                let obj = self.obj();
                let _ = obj.post_message(
                    gst::message::Warning::builder(gst::CoreError::MissingPlugin, &text)
                        .src(&*obj)
                        .debug(&caps)
                        .build(),
                );
            }
        }
        gst::debug!(
            CAT,
            imp = self,
            "decoders ({policy:?}): {:?}",
            sorted.iter().map(|f| f.name()).collect::<Vec<_>>()
        );
        if sorted == list {
            return None;
        }
        Some(glib::ValueArray::new(sorted.iter()))
    }

    fn pad_added(&self, generation: u64, pad: &gst::Pad) {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let name = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        let link_video = {
            let mut rt = lock(&self.runtime);
            let Some(cur) = rt.current.as_mut().filter(|c| c.generation == generation) else {
                return;
            };
            cur.stream_types.push(name.clone());
            let video = name.starts_with("video/x-raw") && !cur.video_linked;
            if video {
                cur.video_linked = true;
            }
            video
        };
        if link_video {
            let Some(target) = self.link_target() else {
                return;
            };
            self.add_stream_probes(pad);
            if let Err(e) = pad.link(&target) {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    [
                        "vigilsrc: cannot link the video stream of {}: {:?}",
                        self.uri(),
                        e
                    ]
                );
            } else {
                gst::debug!(CAT, imp = self, "video stream {caps} linked");
            }
            return;
        }
        gst::debug!(CAT, imp = self, "stream {name} not used");
        let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
        else {
            return;
        };
        let obj = self.obj();
        if obj.add(&sink).is_err() {
            return;
        }
        let _ = sink.sync_state_with_parent();
        if let Some(sinkpad) = sink.static_pad("sink") {
            let _ = pad.link(&sinkpad);
        }
        let mut rt = lock(&self.runtime);
        match rt.current.as_mut().filter(|c| c.generation == generation) {
            Some(cur) => cur.fakesinks.push(sink),
            None => {
                drop(rt);
                let _ = sink.set_state(gst::State::Null);
                let _ = obj.remove(&sink);
            }
        }
    }

    /// The probes between the decoder and the queue, on the decoder's video pad: there, flushes of a
    /// loop's seek can be kept from the queue (a sink pad acts on a flush before its probes run).
    fn add_stream_probes(&self, pad: &gst::Pad) {
        let weak = self.obj().downgrade();
        pad.add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::EVENT_DOWNSTREAM
                | gst::PadProbeType::EVENT_FLUSH,
            move |_pad, info| match weak.upgrade() {
                Some(obj) => {
                    let ret = obj.imp().downstream_probe(info);
                    consume_dropped(info, ret)
                }
                None => gst::PadProbeReturn::Ok,
            },
        );
        let weak = self.obj().downgrade();
        pad.add_probe(
            gst::PadProbeType::EVENT_UPSTREAM,
            move |_pad, info| match weak.upgrade() {
                Some(obj) => {
                    let ret = obj.imp().upstream_probe(info);
                    consume_dropped(info, ret)
                }
                None => gst::PadProbeReturn::Ok,
            },
        );
    }

    fn no_more_pads(&self, generation: u64) {
        let types = {
            let mut rt = lock(&self.runtime);
            let Some(cur) = rt.current.as_ref().filter(|c| c.generation == generation) else {
                return;
            };
            if cur.video_linked {
                return;
            }
            let types = cur.stream_types.join(", ");
            rt.failed = true;
            types
        };
        let uri = self.uri();
        let streams = if types.is_empty() {
            "none".to_string()
        } else {
            types
        };
        self.set_state(SourceState::Failed, 0, "no video stream");
        gst::element_imp_error!(
            self,
            gst::StreamError::WrongType,
            (
                "vigilsrc: {} has no video stream (streams: {})",
                uri,
                streams
            )
        );
    }

    fn uri(&self) -> String {
        lock(&self.runtime).uri.clone()
    }

    /// A file source's error, posted at once with the URI in its text.
    fn fail(&self, err: &glib::Error, debug: Option<String>) {
        {
            let mut rt = lock(&self.runtime);
            if rt.failed {
                gst::debug!(CAT, imp = self, "further error: {}", err.message());
                return;
            }
            rt.failed = true;
        }
        let uri = self.uri();
        let text = format!("vigilsrc: {uri}: {}", err.message());
        self.set_state(SourceState::Failed, 0, err.message());
        let obj = self.obj();
        let mut b = gst::message::Error::builder_from_error(reworded(err, &text)).src(&*obj);
        if let Some(d) = debug.as_deref() {
            b = b.debug(d);
        }
        let _ = obj.post_message(b.build());
    }

    /// After an error (or the end of a live stream) of a network source: waits and rebuilds, or fails
    /// when no attempt is left.
    fn schedule_reconnect(
        &self,
        reason: &str,
        error: Option<(glib::Error, Option<glib::GString>)>,
    ) {
        let mut rt = lock(&self.runtime);
        if !rt.running || rt.reconnect_pending || rt.failed {
            return;
        }
        rt.last_reason = reason.to_string();
        match rt.backoff.next_delay() {
            Some(delay) => {
                rt.reconnect_pending = true;
                let attempt = rt.backoff.attempts();
                if let Some(w) = &rt.worker {
                    let _ = w.tx.send(Cmd::Reconnect(delay));
                }
                drop(rt);
                gst::info!(CAT, imp = self, "reconnecting in {delay:?}");
                self.set_state(SourceState::Reconnecting, attempt, reason);
            }
            None => {
                rt.failed = true;
                let attempts = rt.backoff.attempts();
                drop(rt);
                let uri = self.uri();
                self.set_state(SourceState::Failed, attempts, reason);
                let text = if attempts == 0 {
                    format!("vigilsrc: {uri}: {reason}")
                } else {
                    format!(
                        "vigilsrc: {uri}: giving up after {attempts} reconnection attempts: {reason}"
                    )
                };
                let err = match &error {
                    Some((e, _)) => reworded(e, &text),
                    None => glib::Error::new(gst::ResourceError::Read, &text),
                };
                let obj = self.obj();
                let mut b = gst::message::Error::builder_from_error(err).src(&*obj);
                if let Some((_, Some(d))) = &error {
                    b = b.debug(d.as_str());
                }
                let _ = obj.post_message(b.build());
            }
        }
    }

    /// Worker thread: replaces the `uridecodebin` with a new one.
    fn rebuild(&self) {
        let settings = lock(&self.settings).clone();
        let (old, generation, uri) = {
            let mut rt = lock(&self.runtime);
            if !rt.running || rt.failed {
                return;
            }
            rt.reconnect_pending = false;
            rt.generation += 1;
            (rt.current.take(), rt.generation, rt.uri.clone())
        };
        if let Some(old) = old {
            self.teardown(old);
        }
        lock(&self.flow).rebase = true;
        self.awaiting_first.store(true, Ordering::SeqCst);
        let db = match self.make_decodebin(&uri, generation, &settings) {
            Ok(db) => db,
            Err(msg) => {
                self.post_error_message(msg);
                return;
            }
        };
        {
            let mut rt = lock(&self.runtime);
            if !rt.running {
                return;
            }
            rt.built_at = Instant::now();
            rt.current = Some(Current {
                decodebin: db.clone(),
                generation,
                fakesinks: Vec::new(),
                video_linked: false,
                stream_types: Vec::new(),
            });
        }
        gst::info!(
            CAT,
            imp = self,
            "{uri}: reconnecting (generation {generation})"
        );
        if self.obj().add(&db).is_err() {
            return;
        }
        if db.sync_state_with_parent().is_err() {
            // The error message (if any) schedules the next attempt; make sure one is scheduled.
            let reason = lock(&self.runtime).last_reason.clone();
            self.schedule_reconnect(&format!("cannot start the source: {reason}"), None);
        }
    }

    /// Worker thread: restarts a looping file from its beginning.
    fn restart_loop(&self) {
        let Some(qsink) = self.queue.static_pad("sink") else {
            return;
        };
        {
            let mut f = lock(&self.flow);
            f.drop_flush_start = true;
            f.drop_flush_stop = true;
            f.rebase = true;
        }
        let seek = gst::event::Seek::new(
            1.0,
            gst::SeekFlags::FLUSH,
            gst::SeekType::Set,
            gst::ClockTime::ZERO,
            gst::SeekType::None,
            gst::ClockTime::NONE,
        );
        if qsink.push_event(seek) {
            gst::debug!(CAT, imp = self, "looped to the start");
            return;
        }
        {
            let mut f = lock(&self.flow);
            f.drop_flush_start = false;
            f.drop_flush_stop = false;
        }
        gst::info!(
            CAT,
            imp = self,
            "seek to 0 refused: restarting the source instead"
        );
        lock(&self.runtime).reconnect_pending = true;
        self.rebuild();
    }

    /// Worker thread: a source that delivers no frame in `data-timeout` is restarted (network) or
    /// fails (file). This also catches errors that `decodebin` swallows while it is still trying an
    /// element (a truncated MP4 whose demuxer fails at once).
    fn watchdog(&self) {
        let timeout = lock(&self.settings).data_timeout;
        if timeout == 0 {
            return;
        }
        let timeout = Duration::from_millis(u64::from(timeout));
        let (network, live, built_at) = {
            let rt = lock(&self.runtime);
            if !rt.running || rt.failed || rt.reconnect_pending || rt.current.is_none() {
                return;
            }
            (rt.network, rt.live, rt.built_at)
        };
        let state = *lock(&self.state);
        if state == SourceState::Eos {
            return;
        }
        let ms = timeout.as_millis();
        if self.awaiting_first.load(Ordering::SeqCst) {
            if built_at.elapsed() < timeout {
                return;
            }
            if network {
                self.schedule_reconnect(&format!("no video frame within {ms} ms"), None);
            } else {
                let err = glib::Error::new(
                    gst::StreamError::Failed,
                    &format!("no video frame within {ms} ms: the file may be truncated or damaged"),
                );
                self.fail(&err, None);
            }
            return;
        }
        if !(network && live) || self.obj().current_state() != gst::State::Playing {
            return;
        }
        let last = lock(&self.flow).last_frame;
        if last.is_some_and(|t| t.elapsed() >= timeout) {
            self.schedule_reconnect(&format!("no video frame for {ms} ms"), None);
        }
    }

    fn on_first_frame(&self) {
        let generation = {
            let mut rt = lock(&self.runtime);
            rt.backoff.reset();
            rt.current.as_ref().map_or(0, |c| c.generation)
        };
        let was = *lock(&self.state);
        if generation > 0 && was == SourceState::Reconnecting {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.set_state(SourceState::Connected, 0, "");
    }

    /// Buffers and downstream events between the decoder and the queue.
    fn downstream_probe(&self, info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
        match info.data {
            Some(gst::PadProbeData::Buffer(ref mut buffer)) => {
                let interval = u64::from(lock(&self.settings).drop_frame_interval.max(1));
                if let Some(ret) = self.image_buffer(buffer, interval) {
                    return ret;
                }
                let (stamp, dts, keep) = match self.stamp_buffer(buffer, interval) {
                    Stamped::Frame { stamp, dts, keep } => (stamp, dts, keep),
                    Stamped::Unsegmented => return self.count_first(gst::PadProbeReturn::Ok),
                    Stamped::Clipped => {
                        gst::debug!(
                            CAT,
                            imp = self,
                            "frame at {:?} is outside the segment: dropped",
                            buffer.pts()
                        );
                        return gst::PadProbeReturn::Drop;
                    }
                };
                gst::log!(
                    CAT,
                    imp = self,
                    "frame out at {} (its own PTS {:?}, {:?}, kept {keep})",
                    gst::ClockTime::from_nseconds(stamp.pts),
                    buffer.pts(),
                    stamp.fix
                );
                if !keep {
                    return self.count_first(gst::PadProbeReturn::Drop);
                }
                let b = buffer.make_mut();
                b.set_pts(gst::ClockTime::from_nseconds(stamp.pts));
                b.set_duration(gst::ClockTime::from_nseconds(stamp.duration));
                b.set_dts(if stamp.fix.repaired() { None } else { dts });
                self.count_first(gst::PadProbeReturn::Ok)
            }
            Some(gst::PadProbeData::Event(ref mut event)) => self.downstream_event(event),
            _ => gst::PadProbeReturn::Ok,
        }
    }

    /// A decoded frame's output running time: its own shifted by the offset that keeps time going across
    /// reconnections and loops, then through the stream's [`TimestampRepair`] (a frame without a PTS,
    /// or not after the previous one, gets the previous PTS + one frame interval). Also the shifted DTS
    /// and whether `drop-frame-interval` keeps the frame.
    fn stamp_buffer(&self, buffer: &gst::Buffer, interval: u64) -> Stamped {
        // Lock order: `runtime` and the element's clock before `flow`, never while holding it.
        let live = lock(&self.runtime).live;
        let now = if live {
            self.obj()
                .current_running_time()
                .map(gst::ClockTime::nseconds)
        } else {
            None
        };
        let mut f = lock(&self.flow);
        let Some(seg) = f.segment.clone() else {
            f.last_frame = Some(Instant::now());
            return Stamped::Unsegmented;
        };
        let rt = buffer.pts().and_then(|p| seg.to_running_time(p));
        if buffer.pts().is_some() && rt.is_none() {
            // Not a frame that goes out: a stream whose frames all fall outside the segment is
            // stalled, and the watchdog must see it.
            return Stamped::Clipped;
        }
        f.last_frame = Some(Instant::now());
        if let Some(rt) = rt {
            let rt = rt.nseconds();
            let last = f.last_end.unwrap_or(0);
            if let Some(now) = now {
                // A live source's own running times are the pipeline's clock: kept while they go on
                // from the previous frame and are not ahead of the clock (checked on every frame).
                let offset = live_offset(rt, now, last, f.offset, f.rebase);
                if offset != f.offset && !f.rebase {
                    gst::info!(
                        CAT,
                        imp = self,
                        "frame {} would leave {} ahead of the clock: moved to it",
                        f.index,
                        gst::ClockTime::from_nseconds(shifted(rt, f.offset).saturating_sub(now))
                    );
                }
                f.offset = offset;
                f.rebase = false;
            } else if f.rebase {
                if shifted(rt, f.offset) < last {
                    f.offset = signed(last) - signed(rt);
                }
                f.rebase = false;
            }
        }
        let offset = f.offset;
        let shift = |t: Option<gst::ClockTime>| {
            t.and_then(|t| seg.to_running_time(t))
                .map(|t| gst::ClockTime::from_nseconds(shifted(t.nseconds(), offset)))
        };
        let own = shift(buffer.pts()).map(gst::ClockTime::nseconds);
        let before = f.stamps.repaired();
        let stamp = f
            .stamps
            .stamp(own, buffer.duration().map(gst::ClockTime::nseconds));
        if f.stamps.repaired() > before {
            gst::debug!(
                CAT,
                imp = self,
                "frame {} stamped {} ({:?}; its own PTS {:?})",
                f.index,
                gst::ClockTime::from_nseconds(stamp.pts),
                stamp.fix,
                buffer.pts()
            );
        }
        let end = stamp.pts.saturating_add(stamp.duration);
        f.last_end = Some(f.last_end.map_or(end, |l| l.max(end)));
        let keep = f.index.is_multiple_of(interval);
        f.index += 1;
        Stamped::Frame {
            stamp,
            dts: shift(buffer.dts()),
            keep,
        }
    }

    /// An image sequence's frame: stamped `frames / image-framerate` (decoders leave images unstamped or
    /// stamp them from the same framerate). `None` when the source is not images.
    fn image_buffer(&self, buffer: &mut gst::Buffer, interval: u64) -> Option<gst::PadProbeReturn> {
        let (pts, end, keep) = {
            let mut f = lock(&self.flow);
            let img = f.image.as_mut()?;
            let n = img.frames;
            img.frames += 1;
            let pts = frame_time(n, img.fps_n, img.fps_d);
            let end = frame_time(n + 1, img.fps_n, img.fps_d);
            f.last_frame = Some(Instant::now());
            f.last_end = Some(end);
            let keep = f.index.is_multiple_of(interval);
            f.index += 1;
            (pts, end, keep)
        };
        if !keep {
            return Some(self.count_first(gst::PadProbeReturn::Drop));
        }
        let b = buffer.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(pts));
        b.set_dts(gst::ClockTime::NONE);
        b.set_duration(gst::ClockTime::from_nseconds(end - pts));
        Some(self.count_first(gst::PadProbeReturn::Ok))
    }

    /// An image's caps get the framerate; the first image's size and format become the capsfilter's, so
    /// that images of another size are scaled (keeping their aspect ratio) and converted to them.
    fn image_caps_event(&self, event: &mut gst::Event) -> gst::PadProbeReturn {
        let gst::EventView::Caps(c) = event.view() else {
            return gst::PadProbeReturn::Ok;
        };
        let mut caps = c.caps_owned();
        let (fps, fix) = {
            let mut f = lock(&self.flow);
            let Some(img) = f.image.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let fix = !img.size_fixed;
            img.size_fixed = true;
            (
                gst::Fraction::new(img.fps_n, img.fps_d),
                fix.then(|| img.filter.clone()),
            )
        };
        for s in caps.make_mut().iter_mut() {
            s.set("framerate", fps);
        }
        if let Some(filter) = fix
            && let Some(s) = caps.structure(0)
        {
            let mut fixed = gst::Structure::new_empty("video/x-raw");
            for field in ["format", "width", "height", "pixel-aspect-ratio"] {
                if let Ok(v) = s.value(field) {
                    fixed.set_value(field, v.clone());
                }
            }
            let fixed = gst::Caps::builder_full().structure(fixed).build();
            gst::debug!(CAT, imp = self, "images are output as {fixed}");
            filter.set_property("caps", &fixed);
        }
        *event = gst::event::Caps::builder(&caps)
            .seqnum(event.seqnum())
            .build();
        gst::PadProbeReturn::Ok
    }

    fn count_first(&self, ret: gst::PadProbeReturn) -> gst::PadProbeReturn {
        if self.awaiting_first.swap(false, Ordering::SeqCst) {
            self.on_first_frame();
        }
        ret
    }

    fn downstream_event(&self, event: &mut gst::Event) -> gst::PadProbeReturn {
        use gst::EventView;
        match event.view() {
            EventView::StreamStart(_) => {
                let mut f = lock(&self.flow);
                if f.stream_started {
                    return gst::PadProbeReturn::Drop;
                }
                f.stream_started = true;
                gst::PadProbeReturn::Ok
            }
            EventView::Segment(s) => {
                let mut f = lock(&self.flow);
                match s.segment().downcast_ref::<gst::ClockTime>() {
                    Some(seg) => {
                        f.segment = Some(seg.clone());
                        if f.segment_sent {
                            return gst::PadProbeReturn::Drop;
                        }
                        f.segment_sent = true;
                        let out = gst::FormattedSegment::<gst::ClockTime>::new();
                        *event = gst::event::Segment::builder(&out)
                            .seqnum(event.seqnum())
                            .build();
                        gst::PadProbeReturn::Ok
                    }
                    None => {
                        gst::warning!(CAT, imp = self, "segment not in time: passed as is");
                        f.segment = None;
                        gst::PadProbeReturn::Ok
                    }
                }
            }
            EventView::FlushStart(_) => {
                let mut f = lock(&self.flow);
                if f.drop_flush_start {
                    f.drop_flush_start = false;
                    return gst::PadProbeReturn::Drop;
                }
                gst::PadProbeReturn::Ok
            }
            EventView::Caps(c) => {
                if let Some(rate) = c
                    .caps()
                    .structure(0)
                    .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
                {
                    lock(&self.flow)
                        .stamps
                        .set_framerate(rate.numer(), rate.denom());
                }
                self.image_caps_event(event)
            }
            EventView::FlushStop(_) => {
                let mut f = lock(&self.flow);
                if f.drop_flush_stop {
                    f.drop_flush_stop = false;
                    return gst::PadProbeReturn::Drop;
                }
                // A seek from downstream: running time starts again.
                if let Some(img) = f.image.as_mut() {
                    img.frames = 0;
                }
                f.segment_sent = false;
                f.offset = 0;
                f.last_end = None;
                f.rebase = false;
                f.stamps.reset();
                gst::PadProbeReturn::Ok
            }
            EventView::Gap(g) => {
                let (ts, dur) = g.get();
                let f = lock(&self.flow);
                let Some(seg) = f.segment.as_ref() else {
                    return gst::PadProbeReturn::Ok;
                };
                let Some(rt) = seg.to_running_time(ts) else {
                    return gst::PadProbeReturn::Drop;
                };
                let out = gst::ClockTime::from_nseconds(shifted(rt.nseconds(), f.offset));
                *event = gst::event::Gap::builder(out).duration(dur).build();
                gst::PadProbeReturn::Ok
            }
            EventView::Eos(_) => self.on_eos(),
            _ => gst::PadProbeReturn::Ok,
        }
    }

    fn on_eos(&self) -> gst::PadProbeReturn {
        let looping = lock(&self.settings).looping;
        let (live, network, image, worker_tx) = {
            let rt = lock(&self.runtime);
            (
                rt.live,
                rt.network,
                rt.image.is_some(),
                rt.worker.as_ref().map(|w| w.tx.clone()),
            )
        };
        // Images loop in multifilesrc: their end of stream is the end.
        if looping && !live && !image {
            lock(&self.flow).rebase = true;
            if let Some(tx) = worker_tx
                && tx.send(Cmd::Loop).is_ok()
            {
                return gst::PadProbeReturn::Drop;
            }
            return gst::PadProbeReturn::Ok;
        }
        if live && network {
            self.schedule_reconnect("end of stream", None);
            return gst::PadProbeReturn::Drop;
        }
        self.set_state(SourceState::Eos, 0, "");
        gst::PadProbeReturn::Ok
    }

    /// QoS going upstream is in output running time: shifted back into the decoder's.
    fn upstream_probe(&self, info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
        let Some(gst::PadProbeData::Event(ref mut event)) = info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let gst::EventView::Qos(q) = event.view() else {
            return gst::PadProbeReturn::Ok;
        };
        let offset = lock(&self.flow).offset;
        if offset == 0 {
            return gst::PadProbeReturn::Ok;
        }
        let (type_, proportion, diff, ts) = q.get();
        let Some(ts) = ts.and_then(|t| u64::try_from(signed(t.nseconds()) - offset).ok()) else {
            return gst::PadProbeReturn::Drop;
        };
        *event = gst::event::Qos::builder(type_, proportion, diff)
            .timestamp(gst::ClockTime::from_nseconds(ts))
            .build();
        gst::PadProbeReturn::Ok
    }
}

/// Elements inside `bin` that are not in the NULL state after the bin was set to NULL: `rtspsrc` keeps
/// its session manager's state locked and changes it from its own thread, so a connection torn down
/// while it was still being set up can leave it (and `rtspsrc`) in PAUSED, to be disposed in that
/// state later (a GStreamer-CRITICAL and an abort at exit). Each is unlocked and stopped.
fn stop_stragglers(bin: &gst::Element) {
    let Some(bin) = bin.downcast_ref::<gst::Bin>() else {
        return;
    };
    for e in bin.iterate_recurse().into_iter().flatten() {
        stop_straggler(&e);
    }
}

/// Stops `e` again if it is not in NULL (its state stays locked: it is out of its bin), and keeps a
/// reference to it for ever if it still is not: disposing an element that is not in NULL aborts the
/// process.
fn keep_unless_stopped(imp: &VigilSrc, e: &gst::Element) {
    if e.current_state() == gst::State::Null && e.pending_state() == gst::State::VoidPending {
        return;
    }
    let _ = e.set_state(gst::State::Null);
    if e.current_state() != gst::State::Null {
        gst::warning!(
            CAT,
            imp = imp,
            "{}: still {:?} after it was stopped twice; it is kept",
            e.name(),
            e.current_state()
        );
        std::mem::forget(e.clone());
    }
}

/// Stops `e` (unlocking its state first) if it is not stopped.
fn stop_straggler(e: &gst::Element) {
    if e.current_state() != gst::State::Null || e.pending_state() != gst::State::VoidPending {
        gst::debug!(
            CAT,
            "{}: still {:?} after its bin was stopped; stopping it",
            e.path_string(),
            e.current_state()
        );
        e.set_locked_state(false);
        let _ = e.set_state(gst::State::Null);
    }
}

/// A GStreamer element of `plugin` (for the error when it is missing).
fn make_element(factory: &str, plugin: &str) -> Result<gst::Element, gst::ErrorMessage> {
    gst::ElementFactory::make(factory)
        .name(format!("vigil{factory}"))
        .build()
        .map_err(|e| {
            gst::error_msg!(
                gst::CoreError::MissingPlugin,
                ["vigilsrc: {} is missing ({}): {}", factory, plugin, e]
            )
        })
}

/// Drops what a probe decided to drop by consuming it (`Handled`): returning `Drop` with the data left
/// in the probe info makes the bindings hand GStreamer a NULL object to unref.
fn consume_dropped(info: &mut gst::PadProbeInfo, ret: gst::PadProbeReturn) -> gst::PadProbeReturn {
    if ret == gst::PadProbeReturn::Drop {
        info.data.take();
        return gst::PadProbeReturn::Handled;
    }
    ret
}

/// The same error domain and code with another text.
fn reworded(err: &glib::Error, text: &str) -> glib::Error {
    if let Some(k) = err.kind::<gst::ResourceError>() {
        glib::Error::new(k, text)
    } else if let Some(k) = err.kind::<gst::StreamError>() {
        glib::Error::new(k, text)
    } else if let Some(k) = err.kind::<gst::CoreError>() {
        glib::Error::new(k, text)
    } else if let Some(k) = err.kind::<gst::LibraryError>() {
        glib::Error::new(k, text)
    } else {
        glib::Error::new(gst::StreamError::Failed, text)
    }
}

/// How often the worker checks that frames arrive.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);

fn worker_loop(weak: glib::WeakRef<super::VigilSrc>, rx: mpsc::Receiver<Cmd>) {
    loop {
        let cmd = match rx.recv_timeout(WATCHDOG_TICK) {
            Ok(cmd) => cmd,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let Some(obj) = weak.upgrade() else { return };
                obj.imp().watchdog();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match cmd {
            Cmd::Stop => return,
            Cmd::Loop => {
                let Some(obj) = weak.upgrade() else { return };
                obj.imp().restart_loop();
            }
            Cmd::Reconnect(delay) => {
                let deadline = Instant::now() + delay;
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(Cmd::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        Ok(_) => continue,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                    }
                }
                let Some(obj) = weak.upgrade() else { return };
                obj.imp().rebuild();
            }
        }
    }
}
