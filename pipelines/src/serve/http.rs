//! Triton's HTTP/REST protocol (KServe v2 and Triton's extensions `binary_tensor_data`,
//! `classification`, `model_configuration`, `model_repository`, `statistics`) on hyper, and the
//! metrics port.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::protocol::{self, Input, ServeError};
use super::stats::model_stats_json;
use super::{EXTENSIONS, InFlight, Server};
use vigil_kserve::tensors::{
    element_count, from_binary, from_json, from_wire_name, to_binary, to_json, wire_name,
};

/// The header that gives the length of the JSON part of a body with binary tensor data.
const HEADER_LENGTH: &str = "inference-header-content-length";

type Reply = Response<Full<Bytes>>;

/// Serves one HTTP connection's request.
pub async fn handle(server: Arc<Server>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    // Counted until answered or dropped (a connection that goes away drops its request).
    let _in_flight = InFlight::new(&server);
    let reply = route(&server, req).await;
    Ok(reply.unwrap_or_else(|e| error_reply(&e)))
}

/// Serves the metrics port: `GET /metrics`.
pub async fn handle_metrics(
    server: Arc<Server>,
    req: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let reply = if req.uri().path() != "/metrics" {
        error_reply(&ServeError::not_found(format!(
            "no route {}",
            req.uri().path()
        )))
    } else if req.method() != Method::GET {
        error_reply(&ServeError::invalid("the metrics take GET"))
    } else {
        let mut text = super::stats::prometheus(&server.models.served(), &server.stats);
        // Python-backend models' own metric families and their instances' restarts.
        text.push_str(&vigil_engine::python::metrics_text());
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    };
    Ok(reply)
}

async fn route(server: &Arc<Server>, req: Request<Incoming>) -> Result<Reply, ServeError> {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method().clone();
    let health = matches!(parts.as_slice(), ["v2", "health", _]);
    if !health {
        authorize(server, &req)?;
    }
    let get = method == Method::GET;
    let post = method == Method::POST;
    match parts.as_slice() {
        ["v2", "health", "live"] if get => Ok(empty(StatusCode::OK)),
        ["v2", "health", "ready"] if get => Ok(empty(if server.models.all_ready() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        })),
        ["v2"] if get => Ok(json_reply(&json!({
            "name": "triton",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": EXTENSIONS,
        }))),
        ["v2", "models", "stats"] if get => statistics(server, None, None),
        ["v2", "repository", "index"] if post => {
            let body = read_body(server, req).await?;
            let ready = parse_json_or_empty(&body)?
                .get("ready")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Ok(json_reply(
                &serde_json::to_value(server.models.index(ready)?).unwrap_or_default(),
            ))
        }
        [
            "v2",
            "repository",
            "models",
            name,
            action @ ("load" | "unload"),
        ] if post => {
            let name = percent_decode(name);
            let body = read_body(server, req).await?;
            let params = parse_json_or_empty(&body)?;
            if params
                .get("parameters")
                .and_then(|p| p.get("config"))
                .is_some()
            {
                return Err(ServeError::unsupported(format!(
                    "failed to load '{name}', a configuration given with the load request is not \
                     supported; edit config.pbtxt in the repository"
                )));
            }
            let models = server.models.clone();
            let action = action.to_string();
            run_blocking(move || {
                if action == "load" {
                    models.load(&name)
                } else {
                    models.unload(&name)
                }
            })
            .await?;
            Ok(empty(StatusCode::OK))
        }
        ["v2", "models", name, rest @ ..] => {
            let name = percent_decode(name);
            let (version, rest) = match rest {
                ["versions", v, rest @ ..] => (Some(parse_version(&name, v)?), rest),
                _ => (None, rest),
            };
            match rest {
                [] if get => {
                    let runtime = server.models.runtime(&name, version)?;
                    Ok(json_reply(&protocol::metadata(&runtime)))
                }
                ["ready"] if get => Ok(empty(match server.models.runtime(&name, version) {
                    Ok(_) => StatusCode::OK,
                    Err(_) => StatusCode::BAD_REQUEST,
                })),
                ["config"] if get => {
                    let runtime = server.models.runtime(&name, version)?;
                    Ok(json_reply(&protocol::config_json(&runtime)?))
                }
                ["stats"] if get => statistics(server, Some(&name), version),
                ["infer"] if post => infer(server, &name, version, req).await,
                _ => Err(no_route(&method, &path)),
            }
        }
        _ => Err(no_route(&method, &path)),
    }
}

fn no_route(method: &Method, path: &str) -> ServeError {
    ServeError::not_found(format!("no route {method} {path}"))
}

fn parse_version(name: &str, v: &str) -> Result<u64, ServeError> {
    v.parse().map_err(|_| {
        ServeError::invalid(format!(
            "Request for unknown model: '{name}' version {v} is not a version number"
        ))
    })
}

