//! Builds the GStreamer pipeline for a validated [`Plan`] and runs it to the end.
//!
//! Per source:
//!
//! ```text
//! vigilsrc uri=… ! videoconvert ! vigilinfer ! vigiltrack ! [vigilanalytics]
//!   ! [vigilinfer process-mode=secondary …] ! [vigilosd] ! tee
//!   tee. ! queue ! videoscale ! videoconvert ! x264enc|nvh264enc (low latency)
//!          ! video/x-h264,profile=baseline ! h264parse config-interval=-1 ! appsink
//!                                                              (→ RTSP server, when outputs.rtsp)
//!   tee. ! queue ! fakesink sync=true          (with outputs.rtsp, realtime and no outputs.file)
//!   tee. ! queue ! videoconvert ! x264enc|nvh264enc ! h264parse ! mp4mux ! filesink   (when outputs.file)
//!   tee. ! queue leaky ! videoscale ! videoconvert ! tile caps ! compositor  (when outputs.mosaic)
//!   tee. ! queue ! fakesink                                    (when there is no video output)
//! ```
//!
//! With `outputs.mosaic`, a live black `videotestsrc` is the compositor's background (so the mosaic
//! keeps its pace when a tile stalls or ends) and the compositor's output is encoded like a stream and
//! served on the mosaic's mount; the background gets end-of-stream once every source has ended.
//!
//! Encoding only for viewers: the RTSP branches (a stream's, the mosaic's and the tiles that feed it)
//! are gated at their queue's sink pad by their mount's [`MountFeed`]: without a client the frames
//! are dropped there, before any scaling, conversion or encoding (see `crate::rtsp`). With `realtime`,
//! the sinks hold a stream to the clock; a gated branch's sink gets nothing, so a stream without a
//! file output gets a synchronised `fakesink` branch (`<name>-rtsp-pace`) that keeps its pace.
//!
//! An error posted by an element of one source's branch (its `vigilsrc` giving up, a broken file) ends
//! that branch only: the source is removed and end-of-stream is sent into the rest of the branch; the run
//! goes on until the other sources end and then returns the failure ([`RunError::Source`]).
//!
//! `vigilanalytics` is there for sources with `analytics` (lines and zones); secondary `vigilinfer`s
//! follow it. A buffer probe on the source pad of the last of `vigiltrack`, `vigilanalytics` and the
//! secondary `vigilinfer`s reads [`VigilMeta`], counts frames/objects/tracks and, with `outputs.events`,
//! hands one `vigil.frame.v1` JSON line per frame to the writer thread. Everything (bus, RTSP server,
//! progress timer, stop requests) runs on one GLib main loop on the calling thread, in a private main
//! context.

use crate::api::ControlError;
use crate::config::{Plan, one_line};
use crate::events::{EventSender, EventWriter};
use crate::rtsp::{MountFeed, RtspOutput};
use crate::stats::StreamState;
use crate::stats::{SourceStats, Summary};
use gst::glib;
use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
fn end_failed_source(part: &SourceParts, playing: bool) {
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
            // A failing source added to a playing pipeline may also have made it lose its state
            // (PAUSED, waiting for that source's preroll): it goes back to PLAYING, where it was.
            let (ret, current, pending) = bin.state(gst::ClockTime::ZERO);
            if ret.is_err() || (playing && current != gst::State::Playing) {
                let target = if playing {
                    gst::State::Playing
                } else if pending == gst::State::VoidPending {
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
    // Encoding only for viewers: no conversion or encoding while the mosaic's mount has no client.
    feed.gate(&static_sink_pad(&q)?, true);
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
                "vigilinfer" | "vigiltrack" | "vigilanalytics" | "vigilosd" | "vigilmsgbroker" => {
                    " (Vigil element not registered)"
                }
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

/// What a stop request, the failure of a source and its removal need of a source's branch.
#[derive(Clone)]
struct SourceParts {
    /// The source's `vigilsrc`.
    src: gst::Element,
    /// The sink pad of the first element after the source: EOS sent here ends the branch cleanly.
    convert_sink: gst::Pad,
    /// Every element of the source's branch (source, analytics chain, outputs).
    elements: Vec<gst::Element>,
    /// The sink pads of the stream's own sinks (RTSP mount, file, null): the branch is drained when
    /// end-of-stream has reached all of them (not the mosaic's pad, which is released instead).
    terminals: Vec<gst::Pad>,
    /// The compositor's request pad of the stream's mosaic tile.
    mosaic_pad: Option<gst::Pad>,
}

/// Which tile of the mosaic a source feeds.
struct MosaicTile {
    compositor: gst::Element,
    /// The mosaic's feed: the tile is gated with the mosaic's encoding branch.
    feed: MountFeed,
    x: i32,
    y: i32,
    width: i32,
    height: i32,
}

/// What [`build_source`] builds: one source of the config or one added at run time.
struct SourceSpec<'a> {
    plan: &'a crate::config::SourcePlan,
    cfg: &'a crate::config::SourceConfig,
    /// MP4 file to record to, with `outputs.file`.
    file: Option<PathBuf>,
    rtsp_feed: Option<MountFeed>,
    mosaic: Option<MosaicTile>,
    /// The stream's slot (in [`SOURCE_DONE`] and [`FIRST_FRAME`]).
    index: usize,
    stats: Arc<SourceStats>,
    events: Option<EventSender>,
}

/// The `vigilimagesrc` of an image source (`sources[i].images`).
fn make_imagesrc(im: &crate::config::ImagesPlan, n: &str) -> Result<gst::Element, RunError> {
    let e = make("vigilimagesrc", &format!("{n}-source"))?;
    set_prop(&e, "location", Prop::Str(&im.location))?;
    set_prop(&e, "watch", Prop::Bool(im.watch))?;
    set_prop(
        &e,
        "poll-interval-ms",
        Prop::Num(im.poll_interval_ms.into()),
    )?;
    set_prop(&e, "loop", Prop::Bool(im.looping))?;
    set_prop(&e, "min-size", Prop::Num(im.min_size.into()))?;
    set_prop(&e, "max-size", Prop::Num(im.max_size.into()))?;
    set_prop(&e, "sort", Prop::Str(im.sort))?;
    e.set_property("framerate", gst::Fraction::new(im.fps as i32, 1));
    Ok(e)
}

/// The `vigilmsgbroker` of stream `n` for `outputs.mqtt`: last in the analysis chain, so that it
/// publishes what every Vigil element before it attached.
fn make_msgbroker(mq: &crate::config::MqttPlan, n: &str) -> Result<gst::Element, RunError> {
    let b = make("vigilmsgbroker", &format!("{n}-mqtt"))?;
    set_prop(&b, "protocol", Prop::Str("mqtt"))?;
    set_prop(&b, "source-name", Prop::Str(n))?;
    set_prop(&b, "host", Prop::Str(&mq.host))?;
    set_prop(&b, "port", Prop::Num(mq.port.into()))?;
    set_prop(&b, "topic", Prop::Str(&mq.topic))?;
    set_prop(&b, "qos", Prop::Num(mq.qos.into()))?;
    set_prop(&b, "client-id", Prop::Str(&mq.client_id(n)))?;
    if let Some(u) = &mq.username {
        set_prop(&b, "username", Prop::Str(u))?;
        set_prop(
            &b,
            "password",
            Prop::Str(mq.password.as_deref().unwrap_or("")),
        )?;
    }
    if let Some(t) = &mq.tls {
        set_prop(&b, "tls", Prop::Bool(true))?;
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().to_string());
        if let Some(p) = path(&t.ca) {
            set_prop(&b, "tls-ca-file", Prop::Str(&p))?;
        }
        if let Some(p) = path(&t.cert) {
            set_prop(&b, "tls-cert-file", Prop::Str(&p))?;
        }
        if let Some(p) = path(&t.key) {
            set_prop(&b, "tls-key-file", Prop::Str(&p))?;
        }
    }
    set_prop(&b, "keep-alive", Prop::Num(mq.keep_alive_s.into()))?;
    set_prop(&b, "buffer-size", Prop::Num(mq.buffer.into()))?;
    set_prop(&b, "drop-policy", Prop::Str(&mq.drop))?;
    set_prop(&b, "messages", Prop::Str(&mq.messages))?;
    set_prop(&b, "flush-timeout", Prop::Num(mq.flush_timeout_ms.into()))?;
    Ok(b)
}

/// What an H.264 encoder is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncoderUse {
    /// `outputs.rtsp`: tuned for low latency, a key frame at least every 30 frames.
    Rtsp,
    /// `outputs.file`: tuned for quality per bit.
    File,
}

impl EncoderUse {
    fn key(self) -> &'static str {
        match self {
            EncoderUse::Rtsp => "outputs.rtsp.encoder",
            EncoderUse::File => "outputs.file.encoder",
        }
    }
}

