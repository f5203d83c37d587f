//! Line crossing and zone analytics per stream (what `vigilanalytics` runs).
//!
//! [`Analytics`] is fed each frame's objects (normally tracked by `vigiltrack`) and the frame's stream
//! time, and returns the frame's [`FrameAnalytics`]: cumulative per-label counts of each line in each
//! direction, each zone's occupancy, entries, exits, overcrowding and the dwell time of the tracks in
//! it, and the events of the frame. Every object is represented by one point of its box, the
//! [`Anchor`] (bottom-centre by default: where people and vehicles touch the ground).
//!
//! # When a track crosses a line
//!
//! Only objects with a `track_id` can cross (a crossing needs history). For each line a track has a
//! *confirmed side*: the side its anchor was last seen on while farther than the hysteresis margin
//! (`hysteresis`, pixels) from the line's infinite extension, together with that anchor position. A
//! crossing is counted when all of these hold:
//! 1. the anchor is now farther than the margin from the line, on the side opposite the confirmed one;
//! 2. the path from the last confirmed position to the current one intersects the line **segment**
//!    (so walking around an end of the line does not count);
//! 3. the track has not been counted on this line in this direction before: each track counts at most
//!    once per line and direction (someone who crosses, comes back and crosses again counts one `in`
//!    and one `out`).
//!
//! The confirmed side then flips. Jitter of the anchor within the margin never changes the confirmed
//! side, and a track first seen inside the margin gets its side when it leaves it (it is counted only
//! when it is later confirmed on the other side). A track that first appears on a side has no crossing
//! there. `in` is the direction towards the line's `in` side (see [`LineConfig::in_sign`]). In the
//! results ([`LineStatus::points`]) each line is oriented so that `in` crossings end on the right-hand
//! side of `points[0] → points[1]` on the screen: the configured order, reversed when `in_direction`
//! says the other side.
//!
//! # Zones
//!
//! A track enters a zone when its anchor is inside the polygon and leaves it when its anchor is outside
//! and farther than the margin from the outline. `occupancy` counts the frame's objects in the zone:
//! tracked ones that are in it by that rule and untracked ones whose anchor is inside. A zone is
//! overcrowded while `occupancy > overcrowded_above`; `zone_overcrowded` and `zone_cleared` events mark
//! the changes. `zone_exited` carries the dwell time (stream time from entry to exit).
//!
//! A track that has not been seen for `forget_after` frames is forgotten: if it was in a zone, that
//! zone gets a `zone_exited` event for it (dwell measured up to the last frame it was seen) and its
//! `exits` count, so entries and exits stay balanced. Its line state is dropped; if the same object
//! comes back with a new id it is a new track.
//!
//! # Coasting tracks and speed
//!
//! Objects the tracker reports at a predicted box while their detection is missed (`predicted`,
//! `vigiltrack coast-frames`) are tracks like any other here: a line they cross meanwhile is counted
//! once, at the frame the predicted anchor crosses it, and not again when the detection returns.
//!
//! With a `calibration` ([`speed`]), every tracked anchor is also mapped to the ground plane; each
//! track's speed (the least-squares velocity over `speed.window_s` of its detected positions, once it
//! has moved `speed.min_distance_m`) is written to its object, to its line crossings (and each line's
//! [`SpeedStats`]), to the zones' tracks and statistics, and a `speed_above` event is given the
//! first time a track's speed exceeds `speed.limit` (name `speed`) or, inside a zone, the zone's
//! `speed_limit` (the zone's name).

pub mod config;
pub mod geometry;
pub mod speed;
pub mod trails;

pub use config::{AnalyticsConfig, ConfigIssue, Direction, LineConfig, ZoneConfig};
pub use geometry::Anchor;
pub use speed::{CalibrationConfig, Homography, SpeedConfig, SpeedTrack};
pub use trails::Trails;

use crate::objects::{
    AnalyticsEvent, AnalyticsEventKind, FrameAnalytics, LabelCounts, LineStatus, Object, Point,
    Speed, SpeedStats, SpeedUnit, ZoneStatus, ZoneTrack,
};
use std::collections::HashMap;

struct Line {
    name: String,
    a: Point,
    b: Point,
    labels: Vec<String>,
    counts: Vec<LabelCounts>,
    /// Speeds (m/s) of the crossings with a known speed.
    speeds: Tally,
}

/// Count, sum and maximum of speeds in m/s.
#[derive(Clone, Copy, Default)]
struct Tally {
    count: u64,
    sum: f64,
    max: f64,
}

