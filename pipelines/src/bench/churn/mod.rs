//! `vigil bench --churn SECONDS`: streams that come and go for a long time, without leaks.
//!
//! On 127.0.0.1: a mosquitto broker, RTSP test cameras (`vigil-test-camera`, one process each) and a
//! child `vigil run` with `api:` and `outputs.mqtt` (frame messages, QoS 1) reading `--churn-streams`
//! streams, half looped files and half cameras ([`schedule::initial_streams`]). After a warm-up and a
//! baseline, the seeded [`schedule`] runs: a random camera of the killable half is killed and
//! restarted about every `--kill-every` s, and about every `--swap-every` s a stream is added
//! (`POST /streams`) and the oldest churned one removed (`DELETE /streams/{id}`). Meanwhile the
//! child's resident size, threads and open file descriptors are sampled from `/proc`, and every MQTT
//! message is counted per publisher ([`tally`]). The report ([`outcome`]): the three series' slopes
//! over both halves (as the soak's), reconnections per stream, the largest output gap of the untouched
//! streams, `seq` gaps, what each action did and how fast the streams recovered, the thread and
//! descriptor counts after the churn against their band before it, and a verdict per target.

pub mod fleet;
pub mod outcome;
pub mod schedule;
pub mod tally;

use super::{BenchArgs, Setup, measure};
use anyhow::{Context, bail};
use fleet::{Camera, http};
use schedule::{Action, Role, StreamPlan, Timing};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tally::Tally;
use vigil_publish::testbroker::{Broker, Subscriber};

/// NanoDet on every 4th frame (the tracker predicts the others): the churn is about lifecycle, and
/// this keeps 8 streams of 10 frames/s real-time on 2 cores next to the cameras' encoders.
pub const INFERENCE_INTERVAL: u32 = 4;
/// After every stream plays: warm-up, then the baseline samples (one a second).
const WARM_UP: Duration = Duration::from_secs(10);
const BASELINE_SAMPLES: usize = 10;
/// After the churn: settling time (the last restart's reconnection, threads ending), then samples
/// every 0.5 s whose medians are the "after" figures.
const SETTLE: Duration = Duration::from_secs(10);
const AFTER_SAMPLES: usize = 10;

/// A stream over the run.
#[derive(Debug, Clone, Serialize)]
pub struct Life {
    #[serde(flatten)]
    pub plan: StreamPlan,
    /// Unix ms of its `POST /streams` (`None`: in the config).
    pub added_ms: Option<u64>,
    /// Unix ms when its `DELETE` returned.
    pub removed_ms: Option<u64>,
    /// From the `DELETE` answer, or `GET /streams` after the churn.
    pub reconnects: Option<u64>,
}

/// An action as it was done.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    /// Seconds after the churn started.
    pub t_s: f64,
    pub unix_ms: u64,
    /// `kill`, `restart`, `add` or `remove`.
    pub kind: String,
    pub stream: Option<String>,
    pub camera: Option<usize>,
    pub took_ms: u64,
    pub error: Option<String>,
    /// Filled by [`outcome`]: `add`: from the request to the stream's first frame message; `restart`:
    /// the longest, over the camera's streams, from the restart to their first frame message.
    pub recovered_ms: Option<u64>,
}

