//! `vigil serve` processes for the tests: started on free loopback ports (or given ones, to restart
//! a server where its clients look for it), their addresses read from the start-up line, and stopped
//! with SIGTERM or killed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Vigil, free_port, repo_root, vigil_bin};

/// Whether the tests run in CI (`CI=true`): a missing asset fails instead of skipping.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `$VIGIL_CACHE`, else `~/.cache/vigil` (where `scripts/setup.sh` makes its venvs).
pub fn cache() -> PathBuf {
    std::env::var_os("VIGIL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vigil")
        })
}

/// A running `vigil serve` and its HTTP, gRPC and metrics addresses.
pub struct Served {
    pub vigil: Vigil,
    pub http: String,
    pub grpc: String,
    pub metrics: String,
}

/// Starts `vigil serve REPO --http-port 0 --grpc-port 0 --metrics-port 0 ARGS…` and waits for its
/// addresses.
pub fn serve(repo: &Path, args: &[&str]) -> Served {
    serve_on(repo, [0, 0, 0], args)
}

/// Starts `vigil serve REPO` with HTTP, gRPC and metrics on `ports` (0 = any free port) and `args`,
/// and waits for its addresses.
pub fn serve_on(repo: &Path, ports: [u16; 3], args: &[&str]) -> Served {
    let mut cmd = Command::new(vigil_bin());
    cmd.arg("serve").arg(repo);
    for (flag, port) in ["--http-port", "--grpc-port", "--metrics-port"]
        .into_iter()
        .zip(ports)
    {
        cmd.args([flag, &port.to_string()]);
    }
    cmd.args(args);
    start_served(cmd)
}

/// Starts `cmd`, a `vigil serve …` (possibly behind `ip netns exec NS`), and waits for its
/// addresses.
pub fn start_served(cmd: Command) -> Served {
    let (mut vigil, rx) = Vigil::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let status = vigil.wait(Duration::from_millis(500));
            panic!(
                "vigil serve did not start (exit {status:?}):\n{}",
                vigil.stderr_text()
            );
        };
        if let Some(rest) = line.strip_prefix("vigil serve: HTTP on ") {
            let (http, rest) = rest.split_once(", gRPC on ").expect("gRPC address");
            let (grpc, rest) = rest.split_once(", metrics on ").expect("metrics address");
            let metrics = rest.split(' ').next().expect("metrics address");
            return Served {
                http: http.to_owned(),
                grpc: grpc.to_owned(),
                metrics: metrics.to_owned(),
                vigil,
            };
        }
    }
}

/// Stops with SIGTERM and asserts a clean end (exit 0 within 10 s); returns its stderr.
pub fn stop(mut served: Served) -> String {
    // SAFETY: plain kill(2) on our own child.
    let rc = unsafe { libc::kill(served.vigil.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = served.vigil.wait(Duration::from_secs(10));
    let stderr = served.vigil.stderr_text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM:\n{stderr}"
    );
    assert!(
        stderr.contains("vigil serve: stopped") && !stderr.contains("panicked"),
        "{stderr}"
    );
    stderr
}

/// Kills with SIGKILL (a crash, as far as its clients can tell) and reaps it.
pub fn kill(mut served: Served) {
    let _ = served.vigil.child.kill();
    let _ = served.vigil.child.wait();
}

/// A repository with the models of Triton's client examples, made in `dir` by
/// `scripts/testmodels/make_triton_models.py` with `python` (the project venv's, with `onnx`).
pub fn triton_models(python: &Path, dir: &Path) -> PathBuf {
    let repo = dir.join("models");
    let out = Command::new(python)
        .arg(repo_root().join("scripts/testmodels/make_triton_models.py"))
        .arg(&repo)
        .output()
        .expect("run make_triton_models.py");
    assert!(
        out.status.success(),
        "make_triton_models.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo
}

/// A real Triton server (pytriton's `tritonserver` 2.51, Python backend only) started by
/// `tests/serve/tritonserver/run.sh` on free loopback ports; stopped (SIGTERM, then killed) on drop.
pub struct Triton {
    child: Child,
    pub http: String,
    pub grpc: String,
}

impl Triton {
    /// The Python of the venv `scripts/setup.sh pytriton` makes; `None` (skipped; a failure in CI)
    /// without it.
    pub fn python() -> Option<PathBuf> {
        let python = cache().join("pytriton-venv/bin/python");
        if !python.is_file() {
            let why = format!(
                "{} is missing (scripts/setup.sh pytriton)",
                python.display()
            );
            assert!(!ci(), "{why}");
            crate::skip(format_args!("{why}"));
            return None;
        }
        Some(python)
    }

    /// Serves `model` of `repo`, its log in `log`; panics with the end of the log when it does not
    /// become ready.
    pub fn start(repo: &Path, model: &str, log: &Path) -> Triton {
        let (http, grpc, metrics) = (free_port(), free_port(), free_port());
        let mut child = Command::new(repo_root().join("tests/serve/tritonserver/run.sh"))
            .arg("--repo")
            .arg(repo)
            .args(["--model", model])
            .args(["--http-port", &http.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--metrics-port", &metrics.to_string()])
            .arg("--log")
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tests/serve/tritonserver/run.sh");
        let stdout = child.stdout.take().expect("stdout");
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("tritonserver ready"));
        if ready.is_none() {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "tritonserver did not start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Triton {
            child,
            http: format!("127.0.0.1:{http}"),
            grpc: format!("127.0.0.1:{grpc}"),
        }
    }
}

impl Drop for Triton {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The project venv's Python (numpy, onnx, onnxruntime) and the Triton client venv's
/// (`tritonclient`); `None` (skipped; a failure in CI) without them. `test` names the caller in
/// the message.
pub fn venv_and_client_pythons(test: &str) -> Option<(PathBuf, PathBuf)> {
    let venv = cache().join("venv/bin/python");
    let triton = cache().join("triton-venv/bin/python");
    for (p, step) in [(&venv, "venv"), (&triton, "triton")] {
        if !p.is_file() {
            let why = format!(
                "{test}: {} is missing (scripts/setup.sh {step})",
                p.display()
            );
            assert!(!ci(), "{why}");
            crate::skip(format_args!("{why}"));
            return None;
        }
    }
    Some((venv, triton))
}

/// Writes `repo` with NanoDet served through `tests/serve/tritonserver/model.py` (onnxruntime in
/// a Python-backend model), by `make_repo.py` run with `python` (the pytriton venv's).
pub fn make_nanodet_python_repo(python: &Path, repo: &Path) {
    let root = repo_root();
    let out = Command::new(python)
        .arg(root.join("tests/serve/tritonserver/make_repo.py"))
        .arg("--out")
        .arg(repo)
        .arg("--onnx")
        .arg(root.join("models/nanodet/1/model.onnx"))
        .arg("--config")
        .arg(root.join("models/nanodet/config.pbtxt"))
        .output()
        .expect("run make_repo.py");
    assert!(
        out.status.success(),
        "make_repo.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tests/serve/SCRIPT ARGS…` with `python`; asserts it exited 0 and printed `pass` (e.g.
/// `PASS:`), and returns its output (also printed).
pub fn run_script(python: &Path, script: &str, args: &[&str], pass: &str) -> String {
    let out = Command::new(python)
        .arg(repo_root().join("tests/serve").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success() && text.contains(pass),
        "{script} {args:?}:\n{text}"
    );
    text
}
