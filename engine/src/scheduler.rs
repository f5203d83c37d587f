//! The request queue and the batching decision (Triton's dynamic batcher), free of threads so the
//! rules can be tested on their own.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::{EngineError, FrameInput, NamedTensor, TensorData};
use crate::{ResponseSink, TensorView};
use vigil_modelrepo::ModelConfig;

/// Called once with the request's outputs (or its error), on a worker thread.
pub(crate) type Responder = Box<dyn for<'a> FnOnce(Result<&[TensorView<'a>], EngineError>) + Send>;

/// The batching rules taken from a configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchPolicy {
    /// `max_batch_size` (possibly lowered to what the model file allows); 0 = no batch dimension.
    pub max_batch: usize,
    /// Dynamic batching on (`max_batch > 0` and `dynamic_batching` present).
    pub dynamic: bool,
    /// Preferred batch sizes within `1..=max_batch`, ascending.
    pub preferred: Vec<usize>,
    pub max_delay: Duration,
    /// Number of priority levels, at least 1.
    pub levels: usize,
    /// The level (1-based) of requests with priority 0 or out of range.
    pub default_level: usize,
    pub preserve_ordering: bool,
}

impl BatchPolicy {
    pub fn new(config: &ModelConfig, max_batch: usize) -> Self {
        let db = config.dynamic_batching.as_ref();
        let dynamic = max_batch > 0 && db.is_some();
        let mut preferred: Vec<usize> = db
            .map(|d| {
                d.preferred_batch_size
                    .iter()
                    .filter(|&&p| p > 0 && p as usize <= max_batch)
                    .map(|&p| p as usize)
                    .collect()
            })
            .unwrap_or_default();
        preferred.sort_unstable();
        preferred.dedup();
        let levels = db.map_or(1, |d| d.priority_levels.clamp(1, 1 << 16) as usize);
        let default_level = db
            .map(|d| d.default_priority_level as usize)
            .filter(|&l| (1..=levels).contains(&l))
            .unwrap_or(levels);
        BatchPolicy {
            max_batch,
            dynamic,
            preferred,
            max_delay: Duration::from_micros(db.map_or(0, |d| d.max_queue_delay_microseconds)),
            levels,
            default_level,
            preserve_ordering: db.is_some_and(|d| d.preserve_ordering),
        }
    }

    /// The queue index (0 = highest) of a request's priority.
    pub fn level_index(&self, priority: u32) -> usize {
        let p = priority as usize;
        let level = if p == 0 || p > self.levels {
            self.default_level
        } else {
            p
        };
        level - 1
    }

    /// What a free instance does with the queue at `now`.
    pub fn decide(&self, queue: &Queue, now: Instant) -> Decision {
        if queue.is_empty() {
            return Decision::Idle;
        }
        if !self.dynamic {
            return Decision::Run(1);
        }
        let (count, oldest) = queue.scan(self.max_batch);
        if count >= self.max_batch {
            return Decision::Run(self.max_batch);
        }
        if let Some(&p) = self.preferred.iter().rev().find(|&&p| p <= count) {
            return Decision::Run(p);
        }
        if queue.shutdown {
            return Decision::Run(count);
        }
        let deadline = oldest + self.max_delay;
        if now >= deadline {
            Decision::Run(count)
        } else {
            Decision::WaitUntil(deadline)
        }
    }
}

/// What a free instance does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing queued.
    Idle,
    /// Take this many requests from the head and run them.
    Run(usize),
    /// Wait for more requests until then.
    WaitUntil(Instant),
}

/// A queued request.
pub(crate) struct Pending {
    /// Position in the order of arrival (gapless, from 0).
    pub seq: u64,
    pub enqueued: Instant,
    /// Inputs in the model's input order (empty for a frame request).
    pub inputs: Vec<NamedTensor>,
    /// The frame of a frame request.
    pub frame: Option<FrameInput>,
    pub respond: Responder,
    /// A decoupled request's responses go here (and `respond` is never called).
    pub sink: Option<ResponseSink>,
}

impl Pending {
    /// Whether `self` can join `other`'s batch: tensors of the same shapes and element types, or frames one launch
    /// can pre-process together (never a frame with tensors).
    fn same_shapes(&self, other: &Pending) -> bool {
        match (&self.frame, &other.frame) {
            (Some(a), Some(b)) => return a.compatible(b),
            (None, None) => {}
            _ => return false,
        }
        self.inputs.len() == other.inputs.len()
            && self
                .inputs
                .iter()
                .zip(&other.inputs)
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1 && a.2.data_type() == b.2.data_type())
    }
}

