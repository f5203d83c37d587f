//! `vigilsrc` in real pipelines: files to EOS, frame dropping, looping, image sequences and still images,
//! bad input (missing, not video, truncated) and an RTSP camera that goes away and comes back.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_rtsp_server::prelude::*;

/// What one pipeline run produced.
#[derive(Debug, Default)]
struct Run {
    pts: Vec<Option<gst::ClockTime>>,
    error: Option<String>,
    eos: bool,
    states: Vec<String>,
    warnings: Vec<String>,
    /// The caps the sink received, in order.
    caps: Vec<gst::Caps>,
    /// Frames that reached the sink without a duration.
    no_duration: usize,
    /// `vigilsrc`'s `timestamps-repaired` at the end.
    repaired: u64,
}

/// Sets the pipeline to NULL when dropped, also when a test fails half-way.
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

fn media_or_skip(name: &str) -> Option<PathBuf> {
    let p = common::media(name);
    if p.is_file() {
        Some(p)
    } else if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{} is not installed; run `make setup`", p.display());
    } else {
        eprintln!(
            "SKIPPED: {} is not installed; run `make setup`",
            p.display()
        );
        None
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vigilsrc-test-{}-{name}", std::process::id()))
}

fn collect_states(msg: &gst::Message, states: &mut Vec<String>) {
    if let gst::MessageView::Element(e) = msg.view()
        && let Some(s) = e.structure()
        && s.name() == "vigilsrc-state"
        && let Ok(state) = s.get::<String>("state")
    {
        states.push(state);
    }
}

/// Arrival time and PTS of each frame an appsink received.
type Frames = Arc<Mutex<Vec<(Instant, Option<gst::ClockTime>)>>>;

/// An appsink that records the PTS of every sample into `pts`.
fn recording_sink(pipeline: &gst::Pipeline, name: &str) -> Frames {
    let sink = pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let f = frames.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let pts = sample.buffer().and_then(|b| b.pts());
                f.lock().unwrap().push((Instant::now(), pts));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    frames
}

/// Runs `vigilsrc <props> ! appsink` until EOS, an error, `max_frames` frames or `timeout`.
fn run(props: &str, max_frames: Option<usize>, timeout: Duration) -> Run {
    common::init();
    let desc = format!("vigilsrc name=src {props} ! appsink name=sink sync=false");
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let _guard = NullOnDrop(pipeline.clone());
    let frames = recording_sink(&pipeline, "sink");
    let caps = Arc::new(Mutex::new(Vec::new()));
    let c = caps.clone();
    let sinkpad = pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    sinkpad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(e)) = &info.data
            && let gst::EventView::Caps(ev) = e.view()
        {
            c.lock().unwrap().push(ev.caps_owned());
        }
        gst::PadProbeReturn::Ok
    });
    let no_duration = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let nd = no_duration.clone();
    sinkpad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if info.buffer().is_some_and(|b| b.duration().is_none()) {
            nd.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().unwrap();
    let mut out = Run::default();
    if pipeline.set_state(gst::State::Playing).is_err() {
        // The error message says why.
    }
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() > deadline {
            let _ = pipeline.set_state(gst::State::Null);
            panic!("pipeline `{desc}` did not finish within {timeout:?}");
        }
        if let Some(max) = max_frames
            && frames.lock().unwrap().len() >= max
        {
            break;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        collect_states(&msg, &mut out.states);
        match msg.view() {
            gst::MessageView::Eos(_) => {
                out.eos = true;
                break;
            }
            gst::MessageView::Warning(w) => out.warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => {
                out.error = Some(format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                ));
                break;
            }
            _ => {}
        }
    }
    out.repaired = pipeline
        .by_name("src")
        .map_or(0, |s| s.property::<u64>("timestamps-repaired"));
    pipeline
        .set_state(gst::State::Null)
        .unwrap_or_else(|e| panic!("`{desc}` does not go to NULL: {e:?}"));
    while let Some(msg) = bus.pop() {
        collect_states(&msg, &mut out.states);
    }
    out.pts = frames.lock().unwrap().iter().map(|(_, p)| *p).collect();
    out.caps = caps.lock().unwrap().clone();
    out.no_duration = no_duration.load(std::sync::atomic::Ordering::SeqCst);
    out
}

