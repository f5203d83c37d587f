//! A model served by remote servers that speak Triton's protocol (Vigil's own `vigil serve`, or
//! NVIDIA's Triton): its configuration is read from the first server that answers, requests carry
//! binary tensors (gRPC `raw_input_contents`, or the HTTP binary tensor data extension), and each
//! request has one deadline within which it tries the servers in turn.
//!
//! Servers are used round-robin (load spreading). A server that fails (refused or broken connection,
//! a 5xx or an unavailable status, no answer before the deadline) is left out for a back-off (0.5 s,
//! doubling up to 5 s) and then tried again by the next request, so a restarted server is used again
//! by itself. When every server is left out, a request fails at once instead of waiting: callers
//! (the `vigilinfer` element) pass the frame on without detections and count it. A request the
//! server refuses as malformed (a 4xx or an invalid-argument status) is not retried elsewhere: every
//! server would refuse it.
//!
//! All network I/O runs on one process-wide tokio runtime (two worker threads); [`RemoteModel::infer`]
//! blocks the calling thread (never call it from inside a tokio runtime).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use prost::Message;
use serde_json::{Value, json};
use tonic::transport::Channel;
use vigil_engine::{NamedTensor, TensorData};
use vigil_modelrepo::ModelConfig;

use crate::pb;
use crate::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::tensors::{element_count, from_binary, from_json, from_wire_name, to_binary, wire_name};

/// The header giving the length of the JSON part of a body with binary tensor data.
const HEADER_LENGTH: &str = "inference-header-content-length";
/// The first back-off of a failed server; it doubles at each failure in a row up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The largest gRPC message read or written (a batch of image tensors is a few MiB).
const MAX_MESSAGE: usize = 256 << 20;

/// What went wrong, and so whether another server may do better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A server URL that cannot be used.
    Url,
    /// No server could be asked or none answered in time: another try later may succeed.
    Unavailable,
    /// A server refused the request itself (malformed, unknown model, not authorised): another
    /// server would refuse it too.
    Refused,
    /// The model's configuration could not be read or is not usable.
    Config,
}

/// An error of a remote model; the message names the server (its URL) and the model.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RemoteError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }
}

/// How requests are sent.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// The deadline of one request, over all the servers it tries.
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer <token>` (what `vigil serve` asks of clients off loopback).
    pub token: Option<String>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            timeout: Duration::from_secs(1),
            token: None,
        }
    }
}

impl RemoteOptions {
    /// A deadline of `timeout_ms` (at least 1 ms) and the token of `VIGIL_INFERENCE_TOKEN` (what
    /// Vigil's elements use).
    pub fn from_env(timeout_ms: u32) -> Self {
        RemoteOptions {
            timeout: Duration::from_millis(timeout_ms.max(1).into()),
            token: std::env::var("VIGIL_INFERENCE_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        }
    }
}

/// The URLs of a comma-separated list (blanks around them and empty items dropped).
pub fn url_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// One server's counters and state, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub url: String,
    /// Requests sent to it (each try counts).
    pub requests: u64,
    /// Tries that failed (transport errors, 5xx, unavailable, past the deadline).
    pub failures: u64,
    /// Whether it is left out now (after a failure, until its back-off ends).
    pub down: bool,
}

static RUNTIME: LazyLock<Result<tokio::runtime::Runtime, String>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vigil-kserve")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the inference client's runtime: {e}"))
});

fn runtime() -> Result<&'static tokio::runtime::Runtime, RemoteError> {
    RUNTIME
        .as_ref()
        .map_err(|e| RemoteError::new(ErrorKind::Unavailable, e.clone()))
}

/// A server URL: `grpc://host:port` or `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    Grpc,
    Http,
}

/// Checks that `url` is `grpc://HOST:PORT` or `http://HOST:PORT` (an error naming it otherwise).
pub fn check_url(url: &str) -> Result<(), RemoteError> {
    parse_url(url).map(|_| ())
}

