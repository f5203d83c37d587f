//! Encoding only for viewers (issue 20): an RTSP mount encodes only while it has a client.
//!
//! The real `vigil` binary runs one looped `vtest.avi` stream (10 frames/s, `realtime`) with its own
//! mount and a mosaic mount on 127.0.0.1, with `GST_DEBUG=videoencoder:6,vigil-rtsp:4`: every raw
//! frame that reaches an encoder is one `received buffer` line of GStreamer's video encoder base class
//! naming the encoder (`<vtest-rtsp-encode>`, `<mosaic-rtsp-encode>`), which is what the test counts
//! (GStreamer's own log, not a counter of Vigil's), and `vigil-rtsp` logs each mount's gate opening and
//! closing. The test checks, in one run:
//!
//! - no client: neither encoder gets a frame, and the stream keeps its pace (10 frames/s in the
//!   progress lines: the idle branch neither stalls the stream nor lets it run ahead of the clock);
//! - a client that connects mid-run (`vigil_tests::RtspClient`: `rtspsrc ! rtph264depay ! h264parse
//!   ! avdec_h264 ! appsink`, in this process) decodes its first frame within 1 s of its `PLAY` request (taken at rtspsrc's
//!   "Opened Stream" progress message, posted when `SETUP` is answered, right before it sends `PLAY`:
//!   "Sending PLAY request" is posted when the command is queued, at the start), and also within
//!   1.5 s of its start (`DESCRIBE` included); while it watches, the encoder gets frames;
//! - when it leaves, the mount's gate closes (`vigil-rtsp`) and, once the at most 5 frames its queue
//!   held went through, the encoder gets no frame for 2 s; a second client again decodes its
//!   first frame within 1 s of its `PLAY`, and a client of the mosaic too;
//! - `vigil` stops cleanly on SIGINT.
//!
//! Skips with a message when the sample media or the NanoDet model are not installed (`make setup`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_tests::{RtspClient, TempDir, Vigil, repo_root, skip, start_vigil_cmd, vigil_bin};

/// The longest a client may wait from its `PLAY` to its first decoded frame (the acceptance).
const FIRST_FRAME_AFTER_PLAY: Duration = Duration::from_secs(1);
/// The longest from the client's start (`OPTIONS`, `DESCRIBE`, `SETUP`, `PLAY`) to its first frame.
const FIRST_FRAME_AFTER_START: Duration = Duration::from_millis(1500);

/// When a client got its first frame.
#[derive(Debug)]
struct FirstFrame {
    /// From the client's start.
    after_start: Duration,
    /// From its `PLAY` request.
    after_play: Duration,
}

/// Raw frames the encoder `element` got so far: its `received buffer` log lines.
fn encoder_frames(vigil: &Vigil, element: &str) -> usize {
    let tag = format!("<{element}> received buffer");
    vigil
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&tag))
        .count()
}

/// Lines of `vigil-rtsp` saying that `mount`'s gate closed.
fn idle_lines(vigil: &Vigil, mount: &str) -> usize {
    let tag = format!("{mount}: no client: encoder idle");
    vigil
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&tag))
        .count()
}

/// The frames/s of the `[vtest]` progress lines printed so far.
fn progress_fps(vigil: &Vigil) -> Vec<f64> {
    vigil
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| l.strip_prefix("[vtest] "))
        .filter_map(|l| l.split(" fps").next()?.rsplit(", ").next()?.parse().ok())
        .collect()
}

