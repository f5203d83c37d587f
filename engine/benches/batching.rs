//! Throughput of NanoDet through the engine with dynamic batching (max 8) versus batch 1, on the
//! same frames from 8 concurrent streams, in one run.
//!
//! `cargo bench -p vigil-engine --bench batching` (add `-- --quick`, or set `VIGIL_BENCH_QUICK=1`, for
//! a short run; `VIGIL_BENCH_FRAMES=N` sets the number of frames, `VIGIL_BENCH_DELAY_US` the
//! dynamic batcher's `max_queue_delay_microseconds`, default 20000).
//!
//! The frames are SYNTHETIC: fixed pseudo-random tensors of NanoDet's input size (values in the
//! range of normalised pixels). Compute cost does not depend on the pixel values, so this measures
//! the engine and ONNX Runtime, not pre-processing or decoding.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_engine::{InferRequest, ModelRuntime, ModelStats};
use vigil_modelrepo::{DynamicBatching, InstanceGroup, InstanceKind, LoadedModel, ModelConfig};

const STREAMS: usize = 8;
const DISTINCT_FRAMES: usize = 16;
const INPUT: &str = "input_1:0";

fn frame(seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..3 * 416 * 416)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `total` frames from `STREAMS` streams through `rt`; returns the seconds taken.
fn run(rt: &Arc<ModelRuntime>, frames: &Arc<Vec<Vec<f32>>>, total: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..STREAMS)
        .map(|s| {
            let rt = rt.clone();
            let frames = frames.clone();
            std::thread::spawn(move || {
                let mut sum = 0.0f64;
                let mut i = s;
                while i < total {
                    let x = frames[i % frames.len()].clone();
                    let req = InferRequest::new(INPUT, vec![3, 416, 416], x);
                    // A stand-in for decoding: touch every output value.
                    sum += rt
                        .infer(req, |views| {
                            views
                                .iter()
                                .map(|v| v.data.iter().map(|&d| f64::from(d)).sum::<f64>())
                                .sum::<f64>()
                        })
                        .expect("inference");
                    i += STREAMS;
                }
                sum
            })
        })
        .collect();
    let mut check = 0.0;
    for t in threads {
        check += t.join().expect("stream thread");
    }
    std::hint::black_box(check);
    start.elapsed().as_secs_f64()
}

fn runtime(base: &LoadedModel, dynamic: Option<DynamicBatching>) -> Arc<ModelRuntime> {
    let mut m = base.clone();
    m.config.max_batch_size = 8;
    m.config.dynamic_batching = dynamic;
    m.config.instance_group = vec![InstanceGroup {
        kind: InstanceKind::Cpu,
        count: 1,
        ..InstanceGroup::default()
    }];
    Arc::new(ModelRuntime::load(&m).unwrap_or_else(|e| panic!("{e}")))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("VIGIL_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let total =
        env_number("VIGIL_BENCH_FRAMES").map_or(if quick { 64 } else { 480 }, |n| n as usize);
    let delay_us = env_number("VIGIL_BENCH_DELAY_US").unwrap_or(20_000);

    if let Err(e) = vigil_engine::runtime::environment() {
        println!("SKIPPED: ONNX Runtime is not available: {e}");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet");
    let model_path = dir.join("1/model.onnx");
    if !model_path.is_file() {
        println!(
            "SKIPPED: {} is not installed (run `make setup`)",
            model_path.display()
        );
        return;
    }
    let mut config =
        ModelConfig::from_file(&dir.join("config.pbtxt")).unwrap_or_else(|e| panic!("{e}"));
    config.set_name("nanodet");
    let base = LoadedModel {
        name: "nanodet".into(),
        version: 1,
        dir,
        model_path,
        config,
        labels: Vec::new(),
    };

    let frames: Arc<Vec<Vec<f32>>> = Arc::new((0..DISTINCT_FRAMES as u64).map(frame).collect());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "NanoDet-m 416, {total} synthetic frames (fixed pseudo-random tensors) from {STREAMS} concurrent \
         streams, 1 instance, {cores} cores{}",
        if quick { " (quick)" } else { "" }
    );

    let batched = runtime(
        &base,
        Some(DynamicBatching {
            max_queue_delay_microseconds: delay_us,
            ..DynamicBatching::default()
        }),
    );
    let single = runtime(&base, None);
    // Warm-up: first runs allocate ONNX Runtime's buffers.
    let warm = STREAMS.min(total);
    run(&batched, &frames, warm);
    run(&single, &frames, warm);
    let warm_batched = batched.stats();
    let warm_single = single.stats();

    // Rounds in A-B-B-A order, so that load from elsewhere on the machine hits both alike.
    let rounds = if quick { 2 } else { 6 };
    let per_round = (total / rounds).max(STREAMS);
    let total = per_round * rounds;
    let (mut t_batched, mut t_single) = (0.0, 0.0);
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let (tb, ts) = if r % 2 == 0 {
            let tb = run(&batched, &frames, per_round);
            (tb, run(&single, &frames, per_round))
        } else {
            let ts = run(&single, &frames, per_round);
            (run(&batched, &frames, per_round), ts)
        };
        t_batched += tb;
        t_single += ts;
        ratios.push(ts / tb);
    }
    let s_batched = batched.stats();
    let s_single = single.stats();
    let fps_batched = total as f64 / t_batched;
    let fps_single = total as f64 / t_single;
    let only_timed = |s: &ModelStats, w: &ModelStats| {
        let mut sizes = s.batch_sizes.clone();
        for (b, c) in &w.batch_sizes {
            if let Some(v) = sizes.get_mut(b) {
                *v -= c;
            }
        }
        sizes.retain(|_, c| *c > 0);
        let n: u64 = sizes.values().sum();
        let sum: u64 = sizes.iter().map(|(b, c)| *b as u64 * c).sum();
        let compute = s.compute_time.sum - w.compute_time.sum;
        let queue = s.queue_time.sum - w.queue_time.sum;
        let requests = s.queue_time.count - w.queue_time.count;
        (
            sizes,
            sum as f64 / n.max(1) as f64,
            n,
            compute,
            queue / requests.max(1) as u32,
        )
    };
    let (sizes_b, mean_b, exec_b, compute_b, queue_b) = only_timed(&s_batched, &warm_batched);
    let (_, mean_s, exec_s, compute_s, queue_s) = only_timed(&s_single, &warm_single);
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e3 / n.max(1) as f64;
    println!(
        "dynamic batching (max 8, delay {delay_us} µs): {fps_batched:7.2} frames/s  ({t_batched:.2} s, \
         {exec_b} executions, mean batch {mean_b:.2}, batch sizes {sizes_b:?}, compute {:.1} ms/execution, \
         mean queue {:.1} ms)",
        per(compute_b, exec_b),
        queue_b.as_secs_f64() * 1e3
    );
    println!(
        "batch 1 (no dynamic batching):            {fps_single:7.2} frames/s  ({t_single:.2} s, \
         {exec_s} executions, mean batch {mean_s:.2}, compute {:.1} ms/execution, mean queue {:.1} ms)",
        per(compute_s, exec_s),
        queue_s.as_secs_f64() * 1e3
    );
    ratios.sort_by(f64::total_cmp);
    println!(
        "throughput ratio dynamic batching / batch 1: {:.2}x  (rounds of {per_round} frames, sorted: {})",
        fps_batched / fps_single,
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