fn parse_url(url: &str) -> Result<(Transport, String), RemoteError> {
    let bad = |reason: &str| {
        RemoteError::new(
            ErrorKind::Url,
            format!(
                "inference server '{url}': {reason} (expected grpc://HOST:PORT or http://HOST:PORT)"
            ),
        )
    };
    let (transport, rest) = if let Some(rest) = url.strip_prefix("grpc://") {
        (Transport::Grpc, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Transport::Http, rest)
    } else {
        return Err(bad("unknown scheme"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || authority.contains('@') {
        return Err(bad("not a host and port"));
    }
    let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad("no valid host and port"));
    }
    Ok((transport, authority.to_string()))
}

/// A kept-alive HTTP/1.1 connection pool to one server.
struct HttpPool {
    authority: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl HttpPool {
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(mut s) if !s.is_closed() => {
                    if s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends `request`; the answer's status, `Inference-Header-Content-Length` and body.
    async fn send(
        &self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::StatusCode, Option<usize>, Bytes), String> {
        let mut sender = self.sender().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP request: {e}"))?;
        let status = response.status();
        let json_len = response
            .headers()
            .get(HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sender);
        Ok((status, json_len, body))
    }
}

enum Conn {
    Grpc(GrpcInferenceServiceClient<Channel>),
    Http(HttpPool),
}

#[derive(Debug, Default)]
struct Health {
    /// Left out until then.
    down_until: Option<Instant>,
    backoff: Duration,
}

struct Server {
    url: String,
    conn: Conn,
    health: Mutex<Health>,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl Server {
    /// The server of `url`. gRPC channels connect lazily (and reconnect by themselves).
    fn new(url: &str) -> Result<Server, RemoteError> {
        let (transport, authority) = parse_url(url)?;
        let conn = match transport {
            Transport::Grpc => {
                let endpoint = Channel::from_shared(format!("http://{authority}"))
                    .map_err(|e| RemoteError::new(ErrorKind::Url, format!("{url}: {e}")))?
                    .connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true);
                // `connect_lazy` spawns on the current runtime.
                let _guard = runtime()?.enter();
                let client = GrpcInferenceServiceClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                Conn::Grpc(client)
            }
            Transport::Http => Conn::Http(HttpPool {
                authority,
                idle: Mutex::new(Vec::new()),
            }),
        };
        Ok(Server {
            url: url.to_string(),
            conn,
            health: Mutex::new(Health::default()),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_down(&self, now: Instant) -> bool {
        self.health().down_until.is_some_and(|t| now < t)
    }

    fn mark_up(&self) {
        *self.health() = Health::default();
    }

    fn mark_down(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut h = self.health();
        h.backoff = if h.backoff.is_zero() {
            FIRST_BACKOFF
        } else {
            (h.backoff * 2).min(MAX_BACKOFF)
        };
        h.down_until = Some(Instant::now() + h.backoff);
    }

    fn grpc_request<T>(
        &self,
        message: T,
        token: Option<&str>,
        timeout: Duration,
    ) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        if let Some(token) = token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    fn http_request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Bytes,
        json_len: Option<usize>,
        token: Option<&str>,
    ) -> Result<hyper::Request<Full<Bytes>>, RemoteError> {
        let Conn::Http(pool) = &self.conn else {
            unreachable!("an HTTP request to a gRPC server");
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, pool.authority.as_str());
        if !body.is_empty() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/octet-stream");
        }
        if let Some(n) = json_len {
            builder = builder.header(HEADER_LENGTH, n);
        }
        if let Some(token) = token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(Full::new(body)).map_err(|e| {
            RemoteError::new(ErrorKind::Url, format!("{}: request {path}: {e}", self.url))
        })
    }

    /// The error of a failed gRPC call, classified.
    fn grpc_error(&self, what: &str, status: &tonic::Status) -> RemoteError {
        use tonic::Code;
        let kind = match status.code() {
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::AlreadyExists => ErrorKind::Refused,
            _ => ErrorKind::Unavailable,
        };
        RemoteError::new(
            kind,
            format!(
                "{}: {what}: {:?}: {}",
                self.url,
                status.code(),
                status.message()
            ),
        )
    }

    /// The error of an HTTP answer that is not 200, classified (4xx: refused; others: unavailable).
    fn http_error(&self, what: &str, status: hyper::StatusCode, body: &[u8]) -> RemoteError {
        let text = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        let kind = if status.is_client_error() && status != hyper::StatusCode::NOT_FOUND {
            ErrorKind::Refused
        } else {
            ErrorKind::Unavailable
        };
        RemoteError::new(kind, format!("{}: {what}: HTTP {status}: {text}", self.url))
    }

    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::new(ErrorKind::Unavailable, format!("{}: {what}: {e}", self.url))
    }

    /// `GET path`: the body of a 200 answer; `what` names the request in errors.
    async fn http_get(
        &self,
        pool: &HttpPool,
        path: &str,
        what: &str,
        options: &RemoteOptions,
    ) -> Result<Bytes, RemoteError> {
        let request = self.http_request(
            hyper::Method::GET,
            path,
            Bytes::new(),
            None,
            options.token.as_deref(),
        )?;
        let (status, _, body) = pool
            .send(request)
            .await
            .map_err(|e| self.unavailable(what, e))?;
        if status != hyper::StatusCode::OK {
            return Err(self.http_error(what, status, &body));
        }
        Ok(body)
    }

    /// The served configuration of `model` (`version` empty = the server's choice).
    async fn config(
        &self,
        model: &str,
        version: &str,
        options: &RemoteOptions,
    ) -> Result<ModelConfig, RemoteError> {
        let descriptor = vigil_modelrepo::schema::model_config_descriptor()
            .map_err(|e| RemoteError::new(ErrorKind::Config, e.to_string()))?;
        let what = format!("the configuration of model '{model}'");
        let raw = match &self.conn {
            Conn::Grpc(client) => {
                let request = self.grpc_request(
                    pb::ModelConfigRequest {
                        name: model.to_string(),
                        version: version.to_string(),
                    },
                    options.token.as_deref(),
                    options.timeout.max(Duration::from_secs(5)),
                );
                let config = client
                    .clone()
                    .model_config(request)
                    .await
                    .map_err(|s| self.grpc_error(&what, &s))?
                    .into_inner()
                    .config
                    .ok_or_else(|| self.unavailable(&what, "the answer has no configuration"))?;
                prost_reflect::DynamicMessage::decode(descriptor, config.encode_to_vec().as_slice())
                    .map_err(|e| self.unavailable(&what, e))?
            }
            Conn::Http(pool) => {
                let path = model_path(model, version, "config");
                let body = self.http_get(pool, &path, &what, options).await?;
                let mut de = serde_json::Deserializer::from_slice(&body);
                let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(false);
                prost_reflect::DynamicMessage::deserialize_with_options(
                    descriptor, &mut de, &options,
                )
                .map_err(|e| {
                    RemoteError::new(ErrorKind::Config, format!("{}: {what}: {e}", self.url))
                })?
            }
        };
        ModelConfig::from_message(raw)
            .map_err(|e| RemoteError::new(ErrorKind::Config, format!("{}: {what}: {e}", self.url)))
    }

    /// The served metadata of `model` (`version` empty = the server's choice): its inputs as
    /// `(name, datatype)`.
    async fn metadata_inputs(
        &self,
        model: &str,
        version: &str,
        options: &RemoteOptions,
    ) -> Result<Vec<(String, String)>, RemoteError> {
        let what = format!("the metadata of model '{model}'");
        match &self.conn {
            Conn::Grpc(client) => {
                let request = self.grpc_request(
                    pb::ModelMetadataRequest {
                        name: model.to_string(),
                        version: version.to_string(),
                    },
                    options.token.as_deref(),
                    options.timeout.max(Duration::from_secs(5)),
                );
                let answer = client
                    .clone()
                    .model_metadata(request)
                    .await
                    .map_err(|s| self.grpc_error(&what, &s))?
                    .into_inner();
                Ok(answer
                    .inputs
                    .into_iter()
                    .map(|t| (t.name, t.datatype))
                    .collect())
            }
            Conn::Http(pool) => {
                let path = model_path(model, version, "")
                    .trim_end_matches('/')
                    .to_string();
                let body = self.http_get(pool, &path, &what, options).await?;
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|e| self.unavailable(&what, format!("not JSON: {e}")))?;
                Ok(v.get("inputs")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|t| {
                                let s = |k: &str| {
                                    t.get(k).and_then(Value::as_str).unwrap_or("").to_string()
                                };
                                (s("name"), s("datatype"))
                            })
                            .collect()
                    })
                    .unwrap_or_default())
            }
        }
    }

    /// The configuration and metadata of `model`: the configuration, once every input it names
    /// is in the metadata with the same data type (a server whose two answers disagree is refused).
    async fn describe(
        &self,
        model: &str,
        version: &str,
        options: &RemoteOptions,
    ) -> Result<ModelConfig, RemoteError> {
        let config = self.config(model, version, options).await?;
        let inputs = self.metadata_inputs(model, version, options).await?;
        for input in &config.input {
            let want = wire_name(input.data_type);
            if !inputs.iter().any(|(n, t)| n == &input.name && t == want) {
                return Err(RemoteError::new(
                    ErrorKind::Config,
                    format!(
                        "{}: model '{model}': input '{}' ({want}) of the configuration is not in the \
                         metadata's inputs {inputs:?}",
                        self.url, input.name
                    ),
                ));
            }
        }
        Ok(config)
    }

    /// One inference on this server.
    async fn infer(
        &self,
        request: &Payload,
        timeout: Duration,
    ) -> Result<Vec<NamedTensor>, RemoteError> {
        let what = format!("inference of model '{}'", request.model);
        match &self.conn {
            Conn::Grpc(client) => {
                let message = self.grpc_request(request.grpc(), request.token.as_deref(), timeout);
                let answer = client
                    .clone()
                    .model_infer(message)
                    .await
                    .map_err(|s| self.grpc_error(&what, &s))?
                    .into_inner();
                grpc_outputs(answer).map_err(|e| self.unavailable(&what, e))
            }
            Conn::Http(pool) => {
                let (body, json_len) = request.http();
                let path = model_path(&request.model, &request.version, "infer");
                let http = self.http_request(
                    hyper::Method::POST,
                    &path,
                    body,
                    Some(json_len),
                    request.token.as_deref(),
                )?;
                let (status, json_len, body) = pool
                    .send(http)
                    .await
                    .map_err(|e| self.unavailable(&what, e))?;
                if status != hyper::StatusCode::OK {
                    return Err(self.http_error(&what, status, &body));
                }
                http_outputs(&body, json_len).map_err(|e| self.unavailable(&what, e))
            }
        }
    }
}

