//! The analytics rules of one stream: counting lines and zones in frame pixels, as written in the
//! pipeline config (`sources[i].analytics`) or in the file/string given to `vigilanalytics`.

use super::geometry::{self, Anchor};
use super::speed::{CalibrationConfig, Homography, SpeedConfig, check_limit};
use crate::objects::Point;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Default hysteresis margin in pixels (see [`AnalyticsConfig::hysteresis`]).
pub const DEFAULT_HYSTERESIS: f32 = 5.0;
/// Default number of frames after which an unseen track is forgotten.
pub const DEFAULT_FORGET_AFTER: u32 = 30;
/// Largest magnitude of a coordinate and of the hysteresis, in pixels (far beyond any frame; larger
/// values are typing errors, and overflow the geometry's arithmetic).
pub const MAX_PIXELS: f32 = 100_000.0;

/// Lines and zones of one stream, plus how objects are matched against them.
///
/// ```yaml
/// anchor: bottom-center       # bottom-center | center | top-center
/// hysteresis: 5               # pixels
/// forget_after: 30            # frames
/// lines:
///   - { name: walkway, points: [[200, 170], [200, 340]], labels: [person], in_direction: right }
/// zones:
///   - { name: square, polygon: [[300, 200], [500, 200], [500, 330], [300, 330]], overcrowded_above: 3 }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Point of the box tested against lines and zones. Default `bottom-center`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
    /// Margin in pixels: a track is on a side of a line only when its anchor is farther than this
    /// from the line, and leaves a zone only when it is farther than this outside its outline.
    /// Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<f32>,
    /// Frames a track may be unseen before it is forgotten (a forgotten track inside a zone exits it).
    /// Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneConfig>,
    /// The ground plane: each track's speed (see [`super::speed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationConfig>,
    /// How speeds are reported; needs `calibration`. Default: km/h over 1 s, no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<SpeedConfig>,
}

/// A counting line (a segment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    pub name: String,
    /// The two end points `[[x1, y1], [x2, y2]]` in frame pixels.
    pub points: [[f32; 2]; 2],
    /// Labels counted; empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Screen direction of `in` crossings. Default: crossing from the left to the right side of
    /// `points[0] → points[1]` (as seen on the screen) is `in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_direction: Option<Direction>,
}

/// A zone (polygon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    /// At least three vertices `[[x, y], ...]` in frame pixels.
    pub polygon: Vec<[f32; 2]>,
    /// Labels considered; empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The zone is overcrowded while more than this many objects are in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overcrowded_above: Option<u32>,
    /// In `speed.unit`: a `speed_above` event (the zone's name) when a track in the zone goes
    /// faster; needs `calibration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_limit: Option<f64>,
}

/// A direction on the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Left,
    Right,
    Up,
    Down,
}

