//! The MQTT target: rumqttc (MQTT 3.1.1) on a single-threaded tokio runtime of its own thread.
//!
//! Two futures run together on that runtime. The *driver* polls rumqttc's event loop (connecting,
//! reconnecting after a pause, reading acknowledgements) and forwards what matters to the *sender*.
//! The sender publishes the buffer's messages in order while connected, at most `max_in_flight` ahead
//! of the oldest unacknowledged one, and removes a message from the buffer when it is acknowledged
//! (PUBACK for QoS 1, PUBCOMP for QoS 2 — a broker acknowledges in publish order) or, for QoS 0, once
//! it was written to the connection. When the connection is lost every message in flight is released
//! and published again, in order, after the next CONNACK. The client uses a clean session, so rumqttc
//! keeps nothing of its own across reconnections: the buffer is the only place messages wait.

use crate::{PublishError, Shared, Status};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Outgoing, Transport,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;

pub use rumqttc::QoS;

/// TLS material: a CA bundle to trust (else the system's roots) and an optional client certificate
/// and key (PEM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How to reach the broker.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub qos: QoS,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `Some` = TLS.
    pub tls: Option<TlsFiles>,
    pub keep_alive: Duration,
    /// Pause before trying again after a failed or lost connection.
    pub reconnect_delay: Duration,
    /// Largest topic + payload accepted; larger messages are dropped (counted).
    pub max_payload: usize,
    /// Messages published before the oldest is acknowledged (1 = stop-and-wait).
    pub max_in_flight: u16,
}

impl MqttConfig {
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port,
            client_id: client_id.into(),
            qos: QoS::AtLeastOnce,
            username: None,
            password: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
            reconnect_delay: Duration::from_millis(500),
            max_payload: 1 << 20,
            max_in_flight: 32,
        }
    }
}

/// QoS from its number.
pub fn qos_from_u8(q: u8) -> Option<QoS> {
    match q {
        0 => Some(QoS::AtMostOnce),
        1 => Some(QoS::AtLeastOnce),
        2 => Some(QoS::ExactlyOnce),
        _ => None,
    }
}

fn read_pem_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PublishError> {
    let err = |reason: String| PublishError::TlsFile {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Builds the rustls client configuration (ring provider), reading and checking every file.
pub fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, PublishError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for c in read_pem_certs("CA", ca)? {
                roots.add(c).map_err(|e| PublishError::TlsFile {
                    what: "CA",
                    path: ca.clone(),
                    reason: format!("unusable certificate: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(PublishError::Tls(
                    "no CA file given and no system root certificates found".into(),
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PublishError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&files.cert, &files.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = read_pem_certs("client certificate", cert)?;
            let data = std::fs::read(key).map_err(|e| PublishError::TlsFile {
                what: "client key",
                path: key.clone(),
                reason: e.to_string(),
            })?;
            let k = PrivateKeyDer::from_pem_slice(&data).map_err(|e| PublishError::TlsFile {
                what: "client key",
                path: key.clone(),
                reason: format!("no PEM private key in it: {e}"),
            })?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| PublishError::TlsFile {
                    what: "client key",
                    path: key.clone(),
                    reason: format!("does not match the client certificate: {e}"),
                })
        }
        (Some(_), None) => Err(PublishError::Tls(
            "a client certificate needs its key file too".into(),
        )),
        (None, Some(_)) => Err(PublishError::Tls(
            "a client key needs its certificate file too".into(),
        )),
    }
}

fn options(c: &MqttConfig) -> Result<MqttOptions, PublishError> {
    if c.host.is_empty() {
        return Err(PublishError::Mqtt("no broker host given".into()));
    }
    if c.client_id.is_empty() {
        return Err(PublishError::Mqtt("the client id is empty".into()));
    }
    let mut o = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
    // rumqttc refuses keep-alives under 5 s (except 0 = off).
    let ka = if c.keep_alive.is_zero() {
        Duration::ZERO
    } else {
        c.keep_alive.max(Duration::from_secs(5))
    };
    o.set_keep_alive(ka);
    o.set_clean_session(true);
    o.set_max_packet_size(1 << 16, c.max_payload + 1024);
    o.set_inflight(c.max_in_flight.max(1));
    if let Some(u) = &c.username {
        o.set_credentials(u.clone(), c.password.clone().unwrap_or_default());
    }
    if let Some(files) = &c.tls {
        let cfg = tls_config(files)?;
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(cfg)),
        ));
    }
    Ok(o)
}

