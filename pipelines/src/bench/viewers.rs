//! `vigil bench --rtsp-viewers [SECONDS]` (issue 20, "Encoding only for viewers"): what an RTSP mount
//! costs without a client, against the same mount with one.
//!
//! A child `vigil run` plays `--streams` (default 4) looped copies of `--video` in real time
//! (`realtime: true`: live cameras are the use case) through the bench pipeline ([`super::vigil_config`]:
//! NanoDet, IoU tracker, overlay), each with its own mount of `outputs.rtsp` (x264) on a free port of
//! 127.0.0.1, and the API on another (frames per stream from `GET /streams`). Twice per repetition:
//!
//! - **no client**: nobody connects;
//! - **a client per mount**: once the streams play and warmed up, one RTSP client per mount connects
//!   (in this process: `rtspsrc protocols=tcp latency=200 ! rtph264depay ! h264parse ! avdec_h264 !
//!   appsink`, loopback only) and keeps decoding through the measurement; the time from its start and
//!   from its `PLAY` (rtspsrc's "Opened Stream" progress message, just before it sends `PLAY`) to its
//!   first decoded frame is recorded.
//!
//! In both, **CPU per frame** = the child's user + system time (`/proc/<pid>/stat`, all threads) over
//! the frames it processed (`GET /streams`), both taken at the start and the end of a window of
//! SECONDS (default 30) after the warm-up (start-up excluded); the child's whole run from `wait4`
//! (start-up included) is reported too. The verdicts of the acceptance: CPU per frame without
//! clients ≤ 0.8 × with a client each, and every client's first frame within 1 s. Printed, and written
//! to `--out` (default `benches/results`) as `rtsp-viewers.md` and `rtsp-viewers.json`.

use super::churn::fleet::streams;
use super::{BenchArgs, Setup, measure};
use anyhow::{Context, bail};
use gst::prelude::*;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The acceptance: CPU per frame without clients at most this share of that with a client each.
const CPU_RATIO_TARGET: f64 = 0.8;
/// The acceptance: a client's first decoded frame at most this long after its `PLAY`.
const FIRST_FRAME_TARGET_S: f64 = 1.0;
/// Playing time before clients connect and the window starts (encoders and ONNX Runtime warm).
const WARM_UP: Duration = Duration::from_secs(8);

/// One measured `vigil run`.
#[derive(Debug, Clone, Serialize)]
pub struct ViewersRun {
    /// `inference.interval`.
    pub interval: u32,
    /// RTSP clients during the window (0 or one per mount).
    pub clients: usize,
    /// The mounts' encoders started (the `vigil-rtsp` log): 0 without clients.
    pub encoder_starts: usize,
    pub window_s: f64,
    /// Frames all streams processed in the window.
    pub frames: u64,
    /// The child's CPU seconds in the window.
    pub cpu_s: f64,
    pub cpu_ms_per_frame: f64,
    /// Frames/s of all streams together in the window.
    pub fps: f64,
    /// The whole run from `wait4` (start-up and stop included): CPU seconds and frames.
    pub total_cpu_s: f64,
    pub total_frames: u64,
    /// Per client: seconds from its start to its first decoded frame.
    pub first_frame_after_start_s: Vec<f64>,
    /// Per client: seconds from its `PLAY` to its first decoded frame.
    pub first_frame_after_play_s: Vec<f64>,
    /// Per client: frames decoded in the window.
    pub client_frames: Vec<u64>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ViewersReport {
    pub machine: super::report::Machine,
    pub video: String,
    pub streams: usize,
    pub window_s: u64,
    pub repeat: usize,
    pub runs: Vec<ViewersRun>,
    pub variants: Vec<ViewersVariant>,
    /// The slowest first frame of all clients, after `PLAY` and after the start.
    pub worst_first_frame_after_play_s: f64,
    pub worst_first_frame_after_start_s: f64,
    pub first_frame_pass: bool,
}

/// The comparison at one `inference.interval`.
#[derive(Debug, Clone, Serialize)]
pub struct ViewersVariant {
    pub interval: u32,
    /// Per repetition: CPU per frame without clients / with a client each.
    pub ratios: Vec<f64>,
    /// The median of `ratios`.
    pub ratio: f64,
    /// Medians of CPU ms per frame without clients and with a client per mount.
    pub cpu_ms_per_frame_idle: f64,
    pub cpu_ms_per_frame_watched: f64,
    pub cpu_pass: bool,
}

/// A loopback TCP port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("a free loopback port")?
        .port())
}

