//! `vigil bench`: Vigil against the hardware's limits and against what a user would run instead, in one
//! run, on the same frames and the same model, reported as ratios (absolute figures of a shared
//! machine are not comparable from run to run; ratios of one run are).
//!
//! Rows (see `README.md`, "Performance"):
//! - **limit**: ONNX Runtime alone on pre-processed tensors of the clip's first frames at batch
//!   1/2/4/8 (the best is the compute bound), in this process; Vigil's decode path alone
//!   (`vigilsrc ! fakesink`, as many streams as cores) in a child process (the decode bound);
//! - **vigil**: the real pipeline (decode, NanoDet, IoU tracker, overlay, x264 MP4 and JSON events),
//!   a child `vigil run` per stream count;
//! - **peer**: the Python pipeline `benches/peers/python_peer.py` (OpenCV, onnxruntime, numpy) doing the
//!   same work per stream count, and a `gst-launch-1.0` decode-only pipeline.
//!
//! Measured alike on every side: frames/s over the processing window (first to last completed frame,
//! start-up excluded), per-frame latency = the interval between consecutive completed frames of one
//! stream (each stream's frames go through one thread one after another in Vigil and in the peer;
//! Vigil's completions are its events' `timestamp_ms`, the peer's its own clock), CPU time per frame =
//! the child's user + system time (start-up included, from `wait4`) over its frames, peak RSS =
//! the largest resident size of the child and its descendants together ([`measure::Measured`]).

pub mod capacity;
pub mod chart;
pub mod churn;
pub mod cluster;
pub mod int8;
pub mod lan;
pub mod limits;
pub mod measure;
pub mod parity;
pub mod report;
pub mod stats;
pub mod viewers;