impl Tally {
    fn add(&mut self, mps: f64) {
        self.count += 1;
        self.sum += mps;
        self.max = self.max.max(mps);
    }

    fn stats(&self, unit: SpeedUnit) -> Option<SpeedStats> {
        let k = unit.per_mps();
        (self.count > 0).then(|| SpeedStats {
            count: self.count,
            mean: (self.sum / self.count as f64 * k) as f32,
            max: (self.max * k) as f32,
            unit,
        })
    }
}

struct Zone {
    name: String,
    polygon: Vec<Point>,
    labels: Vec<String>,
    overcrowded_above: Option<u32>,
    /// m/s.
    speed_limit: Option<f64>,
    entries: u64,
    exits: u64,
    overcrowded: bool,
}

fn accepts(labels: &[String], label: &str) -> bool {
    labels.is_empty() || labels.iter().any(|l| l == label)
}

#[derive(Clone, Copy, Default)]
struct LineTrack {
    /// Confirmed side: +1, -1, or 0 while unknown.
    side: i8,
    /// Anchor at the last frame it was on the confirmed side.
    at: Point,
    counted_in: bool,
    counted_out: bool,
}

struct Track {
    label: String,
    class_id: i32,
    last_seen_frame: u64,
    last_seen_t: f64,
    lines: Vec<LineTrack>,
    /// Entry time per zone while inside.
    zones: Vec<Option<f64>>,
    speed: SpeedTrack,
    /// A `speed_above` event was given for the rules' limit, and per zone.
    above: bool,
    zone_above: Vec<bool>,
}

/// The calibration and speed settings of a stream, limits in m/s.
struct SpeedRules {
    homography: Homography,
    /// The calibration's four frame points: only anchors inside them are measured (the map
    /// extrapolates badly towards the horizon, where a pixel is metres).
    area: Vec<Point>,
    unit: SpeedUnit,
    window: f64,
    min_distance: f64,
    limit: Option<f64>,
}

/// The analytics state of one stream.
pub struct Analytics {
    anchor: Anchor,
    hysteresis: f32,
    forget_after: u32,
    lines: Vec<Line>,
    zones: Vec<Zone>,
    tracks: HashMap<u64, Track>,
    frames: u64,
    speed: Option<SpeedRules>,
}

impl Analytics {
    /// Builds the state from validated rules (see [`AnalyticsConfig::validate`]).
    pub fn new(config: &AnalyticsConfig) -> Result<Self, ConfigIssue> {
        config.validate()?;
        let speed_config = config.speed.clone().unwrap_or_default();
        let per_mps = speed_config.unit.per_mps();
        let lines = config
            .lines
            .iter()
            .map(|l| {
                // Oriented so that `in` ends on the right-hand side of a → b.
                let (a, b) = if l.in_sign().unwrap_or(1.0) > 0.0 {
                    (l.a(), l.b())
                } else {
                    (l.b(), l.a())
                };
                Line {
                    name: l.name.clone(),
                    a,
                    b,
                    labels: l.labels.clone(),
                    counts: Vec::new(),
                    speeds: Tally::default(),
                }
            })
            .collect();
        let zones = config
            .zones
            .iter()
            .map(|z| Zone {
                name: z.name.clone(),
                polygon: z.points(),
                labels: z.labels.clone(),
                overcrowded_above: z.overcrowded_above,
                speed_limit: z.speed_limit.map(|l| l / per_mps),
                entries: 0,
                exits: 0,
                overcrowded: false,
            })
            .collect();
        Ok(Self {
            anchor: config.anchor_or_default(),
            hysteresis: config.hysteresis_or_default(),
            forget_after: config.forget_after_or_default(),
            lines,
            zones,
            tracks: HashMap::new(),
            frames: 0,
            speed: config.homography()?.map(|homography| SpeedRules {
                homography,
                area: config
                    .calibration
                    .as_ref()
                    .map(|c| c.image.iter().map(|&[x, y]| Point { x, y }).collect())
                    .unwrap_or_default(),
                unit: speed_config.unit,
                window: speed_config.window_or_default(),
                min_distance: speed_config.min_distance_or_default(),
                limit: speed_config.limit.map(|l| l / per_mps),
            }),
        })
    }

