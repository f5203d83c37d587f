//! Per-source counters: progress lines while running, the summary at the end, and the live
//! [`StreamSnapshot`]s behind the HTTP API (`GET /streams`, `GET /metrics`).
//!
//! Who fills what (the streaming threads call these; every method is cheap and lock-short):
//! - [`SourceStats::record`]: a frame left the analytics chain (frames out);
//! - [`SourceStats::record_input`]: a frame entered it (frames in, before any leaky queue);
//! - [`SourceStats::record_dropped`]: frames dropped (leaky queues, QoS);
//! - [`SourceStats::record_reconnect`]: the source reconnected;
//! - [`SourceStats::record_latency`]: end-to-end latency of one frame (source to output);
//! - [`SourceStats::set_state`]: the stream's [`StreamState`].

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vigil_core::objects::{FrameAnalytics, FrameObjects};
use vigil_engine::Histogram;

/// Frames per second are measured over this trailing window.
pub const FPS_WINDOW: Duration = Duration::from_secs(2);

/// The life-cycle state of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamState {
    /// Built, not yet producing frames.
    #[default]
    Starting,
    /// Frames flow.
    Playing,
    /// The source was lost; reconnecting.
    Reconnecting,
    /// The source ended (end-of-stream).
    Ended,
    /// The stream failed.
    Error,
    /// Stopped on request.
    Stopped,
}

impl StreamState {
    pub const ALL: [StreamState; 6] = [
        StreamState::Starting,
        StreamState::Playing,
        StreamState::Reconnecting,
        StreamState::Ended,
        StreamState::Error,
        StreamState::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Playing => "playing",
            StreamState::Reconnecting => "reconnecting",
            StreamState::Ended => "ended",
            StreamState::Error => "error",
            StreamState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live snapshot of one stream, for the API.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSnapshot {
    pub name: String,
    pub uri: String,
    pub state: StreamState,
    pub frames_in: u64,
    /// Frames out of the analytics chain (what [`SourceStats::record`] counts).
    pub frames_out: u64,
    pub dropped: u64,
    pub reconnects: u64,
    /// Frames the source stamped itself (no timestamp from the decoder, or not after the previous one).
    pub timestamps_repaired: u64,
    /// Frames that passed without the model's detections because no inference server answered.
    pub not_inferred: u64,
    /// Over the last [`FPS_WINDOW`].
    pub fps: f64,
    /// End-to-end latency per frame (buckets [`vigil_engine::TIME_BUCKETS_US`]).
    pub latency: Histogram,
    /// Inspection counts (streams with `inspection`).
    pub inspection: Option<vigil_core::inspect::Summary>,
}

#[derive(Debug, Default)]
struct Counters {
    frames: u64,
    objects: u64,
    per_class: BTreeMap<String, u64>,
    tracks: HashSet<u64>,
    // At the last progress line.
    last_frames: u64,
    last_objects: u64,
    last_at: Option<Instant>,
    last_frame_at: Option<Instant>,
    // For the API.
    frames_in: u64,
    dropped: u64,
    reconnects: u64,
    timestamps_repaired: u64,
    not_inferred: u64,
    state: StreamState,
    latency: Histogram,
    /// Times of the frames within the last [`FPS_WINDOW`].
    recent: VecDeque<Instant>,
    /// The latest analytics results (cumulative line counts, zone entries and exits).
    analytics: Option<FrameAnalytics>,
    /// Items judged by `vigilinspect` (frames with `inspection`).
    inspection: Option<vigil_core::inspect::Summary>,
}

/// Counters of one source, updated from its streaming thread.
#[derive(Debug)]
pub struct SourceStats {
    pub name: String,
    /// The source URI (empty when not given).
    pub uri: String,
    started: Instant,
    inner: Mutex<Counters>,
}

impl SourceStats {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            uri: String::new(),
            started: Instant::now(),
            inner: Mutex::new(Counters::default()),
        }
    }

    /// Counters of the source `name` reading `uri`.
    pub fn with_uri(name: &str, uri: &str) -> Self {
        Self {
            uri: uri.to_string(),
            ..Self::new(name)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one frame (with or without metadata).
    pub fn record(&self, frame: Option<&FrameObjects>) {
        let now = Instant::now();
        let mut c = self.lock();
        c.frames += 1;
        c.last_frame_at = Some(now);
        if c.state == StreamState::Starting || c.state == StreamState::Reconnecting {
            c.state = StreamState::Playing;
        }
        while c
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) > FPS_WINDOW)
        {
            c.recent.pop_front();
        }
        c.recent.push_back(now);
        if let Some(f) = frame {
            c.objects += f.objects.len() as u64;
            for o in &f.objects {
                *c.per_class.entry(o.label.clone()).or_default() += 1;
                if let Some(t) = o.track_id {
                    c.tracks.insert(t);
                }
            }
            if let Some(i) = &f.inspection {
                c.inspection.get_or_insert_default().add(i);
            }
            if let Some(a) = &f.analytics {
                c.analytics = Some(a.clone());
            }
        }
    }

