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

use vigil_tests::serve::{
    Served, Triton, ci, make_nanodet_python_repo, run_script, start_served, stop,
    venv_and_client_pythons,
};
use vigil_tests::{TempDir, repo_root, skip, vigil_bin};

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
