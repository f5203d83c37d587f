//! Multi-object trackers. Each tracker is per stream and assigns stable ids to detections.
//!
//! | kind | algorithm |
//! | --- | --- |
//! | `iou` | [`IouTracker`]: greedy IoU association with constant-velocity prediction |
//! | `sort` | [`SortTracker`]: Kalman filter and optimal (Hungarian) IoU assignment |
//! | `bytetrack` | [`ByteTracker`]: SORT with a second association of low-confidence detections |
//! | `ocsort` | [`OcSortTracker`]: observation-centric SORT (momentum, recovery, re-update) with BYTE |
//!
//! [`build`] makes one from a [`TrackerKind`] and the shared [`TrackerParams`]. The Kalman-filter
//! trackers share a lifecycle ([`TrackState`]): a track is *tentative* until it has been matched
//! `min_hits` times in a row (tracks of the first frame of a stream are confirmed at once), then
//! *confirmed* with an id (unique per tracker, from 1); a confirmed track without a detection is *lost*
//! and keeps its id if found again within its age limit, after which it is *removed* (so is a tentative
//! track that misses a frame). Ages count inferred frames (calls of [`Tracker::update`]).

mod assign;
mod bytetrack;
mod common;
mod iou;
mod kalman;
mod ocsort;
mod sort;

pub use assign::{Assigner, assign};
pub use bytetrack::{ByteTrackConfig, ByteTracker};
pub use iou::{IouTracker, IouTrackerConfig};
pub use kalman::KalmanBox;
pub use ocsort::{OcSortConfig, OcSortTracker};
pub use sort::{SortConfig, SortTracker};

use crate::objects::{BBox, Object};

/// A per-stream multi-object tracker.
pub trait Tracker: Send {
    /// Associates `objects` (detections of a new frame) with tracks, setting `track_id` on each matched or
    /// newly started one. Objects whose track is still tentative keep `track_id = None`.
    fn update(&mut self, objects: &mut [Object]);

    /// A frame without detections (skipped by `vigilinfer interval`): ages the tracks and returns the
    /// objects for the live tracks at their predicted positions.
    fn predict(&mut self) -> Vec<Object>;
}

/// Lifecycle of a track of the Kalman-filter trackers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackState {
    /// Started by a detection; has no id until confirmed.
    Tentative,
    /// Matched in the latest inferred frame (or found again); has an id.
    Confirmed,
    /// Confirmed before, without a detection since; keeps its id, predicted by its Kalman filter.
    Lost,
    /// Gone for good; dropped at the end of the frame.
    Removed,
}

/// A snapshot of one track, for inspection and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    pub id: Option<u64>,
    pub state: TrackState,
    /// The Kalman filter's box for the latest frame.
    pub bbox: BBox,
    pub class_id: i32,
    /// Matched detections in total.
    pub hits: u32,
    /// Inferred frames since the last matched detection.
    pub misses: u32,
}

/// The tracker algorithms [`build`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrackerKind {
    #[default]
    Iou,
    Sort,
    ByteTrack,
    OcSort,
}

impl TrackerKind {
    pub const ALL: [TrackerKind; 4] = [
        TrackerKind::Iou,
        TrackerKind::Sort,
        TrackerKind::ByteTrack,
        TrackerKind::OcSort,
    ];

    /// The name used by the `vigiltrack` property and the pipeline config.
    pub fn as_str(&self) -> &'static str {
        match self {
            TrackerKind::Iou => "iou",
            TrackerKind::Sort => "sort",
            TrackerKind::ByteTrack => "bytetrack",
            TrackerKind::OcSort => "ocsort",
        }
    }

    /// The default `min_hits` of the algorithm (used when [`TrackerParams::min_hits`] is 0).
    pub fn default_min_hits(&self) -> u32 {
        match self {
            TrackerKind::Iou => IouTrackerConfig::default().min_hits,
            TrackerKind::Sort => SortConfig::default().min_hits,
            TrackerKind::ByteTrack => ByteTrackConfig::default().min_hits,
            TrackerKind::OcSort => OcSortConfig::default().min_hits,
        }
    }
}

impl std::fmt::Display for TrackerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TrackerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        TrackerKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = TrackerKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "tracker '{s}' is not known (available: {})",
                    names.join(", ")
                )
            })
    }
}

/// The settings [`build`] passes on; each algorithm uses the ones it has (see the fields).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerParams {
    /// IoU gate of the association: iou, sort and ocsort; bytetrack's first association.
    pub iou_threshold: f32,
    /// Inferred frames a track is kept without a detection: iou, sort, ocsort.
    pub max_age: u32,
    /// Inferred frames a lost track is kept: bytetrack.
    pub track_buffer: u32,
    /// Matched detections before a track gets an id; 0 = the algorithm's default
    /// ([`TrackerKind::default_min_hits`]: iou 1, sort 3, bytetrack 2, ocsort 3).
    pub min_hits: u32,
    /// High-score detection threshold: bytetrack, ocsort.
    pub track_thresh: f32,
    /// Lowest confidence of the low-score detections: bytetrack, ocsort.
    pub low_thresh: f32,
    /// Minimum confidence to start a track: bytetrack, ocsort.
    pub new_track_thresh: f32,
    /// Associate detections only with tracks of the same class: all.
    pub match_class: bool,
}

impl Default for TrackerParams {
    fn default() -> Self {
        let b = ByteTrackConfig::default();
        Self {
            iou_threshold: IouTrackerConfig::default().iou_threshold,
            max_age: IouTrackerConfig::default().max_age,
            track_buffer: b.track_buffer,
            min_hits: 0,
            track_thresh: b.track_thresh,
            low_thresh: b.low_thresh,
            new_track_thresh: b.new_track_thresh,
            match_class: true,
        }
    }
}

/// A tracker of `kind` with the parameters of `p` that apply to it (the others keep their defaults).
pub fn build(kind: TrackerKind, p: &TrackerParams) -> Box<dyn Tracker> {
    let min_hits = if p.min_hits == 0 {
        kind.default_min_hits()
    } else {
        p.min_hits
    };
    match kind {
        TrackerKind::Iou => Box::new(IouTracker::new(IouTrackerConfig {
            iou_threshold: p.iou_threshold,
            max_age: p.max_age,
            min_hits,
            match_class: p.match_class,
        })),
        TrackerKind::Sort => Box::new(SortTracker::new(SortConfig {
            iou_threshold: p.iou_threshold,
            max_age: p.max_age,
            min_hits,
            match_class: p.match_class,
            ..Default::default()
        })),
        TrackerKind::ByteTrack => Box::new(ByteTracker::new(ByteTrackConfig {
            track_thresh: p.track_thresh,
            low_thresh: p.low_thresh,
            new_track_thresh: p.new_track_thresh,
            iou_threshold: p.iou_threshold,
            track_buffer: p.track_buffer,
            min_hits,
            match_class: p.match_class,
            ..Default::default()
        })),
        TrackerKind::OcSort => Box::new(OcSortTracker::new(OcSortConfig {
            track_thresh: p.track_thresh,
            low_thresh: p.low_thresh,
            new_track_thresh: p.new_track_thresh,
            iou_threshold: p.iou_threshold,
            max_age: p.max_age,
            min_hits,
            match_class: p.match_class,
            ..Default::default()
        })),
    }
}

#[cfg(test)]
mod tests;
