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

/// Serves the test models `models` (`engine/tests/python_models/`) with `vigil serve` and with the
/// real Triton server, and runs Triton's client in `script` against both (it must say `PASS:` and
/// that the answers equal tritonserver's).
fn compare_with_triton(tag: &str, models: &[&str], script: &str) {
    let Some((venv, triton_client)) = pythons() else {
        return;
    };
    let Some(_) = Triton::python() else {
        return;
    };
    let dir = TempDir::new(tag);
    let repo = dir.path().join("models");
    for model in models {
        copy_dir(
            &repo_root().join("engine/tests/python_models").join(model),
            &repo.join(model),
        );
    }
    let served = serve_python(&repo, &venv);
    let triton = Triton::start(
        &repo,
        &models.join(","),
        &dir.path().join("tritonserver.log"),
    );
    let text = run_script(
        &triton_client,
        script,
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
fn add_sub_answers_tritons_client_as_the_real_triton_server_does() {
    compare_with_triton("python-backend", &["add_sub"], "python_backend_client.py");
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
    let mut vigil = vigil_run(&config, python);
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

/// The sample clip and NanoDet, relative to the repository.
const VTEST: &str = "samples/media/vtest.avi";
const NANODET: &str = "models/nanodet/1/model.onnx";

/// What a `vigil run` test of a Python model needs: the project venv's Python, a folder, and the
/// first `frames` frames of `vtest.avi` in it; `None` (skipped, or failed under `CI=true`) without
/// the venv, the media, NanoDet or ffmpeg.
fn vtest_setup(tag: &str, frames: u32) -> Option<(PathBuf, TempDir, PathBuf)> {
    let (venv, _) = pythons()?;
    let root = repo_root();
    if !vigil_tests::installed_with_ffmpeg(&[&root.join(VTEST), &root.join(NANODET)]) {
        return None;
    }
    let dir = TempDir::new(tag);
    let clip = vtest_clip(dir.path(), frames);
    Some((venv, dir, clip))
}

/// Starts `vigil run CONFIG` with `python` for the Python-backend models' processes.
fn vigil_run(config: &Path, python: &Path) -> Vigil {
    let mut cmd = Command::new(vigil_bin());
    cmd.arg("run")
        .arg(config)
        .args(["--progress", "0"])
        .env("VIGIL_PYTHON_BACKEND_INTERPRETER", python);
    Vigil::spawn(cmd).0
}

/// The first `frames` frames of `vtest.avi`, losslessly, in `dir`.
fn vtest_clip(dir: &Path, frames: u32) -> PathBuf {
    let clip = dir.join("clip.mkv");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(repo_root().join(VTEST))
        .args(["-frames:v", &frames.to_string(), "-c:v", "ffv1"])
        .arg(&clip)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    clip
}

#[test]
fn python_post_processing_in_an_ensemble_gives_the_built_in_decoders_events() {
    let Some((venv, dir, clip)) = vtest_setup("python-ensemble", 40) else {
        return;
    };
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

#[test]
fn decoupled_models_stream_to_tritons_client_as_on_the_real_triton_server() {
    compare_with_triton(
        "python-decoupled",
        &["repeat", "repeat_sum"],
        "decoupled_client.py",
    );
}

#[test]
fn the_python_colour_rule_labels_each_tracked_person_consistently() {
    let Some((venv, dir, clip)) = vtest_setup("python-colour", 60) else {
        return;
    };
    let root = repo_root();
    // configs/colour.yaml as shipped, on the clip, events only.
    let shipped = std::fs::read_to_string(root.join("configs/colour.yaml")).unwrap();
    let head = shipped
        .split("overlay:")
        .next()
        .expect("an overlay section");
    let events = dir.path().join("events.jsonl");
    let config = dir.path().join("colour.yaml");
    std::fs::write(
        &config,
        head.replace(
            "model_repository: python_models",
            &format!(
                "model_repository: {}",
                root.join("configs/python_models").display()
            ),
        )
        .replace(
            "uri: ../samples/media/vtest.avi",
            &format!("uri: {}", clip.display()),
        ) + &format!(
            "outputs:\n  events: {{ path: {} }}\nrealtime: false\n",
            events.display()
        ),
    )
    .unwrap();
    let mut vigil = vigil_run(&config, &venv);
    let status = vigil.wait(Duration::from_secs(300));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        vigil.stderr_text()
    );

    let colours = [
        "black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple",
    ];
    // Per person track: the colours it was given.
    let mut by_track: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let (mut people, mut children) = (0, 0);
    for event in read_events(&events).unwrap() {
        let objects = event["objects"].as_array().cloned().unwrap_or_default();
        for o in &objects {
            if o["model"] != "person_colour" {
                people += usize::from(o["label"] == "person");
                continue;
            }
            children += 1;
            let label = o["label"].as_str().unwrap_or_default().to_owned();
            assert!(colours.contains(&label.as_str()), "label {label}");
            let parent = objects
                .iter()
                .find(|p| p["id"] == o["parent"] && p["label"] == "person")
                .unwrap_or_else(|| panic!("no person parent for {o}"));
            if let Some(track) = parent["track_id"].as_u64() {
                by_track.entry(track).or_default().push(label);
            }
        }
    }
    // Most people get a colour (crops under 24 px or without a 30 % majority do not).
    assert!(
        children * 2 >= people,
        "{children} colours for {people} people"
    );
    // A person keeps their colour: the track's most frequent colour in at least 70 % of its frames.
    let (mut agree, mut total) = (0, 0);
    for labels in by_track.values() {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for l in labels {
            *counts.entry(l.as_str()).or_default() += 1;
        }
        agree += counts.values().max().copied().unwrap_or(0);
        total += labels.len();
    }
    eprintln!(
        "{children} colours for {people} people on {} tracks; {agree} of {total} agree with their track's colour",
        by_track.len()
    );
    assert!(agree * 10 >= total * 7, "{agree} of {total}");
}

/// The processes of `parent`'s children that run the Python stub (one per Python model instance).
fn stub_children(parent: u32) -> Vec<i32> {
    let parent = parent.to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned));
        if ppid.as_deref() != Some(parent.as_str()) {
            continue;
        }
        let cmd = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
        if cmd.contains("vigil_python_stub.py") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn killing_a_python_models_process_mid_run_never_stops_the_pipeline() {
    let Some((venv, dir, clip)) = vtest_setup("python-kill", 160) else {
        return;
    };
    let root = repo_root();
    // configs/python_models with a Python step that takes 100 ms more per batch, so that the kill
    // can land while a frame's request is in flight.
    let repo = dir.path().join("models");
    copy_dir(
        &root.join("configs/python_models/nanodet_py"),
        &repo.join("nanodet_py"),
    );
    copy_dir(
        &root.join("configs/python_models/nanodet_gfl"),
        &repo.join("nanodet_gfl"),
    );
    std::os::unix::fs::symlink(root.join("models/nanodet"), repo.join("nanodet")).unwrap();
    let step = repo.join("nanodet_gfl/1/model.py");
    let code = std::fs::read_to_string(&step).unwrap();
    // While it sleeps, the step shows a marker file: the test kills it then.
    let busy = dir.path().join("busy");
    let slow = code.replacen(
        "    def execute(self, requests):\n",
        &format!(
            "    def execute(self, requests):\n        import os, time\n        \
             open({busy:?}, 'w').close()\n        time.sleep(0.1)\n        os.remove({busy:?})\n"
        ),
        1,
    );
    assert_ne!(slow, code, "nanodet_gfl's execute not found");
    std::fs::write(&step, slow).unwrap();
    let events = dir.path().join("events.jsonl");
    let config = dir.path().join("kill.yaml");
    std::fs::write(
        &config,
        format!(
            "name: kill\nmodel_repository: {}\nsources:\n  - name: clip\n    uri: {}\n\
             inference: {{ model: nanodet_py }}\noutputs:\n  events: {{ path: {} }}\nrealtime: false\n",
            repo.display(),
            clip.display(),
            events.display()
        ),
    )
    .unwrap();
    let mut vigil = vigil_run(&config, &venv);
    let pid = vigil.child.id();
    // Once 60 frames are out, kill -9 the Python step's process (the run's only Python model)
    // while it executes a batch.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut killed = Vec::new();
    while killed.is_empty() && std::time::Instant::now() < deadline {
        let written = std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .count();
        if written >= 60 && busy.exists() {
            killed = stub_children(pid);
            for p in &killed {
                // SAFETY: kill(2) on a child of the vigil process this test started.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !killed.is_empty(),
        "no Python process to kill:\n{}",
        vigil.stderr_text()
    );
    let status = vigil.wait(Duration::from_secs(120));
    let stderr = vigil.stderr_text();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    let frames = read_events(&events).unwrap();
    assert_eq!(frames.len(), 160, "every frame has its event");
    let with_objects =
        |f: &serde_json::Value| f["objects"].as_array().is_some_and(|o| !o.is_empty());
    // The frames whose requests the kill failed pass without the model (`inferred: false`; the
    // tracker predicts through them); the model answers the next ones again.
    let failed: Vec<usize> = (0..frames.len())
        .filter(|&i| frames[i]["inferred"] == false)
        .collect();
    let after = frames[120..].iter().filter(|f| with_objects(f)).count();
    eprintln!(
        "killed {killed:?}; frames not inferred {failed:?}; with objects among the last 40: {after}"
    );
    assert!(after >= 35, "detections after the restart: {after} of 40");
    assert!(!failed.is_empty(), "the kill failed no frame's request");
    assert!(failed.len() <= 16, "{} frames not inferred", failed.len());
    assert!(
        stderr.contains("frames pass without detections while the model failed a frame"),
        "the failed frames are reported:\n{stderr}"
    );
    assert!(
        stderr.contains("starting the Python process of instance") && stderr.contains("again"),
        "the instance was restarted:\n{stderr}"
    );
}
