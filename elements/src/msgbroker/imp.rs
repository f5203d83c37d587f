use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use vigil_core::events::{MessageSelection, Sequencer, now_ms};
use vigil_publish::mqtt::qos_from_u8;
use vigil_publish::{
    DropPolicy, Message, MqttConfig, Publisher, PublisherConfig, Stats, Status, Target, TlsFiles,
    TopicTemplate, TopicVars,
};

use vigil_core::objects::FrameObjects;

use crate::meta::VigilMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigilmsgbroker",
        gst::DebugColorFlags::empty(),
        Some("Vigil message broker element"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    protocol: String,
    host: String,
    port: u32,
    topic: String,
    qos: u32,
    client_id: String,
    username: String,
    password: String,
    tls: bool,
    tls_ca_file: String,
    tls_cert_file: String,
    tls_key_file: String,
    keep_alive: u32,
    buffer_size: u32,
    drop_policy: String,
    source_name: String,
    path: String,
    messages: String,
    flush_timeout: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            protocol: "mqtt".into(),
            host: "127.0.0.1".into(),
            port: 1883,
            topic: "vigil/{source}/{kind}".into(),
            qos: 1,
            client_id: String::new(),
            username: String::new(),
            password: String::new(),
            tls: false,
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            keep_alive: 30,
            buffer_size: 1000,
            drop_policy: DropPolicy::default().as_str().into(),
            source_name: String::new(),
            path: String::new(),
            messages: "analytics".into(),
            flush_timeout: 5000,
        }
    }
}

fn opt_path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

impl Settings {
    /// The publisher's configuration; errors name the property.
    fn target(&self, source: &str, element_name: &str) -> Result<Target, String> {
        match self.protocol.as_str() {
            "stdout" => Ok(Target::Stdout),
            "file" => {
                if self.path.is_empty() {
                    return Err("property 'path': protocol=file needs a file path".into());
                }
                Ok(Target::File(PathBuf::from(&self.path)))
            }
            "mqtt" => {
                let qos = qos_from_u8(self.qos as u8)
                    .filter(|_| self.qos <= 2)
                    .ok_or_else(|| format!("property 'qos': {} is not 0, 1 or 2", self.qos))?;
                let port = u16::try_from(self.port)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("property 'port': {} is not a TCP port", self.port))?;
                let client_id = if self.client_id.is_empty() {
                    format!("vigil-{source}-{element_name}")
                } else {
                    self.client_id.clone()
                };
                let mut c = MqttConfig::new(self.host.clone(), port, client_id);
                c.qos = qos;
                c.keep_alive = Duration::from_secs(u64::from(self.keep_alive));
                if !self.username.is_empty() {
                    c.username = Some(self.username.clone());
                    c.password = Some(self.password.clone());
                }
                let files = TlsFiles {
                    ca: opt_path(&self.tls_ca_file),
                    cert: opt_path(&self.tls_cert_file),
                    key: opt_path(&self.tls_key_file),
                };
                if self.tls || files != TlsFiles::default() {
                    c.tls = Some(files);
                }
                Ok(Target::Mqtt(c))
            }
            other => Err(format!(
                "property 'protocol': unknown protocol '{other}' (expected mqtt, file or stdout)"
            )),
        }
    }
}

struct State {
    publisher: Arc<Publisher>,
    sequencer: Sequencer,
    selection: MessageSelection,
    topic: TopicTemplate,
    source: String,
    drop_policy: DropPolicy,
    /// `buffer-size` as the publisher was started with.
    buffer_size: u32,
    /// A warning about drops was posted and the buffer has not emptied since.
    overflow_warned: bool,
    /// `dropped` when last looked at.
    dropped_seen: u64,
}

#[derive(Default)]
pub struct VigilMsgBroker {
    // Locks: `settings` (the properties, mutable in READY only: read by `start`, `flush-timeout`
    // at end of stream and stop), `state` and `last_stats`. Lock order: `state` before `last_stats` (`stats`); `settings` is never held
    // with another. No lock is held while the publisher (an `Arc` taken out of the state)
    // publishes, flushes or closes: those can block, or post on the bus.
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Counters of the last publisher, kept after stop.
    last_stats: Mutex<Stats>,
}

#[glib::object_subclass]
impl ObjectSubclass for VigilMsgBroker {
    const NAME: &'static str = "GstVigilMsgBroker";
    type Type = super::VigilMsgBroker;
    type ParentType = gst_base::BaseTransform;
}

fn string_prop(name: &str, nick: &str, blurb: &str, default: &str) -> glib::ParamSpec {
    glib::ParamSpecString::builder(name)
        .nick(nick)
        .blurb(blurb)
        .default_value(Some(default))
        .mutable_ready()
        .build()
}

