//! Helpers shared by the end-to-end tests in `tests/tests/`: locating (and building) the `vigil` binary,
//! the repository root, temporary folders and visible skip messages; starting `vigil run` and reading its
//! start-up lines ([`start_vigil`]), test camera processes ([`TestCamera`], the `vigil-test-camera`
//! binary of this crate), plain HTTP ([`http_get`]), the Prometheus text format ([`parse_metrics`],
//! [`histogram`]), growing events files ([`EventsTail`]) and an in-process RTSP client ([`RtspClient`]).

pub mod serve;

use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Reports a skipped test on the real stderr: libtest captures `eprintln!` of passing tests, but not
/// direct writes, so the skip is visible in a normal `cargo test` run.
pub fn skip(message: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {message}");
}

/// Whether every file of `needed` exists and `ffmpeg` runs; otherwise reports the first thing
/// missing as a skip (`make setup` installs them all) and returns false.
pub fn installed_with_ffmpeg(needed: &[&Path]) -> bool {
    if let Some(missing) = needed.iter().find(|f| !f.is_file()) {
        skip(format_args!(
            "{} not installed (run make setup)",
            missing.display()
        ));
        return false;
    }
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        skip(format_args!("ffmpeg not installed (run make setup)"));
        return false;
    }
    true
}

/// The repository (models, samples, configs): `$VIGIL_REPO_ROOT` when set (a test binary run on
/// another machine, e.g. by `scripts/gpu-check.sh check`), else the checkout the tests were built in.
pub fn repo_root() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_REPO_ROOT").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Locates (and builds, unless `VIGIL_BIN` is set) the `vigil` binary.
pub fn vigil_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("VIGIL_BIN") {
            return Ok(PathBuf::from(p));
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/<profile>/deps/<test>-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("unexpected test executable path {}", exe.display()))?;
        let bin = profile_dir.join("vigil");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root())
            .args(["build", "--quiet", "-p", "vigil", "--bin", "vigil"]);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => {}
        }
        if let Some(target) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target);
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) if bin.is_file() => eprintln!(
                "note: building vigil failed ({s}); using the existing {}",
                bin.display()
            ),
            Ok(s) => return Err(format!("building the vigil binary failed ({s})")),
            Err(e) if bin.is_file() => eprintln!(
                "note: cannot run cargo ({e}); using the existing {}",
                bin.display()
            ),
            Err(e) => return Err(format!("cannot run cargo to build the vigil binary: {e}")),
        }
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("no vigil binary at {}", bin.display()))
        }
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh temporary folder, removed on drop (kept when `VIGIL_KEEP_TEST_DIR` is set).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("vigil-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("VIGIL_KEEP_TEST_DIR").is_some() {
            eprintln!("note: kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The `vigil` child process; killed on drop if still running (e.g. when an assertion fails).
pub struct Vigil {
    pub child: Child,
    /// stderr lines read so far (by `reader`).
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub reader: Option<std::thread::JoinHandle<()>>,
}

impl Vigil {
    /// Starts `vigil run CONFIG ARGS…` (stdin and stdout closed, `RUST_BACKTRACE=1`); its stderr is
    /// read line by line into [`Vigil::stderr`], and each line is also sent on the returned channel.
    pub fn run(config: &Path, args: &[&str]) -> (Vigil, std::sync::mpsc::Receiver<String>) {
        let mut cmd = Command::new(vigil_bin());
        cmd.arg("run").arg(config).args(args);
        Vigil::spawn(cmd)
    }

    /// Starts `cmd` (a `vigil run`, possibly behind a wrapper that execs it, such as
    /// `ip netns exec NAME vigil run …`) as [`Vigil::run`] does.
    pub fn spawn(mut cmd: Command) -> (Vigil, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = cmd
            .env("RUST_BACKTRACE", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start vigil");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let l2 = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line.clone());
                l2.lock().unwrap().push(line);
            }
        });
        let vigil = Vigil {
            child,
            stderr: lines,
            reader: Some(reader),
        };
        (vigil, rx)
    }

    /// Stops with SIGINT and asserts a clean end: exit 0 within 30 s, no panic, no GStreamer
    /// `CRITICAL`. Returns stderr.
    pub fn stop_clean(mut self) -> String {
        self.interrupt();
        let status = self.wait(Duration::from_secs(30));
        let stderr = self.stderr_text();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "vigil exit after SIGINT; stderr:\n{stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("CRITICAL"),
            "{stderr}"
        );
        stderr
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn interrupt(&self) {
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "kill -INT failed");
    }

    /// Waits for the exit status, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Fleet helpers: `vigil` with its start-up lines, test cameras, HTTP, Prometheus text, events files