/// Makes the H.264 encoder `choice` asks for, for `usage`; `nvh264enc` asked for but missing is one
/// warning per key and process, then `x264enc`.
fn make_h264_encoder(
    name: &str,
    choice: crate::config::EncoderChoice,
    bitrate_kbps: u32,
    usage: EncoderUse,
) -> Result<gst::Element, RunError> {
    use crate::config::EncoderChoice;
    static WARNED: [std::sync::Once; 2] = [std::sync::Once::new(), std::sync::Once::new()];
    let nv_available = || gst::ElementFactory::find("nvh264enc").is_some();
    let use_nv = match choice {
        EncoderChoice::X264 => false,
        EncoderChoice::Auto => nv_available(),
        EncoderChoice::Nvh264enc => {
            let ok = nv_available();
            if !ok {
                WARNED[usage as usize].call_once(|| {
                    eprintln!(
                        "warning: {}: nvh264enc is not available (GStreamer nvcodec plugin or NVIDIA driver missing); using x264enc",
                        usage.key()
                    )
                });
            }
            ok
        }
    };
    if use_nv {
        let enc = make("nvh264enc", name)?;
        set_prop(&enc, "bitrate", Prop::Num(bitrate_kbps.into()))?;
        if usage == EncoderUse::Rtsp {
            set_prop(&enc, "gop-size", Prop::Num(30.0))?;
            if enc.find_property("zerolatency").is_some() {
                set_prop(&enc, "zerolatency", Prop::Bool(true))?;
            }
        }
        Ok(enc)
    } else {
        let enc = make("x264enc", name)?;
        set_prop(&enc, "bitrate", Prop::Num(bitrate_kbps.into()))?;
        match usage {
            EncoderUse::Rtsp => {
                set_prop(&enc, "tune", Prop::Text("zerolatency"))?;
                set_prop(&enc, "speed-preset", Prop::Text("superfast"))?;
                set_prop(&enc, "key-int-max", Prop::Num(30.0))?;
            }
            EncoderUse::File => {
                set_prop(&enc, "speed-preset", Prop::Text("veryfast"))?;
                // No B-frames: with them, mp4mux's edit list follows decode times and drops the
                // last frames of a recording whose timestamps have a gap near its end (frames a
                // damaged stream lost).
                set_prop(&enc, "bframes", Prop::Num(0.0))?;
            }
        }
        Ok(enc)
    }
}

/// The `sink` pad of `e` (a queue at the head of a branch).
fn static_sink_pad(e: &gst::Element) -> Result<gst::Pad, RunError> {
    e.static_pad("sink")
        .ok_or_else(|| RunError::Setup(format!("{} has no sink pad", e.name())))
}

