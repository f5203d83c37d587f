//! What the Kalman-filter trackers (SORT, ByteTrack, OC-SORT) share: the track with its lifecycle, the set
//! of tracks of one stream with its id counter, and IoU association through [`Assigner`].

use super::assign::Assigner;
use super::kalman::KalmanBox;
use super::{TrackInfo, TrackState};
use crate::objects::{BBox, Object};

/// Observations kept per track for OC-SORT's motion direction (`delta_t` is at most this minus one).
pub(crate) const HISTORY: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct Track {
    /// Given when the track is confirmed.
    pub id: Option<u64>,
    pub state: TrackState,
    pub kf: KalmanBox,
    /// The filter right after the last observation (OC-SORT's re-update starts from it).
    pub frozen: KalmanBox,
    pub class_id: i32,
    pub label: String,
    pub model: String,
    /// Confidence of the last matched detection.
    pub confidence: f32,
    /// Matched detections in total.
    pub hits: u32,
    /// Inferred frames since the last matched detection.
    pub misses: u32,
    /// Frames (inferred or predicted) since the last matched detection.
    pub since_obs: u32,
    /// Box of the last matched detection.
    pub last_obs: BBox,
    /// Centres of the latest observations with their frame numbers (ring buffer, `hist_len` valid).
    pub hist: [(u64, [f32; 2]); HISTORY],
    pub hist_len: usize,
    pub hist_next: usize,
    /// Unit direction of motion between observations `delta_t` frames apart (OC-SORT), when known.
    pub direction: Option<[f32; 2]>,
}

pub(crate) fn centre(b: &BBox) -> [f32; 2] {
    [b.x + b.w / 2.0, b.y + b.h / 2.0]
}

/// Unit vector from `a` to `b`, or `None` when they coincide.
pub(crate) fn direction(a: [f32; 2], b: [f32; 2]) -> Option<[f32; 2]> {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let n = (dx * dx + dy * dy).sqrt();
    (n > 1e-6 && n.is_finite()).then(|| [dx / n, dy / n])
}

impl Track {
    /// The oldest observation at most `delta_t` frames before frame `now`, else the latest one.
    pub fn previous_observation(&self, now: u64, delta_t: u32) -> Option<[f32; 2]> {
        let mut best: Option<(u64, [f32; 2])> = None;
        let mut latest: Option<(u64, [f32; 2])> = None;
        for &(f, c) in self.hist.iter().take(self.hist_len) {
            if latest.is_none_or(|l| f > l.0) {
                latest = Some((f, c));
            }
            if f < now && now - f <= u64::from(delta_t) && best.is_none_or(|b| f < b.0) {
                best = Some((f, c));
            }
        }
        best.or(latest).map(|b| b.1)
    }

    fn push_observation(&mut self, frame: u64, c: [f32; 2]) {
        self.hist[self.hist_next] = (frame, c);
        self.hist_next = (self.hist_next + 1) % HISTORY;
        self.hist_len = (self.hist_len + 1).min(HISTORY);
    }

    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            id: self.id,
            state: self.state,
            bbox: self.kf.bbox(),
            class_id: self.class_id,
            hits: self.hits,
            misses: self.misses,
        }
    }
}

/// Taken from a pair's weight for each inferred frame its track went without a detection: of two
/// tracks that overlap a detection about equally, the one seen more recently gets it (DeepSORT's
/// matching cascade, as a soft preference). The gate still applies to the IoU alone. On the noisy
/// TUD-Campus detections (seeds 1-10) it took ByteTrack's ID switches from 17 to 10, SORT's from 31
/// to 11 and OC-SORT's from 18 to 6, each with a higher mean IDF1 (`mot/tests/tracker_compare.rs`).
pub(crate) const MISS_PENALTY: f32 = 0.05;

