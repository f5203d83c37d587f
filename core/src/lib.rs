//! Vigil's GStreamer-free cores: the object metadata model, detector specs and post-processing,
//! NMS, tracking, line and zone analytics, OCR, inspection rules and drawing, on top of the execution
//! engine (`vigil-engine`). Everything here is plain Rust with unit tests.

pub mod analytics;
pub mod backoff;
pub mod blur;
pub mod draw;
pub mod events;
pub mod homography;
pub mod inspect;
pub mod items;
pub mod modelspec;
pub mod objects;
pub mod ocr;
pub mod postprocess;
pub mod rng;
pub mod secondary;
pub mod timestamps;
pub mod tracker;