    pub fn frames(&self) -> u64 {
        self.lock().frames
    }

    /// Counts one frame entering the analytics chain.
    pub fn record_input(&self) {
        self.lock().frames_in += 1;
    }

    /// Sets the source's own counters (read from `vigilsrc`): frames it decoded and frames it dropped
    /// (leaky live queue, `drop-frame-interval`). Counts never go down.
    pub fn set_source_counters(&self, frames_in: u64, dropped: u64, timestamps_repaired: u64) {
        let mut c = self.lock();
        c.frames_in = c.frames_in.max(frames_in);
        c.dropped = c.dropped.max(dropped);
        c.timestamps_repaired = c.timestamps_repaired.max(timestamps_repaired);
    }

    /// Sets the frames the stream's `vigilinfer`s passed without inference (never goes down).
    pub fn set_not_inferred(&self, n: u64) {
        let mut c = self.lock();
        c.not_inferred = c.not_inferred.max(n);
    }

    /// Counts `n` dropped frames.
    pub fn record_dropped(&self, n: u64) {
        self.lock().dropped += n;
    }

    /// Counts one reconnection of the source (and marks it [`StreamState::Reconnecting`] until the
    /// next frame).
    pub fn record_reconnect(&self) {
        let mut c = self.lock();
        c.reconnects += 1;
        c.state = StreamState::Reconnecting;
    }

    /// Records the end-to-end latency of one frame (from the source to the outputs).
    pub fn record_latency(&self, latency: Duration) {
        self.lock().latency.record(latency);
    }

    /// Sets the stream state ([`Self::record`] moves `Starting`/`Reconnecting` to `Playing`).
    pub fn set_state(&self, state: StreamState) {
        self.lock().state = state;
    }

    pub fn state(&self) -> StreamState {
        self.lock().state
    }

    /// A live snapshot for the API.
    pub fn snapshot(&self) -> StreamSnapshot {
        let now = Instant::now();
        let c = self.lock();
        let window = now.duration_since(self.started).min(FPS_WINDOW);
        let n = c
            .recent
            .iter()
            .filter(|&&t| now.duration_since(t) <= FPS_WINDOW)
            .count();
        let fps = if window.is_zero() || n == 0 {
            0.0
        } else {
            n as f64 / window.as_secs_f64().max(0.001)
        };
        StreamSnapshot {
            name: self.name.clone(),
            uri: self.uri.clone(),
            state: c.state,
            frames_in: c.frames_in.max(c.frames),
            frames_out: c.frames,
            dropped: c.dropped,
            reconnects: c.reconnects,
            timestamps_repaired: c.timestamps_repaired,
            not_inferred: c.not_inferred,
            fps,
            latency: c.latency.clone(),
            inspection: c.inspection.clone(),
        }
    }

    /// The progress line since the previous call, e.g. `[vtest] 120 frames, 9.8 fps, 7 objects/frame`.
    pub fn progress_line(&self) -> String {
        let now = Instant::now();
        let mut c = self.lock();
        let since = c.last_at.unwrap_or(self.started);
        let dt = now
            .duration_since(since)
            .max(Duration::from_millis(1))
            .as_secs_f64();
        let df = c.frames - c.last_frames;
        let dobj = c.objects - c.last_objects;
        let fps = df as f64 / dt;
        let per_frame = if df > 0 { dobj as f64 / df as f64 } else { 0.0 };
        c.last_frames = c.frames;
        c.last_objects = c.objects;
        c.last_at = Some(now);
        let inspection = match &c.inspection {
            Some(i) => format!(
                ", items {}, pass {}, fail {}, pass rate {:.1}%",
                i.items,
                i.passed,
                i.failed,
                100.0 * i.pass_rate()
            ),
            None => String::new(),
        };
        format!(
            "[{}] {} frames, {:.1} fps, {:.1} objects/frame{inspection}",
            self.name, c.frames, fps, per_frame
        )
    }