impl Direction {
    /// Unit vector in frame coordinates (y down).
    pub fn vector(self) -> Point {
        match self {
            Direction::Left => Point::new(-1.0, 0.0),
            Direction::Right => Point::new(1.0, 0.0),
            Direction::Up => Point::new(0.0, -1.0),
            Direction::Down => Point::new(0.0, 1.0),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Left => "left",
            Direction::Right => "right",
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// A rule that is not valid: `key` is the path of the offending key within the analytics config
/// (`lines[0].points`), `message` says why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

pub(crate) fn issue(key: String, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key,
        message: message.into(),
    }
}

fn pt(p: [f32; 2]) -> Point {
    Point::new(p[0], p[1])
}

impl LineConfig {
    pub fn a(&self) -> Point {
        pt(self.points[0])
    }

    pub fn b(&self) -> Point {
        pt(self.points[1])
    }

    /// `+1.0` when `in` crossings end on the right-hand side of `points[0] → points[1]` (positive
    /// [`geometry::cross`]), `-1.0` when they end on its left; `None` when `in_direction` runs along
    /// the line (within about 6°).
    pub fn in_sign(&self) -> Option<f32> {
        let Some(d) = self.in_direction else {
            return Some(1.0);
        };
        let (a, b) = (self.a(), self.b());
        let v = d.vector();
        let end = Point::new(a.x + v.x, a.y + v.y);
        let s = geometry::signed_distance(a, b, end);
        if s.abs() < 0.1 {
            None
        } else {
            Some(s.signum())
        }
    }
}

impl ZoneConfig {
    pub fn points(&self) -> Vec<Point> {
        self.polygon.iter().copied().map(pt).collect()
    }
}

impl AnalyticsConfig {
    /// Whether there is nothing to do: no line, no zone, no calibration.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.zones.is_empty() && self.calibration.is_none()
    }

    /// The checked calibration's homography (frame pixels to metres), when there is one.
    pub fn homography(&self) -> Result<Option<Homography>, ConfigIssue> {
        self.calibration
            .as_ref()
            .map(|c| c.validate("calibration"))
            .transpose()
    }

    /// Checks what speeds need: `speed` and zones' `speed_limit` only with a calibration.
    fn validate_speed(&self) -> Result<(), ConfigIssue> {
        let has = self.homography()?.is_some();
        if let Some(s) = &self.speed {
            if !has {
                return Err(issue(
                    "speed".into(),
                    "needs a calibration (four image points and their ground coordinates)",
                ));
            }
            s.validate("speed")?;
        }
        for (i, z) in self.zones.iter().enumerate() {
            if let Some(l) = z.speed_limit {
                let key = format!("zones[{i}].speed_limit");
                if !has {
                    return Err(issue(key, "needs a calibration to measure speeds"));
                }
                check_limit(key, l)?;
            }
        }
        Ok(())
    }

    pub fn anchor_or_default(&self) -> Anchor {
        self.anchor.unwrap_or_default()
    }

    pub fn hysteresis_or_default(&self) -> f32 {
        self.hysteresis.unwrap_or(DEFAULT_HYSTERESIS)
    }

    pub fn forget_after_or_default(&self) -> u32 {
        self.forget_after.unwrap_or(DEFAULT_FORGET_AFTER)
    }

    /// Checks the rules: finite coordinates within ±[`MAX_PIXELS`], lines of non-zero length, polygons with at least three
    /// vertices and a non-zero area, unique names among lines and among zones, non-empty labels, an
    /// `in_direction` that crosses its line, a hysteresis in 0..=[`MAX_PIXELS`]; a calibration of four
    /// points, no three on a line, that determines a ground plane, and speed settings that need it.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        if let Some(h) = self.hysteresis
            && !(0.0..=MAX_PIXELS).contains(&h)
        {
            return Err(issue(
                "hysteresis".into(),
                format!("{h} is not a number of pixels in 0..={MAX_PIXELS}"),
            ));
        }
        let check_name = |key: String, name: &str, seen: &mut HashSet<String>| {
            if name.trim().is_empty() {
                return Err(issue(key, "must not be empty"));
            }
            if !seen.insert(name.to_string()) {
                return Err(issue(key, format!("duplicate name '{name}'")));
            }
            Ok(())
        };
        let check_labels = |key: String, labels: &[String]| {
            for (j, l) in labels.iter().enumerate() {
                if l.trim().is_empty() {
                    return Err(issue(format!("{key}[{j}]"), "empty label"));
                }
            }
            Ok(())
        };
        let finite = |p: &[f32; 2]| p.iter().all(|c| (-MAX_PIXELS..=MAX_PIXELS).contains(c));
        let not_finite = format!("coordinates must be numbers within ±{MAX_PIXELS} pixels");
        let mut names = HashSet::new();
        for (i, l) in self.lines.iter().enumerate() {
            check_name(format!("lines[{i}].name"), &l.name, &mut names)?;
            let key = format!("lines[{i}].points");
            if !l.points.iter().all(finite) {
                return Err(issue(key, not_finite.clone()));
            }
            if l.points[0] == l.points[1] {
                return Err(issue(
                    key,
                    format!(
                        "the two points are the same ({}, {}): a line needs two distinct points",
                        l.points[0][0], l.points[0][1]
                    ),
                ));
            }
            check_labels(format!("lines[{i}].labels"), &l.labels)?;
            if l.in_sign().is_none() {
                let d = l.in_direction.map(Direction::as_str).unwrap_or_default();
                return Err(issue(
                    format!("lines[{i}].in_direction"),
                    format!("'{d}' runs along the line, so it does not tell its sides apart"),
                ));
            }
        }
        let mut names = HashSet::new();
        for (i, z) in self.zones.iter().enumerate() {
            check_name(format!("zones[{i}].name"), &z.name, &mut names)?;
            let key = format!("zones[{i}].polygon");
            if z.polygon.len() < 3 {
                return Err(issue(
                    key,
                    format!(
                        "a polygon needs at least 3 points, this one has {}",
                        z.polygon.len()
                    ),
                ));
            }
            if !z.polygon.iter().all(finite) {
                return Err(issue(key, not_finite.clone()));
            }
            if geometry::polygon_area2(&z.points()).abs() < 1e-3 {
                return Err(issue(
                    key,
                    "the polygon has no area (its points are on one line)",
                ));
            }
            check_labels(format!("zones[{i}].labels"), &z.labels)?;
        }
        self.validate_speed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> AnalyticsConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parses_and_round_trips() {
        let c = parse(
            r#"{"anchor":"center","lines":[{"name":"l","points":[[0,0],[0,10]],"in_direction":"left"}],
                "zones":[{"name":"z","polygon":[[0,0],[1,0],[1,1]],"overcrowded_above":2}]}"#,
        );
        assert_eq!(c.anchor_or_default(), Anchor::Center);
        assert_eq!(c.hysteresis_or_default(), DEFAULT_HYSTERESIS);
        assert_eq!(c.lines[0].in_direction, Some(Direction::Left));
        c.validate().unwrap();
        let back: AnalyticsConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<AnalyticsConfig>(r#"{"lines":[],"zone":[]}"#).is_err());
    }

    #[test]
    fn in_direction_sets_the_in_side() {
        // Downward vertical line: its right-hand side on the screen is x < line (left of the screen).
        let mut l = LineConfig {
            name: "l".into(),
            points: [[10.0, 0.0], [10.0, 10.0]],
            labels: vec![],
            in_direction: None,
        };
        assert_eq!(l.in_sign(), Some(1.0));
        l.in_direction = Some(Direction::Right);
        assert_eq!(l.in_sign(), Some(-1.0));
        l.in_direction = Some(Direction::Left);
        assert_eq!(l.in_sign(), Some(1.0));
        l.in_direction = Some(Direction::Down);
        assert_eq!(l.in_sign(), None);
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |json: &str| parse(json).validate().unwrap_err().to_string();
        assert_eq!(
            bad(r#"{"lines":[{"name":"a","points":[[1,2],[1,2]]}]}"#),
            "lines[0].points: the two points are the same (1, 2): a line needs two distinct points"
        );
        assert!(
            bad(r#"{"lines":[{"name":"a","points":[[0,0],[1,0]]},{"name":"a","points":[[0,0],[1,1]]}]}"#)
                .starts_with("lines[1].name: duplicate name 'a'")
        );
        assert!(
            bad(r#"{"zones":[{"name":"z","polygon":[[0,0],[1,1]]}]}"#)
                .starts_with("zones[0].polygon: a polygon needs at least 3 points, this one has 2")
        );
        assert!(
            bad(r#"{"zones":[{"name":"z","polygon":[[0,0],[1,1],[2,2]]}]}"#)
                .starts_with("zones[0].polygon: the polygon has no area")
        );
        assert!(
            bad(r#"{"lines":[{"name":"a","points":[[0,0],[10,0]],"in_direction":"left"}]}"#)
                .starts_with("lines[0].in_direction: 'left' runs along the line")
        );
        assert!(bad(r#"{"hysteresis":-1}"#).starts_with("hysteresis:"));
        // Beyond f32 (read as infinity) and beyond the pixel bound.
        assert!(bad(r#"{"hysteresis":1e300}"#).starts_with("hysteresis: inf is not"));
        assert_eq!(
            bad(r#"{"lines":[{"name":"a","points":[[0,0],[100001,0]]}]}"#),
            "lines[0].points: coordinates must be numbers within ±100000 pixels"
        );
        assert!(
            bad(r#"{"zones":[{"name":"z","polygon":[[0,0],[1,0],[1,-1e39]]}]}"#)
                .starts_with("zones[0].polygon: coordinates must be numbers within")
        );
        assert!(
            bad(r#"{"zones":[{"name":"z","labels":[" "],"polygon":[[0,0],[1,0],[1,1]]}]}"#)
                .starts_with("zones[0].labels[0]: empty label")
        );
        assert!(serde_json::from_str::<AnalyticsConfig>(r#"{"anchor":"feet"}"#).is_err());
    }
}
