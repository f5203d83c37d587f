//! ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", 2022):
//! SORT's Kalman filter and Hungarian assignment, with detections split by confidence so that
//! low-confidence ones (occluded, blurred objects) keep existing tracks alive instead of being dropped.
//!
//! Per inferred frame, as in the paper's reference implementation:
//! 1. detections with confidence ≥ `track_thresh` are *high*, those in (`low_thresh`, `track_thresh`)
//!    *low*, the rest are ignored;
//! 2. high detections are matched with all confirmed and lost tracks on IoU ≥ `iou_threshold`;
//! 3. low detections are matched with the confirmed tracks still unmatched, on IoU ≥
//!    `second_iou_threshold` (a stricter gate: low scores are less reliable); confirmed tracks left
//!    unmatched become lost;
//! 4. tentative tracks are matched with the high detections left, on IoU ≥ `unconfirmed_iou_threshold`;
//!    a tentative track without a match is removed, one with `min_hits` matches is confirmed;
//! 5. high detections still unmatched with confidence ≥ `new_track_thresh` start tentative tracks
//!    (confirmed at once in the first frame of the stream);
//! 6. lost tracks are removed after `track_buffer` inferred frames without a match.

use super::common::{Assoc, TrackSet};
use super::{TrackInfo, TrackState, Tracker};
use crate::objects::Object;

#[derive(Debug, Clone, PartialEq)]
pub struct ByteTrackConfig {
    /// Detections at or above this confidence are high-score ones (first association, new tracks).
    pub track_thresh: f32,
    /// Detections above this and below `track_thresh` are low-score ones (second association only).
    pub low_thresh: f32,
    /// Minimum confidence of an unmatched high-score detection to start a track.
    pub new_track_thresh: f32,
    /// IoU gate of the first association (high-score detections with confirmed and lost tracks); the
    /// paper's `match_thresh` 0.8 is a distance, i.e. IoU ≥ 0.2.
    pub iou_threshold: f32,
    /// IoU gate of the second association (low-score detections with the remaining confirmed tracks).
    pub second_iou_threshold: f32,
    /// IoU gate of the association of tentative tracks with the remaining high-score detections.
    pub unconfirmed_iou_threshold: f32,
    /// Inferred frames a lost track is kept.
    pub track_buffer: u32,
    /// Matched detections in a row before a new track is confirmed (the paper: 2).
    pub min_hits: u32,
    /// Only detections of the track's class are associated with it.
    pub match_class: bool,
    /// Inferred frames in a row a confirmed track without its detection is still reported at its
    /// predicted box ([`Tracker::coasted`](super::Tracker::coasted)); 0 = detections only.
    pub coast_frames: u32,
}

impl Default for ByteTrackConfig {
    fn default() -> Self {
        Self {
            track_thresh: 0.5,
            low_thresh: 0.1,
            new_track_thresh: 0.6,
            iou_threshold: 0.2,
            second_iou_threshold: 0.5,
            unconfirmed_iou_threshold: 0.3,
            track_buffer: 30,
            min_hits: 2,
            match_class: true,
            coast_frames: 0,
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct ByteTracker {
    cfg: ByteTrackConfig,
    set: TrackSet,
    high: Vec<usize>,
    low: Vec<usize>,
    pool: Vec<usize>,
    rest: Vec<usize>,
    pairs: Vec<(usize, usize)>,
    track_used: Vec<bool>,
}

impl ByteTracker {
    pub fn new(cfg: ByteTrackConfig) -> Self {
        Self {
            set: TrackSet::new(cfg.coast_frames),
            cfg,
            high: Vec::new(),
            low: Vec::new(),
            pool: Vec::new(),
            rest: Vec::new(),
            pairs: Vec::new(),
            track_used: Vec::new(),
        }
    }

    /// The live tracks (tentative, confirmed and lost).
    pub fn tracks(&self) -> Vec<TrackInfo> {
        self.set.infos()
    }

    fn apply_pairs(&mut self, objects: &[Object]) {
        for &(ti, di) in &self.pairs {
            self.track_used[ti] = true;
            self.set
                .apply(ti, di, &objects[di], self.cfg.min_hits, false, 0);
        }
    }
}

impl Tracker for ByteTracker {
    fn update(&mut self, objects: &mut [Object]) {
        let cfg = self.cfg.clone();
        self.set.begin(objects.len());
        self.high.clear();
        self.low.clear();
        for (i, o) in objects.iter().enumerate() {
            if o.confidence >= cfg.track_thresh {
                self.high.push(i);
            } else if o.confidence > cfg.low_thresh {
                self.low.push(i);
            }
        }
        let n = self.set.tracks.len();
        self.track_used.clear();
        self.track_used.resize(n, false);
        let assoc = |gate| Assoc {
            gate,
            match_class: cfg.match_class,
            last_observation: false,
            inertia: 0.0,
            delta_t: 0,
        };

        // 1. High-score detections with confirmed and lost tracks.
        self.pool.clear();
        self.pool.extend((0..n).filter(|&i| {
            matches!(
                self.set.tracks[i].state,
                TrackState::Confirmed | TrackState::Lost
            )
        }));
        self.set.associate(
            &self.pool,
            &self.high,
            objects,
            assoc(cfg.iou_threshold),
            &mut self.pairs,
        );
        self.apply_pairs(objects);

        // 2. Low-score detections with the confirmed (not lost) tracks left.
        self.rest.clear();
        self.rest.extend(
            self.pool.iter().copied().filter(|&i| {
                !self.track_used[i] && self.set.tracks[i].state == TrackState::Confirmed
            }),
        );
        self.set.associate(
            &self.rest,
            &self.low,
            objects,
            assoc(cfg.second_iou_threshold),
            &mut self.pairs,
        );
        self.apply_pairs(objects);

        // 3. Tentative tracks with the high-score detections left.
        self.rest.clear();
        self.rest
            .extend((0..n).filter(|&i| self.set.tracks[i].state == TrackState::Tentative));
        self.high.retain(|&d| self.set.det_track[d].is_none());
        self.set.associate(
            &self.rest,
            &self.high,
            objects,
            assoc(cfg.unconfirmed_iou_threshold),
            &mut self.pairs,
        );
        self.apply_pairs(objects);

        // Unmatched tracks: tentative ones are removed, confirmed ones lost, old lost ones removed.
        for ti in 0..n {
            if !self.track_used[ti] {
                self.set.miss(ti, cfg.track_buffer);
            }
        }
        // 4. New tracks from the confident high-score detections left.
        for &di in &self.high {
            if self.set.det_track[di].is_none() && objects[di].confidence >= cfg.new_track_thresh {
                self.set.spawn(di, &objects[di], cfg.min_hits);
            }
        }
        self.set.finish(objects);
    }

    fn coasted(&self, out: &mut Vec<Object>) {
        self.set.coasted(out);
    }

    fn predict(&mut self) -> Vec<Object> {
        self.set.predict()
    }
}
