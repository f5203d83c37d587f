//! `vigil bench --cluster`: throughput of a fleet whose inference runs on other hosts, with one and
//! with two inference hosts behind the pipeline hosts (issue 19, acceptance 3).
//!
//! Hosts are network namespaces on one switch ([`super::lan`]); every host's processes are pinned
//! with `taskset` to a core of its own while cores last (pipeline hosts first, then inference
//! hosts; when they run out, hosts share cores from the first, and the report says so). The
//! pipeline hosts run `vigil run --shard I/P` over `--cluster-streams` file sources (not live: as
//! fast as the servers answer), NanoDet on the inference hosts' `vigil serve` over gRPC. Measured
//! per row: frames/s over the processing window (first to last event of all shards), each host's
//! CPU use (user + system time over the window, per core it was given), and the ratio to the
//! one-server row. An extra row puts the two servers on one core, to tell "more servers" from
//! "more cores".

use anyhow::{Context, bail};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::lan::{Host, Lan};
use super::{BenchArgs, Setup, vigil_config};

const TOKEN: &str = "vigil-bench-cluster";

/// One measured arrangement.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRow {
    pub name: String,
    pub servers: usize,
    /// The core of each pipeline host, then of each inference host.
    pub pipeline_cores: Vec<usize>,
    pub server_cores: Vec<usize>,
    pub frames: u64,
    pub fps: f64,
    /// Frames/s over the one-server row's.
    pub ratio: f64,
    /// CPU use over the window, 0..1 of one core, per pipeline host and per inference host.
    pub pipeline_cpu: Vec<f64>,
    pub server_cpu: Vec<f64>,
    pub not_inferred: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub cores: Vec<usize>,
    pub pipeline_hosts: usize,
    pub streams: usize,
    pub frames_per_stream: u64,
    pub rows: Vec<ClusterRow>,
    pub notes: Vec<String>,
}

/// The CPUs this process may run on.
fn allowed_cores() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size of a cpu_set_t.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    // SAFETY: CPU_ISSET reads the set filled above.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// User + system seconds of process `pid` so far (`/proc/PID/stat`), or `None` when gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks / hz)
}

