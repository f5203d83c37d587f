//! The HTTP API of a real `vigil run` against schemathesis (`docs/openapi.yaml`), behind a network guard.
//!
//! `schemathesis_finds_nothing_and_nothing_leaves`: `vigil run` (a looping clip, NanoDet, RTSP + mosaic +
//! MP4 + events outputs, the API bound to `0.0.0.0` with a token: the off-loopback case) and schemathesis
//! both run in a network namespace made for the test, where `lo` is up and the only other route (IPv4 and
//! IPv6 default) goes to `vg0`, a TUN device nobody reads: whatever is sent off loopback ends there, counted
//! (`tx_packets` + `tx_dropped`), and never leaves the machine. This kernel has no `dummy` driver; an unread
//! TUN device is its equivalent here. The sink is checked first (one datagram to it must be counted), then
//! must count nothing while schemathesis runs every phase (examples, coverage, fuzzing, stateful; seed 1,
//! at most `MAX_EXAMPLES` cases per operation) with every check, through `tests/api_schema/hooks.py` (the
//! test copy of the schema: every `uri` a local file of the test or a 127.0.0.1 URL). Asserts: schemathesis
//! reports no failure and no error, no 5xx answer, the server answers `/health` at the end (and `401`
//! without the token), the process is alive, and the sink counted 0 packets.
//!
//! `a_stream_that_never_started_is_removed`: a stream whose camera never answers (an RTSP URL on a free
//! loopback port, given up at once) is removed within seconds and the API keeps answering; a FIFO as
//! `uri` is refused at once (opening it would block the request and every later one). (A schemathesis
//! run once left `DELETE` hanging for good: the branch's elements were stopped upstream first, and a
//! queue's stop waited for the streaming lock its thread held while blocked in a prerolling sink. That
//! timing did not recur in this test with the old order; the order is now sinks first.)
//!
//! Needs root (network namespace), `ip`, `/dev/net/tun`, ffmpeg, the NanoDet model and schemathesis in
//! `$VIGIL_CACHE/schema-venv` (`scripts/setup.sh schema`); without them the test prints `SKIPPED` — and
//! fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vigil_tests::{TempDir, repo_root, skip};

/// Test cases per API operation and phase (schemathesis `--max-examples`).
const MAX_EXAMPLES: u32 = 100;
/// Longest the schemathesis run may take (it takes about 30 s on 2 cores).
const SCHEMATHESIS_LIMIT: Duration = Duration::from_secs(240);
const TOKEN: &str = "schema-test-token";
/// The stream the run starts with; the hooks never delete it (removing the last stream ends the run).
const KEEP: &str = "keep-base";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `Some(why)` when something a test needs is missing; the namespace and schemathesis only when
/// `schemathesis` is given.
fn missing(schemathesis: Option<&Path>) -> Option<String> {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        return Some("ffmpeg is not installed (scripts/setup.sh apt)".into());
    }
    let model = repo_root().join("models/nanodet/1/model.onnx");
    if !model.is_file() {
        return Some(format!("{} is missing (make setup)", model.display()));
    }
    let schemathesis = schemathesis?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (a network namespace is needed)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("ip is not installed (scripts/setup.sh apt: iproute2)".into());
    }
    if !schemathesis.is_file() {
        return Some(format!(
            "{} is missing (scripts/setup.sh schema)",
            schemathesis.display()
        ));
    }
    None
}

fn schemathesis_path() -> PathBuf {
    let cache = std::env::var_os("VIGIL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vigil")
        });
    cache.join("schema-venv/bin/schemathesis")
}

/// Runs `cmd`, or fails naming it with its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{cmd:?}: cannot start: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace whose only way off loopback is the unread TUN device `vg0`; removed on drop.
struct NetNs {
    name: String,
}

/// Address of `vg0` and the one the sink self-check sends to (link-local, inside the namespace).
const SINK_ADDR: &str = "169.254.77.1/16";
const SINK_PEER: &str = "169.254.77.2:9";

