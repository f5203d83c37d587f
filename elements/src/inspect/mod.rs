//! `vigilinspect`: industrial inspection of items against rules from a YAML file.
//!
//! Each buffer is one item (an image of `vigilimagesrc`, or a video frame). The item's text objects
//! (OCR results of `vigilocr` in [`VigilMeta`](crate::meta::VigilMeta)) are checked against the
//! `rules` ([`vigil_core::inspect`], reference in `docs/inspection.md`): the verdict (PASS/FAIL), every
//! failed rule with its evidence and the extracted fields are written to the meta's `inspection`, so they
//! reach `vigilosd` (banner and evidence boxes) and the JSON events. An item whose meta carries
//! `item.error` fails with rule `item-error`. Frames without meta are inspected as items with no text.
//! Frames of video sources (no `item` in the meta) get the item id `<source-name>-<frame>`.
//!
//! Per item, an element message `vigil-inspection` is posted on the bus with `id` (string), `verdict`
//! (`PASS`/`FAIL`), `failed-rules` (comma-separated rule names), `failures` (JSON array of the findings)
//! and the running `items`, `passed`, `failed` (u64). The read-only properties `items`, `passed`,
//! `failed` and `summary` (JSON: items, passed, failed, failures_by_rule) give the running summary.
//!
//! With `snapshot-dir`, each FAIL item is written as `<dir>/<item id>.jpg` with the verdict drawn on it.
//! Drawing and encoding run on a writer thread fed through a bounded queue (`snapshot-queue`); when
//! it is full the snapshot is dropped and counted (`snapshots-dropped`), so the streaming thread never
//! waits on the disk. Snapshots still queued are written at `stop()`.
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 -m filesrc location=label.png ! pngdec ! videoconvert ! \
//!     vigilocr ! vigilinspect rules=rules.yaml snapshot-dir=/tmp/failed ! \
//!     vigilosd ! videoconvert ! pngenc ! filesink location=judged.png
//! ```
use gst::glib;
use gst::prelude::*;

mod imp;

/// Name of the element message posted per item.
pub const INSPECTION_MESSAGE: &str = "vigil-inspection";

glib::wrapper! {
    /// The `vigilinspect` element.
    pub struct VigilInspect(ObjectSubclass<imp::VigilInspect>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers `vigilinspect` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vigilinspect",
        gst::Rank::NONE,
        VigilInspect::static_type(),
    )
}