/// A `vigil serve` inside a host, pinned to a core; killed on drop.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(
        exe: &Path,
        host: &Host,
        core: usize,
        repo: &Path,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&log).with_context(|| log.display().to_string())?;
        let mut cmd = host.command("taskset");
        cmd.args(["-c", &core.to_string()])
            .arg(exe)
            .arg("serve")
            .arg(repo)
            .args(["--address", &host.addr.to_string(), "--token", TOKEN])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        let child = cmd
            .spawn()
            .context("cannot start vigil serve in its namespace")?;
        let mut s = Server { child, log };
        s.wait_ready(host)?;
        Ok(s)
    }

    fn wait_ready(&mut self, host: &Host) -> anyhow::Result<()> {
        let addr = SocketAddr::from((host.addr, 8000));
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!(
                    "vigil serve in {} ended ({st}): {}",
                    host.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let ready = host
                .within(move || super::churn::fleet::http(addr, "GET", "/v2/health/ready", None))
                .map_err(anyhow::Error::msg)?;
            if matches!(ready, Ok((200, _))) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("vigil serve in {} was not ready within 120 s", host.name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A repository with only `model` in it (what the servers load).
fn one_model_repo(models: &Path, model: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let repo = dir.join("cluster-repo");
    std::fs::create_dir_all(&repo)?;
    let link = repo.join(model);
    if !link.exists() {
        std::os::unix::fs::symlink(models.join(model), &link)?;
    }
    Ok(repo)
}

/// One arrangement: `server_cores.len()` servers, the pipeline hosts on `pipeline_cores`.
fn measure_row(
    s: &Setup,
    args: &BenchArgs,
    lan: &Lan,
    name: &str,
    pipeline_cores: &[usize],
    server_cores: &[usize],
) -> anyhow::Result<ClusterRow> {
    let hosts = lan.hosts();
    let (pipes, infer) = hosts.split_at(pipeline_cores.len());
    let repo = one_model_repo(&s.models, &s.model, &s.tmp)?;
    let dir = s.tmp.join(format!("cluster-{}", name.replace(' ', "-")));
    std::fs::create_dir_all(&dir)?;
    let mut servers = Vec::new();
    for (k, core) in server_cores.iter().enumerate() {
        servers.push(Server::start(
            &s.exe,
            &infer[k],
            *core,
            &repo,
            dir.join(format!("serve-{k}.log")),
        )?);
    }
    let urls: Vec<String> = infer[..server_cores.len()]
        .iter()
        .map(|h| format!("grpc://{}:8001", h.addr))
        .collect();
    let events = dir.join("events.jsonl");
    let outputs = format!("  events:\n    path: {}\n", events.display());
    let mut config = vigil_config(
        &s.models,
        &s.model,
        &s.clip,
        args.cluster_streams,
        false,
        &outputs,
    );
    config = config.replacen(
        &format!("inference:\n  model: {}\n", s.model),
        &format!(
            "inference:\n  model: {}\n  server: [{}]\n  server_timeout_ms: 10000\n",
            s.model,
            urls.join(", ")
        ),
        1,
    );
    let cfg = dir.join("cluster.yaml");
    std::fs::write(&cfg, config)?;
    let p = pipeline_cores.len();
    let server_cpu0: Vec<f64> = servers
        .iter()
        .map(|sv| cpu_seconds(sv.child.id()).unwrap_or(0.0))
        .collect();
    let mut runs = Vec::new();
    for (i, core) in pipeline_cores.iter().enumerate() {
        let mut cmd = pipes[i].command("taskset");
        cmd.args(["-c", &core.to_string()])
            .arg(&s.exe)
            .args(["run", "--quiet", "--shard", &format!("{i}/{p}")])
            .arg(&cfg)
            .env("VIGIL_INFERENCE_TOKEN", TOKEN);
        runs.push(
            super::measure::start(&mut cmd, Duration::from_secs(1800), None)
                .map_err(anyhow::Error::msg)?,
        );
    }
    let measured: Vec<_> = runs.into_iter().map(|r| r.wait()).collect();
    let server_cpu1: Vec<f64> = servers
        .iter()
        .map(|sv| cpu_seconds(sv.child.id()).unwrap_or(0.0))
        .collect();
    for m in &measured {
        if !m.ok() {
            bail!("{}", m.failure("vigil run (a shard)"));
        }
    }
    drop(servers);
    // Every shard's events (`events-shardI.jsonl`, or `events.jsonl` with one shard).
    let mut times = Vec::new();
    let mut not_inferred = 0;
    for i in 0..p {
        let f = if p == 1 {
            events.clone()
        } else {
            dir.join(format!("events-shard{i}.jsonl"))
        };
        let text = std::fs::read_to_string(&f).with_context(|| f.display().to_string())?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).context("events line")?;
            if let Some(t) = v["timestamp_ms"].as_u64() {
                times.push(t as f64 / 1000.0);
            }
            not_inferred += (v["inferred"] == false) as u64;
        }
    }
    let frames = times.len() as u64;
    let want = s.frames * args.cluster_streams as u64;
    if s.frames > 0 && frames != want {
        bail!("{name}: the shards wrote {frames} events for {want} frames");
    }
    let first = times.iter().copied().fold(f64::INFINITY, f64::min);
    let last = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if frames < 2 || last <= first {
        bail!("{name}: too few events to measure ({frames})");
    }
    let window = last - first;
    let fps = (frames - 1) as f64 / window;
    // The pipelines' CPU includes start-up (model labels, connections) and the drain: a little
    // high; the servers' is sampled around the run.
    let pipeline_cpu = measured
        .iter()
        .map(|m| m.cpu_s / m.wall_s.max(1e-9))
        .collect();
    let server_cpu = server_cpu0
        .iter()
        .zip(&server_cpu1)
        .map(|(a, b)| {
            (b - a)
                / measured
                    .iter()
                    .map(|m| m.wall_s)
                    .fold(0.0, f64::max)
                    .max(1e-9)
        })
        .collect();
    Ok(ClusterRow {
        name: name.to_string(),
        servers: server_cores.len(),
        pipeline_cores: pipeline_cores.to_vec(),
        server_cores: server_cores.to_vec(),
        frames,
        fps,
        ratio: 1.0,
        pipeline_cpu,
        server_cpu,
        not_inferred,
    })
}

/// Runs the cluster benchmark and prints (and with `--out`, writes) its report.
pub(crate) fn run(s: &Setup, args: &BenchArgs) -> anyhow::Result<()> {
    Lan::check().map_err(|e| anyhow::anyhow!("vigil bench --cluster: {e}"))?;
    if Command::new("taskset").arg("-V").output().is_err() {
        bail!("vigil bench --cluster needs taskset (Debian package util-linux)");
    }
    let cores = allowed_cores();
    let p = args.cluster_pipelines.max(1);
    let mut lan = Lan::new("c").map_err(anyhow::Error::msg)?;
    for i in 0..p {
        lan.add_host(&format!("pipe-{i}"))
            .map_err(anyhow::Error::msg)?;
    }
    for k in 0..2 {
        lan.add_host(&format!("infer-{k}"))
            .map_err(anyhow::Error::msg)?;
    }
    let core = |k: usize| cores[k % cores.len()];
    let pipeline_cores: Vec<usize> = (0..p).map(core).collect();
    let one = vec![core(p)];
    let two = vec![core(p), core(p + 1)];
    let mut notes = Vec::new();
    let mut arrangements = vec![
        ("1 inference host".to_string(), one.clone()),
        ("2 inference hosts".to_string(), two.clone()),
    ];
    if two[0] != two[1] {
        arrangements.push((
            "2 inference hosts on one core".to_string(),
            vec![one[0], one[0]],
        ));
    }
    let shared: Vec<usize> = two
        .iter()
        .copied()
        .filter(|c| pipeline_cores.contains(c))
        .collect();
    if !shared.is_empty() || p + 2 > cores.len() {
        notes.push(format!(
            "{} cores for {} hosts: cores {:?} are shared (pipeline hosts {:?}, inference hosts {:?})",
            cores.len(),
            p + 2,
            shared,
            pipeline_cores,
            two
        ));
    }
    let mut rows = Vec::new();
    for (name, server_cores) in &arrangements {
        eprintln!("vigil bench --cluster: {name} (cores {server_cores:?}) ...");
        let row = measure_row(s, args, &lan, name, &pipeline_cores, server_cores)?;
        eprintln!("  {:.1} frames/s", row.fps);
        rows.push(row);
    }
    let base = rows[0].fps;
    for r in &mut rows {
        r.ratio = r.fps / base;
    }
    let report = ClusterReport {
        cores,
        pipeline_hosts: p,
        streams: args.cluster_streams,
        frames_per_stream: s.frames,
        rows,
        notes,
    };
    let md = markdown(&report);
    println!("{md}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join("cluster.md"), &md)?;
        std::fs::write(
            out.join("cluster.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
    }
    Ok(())
}

fn markdown(r: &ClusterReport) -> String {
    let pct = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{:.0} %", x * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "Cluster: {} pipeline host(s), {} file streams x {} frames, NanoDet over gRPC; cores {:?}\n\n\
         | arrangement | pipeline cores | server cores | frames/s | ratio | pipeline CPU | server CPU | not inferred |\n\
         | --- | --- | --- | ---: | ---: | --- | --- | ---: |\n",
        r.pipeline_hosts, r.streams, r.frames_per_stream, r.cores
    );
    for row in &r.rows {
        s += &format!(
            "| {} | {:?} | {:?} | {:.1} | {:.2} | {} | {} | {} |\n",
            row.name,
            row.pipeline_cores,
            row.server_cores,
            row.fps,
            row.ratio,
            pct(&row.pipeline_cpu),
            pct(&row.server_cpu),
            row.not_inferred
        );
    }
    for n in &r.notes {
        s += &format!("\nNote: {n}\n");
    }
    s
}