impl NetNs {
    fn create() -> Result<NetNs, String> {
        let ns = NetNs {
            name: format!("vigil-schema-{}", std::process::id()),
        };
        run(Command::new("ip").args(["netns", "add", &ns.name]))?;
        let n = ns.name.as_str();
        for args in [
            &["link", "set", "lo", "up"][..],
            &["tuntap", "add", "dev", "vg0", "mode", "tun"],
            &["addr", "add", SINK_ADDR, "dev", "vg0"],
            &[
                "-6",
                "addr",
                "add",
                "fd76:6967:696c::1/64",
                "dev",
                "vg0",
                "nodad",
            ],
            &["link", "set", "vg0", "up"],
            &["route", "add", "default", "dev", "vg0"],
            &["-6", "route", "add", "default", "dev", "vg0"],
        ] {
            run(Command::new("ip").args(["-n", n]).args(args))?;
        }
        Ok(ns)
    }

    /// `program` run inside the namespace.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Packets sent to the sink so far (transmitted or, with nobody reading, dropped).
    fn sink_packets(&self) -> Result<u64, String> {
        let text =
            run(Command::new("ip")
                .args(["-n", &self.name, "-j", "-s", "link", "show", "dev", "vg0"]))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("ip -j: {e}: {text}"))?;
        let tx = &v[0]["stats64"]["tx"];
        match (tx["packets"].as_u64(), tx["dropped"].as_u64()) {
            (Some(p), Some(d)) => Ok(p + d),
            _ => Err(format!("no tx counters in {text}")),
        }
    }

    /// Runs `f` on a thread that has entered the namespace (its sockets are the namespace's).
    fn within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        vigil::bench::lan::within(&self.name, f)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A 2 s 160x120 H.264 clip (ffmpeg's test pattern) at `path`.
fn make_clip(path: &Path) -> Result<(), String> {
    run(Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=160x120:rate=10")
        .args(["-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(path))
    .map(|_| ())
}

/// The run's config: `KEEP` looping `clip`, NanoDet every 5th frame, every output, the API.
fn write_config(dir: &Path, clip: &Path, api: &str) -> PathBuf {
    let cfg = dir.join("schema.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: schema\nmodel_repository: {models}\nsources:\n  - name: {KEEP}\n    uri: {clip}\n    loop: true\n\
             inference:\n  model: nanodet\n  interval: 5\noutputs:\n  rtsp:\n    port: 0\n    bitrate_kbps: 200\n\
             \x20 mosaic:\n    width: 320\n    height: 240\n    tiles: 4\n    fps: 5\n  file:\n    path: {out}\n\
             \x20 events:\n    path: {events}\nrealtime: true\napi:\n{api}",
            models = repo_root().join("models").display(),
            clip = clip.display(),
            out = dir.join("out/rec.mp4").display(),
            events = dir.join("events.jsonl").display(),
        ),
    )
    .expect("write the config");
    cfg
}

/// One request with the token (or `auth` when given); `(status, body)`.
fn call(
    api: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).map_err(|e| format!("connect {api}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let auth = auth.map_or_else(|| format!("Bearer {TOKEN}"), str::to_string);
    let payload = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    Ok((status, body.unwrap_or_default()))
}

/// Every response schemathesis recorded (its NDJSON report): `(method, status)`.
fn recorded_responses(report_dir: &Path) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(report_dir) else {
        return out;
    };
    for f in dir
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|e| e == "ndjson"))
    {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        for line in text.lines() {
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let interactions = &ev["ScenarioFinished"]["recorder"]["interactions"];
            for i in interactions
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                if let Some(status) = i["response"]["status_code"].as_u64() {
                    let method = i["request"]["method"].as_str().unwrap_or("?").to_string();
                    out.push((method, status as u16));
                }
            }
        }
    }
    out
}