/// `Authorization: Bearer <token>` when the server has a token.
fn authorize(server: &Server, req: &Request<Incoming>) -> Result<(), ServeError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if server.authorized(header) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

fn unauthorized() -> ServeError {
    ServeError {
        kind: protocol::ErrorKind::Unauthenticated,
        message: "unauthorized: send 'Authorization: Bearer <token>' (vigil serve --token)".into(),
    }
}

/// Runs a blocking model-control call on a thread of its own.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, ServeError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ServeError::internal(format!("the request failed: {e}"))))
}

/// The body, at most the server's limit.
async fn read_body(server: &Server, req: Request<Incoming>) -> Result<Bytes, ServeError> {
    if let Some(len) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > server.max_body
    {
        return Err(too_large(server.max_body));
    }
    if let Some(enc) = req.headers().get("content-encoding")
        && enc.as_bytes() != b"identity"
    {
        return Err(ServeError::unsupported(format!(
            "Content-Encoding {} is not supported; send the body uncompressed",
            String::from_utf8_lossy(enc.as_bytes())
        )));
    }
    Limited::new(req.into_body(), server.max_body)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large(server.max_body)
            } else {
                ServeError::invalid(format!("reading the request body: {e}"))
            }
        })
}

fn too_large(max: usize) -> ServeError {
    ServeError::invalid(format!(
        "the request body is larger than {max} bytes (vigil serve --max-body-mib)"
    ))
}

fn parse_json_or_empty(body: &[u8]) -> Result<Value, ServeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ServeError::invalid(format!("failed to parse the request JSON buffer: {e}")))
}

fn statistics(
    server: &Server,
    name: Option<&str>,
    version: Option<u64>,
) -> Result<Reply, ServeError> {
    let runtimes = match name {
        Some(name) => vec![(name.to_owned(), server.models.runtime(name, version)?)],
        None => server.models.served(),
    };
    let stats: Vec<Value> = runtimes
        .iter()
        .map(|(name, rt)| model_stats_json(rt, server.stats.get(name, rt.version())))
        .collect();
    Ok(json_reply(&json!({ "model_stats": stats })))
}

/// `POST /v2/models/{name}[/versions/{v}]/infer`.
async fn infer(
    server: &Arc<Server>,
    name: &str,
    version: Option<u64>,
    req: Request<Incoming>,
) -> Result<Reply, ServeError> {
    let start = Instant::now();
    let header_len = req
        .headers()
        .get(HEADER_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ServeError::invalid(format!("{HEADER_LENGTH} is not a number of bytes"))
                })
        })
        .transpose()?;
    let runtime = server.models.runtime(name, version)?;
    if runtime.decoupled() {
        // Triton's answer: a decoupled model's responses need a stream (gRPC).
        return Err(ServeError::unsupported(
            "HTTP end point doesn't support models with decoupled transaction policy",
        ));
    }
    let body = read_body(server, req).await?;
    let result = async {
        let (request, binary_outputs) = decode_request(&body, header_len, runtime.name())?;
        let response = protocol::infer(runtime.clone(), request).await?;
        encode_response(&response, &binary_outputs)
    }
    .await;
    let took = start.elapsed();
    match &result {
        Ok((_, items)) => {
            server
                .stats
                .record(runtime.name(), runtime.version(), Some(*items), took)
        }
        Err(_) => server
            .stats
            .record(runtime.name(), runtime.version(), None, took),
    }
    result.map(|(reply, _)| reply)
}

/// Which outputs are sent as binary data: by name, and the default for the others.
#[derive(Debug)]
struct BinaryOutputs {
    default: bool,
    by_name: Vec<(String, bool)>,
}

impl BinaryOutputs {
    fn of(&self, name: &str) -> bool {
        self.by_name
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.default, |(_, b)| *b)
    }
}

fn binary_parameter(params: Option<&Value>, key: &str) -> Option<bool> {
    params?.get(key)?.as_bool()
}

