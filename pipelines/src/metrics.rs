//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Families (all prefixed `vigil_`):
//! - per stream (label `stream`): `stream_frames_in_total`, `stream_frames_out_total`,
//!   `stream_frames_dropped_total`, `stream_reconnects_total`, `stream_timestamps_repaired_total`,
//!   `stream_frames_not_inferred_total` (counters), `stream_fps` (gauge),
//!   `stream_state` (gauge, one series per state, 1 for the current one, label `state`),
//!   `stream_latency_seconds` (histogram, end-to-end);
//! - per model (labels `model`, `version`): `model_requests_total`, `model_failures_total`,
//!   `model_executions_total` (counters), `model_pending_requests` (gauge), `model_batch_size`
//!   (histogram, buckets 1, 2, 4, 8, …), `model_queue_time_seconds`, `model_compute_time_seconds`
//!   (histograms);
//! - per GPU through NVML where a driver is present (labels `gpu`, `name`): `gpu_utilization_ratio`,
//!   `gpu_memory_used_bytes`, `gpu_memory_total_bytes`, `gpu_encoder_utilization_ratio`,
//!   `gpu_decoder_utilization_ratio`, `gpu_temperature_celsius` (gauges; a value NVML does not give
//!   for a device is left out). Without NVML none are emitted.

use std::fmt::Write as _;
use std::sync::OnceLock;

use nvml_wrapper::Nvml;
use vigil_engine::{Histogram, ModelServer, ModelStats, TIME_BUCKETS_US};

use crate::stats::{StreamSnapshot, StreamState};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One GPU's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuStats {
    pub index: u32,
    pub name: String,
    /// 0..1 over the driver's last sample period.
    pub utilization: f64,
    pub memory_used: u64,
    pub memory_total: u64,
    /// NVENC utilisation, 0..1.
    pub encoder_utilization: Option<f64>,
    /// NVDEC utilisation, 0..1.
    pub decoder_utilization: Option<f64>,
    pub temperature_c: Option<u32>,
}

/// Everything `/metrics` shows, gathered now: `streams` plus the loaded models of
/// [`ModelServer::global`] and the GPUs seen through NVML.
/// `labels` are added to every series (the shard of a split fleet: `shard="1"`).
pub fn gather(streams: &[StreamSnapshot], labels: &[(&str, String)]) -> String {
    let models: Vec<ModelStats> = ModelServer::global()
        .runtimes()
        .iter()
        .map(|r| r.stats())
        .collect();
    let mut text = render(streams, &models, &gpu_stats());
    // Python-backend models' own metric families and their instances' restarts.
    text.push_str(&vigil_engine::python::metrics_text());
    add_labels(&text, labels)
}