fn counter_prop(name: &str, nick: &str, blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecUInt64::builder(name)
        .nick(nick)
        .blurb(blurb)
        .default_value(0)
        .read_only()
        .build()
}

impl ObjectImpl for VigilMsgBroker {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                string_prop(
                    "protocol",
                    "Protocol",
                    "Where messages go: mqtt (a broker at host:port), file (JSON lines at path, truncated \
                     at start) or stdout (JSON lines)",
                    &d.protocol,
                ),
                string_prop("host", "Host", "MQTT broker host name or address", &d.host),
                glib::ParamSpecUInt::builder("port")
                    .nick("Port")
                    .blurb("MQTT broker TCP port (8883 is the usual one with TLS)")
                    .minimum(1)
                    .maximum(65535)
                    .default_value(d.port)
                    .mutable_ready()
                    .build(),
                string_prop(
                    "topic",
                    "Topic",
                    "MQTT topic template: {source} (source-name), {kind} (frame, object, analytics), \
                     {event} (line_crossed, zone_overcrowded, ...; else the kind), {name} (line or zone \
                     name; object label), {schema}",
                    &d.topic,
                ),
                glib::ParamSpecUInt::builder("qos")
                    .nick("QoS")
                    .blurb(
                        "MQTT quality of service: 0 (at most once), 1 (at least once: acknowledged; may \
                         repeat a message across a reconnection), 2 (exactly once within a connection)",
                    )
                    .maximum(2)
                    .default_value(d.qos)
                    .mutable_ready()
                    .build(),
                string_prop(
                    "client-id",
                    "Client id",
                    "MQTT client id; empty = vigil-<source-name>-<element name>. Two connections with \
                     the same id make the broker drop one of them",
                    &d.client_id,
                ),
                string_prop("username", "User name", "MQTT user name; empty = none", &d.username),
                string_prop(
                    "password",
                    "Password",
                    "MQTT password (with username)",
                    &d.password,
                ),
                glib::ParamSpecBoolean::builder("tls")
                    .nick("TLS")
                    .blurb(
                        "Connect with TLS; implied by any tls-*-file. Without tls-ca-file the system's \
                         root certificates are trusted",
                    )
                    .default_value(d.tls)
                    .mutable_ready()
                    .build(),
                string_prop(
                    "tls-ca-file",
                    "TLS CA file",
                    "PEM file of the certificate authorities that sign the broker's certificate",
                    &d.tls_ca_file,
                ),
                string_prop(
                    "tls-cert-file",
                    "TLS certificate file",
                    "PEM client certificate (chain) for brokers that require one; needs tls-key-file",
                    &d.tls_cert_file,
                ),
                string_prop(
                    "tls-key-file",
                    "TLS key file",
                    "PEM private key of tls-cert-file",
                    &d.tls_key_file,
                ),
                glib::ParamSpecUInt::builder("keep-alive")
                    .nick("Keep-alive")
                    .blurb("MQTT keep-alive in seconds (at least 5; 0 = off)")
                    .default_value(d.keep_alive)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("buffer-size")
                    .nick("Buffer size")
                    .blurb(
                        "Messages held while the target is unreachable or slow; beyond that drop-policy \
                         drops (counted in dropped)",
                    )
                    .minimum(1)
                    .default_value(d.buffer_size)
                    .mutable_ready()
                    .build(),
                string_prop(
                    "drop-policy",
                    "Drop policy",
                    "Which message a full buffer drops: oldest (the oldest waiting; the consumer gets \
                     the most recent ones) or newest (the new one; the buffer keeps the outage's start)",
                    &d.drop_policy,
                ),
                string_prop(
                    "source-name",
                    "Source name",
                    "The stream's name in messages (source) and topics ({source}); empty = the \
                     element's name",
                    &d.source_name,
                ),
                string_prop(
                    "path",
                    "Path",
                    "JSON-lines file for protocol=file",
                    &d.path,
                ),
                string_prop(
                    "messages",
                    "Messages",
                    "Comma-separated messages to publish per frame: frames (vigil.frame.v1), objects \
                     (vigil.object.v1, one per object), analytics (vigil.analytics.v1, one per analytics \
                     event), or all",
                    &d.messages,
                ),
                glib::ParamSpecUInt::builder("flush-timeout")
                    .nick("Flush timeout")
                    .blurb(
                        "Milliseconds to wait at end-of-stream (and at stop while connected) for \
                         buffered messages to be delivered; what is left then is counted as dropped",
                    )
                    .default_value(d.flush_timeout)
                    .mutable_ready()
                    .build(),
                counter_prop(
                    "published",
                    "Published",
                    "Messages delivered (written; QoS 0 sent; QoS 1/2 acknowledged by the broker)",
                ),
                counter_prop(
                    "dropped",
                    "Dropped",
                    "Messages given up: buffer full, too large, write failed, or undelivered at stop",
                ),
                counter_prop(
                    "buffered",
                    "Buffered",
                    "Messages waiting for delivery now",
                ),
                counter_prop(
                    "reconnects",
                    "Reconnects",
                    "Successful MQTT reconnections after an outage",
                ),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let text = || value.get::<Option<String>>().unwrap().unwrap_or_default();
        match pspec.name() {
            "protocol" => s.protocol = text(),
            "host" => s.host = text(),
            "port" => s.port = value.get().unwrap(),
            "topic" => s.topic = text(),
            "qos" => s.qos = value.get().unwrap(),
            "client-id" => s.client_id = text(),
            "username" => s.username = text(),
            "password" => s.password = text(),
            "tls" => s.tls = value.get().unwrap(),
            "tls-ca-file" => s.tls_ca_file = text(),
            "tls-cert-file" => s.tls_cert_file = text(),
            "tls-key-file" => s.tls_key_file = text(),
            "keep-alive" => s.keep_alive = value.get().unwrap(),
            "buffer-size" => s.buffer_size = value.get().unwrap(),
            "drop-policy" => s.drop_policy = text(),
            "source-name" => s.source_name = text(),
            "path" => s.path = text(),
            "messages" => s.messages = text(),
            "flush-timeout" => s.flush_timeout = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "published" => return self.stats().published.to_value(),
            "dropped" => return self.stats().dropped.to_value(),
            "buffered" => return self.stats().buffered.to_value(),
            "reconnects" => return self.stats().reconnects.to_value(),
            _ => {}
        }
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "protocol" => s.protocol.to_value(),
            "host" => s.host.to_value(),
            "port" => s.port.to_value(),
            "topic" => s.topic.to_value(),
            "qos" => s.qos.to_value(),
            "client-id" => s.client_id.to_value(),
            "username" => s.username.to_value(),
            "password" => s.password.to_value(),
            "tls" => s.tls.to_value(),
            "tls-ca-file" => s.tls_ca_file.to_value(),
            "tls-cert-file" => s.tls_cert_file.to_value(),
            "tls-key-file" => s.tls_key_file.to_value(),
            "keep-alive" => s.keep_alive.to_value(),
            "buffer-size" => s.buffer_size.to_value(),
            "drop-policy" => s.drop_policy.to_value(),
            "source-name" => s.source_name.to_value(),
            "path" => s.path.to_value(),
            "messages" => s.messages.to_value(),
            "flush-timeout" => s.flush_timeout.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for VigilMsgBroker {}

impl ElementImpl for VigilMsgBroker {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil message broker",
                "Filter/Metadata",
                "Publishes the frames, objects and analytics events of VigilMeta as JSON messages over \
                 MQTT, to a JSON-lines file or to standard output, with a bounded buffer for outages",
                "The Vigil developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            crate::pads::filter_templates(&caps)
        });
        TEMPLATES.as_ref()
    }
}

