//! Implementation of `vigilosd`; see the [module docs](super).

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::BaseTransformMode;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;
use std::sync::{LazyLock, Mutex};
use vigil_core::analytics::{Anchor, Trails};
use vigil_core::blur::blur_box;
use vigil_core::draw::{AnalyticsStyle, Canvas, InspectionStyle, OverlayStyle, PixelFormat};

use crate::meta::VigilMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigilosd",
        gst::DebugColorFlags::empty(),
        Some("Vigil overlay"),
    )
});

const DEFAULT_DRAW_LABELS: bool = true;
const DEFAULT_DRAW_CONFIDENCE: bool = true;
const DEFAULT_DRAW_TRACK_IDS: bool = true;
const DEFAULT_LINE_WIDTH: u32 = 2;
const DEFAULT_FONT_SCALE: u32 = 2;
// Analytics overlay (lines, zones, counters, trails).
const DEFAULT_DRAW_LINES: bool = true;
const DEFAULT_DRAW_ZONES: bool = true;
const DEFAULT_DRAW_COUNTERS: bool = true;
const DEFAULT_DRAW_TRAILS: bool = false;
const DEFAULT_TRAIL_LENGTH: u32 = 30;
// Inspection overlay (`vigilinspect` verdict banner and evidence boxes).
const DEFAULT_DRAW_INSPECTION: bool = true;
/// Frames a track's trail survives without the track.
const TRAIL_KEEP_UNSEEN: u64 = 10;

#[derive(Debug, Clone)]
struct Settings {
    draw_labels: bool,
    draw_confidence: bool,
    draw_track_ids: bool,
    line_width: u32,
    font_scale: u32,
    /// Privacy mode: labels of objects whose boxes are blurred before drawing (comma separated).
    blur_labels: String,
    analytics: AnalyticsSettings,
    /// Draw the `vigilinspect` verdict banner and the failures' evidence boxes.
    draw_inspection: bool,
}

/// The analytics part of the overlay: `vigilanalytics` lines, zones, counters, and track trails.
#[derive(Debug, Clone)]
struct AnalyticsSettings {
    draw_lines: bool,
    draw_zones: bool,
    draw_counters: bool,
    draw_trails: bool,
    trail_length: u32,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            draw_lines: DEFAULT_DRAW_LINES,
            draw_zones: DEFAULT_DRAW_ZONES,
            draw_counters: DEFAULT_DRAW_COUNTERS,
            draw_trails: DEFAULT_DRAW_TRAILS,
            trail_length: DEFAULT_TRAIL_LENGTH,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            draw_labels: DEFAULT_DRAW_LABELS,
            draw_confidence: DEFAULT_DRAW_CONFIDENCE,
            draw_track_ids: DEFAULT_DRAW_TRACK_IDS,
            line_width: DEFAULT_LINE_WIDTH,
            font_scale: DEFAULT_FONT_SCALE,
            blur_labels: String::new(),
            analytics: AnalyticsSettings::default(),
            draw_inspection: DEFAULT_DRAW_INSPECTION,
        }
    }
}

impl Settings {
    fn style(&self) -> OverlayStyle {
        OverlayStyle {
            draw_labels: self.draw_labels,
            draw_confidence: self.draw_confidence,
            draw_track_ids: self.draw_track_ids,
            line_width: self.line_width,
            font_scale: self.font_scale,
        }
    }
}

#[derive(Default)]
pub struct VigilOsd {
    // Locks: `settings` and `trails` are never held together; the settings are copied once per
    // frame, then `trails` is taken alone.
    settings: Mutex<Settings>,
    /// Recent anchor positions per track (`draw-trails`).
    trails: Mutex<Trails>,
}

impl VigilOsd {
    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        // A poisoned lock only means another thread panicked mid-update of plain values.
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }
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

