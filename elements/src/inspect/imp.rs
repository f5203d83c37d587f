//! Implementation of `vigilinspect`; see the [module docs](super).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use vigil_core::draw::{InspectionStyle, PixelFormat};
use vigil_core::inspect::snapshot::Snapshot;
use vigil_core::inspect::{Inspector, Rules, Summary};
use vigil_core::objects::{FrameObjects, ItemInfo, Verdict};

use crate::meta::VigilMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigilinspect",
        gst::DebugColorFlags::empty(),
        Some("Vigil inspection rules"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    rules: String,
    snapshot_dir: String,
    source_name: String,
    snapshot_queue: u32,
    snapshot_quality: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rules: String::new(),
            snapshot_dir: String::new(),
            source_name: "stream".into(),
            snapshot_queue: 16,
            snapshot_quality: 90,
        }
    }
}

/// Counters of the snapshot writer (kept across restarts of the element's state).
#[derive(Debug, Default)]
struct SnapshotCounters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

struct Writer {
    tx: SyncSender<Snapshot>,
    thread: std::thread::JoinHandle<()>,
}

struct State {
    inspector: Inspector,
    info: Option<gst_video::VideoInfo>,
    writer: Option<Writer>,
    /// Frames seen, for frames without a meta.
    frames: u64,
}

#[derive(Default)]
pub struct VigilInspect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    summary: Mutex<Summary>,
    snapshots: Arc<SnapshotCounters>,
}

fn pixel_format(format: gst_video::VideoFormat) -> Option<PixelFormat> {
    use gst_video::VideoFormat as F;
    Some(match format {
        F::Rgba => PixelFormat::Rgba,
        F::Bgra => PixelFormat::Bgra,
        F::Rgbx => PixelFormat::Rgbx,
        F::Bgrx => PixelFormat::Bgrx,
        F::Rgb => PixelFormat::Rgb,
        F::Bgr => PixelFormat::Bgr,
        F::I420 => PixelFormat::I420,
        F::Nv12 => PixelFormat::Nv12,
        _ => return None,
    })
}

impl VigilInspect {
    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn summary(&self) -> std::sync::MutexGuard<'_, Summary> {
        self.summary.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the snapshot writer thread for `dir`.
    fn start_writer(&self, dir: PathBuf, settings: &Settings) -> Result<Writer, gst::ErrorMessage> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                [
                    "property 'snapshot-dir': cannot create {}: {}",
                    dir.display(),
                    e
                ]
            )
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Snapshot>(settings.snapshot_queue as usize);
        let counters = self.snapshots.clone();
        let quality = settings.snapshot_quality.clamp(1, 100) as u8;
        let element = self.obj().downgrade();
        let thread = std::thread::Builder::new()
            .name("vigilinspect-snapshots".into())
            .spawn(move || {
                let style = InspectionStyle::default();
                for snap in rx {
                    match snap.write(&dir, quality, &style) {
                        Ok(path) => {
                            counters.written.fetch_add(1, Ordering::Relaxed);
                            gst::debug!(CAT, "snapshot {}", path.display());
                        }
                        Err(e) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            let msg = format!("snapshot of item '{}': {e}", snap.item_id);
                            gst::warning!(CAT, "{msg}");
                            if let Some(obj) = element.upgrade() {
                                let _ = obj.post_message(
                                    gst::message::Warning::builder(gst::ResourceError::Write, &msg)
                                        .src(&obj)
                                        .build(),
                                );
                            }
                        }
                    }
                }
            })
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ["cannot start the snapshot writer thread: {}", e]
                )
            })?;
        Ok(Writer { tx, thread })
    }

    /// An owned copy of the buffer's image, for the writer thread.
    fn snapshot(
        &self,
        buf: &gst::BufferRef,
        info: &gst_video::VideoInfo,
        item_id: &str,
        frame: &FrameObjects,
    ) -> Result<Snapshot, String> {
        let format = pixel_format(info.format())
            .ok_or_else(|| format!("unsupported format {:?}", info.format()))?;
        let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info)
            .map_err(|e| format!("cannot map the frame: {e}"))?;
        let n = vframe.n_planes();
        let mut planes = Vec::with_capacity(n as usize);
        let mut strides = Vec::with_capacity(n as usize);
        for p in 0..n {
            planes.push(
                vframe
                    .plane_data(p)
                    .map_err(|e| format!("plane {p}: {e}"))?
                    .to_vec(),
            );
            let stride = vframe.plane_stride()[p as usize];
            strides.push(usize::try_from(stride).map_err(|_| format!("negative stride {stride}"))?);
        }
        Ok(Snapshot {
            item_id: item_id.to_string(),
            format,
            width: vframe.width(),
            height: vframe.height(),
            planes,
            strides,
            inspection: frame.inspection.clone().unwrap_or_default(),
            frame_width: frame.width,
            frame_height: frame.height,
        })
    }
}

