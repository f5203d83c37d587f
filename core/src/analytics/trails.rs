//! Track trails for overlays: the last N anchor positions of each track id.

use super::geometry::Anchor;
use crate::objects::{Object, Point};
use std::collections::{HashMap, VecDeque};

/// The recent anchor positions of each track, oldest first.
#[derive(Debug, Default)]
pub struct Trails {
    length: usize,
    /// Frames an unseen track's trail is kept.
    keep_unseen: u64,
    frame: u64,
    tracks: HashMap<u64, (u64, VecDeque<Point>)>,
}

impl Trails {
    /// Keeps up to `length` points per track; a trail is dropped once its track has been unseen for
    /// `keep_unseen` frames.
    pub fn new(length: usize, keep_unseen: u64) -> Self {
        Self {
            length,
            keep_unseen,
            ..Default::default()
        }
    }

    /// Changes the trail length (longer trails are cut).
    pub fn set_length(&mut self, length: usize) {
        self.length = length;
        for (_, t) in self.tracks.values_mut() {
            while t.len() > length {
                t.pop_front();
            }
        }
    }

    /// Changes how many frames an unseen track's trail is kept.
    pub fn set_keep_unseen(&mut self, frames: u64) {
        self.keep_unseen = frames;
    }

    pub fn clear(&mut self) {
        self.tracks.clear();
    }

    /// Adds the anchors of a frame's tracked objects.
    pub fn update(&mut self, objects: &[Object], anchor: Anchor) {
        self.frame += 1;
        for o in objects {
            let Some(id) = o.track_id else { continue };
            let p = anchor.point(&o.bbox);
            if !(p.x.is_finite() && p.y.is_finite()) {
                continue;
            }
            let (seen, t) = self.tracks.entry(id).or_default();
            *seen = self.frame;
            t.push_back(p);
            while t.len() > self.length {
                t.pop_front();
            }
        }
        let (frame, keep) = (self.frame, self.keep_unseen);
        self.tracks
            .retain(|_, (seen, t)| frame - *seen <= keep && !t.is_empty());
    }

    /// Every trail with at least two points, by track id.
    pub fn trails(&self) -> Vec<(u64, Vec<Point>)> {
        let mut out: Vec<(u64, Vec<Point>)> = self
            .tracks
            .iter()
            .filter(|(_, (_, t))| t.len() >= 2)
            .map(|(&id, (_, t))| (id, t.iter().copied().collect()))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::BBox;

    fn tracked(id: u64, x: f32) -> Object {
        let mut o = Object::new(0, "person", 0.9, BBox::new(x, 0.0, 10.0, 20.0));
        o.track_id = Some(id);
        o
    }

    #[test]
    fn keeps_the_last_points_and_forgets_unseen_tracks() {
        let mut t = Trails::new(3, 2);
        for i in 0..5 {
            t.update(
                &[tracked(1, i as f32), tracked(2, 100.0)],
                Anchor::BottomCenter,
            );
        }
        let trails = t.trails();
        assert_eq!(trails.len(), 2);
        assert_eq!(
            trails[0].1,
            [
                Point::new(7.0, 20.0),
                Point::new(8.0, 20.0),
                Point::new(9.0, 20.0)
            ]
        );
        // Untracked objects leave no trail; track 2 disappears after 2 unseen frames.
        t.update(
            &[tracked(1, 5.0), Object::new(0, "x", 1.0, BBox::default())],
            Anchor::Center,
        );
        t.update(&[tracked(1, 6.0)], Anchor::Center);
        assert_eq!(t.trails().len(), 2);
        t.update(&[tracked(1, 7.0)], Anchor::Center);
        assert_eq!(t.trails().len(), 1);
        t.set_length(2);
        assert_eq!(t.trails()[0].1.len(), 2);
        t.clear();
        assert!(t.trails().is_empty());
    }
}