/// Writes `num` frames of `videotestsrc` (`caps`, encoder `enc`) to `location` (a `%03d` pattern),
/// numbered from `index`.
fn write_frames(location: &Path, caps: &str, enc: &str, num: u32, index: u32) {
    common::init();
    let writer = gst::parse::launch(&format!(
        "videotestsrc num-buffers={num} ! {caps} ! {enc} ! multifilesink index={index} \
         location=\"{}\"",
        location.display()
    ))
    .unwrap();
    writer.set_state(gst::State::Playing).unwrap();
    let msg = writer
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the frames are written");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    writer.set_state(gst::State::Null).unwrap();
}

/// A fresh temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = temp_path(name);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn field<'a, T: glib::value::FromValue<'a>>(caps: &'a gst::Caps, name: &str) -> T {
    caps.structure(0).unwrap().get::<T>(name).unwrap()
}

fn uri_prop(path: &Path) -> String {
    format!("uri=\"{}\"", path.display())
}

fn assert_increasing(pts: &[Option<gst::ClockTime>]) {
    let mut last: Option<gst::ClockTime> = None;
    for (i, p) in pts.iter().enumerate() {
        let p = p.unwrap_or_else(|| panic!("frame {i} has no PTS"));
        if let Some(l) = last {
            assert!(p > l, "PTS not increasing at frame {i}: {l} then {p}");
        }
        last = Some(p);
    }
}

#[test]
fn file_plays_to_eos_with_every_frame() {
    let Some(avi) = media_or_skip("vtest.avi") else {
        return;
    };
    let r = run(&uri_prop(&avi), None, Duration::from_secs(50));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.eos);
    assert_eq!(r.pts.len(), 795);
    assert_increasing(&r.pts);
    assert_eq!(r.states.first().map(String::as_str), Some("connecting"));
    assert!(r.states.iter().any(|s| s == "connected"), "{:?}", r.states);
    assert_eq!(r.states.last().map(String::as_str), Some("eos"));

    let Some(mp4) = media_or_skip("bikes.mp4") else {
        return;
    };
    // A file URI and the cpu policy work too.
    let uri = glib::filename_to_uri(&mp4, None).unwrap();
    let r = run(
        &format!("uri=\"{uri}\" decoder=cpu"),
        None,
        Duration::from_secs(30),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.pts.len(), 250);
}

/// Debian opencv-doc's `Megamind.avi`: MPEG-4 Part 2 (XVID) with packed B-frames, decode timestamps
/// only; `avdec_mpeg4` hands out every third frame with the previous frame's time (or 1 ns after it).
#[test]
fn packed_b_frames_get_increasing_timestamps_and_durations() {
    let Some(avi) = media_or_skip("Megamind.avi") else {
        return;
    };
    let r = run(&uri_prop(&avi), None, Duration::from_secs(60));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.eos);
    assert_eq!(r.pts.len(), 270);
    assert_increasing(&r.pts);
    assert_eq!(r.no_duration, 0);
    // About a third of the frames, each moved one frame interval (24000/1001 fps) after the previous.
    assert!((60..=120).contains(&r.repaired), "{} repaired", r.repaired);
    let pts: Vec<u64> = r.pts.iter().map(|p| p.unwrap().nseconds()).collect();
    let min_gap = pts.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(min_gap >= 41_000_000, "frames {min_gap} ns apart");
    // An intact file needs none.
    let Some(mp4) = media_or_skip("bikes.mp4") else {
        return;
    };
    let r = run(&uri_prop(&mp4), None, Duration::from_secs(30));
    assert_eq!((r.pts.len(), r.repaired, r.no_duration), (250, 0, 0));
}

/// A phone clip (pixels turned, a rotation in the metadata) comes out upright; interlaced frames come
/// out deinterlaced, one per frame (the media zoo's files, `make setup`).
#[test]
fn rotated_and_interlaced_video_come_out_upright_and_progressive() {
    let Some(rotated) = media_or_skip("zoo/rotated_90.mp4") else {
        return;
    };
    let r = run(&uri_prop(&rotated), None, Duration::from_secs(30));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.pts.len(), 50);
    let last = r.caps.last().expect("caps");
    assert_eq!(
        (field::<i32>(last, "width"), field::<i32>(last, "height")),
        (640, 272)
    );
    let Some(interlaced) = media_or_skip("zoo/interlaced.ts") else {
        return;
    };
    let r = run(&uri_prop(&interlaced), None, Duration::from_secs(30));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.pts.len(), 50);
    assert_increasing(&r.pts);
    let last = r.caps.last().expect("caps");
    assert_eq!(field::<&str>(last, "interlace-mode"), "progressive");
}