impl VigilMsgBroker {
    fn stats(&self) -> Stats {
        let state = self.state.lock().unwrap();
        match state.as_ref() {
            Some(s) => s.publisher.stats(),
            None => *self.last_stats.lock().unwrap(),
        }
    }

    fn publisher(&self) -> Option<Arc<Publisher>> {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.publisher.clone())
    }

    /// Posts publisher news on the bus: one warning per outage, an info message on reconnection.
    fn status_callback(
        &self,
        target: String,
        buffer: u32,
    ) -> impl Fn(Status) + Send + Sync + 'static {
        let weak = self.obj().downgrade();
        move |status| {
            let Some(obj) = weak.upgrade() else { return };
            match status {
                Status::Connected => {
                    gst::info!(CAT, obj = obj, "connected to {target}");
                }
                Status::Disconnected(reason) => {
                    gst::element_warning!(
                        obj,
                        gst::ResourceError::OpenWrite,
                        ("{target} is unreachable: {reason}; buffering up to {buffer} messages \
                             until it is back")
                    );
                }
                Status::Reconnected => {
                    gst::element_info!(
                        obj,
                        gst::ResourceError::OpenWrite,
                        ("reconnected to {target}; delivering the buffered messages in order")
                    );
                }
                Status::Failed(reason) => {
                    gst::element_warning!(
                        obj,
                        gst::ResourceError::Write,
                        ("publishing to {target}: {reason}")
                    );
                }
            }
        }
    }

    /// Drops are counted, and told once per overflow (until the buffer empties again); the
    /// warning is posted with no lock held.
    fn tell_drops(&self, publisher: &Publisher) {
        let stats = publisher.stats();
        let overflow = self.state.lock().unwrap().as_mut().and_then(|state| {
            let new_drops = stats.dropped > state.dropped_seen;
            state.dropped_seen = stats.dropped;
            if stats.buffered == 0 && !new_drops {
                state.overflow_warned = false;
            } else if new_drops && !state.overflow_warned {
                state.overflow_warned = true;
                return Some((state.buffer_size, state.drop_policy.as_str()));
            }
            None
        });
        if let Some((size, policy)) = overflow {
            gst::element_warning!(
                self.obj(),
                gst::ResourceError::NoSpaceLeft,
                (
                    "the buffer of {} messages is full: dropping the {} (dropped so far: {})",
                    size,
                    policy,
                    stats.dropped
                )
            );
        }
    }

    fn close(&self) {
        let state = self.state.lock().unwrap().take();
        if let Some(state) = state {
            // Without a connection nothing can go out during a grace time: do not hold up the
            // state change (end-of-stream already waited flush-timeout for a reconnection).
            let grace = if state.publisher.stats().connected {
                Duration::from_millis(u64::from(self.settings.lock().unwrap().flush_timeout))
            } else {
                Duration::ZERO
            };
            let stats = state.publisher.close(grace);
            if stats.dropped > 0 {
                gst::warning!(
                    CAT,
                    imp = self,
                    "stopped; {} messages were dropped",
                    stats.dropped
                );
            }
            *self.last_stats.lock().unwrap() = stats;
        }
    }
}

