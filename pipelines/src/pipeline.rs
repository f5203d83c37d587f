//! Builds the GStreamer pipeline for a validated [`Plan`] and runs it to the end.
//!
//! Per source:
//!
//! ```text
//! vigilsrc uri=… ! videoconvert ! vigilinfer ! vigiltrack ! [vigilosd] ! tee
//!   tee. ! queue ! videoconvert ! x264enc|nvh264enc (low latency) ! video/x-h264,profile=baseline
//!          ! h264parse config-interval=-1 ! appsink            (→ RTSP server, when outputs.rtsp)
//!   tee. ! queue ! videoconvert ! x264enc ! h264parse ! mp4mux ! filesink   (when outputs.file)
//!   tee. ! queue leaky ! videoscale ! videoconvert ! tile caps ! compositor  (when outputs.mosaic)
//!   tee. ! queue ! fakesink                                    (when there is no video output)
//! ```
//!
//! With `outputs.mosaic`, a live black `videotestsrc` is the compositor's background (so the mosaic
//! keeps its pace when a tile stalls or ends) and the compositor's output is encoded like a stream and
//! served on the mosaic's mount; the background gets end-of-stream once every source has ended.
//!
//! An error posted by an element of one source's branch (its `vigilsrc` giving up, a broken file) ends
//! that branch only: the source is removed and end-of-stream is sent into the rest of the branch; the run
//! goes on until the other sources end and then returns the failure ([`RunError::Source`]).
//!
//! A buffer probe on `vigiltrack`'s source pad reads [`VigilMeta`], counts frames/objects/tracks and, with
//! `outputs.events`, hands one `vigil.frame.v1` JSON line per frame to the writer thread. Everything (bus,
//! RTSP server, progress timer, stop requests) runs on one GLib main loop on the calling thread, in a
//! private main context.

use crate::config::{Plan, one_line};
use crate::events::{EventSender, EventWriter};
use crate::rtsp::{MountFeed, RtspOutput};
use crate::stats::StreamState;
use crate::stats::{SourceStats, Summary};
use gst::glib;
use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::objects::FrameEvent;

/// A run failure; always one line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// GStreamer could not be initialised or an element is missing or misconfigured.
    #[error("{0}")]
    Setup(String),
    /// An error message on the pipeline's bus: `<element path>: <message> (<debug>)`.
    #[error("{path}: {message}{}", .debug.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Bus {
        path: String,
        message: String,
        debug: Option<String>,
    },
    /// An output failed (RTSP server, events file), naming the config file and key.
    #[error("{0}")]
    Output(String),
    /// One source failed (its branch was ended; the other sources ran to their end).
    #[error("source '{name}' failed: {error}")]
    Source { name: String, error: Box<RunError> },
}

/// Ends the branch of a failed source: the source is stopped and removed, and end-of-stream is sent
/// into the rest of its branch so its outputs are finished (MP4 files playable). Runs on a helper
/// thread so the main loop never waits on a streaming thread.
fn end_failed_source(part: &SourceParts) {
    let src = part.src.clone();
    let convert_sink = part.convert_sink.clone();
    std::thread::spawn(move || {
        // First detach the source and end the branch (stopping the source may take a while, e.g. a
        // network source in the middle of a connection attempt), then stop and drop the source.
        let _ = src.set_locked_state(true);
        if let Some(peer) = convert_sink.peer() {
            let _ = peer.unlink(&convert_sink);
        }
        convert_sink.send_event(gst::event::Eos::new());
        let parent = src.parent().and_then(|p| p.downcast::<gst::Bin>().ok());
        if let Some(bin) = &parent {
            let _ = bin.remove(&src);
        }
        let _ = src.set_state(gst::State::Null);
        // A source that fails during a state change makes the pipeline's change fail and leaves it
        // "in progress" (it would then never post its end-of-stream): redo it without the source.
        if let Some(bin) = &parent {
            let (ret, current, pending) = bin.state(gst::ClockTime::ZERO);
            if ret.is_err() {
                let target = if pending == gst::State::VoidPending {
                    current
                } else {
                    pending
                };
                let _ = bin.set_state(target);
            }
        }
    });
}

