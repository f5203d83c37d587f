//! Vigil's event publishers: MQTT, a JSON-lines file, standard output — each behind the same bounded
//! [`Buffer`] and delivery thread, so that the caller (a streaming thread) never waits on the network
//! or the disk.
//!
//! [`Publisher::publish`] queues a message and returns at once. A delivery thread takes the messages
//! in order: the file and stdout targets write one line per message; the MQTT target (rumqttc on a
//! tokio runtime of its own) publishes them in order, up to `max_in_flight` ahead of the oldest
//! unacknowledged one, and for QoS 1 and 2 removes each from the buffer only when the broker
//! acknowledged it (PUBACK / PUBCOMP, which come in publish order). When the connection is lost the
//! messages in flight go back to waiting at the front of the buffer and are published again, in
//! order, after reconnection, so none is lost while the buffer holds them (QoS 1 may deliver those
//! in flight twice, as MQTT allows: consumers skip a `seq` they have seen). A full buffer drops by its [`DropPolicy`]; every message ends
//! counted in [`Stats::published`] or [`Stats::dropped`] — including what is still buffered when the
//! publisher is closed without a connection.
//!
//! This is a separate crate from `vigil-core` so that the core (metadata, models, trackers) does not
//! carry an MQTT client, a TLS stack and an async runtime; only the msgbroker element and `vigil run`
//! depend on it.

pub mod buffer;
mod lines;
pub mod mqtt;
pub mod testbroker;
pub mod topic;

pub use buffer::{Buffer, DropPolicy, Message, Pushed};
pub use mqtt::{MqttConfig, QoS, TlsFiles};
pub use topic::{TopicTemplate, TopicVars};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Errors of starting a publisher: what is wrong and with which file or option.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot open the events file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS {what} file {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("cannot start the publisher thread: {0}")]
    Thread(std::io::Error),
}

/// Where messages go.
pub enum Target {
    Mqtt(MqttConfig),
    /// A JSON-lines file, created or truncated.
    File(PathBuf),
    Stdout,
    /// Any writer, one line per message (tests, embedding).
    Writer(Box<dyn std::io::Write + Send>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Mqtt(c) => write!(f, "mqtt://{}:{}", c.host, c.port),
            Target::File(p) => write!(f, "file {}", p.display()),
            Target::Stdout => write!(f, "stdout"),
            Target::Writer(_) => write!(f, "writer"),
        }
    }
}

/// Counters of a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Messages delivered: written, sent (QoS 0) or acknowledged by the broker (QoS 1, 2).
    pub published: u64,
    /// Messages waiting in the buffer now (the one in flight included).
    pub buffered: u64,
    /// Messages given up: buffer full, too large, write failed, or still buffered at close.
    pub dropped: u64,
    /// Successful reconnections after a lost or failed connection.
    pub reconnects: u64,
    /// Whether the target is reachable now (always true for files and stdout until a write fails).
    pub connected: bool,
}

/// Connection news for the owner (the element posts them on the bus). Sent once per outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The first connection succeeded.
    Connected,
    /// The connection failed or was lost; messages are buffered until it is back.
    Disconnected(String),
    /// Connected again after an outage; buffered messages follow in order.
    Reconnected,
    /// A message could not be delivered and was dropped (too large, write error).
    Failed(String),
}

/// Callback receiving [`Status`] news on the delivery thread.
pub type StatusFn = Box<dyn Fn(Status) + Send + Sync>;

/// What a publisher is started with.
#[derive(Debug)]
pub struct PublisherConfig {
    pub target: Target,
    /// Buffer capacity in messages (at least 1).
    pub buffer_size: usize,
    pub drop_policy: DropPolicy,
}

/// State shared between the callers and the delivery thread.
pub(crate) struct Shared {
    pub(crate) buffer: Mutex<Buffer>,
    /// Signalled on every push, delivery and close.
    pub(crate) changed: Condvar,
    /// Wakes the MQTT sender task on push and close.
    pub(crate) notify: tokio::sync::Notify,
    pub(crate) closing: AtomicBool,
    /// Deadline (ms after `epoch`) for delivering the rest after `close`.
    pub(crate) close_deadline_ms: AtomicU64,
    pub(crate) epoch: Instant,
    pub(crate) reconnects: AtomicU64,
    pub(crate) connected: AtomicBool,
    pub(crate) status: StatusFn,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether close was asked and its deadline has passed.
    pub(crate) fn close_expired(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
            && self.epoch.elapsed().as_millis() as u64
                >= self.close_deadline_ms.load(Ordering::SeqCst)
    }