/// Waits until `cond` holds, at most `limit`.
fn wait_until(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Connects a client to `url`, waits for 10 frames and checks when the first came.
fn watch(what: &str, url: &str, vigil: &Vigil) -> (RtspClient, FirstFrame) {
    let v = RtspClient::start(url).unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Some(why) = v.wait_for(10, Instant::now() + Duration::from_secs(20)) {
        panic!(
            "{what}: {why}; vigil stderr (end):\n{}",
            tail(&vigil.stderr_text())
        );
    }
    let (after_start, after_play) = v.first_frame_times().unwrap_or_else(|| {
        panic!("{what}: frames without a PLAY progress message or a first frame time")
    });
    let first = FirstFrame {
        after_start,
        after_play,
    };
    eprintln!(
        "{what}: first frame {:.0} ms after PLAY, {:.0} ms after the start",
        first.after_play.as_secs_f64() * 1e3,
        first.after_start.as_secs_f64() * 1e3,
    );
    assert!(
        first.after_play <= FIRST_FRAME_AFTER_PLAY,
        "{what}: first frame {first:?} after PLAY (limit {FIRST_FRAME_AFTER_PLAY:?})"
    );
    assert!(
        first.after_start <= FIRST_FRAME_AFTER_START,
        "{what}: first frame {first:?} after the start (limit {FIRST_FRAME_AFTER_START:?})"
    );
    (v, first)
}

/// The last lines of `text` that are not GStreamer log lines.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("received buffer"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn rtsp_mounts_encode_only_for_viewers() {
    let root = repo_root();
    let media = root.join("samples/media/vtest.avi");
    let models = root.join("models");
    for needed in [&media, &models.join("nanodet/1/model.onnx")] {
        if !needed.is_file() {
            skip(format_args!(
                "rtsp_mounts_encode_only_for_viewers: {} is not installed (run `make setup`)",
                needed.display()
            ));
            return;
        }
    }
    gst::init().expect("gst init");
    for f in ["rtspsrc", "rtph264depay", "avdec_h264", "x264enc"] {
        assert!(
            gst::ElementFactory::find(f).is_some(),
            "GStreamer element {f} is missing (make setup)"
        );
    }
    let dir = TempDir::new("rtsp-viewers");
    let config = dir.path().join("viewers.yaml");
    write_config(&config, &models, &media);
    let mut cmd = Command::new(vigil_bin());
    cmd.arg("run")
        .arg(&config)
        .env("GST_DEBUG", "videoencoder:6,vigil-rtsp:4")
        .env("GST_DEBUG_NO_COLOR", "1");
    let started = Instant::now();
    let (vigil, info) =
        start_vigil_cmd(cmd, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let url = info
        .rtsp
        .iter()
        .find(|u| u.ends_with("/viewers"))
        .cloned()
        .unwrap_or_else(|| panic!("no /viewers mount in {:?}", info.rtsp));
    let mosaic = info
        .rtsp
        .iter()
        .find(|u| u.ends_with("/viewers-mosaic"))
        .cloned()
        .unwrap_or_else(|| panic!("no mosaic mount in {:?}", info.rtsp));

    // (a) No client: the stream runs at its pace (three progress lines, 6 s), no encoder gets a frame.
    assert!(
        wait_until(Duration::from_secs(30), || progress_fps(&vigil).len() >= 3),
        "no progress lines; stderr:\n{}",
        tail(&vigil.stderr_text())
    );
    let fps = progress_fps(&vigil);
    assert!(
        fps[1..].iter().all(|f| (8.5..=11.5).contains(f)),
        "the stream does not keep 10 frames/s without a client: {fps:?}"
    );
    assert_eq!(encoder_frames(&vigil, "vtest-rtsp-encode"), 0, "idle mount");
    assert_eq!(
        encoder_frames(&vigil, "mosaic-rtsp-encode"),
        0,
        "idle mosaic"
    );

    // (b) A client mid-run: its first frame within 1 s of its PLAY; the encoder runs while it watches.
    let (a, first_a) = watch("client A", &url, &vigil);
    assert!(
        a.wait_for(30, Instant::now() + Duration::from_secs(20))
            .is_none(),
        "client A stalls"
    );
    let while_watched = encoder_frames(&vigil, "vtest-rtsp-encode");
    assert!(
        while_watched >= 30,
        "the encoder got {while_watched} frames while client A decoded {}",
        a.frames()
    );
    assert_eq!(
        encoder_frames(&vigil, "mosaic-rtsp-encode"),
        0,
        "the mosaic encodes for a client of another mount"
    );

    // (c) It leaves: the branch idles again (no frame for 2 s once the gate closed).
    drop(a);
    assert!(
        wait_until(Duration::from_secs(10), || idle_lines(&vigil, "/viewers")
            >= 1),
        "the mount's gate did not close after its client left; stderr:\n{}",
        tail(&vigil.stderr_text())
    );
    // What the branch queued before the gate closed (at most 5 frames) still goes through it.
    std::thread::sleep(Duration::from_secs(1));
    let after_leave = encoder_frames(&vigil, "vtest-rtsp-encode");
    std::thread::sleep(Duration::from_secs(2));
    let idle_again = encoder_frames(&vigil, "vtest-rtsp-encode");
    assert_eq!(
        idle_again, after_leave,
        "the encoder still gets frames after the last client left"
    );

    // A second client, then one of the mosaic: again within 1 s of PLAY.
    let (b, first_b) = watch("client B", &url, &vigil);
    drop(b);
    let (m, first_m) = watch("mosaic client", &mosaic, &vigil);
    assert!(encoder_frames(&vigil, "mosaic-rtsp-encode") >= 10);
    drop(m);
    assert!(
        wait_until(Duration::from_secs(10), || idle_lines(
            &vigil,
            "/viewers-mosaic"
        ) >= 1
            && idle_lines(&vigil, "/viewers") >= 2),
        "the gates did not close after the clients left; stderr:\n{}",
        tail(&vigil.stderr_text())
    );
    let fps = progress_fps(&vigil);
    eprintln!(
        "first frames: A {first_a:?}, B {first_b:?}, mosaic {first_m:?}; progress fps {fps:?}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        fps[1..].iter().all(|f| (8.5..=11.5).contains(f)),
        "the stream did not keep 10 frames/s: {fps:?}"
    );
    let stderr = vigil.stop_clean();
    assert!(stderr.contains("summary"), "no summary:\n{}", tail(&stderr));
}

/// One looped `vtest.avi` stream with an RTSP mount and a mosaic on a free port of 127.0.0.1.
fn write_config(config: &Path, models: &Path, media: &Path) {
    std::fs::write(
        config,
        format!(
            "name: viewers\n\
             model_repository: {models}\n\
             sources:\n  - name: vtest\n    uri: {media}\n    loop: true\n\
             inference:\n  model: nanodet\n  threshold: 0.4\n  interval: 2\n\
             outputs:\n  rtsp:\n    address: 127.0.0.1\n    port: 0\n    mount: /viewers\n    encoder: x264\n\
             \x20 mosaic:\n    width: 640\n    height: 360\n    fps: 10\n\
             realtime: true\n",
            models = models.display(),
            media = media.display(),
        ),
    )
    .expect("write the config");
}
