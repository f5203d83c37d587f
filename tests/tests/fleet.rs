//! A fleet of real cameras: `vigil-test-camera` processes (this crate's binary) serve sample files as
//! RTSP cameras, and the real `vigil` binary reads them next to looping files.
//!
//! - a camera outage (its process killed, restarted 5 s later on the same port): `vigil` reconnects by
//!   itself while the other camera's stream has no gap (events' timestamps and arrival);
//! - eight sources in one process (five files, three cameras) with a mount per stream and a mosaic, all
//!   read by RTSP clients at once; frames per second per stream are printed;
//! - a camera faster than `vigil` can analyse on this machine: old frames are dropped and the end-to-end
//!   latency stays bounded.
//!
//! Every test is bounded in time (< 90 s on 2 cores) and skips with a `SKIPPED` line when the sample
//! media, the NanoDet model or a GStreamer element is missing (`make setup`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vigil_tests::{
    EventsTail, RtspClient, TempDir, TestCamera, get_streams, histogram, http_get, metric,
    parse_metrics, read_events, repo_root, skip, start_vigil,
};

const CAMERA: &str = env!("CARGO_BIN_EXE_vigil-test-camera");

/// The media and model the tests need.
struct Assets {
    bikes: PathBuf,
    vtest: PathBuf,
    models: PathBuf,
}

/// The assets, or `None` after a `SKIPPED` line.
fn needed(test: &str) -> Option<Assets> {
    let root = repo_root();
    let a = Assets {
        bikes: root.join("samples/media/bikes.mp4"),
        vtest: root.join("samples/media/vtest.avi"),
        models: root.join("models"),
    };
    for f in [&a.bikes, &a.vtest, &a.models.join("nanodet/1/model.onnx")] {
        if !f.is_file() {
            skip(format_args!(
                "{test}: {} is not installed (run `make setup`)",
                f.display()
            ));
            return None;
        }
    }
    if let Err(e) = gst::init() {
        skip(format_args!("{test}: GStreamer does not initialise: {e}"));
        return None;
    }
    for f in [
        "rtspsrc",
        "rtph264depay",
        "rtph264pay",
        "h264parse",
        "avdec_h264",
        "x264enc",
        "compositor",
        "videoscale",
        "videorate",
    ] {
        if gst::ElementFactory::find(f).is_none() {
            skip(format_args!(
                "{test}: the GStreamer element {f} is not installed"
            ));
            return None;
        }
    }
    Some(a)
}

