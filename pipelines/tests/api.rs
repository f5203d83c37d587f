//! The HTTP API on 127.0.0.1:0 with fake streams: `/health`, `/streams`, `/metrics` (checked with
//! the Python `prometheus_client` text parser of the set-up venv when present), the bearer token, and
//! bad requests (each a 4xx with a JSON message): undeclared methods (405 with `Allow`), malformed,
//! unknown-field, array-for-object, oversized (413) and non-JSON (415) bodies, path traversal in names
//! and ids, wrong or missing tokens (401 with `WWW-Authenticate`). `tests/tests/api_schema.rs` runs
//! schemathesis against a real `vigil run`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vigil::api::{self, ApiError, StreamRegistry, StreamsView};
use vigil::metrics::{self, GpuStats};
use vigil::stats::{SourceStats, StreamState};
use vigil_engine::{Histogram, ModelStats};

/// Reports a skipped check on the real stderr (libtest captures `eprintln!`).
fn skip(message: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {message}");
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request, `Connection: close`, reads to the end.
fn request(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    exchange(addr, req.as_bytes())
}

/// Sends `raw` (a whole request) and reads the reply to the end.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (413) and close before reading everything.
    let _ = s.write_all(raw);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8(raw).expect("UTF-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `POST /streams` with `body` and `content_type`.
fn post(addr: SocketAddr, content_type: &str, body: &str) -> Reply {
    let req = format!(
        "POST /streams HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, req.as_bytes())
}

/// The `error` message of a JSON error reply (asserting that it is one).
fn message(r: &Reply) -> String {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.body
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("a JSON body");
    v["error"].as_str().expect("an error message").to_string()
}

fn fake_streams() -> Arc<StreamRegistry> {
    let a = Arc::new(SourceStats::with_uri("cam-1", "rtsp://127.0.0.1:8554/cam1"));
    for _ in 0..12 {
        a.record_input();
    }
    for _ in 0..10 {
        a.record(None);
    }
    a.record_dropped(2);
    a.record_reconnect();
    a.record(None);
    a.record_latency(Duration::from_millis(35));
    a.record_latency(Duration::from_millis(120));
    // A name that needs escaping in label values.
    let b = Arc::new(SourceStats::with_uri(
        "odd \"name\" \\ here",
        "file:///a.mp4",
    ));
    b.set_state(StreamState::Ended);
    Arc::new(StreamRegistry::new(vec![a, b]))
}

fn venv_python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/vigil/venv/bin/python");
    p.is_file().then_some(p)
}

const PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print(f.name, f.type, len(f.samples))
"#;

/// Parses `text` with `prometheus_client`; `None` (and a SKIPPED line) when it is not installed.
/// Returns `(family, type, samples)` per family.
fn prometheus_parse(text: &str) -> Option<Vec<(String, String, usize)>> {
    let Some(python) = venv_python() else {
        skip(format_args!(
            "prometheus text parse: no venv python (run scripts/setup.sh)"
        ));
        return None;
    };
    let probe = Command::new(&python)
        .args(["-c", "import prometheus_client.parser"])
        .output();
    if !matches!(probe, Ok(o) if o.status.success()) {
        skip(format_args!(
            "prometheus text parse: prometheus_client not installed in the venv (run scripts/setup.sh)"
        ));
        return None;
    }
    let mut child = Command::new(&python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejects the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split(' ');
                Some((
                    it.next()?.to_string(),
                    it.next()?.to_string(),
                    it.next()?.parse().ok()?,
                ))
            })
            .collect(),
    )
}

