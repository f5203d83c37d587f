//! Many streams in one `vigil run`: sources through `vigilsrc`, per-stream RTSP mounts and a tiled
//! mosaic on one server, a broken source that ends only its own branch, and RTSP basic authentication.
//!
//! Like `e2e_run.rs`, these run the real `vigil` binary (built first; `VIGIL_BIN` overrides) on
//! 127.0.0.1 with a server-chosen port, and read the mounts with in-process GStreamer RTSP clients.
//! Each test is bounded (well under 60 s on 2 cores) and skips with a `SKIPPED` line when the sample
//! media or the NanoDet model are not installed (`make setup`).

use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_tests::{TempDir, Vigil, repo_root, skip};

/// Starts `vigil run config`; returns it and every RTSP URL it prints at start-up (empty without RTSP).
fn start_vigil(config: &Path) -> (Vigil, Vec<String>) {
    let (vigil, info) =
        vigil_tests::start_vigil(config, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    (vigil, info.rtsp)
}

/// What one RTSP client saw.
#[derive(Debug, Default)]
struct ClientResult {
    frames: u64,
    width: i32,
    height: i32,
    seconds: f64,
    error: Option<String>,
}

/// A real RTSP client: `rtspsrc ! rtph264depay ! h264parse ! avdec_h264 ! appsink`, counting frames.
struct Client {
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
    caps: Arc<Mutex<Option<gst::Caps>>>,
    started: Instant,
}

impl Client {
    fn start(url: &str, credentials: Option<(&str, &str)>) -> Client {
        let auth = credentials
            .map(|(u, p)| format!(" user-id={u} user-pw={p}"))
            .unwrap_or_default();
        let launch = format!(
            "rtspsrc location={url} protocols=tcp latency=200{auth} ! rtph264depay ! h264parse \
             ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false"
        );
        let pipeline = gst::parse::launch(&launch)
            .expect("client pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let frames = Arc::new(AtomicU64::new(0));
        let caps: Arc<Mutex<Option<gst::Caps>>> = Arc::default();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let (f2, c2) = (frames.clone(), caps.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(c) = sample.caps() {
                        *c2.lock().unwrap() = Some(c.to_owned());
                    }
                    f2.fetch_add(1, Ordering::SeqCst);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .expect("client plays");
        Client {
            pipeline,
            frames,
            caps,
            started: Instant::now(),
        }
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::SeqCst)
    }

    /// Polls the bus until `want` frames, an error/EOS, or `limit`.
    fn wait_for(&self, want: u64, limit: Duration) -> Option<String> {
        vigil_tests::wait_for_frames(
            &self.pipeline,
            want,
            || self.frames(),
            Instant::now() + limit,
        )
    }

    fn finish(self, error: Option<String>) -> ClientResult {
        let _ = self.pipeline.set_state(gst::State::Null);
        let mut r = ClientResult {
            frames: self.frames(),
            seconds: self.started.elapsed().as_secs_f64(),
            error,
            ..Default::default()
        };
        if let Some(c) = self
            .caps
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|c| c.structure(0).map(|s| s.to_owned()))
        {
            r.width = c.get::<i32>("width").unwrap_or(0);
            r.height = c.get::<i32>("height").unwrap_or(0);
        }
        r
    }
}

/// The media and model these tests need, or `None` after printing a SKIPPED line.
fn needed(test: &str) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let root = repo_root();
    let vtest = root.join("samples/media/vtest.avi");
    let bikes = root.join("samples/media/bikes.mp4");
    let models = root.join("models");
    for f in [&vtest, &bikes, &models.join("nanodet/1/model.onnx")] {
        if !f.is_file() {
            skip(format_args!(
                "{test}: {} is not installed (run `make setup`)",
                f.display()
            ));
            return None;
        }
    }
    gst::init().expect("gst init");
    for f in [
        "rtspsrc",
        "rtph264depay",
        "h264parse",
        "avdec_h264",
        "x264enc",
        "compositor",
    ] {
        assert!(
            gst::ElementFactory::find(f).is_some(),
            "GStreamer element {f} is missing (make setup)"
        );
    }
    Some((vtest, bikes, models))
}

/// Stops `vigil` with SIGINT; asserts exit 0, a summary and no error; returns stderr.
fn interrupt_and_check(vigil: Vigil) -> String {
    let stderr = vigil.stop_clean();
    assert!(!stderr.contains("error:"), "{stderr}");
    assert!(stderr.contains("summary"), "no summary; stderr:\n{stderr}");
    stderr
}

