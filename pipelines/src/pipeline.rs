//! Builds the GStreamer pipeline for a validated [`Plan`] and runs it to the end.
//!
//! Per source:
//!
//! ```text
//! uridecodebin uri=… ! videoconvert ! vigilinfer ! vigiltrack ! [vigilosd] ! tee
//!   tee. ! queue ! videoconvert ! x264enc tune=zerolatency … ! video/x-h264,profile=baseline
//!          ! h264parse config-interval=-1 ! appsink            (→ RTSP server, when outputs.rtsp)
//!   tee. ! queue ! videoconvert ! x264enc ! h264parse ! mp4mux ! filesink   (when outputs.file)
//!   tee. ! queue ! fakesink                                    (when there is no video output)
//! ```
//!
//! A buffer probe on `vigiltrack`'s source pad reads [`VigilMeta`], counts frames/objects/tracks and, with
//! `outputs.events`, hands one `vigil.frame.v1` JSON line per frame to the writer thread. Audio streams are
//! discarded. Everything (bus, RTSP server, progress timer, stop requests) runs on one GLib main loop on
//! the calling thread, in a private main context.

use crate::config::{Plan, one_line};
use crate::events::{EventSender, EventWriter};
use crate::rtsp::{MountFeed, RtspOutput};
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

/// What a stop request needs of a source.
#[derive(Clone)]
struct SourceParts {
    convert_sink: gst::Pad,
    /// Sink pads of elements that discard extra (audio) streams; they also get EOS on stop.
    extra_sinks: Arc<Mutex<Vec<gst::Pad>>>,
}

fn build_source(
    pipeline: &gst::Pipeline,
    plan: &Plan,
    index: usize,
    stats: Arc<SourceStats>,
    events: Option<EventSender>,
    rtsp_feed: Option<MountFeed>,
) -> Result<SourceParts, RunError> {
    let cfg = &plan.config;
    let src = &plan.sources[index];
    let n = &src.name;
    let sync = plan.realtime;

    let decode = make("uridecodebin", &format!("{n}-decode"))?;
    set_prop(&decode, "uri", Prop::Str(&src.uri))?;
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
        .add(&decode)
        .map_err(|e| RunError::Setup(e.to_string()))?;
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
        let enc = make("x264enc", &format!("{n}-rtsp-encode"))?;
        set_prop(&enc, "tune", Prop::Text("zerolatency"))?;
        set_prop(&enc, "speed-preset", Prop::Text("superfast"))?;
        set_prop(&enc, "bitrate", Prop::Num(r.bitrate_kbps.into()))?;
        set_prop(&enc, "key-int-max", Prop::Num(30.0))?;
        let caps = make("capsfilter", &format!("{n}-rtsp-caps"))?;
        caps.set_property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("profile", "baseline")
                .build(),
        );
        let parse = make("h264parse", &format!("{n}-rtsp-parse"))?;
        set_prop(&parse, "config-interval", Prop::Num(-1.0))?;
        let sink = gst_app::AppSink::builder()
            .name(format!("{n}-rtsp-sink"))
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
        branches.push(vec![q, conv, enc, caps, parse, sink.upcast()]);
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
    if branches.is_empty() {
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

    // Decoded streams: the first video stream feeds the chain, anything else is discarded.
    let convert_sink = convert
        .static_pad("sink")
        .ok_or_else(|| RunError::Setup("videoconvert has no sink pad".into()))?;
    let extra_sinks: Arc<Mutex<Vec<gst::Pad>>> = Arc::default();
    let weak_pipeline = pipeline.downgrade();
    let video_sink = convert_sink.clone();
    let extras = extra_sinks.clone();
    let source_name = n.clone();
    decode.connect_pad_added(move |decode, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/"));
        if is_video && !video_sink.is_linked() {
            if let Err(e) = pad.link(&video_sink) {
                gst::element_error!(
                    decode,
                    gst::StreamError::Format,
                    (
                        "[{}] cannot use the decoded video ({:?}, caps {})",
                        source_name,
                        e,
                        caps
                    )
                );
            }
            return;
        }
        let Some(pipeline) = weak_pipeline.upgrade() else {
            return;
        };
        let Ok(sink) = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
        else {
            return;
        };
        if pipeline.add(&sink).is_ok() {
            let _ = sink.sync_state_with_parent();
            if let Some(sp) = sink.static_pad("sink") {
                let _ = pad.link(&sp);
                extras.lock().unwrap_or_else(|p| p.into_inner()).push(sp);
            }
        }
    });
    let video_sink = convert_sink.clone();
    let source_name = n.clone();
    decode.connect_no_more_pads(move |decode| {
        if !video_sink.is_linked() {
            gst::element_error!(
                decode,
                gst::StreamError::WrongType,
                ("[{}] the source has no video stream", source_name)
            );
        }
    });

    Ok(SourceParts {
        convert_sink,
        extra_sinks,
    })
}

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
            RtspOutput::start(&r.address, r.port, &r.mounts, &context)
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
    let mut stats = Vec::new();
    let mut sources = Vec::new();
    for (i, s) in plan.sources.iter().enumerate() {
        let st = Arc::new(SourceStats::new(&s.name));
        stats.push(st.clone());
        let feed = rtsp.as_ref().map(|r| r.feeds[i].1.clone());
        sources.push(build_source(
            &pipeline,
            plan,
            i,
            st,
            writer.as_ref().and_then(|w| w.sender()),
            feed,
        )?);
    }

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
        bus.create_watch(Some("vigil-bus"), glib::Priority::DEFAULT, move |_, msg| {
            use gst::MessageView;
            match msg.view() {
                MessageView::Application(a)
                    if a.structure().is_some_and(|s| s.name() == FIRST_FRAME) =>
                {
                    first_frames += 1;
                    if first_frames >= n_sources {
                        go_playing();
                    }
                }
                MessageView::Eos(_) => finish(Outcome::Eos),
                MessageView::Error(e) => {
                    let path = msg
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_else(|| "pipeline".into());
                    finish(Outcome::Error(RunError::Bus {
                        path,
                        message: one_line(&e.error().to_string()),
                        debug: e.debug().map(|d| one_line(&d)).filter(|d| !d.is_empty()),
                    }));
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
                            for p in part
                                .extra_sinks
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .iter()
                            {
                                p.send_event(gst::event::Eos::new());
                            }
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
    if started == Ok(gst::StateChangeSuccess::NoPreroll) {
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
    Ok(summary)
}

fn describe_events(t: &crate::config::EventsTarget) -> String {
    match t {
        crate::config::EventsTarget::Stdout => "standard output".into(),
        crate::config::EventsTarget::File(p) => p.display().to_string(),
    }
}