    /// The inspection counts so far (sources with `inspection`).
    pub fn inspection(&self) -> Option<vigil_core::inspect::Summary> {
        self.lock().inspection.clone()
    }

    /// A snapshot for the summary.
    pub fn summary(&self) -> SourceSummary {
        let c = self.lock();
        SourceSummary {
            name: self.name.clone(),
            frames: c.frames,
            objects: c.objects,
            per_class: c.per_class.clone(),
            tracks: c.tracks.len() as u64,
            timestamps_repaired: c.timestamps_repaired,
            not_inferred: c.not_inferred,
            analytics: c.analytics.clone(),
            inspection: c.inspection.clone(),
            seconds: c
                .last_frame_at
                .unwrap_or_else(Instant::now)
                .duration_since(self.started)
                .as_secs_f64(),
        }
    }
}

/// The end-of-run numbers of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSummary {
    pub name: String,
    pub frames: u64,
    /// Objects summed over all frames.
    pub objects: u64,
    /// Objects per class label, summed over all frames.
    pub per_class: BTreeMap<String, u64>,
    /// Distinct track ids seen.
    pub tracks: u64,
    /// Frames the source stamped itself (see [`StreamSnapshot::timestamps_repaired`]).
    pub timestamps_repaired: u64,
    /// Frames that passed without inference because no inference server answered.
    pub not_inferred: u64,
    /// The last analytics results (sources with `analytics`): line counts, zone entries and exits.
    pub analytics: Option<FrameAnalytics>,
    /// Inspection counts (sources with `inspection`): items, pass, fail, failures by rule.
    pub inspection: Option<vigil_core::inspect::Summary>,
    /// From the start of the run to the source's last frame.
    pub seconds: f64,
}

