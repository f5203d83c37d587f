//! The per-frame object metadata that every Vigil element reads and writes, and its JSON event form.
//!
//! This is the *contract* between elements: `vigilinfer` fills [`FrameObjects`], `vigiltrack` sets
//! [`Object::track_id`], `vigilosd` draws it, and the `vigil` binary serialises it as one JSON line per
//! frame ([`FrameEvent`]). All coordinates are in pixels of the frame the metadata is attached to
//! (top-left origin); the GStreamer meta rescales them when a buffer is scaled.

use serde::{Deserialize, Serialize};
use vigil_engine::preprocess::{Placement, Region};

/// An axis-aligned box in frame pixels: top-left corner and size.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BBox {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self { x, y, w, h }
    }

    /// This box, in model-input pixels of a frame pre-processed with `placement`, in frame pixels.
    pub fn to_frame(&self, placement: &Placement) -> BBox {
        let [x, y, w, h] = placement.to_frame([self.x, self.y, self.w, self.h]);
        BBox { x, y, w, h }
    }

    /// This box, in model-input pixels of the crop `region` pre-processed with `placement`, in
    /// frame pixels.
    pub fn crop_to_frame(&self, region: &Region, placement: &Placement) -> BBox {
        let [x, y, w, h] = region.to_frame(placement, [self.x, self.y, self.w, self.h]);
        BBox { x, y, w, h }
    }

    /// From corners `(x1, y1, x2, y2)`.
    pub fn from_corners(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self {
            x: x1,
            y: y1,
            w: x2 - x1,
            h: y2 - y1,
        }
    }

    pub fn x2(&self) -> f32 {
        self.x + self.w
    }

    pub fn y2(&self) -> f32 {
        self.y + self.h
    }

    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union; 0 for empty boxes.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x2().min(other.x2()) - self.x.max(other.x)).max(0.0);
        let iy = (self.y2().min(other.y2()) - self.y.max(other.y)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// Scales x/w by `sx` and y/h by `sy`.
    pub fn scaled(&self, sx: f32, sy: f32) -> BBox {
        BBox {
            x: self.x * sx,
            y: self.y * sy,
            w: self.w * sx,
            h: self.h * sy,
        }
    }

    /// Clamps the box to a `width` x `height` frame.
    pub fn clamped(&self, width: f32, height: f32) -> BBox {
        let x1 = self.x.clamp(0.0, width);
        let y1 = self.y.clamp(0.0, height);
        let x2 = self.x2().clamp(0.0, width);
        let y2 = self.y2().clamp(0.0, height);
        BBox::from_corners(x1, y1, x2, y2)
    }
}

/// A named attribute of an object (e.g. colour, a classifier's output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub value: String,
    pub confidence: f32,
}

/// One detected (and possibly tracked) object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// Index of the object within its frame; `parent` refers to it.
    pub id: u32,
    /// Class index in the model's label list.
    pub class_id: i32,
    /// Class name from the model's `labels.txt` (or the class index as text).
    pub label: String,
    pub confidence: f32,
    pub bbox: BBox,
    /// Stable id assigned by the tracker; `None` until tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    /// `id` of the parent object in the same frame (secondary inference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    /// Recognised text (OCR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Name of the model that produced the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// `true` when the box is the tracker's prediction for a confirmed track whose detection was
    /// missed (coasting, `vigiltrack coast-frames`), not a detection.
    #[serde(default, skip_serializing_if = "is_false")]
    pub predicted: bool,
    /// Inferred frames in a row without a detection of this track (with `predicted`; 0 otherwise).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since_detection: u32,
    /// The track's speed on the ground (`vigilanalytics` with a calibration), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Speed>,
}

/// A unit of speed (`speed.unit` of the analytics rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SpeedUnit {
    #[default]
    #[serde(rename = "km/h")]
    Kmh,
    #[serde(rename = "m/s")]
    Mps,
    #[serde(rename = "mph")]
    Mph,
}

impl SpeedUnit {
    /// This unit's value of 1 m/s.
    pub fn per_mps(self) -> f64 {
        match self {
            SpeedUnit::Kmh => 3.6,
            SpeedUnit::Mps => 1.0,
            SpeedUnit::Mph => 3600.0 / 1609.344,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpeedUnit::Kmh => "km/h",
            SpeedUnit::Mps => "m/s",
            SpeedUnit::Mph => "mph",
        }
    }
}

