//! IoU tracker: greedy association of detections to tracks by box overlap, with constant-velocity
//! prediction so that tracks survive frames that inference skipped.

use super::Tracker;
use crate::objects::{BBox, Object};

#[derive(Debug, Clone, PartialEq)]
pub struct IouTrackerConfig {
    /// Minimum IoU between a track's predicted box and a detection to associate them.
    pub iou_threshold: f32,
    /// Frames a track survives without a matching detection.
    pub max_age: u32,
    /// Matched frames before a track gets an id (1 = immediately).
    pub min_hits: u32,
    /// Only detections of the same class are associated with a track.
    pub match_class: bool,
    /// Inferred frames in a row a confirmed track without its detection is still reported at its
    /// predicted box ([`Tracker::coasted`](super::Tracker::coasted)); 0 = detections only.
    pub coast_frames: u32,
}

impl Default for IouTrackerConfig {
    fn default() -> Self {
        Self {
            iou_threshold: 0.3,
            max_age: 30,
            min_hits: 1,
            match_class: true,
            coast_frames: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Track {
    id: Option<u64>,
    bbox: BBox,
    /// Per-frame velocity of x, y, w, h (smoothed).
    vel: [f32; 4],
    class_id: i32,
    label: String,
    confidence: f32,
    model: String,
    hits: u32,
    /// Frames since the last matched detection.
    misses: u32,
    /// Frames since the last update (matched or not) — prediction steps pending.
    since_update: u32,
}

impl Track {
    /// The box `since_update` frames after the last update.
    fn predicted(&self) -> BBox {
        self.predicted_at(self.since_update)
    }

    /// The box `k` frames after the last update.
    fn predicted_at(&self, k: u32) -> BBox {
        let k = k as f32;
        BBox {
            x: self.bbox.x + self.vel[0] * k,
            y: self.bbox.y + self.vel[1] * k,
            w: (self.bbox.w + self.vel[2] * k).max(1.0),
            h: (self.bbox.h + self.vel[3] * k).max(1.0),
        }
    }
}

impl Track {
    /// The object of this track at `bbox`; `predicted` when it missed its latest detections.
    fn object(&self, id: u64, bbox: BBox) -> Object {
        let mut o = Object::new(self.class_id, self.label.clone(), self.confidence, bbox);
        o.track_id = Some(id);
        o.model.clone_from(&self.model);
        o.predicted = self.misses > 0;
        o.since_detection = self.misses;
        o
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct IouTracker {
    cfg: IouTrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl IouTracker {
    pub fn new(cfg: IouTrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// Number of live tracks (tentative included).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    fn confirm(&mut self, t: usize) {
        if self.tracks[t].id.is_none() && self.tracks[t].hits >= self.cfg.min_hits.max(1) {
            self.tracks[t].id = Some(self.next_id);
            self.next_id += 1;
        }
    }
}

impl Tracker for IouTracker {
    fn update(&mut self, objects: &mut [Object]) {
        // All candidate pairs above the threshold, best first (greedy assignment).
        let predicted: Vec<BBox> = self.tracks.iter().map(Track::predicted).collect();
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, (t, p)) in self.tracks.iter().zip(&predicted).enumerate() {
            for (di, o) in objects.iter().enumerate() {
                if self.cfg.match_class && o.class_id != t.class_id {
                    continue;
                }
                let iou = p.iou(&o.bbox);
                if iou >= self.cfg.iou_threshold {
                    pairs.push((iou, ti, di));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_used = vec![false; self.tracks.len()];
        let mut det_track: Vec<Option<usize>> = vec![None; objects.len()];
        for (_, ti, di) in pairs {
            if !track_used[ti] && det_track[di].is_none() {
                track_used[ti] = true;
                det_track[di] = Some(ti);
            }
        }
        // Update matched tracks.
        for (di, ti) in det_track.iter().enumerate() {
            let Some(ti) = *ti else { continue };
            let o = &objects[di];
            let t = &mut self.tracks[ti];
            let steps = t.since_update.max(1) as f32;
            let nb = o.bbox;
            let v = [
                (nb.x - t.bbox.x) / steps,
                (nb.y - t.bbox.y) / steps,
                (nb.w - t.bbox.w) / steps,
                (nb.h - t.bbox.h) / steps,
            ];
            for (tv, nv) in t.vel.iter_mut().zip(v) {
                *tv = if t.hits == 1 && *tv == 0.0 {
                    nv
                } else {
                    0.6 * *tv + 0.4 * nv
                };
            }
            t.bbox = nb;
            t.confidence = o.confidence;
            t.label.clone_from(&o.label);
            t.hits += 1;
            t.misses = 0;
            t.since_update = 0;
        }
        // Age unmatched tracks; drop old ones (remapping det_track indices).
        for (ti, used) in track_used.iter().enumerate() {
            if !used {
                self.tracks[ti].misses += 1;
            }
        }
        for t in &mut self.tracks {
            t.since_update += 1;
        }
        // New tracks for unmatched detections.
        for (di, o) in objects.iter().enumerate() {
            if det_track[di].is_none() {
                det_track[di] = Some(self.tracks.len());
                self.tracks.push(Track {
                    id: None,
                    bbox: o.bbox,
                    vel: [0.0; 4],
                    class_id: o.class_id,
                    label: o.label.clone(),
                    confidence: o.confidence,
                    model: o.model.clone(),
                    hits: 1,
                    misses: 0,
                    since_update: 1,
                });
            }
        }
        for ti in 0..self.tracks.len() {
            self.confirm(ti);
        }
        for (di, ti) in det_track.iter().enumerate() {
            objects[di].track_id = ti.and_then(|ti| self.tracks[ti].id);
        }
        let max_age = self.cfg.max_age;
        self.tracks.retain(|t| t.misses <= max_age);
    }

    fn coasted(&self, out: &mut Vec<Object>) {
        for t in &self.tracks {
            if let Some(id) = t.id
                && (1..=self.cfg.coast_frames).contains(&t.misses)
            {
                // `update` counted this frame already: the box of this frame is one step back.
                out.push(t.object(id, t.predicted_at(t.since_update.saturating_sub(1))));
            }
        }
    }

    fn predict(&mut self) -> Vec<Object> {
        let mut out = Vec::new();
        for t in &mut self.tracks {
            let bbox = t.predicted();
            t.since_update += 1;
            // Only tracks shown in the latest inferred frame (seen, or coasting) are shown; older
            // ones are kept, not drawn.
            if let Some(id) = t.id
                && t.misses <= self.cfg.coast_frames
            {
                out.push(t.object(id, bbox));
            }
        }
        for (i, o) in out.iter_mut().enumerate() {
            o.id = i as u32;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(x: f32) -> Object {
        Object::new(0, "person", 0.9, BBox::new(x, 10.0, 20.0, 40.0))
    }

    #[test]
    fn keeps_ids_for_moving_objects() {
        let mut t = IouTracker::new(IouTrackerConfig::default());
        let mut ids = Vec::new();
        for f in 0..20 {
            let x = f as f32 * 3.0;
            let mut objs = vec![person(x), person(200.0 - x)];
            t.update(&mut objs);
            ids.push((objs[0].track_id.unwrap(), objs[1].track_id.unwrap()));
        }
        assert!(ids.iter().all(|p| *p == ids[0]), "{ids:?}");
        assert_ne!(ids[0].0, ids[0].1);
    }

    #[test]
    fn survives_skipped_frames_and_gaps() {
        let mut t = IouTracker::new(IouTrackerConfig {
            max_age: 5,
            ..Default::default()
        });
        let mut o = vec![person(0.0)];
        t.update(&mut o);
        let id = o[0].track_id.unwrap();
        let mut o = vec![person(5.0)];
        t.update(&mut o);
        assert_eq!(o[0].track_id, Some(id));
        // two frames skipped by inference: predicted positions continue the motion
        let p1 = t.predict();
        let p2 = t.predict();
        assert_eq!(p1[0].track_id, Some(id));
        assert!(
            p2[0].bbox.x > p1[0].bbox.x && p1[0].bbox.x > 5.0,
            "{p1:?} {p2:?}"
        );
        // moved 15 px in 3 frames: still the same track
        let mut o = vec![person(20.0)];
        t.update(&mut o);
        assert_eq!(o[0].track_id, Some(id));
        // gone for longer than max_age: a new id
        for _ in 0..7 {
            t.update(&mut []);
        }
        assert!(t.is_empty());
        let mut o = vec![person(20.0)];
        t.update(&mut o);
        assert_ne!(o[0].track_id, Some(id));
    }

    #[test]
    fn min_hits_delays_ids_and_classes_do_not_mix() {
        let mut t = IouTracker::new(IouTrackerConfig {
            min_hits: 2,
            ..Default::default()
        });
        let mut o = vec![person(0.0)];
        t.update(&mut o);
        assert_eq!(o[0].track_id, None);
        let mut o = vec![
            person(1.0),
            Object::new(2, "car", 0.8, BBox::new(1.0, 10.0, 20.0, 40.0)),
        ];
        t.update(&mut o);
        assert!(o[0].track_id.is_some());
        assert_eq!(o[1].track_id, None);
    }
}
