//! The HTTP API: `GET /health`, `GET /metrics`, `GET /streams`, `POST /streams` (add a stream),
//! `DELETE /streams/{id}` (drain and remove one).
//!
//! [`serve`] binds the address up front (so a bad address fails at once) and runs the server on its
//! own thread with its own single-threaded tokio runtime, independent of the GLib main loop. The
//! server stops when the returned [`ApiServer`] is dropped or [`ApiServer::shutdown`] is called.
//!
//! Security: bound to a loopback address, a token is optional; bound to any other address a bearer
//! token is required ([`serve`] refuses to start without one). With a token, every request must
//! carry `Authorization: Bearer <token>`, or gets `401`.
//!
//! `POST /streams` and `DELETE /streams/{id}` go to a [`StreamControl`] (the running pipeline); they
//! run on a short-lived thread of their own, since building or draining a stream blocks. Without a
//! control they answer `501`. The API is described in `docs/openapi.yaml`.
//!
//! Every error is a JSON `{"error": …}`: unknown paths `404`; a method a path does not have `405`
//! with `Allow` (`OPTIONS` answers `204` with it; `HEAD` is `GET` without the body); bodies over
//! [`MAX_BODY`] `413`, not JSON `415`; ids that are not stream names `400`.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::stats::{SourceStats, StreamSnapshot};

/// The streams the API shows.
pub trait StreamsView: Send + Sync {
    fn streams(&self) -> Vec<StreamSnapshot>;
    /// Labels every series of `/metrics` carries (`shard` in a split fleet); none by default.
    fn labels(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

impl StreamsView for Vec<Arc<SourceStats>> {
    fn streams(&self) -> Vec<StreamSnapshot> {
        self.iter().map(|s| s.snapshot()).collect()
    }
}

impl StreamsView for Vec<StreamSnapshot> {
    fn streams(&self) -> Vec<StreamSnapshot> {
        self.clone()
    }
}

/// A changeable set of streams (sources added and removed while running).
#[derive(Debug, Default)]
pub struct StreamRegistry {
    streams: RwLock<Vec<Arc<SourceStats>>>,
    labels: Vec<(&'static str, String)>,
}

impl StreamRegistry {
    pub fn new(streams: Vec<Arc<SourceStats>>) -> Self {
        Self {
            streams: RwLock::new(streams),
            labels: Vec::new(),
        }
    }

    /// The registry with `labels` on every series of `/metrics` ([`StreamsView::labels`]).
    pub fn with_labels(mut self, labels: Vec<(&'static str, String)>) -> Self {
        self.labels = labels;
        self
    }

    pub fn add(&self, stats: Arc<SourceStats>) {
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(stats);
    }

    /// The streams' counters, in the order they were added.
    pub fn stats(&self) -> Vec<Arc<SourceStats>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Removes the stream `name`; `false` when there is none.
    pub fn remove(&self, name: &str) -> bool {
        let mut s = self.streams.write().unwrap_or_else(|p| p.into_inner());
        let before = s.len();
        s.retain(|x| x.name != name);
        s.len() != before
    }
}

impl StreamsView for StreamRegistry {
    fn streams(&self) -> Vec<StreamSnapshot> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.snapshot())
            .collect()
    }

    fn labels(&self) -> Vec<(&'static str, String)> {
        self.labels.clone()
    }
}

/// Changes the set of streams of a running pipeline (`POST /streams`, `DELETE /streams/{id}`).
/// Both calls block until done; answers are JSON objects.
pub trait StreamControl: Send + Sync {
    /// Adds the stream described by `body` (JSON, see `docs/openapi.yaml`).
    fn add(&self, body: &[u8]) -> Result<serde_json::Value, ControlError>;
    /// Drains the stream `id` (end-of-stream through its outputs, files finished) and removes it.
    fn remove(&self, id: &str) -> Result<serde_json::Value, ControlError>;
}

/// A refused or failed [`StreamControl`] call: the HTTP status and a one-line message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub status: u16,
    pub message: String,
}

impl ControlError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "api: a token is required when binding {0} (not a loopback address); set api.token or bind 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    #[error("api: cannot resolve the address {address}:{port}: {reason}")]
    Address {
        address: String,
        port: u16,
        reason: String,
    },
    #[error("api: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("api: cannot start the server thread: {0}")]
    Runtime(std::io::Error),
}

/// Resolves `address` (an IP or host name, e.g. `127.0.0.1`, `0.0.0.0`, `localhost`) and `port`
/// (0 = any free port) to the socket address to bind.
pub fn bind_address(address: &str, port: u16) -> Result<SocketAddr, ApiError> {
    let err = |reason: String| ApiError::Address {
        address: address.to_string(),
        port,
        reason,
    };
    (address, port)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address found".into()))
}

/// A running API server; stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// The bound address (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

struct Shared {
    token: Option<String>,
    view: Arc<dyn StreamsView>,
    control: Option<Arc<dyn StreamControl>>,
}