/// Decodes an infer request body: the JSON header (the first `header_len` bytes, or all) and the
/// binary tensor data after it.
fn decode_request(
    body: &[u8],
    header_len: Option<usize>,
    model: &str,
) -> Result<(protocol::Request, BinaryOutputs), ServeError> {
    let json_len = header_len.unwrap_or(body.len());
    if json_len > body.len() {
        return Err(ServeError::invalid(format!(
            "{HEADER_LENGTH} {json_len} is larger than the body ({} bytes)",
            body.len()
        )));
    }
    let (head, mut binary) = body.split_at(json_len);
    let head: Value = serde_json::from_slice(head).map_err(|e| {
        ServeError::invalid(format!("failed to parse the request JSON buffer: {e}"))
    })?;
    let obj = head
        .as_object()
        .ok_or_else(|| ServeError::invalid("the request JSON is not an object"))?;
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ServeError::invalid("'id' is not a string")),
    };
    let default_binary =
        binary_parameter(obj.get("parameters"), "binary_data_output").unwrap_or(false);
    let Some(Value::Array(inputs_json)) = obj.get("inputs") else {
        return Err(ServeError::invalid("the request has no 'inputs' array"));
    };
    let mut inputs = Vec::with_capacity(inputs_json.len());
    for (k, i) in inputs_json.iter().enumerate() {
        let (input, used) = decode_input(i, k, binary, model)?;
        binary = &binary[used..];
        inputs.push(input);
    }
    if !binary.is_empty() {
        return Err(ServeError::invalid(format!(
            "the request has {} bytes of binary data that no input's binary_data_size claims",
            binary.len()
        )));
    }
    let mut by_name = Vec::new();
    let mut classification = Vec::new();
    let outputs = match obj.get("outputs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            let mut names = Vec::with_capacity(list.len());
            for o in list {
                let name = o
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ServeError::invalid("an output has no 'name'"))?;
                if let Some(c) = o.get("parameters").and_then(|p| p.get("classification")) {
                    let count = c.as_u64().ok_or_else(|| {
                        ServeError::invalid(format!(
                            "output '{name}': the classification parameter is not a number of \
                             classes"
                        ))
                    })?;
                    // 0: the output as it is (Triton's default).
                    if count > 0 {
                        classification.push((name.to_owned(), count as usize));
                    }
                }
                if let Some(b) = binary_parameter(o.get("parameters"), "binary_data") {
                    by_name.push((name.to_owned(), b));
                }
                names.push(name.to_owned());
            }
            Some(names)
        }
        Some(_) => return Err(ServeError::invalid("'outputs' is not an array")),
    };
    Ok((
        protocol::Request {
            id,
            inputs,
            outputs,
            classification,
        },
        BinaryOutputs {
            default: default_binary,
            by_name,
        },
    ))
}

/// One input of the JSON header; its data from `data` or from the front of `binary`. Returns
/// the input and the binary bytes it used.
fn decode_input(
    i: &Value,
    k: usize,
    binary: &[u8],
    model: &str,
) -> Result<(Input, usize), ServeError> {
    let name = i
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ServeError::invalid(format!("input {k} has no 'name'")))?;
    let bad = |m: String| ServeError::invalid(format!("input '{name}': {m}"));
    let datatype = i
        .get("datatype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no 'datatype'".into()))?;
    let dtype =
        from_wire_name(datatype).ok_or_else(|| bad(format!("unknown datatype '{datatype}'")))?;
    let shape: Vec<i64> = i
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no 'shape'".into()))?
        .iter()
        .map(|d| {
            d.as_i64()
                .ok_or_else(|| bad(format!("shape dimension {d} is not an integer")))
        })
        .collect::<Result<_, _>>()?;
    let count = element_count(&shape).ok_or_else(|| {
        bad(format!(
            "shape {shape:?} has a negative or too large dimension"
        ))
    })?;
    let binary_size = match i.get("parameters").and_then(|p| p.get("binary_data_size")) {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("binary_data_size is not a number of bytes".into()))?
                as usize,
        ),
    };
    let (data, used) = match (binary_size, i.get("data")) {
        (Some(_), Some(_)) => return Err(bad("has both 'data' and binary_data_size".into())),
        (Some(size), None) => {
            if size > binary.len() {
                return Err(bad(format!(
                    "binary_data_size {size} is more than the {} bytes of binary data left",
                    binary.len()
                )));
            }
            let data = from_binary(dtype, &binary[..size], count).map_err(|e| {
                match dtype.size_bytes() {
                    Some(per) => ServeError::invalid(format!(
                        "input byte size mismatch for input '{name}' for model '{model}'. Expected {}, got {size}",
                        count.saturating_mul(per)
                    )),
                    None => bad(e),
                }
            })?;
            (data, size)
        }
        (None, Some(data)) => (from_json(dtype, data, count).map_err(bad)?, 0),
        (None, None) => return Err(bad("has neither 'data' nor binary_data_size".into())),
    };
    Ok((
        Input {
            name: name.to_owned(),
            shape,
            data,
        },
        used,
    ))
}

