//! SORT (Bewley et al., "Simple Online and Realtime Tracking", 2016): a constant-velocity Kalman filter per
//! track and one optimal (Hungarian) assignment of all detections to all tracks on IoU.
//!
//! Lifecycle: a new track is tentative until `min_hits` matched detections in a row (at once in the first
//! frame of the stream, as in the paper's start-up rule), and is removed when a tentative frame goes
//! unmatched; a confirmed track that misses becomes lost, is found again by the same assignment (the
//! Kalman prediction carries it) and is removed after `max_age` inferred frames without a detection.

use super::common::{Assoc, TrackSet};
use super::{TrackInfo, Tracker};
use crate::objects::Object;

#[derive(Debug, Clone, PartialEq)]
pub struct SortConfig {
    /// Minimum IoU between a track's predicted box and a detection to associate them.
    pub iou_threshold: f32,
    /// Inferred frames a lost track is kept without a matching detection.
    pub max_age: u32,
    /// Matched detections in a row before a track is confirmed and gets an id.
    pub min_hits: u32,
    /// Detections below this confidence are ignored (neither matched nor starting tracks).
    pub min_confidence: f32,
    /// Only detections of the track's class are associated with it.
    pub match_class: bool,
    /// Inferred frames in a row a confirmed track without its detection is still reported at its
    /// predicted box ([`Tracker::coasted`](super::Tracker::coasted)); 0 = detections only.
    pub coast_frames: u32,
}

impl Default for SortConfig {
    fn default() -> Self {
        Self {
            iou_threshold: 0.3,
            max_age: 30,
            min_hits: 3,
            min_confidence: 0.0,
            match_class: true,
            coast_frames: 0,
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct SortTracker {
    cfg: SortConfig,
    set: TrackSet,
    tis: Vec<usize>,
    dis: Vec<usize>,
    pairs: Vec<(usize, usize)>,
    track_used: Vec<bool>,
}

impl SortTracker {
    pub fn new(cfg: SortConfig) -> Self {
        Self {
            set: TrackSet::new(cfg.coast_frames),
            cfg,
            tis: Vec::new(),
            dis: Vec::new(),
            pairs: Vec::new(),
            track_used: Vec::new(),
        }
    }

    /// The live tracks (tentative, confirmed and lost).
    pub fn tracks(&self) -> Vec<TrackInfo> {
        self.set.infos()
    }
}

impl Tracker for SortTracker {
    fn update(&mut self, objects: &mut [Object]) {
        let cfg = &self.cfg;
        self.set.begin(objects.len());
        self.tis.clear();
        self.tis.extend(0..self.set.tracks.len());
        self.dis.clear();
        self.dis.extend(
            objects
                .iter()
                .enumerate()
                .filter(|(_, o)| o.confidence >= cfg.min_confidence)
                .map(|(i, _)| i),
        );
        let assoc = Assoc {
            gate: cfg.iou_threshold,
            match_class: cfg.match_class,
            last_observation: false,
            inertia: 0.0,
            delta_t: 0,
        };
        self.set
            .associate(&self.tis, &self.dis, objects, assoc, &mut self.pairs);
        self.track_used.clear();
        self.track_used.resize(self.set.tracks.len(), false);
        for &(ti, di) in &self.pairs {
            self.track_used[ti] = true;
            self.set.apply(ti, di, &objects[di], cfg.min_hits, false, 0);
        }
        for (ti, used) in self.track_used.iter().enumerate() {
            if !used {
                self.set.miss(ti, cfg.max_age);
            }
        }
        for &di in &self.dis {
            if self.set.det_track[di].is_none() {
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