/// The summary lines (`[name] N frames in T s (F fps), ...`).
fn summary_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.trim_start().starts_with('[') && l.contains(" frames in "))
        .collect()
}

#[test]
fn three_sources_with_per_stream_mounts_and_a_mosaic() {
    let Some((vtest, bikes, models)) = needed("three_sources_with_per_stream_mounts_and_a_mosaic")
    else {
        return;
    };
    let dir = TempDir::new("multi");
    let config = dir.path().join("multi.yaml");
    std::fs::write(
        &config,
        format!(
            "name: multi\n\
             model_repository: {models}\n\
             sources:\n\
             \x20 - name: vtest\n    uri: {vtest}\n\
             \x20 - name: bikes-a\n    uri: {bikes}\n    decoder: cpu\n\
             \x20 - name: bikes-b\n    uri: {bikes}\n    loop: true\n    drop_frame_interval: 1\n\
             inference:\n  model: nanodet\n  interval: 2\n\
             outputs:\n\
             \x20 rtsp:\n    port: 0\n    mount: /multi\n    encoder: auto\n\
             \x20 mosaic:\n    width: 640\n    height: 360\n    columns: auto\n    fps: 10\n",
            models = models.display(),
            vtest = vtest.display(),
            bikes = bikes.display(),
        ),
    )
    .unwrap();
    let (vigil, urls) = start_vigil(&config);
    let mosaic = urls
        .iter()
        .find(|u| u.ends_with("/multi-mosaic"))
        .cloned()
        .unwrap_or_else(|| panic!("no mosaic URL in {urls:?}\n{}", vigil.stderr_text()));
    let vtest_url = urls
        .iter()
        .find(|u| u.ends_with("/multi/vtest"))
        .cloned()
        .unwrap_or_else(|| panic!("no vtest URL in {urls:?}"));
    assert_eq!(urls.len(), 4, "{urls:?}");

    // Both clients at once; the mosaic client keeps reading past the end of `bikes-a` (10 s), so a
    // source that ends must not freeze the mosaic.
    let m = Client::start(&mosaic, None);
    let v = Client::start(&vtest_url, None);
    let err_v = v.wait_for(30, Duration::from_secs(40));
    let rv = v.finish(err_v);
    let err_m = m.wait_for(140, Duration::from_secs(40));
    let rm = m.finish(err_m);
    let stderr = vigil.stderr_text();
    assert!(
        rm.error.is_none() && rm.frames >= 140,
        "mosaic client: {rm:?}\n{stderr}"
    );
    assert_eq!((rm.width, rm.height), (640, 360), "mosaic size: {rm:?}");
    assert!(
        rv.error.is_none() && rv.frames >= 30,
        "vtest client: {rv:?}\n{stderr}"
    );
    assert_eq!((rv.width, rv.height), (768, 576), "vtest size: {rv:?}");
    let stderr = interrupt_and_check(vigil);
    eprintln!(
        "mosaic client: {} frames {}x{} in {:.1} s ({:.1} fps)",
        rm.frames,
        rm.width,
        rm.height,
        rm.seconds,
        rm.frames as f64 / rm.seconds
    );
    eprintln!(
        "vtest client: {} frames {}x{} in {:.1} s",
        rv.frames, rv.width, rv.height, rv.seconds
    );
    let summary = summary_lines(&stderr);
    for l in &summary {
        eprintln!("{l}");
    }
    for name in ["[vtest]", "[bikes-a]", "[bikes-b]"] {
        assert!(
            summary.iter().any(|l| l.trim_start().starts_with(name)),
            "no summary for {name}:\n{stderr}"
        );
    }
}

/// Frames in a media file (decoded as fast as possible).
fn count_frames(path: &Path) -> u64 {
    let p = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! video/x-raw ! fakesink name=sink sync=false",
        path.display()
    ))
    .expect("count pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            n2.fetch_add(1, Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        });
    p.set_state(gst::State::Playing).expect("count plays");
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = p.set_state(gst::State::Null);
    assert!(
        matches!(msg.as_ref().map(|m| m.type_()), Some(gst::MessageType::Eos)),
        "counting frames of {} failed: {msg:?}",
        path.display()
    );
    n.load(Ordering::SeqCst)
}

