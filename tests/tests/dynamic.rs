//! Streams added and removed at run time through the HTTP API (`POST /streams`,
//! `DELETE /streams/{id}`), under load: eight looping sources with RTSP outputs and a mosaic; a ninth
//! is added, runs, and is removed again (four times); then one of the eight is removed. The other streams
//! must keep flowing (no gap over 1 s between their frames, in wall-clock time and in output
//! timestamps), and the process's thread count and resident memory must return to their level before
//! the ninth stream came.
//!
//! Runs the real `vigil` binary (`VIGIL_BIN` overrides); skips with a `SKIPPED` line when the sample
//! media or the NanoDet model are not installed (`make setup`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_tests::{TempDir, repo_root, skip};

/// One request to the API; panics on a transport failure.
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    vigil_tests::http_request(addr, method, path, body).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET /streams` as `name → (state, frames)`.
fn streams(addr: &str) -> BTreeMap<String, (String, u64)> {
    vigil_tests::get_streams(addr)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                (
                    s["state"].as_str().unwrap_or_default().to_string(),
                    s["frames"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// `(threads, resident KiB)` of process `pid`.
fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

/// The names of process `pid`'s threads (`/proc/<pid>/task/*/comm`) with their counts.
fn thread_names(pid: u32) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.flatten() {
            if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
                *names.entry(comm.trim().to_string()).or_insert(0) += 1;
            }
        }
    }
    names
}

/// How many idle threads GLib keeps in its shared thread pool (`g_thread_pool_get_max_unused_threads`
/// default).
const GLIB_KEPT_IDLE: usize = 2;

/// Idle threads of GLib's shared pool (named `pool-<program>` or `pool`).
fn idle_pool_threads(names: &BTreeMap<String, usize>) -> usize {
    names
        .iter()
        .filter(|(n, _)| *n == "pool" || n.starts_with("pool-"))
        .map(|(_, c)| c)
        .sum()
}

/// Every other thread.
fn own_threads(names: &BTreeMap<String, usize>) -> usize {
    names.values().sum::<usize>() - idle_pool_threads(names)
}

/// What changed between two thread-name counts, as `name: before → after`.
fn names_diff(a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>) -> String {
    let mut out = Vec::new();
    for name in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (x, y) = (
            a.get(name).copied().unwrap_or(0),
            b.get(name).copied().unwrap_or(0),
        );
        if x != y {
            out.push(format!("{name}: {x} → {y}"));
        }
    }
    out.join(", ")
}

/// `(threads, resident KiB)` of process `pid`: the medians of 20 samples over 2 s (the resident size
/// of a running pipeline moves with the frames in flight).
fn settled(pid: u32) -> (u64, u64) {
    let mut t = Vec::new();
    let mut r = Vec::new();
    for _ in 0..20 {
        let (a, b) = threads_and_rss(pid);
        t.push(a);
        r.push(b);
        std::thread::sleep(Duration::from_millis(100));
    }
    t.sort_unstable();
    r.sort_unstable();
    (t[t.len() / 2], r[r.len() / 2])
}

/// Waits until `done()` (polled every 200 ms) or `limit`; returns whether it became true.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One frame event: `(source, wall-clock ms, pts ns)`.
fn read_events(path: &Path) -> Vec<(String, u64, Option<u64>)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["source"].as_str().unwrap_or_default().to_string(),
                v["timestamp_ms"].as_u64().unwrap_or(0),
                v["pts_ns"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn streams_added_and_removed_under_load() {
    let root = repo_root();
    let bikes = root.join("samples/media/bikes.mp4");
    let vtest = root.join("samples/media/vtest.avi");
    let model = root.join("models/nanodet/1/model.onnx");
    for f in [&bikes, &vtest, &model] {
        if !f.is_file() {
            skip(format_args!(
                "streams_added_and_removed_under_load: {} is not installed (run `make setup`)",
                f.display()
            ));
            return;
        }
    }
    let dir = TempDir::new("dynamic");
    let events = dir.path().join("events.jsonl");
    let mut sources = String::new();
    for i in 0..8 {
        let media = if i % 2 == 0 { &bikes } else { &vtest };
        sources.push_str(&format!(
            "  - name: s{i}\n    uri: {}\n    loop: true\n",
            media.display()
        ));
    }
    let config = dir.path().join("dynamic.yaml");
    std::fs::write(
        &config,
        format!(
            "name: dyn\nmodel_repository: {}\nsources:\n{sources}inference:\n  model: nanodet\n  interval: 3\n\
             outputs:\n  rtsp:\n    port: 0\n    bitrate_kbps: 500\n  mosaic:\n    width: 640\n    height: 360\n    tiles: 9\n    fps: 10\n\
             \x20 events:\n    path: {}\nrealtime: true\napi:\n  port: 0\n",
            root.join("models").display(),
            events.display()
        ),
    )
    .unwrap();
    let (vigil, info) = vigil_tests::start_vigil(&config, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = info.api.expect("the API address");
    let pid = vigil.child.id();

    // All eight play.
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = streams(&addr);
            s.len() == 8 && s.values().all(|(st, f)| st == "playing" && *f >= 10)
        }),
        "the eight streams did not all play: {:?}\n{}",
        streams(&addr),
        vigil.stderr_text()
    );
    // Let the pipeline warm up (encoders' look-ahead, ONNX Runtime's arena) before the baseline.
    std::thread::sleep(Duration::from_secs(10));
    let before = settled(pid);
    // The names at a moment when the count is the settled one.
    let mut names_before = thread_names(pid);
    wait_until(Duration::from_secs(5), || {
        names_before = thread_names(pid);
        names_before.values().sum::<usize>() as u64 == before.0
    });
    let load_from_ms = unix_ms();
    eprintln!(
        "before: {} threads, {} MiB resident",
        before.0,
        before.1 / 1024
    );

    // Add a ninth stream and remove it again, CYCLES times.
    const CYCLES: usize = 6;
    let mut ops: Vec<(u64, String)> = Vec::new();
    let ninth = format!(
        r#"{{"name": "s8", "uri": "{}", "loop": true}}"#,
        bikes.display()
    );
    let mut after_cycles = Vec::new();
    for cycle in 1..=CYCLES {
        let t = Instant::now();
        ops.push((unix_ms(), format!("POST s8 (cycle {cycle})")));
        let (code, body) = http(&addr, "POST", "/streams", Some(&ninth));
        assert_eq!(code, 201, "POST /streams: {body}");
        let added: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(added["id"], "s8");
        assert!(
            added["rtsp"]
                .as_str()
                .is_some_and(|u| u.ends_with("/dyn/s8")),
            "{body}"
        );
        assert_eq!(added["mosaic_tile"], 8, "{body}");
        assert!(
            wait_until(Duration::from_secs(30), || streams(&addr)
                .get("s8")
                .is_some_and(|(st, f)| st == "playing" && *f >= 30)),
            "the added stream did not play: {:?}",
            streams(&addr)
        );
        let added_in = t.elapsed();
        let peak = threads_and_rss(pid);
        let t = Instant::now();
        ops.push((unix_ms(), format!("DELETE s8 (cycle {cycle})")));
        let (code, body) = http(&addr, "DELETE", "/streams/s8", None);
        assert_eq!(code, 200, "DELETE /streams/s8: {body}");
        let removed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            removed["drained"],
            true,
            "{body}\nvigil's stderr:\n{}",
            vigil.stderr_text()
        );
        assert!(removed["frames"].as_u64().unwrap_or(0) >= 30, "{body}");
        let removed_in = t.elapsed();
        assert!(!streams(&addr).contains_key("s8"));
        // GLib keeps up to two idle threads of its shared pool (the one GStreamer's streaming tasks run
        // on) for reuse, named `pool-<program>`: those are not the stream's. Every other thread must
        // end; wait for a settled count at the level before.
        let within = |n: &BTreeMap<String, usize>| {
            own_threads(n) <= own_threads(&names_before)
                && idle_pool_threads(n) <= idle_pool_threads(&names_before).max(GLIB_KEPT_IDLE)
        };
        let mut names_now = thread_names(pid);
        wait_until(Duration::from_secs(40), || {
            names_now = thread_names(pid);
            within(&names_now)
        });
        let now = settled(pid);
        eprintln!(
            "cycle {cycle}: added and playing 30 frames in {added_in:?} ({} threads, {} MiB); removed in {removed_in:?}; then {} threads, {} MiB; thread names changed: [{}]",
            peak.0,
            peak.1 / 1024,
            now.0,
            now.1 / 1024,
            names_diff(&names_before, &names_now)
        );
        assert!(
            peak.0 > before.0,
            "the ninth stream ran without threads of its own?"
        );
        assert!(
            within(&names_now),
            "threads: {} before the ninth stream, {} after its removal; changed: [{}]",
            before.0,
            now.0,
            names_diff(&names_before, &names_now)
        );
        after_cycles.push(now);
    }
    // Memory: streams that come and go leave some heap in the allocator's arenas and ONNX Runtime's
    // (reused by the next ones, not a leak: every element of a removed stream is freed), and the
    // resident size after a removal is noisy. Measured (MiB after each cycle, 2 cores): 610 start →
    // 615, 646, 648, 648; 600 → 609, 632, 640, 641; 621 → 606, 614, 620, 620, 649: a band of about
    // 50 MiB above the start, with no trend, so one cycle is no baseline for the next. A stream's
    // pipeline is tens of MiB (decoder, queues, encoder), so one leaked per cycle would take the
    // resident size past the band within these cycles.
    let rss_last = after_cycles[CYCLES - 1].1;
    let series: Vec<u64> = after_cycles.iter().map(|c| c.1 / 1024).collect();
    assert!(
        rss_last <= before.1 + 64 * 1024,
        "resident memory {} MiB after the cycles, {} MiB before (after each cycle: {series:?})",
        rss_last / 1024,
        before.1 / 1024
    );

    // Remove one of the eight; its name is free again, the others go on.
    ops.push((unix_ms(), "DELETE s3".into()));
    let (code, body) = http(&addr, "DELETE", "/streams/s3", None);
    assert_eq!(code, 200, "DELETE /streams/s3: {body}");
    let (code, body) = http(&addr, "DELETE", "/streams/s3", None);
    assert_eq!(code, 404, "{body}");
    let (code, body) = http(
        &addr,
        "POST",
        "/streams",
        Some(r#"{"name": "s0", "uri": "/nowhere.mp4"}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no such file /nowhere.mp4"), "{body}");
    let (code, body) = http(
        &addr,
        "POST",
        "/streams",
        Some(&format!(
            r#"{{"name": "s0", "uri": "{}"}}"#,
            bikes.display()
        )),
    );
    assert_eq!(code, 409, "{body}");
    std::thread::sleep(Duration::from_secs(3));
    let end_ms = unix_ms();
    let final_streams = streams(&addr);
    assert_eq!(final_streams.len(), 7, "{final_streams:?}");

    let stderr = vigil.stop_clean();
    assert!(!stderr.contains("error:"), "{stderr}");

    // The streams that stayed never stalled while the others came and went.
    let events = read_events(&events);
    let mut by_source: BTreeMap<&str, Vec<(u64, Option<u64>)>> = BTreeMap::new();
    for (s, t, p) in &events {
        by_source.entry(s).or_default().push((*t, *p));
    }
    for i in [0, 1, 2, 4, 5, 6, 7] {
        let name = format!("s{i}");
        let frames = &by_source[name.as_str()];
        let window: Vec<_> = frames
            .iter()
            .filter(|(t, _)| *t >= load_from_ms && *t <= end_ms)
            .collect();
        let (wall_gap, gap_at) = window
            .windows(2)
            .map(|w| (w[1].0 - w[0].0, w[0].0))
            .max()
            .unwrap_or((u64::MAX, 0));
        // The API call nearest before the gap, to tell a stall it caused from CPU starvation.
        let near = ops
            .iter()
            .rev()
            .find(|(t, _)| *t <= gap_at + 1000)
            .map(|(t, what)| format!("{what} {} ms before", gap_at as i64 - *t as i64))
            .unwrap_or_default();
        let pts_gap = window
            .windows(2)
            .filter_map(|w| Some(w[1].1?.saturating_sub(w[0].1?)))
            .max()
            .unwrap_or(u64::MAX);
        eprintln!(
            "{name}: {} frames while streams were added and removed; largest gap {:.0} ms (output timestamps), {wall_gap} ms (wall clock; {near})",
            window.len(),
            pts_gap as f64 / 1e6
        );
        assert!(window.len() >= 20, "{name}: {} frames", window.len());
        // The output timestamps must not jump over 1 s; in wall-clock time allow for CPU starvation of
        // this 2-core machine under load (a stall caused by the API calls would be seconds).
        assert!(
            wall_gap <= 3000,
            "{name}: a {wall_gap} ms gap in wall-clock time"
        );
        assert!(pts_gap <= 1_000_000_000, "{name}: a {pts_gap} ns gap");
    }
    assert!(by_source.get("s8").is_some_and(|f| f.len() >= 60));
}

/// Found by schemathesis: a stream added through the API whose source fails before its first frame
/// (a closed port, `reconnect.attempts: 0`) made the playing pipeline lose its state (PAUSED, waiting
/// for that source's preroll) and every other stream stopped. It must fail alone.
#[test]
fn an_added_stream_that_fails_at_once_stops_no_other() {
    let root = repo_root();
    let video = root.join("samples/media/vtest.avi");
    if !video.is_file() || !root.join("models/nanodet/1/model.onnx").is_file() {
        assert!(
            std::env::var("CI").is_err(),
            "assets not installed (make setup)"
        );
        skip(format_args!(
            "an_added_stream_that_fails_at_once: assets not installed"
        ));
        return;
    }
    let dir = TempDir::new("fail-at-once");
    let cfg = dir.path().join("run.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: once\nmodel_repository: {}\nsources:\n  - name: base\n    uri: {}\n    loop: true\n\
             inference:\n  model: nanodet\n  interval: 5\noutputs:\n  rtsp: {{ port: 0 }}\n  \
             mosaic: {{ width: 320, height: 240, tiles: 2 }}\n  file: {{ path: {} }}\nrealtime: true\napi: {{ port: 0 }}\n",
            root.join("models").display(),
            video.display(),
            dir.path().join("rec.mp4").display()
        ),
    )
    .unwrap();
    let (mut vigil, info) =
        vigil_tests::start_vigil(&cfg, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let api = info.api.expect("API address");
    let frames = |api: &str| streams(api).get("base").map_or(0, |s| s.1);
    assert!(wait_until(Duration::from_secs(20), || frames(&api) > 10));
    let closed = vigil_tests::free_port();
    let body = format!(
        r#"{{"name": "dead", "uri": "http://127.0.0.1:{closed}/none.mp4", "reconnect": {{"attempts": 0, "interval_ms": 1}}}}"#
    );
    let (code, answer) = http(&api, "POST", "/streams", Some(&body));
    assert_eq!(code, 201, "{answer}");
    std::thread::sleep(Duration::from_secs(1));
    let before = frames(&api);
    std::thread::sleep(Duration::from_secs(5));
    let after = frames(&api);
    // vtest.avi plays at 10 frames/s: 5 s are about 50 frames.
    assert!(
        after >= before + 25,
        "the other stream stopped: {before} then {after} frames 5 s later\n{}",
        vigil.stderr_text()
    );
    vigil.interrupt();
    let status = vigil.wait(Duration::from_secs(30));
    let stderr = vigil.stderr_text();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(stderr.contains("error: source 'dead' failed"), "{stderr}");
    assert!(
        !stderr.contains("CRITICAL") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