/// `videotestsrc is-live=true (black) ! compositor ! I420 WxH@fps ! queue ! videoconvert ! encoder !
/// h264parse ! appsink` → the mosaic's mount. Returns the compositor (sources request its pads) and
/// the live background source (sent EOS when every source has ended).
fn build_mosaic(
    pipeline: &gst::Pipeline,
    rtsp: &crate::config::RtspPlan,
    m: &crate::config::MosaicPlan,
    sync: bool,
    feed: MountFeed,
) -> Result<(gst::Element, gst::Element), RunError> {
    let (w, h, fps) = (m.width as i32, m.height as i32, m.fps as i32);
    let bg = make("videotestsrc", "mosaic-background")?;
    set_prop(&bg, "is-live", Prop::Bool(true))?;
    set_prop(&bg, "pattern", Prop::Text("black"))?;
    let bg_caps = make("capsfilter", "mosaic-background-caps")?;
    bg_caps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", w)
            .field("height", h)
            .field("framerate", gst::Fraction::new(fps, 1))
            .build(),
    );
    let comp = make("compositor", "mosaic")?;
    set_prop(&comp, "background", Prop::Text("black"))?;
    // Tiles may come a little late (inference); beyond that the mosaic goes on without them.
    set_prop(&comp, "latency", Prop::Num(200_000_000.0))?;
    if comp.find_property("ignore-inactive-pads").is_some() {
        set_prop(&comp, "ignore-inactive-pads", Prop::Bool(true))?;
    }
    let out_caps = make("capsfilter", "mosaic-caps")?;
    out_caps.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", w)
            .field("height", h)
            .field("framerate", gst::Fraction::new(fps, 1))
            .build(),
    );
    let q = make("queue", "mosaic-queue")?;
    set_prop(&q, "max-size-buffers", Prop::Num(5.0))?;
    set_prop(&q, "max-size-bytes", Prop::Num(0.0))?;
    set_prop(&q, "max-size-time", Prop::Num(0.0))?;
    set_prop(&q, "leaky", Prop::Text("downstream"))?;
    let conv = make("videoconvert", "mosaic-convert")?;
    pipeline
        .add_many([&bg, &bg_caps])
        .map_err(|e| RunError::Setup(e.to_string()))?;
    gst::Element::link_many([&bg, &bg_caps])
        .map_err(|e| RunError::Setup(format!("mosaic: {e}")))?;
    let mut tail = vec![comp.clone(), out_caps, q, conv];
    tail.extend(rtsp_tail("mosaic-rtsp", rtsp, sync, feed)?);
    pipeline
        .add_many(&tail)
        .map_err(|e| RunError::Setup(e.to_string()))?;
    gst::Element::link_many(&tail).map_err(|e| RunError::Setup(format!("mosaic: {e}")))?;
    let pad = comp
        .request_pad_simple("sink_%u")
        .ok_or_else(|| RunError::Setup("mosaic: the compositor has no free pad".into()))?;
    pad.set_property("zorder", 0u32);
    bg_caps
        .static_pad("src")
        .ok_or_else(|| RunError::Setup("mosaic: capsfilter has no src pad".into()))?
        .link(&pad)
        .map_err(|e| RunError::Setup(format!("mosaic: {e:?}")))?;
    Ok((comp, bg))
}

/// Asks a running [`run`] to stop: it sends end-of-stream into every source, so files are finished and
/// the summary is printed as for a normal end. A second request stops at once.
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<AtomicUsize>);

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn stop(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn requests(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Options of [`run`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Stop gracefully on SIGINT/SIGTERM (a second signal stops at once, a third exits the process).
    /// Installs process-wide signal handlers; for the CLI.
    pub handle_signals: bool,
    /// Print progress lines to stderr every `progress_interval`; `None` = no progress lines.
    pub progress_interval: Option<Duration>,
    /// Print start-up lines (RTSP URLs, outputs) and the summary to stderr.
    pub verbose: bool,
    /// External stop requests.
    pub stop: StopHandle,
    /// After a stop request, how long to wait for the end-of-stream before giving up on finishing files.
    pub stop_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            handle_signals: false,
            progress_interval: Some(Duration::from_secs(2)),
            verbose: true,
            stop: StopHandle::new(),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// Initialises GStreamer and registers the Vigil elements (idempotent).
pub fn init() -> Result<(), RunError> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}"))?;
            gstvigil::plugin_register_static()
                .map_err(|e| format!("cannot register the Vigil elements: {e}"))
        })
        .clone()
        .map_err(RunError::Setup)
}

fn make(factory: &str, name: &str) -> Result<gst::Element, RunError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| {
            let hint = match factory {
                "vigilinfer" | "vigiltrack" | "vigilosd" => " (Vigil element not registered)",
                "x264enc" => " (install the GStreamer 'ugly' plugins)",
                "avdec_h264" => " (install the GStreamer libav plugins)",
                "h264parse" | "mp4mux" => " (install the GStreamer 'good'/'bad' plugins)",
                _ => "",
            };
            RunError::Setup(format!(
                "GStreamer element '{factory}' is not available{hint}"
            ))
        })
}

/// A property value, converted to the property's actual type when set.
#[derive(Debug, Clone)]
pub(crate) enum Prop<'a> {
    Str(&'a str),
    Bool(bool),
    Num(f64),
    /// Enum/flags nick, or any value given as text.
    Text(&'a str),
}

/// Sets `name` on `element`, converting numbers to the property's type; errors name element and property.
pub(crate) fn set_prop(element: &gst::Element, name: &str, value: Prop) -> Result<(), RunError> {
    let fail =
        |why: String| RunError::Setup(format!("{}: property '{name}': {why}", element.name()));
    let pspec = element
        .find_property(name)
        .ok_or_else(|| fail("no such property".into()))?;
    let t = pspec.value_type();
    let v: glib::Value = match value {
        Prop::Str(s) => s.to_value(),
        Prop::Bool(b) => b.to_value(),
        Prop::Num(n) => {
            let int = |lo: f64, hi: f64| {
                if n.fract() == 0.0 && n >= lo && n <= hi {
                    Ok(n)
                } else {
                    Err(fail(format!("{n} is out of range")))
                }
            };
            if t == glib::Type::F32 {
                (n as f32).to_value()
            } else if t == glib::Type::F64 {
                n.to_value()
            } else if t == glib::Type::I32 {
                (int(i32::MIN as f64, i32::MAX as f64)? as i32).to_value()
            } else if t == glib::Type::U32 {
                (int(0.0, u32::MAX as f64)? as u32).to_value()
            } else if t == glib::Type::I64 {
                (int(i64::MIN as f64, i64::MAX as f64)? as i64).to_value()
            } else if t == glib::Type::U64 {
                (int(0.0, u64::MAX as f64)? as u64).to_value()
            } else {
                return Err(fail(format!("is of type {t}, not a number")));
            }
        }
        Prop::Text(s) => {
            if t == glib::Type::STRING {
                s.to_value()
            } else {
                glib::Value::deserialize_with_pspec(s, &pspec)
                    .map_err(|_| fail(format!("invalid value '{s}'")))?
            }
        }
    };
    if !v.type_().is_a(t) {
        return Err(fail(format!("is of type {t}, not {}", v.type_())));
    }
    element.set_property_from_value(name, &v);
    Ok(())
}

/// What a stop request, and the failure of a source, need of a source.
#[derive(Clone)]
struct SourceParts {
    /// The source's `vigilsrc`.
    src: gst::Element,
    /// The sink pad of the first element after the source: EOS sent here ends the branch cleanly.
    convert_sink: gst::Pad,
    /// Every element of the source's branch (source, analytics chain, outputs), to attribute errors.
    elements: Vec<gst::Element>,
}

/// Which tile of the mosaic a source feeds.
struct MosaicTile<'a> {
    compositor: &'a gst::Element,
    x: i32,
    y: i32,
    width: i32,
    height: i32,
}