use anyhow::{Context, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The classes, threshold and NMS both sides use (the traffic demo's).
pub const CLASSES: &str = "person,bicycle,car,motorcycle,bus,truck";
pub const THRESHOLD: f64 = 0.4;
pub const NMS_IOU: f64 = 0.5;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Short run (under 3 minutes): the first 100 frames, 1 and 4 streams, one repetition.
    #[arg(long)]
    pub quick: bool,
    /// Folder for report.md, report.json and chart.png (default: benches/results for a full run,
    /// none for --quick).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The video every stream plays.
    #[arg(long, default_value = "samples/media/vtest.avi")]
    pub video: PathBuf,
    /// The model repository.
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// The detector (a model of the repository, fed and decoded as its config.pbtxt says).
    #[arg(long, default_value = "nanodet")]
    pub model: String,
    /// Frames of the video each stream plays (0 = all; --quick: 100).
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stream counts, e.g. 1,2,4,8 (--quick: 1,4).
    #[arg(long, value_delimiter = ',')]
    pub streams: Vec<usize>,
    /// Repetitions of each Vigil and peer row; the run with the median frames/s is reported
    /// (--quick: 1; full: 3).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Leave out the Python peer.
    #[arg(long)]
    pub no_peer: bool,
    /// Soak instead: N streams looped for SECONDS, sampling RSS, threads and frames/s.
    #[arg(long, value_name = "SECONDS")]
    pub soak: Option<u64>,
    /// Streams of the soak.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub soak_streams: usize,
    /// Seconds between soak and churn samples.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub sample_secs: u64,
    /// Churn instead (issue 16): looped files and RTSP test cameras for SECONDS while cameras are
    /// killed and restarted and streams added and removed through the API, MQTT on; RSS, threads
    /// and open fds over time, reconnections, output gaps, seq gaps (churn.json and churn.md into
    /// --out when given).
    #[arg(long, value_name = "SECONDS")]
    pub churn: Option<u64>,
    /// Streams of the churn: half looped files, half cameras (at least 4).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub churn_streams: usize,
    /// Seed of the churn's random schedule (which camera, when, what is added).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// Churn: mean seconds between camera kills (each camera is down 2 to 5 s).
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    pub kill_every: f64,
    /// Churn: mean seconds between additions of a stream (each with a removal).
    #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
    pub swap_every: f64,
    /// Churn: the RTSP test camera program (default: vigil-test-camera beside this vigil).
    #[arg(long, value_name = "PATH")]
    pub camera: Option<PathBuf>,
    /// Real-time capacity instead (issue 8, acceptance 3): the most streams of --video that each
    /// keep --target-fps, found by doubling then bisecting, per variant of --variants; writes
    /// capacity.md and capacity.json into --out when given.
    #[arg(long)]
    pub capacity: bool,
    /// Capacity variants: cpu, gpu (NVDEC, KIND_GPU, CPU pre-processing), gpu-pre (the same with
    /// GPU pre-processing); default: cpu, and the GPU ones when a CUDA device is found.
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
    /// Capacity: the frame rate a stream must keep.
    #[arg(long, default_value_t = 30.0, value_name = "FPS")]
    pub target_fps: f64,
    /// Capacity: the most streams to try.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_streams: usize,
    /// Transcode --video to 1920x1080, 30 frames/s, H.264 first (ffmpeg with libx264).
    #[arg(long)]
    pub make_1080p: bool,
    /// Cluster instead (issue 19): hosts in network namespaces (root), each pinned to a core with
    /// taskset; the pipeline hosts (`vigil run --shard`) over --cluster-streams file streams, NanoDet
    /// on 1, then 2 inference hosts (`vigil serve`, gRPC); frames/s, ratio and CPU per host
    /// (cluster.md and cluster.json into --out when given). Default --frames 200.
    #[arg(long)]
    pub cluster: bool,
    /// Cluster: file streams over all pipeline hosts.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub cluster_streams: usize,
    /// Cluster: pipeline hosts (shards).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cluster_pipelines: usize,
    /// RTSP viewers instead (issue 20): --streams (default 4) looped streams in real time with an
    /// x264 RTSP mount each, once without clients and once with a client per mount (in this
    /// process, loopback), CPU per frame over a window of SECONDS (default 30) after a warm-up, and
    /// each client's first decoded frame; writes rtsp-viewers.md and rtsp-viewers.json into --out
    /// (default benches/results).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "30")]
    pub rtsp_viewers: Option<u64>,
    /// RTSP viewers: inference intervals to compare, e.g. 1,4 (NanoDet on every frame, on every
    /// 4th frame with the tracker predicting the others); default 1,4.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub inference_interval: Vec<u32>,
    /// INT8 instead (issue 20): quantize --model with `vigil models quantize` (200 frames of
    /// --int8-calibrate, 100 held out) and compare it with the FP32 model in one run: ONNX Runtime
    /// alone, Vigil end to end per --streams (default 1,2,4,8) and the Python peer (spinning off)
    /// with each model (int8.md and int8.json into --out, default benches/results/int8). Default
    /// --frames 200, --repeat 1.
    #[arg(long)]
    pub int8: bool,
    /// INT8: calibration media (default: samples/media/vtest.avi samples/media/bikes.mp4).
    #[arg(long, num_args = 1.., value_name = "MEDIA")]
    pub int8_calibrate: Vec<String>,
    /// Internal: decode the video with Vigil's source in this process and print a JSON report.
    #[arg(long, hide = true, value_name = "STREAMS")]
    pub decode_only: Option<usize>,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `limit`, `vigil` or `peer`.
    pub group: String,
    pub name: String,
    pub streams: usize,
    pub frames: u64,
    pub fps: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub cpu_ms_per_frame: Option<f64>,
    /// Share of stream 0's frames where the peer found the same detections as Vigil.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parity: Option<f64>,
    /// GPU 0 while the row's process ran (NVML); `None` without an NVIDIA driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<measure::GpuUsage>,
    pub note: String,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    pub machine: report::Machine,
    pub video: String,
    pub frames_per_stream: u64,
    pub repeat: usize,
    pub rows: Vec<Row>,
    pub compute: Vec<limits::ComputeRun>,
    pub ratios: Vec<report::Ratio>,
    pub notes: Vec<String>,
}

/// The Python of the peers venv: `VIGIL_PEERS_PYTHON`, else `$VIGIL_CACHE/peers-venv` (default
/// `~/.cache/vigil`); `None` when it is not installed (`scripts/setup.sh peers`).
pub fn peers_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VIGIL_PEERS_PYTHON") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let cache = std::env::var_os("VIGIL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/vigil")))?;
    Some(cache.join("peers-venv/bin/python")).filter(|p| p.is_file())
}