/// A speed and its unit, e.g. `{"value": 41.8, "unit": "km/h"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    pub value: f32,
    pub unit: SpeedUnit,
}

/// Speeds of the tracks that crossed a line (since the stream started) or are in a zone (now).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpeedStats {
    /// Tracks with a known speed.
    pub count: u64,
    pub mean: f32,
    pub max: f32,
    pub unit: SpeedUnit,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Object {
    pub fn new(class_id: i32, label: impl Into<String>, confidence: f32, bbox: BBox) -> Self {
        Self {
            id: 0,
            class_id,
            label: label.into(),
            confidence,
            bbox,
            track_id: None,
            parent: None,
            attributes: Vec::new(),
            text: None,
            model: String::new(),
            predicted: false,
            since_detection: 0,
            speed: None,
        }
    }
}

/// All objects of one frame, attached to the frame's buffer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FrameObjects {
    /// Frame size the coordinates refer to.
    pub width: u32,
    pub height: u32,
    /// Frame counter of the stream (0-based) as counted by the first Vigil element.
    pub frame: u64,
    /// `false` when `vigilinfer` skipped this frame (`interval`): objects are then the tracker's predictions.
    pub inferred: bool,
    pub objects: Vec<Object>,
    /// Line, zone and event results of `vigilanalytics` for this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics: Option<FrameAnalytics>,
    /// The inspected item this frame shows (industrial inspection: one image, or one frame, is one item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemInfo>,
    /// The `vigilinspect` verdict for the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection: Option<Inspection>,
}

/// The item a frame shows. Image sources set it for every image; the inspection element sets
/// `<source>-<frame>` for frames of video sources that have none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ItemInfo {
    /// Item id: the image's file name for image sources.
    pub id: String,
    /// Where the item came from (the image's path), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why the item could not be analysed (corrupt, truncated, empty or too small image). The frame
    /// is then a placeholder and the item's verdict is `FAIL` with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// PASS or FAIL of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Verdict {
    #[default]
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
}

/// One failed inspection rule with its evidence.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Finding {
    /// Name of the rule (from the rules file).
    pub rule: String,
    /// Region of interest the rule applies to (`None`: the whole item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Why it failed, in words (e.g. `lot "A1234" is not the expected "A1235"`).
    pub reason: String,
    /// What was read, when something was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Where (frame pixels): the text line, object or region concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BBox>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// A value the inspection extracted from the item (e.g. the lot number), for the record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FieldValue {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BBox>,
    pub confidence: f32,
}

/// The inspection result of one item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Inspection {
    pub verdict: Verdict,
    /// Every failed rule (empty when `PASS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Finding>,
    /// Extracted fields (named in the rules file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldValue>,
}

impl Inspection {
    /// Scales the evidence and field boxes by `sx`, `sy`.
    pub fn scale(&mut self, sx: f32, sy: f32) {
        let boxes = self
            .failures
            .iter_mut()
            .filter_map(|f| f.bbox.as_mut())
            .chain(self.fields.iter_mut().filter_map(|f| f.bbox.as_mut()));
        for b in boxes {
            *b = b.scaled(sx, sy);
        }
    }
}

/// A point in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// Crossings of one line by objects of one label, in each direction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LabelCounts {
    pub label: String,
    /// Crossings in the line's `in` direction (from its `out` side to its `in` side).
    pub r#in: u64,
    /// Crossings in the opposite direction.
    pub out: u64,
}

/// A counting line and its cumulative counts since the stream started.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LineStatus {
    pub name: String,
    /// The line from `points[0]` to `points[1]` in frame pixels, oriented so that `in` crossings end on
    /// the right-hand side of `points[0] → points[1]` as seen on the screen (y down).
    pub points: [Point; 2],
    /// Per label, in label order of first crossing.
    pub counts: Vec<LabelCounts>,
    /// Speeds of the crossing tracks whose speed was known (with a calibration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<SpeedStats>,
}

