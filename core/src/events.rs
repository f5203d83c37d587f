//! The published JSON messages (documented in `docs/events.md`): the frame summary
//! ([`FrameEvent`], `vigil.frame.v1`), one record per object ([`ObjectMessage`], `vigil.object.v1`) and one
//! message per analytics event ([`AnalyticsMessage`], `vigil.analytics.v1`).
//!
//! Every message a publisher sends carries `seq`, numbered by one [`Sequencer`] per publisher (and so per
//! stream where, as in `vigil run`, each stream has its own publisher): consecutive numbers from 0, in
//! the order the messages were made, whatever their kind — a consumer that sees a gap knows how many
//! messages it missed.

use crate::objects::{AnalyticsEvent, FrameEvent, FrameObjects, Object};
use serde::{Deserialize, Serialize};

pub use crate::objects::FRAME_EVENT_SCHEMA;
/// Schema name of [`ObjectMessage`].
pub const OBJECT_SCHEMA: &str = "vigil.object.v1";
/// Schema name of [`AnalyticsMessage`].
pub const ANALYTICS_SCHEMA: &str = "vigil.analytics.v1";

/// Which messages a publisher sends for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageSelection {
    /// One [`FrameEvent`] per frame.
    pub frames: bool,
    /// One [`ObjectMessage`] per object.
    pub objects: bool,
    /// One [`AnalyticsMessage`] per analytics event.
    pub analytics: bool,
}

impl MessageSelection {
    /// Parses a comma-separated list of `frames`, `objects`, `analytics` (spaces allowed; `all` = the
    /// three). An empty list or an unknown word is an error naming it.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut s = MessageSelection::default();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "frames" => s.frames = true,
                "objects" => s.objects = true,
                "analytics" => s.analytics = true,
                "all" => {
                    s = MessageSelection {
                        frames: true,
                        objects: true,
                        analytics: true,
                    }
                }
                other => {
                    return Err(format!(
                        "unknown message kind '{other}' (expected frames, objects, analytics or all)"
                    ));
                }
            }
        }
        if s == MessageSelection::default() {
            return Err(
                "no message kind selected (expected frames, objects, analytics or all)".into(),
            );
        }
        Ok(s)
    }
}

/// The kind of a published message, as the `{kind}` of a topic template names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Frame,
    Object,
    Analytics,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Frame => "frame",
            MessageKind::Object => "object",
            MessageKind::Analytics => "analytics",
        }
    }

    pub fn schema(self) -> &'static str {
        match self {
            MessageKind::Frame => FRAME_EVENT_SCHEMA,
            MessageKind::Object => OBJECT_SCHEMA,
            MessageKind::Analytics => ANALYTICS_SCHEMA,
        }
    }
}

/// One object of a frame as its own message (`vigil.object.v1`): the frame's identity, then the
/// object's fields as in the frame event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectMessage {
    pub schema: String,
    pub seq: u64,
    pub source: String,
    pub frame: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts_ns: Option<u64>,
    pub timestamp_ms: u64,
    /// Frame size the box refers to.
    pub width: u32,
    pub height: u32,
    #[serde(flatten)]
    pub object: Object,
}

/// One analytics event as its own message (`vigil.analytics.v1`): the frame's identity, then the
/// event's fields (`kind`, `name`, `track_id`, `direction`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsMessage {
    pub schema: String,
    pub seq: u64,
    pub source: String,
    pub frame: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts_ns: Option<u64>,
    pub timestamp_ms: u64,
    #[serde(flatten)]
    pub event: AnalyticsEvent,
}

/// A message ready to publish: its JSON text and what a topic template needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    pub kind: MessageKind,
    pub seq: u64,
    /// The analytics event kind (`line_crossed`, ...) for analytics messages; else the message kind.
    pub event: String,
    /// The line or zone name for analytics messages; the label for objects; empty for frames.
    pub name: String,
    pub json: String,
}

/// Numbers the messages of one publisher and turns a frame's metadata into the selected messages.
#[derive(Debug, Clone, Default)]
pub struct Sequencer {
    next: u64,
}