/// Makes the H.264 encoder `outputs.rtsp.encoder` asks for (tuned for low latency, a key frame at
/// least every 30 frames); `nvh264enc` asked for but missing is one warning, then `x264enc`.
fn make_rtsp_encoder(
    name: &str,
    choice: crate::config::EncoderChoice,
    bitrate_kbps: u32,
) -> Result<gst::Element, RunError> {
    use crate::config::EncoderChoice;
    static WARNED: std::sync::Once = std::sync::Once::new();
    let nv_available = || gst::ElementFactory::find("nvh264enc").is_some();
    let use_nv = match choice {
        EncoderChoice::X264 => false,
        EncoderChoice::Auto => nv_available(),
        EncoderChoice::Nvh264enc => {
            let ok = nv_available();
            if !ok {
                WARNED.call_once(|| {
                    eprintln!(
                        "warning: outputs.rtsp.encoder: nvh264enc is not available (GStreamer nvcodec plugin or NVIDIA driver missing); using x264enc"
                    )
                });
            }
            ok
        }
    };
    if use_nv {
        let enc = make("nvh264enc", name)?;
        set_prop(&enc, "bitrate", Prop::Num(bitrate_kbps.into()))?;
        set_prop(&enc, "gop-size", Prop::Num(30.0))?;
        if enc.find_property("zerolatency").is_some() {
            set_prop(&enc, "zerolatency", Prop::Bool(true))?;
        }
        Ok(enc)
    } else {
        let enc = make("x264enc", name)?;
        set_prop(&enc, "tune", Prop::Text("zerolatency"))?;
        set_prop(&enc, "speed-preset", Prop::Text("superfast"))?;
        set_prop(&enc, "bitrate", Prop::Num(bitrate_kbps.into()))?;
        set_prop(&enc, "key-int-max", Prop::Num(30.0))?;
        Ok(enc)
    }
}

/// `encoder ! video/x-h264,profile=baseline ! h264parse config-interval=-1 ! appsink` feeding `feed`.
fn rtsp_tail(
    prefix: &str,
    rtsp: &crate::config::RtspPlan,
    sync: bool,
    feed: MountFeed,
) -> Result<Vec<gst::Element>, RunError> {
    let enc = make_rtsp_encoder(&format!("{prefix}-encode"), rtsp.encoder, rtsp.bitrate_kbps)?;
    let caps = make("capsfilter", &format!("{prefix}-caps"))?;
    caps.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("profile", "baseline")
            .build(),
    );
    let parse = make("h264parse", &format!("{prefix}-parse"))?;
    set_prop(&parse, "config-interval", Prop::Num(-1.0))?;
    let sink = gst_app::AppSink::builder()
        .name(format!("{prefix}-sink"))
        .caps(
            &gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .sync(sync)
        .async_(false)
        .build();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                feed.push(&sample);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(vec![enc, caps, parse, sink.upcast()])
}