/// `encoder ! video/x-h264,profile=baseline ! h264parse config-interval=-1 ! appsink` feeding `feed`.
fn rtsp_tail(
    prefix: &str,
    rtsp: &crate::config::RtspPlan,
    sync: bool,
    feed: MountFeed,
) -> Result<Vec<gst::Element>, RunError> {
    let enc = make_h264_encoder(
        &format!("{prefix}-encode"),
        rtsp.encoder,
        rtsp.bitrate_kbps,
        EncoderUse::Rtsp,
    )?;
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
    feed.set_encoder_sink(sink.upcast_ref());
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

/// Builds the branch of one source into `pipeline` (linked, in the NULL state; the caller syncs the
/// states when the pipeline already runs). On an error the elements already added are removed again.
fn build_source(
    pipeline: &gst::Pipeline,
    plan: &Plan,
    spec: SourceSpec,
) -> Result<SourceParts, RunError> {
    let mut added = Vec::new();
    let mosaic_compositor = spec.mosaic.as_ref().map(|t| t.compositor.clone());
    let mut mosaic_pad = None;
    let r = build_source_into(pipeline, plan, spec, &mut added, &mut mosaic_pad);
    if r.is_err() {
        for e in added.iter().rev() {
            let _ = e.set_state(gst::State::Null);
            let _ = pipeline.remove(e);
        }
        if let (Some(c), Some(p)) = (mosaic_compositor, mosaic_pad) {
            c.release_request_pad(&p);
        }
    }
    r
}

fn build_source_into(
    pipeline: &gst::Pipeline,
    plan: &Plan,
    spec: SourceSpec,
    added: &mut Vec<gst::Element>,
    mosaic_pad: &mut Option<gst::Pad>,
) -> Result<SourceParts, RunError> {
    let (index, stats, events) = (spec.index, spec.stats.clone(), spec.events.clone());
    let cfg = &plan.config;
    let src = spec.plan;
    let scfg = spec.cfg;
    let n = &src.name;
    let sync = plan.realtime;
    let mut add = |els: &[gst::Element]| -> Result<(), RunError> {
        pipeline
            .add_many(els)
            .map_err(|e| RunError::Setup(format!("[{n}] {e}")))?;
        added.extend(els.iter().cloned());
        Ok(())
    };

    let decode = if let Some(im) = &src.images {
        make_imagesrc(im, n)?
    } else {
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
        if let Some(v) = scfg.live_queue {
            set_prop(&decode, "live-queue-size", Prop::Num(v.into()))?;
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
        decode
    };
    let convert = make("videoconvert", &format!("{n}-convert"))?;
    let mut chain = vec![convert.clone()];
    if let (Some(m), Some(inf)) = (&plan.model, &cfg.inference) {
        let infer = make("vigilinfer", &format!("{n}-infer"))?;
        let repo = m.repository.to_string_lossy();
        set_prop(&infer, "model-repository", Prop::Str(&repo))?;
        set_prop(&infer, "model", Prop::Str(&m.name))?;
        set_model_source(&infer, m)?;
        set_prop(&infer, "threshold", Prop::Num(inf.threshold))?;
        set_prop(&infer, "nms-iou", Prop::Num(inf.nms_iou))?;
        set_prop(&infer, "classes", Prop::Str(&m.classes))?;
        set_prop(&infer, "interval", Prop::Num(inf.interval.into()))?;
        set_prop(
            &infer,
            "max-detections",
            Prop::Num(inf.max_detections.into()),
        )?;
        set_prop(&infer, "preprocess", Prop::Text(inf.preprocess.as_str()))?;
        let track = make("vigiltrack", &format!("{n}-track"))?;
        set_prop(&track, "tracker", Prop::Text(cfg.tracker.kind.as_str()))?;
        set_prop(
            &track,
            "iou-threshold",
            Prop::Num(cfg.tracker.iou_threshold),
        )?;
        set_prop(&track, "max-age", Prop::Num(cfg.tracker.max_age.into()))?;
        set_prop(&track, "min-hits", Prop::Num(cfg.tracker.min_hits.into()))?;
        let t = &cfg.tracker;
        set_prop(&track, "track-buffer", Prop::Num(t.track_buffer.into()))?;
        set_prop(&track, "track-thresh", Prop::Num(t.track_thresh))?;
        set_prop(&track, "low-thresh", Prop::Num(t.low_thresh))?;
        set_prop(&track, "new-track-thresh", Prop::Num(t.new_track_thresh))?;
        set_prop(&track, "match-class", Prop::Bool(t.match_class))?;
        if let Some(c) = t.coast_frames {
            set_prop(&track, "coast-frames", Prop::Num(c.into()))?;
        }
        chain.push(infer);
        chain.push(track);
    }
    // Lines and zones of this source: `vigilanalytics` after the tracker, its rules as inline JSON.
    let mut analytics_end = chain[chain.len() - 1].clone();
    if let Some(rules) = &scfg.analytics {
        let analytics = make("vigilanalytics", &format!("{n}-analytics"))?;
        let json = serde_json::to_string(rules)
            .map_err(|e| RunError::Setup(format!("[{n}] analytics rules: {e}")))?;
        set_prop(&analytics, "rules", Prop::Str(&json))?;
        chain.push(analytics.clone());
        analytics_end = analytics;
    }
    // Secondary models after the tracker and the analytics (DeepStream's pgie → tracker → sgie order;
    // the analytics count the primary model's tracked objects); the events and counters are read after
    // the last of them.
    for (i, sp) in plan.secondary.iter().enumerate() {
        let sgie = make("vigilinfer", &format!("{n}-secondary{i}"))?;
        let repo = sp.model.repository.to_string_lossy();
        set_prop(&sgie, "model-repository", Prop::Str(&repo))?;
        set_prop(&sgie, "model", Prop::Str(&sp.model.name))?;
        set_model_source(&sgie, &sp.model)?;
        set_prop(&sgie, "process-mode", Prop::Text("secondary"))?;
        set_prop(&sgie, "operate-on-labels", Prop::Str(&sp.operate_on))?;
        set_prop(&sgie, "min-object-size", Prop::Num(sp.min_size.into()))?;
        set_prop(&sgie, "crop-expand", Prop::Num(sp.crop_expand))?;
        set_prop(&sgie, "threshold", Prop::Num(sp.threshold))?;
        set_prop(&sgie, "nms-iou", Prop::Num(sp.nms_iou))?;
        set_prop(&sgie, "interval", Prop::Num(sp.interval.into()))?;
        set_prop(&sgie, "max-detections", Prop::Num(sp.max_detections.into()))?;
        chain.push(sgie.clone());
        analytics_end = sgie;
    }
    // OCR and inspection after everything that finds objects (`ocr.operate_on` reads inside them);
    // the events and counters are read after the last analysing element.
    if let Some(o) = &plan.ocr {
        let ocr = make("vigilocr", &format!("{n}-ocr"))?;
        let repo = o.repository.to_string_lossy();
        set_prop(&ocr, "model-repository", Prop::Str(&repo))?;
        set_prop(&ocr, "det-model", Prop::Str(&o.det_model))?;
        set_prop(&ocr, "cls-model", Prop::Str(&o.cls_model))?;
        set_prop(&ocr, "rec-model", Prop::Str(&o.rec_model))?;
        set_prop(&ocr, "det-threshold", Prop::Num(o.det_threshold))?;
        set_prop(&ocr, "box-threshold", Prop::Num(o.box_threshold))?;
        set_prop(&ocr, "unclip-ratio", Prop::Num(o.unclip_ratio))?;
        set_prop(&ocr, "min-text-score", Prop::Num(o.min_text_score))?;
        set_prop(&ocr, "operate-on-labels", Prop::Str(&o.operate_on))?;
        if !o.servers.is_empty() {
            set_prop(&ocr, "server-url", Prop::Str(&o.servers.join(",")))?;
            set_prop(
                &ocr,
                "server-timeout-ms",
                Prop::Num(o.server_timeout_ms.into()),
            )?;
        }
        chain.push(ocr.clone());
        analytics_end = ocr;
    }
    if let Some(ins) = &plan.inspection {
        let el = make("vigilinspect", &format!("{n}-inspect"))?;
        set_prop(&el, "rules", Prop::Str(&ins.rules.to_string_lossy()))?;
        if let Some(d) = &ins.snapshots {
            set_prop(&el, "snapshot-dir", Prop::Str(&d.to_string_lossy()))?;
        }
        set_prop(&el, "source-name", Prop::Str(n))?;
        chain.push(el.clone());
        analytics_end = el;
    }
    if cfg.overlay.enabled {
        let osd = make("vigilosd", &format!("{n}-osd"))?;
        set_prop(&osd, "draw-labels", Prop::Bool(cfg.overlay.labels))?;
        set_prop(&osd, "draw-confidence", Prop::Bool(cfg.overlay.confidence))?;
        set_prop(&osd, "draw-track-ids", Prop::Bool(cfg.overlay.track_ids))?;
        set_prop(&osd, "line-width", Prop::Num(cfg.overlay.line_width.into()))?;
        set_prop(&osd, "font-scale", Prop::Num(cfg.overlay.font_scale.into()))?;
        set_prop(&osd, "blur-labels", Prop::Str(&plan.blur))?;
        let o = &cfg.overlay;
        set_prop(&osd, "draw-lines", Prop::Bool(o.lines))?;
        set_prop(&osd, "draw-zones", Prop::Bool(o.zones))?;
        set_prop(&osd, "draw-counters", Prop::Bool(o.counters))?;
        set_prop(&osd, "draw-trails", Prop::Bool(o.trails))?;
        set_prop(&osd, "trail-length", Prop::Num(o.trail_length.into()))?;
        chain.push(osd);
    }
    if let Some(mq) = &plan.mqtt {
        chain.push(make_msgbroker(mq, n)?);
    }
    let tee = make("tee", &format!("{n}-tee"))?;
    chain.push(tee.clone());
    add(&chain)?;
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
    // Encoders and muxers need one frame size per stream, and x264 an even one: image sources change
    // size from item to item, and cameras switch resolution mid-stream. Each encoded output scales
    // every frame into one size, keeping its aspect ratio: `images.output` for images, else the first
    // frame's size rounded up to even (set when the first caps reach the tee, see `fix_output_size`).
    let sized = Arc::new(Mutex::new(Vec::<gst::Element>::new()));
    let fit = |what: &str| -> Result<Vec<gst::Element>, RunError> {
        let scale = make("videoscale", &format!("{n}-{what}-scale"))?;
        set_prop(&scale, "add-borders", Prop::Bool(true))?;
        let caps = make("capsfilter", &format!("{n}-{what}-size"))?;
        match &src.images {
            Some(im) => caps.set_property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("width", im.output.0 as i32)
                    .field("height", im.output.1 as i32)
                    .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                    .build(),
            ),
            None => lock(&sized).push(caps.clone()),
        }
        Ok(vec![scale, caps])
    };
    let mut branches: Vec<Vec<gst::Element>> = Vec::new();
    let gated_rtsp = plan.rtsp.is_some() && spec.rtsp_feed.is_some();
    if let (Some(r), Some(feed)) = (&plan.rtsp, spec.rtsp_feed) {
        let q = queue("rtsp")?;
        // Encoding only for viewers: while the mount has no client, frames are dropped here, before
        // the scaler, the converter and the encoder (see `crate::rtsp`).
        feed.gate(&static_sink_pad(&q)?, true);
        let conv = make("videoconvert", &format!("{n}-rtsp-convert"))?;
        let mut b = vec![q];
        b.extend(fit("rtsp")?);
        b.push(conv);
        b.extend(rtsp_tail(&format!("{n}-rtsp"), r, sync, feed)?);
        branches.push(b);
    }
    let mut mosaic_branch = None;
    if let Some(tile) = &spec.mosaic {
        // Leaky: a mosaic that falls behind drops tiles' frames, never slows the stream's own outputs.
        let q = queue("mosaic")?;
        set_prop(&q, "leaky", Prop::Text("downstream"))?;
        // Nobody watches the mosaic: the tile is neither scaled nor converted (the compositor keeps
        // the tile's last frame, as for a stalled source).
        tile.feed.gate(&static_sink_pad(&q)?, false);
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
    if let Some(path) = &spec.file {
        let (bitrate, encoder) = cfg
            .outputs
            .file
            .as_ref()
            .map(|f| (f.bitrate_kbps, f.encoder))
            .unwrap_or((4000, crate::config::EncoderChoice::Auto));
        let q = queue("file")?;
        let conv = make("videoconvert", &format!("{n}-file-convert"))?;
        let enc = make_h264_encoder(
            &format!("{n}-file-encode"),
            encoder,
            bitrate,
            EncoderUse::File,
        )?;
        let parse = make("h264parse", &format!("{n}-file-parse"))?;
        let mux = make("mp4mux", &format!("{n}-file-mux"))?;
        let sink = make("filesink", &format!("{n}-file-sink"))?;
        set_prop(&sink, "location", Prop::Str(&path.to_string_lossy()))?;
        set_prop(&sink, "sync", Prop::Bool(sync))?;
        set_prop(&sink, "async", Prop::Bool(false))?;
        let mut b = vec![q];
        b.extend(fit("file")?);
        b.extend([conv, enc, parse, mux, sink]);
        branches.push(b);
    }
    // With `realtime` the sinks hold the stream to the clock; an idle RTSP branch drops its frames
    // before its sink, so without a file output (whose sink is synchronised) a fakesink on the clock
    // keeps the stream's pace (as the appsink did when it got every frame).
    if sync && gated_rtsp && spec.file.is_none() {
        let q = queue("rtsp-pace")?;
        let sink = make("fakesink", &format!("{n}-rtsp-pace"))?;
        set_prop(&sink, "sync", Prop::Bool(true))?;
        set_prop(&sink, "async", Prop::Bool(false))?;
        set_prop(&sink, "enable-last-sample", Prop::Bool(false))?;
        branches.push(vec![q, sink]);
    }
    if branches.is_empty() && mosaic_branch.is_none() {
        let q = queue("null")?;
        let sink = make("fakesink", &format!("{n}-null-sink"))?;
        set_prop(&sink, "sync", Prop::Bool(sync))?;
        set_prop(&sink, "async", Prop::Bool(false))?;
        branches.push(vec![q, sink]);
    }
    let mut terminals = Vec::new();
    for b in &branches {
        add(b)?;
        gst::Element::link_many(b)
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link an output: {e}")))?;
        tee.link(&b[0])
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link an output: {e}")))?;
        if let Some(p) = b.last().and_then(|e| e.static_pad("sink")) {
            terminals.push(p);
        }
    }
    if let (Some(b), Some(tile)) = (&mosaic_branch, &spec.mosaic) {
        add(b)?;
        gst::Element::link_many(b)
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link the mosaic: {e}")))?;
        tee.link(&b[0])
            .map_err(|e| RunError::Setup(format!("[{n}] cannot link the mosaic: {e}")))?;
        let pad = tile
            .compositor
            .request_pad_simple("sink_%u")
            .ok_or_else(|| RunError::Setup(format!("[{n}] the compositor has no free pad")))?;
        *mosaic_pad = Some(pad.clone());
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
        // Not a terminal that a removal drains to: the compositor holds a tile's frame until the
        // mosaic's time reaches it, so the end-of-stream behind it may wait for seconds; the tile's
        // pad is released (flushed) after the stream's own outputs have drained.
        branches.push(b.clone());
    }

    // Counters, end-to-end latency and events after the tracker, the analytics and the secondary models.
    let track_src = analytics_end
        .static_pad("src")
        .ok_or_else(|| RunError::Setup("the analytics chain has no src pad".into()))?;
    let source_name = n.clone();
    let events_ok = Arc::new(AtomicBool::new(true));
    track_src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        if let Some(buffer) = info.buffer() {
            let meta = buffer.meta::<VigilMeta>();
            let frame = meta.as_ref().map(|m| m.frame());
            stats.record(frame);
            if let Some(latency) = frame_latency(pad, buffer) {
                stats.record_latency(latency);
            }
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
    if !lock(&sized).is_empty() {
        // Every caps before the first frame (a rotated phone clip is renegotiated upright before it):
        // the last of them is the first frame's.
        let probe = gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER;
        tee_sink.add_probe(probe, move |_, info| match &info.data {
            Some(gst::PadProbeData::Event(e)) => {
                if let gst::EventView::Caps(c) = e.view() {
                    fix_output_size(&lock(&sized), c.caps());
                }
                gst::PadProbeReturn::Ok
            }
            Some(gst::PadProbeData::Buffer(_)) => gst::PadProbeReturn::Remove,
            _ => gst::PadProbeReturn::Ok,
        });
    }
    tee_sink.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
        post_stream_message(pad, FIRST_FRAME, index);
        gst::PadProbeReturn::Remove
    });

    // The end of this source's stream (its own end, a stop request or its failure).
    tee_sink.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
        if let Some(ev) = info.event()
            && ev.type_() == gst::EventType::Eos
        {
            post_stream_message(pad, SOURCE_DONE, index);
        }
        gst::PadProbeReturn::Ok
    });

    add(std::slice::from_ref(&decode))?;
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
        terminals,
        mosaic_pad: mosaic_pad.clone(),
    })
}

