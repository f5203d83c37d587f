//! `vigil serve` against Triton's own Python client and against malformed requests.
//!
//! The models are the ones Triton's client examples expect (`simple`, `simple_int8`,
//! `simple_string`, `simple_identity`, and `simple_fp32`), made as ONNX by
//! `scripts/testmodels/make_triton_models.py` with the project venv; the client is PyPI
//! `tritonclient[http]` in `$VIGIL_CACHE/triton-venv` (`scripts/setup.sh triton`), driven by
//! `tests/serve/triton_http_client.py` (health, metadata, configuration, inference with JSON and
//! binary tensors of every kind the models take, a batch of 4 beyond 2^24, 16 concurrent async
//! requests, strings, arbitrary bytes, Triton's error texts, statistics; then explicit model
//! control). Without the venvs the tests print `SKIPPED` — and fail under `CI=true`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vigil_tests::serve::{run_script, serve, stop, triton_models, venv_and_client_pythons};
use vigil_tests::{TempDir, http_get, metric, parse_metrics, vigil_bin};

/// The Pythons: the project venv's (with `onnx`) and the Triton client venv's.
fn pythons() -> Option<(PathBuf, PathBuf)> {
    venv_and_client_pythons("serve")
}

/// Runs `tests/serve/SCRIPT ARGS…`; asserts it passed and returns its output.
fn script(python: &Path, script: &str, args: &[&str]) -> String {
    run_script(python, script, args, "PASS:")
}