#[test]
fn gpu_policy_without_nvdec_warns_and_decodes_in_software() {
    let Some(mp4) = media_or_skip("bikes.mp4") else {
        return;
    };
    common::init();
    if gst::ElementFactory::find("nvh264dec").is_some() {
        eprintln!("SKIPPED: NVDEC is available here");
        return;
    }
    let r = run(
        &format!("{} decoder=gpu", uri_prop(&mp4)),
        None,
        Duration::from_secs(30),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.pts.len(), 250);
    assert_eq!(
        r.warnings.iter().filter(|w| w.contains("NVDEC")).count(),
        1,
        "{:?}",
        r.warnings
    );
}

#[test]
fn drop_frame_interval_keeps_every_nth_frame() {
    let Some(mp4) = media_or_skip("bikes.mp4") else {
        return;
    };
    let r = run(
        &format!("{} drop-frame-interval=5", uri_prop(&mp4)),
        None,
        Duration::from_secs(30),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.eos);
    assert_eq!(r.pts.len(), 50);
    assert_increasing(&r.pts);
}

#[test]
fn loop_restarts_the_file_with_increasing_timestamps() {
    let Some(mp4) = media_or_skip("bikes.mp4") else {
        return;
    };
    let r = run(
        &format!("{} loop=true", uri_prop(&mp4)),
        Some(600),
        Duration::from_secs(50),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(!r.eos, "a looping file never ends");
    assert!(r.pts.len() >= 600, "{} frames", r.pts.len());
    assert_increasing(&r.pts);
    // Continuity: the first frame of the second pass follows the last one of the first pass.
    let last = r.pts[249].unwrap();
    let next = r.pts[250].unwrap();
    let step = r.pts[1].unwrap() - r.pts[0].unwrap();
    assert!(next - last <= step * 2, "gap at the loop: {last} → {next}");
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let path = common::repo_root().join("samples/media/does-not-exist.mp4");
    let r = run(&uri_prop(&path), None, Duration::from_secs(10));
    let err = r.error.expect("an error");
    assert!(err.contains("does-not-exist.mp4"), "{err}");
    assert!(r.pts.is_empty());
}

#[test]
fn text_file_is_an_error() {
    let path = common::repo_root().join("models/nanodet/labels.txt");
    if !path.is_file() {
        eprintln!("SKIPPED: {} is missing", path.display());
        return;
    }
    let r = run(&uri_prop(&path), None, Duration::from_secs(10));
    let err = r.error.expect("an error");
    assert!(err.contains("labels.txt"), "{err}");
    assert!(r.pts.is_empty());
}

#[test]
fn audio_only_file_is_an_error_naming_the_stream() {
    common::init();
    let wav = temp_path("tone.wav");
    let writer = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=20 ! wavenc ! filesink location=\"{}\"",
        wav.display()
    ))
    .unwrap();
    writer.set_state(gst::State::Playing).unwrap();
    let bus = writer.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the WAV is written");
    assert_eq!(msg.type_(), gst::MessageType::Eos);
    writer.set_state(gst::State::Null).unwrap();

    let r = run(&uri_prop(&wav), None, Duration::from_secs(10));
    let _ = std::fs::remove_file(&wav);
    let err = r.error.expect("an error");
    assert!(err.contains("no video stream"), "{err}");
    assert!(err.contains("tone.wav"), "{err}");
    assert!(err.contains("audio/"), "{err}");
    assert_eq!(r.states.last().map(String::as_str), Some("failed"));
}

