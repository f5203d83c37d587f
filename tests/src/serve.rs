//! `vigil serve` processes for the tests: started on free loopback ports (or given ones, to restart
//! a server where its clients look for it), their addresses read from the start-up line, and stopped
//! with SIGTERM or killed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Vigil, repo_root, vigil_bin};

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
