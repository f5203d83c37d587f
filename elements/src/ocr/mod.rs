//! `vigilocr`: reads the text of each frame (or of objects in it) with PP-OCR models
//! (`vigil_core::ocr`: detection → direction classification → recognition) and appends one
//! `text` object per line to the frame's `VigilMeta` (created when absent).
//!
//! Each line is an object with label `text`, `text` set, `confidence` = the recognition score,
//! `bbox` = the axis-aligned box of the text's quadrilateral in frame pixels, `model` = the
//! recognition model, and, with `operate-on-labels`, `parent` = the object it was read in (the
//! quadrilateral's corners are the attribute `quad` = `x1,y1,x2,y2,x3,y3,x4,y4`, top-left first,
//! clockwise, with the detection's box score as its confidence). The three models run through the
//! process-wide model server, so every element naming the same models shares their batchers; the
//! crops of one frame are all queued before waiting. Frames whose item has an error
//! (`FrameObjects.item.error`) pass untouched. Caps: packed RGB/BGR(x/A); put `videoconvert` before
//! it for other formats.
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 filesrc location=samples/media/box.png ! pngdec ! \
//!     videoconvert ! video/x-raw,format=RGB ! imagefreeze num-buffers=1 ! \
//!     vigilocr model-repository=models ! fakesink
//! ```
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct VigilOcr(ObjectSubclass<imp::VigilOcr>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vigilocr",
        gst::Rank::NONE,
        VigilOcr::static_type(),
    )
}