#[test]
fn truncated_mp4_ends_without_hanging() {
    let Some(mp4) = media_or_skip("bikes.mp4") else {
        return;
    };
    let data = std::fs::read(&mp4).unwrap();
    let cut = temp_path("half.mp4");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    // decodebin may swallow the demuxer's error (it is still "trying" the demuxer when it fails):
    // then the data timeout ends the stream with an error.
    let r = run(
        &format!("{} data-timeout=3000", uri_prop(&cut)),
        None,
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_file(&cut);
    assert!(r.eos || r.error.is_some());
    if let Some(err) = &r.error {
        assert!(err.contains("half.mp4"), "{err}");
    }
    assert!(r.pts.len() < 250, "{} frames from half a file", r.pts.len());
}

#[test]
fn image_sequence_plays_to_eos_at_its_framerate() {
    let dir = TempDir::new("seq-png");
    // Numbered from 1, as many exporters do.
    write_frames(
        &dir.0.join("f_%03d.png"),
        "video/x-raw,width=160,height=120",
        "pngenc",
        12,
        1,
    );
    std::fs::write(dir.0.join("notes.txt"), "not a frame").unwrap();
    let r = run(
        &format!(
            "{} image-framerate=10/1",
            uri_prop(&dir.0.join("f_%03d.png"))
        ),
        None,
        Duration::from_secs(20),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.eos);
    assert_eq!(r.pts.len(), 12);
    assert_increasing(&r.pts);
    for (i, p) in r.pts.iter().enumerate() {
        assert_eq!(*p, Some(gst::ClockTime::from_mseconds(100 * i as u64)));
    }
    let caps = r.caps.last().expect("caps");
    assert_eq!(
        field::<gst::Fraction>(caps, "framerate"),
        gst::Fraction::new(10, 1)
    );
    assert_eq!(field::<i32>(caps, "width"), 160);
    assert_eq!(r.states.last().map(String::as_str), Some("eos"));

    // JPEG frames, a file:// URI with its conversion written as is, the default framerate (25/1) and
    // drop-frame-interval.
    let dir = TempDir::new("seq-jpeg");
    write_frames(
        &dir.0.join("img_%05d.jpg"),
        "video/x-raw,width=128,height=96",
        "jpegenc",
        12,
        0,
    );
    let uri = format!("file://{}/img_%05d.jpg", dir.0.display());
    let r = run(&format!("uri=\"{uri}\""), None, Duration::from_secs(20));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.eos);
    assert_eq!(r.pts.len(), 12);
    assert_eq!(r.pts[11], Some(gst::ClockTime::from_mseconds(440)));
    let r = run(
        &format!("uri=\"{uri}\" drop-frame-interval=3"),
        None,
        Duration::from_secs(20),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.pts.len(), 4);
    assert_eq!(r.pts[1], Some(gst::ClockTime::from_mseconds(120)));
}

#[test]
fn image_sequence_loops_with_increasing_timestamps() {
    let dir = TempDir::new("seq-loop");
    write_frames(
        &dir.0.join("f_%03d.png"),
        "video/x-raw,width=64,height=48",
        "pngenc",
        12,
        0,
    );
    let r = run(
        &format!(
            "{} loop=true image-framerate=20/1",
            uri_prop(&dir.0.join("f_%03d.png"))
        ),
        Some(40),
        Duration::from_secs(20),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(!r.eos, "a looping sequence never ends");
    assert!(r.pts.len() >= 40, "{} frames", r.pts.len());
    assert_increasing(&r.pts);
    // The second pass follows the first one frame after the last.
    let step = r.pts[1].unwrap() - r.pts[0].unwrap();
    assert_eq!(r.pts[12].unwrap() - r.pts[11].unwrap(), step);
    assert_eq!(r.pts[39], Some(gst::ClockTime::from_mseconds(1950)));
}

#[test]
fn image_sequence_without_files_is_an_error_naming_the_pattern() {
    let dir = TempDir::new("seq-none");
    let r = run(
        &uri_prop(&dir.0.join("none_%04d.png")),
        None,
        Duration::from_secs(10),
    );
    let err = r.error.expect("an error");
    assert!(err.contains("none_%04d.png"), "{err}");
    assert!(err.contains("no file matches"), "{err}");
    assert!(r.pts.is_empty());
    // A folder that does not exist neither.
    let r = run(
        &uri_prop(&dir.0.join("missing/f_%d.jpg")),
        None,
        Duration::from_secs(10),
    );
    let err = r.error.expect("an error");
    assert!(err.contains("missing/f_%d.jpg"), "{err}");
}

#[test]
fn images_of_another_size_are_scaled_to_the_first_images_size() {
    let dir = TempDir::new("seq-sizes");
    let location = dir.0.join("m_%03d.png");
    write_frames(
        &location,
        "video/x-raw,width=160,height=120",
        "pngenc",
        3,
        0,
    );
    write_frames(
        &location,
        "video/x-raw,format=GRAY8,width=320,height=100",
        "pngenc",
        3,
        3,
    );
    let r = run(&uri_prop(&location), None, Duration::from_secs(20));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.eos);
    assert_eq!(r.pts.len(), 6);
    assert_increasing(&r.pts);
    let first = &r.caps[0];
    for c in &r.caps {
        assert_eq!(field::<i32>(c, "width"), 160, "{c}");
        assert_eq!(field::<i32>(c, "height"), 120, "{c}");
        assert_eq!(
            field::<&str>(c, "format"),
            field::<&str>(first, "format"),
            "{c}"
        );
    }
}