// and an in-process RTSP client.

/// What `vigil run` printed at start-up.
#[derive(Debug, Clone, Default)]
pub struct StartInfo {
    /// Every `vigil: <name>: RTSP rtsp://…` URL, in order.
    pub rtsp: Vec<String>,
    /// The API's `host:port` (from `vigil: <name>: API http://host:port/`).
    pub api: Option<String>,
}

/// Starts `vigil run config` and waits (at most `limit`) for its last start-up line (`…: realtime …`).
/// Returns the process and what it printed; on failure, stderr and the exit status.
pub fn start_vigil(config: &Path, limit: Duration) -> Result<(Vigil, StartInfo), String> {
    let mut cmd = Command::new(vigil_bin());
    cmd.arg("run").arg(config);
    start_vigil_cmd(cmd, limit)
}

/// [`start_vigil`] with the command given (see [`Vigil::spawn`]).
pub fn start_vigil_cmd(cmd: Command, limit: Duration) -> Result<(Vigil, StartInfo), String> {
    let (mut vigil, rx) = Vigil::spawn(cmd);
    let mut info = StartInfo::default();
    let deadline = Instant::now() + limit;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(url) = line.split(": RTSP ").nth(1)
                    && url.starts_with("rtsp://")
                {
                    info.rtsp.push(url.trim().to_string());
                }
                if let Some(rest) = line.split(": API http://").nth(1) {
                    info.api = Some(rest.trim().trim_end_matches('/').to_string());
                }
                if line.contains(": realtime ") {
                    return Ok((vigil, info));
                }
            }
            Err(_) => {
                let status = vigil.wait(Duration::from_millis(500));
                return Err(format!(
                    "vigil did not start within {limit:?} (exit: {status:?}); stderr:\n{}",
                    vigil.stderr_text()
                ));
            }
        }
    }
}

/// A loopback TCP port that nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A `vigil-test-camera` process (the binary of this crate: pass `env!("CARGO_BIN_EXE_vigil-test-camera")`),
/// killed on drop.
pub struct TestCamera {
    child: Child,
    /// `rtsp://127.0.0.1:PORT/MOUNT`, as the camera printed it.
    pub url: String,
    pub port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl TestCamera {
    /// Starts a camera serving `file` at `127.0.0.1:port/cam` (`port` 0: a free one) with the extra
    /// arguments `args` (e.g. `["--width", "320", "--height", "136", "--fps", "15"]`); waits for its
    /// `ready` line at most 20 s.
    pub fn start(bin: &Path, file: &Path, port: u16, args: &[&str]) -> Result<TestCamera, String> {
        use std::io::BufRead;
        let mut child = Command::new(bin)
            .arg("--port")
            .arg(port.to_string())
            .arg("--mount")
            .arg("/cam")
            .arg("--file")
            .arg(file)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let s2 = stderr.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                    s2.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        let mut camera = TestCamera {
            child,
            url: String::new(),
            port,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("ready ") {
                        camera.url = url.trim().to_string();
                        camera.port = url
                            .rsplit_once(':')
                            .and_then(|(_, rest)| rest.split('/').next())
                            .and_then(|p| p.parse().ok())
                            .unwrap_or(port);
                        return Ok(camera);
                    }
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(200));
                    let status = camera.child.try_wait().ok().flatten();
                    return Err(format!(
                        "the test camera did not get ready (exit: {status:?}); stderr:\n{}",
                        camera.stderr_text()
                    ));
                }
            }
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// `Some(description)` when the camera process has ended by itself (its exit status and
    /// stderr), `None` while it runs.
    pub fn died(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        Some(format!(
            "the test camera at {} ended ({status}); stderr:\n{}",
            self.url,
            self.stderr_text()
        ))
    }

    /// Kills the camera (SIGKILL: a real outage, its TCP connections drop) and reaps it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for TestCamera {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET path` from `addr` (`host:port`) over HTTP/1.1 with `Connection: close`; returns the status
/// and the body (chunked bodies are decoded). Bounded by 10 s.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path, None)
}

/// One HTTP/1.1 request (`Connection: close`, a JSON `body` when given) to `addr`; returns the status
/// and the body.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .and_then(|_| s.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| format!("socket options: {e}"))?;
    let payload = body.unwrap_or("");
    let content = if body.is_some() {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        )
    } else {
        String::new()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content}\r\n{payload}"
    )
    .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP header in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// `GET /streams` parsed: one JSON object per stream.