fn model_path(model: &str, version: &str, tail: &str) -> String {
    // Model names are path segments: escape what a URI path cannot carry.
    let escaped: String = model
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    if version.is_empty() {
        format!("/v2/models/{escaped}/{tail}")
    } else {
        format!("/v2/models/{escaped}/versions/{version}/{tail}")
    }
}

/// The outputs of a gRPC answer (raw output contents, in the order of `outputs`).
fn grpc_outputs(answer: pb::ModelInferResponse) -> Result<Vec<NamedTensor>, String> {
    if answer.raw_output_contents.len() != answer.outputs.len() {
        return Err(format!(
            "the answer has {} outputs and {} raw output contents",
            answer.outputs.len(),
            answer.raw_output_contents.len()
        ));
    }
    answer
        .outputs
        .into_iter()
        .zip(answer.raw_output_contents)
        .map(|(o, raw)| {
            let data = tensor(&o.name, &o.datatype, &o.shape, Some(&raw), None)?;
            Ok((o.name, o.shape, data))
        })
        .collect()
}

/// One output tensor from its wire form: binary `raw` data or JSON `data`.
fn tensor(
    name: &str,
    datatype: &str,
    shape: &[i64],
    raw: Option<&[u8]>,
    json: Option<&Value>,
) -> Result<TensorData, String> {
    let dtype = from_wire_name(datatype)
        .ok_or_else(|| format!("output '{name}': unknown datatype {datatype}"))?;
    let count =
        element_count(shape).ok_or_else(|| format!("output '{name}': bad shape {shape:?}"))?;
    match (raw, json) {
        (Some(bytes), _) => from_binary(dtype, bytes, count),
        (None, Some(data)) => from_json(dtype, data, count),
        (None, None) => Err("no data".into()),
    }
    .map_err(|e| format!("output '{name}': {e}"))
}

