//! A camera fleet across several hosts, on one machine (issue 19): network namespaces joined by a
//! switch (`vigil::bench::lan`, addresses in 198.18.0.0/24, nothing routed off them) hold 2 RTSP
//! camera hosts, 2 inference hosts (`vigil serve`), 2 pipeline hosts (`vigil run --shard 0/2` and
//! `1/2`) and an MQTT broker host (mosquitto).
//!
//! 1. Sharding: 8 cameras over 2 shards; each camera's events come from exactly one shard (the
//!    shard its name hashes to, in the MQTT topic `vigil/{shard}/…` and the shard's events file),
//!    and every detection of 30 frames per camera equals a single-process run's on the same frames
//!    (cameras with `--per-client` media: every client decodes the same pictures), boxes within 1 px:
//!    the first 30 of the first 45 that the shard inferred (a server answer later than 1 s under
//!    load passes a frame uninferred).
//! 2. Faults across hosts while the shards run: an inference host's link cut for 10 s, then its
//!    `vigil serve` killed and restarted, then a camera host's link cut for 5 s. The streams go on
//!    (no gap over 2 s in a stream not involved), inference fails over to the other server, the
//!    frames no server answered are counted (`vigil_stream_frames_not_inferred_total{shard=…}`),
//!    everything recovers by itself, and the MQTT messages have no `seq` gap.
//!
//! Needs root (network namespaces), mosquitto, NanoDet and vtest.avi (`make setup`); under `CI=true`
//! a missing one fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil::bench::lan::{Host, Lan};
use vigil::shard::shard_of;
use vigil_tests::serve::{Served, ci, start_served};
use vigil_tests::{EventsTail, TempDir, Vigil, http_get, parse_metrics, repo_root, vigil_bin};

const TOKEN: &str = "fleet-test-token";
/// Frames of every camera compared with the single-process run.
const COMPARED: usize = 30;
/// The first frames of every camera read from both runs; the comparison takes the first
/// [`COMPARED`] of them the shard inferred. A request no server answers within `server-timeout-ms`
/// (1 s) passes the frame on without detections — on this 2-core machine, with 8 x264 cameras, 2
/// servers and 2 pipelines busy, some can (CI, 2026-12-07: cam-4 frame 23); they are counted in the
/// metrics later.
const WINDOW: u64 = 45;
/// Cameras: 384x288 at 3 frames/s (x264, each client its own encoder from the first frame): while one server
/// answers for both, 8 cameras at 5 frames/s were more than it could infer within `server-timeout-ms`
/// on a loaded 2-core machine (a third of the CPU: 62 of 174 frames inferred during the cut).
const CAMERA: [&str; 7] = [
    "--width",
    "384",
    "--height",
    "288",
    "--fps",
    "3",
    "--per-client",
];
/// The longest a stream not involved in a fault may go without a frame.
const MAX_GAP_MS: u64 = 2000;