/// Runs schemathesis inside `ns` against `api`, at most [`SCHEMATHESIS_LIMIT`]; `(success, output)`.
fn schemathesis(ns: &NetNs, exe: &Path, dir: &Path, api: &str, uris: &[String]) -> (bool, String) {
    let root = repo_root();
    let labels =
        std::fs::read_to_string(root.join("models/nanodet/labels.txt")).unwrap_or_default();
    let log = dir.join("schemathesis.txt");
    let log_file = std::fs::File::create(&log).expect("create the schemathesis log");
    let mut cmd = ns.command(exe);
    cmd.current_dir(dir)
        .env("SCHEMATHESIS_HOOKS", root.join("tests/api_schema/hooks.py"))
        .env("VIGIL_SCHEMA_URIS", uris.join("\n"))
        .env("VIGIL_SCHEMA_LABELS", labels.trim())
        .env("VIGIL_SCHEMA_KEEP", KEEP)
        .env("VIGIL_SCHEMA_COPY", dir.join("openapi-test.json"))
        .arg("run")
        .arg(root.join("docs/openapi.yaml"))
        .args(["--url", &format!("http://{api}")])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
        ])
        .args(["--seed", "1", "--max-examples", &MAX_EXAMPLES.to_string()])
        .args([
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--continue-on-failure",
        ])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report", "ndjson,junit", "--report-dir"])
        .arg(dir.join("report"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start schemathesis");
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if started.elapsed() > SCHEMATHESIS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(s) => (s.success(), text),
        None => (
            false,
            format!("{text}\nkilled after {SCHEMATHESIS_LIMIT:?}"),
        ),
    }
}

/// Whether everything `test` needs is there; otherwise skips (or, under `CI=true`, fails).
fn ready(test: &str, schemathesis: Option<&Path>) -> bool {
    let Some(why) = missing(schemathesis) else {
        return true;
    };
    assert!(!ci(), "CI=true but {test} cannot run: {why}");
    skip(format_args!("{test}: {why}"));
    false
}