/// Requests waiting for an instance: one FIFO per priority level.
pub(crate) struct Queue {
    levels: Vec<VecDeque<Pending>>,
    len: usize,
    next_seq: u64,
    /// No new requests; queued ones still run, without waiting for the queue delay.
    pub shutdown: bool,
}

impl Queue {
    pub fn new(levels: usize) -> Self {
        Queue {
            levels: (0..levels.max(1)).map(|_| VecDeque::new()).collect(),
            len: 0,
            next_seq: 0,
            shutdown: false,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a request at `level` (0 = highest) and returns its sequence number.
    pub fn push(
        &mut self,
        level: usize,
        enqueued: Instant,
        inputs: Vec<NamedTensor>,
        frame: Option<FrameInput>,
        respond: Responder,
        sink: Option<ResponseSink>,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let level = level.min(self.levels.len() - 1);
        self.levels[level].push_back(Pending {
            seq,
            enqueued,
            inputs,
            frame,
            respond,
            sink,
        });
        self.len += 1;
        seq
    }

    fn in_order(&self) -> impl Iterator<Item = &Pending> {
        self.levels.iter().flatten()
    }

    /// How many requests from the head (priority order) have the head's shapes, up to `max`, and
    /// when the oldest of them was queued.
    pub fn scan(&self, max: usize) -> (usize, Instant) {
        let mut it = self.in_order();
        let Some(head) = it.next() else {
            return (0, Instant::now());
        };
        let mut count = 1;
        let mut oldest = head.enqueued;
        for p in it {
            if count >= max || !p.same_shapes(head) {
                break;
            }
            count += 1;
            oldest = oldest.min(p.enqueued);
        }
        (count, oldest)
    }

    /// Removes `n` requests from the head, in priority order.
    pub fn take(&mut self, n: usize) -> Vec<Pending> {
        let mut out = Vec::with_capacity(n);
        for level in &mut self.levels {
            while out.len() < n {
                match level.pop_front() {
                    Some(p) => out.push(p),
                    None => break,
                }
            }
        }
        self.len -= out.len();
        out
    }

    /// Removes everything.
    pub fn drain(&mut self) -> Vec<Pending> {
        let n = self.len;
        self.take(n)
    }
}

/// An output copied out of a batch, for a response released later.
pub(crate) struct OwnedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub raw: TensorData,
}

/// A finished response waiting for its turn (`preserve_ordering`).
pub(crate) struct Parked {
    pub respond: Responder,
    pub outcome: Result<Vec<OwnedTensor>, EngineError>,
}

/// Releases responses in the order of arrival.
#[derive(Default)]
pub(crate) struct Sequencer {
    /// The sequence number whose response is released next.
    pub next: u64,
    pub parked: BTreeMap<u64, Parked>,
    /// Responses that had to be parked (finished before an earlier request).
    pub reordered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use vigil_modelrepo::DynamicBatching;

    fn config(max_batch: i32, db: Option<DynamicBatching>) -> ModelConfig {
        let mut c = ModelConfig::parse("name: \"m\"", Path::new("config.pbtxt")).unwrap();
        c.max_batch_size = max_batch;
        c.dynamic_batching = db;
        c
    }

    fn push(q: &mut Queue, level: usize, at: Instant, shape: Vec<i64>) -> u64 {
        let n = shape.iter().product::<i64>() as usize;
        q.push(
            level,
            at,
            vec![("x".into(), shape, vec![0.0f32; n].into())],
            None,
            Box::new(|_| {}),
            None,
        )
    }

    #[test]
    fn policy_from_config() {
        let p = BatchPolicy::new(
            &config(
                8,
                Some(DynamicBatching {
                    preferred_batch_size: vec![4, 2, 16, 0],
                    max_queue_delay_microseconds: 500,
                    preserve_ordering: true,
                    priority_levels: 3,
                    default_priority_level: 2,
                }),
            ),
            8,
        );
        assert!(p.dynamic && p.preserve_ordering);
        assert_eq!(p.preferred, vec![2, 4]);
        assert_eq!(p.max_delay, Duration::from_micros(500));
        assert_eq!((p.levels, p.default_level), (3, 2));
        assert_eq!(p.level_index(1), 0);
        assert_eq!(p.level_index(0), 1);
        assert_eq!(p.level_index(3), 2);
        assert_eq!(p.level_index(9), 1, "out of range → default level");

        let p = BatchPolicy::new(&config(0, Some(DynamicBatching::default())), 0);
        assert!(!p.dynamic, "max_batch_size 0 never batches");
        let p = BatchPolicy::new(&config(4, None), 4);
        assert!(!p.dynamic);
        assert_eq!((p.levels, p.level_index(1)), (1, 0));
    }