#[glib::object_subclass]
impl ObjectSubclass for VigilInspect {
    const NAME: &'static str = "GstVigilInspect";
    type Type = super::VigilInspect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for VigilInspect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("rules")
                    .nick("Rules file")
                    .blurb(
                        "Path of the inspection rules YAML (fields, rules, lookups, regions; see \
                         docs/inspection.md); lookup files are relative to it. Required",
                    )
                    .default_value(Some(d.rules.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("snapshot-dir")
                    .nick("Snapshot folder")
                    .blurb(
                        "Folder for a JPEG of every FAIL item (<item id>.jpg, verdict drawn on it), \
                         created when missing; empty = no snapshots",
                    )
                    .default_value(Some(d.snapshot_dir.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("source-name")
                    .nick("Source name")
                    .blurb(
                        "Name used in the item ids of frames whose meta has no item (video sources): \
                         <source-name>-<frame>",
                    )
                    .default_value(Some(d.source_name.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("snapshot-queue")
                    .nick("Snapshot queue")
                    .blurb(
                        "Snapshots waiting for the writer thread at most; more are dropped and counted \
                         in snapshots-dropped",
                    )
                    .minimum(1)
                    .maximum(1024)
                    .default_value(d.snapshot_queue)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("snapshot-quality")
                    .nick("Snapshot quality")
                    .blurb("JPEG quality of the snapshots (1-100)")
                    .minimum(1)
                    .maximum(100)
                    .default_value(d.snapshot_quality)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("items")
                    .nick("Items")
                    .blurb("Items inspected since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("passed")
                    .nick("Passed")
                    .blurb("Items with verdict PASS since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("failed")
                    .nick("Failed")
                    .blurb("Items with verdict FAIL since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("summary")
                    .nick("Summary")
                    .blurb(
                        "Running summary as JSON: items, passed, failed and failures_by_rule (failed \
                         items per rule name)",
                    )
                    .default_value(Some(""))
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("snapshots-written")
                    .nick("Snapshots written")
                    .blurb("Snapshot JPEGs written by the writer thread")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("snapshots-dropped")
                    .nick("Snapshots dropped")
                    .blurb(
                        "FAIL items without a snapshot: the writer's queue was full, the frame could \
                         not be read, or writing failed (posted as a warning)",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings();
        let text = || value.get::<Option<String>>().unwrap().unwrap_or_default();
        match pspec.name() {
            "rules" => s.rules = text(),
            "snapshot-dir" => s.snapshot_dir = text(),
            "source-name" => s.source_name = text(),
            "snapshot-queue" => s.snapshot_queue = value.get().unwrap(),
            "snapshot-quality" => s.snapshot_quality = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "rules" => self.settings().rules.to_value(),
            "snapshot-dir" => self.settings().snapshot_dir.to_value(),
            "source-name" => self.settings().source_name.to_value(),
            "snapshot-queue" => self.settings().snapshot_queue.to_value(),
            "snapshot-quality" => self.settings().snapshot_quality.to_value(),
            "items" => self.summary().items.to_value(),
            "passed" => self.summary().passed.to_value(),
            "failed" => self.summary().failed.to_value(),
            "summary" => serde_json::to_string(&*self.summary())
                .unwrap_or_default()
                .to_value(),
            "snapshots-written" => self.snapshots.written.load(Ordering::Relaxed).to_value(),
            "snapshots-dropped" => (self.snapshots.dropped.load(Ordering::Relaxed)
                + self.snapshots.failed.load(Ordering::Relaxed))
            .to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for VigilInspect {}

impl ElementImpl for VigilInspect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil inspection",
                "Filter/Analyzer/Video",
                "Checks the text read on each item against rules from YAML and writes PASS or FAIL with \
                 every failed rule and its evidence into VigilMeta; snapshots of failed items",
                "The Vigil developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::pads::video_filter_templates(crate::pads::CANVAS_FORMATS));
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for VigilInspect {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings().clone();
        if settings.rules.trim().is_empty() {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ["property 'rules': no rules file set (a YAML file with fields and rules)"]
            ));
        }
        let rules = Rules::load(std::path::Path::new(settings.rules.trim())).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ["property 'rules': {}", e])
        })?;
        let writer = match settings.snapshot_dir.trim() {
            "" => None,
            dir => Some(self.start_writer(PathBuf::from(dir), &settings)?),
        };
        gst::debug!(
            CAT,
            imp = self,
            "started: {} fields, {} rules",
            rules.fields.len(),
            rules.rules.len()
        );
        *self.summary() = Summary::default();
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
            inspector: Inspector::new(rules),
            info: None,
            writer,
            frames: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Writer { tx, thread }) = state.and_then(|s| s.writer) {
            // Ends the writer's loop once the queued snapshots are written.
            drop(tx);
            if thread.join().is_err() {
                gst::error!(CAT, imp = self, "the snapshot writer thread panicked");
            }
        }
        gst::info!(CAT, imp = self, "summary: {}", *self.summary());
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid video caps {incaps}"))?;
        if let Some(state) = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            state.info = Some(info);
        }
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let source_name = self.settings().source_name.clone();
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::StateChange,
                ["vigilinspect is not started"]
            );
            return Err(gst::FlowError::Error);
        };
        let mut frame = match buf.meta::<VigilMeta>() {
            Some(m) => m.frame().clone(),
            None => {
                let (w, h) = state
                    .info
                    .as_ref()
                    .map_or((0, 0), |i| (i.width(), i.height()));
                let mut f = FrameObjects::new(w, h);
                f.frame = state.frames;
                f
            }
        };
        state.frames += 1;
        let item_id = match &frame.item {
            Some(item) => item.id.clone(),
            None => {
                let id = format!("{source_name}-{}", frame.frame);
                frame.item = Some(ItemInfo {
                    id: id.clone(),
                    ..Default::default()
                });
                id
            }
        };
        let inspection = state.inspector.inspect(&frame);
        let verdict = inspection.verdict;
        let failed_rules = inspection
            .failures
            .iter()
            .map(|f| f.rule.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let failures_json = serde_json::to_string(&inspection.failures).unwrap_or_default();
        frame.inspection = Some(inspection);

        if verdict == Verdict::Fail
            && let Some(writer) = &state.writer
        {
            let snap = match &state.info {
                Some(info) => self.snapshot(buf, info, &item_id, &frame),
                None => Err("no caps".to_string()),
            };
            match snap {
                Ok(s) => match writer.tx.try_send(s) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                        self.snapshots.dropped.fetch_add(1, Ordering::Relaxed);
                        gst::debug!(CAT, imp = self, "snapshot queue full: '{item_id}' dropped");
                    }
                },
                Err(e) => {
                    self.snapshots.dropped.fetch_add(1, Ordering::Relaxed);
                    gst::warning!(CAT, imp = self, "no snapshot of '{item_id}': {e}");
                }
            }
        }
        drop(guard);

        let (items, passed, failed) = {
            let mut s = self.summary();
            s.add(frame.inspection.as_ref().expect("set above"));
            (s.items, s.passed, s.failed)
        };
        gst::debug!(
            CAT,
            imp = self,
            "item '{item_id}': {verdict:?} {failed_rules}"
        );
        match buf.meta_mut::<VigilMeta>() {
            Some(mut meta) => {
                let f = meta.frame_mut();
                f.item = frame.item;
                f.inspection = frame.inspection;
            }
            None => {
                VigilMeta::add(buf, frame);
            }
        }
        let s = gst::Structure::builder(super::INSPECTION_MESSAGE)
            .field("id", item_id)
            .field(
                "verdict",
                if verdict == Verdict::Pass {
                    "PASS"
                } else {
                    "FAIL"
                },
            )
            .field("failed-rules", failed_rules)
            .field("failures", failures_json)
            .field("items", items)
            .field("passed", passed)
            .field("failed", failed)
            .build();
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
        Ok(gst::FlowSuccess::Ok)
    }
}
