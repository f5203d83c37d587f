//! The hardware's limits on this workload: ONNX Runtime alone on pre-processed tensors of the same
//! frames (the compute bound) and decoding alone (the decode bound, measured in a child process).

use super::stats::percentile;
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_core::modelspec::ModelSpec;
use vigil_engine::preprocess::Preprocessor;
use vigil_engine::runtime::{OnnxModel, SessionOptions};
use vigil_modelrepo::ModelRepository;

/// One batch size of the compute bound.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComputeRun {
    pub batch: usize,
    /// Whether ONNX Runtime's idle intra-op threads busy-waited (its default; Vigil turns it off).
    pub spinning: bool,
    pub frames: usize,
    pub wall_s: f64,
    pub cpu_s: f64,
    /// Per-frame latency = the latency of the frame's batch, seconds.
    pub p50_s: f64,
    pub p99_s: f64,
}

impl ComputeRun {
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.wall_s
    }
}

/// Decodes the first `count` frames of `video` to packed BGRx/RGBx (the model's order) with
/// GStreamer and pre-processes them as `vigilinfer` does; returns the tensors.
fn tensors(
    video: &Path,
    spec: &ModelSpec,
    count: usize,
) -> Result<(Vec<Vec<f32>>, u32, u32), String> {
    use gst::prelude::*;
    use vigil_engine::preprocess::ColorOrder;
    crate::pipeline::init().map_err(|e| e.to_string())?;
    let format = match spec.preprocess.color {
        ColorOrder::Bgr => "BGRx",
        ColorOrder::Rgb => "RGBx",
    };
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format={format} ! appsink name=sink sync=false",
        video.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("{}: {e}", video.display()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("{}: cannot play: {e}", video.display()))?;
    let mut pre = Preprocessor::new(spec.preprocess.clone());
    let mut out = Vec::new();
    let (mut w, mut h) = (0, 0);
    while out.len() < count {
        let Ok(sample) = sink.pull_sample() else {
            break;
        };
        let caps = sample.caps().ok_or("sample without caps")?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
        let buffer = sample.buffer().ok_or("sample without buffer")?;
        let map = buffer.map_readable().map_err(|e| e.to_string())?;
        (w, h) = (info.width(), info.height());
        let stride = info.stride()[0] as usize;
        let packed: Vec<u8> = if stride == w as usize * 4 {
            map.as_slice()[..(w * h * 4) as usize].to_vec()
        } else {
            map.as_slice()
                .chunks(stride)
                .take(h as usize)
                .flat_map(|row| row[..w as usize * 4].iter().copied())
                .collect()
        };
        let mut tensor = vec![0f32; spec.preprocess.tensor_len()];
        pre.run(&packed, w, h, &mut tensor)
            .map_err(|e| e.to_string())?;
        out.push(tensor);
    }
    let _ = pipeline.set_state(gst::State::Null);
    if out.is_empty() {
        return Err(format!("{}: no frame decoded", video.display()));
    }
    Ok((out, w, h))
}

/// Runs the model alone at each `(batch size, spinning)` (batch sizes up to the model's
/// `max_batch_size`) for about `secs` seconds each, on the first 8 frames of `video` pre-processed
/// as Vigil does, with one intra-op thread per core.
pub fn compute_bound(
    repository: &Path,
    model: &str,
    video: &Path,
    runs_wanted: &[(usize, bool)],
    secs: f64,
) -> Result<Vec<ComputeRun>, String> {
    let loaded = ModelRepository::open(repository)
        .and_then(|r| r.load(model, None))
        .map_err(|e| e.to_string())?;
    let spec = ModelSpec::from_config(&loaded.config, &loaded.labels).map_err(|e| e.to_string())?;
    let (frames, _, _) = tensors(video, &spec, 8)?;
    let load = |spinning: bool| {
        OnnxModel::load_with(
            &loaded.model_path,
            SessionOptions {
                intra_op_spinning: spinning,
                ..SessionOptions::default()
            },
        )
        .map_err(|e| e.to_string())
    };
    let mut sessions = [load(false)?, load(true)?];
    let max_batch = spec.max_batch_size.max(1);
    let mut runs = Vec::new();
    for &(b, spinning) in runs_wanted.iter().filter(|&&(b, _)| b <= max_batch) {
        let session = &mut sessions[usize::from(spinning)];
        let input: Vec<f32> = (0..b)
            .flat_map(|i| frames[i % frames.len()].iter().copied())
            .collect();
        let shape = spec.input_shape(b);
        let once = |session: &mut OnnxModel| {
            session
                .run(&input, &shape, |outputs| outputs.len())
                .map_err(|e| e.to_string())
        };
        once(session)?; // warm-up
        let mut lat = Vec::new();
        let cpu0 = super::measure::own_cpu_s();
        let t0 = Instant::now();
        while lat.len() < 3 || t0.elapsed() < Duration::from_secs_f64(secs) {
            let t = Instant::now();
            once(session)?;
            lat.push(t.elapsed().as_secs_f64());
        }
        let wall_s = t0.elapsed().as_secs_f64();
        runs.push(ComputeRun {
            batch: b,
            spinning,
            frames: lat.len() * b,
            wall_s,
            cpu_s: super::measure::own_cpu_s() - cpu0,
            p50_s: percentile(&lat, 0.5).unwrap_or(0.0),
            p99_s: percentile(&lat, 0.99).unwrap_or(0.0),
        });
    }
    if runs.is_empty() {
        return Err(format!(
            "model '{model}': no batch size of {runs_wanted:?} within its max_batch_size {max_batch}"
        ));
    }
    Ok(runs)
}

/// What the hidden `vigil bench --decode-only` child prints: frames decoded and seconds from
/// PLAYING to end-of-stream, and the intervals between a stream's frames.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DecodeReport {
    pub frames: u64,
    pub seconds: f64,
    pub completions: Vec<Vec<f64>>,
}

/// In this process: `streams` copies of `video` through `vigilsrc` (Vigil's decode path) to
/// `fakesink`, as fast as possible.
pub fn decode_only(video: &Path, streams: usize) -> Result<DecodeReport, String> {
    use gst::prelude::*;
    use std::sync::{Arc, Mutex};
    crate::pipeline::init().map_err(|e| e.to_string())?;
    let pipeline = gst::Pipeline::new();
    let completions = Arc::new(Mutex::new(vec![Vec::new(); streams]));
    let t0 = Instant::now();
    for i in 0..streams {
        let src = gst::ElementFactory::make("vigilsrc")
            .property("uri", video.to_string_lossy().as_ref())
            .build()
            .map_err(|e| format!("vigilsrc: {e}"))?;
        let convert = gst::ElementFactory::make("videoconvert")
            .build()
            .map_err(|e| e.to_string())?;
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
            .map_err(|e| e.to_string())?;
        pipeline
            .add_many([&src, &convert, &sink])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([&src, &convert, &sink]).map_err(|e| e.to_string())?;
        let c = completions.clone();
        sink.static_pad("sink")
            .ok_or("fakesink without sink pad")?
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                c.lock().unwrap()[i].push(t0.elapsed().as_secs_f64());
                gst::PadProbeReturn::Ok
            });
    }
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("{}: cannot play: {e}", video.display()))?;
    let start = Instant::now();
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                result = Err(format!("{}: {}", video.display(), e.error()));
                break;
            }
            _ => {}
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    let completions = completions.lock().unwrap().clone();
    Ok(DecodeReport {
        frames: completions.iter().map(|c| c.len() as u64).sum(),
        seconds,
        completions,
    })
}