#[glib::object_subclass]
impl ObjectSubclass for VigilOsd {
    const NAME: &'static str = "GstVigilOsd";
    type Type = super::VigilOsd;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for VigilOsd {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            let mut props = vec![
                glib::ParamSpecBoolean::builder("draw-labels")
                    .nick("Draw labels")
                    .blurb("Show each object's class label in its label line")
                    .default_value(d.draw_labels)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-confidence")
                    .nick("Draw confidence")
                    .blurb("Show each object's confidence (two decimals) in its label line")
                    .default_value(d.draw_confidence)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-track-ids")
                    .nick("Draw track ids")
                    .blurb("Show '#<track id>' in the label line of tracked objects")
                    .default_value(d.draw_track_ids)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("line-width")
                    .nick("Line width")
                    .blurb("Thickness of the box outlines in pixels")
                    .minimum(1)
                    .maximum(32)
                    .default_value(d.line_width)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("font-scale")
                    .nick("Font scale")
                    .blurb("Integer scale of the 8x8 label font (glyphs are 8 x font-scale pixels)")
                    .minimum(1)
                    .maximum(8)
                    .default_value(d.font_scale)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("blur-labels")
                    .nick("Blur labels")
                    .blurb("Privacy mode: comma-separated labels (e.g. face) of objects whose boxes are blurred before anything is drawn (a blur with a radius of a quarter of the box's longer side; empty = none)")
                    .default_value(Some(d.blur_labels.as_str()))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-inspection")
                    .nick("Draw inspection")
                    .blurb("When the frame has a vigilinspect verdict: a PASS (green) or FAIL (red) banner across the top with the failed rule names, and the failures' evidence boxes outlined in red with their rule name")
                    .default_value(d.draw_inspection)
                    .mutable_playing()
                    .build(),
            ];
            props.extend(analytics_properties(&d.analytics));
            props
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings();
        match pspec.name() {
            "draw-labels" => {
                settings.draw_labels = value.get().expect("type checked upstream");
                gst::info!(CAT, imp = self, "draw-labels: {}", settings.draw_labels);
            }
            "draw-confidence" => {
                settings.draw_confidence = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "draw-confidence: {}",
                    settings.draw_confidence
                );
            }
            "draw-track-ids" => {
                settings.draw_track_ids = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "draw-track-ids: {}",
                    settings.draw_track_ids
                );
            }
            "line-width" => {
                settings.line_width = value.get().expect("type checked upstream");
                gst::info!(CAT, imp = self, "line-width: {}", settings.line_width);
            }
            "font-scale" => {
                settings.font_scale = value.get().expect("type checked upstream");
                gst::info!(CAT, imp = self, "font-scale: {}", settings.font_scale);
            }
            "blur-labels" => {
                settings.blur_labels = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                gst::info!(CAT, imp = self, "blur-labels: {}", settings.blur_labels);
            }
            "draw-inspection" => {
                settings.draw_inspection = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "draw-inspection: {}",
                    settings.draw_inspection
                );
            }
            name if set_analytics_property(&mut settings.analytics, name, value) => {
                gst::info!(CAT, imp = self, "{name}: {:?}", settings.analytics);
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings();
        match pspec.name() {
            "draw-labels" => settings.draw_labels.to_value(),
            "draw-confidence" => settings.draw_confidence.to_value(),
            "draw-track-ids" => settings.draw_track_ids.to_value(),
            "line-width" => settings.line_width.to_value(),
            "font-scale" => settings.font_scale.to_value(),
            "blur-labels" => settings.blur_labels.to_value(),
            "draw-inspection" => settings.draw_inspection.to_value(),
            name => analytics_property(&settings.analytics, name)
                .unwrap_or_else(|| unreachable!("unknown property {name}")),
        }
    }
}

impl GstObjectImpl for VigilOsd {}

impl ElementImpl for VigilOsd {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil overlay",
                "Filter/Effect/Video",
                "Draws the boxes, labels, confidences and track ids of Vigil object metadata onto video frames",
                "The Vigil developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::pads::video_filter_templates(crate::pads::CANVAS_FORMATS));
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for VigilOsd {
    const MODE: BaseTransformMode = BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;
}

impl VideoFilterImpl for VigilOsd {
    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(objects) = frame
            .buffer()
            .meta::<VigilMeta>()
            .map(|m| m.frame().clone())
        else {
            gst::trace!(CAT, imp = self, "no VigilMeta, passing through");
            return Ok(gst::FlowSuccess::Ok);
        };
        // The settings of this frame, read once (a property set meanwhile applies to the next).
        let (style, analytics_settings, draw_inspection, blur) = {
            let s = self.settings();
            let blur = blur_list(&s.blur_labels);
            (s.style(), s.analytics.clone(), s.draw_inspection, blur)
        };
        let inspection = objects.inspection.as_ref().filter(|_| draw_inspection);
        let trails = self.update_trails(&objects, &analytics_settings);
        if objects.objects.is_empty()
            && objects.analytics.is_none()
            && trails.is_empty()
            && inspection.is_none()
        {
            return Ok(gst::FlowSuccess::Ok);
        }

