use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use vigil_core::analytics::{Analytics, AnalyticsConfig, Anchor, config};

use crate::meta::VigilMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigilanalytics",
        gst::DebugColorFlags::empty(),
        Some("Vigil line and zone analytics"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    config: String,
    rules: String,
    anchor: String,
    hysteresis: f32,
    forget_after: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config: String::new(),
            rules: String::new(),
            anchor: Anchor::default().as_str().into(),
            hysteresis: config::DEFAULT_HYSTERESIS,
            forget_after: config::DEFAULT_FORGET_AFTER,
        }
    }
}

impl Settings {
    /// Reads and checks the rules; errors name the property, the file and the key.
    fn build(&self) -> Result<Analytics, String> {
        let (what, text) = match (self.config.trim(), self.rules.trim()) {
            ("", "") => {
                return Err(
                    "no rules: set 'config' (a YAML/JSON file) or 'rules' (inline YAML/JSON) \
                     with lines and/or zones"
                        .into(),
                );
            }
            (path, "") => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("property 'config': cannot read {path}: {e}"))?;
                (format!("property 'config': {path}"), text)
            }
            ("", rules) => ("property 'rules'".to_string(), rules.to_string()),
            _ => return Err("set either 'config' or 'rules', not both".into()),
        };
        let mut cfg: AnalyticsConfig = if text.trim().is_empty() {
            AnalyticsConfig::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!("line {} column {}: ", l.line(), l.column()))
                    .unwrap_or_default();
                format!("{what}: {at}{}", e.to_string().replace('\n', " "))
            })?
        };
        if cfg.is_empty() {
            return Err(format!("{what}: no lines and no zones"));
        }
        let anchor: Anchor = self
            .anchor
            .parse()
            .map_err(|e| format!("property 'anchor': {e}"))?;
        cfg.anchor.get_or_insert(anchor);
        cfg.hysteresis.get_or_insert(self.hysteresis);
        cfg.forget_after.get_or_insert(self.forget_after);
        Analytics::new(&cfg).map_err(|e| format!("{what}: {e}"))
    }
}

struct State {
    analytics: Analytics,
    /// Stream time of the previous frame, for frames without a timestamp.
    last_t: f64,
}

#[derive(Default)]
pub struct VigilAnalytics {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for VigilAnalytics {
    const NAME: &'static str = "GstVigilAnalytics";
    type Type = super::VigilAnalytics;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for VigilAnalytics {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("config")
                    .nick("Config file")
                    .blurb(
                        "Path of a YAML or JSON file with 'lines' and 'zones' (and optionally 'anchor', \
                         'hysteresis', 'forget_after'), in the schema of the pipeline config's \
                         sources[i].analytics; empty = use 'rules'",
                    )
                    .default_value(Some(d.config.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("rules")
                    .nick("Inline rules")
                    .blurb(
                        "The same rules as inline YAML or JSON, e.g. \
                         \"{lines: [{name: door, points: [[200, 170], [200, 340]], in_direction: right}]}\"; \
                         empty = use 'config'",
                    )
                    .default_value(Some(d.rules.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("anchor")
                    .nick("Anchor")
                    .blurb(
                        "Point of each box tested against lines and zones: bottom-center, center or \
                         top-center (the rules' 'anchor' overrides it)",
                    )
                    .default_value(Some(d.anchor.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("hysteresis")
                    .nick("Hysteresis")
                    .blurb(
                        "Margin in pixels: a track is on a side of a line only when its anchor is farther \
                         than this from it, and leaves a zone only when this far outside (the rules' \
                         'hysteresis' overrides it)",
                    )
                    .minimum(0.0)
                    .maximum(10000.0)
                    .default_value(d.hysteresis)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("forget-after")
                    .nick("Forget after")
                    .blurb(
                        "Frames a track may be unseen before it is forgotten; a forgotten track inside a \
                         zone exits it (the rules' 'forget_after' overrides it)",
                    )
                    .default_value(d.forget_after)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        match pspec.name() {
            "config" => s.config = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "rules" => s.rules = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "anchor" => s.anchor = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "hysteresis" => s.hysteresis = value.get().unwrap(),
            "forget-after" => s.forget_after = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        match pspec.name() {
            "config" => s.config.to_value(),
            "rules" => s.rules.to_value(),
            "anchor" => s.anchor.to_value(),
            "hysteresis" => s.hysteresis.to_value(),
            "forget-after" => s.forget_after.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for VigilAnalytics {}

impl ElementImpl for VigilAnalytics {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil analytics",
                "Filter/Analyzer/Video",
                "Counts tracked objects crossing lines (per label and direction) and follows zones \
                 (occupancy, entries, exits, overcrowding, dwell time) into VigilMeta",
                "The Vigil developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("video/x-raw").build();
            crate::pads::filter_templates(&caps)
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for VigilAnalytics {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let analytics = settings
            .build()
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ["{}", e]))?;
        gst::debug!(CAT, imp = self, "started");
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
            analytics,
            last_t: 0.0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if matches!(
            event.view(),
            gst::EventView::FlushStop(_) | gst::EventView::StreamStart(_)
        ) && let Some(state) = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            gst::debug!(CAT, imp = self, "new stream or flush: counts reset");
            state.analytics.reset();
            state.last_t = 0.0;
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (pts, duration) = (buf.pts(), buf.duration());
        let Some(mut meta) = buf.meta_mut::<VigilMeta>() else {
            gst::trace!(CAT, imp = self, "no VigilMeta, passing through");
            return Ok(gst::FlowSuccess::Ok);
        };
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::StateChange,
                ["vigilanalytics is not started"]
            );
            return Err(gst::FlowError::Error);
        };
        let t = match pts {
            Some(p) => p.nseconds() as f64 / 1e9,
            None => state.last_t + duration.map_or(0.0, |d| d.nseconds() as f64 / 1e9),
        };
        state.last_t = t;
        let frame = meta.frame_mut();
        let results = state.analytics.process(&mut frame.objects, t);
        if !results.events.is_empty() {
            gst::debug!(
                CAT,
                imp = self,
                "frame {}: {} events",
                frame.frame,
                results.events.len()
            );
        }
        frame.analytics = Some(results);
        Ok(gst::FlowSuccess::Ok)
    }
}