/// One `/proc` sample of the `vigil` child.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    /// Seconds after the churn started (negative: baseline).
    pub t_s: f64,
    pub rss_mib: f64,
    pub threads: u64,
    pub fds: u64,
    /// MQTT messages received per second since the previous sample.
    pub messages_per_s: f64,
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `vigil bench --churn SECONDS`.
pub(crate) fn run(setup: &Setup, args: &BenchArgs, secs: u64) -> anyhow::Result<()> {
    let n = args.churn_streams;
    if n < 4 {
        bail!(
            "--churn-streams {n}: at least 4 (files and cameras, each with a stream that is never touched)"
        );
    }
    if secs < 30 {
        bail!("--churn {secs}: at least 30 seconds");
    }
    if !(8.0..=3600.0).contains(&args.kill_every) || !(5.0..=3600.0).contains(&args.swap_every) {
        bail!(
            "--kill-every {} / --swap-every {}: from 8 and 5 s (a camera is down up to 5 s) to 3600 s",
            args.kill_every,
            args.swap_every
        );
    }
    let program = fleet::camera_program(args.camera.as_deref())?;
    if !vigil_publish::testbroker::available() {
        bail!(
            "vigil bench --churn needs mosquitto and mosquitto_sub (Debian packages mosquitto and \
             mosquitto-clients; scripts/setup.sh installs them)"
        );
    }
    let timing = Timing {
        seconds: secs as f64,
        kill_every: args.kill_every,
        swap_every: args.swap_every,
    };
    let initial = schedule::initial_streams(n);
    let steps = schedule::schedule(args.seed, &initial, &timing);
    let started = Instant::now();
    let broker = Broker::try_start_with(None, None).map_err(anyhow::Error::msg)?;
    let watch = Watch::start(broker.port)?;
    let mut cameras = Vec::new();
    for i in 0..initial.iter().filter(|s| s.camera.is_some()).count() {
        let log = setup.tmp.join(format!("camera{i}.log"));
        cameras.push(Camera::start(&program, &setup.clip, log)?);
    }
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("a free loopback port for the API")?;
    let api = SocketAddr::from(([127, 0, 0, 1], api_port));
    let config = setup.tmp.join("churn.yaml");
    let yaml = config_yaml(setup, &initial, &cameras, broker.port, api_port);
    std::fs::write(&config, yaml).with_context(|| config.display().to_string())?;
    eprintln!(
        "bench: churn, {n} streams ({} looped files, {} RTSP test cameras) for {secs} s, seed {}",
        n / 2,
        n - n / 2,
        args.seed
    );
    let running = measure::start(
        Command::new(&setup.exe)
            .args(["run", "--progress", "0"])
            .arg(&config),
        Duration::from_secs(secs) + Duration::from_secs(600),
        None,
    )
    .map_err(anyhow::Error::msg)?;
    let mut lives: Vec<Life> = initial
        .iter()
        .map(|p| Life {
            plan: p.clone(),
            added_ms: None,
            removed_ms: None,
            reconnects: None,
        })
        .collect();
    let mut run = Churn {
        setup,
        api,
        pid: running.pid(),
        cameras: &mut cameras,
        lives: &mut lives,
        done: Vec::new(),
    };
    let phases = match run.phases(&steps, secs, args.sample_secs, &watch) {
        Ok(p) => p,
        Err(e) => {
            running.interrupt();
            let m = running.wait();
            if m.ok() || m.code == Some(130) {
                return Err(e);
            }
            return Err(e.context(m.failure("vigil run (churn)")));
        }
    };
    let done = std::mem::take(&mut run.done);
    running.interrupt();
    let m = running.wait();
    // A failed stop is a finding of the churn, reported with the figures.
    let exit = (!(m.ok() || m.code == Some(130))).then(|| m.failure("vigil run (churn)"));
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("vigil-stderr.txt"), &m.stderr)?;
    }
    let (tallies, errors) = watch.finish();
    drop(cameras);
    drop(broker);
    let report = outcome::build(outcome::Inputs {
        args,
        secs,
        phases,
        lives,
        done,
        tallies,
        errors,
        measured: &m,
        exit,
        wall_s: started.elapsed().as_secs_f64(),
    });
    outcome::print_and_write(&report, args.out.as_deref())
}

/// The config of the child: the streams, NanoDet every [`INFERENCE_INTERVAL`]th frame, no overlay,
/// MQTT frame messages, the API, realtime.
fn config_yaml(
    setup: &Setup,
    initial: &[StreamPlan],
    cameras: &[Camera],
    mqtt_port: u16,
    api_port: u16,
) -> String {
    let mut s = format!(
        "name: churn\nmodel_repository: {}\nrealtime: true\nsources:\n",
        setup.models.display()
    );
    for p in initial {
        // JSON is YAML (flow style); the same entry is a POST /streams body.
        let url = p.camera.map(|c| cameras[c].url());
        s += &format!("  - {}\n", source_json(&p.name, setup, url.as_deref()));
    }
    s + &format!(
        "inference:\n  model: {}\n  interval: {INFERENCE_INTERVAL}\noverlay:\n  enabled: false\n\
         outputs:\n  mqtt:\n    host: 127.0.0.1\n    port: {mqtt_port}\n    topic: \"churn/{{source}}/{{kind}}\"\n    \
         qos: 1\n    messages: [frames]\napi:\n  address: 127.0.0.1\n  port: {api_port}\n",
        setup.model
    )
}

/// A `sources[i]` entry: the looped video, or the camera at `rtsp` (TCP, reconnecting forever,
/// from 0.5 s up to 2 s between attempts).
fn source_json(name: &str, setup: &Setup, rtsp: Option<&str>) -> serde_json::Value {
    match rtsp {
        None => serde_json::json!({"name": name, "uri": setup.clip, "loop": true}),
        Some(url) => serde_json::json!({
            "name": name, "uri": url, "rtsp_transport": "tcp", "latency_ms": 200,
            "reconnect": {"interval_ms": 500, "max_interval_ms": 2000, "attempts": -1}
        }),
    }
}

/// What the phases measured.
pub struct Phases {
    /// Unix ms when the churn started and when the settling ended.
    pub churn_from_ms: u64,
    pub settled_ms: u64,
    pub baseline: Vec<Point>,
    pub samples: Vec<Point>,
    pub after: Vec<Point>,
    /// `GET /streams` after the churn.
    pub final_streams: Vec<serde_json::Value>,
}