/// Adds `labels` to every sample line of an exposition made by [`render`] (whose metric names
/// never hold `{` or a space): `name{a="b"} 1` → `name{shard="0",a="b"} 1`, `name 1` →
/// `name{shard="0"} 1`. Comment lines are kept.
pub fn add_labels(text: &str, labels: &[(&str, String)]) -> String {
    if labels.is_empty() {
        return text.to_string();
    }
    let set: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    let set = set.join(",");
    let mut out = String::with_capacity(text.len() + text.lines().count() * (set.len() + 3));
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else if let Some(i) = line.find(['{', ' ']) {
            let (name, rest) = line.split_at(i);
            if let Some(rest) = rest.strip_prefix('{') {
                let sep = if rest.starts_with('}') { "" } else { "," };
                let _ = write!(out, "{name}{{{set}{sep}{rest}");
            } else {
                let _ = write!(out, "{name}{{{set}}}{rest}");
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The GPUs through NVML; empty (and logged once) when NVML cannot be initialised (no driver).
pub fn gpu_stats() -> Vec<GpuStats> {
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    let Some(nvml) = NVML.get_or_init(|| match Nvml::init() {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("vigil: no GPU metrics (NVML unavailable: {e})");
            None
        }
    }) else {
        return Vec::new();
    };
    let Ok(count) = nvml.device_count() else {
        return Vec::new();
    };
    (0..count)
        .filter_map(|i| {
            let d = nvml.device_by_index(i).ok()?;
            let mem = d.memory_info().ok()?;
            let util = d.utilization_rates().map(|u| u.gpu).unwrap_or(0);
            Some(GpuStats {
                index: i,
                name: d.name().unwrap_or_default(),
                utilization: f64::from(util) / 100.0,
                memory_used: mem.used,
                memory_total: mem.total,
                encoder_utilization: d
                    .encoder_utilization()
                    .ok()
                    .map(|u| f64::from(u.utilization) / 100.0),
                decoder_utilization: d
                    .decoder_utilization()
                    .ok()
                    .map(|u| f64::from(u.utilization) / 100.0),
                temperature_c: d
                    .temperature(nvml_wrapper::enum_wrappers::device::TemperatureSensor::Gpu)
                    .ok(),
            })
        })
        .collect()
}

/// Renders the exposition of `streams`, `models` and `gpus`. Families without series are left out.
pub fn render(streams: &[StreamSnapshot], models: &[ModelStats], gpus: &[GpuStats]) -> String {
    let mut out = String::new();
    let w = &mut out;

    // Streams.
    let sl = |s: &StreamSnapshot| vec![("stream", s.name.clone())];
    counter(
        w,
        "vigil_stream_frames_in_total",
        "Frames that entered the analytics chain.",
        streams.iter().map(|s| (sl(s), s.frames_in)),
    );
    counter(
        w,
        "vigil_stream_frames_out_total",
        "Frames that left the analytics chain.",
        streams.iter().map(|s| (sl(s), s.frames_out)),
    );
    counter(
        w,
        "vigil_stream_frames_dropped_total",
        "Frames dropped (leaky queues, QoS).",
        streams.iter().map(|s| (sl(s), s.dropped)),
    );
    counter(
        w,
        "vigil_stream_reconnects_total",
        "Reconnections of the source.",
        streams.iter().map(|s| (sl(s), s.reconnects)),
    );
    counter(
        w,
        "vigil_stream_timestamps_repaired_total",
        "Frames the source stamped itself: the decoder gave no timestamp, or one not after the previous frame's.",
        streams.iter().map(|s| (sl(s), s.timestamps_repaired)),
    );
    counter(
        w,
        "vigil_stream_frames_not_inferred_total",
        "Frames that passed without the model's detections because no inference server answered (inference.server).",
        streams.iter().map(|s| (sl(s), s.not_inferred)),
    );
    gauge(
        w,
        "vigil_stream_fps",
        "Frames per second out of the analytics chain over the last 2 s.",
        streams.iter().map(|s| (sl(s), finite(s.fps))),
    );
    gauge(
        w,
        "vigil_stream_state",
        "The stream state: 1 for the current state, 0 for the others.",
        streams.iter().flat_map(|s| {
            StreamState::ALL.iter().map(move |&st| {
                (
                    vec![
                        ("stream", s.name.clone()),
                        ("state", st.as_str().to_string()),
                    ],
                    if st == s.state { 1.0 } else { 0.0 },
                )
            })
        }),
    );
    // Inspection (streams with `inspection`).
    counter(
        w,
        "vigil_inspection_items_total",
        "Items judged by the inspection, per verdict.",
        streams.iter().flat_map(|s| {
            s.inspection.iter().flat_map(move |i| {
                [("PASS", i.passed), ("FAIL", i.failed)].map(|(v, n)| {
                    (
                        vec![("source", s.name.clone()), ("verdict", v.to_string())],
                        n,
                    )
                })
            })
        }),
    );
    counter(
        w,
        "vigil_inspection_failures_total",
        "Failed items per inspection rule.",
        streams.iter().flat_map(|s| {
            s.inspection.iter().flat_map(move |i| {
                i.failures_by_rule.iter().map(move |(rule, n)| {
                    (vec![("source", s.name.clone()), ("rule", rule.clone())], *n)
                })
            })
        }),
    );
    header(
        w,
        "vigil_stream_latency_seconds",
        "End-to-end latency per frame, from the source to the outputs.",
        "histogram",
        !streams.is_empty(),
    );
    for s in streams {
        time_histogram(w, "vigil_stream_latency_seconds", &sl(s), &s.latency);
    }

    // Models.
    let ml = |m: &ModelStats| {
        vec![
            ("model", m.model.clone()),
            ("version", m.version.to_string()),
        ]
    };
    counter(
        w,
        "vigil_model_requests_total",
        "Inference requests accepted.",
        models.iter().map(|m| (ml(m), m.requests)),
    );
    counter(
        w,
        "vigil_model_failures_total",
        "Inference requests answered with an error.",
        models.iter().map(|m| (ml(m), m.failures)),
    );
    counter(
        w,
        "vigil_model_executions_total",
        "Batches executed.",
        models.iter().map(|m| (ml(m), m.executions)),
    );
    gauge(
        w,
        "vigil_model_pending_requests",
        "Requests queued and not yet taken by an instance.",
        models.iter().map(|m| (ml(m), m.pending as f64)),
    );
    header(
        w,
        "vigil_model_batch_size",
        "Requests per executed batch.",
        "histogram",
        !models.is_empty(),
    );
    for m in models {
        batch_histogram(w, &ml(m), m);
    }
    header(
        w,
        "vigil_model_queue_time_seconds",
        "Per request: from queued to its batch starting.",
        "histogram",
        !models.is_empty(),
    );
    for m in models {
        time_histogram(w, "vigil_model_queue_time_seconds", &ml(m), &m.queue_time);
    }
    header(
        w,
        "vigil_model_compute_time_seconds",
        "Per batch: running it (input stacking and the session run).",
        "histogram",
        !models.is_empty(),
    );
    for m in models {
        time_histogram(
            w,
            "vigil_model_compute_time_seconds",
            &ml(m),
            &m.compute_time,
        );
    }

    // GPUs.
    let gl = |g: &GpuStats| vec![("gpu", g.index.to_string()), ("name", g.name.clone())];
    gauge(
        w,
        "vigil_gpu_utilization_ratio",
        "GPU utilisation (0 to 1) over the driver's last sample period.",
        gpus.iter().map(|g| (gl(g), g.utilization)),
    );
    gauge(
        w,
        "vigil_gpu_memory_used_bytes",
        "GPU memory in use.",
        gpus.iter().map(|g| (gl(g), g.memory_used as f64)),
    );
    gauge(
        w,
        "vigil_gpu_memory_total_bytes",
        "GPU memory in total.",
        gpus.iter().map(|g| (gl(g), g.memory_total as f64)),
    );
    gauge(
        w,
        "vigil_gpu_encoder_utilization_ratio",
        "NVENC utilisation (0 to 1) over the driver's last sample period.",
        gpus.iter()
            .filter_map(|g| g.encoder_utilization.map(|v| (gl(g), v))),
    );
    gauge(
        w,
        "vigil_gpu_decoder_utilization_ratio",
        "NVDEC utilisation (0 to 1) over the driver's last sample period.",
        gpus.iter()
            .filter_map(|g| g.decoder_utilization.map(|v| (gl(g), v))),
    );
    gauge(
        w,
        "vigil_gpu_temperature_celsius",
        "GPU die temperature.",
        gpus.iter()
            .filter_map(|g| g.temperature_c.map(|v| (gl(g), f64::from(v)))),
    );
    out
}

type Labels = Vec<(&'static str, String)>;

fn header(w: &mut String, name: &str, help: &str, kind: &str, any: bool) {
    if any {
        let _ = writeln!(w, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(w, "# TYPE {name} {kind}");
    }
}

fn counter(w: &mut String, name: &str, help: &str, series: impl Iterator<Item = (Labels, u64)>) {
    let series: Vec<_> = series.collect();
    header(w, name, help, "counter", !series.is_empty());
    for (labels, v) in series {
        let _ = writeln!(w, "{name}{} {v}", label_set(&labels, None));
    }
}

fn gauge(w: &mut String, name: &str, help: &str, series: impl Iterator<Item = (Labels, f64)>) {
    let series: Vec<_> = series.collect();
    header(w, name, help, "gauge", !series.is_empty());
    for (labels, v) in series {
        let _ = writeln!(w, "{name}{} {}", label_set(&labels, None), float(v));
    }
}

/// A histogram of durations (in seconds) from a [`Histogram`] with the buckets [`TIME_BUCKETS_US`].
fn time_histogram(w: &mut String, name: &str, labels: &Labels, h: &Histogram) {
    let mut cumulative = 0u64;
    for (i, &bound) in TIME_BUCKETS_US.iter().enumerate() {
        cumulative += h.counts.get(i).copied().unwrap_or(0);
        let le = float(bound as f64 / 1e6);
        let _ = writeln!(
            w,
            "{name}_bucket{} {cumulative}",
            label_set(labels, Some(&le))
        );
    }
    let _ = writeln!(
        w,
        "{name}_bucket{} {}",
        label_set(labels, Some("+Inf")),
        h.count
    );
    let _ = writeln!(
        w,
        "{name}_sum{} {}",
        label_set(labels, None),
        float(h.sum.as_secs_f64())
    );
    let _ = writeln!(w, "{name}_count{} {}", label_set(labels, None), h.count);
}

/// The batch-size histogram: buckets 1, 2, 4, … up to the first power of two ≥ the largest batch
/// (at least 32), then `+Inf`.
fn batch_histogram(w: &mut String, labels: &Labels, m: &ModelStats) {
    let name = "vigil_model_batch_size";
    let largest = m.batch_sizes.keys().next_back().copied().unwrap_or(1);
    let top = largest.max(32).next_power_of_two();
    let mut bound = 1usize;
    loop {
        let n: u64 = m
            .batch_sizes
            .iter()
            .filter(|&(&s, _)| s <= bound)
            .map(|(_, &c)| c)
            .sum();
        let le = bound.to_string();
        let _ = writeln!(w, "{name}_bucket{} {n}", label_set(labels, Some(&le)));
        if bound >= top {
            break;
        }
        bound *= 2;
    }
    let count: u64 = m.batch_sizes.values().sum();
    let sum: u64 = m.batch_sizes.iter().map(|(&s, &c)| s as u64 * c).sum();
    let _ = writeln!(
        w,
        "{name}_bucket{} {count}",
        label_set(labels, Some("+Inf"))
    );
    let _ = writeln!(w, "{name}_sum{} {sum}", label_set(labels, None));
    let _ = writeln!(w, "{name}_count{} {count}", label_set(labels, None));
}

fn label_set(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes a `# HELP` text: backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// A sample value: Rust's shortest round-trip form (never an exponent), `+Inf`, `-Inf`, `NaN`.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stream(name: &str) -> StreamSnapshot {
        let mut latency = Histogram::default();
        latency.record(Duration::from_millis(30));
        latency.record(Duration::from_secs(20));
        StreamSnapshot {
            name: name.into(),
            uri: "file:///a.mp4".into(),
            state: StreamState::Playing,
            frames_in: 10,
            frames_out: 9,
            dropped: 1,
            reconnects: 2,
            timestamps_repaired: 3,
            not_inferred: 4,
            fps: 12.5,
            latency,
            inspection: None,
        }
    }

    fn model() -> ModelStats {
        let mut queue_time = Histogram::default();
        queue_time.record(Duration::from_micros(150));
        ModelStats {
            model: "nanodet".into(),
            version: 1,
            requests: 7,
            failures: 1,
            pending: 0,
            executions: 3,
            batch_sizes: [(1, 1), (3, 2)].into_iter().collect(),
            batch_compute: Default::default(),
            queue_time,
            compute_time: Histogram::default(),
            reordered: 0,
            instances: Vec::new(),
        }
    }

    #[test]
    fn adds_constant_labels_to_every_sample() {
        let text = "# HELP a x\n# TYPE a counter\na{stream=\"c\"} 1\nb 2\nc{} 3\n";
        let got = add_labels(text, &[("shard", "1".into())]);
        assert_eq!(
            got,
            "# HELP a x\n# TYPE a counter\na{shard=\"1\",stream=\"c\"} 1\nb{shard=\"1\"} 2\nc{shard=\"1\"} 3\n"
        );
        assert_eq!(add_labels(text, &[]), text);
        let full = render(&[stream("cam")], &[model()], &[]);
        let labelled = add_labels(&full, &[("shard", "0".into())]);
        for line in labelled.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("{shard=\"0\""), "{line}");
        }
        assert_eq!(full.lines().count(), labelled.lines().count());
    }

    #[test]
    fn renders_families_and_escapes_labels() {
        let text = render(&[stream("a\"b\\c\nd")], &[model()], &[]);
        assert!(text.contains("# TYPE vigil_stream_frames_in_total counter"));
        assert!(text.contains("vigil_stream_frames_in_total{stream=\"a\\\"b\\\\c\\nd\"} 10"));
        assert!(
            text.contains("vigil_stream_state{stream=\"a\\\"b\\\\c\\nd\",state=\"playing\"} 1")
        );
        assert!(text.contains("vigil_stream_fps{stream=\"a\\\"b\\\\c\\nd\"} 12.5"));
        assert!(
            text.contains("vigil_stream_frames_not_inferred_total{stream=\"a\\\"b\\\\c\\nd\"} 4")
        );
        assert!(text.contains(
            "vigil_stream_latency_seconds_bucket{stream=\"a\\\"b\\\\c\\nd\",le=\"0.05\"} 1"
        ));
        assert!(text.contains(
            "vigil_stream_latency_seconds_bucket{stream=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} 2"
        ));
        assert!(
            text.contains("vigil_stream_latency_seconds_sum{stream=\"a\\\"b\\\\c\\nd\"} 20.03")
        );
        let ml = "model=\"nanodet\",version=\"1\"";
        assert!(text.contains(&format!("vigil_model_batch_size_bucket{{{ml},le=\"1\"}} 1")));
        assert!(text.contains(&format!("vigil_model_batch_size_bucket{{{ml},le=\"2\"}} 1")));
        assert!(text.contains(&format!("vigil_model_batch_size_bucket{{{ml},le=\"4\"}} 3")));
        assert!(text.contains(&format!(
            "vigil_model_batch_size_bucket{{{ml},le=\"32\"}} 3"
        )));
        assert!(text.contains(&format!("vigil_model_batch_size_sum{{{ml}}} 7")));
        assert!(text.contains(&format!("vigil_model_batch_size_count{{{ml}}} 3")));
        assert!(text.contains(&format!(
            "vigil_model_queue_time_seconds_bucket{{{ml},le=\"0.0001\"}} 0"
        )));
        assert!(text.contains(&format!(
            "vigil_model_queue_time_seconds_bucket{{{ml},le=\"0.00025\"}} 1"
        )));
        assert!(!text.contains("vigil_gpu_"));
        // Every sample line's family has a TYPE line before it.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| text.contains(&format!("# TYPE {b} histogram")))
                .unwrap_or(name);
            assert!(text.contains(&format!("# TYPE {base} ")), "{line}");
        }
    }

    #[test]
    fn inspection_counters_per_verdict_and_rule() {
        let plain = stream("cam");
        let mut line = stream("line1");
        let mut summary = vigil_core::inspect::Summary {
            items: 5,
            passed: 3,
            failed: 2,
            ..Default::default()
        };
        summary.failures_by_rule.insert("lot-present".into(), 2);
        summary.failures_by_rule.insert("not-expired".into(), 1);
        line.inspection = Some(summary);
        let text = render(&[plain, line], &[], &[]);
        assert!(text.contains("# TYPE vigil_inspection_items_total counter"));
        assert!(
            text.contains("vigil_inspection_items_total{source=\"line1\",verdict=\"PASS\"} 3"),
            "{text}"
        );
        assert!(text.contains("vigil_inspection_items_total{source=\"line1\",verdict=\"FAIL\"} 2"));
        assert!(
            text.contains(
                "vigil_inspection_failures_total{source=\"line1\",rule=\"lot-present\"} 2"
            )
        );
        assert!(
            text.contains(
                "vigil_inspection_failures_total{source=\"line1\",rule=\"not-expired\"} 1"
            )
        );
        assert!(!text.contains("source=\"cam\""), "{text}");
        // Without inspection streams the families are left out.
        assert!(!render(&[stream("cam")], &[], &[]).contains("vigil_inspection"));
    }

    #[test]
    fn empty_input_renders_nothing() {
        assert_eq!(render(&[], &[], &[]), "");
    }

    #[test]
    fn gpu_gauges() {
        let g = GpuStats {
            index: 0,
            name: "H100".into(),
            utilization: 0.5,
            memory_used: 1024,
            memory_total: 4096,
            encoder_utilization: None,
            decoder_utilization: Some(0.25),
            temperature_c: Some(61),
        };
        let text = render(&[], &[], &[g]);
        assert!(text.contains("vigil_gpu_decoder_utilization_ratio{gpu=\"0\",name=\"H100\"} 0.25"));
        assert!(text.contains("vigil_gpu_temperature_celsius{gpu=\"0\",name=\"H100\"} 61"));
        assert!(!text.contains("vigil_gpu_encoder_utilization_ratio"));
        assert!(text.contains("vigil_gpu_utilization_ratio{gpu=\"0\",name=\"H100\"} 0.5"));
        assert!(text.contains("vigil_gpu_memory_total_bytes{gpu=\"0\",name=\"H100\"} 4096"));
    }

    #[test]
    fn gpu_stats_never_panics() {
        let _ = gpu_stats();
        let _ = gpu_stats();
    }
}
