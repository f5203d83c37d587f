//! Remote inference: `vigil run` with `inference.server` sends NanoDet's input tensors to inference
//! servers that speak Triton's protocol — Vigil's own `vigil serve`, and a real Triton server
//! (`tritonserver` 2.51 from PyPI `nvidia-pytriton`, serving NanoDet through a Python-backend
//! `model.py` that runs it with onnxruntime: `tests/serve/tritonserver/`) — over gRPC and over HTTP
//! with binary tensors, and must give the in-process detections (boxes within 1 px, confidences within
//! 0.01) on the first 100 frames of `vtest.avi`. Four streams on one server form batches there; with
//! two servers, killed and restarted mid-run, the stream never stalls over 2 s, frames no server
//! answered pass without detections and are counted, and the restarted servers are used again.
//!
//! Needs `samples/media/vtest.avi`, `ffmpeg`, and for the Triton half the venv of
//! `scripts/setup.sh pytriton`; without them the tests print `SKIPPED` — and fail under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_tests::serve::{Triton, ci, kill, make_nanodet_python_repo, serve, serve_on, stop};
use vigil_tests::{
    EventsTail, TempDir, Vigil, free_port, http_get, installed_with_ffmpeg, read_events, repo_root,
};

/// One test at a time: each times its frames against a 1 s deadline per request, with servers on
/// the same 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first `frames` frames of `vtest.avi` (stream copy), in `dir`; `None` (skipped) without the
/// clip or ffmpeg.
fn clip(dir: &Path, frames: u32) -> Option<PathBuf> {
    let vtest = repo_root().join("samples/media/vtest.avi");
    if !installed_with_ffmpeg(&[&vtest]) {
        assert!(!ci(), "vtest.avi or ffmpeg missing (make setup)");
        return None;
    }
    let out = dir.join(format!("vtest{frames}.avi"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&vtest)
        .args(["-frames:v", &frames.to_string(), "-c", "copy"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg cutting {}", vtest.display());
    Some(out)
}

/// A config running NanoDet on `sources` (name, file) with `servers` (none: in process), events in
/// `dir/NAME.jsonl`.
fn config(dir: &Path, name: &str, sources: &[(&str, &Path)], servers: &[String]) -> PathBuf {
    let mut text = format!(
        "name: {name}\nmodel_repository: {}\nsources:\n",
        repo_root().join("models").display()
    );
    for (source, file) in sources {
        text += &format!("  - name: {source}\n    uri: {}\n", file.display());
    }
    text += "inference:\n  model: nanodet\n  threshold: 0.4\n";
    if !servers.is_empty() {
        text += &format!(
            "  server: [{}]\n  server_timeout_ms: 1000\n",
            servers
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    text += &format!(
        "outputs:\n  events:\n    path: {}\n",
        dir.join(format!("{name}.jsonl")).display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs `vigil run CONFIG` to its end (exit 0); its stderr and events.
fn run(dir: &Path, config: &Path) -> (String, Vec<Value>) {
    let (mut vigil, _) = Vigil::run(config, &[]);
    let status = vigil.wait(Duration::from_secs(300));
    let stderr = vigil.stderr_text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}:\n{stderr}",
        config.display()
    );
    let name = config.file_stem().unwrap().to_string_lossy();
    let events = read_events(&dir.join(format!("{name}.jsonl"))).expect("events");
    (stderr, events)
}

/// Compares the detections of two runs frame by frame: the same objects (label), boxes within
/// 1 px, confidences within 0.01. Returns the number of objects compared.
fn same_detections(want: &[Value], got: &[Value], what: &str) -> usize {
    assert_eq!(want.len(), got.len(), "{what}: frames");
    let mut compared = 0;
    for (a, b) in want.iter().zip(got) {
        let frame = &a["frame"];
        assert_eq!(a["frame"], b["frame"], "{what}: frame order");
        assert_eq!(b["inferred"], true, "{what}: frame {frame} not inferred");
        let (oa, ob) = (
            a["objects"].as_array().expect("objects"),
            b["objects"].as_array().expect("objects"),
        );
        assert_eq!(oa.len(), ob.len(), "{what}: frame {frame}: objects");
        for (x, y) in oa.iter().zip(ob) {
            assert_eq!(x["label"], y["label"], "{what}: frame {frame}");
            for k in ["x", "y", "w", "h"] {
                let (p, q) = (
                    x["bbox"][k].as_f64().unwrap(),
                    y["bbox"][k].as_f64().unwrap(),
                );
                assert!(
                    (p - q).abs() <= 1.0,
                    "{what}: frame {frame}: bbox.{k} {p} vs {q}"
                );
            }
            let (p, q) = (
                x["confidence"].as_f64().unwrap(),
                y["confidence"].as_f64().unwrap(),
            );
            assert!(
                (p - q).abs() <= 0.01,
                "{what}: frame {frame}: confidence {p} vs {q}"
            );
            compared += 1;
        }
    }
    compared
}

/// A real Triton server (pytriton's `tritonserver`) serving NanoDet through `model.py`
/// (`tests/serve/tritonserver/make_repo.py`); `None` (skipped; a failure in CI) without the venv of
/// `scripts/setup.sh pytriton`.
fn start_triton(dir: &Path) -> Option<Triton> {
    let python = Triton::python()?;
    let repo = dir.join("triton-models");
    make_nanodet_python_repo(&python, &repo);
    Some(Triton::start(
        &repo,
        "nanodet",
        &dir.join("tritonserver.log"),
    ))
}

/// `(inference_count, execution_count)` of NanoDet on the server at `http` (Triton's statistics
/// extension).
fn nanodet_counts(http: &str) -> (u64, u64) {
    let (status, body) =
        http_get(http, "/v2/models/nanodet/stats").unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("stats JSON");
    let s = &v["model_stats"][0];
    (
        s["inference_count"].as_u64().unwrap_or(0),
        s["execution_count"].as_u64().unwrap_or(0),
    )
}

#[test]
fn detections_over_grpc_and_http_equal_in_process_ones() {
    let _alone = one_at_a_time();
    let dir = TempDir::new("remote-equal");
    let Some(clip) = clip(dir.path(), 100) else {
        return;
    };
    let sources = [("vtest", clip.as_path())];
    let (_, local) = run(dir.path(), &config(dir.path(), "local", &sources, &[]));
    assert_eq!(local.len(), 100);

    let served = serve(
        &repo_root().join("models"),
        &[
            "--model-control-mode",
            "explicit",
            "--load-model",
            "nanodet",
            "--load-model",
            "centerface",
        ],
    );
    for (name, url) in [
        ("vigil-grpc", format!("grpc://{}", served.grpc)),
        ("vigil-http", format!("http://{}", served.http)),
    ] {
        let (_, events) = run(dir.path(), &config(dir.path(), name, &sources, &[url]));
        let n = same_detections(&local, &events, name);
        println!("{name}: 100 frames, {n} objects as in process");
    }
    let (inferences, _) = nanodet_counts(&served.http);
    assert_eq!(inferences, 200, "the server ran both runs' frames");
    // Secondary mode: CenterFace on the persons' crops, on the same server.
    let secondary = |name: &str, servers: &[String]| {
        let cfg = config(dir.path(), name, &sources, servers);
        let text = std::fs::read_to_string(&cfg).expect("config");
        let faces = "secondary:\n  - model: centerface\n    operate_on: [person]\n    \
                     min_size: 32\n    threshold: 0.5\n    nms_iou: 0.3\n";
        std::fs::write(&cfg, format!("{text}{faces}")).expect("config");
        run(dir.path(), &cfg).1
    };
    let local_faces = secondary("local-faces", &[]);
    let remote_faces = secondary("vigil-grpc-faces", &[format!("grpc://{}", served.grpc)]);
    let n = same_detections(&local_faces, &remote_faces, "secondary");
    let faces = remote_faces
        .iter()
        .flat_map(|e| e["objects"].as_array().unwrap())
        .filter(|o| o["label"] == "face")
        .count();
    println!("secondary over gRPC: {n} objects ({faces} faces) as in process");
    assert!(faces > 0, "CenterFace found faces");
    stop(served);

    let Some(triton) = start_triton(dir.path()) else {
        return;
    };
    for (name, url) in [
        ("triton-grpc", format!("grpc://{}", triton.grpc)),
        ("triton-http", format!("http://{}", triton.http)),
    ] {
        let (_, events) = run(dir.path(), &config(dir.path(), name, &sources, &[url]));
        let n = same_detections(&local, &events, name);
        println!("{name}: 100 frames, {n} objects as in process");
    }
}

#[test]
fn four_streams_form_batches_on_the_server() {
    let _alone = one_at_a_time();
    let dir = TempDir::new("remote-batch");
    let Some(clip) = clip(dir.path(), 100) else {
        return;
    };
    let served = serve(
        &repo_root().join("models"),
        &[
            "--model-control-mode",
            "explicit",
            "--load-model",
            "nanodet",
        ],
    );
    let sources: Vec<(&str, &Path)> = ["s0", "s1", "s2", "s3"]
        .into_iter()
        .map(|s| (s, clip.as_path()))
        .collect();
    let url = format!("grpc://{}", served.grpc);
    let (_, events) = run(dir.path(), &config(dir.path(), "four", &sources, &[url]));
    assert_eq!(events.len(), 400);
    assert!(events.iter().all(|e| e["inferred"] == true));
    let (inferences, executions) = nanodet_counts(&served.http);
    let mean = inferences as f64 / executions.max(1) as f64;
    println!("4 streams: {inferences} inferences in {executions} executions, mean batch {mean:.2}");
    assert_eq!(inferences, 400);
    assert!(mean > 1.0, "mean batch {mean:.2}");
    stop(served);
}

/// Frames of `events` that passed without inference.
fn not_inferred(events: &[Value]) -> usize {
    events.iter().filter(|e| e["inferred"] == false).count()
}

#[test]
fn failover_keeps_the_stream_running_and_reuses_restarted_servers() {
    let _alone = one_at_a_time();
    let dir = TempDir::new("remote-failover");
    let Some(clip) = clip(dir.path(), 300) else {
        return;
    };
    let repo = repo_root().join("models");
    let args = [
        "--model-control-mode",
        "explicit",
        "--load-model",
        "nanodet",
    ];
    let ports = |_| [free_port(), free_port(), free_port()];
    let (pa, pb): ([u16; 3], [u16; 3]) = (ports(0), ports(1));
    let a = serve_on(&repo, pa, &args);
    let b = serve_on(&repo, pb, &args);
    let urls = [format!("grpc://{}", a.grpc), format!("grpc://{}", b.grpc)];
    let cfg = config(dir.path(), "failover", &[("vtest", clip.as_path())], &urls);
    // At the clip's speed (10 fps), so that the servers are back before it ends.
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, format!("realtime: true\n{text}")).expect("config");
    let (mut vigil, _) = Vigil::run(&cfg, &[]);
    let mut tail = EventsTail::new(&dir.path().join("failover.jsonl"));
    let mut seen = 0usize;
    let limit = Instant::now() + Duration::from_secs(240);
    let mut wait_for = |n: usize, vigil: &mut Vigil| {
        while seen < n {
            seen += tail.read_new().expect("events").len();
            assert!(
                Instant::now() < limit && vigil.child.try_wait().ok().flatten().is_none(),
                "{seen} frames of {n}:\n{}",
                vigil.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // One server killed: the other takes its requests.
    wait_for(60, &mut vigil);
    kill(a);
    wait_for(120, &mut vigil);
    // Both down for a second: frames pass without detections.
    kill(b);
    std::thread::sleep(Duration::from_secs(1));
    // Both back on their ports: used again.
    let a = serve_on(&repo, pa, &args);
    let b = serve_on(&repo, pb, &args);
    let status = vigil.wait(Duration::from_secs(240));
    let stderr = vigil.stderr_text();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");

    let events = read_events(&dir.path().join("failover.jsonl")).expect("events");
    assert_eq!(events.len(), 300, "every frame went through");
    let stamps: Vec<u64> = events
        .iter()
        .map(|e| e["timestamp_ms"].as_u64().expect("timestamp_ms"))
        .collect();
    let longest = stamps
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0);
    let missed = not_inferred(&events);
    let (ra, rb) = (nanodet_counts(&a.http).0, nanodet_counts(&b.http).0);
    println!(
        "failover: 300 frames, {missed} not inferred, longest gap between frames {longest} ms, \
         restarted servers ran {ra} and {rb} frames"
    );
    assert!(longest < 2000, "a stall of {longest} ms:\n{stderr}");
    assert!(missed > 0, "no frame passed while both servers were down");
    assert!(
        stderr.contains(&format!("frames not inferred: {missed} ")),
        "the summary counts the {missed} frames:\n{stderr}"
    );
    assert!(
        stderr.contains("no inference server answers"),
        "the failure is reported:\n{stderr}"
    );
    assert!(ra > 0 && rb > 0, "restarted servers used: {ra}, {rb}");
    assert!(
        events.last().is_some_and(|e| e["inferred"] == true),
        "inferred again at the end"
    );
    stop(a);
    stop(b);
}

/// Servers that are not there: the run says so and names them; a bad URL is a config error naming
/// the key.
#[test]
fn unreachable_servers_and_bad_urls_are_clear_errors() {
    let _alone = one_at_a_time();
    let dir = TempDir::new("remote-errors");
    let Some(clip) = clip(dir.path(), 10) else {
        return;
    };
    let sources = [("vtest", clip.as_path())];
    let port = free_port();
    let url = format!("grpc://127.0.0.1:{port}");
    let cfg = config(dir.path(), "down", &sources, std::slice::from_ref(&url));
    let (mut vigil, _) = Vigil::run(&cfg, &[]);
    let status = vigil.wait(Duration::from_secs(60));
    let stderr = vigil.stderr_text();
    assert_ne!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert!(
        stderr.contains(&url) && stderr.contains("nanodet"),
        "the error names the server and the model:\n{stderr}"
    );

    let cfg = config(dir.path(), "bad", &sources, &["tcp://127.0.0.1:1".into()]);
    let out = Command::new(vigil_tests::vigil_bin())
        .arg("check")
        .arg(&cfg)
        .output()
        .expect("vigil check");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("inference.server") && text.contains("tcp://127.0.0.1:1"),
        "{text}"
    );
}

/// OCR's three models (PP-OCR det, cls, rec) on `vigil serve`: the same text lines and boxes as in
/// process on 10 inspection items (the recogniser's dictionary still read from the local repository).
#[test]
fn ocr_on_remote_models_reads_the_same_text() {
    let _alone = one_at_a_time();
    let dir = TempDir::new("remote-ocr");
    let items = repo_root().join("samples/media/inspection/items");
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&items) {
        Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            assert!(!ci(), "{}: {e} (make setup)", items.display());
            vigil_tests::skip(format_args!("{}: {e}", items.display()));
            return;
        }
    };
    names.sort();
    let ten = dir.path().join("items");
    std::fs::create_dir_all(&ten).expect("items folder");
    for f in names.iter().take(10) {
        std::fs::copy(f, ten.join(f.file_name().unwrap())).expect("copy item");
    }
    let served = serve(
        &repo_root().join("models"),
        &[
            "--model-control-mode",
            "explicit",
            "--load-model",
            "ppocr_det",
            "--load-model",
            "ppocr_cls",
            "--load-model",
            "ppocr_rec",
        ],
    );
    let ocr = |name: &str, server: Option<&str>| {
        let mut text = format!(
            "name: {name}\nmodel_repository: {}\nsources:\n  - name: line1\n    images:\n      \
             path: {}\n      output: {{width: 640, height: 400}}\nocr:\n  det_model: ppocr_det\n  \
             cls_model: ppocr_cls\n  rec_model: ppocr_rec\n",
            repo_root().join("models").display(),
            ten.display()
        );
        if let Some(url) = server {
            text += &format!("  server: \"{url}\"\n");
        }
        text += &format!(
            "outputs:\n  events:\n    path: {}\n",
            dir.path().join(format!("{name}.jsonl")).display()
        );
        let cfg = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&cfg, text).expect("config");
        run(dir.path(), &cfg).1
    };
    let local = ocr("ocr-local", None);
    let remote = ocr("ocr-remote", Some(&format!("grpc://{}", served.grpc)));
    assert_eq!(local.len(), 10);
    let lines = |events: &[Value]| -> Vec<Vec<(String, [f64; 4])>> {
        events
            .iter()
            .map(|e| {
                e["objects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| {
                        let b = &o["bbox"];
                        let f = |k: &str| b[k].as_f64().unwrap();
                        (
                            o["text"].as_str().unwrap_or_default().to_string(),
                            [f("x"), f("y"), f("w"), f("h")],
                        )
                    })
                    .collect()
            })
            .collect()
    };
    let (want, got) = (lines(&local), lines(&remote));
    let n: usize = want.iter().map(Vec::len).sum();
    assert!(n > 0, "OCR read text in process");
    for (item, (a, b)) in want.iter().zip(&got).enumerate() {
        assert_eq!(a.len(), b.len(), "item {item}: lines");
        for ((ta, ba), (tb, bb)) in a.iter().zip(b) {
            assert_eq!(ta, tb, "item {item}");
            for (p, q) in ba.iter().zip(bb) {
                assert!((p - q).abs() <= 1.0, "item {item}: {ba:?} vs {bb:?}");
            }
        }
    }
    println!("OCR on remote models: 10 items, {n} lines as in process");
    stop(served);
}
