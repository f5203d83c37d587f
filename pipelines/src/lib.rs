//! `vigil`: declarative YAML video-analytics pipelines on GStreamer.
//!
//! `vigil run CONFIG.yaml` reads a [`config::Config`], validates it up front ([`config::Config::validate`]
//! gives a [`config::Plan`]: media exist, the model loads, classes exist, outputs can be written), builds
//! `vigilsrc ! videoconvert ! vigilinfer ! vigiltrack ! vigilosd ! tee` per source with RTSP, MP4 and
//! JSON-lines event outputs, and runs it ([`pipeline::run`]) until the sources end or it is stopped.
//!
//! The same is available in-process:
//!
//! ```no_run
//! use std::path::Path;
//! let plan = vigil::config::Config::load_and_validate(Path::new("configs/traffic.yaml"))?;
//! let summary = vigil::pipeline::run(&plan, &vigil::pipeline::RunOptions::default())?;
//! println!("{summary}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod events;
pub mod metrics;
mod model;
pub mod models_cli;
pub mod pipeline;
pub mod quantize;
pub mod rtsp;
pub mod serve;
pub mod shard;
mod signals;
pub mod stats;

pub use config::{Config, ConfigError, Plan};
pub use pipeline::{RunError, RunOptions, StopHandle, run};
pub use stats::Summary;