/// The first `frames` frames of `video` as a file of their own (stream copy with ffmpeg), or the
/// video itself for 0.
pub fn cut_clip(video: &Path, frames: u64, dir: &Path) -> anyhow::Result<PathBuf> {
    if frames == 0 {
        return Ok(video.to_path_buf());
    }
    let ext = video.extension().and_then(|e| e.to_str()).unwrap_or("mkv");
    let clip = dir.join(format!("clip.{ext}"));
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(video)
        .args(["-frames:v", &frames.to_string(), "-an", "-c", "copy"])
        .arg(&clip)
        .output()
        .context("cannot run ffmpeg to cut the clip (scripts/setup.sh apt installs it)")?;
    if !out.status.success() {
        bail!(
            "ffmpeg could not cut the first {frames} frames of {}: {}",
            video.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(clip)
}

/// A `vigil run` config: `streams` sources playing `clip`, NanoDet with [`CLASSES`], the IoU tracker,
/// the overlay, and the given outputs (YAML text).
pub fn vigil_config(
    models: &Path,
    model: &str,
    clip: &Path,
    streams: usize,
    looped: bool,
    outputs: &str,
) -> String {
    let mut s = format!(
        "name: bench\nmodel_repository: {}\nrealtime: false\nsources:\n",
        models.display()
    );
    for i in 0..streams {
        s += &format!("  - name: s{i}\n    uri: {}\n", clip.display());
        if looped {
            s += "    loop: true\n";
        }
    }
    s += &format!(
        "inference:\n  model: {model}\n  threshold: {THRESHOLD}\n  nms_iou: {NMS_IOU}\n  classes: [{}]\n\
         tracker:\n  kind: iou\noverlay:\n  enabled: true\noutputs:\n{outputs}",
        CLASSES.replace(',', ", ")
    );
    s
}

/// Per source (in `s0`, `s1`, … order), the completion times (s) of its frames in a Vigil events file.
fn event_completions(jsonl: &str, streams: usize) -> anyhow::Result<(Vec<Vec<f64>>, u64)> {
    let mut out = vec![Vec::new(); streams];
    let mut frames = 0;
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).context("events line")?;
        let src = v["source"].as_str().unwrap_or("");
        let ts = v["timestamp_ms"]
            .as_u64()
            .context("event without timestamp_ms")?;
        if let Some(i) = src.strip_prefix('s').and_then(|n| n.parse::<usize>().ok())
            && i < streams
        {
            out[i].push(ts as f64 / 1000.0);
            frames += 1;
        }
    }
    Ok((out, frames))
}

/// Frames/s over the processing window: completions after the first one, over the time from the
/// first to the last.
fn window_fps(completions: &[Vec<f64>]) -> Option<f64> {
    let all: Vec<f64> = completions.iter().flatten().copied().collect();
    let first = all.iter().copied().fold(f64::INFINITY, f64::min);
    let last = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (all.len() > 1 && last > first).then(|| (all.len() - 1) as f64 / (last - first))
}

fn latency_row(
    group: &str,
    name: String,
    streams: usize,
    frames: u64,
    completions: &[Vec<f64>],
    m: &measure::Measured,
    rss_kib: u64,
) -> Row {
    let lat = stats::stream_intervals(completions);
    Row {
        group: group.into(),
        name,
        streams,
        frames,
        fps: window_fps(completions).unwrap_or(0.0),
        p50_ms: stats::percentile(&lat, 0.5).map(|s| s * 1e3),
        p99_ms: stats::percentile(&lat, 0.99).map(|s| s * 1e3),
        peak_rss_mib: Some(rss_kib as f64 / 1024.0),
        cpu_ms_per_frame: (frames > 0).then(|| m.cpu_s / frames as f64 * 1e3),
        parity: None,
        gpu: m.gpu,
        note: String::new(),
    }
}