fn build_source(
    pipeline: &gst::Pipeline,
    plan: &Plan,
    index: usize,
    stats: Arc<SourceStats>,
    events: Option<EventSender>,
    rtsp_feed: Option<MountFeed>,
    mosaic: Option<MosaicTile>,
) -> Result<SourceParts, RunError> {
    let cfg = &plan.config;
    let src = &plan.sources[index];
    let scfg = &cfg.sources[index];
    let n = &src.name;
    let sync = plan.realtime;

    let decode = make("vigilsrc", &format!("{n}-source"))?;
    set_prop(&decode, "uri", Prop::Str(&src.uri))?;
    set_prop(&decode, "loop", Prop::Bool(scfg.looping))?;
    set_prop(&decode, "decoder", Prop::Text(scfg.decoder.as_str()))?;
    if let Some(v) = scfg.drop_frame_interval {
        set_prop(&decode, "drop-frame-interval", Prop::Num(v.into()))?;
    }
    set_prop(
        &decode,
        "rtsp-transport",
        Prop::Text(scfg.rtsp_transport.as_str()),
    )?;
    if let Some(v) = scfg.latency_ms {
        set_prop(&decode, "latency", Prop::Num(v.into()))?;
    }
    if let Some(r) = &scfg.reconnect {
        if let Some(v) = r.interval_ms {
            set_prop(&decode, "reconnect-interval", Prop::Num(v.into()))?;
        }
        if let Some(v) = r.max_interval_ms {
            set_prop(&decode, "reconnect-max-interval", Prop::Num(v.into()))?;
        }
        if let Some(v) = r.attempts {
            set_prop(&decode, "reconnect-attempts", Prop::Num(v.into()))?;
        }
    }
    let convert = make("videoconvert", &format!("{n}-convert"))?;
    let infer = make("vigilinfer", &format!("{n}-infer"))?;
    let m = &plan.model;
    let repo = m.repository.to_string_lossy();
    set_prop(&infer, "model-repository", Prop::Str(&repo))?;
    set_prop(&infer, "model", Prop::Str(&m.name))?;
    set_prop(&infer, "model-version", Prop::Num(m.version as f64))?;
    set_prop(&infer, "threshold", Prop::Num(cfg.inference.threshold))?;
    set_prop(&infer, "nms-iou", Prop::Num(cfg.inference.nms_iou))?;
    set_prop(&infer, "classes", Prop::Str(&m.classes))?;
    set_prop(&infer, "interval", Prop::Num(cfg.inference.interval.into()))?;
    set_prop(
        &infer,
        "max-detections",
        Prop::Num(cfg.inference.max_detections.into()),
    )?;
    let track = make("vigiltrack", &format!("{n}-track"))?;
    set_prop(&track, "tracker", Prop::Text(cfg.tracker.kind.as_str()))?;
    set_prop(
        &track,
        "iou-threshold",
        Prop::Num(cfg.tracker.iou_threshold),
    )?;
    set_prop(&track, "max-age", Prop::Num(cfg.tracker.max_age.into()))?;
    set_prop(&track, "min-hits", Prop::Num(cfg.tracker.min_hits.into()))?;
    let mut chain = vec![convert.clone(), infer, track.clone()];
    if cfg.overlay.enabled {
        let osd = make("vigilosd", &format!("{n}-osd"))?;
        set_prop(&osd, "draw-labels", Prop::Bool(cfg.overlay.labels))?;
        set_prop(&osd, "draw-confidence", Prop::Bool(cfg.overlay.confidence))?;
        set_prop(&osd, "draw-track-ids", Prop::Bool(cfg.overlay.track_ids))?;
        set_prop(&osd, "line-width", Prop::Num(cfg.overlay.line_width.into()))?;
        set_prop(&osd, "font-scale", Prop::Num(cfg.overlay.font_scale.into()))?;
        chain.push(osd);
    }
    let tee = make("tee", &format!("{n}-tee"))?;
    chain.push(tee.clone());
    pipeline
        .add_many(&chain)
        .map_err(|e| RunError::Setup(e.to_string()))?;
    gst::Element::link_many(&chain)
        .map_err(|e| RunError::Setup(format!("[{n}] cannot link the analytics chain: {e}")))?;

    // Branches. Short queues: with `realtime` the sinks wait for the clock, and whatever is queued ahead
    // of them must still be played out after a stop request.
    let queue = |what: &str| -> Result<gst::Element, RunError> {
        let q = make("queue", &format!("{n}-{what}-queue"))?;
        set_prop(
            &q,
            "max-size-buffers",
            Prop::Num(if sync { 5.0 } else { 30.0 }),
        )?;
        set_prop(&q, "max-size-bytes", Prop::Num(0.0))?;
        set_prop(&q, "max-size-time", Prop::Num(0.0))?;
        Ok(q)
    };
    let mut branches: Vec<Vec<gst::Element>> = Vec::new();
    if let (Some(r), Some(feed)) = (&plan.rtsp, rtsp_feed) {
        let q = queue("rtsp")?;
        let conv = make("videoconvert", &format!("{n}-rtsp-convert"))?;
        let mut b = vec![q, conv];
        b.extend(rtsp_tail(&format!("{n}-rtsp"), r, sync, feed)?);
        branches.push(b);
    }
    let mut mosaic_branch = None;
    if let Some(tile) = &mosaic {
        // Leaky: a mosaic that falls behind drops tiles' frames, never slows the stream's own outputs.
        let q = queue("mosaic")?;
        set_prop(&q, "leaky", Prop::Text("downstream"))?;
        let scale = make("videoscale", &format!("{n}-mosaic-scale"))?;
        let conv = make("videoconvert", &format!("{n}-mosaic-convert"))?;
        let caps = make("capsfilter", &format!("{n}-mosaic-caps"))?;
        caps.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("width", tile.width)
                .field("height", tile.height)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        );
        mosaic_branch = Some(vec![q, scale, conv, caps]);
    }
    if let Some(files) = &plan.files {
        let bitrate = cfg
            .outputs
            .file
            .as_ref()
            .map(|f| f.bitrate_kbps)
            .unwrap_or(4000);
        let q = queue("file")?;
        let conv = make("videoconvert", &format!("{n}-file-convert"))?;
        let enc = make("x264enc", &format!("{n}-file-encode"))?;
        set_prop(&enc, "speed-preset", Prop::Text("veryfast"))?;
        set_prop(&enc, "bitrate", Prop::Num(bitrate.into()))?;
        let parse = make("h264parse", &format!("{n}-file-parse"))?;
        let mux = make("mp4mux", &format!("{n}-file-mux"))?;
        let sink = make("filesink", &format!("{n}-file-sink"))?;
        set_prop(
            &sink,
            "location",
            Prop::Str(&files[index].to_string_lossy()),
        )?;
        set_prop(&sink, "sync", Prop::Bool(sync))?;
        set_prop(&sink, "async", Prop::Bool(false))?;
        branches.push(vec![q, conv, enc, parse, mux, sink]);
    }
    if branches.is_empty() && mosaic_branch.is_none() {
        let q = queue("null")?;
        let sink = make("fakesink", &format!("{n}-null-sink"))?;
        set_prop(&sink, "sync", Prop::Bool(sync))?;
        set_prop(&sink, "async", Prop::Bool(false))?;
        branches.push(vec![q, sink]);
    }
    for b in &branches {
        pipeline
            .add_many(b)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        gst::Element::link_many(b)
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link an output: {e}")))?;
        tee.link(&b[0])
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link an output: {e}")))?;
    }
    if let (Some(b), Some(tile)) = (&mosaic_branch, &mosaic) {
        pipeline
            .add_many(b)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        gst::Element::link_many(b)
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link the mosaic: {e}")))?;
        tee.link(&b[0])
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link the mosaic: {e}")))?;
        let pad = tile
            .compositor
            .request_pad_simple("sink_%u")
            .ok_or_else(|| RunError::Setup(format!("[{n}] the compositor has no free pad")))?;
        pad.set_property("xpos", tile.x);
        pad.set_property("ypos", tile.y);
        pad.set_property("width", tile.width);
        pad.set_property("height", tile.height);
        pad.set_property("zorder", 1u32);
        let last = &b[b.len() - 1];
        last.static_pad("src")
            .ok_or_else(|| RunError::Setup("capsfilter has no src pad".into()))?
            .link(&pad)
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link the mosaic: {e:?}")))?;
        branches.push(b.clone());
    }

    // Counters and events after the tracker.
    let track_src = track
        .static_pad("src")
        .ok_or_else(|| RunError::Setup("vigiltrack has no src pad".into()))?;
    let source_name = n.clone();
    let events_ok = Arc::new(AtomicBool::new(true));
    track_src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            let meta = buffer.meta::<VigilMeta>();
            let frame = meta.as_ref().map(|m| m.frame());
            stats.record(frame);
            if let (Some(tx), Some(frame)) = (&events, frame)
                && events_ok.load(Ordering::Relaxed)
            {
                let pts = buffer.pts().map(|t| t.nseconds());
                let line = FrameEvent::new(&source_name, pts, frame).to_json_line();
                if !tx.send(line) {
                    events_ok.store(false, Ordering::Relaxed);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });

    // The first frame through the analytics chain: `run` starts the clock then (see `FIRST_FRAME`).
    let tee_sink = tee
        .static_pad("sink")
        .ok_or_else(|| RunError::Setup("tee has no sink pad".into()))?;
    tee_sink.add_probe(gst::PadProbeType::BUFFER, |pad, _| {
        if let Some(tee) = pad.parent_element() {
            let msg = gst::message::Application::builder(gst::Structure::new_empty(FIRST_FRAME))
                .src(&tee)
                .build();
            let _ = tee.post_message(msg);
        }
        gst::PadProbeReturn::Remove
    });

    // The end of this source's stream (its own end, a stop request or its failure).
    tee_sink.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
        if let Some(ev) = info.event()
            && ev.type_() == gst::EventType::Eos
            && let Some(tee) = pad.parent_element()
        {
            let msg = gst::message::Application::builder(
                gst::Structure::builder(SOURCE_DONE)
                    .field("index", index as u32)
                    .build(),
            )
            .src(&tee)
            .build();
            let _ = tee.post_message(msg);
        }
        gst::PadProbeReturn::Ok
    });

    pipeline
        .add(&decode)
        .map_err(|e| RunError::Setup(e.to_string()))?;
    decode
        .link(&convert)
        .map_err(|e| RunError::Setup(format!("[{n}] cannot link the source: {e}")))?;
    let convert_sink = convert
        .static_pad("sink")
        .ok_or_else(|| RunError::Setup("videoconvert has no sink pad".into()))?;
    let mut elements = vec![decode.clone()];
    elements.extend(chain);
    for b in branches {
        elements.extend(b);
    }
    Ok(SourceParts {
        src: decode,
        convert_sink,
        elements,
    })
}