#[test]
fn health_streams_and_metrics() {
    let view: Arc<dyn StreamsView> = fake_streams();
    let server = api::serve(([127, 0, 0, 1], 0).into(), None, view).expect("serve");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let r = request(addr, "GET", "/health", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({"status": "ok"}));

    let r = request(addr, "GET", "/streams", None);
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let list = v.as_array().expect("a JSON list");
    assert_eq!(list.len(), 2);
    let a = &list[0];
    assert_eq!(a["name"], "cam-1");
    assert_eq!(a["uri"], "rtsp://127.0.0.1:8554/cam1");
    assert_eq!(a["state"], "playing");
    assert_eq!(a["frames"], 11);
    assert_eq!(a["frames_in"], 12);
    assert_eq!(a["dropped"], 2);
    assert_eq!(a["reconnects"], 1);
    assert!(a["fps"].as_f64().unwrap() > 0.0);
    assert_eq!(list[1]["name"], "odd \"name\" \\ here");
    assert_eq!(list[1]["state"], "ended");
    assert_eq!(list[1]["frames"], 0);

    let r = request(addr, "GET", "/metrics", None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        r.body
            .contains("vigil_stream_frames_out_total{stream=\"cam-1\"} 11"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("vigil_stream_reconnects_total{stream=\"cam-1\"} 1")
    );
    assert!(
        r.body.contains(
            "vigil_stream_state{stream=\"odd \\\"name\\\" \\\\ here\",state=\"ended\"} 1"
        )
    );
    if let Some(families) = prometheus_parse(&r.body) {
        let find = |n: &str| families.iter().find(|f| f.0 == n);
        assert_eq!(
            find("vigil_stream_frames_in").map(|f| f.1.as_str()),
            Some("counter")
        );
        let lat = find("vigil_stream_latency_seconds").expect("latency family");
        assert_eq!(lat.1, "histogram");
        assert_eq!(find("vigil_stream_state").map(|f| f.2), Some(12));
    }

    // Unknown paths, wrong methods, and the planned run-time control.
    assert_eq!(request(addr, "GET", "/nope", None).status, 404);
    assert_eq!(request(addr, "PUT", "/health", None).status, 405);
    assert_eq!(request(addr, "POST", "/streams", None).status, 501);
    assert_eq!(request(addr, "DELETE", "/streams/cam-1", None).status, 501);
    server.shutdown();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn full_exposition_parses() {
    let streams = fake_streams().streams();
    let mut queue_time = Histogram::default();
    queue_time.record(Duration::from_micros(300));
    queue_time.record(Duration::from_millis(3));
    let mut compute_time = Histogram::default();
    compute_time.record(Duration::from_millis(12));
    let model = ModelStats {
        model: "nanodet".into(),
        version: 1,
        requests: 5,
        failures: 0,
        pending: 1,
        executions: 3,
        batch_sizes: [(1, 2), (3, 1), (40, 1)].into_iter().collect(),
        batch_compute: Default::default(),
        queue_time,
        compute_time,
        reordered: 0,
        instances: Vec::new(),
    };
    let gpu = GpuStats {
        index: 0,
        name: "NVIDIA H100 80GB HBM3".into(),
        utilization: 0.42,
        memory_used: 1 << 30,
        memory_total: 80 << 30,
        encoder_utilization: Some(0.0),
        decoder_utilization: Some(0.3),
        temperature_c: Some(55),
    };
    let text = metrics::render(&streams, &[model], &[gpu]);
    assert!(
        text.contains("vigil_model_batch_size_bucket{model=\"nanodet\",version=\"1\",le=\"64\"} 4")
    );
    assert!(
        text.contains("vigil_model_batch_size_bucket{model=\"nanodet\",version=\"1\",le=\"32\"} 3")
    );
    if let Some(families) = prometheus_parse(&text) {
        let names: Vec<&str> = families.iter().map(|f| f.0.as_str()).collect();
        for n in [
            "vigil_model_requests",
            "vigil_model_batch_size",
            "vigil_model_queue_time_seconds",
            "vigil_model_compute_time_seconds",
            "vigil_gpu_utilization_ratio",
            "vigil_gpu_memory_used_bytes",
            "vigil_gpu_decoder_utilization_ratio",
            "vigil_gpu_temperature_celsius",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
    }
}

#[test]
fn token_is_required_off_loopback_and_checked() {
    let view: Arc<dyn StreamsView> = fake_streams();
    let any: SocketAddr = ([0, 0, 0, 0], 0).into();
    assert!(matches!(
        api::serve(any, None, view.clone()),
        Err(ApiError::TokenRequired(_))
    ));
    let err = api::serve(any, None, view.clone()).unwrap_err().to_string();
    assert!(err.contains("token"), "{err}");

    let server = api::serve(any, Some("s3cret".into()), view).expect("serve with a token");
    let addr: SocketAddr = ([127, 0, 0, 1], server.local_addr().port()).into();
    for path in ["/health", "/streams", "/metrics"] {
        let r = request(addr, "GET", path, None);
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(
            request(addr, "GET", path, Some("Bearer wrong")).status,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            request(addr, "GET", path, Some("Basic s3cret")).status,
            401,
            "{path} with another scheme"
        );
        assert_eq!(
            request(addr, "GET", path, Some("Bearer s3cret")).status,
            200,
            "{path} with the token"
        );
    }
}

/// A control that parses and checks bodies as `vigil run` does (without a pipeline): the added stream
/// is echoed, removals find nothing.
struct Checking;

impl api::StreamControl for Checking {
    fn add(&self, body: &[u8]) -> Result<serde_json::Value, api::ControlError> {
        let s = vigil::config::SourceConfig::from_api_json(body)
            .map_err(|m| api::ControlError::new(400, m))?;
        vigil::config::check_name(&s.name)
            .map_err(|m| api::ControlError::new(400, format!("name: {m}")))?;
        Ok(serde_json::json!({"id": s.name, "name": s.name, "uri": s.uri, "state": "starting"}))
    }
    fn remove(&self, id: &str) -> Result<serde_json::Value, api::ControlError> {
        Err(api::ControlError::new(404, format!("no stream '{id}'")))
    }
}

fn checking_server(token: Option<&str>) -> api::ApiServer {
    let view: Arc<dyn StreamsView> = fake_streams();
    api::serve_with_control(
        ([127, 0, 0, 1], 0).into(),
        token.map(str::to_string),
        view,
        Some(Arc::new(Checking)),
    )
    .expect("serve")
}

#[test]
fn undeclared_methods_get_405_with_allow_and_options_lists_them() {
    let server = checking_server(None);
    let addr = server.local_addr();
    for (path, allow) in [
        ("/health", "GET, HEAD, OPTIONS"),
        ("/metrics", "GET, HEAD, OPTIONS"),
        ("/streams", "GET, HEAD, POST, OPTIONS"),
        ("/streams/cam-1", "DELETE, OPTIONS"),
    ] {
        for method in ["PUT", "PATCH", "TRACE"] {
            let r = request(addr, method, path, None);
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
            assert!(message(&r).contains(method), "{}", r.body);
        }
        let r = request(addr, "OPTIONS", path, None);
        assert_eq!(
            (r.status, r.header("allow")),
            (204, Some(allow)),
            "OPTIONS {path}"
        );
    }
    let r = request(addr, "HEAD", "/health", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "", "HEAD has no body");
    assert_eq!(request(addr, "GET", "/streams/cam-1", None).status, 405);
    let r = request(addr, "GET", "/streams/a/b", None);
    assert_eq!(r.status, 404);
    assert!(message(&r).contains("/streams/a/b"));
}

#[test]
fn bad_bodies_get_4xx_naming_what_is_wrong() {
    let server = checking_server(None);
    let addr = server.local_addr();
    let ok = post(
        addr,
        "application/json",
        r#"{"name": "cam-2", "uri": "a.mp4"}"#,
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    for (body, status, want) in [
        (
            r#"{"name": "x", "uri"#,
            400,
            "body: malformed JSON: EOF while parsing",
        ),
        (
            "[1, 2]",
            400,
            "body: expected a JSON object, found an array",
        ),
        (
            r#""text""#,
            400,
            "body: invalid type: string \"text\", expected a JSON object",
        ),
        (
            r#"{"name": "x", "uri": "a", "colour": 1}"#,
            400,
            "colour: unknown field `colour`",
        ),
        (
            r#"{"name": "x", "uri": "a", "latency_ms": -1}"#,
            400,
            "latency_ms: invalid value",
        ),
        (
            r#"{"name": "x", "uri": "a", "reconnect": [1, 2]}"#,
            400,
            "reconnect: expected a JSON object, found an array",
        ),
        (
            r#"{"name": "x", "uri": "a", "analytics": {"lines": [["l", [[0, 0], [1, 1]]]]}}"#,
            400,
            "analytics.lines[0]: expected a JSON object, found an array",
        ),
        (
            r#"{"name": "x", "uri": "a", "images": {"path": "."}}"#,
            400,
            "images: not accepted by the API",
        ),
        (
            r#"{"name": "../etc", "uri": "a"}"#,
            400,
            "name: '../etc' contains '/'",
        ),
        (
            r#"{"name": "..", "uri": "a"}"#,
            400,
            "name: '..' is only dots",
        ),
    ] {
        let r = post(addr, "application/json", body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(message(&r).starts_with(want), "{body}: {}", r.body);
    }
    let long = format!(r#"{{"name": "{}", "uri": "a"}}"#, "n".repeat(65));
    assert!(message(&post(addr, "application/json", &long)).contains("more than 64"));
    let r = post(addr, "text/plain", "{}");
    assert_eq!(r.status, 415);
    assert!(message(&r).contains("application/json"));
    // Too large: refused by its Content-Length, before the body is read.
    let big = format!(r#"{{"name": "x", "uri": "{}"}}"#, "a".repeat(70_000));
    let r = post(addr, "application/json", &big);
    assert_eq!(r.status, 413);
    assert_eq!(message(&r), "body: larger than 65536 bytes");
    // Too large in chunks (no Content-Length): refused once the limit is passed.
    let chunk = "a".repeat(40_000);
    let chunked = format!(
        "POST /streams HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{n:x}\r\n{chunk}\r\n{n:x}\r\n{chunk}\r\n0\r\n\r\n",
        n = chunk.len()
    );
    assert_eq!(exchange(addr, chunked.as_bytes()).status, 413);
}

#[test]
fn path_traversal_in_ids_is_refused() {
    let server = checking_server(None);
    let addr = server.local_addr();
    for path in [
        "/streams/..",
        "/streams/..%2F..%2Fetc",
        "/streams/%2E%2E",
        "/streams/",
    ] {
        let r = request(addr, "DELETE", path, None);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(message(&r).starts_with("id: "), "{path}: {}", r.body);
    }
    let r = request(addr, "DELETE", "/streams/cam-9", None);
    assert_eq!(
        (r.status, message(&r)),
        (404, "no stream 'cam-9'".to_string())
    );
}

#[test]
fn wrong_or_missing_tokens_get_401_with_a_message() {
    let server = checking_server(Some("s3cret"));
    let addr = server.local_addr();
    for (auth, want) in [
        (None, "missing Authorization header"),
        (Some("Bearer nope"), "wrong bearer token"),
        (
            Some("Basic s3cret"),
            "the Authorization header is not 'Bearer <token>'",
        ),
    ] {
        for (method, path) in [
            ("GET", "/streams"),
            ("DELETE", "/streams/cam-1"),
            ("OPTIONS", "/health"),
        ] {
            let r = request(addr, method, path, auth);
            assert_eq!(r.status, 401, "{method} {path} {auth:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(message(&r).starts_with(want), "{}", r.body);
        }
    }
    assert_eq!(
        request(addr, "GET", "/streams", Some("Bearer s3cret")).status,
        200
    );
}
