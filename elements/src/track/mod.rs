//! `vigiltrack`: per-stream multi-object tracking of the objects in `VigilMeta`.
//!
//! Assigns stable `track_id`s to the objects that `vigilinfer` attached. On frames that inference skipped
//! (`vigilinfer interval=N`, meta marked `inferred=false`) it writes the tracks' predicted boxes, so overlays
//! and events stay smooth. One instance tracks one stream; the state is reset on flush and on a new stream.
//!
//! `tracker` picks the algorithm (`vigil_core::tracker`): `iou` (greedy IoU), `sort` (Kalman filter and
//! optimal assignment), `bytetrack` (plus low-confidence detections; lower `vigilinfer threshold` to
//! `low-thresh` so that they arrive) or `ocsort` (observation-centric SORT with ByteTrack's second stage).
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 filesrc location=samples/media/vtest.avi ! decodebin ! \
//!     videoconvert ! vigilinfer model=nanodet interval=2 threshold=0.1 ! vigiltrack tracker=bytetrack ! vigilosd ! \
//!     videoconvert ! autovideosink
//! ```
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct VigilTrack(ObjectSubclass<imp::VigilTrack>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vigiltrack",
        gst::Rank::NONE,
        VigilTrack::static_type(),
    )
}
