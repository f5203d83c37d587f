//! Triton Python-backend models (`backend: "python"`, `model.py`) served by `vigil serve` to
//! Triton's own Python client, beside a real Triton server (pytriton's `tritonserver` 2.51) serving
//! the same repository:
//!
//! - `add_sub` (`engine/tests/python_models/`): sums and differences over HTTP and gRPC, eight
//!   concurrent requests (batched into one `execute`), an exception in `execute` answered with its
//!   message; the outputs of the same requests equal the real server's
//!   (`tests/serve/python_backend_client.py`);
//! - the `model.py` the remote-inference tests give the real server (`tests/serve/tritonserver/`:
//!   NanoDet run by onnxruntime inside `execute`), unchanged under `vigil serve`: its outputs equal
//!   onnxruntime's run directly (`tests/serve/tritonserver/check.py`).
//!
//! The model processes use the project venv's Python (numpy, onnxruntime); the client is
//! `$VIGIL_CACHE/triton-venv`, the real server `$VIGIL_CACHE/pytriton-venv`. Without them the test
//! prints `SKIPPED` — and fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;
use vigil_tests::serve::{
    Served, Triton, ci, make_nanodet_python_repo, run_script, start_served, stop,
    venv_and_client_pythons,
};

use vigil_tests::{TempDir, Vigil, read_events, repo_root, skip, vigil_bin};

/// The venv Pythons: the project's (model processes), the Triton client's.
fn pythons() -> Option<(PathBuf, PathBuf)> {
    venv_and_client_pythons("python_backend")
}

/// `vigil serve REPO` with the project venv's Python for the model processes.
fn serve_python(repo: &Path, python: &Path) -> Served {
    let mut cmd = Command::new(vigil_bin());
    cmd.arg("serve")
        .arg(repo)
        .args([
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ])
        .env("VIGIL_PYTHON_BACKEND_INTERPRETER", python);
    start_served(cmd)
}

/// Copies folder `from` to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn add_sub_answers_tritons_client_as_the_real_triton_server_does() {
    let Some((venv, triton_client)) = pythons() else {
        return;
    };
    let Some(_) = Triton::python() else {
        return;
    };
    let dir = TempDir::new("python-backend");
    let repo = dir.path().join("models");
    copy_dir(
        &repo_root().join("engine/tests/python_models/add_sub"),
        &repo.join("add_sub"),
    );
    let served = serve_python(&repo, &venv);
    let triton = Triton::start(&repo, "add_sub", &dir.path().join("tritonserver.log"));
    let text = run_script(
        &triton_client,
        "python_backend_client.py",
        &[
            "--vigil",
            &served.http,
            &served.grpc,
            "--triton",
            &triton.http,
            &triton.grpc,
        ],
        "PASS:",
    );
    assert!(text.contains("equal to tritonserver's"), "{text}");
    let stderr = stop(served);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_real_servers_onnxruntime_model_py_runs_unchanged() {
    let Some((venv, triton_client)) = pythons() else {
        return;
    };
    let root = repo_root();
    let onnx = root.join("models/nanodet/1/model.onnx");
    if !onnx.is_file() {
        assert!(
            !ci(),
            "{} is missing (scripts/setup.sh models)",
            onnx.display()
        );
        skip(format_args!("{} is missing", onnx.display()));
        return;
    }
    let Some(pytriton) = Triton::python() else {
        return;
    };
    let dir = TempDir::new("python-backend-ort");
    let repo = dir.path().join("models");
    make_nanodet_python_repo(&pytriton, &repo);
    let served = serve_python(&repo, &venv);
    run_script(
        &triton_client,
        "tritonserver/check.py",
        &[
            "--http",
            &served.http,
            "--grpc",
            &served.grpc,
            "--onnx",
            &onnx.to_string_lossy(),
            "--ref-python",
            &venv.to_string_lossy(),
        ],
        "PASS",
    );
    stop(served);
}

/// The detections (label, box, confidence, track) of every event of a `vigil run` of `clip` with
/// `model` of `configs/python_models`.
fn run_detections(
    dir: &Path,
    clip: &Path,
    model: &str,
    python: &Path,
) -> Vec<Vec<(String, [f64; 5], u64)>> {
    let events = dir.join(format!("{model}.jsonl"));
    let config = dir.join(format!("{model}.yaml"));
    std::fs::write(
        &config,
        format!(
            "name: {model}\nmodel_repository: {}\nsources:\n  - name: clip\n    uri: {}\n\
             inference: {{ model: {model} }}\noutputs:\n  events: {{ path: {} }}\nrealtime: false\n",
            repo_root().join("configs/python_models").display(),
            clip.display(),
            events.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(vigil_bin());
    cmd.arg("run")
        .arg(&config)
        .args(["--progress", "0"])
        .env("VIGIL_PYTHON_BACKEND_INTERPRETER", python);
    let (mut vigil, _) = Vigil::spawn(cmd);
    let status = vigil.wait(Duration::from_secs(300));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "vigil run with {model}:\n{}",
        vigil.stderr_text()
    );
    read_events(&events)
        .unwrap()
        .iter()
        .map(|e| {
            e["objects"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| {
                    let b = &o["bbox"];
                    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
                    (
                        o["label"].as_str().unwrap_or("").to_owned(),
                        [
                            f(&b["x"]),
                            f(&b["y"]),
                            f(&b["w"]),
                            f(&b["h"]),
                            f(&o["confidence"]),
                        ],
                        o["track_id"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn python_post_processing_in_an_ensemble_gives_the_built_in_decoders_events() {
    let Some((venv, _)) = pythons() else {
        return;
    };
    let root = repo_root();
    let media = root.join("samples/media/vtest.avi");
    let onnx = root.join("models/nanodet/1/model.onnx");
    if !vigil_tests::installed_with_ffmpeg(&[&media, &onnx]) {
        return;
    }
    let dir = TempDir::new("python-ensemble");
    let clip = dir.path().join("clip.mkv");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&media)
        .args(["-frames:v", "40", "-c:v", "ffv1"])
        .arg(&clip)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built_in = run_detections(dir.path(), &clip, "nanodet", &venv);
    let python = run_detections(dir.path(), &clip, "nanodet_py", &venv);
    assert_eq!(built_in.len(), 40, "one event per frame");
    assert_eq!(python.len(), built_in.len());
    let mut worst = 0f64;
    let mut objects = 0;
    for (frame, (a, b)) in built_in.iter().zip(&python).enumerate() {
        let labels = |d: &[(String, [f64; 5], u64)]| {
            d.iter().map(|o| (o.0.clone(), o.2)).collect::<Vec<_>>()
        };
        assert_eq!(labels(a), labels(b), "frame {frame}: labels and tracks");
        for (x, y) in a.iter().zip(b) {
            objects += 1;
            for (u, v) in x.1.iter().zip(&y.1) {
                worst = worst.max((u - v).abs());
            }
        }
    }
    eprintln!("{objects} objects in 40 frames; largest box or confidence difference {worst:e}");
    assert!(objects >= 100, "{objects} objects");
    assert!(worst < 1e-3, "largest difference {worst}");
}
