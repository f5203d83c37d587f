//! `vigil serve REPO`: the model repository served with Triton's protocol — KServe v2 over
//! HTTP/REST and gRPC with Triton's extensions, and Triton's metrics — so that Triton's own clients
//! (`tritonclient`, `perf_analyzer`) and Vigil's remote inference can use Vigil's engine.
//!
//! Every request goes through the model's dynamic batcher and instances ([`vigil_engine`]), as
//! in-process requests do: a request of batch size `b` is `b` items for the batcher, which forms
//! batches across requests and clients.
//!
//! - `models.rs`: which models are served (`--model-control-mode`, `--load-model`), the
//!   repository index, load and unload;
//! - `protocol.rs`: Triton's inference semantics and error texts, apart from any transport;
//! - `tensors.rs`: data types and tensor data on the wire (JSON and binary);
//! - `http.rs`: the HTTP/REST routes and the metrics port;
//! - `grpc.rs`: the gRPC service (`proto/grpc_service.proto`, compiled by `build.rs`);
//! - `stats.rs`: the statistics extension and the Prometheus metrics.

mod grpc;
mod http;
mod models;
mod protocol;
mod stats;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::Request;
use hyper::body::Incoming;

pub use models::ControlMode;
use models::Models;
use stats::ServeStats;

/// The extensions of Triton's protocol this server implements (listed in the server metadata).
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
];

/// The gRPC server's HTTP/2 stream window (the connection's is twice as large).
const GRPC_WINDOW: u32 = 16 << 20;

/// How long a graceful stop waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The model repository (Triton's layout: `<model>/config.pbtxt`, `<model>/<version>/model.onnx`).
    #[arg(required_unless_present = "model_repository")]
    pub repository: Option<PathBuf>,
    /// The model repository, as Triton's flag names it (instead of REPOSITORY).
    #[arg(long, conflicts_with = "repository")]
    pub model_repository: Option<PathBuf>,
    /// The address the HTTP and metrics ports listen on. Anything but a loopback address needs
    /// `--token`.
    #[arg(long, alias = "http-address", default_value = "127.0.0.1")]
    pub address: String,
    /// The HTTP/REST port (Triton's default 8000; 0 = any free port, printed at start).
    #[arg(long, default_value_t = 8000)]
    pub http_port: u16,
    /// The gRPC port (Triton's default 8001; 0 = any free port).
    #[arg(long, default_value_t = 8001)]
    pub grpc_port: u16,
    /// The metrics port (`GET /metrics`; Triton's default 8002; 0 = any free port).
    #[arg(long, default_value_t = 8002)]
    pub metrics_port: u16,
    /// Which models are served: `none` (all, fixed), `poll` (all, reloaded on change, new ones
    /// loaded), `explicit` (those named by `--load-model`, then load/unload requests).
    #[arg(long, value_enum, default_value = "none")]
    pub model_control_mode: ControlMode,
    /// A model to load at start in `explicit` mode (repeatable; `*` = every model).
    #[arg(long = "load-model", value_name = "NAME")]
    pub load_model: Vec<String>,
    /// Triton's `--strict-model-config`: every model needs a complete `config.pbtxt`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub strict_model_config: bool,
    /// Seconds between repository checks in `poll` mode.
    #[arg(long, default_value_t = 15)]
    pub repository_poll_secs: u64,
    /// The bearer token clients must send (`Authorization: Bearer <token>`); required off
    /// loopback (default: the environment variable `VIGIL_SERVE_TOKEN`). Health checks need none
    /// (for orchestrators' probes).
    #[arg(long)]
    pub token: Option<String>,
    /// The largest request body accepted, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_body_mib: usize,
}

/// What the routes share.
pub(crate) struct Server {
    models: Arc<Models>,
    stats: ServeStats,
    token: Option<String>,
    max_body: usize,
    /// Requests being answered (a graceful stop waits for them).
    in_flight: AtomicUsize,
    drained: tokio::sync::Notify,
}

/// Runs `vigil serve` until SIGINT/SIGTERM; then stops accepting connections and waits for the
/// requests in flight (at most 30 s; a second signal stops at once).
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let root = args
        .repository
        .clone()
        .or(args.model_repository.clone())
        .context("no model repository given")?;
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("VIGIL_SERVE_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let http_addr = crate::api::bind_address(&args.address, args.http_port)?;
    let grpc_addr = crate::api::bind_address(&args.address, args.grpc_port)?;
    let metrics_addr = crate::api::bind_address(&args.address, args.metrics_port)?;
    if token.is_none() && !http_addr.ip().is_loopback() {
        bail!(
            "serve: {} is not a loopback address: give a bearer token (--token or \
             VIGIL_SERVE_TOKEN) that clients must send",
            http_addr.ip()
        );
    }
    let poll = Duration::from_secs(args.repository_poll_secs.max(1));
    let models = Models::start(
        &root,
        args.model_control_mode,
        &args.load_model,
        args.strict_model_config,
        poll,
    )
    .map_err(|e| anyhow::anyhow!("serve: {}: {}", root.display(), e.message))?;
    for row in models.index(false).unwrap_or_default() {
        let state = row.state.unwrap_or("not loaded");
        match row.reason.as_deref().filter(|r| !r.is_empty()) {
            Some(reason) => eprintln!("vigil serve: model '{}': {state}: {reason}", row.name),
            None => eprintln!(
                "vigil serve: model '{}' version {}: {state}",
                row.name,
                row.version.as_deref().unwrap_or("-")
            ),
        }
    }
    let server = Arc::new(Server {
        models: Arc::new(models),
        stats: ServeStats::default(),
        token,
        max_body: args.max_body_mib.saturating_mul(1 << 20),
        in_flight: AtomicUsize::new(0),
        drained: tokio::sync::Notify::new(),
    });
    crate::signals::install();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("serve: cannot start the server runtime")?;
    runtime.block_on(serve(server, [http_addr, grpc_addr, metrics_addr], poll))
}