    pub(crate) fn close_remaining(&self) -> Duration {
        let deadline = self.close_deadline_ms.load(Ordering::SeqCst);
        Duration::from_millis(deadline.saturating_sub(self.epoch.elapsed().as_millis() as u64))
    }
}

/// A running publisher. Dropping it closes it with no grace time (see [`Publisher::close`]).
pub struct Publisher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    max_payload: usize,
}

impl Publisher {
    /// Checks the configuration (files, TLS material), opens files and starts the delivery thread.
    /// Connecting to a broker happens on that thread: an unreachable broker is not an error here
    /// (messages are buffered and `status` hears `Disconnected`).
    pub fn start(
        config: PublisherConfig,
        status: impl Fn(Status) + Send + Sync + 'static,
    ) -> Result<Publisher, PublishError> {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::new(config.buffer_size, config.drop_policy)),
            changed: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
            close_deadline_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            reconnects: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            status: Box::new(status),
        });
        let (thread, max_payload) = match config.target {
            Target::Mqtt(c) => {
                let max = c.max_payload;
                (mqtt::start(c, shared.clone())?, max)
            }
            Target::File(path) => {
                let f = std::fs::File::create(&path).map_err(|source| PublishError::File {
                    path: path.clone(),
                    source,
                })?;
                (lines::start(Box::new(f), shared.clone())?, usize::MAX)
            }
            Target::Stdout => (
                lines::start(Box::new(std::io::stdout()), shared.clone())?,
                usize::MAX,
            ),
            Target::Writer(w) => (lines::start(w, shared.clone())?, usize::MAX),
        };
        Ok(Publisher {
            shared,
            thread: Mutex::new(Some(thread)),
            max_payload,
        })
    }

    /// Queues a message; never blocks on delivery. Returns `false` when this message was dropped
    /// (buffer full with [`DropPolicy::Newest`], or larger than the target accepts); with
    /// [`DropPolicy::Oldest`] an older message may have been dropped instead (see [`Stats::dropped`]).
    pub fn publish(&self, message: Message) -> bool {
        let mut b = self.shared.lock();
        if self.shared.closing.load(Ordering::SeqCst) {
            b.refuse();
            return false;
        }
        if message.topic.len() + message.payload.len() > self.max_payload {
            b.refuse();
            drop(b);
            (self.shared.status)(Status::Failed(format!(
                "a message of {} bytes on '{}' exceeds the {}-byte packet limit; dropped",
                message.payload.len(),
                message.topic,
                self.max_payload
            )));
            return false;
        }
        let r = b.push(message);
        drop(b);
        self.shared.changed.notify_all();
        self.shared.notify.notify_one();
        r != Pushed::DroppedNewest
    }

    pub fn stats(&self) -> Stats {
        let b = self.shared.lock();
        Stats {
            published: b.published(),
            buffered: b.len() as u64,
            dropped: b.dropped(),
            reconnects: self.shared.reconnects.load(Ordering::SeqCst),
            connected: self.shared.connected.load(Ordering::SeqCst),
        }
    }

    /// Waits until the buffer is empty (everything delivered or dropped) or `timeout` passed; returns
    /// whether it is empty.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut b = self.shared.lock();
        while !b.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            b = self
                .shared
                .changed
                .wait_timeout(b, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Delivers what it can within `grace`, then stops the thread (disconnecting cleanly from a
    /// broker). Whatever is still buffered then is counted as dropped, and later messages too.
    /// Returns the final counters. Closing again does nothing more.
    pub fn close(&self, grace: Duration) -> Stats {
        self.shutdown(grace);
        self.stats()
    }

    fn shutdown(&self, grace: Duration) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(thread) = thread else {
            return;
        };
        let deadline = self.shared.epoch.elapsed() + grace;
        self.shared
            .close_deadline_ms
            .store(deadline.as_millis() as u64, Ordering::SeqCst);
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        self.shared.notify.notify_one();
        let _ = thread.join();
        self.shared.lock().drop_all();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}