/// The outputs of an HTTP answer: JSON, or JSON then binary data when `json_len` is given.
fn http_outputs(body: &[u8], json_len: Option<usize>) -> Result<Vec<NamedTensor>, String> {
    let n = json_len.unwrap_or(body.len());
    if n > body.len() {
        return Err(format!(
            "{HEADER_LENGTH} {n} is larger than the answer ({} bytes)",
            body.len()
        ));
    }
    let header: Value =
        serde_json::from_slice(&body[..n]).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let mut binary = &body[n..];
    let outputs = header
        .get("outputs")
        .and_then(Value::as_array)
        .ok_or("the answer has no outputs")?;
    let mut out = Vec::with_capacity(outputs.len());
    for o in outputs {
        let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
        let datatype = o
            .get("datatype")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let shape: Vec<i64> = o
            .get("shape")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .ok_or_else(|| format!("output '{name}' has no shape"))?;
        let size = o
            .pointer("/parameters/binary_data_size")
            .and_then(Value::as_u64);
        let data = match size {
            Some(size) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(format!(
                        "output '{name}': binary_data_size {size} but {} bytes left",
                        binary.len()
                    ));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                tensor(name, datatype, &shape, Some(mine), None)?
            }
            None => tensor(name, datatype, &shape, None, o.get("data"))?,
        };
        out.push((name.to_string(), shape, data));
    }
    Ok(out)
}

