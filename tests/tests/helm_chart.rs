//! The Helm chart `deploy/helm/vigil` and the manifests rendered from it (`deploy/k8s/vigil.yaml`),
//! checked offline: no cluster, no `helm` binary, no network.
//!
//! `tests/deploy/check_chart.py` runs with the Python of `$VIGIL_CACHE/k8s-venv` (`scripts/setup.sh
//! k8s`: PyPI `helm-python-sdk==0.2.2`, Helm's own library for lint and render, and
//! `kubernetes-validate==1.37.0`, Kubernetes' schemas):
//! - `check`: `helm lint --strict` and a render of the default values and three other value sets
//!   (autoscaling off with 4 shards, a ServiceMonitor and a generated token; an existing Secret with
//!   persistence and the model repository in the pipelines; serve off with external servers);
//!   every document validated by `kubernetes-validate --strict` for Kubernetes 1.30 to 1.34 (any
//!   error fails, and so does a missing schema for anything but the ServiceMonitor CRD); then what
//!   schemas cannot say: the HPA (autoscaling/v2, the serve Deployment, the Pods metric of the
//!   values), the probes on `/v2/health/ready` and `/v2/health/live` at port 8000, the Service's
//!   8000/8001/8002, `VIGIL_SHARD_COUNT` = the StatefulSet's replicas, the fleet config parsed with
//!   its `inference.server` on the serve Service's 8001, non-root and read-only root filesystems in
//!   every container, the PodDisruptionBudgets, a documented `values.yaml`;
//! - `stale`: `deploy/k8s/vigil.yaml` equals a fresh render (else: run `scripts/render-k8s.sh`).
//!
//! Without the venv the tests print `SKIPPED` — and fail under `CI=true`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_tests::serve::{cache, ci};
use vigil_tests::{repo_root, skip};

/// The longest a mode may take (it takes about 5 s on 2 cores).
const LIMIT: Duration = Duration::from_secs(90);

/// The k8s venv's Python, or `None` (a skip; a failure under CI) when it is missing.
fn python(test: &str) -> Option<PathBuf> {
    let python = cache().join("k8s-venv/bin/python");
    if !python.is_file() {
        let why = format!(
            "{test}: {} is missing (scripts/setup.sh k8s)",
            python.display()
        );
        assert!(!ci(), "{why}");
        skip(format_args!("{why}"));
        return None;
    }
    Some(python)
}

/// Runs `check_chart.py MODE` (killed after [`LIMIT`]); returns its exit code (None when killed)
/// and its output.
fn check_chart(python: &PathBuf, mode: &str) -> (Option<i32>, String) {
    let started = Instant::now();
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/deploy/check_chart.py"))
        .arg(mode)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run check_chart.py {mode}: {e}"));
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = pipe(Box::new(child.stdout.take().expect("stdout")));
    let err = pipe(Box::new(child.stderr.take().expect("stderr")));
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for check_chart.py") {
            break status.code();
        }
        if started.elapsed() >= LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    println!(
        "check_chart.py {mode} ({:.1} s):\n{text}",
        started.elapsed().as_secs_f64()
    );
    (code, text)
}

#[test]
fn chart_lints_renders_and_validates_for_kubernetes_1_30_to_1_34() {
    let Some(python) = python("helm_chart") else {
        return;
    };
    let (code, out) = check_chart(&python, "check");
    assert!(
        code == Some(0) && out.contains("PASS:"),
        "check_chart.py check: exit {code:?} (None: killed after {} s):\n{out}",
        LIMIT.as_secs()
    );
    for version in ["1.30", "1.31", "1.32", "1.33", "1.34"] {
        assert!(
            out.contains(version),
            "Kubernetes {version} not validated:\n{out}"
        );
    }
}

#[test]
fn committed_manifests_equal_a_fresh_render() {
    let Some(python) = python("helm_chart") else {
        return;
    };
    let (code, out) = check_chart(&python, "stale");
    assert!(
        code == Some(0) && out.contains("PASS:"),
        "deploy/k8s/vigil.yaml is not what the chart renders: run scripts/render-k8s.sh and commit \
         it (exit {code:?}):\n{out}"
    );
}
