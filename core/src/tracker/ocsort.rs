//! OC-SORT (Cao et al., "Observation-Centric SORT: Rethinking SORT for Robust Multi-Object Tracking",
//! 2023): SORT made robust to occlusion and non-linear motion by trusting observations over the Kalman
//! state where they disagree, with ByteTrack's association of low-score detections (the paper's BYTE
//! option, on by default here).
//!
//! - **Observation-centric momentum (OCM)**: in the first association the weight of a pair is its IoU plus
//!   `inertia` × (confidence of the detection) × the consistency of directions: the track's direction of
//!   motion, measured between its observations `delta_t` frames apart, against the direction from its
//!   observation `delta_t` frames ago to the detection (+0.5 same direction … −0.5 opposite).
//! - **BYTE** (`use_byte`): low-score detections (`low_thresh` < confidence < `track_thresh`) are matched
//!   with the tracks left unmatched, on IoU.
//! - **Observation-centric recovery (OCR)**: high-score detections and tracks still unmatched are matched on
//!   the IoU of the detection with the track's *last observed* box (not its drifting prediction), which
//!   recovers tracks stopped or occluded for a short time.
//! - **Observation-centric re-update (ORU)**: when a lost track is found again, its Kalman filter is re-run
//!   from the last observation along a straight virtual path to the new one, instead of keeping the
//!   velocity error accumulated while it was predicted blindly.
//!
//! Differences from the reference implementation: the Kalman filter is the shared `xywh` one of this
//! module (not SORT's area/aspect state), and the track lifecycle is the shared one (a tentative track
//! that misses a frame is removed; the reference keeps it up to `max_age` with its hit streak reset).

use super::common::{Assoc, HISTORY, TrackSet};
use super::{TrackInfo, Tracker};
use crate::objects::Object;

#[derive(Debug, Clone, PartialEq)]
pub struct OcSortConfig {
    /// Detections at or above this confidence are high-score ones (all associations, new tracks).
    pub track_thresh: f32,
    /// With `use_byte`: detections above this and below `track_thresh` are low-score ones.
    pub low_thresh: f32,
    /// Minimum confidence of an unmatched high-score detection to start a track.
    pub new_track_thresh: f32,
    /// IoU gate of every association stage.
    pub iou_threshold: f32,
    /// Inferred frames a lost track is kept.
    pub max_age: u32,
    /// Matched detections in a row before a track is confirmed and gets an id.
    pub min_hits: u32,
    /// Frames between the observations that give a track's direction of motion (1..=7).
    pub delta_t: u32,
    /// Weight of the direction consistency term in the first association (0 disables OCM).
    pub inertia: f32,
    /// Associate low-score detections with unmatched tracks (ByteTrack's second stage).
    pub use_byte: bool,
    /// Only detections of the track's class are associated with it.
    pub match_class: bool,
    /// Inferred frames in a row a confirmed track without its detection is still reported at its
    /// predicted box ([`Tracker::coasted`](super::Tracker::coasted)); 0 = detections only.
    pub coast_frames: u32,
}

impl Default for OcSortConfig {
    fn default() -> Self {
        Self {
            track_thresh: 0.5,
            low_thresh: 0.1,
            new_track_thresh: 0.6,
            iou_threshold: 0.3,
            max_age: 30,
            min_hits: 3,
            delta_t: 3,
            inertia: 0.2,
            use_byte: true,
            match_class: true,
            coast_frames: 0,
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct OcSortTracker {
    cfg: OcSortConfig,
    set: TrackSet,
    high: Vec<usize>,
    low: Vec<usize>,
    rest: Vec<usize>,
    pairs: Vec<(usize, usize)>,
    track_used: Vec<bool>,
}

impl OcSortTracker {
    pub fn new(cfg: OcSortConfig) -> Self {
        Self {
            set: TrackSet::new(cfg.coast_frames),
            cfg,
            high: Vec::new(),
            low: Vec::new(),
            rest: Vec::new(),
            pairs: Vec::new(),
            track_used: Vec::new(),
        }
    }

    /// The live tracks (tentative, confirmed and lost).
    pub fn tracks(&self) -> Vec<TrackInfo> {
        self.set.infos()
    }

    fn apply_pairs(&mut self, objects: &[Object], delta_t: u32) {
        for &(ti, di) in &self.pairs {
            self.track_used[ti] = true;
            self.set
                .apply(ti, di, &objects[di], self.cfg.min_hits, true, delta_t);
        }
    }

    fn unmatched_tracks(&mut self) {
        self.rest.clear();
        self.rest
            .extend((0..self.track_used.len()).filter(|&i| !self.track_used[i]));
    }
}

impl Tracker for OcSortTracker {
    fn update(&mut self, objects: &mut [Object]) {
        let cfg = self.cfg.clone();
        let delta_t = cfg.delta_t.clamp(1, HISTORY as u32 - 1);
        self.set.begin(objects.len());
        self.high.clear();
        self.low.clear();
        for (i, o) in objects.iter().enumerate() {
            if o.confidence >= cfg.track_thresh {
                self.high.push(i);
            } else if cfg.use_byte && o.confidence > cfg.low_thresh {
                self.low.push(i);
            }
        }
        let n = self.set.tracks.len();
        self.track_used.clear();
        self.track_used.resize(n, false);
        let assoc = Assoc {
            gate: cfg.iou_threshold,
            match_class: cfg.match_class,
            last_observation: false,
            inertia: 0.0,
            delta_t,
        };

        // 1. High-score detections with all tracks: IoU + observation-centric momentum.
        self.unmatched_tracks();
        self.set.associate(
            &self.rest,
            &self.high,
            objects,
            Assoc {
                inertia: cfg.inertia.max(0.0),
                ..assoc
            },
            &mut self.pairs,
        );
        self.apply_pairs(objects, delta_t);

        // 2. BYTE: low-score detections with the tracks left.
        if cfg.use_byte {
            self.unmatched_tracks();
            self.set
                .associate(&self.rest, &self.low, objects, assoc, &mut self.pairs);
            self.apply_pairs(objects, delta_t);
        }

        // 3. Observation-centric recovery: the last observed boxes of the tracks left with the high-score
        //    detections left.
        self.unmatched_tracks();
        self.high.retain(|&d| self.set.det_track[d].is_none());
        self.set.associate(
            &self.rest,
            &self.high,
            objects,
            Assoc {
                last_observation: true,
                ..assoc
            },
            &mut self.pairs,
        );
        self.apply_pairs(objects, delta_t);

        for ti in 0..n {
            if !self.track_used[ti] {
                self.set.miss(ti, cfg.max_age);
            }
        }
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