/// One request in both wire forms, each built once when first needed (tries on several servers
/// reuse it).
struct Payload {
    model: String,
    version: String,
    token: Option<String>,
    inputs: Vec<NamedTensor>,
    outputs: Vec<String>,
    grpc: std::sync::OnceLock<pb::ModelInferRequest>,
    http: std::sync::OnceLock<(Bytes, usize)>,
}

impl Payload {
    fn grpc(&self) -> pb::ModelInferRequest {
        self.grpc
            .get_or_init(|| pb::ModelInferRequest {
                model_name: self.model.clone(),
                model_version: self.version.clone(),
                inputs: self
                    .inputs
                    .iter()
                    .map(
                        |(name, shape, data)| pb::model_infer_request::InferInputTensor {
                            name: name.clone(),
                            datatype: wire_name(data.data_type()).to_string(),
                            shape: shape.clone(),
                            ..Default::default()
                        },
                    )
                    .collect(),
                outputs: self
                    .outputs
                    .iter()
                    .map(|name| pb::model_infer_request::InferRequestedOutputTensor {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                raw_input_contents: self
                    .inputs
                    .iter()
                    .map(|(_, _, data)| {
                        let mut bytes = Vec::new();
                        to_binary(data.as_slice(), &mut bytes);
                        bytes
                    })
                    .collect(),
                ..Default::default()
            })
            .clone()
    }

    /// The body (JSON header then the binary tensors) and the JSON header's length.
    fn http(&self) -> (Bytes, usize) {
        self.http
            .get_or_init(|| {
                let mut binary = Vec::new();
                let inputs: Vec<Value> = self
                    .inputs
                    .iter()
                    .map(|(name, shape, data)| {
                        let before = binary.len();
                        to_binary(data.as_slice(), &mut binary);
                        json!({
                            "name": name,
                            "shape": shape,
                            "datatype": wire_name(data.data_type()),
                            "parameters": {"binary_data_size": binary.len() - before},
                        })
                    })
                    .collect();
                let outputs: Vec<Value> = self
                    .outputs
                    .iter()
                    .map(|name| json!({"name": name, "parameters": {"binary_data": true}}))
                    .collect();
                let header = json!({"inputs": inputs, "outputs": outputs}).to_string();
                let json_len = header.len();
                let mut body = header.into_bytes();
                body.extend_from_slice(&binary);
                (Bytes::from(body), json_len)
            })
            .clone()
    }
}

/// A model served by one or more remote servers.
pub struct RemoteModel {
    model: String,
    /// Empty: the server's choice (its latest version).
    version: String,
    config: ModelConfig,
    servers: Vec<Server>,
    next: AtomicUsize,
    options: RemoteOptions,
}

impl RemoteModel {
    /// Opens `model` (`version` `None` = the server's choice) on the servers of `urls`: the
    /// configuration and metadata come from the first server that gives them; an error lists why
    /// each could not.
    pub fn connect(
        urls: &[String],
        model: &str,
        version: Option<u64>,
        options: RemoteOptions,
    ) -> Result<Arc<RemoteModel>, RemoteError> {
        if urls.is_empty() {
            return Err(RemoteError::new(
                ErrorKind::Url,
                "no inference server given",
            ));
        }
        let servers = urls
            .iter()
            .map(|u| Server::new(u))
            .collect::<Result<Vec<_>, _>>()?;
        let version = version.map(|v| v.to_string()).unwrap_or_default();
        let rt = runtime()?;
        let mut reasons = Vec::new();
        let mut config = None;
        for s in &servers {
            match rt.block_on(s.describe(model, &version, &options)) {
                Ok(c) => {
                    config = Some(c);
                    break;
                }
                Err(e) if e.kind == ErrorKind::Config => return Err(e),
                Err(e) => {
                    s.mark_down();
                    reasons.push(e.message);
                }
            }
        }
        let config = config.ok_or_else(|| {
            RemoteError::new(
                ErrorKind::Unavailable,
                format!(
                    "no inference server gave the configuration of model '{model}': {}",
                    reasons.join("; ")
                ),
            )
        })?;
        Ok(Arc::new(RemoteModel {
            model: model.to_string(),
            version,
            config,
            servers,
            next: AtomicUsize::new(0),
            options,
        }))
    }

    /// The model's configuration as the server serves it (complete: auto-completed there).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn name(&self) -> &str {
        &self.model
    }

    /// The servers' counters and states, in the order given.
    pub fn status(&self) -> Vec<ServerStatus> {
        let now = Instant::now();
        self.servers
            .iter()
            .map(|s| ServerStatus {
                url: s.url.clone(),
                requests: s.requests.load(Ordering::Relaxed),
                failures: s.failures.load(Ordering::Relaxed),
                down: s.is_down(now),
            })
            .collect()
    }

    /// Runs the model on `inputs` (with the batch dimension when the model batches), asking for
    /// every output of its configuration; blocks until the answer or the deadline.
    pub fn infer(
        self: &Arc<Self>,
        inputs: Vec<NamedTensor>,
    ) -> Result<Vec<NamedTensor>, RemoteError> {
        runtime()?.block_on(self.clone().run(inputs))
    }

    /// As [`Self::infer`], sent at once; [`Pending::wait`] gives the answer.
    pub fn infer_async(self: &Arc<Self>, inputs: Vec<NamedTensor>) -> Result<Pending, RemoteError> {
        let handle = runtime()?.spawn(self.clone().run(inputs));
        Ok(Pending(handle))
    }

    /// The servers to try now, starting at the next one round-robin; those left out after a
    /// failure are skipped until their back-off ends.
    fn order(&self) -> Vec<usize> {
        let n = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| !self.servers[i].is_down(now))
            .collect()
    }