/// The row of the run with the median frames/s.
fn median_run(mut rows: Vec<(Row, String)>) -> Option<(Row, String)> {
    rows.sort_by(|a, b| a.0.fps.total_cmp(&b.0.fps));
    let n = rows.len();
    (n > 0).then(|| rows.swap_remove((n - 1) / 2))
}

pub(crate) struct Setup {
    exe: PathBuf,
    models: PathBuf,
    model: String,
    model_file: PathBuf,
    labels_file: PathBuf,
    clip: PathBuf,
    frames: u64,
    tmp: PathBuf,
}

/// A measured `vigil run` and the events it wrote.
pub(crate) struct VigilRun {
    pub measured: measure::Measured,
    /// Per stream, the seconds at which its frames' events were written.
    pub completions: Vec<Vec<f64>>,
    /// Events (frames) in all.
    pub frames: u64,
    pub events_text: String,
}

/// Writes `yaml` to `config`, runs `vigil run -q` on it measured (at most 30 minutes) and reads the
/// events of its `streams` streams from `events`.
pub(crate) fn run_vigil(
    s: &Setup,
    config: &Path,
    yaml: &str,
    events: &Path,
    streams: usize,
) -> anyhow::Result<VigilRun> {
    std::fs::write(config, yaml).with_context(|| format!("writing {}", config.display()))?;
    let measured = measure::run(
        Command::new(&s.exe).args(["run", "-q"]).arg(config),
        Duration::from_secs(1800),
    )
    .map_err(anyhow::Error::msg)?;
    if !measured.ok() {
        bail!("{}", measured.failure("vigil run"));
    }
    let events_text =
        std::fs::read_to_string(events).with_context(|| format!("reading {}", events.display()))?;
    let (completions, frames) = event_completions(&events_text, streams)?;
    Ok(VigilRun {
        measured,
        completions,
        frames,
        events_text,
    })
}

/// One `vigil run` with `streams` sources, writing an MP4 per stream (x264) and the events, or
/// with `encode` false the events only; returns its row and the events text.
fn vigil_row(s: &Setup, streams: usize, encode: bool) -> anyhow::Result<(Row, String)> {
    let dir = s.tmp.join(format!(
        "vigil-{streams}{}",
        if encode { "" } else { "-noenc" }
    ));
    std::fs::create_dir_all(&dir)?;
    let events = dir.join("events.jsonl");
    let mut outputs = format!("  events:\n    path: {}\n", events.display());
    if encode {
        // x264 as the Python peer's encoder, also where NVENC exists (`encoder: auto` would take it).
        outputs += &format!(
            "  file:\n    path: {}\n    encoder: x264\n",
            dir.join("out.mp4").display()
        );
    }
    let VigilRun {
        measured: m,
        completions,
        frames,
        events_text: text,
    } = run_vigil(
        s,
        &dir.join("bench.yaml"),
        &vigil_config(&s.models, &s.model, &s.clip, streams, false, &outputs),
        &events,
        streams,
    )?;
    if frames != s.frames * streams as u64 && s.frames > 0 {
        bail!(
            "vigil run wrote {frames} events for {streams} x {} frames",
            s.frames
        );
    }
    let mut row = latency_row(
        if encode { "vigil" } else { "vigil-noenc" },
        if encode {
            format!("Vigil end to end, {streams} stream(s)")
        } else {
            format!("Vigil without video output, {streams} stream(s)")
        },
        streams,
        frames,
        &completions,
        &m,
        m.max_rss_kib,
    );
    row.note = if encode {
        "decode, NanoDet, IoU tracker, overlay, x264 MP4 + JSON events".into()
    } else {
        "decode, NanoDet, IoU tracker, overlay, JSON events (no x264)".into()
    };
    Ok((row, text))
}