/// A zone (polygon) and its state in this frame.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ZoneStatus {
    pub name: String,
    /// Polygon vertices in frame pixels.
    pub polygon: Vec<Point>,
    /// Objects inside the zone in this frame.
    pub occupancy: u32,
    /// Cumulative entries and exits since the stream started.
    pub entries: u64,
    pub exits: u64,
    /// `occupancy` is above the zone's overcrowding threshold.
    pub overcrowded: bool,
    /// The tracks inside the zone now and how long each has been in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<ZoneTrack>,
    /// Speeds of the tracks inside the zone now whose speed is known (with a calibration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<SpeedStats>,
}

/// A track inside a zone and its dwell time so far.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ZoneTrack {
    pub track_id: u64,
    pub label: String,
    /// Seconds since the track entered the zone (stream time).
    pub dwell_s: f64,
    /// Its speed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Speed>,
}

/// What happened in an [`AnalyticsEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalyticsEventKind {
    /// A track crossed a line (`direction` says which way).
    LineCrossed,
    /// A track entered a zone.
    ZoneEntered,
    /// A track left a zone (`dwell_s` says how long it stayed).
    ZoneExited,
    /// A zone's occupancy rose above its threshold (`count`, `threshold`).
    ZoneOvercrowded,
    /// An overcrowded zone's occupancy fell back to its threshold or below.
    ZoneCleared,
    /// A track's speed rose above a limit (`speed`, `limit`): the rules' `speed.limit` (name
    /// `speed`) or a zone's `speed_limit` while the track is in it (the zone's name).
    SpeedAbove,
}

/// One analytics event of a frame; serialised into the JSON event schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsEvent {
    pub kind: AnalyticsEventKind,
    /// Name of the line or zone.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_id: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `in` or `out` (line crossings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Seconds the track spent in the zone (zone exits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<f64>,
    /// Occupancy (overcrowding events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// The track's speed (line crossings with a calibration, `speed_above`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<Speed>,
    /// The speed limit, in `speed`'s unit (`speed_above`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f32>,
}

impl AnalyticsEvent {
    pub fn new(kind: AnalyticsEventKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            track_id: None,
            class_id: None,
            label: None,
            direction: None,
            dwell_s: None,
            count: None,
            threshold: None,
            speed: None,
            limit: None,
        }
    }
}

/// The `vigilanalytics` results attached to a frame.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FrameAnalytics {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneStatus>,
    /// Events of this frame, in the order they happened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<AnalyticsEvent>,
}

impl FrameAnalytics {
    /// Scales every line and zone point by `sx`, `sy`.
    pub fn scale(&mut self, sx: f32, sy: f32) {
        let scale = |p: &mut Point| {
            p.x *= sx;
            p.y *= sy;
        };
        for l in &mut self.lines {
            l.points.iter_mut().for_each(scale);
        }
        for z in &mut self.zones {
            z.polygon.iter_mut().for_each(scale);
        }
    }
}

impl FrameObjects {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            ..Default::default()
        }
    }

    /// Renumbers `id`s to be the objects' indices.
    pub fn renumber(&mut self) {
        for (i, o) in self.objects.iter_mut().enumerate() {
            o.id = i as u32;
        }
    }

    /// Rescales every box to a new frame size.
    pub fn rescale(&mut self, width: u32, height: u32) {
        if self.width == 0 || self.height == 0 {
            self.width = width;
            self.height = height;
            return;
        }
        let sx = width as f32 / self.width as f32;
        let sy = height as f32 / self.height as f32;
        for o in &mut self.objects {
            o.bbox = o.bbox.scaled(sx, sy);
        }
        if let Some(a) = &mut self.analytics {
            a.scale(sx, sy);
        }
        if let Some(i) = &mut self.inspection {
            i.scale(sx, sy);
        }
        self.width = width;
        self.height = height;
    }
}

/// The JSON event written for each frame (`schema: "vigil.frame.v1"`), one per line.
///
/// ```json
/// {"schema":"vigil.frame.v1","source":"cam1","frame":12,"pts_ns":1200000000,"timestamp_ms":1764028800000,
///  "width":768,"height":576,"inferred":true,
///  "objects":[{"id":0,"class_id":0,"label":"person","confidence":0.83,
///              "bbox":{"x":10.0,"y":20.0,"w":30.0,"h":80.0},"track_id":3,"model":"nanodet"}]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameEvent {
    pub schema: String,
    /// Message number of the publisher that sent it (`vigilmsgbroker`, `outputs.mqtt`): consecutive
    /// from 0 across all its messages, so gaps are visible. Absent in `outputs.events` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Name of the source (stream) in the pipeline config.
    pub source: String,
    pub frame: u64,
    /// Presentation timestamp of the frame in nanoseconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts_ns: Option<u64>,
    /// Wall-clock time the event was made, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub width: u32,
    pub height: u32,
    pub inferred: bool,
    pub objects: Vec<Object>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics: Option<FrameAnalytics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection: Option<Inspection>,
}

