//! Triton's statistics extension and metrics: what the server counts per model version
//! (requests answered, their durations, items) joined with what the engine counts (queue time,
//! executions, batch sizes, compute phases).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use vigil_engine::{ModelRuntime, ModelStats};

/// What the server counts for one model version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub success: u64,
    pub success_time: Duration,
    pub failure: u64,
    pub failure_time: Duration,
    /// Items inferred (a request of batch size 4 counts 4), as Triton's `inference_count`.
    pub items: u64,
    /// Milliseconds since the Unix epoch of the last request answered.
    pub last_inference_ms: u64,
}

/// The counters of every model version served. Lock order: the only lock, held for counting.
#[derive(Default)]
pub struct ServeStats {
    counters: Mutex<BTreeMap<(String, u64), Counters>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ServeStats {
    /// Counts a request to `model` `version` answered after `took`: `items` inferred on success.
    pub fn record(&self, model: &str, version: u64, ok: Option<usize>, took: Duration) {
        let mut all = lock(&self.counters);
        let c = all.entry((model.to_owned(), version)).or_default();
        match ok {
            Some(items) => {
                c.success += 1;
                c.success_time += took;
                c.items += items as u64;
            }
            None => {
                c.failure += 1;
                c.failure_time += took;
            }
        }
        c.last_inference_ms = now_ms();
    }

    /// The counters of `model` `version` (zero when it was never asked for).
    pub fn get(&self, model: &str, version: u64) -> Counters {
        lock(&self.counters)
            .get(&(model.to_owned(), version))
            .copied()
            .unwrap_or_default()
    }
}

fn duration(count: u64, d: Duration) -> Value {
    json!({ "count": count, "ns": d.as_nanos() as u64 })
}

/// Triton's statistics of one model version (`model_stats` entry).
pub fn model_stats_json(runtime: &ModelRuntime, counters: Counters) -> Value {
    let s = runtime.stats();
    let phases = s.batch_compute.values().fold(
        (0u64, Duration::ZERO, Duration::ZERO, Duration::ZERO),
        |acc, p| {
            (
                acc.0 + p.count,
                acc.1 + p.input,
                acc.2 + p.infer,
                acc.3 + p.output,
            )
        },
    );
    let batch_stats: Vec<Value> = s
        .batch_compute
        .iter()
        .map(|(size, p)| {
            json!({
                "batch_size": size,
                "compute_input": duration(p.count, p.input),
                "compute_infer": duration(p.count, p.infer),
                "compute_output": duration(p.count, p.output),
            })
        })
        .collect();
    json!({
        "name": runtime.name(),
        "version": runtime.version().to_string(),
        "last_inference": counters.last_inference_ms,
        "inference_count": counters.items,
        "execution_count": s.executions,
        "inference_stats": {
            "success": duration(counters.success, counters.success_time),
            "fail": duration(counters.failure, counters.failure_time),
            "queue": duration(s.queue_time.count, s.queue_time.sum),
            "compute_input": duration(phases.0, phases.1),
            "compute_infer": duration(phases.0, phases.2),
            "compute_output": duration(phases.0, phases.3),
            "cache_hit": duration(0, Duration::ZERO),
            "cache_miss": duration(0, Duration::ZERO),
        },
        "batch_stats": batch_stats,
        "memory_usage": [],
    })
}

/// Triton's metrics (Prometheus text format) for the models served.
pub fn prometheus(models: &[(String, std::sync::Arc<ModelRuntime>)], stats: &ServeStats) -> String {
    struct Row {
        labels: String,
        c: Counters,
        s: ModelStats,
    }
    let rows: Vec<Row> = models
        .iter()
        .map(|(name, runtime)| {
            let version = runtime.version();
            Row {
                labels: format!("model=\"{}\",version=\"{version}\"", escape(name)),
                c: stats.get(name, version),
                s: runtime.stats(),
            }
        })
        .collect();
    let phase = |s: &ModelStats, f: fn(&vigil_engine::PhaseTimes) -> Duration| -> u64 {
        s.batch_compute
            .values()
            .map(|p| f(p).as_micros() as u64)
            .sum()
    };
    /// Name, type, help text and value of a metric family.
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        Box<dyn Fn(&Row) -> u64>,
    );
    let families: [Family; 9] = [
        (
            "nv_inference_request_success",
            "counter",
            "Number of successful inference requests, all batch sizes",
            Box::new(|r| r.c.success),
        ),
        (
            "nv_inference_request_failure",
            "counter",
            "Number of failed inference requests, all batch sizes",
            Box::new(|r| r.c.failure),
        ),
        (
            "nv_inference_count",
            "counter",
            "Number of inferences performed (does not include cached requests)",
            Box::new(|r| r.c.items),
        ),
        (
            "nv_inference_exec_count",
            "counter",
            "Number of model executions performed (does not include cached requests)",
            Box::new(|r| r.s.executions),
        ),
        (
            "nv_inference_request_duration_us",
            "counter",
            "Cumulative inference request duration in microseconds (includes cached requests)",
            Box::new(|r| (r.c.success_time + r.c.failure_time).as_micros() as u64),
        ),
        (
            "nv_inference_queue_duration_us",
            "counter",
            "Cumulative inference queuing duration in microseconds (includes cached requests)",
            Box::new(|r| r.s.queue_time.sum.as_micros() as u64),
        ),
        (
            "nv_inference_compute_input_duration_us",
            "counter",
            "Cumulative compute input duration in microseconds (does not include cached requests)",
            Box::new(move |r| phase(&r.s, |p| p.input)),
        ),
        (
            "nv_inference_compute_infer_duration_us",
            "counter",
            "Cumulative compute inference duration in microseconds (does not include cached requests)",
            Box::new(move |r| phase(&r.s, |p| p.infer)),
        ),
        (
            "nv_inference_compute_output_duration_us",
            "counter",
            "Cumulative inference compute output duration in microseconds (does not include cached requests)",
            Box::new(move |r| phase(&r.s, |p| p.output)),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in &families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in &rows {
            let _ = writeln!(out, "{name}{{{}}} {}", r.labels, value(r));
        }
    }
    let name = "nv_inference_pending_request_count";
    let _ = writeln!(
        out,
        "# HELP {name} Instantaneous number of pending requests awaiting execution per-model.\n# TYPE {name} gauge"
    );
    for r in &rows {
        let _ = writeln!(out, "{name}{{{}}} {}", r.labels, r.s.pending);
    }
    out
}

/// A label value with `\`, `"` and newlines escaped (Prometheus text format).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_model_version() {
        let s = ServeStats::default();
        s.record("simple", 1, Some(4), Duration::from_micros(10));
        s.record("simple", 1, None, Duration::from_micros(5));
        s.record("simple", 2, Some(1), Duration::from_micros(1));
        let c = s.get("simple", 1);
        assert_eq!((c.success, c.failure, c.items), (1, 1, 4));
        assert_eq!(c.success_time, Duration::from_micros(10));
        assert_eq!(s.get("simple", 2).items, 1);
        assert_eq!(s.get("other", 1), Counters::default());
        assert_eq!(escape("a\"b\\"), "a\\\"b\\\\");
    }
}