/// One Python peer run with `streams` streams; returns its row and its detections text.
/// With `spinning` false the peer is tuned as Vigil is: ONNX Runtime's idle threads block.
fn peer_row(
    s: &Setup,
    python: &Path,
    streams: usize,
    spinning: bool,
) -> anyhow::Result<(Row, String)> {
    let dir = s.tmp.join(format!(
        "peer-{streams}{}",
        if spinning { "" } else { "-nospin" }
    ));
    std::fs::create_dir_all(&dir)?;
    let (dets, stats_file) = (dir.join("detections.jsonl"), dir.join("stats.json"));
    let script = Path::new("benches/peers/python_peer.py");
    if !script.is_file() {
        bail!(
            "{} not found (run vigil bench from the repository root)",
            script.display()
        );
    }
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg("--video")
        .arg(&s.clip)
        .arg("--model")
        .arg(&s.model_file)
        .arg("--labels")
        .arg(&s.labels_file)
        .args(["--streams", &streams.to_string(), "--classes", CLASSES])
        .args(["--threshold", &THRESHOLD.to_string()])
        .args(["--nms-iou", &NMS_IOU.to_string(), "--encode", "x264"])
        .arg("--out-dir")
        .arg(&dir)
        .arg("--detections")
        .arg(&dets)
        .arg("--stats")
        .arg(&stats_file);
    if !spinning {
        cmd.arg("--no-spinning");
    }
    let m = measure::run(&mut cmd, Duration::from_secs(1800)).map_err(anyhow::Error::msg)?;
    if !m.ok() {
        bail!("{}", m.failure("the Python peer"));
    }
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&stats_file)
            .with_context(|| format!("reading {}", stats_file.display()))?,
    )
    .context("the peer's stats")?;
    let completions: Vec<Vec<f64>> =
        serde_json::from_value(st["completions_s"].clone()).context("peer completions_s")?;
    let frames = st["frames"].as_u64().unwrap_or(0);
    // Python and its ffmpeg encoders together (sampled process tree).
    let rss = m.max_rss_kib;
    let mut row = latency_row(
        if spinning { "peer" } else { "peer-nospin" },
        if spinning {
            format!("Python peer, {streams} stream(s)")
        } else {
            format!("Python peer, spinning off, {streams} stream(s)")
        },
        streams,
        frames,
        &completions,
        &m,
        rss,
    );
    row.note = format!(
        "OpenCV {} decode, onnxruntime {}, numpy IoU tracker, cv2 overlay, libx264 via ffmpeg; threads",
        st["versions"]["opencv"].as_str().unwrap_or("?"),
        st["versions"]["onnxruntime"].as_str().unwrap_or("?")
    );
    Ok((row, std::fs::read_to_string(&dets).unwrap_or_default()))
}

/// The decode bound: `vigil bench --decode-only N` in a child process.
fn decode_row(s: &Setup, streams: usize) -> anyhow::Result<Row> {
    let mut cmd = Command::new(&s.exe);
    cmd.arg("bench")
        .arg("--video")
        .arg(&s.clip)
        .args(["--decode-only", &streams.to_string()]);
    let m = measure::run(&mut cmd, Duration::from_secs(600)).map_err(anyhow::Error::msg)?;
    if !m.ok() {
        bail!("{}", m.failure("the decode-only child"));
    }
    let r: limits::DecodeReport =
        serde_json::from_str(m.stdout.trim()).context("decode-only report")?;
    let mut row = latency_row(
        "limit",
        format!("decode bound (vigilsrc, {streams} stream(s))"),
        streams,
        r.frames,
        &r.completions,
        &m,
        m.max_rss_kib,
    );
    row.note = "Vigil's decode path alone, to fakesink".into();
    Ok(row)
}

