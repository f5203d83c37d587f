//! End to end: the real `vigil` binary runs NanoDet + tracking + overlay on `samples/media/vtest.avi`,
//! serving RTSP on a free port of 127.0.0.1 and writing events to a temporary file; in-process GStreamer
//! RTSP clients check that H.264 768x576 arrives and decodes (two clients at once, then a reconnect);
//! then Ctrl-C (SIGINT) must stop `vigil` cleanly (exit 0, summary) and the events must show tracked
//! people whose ids are stable from frame to frame.
//!
//! Why the binary and not the library in-process: this exercises exactly what a user runs (argument
//! parsing, signal handling, exit status, stderr), and a crash cannot take the test harness down with
//! it. The binary is `target/<profile>/vigil` next to this test executable's folder, (re)built first with
//! `cargo build -p vigil --bin vigil` (a no-op when fresh); `VIGIL_BIN=/path/to/vigil` overrides that.
//! The port is chosen by the server (`port: 0`) and read from the URL `vigil` prints, so there is no race
//! for a free port.
//!
//! Skips with a message when the sample media or the NanoDet model are not installed (`make setup`).

use gst::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::objects::{BBox, FrameEvent};
use vigil_tests::{TempDir, Vigil, repo_root, skip};

/// Starts `vigil run config`; returns it and the first RTSP URL it prints.
fn start_vigil(config: &Path) -> (Vigil, String) {
    let (mut vigil, lines) = Vigil::run(config, &[]);
    // The first RTSP URL printed at start-up.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in lines {
            if let Some(i) = line.find("rtsp://") {
                let _ = tx.send(line[i..].trim().to_string());
                break;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(url) => (vigil, url),
        Err(_) => {
            let status = vigil.wait(Duration::from_millis(500));
            panic!(
                "vigil printed no RTSP URL (exit: {status:?}); stderr:\n{}",
                vigil.stderr_text()
            );
        }
    }
}

/// What one RTSP client saw.
#[derive(Debug, Default)]
struct ClientResult {
    frames: u64,
    encoded_caps: Option<String>,
    width: i32,
    height: i32,
    error: Option<String>,
}

/// A real RTSP client: `rtspsrc ! rtph264depay ! h264parse ! avdec_h264 ! appsink`, counting decoded
/// frames. Runs until `want` frames are decoded, an error or end of stream, or `limit`.
struct Client {
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
    caps: Arc<Mutex<Option<gst::Caps>>>,
    encoded: Arc<Mutex<Option<gst::Caps>>>,
}

impl Client {
    fn start(url: &str) -> Client {
        let launch = format!(
            "rtspsrc location={url} protocols=tcp latency=200 ! rtph264depay ! h264parse name=parse \
             ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false"
        );
        let pipeline = gst::parse::launch(&launch)
            .expect("client pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let frames = Arc::new(AtomicU64::new(0));
        let caps: Arc<Mutex<Option<gst::Caps>>> = Arc::default();
        let encoded: Arc<Mutex<Option<gst::Caps>>> = Arc::default();
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
        let parse_src = pipeline
            .by_name("parse")
            .unwrap()
            .static_pad("src")
            .unwrap();
        let e2 = encoded.clone();
        parse_src.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(ev)) = &info.data
                && let gst::EventView::Caps(c) = ev.view()
            {
                *e2.lock().unwrap() = Some(c.caps().to_owned());
            }
            gst::PadProbeReturn::Ok
        });
        pipeline
            .set_state(gst::State::Playing)
            .expect("client plays");
        Client {
            pipeline,
            frames,
            caps,
            encoded,
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
        r.encoded_caps = self.encoded.lock().unwrap().as_ref().map(|c| c.to_string());
        r
    }
}

fn check_client(what: &str, r: &ClientResult, want: u64, stderr: &str) {
    assert!(
        r.error.is_none() && r.frames >= want,
        "{what}: {:?}; vigil stderr:\n{stderr}",
        r
    );
    let enc = r.encoded_caps.as_deref().unwrap_or("");
    assert!(
        enc.starts_with("video/x-h264"),
        "{what}: encoded caps {enc}"
    );
    assert!(
        enc.contains("width=(int)768") && enc.contains("height=(int)576"),
        "{what}: encoded caps {enc}"
    );
    assert_eq!((r.width, r.height), (768, 576), "{what}: decoded size");
}

