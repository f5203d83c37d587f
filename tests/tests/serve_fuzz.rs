//! `vigil serve`'s HTTP port under boofuzz, in the spirit of Triton's `qa/L0_http_fuzz`: no crash.
//!
//! `tests/serve/http_fuzz.py` (PyPI `boofuzz==0.4.2` in `$VIGIL_CACHE/fuzz-venv`, `scripts/setup.sh
//! fuzz`) sends fuzzed requests for about 60 s (`VIGIL_FUZZ_SECONDS`) with a fixed seed: every GET
//! route, headers, Content-Length and chunked framing, JSON and binary-tensor inference requests
//! (names, shapes, data types, data, `Inference-Header-Content-Length`, `binary_data_size`, BYTES
//! length prefixes), the repository routes, raw bytes. After each case the server must answer
//! `/v2/health/live`; the script exits 1 if it crashed or hung. Then the server must still be
//! ready, answer a good inference right, log no panic and give a `/metrics` that Prometheus's parser
//! reads with Triton's metrics (`tests/serve/metrics_check.py`, prometheus_client in the triton venv).
//! `half_closed_requests_leave_nothing_in_flight` is the bug the fuzzer found (fixed).
//! The models are made by `scripts/testmodels/make_triton_models.py` with the project venv. Without
//! the venvs the tests print `SKIPPED` — and fail under `CI=true`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_tests::serve::{cache, ci, serve, stop, triton_models};
use vigil_tests::{TempDir, http_get, http_request, repo_root, skip};

/// The Pythons: the project venv's (with `onnx`), the Triton client venv's (with
/// `prometheus_client`) and the fuzz venv's (with `boofuzz`).
fn pythons() -> Option<[PathBuf; 3]> {
    let found = [
        ("venv", "venv"),
        ("triton-venv", "triton"),
        ("fuzz-venv", "fuzz"),
    ]
    .map(|(dir, step)| (cache().join(dir).join("bin/python"), step));
    for (python, step) in &found {
        if !python.is_file() {
            let why = format!(
                "serve_fuzz: {} is missing (scripts/setup.sh {step})",
                python.display()
            );
            assert!(!ci(), "{why}");
            skip(format_args!("{why}"));
            return None;
        }
    }
    Some(found.map(|(python, _)| python))
}

/// Runs `python tests/serve/SCRIPT ARGS…`, killed after `limit`; returns the exit code (None when
/// killed) and stdout with stderr.
fn run_script(
    python: &Path,
    script: &str,
    args: &[&str],
    limit: Duration,
) -> (Option<i32>, String) {
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/serve").join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    println!("{text}");
    (code, text)
}

#[test]
fn boofuzz_against_the_http_port_finds_no_crash() {
    let Some([venv, triton, fuzz]) = pythons() else {
        return;
    };
    let dir = TempDir::new("serve-fuzz");
    let repo = triton_models(&venv, dir.path());
    let served = serve(&repo, &[]);
    let (http, metrics) = (served.http.clone(), served.metrics.clone());
    let seconds: u64 = std::env::var("VIGIL_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let save = dir.path().join("fuzz");
    let (code, out) = run_script(
        &fuzz,
        "http_fuzz.py",
        &[
            &http,
            "--seconds",
            &seconds.to_string(),
            "--seed",
            "1",
            "--print-findings",
            "5",
            "--progress",
            "5000",
            "--save",
            save.to_str().expect("a UTF-8 path"),
        ],
        // The cases are made first (seconds), and the last case may wait for its answer.
        Duration::from_secs(seconds + 180),
    );
    assert!(
        code == Some(0) && out.contains("PASS:"),
        "http_fuzz.py exit {code:?} (None: killed after {} s):\n{out}\n--- vigil serve:\n{}",
        seconds + 180,
        served.vigil.stderr_text()
    );
    let cases: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("PASS: ")?.split(' ').next()?.parse().ok())
        .expect("the number of cases");
    assert!(cases >= 100, "only {cases} cases:\n{out}");

    // Still serving, and right.
    let mut served = served;
    assert_eq!(
        served.vigil.child.try_wait().expect("try_wait"),
        None,
        "vigil serve exited"
    );
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/simple/ready",
    ] {
        let (status, body) = http_get(&http, path).expect(path);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let good = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5]}]}"#;
    let (status, body) =
        http_request(&http, "POST", "/v2/models/simple/infer", Some(good)).expect("infer");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    let outputs = answer["outputs"].as_array().expect("outputs");
    let data = |name: &str| {
        outputs
            .iter()
            .find(|o| o["name"] == name)
            .map(|o| o["data"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        data("OUTPUT0"),
        serde_json::json!((5..21).collect::<Vec<i32>>()),
        "{body}"
    );
    assert_eq!(
        data("OUTPUT1"),
        serde_json::json!((-5..11).collect::<Vec<i32>>()),
        "{body}"
    );

    // /metrics parses with Prometheus's own parser and has Triton's metrics.
    let (code, out) = run_script(
        &triton,
        "metrics_check.py",
        &[&metrics],
        Duration::from_secs(60),
    );
    assert!(code == Some(0) && out.contains("PASS:"), "{out}");

    // No panic was caught on the way (a handler task's panic would not end the process), and
    // SIGTERM stops it at once: nothing left in flight.
    let stderr = stop(served);
    assert!(
        stderr.contains("waiting for 0 request(s) in flight"),
        "{stderr}"
    );
}

/// Found by the fuzzer: a client that sent a whole inference request and then half-closed its
/// connection (`shutdown(SHUT_WR)`, legal in HTTP/1.1) mostly got no answer, and each such request
/// stayed counted as in flight for good (the handler future was dropped before its decrement), so
/// SIGTERM then waited the whole 30 s drain. Fixed: requests are counted by a drop guard and hyper
/// answers half-closed connections (`http1::Builder::half_close(true)`).
#[test]
fn half_closed_requests_leave_nothing_in_flight() {
    use std::io::Write;
    let Some([venv, _, _]) = pythons() else {
        return;
    };
    let dir = TempDir::new("serve-half-close");
    let repo = triton_models(&venv, dir.path());
    let served = serve(&repo, &[]);
    let http = served.http.clone();
    let good = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5]}]}"#;
    let mut answered = 0;
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(&http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /v2/models/simple/infer HTTP/1.1\r\nHost: {http}\r\nContent-Length: {}\r\n\r\n{good}",
            good.len()
        )
        .expect("send");
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        answered += usize::from(answer.starts_with(b"HTTP/1.1 200"));
    }
    println!("{answered} of 20 half-closed requests answered");
    assert_eq!(answered, 20, "every half-closed request is answered");
    let stderr = stop(served);
    assert!(
        stderr.contains("waiting for 0 request(s) in flight"),
        "{stderr}"
    );
}