pub(crate) fn start(c: MqttConfig, shared: Arc<Shared>) -> Result<JoinHandle<()>, PublishError> {
    let opts = options(&c)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PublishError::Thread)?;
    std::thread::Builder::new()
        .name("vigil-mqtt".into())
        .spawn(move || {
            rt.block_on(async move {
                let window = usize::from(c.max_in_flight.max(1));
                let (client, eventloop) = AsyncClient::new(opts, window + 4);
                let (tx, rx) = mpsc::unbounded_channel();
                let stop = Arc::new(tokio::sync::Notify::new());
                let lost_seen = Arc::new(tokio::sync::Notify::new());
                tokio::join!(
                    drive(
                        eventloop,
                        tx,
                        stop.clone(),
                        lost_seen.clone(),
                        c.reconnect_delay
                    ),
                    send(client, rx, &shared, c.qos, window, stop, lost_seen),
                );
            })
        })
        .map_err(PublishError::Thread)
}

/// What the driver tells the sender.
enum Net {
    Connected,
    Sent,
    Acked,
    Lost(String),
}

async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::UnboundedSender<Net>,
    stop: Arc<tokio::sync::Notify>,
    lost_seen: Arc<tokio::sync::Notify>,
    reconnect_delay: Duration,
) {
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = stop.notified() => return,
        };
        let news = match ev {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => Net::Connected,
            Ok(Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))) => Net::Acked,
            Ok(Event::Outgoing(Outgoing::Publish(_))) => Net::Sent,
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                // Our own clean disconnect at close: nothing more to do.
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                if tx.send(Net::Lost(describe(&e))).is_err() {
                    return;
                }
                // Wait until the sender knows (it publishes nothing more until the next CONNACK),
                // then throw away any request it made before that: its message is still first in
                // the buffer and is published again after reconnection. Without this, a request
                // that reached the client after the connection died would be sent in the next
                // session as well, and its acknowledgement taken for the next message's.
                tokio::select! {
                    _ = lost_seen.notified() => {}
                    _ = stop.notified() => return,
                }
                eventloop.clean();
                eventloop.pending.clear();
                tokio::select! {
                    _ = tokio::time::sleep(reconnect_delay) => {}
                    _ = stop.notified() => return,
                }
                continue;
            }
        };
        if tx.send(news).is_err() {
            return;
        }
    }
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::Io(io) => format!("connection: {io}"),
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection: {code:?}")
        }
        other => other.to_string(),
    }
}

async fn send(
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<Net>,
    shared: &Shared,
    qos: QoS,
    window: usize,
    stop: Arc<tokio::sync::Notify>,
    lost_seen: Arc<tokio::sync::Notify>,
) {
    let mut connected = false;
    let mut ever_connected = false;
    let mut outage_reported = false;
    // Messages handed to the client and not yet acknowledged (QoS 1, 2) or written (QoS 0), oldest
    // first; the buffer's in-flight prefix.
    let mut in_flight = 0usize;
    loop {
        if shared.closing.load(Ordering::SeqCst) && in_flight == 0 && shared.lock().is_empty() {
            break;
        }
        if connected && in_flight < window {
            let next = shared.lock().take();
            if let Some(m) = next {
                // Released (and so published again, in order) when the connection is lost before
                // its acknowledgement. The request channel has room for the whole window.
                if client
                    .publish(m.topic, qos, false, m.payload.into_bytes())
                    .await
                    .is_err()
                {
                    shared.lock().release();
                    break;
                }
                in_flight += 1;
                continue;
            }
        }
        if shared.close_expired() {
            break;
        }
        let wait = if shared.closing.load(Ordering::SeqCst) {
            shared.close_remaining()
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            news = rx.recv() => match news {
                Some(Net::Connected) => {
                    connected = true;
                    shared.connected.store(true, Ordering::SeqCst);
                    outage_reported = false;
                    if ever_connected {
                        shared.reconnects.fetch_add(1, Ordering::SeqCst);
                        (shared.status)(Status::Reconnected);
                    } else {
                        (shared.status)(Status::Connected);
                    }
                    ever_connected = true;
                }
                // Writes (QoS 0) and acknowledgements (QoS 1, 2) come in publish order (MQTT 3.1.1
                // 4.6): each settles the oldest message in flight.
                Some(Net::Sent) => {
                    if in_flight > 0 && qos == QoS::AtMostOnce {
                        in_flight -= 1;
                        shared.lock().delivered();
                        shared.changed.notify_all();
                    }
                }
                Some(Net::Acked) => {
                    if in_flight > 0 && qos != QoS::AtMostOnce {
                        in_flight -= 1;
                        shared.lock().delivered();
                        shared.changed.notify_all();
                    }
                }
                Some(Net::Lost(reason)) => {
                    connected = false;
                    if in_flight > 0 {
                        in_flight = 0;
                        shared.lock().release();
                    }
                    lost_seen.notify_one();
                    shared.connected.store(false, Ordering::SeqCst);
                    if !outage_reported {
                        outage_reported = true;
                        (shared.status)(Status::Disconnected(reason));
                    }
                }
                None => break,
            },
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if in_flight > 0 {
        shared.lock().release();
    }
    if connected {
        // A clean DISCONNECT; the driver returns when it has gone out.
        if client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while rx.recv().await.is_some() {}
            })
            .await;
        }
    }
    stop.notify_one();
    shared.changed.notify_all();
}