pub fn get_streams(api: &str) -> Result<Vec<serde_json::Value>, String> {
    let (code, body) = http_get(api, "/streams")?;
    if code != 200 {
        return Err(format!("GET /streams: {code} {body}"));
    }
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(list)) => Ok(list),
        Ok(other) => Err(format!("GET /streams: not a list: {other}")),
        Err(e) => Err(format!("GET /streams: {e}: {body}")),
    }
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when every `(key, value)` of `want` is among the labels.
    pub fn has_labels(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Parses the Prometheus text format (version 0.0.4): comments are skipped, label values unescaped;
/// lines that do not parse are errors naming them.
pub fn parse_metrics(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_sample(line).ok_or_else(|| format!("bad metrics line: {line}"))?);
    }
    Ok(out)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &r[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The value of the first sample `name` whose labels include `labels`.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.has_labels(labels))
        .map(|s| s.value)
}

/// One histogram series out of an exposition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSeries {
    /// `(le, cumulative count)`, ascending, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl HistogramSeries {
    /// The `q` quantile (0..1) estimated like Prometheus's `histogram_quantile`: linear interpolation
    /// inside the bucket holding the rank (from 0 in the first bucket); the highest finite bound when the
    /// rank falls in `+Inf`. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 || self.buckets.is_empty() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = cumulative - below;
                if inside <= 0.0 {
                    return Some(le);
                }
                return Some(lower + (le - lower) * (rank - below) / inside);
            }
            lower = le;
            below = cumulative;
        }
        Some(lower)
    }
}