    async fn run(
        self: Arc<Self>,
        inputs: Vec<NamedTensor>,
    ) -> Result<Vec<NamedTensor>, RemoteError> {
        let payload = Payload {
            model: self.model.clone(),
            version: self.version.clone(),
            token: self.options.token.clone(),
            inputs,
            outputs: self.config.output.iter().map(|o| o.name.clone()).collect(),
            grpc: Default::default(),
            http: Default::default(),
        };
        let deadline = Instant::now() + self.options.timeout;
        let order = self.order();
        if order.is_empty() {
            let urls: Vec<&str> = self.servers.iter().map(|s| s.url.as_str()).collect();
            return Err(RemoteError::new(
                ErrorKind::Unavailable,
                format!(
                    "model '{}': every inference server failed recently ({}); retried after a back-off",
                    self.model,
                    urls.join(", ")
                ),
            ));
        }
        let mut last = None;
        for i in order {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let server = &self.servers[i];
            server.requests.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(left, server.infer(&payload, left)).await {
                Ok(Ok(outputs)) => {
                    server.mark_up();
                    return Ok(outputs);
                }
                Ok(Err(e)) if e.kind == ErrorKind::Refused => return Err(e),
                Ok(Err(e)) => {
                    server.mark_down();
                    last = Some(e);
                }
                Err(_) => {
                    server.mark_down();
                    last = Some(RemoteError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "{}: inference of model '{}': no answer within {} ms",
                            server.url,
                            self.model,
                            self.options.timeout.as_millis()
                        ),
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            RemoteError::new(
                ErrorKind::Unavailable,
                format!(
                    "model '{}': no inference server answered within {} ms",
                    self.model,
                    self.options.timeout.as_millis()
                ),
            )
        }))
    }
}

/// A request sent by [`RemoteModel::infer_async`].
pub struct Pending(tokio::task::JoinHandle<Result<Vec<NamedTensor>, RemoteError>>);