/// Fixes the encoded outputs' frame size of a video source at its first frame's caps: that size rounded up
/// to even (what x264 and NVENC take for 4:2:0), with the frame's pixel aspect ratio; later frames of
/// another size are scaled into it with borders (the capsfilters after `videoscale add-borders`).
fn fix_output_size(filters: &[gst::Element], caps: &gst::CapsRef) {
    let Some(s) = caps.structure(0) else {
        return;
    };
    let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) else {
        return;
    };
    let par = s
        .get::<gst::Fraction>("pixel-aspect-ratio")
        .unwrap_or_else(|_| gst::Fraction::new(1, 1));
    let size = gst::Caps::builder("video/x-raw")
        .field("width", (w + 1) & !1)
        .field("height", (h + 1) & !1)
        .field("pixel-aspect-ratio", par)
        .build();
    for f in filters {
        f.set_property("caps", &size);
    }
}

/// Posts the application message `name` (field `index`: the stream's slot) from `pad`'s element.
fn post_stream_message(pad: &gst::Pad, name: &str, index: usize) {
    if let Some(element) = pad.parent_element() {
        let msg = gst::message::Application::builder(
            gst::Structure::builder(name)
                .field("index", index as u32)
                .build(),
        )
        .src(&element)
        .build();
        let _ = element.post_message(msg);
    }
}

