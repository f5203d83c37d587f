//! Per-source counters: progress lines while running and the summary at the end.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vigil_core::objects::FrameObjects;

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
}

/// Counters of one source, updated from its streaming thread.
#[derive(Debug)]
pub struct SourceStats {
    pub name: String,
    started: Instant,
    inner: Mutex<Counters>,
}

impl SourceStats {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            started: Instant::now(),
            inner: Mutex::new(Counters::default()),
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
        if let Some(f) = frame {
            c.objects += f.objects.len() as u64;
            for o in &f.objects {
                *c.per_class.entry(o.label.clone()).or_default() += 1;
                if let Some(t) = o.track_id {
                    c.tracks.insert(t);
                }
            }
        }
    }

    pub fn frames(&self) -> u64 {
        self.lock().frames
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
        format!(
            "[{}] {} frames, {:.1} fps, {:.1} objects/frame",
            self.name, c.frames, fps, per_frame
        )
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
    }
}