/// The response: JSON, then the binary outputs when there are any. Returns the reply and the
/// number of items inferred.
fn encode_response(
    r: &protocol::Response,
    binary: &BinaryOutputs,
) -> Result<(Reply, usize), ServeError> {
    let mut tail = Vec::new();
    let mut outputs = Vec::with_capacity(r.outputs.len());
    for o in &r.outputs {
        let mut entry = json!({
            "name": o.name,
            "datatype": wire_name(o.data.data_type()),
            "shape": o.shape,
        });
        if binary.of(&o.name) {
            let before = tail.len();
            to_binary(o.data.as_slice(), &mut tail);
            entry["parameters"] = json!({ "binary_data_size": tail.len() - before });
        } else {
            entry["data"] = to_json(o.data.as_slice())
                .map_err(|e| ServeError::invalid(format!("output '{}': {e}", o.name)))?;
        }
        outputs.push(entry);
    }
    let mut head = json!({
        "model_name": r.model,
        "model_version": r.version.to_string(),
        "outputs": outputs,
    });
    if let Some(id) = &r.id {
        head["id"] = json!(id);
    }
    let head = head.to_string();
    let reply = if tail.is_empty() {
        json_text(head)
    } else {
        let json_len = head.len();
        let mut body = head.into_bytes();
        body.extend_from_slice(&tail);
        let mut reply = Response::new(Full::new(Bytes::from(body)));
        let h = reply.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(HEADER_LENGTH, HeaderValue::from(json_len));
        reply
    };
    Ok((reply, r.items))
}

fn json_reply(v: &Value) -> Reply {
    json_text(v.to_string())
}

fn json_text(text: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn empty(status: StatusCode) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// `{"error": message}` with the status Triton answers the error with.
fn error_reply(e: &ServeError) -> Reply {
    let mut r = json_reply(&json!({ "error": e.message }));
    *r.status_mut() = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    r
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_binary_and_json_inputs_decodes() {
        let head = json!({
            "id": "7",
            "inputs": [
                {"name": "INPUT0", "shape": [1, 2], "datatype": "INT32", "data": [[1, 2]]},
                {"name": "INPUT1", "shape": [1, 2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
                {"name": "S", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 10}},
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": true}}, {"name": "OUTPUT1"}],
        })
        .to_string();
        let mut body = head.clone().into_bytes();
        body.extend_from_slice(&[3, 0, 0, 0, 4, 0, 0, 0]);
        body.extend_from_slice(&[1, 0, 0, 0, b'a', 1, 0, 0, 0, b'b']);
        let (r, bin) = decode_request(&body, Some(head.len()), "simple").unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(
            r.inputs[0].data,
            vigil_engine::TensorData::Int32(vec![1, 2])
        );
        assert_eq!(
            r.inputs[1].data,
            vigil_engine::TensorData::Int32(vec![3, 4])
        );
        assert_eq!(
            r.inputs[2].data,
            vigil_engine::TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert!(bin.of("OUTPUT0") && !bin.of("OUTPUT1"));
        // Truncated binary data, extra bytes, a wrong byte size: errors naming the input.
        let e = decode_request(&body[..body.len() - 1], Some(head.len()), "simple").unwrap_err();
        assert!(e.message.contains("'S'"), "{e}");
        let mut extra = body.clone();
        extra.push(0);
        assert!(
            decode_request(&extra, Some(head.len()), "simple")
                .unwrap_err()
                .message
                .contains("1 bytes")
        );
        let e = decode_request(&body, Some(body.len() + 1), "simple").unwrap_err();
        assert!(e.message.contains("larger than the body"), "{e}");
    }

    #[test]
    fn byte_size_mismatch_has_tritons_text() {
        let head = json!({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 60}}]}).to_string();
        let mut body = head.clone().into_bytes();
        body.extend_from_slice(&[0; 60]);
        let e = decode_request(&body, Some(head.len()), "simple").unwrap_err();
        assert_eq!(
            e.message,
            "input byte size mismatch for input 'INPUT0' for model 'simple'. Expected 64, got 60"
        );
    }

    #[test]
    fn classification_parameters_are_read_per_output() {
        let head = json!({
            "inputs": [{"name": "INPUT0", "shape": [1], "datatype": "INT32", "data": [1]}],
            "outputs": [
                {"name": "OUTPUT0", "parameters": {"classification": 3, "binary_data": true}},
                {"name": "OUTPUT1", "parameters": {"classification": 0}},
                {"name": "OUTPUT2"},
            ],
        })
        .to_string();
        let (r, bin) = decode_request(head.as_bytes(), None, "m").unwrap();
        // 0 = the output as it is.
        assert_eq!(r.classification, vec![("OUTPUT0".to_owned(), 3)]);
        assert_eq!(
            r.outputs.as_deref(),
            Some(&["OUTPUT0".to_owned(), "OUTPUT1".into(), "OUTPUT2".into()][..])
        );
        assert!(bin.of("OUTPUT0"));
        let bad = json!({
            "inputs": [{"name": "INPUT0", "shape": [1], "datatype": "INT32", "data": [1]}],
            "outputs": [{"name": "OUTPUT0", "parameters": {"classification": "3"}}],
        })
        .to_string();
        let e = decode_request(bad.as_bytes(), None, "m").unwrap_err();
        assert_eq!(e.http_status(), 400);
        assert!(e.message.contains("'OUTPUT0'"), "{e}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
