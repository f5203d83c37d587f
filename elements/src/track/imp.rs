use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use vigil_core::tracker::{self, Tracker, TrackerKind, TrackerParams};

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
    params: TrackerParams,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tracker: TrackerKind::default().as_str().into(),
            params: TrackerParams::default(),
        }
    }
}

impl Settings {
    fn build(&self) -> Result<Box<dyn Tracker>, String> {
        let kind: TrackerKind = self.tracker.parse()?;
        Ok(tracker::build(kind, &self.params))
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
            let p = &d.params;
            vec![
                glib::ParamSpecString::builder("tracker")
                    .nick("Tracker")
                    .blurb(
                        "Tracking algorithm: iou (greedy IoU association with constant-velocity prediction), \
                         sort (Kalman filter and optimal IoU assignment), bytetrack (SORT plus a second \
                         association of low-confidence detections), ocsort (observation-centric SORT: \
                         direction-aware association, recovery on the last observed box and re-update after \
                         occlusion, with ByteTrack's low-confidence association)",
                    )
                    .default_value(Some(d.tracker.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("iou-threshold")
                    .nick("IoU threshold")
                    .blurb(
                        "Minimum overlap between a track's predicted box and a detection to associate them \
                         (bytetrack: of its first association, of high-confidence detections; the ByteTrack \
                         paper uses 0.2)",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(p.iou_threshold)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-age")
                    .nick("Maximum age")
                    .blurb(
                        "Inferred frames a track is kept without a matching detection before it is removed \
                         (iou, sort, ocsort; bytetrack uses track-buffer)",
                    )
                    .default_value(p.max_age)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("track-buffer")
                    .nick("Track buffer")
                    .blurb("bytetrack: inferred frames a lost track is kept to be found again")
                    .default_value(p.track_buffer)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("min-hits")
                    .nick("Minimum hits")
                    .blurb(
                        "Matched detections in a row before a track is confirmed and gets an id (tracks of \
                         the first frame get one at once); 0 = the tracker's default: iou 1, sort 3, \
                         bytetrack 2, ocsort 3",
                    )
                    .default_value(p.min_hits)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("track-thresh")
                    .nick("Track threshold")
                    .blurb(
                        "bytetrack, ocsort: detections with at least this confidence are high-confidence \
                         ones, associated first; lower ones only keep existing tracks alive",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(p.track_thresh)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("low-thresh")
                    .nick("Low threshold")
                    .blurb(
                        "bytetrack, ocsort: detections at or below this confidence are ignored (vigilinfer's \
                         threshold must be as low for them to reach the tracker)",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(p.low_thresh)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("new-track-thresh")
                    .nick("New track threshold")
                    .blurb("bytetrack, ocsort: minimum confidence of an unmatched detection to start a track")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(p.new_track_thresh)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("match-class")
                    .nick("Match class")
                    .blurb("Associate detections only with tracks of the same class")
                    .default_value(p.match_class)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("coast-frames")
                    .nick("Coast frames")
                    .blurb(
                        "Inferred frames in a row a confirmed track that missed its detection is still \
                         reported at its predicted box (the object's predicted=true and \
                         since-detection in the meta and events; vigilosd draws it dashed; \
                         vigilanalytics counts a line it crosses meanwhile); 0 = detections only; \
                         -1 = the tracker's default: iou 0, sort 1, bytetrack 2, ocsort 1",
                    )
                    .minimum(-1)
                    .maximum(1000)
                    .default_value(-1)
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
            "iou-threshold" => s.params.iou_threshold = value.get().unwrap(),
            "max-age" => s.params.max_age = value.get().unwrap(),
            "track-buffer" => s.params.track_buffer = value.get().unwrap(),
            "min-hits" => s.params.min_hits = value.get().unwrap(),
            "track-thresh" => s.params.track_thresh = value.get().unwrap(),
            "low-thresh" => s.params.low_thresh = value.get().unwrap(),
            "new-track-thresh" => s.params.new_track_thresh = value.get().unwrap(),
            "match-class" => s.params.match_class = value.get().unwrap(),
            "coast-frames" => {
                s.params.coast_frames = u32::try_from(value.get::<i32>().unwrap()).ok();
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "tracker" => s.tracker.to_value(),
            "iou-threshold" => s.params.iou_threshold.to_value(),
            "max-age" => s.params.max_age.to_value(),
            "track-buffer" => s.params.track_buffer.to_value(),
            "min-hits" => s.params.min_hits.to_value(),
            "track-thresh" => s.params.track_thresh.to_value(),
            "low-thresh" => s.params.low_thresh.to_value(),
            "new-track-thresh" => s.params.new_track_thresh.to_value(),
            "match-class" => s.params.match_class.to_value(),
            "coast-frames" => s
                .params
                .coast_frames
                .map_or(-1, |c| i32::try_from(c).unwrap_or(i32::MAX))
                .to_value(),
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
            crate::pads::filter_templates(&caps)
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
            state.tracker.track(&mut frame.objects);
        } else {
            // Objects of other origins (none for now) stay; the tracks' predictions are appended.
            frame.objects.retain(|o| o.track_id.is_none());
            let predicted = state.tracker.predict();
            frame.objects.extend(predicted);
            frame.renumber();
        }
        // Predicted boxes inside the frame; those of objects leaving the view dropped.
        let (w, h, all) = (frame.width, frame.height, !frame.inferred);
        tracker::keep_in_frame(&mut frame.objects, w, h, all);
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