#[test]
fn still_image_is_one_frame_or_a_looped_stream() {
    let Some(jpg) = media_or_skip("bus.jpg") else {
        return;
    };
    let r = run(&uri_prop(&jpg), None, Duration::from_secs(10));
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.eos);
    assert_eq!(r.pts, [Some(gst::ClockTime::ZERO)]);
    let r = run(
        &format!("{} loop=true image-framerate=5/1", uri_prop(&jpg)),
        Some(6),
        Duration::from_secs(10),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.pts.len() >= 6);
    assert_eq!(r.pts[5], Some(gst::ClockTime::from_seconds(1)));
}

/// A test RTSP camera (`/cam`, H.264 from `videotestsrc`) on 127.0.0.1:`port`, run by its own main loop.
struct Camera {
    server: gst_rtsp_server::RTSPServer,
    source: Option<glib::SourceId>,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Camera {
    fn start(port: u16) -> Camera {
        let context = glib::MainContext::new();
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(
            "( videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=15/1 ! \
             x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! \
             rtph264pay name=pay0 pt=96 config-interval=1 )",
        );
        factory.set_shared(true);
        server.mount_points().unwrap().add_factory("/cam", factory);
        let source = server.attach(Some(&context)).expect("RTSP server listens");
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let ml = main_loop.clone();
        let thread = std::thread::spawn(move || ml.run());
        Camera {
            server,
            source: Some(source),
            main_loop,
            thread: Some(thread),
        }
    }

    /// Closes every client connection and stops listening.
    fn stop(mut self) {
        self.server
            .client_filter(Some(&mut |_, _| gst_rtsp_server::RTSPFilterResult::Remove));
        if let Some(id) = self.source.take()
            && let Some(source) = self.main_loop.context().find_source_by_id(&id)
        {
            source.destroy();
        }
        // Let the main loop finish closing the connections, then stop it.
        std::thread::sleep(Duration::from_millis(200));
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn rtsp_camera_reconnects_after_an_outage() {
    common::init();
    for f in ["x264enc", "rtph264pay", "rtspsrc", "videotestsrc"] {
        if gst::ElementFactory::find(f).is_none() {
            eprintln!("SKIPPED: element {f} is not installed");
            return;
        }
    }
    let port = free_port();
    let camera = Camera::start(port);
    let desc = format!(
        "vigilsrc name=src uri=rtsp://127.0.0.1:{port}/cam rtsp-transport=tcp latency=100 \
         reconnect-interval=500 reconnect-max-interval=1000 ! appsink name=sink sync=false \
         videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 ! \
         appsink name=other sync=false"
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let _guard = NullOnDrop(pipeline.clone());
    let src = pipeline.by_name("src").unwrap();
    let frames = recording_sink(&pipeline, "sink");
    let other = recording_sink(&pipeline, "other");
    let bus = pipeline.bus().unwrap();
    let mut states = Vec::new();
    pipeline.set_state(gst::State::Playing).unwrap();

    let count = || frames.lock().unwrap().len();
    // Pumps the bus until `done` or the timeout; fails on any error.
    let pump = |timeout: Duration, done: &dyn Fn() -> bool, states: &mut Vec<String>| {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
                collect_states(&msg, states);
                if let gst::MessageView::Error(e) = msg.view() {
                    let _ = pipeline.set_state(gst::State::Null);
                    panic!("pipeline error: {} ({:?})", e.error(), e.debug());
                }
            }
        }
        done()
    };

    assert!(
        pump(Duration::from_secs(15), &|| count() >= 10, &mut states),
        "no frames from the camera: {states:?}"
    );
    assert_eq!(src.property::<String>("state"), "connected");

    // Outage: the camera is gone for 3 s.
    camera.stop();
    let outage = Instant::now();
    pump(Duration::from_secs(3), &|| false, &mut states);
    let during = src.property::<String>("state");
    assert_eq!(during, "reconnecting", "{states:?}");
    let camera = Camera::start(port);
    let before = count();

    assert!(
        pump(
            Duration::from_secs(20),
            &|| count() >= before + 10,
            &mut states
        ),
        "frames did not flow again after the camera came back: {states:?}"
    );
    let reconnected_after = outage.elapsed();
    let reconnects = src.property::<u64>("reconnects");
    let out = src.property::<u64>("frames-out");
    pipeline.set_state(gst::State::Null).unwrap();
    camera.stop();
    while let Some(msg) = bus.pop() {
        collect_states(&msg, &mut states);
    }
    eprintln!("states: {states:?}; frames flowed again {reconnected_after:?} after the outage");

    assert!(reconnects >= 1, "reconnects = {reconnects}");
    assert!(out as usize >= count(), "frames-out {out} < {}", count());
    // connected → reconnecting → connected, in this order.
    let c1 = states.iter().position(|s| s == "connected").unwrap();
    let r = c1
        + states[c1..]
            .iter()
            .position(|s| s == "reconnecting")
            .unwrap();
    assert!(
        states[r..].iter().any(|s| s == "connected"),
        "states: {states:?}"
    );
    // The reconnection never stalled the other branch of the pipeline.
    let other = other.lock().unwrap();
    let max_gap = other
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    assert!(
        max_gap < Duration::from_millis(700),
        "the other branch stalled for {max_gap:?}"
    );
    // Output timestamps never go backwards across the reconnection.
    let pts: Vec<_> = frames.lock().unwrap().iter().map(|(_, p)| *p).collect();
    assert_increasing(&pts);
}

use gst::glib;

#[test]
fn slow_consumer_of_a_live_camera_drops_old_frames() {
    common::init();
    for f in ["x264enc", "rtph264pay", "rtspsrc", "videotestsrc"] {
        if gst::ElementFactory::find(f).is_none() {
            eprintln!("SKIPPED: element {f} is not installed");
            return;
        }
    }
    let port = free_port();
    let camera = Camera::start(port);
    let pipeline = gst::parse::launch(&format!(
        "vigilsrc name=src uri=rtsp://127.0.0.1:{port}/cam rtsp-transport=tcp latency=50 \
         ! appsink name=sink sync=false max-buffers=1"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let _guard = NullOnDrop(pipeline.clone());
    let src = pipeline.by_name("src").unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    // Processing takes 200 ms a frame, the camera sends 15 frames/s.
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let l = latencies.clone();
    let p = pipeline.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let pts = sample.buffer().and_then(|b| b.pts());
                if let (Some(pts), Some(now)) = (pts, p.current_running_time()) {
                    l.lock().unwrap().push(now.saturating_sub(pts));
                }
                std::thread::sleep(Duration::from_millis(200));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50))
            && let gst::MessageView::Error(e) = msg.view()
        {
            panic!("pipeline error: {} ({:?})", e.error(), e.debug());
        }
    }
    let dropped = src.property::<u64>("frames-dropped");
    let out = src.property::<u64>("frames-out");
    pipeline.set_state(gst::State::Null).unwrap();
    camera.stop();
    let latencies = latencies.lock().unwrap();
    eprintln!(
        "frames out {out}, dropped {dropped}, latency of the last frames: {:?}",
        &latencies[latencies.len().saturating_sub(5)..]
    );
    assert!(out >= 5, "frames-out {out}");
    assert!(dropped >= 10, "frames-dropped {dropped}");
    // Latency stays bounded: the queue holds 2 frames, the sink 1, one is being processed.
    let worst_late = latencies
        .iter()
        .skip(latencies.len() / 2)
        .max()
        .copied()
        .unwrap_or_default();
    assert!(
        worst_late < gst::ClockTime::from_mseconds(1500),
        "latency grew to {worst_late}"
    );
}