/// `gst-launch-1.0` decoding `streams` copies to fakesink; frames/s from its "Execution ended after".
fn gst_launch_row(s: &Setup, streams: usize, frames: u64) -> anyhow::Result<Row> {
    let mut cmd = Command::new("gst-launch-1.0");
    for _ in 0..streams {
        cmd.arg("filesrc")
            .arg(format!("location={}", s.clip.display()))
            .args(["!", "decodebin", "!", "fakesink", "sync=false"]);
    }
    let m = measure::run(&mut cmd, Duration::from_secs(600)).map_err(anyhow::Error::msg)?;
    if !m.ok() {
        bail!("{}", m.failure("gst-launch-1.0"));
    }
    let secs = m
        .stdout
        .lines()
        .find_map(|l| l.split("Execution ended after ").nth(1))
        .and_then(parse_clock)
        .context("gst-launch-1.0 printed no 'Execution ended after'")?;
    Ok(Row {
        group: "peer".into(),
        name: format!("gst-launch-1.0 decode only, {streams} stream(s)"),
        streams,
        frames,
        fps: frames as f64 / secs,
        p50_ms: None,
        p99_ms: None,
        peak_rss_mib: Some(m.max_rss_kib as f64 / 1024.0),
        cpu_ms_per_frame: Some(m.cpu_s / frames as f64 * 1e3),
        parity: None,
        gpu: m.gpu,
        note: "filesrc ! decodebin ! fakesink".into(),
    })
}