/// Starts the API on `addr` showing `view`. A token (non-empty) is required unless `addr` is a
/// loopback address; when given it is checked on every request.
pub fn serve(
    addr: SocketAddr,
    token: Option<String>,
    view: Arc<dyn StreamsView>,
) -> Result<ApiServer, ApiError> {
    serve_with_control(addr, token, view, None)
}

/// [`serve`], with `POST /streams` and `DELETE /streams/{id}` handled by `control`.
pub fn serve_with_control(
    addr: SocketAddr,
    token: Option<String>,
    view: Arc<dyn StreamsView>,
    control: Option<Arc<dyn StreamControl>>,
) -> Result<ApiServer, ApiError> {
    let token = token.filter(|t| !t.is_empty());
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(ApiError::TokenRequired(addr));
    }
    let listener = TcpListener::bind(addr).map_err(|source| ApiError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ApiError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ApiError::Bind { addr, source })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(ApiError::Runtime)?;
    let shared = Arc::new(Shared {
        token,
        view,
        control,
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("vigil-api".into())
        .spawn(move || runtime.block_on(accept_loop(listener, shared, rx)))
        .map_err(ApiError::Runtime)?;
    Ok(ApiServer {
        addr: local,
        stop: Some(tx),
        thread: Some(thread),
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vigil: api: cannot listen: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        eprintln!("vigil: api: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

/// One stream in `GET /streams`.
#[derive(Debug, Serialize)]
struct StreamJson<'a> {
    id: &'a str,
    name: &'a str,
    uri: &'a str,
    state: &'a str,
    frames: u64,
    frames_in: u64,
    fps: f64,
    dropped: u64,
    reconnects: u64,
}

/// Runs a blocking control call on a thread of its own (ended when the call returns, so the
/// process's thread count does not keep a pool) and awaits its answer.
async fn run_control<F>(f: F) -> Result<serde_json::Value, ControlError>
where
    F: FnOnce() -> Result<serde_json::Value, ControlError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("vigil-api-control".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        return Err(ControlError::new(
            500,
            format!("cannot start a thread: {e}"),
        ));
    }
    rx.await
        .unwrap_or_else(|_| Err(ControlError::new(500, "the request failed internally")))
}

fn control_answer(
    ok: StatusCode,
    r: Result<serde_json::Value, ControlError>,
) -> Response<Full<Bytes>> {
    match r {
        Ok(v) => json(ok, v.to_string()),
        Err(e) => error(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &e.message,
        ),
    }
}

/// A path of the API.
#[derive(Debug, PartialEq)]
enum Route {
    Health,
    Metrics,
    Streams,
    /// `/streams/{id}`, the id percent-decoded.
    Stream(String),
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        match path {
            "/health" => Some(Route::Health),
            "/metrics" => Some(Route::Metrics),
            "/streams" => Some(Route::Streams),
            p => p
                .strip_prefix("/streams/")
                .filter(|id| !id.contains('/'))
                .map(|id| Route::Stream(percent_decode(id))),
        }
    }

    /// The methods this path answers (the `Allow` header): those of `docs/openapi.yaml`, `HEAD` with
    /// `GET`, and `OPTIONS`.
    fn allow(&self) -> &'static str {
        match self {
            Route::Health | Route::Metrics => "GET, HEAD, OPTIONS",
            Route::Streams => "GET, HEAD, POST, OPTIONS",
            Route::Stream(_) => "DELETE, OPTIONS",
        }
    }
}

async fn handle<B>(shared: &Shared, req: Request<B>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(token) = &shared.token
        && let Err(why) = authorized(&req, token)
    {
        let mut r = error(StatusCode::UNAUTHORIZED, why);
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let path = req.uri().path().to_string();
    let Some(route) = Route::of(&path) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no such path {path} (see docs/openapi.yaml)"),
        );
    };
    let method = req.method().clone();
    match (&route, &method) {
        (_, &Method::OPTIONS) => with_allow(empty(StatusCode::NO_CONTENT), &route),
        (Route::Health, &Method::GET | &Method::HEAD) => {
            json(StatusCode::OK, r#"{"status":"ok"}"#.into())
        }
        (Route::Metrics, &Method::GET | &Method::HEAD) => {
            let body = crate::metrics::gather(&shared.view.streams(), &shared.view.labels());
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            r
        }
        (Route::Streams, &Method::GET | &Method::HEAD) => list_streams(shared),
        (Route::Streams, &Method::POST) => add_stream(shared, req).await,
        (Route::Stream(id), &Method::DELETE) => remove_stream(shared, id.clone()).await,
        _ => with_allow(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!(
                    "{method} is not allowed on {path} (allowed: {})",
                    route.allow()
                ),
            ),
            &route,
        ),
    }
}