/// How [`TrackSet::associate`] scores a pair.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Assoc {
    /// Pairs with a lower IoU are never matched.
    pub gate: f32,
    pub match_class: bool,
    /// Compare with the track's last observed box instead of its predicted box (OC-SORT's recovery).
    pub last_observation: bool,
    /// OC-SORT's observation-centric momentum: weight of the direction consistency term (0 = off).
    pub inertia: f32,
    pub delta_t: u32,
}

/// The tracks of one stream, with the buffers a frame needs.
#[derive(Debug, Default)]
pub(crate) struct TrackSet {
    pub tracks: Vec<Track>,
    /// Inferred frames in a row a lost track is still reported (coasting).
    coast_frames: u32,
    next_id: u64,
    /// Inferred frames so far (calls of `update`).
    pub updates: u64,
    /// Frames so far (inferred and predicted).
    pub frame: u64,
    /// For each detection of the current frame, the index of its track.
    pub det_track: Vec<Option<usize>>,
    /// Predicted box of each track for the current frame.
    boxes: Vec<BBox>,
    weights: Vec<f32>,
    local: Vec<(usize, usize)>,
    assigner: Assigner,
}

impl TrackSet {
    pub fn new(coast_frames: u32) -> Self {
        Self {
            next_id: 1,
            coast_frames,
            ..Default::default()
        }
    }

    /// Whether track `t` is shown as coasting: confirmed before, lost for at most `coast_frames`.
    fn coasting(&self, t: &Track) -> bool {
        t.state == TrackState::Lost && t.id.is_some() && t.misses <= self.coast_frames
    }

    /// The object of track `t` at its filter's box; `predicted` for a coasting one.
    fn object(t: &Track, id: u64) -> Object {
        let mut o = Object::new(t.class_id, t.label.clone(), t.confidence, t.kf.bbox());
        o.track_id = Some(id);
        o.model.clone_from(&t.model);
        if t.state == TrackState::Lost {
            o.predicted = true;
            o.since_detection = t.misses;
        }
        o
    }

    /// After `finish`: the coasting tracks' objects, appended to `out` (see [`Tracker::coasted`]).
    ///
    /// [`Tracker::coasted`]: super::Tracker::coasted
    pub fn coasted(&self, out: &mut Vec<Object>) {
        if self.coast_frames == 0 {
            return;
        }
        for t in &self.tracks {
            if let (true, Some(id)) = (self.coasting(t), t.id) {
                out.push(Self::object(t, id));
            }
        }
    }

    /// Advances every track by one frame. Lost tracks keep their size (ByteTrack's rule).
    fn step(&mut self) {
        self.frame += 1;
        for t in &mut self.tracks {
            if t.state == TrackState::Lost {
                t.kf.stop_size_change();
            }
            t.kf.predict();
            t.since_obs = t.since_obs.saturating_add(1);
            if !t.kf.is_finite() {
                t.state = TrackState::Removed;
            }
        }
    }

    /// Starts an inferred frame with `n` detections: predicts the tracks to this frame.
    pub fn begin(&mut self, n: usize) {
        self.updates += 1;
        self.step();
        self.tracks.retain(|t| t.state != TrackState::Removed);
        self.boxes.clear();
        self.boxes.extend(self.tracks.iter().map(|t| t.kf.bbox()));
        self.det_track.clear();
        self.det_track.resize(n, None);
    }

