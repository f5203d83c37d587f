//! Vigil's GStreamer plugin: `vigilinfer` (model inference), `vigiltrack` (multi-object tracking),
//! `vigilanalytics` (line crossing and zones), `vigilocr` (text reading), `vigilinspect` (inspection
//! rules, PASS/FAIL), `vigilosd` (overlay), `vigilmsgbroker` (event publishing) and `vigilimagesrc`
//! (image files as inspection items), exchanging [`meta::VigilMeta`]. This file only registers them.
#![allow(clippy::non_send_fields_in_send_ty, unused_doc_comments)]

pub mod analytics;
mod frames;
pub mod imagesrc;
pub mod infer;
pub mod inspect;
pub mod meta;
pub mod msgbroker;
pub mod ocr;
pub mod osd;
mod pads;
pub mod source;
pub mod track;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    infer::register(plugin)?;
    track::register(plugin)?;
    analytics::register(plugin)?;
    inspect::register(plugin)?;
    osd::register(plugin)?;
    source::register(plugin)?;
    msgbroker::register(plugin)?;
    ocr::register(plugin)?;
    imagesrc::register(plugin)?;
    Ok(())
}

use gst::glib;

gst::plugin_define!(
    vigil,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
