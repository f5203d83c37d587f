//! Multi-object trackers. Each tracker is per stream and assigns stable ids to detections.

mod iou;

pub use iou::{IouTracker, IouTrackerConfig};

use crate::objects::Object;

/// A per-stream multi-object tracker.
pub trait Tracker: Send {
    /// Associates `objects` (detections of a new frame) with tracks, setting `track_id` on each matched or
    /// newly started one. Objects whose track is still tentative keep `track_id = None`.
    fn update(&mut self, objects: &mut [Object]);

    /// A frame without detections (skipped by `vigilinfer interval`): ages the tracks and returns the
    /// objects for the live tracks at their predicted positions.
    fn predict(&mut self) -> Vec<Object>;
}