#[test]
fn run_vtest_serves_rtsp_and_writes_tracked_events() {
    let root = repo_root();
    let media = root.join("samples/media/vtest.avi");
    let models = root.join("models");
    let model_file = models.join("nanodet/1/model.onnx");
    for needed in [&media, &model_file] {
        if !needed.is_file() {
            skip(format_args!(
                "run_vtest_serves_rtsp_and_writes_tracked_events: {} is not installed (run `make setup`)",
                needed.display()
            ));
            return;
        }
    }
    gst::init().expect("gst init");
    for f in [
        "rtspsrc",
        "rtph264depay",
        "h264parse",
        "avdec_h264",
        "x264enc",
        "mp4mux",
    ] {
        assert!(
            gst::ElementFactory::find(f).is_some(),
            "GStreamer element {f} is missing (make setup)"
        );
    }

    let dir = TempDir::new("e2e");
    let events = dir.path().join("events.jsonl");
    let video = dir.path().join("out.mp4");
    let config = dir.path().join("e2e.yaml");
    std::fs::write(
        &config,
        format!(
            "name: e2e\n\
             model_repository: {models}\n\
             sources:\n  - name: vtest\n    uri: {media}\n\
             inference:\n  model: nanodet\n  threshold: 0.4\n  classes: [person, bicycle, car, motorcycle, bus, truck]\n\
             tracker:\n  kind: iou\n  iou_threshold: 0.3\n  max_age: 30\n\
             outputs:\n  rtsp:\n    address: 127.0.0.1\n    port: 0\n    mount: /e2e\n\
             \x20 file:\n    path: {video}\n\
             \x20 events:\n    path: {events}\n",
            models = models.display(),
            media = media.display(),
            video = video.display(),
            events = events.display(),
        ),
    )
    .unwrap();

    let (mut vigil, url) = start_vigil(&config);
    assert!(
        url.starts_with("rtsp://127.0.0.1:") && url.ends_with("/e2e"),
        "{url}"
    );

    // Two clients at once on the shared media...
    let a = Client::start(&url);
    let err = a.wait_for(20, Duration::from_secs(90));
    if err.is_some() {
        let r = a.finish(err);
        panic!(
            "first client: {r:?}; vigil stderr:\n{}",
            vigil.stderr_text()
        );
    }
    let b = Client::start(&url);
    let err_b = b.wait_for(30, Duration::from_secs(60));
    let err_a = a.wait_for(100, Duration::from_secs(60));
    let rb = b.finish(err_b);
    let ra = a.finish(err_a);
    check_client("client A", &ra, 100, &vigil.stderr_text());
    check_client("client B (joined late)", &rb, 30, &vigil.stderr_text());

    // ...and a reconnect after both left.
    std::thread::sleep(Duration::from_millis(500));
    let c = Client::start(&url);
    let err_c = c.wait_for(20, Duration::from_secs(60));
    let rc = c.finish(err_c);
    check_client("client C (reconnect)", &rc, 20, &vigil.stderr_text());
    eprintln!("clients: A {ra:?}\n         B {rb:?}\n         C {rc:?}");

    // Ctrl-C: vigil finishes its outputs and exits 0 with a summary.
    vigil.interrupt();
    let status = vigil.wait(Duration::from_secs(30));
    let stderr = vigil.stderr_text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "vigil exit after SIGINT; stderr:\n{stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("backtrace"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("error:") && !stderr.contains("CRITICAL"),
        "{stderr}"
    );
    assert!(stderr.contains("summary"), "no summary; stderr:\n{stderr}");
    assert!(
        stderr.contains("[vtest] objects per class: ") && stderr.contains("person "),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[vtest] ") && l.contains(" frames, ") && l.contains(" fps, ")),
        "no progress lines:\n{stderr}"
    );

    // The MP4 is finished (moov written) and holds H.264 768x576.
    check_mp4(&video);

    // Events: one per frame, tracked people with stable ids.
    let text = std::fs::read_to_string(&events).expect("events file");
    check_events(&text, ra.frames);
}