/// Name of the application message a source's tee posts when its stream ends (field `index`).
const SOURCE_DONE: &str = "vigil-source-done";

/// Name of the application message a source's tee posts when its first frame arrives. The pipeline is
/// prerolled in PAUSED and only set to PLAYING once every source has a frame (or after
/// [`START_TIMEOUT`]), so that with `realtime` the clock starts with the video instead of running while
/// the decoders and the model start up (which would make the first seconds play as a burst).
const FIRST_FRAME: &str = "vigil-first-frame";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the main loop ended.
#[derive(Debug)]
enum Outcome {
    Eos,
    Error(RunError),
    ForcedStop,
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 2 {
        // Third signal: the process is stuck; leave now (async-signal-safe).
        unsafe { libc::_exit(130) };
    }
}

fn install_signal_handlers() {
    // SAFETY: the handler only touches an atomic and may call `_exit`, both async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// Builds and runs the pipeline of `plan` until all sources end, an error occurs or a stop is requested.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<Summary, RunError> {
    init()?;
    let name = &plan.config.name;
    let context = glib::MainContext::new();
    let main_loop = glib::MainLoop::new(Some(&context), false);

    // Outputs that live outside the pipeline (the server first: it is the likelier to fail).
    let rtsp = match &plan.rtsp {
        None => None,
        Some(r) => Some(
            RtspOutput::start(
                &r.address,
                r.port,
                &r.mounts
                    .iter()
                    .chain(r.mosaic.as_ref().map(|m| &m.mount))
                    .cloned()
                    .collect::<Vec<_>>(),
                r.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                &context,
            )
            .map_err(|e| RunError::Output(format!("{}: outputs.rtsp: {e}", plan.file)))?,
        ),
    };

    let writer = match &plan.events {
        None => None,
        Some(t) => Some(EventWriter::start(t).map_err(|e| {
            RunError::Output(format!(
                "{}: outputs.events.path: cannot write {}: {e}",
                plan.file,
                describe_events(t)
            ))
        })?),
    };
    let pipeline = gst::Pipeline::with_name(name);
    let mosaic = match (&plan.rtsp, &rtsp) {
        (Some(r), Some(out)) => match &r.mosaic {
            Some(m) => Some(build_mosaic(
                &pipeline,
                r,
                m,
                plan.realtime,
                out.feeds[plan.sources.len()].1.clone(),
            )?),
            None => None,
        },
        _ => None,
    };
    let mut stats = Vec::new();
    let mut sources = Vec::new();
    for (i, s) in plan.sources.iter().enumerate() {
        let st = Arc::new(SourceStats::with_uri(&s.name, &s.uri));
        stats.push(st.clone());
        let feed = rtsp.as_ref().map(|r| r.feeds[i].1.clone());
        let tile = match (&mosaic, plan.rtsp.as_ref().and_then(|r| r.mosaic.as_ref())) {
            (Some((compositor, _)), Some(m)) => {
                let (c, r) = (m.columns as usize, m.rows as usize);
                let w = (m.width as usize / c) & !1;
                let h = (m.height as usize / r) & !1;
                Some(MosaicTile {
                    compositor,
                    x: ((i % c) * w) as i32,
                    y: ((i / c) * h) as i32,
                    width: w.max(2) as i32,
                    height: h.max(2) as i32,
                })
            }
            _ => None,
        };
        sources.push(build_source(
            &pipeline,
            plan,
            i,
            st,
            writer.as_ref().and_then(|w| w.sender()),
            feed,
            tile,
        )?);
    }
    let mosaic_background = mosaic.map(|(_, bg)| bg);
    // The HTTP API (health, metrics, streams) lives as long as this run.
    let _api = match &plan.api {
        Some((addr, token)) => {
            let view: Arc<dyn crate::api::StreamsView> = Arc::new(stats.clone());
            let server = crate::api::serve(*addr, token.clone(), view)
                .map_err(|e| RunError::Output(format!("{}: api: {e}", plan.file)))?;
            if opts.verbose {
                eprintln!(
                    "vigil: {}: API http://{}/",
                    plan.config.name,
                    server.local_addr()
                );
            }
            Some(server)
        }
        None => None,
    };
    // A failed source: its message, in the order of failure.
    let failures: Arc<Mutex<Vec<RunError>>> = Arc::default();

    if opts.verbose {
        let m = &plan.model;
        eprintln!(
            "vigil: {name}: model {} v{} ({})",
            m.name,
            m.version,
            m.model_file.display()
        );
        for s in &plan.sources {
            eprintln!("vigil: {name}: source {} = {}", s.name, s.uri);
        }
        if let Some(r) = &rtsp {
            for u in r.urls() {
                eprintln!("vigil: {name}: RTSP {u}");
            }
        }
        if let Some(files) = &plan.files {
            for f in files {
                eprintln!("vigil: {name}: recording {}", f.display());
            }
        }
        if let Some(t) = &plan.events {
            eprintln!("vigil: {name}: events to {}", describe_events(t));
        }
        eprintln!("vigil: {name}: realtime {}", plan.realtime);
    }

    let outcome: Arc<Mutex<Option<Outcome>>> = Arc::default();
    let finish = {
        let outcome = outcome.clone();
        let main_loop = main_loop.clone();
        move |o: Outcome| {
            let mut cur = outcome.lock().unwrap_or_else(|p| p.into_inner());
            if cur.is_none() {
                *cur = Some(o);
            }
            main_loop.quit();
        }
    };

    // Going to PLAYING, once.
    let playing = Arc::new(AtomicBool::new(false));
    let go_playing = {
        let weak = pipeline.downgrade();
        let playing = playing.clone();
        let finish = finish.clone();
        let name = name.clone();
        move || {
            if playing.swap(true, Ordering::SeqCst) {
                return;
            }
            if let Some(p) = weak.upgrade()
                && p.set_state(gst::State::Playing).is_err()
            {
                finish(Outcome::Error(RunError::Setup(format!(
                    "pipeline '{name}' failed to start playing"
                ))));
            }
        }
    };

    // Bus.
    let bus = pipeline
        .bus()
        .ok_or_else(|| RunError::Setup("pipeline has no bus".into()))?;
    let bus_source = {
        let finish = finish.clone();
        let weak = pipeline.downgrade();
        let go_playing = go_playing.clone();
        let n_sources = plan.sources.len();
        let mut first_frames = 0usize;
        let parts: Vec<SourceParts> = sources.clone();
        let names: Vec<String> = plan.sources.iter().map(|s| s.name.clone()).collect();
        let mut failed = vec![false; n_sources];
        let mut done = vec![false; n_sources];
        let failures = failures.clone();
        let background = mosaic_background.clone();
        let verbose = opts.verbose;
        let source_stats = stats.clone();
        // Every source has ended (or failed): end the mosaic's live background too, so the pipeline
        // reaches its end-of-stream.
        let mark_done = move |done: &mut Vec<bool>, i: usize| {
            if i < done.len() && !done[i] {
                done[i] = true;
                if done.iter().all(|d| *d)
                    && let Some(bg) = &background
                {
                    bg.send_event(gst::event::Eos::new());
                }
            }
        };
        bus.create_watch(Some("vigil-bus"), glib::Priority::DEFAULT, move |_, msg| {
            use gst::MessageView;
            match msg.view() {
                // vigilsrc's state changes feed the per-stream state and reconnect count.
                MessageView::Element(e)
                    if e.structure().is_some_and(|s| s.name() == "vigilsrc-state") =>
                {
                    let owner = msg.src().and_then(|src| {
                        parts.iter().position(|p| {
                            p.elements.iter().any(|el| {
                                src == el.upcast_ref::<gst::Object>() || src.has_as_ancestor(el)
                            })
                        })
                    });
                    let state = e.structure().and_then(|s| s.get::<String>("state").ok());
                    if let (Some(i), Some(state)) = (owner, state) {
                        let st = &source_stats[i];
                        let next = match state.as_str() {
                            "connected" => {
                                if st.state() == StreamState::Reconnecting {
                                    st.record_reconnect();
                                }
                                StreamState::Playing
                            }
                            "reconnecting" => StreamState::Reconnecting,
                            "failed" => StreamState::Error,
                            "eos" => StreamState::Ended,
                            _ => StreamState::Starting,
                        };
                        st.set_state(next);
                    }
                }
                MessageView::Application(a)
                    if a.structure().is_some_and(|s| s.name() == FIRST_FRAME) =>
                {
                    first_frames += 1;
                    if first_frames >= n_sources {
                        go_playing();
                    }
                }
                MessageView::Application(a)
                    if a.structure().is_some_and(|s| s.name() == SOURCE_DONE) =>
                {
                    if let Some(i) = a.structure().and_then(|s| s.get::<u32>("index").ok()) {
                        mark_done(&mut done, i as usize);
                    }
                }
                MessageView::Eos(_) => finish(Outcome::Eos),
                MessageView::Error(e) => {
                    let path = msg
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_else(|| "pipeline".into());
                    let err = RunError::Bus {
                        path,
                        message: one_line(&e.error().to_string()),
                        debug: e.debug().map(|d| one_line(&d)).filter(|d| !d.is_empty()),
                    };
                    // An error inside one source's branch ends that branch only.
                    let owner = msg.src().and_then(|src| {
                        parts.iter().position(|p| {
                            p.elements.iter().any(|el| {
                                src == el.upcast_ref::<gst::Object>() || src.has_as_ancestor(el)
                            })
                        })
                    });
                    match owner {
                        Some(i) => {
                            if failed[i] {
                                return glib::ControlFlow::Continue;
                            }
                            failed[i] = true;
                            if verbose {
                                eprintln!(
                                    "warning: source '{}' failed, the other sources go on: {err}",
                                    names[i]
                                );
                            }
                            failures.lock().unwrap_or_else(|p| p.into_inner()).push(
                                RunError::Source {
                                    name: names[i].clone(),
                                    error: Box::new(err),
                                },
                            );
                            end_failed_source(&parts[i]);
                            // It will never bring a first frame.
                            first_frames += 1;
                            if first_frames >= n_sources {
                                go_playing();
                            }
                            mark_done(&mut done, i);
                        }
                        None => finish(Outcome::Error(err)),
                    }
                }
                MessageView::Warning(w) => {
                    let path = msg
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_else(|| "pipeline".into());
                    let debug = w
                        .debug()
                        .map(|d| format!(" ({})", one_line(&d)))
                        .unwrap_or_default();
                    eprintln!(
                        "warning: {path}: {}{debug}",
                        one_line(&w.error().to_string())
                    );
                }
                MessageView::Latency(_) => {
                    if let Some(p) = weak.upgrade() {
                        let _ = p.recalculate_latency();
                    }
                }
                _ => {}
            }
            glib::ControlFlow::Continue
        })
    };
    bus_source.attach(Some(&context));

    // Progress.
    let progress_source = opts.progress_interval.map(|every| {
        let stats = stats.clone();
        let s = glib::timeout_source_new(
            every,
            Some("vigil-progress"),
            glib::Priority::DEFAULT,
            move || {
                for st in &stats {
                    eprintln!("{}", st.progress_line());
                }
                glib::ControlFlow::Continue
            },
        );
        s.attach(Some(&context));
        s
    });

    // Stop requests (signals or the handle).
    if opts.handle_signals {
        SIGNALS.store(0, Ordering::SeqCst);
        install_signal_handlers();
    }
    let stop_source = {
        let finish = finish.clone();
        let handle = opts.stop.clone();
        let handle_signals = opts.handle_signals;
        let pads: Vec<SourceParts> = sources.clone();
        let timeout = opts.stop_timeout;
        let go_playing = go_playing.clone();
        let mut first_stop: Option<Instant> = None;
        let verbose = opts.verbose;
        let events = writer.as_ref().and_then(|w| w.sender());
        let file = plan.file.clone();
        let background = mosaic_background.clone();
        let s = glib::timeout_source_new(
            Duration::from_millis(100),
            Some("vigil-stop"),
            glib::Priority::DEFAULT,
            move || {
                // A failed events writer (disk full, closed pipe) ends the run with its error.
                if let Some(e) = events.as_ref().and_then(|s| s.error()) {
                    let what = e.clone();
                    finish(Outcome::Error(RunError::Output(format!(
                        "{file}: outputs.events.path: writing events failed: {what}"
                    ))));
                    return glib::ControlFlow::Break;
                }
                let requests = handle.requests()
                    + if handle_signals {
                        SIGNALS.load(Ordering::SeqCst)
                    } else {
                        0
                    };
                if requests == 0 {
                    return glib::ControlFlow::Continue;
                }
                match first_stop {
                    None => {
                        first_stop = Some(Instant::now());
                        if verbose {
                            eprintln!(
                                "vigil: stopping: finishing outputs (interrupt again to stop at once)"
                            );
                        }
                        go_playing();
                        for part in &pads {
                            part.convert_sink.send_event(gst::event::Eos::new());
                        }
                        if let Some(bg) = &background {
                            bg.send_event(gst::event::Eos::new());
                        }
                    }
                    Some(t) => {
                        if requests > 1 || t.elapsed() > timeout {
                            if t.elapsed() > timeout {
                                eprintln!(
                                    "warning: no end-of-stream {timeout:?} after the stop request; stopping at once"
                                );
                            }
                            finish(Outcome::ForcedStop);
                            return glib::ControlFlow::Break;
                        }
                    }
                }
                glib::ControlFlow::Continue
            },
        );
        s.attach(Some(&context));
        s
    };

    // Run: preroll in PAUSED; live pipelines (no preroll) go to PLAYING at once, others on the first
    // frames (FIRST_FRAME) or after START_TIMEOUT.
    let started = pipeline.set_state(gst::State::Paused);
    let start_source = {
        let go_playing = go_playing.clone();
        let s = glib::timeout_source_new(
            START_TIMEOUT,
            Some("vigil-start"),
            glib::Priority::DEFAULT,
            move || {
                go_playing();
                glib::ControlFlow::Break
            },
        );
        s.attach(Some(&context));
        s
    };
    // The mosaic's background is live (so a stalled tile never freezes it): with only files as
    // sources, still wait for their first frames; a live source needs PLAYING to deliver any.
    let all_files = plan.sources.iter().all(|s| s.path.is_some());
    if started == Ok(gst::StateChangeSuccess::NoPreroll)
        && !(mosaic_background.is_some() && all_files)
    {
        go_playing();
    }
    if started.is_err() {
        // The bus has the reason; collect it.
        let reason = bus
            .timed_pop_filtered(
                gst::ClockTime::from_mseconds(500),
                &[gst::MessageType::Error],
            )
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(e) => Some(RunError::Bus {
                    path: msg
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_else(|| "pipeline".into()),
                    message: one_line(&e.error().to_string()),
                    debug: e.debug().map(|d| one_line(&d)).filter(|d| !d.is_empty()),
                }),
                _ => None,
            });
        finish(Outcome::Error(reason.unwrap_or_else(|| {
            RunError::Setup(format!("pipeline '{name}' failed to start"))
        })));
    } else {
        let _ = context.with_thread_default(|| main_loop.run());
    }
    let outcome = outcome
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or(Outcome::ForcedStop);

    // Tear down: end RTSP streams, stop the pipeline, flush events.
    if let Some(r) = &rtsp {
        r.end();
        if matches!(outcome, Outcome::Eos) && r.media_count() > 0 {
            // Let the clients receive the end of the stream.
            let deadline = Instant::now() + Duration::from_millis(300);
            let _ = context.with_thread_default(|| {
                while Instant::now() < deadline {
                    context.iteration(false);
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    bus_source.destroy();
    stop_source.destroy();
    start_source.destroy();
    if let Some(p) = progress_source {
        p.destroy();
    }
    drop(sources);
    if let Some(r) = rtsp {
        r.stop();
    }
    // The probes hold event senders until the pipeline's elements are gone.
    drop(pipeline);
    let events_result = writer.map(|w| w.finish()).unwrap_or(Ok(()));

    let interrupted =
        opts.stop.requests() > 0 || (opts.handle_signals && SIGNALS.load(Ordering::SeqCst) > 0);
    let summary = Summary {
        sources: stats.iter().map(|s| s.summary()).collect(),
        interrupted,
    };
    match outcome {
        Outcome::Error(e) => return Err(e),
        Outcome::Eos | Outcome::ForcedStop => {}
    }
    events_result
        .map_err(|e| RunError::Output(format!("{}: outputs.events.path: {e}", plan.file)))?;
    if opts.verbose {
        eprint!("{summary}");
    }
    // Failed sources: one error line each; the last is the run's error (printed by the caller).
    let mut failures = std::mem::take(&mut *failures.lock().unwrap_or_else(|p| p.into_inner()));
    if let Some(last) = failures.pop() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        return Err(last);
    }
    Ok(summary)
}

fn describe_events(t: &crate::config::EventsTarget) -> String {
    match t {
        crate::config::EventsTarget::Stdout => "standard output".into(),
        crate::config::EventsTarget::File(p) => p.display().to_string(),
    }
}