/// `H:MM:SS.nnnnnnnnn` → seconds.
fn parse_clock(text: &str) -> Option<f64> {
    let mut parts = text.trim().split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Runs `vigil bench`.
pub fn execute(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(streams) = args.decode_only {
        let r = limits::decode_only(&args.video, streams.max(1)).map_err(anyhow::Error::msg)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    if !args.video.is_file() {
        bail!(
            "--video {}: no such file (make setup installs the samples)",
            args.video.display()
        );
    }
    let loaded = vigil_modelrepo::ModelRepository::open(&args.models)
        .and_then(|r| r.load(&args.model, None))
        .with_context(|| format!("--models {} --model {}", args.models.display(), args.model))?;
    let labels_file = loaded.dir.join("labels.txt");
    let tmp = std::env::temp_dir().join(format!("vigil-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let _cleanup = RemoveOnDrop(tmp.clone());
    let frames = args.frames.unwrap_or(if args.quick {
        100
    } else if args.capacity {
        300
    } else if args.cluster || args.int8 {
        200
    } else {
        0
    });
    let clip = if args.make_1080p {
        capacity::clip_1080p(&args.video, frames, &tmp)?
    } else {
        cut_clip(&args.video, frames, &tmp)?
    };
    let setup = Setup {
        exe: std::env::current_exe().context("the vigil executable")?,
        models: std::fs::canonicalize(&args.models)?,
        model: args.model.clone(),
        model_file: loaded.model_path.clone(),
        labels_file,
        clip: std::fs::canonicalize(&clip)?,
        frames,
        tmp: tmp.clone(),
    };
    if let Some(secs) = args.soak {
        return report::soak(&setup.exe, &setup, args, secs);
    }
    if let Some(secs) = args.churn {
        return churn::run(&setup, args, secs);
    }
    if args.capacity {
        return capacity_mode(&setup, args);
    }
    if args.cluster {
        return cluster::run(&setup, args);
    }
    if args.int8 {
        return int8::run(&setup, args);
    }
    if let Some(secs) = args.rtsp_viewers {
        return viewers::run(&setup, args, secs);
    }
    let started = Instant::now();
    let streams: Vec<usize> = if !args.streams.is_empty() {
        args.streams.clone()
    } else if args.quick {
        vec![1, 4]
    } else {
        vec![1, 2, 4, 8]
    };
    let repeat = args.repeat.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut notes = Vec::new();
    let mut rows = Vec::new();

    eprintln!(
        "bench: compute bound (ONNX Runtime alone, batch 1/2/4/8; batch 1 also with its threads spinning)"
    );
    let secs = if args.quick { 3.0 } else { 10.0 };
    let compute = limits::compute_bound(
        &args.models,
        &args.model,
        &setup.clip,
        &[(1, false), (2, false), (4, false), (8, false), (1, true)],
        secs,
    )
    .map_err(anyhow::Error::msg)?;
    let best = compute
        .iter()
        .max_by(|a, b| a.fps().total_cmp(&b.fps()))
        .expect("at least one batch size")
        .clone();
    for c in &compute {
        rows.push(Row {
            group: "limit".into(),
            name: format!(
                "ONNX Runtime alone, batch {}{}",
                c.batch,
                if c.spinning { ", spinning" } else { "" }
            ),
            streams: 0,
            frames: c.frames as u64,
            fps: c.fps(),
            p50_ms: Some(c.p50_s * 1e3),
            p99_ms: Some(c.p99_s * 1e3),
            peak_rss_mib: None,
            cpu_ms_per_frame: Some(c.cpu_s / c.frames as f64 * 1e3),
            parity: None,
            gpu: None,
            note: if c.batch == best.batch && c.spinning == best.spinning {
                "compute bound (best batch)".into()
            } else if c.spinning {
                "ONNX Runtime's default: idle intra-op threads busy-wait".into()
            } else {
                String::new()
            },
        });
    }
    eprintln!("bench: decode bound ({cores} stream(s), one per core)");
    let decode = decode_row(&setup, cores)?;
    let decoded_frames = decode.frames;
    rows.push(decode.clone());

    let python = if args.no_peer { None } else { peers_python() };
    if python.is_none() && !args.no_peer {
        notes.push(
            "Python peer left out: no peers venv (run scripts/setup.sh peers, or set VIGIL_PEERS_PYTHON)"
                .into(),
        );
    }
    for &n in &streams {
        let mut runs = Vec::new();
        for r in 0..repeat {
            eprintln!(
                "bench: Vigil end to end, {n} stream(s), run {}/{repeat}",
                r + 1
            );
            runs.push(vigil_row(&setup, n, true)?);
        }
        let (mut vrow, vtext) = median_run(runs).expect("a run");
        if let Some(py) = &python {
            let mut runs = Vec::new();
            for r in 0..repeat {
                eprintln!("bench: Python peer, {n} stream(s), run {}/{repeat}", r + 1);
                runs.push(peer_row(&setup, py, n, true)?);
            }
            let (mut prow, ptext) = median_run(runs).expect("a run");
            let v = parity::vigil_labels(&vtext, "s0").map_err(anyhow::Error::msg)?;
            let p = parity::peer_labels(&ptext, 0).map_err(anyhow::Error::msg)?;
            let par = parity::compare(&v, &p).fraction();
            prow.parity = Some(par);
            vrow.parity = Some(par);
            rows.push(vrow);
            rows.push(prow);
        } else {
            rows.push(vrow);
        }
    }
    // What the pipeline does around inference, without the video encoder (on a CPU machine x264
    // takes the same cores as ONNX Runtime): 4 streams, or the largest count below.
    if let Some(&n) = streams.iter().filter(|&&n| n <= 4).max() {
        let mut runs = Vec::new();
        for r in 0..repeat {
            eprintln!(
                "bench: Vigil without video output, {n} stream(s), run {}/{repeat}",
                r + 1
            );
            runs.push(vigil_row(&setup, n, false)?);
        }
        rows.push(median_run(runs).expect("a run").0);
        // The peer tuned as Vigil is (ONNX Runtime's threads block): what a user who read this far
        // would run.
        if let Some(py) = &python {
            let mut runs = Vec::new();
            for r in 0..repeat {
                eprintln!(
                    "bench: Python peer, spinning off, {n} stream(s), run {}/{repeat}",
                    r + 1
                );
                runs.push(peer_row(&setup, py, n, false)?);
            }
            rows.push(median_run(runs).expect("a run").0);
        }
    }
    eprintln!("bench: gst-launch-1.0 decode only ({cores} stream(s))");
    rows.push(gst_launch_row(&setup, cores, decoded_frames)?);

    let ratios = report::ratios(&rows, &best, &decode);
    let report = Report {
        mode: if args.quick { "quick" } else { "full" }.into(),
        machine: report::Machine::detect(),
        video: args.video.display().to_string(),
        frames_per_stream: if frames == 0 {
            decoded_frames / cores as u64
        } else {
            frames
        },
        repeat,
        rows,
        compute,
        ratios,
        notes,
    };
    print!("{}", report::table(&report));
    eprintln!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
    let out = args
        .out
        .clone()
        .or_else(|| (!args.quick).then(|| PathBuf::from("benches/results")));
    if let Some(out) = out {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("report.md"), report::markdown(&report))?;
        std::fs::write(
            out.join("report.json"),
            serde_json::to_string_pretty(&report)? + "\n",
        )?;
        chart::write(&report, &out.join("chart.png")).map_err(anyhow::Error::msg)?;
        println!(
            "wrote {0}/report.md, {0}/report.json, {0}/chart.png",
            out.display()
        );
    }
    Ok(())
}

/// `--capacity`: the search per variant, the report printed and written to `--out`.
fn capacity_mode(setup: &Setup, args: &BenchArgs) -> anyhow::Result<()> {
    let variants: Vec<capacity::Variant> = if args.variants.is_empty() {
        let mut v = vec![capacity::Variant::Cpu];
        match vigil_engine::gpu::devices() {
            Ok(_) => v.extend([capacity::Variant::Gpu, capacity::Variant::GpuPre]),
            Err(e) => eprintln!("capacity: GPU variants left out: {e}"),
        }
        v
    } else {
        args.variants
            .iter()
            .map(|n| {
                capacity::Variant::from_name(n).with_context(|| {
                    format!("--variants: unknown variant '{n}' (cpu, gpu, gpu-pre)")
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let results = capacity::run(setup, &variants, args.max_streams, args.target_fps)?;
    let clip = format!(
        "{}{}, {} frames per stream",
        args.video.display(),
        if args.make_1080p {
            " transcoded to 1920x1080 30 fps H.264"
        } else {
            ""
        },
        setup.frames
    );
    let md = capacity::markdown(&results, &clip, args.target_fps);
    println!("{md}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("capacity.md"), &md)?;
        std::fs::write(
            out.join("capacity.json"),
            serde_json::to_string_pretty(&results)?,
        )?;
    }
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_and_window() {
        assert_eq!(parse_clock("0:00:01.500000000"), Some(1.5));
        assert_eq!(parse_clock("1:02:03.0\n"), Some(3723.0));
        assert_eq!(parse_clock("x"), None);
        let fps = window_fps(&[vec![0.0, 1.0, 2.0], vec![0.5, 1.5]]).unwrap();
        assert_eq!(fps, 2.0);
        assert_eq!(window_fps(&[vec![1.0]]), None);
    }

    #[test]
    fn events_become_completions_per_source() {
        let text = "{\"source\":\"s1\",\"frame\":0,\"timestamp_ms\":2000}\n\
                    {\"source\":\"s0\",\"frame\":0,\"timestamp_ms\":1000}\n\
                    {\"source\":\"s0\",\"frame\":1,\"timestamp_ms\":1500}\n";
        let (c, n) = event_completions(text, 2).unwrap();
        assert_eq!(n, 3);
        assert_eq!(c, vec![vec![1.0, 1.5], vec![2.0]]);
        assert!(event_completions("{\"source\":\"s0\"}\n", 1).is_err());
    }

    #[test]
    fn config_is_valid_yaml_with_every_source() {
        let y = vigil_config(
            Path::new("/m"),
            "nanodet",
            Path::new("/c.avi"),
            2,
            true,
            "  events:\n    path: \"-\"\n",
        );
        let v: serde_json::Value = serde_norway::from_str(&y).unwrap();
        assert_eq!(v["sources"].as_array().unwrap().len(), 2);
        assert_eq!(v["sources"][1]["loop"], true);
        assert_eq!(v["inference"]["classes"][5], "truck");
        assert_eq!(v["outputs"]["events"]["path"], "-");
    }
}