fn list_streams(shared: &Shared) -> Response<Full<Bytes>> {
    let snaps = shared.view.streams();
    let list: Vec<StreamJson> = snaps
        .iter()
        .map(|s| StreamJson {
            id: &s.name,
            name: &s.name,
            uri: &s.uri,
            state: s.state.as_str(),
            frames: s.frames_out,
            frames_in: s.frames_in,
            fps: if s.fps.is_finite() { s.fps } else { 0.0 },
            dropped: s.dropped,
            reconnects: s.reconnects,
        })
        .collect();
    match serde_json::to_string(&list) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `POST /streams`: a JSON body of at most [`MAX_BODY`] bytes, handed to the control.
async fn add_stream<B>(shared: &Shared, req: Request<B>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let Some(control) = shared.control.clone() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "this server cannot add streams",
        );
    };
    if let Some(t) = req.headers().get(CONTENT_TYPE)
        && !is_json(t)
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content-Type {:?}: the body must be application/json",
                String::from_utf8_lossy(t.as_bytes())
            ),
        );
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body: larger than {MAX_BODY} bytes"),
        )
    };
    // Refused before reading when the client says how much it sends.
    if hyper::body::Body::size_hint(req.body())
        .exact()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return too_large();
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("body: cannot be read: {e}"),
            );
        }
    };
    control_answer(
        StatusCode::CREATED,
        run_control(move || control.add(&body)).await,
    )
}

/// `DELETE /streams/{id}`: `id` must be a stream name (no path steps).
async fn remove_stream(shared: &Shared, id: String) -> Response<Full<Bytes>> {
    let Some(control) = shared.control.clone() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "this server cannot remove streams",
        );
    };
    if let Err(m) = crate::config::check_name(&id) {
        return error(StatusCode::BAD_REQUEST, &format!("id: {m}"));
    }
    control_answer(
        StatusCode::OK,
        run_control(move || control.remove(&id)).await,
    )
}

/// `application/json` or `application/<something>+json`, with parameters.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(t) = content_type.to_str() else {
        return false;
    };
    let essence = t
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

fn with_allow(mut r: Response<Full<Bytes>>, route: &Route) -> Response<Full<Bytes>> {
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(route.allow()));
    r
}

/// `%41` → `A` (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Authorization: Bearer <token>`, compared in constant time; the error says what is wrong.
fn authorized<B>(req: &Request<B>, token: &str) -> Result<(), &'static str> {
    let Some(header) = req.headers().get(AUTHORIZATION) else {
        return Err("missing Authorization header: send 'Authorization: Bearer <api.token>'");
    };
    let given = header
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or("the Authorization header is not 'Bearer <token>'")?;
    let (a, b) = (given.as_bytes(), token.as_bytes());
    if a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
        Ok(())
    } else {
        Err("wrong bearer token")
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    json(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/health");
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap_or_default()
    }

    #[test]
    fn bearer_check() {
        assert!(authorized(&req(Some("Bearer s3cret")), "s3cret").is_ok());
        assert!(authorized(&req(Some("bearer  s3cret ")), "s3cret").is_ok());
        assert_eq!(
            authorized(&req(Some("Bearer s3cre")), "s3cret"),
            Err("wrong bearer token")
        );
        assert!(authorized(&req(Some("Basic s3cret")), "s3cret").is_err());
        assert!(
            authorized(&req(None), "s3cret")
                .unwrap_err()
                .starts_with("missing Authorization")
        );
    }

    #[test]
    fn routes_and_allowed_methods() {
        assert_eq!(Route::of("/health"), Some(Route::Health));
        assert_eq!(
            Route::of("/streams/a%2Fb"),
            Some(Route::Stream("a/b".into()))
        );
        assert_eq!(Route::of("/streams/a/b"), None);
        assert_eq!(Route::of("/streams/"), Some(Route::Stream(String::new())));
        assert_eq!(Route::of("/nope"), None);
        assert_eq!(Route::Streams.allow(), "GET, HEAD, POST, OPTIONS");
        let ct = |v: &'static str| is_json(&HeaderValue::from_static(v));
        assert!(ct("application/json"));
        assert!(ct("Application/JSON; charset=utf-8"));
        assert!(ct("application/merge-patch+json"));
        assert!(!ct("text/plain"));
        assert!(!ct("application/x-www-form-urlencoded"));
    }

    #[test]
    fn token_required_off_loopback() {
        let view: Arc<dyn StreamsView> = Arc::new(Vec::<StreamSnapshot>::new());
        let addr: SocketAddr = ([0, 0, 0, 0], 0).into();
        assert!(matches!(
            serve(addr, Some(String::new()), view),
            Err(ApiError::TokenRequired(_))
        ));
    }

    #[test]
    fn resolves_addresses() {
        assert!(matches!(bind_address("127.0.0.1", 0), Ok(a) if a.ip().is_loopback()));
        assert!(bind_address("not a host name!", 1).is_err());
    }
}
