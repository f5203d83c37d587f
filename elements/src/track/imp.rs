use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use vigil_core::tracker::{IouTracker, IouTrackerConfig, Tracker};

use crate::meta::VigilMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigiltrack",
        gst::DebugColorFlags::empty(),
        Some("Vigil tracker element"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    tracker: String,
    iou_threshold: f32,
    max_age: u32,
    min_hits: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let d = IouTrackerConfig::default();
        Self {
            tracker: "iou".into(),
            iou_threshold: d.iou_threshold,
            max_age: d.max_age,
            min_hits: d.min_hits,
        }
    }
}

impl Settings {
    fn build(&self) -> Result<Box<dyn Tracker>, String> {
        match self.tracker.as_str() {
            "iou" => Ok(Box::new(IouTracker::new(IouTrackerConfig {
                iou_threshold: self.iou_threshold,
                max_age: self.max_age,
                min_hits: self.min_hits,
                ..Default::default()
            }))),
            other => Err(format!("tracker '{other}' is not known (available: iou)")),
        }
    }
}

struct State {
    tracker: Box<dyn Tracker>,
}

#[derive(Default)]
pub struct VigilTrack {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for VigilTrack {
    const NAME: &'static str = "GstVigilTrack";
    type Type = super::VigilTrack;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for VigilTrack {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("tracker")
                    .nick("Tracker")
                    .blurb("Tracking algorithm: iou (greedy IoU association with constant-velocity prediction)")
                    .default_value(Some(d.tracker.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("iou-threshold")
                    .nick("IoU threshold")
                    .blurb("Minimum overlap between a track's predicted box and a detection to associate them")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.iou_threshold)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-age")
                    .nick("Maximum age")
                    .blurb("Frames a track is kept without a matching detection before it is removed")
                    .default_value(d.max_age)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("min-hits")
                    .nick("Minimum hits")
                    .blurb("Matched detections before a track gets an id (1 = at once)")
                    .minimum(1)
                    .default_value(d.min_hits)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "tracker" => s.tracker = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "iou-threshold" => s.iou_threshold = value.get().unwrap(),
            "max-age" => s.max_age = value.get().unwrap(),
            "min-hits" => s.min_hits = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "tracker" => s.tracker.to_value(),
            "iou-threshold" => s.iou_threshold.to_value(),
            "max-age" => s.max_age.to_value(),
            "min-hits" => s.min_hits.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for VigilTrack {}

impl ElementImpl for VigilTrack {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil tracker",
                "Filter/Analyzer/Video",
                "Assigns stable track ids to the objects in VigilMeta and predicts them on frames inference skipped",
                "The Vigil developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl VigilTrack {
    fn reset(&self) -> Result<(), String> {
        let tracker = self.settings.lock().unwrap().build()?;
        *self.state.lock().unwrap() = Some(State { tracker });
        Ok(())
    }
}

impl BaseTransformImpl for VigilTrack {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.reset().map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ["property 'tracker': {}", e])
        })
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.state.lock().unwrap().take();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if matches!(
            event.view(),
            gst::EventView::FlushStop(_) | gst::EventView::StreamStart(_)
        ) {
            gst::debug!(CAT, imp = self, "new stream or flush: tracks reset");
            if let Err(e) = self.reset() {
                gst::element_imp_error!(self, gst::LibraryError::Settings, ["{}", e]);
            }
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(mut meta) = buf.meta_mut::<VigilMeta>() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::StateChange,
                ["vigiltrack is not started"]
            );
            return Err(gst::FlowError::Error);
        };
        let frame = meta.frame_mut();
        if frame.inferred {
            state.tracker.update(&mut frame.objects);
        } else {
            // Objects of other origins (none for now) stay; the tracks' predictions are appended.
            frame.objects.retain(|o| o.track_id.is_none());
            let predicted = state.tracker.predict();
            frame.objects.extend(predicted);
            frame.renumber();
        }
        gst::trace!(
            CAT,
            imp = self,
            "frame {}: {} objects",
            frame.frame,
            frame.objects.len()
        );
        Ok(gst::FlowSuccess::Ok)
    }
}