/// User + system CPU seconds of `pid` (all its threads) from `/proc/<pid>/stat`.
fn proc_cpu_s(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command (in parentheses, which may hold spaces): state is field 3,
    // utime 14 and stime 15.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/<pid>/stat without a command")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .context("/proc/<pid>/stat: no utime/stime")? as f64)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // `rest` starts at field 3 (state): utime (14) and stime (15) are its items 11 and 12.
    Ok((tick(11)? + tick(12)?) / hz)
}

/// Frames of every stream together (`GET /streams`), and whether all of them play.
fn frames(api: SocketAddr) -> anyhow::Result<(u64, bool)> {
    let list = streams(api)?;
    let total = list.iter().map(|s| s["frames"].as_u64().unwrap_or(0)).sum();
    let playing = !list.is_empty() && list.iter().all(|s| s["state"] == "playing");
    Ok((total, playing))
}

/// An RTSP client in this process, decoding, with the times of its `PLAY` and its first frame.
struct Client {
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
    started: Instant,
    play: Arc<Mutex<Option<Instant>>>,
    first: Arc<Mutex<Option<Instant>>>,
}

impl Client {
    fn start(url: &str) -> anyhow::Result<Client> {
        let launch = format!(
            "rtspsrc location={url} protocols=tcp latency=200 ! rtph264depay ! h264parse \
             ! avdec_h264 ! appsink name=sink sync=false"
        );
        let pipeline = gst::parse::launch(&launch)
            .context("the RTSP client pipeline")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("the RTSP client is not a pipeline"))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .context("the RTSP client has no appsink")?;
        let frames = Arc::new(AtomicU64::new(0));
        let play: Arc<Mutex<Option<Instant>>> = Arc::default();
        let first: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (f2, first2) = (frames.clone(), first.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let _ = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if f2.fetch_add(1, Ordering::SeqCst) == 0 {
                        *first2.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        // rtspsrc completes "open" once `SETUP` is answered, right before it sends `PLAY`.
        let play2 = play.clone();
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(move |_, msg| {
                if let gst::MessageView::Progress(p) = msg.view() {
                    let (kind, code, _) = p.get();
                    if kind == gst::ProgressType::Complete && code == "open" {
                        play2
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(Instant::now);
                    }
                }
                gst::BusSyncReply::Pass
            });
        }
        let started = Instant::now();
        pipeline
            .set_state(gst::State::Playing)
            .with_context(|| format!("the RTSP client of {url} does not start"))?;
        Ok(Client {
            pipeline,
            frames,
            started,
            play,
            first,
        })
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::SeqCst)
    }

    /// `(after start, after PLAY)` of the first frame, in seconds, once there is one.
    fn first_frame(&self) -> Option<(f64, f64)> {
        let first = (*self.first.lock().unwrap_or_else(|p| p.into_inner()))?;
        let play = (*self.play.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some((
            first.duration_since(self.started).as_secs_f64(),
            first.saturating_duration_since(play).as_secs_f64(),
        ))
    }

    /// An error or end of stream the client's bus reported.
    fn failure(&self) -> Option<String> {
        let msg = self
            .pipeline
            .bus()?
            .pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])?;
        Some(match msg.view() {
            gst::MessageView::Error(e) => format!("{} ({:?})", e.error(), e.debug()),
            _ => "end of stream".into(),
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The child's config: [`super::vigil_config`] with looped sources in real time, the model on every
/// `interval`-th frame, an RTSP mount per stream (x264, as on a machine without NVENC) on
/// `rtsp_port` and the API on `api_port`.
fn config(setup: &Setup, streams: usize, interval: u32, rtsp_port: u16, api_port: u16) -> String {
    let outputs = format!(
        "  rtsp:\n    address: 127.0.0.1\n    port: {rtsp_port}\n    mount: /bench\n    encoder: x264\n"
    );
    super::vigil_config(
        &setup.models,
        &setup.model,
        &setup.clip,
        streams,
        true,
        &outputs,
    )
    .replace("realtime: false", "realtime: true")
    .replace(
        &format!("\n  model: {}\n", setup.model),
        &format!("\n  model: {}\n  interval: {interval}\n", setup.model),
    ) + &format!("api:\n  address: 127.0.0.1\n  port: {api_port}\n")
}

/// One `vigil run`: warm-up, then `clients` (none, or one per mount), then the window.
fn run_once(
    setup: &Setup,
    streams: usize,
    interval: u32,
    window: Duration,
    with_clients: bool,
) -> anyhow::Result<ViewersRun> {
    let (rtsp_port, api_port) = (free_port()?, free_port()?);
    let path = setup.tmp.join(format!(
        "viewers-{interval}-{}.yaml",
        if with_clients { "clients" } else { "none" }
    ));
    std::fs::write(&path, config(setup, streams, interval, rtsp_port, api_port))
        .with_context(|| format!("writing {}", path.display()))?;
    // `vigil-rtsp` logs each mount's encoder starting and going idle (a line per change).
    let running = measure::start(
        Command::new(&setup.exe)
            .args(["run", "-q"])
            .arg(&path)
            .env("GST_DEBUG", "vigil-rtsp:4")
            .env("GST_DEBUG_NO_COLOR", "1"),
        window + Duration::from_secs(300),
        None,
    )
    .map_err(anyhow::Error::msg)?;
    let pid = running.pid();
    let api = SocketAddr::from(([127, 0, 0, 1], api_port));
    let result = measure_window(api, pid, streams, rtsp_port, window, with_clients);
    running.interrupt();
    let m = running.wait();
    let mut run = result.with_context(|| m.failure("vigil run"))?;
    if !m.ok() {
        bail!("{}", m.failure("vigil run"));
    }
    run.interval = interval;
    run.total_cpu_s = m.cpu_s;
    run.encoder_starts = m
        .stderr
        .lines()
        .filter(|l| l.contains("vigil-rtsp") && l.contains(": a client: encoding"))
        .count();
    // The runs without clients must not have encoded a frame, the others once per mount.
    let want = if with_clients { streams } else { 0 };
    if run.encoder_starts != want {
        bail!(
            "{} encoder start(s) logged by vigil-rtsp, {want} expected (a stray client?)",
            run.encoder_starts
        );
    }
    Ok(run)
}

fn measure_window(
    api: SocketAddr,
    pid: u32,
    streams: usize,
    rtsp_port: u16,
    window: Duration,
    with_clients: bool,
) -> anyhow::Result<ViewersRun> {
    // Every stream plays, then the warm-up.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((n, true)) = frames(api)
            && n >= streams as u64 * 10
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the streams did not all play within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(WARM_UP);
    let mut clients = Vec::new();
    let (mut after_start, mut after_play) = (Vec::new(), Vec::new());
    if with_clients {
        let urls: Vec<String> = if streams == 1 {
            vec![format!("rtsp://127.0.0.1:{rtsp_port}/bench")]
        } else {
            (0..streams)
                .map(|i| format!("rtsp://127.0.0.1:{rtsp_port}/bench/s{i}"))
                .collect()
        };
        for url in &urls {
            clients.push(Client::start(url)?);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (c, url) in clients.iter().zip(&urls) {
            loop {
                if let Some((s, p)) = c.first_frame() {
                    after_start.push(s);
                    after_play.push(p);
                    break;
                }
                if let Some(why) = c.failure() {
                    bail!("the RTSP client of {url}: {why}");
                }
                if Instant::now() > deadline {
                    bail!("the RTSP client of {url} decoded no frame within 20 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        eprintln!(
            "bench:   first frames after PLAY {:?} s, after the start {:?} s",
            round3(&after_play),
            round3(&after_start)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let client_start: Vec<u64> = clients.iter().map(Client::frames).collect();
    let (f0, _) = frames(api)?;
    let (c0, t0) = (proc_cpu_s(pid)?, Instant::now());
    std::thread::sleep(window);
    let (f1, _) = frames(api)?;
    let (c1, t1) = (proc_cpu_s(pid)?, Instant::now());
    let client_frames: Vec<u64> = clients
        .iter()
        .zip(&client_start)
        .map(|(c, s)| c.frames() - s)
        .collect();
    let secs = t1.duration_since(t0).as_secs_f64();
    for (i, (c, n)) in clients.iter().zip(&client_frames).enumerate() {
        if let Some(why) = c.failure() {
            bail!("RTSP client {i}: {why}");
        }
        // A client per mount watching through the whole window (at 2 frames/s at least).
        if (*n as f64) < secs * 2.0 {
            bail!("RTSP client {i} decoded only {n} frames in {secs:.0} s");
        }
    }
    drop(clients);
    let (total_frames, _) = frames(api)?;
    let n = f1.saturating_sub(f0);
    if n == 0 {
        bail!("no frame in the window");
    }
    let cpu = c1 - c0;
    Ok(ViewersRun {
        interval: 0,
        clients: client_frames.len(),
        encoder_starts: 0,
        window_s: secs,
        frames: n,
        cpu_s: cpu,
        cpu_ms_per_frame: cpu / n as f64 * 1e3,
        fps: n as f64 / secs,
        total_cpu_s: 0.0,
        total_frames,
        first_frame_after_start_s: after_start,
        first_frame_after_play_s: after_play,
        client_frames,
    })
}

fn round3(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1000.0).round() / 1000.0).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the comparison, prints it and writes it to `--out` (default `benches/results`).
pub(crate) fn run(setup: &Setup, args: &BenchArgs, window_s: u64) -> anyhow::Result<()> {
    gst::init().context("GStreamer")?;
    for f in [
        "rtspsrc",
        "rtph264depay",
        "h264parse",
        "avdec_h264",
        "x264enc",
    ] {
        if gst::ElementFactory::find(f).is_none() {
            bail!("the GStreamer element {f} is missing (scripts/setup.sh apt installs it)");
        }
    }
    let streams = args.streams.first().copied().unwrap_or(4).max(1);
    let repeat = args.repeat.unwrap_or(1).max(1);
    let window = Duration::from_secs(window_s.max(5));
    let intervals = if args.inference_interval.is_empty() {
        vec![1, 4]
    } else {
        args.inference_interval.iter().map(|&i| i.max(1)).collect()
    };
    let mut runs = Vec::new();
    let mut variants = Vec::new();
    for &interval in &intervals {
        let mut ratios = Vec::new();
        let (mut idle, mut watched) = (Vec::new(), Vec::new());
        for r in 0..repeat {
            // Alternate the order, so that a drift of the machine's load favours neither side.
            let order = if r % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            let mut pair = Vec::new();
            for with_clients in order {
                eprintln!(
                    "bench: RTSP viewers, {streams} stream(s), inference.interval {interval}, {}, run {}/{repeat}",
                    if with_clients {
                        "a client per mount"
                    } else {
                        "no client"
                    },
                    r + 1
                );
                let run = run_once(setup, streams, interval, window, with_clients)?;
                eprintln!(
                    "bench:   {:.2} ms CPU per frame ({} frames in {:.1} s, {:.1} frames/s)",
                    run.cpu_ms_per_frame, run.frames, run.window_s, run.fps
                );
                pair.push(run);
            }
            pair.sort_by_key(|r| r.clients);
            ratios.push(pair[0].cpu_ms_per_frame / pair[1].cpu_ms_per_frame);
            idle.push(pair[0].cpu_ms_per_frame);
            watched.push(pair[1].cpu_ms_per_frame);
            runs.extend(pair);
        }
        let ratio = median(ratios.clone());
        variants.push(ViewersVariant {
            interval,
            ratios,
            ratio,
            cpu_ms_per_frame_idle: median(idle),
            cpu_ms_per_frame_watched: median(watched),
            cpu_pass: ratio <= CPU_RATIO_TARGET,
        });
    }
    let all = |f: fn(&ViewersRun) -> &Vec<f64>| -> f64 {
        runs.iter()
            .flat_map(|r| f(r).iter().copied())
            .fold(0.0, f64::max)
    };
    let worst_play = all(|r| &r.first_frame_after_play_s);
    let worst_start = all(|r| &r.first_frame_after_start_s);
    let report = ViewersReport {
        machine: super::report::Machine::detect(),
        video: args.video.display().to_string(),
        streams,
        window_s: window.as_secs(),
        repeat,
        runs,
        variants,
        worst_first_frame_after_play_s: worst_play,
        worst_first_frame_after_start_s: worst_start,
        first_frame_pass: worst_play <= FIRST_FRAME_TARGET_S,
    };
    let text = markdown(&report);
    print!("{text}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("benches/results").to_path_buf());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("rtsp-viewers.md"), &text)?;
    std::fs::write(
        out.join("rtsp-viewers.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    println!(
        "wrote {0}/rtsp-viewers.md, {0}/rtsp-viewers.json",
        out.display()
    );
    Ok(())
}

/// The report as Markdown (also what is printed).
pub fn markdown(r: &ViewersReport) -> String {
    let mut s = format!(
        "# RTSP outputs: encoding only for viewers\n\n\
         `vigil bench --rtsp-viewers {}`: {} looped stream(s) of `{}` in real time (NanoDet on every \
         `interval`-th frame, IoU tracker, overlay, an x264 RTSP mount each), measured for {} s after a warm-up, {} \
         repetition(s) per inference interval; {}.\n\n\
         | interval | clients | frames | frames/s | CPU s | CPU ms/frame | encoders started | first frame after PLAY (s) | after the start (s) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        r.window_s,
        r.streams,
        r.video,
        r.window_s,
        r.repeat,
        format_args!(
            "{} ({} cores), {}, {}",
            r.machine.cpu, r.machine.cores, r.machine.gstreamer, r.machine.date_utc
        )
    );
    let list = |v: &[f64]| {
        if v.is_empty() {
            "—".to_string()
        } else {
            v.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for run in &r.runs {
        s += &format!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {} | {} | {} |\n",
            run.interval,
            run.clients,
            run.frames,
            run.fps,
            run.cpu_s,
            run.cpu_ms_per_frame,
            run.encoder_starts,
            list(&run.first_frame_after_play_s),
            list(&run.first_frame_after_start_s)
        );
    }
    s += "\n";
    for v in &r.variants {
        s += &format!(
            "`inference.interval: {}`: CPU per frame {:.2} ms without clients, {:.2} ms with a client \
             per mount (medians); ratio **{:.2}** (per repetition: {}; target ≤ {CPU_RATIO_TARGET}): **{}**.\n",
            v.interval,
            v.cpu_ms_per_frame_idle,
            v.cpu_ms_per_frame_watched,
            v.ratio,
            v.ratios
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            if v.cpu_pass { "PASS" } else { "FAIL" },
        );
    }
    s += &format!(
        "Slowest first frame: {:.3} s after `PLAY`, {:.3} s after the client's start (target ≤ \
         {FIRST_FRAME_TARGET_S} s after `PLAY`): **{}**.\n",
        r.worst_first_frame_after_play_s,
        r.worst_first_frame_after_start_s,
        if r.first_frame_pass { "PASS" } else { "FAIL" },
    );
    s
}