pub const FRAME_EVENT_SCHEMA: &str = "vigil.frame.v1";

impl FrameEvent {
    pub fn new(source: &str, pts_ns: Option<u64>, frame: &FrameObjects) -> Self {
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            schema: FRAME_EVENT_SCHEMA.to_string(),
            seq: None,
            source: source.to_string(),
            frame: frame.frame,
            pts_ns,
            timestamp_ms,
            width: frame.width,
            height: frame.height,
            inferred: frame.inferred,
            objects: frame.objects.clone(),
            analytics: frame.analytics.clone(),
            item: frame.item.clone(),
            inspection: frame.inspection.clone(),
        }
    }

    /// One JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("FrameEvent serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_overlapping_boxes() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        let b = BBox::new(5.0, 0.0, 10.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 5.0, 5.0)), 0.0);
        assert_eq!(a.iou(&BBox::default()), 0.0);
    }

    #[test]
    fn rescale_moves_boxes() {
        let mut f = FrameObjects::new(100, 50);
        f.objects.push(Object::new(
            0,
            "person",
            0.9,
            BBox::new(10.0, 10.0, 20.0, 20.0),
        ));
        f.analytics = Some(FrameAnalytics {
            lines: vec![LineStatus {
                name: "l".into(),
                points: [Point::new(0.0, 25.0), Point::new(100.0, 25.0)],
                counts: Vec::new(),
                speed: None,
            }],
            ..Default::default()
        });
        f.inspection = Some(Inspection {
            verdict: Verdict::Fail,
            failures: vec![Finding {
                rule: "r".into(),
                bbox: Some(BBox::new(1.0, 2.0, 3.0, 4.0)),
                ..Default::default()
            }],
            fields: vec![FieldValue {
                name: "f".into(),
                value: "v".into(),
                bbox: Some(BBox::new(4.0, 3.0, 2.0, 1.0)),
                confidence: 0.5,
            }],
        });
        f.rescale(200, 100);
        assert_eq!(f.objects[0].bbox, BBox::new(20.0, 20.0, 40.0, 40.0));
        let i = f.inspection.as_ref().unwrap();
        assert_eq!(i.failures[0].bbox, Some(BBox::new(2.0, 4.0, 6.0, 8.0)));
        assert_eq!(i.fields[0].bbox, Some(BBox::new(8.0, 6.0, 4.0, 2.0)));
        let line = &f.analytics.as_ref().unwrap().lines[0];
        assert_eq!(
            line.points,
            [Point::new(0.0, 50.0), Point::new(200.0, 50.0)]
        );
        assert_eq!((f.width, f.height), (200, 100));
    }

    #[test]
    fn event_round_trips_and_omits_empty_fields() {
        let mut f = FrameObjects::new(768, 576);
        f.frame = 7;
        f.inferred = true;
        let mut o = Object::new(0, "person", 0.8, BBox::new(1.0, 2.0, 3.0, 4.0));
        o.track_id = Some(5);
        f.objects.push(o);
        let ev = FrameEvent::new("cam", Some(100), &f);
        let line = ev.to_json_line();
        assert!(line.contains("\"schema\":\"vigil.frame.v1\""));
        assert!(line.contains("\"track_id\":5"));
        assert!(!line.contains("parent"));
        assert!(!line.contains("analytics"));
        let back: FrameEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn analytics_event_serialises_with_snake_case_kind() {
        let mut e = AnalyticsEvent::new(AnalyticsEventKind::LineCrossed, "door");
        e.track_id = Some(3);
        e.direction = Some("in".into());
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"line_crossed","name":"door","track_id":3,"direction":"in"}"#
        );
        let c = LabelCounts {
            label: "person".into(),
            r#in: 2,
            out: 1,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"label":"person","in":2,"out":1}"#
        );
    }
}
