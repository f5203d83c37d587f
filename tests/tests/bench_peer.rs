//! The benchmark's comparison is fair only if the Python peer (`benches/peers/python_peer.py`) finds the
//! same objects as Vigil: on the first 100 frames of `samples/media/vtest.avi` (cut with ffmpeg), `vigil
//! run` (events output) and the peer (same model, threshold 0.4, NMS 0.5, the traffic classes) must
//! report the same number of detections with the same classes on at least 95 % of the frames.
//!
//! Skips with a message when the peers venv (`scripts/setup.sh peers`), the sample media or the model
//! are not installed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil::bench::{self, parity};
use vigil_tests::{TempDir, Vigil, repo_root, skip};

const FRAMES: u64 = 100;

#[test]
fn python_peer_finds_the_same_objects_as_vigil() {
    let root = repo_root();
    let video = root.join("samples/media/vtest.avi");
    let model = root.join("models/nanodet/1/model.onnx");
    let Some(python) = bench::peers_python() else {
        skip(format_args!(
            "bench_peer: no peers venv (~/.cache/vigil/peers-venv; run scripts/setup.sh peers)"
        ));
        return;
    };
    if !video.is_file() || !model.is_file() {
        skip(format_args!(
            "bench_peer: {} or {} missing (make setup)",
            video.display(),
            model.display()
        ));
        return;
    }
    let dir = TempDir::new("bench-peer");
    let clip = bench::cut_clip(&video, FRAMES, dir.path()).expect("cut the clip");

    // Vigil: the benchmark's own config (NanoDet, IoU tracker, overlay), events only.
    let events = dir.path().join("events.jsonl");
    let config = dir.path().join("parity.yaml");
    let outputs = format!("  events:\n    path: {}\n", events.display());
    std::fs::write(
        &config,
        bench::vigil_config(&root.join("models"), "nanodet", &clip, 1, false, &outputs),
    )
    .unwrap();
    let (mut vigil, _lines) = Vigil::run(&config, &["-q"]);
    let status = vigil.wait(Duration::from_secs(300));
    assert!(
        status.is_some_and(|s| s.success()),
        "vigil run: {status:?}\n{}",
        vigil.stderr_text()
    );

    // The peer on the same clip, without drawing or encoding (they do not change detections).
    let dets = dir.path().join("peer.jsonl");
    let out = Command::new(&python)
        .arg(root.join("benches/peers/python_peer.py"))
        .arg("--video")
        .arg(&clip)
        .arg("--model")
        .arg(&model)
        .args(["--classes", bench::CLASSES, "--encode", "none", "--no-draw"])
        .args(["--threshold", &bench::THRESHOLD.to_string()])
        .args(["--nms-iou", &bench::NMS_IOU.to_string()])
        .arg("--detections")
        .arg(&dets)
        .arg("--stats")
        .arg(dir.path().join("stats.json"))
        .output()
        .expect("start the Python peer");
    assert!(
        out.status.success(),
        "python_peer.py: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v = parity::vigil_labels(&read(&events), "s0").unwrap();
    let p = parity::peer_labels(&read(&dets), 0).unwrap();
    assert_eq!(v.len() as u64, FRAMES, "Vigil's events: {} frames", v.len());
    assert_eq!(
        p.len() as u64,
        FRAMES,
        "the peer's detections: {} frames",
        p.len()
    );
    let objects: usize = v.values().map(Vec::len).sum();
    assert!(
        objects >= FRAMES as usize,
        "only {objects} objects in {FRAMES} frames"
    );
    let r = parity::compare(&v, &p);
    eprintln!(
        "bench_peer: same detection count and classes on {}/{} frames ({:.1} %); Vigil found {objects} objects",
        r.equal,
        r.frames,
        r.fraction() * 100.0
    );
    assert!(
        r.fraction() >= 0.95,
        "the peer agrees with Vigil on only {}/{} frames; differing (frame, Vigil, peer): {:?}",
        r.equal,
        r.frames,
        r.examples
    );
}
