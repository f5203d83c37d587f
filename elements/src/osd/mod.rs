//! `vigilosd`: draws the objects of each frame's [`VigilMeta`](crate::meta::VigilMeta) onto the frame.
//!
//! For every object a box is drawn in a colour chosen by its track id (or, when untracked, its class),
//! with a label line such as `person 0.83 #12` above it (kept inside the frame). What the label shows
//! is controlled by the `draw-labels`, `draw-confidence` and `draw-track-ids` properties; `line-width`
//! and `font-scale` set the box thickness and the size of the 8x8 font. Frames without a `VigilMeta`
//! pass through untouched. Drawing happens in place, so the buffer is only copied when it is shared.
//!
//! Privacy mode: `blur-labels=face` blurs the boxes of the objects with those labels (e.g. the faces a
//! secondary `vigilinfer` found inside persons) before anything is drawn, with
//! [`vigil_core::blur::blur_box`] (three box-filter passes of a radius of a quarter of the box's longer
//! side, reading only pixels of the box).
//!
//! Results of `vigilanalytics` in the meta are drawn too: counting lines with an arrow to their `in`
//! side and in/out totals (`draw-lines`), zone outlines with their occupancy, red while overcrowded
//! (`draw-zones`), and a counters panel at the top-left (`draw-counters`). `draw-trails` draws each
//! track's trail, the bottom-centre of its box over the last `trail-length` frames.
//!
//! Supported formats: RGBA, BGRA, RGBx, BGRx, RGB, BGR, I420 and NV12. Colours in I420/NV12 are
//! BT.601 limited range, with chroma at half resolution.
//!
//! ## Example
//!
//! ```bash
//! gst-launch-1.0 filesrc location=samples/media/vtest.avi ! decodebin ! videoconvert \
//!     ! vigilinfer model=nanodet ! vigiltrack ! vigilosd line-width=3 font-scale=1 \
//!     ! videoconvert ! autovideosink
//! ```
//!
//! The drawing itself lives in [`vigil_core::draw`], which has no GStreamer dependency.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `vigilosd` overlay element.
    pub struct VigilOsd(ObjectSubclass<imp::VigilOsd>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers `vigilosd` with `plugin` (rank none: it is only ever used explicitly).
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vigilosd",
        gst::Rank::NONE,
        VigilOsd::static_type(),
    )
}
