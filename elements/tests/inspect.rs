//! `gst-inspect-1.0` documents every Vigil element and every property with a default, loading the
//! plugin built by this test run (the cdylib in the target folder) through `GST_PLUGIN_PATH`.

use std::path::PathBuf;
use std::process::Command;

/// A folder holding only the plugin built for this test run. `cargo test` leaves the cdylib in
/// `target/<profile>/deps/` (`cargo build` also copies it to `target/<profile>/`); the newer one is copied
/// into a private folder so that GStreamer scans nothing else.
fn plugin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/inspect-<hash>
        let exe = std::env::current_exe().unwrap();
        let deps = exe.parent().unwrap();
        let candidates = [
            deps.join("libgstvigil.so"),
            deps.parent().unwrap().join("libgstvigil.so"),
        ];
        let newest = candidates
            .iter()
            .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
            .max()
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("plugin libgstvigil.so not built next to {}", exe.display()));
        // One copy per test process under the target's temporary folder; copies left by earlier
        // processes (the test binary cannot remove its own at exit) are removed first.
        let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("vigil-inspect");
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&newest, dir.join("libgstvigil.so")).unwrap();
        dir
    })
    .clone()
}

fn inspect(element: &str) -> String {
    let dir = plugin_dir();
    let registry =
        std::env::temp_dir().join(format!("vigil-inspect-registry-{}.bin", std::process::id()));
    let out = Command::new("gst-inspect-1.0")
        .arg(element)
        .env("GST_PLUGIN_PATH", &dir)
        .env("GST_REGISTRY", &registry)
        .output()
        .expect("gst-inspect-1.0 runs (gstreamer1.0-tools)");
    let _ = std::fs::remove_file(&registry);
    assert!(
        out.status.success(),
        "gst-inspect-1.0 {element} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Splits the "Element Properties" section into (name, block text) pairs.
fn properties(text: &str) -> Vec<(String, String)> {
    let section = text
        .split("Element Properties:")
        .nth(1)
        .expect("a properties section");
    let mut props: Vec<(String, String)> = Vec::new();
    for line in section.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") && line.contains(':') {
            // "  name      : blurb" (a name of 20+ characters is followed by the colon directly)
            let name = line.trim().split([' ', ':']).next().unwrap().to_string();
            props.push((name, line.to_string()));
        } else if let Some(last) = props.last_mut() {
            if line.trim().is_empty() || !line.starts_with(' ') {
                break;
            }
            last.1.push('\n');
            last.1.push_str(line);
        }
    }
    props
}

fn check(element: &str, expected: &[&str]) {
    let text = inspect(element);
    assert!(text.contains("The Vigil developers"), "{text}");
    // Sources (vigilsrc, vigilimagesrc) have no sink pad.
    assert!(
        (text.contains("SINK template") || element.ends_with("src"))
            && text.contains("SRC template"),
        "{text}"
    );
    let props = properties(&text);
    for name in expected {
        let (_, block) = props
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{element}: property {name} not documented"));
        assert!(
            block.contains("Default:"),
            "{element}.{name} has no default: {block}"
        );
        let blurb = block
            .lines()
            .next()
            .unwrap()
            .split_once(':')
            .map_or("", |(_, b)| b.trim());
        assert!(blurb.len() > 10, "{element}.{name} has no real description");
    }
}

#[test]
fn vigilinfer_is_documented() {
    check(
        "vigilinfer",
        &[
            "model-repository",
            "model",
            "model-version",
            "threshold",
            "nms-iou",
            "classes",
            "interval",
            "max-detections",
            "priority",
            "repository-poll-secs",
            "process-mode",
            "operate-on-labels",
            "min-object-size",
            "crop-expand",
            "preprocess",
        ],
    );
}

#[test]
fn vigilocr_is_documented() {
    check(
        "vigilocr",
        &[
            "model-repository",
            "det-model",
            "cls-model",
            "rec-model",
            "det-threshold",
            "box-threshold",
            "unclip-ratio",
            "min-text-score",
            "operate-on-labels",
        ],
    );
}

#[test]
fn vigiltrack_is_documented() {
    check(
        "vigiltrack",
        &[
            "tracker",
            "iou-threshold",
            "max-age",
            "track-buffer",
            "min-hits",
            "track-thresh",
            "low-thresh",
            "new-track-thresh",
            "match-class",
        ],
    );
}

#[test]
fn vigilanalytics_is_documented() {
    check(
        "vigilanalytics",
        &["config", "rules", "anchor", "hysteresis", "forget-after"],
    );
}

#[test]
fn vigilosd_is_documented() {
    check(
        "vigilosd",
        &[
            "draw-labels",
            "draw-confidence",
            "draw-track-ids",
            "line-width",
            "font-scale",
            "blur-labels",
            "draw-lines",
            "draw-zones",
            "draw-counters",
            "draw-trails",
            "trail-length",
            "draw-inspection",
        ],
    );
}

#[test]
fn vigilinspect_is_documented() {
    check(
        "vigilinspect",
        &[
            "rules",
            "snapshot-dir",
            "source-name",
            "snapshot-queue",
            "snapshot-quality",
            "items",
            "passed",
            "failed",
            "summary",
            "snapshots-written",
            "snapshots-dropped",
        ],
    );
}

#[test]
fn vigilsrc_is_documented() {
    check(
        "vigilsrc",
        &[
            "uri",
            "loop",
            "decoder",
            "drop-frame-interval",
            "rtsp-transport",
            "latency",
            "reconnect-interval",
            "reconnect-max-interval",
            "reconnect-attempts",
            "live-queue-size",
            "data-timeout",
            "image-framerate",
            "state",
            "reconnects",
            "frames-out",
            "frames-dropped",
        ],
    );
}

#[test]
fn vigilmsgbroker_is_documented() {
    check(
        "vigilmsgbroker",
        &[
            "protocol",
            "host",
            "port",
            "topic",
            "qos",
            "client-id",
            "username",
            "password",
            "tls",
            "tls-ca-file",
            "tls-cert-file",
            "tls-key-file",
            "keep-alive",
            "buffer-size",
            "drop-policy",
            "source-name",
            "path",
            "messages",
            "flush-timeout",
            "published",
            "dropped",
            "buffered",
            "reconnects",
        ],
    );
}

#[test]
fn vigilimagesrc_is_documented() {
    check(
        "vigilimagesrc",
        &[
            "location",
            "watch",
            "poll-interval-ms",
            "loop",
            "framerate",
            "min-size",
            "max-size",
            "sort",
        ],
    );
}