    /// Matches tracks `tis` with detections `dis` (indices into `self.tracks` and `objects`) by maximum
    /// total weight (IoU less [`MISS_PENALTY`] per missed frame, plus the momentum term when enabled) over
    /// pairs with IoU ≥ the gate. Writes the
    /// matched `(track, detection)` index pairs to `out`; does not change the tracks.
    pub fn associate(
        &mut self,
        tis: &[usize],
        dis: &[usize],
        objects: &[Object],
        a: Assoc,
        out: &mut Vec<(usize, usize)>,
    ) {
        out.clear();
        let (rows, cols) = (tis.len(), dis.len());
        if rows == 0 || cols == 0 {
            return;
        }
        self.weights.clear();
        self.weights.resize(rows * cols, 0.0);
        for (r, &ti) in tis.iter().enumerate() {
            let Some(t) = self.tracks.get(ti) else {
                continue;
            };
            let tb = if a.last_observation {
                t.last_obs
            } else {
                self.boxes.get(ti).copied().unwrap_or(t.last_obs)
            };
            // OC-SORT momentum: the track's motion direction and where it was delta_t frames ago.
            let momentum = if a.inertia > 0.0 {
                t.direction
                    .zip(t.previous_observation(self.frame, a.delta_t))
            } else {
                None
            };
            let row = &mut self.weights[r * cols..(r + 1) * cols];
            for (w, &di) in row.iter_mut().zip(dis) {
                let Some(o) = objects.get(di) else {
                    continue;
                };
                if a.match_class && o.class_id != t.class_id {
                    continue;
                }
                let iou = tb.iou(&o.bbox);
                if !(iou > 0.0 && iou >= a.gate) {
                    continue;
                }
                let mut weight = iou - MISS_PENALTY * t.misses as f32;
                if let Some((dir, prev)) = momentum
                    && let Some(d) = direction(prev, centre(&o.bbox))
                {
                    // Angle between the track's direction and the direction to the detection, mapped to
                    // +0.5 (same direction) .. -0.5 (opposite), weighted by the detection's confidence.
                    let cos = (dir[0] * d[0] + dir[1] * d[1]).clamp(-1.0, 1.0);
                    let consistency =
                        (std::f32::consts::FRAC_PI_2 - cos.acos().abs()) / std::f32::consts::PI;
                    weight += a.inertia * consistency * o.confidence.clamp(0.0, 1.0);
                }
                // Gated pairs stay matchable however small the momentum term makes them.
                *w = weight.max(1e-3);
            }
        }
        self.assigner
            .solve(&self.weights, rows, cols, &mut self.local);
        out.extend(
            self.local
                .iter()
                .filter_map(|&(r, c)| Some((*tis.get(r)?, *dis.get(c)?))),
        );
    }

    fn assign_id(&mut self, ti: usize) {
        if let Some(t) = self.tracks.get_mut(ti)
            && t.id.is_none()
        {
            t.id = Some(self.next_id);
            self.next_id += 1;
        }
    }

    /// Corrects track `ti` with detection `di`; confirms it after `min_hits` matches (at once in the first
    /// inferred frame of the stream) and brings a lost track back. With `re_update` (OC-SORT), a track
    /// that was lost is first re-run from its last observation along a straight virtual path to this one.
    pub fn apply(
        &mut self,
        ti: usize,
        di: usize,
        o: &Object,
        min_hits: u32,
        re_update: bool,
        delta_t: u32,
    ) {
        let first_frame = self.updates == 1;
        let frame = self.frame;
        let Some(t) = self.tracks.get_mut(ti) else {
            return;
        };
        if re_update && t.state == TrackState::Lost && t.since_obs > 1 {
            // Observation-centric re-update: replay the frames without observation with boxes on the line
            // from the last observation to this one, so that the velocity reflects the real motion.
            let n = t.since_obs;
            let mut kf = t.frozen;
            for i in 1..n {
                kf.predict();
                let f = i as f32 / n as f32;
                let (a, b) = (t.last_obs, o.bbox);
                let v = BBox::new(
                    a.x + (b.x - a.x) * f,
                    a.y + (b.y - a.y) * f,
                    a.w + (b.w - a.w) * f,
                    a.h + (b.h - a.h) * f,
                );
                kf.update(&v);
            }
            kf.predict();
            if kf.is_finite() {
                t.kf = kf;
            }
        }
        t.kf.update(&o.bbox);
        t.frozen = t.kf;
        let c = centre(&o.bbox);
        if let Some(prev) = t.previous_observation(frame, delta_t)
            && let Some(d) = direction(prev, c)
        {
            t.direction = Some(d);
        }
        t.push_observation(frame, c);
        t.last_obs = o.bbox;
        t.since_obs = 0;
        t.misses = 0;
        t.hits = t.hits.saturating_add(1);
        t.confidence = o.confidence;
        t.class_id = o.class_id;
        if t.label != o.label {
            t.label.clone_from(&o.label);
        }
        let confirm = match t.state {
            TrackState::Tentative => first_frame || t.hits >= min_hits.max(1),
            TrackState::Lost | TrackState::Confirmed => true,
            TrackState::Removed => false,
        };
        if confirm {
            t.state = TrackState::Confirmed;
            self.assign_id(ti);
        }
        if let Some(d) = self.det_track.get_mut(di) {
            *d = Some(ti);
        }
    }