        let Some(format) = pixel_format(frame.format()) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["Unsupported format {:?}", frame.format()]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let (width, height) = (frame.width(), frame.height());
        let n_planes = frame.n_planes() as usize;
        let mut strides = [0usize; 4];
        for (dst, &src) in strides.iter_mut().zip(frame.plane_stride()).take(n_planes) {
            *dst = usize::try_from(src).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ["Negative stride {} in {:?} frame", src, format]
                );
                gst::FlowError::Error
            })?;
        }

        let planes = frame.planes_data_mut();
        let mut canvas =
            Canvas::new(format, width, height, planes, &strides[..n_planes]).map_err(|err| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ["Cannot draw on {}x{} frame: {}", width, height, err]
                );
                gst::FlowError::Error
            })?;
        if !blur.is_empty() {
            blur_objects(&mut canvas, &objects, &blur);
        }
        gst::trace!(CAT, imp = self, "drawing {} objects", objects.objects.len());
        canvas.draw_objects(&objects, &style);
        draw_analytics(&mut canvas, &objects, &analytics_settings, &style, &trails);
        if let Some(inspection) = inspection {
            // Last, so that the verdict banner stays readable above everything else.
            let istyle = InspectionStyle {
                line_width: style.line_width,
                font_scale: style.font_scale,
            };
            canvas.draw_inspection(inspection, objects.width, objects.height, &istyle);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// The labels of a `blur-labels` value.
fn blur_list(labels: &str) -> Vec<String> {
    labels
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Privacy mode: blurs the boxes of the objects labelled one of `labels` (boxes rescaled like
/// `Canvas::draw_objects` does when the meta's frame size differs from the canvas's).
fn blur_objects(
    canvas: &mut Canvas<'_>,
    frame: &vigil_core::objects::FrameObjects,
    labels: &[String],
) {
    let (sx, sy) = if frame.width > 0 && frame.height > 0 {
        (
            canvas.width() as f32 / frame.width as f32,
            canvas.height() as f32 / frame.height as f32,
        )
    } else {
        (1.0, 1.0)
    };
    for o in &frame.objects {
        if labels.contains(&o.label) {
            blur_box(canvas, &o.bbox.scaled(sx, sy), None);
        }
    }
}

// ---- Analytics overlay: lines, zones, counters (from `vigilanalytics`) and track trails. ----

fn analytics_properties(d: &AnalyticsSettings) -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecBoolean::builder("draw-lines")
            .nick("Draw lines")
            .blurb("Draw vigilanalytics counting lines with an arrow to their 'in' side and in/out totals")
            .default_value(d.draw_lines)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("draw-zones")
            .nick("Draw zones")
            .blurb("Draw vigilanalytics zone outlines (red when overcrowded) and their occupancy")
            .default_value(d.draw_zones)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("draw-counters")
            .nick("Draw counters")
            .blurb(
                "Draw the counters panel (top-left): in/out per line and label, occupancy, entries and \
                 exits per zone",
            )
            .default_value(d.draw_counters)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("draw-trails")
            .nick("Draw trails")
            .blurb("Draw each track's trail: its last trail-length box bottom-centre positions")
            .default_value(d.draw_trails)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("trail-length")
            .nick("Trail length")
            .blurb("Number of positions (frames) in a track's trail")
            .minimum(2)
            .maximum(1000)
            .default_value(d.trail_length)
            .mutable_playing()
            .build(),
    ]
}

/// Sets an analytics overlay property; false when `name` is not one.
fn set_analytics_property(s: &mut AnalyticsSettings, name: &str, value: &glib::Value) -> bool {
    match name {
        "draw-lines" => s.draw_lines = value.get().expect("type checked upstream"),
        "draw-zones" => s.draw_zones = value.get().expect("type checked upstream"),
        "draw-counters" => s.draw_counters = value.get().expect("type checked upstream"),
        "draw-trails" => s.draw_trails = value.get().expect("type checked upstream"),
        "trail-length" => s.trail_length = value.get().expect("type checked upstream"),
        _ => return false,
    }
    true
}

fn analytics_property(s: &AnalyticsSettings, name: &str) -> Option<glib::Value> {
    Some(match name {
        "draw-lines" => s.draw_lines.to_value(),
        "draw-zones" => s.draw_zones.to_value(),
        "draw-counters" => s.draw_counters.to_value(),
        "draw-trails" => s.draw_trails.to_value(),
        "trail-length" => s.trail_length.to_value(),
        _ => return None,
    })
}

impl VigilOsd {
    /// Records the frame's track positions and returns the trails to draw (none with `draw-trails`
    /// off, which also forgets them).
    fn update_trails(
        &self,
        objects: &vigil_core::objects::FrameObjects,
        s: &AnalyticsSettings,
    ) -> Vec<(u64, Vec<vigil_core::objects::Point>)> {
        let mut trails = self.trails.lock().unwrap_or_else(|e| e.into_inner());
        if !s.draw_trails {
            trails.clear();
            return Vec::new();
        }
        trails.set_length(s.trail_length as usize);
        trails.set_keep_unseen(TRAIL_KEEP_UNSEEN);
        trails.update(&objects.objects, Anchor::BottomCenter);
        trails.trails()
    }
}

fn analytics_style(s: &AnalyticsSettings, style: &OverlayStyle) -> AnalyticsStyle {
    AnalyticsStyle {
        draw_lines: s.draw_lines,
        draw_zones: s.draw_zones,
        draw_counters: s.draw_counters,
        line_width: style.line_width,
        font_scale: style.font_scale,
    }
}

/// Trails, zones, lines and the counters panel, drawn above the boxes so that their texts stay visible.
fn draw_analytics(
    canvas: &mut Canvas<'_>,
    objects: &vigil_core::objects::FrameObjects,
    s: &AnalyticsSettings,
    style: &OverlayStyle,
    trails: &[(u64, Vec<vigil_core::objects::Point>)],
) {
    canvas.draw_trails(trails, objects.width, objects.height, style.line_width);
    if let Some(a) = &objects.analytics {
        canvas.draw_analytics(a, objects.width, objects.height, &analytics_style(s, style));
    }
}