fn camera(file: &Path, port: u16, args: &[&str]) -> TestCamera {
    TestCamera::start(Path::new(CAMERA), file, port, args)
        .unwrap_or_else(|e| panic!("test camera on port {port}: {e}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The stream `name` of `GET /streams`.
fn stream<'a>(streams: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    streams.iter().find(|s| s["name"] == name)
}

/// `GET /metrics`, parsed.
fn metrics(api: &str) -> Vec<vigil_tests::Sample> {
    let (code, body) = http_get(api, "/metrics").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "GET /metrics: {body}");
    parse_metrics(&body).unwrap_or_else(|e| panic!("{e}"))
}

/// Counts of events per source over time, read from the events file every 500 ms by a thread.
struct Sampler {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Sampled>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Sampled {
    /// Every event read so far, in file order.
    events: Vec<serde_json::Value>,
    /// Events per source so far.
    counts: BTreeMap<String, u64>,
    /// `(when, events per source)` every 500 ms.
    samples: Vec<(Instant, BTreeMap<String, u64>)>,
    error: Option<String>,
}

impl Sampler {
    fn start(path: &Path) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let shared: Arc<Mutex<Sampled>> = Arc::default();
        let (s2, sh2) = (stop.clone(), shared.clone());
        let mut tail = EventsTail::new(path);
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                let new = tail.read_new();
                let when = Instant::now();
                let mut s = sh2.lock().unwrap();
                match new {
                    Ok(events) => {
                        for e in events {
                            let source = e["source"].as_str().unwrap_or("").to_string();
                            *s.counts.entry(source).or_default() += 1;
                            s.events.push(e);
                        }
                        let counts = s.counts.clone();
                        s.samples.push((when, counts));
                    }
                    Err(e) => {
                        s.error = Some(e);
                        return;
                    }
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Sampler {
            stop,
            shared,
            thread: Some(thread),
        }
    }

    fn count(&self, source: &str) -> u64 {
        let s = self.shared.lock().unwrap();
        assert!(s.error.is_none(), "reading events: {:?}", s.error);
        s.counts.get(source).copied().unwrap_or(0)
    }

    /// Waits until `done(self)` or `limit`; returns whether it was done.
    fn wait(&self, limit: Duration, done: impl Fn(&Sampler) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        done(self)
    }

    fn finish(mut self) -> Sampled {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.shared.lock().unwrap())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `(pts_ns, timestamp_ms)` of the events of `source`, in file order.
fn times(events: &[serde_json::Value], source: &str) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter(|e| e["source"] == source)
        .map(|e| {
            (
                e["pts_ns"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no pts_ns: {e}")),
                e["timestamp_ms"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no timestamp_ms: {e}")),
            )
        })
        .collect()
}

/// The largest step between consecutive values and where (the value before it).
fn max_gap(values: impl Iterator<Item = u64>) -> (u64, u64) {
    let mut best = (0, 0);
    let mut prev: Option<u64> = None;
    for v in values {
        if let Some(p) = prev {
            let d = v.saturating_sub(p);
            if d > best.0 {
                best = (d, p);
            }
        }
        prev = Some(v);
    }
    best
}

/// Camera A is killed, stays away 5 s and comes back on the same port: `vigil` reconnects by itself and
/// A's frames flow again, while camera B's stream never stops (no PTS gap > 1 s, events every second).
#[test]
fn camera_outage_reconnects_and_other_camera_has_no_gap() {
    let test = "camera_outage_reconnects_and_other_camera_has_no_gap";
    let Some(assets) = needed(test) else {
        return;
    };
    let cam_args = ["--width", "320", "--height", "136", "--fps", "15"];
    let mut cam_a = camera(&assets.bikes, 0, &cam_args);
    let cam_b = camera(&assets.bikes, 0, &cam_args);
    let port_a = cam_a.port;
    let dir = TempDir::new("fleet-outage");
    let events = dir.path().join("events.jsonl");
    let config = dir.path().join("outage.yaml");
    let source = |name: &str, url: &str| {
        format!(
            "  - name: {name}\n    uri: {url}\n    rtsp_transport: tcp\n    latency_ms: 200\n    \
             reconnect: {{ interval_ms: 500, max_interval_ms: 2000, attempts: -1 }}\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "name: outage\nmodel_repository: {models}\nsources:\n{a}{b}\
             inference:\n  model: nanodet\n  interval: 3\n\
             outputs:\n  events:\n    path: {events}\n\
             api:\n  port: 0\nrealtime: true\n",
            models = assets.models.display(),
            a = source("A", &cam_a.url),
            b = source("B", &cam_b.url),
            events = events.display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (vigil, info) =
        start_vigil(&config, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let api = info
        .api
        .clone()
        .unwrap_or_else(|| panic!("no API address printed:\n{}", vigil.stderr_text()));
    let sampler = Sampler::start(&events);

    // Both cameras flow.
    assert!(
        sampler.wait(Duration::from_secs(40), |s| s.count("A") >= 15
            && s.count("B") >= 15),
        "frames do not flow: A {} B {} events\n{}",
        sampler.count("A"),
        sampler.count("B"),
        vigil.stderr_text()
    );
    let flowing = Instant::now();
    eprintln!(
        "outage: both cameras flow {:.1} s after start",
        (flowing - started).as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));

    // Outage: camera A's process is killed.
    cam_a.kill();
    let killed = Instant::now();
    let b_at_kill = sampler.count("B");
    std::thread::sleep(Duration::from_millis(2000));
    let a_after_2s = sampler.count("A");
    std::thread::sleep(Duration::from_millis(2500));
    let streams = get_streams(&api).unwrap_or_else(|e| panic!("{e}"));
    let a_during = stream(&streams, "A")
        .unwrap_or_else(|| panic!("no stream A in {streams:?}"))
        .clone();
    let a_before_restart = sampler.count("A");
    assert_eq!(
        a_before_restart, a_after_2s,
        "A's events go on while its camera is down"
    );
    assert_eq!(
        a_during["state"], "reconnecting",
        "A during the outage: {a_during}"
    );
    std::thread::sleep((killed + Duration::from_secs(5)).saturating_duration_since(Instant::now()));

    // Camera A comes back on the same port.
    let cam_a2 = camera(&assets.bikes, port_a, &cam_args);
    let restarted = Instant::now();
    let restarted_ms = now_ms();
    let b_during_outage = sampler.count("B") - b_at_kill;
    let back = sampler.wait(Duration::from_secs(20), |s| {
        s.count("A") >= a_before_restart + 10
    });
    assert!(
        back,
        "A's frames do not flow again within 20 s of the restart ({} new events); camera:\n{}\nvigil:\n{}",
        sampler.count("A") - a_before_restart,
        cam_a2.stderr_text(),
        vigil.stderr_text()
    );
    let flowing_again = restarted.elapsed();
    // Run on a little with both cameras.
    std::thread::sleep(Duration::from_secs(4));
    let streams = get_streams(&api).unwrap_or_else(|e| panic!("{e}"));
    let metrics = metrics(&api);
    let sampled = sampler.finish();
    let stderr = vigil.stop_clean();
    drop(cam_a2);
    drop(cam_b);
    for line in stderr.lines().filter(|l| l.starts_with("warning")).take(5) {
        eprintln!("outage: vigil said: {line}");
    }

    // The API: A is back to playing and counted one reconnection at least; B never reconnected.
    let a = stream(&streams, "A").unwrap_or_else(|| panic!("no A in {streams:?}"));
    let b = stream(&streams, "B").unwrap_or_else(|| panic!("no B in {streams:?}"));
    assert_eq!(a["state"], "playing", "A after the restart: {a}");
    assert_eq!(b["state"], "playing", "B: {b}");
    let reconnects = |s: &str| metric(&metrics, "vigil_stream_reconnects_total", &[("stream", s)]);
    assert!(
        reconnects("A").is_some_and(|v| v >= 1.0),
        "vigil_stream_reconnects_total of A: {:?}; /streams A: {a}",
        reconnects("A")
    );
    assert_eq!(reconnects("B"), Some(0.0), "B never lost its camera");
    assert_eq!(
        metric(
            &metrics,
            "vigil_stream_state",
            &[("stream", "A"), ("state", "playing")]
        ),
        Some(1.0)
    );

    // Every event the run wrote (the sampler stopped before the end; read the whole file again).
    let all = read_events(&events).unwrap_or_else(|e| panic!("{e}"));
    assert!(all.len() >= sampled.events.len());
    let a_times = times(&all, "A");
    let b_times = times(&all, "B");
    // The first frame of A that the restarted camera brought.
    let first_back = a_times
        .iter()
        .find(|(_, ts)| *ts >= restarted_ms)
        .map(|(_, ts)| ts - restarted_ms)
        .unwrap_or_else(|| panic!("no event of A after the restart"));

    // B: no PTS gap over 1 s across the whole run, PTS increasing, events made every second.
    let (b_pts_gap, b_pts_at) = max_gap(b_times.iter().map(|t| t.0));
    let (b_wall_gap, _) = max_gap(b_times.iter().map(|t| t.1));
    let (a_pts_gap, a_pts_at) = max_gap(a_times.iter().map(|t| t.0));
    assert!(
        b_times.windows(2).all(|w| w[1].0 > w[0].0),
        "B's PTS do not increase"
    );
    assert!(
        a_times.windows(2).all(|w| w[1].0 > w[0].0),
        "A's PTS do not increase across the reconnection"
    );
    // B's events arrived every second in wall-clock time: from when both flowed to the end, each
    // sample's count of B events is above the count of one second earlier.
    let samples: Vec<(Instant, u64)> = sampled
        .samples
        .iter()
        .filter(|(t, _)| *t >= flowing)
        .map(|(t, c)| (*t, c.get("B").copied().unwrap_or(0)))
        .collect();
    let mut stalls = Vec::new();
    for (i, &(t, n)) in samples.iter().enumerate() {
        if let Some(&(t2, n2)) = samples[i..]
            .iter()
            .find(|(t2, _)| *t2 >= t + Duration::from_millis(1000))
            && n2 <= n
        {
            stalls.push(format!(
                "{:.1}..{:.1} s: {n} → {n2}",
                (t - started).as_secs_f64(),
                (t2 - started).as_secs_f64()
            ));
        }
    }
    eprintln!(
        "outage: camera A down {:.1} s; A's frames flowed again {:.2} s after the restart \
         (first event {:.2} s after it); reconnects A {:?}; A's largest PTS gap {:.2} s at {:.1} s",
        (restarted - killed).as_secs_f64(),
        flowing_again.as_secs_f64(),
        first_back as f64 / 1000.0,
        reconnects("A"),
        a_pts_gap as f64 / 1e9,
        a_pts_at as f64 / 1e9,
    );
    eprintln!(
        "outage: B: {} events, largest PTS gap {:.3} s (at {:.1} s), largest wall-clock gap {:.3} s, \
         {} samples of its count, {b_during_outage} events during the outage ({:.1}/s); A: {} events; \
         A during the outage: {a_during}",
        b_times.len(),
        b_pts_gap as f64 / 1e9,
        b_pts_at as f64 / 1e9,
        b_wall_gap as f64 / 1000.0,
        samples.len(),
        b_during_outage as f64 / (restarted - killed).as_secs_f64(),
        a_times.len(),
    );
    assert!(
        b_pts_gap <= 1_000_000_000,
        "B has a PTS gap of {:.3} s at {:.1} s",
        b_pts_gap as f64 / 1e9,
        b_pts_at as f64 / 1e9
    );
    assert!(
        b_wall_gap <= 1000,
        "B's events stopped for {:.3} s",
        b_wall_gap as f64 / 1000.0
    );
    assert!(samples.len() >= 20, "too few samples: {}", samples.len());
    assert!(stalls.is_empty(), "B's event count stalled: {stalls:?}");
    assert!(
        a_pts_gap >= 4_000_000_000,
        "A's outage does not show in its PTS (largest gap {a_pts_gap} ns)"
    );
    assert!(!stderr.contains("error:"), "{stderr}");
}

/// Eight sources in one `vigil` (five looping files, three cameras), a mount per source and a mosaic:
/// nine RTSP clients at once each decode frames; the API's frames per second per stream are printed.
#[test]
fn eight_sources_with_per_stream_and_mosaic_mounts() {
    let test = "eight_sources_with_per_stream_and_mosaic_mounts";
    let Some(assets) = needed(test) else {
        return;
    };
    let cam_args = ["--width", "320", "--height", "136", "--fps", "10"];
    let cameras: Vec<TestCamera> = (0..3)
        .map(|_| camera(&assets.bikes, 0, &cam_args))
        .collect();
    let dir = TempDir::new("fleet-eight");
    let config = dir.path().join("eight.yaml");
    let mut sources = String::new();
    let files = [
        ("bikes-1", &assets.bikes),
        ("vtest-1", &assets.vtest),
        ("bikes-2", &assets.bikes),
        ("vtest-2", &assets.vtest),
        ("bikes-3", &assets.bikes),
    ];
    for (name, path) in files {
        sources += &format!(
            "  - name: {name}\n    uri: {}\n    loop: true\n",
            path.display()
        );
    }
    for (i, c) in cameras.iter().enumerate() {
        sources += &format!(
            "  - name: cam-{}\n    uri: {}\n    rtsp_transport: tcp\n    latency_ms: 200\n",
            i + 1,
            c.url
        );
    }
    std::fs::write(
        &config,
        format!(
            "name: fleet\nmodel_repository: {models}\nsources:\n{sources}\
             inference:\n  model: nanodet\n  interval: 6\n\
             outputs:\n  rtsp:\n    port: 0\n    mount: /fleet\n    encoder: x264\n    bitrate_kbps: 800\n\
             \x20 mosaic:\n    width: 640\n    height: 360\n    fps: 10\n\
             api:\n  port: 0\nrealtime: true\n",
            models = assets.models.display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (vigil, info) =
        start_vigil(&config, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let api = info
        .api
        .clone()
        .unwrap_or_else(|| panic!("no API address printed:\n{}", vigil.stderr_text()));
    assert_eq!(
        info.rtsp.len(),
        9,
        "8 mounts and the mosaic: {:?}",
        info.rtsp
    );
    assert!(
        info.rtsp.iter().any(|u| u.ends_with("/fleet-mosaic")),
        "{:?}",
        info.rtsp
    );
    for name in files.iter().map(|f| f.0).chain(["cam-1", "cam-2", "cam-3"]) {
        assert!(
            info.rtsp
                .iter()
                .any(|u| u.ends_with(&format!("/fleet/{name}"))),
            "no mount for {name}: {:?}",
            info.rtsp
        );
    }

    // Nine clients at once.
    let clients: Vec<RtspClient> = info
        .rtsp
        .iter()
        .map(|u| RtspClient::start(u).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(45);
    let waits: Vec<Option<String>> = clients.iter().map(|c| c.wait_for(20, deadline)).collect();
    let clients_done = Instant::now();

    // Frames per stream over 10 s, from the API.
    let t0 = Instant::now();
    let before = get_streams(&api).unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_secs(10));
    let after = get_streams(&api).unwrap_or_else(|e| panic!("{e}"));
    let window = t0.elapsed().as_secs_f64();
    let results: Vec<_> = clients
        .iter()
        .zip(waits)
        .map(|(c, w)| c.result(w))
        .collect();
    drop(clients);
    let stderr = vigil.stop_clean();
    drop(cameras);

    eprintln!(
        "eight sources: 9 clients got 20 frames each {:.1} s after vigil started; frames/s below \
         measured from {:.1} s over {window:.1} s",
        (clients_done - started).as_secs_f64(),
        (t0 - started).as_secs_f64()
    );
    eprintln!(
        "{:<10} {:<12} {:>8} {:>10} {:>10} {:>9}",
        "stream", "state", "api fps", "frames", "frames/s", "dropped"
    );
    let (mut total_fps, mut total_rate) = (0.0, 0.0);
    let mut problems = Vec::new();
    for s in &after {
        let name = s["name"].as_str().unwrap_or("?");
        let frames = s["frames"].as_u64().unwrap_or(0);
        let earlier = stream(&before, name)
            .and_then(|b| b["frames"].as_u64())
            .unwrap_or(0);
        let rate = frames.saturating_sub(earlier) as f64 / window;
        let fps = s["fps"].as_f64().unwrap_or(0.0);
        total_fps += fps;
        total_rate += rate;
        eprintln!(
            "{name:<10} {:<12} {fps:>8.1} {frames:>10} {rate:>10.1} {:>9}",
            s["state"].as_str().unwrap_or("?"),
            s["dropped"].as_u64().unwrap_or(0)
        );
        if fps.is_nan() || fps <= 0.0 || s["state"] != "playing" || rate <= 0.0 {
            problems.push(format!("{name}: {s}"));
        }
    }
    eprintln!(
        "{:<10} {:<12} {total_fps:>8.1} {:>10} {total_rate:>10.1}",
        "total", "", ""
    );
    for r in &results {
        eprintln!(
            "client {}: {} frames {}x{}, first after {:.1} s{}",
            r.url,
            r.frames,
            r.width,
            r.height,
            r.first_frame.unwrap_or(-1.0),
            r.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    assert_eq!(after.len(), 8, "{after:?}");
    assert!(
        problems.is_empty(),
        "streams not playing: {problems:?}\n{stderr}"
    );
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.error.is_some() || r.frames < 20)
        .collect();
    assert!(failed.is_empty(), "clients: {failed:?}\n{stderr}");
    let mosaic = results
        .iter()
        .find(|r| r.url.ends_with("/fleet-mosaic"))
        .unwrap_or_else(|| panic!("no mosaic client"));
    assert_eq!((mosaic.width, mosaic.height), (640, 360), "{mosaic:?}");
    assert!(!stderr.contains("error:"), "{stderr}");
}

/// A 1280x720 camera at 60 frames/s, analysed on every frame with the overlay and an RTSP output: more
/// than a 2-core machine can do (it analyses about 30 frames/s of it). Old frames must be dropped so
/// that the end-to-end latency stays bounded.
#[test]
fn slow_live_source_keeps_latency_bounded() {
    let test = "slow_live_source_keeps_latency_bounded";
    let Some(assets) = needed(test) else {
        return;
    };
    let cam = camera(
        &assets.bikes,
        0,
        &["--width", "1280", "--height", "720", "--fps", "60"],
    );
    let dir = TempDir::new("fleet-slow");
    let config = dir.path().join("slow.yaml");
    std::fs::write(
        &config,
        format!(
            "name: slow\nmodel_repository: {models}\nsources:\n\
             \x20 - name: hd\n    uri: {url}\n    rtsp_transport: tcp\n    latency_ms: 200\n\
             inference:\n  model: nanodet\n  interval: 1\n\
             overlay:\n  enabled: true\n\
             outputs:\n  rtsp:\n    port: 0\n    encoder: x264\n\
             api:\n  port: 0\nrealtime: true\n",
            models = assets.models.display(),
            url = cam.url,
        ),
    )
    .unwrap();
    let (vigil, info) =
        start_vigil(&config, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let api = info
        .api
        .clone()
        .unwrap_or_else(|| panic!("no API address printed:\n{}", vigil.stderr_text()));
    assert_eq!(info.rtsp.len(), 1, "{:?}", info.rtsp);
    // A viewer of the output.
    let client = RtspClient::start(&info.rtsp[0]).unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let wait = client.wait_for(u64::MAX, deadline);
    let viewer = client.result(wait.filter(|w| !w.starts_with("timed out")));
    drop(client);
    let streams = get_streams(&api).unwrap_or_else(|e| panic!("{e}"));
    let samples = metrics(&api);
    let stderr = vigil.stop_clean();
    drop(cam);

    let l = [("stream", "hd")];
    let frames_in = metric(&samples, "vigil_stream_frames_in_total", &l);
    let frames_out = metric(&samples, "vigil_stream_frames_out_total", &l);
    let dropped = metric(&samples, "vigil_stream_frames_dropped_total", &l);
    let fps = metric(&samples, "vigil_stream_fps", &l);
    let latency = histogram(&samples, "vigil_stream_latency_seconds", &l);
    let (p50, p99) = latency
        .as_ref()
        .map(|h| (h.quantile(0.5), h.quantile(0.99)))
        .unwrap_or((None, None));
    eprintln!(
        "slow source: frames in {frames_in:?}, out {frames_out:?}, dropped {dropped:?}, fps {fps:?}; \
         latency count {:?}, p50 {p50:?} s, p99 {p99:?} s; viewer {} frames {}x{}{}; /streams {}",
        latency.as_ref().map(|h| h.count),
        viewer.frames,
        viewer.width,
        viewer.height,
        viewer
            .error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        serde_json::Value::Array(streams.clone()),
    );
    assert!(
        viewer.error.is_none() && viewer.frames > 0,
        "the RTSP viewer: {viewer:?}\n{stderr}"
    );
    assert!(
        frames_out.is_some_and(|v| v > 0.0),
        "no frames out: {frames_out:?}\n{stderr}"
    );
    assert!(
        dropped.is_some_and(|v| v > 0.0),
        "vigil_stream_frames_dropped_total of a source faster than the machine: {dropped:?}"
    );
    let latency = latency.unwrap_or_else(|| panic!("no vigil_stream_latency_seconds histogram"));
    assert!(
        latency.count > 0.0,
        "vigil_stream_latency_seconds has no observations"
    );
    assert!(
        p99.is_some_and(|p| p < 2.0),
        "end-to-end latency p99 {p99:?} s"
    );
}

#[test]
fn metrics_text_parses_and_histogram_quantiles() {
    let text = "# HELP x_seconds h\n# TYPE x_seconds histogram\n\
                x_seconds_bucket{stream=\"a\\\"b\",le=\"0.1\"} 50\n\
                x_seconds_bucket{stream=\"a\\\"b\",le=\"1\"} 90\n\
                x_seconds_bucket{stream=\"a\\\"b\",le=\"+Inf\"} 100\n\
                x_seconds_sum{stream=\"a\\\"b\"} 12.5\n\
                x_seconds_count{stream=\"a\\\"b\"} 100\n\
                up 1\n";
    let s = parse_metrics(text).unwrap();
    assert_eq!(s.len(), 6);
    assert_eq!(s[0].label("stream"), Some("a\"b"));
    assert_eq!(metric(&s, "up", &[]), Some(1.0));
    let h = histogram(&s, "x_seconds", &[("stream", "a\"b")]).unwrap();
    assert_eq!((h.count, h.sum), (100.0, 12.5));
    assert_eq!(h.quantile(0.5), Some(0.1));
    let p70 = h.quantile(0.7).unwrap();
    assert!((p70 - 0.55).abs() < 1e-9, "{p70}");
    // In +Inf: the highest finite bound.
    assert_eq!(h.quantile(0.99), Some(1.0));
    assert!(parse_metrics("bad{x=1} 2").is_err());
}