    #[test]
    fn batching_decisions() {
        let t0 = Instant::now();
        let db = DynamicBatching {
            preferred_batch_size: vec![2],
            max_queue_delay_microseconds: 10_000,
            ..Default::default()
        };
        let p = BatchPolicy::new(&config(4, Some(db)), 4);
        let mut q = Queue::new(p.levels);
        assert_eq!(p.decide(&q, t0), Decision::Idle);
        push(&mut q, 0, t0, vec![3]);
        // One request: no preferred size reached, wait for the delay since it was queued.
        assert_eq!(
            p.decide(&q, t0),
            Decision::WaitUntil(t0 + Duration::from_millis(10))
        );
        assert_eq!(
            p.decide(&q, t0 + Duration::from_millis(10)),
            Decision::Run(1)
        );
        push(&mut q, 0, t0 + Duration::from_millis(1), vec![3]);
        push(&mut q, 0, t0 + Duration::from_millis(2), vec![3]);
        // Three: the preferred size 2 is reached, run it at once.
        assert_eq!(p.decide(&q, t0), Decision::Run(2));
        push(&mut q, 0, t0, vec![3]);
        assert_eq!(
            p.decide(&q, t0),
            Decision::Run(4),
            "max_batch_size is always taken"
        );
        push(&mut q, 0, t0, vec![3]);
        assert_eq!(p.decide(&q, t0), Decision::Run(4));
        let batch = q.take(4);
        assert_eq!(
            batch.iter().map(|p| p.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(q.len(), 1);

        // A different shape ends the batch.
        let mut q = Queue::new(1);
        push(&mut q, 0, t0, vec![3]);
        push(&mut q, 0, t0, vec![5]);
        push(&mut q, 0, t0, vec![3]);
        assert_eq!(q.scan(4).0, 1);
        q.shutdown = true;
        assert_eq!(p.decide(&q, t0), Decision::Run(1), "shutdown does not wait");
    }

    #[test]
    fn frames_batch_only_with_frames_one_launch_can_take() {
        use crate::gpu::{FrameFormat, FrameLayout};
        use crate::preprocess::{ColorOrder, Layout, PreprocessSpec, ResizeMode};
        let spec = PreprocessSpec {
            width: 8,
            height: 8,
            color: ColorOrder::Rgb,
            layout: Layout::Nchw,
            resize: ResizeMode::Stretch,
            mean: [0.0; 3],
            std: [1.0; 3],
            scale: 1.0,
            pad_value: 0,
        };
        let frame = |format, w, h| {
            let layout = FrameLayout::packed(format, w, h);
            Some(FrameInput {
                data: vec![0; layout.frame_bytes],
                layout,
                spec: spec.clone(),
                yuv: None,
            })
        };
        let t0 = Instant::now();
        // How many requests from the head one batch takes, for requests queued in this order
        // (`None`: a tensor of shape [3]).
        let batch = |requests: Vec<Option<FrameInput>>| {
            let mut q = Queue::new(1);
            for f in requests {
                match f {
                    Some(f) => {
                        q.push(0, t0, Vec::new(), Some(f), Box::new(|_| {}), None);
                    }
                    None => {
                        push(&mut q, 0, t0, vec![3]);
                    }
                }
            }
            q.scan(8).0
        };
        let nv12 = |h| frame(FrameFormat::Nv12, 16, h);
        assert_eq!(batch(vec![nv12(10), nv12(10), nv12(10)]), 3);
        assert_eq!(
            batch(vec![nv12(10), nv12(10), nv12(12), nv12(10)]),
            2,
            "another size ends the batch"
        );
        assert_eq!(
            batch(vec![nv12(12), frame(FrameFormat::I420, 16, 12)]),
            1,
            "another format ends the batch"
        );
        let mut other_spec = nv12(10);
        other_spec.as_mut().unwrap().spec.pad_value = 114;
        assert_eq!(
            batch(vec![nv12(10), other_spec]),
            1,
            "another spec ends the batch"
        );
        assert_eq!(
            batch(vec![nv12(10), None]),
            1,
            "a tensor never joins a frame batch"
        );
        assert_eq!(
            batch(vec![None, None, nv12(10)]),
            2,
            "nor a frame a tensor batch"
        );
    }

    #[test]
    fn priority_order_and_oldest() {
        let t0 = Instant::now();
        let mut q = Queue::new(2);
        let a = push(&mut q, 1, t0, vec![1]);
        let b = push(&mut q, 1, t0 + Duration::from_millis(1), vec![1]);
        let c = push(&mut q, 0, t0 + Duration::from_millis(5), vec![1]);
        let (n, oldest) = q.scan(8);
        assert_eq!((n, oldest), (3, t0));
        let order: Vec<u64> = q.take(3).iter().map(|p| p.seq).collect();
        assert_eq!(order, vec![c, a, b]);
    }
}
