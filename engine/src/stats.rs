//! Per-model metrics.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::runtime::ExecutionProvider;
use vigil_modelrepo::InstanceKind;

/// Upper bounds (inclusive, microseconds) of the time histogram buckets; one more bucket counts
/// everything above the last bound.
pub const TIME_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A compute interval: (start, end).
pub type Interval = (Instant, Instant);

/// How many compute intervals each instance keeps.
pub const INTERVAL_LOG_LEN: usize = 1000;

/// A histogram of durations with the buckets [`TIME_BUCKETS_US`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// `counts[i]`: durations ≤ `TIME_BUCKETS_US[i]` µs (and above the previous bound);
    /// the last entry counts those above every bound.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: Duration,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; TIME_BUCKETS_US.len() + 1],
            count: 0,
            sum: Duration::ZERO,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros();
        let i = TIME_BUCKETS_US
            .iter()
            .position(|&b| us <= u128::from(b))
            .unwrap_or(TIME_BUCKETS_US.len());
        self.counts[i] += 1;
        self.count += 1;
        self.sum += d;
    }

    /// The mean duration; zero when empty.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.sum / self.count.min(u64::from(u32::MAX)) as u32
        }
    }

    /// `(upper bound in µs or None for the overflow bucket, count)` for the non-empty buckets.
    pub fn buckets(&self) -> Vec<(Option<u64>, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(i, &c)| (TIME_BUCKETS_US.get(i).copied(), c))
            .collect()
    }
}

/// Metrics of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStats {
    /// `<group>_<index>`.
    pub name: String,
    pub kind: InstanceKind,
    /// The execution provider its session runs on.
    pub provider: ExecutionProvider,
    pub executions: u64,
    /// The last [`INTERVAL_LOG_LEN`] compute intervals (start, end), oldest first.
    pub intervals: Vec<Interval>,
}

/// A snapshot of a model runtime's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStats {
    pub model: String,
    pub version: u64,
    /// Requests accepted (queued).
    pub requests: u64,
    /// Requests answered with an error.
    pub failures: u64,
    /// Requests queued and not yet taken by an instance.
    pub pending: usize,
    /// Executions (batches) run.
    pub executions: u64,
    /// Executions per batch size (number of requests in the batch).
    pub batch_sizes: BTreeMap<usize, u64>,
    /// Compute time per batch size, in Triton's three phases.
    pub batch_compute: BTreeMap<usize, PhaseTimes>,
    /// Per request: from queued to its batch starting.
    pub queue_time: Histogram,
    /// Per execution: running the batch (stacking inputs, the session run; not the response closures).
    pub compute_time: Histogram,
    /// Responses parked because an earlier request finished later (`preserve_ordering`).
    pub reordered: u64,
    pub instances: Vec<InstanceStats>,
}

impl ModelStats {
    /// Mean requests per execution; 0 when nothing ran.
    pub fn mean_batch_size(&self) -> f64 {
        let (n, sum) = self
            .batch_sizes
            .iter()
            .fold((0u64, 0u64), |(n, s), (&size, &c)| {
                (n + c, s + size as u64 * c)
            });
        if n == 0 { 0.0 } else { sum as f64 / n as f64 }
    }

    /// Pairs `(instance a, instance b, interval of a, interval of b)` of compute intervals of
    /// different instances that overlap in time.
    pub fn overlapping_intervals(&self) -> Vec<(usize, usize, Interval, Interval)> {
        let mut out = Vec::new();
        for (a, ia) in self.instances.iter().enumerate() {
            for (b, ib) in self.instances.iter().enumerate().skip(a + 1) {
                for &x in &ia.intervals {
                    for &y in &ib.intervals {
                        if x.0 < y.1 && y.0 < x.1 {
                            out.push((a, b, x, y));
                        }
                    }
                }
            }
        }
        out
    }
}