#[test]
fn schemathesis_finds_nothing_and_nothing_leaves() {
    let exe = schemathesis_path();
    if !ready("schemathesis_finds_nothing_and_nothing_leaves", Some(&exe)) {
        return;
    }
    let dir = TempDir::new("schema");
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip).unwrap_or_else(|e| panic!("{e}"));
    let ns = NetNs::create().unwrap_or_else(|e| panic!("network namespace: {e}"));

    // The guard sees what is sent off loopback: one datagram to the sink's network is counted.
    let before = ns.sink_packets().unwrap_or_else(|e| panic!("{e}"));
    ns.within(|| {
        std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"guard", SINK_PEER))
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("send to the sink: {e}"));
    let after = ns.sink_packets().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        after,
        before + 1,
        "the sink did not count the self-check datagram"
    );

    let cfg = write_config(
        dir.path(),
        &clip,
        &format!("  address: 0.0.0.0\n  port: 0\n  token: {TOKEN}\n"),
    );
    let mut cmd = ns.command(vigil_tests::vigil_bin());
    cmd.arg("run").arg(&cfg);
    let (mut vigil, info) = vigil_tests::start_vigil_cmd(cmd, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    let port = info
        .api
        .as_deref()
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or_else(|| panic!("no API address; stderr:\n{}", vigil.stderr_text()))
        .to_string();
    let api = format!("127.0.0.1:{port}");
    let uris = vec![
        clip.display().to_string(),
        format!("file://{}", clip.display()),
        format!("rtsp://127.0.0.1:{}/none", vigil_tests::free_port()),
        format!("http://127.0.0.1:{}/none.mp4", vigil_tests::free_port()),
    ];

    let started = Instant::now();
    let (ok, output) = schemathesis(&ns, &exe, dir.path(), &api, &uris);
    let took = started.elapsed();
    let responses = recorded_responses(&dir.path().join("report"));
    let server_errors: Vec<_> = responses.iter().filter(|(_, s)| *s >= 500).collect();
    let health = {
        let a = api.clone();
        ns.within(move || {
            (
                call(&a, "GET", "/health", None, None),
                call(&a, "GET", "/health", None, Some("Bearer wrong")),
            )
        })
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let sent = ns.sink_packets().unwrap_or_else(|e| panic!("{e}")) - after;
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "schemathesis: {} responses in {:.1} s; network guard: {sent} packets off loopback\n",
            responses.len(),
            took.as_secs_f64()
        ),
    );
    let tail: String = output
        .lines()
        .rev()
        .take(80)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        sent, 0,
        "vigil or schemathesis sent {sent} packets off loopback"
    );
    assert!(
        ok && output.contains("No issues found"),
        "schemathesis:\n{tail}"
    );
    assert!(
        server_errors.is_empty(),
        "server errors: {server_errors:?}\n{tail}"
    );
    assert!(
        responses.len() > 500,
        "only {} responses recorded",
        responses.len()
    );
    assert!(
        matches!(health.0, Ok((200, _))),
        "GET /health at the end: {:?}",
        health.0
    );
    assert!(
        matches!(health.1, Ok((401, _))),
        "wrong token: {:?}",
        health.1
    );
    // A clean stop: exit 0, or 1 when a stream the tester added could not play (a closed port
    // with `reconnect.attempts: 0`): that exit status and its `error: source '…' failed` line are
    // the documented end of a run with a failed source. Nothing else: no other error, no panic,
    // no GStreamer-CRITICAL.
    vigil.interrupt();
    let status = vigil.wait(Duration::from_secs(30));
    let stderr = vigil.stderr_text();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    let only_failed_sources = errors
        .iter()
        .all(|l| l.starts_with("error: source '") && l.contains("' failed: "));
    match status.and_then(|s| s.code()) {
        Some(0) => assert!(errors.is_empty(), "{stderr}"),
        Some(1) => assert!(!errors.is_empty() && only_failed_sources, "{stderr}"),
        other => panic!("vigil exit after SIGINT: {other:?}; stderr:\n{stderr}"),
    }
    assert!(
        !stderr.contains("panicked") && !stderr.contains("CRITICAL"),
        "{stderr}"
    );
    assert!(!stderr.contains("internal error"), "{stderr}");
}

#[test]
fn a_stream_that_never_started_is_removed() {
    if !ready("a_stream_that_never_started_is_removed", None) {
        return;
    }
    let dir = TempDir::new("schema-remove");
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip).unwrap_or_else(|e| panic!("{e}"));
    let cfg = write_config(dir.path(), &clip, "  port: 0\n");
    let (vigil, info) =
        vigil_tests::start_vigil(&cfg, Duration::from_secs(90)).unwrap_or_else(|e| panic!("{e}"));
    let api = info.api.clone().expect("the API address");
    let http = |method: &str, path: &str, body: Option<&str>| {
        call(&api, method, path, body, None).unwrap_or_else(|e| panic!("{e}"))
    };

    // A FIFO would block the request (and every later one) when opened.
    let fifo = dir.path().join("fifo.mp4");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let started = Instant::now();
    let (code, body) = http(
        "POST",
        "/streams",
        Some(&format!(
            r#"{{"name": "fifo", "uri": "{}"}}"#,
            fifo.display()
        )),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a regular file"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A camera that never answers: its sinks wait for a first frame that never comes.
    let port = vigil_tests::free_port();
    let (code, body) = http(
        "POST",
        "/streams",
        Some(&format!(
            r#"{{"name": "silent", "uri": "rtsp://127.0.0.1:{port}/none"}}"#
        )),
    );
    assert_eq!(code, 201, "{body}");
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let (code, body) = http("DELETE", "/streams/silent", None);
    assert_eq!(code, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "removal took {:?}",
        started.elapsed()
    );
    assert_eq!(http("GET", "/health", None).0, 200);
    let names: Vec<String> = vigil_tests::get_streams(&api)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, [KEEP]);
    vigil.stop_clean();
}