/// How late `buffer` is at `pad`: the clock's running time now minus the buffer's running time
/// (its timestamp in the pad's segment). `None` when it is early (a file played faster than real
/// time) or either time is unknown.
fn frame_latency(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<Duration> {
    let late = frame_lateness(pad, buffer)?;
    (late >= 0).then(|| Duration::from_nanos(u64::try_from(late).unwrap_or(u64::MAX)))
}

/// The clock's running time now minus `buffer`'s running time at `pad` (negative when early), in
/// nanoseconds.
fn frame_lateness(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<i128> {
    let pts = buffer.pts()?;
    let segment = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = segment.segment().downcast_ref::<gst::ClockTime>()?;
    let running = segment.to_running_time(pts)?;
    let running = i128::from(running.nseconds()) + i128::from(pad.offset());
    let element = pad.parent_element().or_else(|| {
        pad.parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.downcast::<gst::Element>().ok())
    })?;
    let now = element.current_running_time()?;
    Some(i128::from(now.nseconds()) - running)
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

/// The life of one stream slot of a running pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotStatus {
    /// Frames flow (or will).
    Running,
    /// Ended (end-of-stream, or a stop request).
    Done,
    /// Failed (its branch was ended).
    Failed,
    /// Being drained and removed (`DELETE /streams/{id}`).
    Removing,
    /// Removed; its elements are gone.
    Removed,
}

/// One stream of the running pipeline: a source of the config, or one added at run time.
struct Slot {
    name: String,
    stats: Arc<SourceStats>,
    /// The branch; `None` for a source that could not start and after removal.
    parts: Option<SourceParts>,
    /// Every element of the branch, weakly: bus messages are attributed to their stream, also when
    /// they arrive after the stream was removed.
    weak: Vec<glib::WeakRef<gst::Element>>,
    /// The stream's RTSP mount.
    mount: Option<String>,
    /// The stream's mosaic tile.
    tile: Option<usize>,
    status: SlotStatus,
    /// Its source said `reconnecting` and not yet `connected` again. Kept here, not read from the
    /// stats: the first frame after a reconnection (which posts `connected`) already moves the stats
    /// to `Playing` on the streaming thread, sometimes before the bus watch sees the message.
    reconnecting: bool,
}

/// The running pipeline, shared by the main loop (bus, timers) and the HTTP API's control calls.
struct Live {
    plan: Plan,
    pipeline: gst::Pipeline,
    slots: Mutex<Vec<Slot>>,
    /// What `GET /streams` and `/metrics` show: the streams not removed.
    registry: Arc<crate::api::StreamRegistry>,
    rtsp: Option<RtspOutput>,
    compositor: Option<gst::Element>,
    background: Option<gst::Element>,
    background_ended: AtomicBool,
    events: Mutex<Option<EventSender>>,
    outcome: Mutex<Option<Outcome>>,
    main_loop: glib::MainLoop,
    /// A failed source's error, in the order of failure.
    failures: Mutex<Vec<RunError>>,
    verbose: bool,
    /// Set by a stop request: no stream is added any more.
    stopping: AtomicBool,
    /// Serialises add and remove requests.
    control: Mutex<()>,
    /// The pipeline's latency: see [`raise_latency`].
    latency: LatencyGuard,
    /// A shard that holds none of the fleet's sources: it runs until stopped, whatever streams are
    /// added to it and removed through the API.
    idle_shard: bool,
}

/// The pipeline latency Vigil applies (nanoseconds).
#[derive(Debug, Default)]
struct LatencyGuard {
    /// The largest latency the live sources have asked for since the last removal.
    floor: AtomicU64,
    /// The most it may be: the largest `latency_ms` of the streams (the jitter buffers) plus
    /// [`LATENCY_HEADROOM`] for decoders and queues.
    ceiling: AtomicU64,
    /// The last figure above the ceiling that was reported (each new one is reported once).
    refused: AtomicU64,
}

/// What the ceiling of the pipeline's latency allows beyond the largest `latency_ms` of the streams:
/// decoders' reordering and queues (2 s).
const LATENCY_HEADROOM: Duration = Duration::from_secs(2);

/// The jitter-buffer latency of a source (`latency_ms`, else `vigilsrc`'s default).
fn source_latency(cfg: &crate::config::SourceConfig) -> Duration {
    Duration::from_millis(u64::from(
        cfg.latency_ms
            .unwrap_or(gstvigil::source::DEFAULT_LATENCY_MS),
    ))
}

impl LatencyGuard {
    fn new(largest_source_latency: Duration) -> Self {
        let g = LatencyGuard::default();
        g.admit(largest_source_latency);
        g
    }

    /// A stream with this jitter-buffer latency joins.
    fn admit(&self, source_latency: Duration) {
        let ceiling = (source_latency + LATENCY_HEADROOM).as_nanos();
        self.ceiling
            .fetch_max(u64::try_from(ceiling).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a removed stream may take to drain its outputs before it is torn down anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

impl Live {
    fn finish(&self, o: Outcome) {
        let mut cur = lock(&self.outcome);
        if cur.is_none() {
            *cur = Some(o);
        }
        self.main_loop.quit();
    }

    /// The slot whose branch holds `src`.
    fn owner(&self, src: &gst::Object) -> Option<usize> {
        let slots = lock(&self.slots);
        slots.iter().position(|s| {
            s.weak.iter().any(|w| {
                w.upgrade().is_some_and(|el| {
                    src == el.upcast_ref::<gst::Object>() || src.has_as_ancestor(&el)
                })
            })
        })
    }

    /// A stream's end-of-stream reached its outputs.
    fn source_ended(&self, i: usize) {
        {
            let mut slots = lock(&self.slots);
            match slots.get_mut(i) {
                Some(s) if s.status == SlotStatus::Running => {
                    s.status = SlotStatus::Done;
                    if s.stats.state() != StreamState::Error {
                        s.stats.set_state(StreamState::Ended);
                    }
                }
                _ => return,
            }
        }
        self.check_end(false);
    }

    /// Once no stream runs any more: ends the mosaic's live background, so the pipeline reaches its
    /// end-of-stream; after a removal (whose outputs are gone) the run ends at once.
    fn check_end(&self, after_removal: bool) {
        if self.idle_shard && !self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let running = lock(&self.slots)
            .iter()
            .any(|s| matches!(s.status, SlotStatus::Running | SlotStatus::Removing));
        if running {
            return;
        }
        if let Some(bg) = &self.background
            && !self.background_ended.swap(true, Ordering::SeqCst)
        {
            bg.send_event(gst::event::Eos::new());
        }
        if after_removal {
            self.finish(Outcome::Eos);
        }
    }

    /// Reads each source's own counters (decoded and dropped frames) into its stats.
    fn poll_counters(&self) {
        let slots = lock(&self.slots);
        for s in slots.iter() {
            if let Some(p) = &s.parts {
                poll_source(p, &s.stats);
            }
        }
    }

    /// Sends end-of-stream into every running stream (a stop request).
    ///
    /// Each end-of-stream is sent from a thread of its own: sending it waits for the stream's lock of
    /// the branch's entry, which a stream whose sink waits on the clock holds for as long; the main
    /// loop goes on (a second interrupt, or the stop timeout, still ends the run).
    fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let entries: Vec<gst::Pad> = lock(&self.slots)
            .iter()
            .filter(|s| s.status == SlotStatus::Running)
            .filter_map(|s| s.parts.as_ref().map(|p| p.convert_sink.clone()))
            .collect();
        // Streams still to end: those told to now, and those being drained by a removal.
        let ending = entries.len()
            + lock(&self.slots)
                .iter()
                .filter(|s| s.status == SlotStatus::Removing)
                .count();
        for pad in entries {
            let sent = std::thread::Builder::new()
                .name("vigil-stop".into())
                .spawn({
                    let pad = pad.clone();
                    move || {
                        pad.send_event(gst::event::Eos::new());
                    }
                });
            if sent.is_err() {
                pad.send_event(gst::event::Eos::new());
            }
        }
        if let Some(bg) = &self.background
            && !self.background_ended.swap(true, Ordering::SeqCst)
        {
            bg.send_event(gst::event::Eos::new());
        } else if ending == 0 {
            // Nothing left that could reach an end-of-stream (an idle shard, every stream removed).
            self.finish(Outcome::Eos);
        }
    }

    /// Adds a stream at run time (`POST /streams`).
    fn add_stream(&self, body: &[u8]) -> Result<serde_json::Value, ControlError> {
        let _serial = lock(&self.control);
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ControlError::new(409, "the pipeline is stopping"));
        }
        let (cfg, sp) = self
            .plan
            .parse_added_source(body)
            .map_err(|m| ControlError::new(400, m))?;
        let name = sp.name.clone();
        if lock(&self.slots)
            .iter()
            .any(|s| s.name == name && s.status != SlotStatus::Removed)
        {
            return Err(ControlError::new(
                409,
                format!("a stream named '{name}' exists already"),
            ));
        }
        let mount = self.plan.added_mount(&name);
        let feed = match (&self.rtsp, &mount) {
            (Some(r), Some(m)) => Some(r.add_mount(m).map_err(|e| ControlError::new(409, e))?),
            _ => None,
        };
        let mosaic_plan = self.plan.rtsp.as_ref().and_then(|r| r.mosaic.as_ref());
        let mut slots = lock(&self.slots);
        let tile = match (&self.compositor, mosaic_plan) {
            (Some(_), Some(m)) => (0..m.capacity()).find(|t| {
                !slots
                    .iter()
                    .any(|s| s.tile == Some(*t) && s.status != SlotStatus::Removed)
            }),
            _ => None,
        };
        let stats = Arc::new(SourceStats::with_uri(&name, &sp.uri));
        let index = slots.len();
        let spec = SourceSpec {
            plan: &sp,
            cfg: &cfg,
            file: self.plan.added_file(&name),
            rtsp_feed: feed,
            mosaic: match (tile, &self.compositor, mosaic_plan) {
                (Some(t), Some(c), Some(m)) => {
                    let (x, y, width, height) = m.tile(t);
                    Some(MosaicTile {
                        compositor: c.clone(),
                        feed: self
                            .rtsp
                            .as_ref()
                            .and_then(|r| r.feed(&m.mount))
                            .unwrap_or_default(),
                        x,
                        y,
                        width,
                        height,
                    })
                }
                _ => None,
            },
            index,
            stats: stats.clone(),
            events: lock(&self.events).clone(),
        };
        let file = spec.file.clone();
        self.latency.admit(source_latency(&cfg));
        let parts = match build_source(&self.pipeline, &self.plan, spec) {
            Ok(p) => p,
            Err(e) => {
                drop(slots);
                if let (Some(r), Some(m)) = (&self.rtsp, &mount) {
                    r.remove_mount(m);
                }
                return Err(ControlError::new(500, e.to_string()));
            }
        };
        slots.push(Slot {
            name: name.clone(),
            stats: stats.clone(),
            weak: parts.elements.iter().map(|e| e.downgrade()).collect(),
            parts: Some(parts.clone()),
            mount: mount.clone(),
            tile,
            status: SlotStatus::Running,
            reconnecting: false,
        });
        drop(slots);
        self.registry.add(stats);
        // A file's timestamps start at 0: its first frame is shifted to the running time at which it
        // leaves the source, so it plays from "now" instead of being late by the time run so far.
        if !is_live_uri(&sp.uri)
            && let Some(pad) = parts.src.static_pad("src")
        {
            pad.add_probe(gst::PadProbeType::BUFFER, |pad, info| {
                if let Some(buffer) = info.buffer()
                    && let Some(late) = frame_lateness(pad, buffer)
                {
                    // Sticky events (the segment) are sent again with the new offset before this
                    // buffer.
                    let offset = i128::from(pad.offset()) + late;
                    pad.set_offset(i64::try_from(offset.max(0)).unwrap_or(i64::MAX));
                }
                gst::PadProbeReturn::Remove
            });
        }
        // Downstream first, the source last.
        for e in parts.elements.iter().rev() {
            let _ = e.sync_state_with_parent();
        }
        let url = match (&self.rtsp, &mount) {
            (Some(r), Some(m)) => Some(r.url(m)),
            _ => None,
        };
        if self.verbose {
            eprintln!(
                "vigil: {}: added source {name} = {}{}",
                self.plan.config.name,
                sp.uri,
                url.as_ref()
                    .map(|u| format!(" (RTSP {u})"))
                    .unwrap_or_default()
            );
        }
        Ok(serde_json::json!({
            "id": name,
            "name": name,
            "uri": sp.uri,
            "state": StreamState::Starting.as_str(),
            "rtsp": url,
            "mosaic_tile": tile,
            "file": file.map(|f| f.display().to_string()),
        }))
    }

    /// Drains and removes a stream (`DELETE /streams/{id}`): the source is stopped, end-of-stream
    /// runs through its outputs (files finished, RTSP clients told), then its elements, RTSP mount and
    /// mosaic tile are released.
    fn remove_stream(&self, id: &str) -> Result<serde_json::Value, ControlError> {
        let _serial = lock(&self.control);
        let (i, parts, prev, mount, stats) = {
            let mut slots = lock(&self.slots);
            let i = slots
                .iter()
                .position(|s| s.name == id && s.status != SlotStatus::Removed)
                .ok_or_else(|| ControlError::new(404, format!("no stream '{id}'")))?;
            let s = &mut slots[i];
            let prev = s.status;
            s.status = SlotStatus::Removing;
            (i, s.parts.clone(), prev, s.mount.clone(), s.stats.clone())
        };
        let mut drained = true;
        if let Some(p) = &parts {
            if prev == SlotStatus::Running
                && let Err(missed) = drain(p, DRAIN_TIMEOUT)
            {
                drained = false;
                eprintln!(
                    "warning: {}: stream {id}: end-of-stream did not reach {} within {} s",
                    self.plan.config.name,
                    missed.join(", "),
                    DRAIN_TIMEOUT.as_secs()
                );
            }
            poll_source(p, &stats);
            // The mosaic tile first: a compositor that holds the tile's frame (it is ahead of the
            // mosaic's time, or the mosaic waits) blocks the tile's scaler in its push, holding its
            // streaming lock; releasing the pad flushes it, so stopping the scaler does not wait.
            if let (Some(c), Some(pad)) = (&self.compositor, &p.mosaic_pad) {
                c.release_request_pad(pad);
            }
            // Sinks next: a sink that never got its first frame (a camera that never answered) waits
            // in PAUSED for one, holding its upstream queue's streaming lock; stopping that queue
            // before the sink would wait for the lock forever (and with it every later API call).
            for e in p.elements.iter().rev() {
                let _ = e.set_locked_state(true);
                let _ = e.set_state(gst::State::Null);
            }
            for e in &p.elements {
                let _ = self.pipeline.remove(e);
            }
        }
        if let (Some(r), Some(m)) = (&self.rtsp, &mount) {
            r.remove_mount(m);
        }
        if stats.state() != StreamState::Error {
            stats.set_state(StreamState::Stopped);
        }
        self.registry.remove(id);
        {
            let mut slots = lock(&self.slots);
            slots[i].status = SlotStatus::Removed;
            slots[i].parts = None;
        }
        reset_latency(&self.pipeline, &self.latency);
        drop(parts);
        release_freed_memory();
        if self.verbose {
            eprintln!(
                "vigil: {}: removed source {id}{}",
                self.plan.config.name,
                if drained {
                    ""
                } else {
                    " (its outputs did not drain in time)"
                }
            );
        }
        let snap = stats.snapshot();
        self.check_end(true);
        Ok(serde_json::json!({
            "id": id,
            "name": id,
            "state": snap.state.as_str(),
            "frames": snap.frames_out,
            "frames_in": snap.frames_in,
            "dropped": snap.dropped,
            "reconnects": snap.reconnects,
            "drained": drained,
        }))
    }
}

impl crate::api::StreamControl for Live {
    fn add(&self, body: &[u8]) -> Result<serde_json::Value, ControlError> {
        self.add_stream(body)
    }
    fn remove(&self, id: &str) -> Result<serde_json::Value, ControlError> {
        self.remove_stream(id)
    }
}

/// A latency message: the pipeline's latency is recalculated (to the live sources' largest, the
/// latency query's minimum) when that is at least the floor, the largest seen so far, and kept as it
/// is otherwise; it is lowered only when a stream is removed ([`reset_latency`]). A camera that
/// reconnects reports no latency for a moment and its full latency again once connected;
/// recalculating each time lowered and raised the latency of every synchronised sink of the pipeline,
/// which stalled all the other streams for the difference. A figure above the ceiling is not applied
/// (every stream would stall for it; the churn saw 8.9 s reported while streams came and went) and
/// is reported once, with the sinks whose branches report it.
fn raise_latency(pipeline: &gst::Pipeline, guard: &LatencyGuard) {
    let mut q = gst::query::Latency::new();
    if pipeline.query(&mut q)
        && let (true, min, _) = q.result()
    {
        let min = min.nseconds();
        if min < guard.floor.load(Ordering::SeqCst) {
            return;
        }
        let ceiling = guard.ceiling.load(Ordering::SeqCst);
        if min > ceiling {
            if guard.refused.swap(min, Ordering::SeqCst) != min {
                report_latency_above(pipeline, min, ceiling);
            }
            return;
        }
        guard.floor.store(min, Ordering::SeqCst);
    }
    let _ = pipeline.recalculate_latency();
}

/// Says which sinks' branches report a latency above `ceiling` (ns); the pipeline's is kept.
fn report_latency_above(pipeline: &gst::Pipeline, min: u64, ceiling: u64) {
    let culprits: Vec<String> = pipeline
        .iterate_sinks()
        .into_iter()
        .flatten()
        .filter_map(|sink| {
            let mut q = gst::query::Latency::new();
            let (ok, m, _) = if sink.query(&mut q) {
                q.result()
            } else {
                (false, gst::ClockTime::ZERO, None)
            };
            (ok && m.nseconds() > ceiling).then(|| format!("{} ({m})", sink.name()))
        })
        .collect();
    eprintln!(
        "warning: the streams report a latency of {} (more than the {} their latency_ms allow), \
         upstream of {}: the pipeline's latency stays as it is",
        gst::ClockTime::from_nseconds(min),
        gst::ClockTime::from_nseconds(ceiling),
        if culprits.is_empty() {
            "no sink on its own".to_string()
        } else {
            culprits.join(", ")
        }
    );
}

/// After a stream was removed: the pipeline's latency becomes the remaining live sources' largest
/// again (while they run it is only raised, see [`raise_latency`]).
fn reset_latency(pipeline: &gst::Pipeline, guard: &LatencyGuard) {
    guard.floor.store(0, Ordering::SeqCst);
    raise_latency(pipeline, guard);
}

/// Drops the stopped pipeline. An element that did not reach NULL with it (seen: a camera's
/// `rtspsrc` and its RTP manager, PAUSED and state-locked, when the stop met a reconnection) is stopped
/// again; were one still running, disposing it would abort the process (GStreamer-CRITICAL, then
/// `g_mutex_clear` on a locked mutex), so the pipeline is left to the process's exit instead.
fn release_pipeline(pipeline: gst::Pipeline) {
    let running = |e: &gst::Element| e.current_state() != gst::State::Null;
    let stuck: Vec<gst::Element> = pipeline
        .iterate_recurse()
        .into_iter()
        .flatten()
        .filter(running)
        .collect();
    for e in &stuck {
        e.set_locked_state(false);
        let _ = e.set_state(gst::State::Null);
    }
    let still: Vec<String> = stuck
        .iter()
        .filter(|e| running(e))
        .map(|e| format!("{} ({:?})", e.path_string(), e.current_state()))
        .collect();
    if still.is_empty() {
        drop(pipeline);
    } else {
        eprintln!(
            "warning: {} did not stop; the pipeline is left to the process's exit",
            still.join(", ")
        );
        std::mem::forget(pipeline);
    }
}

/// A `vigilinfer`'s model version and, for a remote model, its servers (`model-version` -1: the
/// servers' choice when the config gave no version).
fn set_model_source(infer: &gst::Element, m: &crate::config::ModelPlan) -> Result<(), RunError> {
    if m.servers.is_empty() {
        return set_prop(infer, "model-version", Prop::Num(m.version as f64));
    }
    let version = if m.version == 0 {
        -1.0
    } else {
        m.version as f64
    };
    set_prop(infer, "model-version", Prop::Num(version))?;
    set_prop(infer, "server-url", Prop::Str(&m.servers.join(",")))?;
    set_prop(
        infer,
        "server-timeout-ms",
        Prop::Num(m.server_timeout_ms.into()),
    )
}

/// Copies `vigilsrc`'s counters (frames out and dropped, timestamps repaired) and the
/// `vigilinfer`s' frames not inferred (no inference server answered) into `stats`.
fn poll_source(parts: &SourceParts, stats: &SourceStats) {
    let not_inferred = parts
        .elements
        .iter()
        .filter(|e| e.find_property("frames-not-inferred").is_some())
        .map(|e| e.property::<u64>("frames-not-inferred"))
        .sum();
    stats.set_not_inferred(not_inferred);
    let src = &parts.src;
    if src.find_property("frames-dropped").is_none() {
        return;
    }
    let out = src.property::<u64>("frames-out");
    let dropped = src.property::<u64>("frames-dropped");
    let repaired = src.property::<u64>("timestamps-repaired");
    stats.set_source_counters(out + dropped, dropped, repaired);
}

/// Stops the source of a branch and runs end-of-stream through the rest; waits (at most `timeout`)
/// until it has reached every output. `Err` with the outputs it did not reach on timeout.
fn drain(parts: &SourceParts, timeout: Duration) -> Result<(), Vec<String>> {
    let pending = Arc::new((
        Mutex::new(vec![true; parts.terminals.len()]),
        std::sync::Condvar::new(),
    ));
    let mut probes = Vec::new();
    for (k, pad) in parts.terminals.iter().enumerate() {
        let p = pending.clone();
        let id = pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if info
                .event()
                .is_some_and(|e| e.type_() == gst::EventType::Eos)
            {
                let (left, cv) = &*p;
                lock(left)[k] = false;
                cv.notify_all();
            }
            gst::PadProbeReturn::Ok
        });
        probes.push((pad.clone(), id));
    }
    // Nothing more enters the branch; then its end.
    stop_source(parts, SOURCE_STOP_PATIENCE);
    if let Some(peer) = parts.convert_sink.peer() {
        let _ = peer.unlink(&parts.convert_sink);
    }
    parts.convert_sink.send_event(gst::event::Eos::new());
    let (left, cv) = &*pending;
    let deadline = Instant::now() + timeout;
    let mut waiting = lock(left);
    while waiting.iter().any(|&w| w) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        waiting = cv
            .wait_timeout(waiting, deadline - now)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
    let missed: Vec<String> = parts
        .terminals
        .iter()
        .zip(waiting.iter())
        .filter(|(_, w)| **w)
        .map(|(pad, _)| pad.path_string().to_string())
        .collect();
    drop(waiting);
    for (pad, id) in probes.into_iter() {
        if let Some(id) = id {
            pad.remove_probe(id);
        }
    }
    if missed.is_empty() {
        Ok(())
    } else {
        Err(missed)
    }
}