    /// Forgets every track and count (a new stream).
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.frames = 0;
        for l in &mut self.lines {
            l.counts.clear();
            l.speeds = Tally::default();
        }
        for z in &mut self.zones {
            z.entries = 0;
            z.exits = 0;
            z.overcrowded = false;
        }
    }

    /// Processes one frame's objects at stream time `t_s` (seconds) and returns its results; with a
    /// calibration, each tracked object's `speed` is set once known.
    pub fn process(&mut self, objects: &mut [Object], t_s: f64) -> FrameAnalytics {
        let frame = self.frames;
        self.frames += 1;
        let h = self.hysteresis;
        let mut events = Vec::new();
        let mut occupancy = vec![0u32; self.zones.len()];

        for o in objects.iter_mut() {
            let p = self.anchor.point(&o.bbox);
            if !(p.x.is_finite() && p.y.is_finite()) {
                continue;
            }
            let Some(id) = o.track_id else {
                for (zi, z) in self.zones.iter().enumerate() {
                    if accepts(&z.labels, &o.label) && geometry::point_in_polygon(p, &z.polygon) {
                        occupancy[zi] += 1;
                    }
                }
                continue;
            };
            let (nl, nz) = (self.lines.len(), self.zones.len());
            let track = self.tracks.entry(id).or_insert_with(|| Track {
                label: o.label.clone(),
                class_id: o.class_id,
                last_seen_frame: frame,
                last_seen_t: t_s,
                lines: vec![LineTrack::default(); nl],
                zones: vec![None; nz],
                speed: SpeedTrack::default(),
                above: false,
                zone_above: vec![false; nz],
            });
            track.label.clone_from(&o.label);
            track.class_id = o.class_id;
            track.last_seen_frame = frame;
            track.last_seen_t = t_s;
            let mps = self.speed.as_ref().and_then(|r| {
                if !geometry::point_in_polygon(p, &r.area) {
                    return None;
                }
                let g = r.homography.ground(p)?;
                track
                    .speed
                    .update(t_s, g, !o.predicted, r.window, r.min_distance)
            });
            let speed = self
                .speed
                .as_ref()
                .zip(mps)
                .map(|(r, v)| speed::speed_in(v, r.unit));
            o.speed = speed;
            if let (Some(r), Some(v), Some(sp)) = (&self.speed, mps, speed)
                && let Some(limit) = r.limit
                && v > limit
                && !track.above
            {
                track.above = true;
                events.push(speed_event("speed", id, o, sp, limit * r.unit.per_mps()));
            }

            for (li, line) in self.lines.iter_mut().enumerate() {
                if !accepts(&line.labels, &o.label) {
                    continue;
                }
                let d = geometry::signed_distance(line.a, line.b, p);
                if d.abs() <= h {
                    continue;
                }
                let side: i8 = if d > 0.0 { 1 } else { -1 };
                let lt = &mut track.lines[li];
                if lt.side != 0
                    && lt.side != side
                    && geometry::segments_intersect(lt.at, p, line.a, line.b)
                {
                    let is_in = side > 0;
                    let counted = if is_in {
                        &mut lt.counted_in
                    } else {
                        &mut lt.counted_out
                    };
                    if !*counted {
                        *counted = true;
                        let i = match line.counts.iter().position(|c| c.label == o.label) {
                            Some(i) => i,
                            None => {
                                line.counts.push(LabelCounts {
                                    label: o.label.clone(),
                                    ..Default::default()
                                });
                                line.counts.len() - 1
                            }
                        };
                        if is_in {
                            line.counts[i].r#in += 1;
                        } else {
                            line.counts[i].out += 1;
                        }
                        let mut e =
                            AnalyticsEvent::new(AnalyticsEventKind::LineCrossed, &line.name);
                        e.track_id = Some(id);
                        e.class_id = Some(o.class_id);
                        e.label = Some(o.label.clone());
                        e.direction = Some(if is_in { "in" } else { "out" }.into());
                        e.speed = speed;
                        if let Some(v) = mps {
                            line.speeds.add(v);
                        }
                        events.push(e);
                    }
                }
                lt.side = side;
                lt.at = p;
            }

            for (zi, zone) in self.zones.iter_mut().enumerate() {
                if !accepts(&zone.labels, &o.label) {
                    continue;
                }
                let inside_now = geometry::point_in_polygon(p, &zone.polygon);
                match track.zones[zi] {
                    None if inside_now => {
                        track.zones[zi] = Some(t_s);
                        zone.entries += 1;
                        let mut e =
                            AnalyticsEvent::new(AnalyticsEventKind::ZoneEntered, &zone.name);
                        e.track_id = Some(id);
                        e.class_id = Some(o.class_id);
                        e.label = Some(o.label.clone());
                        events.push(e);
                    }
                    Some(entered)
                        if !inside_now
                            && geometry::distance_to_polygon_edge(p, &zone.polygon) > h =>
                    {
                        track.zones[zi] = None;
                        zone.exits += 1;
                        let mut e = AnalyticsEvent::new(AnalyticsEventKind::ZoneExited, &zone.name);
                        e.track_id = Some(id);
                        e.class_id = Some(o.class_id);
                        e.label = Some(o.label.clone());
                        e.dwell_s = Some((t_s - entered).max(0.0));
                        events.push(e);
                    }
                    _ => {}
                }
                if track.zones[zi].is_some() {
                    occupancy[zi] += 1;
                    if let (Some(r), Some(v), Some(sp), Some(limit)) =
                        (&self.speed, mps, speed, zone.speed_limit)
                        && v > limit
                        && !track.zone_above[zi]
                    {
                        track.zone_above[zi] = true;
                        events.push(speed_event(&zone.name, id, o, sp, limit * r.unit.per_mps()));
                    }
                }
            }
        }

        // Tracks unseen for too long: forgotten, leaving their zones.
        let forget_after = u64::from(self.forget_after);
        let mut gone: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| frame - t.last_seen_frame > forget_after)
            .map(|(&id, _)| id)
            .collect();
        gone.sort_unstable();
        for id in gone {
            let Some(t) = self.tracks.remove(&id) else {
                continue;
            };
            for (zi, entered) in t.zones.iter().enumerate() {
                if let Some(entered) = entered {
                    let zone = &mut self.zones[zi];
                    zone.exits += 1;
                    let mut e = AnalyticsEvent::new(AnalyticsEventKind::ZoneExited, &zone.name);
                    e.track_id = Some(id);
                    e.class_id = Some(t.class_id);
                    e.label = Some(t.label.clone());
                    e.dwell_s = Some((t.last_seen_t - entered).max(0.0));
                    events.push(e);
                }
            }
        }

        let mut zones = Vec::with_capacity(self.zones.len());
        for (zi, zone) in self.zones.iter_mut().enumerate() {
            let count = occupancy[zi];
            if let Some(th) = zone.overcrowded_above {
                let over = count > th;
                if over != zone.overcrowded {
                    zone.overcrowded = over;
                    let kind = if over {
                        AnalyticsEventKind::ZoneOvercrowded
                    } else {
                        AnalyticsEventKind::ZoneCleared
                    };
                    let mut e = AnalyticsEvent::new(kind, &zone.name);
                    e.count = Some(count);
                    e.threshold = Some(th);
                    events.push(e);
                }
            }
            let mut tracks: Vec<ZoneTrack> = self
                .tracks
                .iter()
                .filter_map(|(&id, t)| {
                    t.zones[zi].map(|entered| ZoneTrack {
                        track_id: id,
                        label: t.label.clone(),
                        dwell_s: (t_s - entered).max(0.0),
                        speed: self
                            .speed
                            .as_ref()
                            .zip(t.speed.mps())
                            .map(|(r, v)| speed::speed_in(v, r.unit)),
                    })
                })
                .collect();
            tracks.sort_by_key(|t| t.track_id);
            let speed = self.speed.as_ref().and_then(|r| {
                let mut tally = Tally::default();
                for t in self.tracks.values().filter(|t| t.zones[zi].is_some()) {
                    if let Some(v) = t.speed.mps() {
                        tally.add(v);
                    }
                }
                tally.stats(r.unit)
            });
            zones.push(ZoneStatus {
                name: zone.name.clone(),
                polygon: zone.polygon.clone(),
                occupancy: count,
                entries: zone.entries,
                exits: zone.exits,
                overcrowded: zone.overcrowded,
                tracks,
                speed,
            });
        }
        let lines = self
            .lines
            .iter()
            .map(|l| LineStatus {
                name: l.name.clone(),
                points: [l.a, l.b],
                counts: l.counts.clone(),
                speed: self.speed.as_ref().and_then(|r| l.speeds.stats(r.unit)),
            })
            .collect();
        FrameAnalytics {
            lines,
            zones,
            events,
        }
    }
}

/// A `speed_above` event of track `id` (object `o`) at `speed` over `limit` (both in the same unit).
fn speed_event(name: &str, id: u64, o: &Object, speed: Speed, limit: f64) -> AnalyticsEvent {
    let mut e = AnalyticsEvent::new(AnalyticsEventKind::SpeedAbove, name);
    e.track_id = Some(id);
    e.class_id = Some(o.class_id);
    e.label = Some(o.label.clone());
    e.speed = Some(speed);
    e.limit = Some(limit as f32);
    e
}

#[cfg(test)]
mod tests;