/// The histogram `name` (samples `name_bucket`, `name_sum`, `name_count`) whose labels include
/// `labels`; `None` when it has no buckets.
pub fn histogram(
    samples: &[Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<HistogramSeries> {
    let bucket = format!("{name}_bucket");
    let mut h = HistogramSeries::default();
    for s in samples.iter().filter(|s| s.has_labels(labels)) {
        if s.name == bucket {
            let le = match s.label("le")? {
                "+Inf" => f64::INFINITY,
                v => v.parse().ok()?,
            };
            h.buckets.push((le, s.value));
        } else if s.name == format!("{name}_count") {
            h.count = s.value;
        } else if s.name == format!("{name}_sum") {
            h.sum = s.value;
        }
    }
    if h.buckets.is_empty() {
        return None;
    }
    h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(h)
}

/// Reads a JSON-lines events file as it grows: each [`EventsTail::read_new`] returns the events of the
/// whole lines written since the previous call (a partial last line waits for its end).
pub struct EventsTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl EventsTail {
    pub fn new(path: &Path) -> EventsTail {
        EventsTail {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The new events; a missing file is no events yet, a line that is not JSON an error.
    pub fn read_new(&mut self) -> Result<Vec<serde_json::Value>, String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(self.offset))
            .and_then(|_| f.read_to_end(&mut buf))
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.partial.split_off(last_newline + 1);
        let whole = std::mem::replace(&mut self.partial, rest);
        let mut events = Vec::new();
        for line in String::from_utf8_lossy(&whole).lines() {
            if line.trim().is_empty() {
                continue;
            }
            events.push(
                serde_json::from_str(line)
                    .map_err(|e| format!("{}: bad event {line:?}: {e}", self.path.display()))?,
            );
        }
        Ok(events)
    }
}

/// Every event of a JSON-lines file.
pub fn read_events(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    EventsTail::new(path).read_new()
}

/// What one [`RtspClient`] saw.
#[derive(Debug, Default, Clone)]
pub struct ClientResult {
    pub url: String,
    pub frames: u64,
    pub width: i32,
    pub height: i32,
    /// From the start of the client to the end of the wait.
    pub seconds: f64,
    /// From the start of the client to its first decoded frame.
    pub first_frame: Option<f64>,
    pub error: Option<String>,
}

/// A real RTSP client in this process: `rtspsrc (TCP) ! rtph264depay ! h264parse ! avdec_h264 !
/// appsink`, counting decoded frames and noting when it sent `PLAY` and decoded its first frame.
/// Set to NULL on drop (which sends `TEARDOWN`: the client leaves).
pub struct RtspClient {
    url: String,
    pipeline: gst::Pipeline,
    frames: Arc<std::sync::atomic::AtomicU64>,
    caps: Arc<Mutex<Option<gst::Caps>>>,
    first: Arc<Mutex<Option<Instant>>>,
    /// rtspsrc's "open" progress completing: `SETUP` answered, right before it sends `PLAY`
    /// ("Sending PLAY request" is posted when the command is queued, at the start).
    play: Arc<Mutex<Option<Instant>>>,
    started: Instant,
}

impl RtspClient {
    /// Builds and starts the client (`gst::init` first).
    pub fn start(url: &str) -> Result<RtspClient, String> {
        use std::sync::atomic::Ordering;
        gst::init().map_err(|e| format!("gst init: {e}"))?;
        let launch = format!(
            "rtspsrc location={url} protocols=tcp latency=200 ! rtph264depay ! h264parse \
             ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false"
        );
        let pipeline = gst::parse::launch(&launch)
            .map_err(|e| format!("client pipeline: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "client: not a pipeline".to_string())?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| "client: no appsink".to_string())?;
        let frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let caps: Arc<Mutex<Option<gst::Caps>>> = Arc::default();
        let first: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (f2, c2, first2) = (frames.clone(), caps.clone(), first.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if f2.fetch_add(1, Ordering::SeqCst) == 0 {
                        if let Some(c) = sample.caps() {
                            *c2.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.to_owned());
                        }
                        *first2.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let play: Arc<Mutex<Option<Instant>>> = Arc::default();
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
            .map_err(|e| format!("client {url} does not play: {e}"))?;
        Ok(RtspClient {
            url: url.to_string(),
            pipeline,
            frames,
            caps,
            first,
            play,
            started,
        })
    }

    /// When the first frame came: `(after the client's start, after its PLAY)`, once both happened.
    pub fn first_frame_times(&self) -> Option<(Duration, Duration)> {
        let first = (*self.first.lock().unwrap_or_else(|p| p.into_inner()))?;
        let play = (*self.play.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some((
            first.duration_since(self.started),
            first.saturating_duration_since(play),
        ))
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Polls the bus until `want` frames (`None`), an error or end of stream, or `deadline`
    /// (`Some(why)`).
    pub fn wait_for(&self, want: u64, deadline: Instant) -> Option<String> {
        wait_for_frames(&self.pipeline, want, || self.frames(), deadline)
    }

    /// What the client saw so far (`error` as given).
    pub fn result(&self, error: Option<String>) -> ClientResult {
        let mut r = ClientResult {
            url: self.url.clone(),
            frames: self.frames(),
            seconds: self.started.elapsed().as_secs_f64(),
            first_frame: self
                .first
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map(|t| t.duration_since(self.started).as_secs_f64()),
            error,
            ..Default::default()
        };
        if let Some(s) = self
            .caps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|c| c.structure(0).map(|s| s.to_owned()))
        {
            r.width = s.get::<i32>("width").unwrap_or(0);
            r.height = s.get::<i32>("height").unwrap_or(0);
        }
        r
    }
}

impl Drop for RtspClient {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Pops the bus of a client `pipeline` until `frames()` reaches `want` (`None`), an error or end of
/// stream, or `deadline` (`Some(why)`).
pub fn wait_for_frames(
    pipeline: &gst::Pipeline,
    want: u64,
    frames: impl Fn() -> u64,
    deadline: Instant,
) -> Option<String> {
    let bus = pipeline.bus()?;
    while frames() < want {
        if Instant::now() > deadline {
            return Some(format!("timed out with {} frames", frames()));
        }
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        ) {
            return Some(match msg.view() {
                gst::MessageView::Error(e) => {
                    format!("client error: {} ({:?})", e.error(), e.debug())
                }
                _ => format!("end of stream after {} frames", frames()),
            });
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------------
// The traffic demo config and its analytics events.

/// `configs/traffic.yaml` up to (without) its `outputs:` section, reading `uri` instead of
/// `vtest.avi` and the repository's models; everything else (tracker, analytics rules) as committed.
pub fn traffic_config_head(uri: &Path) -> String {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("configs/traffic.yaml")).unwrap();
    let uri_line = "    uri: ../samples/media/vtest.avi";
    assert!(
        text.contains(uri_line),
        "traffic.yaml changed: no '{uri_line}'"
    );
    let (head, _) = text
        .split_once("\noutputs:")
        .expect("traffic.yaml has outputs");
    head.replace(uri_line, &format!("    uri: {}", uri.display()))
        .replace(
            "model_repository: ../models",
            &format!("model_repository: {}", root.join("models").display()),
        )
}

/// Every analytics event of the frame events (`analytics.events`), with its frame number, in order.
pub fn analytics_events(events: &[serde_json::Value]) -> Vec<(u64, serde_json::Value)> {
    events
        .iter()
        .flat_map(|e| {
            let frame = e["frame"].as_u64().unwrap_or_default();
            e["analytics"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |ev| (frame, ev))
        })
        .collect()
}