/// How long a removed stream's source may take to stop before its branch is flushed.
const SOURCE_STOP_PATIENCE: Duration = Duration::from_secs(2);

/// Stops the source of a branch. Its pads deactivate only once its streaming thread is out of its
/// push, and that push may wait for as long as the branch's sink waits on the clock (a full queue
/// before a sink holding a frame stamped far ahead, or a pipeline latency raised meanwhile). When
/// the stop takes longer than `patience`, the branch is flushed from its entry, which returns that
/// push at once; the frames queued in the branch are then dropped instead of drained.
fn stop_source(parts: &SourceParts, patience: Duration) {
    let _ = parts.src.set_locked_state(true);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let src = parts.src.clone();
    let stopper = std::thread::Builder::new()
        .name("vigil-stop-src".into())
        .spawn(move || {
            let _ = src.set_state(gst::State::Null);
            let _ = done_tx.send(());
        });
    let Ok(stopper) = stopper else {
        // No thread to spare: stop it here (what the patience guards against may then happen).
        let _ = parts.src.set_state(gst::State::Null);
        return;
    };
    if done_rx.recv_timeout(patience).is_err() {
        eprintln!(
            "warning: {}: the source did not stop within {} s (its branch holds its last frames): \
             the branch is flushed",
            parts.src.name(),
            patience.as_secs()
        );
        parts.convert_sink.send_event(gst::event::FlushStart::new());
        let stopped = done_rx.recv_timeout(patience * 5).is_ok();
        parts
            .convert_sink
            .send_event(gst::event::FlushStop::new(false));
        if !stopped {
            // Held by something a flush does not reach: the removal goes on (its sinks stop next),
            // the thread ends when the source does.
            eprintln!(
                "warning: {}: the source did not stop after its branch was flushed",
                parts.src.name()
            );
            return;
        }
    }
    let _ = stopper.join();
}