impl Sequencer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `seq` the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    fn take(&mut self) -> u64 {
        let s = self.next;
        self.next += 1;
        s
    }

    /// The messages of one frame in this order: the frame summary, its objects, its analytics events
    /// (in the order they happened). `timestamp_ms` is the wall-clock time to stamp them with.
    pub fn messages(
        &mut self,
        selection: MessageSelection,
        source: &str,
        pts_ns: Option<u64>,
        timestamp_ms: u64,
        frame: &FrameObjects,
    ) -> Vec<OutMessage> {
        let mut out = Vec::new();
        if selection.frames {
            let mut ev = FrameEvent::new(source, pts_ns, frame);
            ev.timestamp_ms = timestamp_ms;
            ev.seq = Some(self.take());
            out.push(OutMessage {
                kind: MessageKind::Frame,
                seq: ev.seq.unwrap_or_default(),
                event: MessageKind::Frame.as_str().into(),
                name: String::new(),
                json: to_json(&ev),
            });
        }
        if selection.objects {
            for o in &frame.objects {
                let m = ObjectMessage {
                    schema: OBJECT_SCHEMA.into(),
                    seq: self.take(),
                    source: source.into(),
                    frame: frame.frame,
                    pts_ns,
                    timestamp_ms,
                    width: frame.width,
                    height: frame.height,
                    object: o.clone(),
                };
                out.push(OutMessage {
                    kind: MessageKind::Object,
                    seq: m.seq,
                    event: MessageKind::Object.as_str().into(),
                    name: o.label.clone(),
                    json: to_json(&m),
                });
            }
        }
        if selection.analytics {
            let events = frame.analytics.iter().flat_map(|a| a.events.iter());
            for e in events {
                let m = AnalyticsMessage {
                    schema: ANALYTICS_SCHEMA.into(),
                    seq: self.take(),
                    source: source.into(),
                    frame: frame.frame,
                    pts_ns,
                    timestamp_ms,
                    event: e.clone(),
                };
                let event = serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                out.push(OutMessage {
                    kind: MessageKind::Analytics,
                    seq: m.seq,
                    event,
                    name: e.name.clone(),
                    json: to_json(&m),
                });
            }
        }
        out
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    // These types hold only strings, numbers and plain containers: serialisation cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{AnalyticsEventKind, BBox, FrameAnalytics};

    fn frame() -> FrameObjects {
        let mut f = FrameObjects::new(640, 480);
        f.frame = 9;
        f.inferred = true;
        let mut o = Object::new(2, "car", 0.7, BBox::new(1.0, 2.0, 3.0, 4.0));
        o.track_id = Some(4);
        f.objects.push(o);
        f.objects
            .push(Object::new(0, "person", 0.6, BBox::new(5.0, 6.0, 7.0, 8.0)));
        let mut e = AnalyticsEvent::new(AnalyticsEventKind::LineCrossed, "gate");
        e.track_id = Some(4);
        e.label = Some("car".into());
        e.direction = Some("in".into());
        let mut z = AnalyticsEvent::new(AnalyticsEventKind::ZoneOvercrowded, "yard");
        z.count = Some(6);
        z.threshold = Some(5);
        f.analytics = Some(FrameAnalytics {
            events: vec![e, z],
            ..Default::default()
        });
        f
    }

    #[test]
    fn selection_parses_lists_and_names_bad_words() {
        let s = MessageSelection::parse("analytics, frames").unwrap();
        assert!(s.frames && s.analytics && !s.objects);
        assert!(MessageSelection::parse("all").unwrap().objects);
        let e = MessageSelection::parse("frames,events").unwrap_err();
        assert!(e.contains("'events'"), "{e}");
        assert!(MessageSelection::parse(" , ").is_err());
    }

    #[test]
    fn messages_are_numbered_in_order_across_kinds_and_frames() {
        let mut seq = Sequencer::new();
        let all = MessageSelection::parse("all").unwrap();
        let f = frame();
        let m = seq.messages(all, "cam", Some(40), 1000, &f);
        let kinds: Vec<_> = m.iter().map(|m| m.kind).collect();
        use MessageKind::*;
        assert_eq!(kinds, [Frame, Object, Object, Analytics, Analytics]);
        assert_eq!(m.iter().map(|m| m.seq).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(m[3].event, "line_crossed");
        assert_eq!(m[3].name, "gate");
        assert_eq!(m[4].event, "zone_overcrowded");
        assert_eq!(m[1].name, "car");
        let only = MessageSelection::parse("analytics").unwrap();
        let m2 = seq.messages(only, "cam", None, 1001, &f);
        assert_eq!(m2.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(seq.next_seq(), 7);
    }

    #[test]
    fn every_message_round_trips() {
        let mut seq = Sequencer::new();
        let f = frame();
        let m = seq.messages(
            MessageSelection::parse("all").unwrap(),
            "cam",
            Some(40),
            1000,
            &f,
        );
        let fe: FrameEvent = serde_json::from_str(&m[0].json).unwrap();
        assert_eq!(fe.seq, Some(0));
        assert_eq!(fe.objects, f.objects);
        assert_eq!(fe.timestamp_ms, 1000);
        let om: ObjectMessage = serde_json::from_str(&m[1].json).unwrap();
        assert_eq!(om.object, f.objects[0]);
        assert_eq!(om.schema, OBJECT_SCHEMA);
        assert_eq!((om.width, om.height, om.frame), (640, 480, 9));
        let am: AnalyticsMessage = serde_json::from_str(&m[3].json).unwrap();
        assert_eq!(&am.event, &f.analytics.as_ref().unwrap().events[0]);
        assert_eq!(am.seq, 3);
        assert_eq!(
            m[3].json,
            r#"{"schema":"vigil.analytics.v1","seq":3,"source":"cam","frame":9,"pts_ns":40,"timestamp_ms":1000,"kind":"line_crossed","name":"gate","track_id":4,"label":"car","direction":"in"}"#
        );
        let am: AnalyticsMessage = serde_json::from_str(&m[4].json).unwrap();
        assert_eq!(am.event.count, Some(6));
        assert_eq!(am.event.threshold, Some(5));
    }

    #[test]
    fn frames_without_analytics_give_no_analytics_messages() {
        let mut seq = Sequencer::new();
        let f = FrameObjects::new(10, 10);
        let m = seq.messages(
            MessageSelection::parse("analytics,objects").unwrap(),
            "cam",
            None,
            0,
            &f,
        );
        assert!(m.is_empty());
        assert_eq!(seq.next_seq(), 0);
    }
}