/// What a run did, per source.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub sources: Vec<SourceSummary>,
    /// `true` when the run was stopped (Ctrl-C or a stop request) before the sources ended.
    pub interrupted: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(
            f,
            "summary{}:",
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        for s in &self.sources {
            let fps = if s.seconds > 0.0 {
                s.frames as f64 / s.seconds
            } else {
                0.0
            };
            writeln!(
                f,
                "  [{}] {} frames in {:.1} s ({:.1} fps), {} objects, {} distinct tracks",
                s.name, s.frames, s.seconds, fps, s.objects, s.tracks
            )?;
            if s.per_class.is_empty() {
                writeln!(f, "  [{}] objects per class: none", s.name)?;
            } else {
                let mut classes: Vec<_> = s.per_class.iter().collect();
                classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let list: Vec<String> = classes.iter().map(|(k, v)| format!("{k} {v}")).collect();
                writeln!(f, "  [{}] objects per class: {}", s.name, list.join(", "))?;
            }
            if s.timestamps_repaired > 0 {
                writeln!(
                    f,
                    "  [{}] timestamps repaired: {} (frames the decoder left without a timestamp or not after the previous one)",
                    s.name, s.timestamps_repaired
                )?;
            }
            if s.not_inferred > 0 {
                writeln!(
                    f,
                    "  [{}] frames not inferred: {} (no inference server answered in time)",
                    s.name, s.not_inferred
                )?;
            }
            if let Some(i) = &s.inspection {
                writeln!(
                    f,
                    "  [{}] inspection: items {}, pass {}, fail {}, pass rate {:.1}%",
                    s.name,
                    i.items,
                    i.passed,
                    i.failed,
                    100.0 * i.pass_rate()
                )?;
                for (rule, n) in &i.failures_by_rule {
                    writeln!(f, "  [{}]   failed {rule}: {n}", s.name)?;
                }
            }
            if let Some(a) = &s.analytics {
                for l in &a.lines {
                    let counts: Vec<String> = l
                        .counts
                        .iter()
                        .map(|c| format!("{} in {} out {}", c.label, c.r#in, c.out))
                        .collect();
                    let counts = if counts.is_empty() {
                        "no crossings".to_string()
                    } else {
                        counts.join(", ")
                    };
                    writeln!(f, "  [{}] line {}: {counts}", s.name, l.name)?;
                }
                for z in &a.zones {
                    writeln!(
                        f,
                        "  [{}] zone {}: {} entries, {} exits",
                        s.name, z.name, z.entries, z.exits
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::objects::{BBox, Object};

    #[test]
    fn counts_frames_classes_and_tracks() {
        let s = SourceStats::new("cam");
        let mut f = FrameObjects::new(10, 10);
        let mut a = Object::new(0, "person", 0.9, BBox::default());
        a.track_id = Some(1);
        let mut b = Object::new(2, "car", 0.9, BBox::default());
        b.track_id = Some(2);
        f.objects = vec![a, b];
        s.record(Some(&f));
        f.objects.pop();
        s.record(Some(&f));
        s.record(None);
        let line = s.progress_line();
        assert!(line.starts_with("[cam] 3 frames, "), "{line}");
        assert!(line.ends_with("1.0 objects/frame"), "{line}");
        let sum = s.summary();
        assert_eq!((sum.frames, sum.objects, sum.tracks), (3, 3, 2));
        assert_eq!(sum.per_class["person"], 2);
        let text = Summary {
            sources: vec![sum],
            interrupted: false,
        }
        .to_string();
        assert!(
            text.contains("[cam] objects per class: person 2, car 1"),
            "{text}"
        );
        assert!(!text.contains("line"), "{text}");
    }

    #[test]
    fn inspection_items_are_counted_in_progress_and_summary() {
        use vigil_core::objects::{Finding, Inspection, Verdict};
        let s = SourceStats::new("line1");
        let mut f = FrameObjects::new(10, 10);
        f.inspection = Some(Inspection {
            verdict: Verdict::Pass,
            ..Default::default()
        });
        s.record(Some(&f));
        s.record(Some(&f));
        s.record(Some(&f));
        f.inspection = Some(Inspection {
            verdict: Verdict::Fail,
            failures: vec![Finding {
                rule: "lot-present".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        s.record(Some(&f));
        let line = s.progress_line();
        assert!(
            line.ends_with(", items 4, pass 3, fail 1, pass rate 75.0%"),
            "{line}"
        );
        let text = Summary {
            sources: vec![s.summary()],
            interrupted: false,
        }
        .to_string();
        assert!(
            text.contains("[line1] inspection: items 4, pass 3, fail 1, pass rate 75.0%"),
            "{text}"
        );
        assert!(text.contains("[line1]   failed lot-present: 1"), "{text}");
        // Sources without inspection say nothing about it.
        let plain = SourceStats::new("cam");
        plain.record(None);
        assert!(!plain.progress_line().contains("items"));
    }

    #[test]
    fn summary_reports_the_last_analytics_counts() {
        use vigil_core::objects::{LabelCounts, LineStatus, ZoneStatus};
        let s = SourceStats::new("cam");
        let mut f = FrameObjects::new(10, 10);
        let line = |n: u64| LineStatus {
            name: "door".into(),
            counts: vec![LabelCounts {
                label: "person".into(),
                r#in: n,
                out: 4,
            }],
            ..Default::default()
        };
        f.analytics = Some(FrameAnalytics {
            lines: vec![line(0)],
            ..Default::default()
        });
        s.record(Some(&f));
        f.analytics = Some(FrameAnalytics {
            lines: vec![line(1)],
            zones: vec![ZoneStatus {
                name: "square".into(),
                entries: 3,
                exits: 2,
                ..Default::default()
            }],
            events: vec![],
        });
        s.record(Some(&f));
        // A frame without analytics (none attached) keeps the last results.
        s.record(Some(&FrameObjects::new(10, 10)));
        let text = Summary {
            sources: vec![s.summary()],
            interrupted: false,
        }
        .to_string();
        assert!(
            text.contains("[cam] line door: person in 1 out 4\n"),
            "{text}"
        );
        assert!(
            text.contains("[cam] zone square: 3 entries, 2 exits\n"),
            "{text}"
        );
    }

    #[test]
    fn snapshot_counts_and_state() {
        let s = SourceStats::with_uri("cam", "rtsp://h/x");
        assert_eq!(s.snapshot().state, StreamState::Starting);
        for _ in 0..4 {
            s.record_input();
        }
        s.record(None);
        s.record(None);
        s.record_dropped(2);
        s.record_latency(Duration::from_millis(40));
        let snap = s.snapshot();
        assert_eq!(snap.state, StreamState::Playing);
        assert_eq!((snap.frames_in, snap.frames_out, snap.dropped), (4, 2, 2));
        assert!(snap.fps > 0.0);
        assert_eq!(snap.latency.count, 1);
        s.record_reconnect();
        assert_eq!(s.snapshot().reconnects, 1);
        assert_eq!(s.state(), StreamState::Reconnecting);
        s.record(None);
        assert_eq!(s.state(), StreamState::Playing);
        assert_eq!(snap.uri, "rtsp://h/x");
    }
}