/// A loopback TCP port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// Runs the `gst-launch`-style pipeline `desc` (a writer ending in a file sink) to its end.
fn write_with(desc: &str) {
    let writer = gst::parse::launch(desc).expect("writer pipeline");
    writer.set_state(gst::State::Playing).unwrap();
    let msg = writer
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the writer ends");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{desc}");
    writer.set_state(gst::State::Null).unwrap();
}

/// Writes a short audio-only WAV file (a stream that is not video).
fn write_wav(path: &Path) {
    write_with(&format!(
        "audiotestsrc num-buffers=20 ! wavenc ! filesink location=\"{}\"",
        path.display()
    ));
}

/// A file that does not exist, an audio-only file, a file cut in half and an RTSP camera that is down
/// (2 reconnection attempts) fail, each in one error line naming it, while a good file next to them
/// runs to its last frame; exit 1 only at the end.
#[test]
fn a_broken_source_fails_alone() {
    let Some((_, bikes, models)) = needed("a_broken_source_fails_alone") else {
        return;
    };
    let dir = TempDir::new("broken");
    let data = std::fs::read(&bikes).expect("read bikes.mp4");
    let half = dir.path().join("half.mp4");
    std::fs::write(&half, &data[..data.len() / 2]).unwrap();
    let wav = dir.path().join("tone.wav");
    write_wav(&wav);
    let missing = dir.path().join("nowhere.mp4");
    let events = dir.path().join("events.jsonl");
    let config = dir.path().join("broken.yaml");
    std::fs::write(
        &config,
        format!(
            "name: broken\n\
             model_repository: {models}\n\
             sources:\n\
             \x20 - name: good\n    uri: {bikes}\n\
             \x20 - name: cut\n    uri: {half}\n\
             \x20 - name: camera\n    uri: rtsp://127.0.0.1:{port}/down\n    rtsp_transport: tcp\n    reconnect: {{ interval_ms: 100, max_interval_ms: 200, attempts: 2 }}\n\
             \x20 - name: missing\n    uri: {missing}\n\
             \x20 - name: audio\n    uri: {wav}\n\
             inference:\n  model: nanodet\n  interval: 2\n\
             outputs:\n  events:\n    path: {events}\n  file:\n    path: {video}\n",
            models = models.display(),
            bikes = bikes.display(),
            half = half.display(),
            missing = missing.display(),
            wav = wav.display(),
            port = closed_port(),
            events = events.display(),
            video = dir.path().join("out.mp4").display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (mut vigil, _) = start_vigil(&config);
    let status = vigil.wait(Duration::from_secs(55));
    let stderr = vigil.stderr_text();
    let code = status.and_then(|s| s.code());
    assert_eq!(code, Some(1), "exit status; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        4,
        "one error line per failed source expected:\n{stderr}"
    );
    let cut: Vec<&&str> = errors.iter().filter(|l| l.contains("'cut'")).collect();
    assert_eq!(cut.len(), 1, "{errors:?}");
    assert!(
        cut[0].contains(&half.display().to_string()),
        "the error names the file: {}",
        cut[0]
    );
    let camera: Vec<&&str> = errors.iter().filter(|l| l.contains("'camera'")).collect();
    assert_eq!(camera.len(), 1, "{errors:?}");
    assert!(camera[0].contains("giving up"), "{}", camera[0]);
    let gone: Vec<&&str> = errors.iter().filter(|l| l.contains("'missing'")).collect();
    assert_eq!(gone.len(), 1, "{errors:?}");
    assert!(
        gone[0].contains(&format!(
            "sources[3].uri: no such file {}",
            missing.display()
        )),
        "{}",
        gone[0]
    );
    let audio: Vec<&&str> = errors.iter().filter(|l| l.contains("'audio'")).collect();
    assert_eq!(audio.len(), 1, "{errors:?}");
    assert!(
        audio[0].contains("no video stream") && audio[0].contains("tone.wav"),
        "{}",
        audio[0]
    );
    assert!(errors.iter().all(|l| !l.contains("'good'")), "{errors:?}");

    // The good source ran to its last frame, and its MP4 was finished.
    let want = count_frames(&bikes);
    let text = std::fs::read_to_string(&events).expect("events file");
    let mut good = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("event JSON");
        assert_eq!(
            v["source"], "good",
            "events only from the good source: {line}"
        );
        good.push(v["frame"].as_u64().expect("frame number"));
    }
    assert_eq!(good.len() as u64, want, "good source events");
    assert_eq!(good.iter().max().copied(), Some(want - 1), "last frame");
    let mp4 = dir.path().join("out-good.mp4");
    let mp4_frames = count_frames(&mp4);
    assert!(
        mp4_frames >= want - 2,
        "{mp4_frames} frames in {}",
        mp4.display()
    );
    // The summary (printed before the error) covers both sources.
    let summary = summary_lines(&stderr);
    assert!(
        summary
            .iter()
            .any(|l| l.trim_start().starts_with("[good] ")),
        "{stderr}"
    );
    eprintln!(
        "broken source test: {} events from 'good' ({want} frames), exit {code:?} after {:.1} s; {}",
        good.len(),
        started.elapsed().as_secs_f64(),
        errors.join(" | ")
    );
}

#[test]
fn rtsp_basic_authentication() {
    let Some((_, bikes, models)) = needed("rtsp_basic_authentication") else {
        return;
    };
    let dir = TempDir::new("auth");
    let config = dir.path().join("auth.yaml");
    std::fs::write(
        &config,
        format!(
            "name: guarded\n\
             model_repository: {models}\n\
             sources:\n  - name: bikes\n    uri: {bikes}\n    loop: true\n\
             inference:\n  model: nanodet\n  interval: 2\n\
             outputs:\n  rtsp:\n    port: 0\n    encoder: x264\n    auth:\n      user: watcher\n      password: s3cret\n",
            models = models.display(),
            bikes = bikes.display(),
        ),
    )
    .unwrap();
    let (vigil, urls) = start_vigil(&config);
    assert_eq!(urls.len(), 1, "{urls:?}");
    let url = &urls[0];

    let anonymous = Client::start(url, None);
    let err = anonymous.wait_for(1, Duration::from_secs(20));
    let ra = anonymous.finish(err);
    assert_eq!(
        ra.frames, 0,
        "a client without credentials got video: {ra:?}"
    );
    let why = ra.error.clone().unwrap_or_default();
    assert!(
        why.contains("client error") && why.to_lowercase().contains("unauthorized"),
        "no 401 for a client without credentials: {ra:?}"
    );

    let wrong = Client::start(url, Some(("watcher", "guess")));
    let err = wrong.wait_for(1, Duration::from_secs(20));
    let rw = wrong.finish(err);
    assert_eq!(rw.frames, 0, "a wrong password got video: {rw:?}");

    let good = Client::start(url, Some(("watcher", "s3cret")));
    let err = good.wait_for(30, Duration::from_secs(40));
    let rg = good.finish(err);
    assert!(
        rg.error.is_none() && rg.frames >= 30,
        "authenticated client: {rg:?}\n{}",
        vigil.stderr_text()
    );
    interrupt_and_check(vigil);
    eprintln!(
        "auth: anonymous refused ({why}); authenticated client {} frames {}x{} in {:.1} s",
        rg.frames, rg.width, rg.height, rg.seconds
    );
}

/// An image sequence (a folder of numbered JPEGs) is a source like a video: every image is one frame.
#[test]
fn image_sequence_source_runs_every_image() {
    let Some((_, _, models)) = needed("image_sequence_source_runs_every_image") else {
        return;
    };
    let dir = TempDir::new("sequence");
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    write_with(&format!(
        "videotestsrc num-buffers=12 pattern=ball ! video/x-raw,width=320,height=240 ! jpegenc ! \
         multifilesink location=\"{}/img_%03d.jpg\"",
        frames.display()
    ));
    let events = dir.path().join("events.jsonl");
    let config = dir.path().join("seq.yaml");
    std::fs::write(
        &config,
        format!(
            "name: seq\nmodel_repository: {}\nsources:\n  - name: shots\n    uri: frames/img_%03d.jpg\n\
             inference:\n  model: nanodet\noutputs:\n  events:\n    path: {}\n",
            models.display(),
            events.display()
        ),
    )
    .unwrap();
    let (mut vigil, _) = Vigil::run(&config, &[]);
    let status = vigil.wait(Duration::from_secs(60));
    let stderr = vigil.stderr_text();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    let text = std::fs::read_to_string(&events).expect("events");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12, "{stderr}");
    assert!(
        lines
            .iter()
            .all(|v| v["width"] == 320 && v["height"] == 240)
    );
    // 25 images per second by default.
    assert_eq!(lines[11]["pts_ns"].as_u64(), Some(11 * 40_000_000));
}
