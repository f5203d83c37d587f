//! Vigil's GStreamer-free cores: the object metadata model, the execution engine, pre/post-processing,
//! NMS, tracking, line and zone analytics, and drawing.
//! Everything here is plain Rust with unit tests.

pub mod analytics;
pub mod backoff;
pub mod blur;
pub mod draw;
pub mod engine;
pub mod events;
pub mod frame;
pub mod gpu;
pub mod inspect;
pub mod items;
pub mod modelspec;
pub mod objects;
pub mod ocr;
pub mod postprocess;
pub mod preprocess;
pub mod rng;
pub mod runtime;
pub mod secondary;
pub mod timestamps;
pub mod tracker;