/// The running churn.
struct Churn<'a> {
    setup: &'a Setup,
    api: SocketAddr,
    pid: u32,
    cameras: &'a mut Vec<Camera>,
    lives: &'a mut Vec<Life>,
    done: Vec<Done>,
}

impl Churn<'_> {
    /// Start, warm-up and baseline, the schedule with samples, settling and the after samples.
    fn phases(
        &mut self,
        steps: &[schedule::Step],
        secs: u64,
        sample_secs: u64,
        watch: &Watch,
    ) -> anyhow::Result<Phases> {
        self.wait_playing(Duration::from_secs(120))?;
        std::thread::sleep(WARM_UP);
        let baseline = self.points(BASELINE_SAMPLES, Duration::from_secs(1))?;
        let t0 = Instant::now();
        let churn_from_ms = unix_ms();
        println!(
            "{:>8}  {:>8}  {:>7}  {:>5}  {:>7}",
            "t s", "RSS MiB", "threads", "fds", "msgs/s"
        );
        let sampler = Sampler::start(
            self.pid,
            t0,
            Duration::from_secs(sample_secs.max(1)),
            watch.count.clone(),
        );
        for step in steps {
            std::thread::sleep(Duration::from_secs_f64(step.at_s).saturating_sub(t0.elapsed()));
            if measure::sample(self.pid).is_none() {
                sampler.stop();
                bail!("vigil run ended during the churn");
            }
            self.act(t0, &step.action);
        }
        std::thread::sleep(Duration::from_secs(secs).saturating_sub(t0.elapsed()));
        let samples = sampler.stop();
        std::thread::sleep(SETTLE);
        let after = self.points(AFTER_SAMPLES, Duration::from_millis(500))?;
        let settled_ms = unix_ms();
        let final_streams = fleet::streams(self.api)?;
        for s in &final_streams {
            if let Some(l) = self.lives.iter_mut().find(|l| s["name"] == l.plan.name) {
                l.reconnects = s["reconnects"].as_u64();
            }
        }
        Ok(Phases {
            churn_from_ms,
            settled_ms,
            baseline,
            samples,
            after,
            final_streams,
        })
    }

    /// Waits until every stream of the config plays and has frames.
    fn wait_playing(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut last = String::from("the API did not answer");
        while Instant::now() < deadline {
            if measure::sample(self.pid).is_none() {
                bail!("vigil run ended before its streams played");
            }
            if let Ok(list) = fleet::streams(self.api) {
                let ready = list.len() == self.lives.len()
                    && list
                        .iter()
                        .all(|s| s["state"] == "playing" && s["frames"].as_u64() > Some(0));
                if ready {
                    return Ok(());
                }
                last = serde_json::to_string(&list).unwrap_or_default();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bail!("the streams did not all play within {limit:?}: {last}")
    }

    /// `count` samples `every` apart.
    fn points(&self, count: usize, every: Duration) -> anyhow::Result<Vec<Point>> {
        let mut out = Vec::new();
        for _ in 0..count {
            let s = measure::sample(self.pid).context("vigil run ended")?;
            out.push(point(-1.0, s, 0.0));
            std::thread::sleep(every);
        }
        Ok(out)
    }

    /// Does `action`, records it (and prints it).
    fn act(&mut self, t0: Instant, action: &Action) {
        match action {
            Action::Kill { camera } => {
                let d = self.timed(t0, "kill", None, Some(*camera), |c| {
                    c.cameras[*camera].kill();
                    Ok(())
                });
                self.done.push(d);
            }
            Action::Restart { camera } => {
                let d = self.timed(t0, "restart", None, Some(*camera), |c| {
                    c.cameras[*camera].restart()
                });
                self.done.push(d);
            }
            Action::Swap {
                add,
                camera,
                remove,
            } => {
                let d = self.timed(t0, "add", Some(add), *camera, |c| c.add(add, *camera));
                self.done.push(d);
                let d = self.timed(t0, "remove", Some(remove), None, |c| c.remove(remove));
                self.done.push(d);
            }
        }
    }

    /// Runs `f`, timed, as a [`Done`] (printed).
    fn timed(
        &mut self,
        t0: Instant,
        kind: &str,
        stream: Option<&str>,
        camera: Option<usize>,
        f: impl FnOnce(&mut Self) -> anyhow::Result<()>,
    ) -> Done {
        let (t_s, unix) = (t0.elapsed().as_secs_f64(), unix_ms());
        let start = Instant::now();
        let error = f(self).err().map(|e| format!("{e:#}"));
        let d = Done {
            t_s,
            unix_ms: unix,
            kind: kind.into(),
            stream: stream.map(str::to_string),
            camera,
            took_ms: start.elapsed().as_millis() as u64,
            error,
            recovered_ms: None,
        };
        println!(
            "{t_s:>8.1}  {kind} {}{}: {} ms{}",
            stream.unwrap_or_default(),
            camera.map_or(String::new(), |c| format!(" camera {c}")),
            d.took_ms,
            d.error
                .as_ref()
                .map_or(String::new(), |e| format!(", FAILED: {e}"))
        );
        d
    }

    /// `POST /streams` of `name`.
    fn add(&mut self, name: &str, camera: Option<usize>) -> anyhow::Result<()> {
        let url = camera.map(|c| self.cameras[c].url());
        let body = source_json(name, self.setup, url.as_deref()).to_string();
        let added_ms = unix_ms();
        let (code, answer) = http(self.api, "POST", "/streams", Some(&body))?;
        if code != 201 {
            bail!("POST /streams {name}: {code} {answer}");
        }
        self.lives.push(Life {
            plan: StreamPlan {
                name: name.into(),
                camera,
                role: Role::Churned,
            },
            added_ms: Some(added_ms),
            removed_ms: None,
            reconnects: None,
        });
        Ok(())
    }

    /// `DELETE /streams/{name}`; the stream must have drained.
    fn remove(&mut self, name: &str) -> anyhow::Result<()> {
        let (code, answer) = http(self.api, "DELETE", &format!("/streams/{name}"), None)?;
        if code != 200 {
            bail!("DELETE /streams/{name}: {code} {answer}");
        }
        let v: serde_json::Value = serde_json::from_str(&answer)
            .with_context(|| format!("DELETE /streams/{name}: {answer}"))?;
        if let Some(l) = self.lives.iter_mut().find(|l| l.plan.name == name) {
            l.removed_ms = Some(unix_ms());
            l.reconnects = v["reconnects"].as_u64();
        }
        if v["drained"] != true {
            bail!("DELETE /streams/{name}: its outputs did not drain: {answer}");
        }
        Ok(())
    }
}

fn point(t_s: f64, s: measure::Sample, messages_per_s: f64) -> Point {
    Point {
        t_s,
        rss_mib: s.rss_kib as f64 / 1024.0,
        threads: s.threads,
        fds: s.fds,
        messages_per_s,
    }
}

/// A thread sampling the child every `every` during the churn, printing each sample.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Point>>,
}

