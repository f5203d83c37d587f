//! `vigilanalytics`: line crossing and zone analytics on the tracked objects of
//! [`VigilMeta`](crate::meta::VigilMeta).
//!
//! Each frame's tracked objects are run through a per-stream [`vigil_core::analytics::Analytics`]: counting
//! lines (per-label counts in each direction) and zones (occupancy, entries, exits, overcrowding, dwell
//! time per track) in frame pixels. The results and the frame's events (`line_crossed`,
//! `zone_entered`, `zone_exited`, `zone_overcrowded`, `zone_cleared`) are written into the meta's
//! `analytics`, so they reach `vigilosd` and the JSON events. The rules come from a YAML/JSON file
//! (`config`) or an inline YAML/JSON string (`rules`) with `lines:` and `zones:` in the schema of the
//! pipeline config's `sources[i].analytics`; `anchor`, `hysteresis` and `forget-after` apply unless the
//! rules set them. Place it after `vigiltrack`: objects without a track id count in zones but never
//! cross lines. Frames without a `VigilMeta` pass untouched; frames inference skipped
//! (`inferred=false`) are processed with the tracker's predicted boxes. Dwell times use the buffer
//! timestamps. State (tracks, counts) resets on flush and on a new stream.
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 filesrc location=samples/media/vtest.avi ! decodebin ! \
//!     videoconvert ! vigilinfer model=nanodet ! vigiltrack tracker=sort ! \
//!     vigilanalytics rules="{lines: [{name: walkway, points: [[200, 170], [200, 340]], in_direction: right}]}" ! \
//!     vigilosd ! videoconvert ! autovideosink
//! ```
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `vigilanalytics` element.
    pub struct VigilAnalytics(ObjectSubclass<imp::VigilAnalytics>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers `vigilanalytics` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vigilanalytics",
        gst::Rank::NONE,
        VigilAnalytics::static_type(),
    )
}