    /// Track `ti` had no detection in this inferred frame: a tentative track is removed, a confirmed one
    /// is lost, a lost one is removed after `max_age` such frames.
    pub fn miss(&mut self, ti: usize, max_age: u32) {
        let Some(t) = self.tracks.get_mut(ti) else {
            return;
        };
        t.misses = t.misses.saturating_add(1);
        t.state = match t.state {
            TrackState::Tentative | TrackState::Removed => TrackState::Removed,
            TrackState::Confirmed | TrackState::Lost if t.misses > max_age => TrackState::Removed,
            TrackState::Confirmed | TrackState::Lost => TrackState::Lost,
        };
    }

    /// Starts a track at detection `di`.
    pub fn spawn(&mut self, di: usize, o: &Object, min_hits: u32) {
        let kf = KalmanBox::new(&o.bbox);
        let mut t = Track {
            id: None,
            state: TrackState::Tentative,
            kf,
            frozen: kf,
            class_id: o.class_id,
            label: o.label.clone(),
            model: o.model.clone(),
            confidence: o.confidence,
            hits: 1,
            misses: 0,
            since_obs: 0,
            last_obs: o.bbox,
            hist: [(0, [0.0; 2]); HISTORY],
            hist_len: 0,
            hist_next: 0,
            direction: None,
        };
        t.push_observation(self.frame, centre(&o.bbox));
        let ti = self.tracks.len();
        let confirm = self.updates == 1 || min_hits <= 1;
        if confirm {
            t.state = TrackState::Confirmed;
        }
        self.tracks.push(t);
        if confirm {
            self.assign_id(ti);
        }
        self.boxes.push(o.bbox);
        if let Some(d) = self.det_track.get_mut(di) {
            *d = Some(ti);
        }
    }

    /// Ends an inferred frame: writes the track ids of confirmed tracks to their detections (`None` for
    /// the others) and drops removed tracks.
    pub fn finish(&mut self, objects: &mut [Object]) {
        for (o, ti) in objects.iter_mut().zip(&self.det_track) {
            o.track_id = ti
                .and_then(|ti| self.tracks.get(ti))
                .filter(|t| t.state == TrackState::Confirmed)
                .and_then(|t| t.id);
        }
        self.tracks.retain(|t| t.state != TrackState::Removed);
    }

    /// A frame without detections: advances the tracks and returns the confirmed ones that were matched
    /// in the latest inferred frame and the coasting ones, at their predicted boxes, with their last
    /// confidence.
    pub fn predict(&mut self) -> Vec<Object> {
        self.step();
        let mut out = Vec::new();
        for t in &self.tracks {
            let Some(id) = t.id else { continue };
            if t.state == TrackState::Confirmed || self.coasting(t) {
                let mut o = Self::object(t, id);
                o.id = out.len() as u32;
                out.push(o);
            }
        }
        self.tracks.retain(|t| t.state != TrackState::Removed);
        out
    }

    pub fn infos(&self) -> Vec<TrackInfo> {
        self.tracks.iter().map(Track::info).collect()
    }
}