/// A background program inside a host, its output lines timestamped; killed on drop.
struct Bg {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Bg {
    fn start(mut cmd: Command) -> Bg {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push((Instant::now(), line));
                }
            });
        }
        Bg { child, lines }
    }

    fn text(&self) -> String {
        let l = self.lines.lock().unwrap();
        l.iter()
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for a line containing `what`.
    fn wait_for(&mut self, what: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|(_, l)| l.contains(what))
            {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("ended ({st}) before '{what}':\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no '{what}' within {limit:?}:\n{}", self.text());
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the test needs, or why it cannot run.
fn prerequisites() -> Result<(PathBuf, PathBuf), String> {
    Lan::check()?;
    let root = repo_root();
    let model = root.join("models/nanodet/1/model.onnx");
    let video = root.join("samples/media/vtest.avi");
    for f in [&model, &video] {
        if !f.is_file() {
            return Err(format!("{} is not installed (make setup)", f.display()));
        }
    }
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto_sub"] {
        if !Path::new(p).exists() {
            return Err(format!("{p} is not installed (make setup)"));
        }
    }
    Ok((root.join("models"), video))
}

/// The first 4 names `cam-<i>` of each of the 2 shards: cameras 0–3 run in shard 0, 4–7 in shard 1.
fn camera_names() -> Vec<String> {
    let mut per: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 0.. {
        let n = format!("cam-{i}");
        let s = shard_of(&n, 2) as usize;
        if per[s].len() < 4 {
            per[s].push(n);
        }
        if per.iter().all(|v| v.len() == 4) {
            break;
        }
    }
    per.concat()
}

/// A repository holding NanoDet only (what the servers load).
fn nanodet_repo(models: &Path, dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::os::unix::fs::symlink(models.join("nanodet"), repo.join("nanodet")).unwrap();
    repo
}

fn start_server(host: &Host, repo: &Path) -> Served {
    let mut cmd = host.command(vigil_bin());
    cmd.arg("serve")
        .arg(repo)
        .args(["--address", &host.addr.to_string(), "--token", TOKEN]);
    start_served(cmd)
}

/// `cameras[i]` served by `hosts[i / 2 % 2]`: each shard reads from both camera hosts.
fn camera_host(i: usize) -> usize {
    (i / 2) % 2
}

/// The fleet config: every camera over TCP with a deep live queue (a busy moment of this 2-core
/// machine delays frames instead of dropping them, so both runs see every frame), NanoDet (local, or on `servers`), events into `events`,
/// MQTT frame messages to `broker` when given, the API on a free loopback port.
fn fleet_config(
    dir: &Path,
    file: &str,
    models: &Path,
    cameras: &[(String, String)],
    servers: &[String],
    events: &Path,
    broker: Option<&Host>,
) -> PathBuf {
    let mut y = format!(
        "name: fleet\nmodel_repository: {}\nrealtime: false\nsources:\n",
        models.display()
    );
    for (name, url) in cameras {
        y += &format!(
            "  - name: {name}\n    uri: {url}\n    rtsp_transport: tcp\n    live_queue: 100\n    reconnect: {{ interval_ms: 500, max_interval_ms: 1000, attempts: -1 }}\n"
        );
    }
    y += "inference:\n  model: nanodet\n";
    if !servers.is_empty() {
        y += &format!("  server: [{}]\n", servers.join(", "));
    }
    y += &format!("outputs:\n  events: {{ path: {} }}\n", events.display());
    if let Some(b) = broker {
        y += &format!(
            "  mqtt: {{ host: {}, topic: \"vigil/{{shard}}/{{source}}/{{kind}}\", messages: [frames], qos: 1 }}\n",
            b.addr
        );
    }
    y += "api: { port: 0 }\n";
    let path = dir.join(file);
    std::fs::write(&path, y).unwrap();
    path
}

/// Starts `vigil run` in `host` with `args` and `env`, and waits for its start-up lines.
fn start_run(host: &Host, config: &Path, args: &[&str], env: &[(&str, &str)]) -> (Vigil, String) {
    let mut cmd = host.command(vigil_bin());
    cmd.arg("run")
        .arg(config)
        .args(args)
        .args(["--progress", "0"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (vigil, info) = vigil_tests::start_vigil_cmd(cmd, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    (vigil, info.api.expect("the API address"))
}

/// Per source, the events read so far, by frame number.
#[derive(Default)]
struct Frames(BTreeMap<String, BTreeMap<u64, Value>>);

impl Frames {
    fn add(&mut self, events: Vec<Value>) {
        for e in events {
            let src = e["source"].as_str().unwrap_or_default().to_string();
            let frame = e["frame"].as_u64().unwrap_or(u64::MAX);
            self.0.entry(src).or_default().insert(frame, e);
        }
    }

    /// Whether every camera has its first `n` frames.
    fn has(&self, names: &[String], n: u64) -> bool {
        names.iter().all(|c| {
            self.0
                .get(c)
                .is_some_and(|f| (0..n).all(|k| f.contains_key(&k)))
        })
    }
}

/// Reads `tails` until every camera has `n` frames, at most `limit`.
fn wait_frames(
    tails: &mut [EventsTail],
    frames: &mut Frames,
    names: &[String],
    n: u64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        for t in tails.iter_mut() {
            frames.add(t.read_new().unwrap());
        }
        if frames.has(names, n) {
            return;
        }
        if Instant::now() > deadline {
            let have: Vec<String> = names
                .iter()
                .map(|c| format!("{c}: {}", frames.0.get(c).map_or(0, |f| f.len())))
                .collect();
            panic!("not {n} frames of every camera within {limit:?}: {have:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The boxes of a frame event, as (label, x, y, w, h, confidence), sorted.
fn boxes(e: &Value) -> Vec<(String, f64, f64, f64, f64, f64)> {
    let mut v: Vec<_> = e["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let b = &o["bbox"];
            let f = |k: &str| b[k].as_f64().unwrap_or(f64::NAN);
            (
                o["label"].as_str().unwrap_or_default().to_string(),
                f("x"),
                f("y"),
                f("w"),
                f("h"),
                o["confidence"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v
}

/// Compares the sharded run's first frames with the single-process run's; returns (frames, boxes).
fn compare(base: &Frames, sharded: &Frames, names: &[String]) -> (u64, usize) {
    for (what, run) in [("single", base), ("sharded", sharded)] {
        for c in names {
            let missed: Vec<&u64> = run.0[c]
                .iter()
                .filter(|(_, e)| e["inferred"] == false)
                .map(|(k, _)| k)
                .collect();
            if !missed.is_empty() {
                eprintln!("{what}: {c}: frames not inferred: {missed:?}");
            }
        }
    }
    let (mut frames, mut objects) = (0, 0);
    for c in names {
        let mut compared = 0;
        for k in 0..WINDOW {
            if compared == COMPARED {
                break;
            }
            let (a, b) = (&base.0[c][&k], &sharded.0[c][&k]);
            assert_eq!(
                a["inferred"], true,
                "{c} frame {k} of the single run (in process) not inferred"
            );
            if b["inferred"] != true {
                continue;
            }
            compared += 1;
            let (ba, bb) = (boxes(a), boxes(b));
            assert_eq!(ba.len(), bb.len(), "{c} frame {k}: {ba:?} vs {bb:?}");
            for (x, y) in ba.iter().zip(&bb) {
                let close = x.0 == y.0
                    && (x.1 - y.1).abs() <= 1.0
                    && (x.2 - y.2).abs() <= 1.0
                    && (x.3 - y.3).abs() <= 1.0
                    && (x.4 - y.4).abs() <= 1.0
                    && (x.5 - y.5).abs() <= 0.01;
                assert!(close, "{c} frame {k}: {x:?} vs {y:?}");
            }
            frames += 1;
            objects += ba.len();
        }
        assert_eq!(
            compared, COMPARED,
            "{c}: under {COMPARED} of the shard's first {WINDOW} frames inferred"
        );
    }
    (frames, objects)
}

/// Longest time between consecutive frames of `source` (by the events' `timestamp_ms`) within
/// `[from, to]` ms, leaving out the interval `skip`.
fn longest_gap(frames: &BTreeMap<u64, Value>, from: u64, to: u64, skip: Option<(u64, u64)>) -> u64 {
    let mut times: Vec<u64> = frames
        .values()
        .filter_map(|e| e["timestamp_ms"].as_u64())
        .filter(|t| (from..=to).contains(t))
        .collect();
    times.sort_unstable();
    times
        .windows(2)
        .filter(|w| skip.is_none_or(|(a, b)| w[1] < a || w[0] > b))
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `vigil_stream_frames_not_inferred_total` of every stream of the run at `api` (inside `host`),
/// checking that each series carries `shard`.
fn not_inferred(host: &Host, api: &str, shard: &str) -> u64 {
    let api = api.to_string();
    let (status, body) = host
        .within(move || http_get(&api, "/metrics"))
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let samples = parse_metrics(&body).unwrap();
    let mut total = 0.0;
    for s in samples
        .iter()
        .filter(|s| s.name == "vigil_stream_frames_not_inferred_total")
    {
        assert_eq!(s.label("shard"), Some(shard), "{s:?}");
        total += s.value;
    }
    assert!(
        samples.iter().all(|s| s.label("shard") == Some(shard)),
        "every series carries shard=\"{shard}\""
    );
    total as u64
}

#[test]
fn a_fleet_sharded_over_hosts_equals_one_process_and_survives_faults() {
    let (models, video) = match prerequisites() {
        Ok(p) => p,
        Err(why) => {
            assert!(!ci(), "{why}");
            vigil_tests::skip(format_args!("fleet_hosts: {why}"));
            return;
        }
    };
    let dir = TempDir::new("fleet-hosts");
    let d = dir.path();
    let camera_bin = PathBuf::from(env!("CARGO_BIN_EXE_vigil-test-camera"));

    let mut lan = Lan::new("f").unwrap();
    let cam_hosts = [
        lan.add_host("cam-a").unwrap(),
        lan.add_host("cam-b").unwrap(),
    ];
    let infer = [
        lan.add_host("infer-a").unwrap(),
        lan.add_host("infer-b").unwrap(),
    ];
    let pipes = [
        lan.add_host("pipe-0").unwrap(),
        lan.add_host("pipe-1").unwrap(),
    ];
    let mqtt = lan.add_host("mqtt").unwrap();

    // The broker.
    let conf = d.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener 1883 {}\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n",
            mqtt.addr
        ),
    )
    .unwrap();
    let mut broker = Bg::start({
        let mut c = mqtt.command("/usr/sbin/mosquitto");
        c.arg("-c").arg(&conf).arg("-v");
        c
    });
    broker.wait_for("running", Duration::from_secs(10));
    let mut sub = Bg::start({
        let mut c = mqtt.command("/usr/bin/mosquitto_sub");
        c.args([
            "-h",
            &mqtt.addr.to_string(),
            "-t",
            "vigil/#",
            "-v",
            "-q",
            "1",
        ]);
        c.args(["-i", "fleet-test-sub"]);
        c
    });

    // The servers.
    let repo = nanodet_repo(&models, d);
    let mut servers: Vec<Option<Served>> =
        infer.iter().map(|h| Some(start_server(h, &repo))).collect();
    let urls: Vec<String> = infer
        .iter()
        .map(|h| format!("grpc://{}:8001", h.addr))
        .collect();

    // The cameras.
    let names = camera_names();
    let mut cams = Vec::new();
    let mut sources = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let host = &cam_hosts[camera_host(i)];
        let port = 8554 + (i / 4 * 2 + i % 2) as u16;
        let mut c = host.command(&camera_bin);
        c.args([
            "--address",
            &host.addr.to_string(),
            "--port",
            &port.to_string(),
        ])
        .args(["--mount", "/cam", "--file"])
        .arg(&video)
        .args(CAMERA);
        let mut bg = Bg::start(c);
        bg.wait_for("ready rtsp://", Duration::from_secs(20));
        cams.push(bg);
        sources.push((name.clone(), format!("rtsp://{}:{port}/cam", host.addr)));
    }

    // 1a. The single-process run (NanoDet in process) on pipe-0.
    let base_events = d.join("base/events.jsonl");
    let base_cfg = fleet_config(d, "single.yaml", &models, &sources, &[], &base_events, None);
    let (single, _) = start_run(&pipes[0], &base_cfg, &[], &[]);
    let mut base = Frames::default();
    wait_frames(
        &mut [EventsTail::new(&base_events)],
        &mut base,
        &names,
        WINDOW,
        Duration::from_secs(90),
    );
    single.stop_clean();

    // 1b. Two shards on two hosts, inference on the two servers, MQTT on.
    let shard_events = d.join("shards/events.jsonl");
    let cfg = fleet_config(
        d,
        "fleet.yaml",
        &models,
        &sources,
        &urls,
        &shard_events,
        Some(&mqtt),
    );
    let env = [("VIGIL_INFERENCE_TOKEN", TOKEN)];
    let (run0, api0) = start_run(&pipes[0], &cfg, &["--shard", "0/2"], &env);
    let (run1, api1) = start_run(
        &pipes[1],
        &cfg,
        &[],
        &[
            env[0],
            ("VIGIL_SHARD_COUNT", "2"),
            ("HOSTNAME", "fleet-pipelines-1"),
        ],
    );
    let files = [
        d.join("shards/events-shard0.jsonl"),
        d.join("shards/events-shard1.jsonl"),
    ];
    let mut tails = [EventsTail::new(&files[0]), EventsTail::new(&files[1])];
    let mut sharded = Frames::default();
    wait_frames(
        &mut tails,
        &mut sharded,
        &names,
        WINDOW,
        Duration::from_secs(90),
    );
    let (compared, objects) = compare(&base, &sharded, &names);
    eprintln!("compared {compared} frames, {objects} objects: equal within 1 px");
    assert!(
        objects > 100,
        "the frames hold objects to compare ({objects})"
    );

    // 2. Faults.
    let fault_start = now_ms();
    std::thread::sleep(Duration::from_secs(3));
    let cut_infer = now_ms();
    lan.cut(&infer[0]).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    lan.restore(&infer[0]).unwrap();
    let restored_infer = now_ms();
    std::thread::sleep(Duration::from_secs(6));
    let killed = now_ms();
    if let Some(s) = servers[0].take() {
        vigil_tests::serve::kill(s);
    }
    std::thread::sleep(Duration::from_secs(3));
    servers[0] = Some(start_server(&infer[0], &repo));
    let restarted = now_ms();
    std::thread::sleep(Duration::from_secs(6));
    let cut_cam = now_ms();
    lan.cut(&cam_hosts[0]).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    lan.restore(&cam_hosts[0]).unwrap();
    let restored_cam = now_ms();
    // Recovery: every camera delivers inferred frames again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        for tail in tails.iter_mut() {
            sharded.add(tail.read_new().unwrap());
        }
        let after = |c: &String| {
            sharded.0[c]
                .values()
                .filter(|e| e["timestamp_ms"].as_u64().unwrap_or(0) > restored_cam + 1000)
                .filter(|e| e["inferred"] == true)
                .count()
                >= 10
        };
        if names.iter().all(after) {
            break now_ms();
        }
        assert!(
            Instant::now() < deadline,
            "not every camera recovered within 30 s of the last fault"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    std::thread::sleep(Duration::from_secs(2));
    let end = now_ms();
    // Frames not inferred before this moment are counted by the metrics read next; later ones (until
    // the runs stop) may or may not be.
    let scraped = now_ms();
    let uninferred = [
        not_inferred(&pipes[0], &api0, "0"),
        not_inferred(&pipes[1], &api1, "1"),
    ];
    let err0 = run0.stop_clean();
    let err1 = run1.stop_clean();
    for tail in tails.iter_mut() {
        sharded.add(tail.read_new().unwrap());
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = sub.child.kill();

    // Each camera in exactly one shard: the events files and the MQTT topics.
    for (k, f) in files.iter().enumerate() {
        let got: BTreeSet<String> = vigil_tests::read_events(f)
            .unwrap()
            .iter()
            .filter_map(|e| e["source"].as_str().map(str::to_string))
            .collect();
        let want: BTreeSet<String> = names
            .iter()
            .filter(|n| shard_of(n, 2) == k as u32)
            .cloned()
            .collect();
        assert_eq!(got, want, "sources of {}", f.display());
    }
    let mut seqs: BTreeMap<String, (BTreeSet<String>, Vec<u64>)> = BTreeMap::new();
    for (_, line) in sub.lines.lock().unwrap().iter() {
        let Some((topic, payload)) = line.split_once(' ') else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(payload) else {
            continue;
        };
        let src = v["source"].as_str().unwrap_or_default().to_string();
        let shard = topic.split('/').nth(1).unwrap_or_default().to_string();
        let e = seqs.entry(src).or_default();
        e.0.insert(shard);
        e.1.push(v["seq"].as_u64().unwrap_or(u64::MAX));
    }
    for (i, c) in names.iter().enumerate() {
        let (shards, seq) = seqs
            .get(c)
            .unwrap_or_else(|| panic!("no MQTT message of {c}"));
        let want = BTreeSet::from([shard_of(c, 2).to_string()]);
        assert_eq!(shards, &want, "{c}'s MQTT messages come from one shard");
        let unique: BTreeSet<u64> = seq.iter().copied().collect();
        let (lo, hi) = (*unique.first().unwrap(), *unique.last().unwrap());
        assert_eq!(lo, 0, "{c}: the first seq");
        assert_eq!(
            unique.len() as u64,
            hi + 1,
            "{c}: seq gaps in {} MQTT messages (0..={hi})",
            seq.len()
        );
        // Streams not involved never stall over 2 s; the cut camera host's only while cut.
        let frames = &sharded.0[c];
        let skip = (camera_host(i) == 0).then_some((cut_cam, recovered));
        let gap = longest_gap(frames, fault_start, end, skip);
        eprintln!(
            "{c}: shard {}, camera host {}, {} frames, {} MQTT messages, longest gap {gap} ms",
            shard_of(c, 2),
            camera_host(i),
            frames.len(),
            seq.len()
        );
        assert!(gap <= MAX_GAP_MS, "{c}: a gap of {gap} ms");
    }

    // Inference failed over: frames during the cut were inferred (by the other server), some were
    // not (in flight to the cut one), and all are counted.
    let during = |from: u64, to: u64| -> (usize, usize) {
        let mut n = (0, 0);
        for f in sharded.0.values() {
            for e in f.values() {
                let ts = e["timestamp_ms"].as_u64().unwrap_or(0);
                if (from..to).contains(&ts) {
                    n.0 += 1;
                    n.1 += (e["inferred"] == true) as usize;
                }
            }
        }
        n
    };
    let (cut_frames, cut_inferred) = during(cut_infer, restored_infer);
    let (kill_frames, kill_inferred) = during(killed, restarted);
    let not_inferred_events: usize = sharded
        .0
        .values()
        .map(|f| f.values().filter(|e| e["inferred"] == false).count())
        .sum();
    eprintln!(
        "inference host cut: {cut_inferred} of {cut_frames} frames inferred; killed: \
         {kill_inferred} of {kill_frames}; not inferred: metrics {uninferred:?}, events \
         {not_inferred_events}; recovered {} ms after the camera host's link returned",
        recovered - restored_cam
    );
    assert!(cut_frames > 0 && kill_frames > 0);
    assert!(
        cut_inferred * 2 > cut_frames,
        "most frames inferred while a server was cut off"
    );
    assert!(
        kill_inferred * 2 > kill_frames,
        "most frames inferred while a server was down"
    );
    let counted: u64 = uninferred.iter().sum();
    assert!(counted > 0, "frames no server answered are counted");
    let before_scrape = sharded
        .0
        .values()
        .flat_map(|f| f.values())
        .filter(|e| e["inferred"] == false)
        .filter(|e| e["timestamp_ms"].as_u64().unwrap_or(u64::MAX) < scraped)
        .count() as u64;
    assert!(
        (before_scrape..=not_inferred_events as u64).contains(&counted),
        "metrics count the events' inferred=false: {counted} counted, {before_scrape} events before          the metrics were read, {not_inferred_events} in all"
    );
    assert!(
        err0.contains("frames not inferred") || err1.contains("frames not inferred"),
        "the summaries report the frames not inferred:\n{err0}\n{err1}"
    );
    for s in servers.into_iter().flatten() {
        vigil_tests::serve::stop(s);
    }
    drop(cams);
    drop(broker);
    drop(lan);
}
