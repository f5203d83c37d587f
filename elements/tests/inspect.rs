//! `gst-inspect-1.0` documents every Vigil element and every property with a default, loading the
//! plugin built by this test run (the cdylib in the target folder) through `GST_PLUGIN_PATH`.

use std::path::PathBuf;
use std::process::Command;

fn plugin_dir() -> PathBuf {
    // target/<profile>/deps/inspect-<hash> -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf()
}

fn inspect(element: &str) -> String {
    let dir = plugin_dir();
    assert!(
        dir.join("libgstvigil.so").is_file(),
        "plugin not built in {}",
        dir.display()
    );
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
        if line.starts_with("  ") && !line.starts_with("   ") && line.contains(" : ") {
            let name = line.trim().split(' ').next().unwrap().to_string();
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
    assert!(
        text.contains("SINK template") && text.contains("SRC template"),
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
            .split(" : ")
            .nth(1)
            .unwrap_or("");
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
            "threads",
        ],
    );
}

#[test]
fn vigiltrack_is_documented() {
    check(
        "vigiltrack",
        &["tracker", "iou-threshold", "max-age", "min-hits"],
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
        ],
    );
}