/// Time spent by the executions of one batch size, summed per phase (Triton's `compute_input`,
/// `compute_infer`, `compute_output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseTimes {
    /// Executions measured.
    pub count: u64,
    /// Gathering the batch: GPU pre-processing of frames, stacking the requests' inputs.
    pub input: Duration,
    /// The session's run, until its outputs are handed over.
    pub infer: Duration,
    /// Handing the outputs to each request's closure (split per request, copied by callers).
    pub output: Duration,
}

/// The mutable side of the metrics.
pub(crate) struct StatsInner {
    pub requests: u64,
    pub failures: u64,
    pub executions: u64,
    pub batch_sizes: BTreeMap<usize, u64>,
    pub batch_compute: BTreeMap<usize, PhaseTimes>,
    pub queue_time: Histogram,
    pub compute_time: Histogram,
    pub instances: Vec<InstanceLog>,
}

pub(crate) struct InstanceLog {
    pub name: String,
    pub kind: InstanceKind,
    pub provider: ExecutionProvider,
    pub executions: u64,
    pub intervals: VecDeque<Interval>,
}

impl StatsInner {
    pub fn new(instances: Vec<InstanceLog>) -> Self {
        StatsInner {
            requests: 0,
            failures: 0,
            executions: 0,
            batch_sizes: BTreeMap::new(),
            batch_compute: BTreeMap::new(),
            queue_time: Histogram::default(),
            compute_time: Histogram::default(),
            instances,
        }
    }

    /// Records the input and infer phases of an execution of `size` requests.
    pub fn record_phases(&mut self, size: usize, input: Duration, infer: Duration) {
        let p = self.batch_compute.entry(size).or_default();
        p.count += 1;
        p.input += input;
        p.infer += infer;
    }

    /// Records the output phase of an execution of `size` requests.
    pub fn record_output(&mut self, size: usize, output: Duration) {
        self.batch_compute.entry(size).or_default().output += output;
    }

    pub fn record_execution(&mut self, instance: usize, size: usize, start: Instant, end: Instant) {
        self.executions += 1;
        *self.batch_sizes.entry(size).or_insert(0) += 1;
        self.compute_time
            .record(end.saturating_duration_since(start));
        if let Some(log) = self.instances.get_mut(instance) {
            log.executions += 1;
            if log.intervals.len() >= INTERVAL_LOG_LEN {
                log.intervals.pop_front();
            }
            log.intervals.push_back((start, end));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let mut h = Histogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(101));
        h.record(Duration::from_secs(60));
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets(), vec![(Some(100), 1), (Some(250), 1), (None, 1)]);
        assert!(h.mean() > Duration::from_secs(19));
    }

    #[test]
    fn mean_batch_size_and_overlap() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let inst = |name: &str, iv: Vec<(Instant, Instant)>| InstanceStats {
            name: name.into(),
            kind: InstanceKind::Cpu,
            provider: ExecutionProvider::Cpu,
            executions: iv.len() as u64,
            intervals: iv,
        };
        let s = ModelStats {
            model: "m".into(),
            version: 1,
            requests: 10,
            failures: 0,
            pending: 0,
            executions: 3,
            batch_sizes: [(8, 1), (1, 2)].into_iter().collect(),
            batch_compute: BTreeMap::new(),
            queue_time: Histogram::default(),
            compute_time: Histogram::default(),
            reordered: 0,
            instances: vec![
                inst("a", vec![(t, t + ms(10)), (t + ms(20), t + ms(30))]),
                inst(
                    "b",
                    vec![(t + ms(10), t + ms(15)), (t + ms(25), t + ms(40))],
                ),
            ],
        };
        assert!((s.mean_batch_size() - 10.0 / 3.0).abs() < 1e-9);
        let o = s.overlapping_intervals();
        assert_eq!(o.len(), 1, "touching intervals do not overlap");
        assert_eq!(o[0].2, (t + ms(20), t + ms(30)));
    }
}