/// Demuxes the recorded MP4 and checks its caps and that it has frames.
fn check_mp4(path: &Path) {
    let launch = format!(
        "filesrc location={} ! qtdemux ! h264parse ! fakesink name=sink sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let caps: Arc<Mutex<Option<gst::Caps>>> = Arc::default();
    let pad = pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    let (c2, k2) = (count.clone(), caps.clone());
    pad.add_probe(gst::PadProbeType::BUFFER, move |p, _| {
        if c2.fetch_add(1, Ordering::SeqCst) == 0 {
            *k2.lock().unwrap() = p.current_caps();
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Error, gst::MessageType::Eos],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => panic!(
            "recorded MP4 {} does not play: {} ({:?})",
            path.display(),
            e.error(),
            e.debug()
        ),
        _ => panic!("recorded MP4 {} timed out", path.display()),
    }
    let caps = caps.lock().unwrap().clone().expect("mp4 caps");
    let s = caps.structure(0).unwrap();
    assert_eq!(s.name(), "video/x-h264", "{caps}");
    assert_eq!(
        (
            s.get::<i32>("width").unwrap(),
            s.get::<i32>("height").unwrap()
        ),
        (768, 576),
        "{caps}"
    );
    assert!(
        count.load(Ordering::SeqCst) >= 100,
        "MP4 has only {} frames",
        count.load(Ordering::SeqCst)
    );
}

fn check_events(text: &str, frames_seen_by_client: u64) {
    let events: Vec<FrameEvent> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("events line {}: {e}: {l}", i + 1))
        })
        .collect();
    assert!(
        events.len() as u64 >= frames_seen_by_client,
        "{} events but the client decoded {frames_seen_by_client} frames",
        events.len()
    );
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.schema, "vigil.frame.v1");
        assert_eq!(ev.source, "vtest");
        assert_eq!((ev.width, ev.height), (768, 576));
        if i > 0 {
            assert!(
                ev.frame > events[i - 1].frame,
                "frame numbers must increase: {} after {}",
                ev.frame,
                events[i - 1].frame
            );
            let (p, q) = (events[i - 1].pts_ns, ev.pts_ns);
            assert!(
                p.is_some() && q.is_some() && q > p,
                "pts must increase at event {i}"
            );
        }
        let mut ids: Vec<u64> = ev.objects.iter().filter_map(|o| o.track_id).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate track ids in frame {}", ev.frame);
    }
    let persons: Vec<_> = events
        .iter()
        .flat_map(|e| e.objects.iter())
        .filter(|o| o.label == "person")
        .collect();
    assert!(
        persons.len() >= 100,
        "only {} person detections in {} frames",
        persons.len(),
        events.len()
    );
    let tracked = persons.iter().filter(|o| o.track_id.is_some()).count();
    assert!(
        tracked * 10 >= persons.len() * 9,
        "only {tracked} of {} persons have a track id",
        persons.len()
    );

    // The same person keeps its id: in consecutive frames, persons whose boxes overlap strongly
    // (IoU >= 0.5, best match first) carry the same track id.
    let mut pairs = 0usize;
    let mut same = 0usize;
    for w in events.windows(2) {
        if w[1].frame != w[0].frame + 1 {
            continue;
        }
        let prev: Vec<_> = w[0]
            .objects
            .iter()
            .filter(|o| o.label == "person")
            .collect();
        let next: Vec<_> = w[1]
            .objects
            .iter()
            .filter(|o| o.label == "person")
            .collect();
        let mut cands: Vec<(f32, usize, usize)> = Vec::new();
        for (i, a) in prev.iter().enumerate() {
            for (j, b) in next.iter().enumerate() {
                let iou = a.bbox.iou(&b.bbox);
                if iou >= 0.5 {
                    cands.push((iou, i, j));
                }
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut used_a, mut used_b) = (vec![false; prev.len()], vec![false; next.len()]);
        for (_, i, j) in cands {
            if used_a[i] || used_b[j] {
                continue;
            }
            used_a[i] = true;
            used_b[j] = true;
            if let (Some(x), Some(y)) = (prev[i].track_id, next[j].track_id) {
                pairs += 1;
                same += usize::from(x == y);
            }
        }
    }
    eprintln!("consecutive-frame person matches: {same} of {pairs} keep their track id");
    assert!(
        pairs >= 50,
        "only {pairs} person matches between consecutive frames"
    );
    assert!(
        same * 100 >= pairs * 95,
        "only {same} of {pairs} matched persons keep their track id between consecutive frames"
    );

    // Per track: its boxes in consecutive frames (IoU) and its labels.
    let mut by_track: BTreeMap<u64, Vec<(u64, BBox, String)>> = BTreeMap::new();
    for ev in &events {
        for o in &ev.objects {
            if let Some(t) = o.track_id {
                by_track
                    .entry(t)
                    .or_default()
                    .push((ev.frame, o.bbox, o.label.clone()));
            }
        }
    }
    let mut judged = 0;
    let mut stable = 0;
    let mut report = Vec::new();
    for (id, seen) in &by_track {
        let ious: Vec<f32> = seen
            .windows(2)
            .filter(|w| w[1].0 == w[0].0 + 1)
            .map(|w| w[0].1.iou(&w[1].1))
            .collect();
        if ious.is_empty() {
            continue;
        }
        judged += 1;
        let mut labels: HashMap<&str, usize> = HashMap::new();
        for (_, _, l) in seen {
            *labels.entry(l.as_str()).or_default() += 1;
        }
        let top = labels.values().max().copied().unwrap_or(0);
        let label_stable = top * 100 >= seen.len() * 95;
        let mut sorted = ious.clone();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        if label_stable && median >= 0.5 {
            stable += 1;
        } else {
            report.push(format!(
                "track {id}: {} frames, median IoU {median:.2}, labels {labels:?}",
                seen.len()
            ));
        }
    }
    eprintln!(
        "events: {} frames, {} person detections, {} tracks, {stable} of {judged} stable between consecutive frames",
        events.len(),
        persons.len(),
        by_track.len()
    );
    assert!(
        judged >= 5,
        "only {judged} tracks seen in two consecutive frames"
    );
    assert!(
        stable * 100 >= judged * 80,
        "only {stable} of {judged} tracks keep their box and label between consecutive frames:\n{}",
        report.join("\n")
    );
}