impl Sampler {
    fn start(pid: u32, t0: Instant, every: Duration, messages: Arc<AtomicU64>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            let (mut last_t, mut last_n) = (0.0, messages.load(Ordering::Relaxed));
            let mut next = every;
            while !flag.load(Ordering::SeqCst) {
                if t0.elapsed() < next {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                next += every;
                let Some(s) = measure::sample(pid) else {
                    break;
                };
                let t = t0.elapsed().as_secs_f64();
                let n = messages.load(Ordering::Relaxed);
                let p = point(t, s, (n - last_n) as f64 / (t - last_t));
                (last_t, last_n) = (t, n);
                println!(
                    "{t:>8.0}  {:>8.1}  {:>7}  {:>5}  {:>7.1}",
                    p.rss_mib, p.threads, p.fds, p.messages_per_s
                );
                out.push(p);
            }
            out
        });
        Sampler { stop, handle }
    }

    fn stop(self) -> Vec<Point> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

/// The MQTT subscriber's thread: every message into the [`Tally`] of its publisher.
struct Watch {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    handle: JoinHandle<(BTreeMap<String, Tally>, Vec<String>)>,
}

impl Watch {
    fn start(port: u16) -> anyhow::Result<Watch> {
        let sub = Subscriber::try_start(port, "vigil-churn-watch", "churn/#", &[])
            .map_err(anyhow::Error::msg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (flag, counter) = (stop.clone(), count.clone());
        let handle = std::thread::spawn(move || {
            let mut tallies = BTreeMap::new();
            let mut errors = Vec::new();
            let mut quiet_since = Instant::now();
            // After the stop, what is still on its way: until 2 s without a message.
            while !(flag.load(Ordering::SeqCst) && quiet_since.elapsed() > Duration::from_secs(2)) {
                let Some(payload) = sub.recv(Duration::from_millis(200)) else {
                    continue;
                };
                quiet_since = Instant::now();
                counter.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = tally::take(&mut tallies, &payload)
                    && errors.len() < 10
                {
                    errors.push(e);
                }
            }
            (tallies, errors)
        });
        Ok(Watch {
            stop,
            count,
            handle,
        })
    }

    /// Stops after the last messages; the tallies and the first messages that did not parse.
    fn finish(self) -> (BTreeMap<String, Tally>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}
