//! In-process closed-loop load on one model, as perf_analyzer puts it on a server: C callers each
//! send a request, wait for its answer and send the next, for S seconds; prints inferences/s and
//! latency percentiles. The in-process side of `vigil serve`'s comparison (README "Serving").
//!
//! `cargo run --release -p vigil-engine --example closed_loop -- REPO MODEL CONCURRENCY SECONDS`
//!
//! Inputs are FP32 tensors of the model's input shapes (batch 1; `-1` dimensions taken as 1),
//! filled with fixed pseudo-random values, as perf_analyzer's random data.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_engine::{InferRequest, ModelServer};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, repo, model, concurrency, seconds] = args.as_slice() else {
        return Err("usage: closed_loop REPO MODEL CONCURRENCY SECONDS".into());
    };
    let concurrency: usize = concurrency
        .parse()
        .map_err(|e| format!("CONCURRENCY: {e}"))?;
    let seconds: f64 = seconds.parse().map_err(|e| format!("SECONDS: {e}"))?;
    let server = ModelServer::new();
    let handle = server
        .acquire(Path::new(repo), model, None)
        .map_err(|e| e.to_string())?;
    let runtime = handle.current();
    let batched = runtime.max_batch_size() > 0;
    let inputs: Vec<(String, Vec<i64>, Vec<f32>)> = runtime
        .inputs()
        .iter()
        .map(|i| {
            let dims: Vec<i64> = i
                .shape
                .iter()
                .skip(usize::from(batched))
                .map(|&d| d.max(1))
                .collect();
            let n = dims.iter().product::<i64>() as usize;
            let mut s = 0x9E37_79B9_7F4A_7C15u64;
            let data = (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            (i.name.clone(), dims, data)
        })
        .collect();
    let inputs = Arc::new(inputs);
    // Warm-up: one request per caller.
    let request = |inputs: &[(String, Vec<i64>, Vec<f32>)]| {
        let mut r = InferRequest::default();
        for (name, dims, data) in inputs {
            r = r.with_input(name.clone(), dims.clone(), data.clone());
        }
        r
    };
    handle
        .infer(request(&inputs), |_| ())
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let handle = handle.clone();
            let inputs = inputs.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = request(&inputs);
                    if handle.infer(r, |_| ()).is_err() {
                        break;
                    }
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    let took = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{model}: concurrency {concurrency}: {:.1} infer/s, p50 {} us, p99 {} us, {} requests in {took:.1} s, mean batch {:.2}",
        all.len() as f64 / took,
        pct(0.5).as_micros(),
        pct(0.99).as_micros(),
        all.len(),
        runtime.stats().mean_batch_size()
    );
    Ok(())
}