impl BaseTransformImpl for VigilMsgBroker {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let fail = |m: String| gst::error_msg!(gst::LibraryError::Settings, ["{}", m]);
        let selection = MessageSelection::parse(&s.messages)
            .map_err(|e| fail(format!("property 'messages': {e}")))?;
        let topic =
            TopicTemplate::parse(&s.topic).map_err(|e| fail(format!("property 'topic': {e}")))?;
        let drop_policy = DropPolicy::parse(&s.drop_policy).ok_or_else(|| {
            fail(format!(
                "property 'drop-policy': '{}' is not oldest or newest",
                s.drop_policy
            ))
        })?;
        let element_name = self.obj().name().to_string();
        let source = if s.source_name.is_empty() {
            element_name.clone()
        } else {
            s.source_name.clone()
        };
        let target = s.target(&source, &element_name).map_err(fail)?;
        let described = match &target {
            Target::Mqtt(c) => format!("MQTT broker {}:{}", c.host, c.port),
            other => format!("{other:?}"),
        };
        let callback = self.status_callback(described.clone(), s.buffer_size);
        let publisher = Publisher::start(
            PublisherConfig {
                target,
                buffer_size: s.buffer_size as usize,
                drop_policy,
            },
            callback,
        )
        .map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ["{} ({}): {}", self.obj().name(), described, e]
            )
        })?;
        gst::debug!(
            CAT,
            imp = self,
            "publishing {selection:?} of '{source}' to {described}"
        );
        *self.state.lock().unwrap() = Some(State {
            publisher: Arc::new(publisher),
            sequencer: Sequencer::new(),
            selection,
            topic,
            source,
            drop_policy,
            buffer_size: s.buffer_size,
            overflow_warned: false,
            dropped_seen: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.close();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view()
            && let Some(p) = self.publisher()
        {
            let timeout = u64::from(self.settings.lock().unwrap().flush_timeout);
            if !p.flush(Duration::from_millis(timeout)) {
                let s = p.stats();
                gst::element_warning!(
                    self.obj(),
                    gst::ResourceError::Write,
                    (
                        "end of stream: {} messages still undelivered after {} ms",
                        s.buffered,
                        timeout
                    )
                );
            }
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(meta) = buf.meta::<VigilMeta>() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let pts = buf.pts().map(|t| t.nseconds());
        // The messages are made under `state` (its sequencer numbers them) and published with no
        // lock held: the publisher may tell of a refused message on the bus at once.
        let (publisher, messages) = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                drop(guard);
                gst::element_imp_error!(
                    self,
                    gst::CoreError::StateChange,
                    ["vigilmsgbroker is not started"]
                );
                return Err(gst::FlowError::Error);
            };
            (state.publisher.clone(), messages(state, pts, meta.frame()))
        };
        for (seq, message) in messages {
            if !publisher.publish(message) {
                gst::debug!(CAT, imp = self, "message {} dropped", seq);
            }
        }
        self.tell_drops(&publisher);
        Ok(gst::FlowSuccess::Ok)
    }
}

/// The messages of a frame's meta with their topics, numbered by the state's sequencer.
fn messages(state: &mut State, pts: Option<u64>, frame: &FrameObjects) -> Vec<(u64, Message)> {
    state
        .sequencer
        .messages(state.selection, &state.source, pts, now_ms(), frame)
        .into_iter()
        .map(|m| {
            let topic = state.topic.render(&TopicVars {
                source: &state.source,
                kind: m.kind.as_str(),
                event: &m.event,
                name: &m.name,
                schema: m.kind.schema(),
            });
            (m.seq, Message::new(topic, m.json))
        })
        .collect()
}