impl Server {
    /// Whether a request whose `Authorization` header (HTTP) or `authorization` metadata (gRPC)
    /// is `header` may pass: always without a server token, else `Bearer <token>` (compared in
    /// constant time).
    pub(crate) fn authorized(&self, header: Option<&str>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = header.and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        given.is_some_and(|g| {
            let (a, b) = (g.as_bytes(), token.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        })
    }
}

async fn listen(addr: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("serve: cannot listen on {addr} ({what})"))
}

async fn serve(server: Arc<Server>, addrs: [SocketAddr; 3], poll: Duration) -> anyhow::Result<()> {
    let http = listen(addrs[0], "HTTP").await?;
    let grpc = listen(addrs[1], "gRPC").await?;
    let metrics = listen(addrs[2], "metrics").await?;
    eprintln!(
        "vigil serve: HTTP on {}, gRPC on {}, metrics on {} ({} model(s) ready, model control {:?})",
        http.local_addr()?,
        grpc.local_addr()?,
        metrics.local_addr()?,
        {
            let mut names: Vec<String> =
                server.models.served().into_iter().map(|(n, _)| n).collect();
            names.dedup();
            names.len()
        },
        server.models.mode()
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = grpc::GrpcInferenceServiceServer::new(grpc::Grpc {
        server: server.clone(),
    })
    .max_decoding_message_size(server.max_body)
    .max_encoding_message_size(usize::MAX);
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            // Tensors are megabytes: HTTP/2's default 64 KiB windows would make a 2 MiB request
            // wait for a dozen window updates.
            .initial_stream_window_size(Some(GRPC_WINDOW))
            .initial_connection_window_size(Some(2 * GRPC_WINDOW))
            .tcp_nodelay(true)
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                async move {
                    let _ = grpc_stop.changed().await;
                },
            ),
    );
    let s = server.clone();
    let http_task = tokio::spawn(accept(http, stop_rx.clone(), move |req| {
        http::handle(s.clone(), req)
    }));
    let s = server.clone();
    let metrics_task = tokio::spawn(accept(metrics, stop_rx.clone(), move |req| {
        http::handle_metrics(s.clone(), req)
    }));
    let mut since_poll = Duration::ZERO;
    let tick = Duration::from_millis(100);
    while crate::signals::count() == 0 {
        tokio::time::sleep(tick).await;
        since_poll += tick;
        if server.models.mode() == ControlMode::Poll && since_poll >= poll {
            since_poll = Duration::ZERO;
            let models = server.models.clone();
            let _ = tokio::task::spawn_blocking(move || models.poll_new_models()).await;
        }
    }
    eprintln!(
        "vigil serve: stopping: no new connections; waiting for {} request(s) in flight",
        server.in_flight.load(Ordering::SeqCst)
    );
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    let _ = metrics_task.await;
    // Ends when its connections have finished their calls.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, grpc_task).await;
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while server.in_flight.load(Ordering::SeqCst) > 0 && crate::signals::count() < 2 {
        let notified = server.drained.notified();
        if server.in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            eprintln!("vigil serve: requests still in flight after {DRAIN_TIMEOUT:?}; stopping");
            break;
        }
    }
    eprintln!("vigil serve: stopped");
    Ok(())
}

/// Accepts connections on `listener` until `stop` turns true; each is served by `handler` on a
/// task of its own (HTTP/1.1 with keep-alive).
async fn accept<F, Fut>(
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<
            Output = Result<hyper::Response<http_body_util::Full<hyper::body::Bytes>>, Infallible>,
        > + Send
        + 'static,
{
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        eprintln!("vigil serve: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(handler);
                    // A client that half-closes after its request still gets the answer (and the
                    // request is not dropped halfway).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .half_close(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

/// Counts a request in flight while it lives (a graceful stop waits for them).
pub(crate) struct InFlight(Arc<Server>);

impl InFlight {
    pub(crate) fn new(server: &Arc<Server>) -> Self {
        server.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(server.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.drained.notify_waiters();
    }
}