#[test]
fn tritons_clients_get_tritons_answers_over_http_and_grpc() {
    let Some((venv, triton)) = pythons() else {
        return;
    };
    let dir = TempDir::new("serve");
    let repo = triton_models(&venv, dir.path());
    let served = serve(&repo, &[]);
    let out = script(
        &triton,
        "triton_http_client.py",
        &[&served.http, "serve", &served.metrics],
    );
    assert!(
        out.contains("ok: simple: 16 concurrent async requests"),
        "{out}"
    );
    let out = script(&triton, "triton_grpc_client.py", &[&served.grpc]);
    assert!(
        out.contains("ok: ModelStreamInfer: 7 answers and one error, in order"),
        "{out}"
    );

    let (status, text) = http_get(&served.metrics, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    let samples = parse_metrics(&text).expect("Prometheus text");
    let simple = [("model", "simple"), ("version", "1")];
    for name in [
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
    ] {
        assert!(
            metric(&samples, name, &simple).is_some(),
            "{name} missing:\n{text}"
        );
    }
    let success = metric(&samples, "nv_inference_request_success", &simple).unwrap();
    let items = metric(&samples, "nv_inference_count", &simple).unwrap();
    let executions = metric(&samples, "nv_inference_exec_count", &simple).unwrap();
    println!("simple: {success} requests, {items} items, {executions} executions");
    assert!(
        success >= 20.0 && items >= 26.0 && executions >= 1.0 && executions <= items,
        "{text}"
    );
    stop(served);
}

#[test]
fn explicit_model_control_loads_and_unloads() {
    let Some((venv, triton)) = pythons() else {
        return;
    };
    let dir = TempDir::new("serve-control");
    let repo = triton_models(&venv, dir.path());
    let served = serve(&repo, &["--model-control-mode", "explicit"]);
    script(&triton, "triton_http_client.py", &[&served.http, "control"]);
    stop(served);
}

/// One raw HTTP/1.1 request (`Connection: close`) with `headers` and a binary `body`; returns the
/// status and the body.
fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

#[test]
fn malformed_requests_get_errors_and_the_server_keeps_serving() {
    let Some((venv, _)) = pythons() else {
        return;
    };
    let dir = TempDir::new("serve-bad");
    let repo = triton_models(&venv, dir.path());
    let served = serve(&repo, &["--max-body-mib", "1"]);
    let addr = served.http.clone();
    let infer = "/v2/models/simple/infer";
    let good = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}"#;
    let binary_head = r#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}"#;
    let mut deep = String::from("1");
    for _ in 0..10_000 {
        deep = format!("[{deep}]");
    }
    let hlen = |n: usize| vec![("Inference-Header-Content-Length", n.to_string())];
    let truncated: Vec<u8> = [binary_head.as_bytes(), &[0u8; 100]].concat();
    /// Method, path, headers, body, the status expected and a text the answer contains.
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, String)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            infer,
            vec![],
            b"{not json".to_vec(),
            400,
            "failed to parse",
        ),
        ("POST", infer, vec![], b"[]".to_vec(), 400, "not an object"),
        (
            "POST",
            infer,
            vec![],
            br#"{"inputs":[{"name":"INPUT0"}]}"#.to_vec(),
            400,
            "datatype",
        ),
        (
            "POST",
            infer,
            vec![],
            br#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT33","data":[]}]}"#
                .to_vec(),
            400,
            "unknown datatype",
        ),
        (
            "POST",
            infer,
            vec![],
            br#"{"inputs":[{"name":"INPUT0","shape":[1,-16],"datatype":"INT32","data":[]}]}"#
                .to_vec(),
            400,
            "negative",
        ),
        (
            "POST",
            infer,
            vec![],
            br#"{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2]}]}"#
                .to_vec(),
            400,
            "holds 16",
        ),
        (
            "POST",
            infer,
            vec![],
            br#"{"inputs":[{"name":"NOPE","shape":[1],"datatype":"INT32","data":[1]}]}"#.to_vec(),
            400,
            "unexpected inference input 'NOPE' for model 'simple'",
        ),
        (
            "POST",
            infer,
            vec![],
            format!(
                r#"{{"inputs":[{{"name":"INPUT0","shape":[1],"datatype":"INT32","data":{deep}}}]}}"#
            )
            .into_bytes(),
            400,
            "",
        ),
        (
            "POST",
            infer,
            hlen(binary_head.len()),
            truncated,
            400,
            "binary_data_size 64 is more than the 36 bytes",
        ),
        (
            "POST",
            infer,
            hlen(10_000),
            good.as_bytes().to_vec(),
            400,
            "larger than the body",
        ),
        (
            "POST",
            infer,
            hlen(0),
            good.as_bytes().to_vec(),
            400,
            "failed to parse",
        ),
        (
            "POST",
            infer,
            vec![],
            vec![b' '; 2 << 20],
            400,
            "larger than 1048576 bytes",
        ),
        (
            "POST",
            infer,
            vec![("Content-Length", (100u64 << 30).to_string())],
            vec![],
            400,
            "larger than",
        ),
        (
            "POST",
            infer,
            vec![("Content-Encoding", "gzip".into())],
            good.as_bytes().to_vec(),
            501,
            "not supported",
        ),
        (
            "POST",
            "/v2/models/nope/infer",
            vec![],
            good.as_bytes().to_vec(),
            404,
            "Request for unknown model: 'nope' is not found",
        ),
        (
            "POST",
            "/v2/models/simple/versions/x/infer",
            vec![],
            good.as_bytes().to_vec(),
            400,
            "not a version number",
        ),
        (
            "GET",
            "/v2/models/simple/versions/3",
            vec![],
            vec![],
            404,
            "version 3 is not found",
        ),
        ("GET", "/v3/anything", vec![], vec![], 404, "no route"),
        (
            "DELETE",
            "/v2/models/simple",
            vec![],
            vec![],
            404,
            "no route",
        ),
        (
            "POST",
            "/v2/repository/models/simple/load",
            vec![],
            vec![],
            503,
            "not allowed",
        ),
    ];
    for (method, path, headers, body, want, text) in &cases {
        let (status, answer) = raw(&addr, method, path, headers, body);
        println!(
            "{method} {path} ({} bytes) -> {status} {}",
            body.len(),
            answer.chars().take(160).collect::<String>()
        );
        assert_eq!(status, *want, "{method} {path}: {answer}");
        assert!(
            answer.contains(text),
            "{method} {path}: {answer:?} should contain {text:?}"
        );
        let (ready, _) = http_get(&addr, "/v2/health/ready").expect("still serving");
        assert_eq!(ready, 200);
    }
    // A good request still works, with JSON and with binary tensors.
    let output = |answer: &str, k: usize| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(answer).expect("a JSON answer");
        v["outputs"][k].clone()
    };
    let (status, answer) = raw(&addr, "POST", infer, &[], good.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let sum = output(&answer, 0);
    assert_eq!(
        (sum["name"].as_str(), sum["datatype"].as_str()),
        (Some("OUTPUT0"), Some("INT32")),
        "{answer}"
    );
    assert_eq!(sum["shape"], serde_json::json!([1, 16]), "{answer}");
    assert_eq!(
        sum["data"],
        serde_json::json!((1..=16).collect::<Vec<i32>>()),
        "{answer}"
    );
    let mut body = binary_head.as_bytes().to_vec();
    for v in (0..16i32).chain(std::iter::repeat_n(2, 16)) {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let (status, answer) = raw(&addr, "POST", infer, &hlen(binary_head.len()), &body);
    assert_eq!(status, 200, "{answer}");
    let difference = output(&answer, 1);
    assert_eq!(
        difference["data"],
        serde_json::json!((-2..14).collect::<Vec<i32>>()),
        "{answer}"
    );
    stop(served);
}

#[test]
fn a_token_is_required_off_loopback_and_checked_when_given() {
    let Some((venv, _)) = pythons() else {
        return;
    };
    let dir = TempDir::new("serve-token");
    let repo = triton_models(&venv, dir.path());
    // Off loopback without a token: refused before anything listens.
    let out = Command::new(vigil_bin())
        .args([
            "serve",
            "--address",
            "0.0.0.0",
            "--http-port",
            "0",
            "--metrics-port",
            "0",
        ])
        .arg(&repo)
        .env_remove("VIGIL_SERVE_TOKEN")
        .output()
        .expect("run vigil serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("not a loopback address"),
        "{stderr}"
    );
    // With a token: requests need it; health checks do not.
    let served = serve(&repo, &["--token", "s3cret"]);
    let (status, _) = http_get(&served.http, "/v2/health/ready").unwrap();
    assert_eq!(status, 200);
    let (status, answer) = raw(&served.http, "GET", "/v2/models/simple", &[], b"");
    assert_eq!(status, 401, "{answer}");
    let bearer = vec![("Authorization", "Bearer s3cret".to_owned())];
    let (status, answer) = raw(&served.http, "GET", "/v2/models/simple", &bearer, b"");
    assert_eq!(status, 200, "{answer}");
    let wrong = vec![("Authorization", "Bearer s3cre7".to_owned())];
    assert_eq!(
        raw(&served.http, "GET", "/v2/models/simple", &wrong, b"").0,
        401
    );
    stop(served);
}

/// `simple` (INT32 `[16]` x2 → sum, difference) as the model `versioned` with versions 1, 2 and 3
/// of which the policy serves 1 and 3, labels `label0…label15` on OUTPUT0; and `versioned_ens`,
/// an ensemble over its version 1 whose OUTPUT0 has no labels of its own.
fn versioned_models(repo: &Path) {
    let dir = repo.join("versioned");
    for v in ["1", "2", "3"] {
        std::fs::create_dir_all(dir.join(v)).unwrap();
        std::fs::copy(
            repo.join("simple/1/model.onnx"),
            dir.join(v).join("model.onnx"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("config.pbtxt"),
        r#"name: "versioned"
backend: "onnxruntime"
max_batch_size: 8
version_policy: { specific { versions: [1, 3] } }
input [
  { name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
output [
  { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ], label_filename: "output0_labels.txt" },
  { name: "OUTPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
"#,
    )
    .unwrap();
    let labels: String = (0..16).map(|i| format!("label{i}\n")).collect();
    std::fs::write(dir.join("output0_labels.txt"), labels).unwrap();
    let ens = repo.join("versioned_ens");
    std::fs::create_dir_all(ens.join("1")).unwrap();
    std::fs::write(
        ens.join("config.pbtxt"),
        r#"name: "versioned_ens"
platform: "ensemble"
max_batch_size: 8
input [
  { name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
output [ { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] } ]
ensemble_scheduling { step [ {
  model_name: "versioned" model_version: 1
  input_map { key: "INPUT0" value: "INPUT0" } input_map { key: "INPUT1" value: "INPUT1" }
  output_map { key: "OUTPUT0" value: "OUTPUT0" }
} ] }
"#,
    )
    .unwrap();
}

/// What Triton's qa/L0_infer needs beyond plain inference (benches/serve/l0_infer.sh runs it):
/// every version the version policy names is served, and the classification extension.
#[test]
fn every_served_version_answers_and_outputs_classify_as_tritons_do() {
    let Some((venv, _)) = pythons() else {
        return;
    };
    let dir = TempDir::new("serve-versions");
    let repo = triton_models(&venv, dir.path());
    versioned_models(&repo);
    let served = serve(&repo, &[]);
    let addr = served.http.clone();
    let json = |answer: &str| -> serde_json::Value {
        serde_json::from_str(answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
    };
    // Item 0: INPUT0 0..16, item 1: 15..=0; INPUT1 all 1.
    let input0: Vec<i32> = (0..16).chain((0..16).rev()).collect();
    let request = |outputs: serde_json::Value, params: serde_json::Value| {
        serde_json::json!({
            "inputs": [
                {"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": input0},
                {"name": "INPUT1", "shape": [2, 16], "datatype": "INT32", "data": vec![1; 32]},
            ],
            "outputs": outputs,
            "parameters": params,
        })
        .to_string()
    };
    let plain = request(
        serde_json::json!([{"name": "OUTPUT0"}]),
        serde_json::json!({}),
    );

    // Versions 1 and 3 are served, 2 is not; no version = the highest.
    for (path, want) in [
        ("/v2/models/versioned/versions/1/infer", Some("1")),
        ("/v2/models/versioned/versions/3/infer", Some("3")),
        ("/v2/models/versioned/infer", Some("3")),
        ("/v2/models/versioned/versions/2/infer", None),
    ] {
        let (status, answer) = raw(&addr, "POST", path, &[], plain.as_bytes());
        match want {
            Some(v) => {
                assert_eq!(status, 200, "{path}: {answer}");
                assert_eq!(json(&answer)["model_version"], v, "{path}: {answer}");
            }
            None => {
                assert_eq!(status, 404, "{path}: {answer}");
                assert!(
                    answer.contains("Request for unknown model: 'versioned' version 2"),
                    "{answer}"
                );
            }
        }
    }
    assert_eq!(
        http_get(&addr, "/v2/models/versioned/versions/1/ready")
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        http_get(&addr, "/v2/models/versioned/versions/2/ready")
            .unwrap()
            .0,
        400
    );
    let (status, answer) = http_get(&addr, "/v2/models/versioned/versions/1/stats").unwrap();
    assert_eq!(status, 200, "{answer}");
    let stats = &json(&answer)["model_stats"][0];
    assert_eq!(
        (stats["version"].as_str(), stats["inference_count"].as_u64()),
        (Some("1"), Some(2)),
        "{answer}"
    );
    // The index lists each version served.
    let (status, answer) = raw(&addr, "POST", "/v2/repository/index", &[], b"{}");
    assert_eq!(status, 200, "{answer}");
    let rows: Vec<String> = json(&answer)
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "versioned")
        .map(|r| {
            format!(
                "{}:{}",
                r["version"].as_str().unwrap(),
                r["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(rows, ["1:READY", "3:READY"], "{answer}");

    // Classification: [items, count] BYTES "value:index[:label]", highest first; OUTPUT0's
    // labels from its label_filename, none for OUTPUT1.
    let classes = request(
        serde_json::json!([
            {"name": "OUTPUT0", "parameters": {"classification": 3}},
            {"name": "OUTPUT1", "parameters": {"classification": 2}},
        ]),
        serde_json::json!({}),
    );
    let (status, answer) = raw(
        &addr,
        "POST",
        "/v2/models/versioned/infer",
        &[],
        classes.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let v = json(&answer);
    assert_eq!(v["outputs"][0]["datatype"], "BYTES", "{answer}");
    assert_eq!(
        v["outputs"][0]["shape"],
        serde_json::json!([2, 3]),
        "{answer}"
    );
    assert_eq!(
        v["outputs"][0]["data"],
        serde_json::json!([
            "16:15:label15",
            "15:14:label14",
            "14:13:label13",
            "16:0:label0",
            "15:1:label1",
            "14:2:label2"
        ]),
        "{answer}"
    );
    assert_eq!(
        v["outputs"][1]["data"],
        serde_json::json!(["14:15", "13:14", "14:0", "13:1"]),
        "{answer}"
    );
    // The same as binary data (length-prefixed strings after the JSON header).
    let binary = request(
        serde_json::json!([{"name": "OUTPUT0", "parameters": {"classification": 1}}]),
        serde_json::json!({"binary_data_output": true}),
    );
    let (status, answer) = raw(
        &addr,
        "POST",
        "/v2/models/versioned/infer",
        &[],
        binary.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("\"binary_data_size\":32")
            && answer.contains("\u{0}\u{0}\u{0}16:15:label15")
            && answer.ends_with("\u{0}\u{0}\u{0}16:0:label0"),
        "{answer:?}"
    );
    // An ensemble output without labels takes those of the step model output producing it.
    let (status, answer) = raw(
        &addr,
        "POST",
        "/v2/models/versioned_ens/infer",
        &[],
        binary
            .replace("binary_data_output\":true", "binary_data_output\":false")
            .as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        json(&answer)["outputs"][0]["data"],
        serde_json::json!(["16:15:label15", "16:0:label0"]),
        "{answer}"
    );
    // Strings cannot be classified; a count must be a number.
    let strings = r#"{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"BYTES","data":["a"]}],"outputs":[{"name":"OUTPUT0","parameters":{"classification":1}}]}"#;
    let (status, answer) = raw(
        &addr,
        "POST",
        "/v2/models/simple_identity/infer",
        &[],
        strings.as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("class result not available"), "{answer}");
    let bad = classes.replace("\"classification\":3", "\"classification\":\"3\"");
    let (status, answer) = raw(
        &addr,
        "POST",
        "/v2/models/versioned/infer",
        &[],
        bad.as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = http_get(&addr, "/v2").unwrap();
    assert!(
        status == 200 && answer.contains("\"classification\""),
        "{answer}"
    );
    stop(served);
}