impl Pending {
    /// Blocks until the answer (or the request's deadline).
    pub fn wait(self) -> Result<Vec<NamedTensor>, RemoteError> {
        let rt = runtime()?;
        rt.block_on(self.0).unwrap_or_else(|e| {
            Err(RemoteError::new(
                ErrorKind::Unavailable,
                format!("the inference request's task ended: {e}"),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_grpc_or_http_with_a_host_and_port() {
        assert_eq!(
            parse_url("grpc://127.0.0.1:8001").unwrap(),
            (Transport::Grpc, "127.0.0.1:8001".into())
        );
        assert_eq!(
            parse_url("http://localhost:8000/").unwrap(),
            (Transport::Http, "localhost:8000".into())
        );
        for bad in [
            "https://127.0.0.1:8000",
            "grpc://127.0.0.1",
            "grpc://:8001",
            "http://127.0.0.1:0",
            "http://127.0.0.1:8000/v2",
            "http://user@127.0.0.1:8000",
            "127.0.0.1:8001",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Url, "{bad}");
            assert!(e.message.contains(bad), "{}", e.message);
        }
    }

    #[test]
    fn model_paths_escape_the_name() {
        assert_eq!(
            model_path("nanodet", "", "infer"),
            "/v2/models/nanodet/infer"
        );
        assert_eq!(
            model_path("a b/c", "2", "config"),
            "/v2/models/a%20b%2Fc/versions/2/config"
        );
    }

    #[test]
    fn http_answers_with_binary_and_json_outputs() {
        let header = json!({"outputs": [
            {"name": "B", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
            {"name": "J", "datatype": "INT32", "shape": [2], "data": [3, 4]},
        ]})
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2.0f32).to_le_bytes());
        let out = http_outputs(&body, Some(header.len())).unwrap();
        assert_eq!(
            out[0],
            ("B".into(), vec![1, 2], TensorData::Fp32(vec![1.5, -2.0]))
        );
        assert_eq!(out[1], ("J".into(), vec![2], TensorData::Int32(vec![3, 4])));
        // Truncated binary data and a header length past the end are errors, not panics.
        let e = http_outputs(&body[..body.len() - 1], Some(header.len())).unwrap_err();
        assert!(e.contains("binary_data_size 8"), "{e}");
        assert!(http_outputs(&body, Some(body.len() + 1)).is_err());
        assert!(http_outputs(b"{}", None).is_err());
    }

    #[test]
    fn grpc_answers_need_raw_contents_of_the_right_size() {
        let answer = |raw: Vec<Vec<u8>>| pb::ModelInferResponse {
            outputs: vec![pb::model_infer_response::InferOutputTensor {
                name: "Y".into(),
                datatype: "INT32".into(),
                shape: vec![2],
                ..Default::default()
            }],
            raw_output_contents: raw,
            ..Default::default()
        };
        let mut raw = 7i32.to_le_bytes().to_vec();
        raw.extend_from_slice(&8i32.to_le_bytes());
        assert_eq!(
            grpc_outputs(answer(vec![raw.clone()])).unwrap(),
            vec![("Y".into(), vec![2], TensorData::Int32(vec![7, 8]))]
        );
        assert!(grpc_outputs(answer(vec![raw[..7].to_vec()])).is_err());
        assert!(grpc_outputs(answer(vec![])).is_err());
    }

    #[test]
    fn a_failed_server_is_left_out_with_a_growing_back_off_then_tried_again() {
        let s = Server::new("http://127.0.0.1:9").unwrap();
        let now = Instant::now();
        assert!(!s.is_down(now));
        s.mark_down();
        assert!(s.is_down(Instant::now()));
        assert_eq!(s.health().backoff, FIRST_BACKOFF);
        s.mark_down();
        assert_eq!(s.health().backoff, FIRST_BACKOFF * 2);
        for _ in 0..10 {
            s.mark_down();
        }
        assert_eq!(s.health().backoff, MAX_BACKOFF);
        assert!(!s.is_down(Instant::now() + MAX_BACKOFF + Duration::from_millis(1)));
        s.mark_up();
        assert!(!s.is_down(Instant::now()));
        assert_eq!(s.failures.load(Ordering::Relaxed), 12);
    }
}