/// Gives memory freed by a removed stream back to the system (glibc keeps freed heap otherwise, so
/// the process's resident size would not show the release).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Network schemes whose sources time-stamp frames in the pipeline's running time.
fn is_live_uri(uri: &str) -> bool {
    let scheme = uri.split("://").next().unwrap_or("").to_ascii_lowercase();
    uri.contains("://")
        && matches!(
            scheme.as_str(),
            "rtsp" | "rtsps" | "rtspt" | "rtspu" | "udp" | "srt" | "rtmp" | "rtp"
        )
}

/// Builds and runs the pipeline of `plan` until all sources end, an error occurs or a stop is requested.
///
/// With `api`, streams can be added (`POST /streams`) and removed (`DELETE /streams/{id}`) while it
/// runs; the run ends when no stream is left running.
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
                out.feed(&m.mount).unwrap_or_default(),
            )?),
            None => None,
        },
        _ => None,
    };
    let mosaic_plan = plan.rtsp.as_ref().and_then(|r| r.mosaic.as_ref());
    let mut slots = Vec::new();
    for (i, s) in plan.sources.iter().enumerate() {
        let st = Arc::new(SourceStats::with_uri(&s.name, &s.uri));
        let mount = plan.rtsp.as_ref().map(|r| r.mounts[i].clone());
        let tile = mosaic_plan.map(|_| i);
        if s.problem.is_some() {
            st.set_state(StreamState::Error);
            slots.push(Slot {
                name: s.name.clone(),
                stats: st,
                parts: None,
                weak: Vec::new(),
                mount,
                tile,
                status: SlotStatus::Failed,
                reconnecting: false,
            });
            continue;
        }
        let feed = match (&rtsp, &mount) {
            (Some(r), Some(m)) => r.feed(m),
            _ => None,
        };
        let mosaic_tile = match (&mosaic, mosaic_plan) {
            (Some((compositor, _)), Some(m)) => {
                let (x, y, width, height) = m.tile(i);
                Some(MosaicTile {
                    compositor: compositor.clone(),
                    feed: rtsp
                        .as_ref()
                        .and_then(|r| r.feed(&m.mount))
                        .unwrap_or_default(),
                    x,
                    y,
                    width,
                    height,
                })
            }
            _ => None,
        };
        let spec = SourceSpec {
            plan: s,
            cfg: &plan.config.sources[i],
            file: plan.files.as_ref().map(|f| f[i].clone()),
            rtsp_feed: feed,
            mosaic: mosaic_tile,
            index: i,
            stats: st.clone(),
            events: writer.as_ref().and_then(|w| w.sender()),
        };
        let parts = build_source(&pipeline, plan, spec)?;
        slots.push(Slot {
            name: s.name.clone(),
            stats: st,
            weak: parts.elements.iter().map(|e| e.downgrade()).collect(),
            parts: Some(parts),
            mount,
            tile,
            status: SlotStatus::Running,
            reconnecting: false,
        });
    }
    let n_initial = slots.len();
    let shard_labels = if plan.shard.is_split() {
        vec![("shard", plan.shard.index.to_string())]
    } else {
        Vec::new()
    };
    let registry = Arc::new(
        crate::api::StreamRegistry::new(slots.iter().map(|s| s.stats.clone()).collect())
            .with_labels(shard_labels),
    );
    let (compositor, background) = match mosaic {
        Some((c, bg)) => (Some(c), Some(bg)),
        None => (None, None),
    };
    let live = Arc::new(Live {
        plan: plan.clone(),
        pipeline: pipeline.clone(),
        slots: Mutex::new(slots),
        registry: registry.clone(),
        rtsp,
        compositor,
        background,
        background_ended: AtomicBool::new(false),
        events: Mutex::new(writer.as_ref().and_then(|w| w.sender())),
        outcome: Mutex::new(None),
        main_loop: main_loop.clone(),
        failures: Mutex::new(Vec::new()),
        verbose: opts.verbose,
        stopping: AtomicBool::new(false),
        control: Mutex::new(()),
        idle_shard: plan.shard.is_split() && plan.sources.is_empty(),
        latency: LatencyGuard::new(
            plan.config
                .sources
                .iter()
                .map(source_latency)
                .max()
                .unwrap_or_default(),
        ),
    });
    // Sources that could not start fail alone.
    for s in &plan.sources {
        if let Some(problem) = &s.problem {
            if opts.verbose {
                eprintln!(
                    "warning: source '{}' failed, the other sources go on: {problem}",
                    s.name
                );
            }
            lock(&live.failures).push(RunError::Source {
                name: s.name.clone(),
                error: Box::new(RunError::Setup(problem.clone())),
            });
        }
    }
    // The HTTP API (health, metrics, streams; adding and removing streams) lives as long as this run.
    let api = match &plan.api {
        Some((addr, token)) => {
            let view: Arc<dyn crate::api::StreamsView> = registry.clone();
            let control: Arc<dyn crate::api::StreamControl> = live.clone();
            let server = crate::api::serve_with_control(*addr, token.clone(), view, Some(control))
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

    if opts.verbose {
        if let Some(m) = &plan.model {
            if m.servers.is_empty() {
                eprintln!(
                    "vigil: {name}: model {} v{} ({})",
                    m.name,
                    m.version,
                    m.model_file.display()
                );
            } else {
                eprintln!(
                    "vigil: {name}: model {} on {}",
                    m.name,
                    m.servers.join(", ")
                );
            }
        }
        if let Some(o) = &plan.ocr {
            eprintln!(
                "vigil: {name}: ocr {} / {} / {}",
                o.det_model,
                if o.cls_model.is_empty() {
                    "-"
                } else {
                    &o.cls_model
                },
                o.rec_model
            );
        }
        if let Some(i) = &plan.inspection {
            eprintln!("vigil: {name}: inspection rules {}", i.rules.display());
        }
        for s in &plan.sources {
            eprintln!("vigil: {name}: source {} = {}", s.name, s.uri);
        }
        if let Some(r) = &live.rtsp {
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

    // Going to PLAYING, once.
    let playing = Arc::new(AtomicBool::new(false));
    let go_playing = {
        let weak = pipeline.downgrade();
        let playing = playing.clone();
        let live = live.clone();
        let name = name.clone();
        move || {
            if playing.swap(true, Ordering::SeqCst) {
                return;
            }
            if let Some(p) = weak.upgrade()
                && p.set_state(gst::State::Playing).is_err()
            {
                live.finish(Outcome::Error(RunError::Setup(format!(
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
        let live = live.clone();
        let weak = pipeline.downgrade();
        let go_playing = go_playing.clone();
        let playing = playing.clone();
        // Initial sources that brought their first frame (or can never bring one).
        let mut started: Vec<bool> = plan.sources.iter().map(|s| s.problem.is_some()).collect();
        let mut note_started = move |i: usize| {
            if i < n_initial && !started[i] {
                started[i] = true;
                if started.iter().all(|s| *s) {
                    go_playing();
                }
            }
        };
        let verbose = opts.verbose;
        bus.create_watch(Some("vigil-bus"), glib::Priority::DEFAULT, move |_, msg| {
            use gst::MessageView;
            match msg.view() {
                // vigilsrc's state changes feed the per-stream state and reconnect count.
                MessageView::Element(e)
                    if e.structure().is_some_and(|s| s.name() == "vigilsrc-state") =>
                {
                    let owner = msg.src().and_then(|src| live.owner(src));
                    let state = e.structure().and_then(|s| s.get::<String>("state").ok());
                    if let (Some(i), Some(state)) = (owner, state) {
                        let mut slots = lock(&live.slots);
                        let slot = &mut slots[i];
                        let st = slot.stats.clone();
                        let next = match state.as_str() {
                            "connected" => {
                                if std::mem::take(&mut slot.reconnecting) {
                                    st.record_reconnect();
                                }
                                StreamState::Playing
                            }
                            "reconnecting" => {
                                slot.reconnecting = true;
                                StreamState::Reconnecting
                            }
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
                    if let Some(i) = a.structure().and_then(|s| s.get::<u32>("index").ok()) {
                        note_started(i as usize);
                    }
                }
                MessageView::Application(a)
                    if a.structure().is_some_and(|s| s.name() == SOURCE_DONE) =>
                {
                    if let Some(i) = a.structure().and_then(|s| s.get::<u32>("index").ok()) {
                        live.source_ended(i as usize);
                    }
                }
                MessageView::Eos(_) => live.finish(Outcome::Eos),
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
                    // An error inside one stream's branch ends that branch only.
                    match msg.src().and_then(|src| live.owner(src)) {
                        Some(i) => {
                            let parts = {
                                let mut slots = lock(&live.slots);
                                let s = &mut slots[i];
                                if s.status != SlotStatus::Running {
                                    // Already ended, failed or being removed.
                                    return glib::ControlFlow::Continue;
                                }
                                s.status = SlotStatus::Failed;
                                s.stats.set_state(StreamState::Error);
                                s.parts.clone()
                            };
                            let name = lock(&live.slots)[i].name.clone();
                            if verbose {
                                eprintln!(
                                    "warning: source '{name}' failed, the other sources go on: {err}"
                                );
                            }
                            lock(&live.failures).push(RunError::Source {
                                name,
                                error: Box::new(err),
                            });
                            if let Some(p) = &parts {
                                end_failed_source(p, playing.load(Ordering::SeqCst));
                            }
                            // It will never bring a first frame.
                            note_started(i);
                            live.check_end(false);
                        }
                        None => live.finish(Outcome::Error(err)),
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
                        raise_latency(&p, &live.latency);
                    }
                }
                _ => {}
            }
            glib::ControlFlow::Continue
        })
    };
    bus_source.attach(Some(&context));

    // Progress lines, and the sources' own counters every half second.
    let progress_source = opts.progress_interval.map(|every| {
        let registry = registry.clone();
        let s = glib::timeout_source_new(
            every,
            Some("vigil-progress"),
            glib::Priority::DEFAULT,
            move || {
                for st in registry.stats() {
                    eprintln!("{}", st.progress_line());
                }
                glib::ControlFlow::Continue
            },
        );
        s.attach(Some(&context));
        s
    });
    let poll_source_timer = {
        let live = live.clone();
        let s = glib::timeout_source_new(
            Duration::from_millis(500),
            Some("vigil-poll"),
            glib::Priority::DEFAULT,
            move || {
                live.poll_counters();
                glib::ControlFlow::Continue
            },
        );
        s.attach(Some(&context));
        s
    };

    // Stop requests (signals or the handle).
    if opts.handle_signals {
        crate::signals::install();
    }
    let stop_source = {
        let live = live.clone();
        let handle = opts.stop.clone();
        let handle_signals = opts.handle_signals;
        let timeout = opts.stop_timeout;
        let go_playing = go_playing.clone();
        let mut first_stop: Option<Instant> = None;
        let verbose = opts.verbose;
        let events = writer.as_ref().and_then(|w| w.sender());
        let file = plan.file.clone();
        let s = glib::timeout_source_new(
            Duration::from_millis(100),
            Some("vigil-stop"),
            glib::Priority::DEFAULT,
            move || {
                // A failed events writer (disk full, closed pipe) ends the run with its error.
                if let Some(e) = events.as_ref().and_then(|s| s.error()) {
                    let what = e.clone();
                    live.finish(Outcome::Error(RunError::Output(format!(
                        "{file}: outputs.events.path: writing events failed: {what}"
                    ))));
                    return glib::ControlFlow::Break;
                }
                let requests = handle.requests()
                    + if handle_signals {
                        crate::signals::count()
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
                        live.stop_all();
                    }
                    Some(t) => {
                        if requests > 1 || t.elapsed() > timeout {
                            if t.elapsed() > timeout {
                                eprintln!(
                                    "warning: no end-of-stream {timeout:?} after the stop request; stopping at once"
                                );
                            }
                            live.finish(Outcome::ForcedStop);
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
    let all_files = plan.startable_sources().all(|(_, s)| s.path.is_some());
    if started == Ok(gst::StateChangeSuccess::NoPreroll)
        && !(live.background.is_some() && all_files)
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
        live.finish(Outcome::Error(reason.unwrap_or_else(|| {
            RunError::Setup(format!("pipeline '{name}' failed to start"))
        })));
    } else {
        let _ = context.with_thread_default(|| main_loop.run());
    }
    live.stopping.store(true, Ordering::SeqCst);
    // No more control requests: stop the API (it holds the pipeline through `live`).
    drop(api);
    let outcome = lock(&live.outcome).take().unwrap_or(Outcome::ForcedStop);
    live.poll_counters();

    // Tear down: end RTSP streams, stop the pipeline, flush events.
    if let Some(r) = &live.rtsp {
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
    poll_source_timer.destroy();
    if let Some(p) = progress_source {
        p.destroy();
    }
    if let Some(r) = &live.rtsp {
        r.stop();
    }
    let all_stats: Vec<Arc<SourceStats>> =
        lock(&live.slots).iter().map(|s| s.stats.clone()).collect();
    let failures = std::mem::take(&mut *lock(&live.failures));
    // The probes and `live` hold event senders until the pipeline's elements are gone.
    lock(&live.events).take();
    for s in lock(&live.slots).iter_mut() {
        s.parts = None;
    }
    drop(live);
    release_pipeline(pipeline);
    let events_result = writer.map(|w| w.finish()).unwrap_or(Ok(()));

    let interrupted =
        opts.stop.requests() > 0 || (opts.handle_signals && crate::signals::count() > 0);
    let summary = Summary {
        sources: all_stats.iter().map(|s| s.summary()).collect(),
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
    let mut failures = failures;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A source whose streaming thread is held in a push: a one-frame queue before a synchronised
    /// sink that waits for a frame stamped an hour ahead.
    fn held_branch() -> (gst::Pipeline, SourceParts) {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("videotestsrc")
            .property("timestamp-offset", 3_600_000_000_000i64)
            .build()
            .unwrap();
        let queue = gst::ElementFactory::make("queue")
            .property("max-size-buffers", 1u32)
            .property("max-size-time", 0u64)
            .property("max-size-bytes", 0u32)
            .build()
            .unwrap();
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", true)
            .build()
            .unwrap();
        pipeline.add_many([&src, &queue, &sink]).unwrap();
        gst::Element::link_many([&src, &queue, &sink]).unwrap();
        let parts = SourceParts {
            src: src.clone(),
            convert_sink: queue.static_pad("sink").unwrap(),
            elements: vec![src, queue, sink.clone()],
            terminals: vec![sink.static_pad("sink").unwrap()],
            mosaic_pad: None,
        };
        (pipeline, parts)
    }

    #[test]
    fn a_source_held_by_its_branch_stops_within_its_patience() {
        let (pipeline, parts) = held_branch();
        pipeline.set_state(gst::State::Playing).unwrap();
        // The queue full and the source's thread waiting in its push.
        let q = &parts.elements[1];
        let deadline = Instant::now() + Duration::from_secs(10);
        while q.property::<u32>("current-level-buffers") < 1 {
            assert!(Instant::now() < deadline, "the queue never filled");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        stop_source(&parts, Duration::from_millis(300));
        let took = started.elapsed();
        assert_eq!(parts.src.current_state(), gst::State::Null);
        assert!(took < Duration::from_secs(3), "took {took:?}");
        // The rest of the branch still takes end-of-stream and stops.
        parts.convert_sink.send_event(gst::event::Eos::new());
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
