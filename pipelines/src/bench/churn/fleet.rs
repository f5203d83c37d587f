//! The churn's outside world: RTSP test cameras (`vigil-test-camera` processes that the churn kills
//! and restarts on the same port) and a small HTTP/1.1 client for `vigil run`'s API. Everything on
//! 127.0.0.1.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What every camera serves: the video scaled to 384x288 at 10 frames/s (H.264, x264 ultrafast).
const CAMERA_FORMAT: [&str; 6] = ["--width", "384", "--height", "288", "--fps", "10"];

/// `vigil-test-camera` beside the running `vigil` (the same target folder: `cargo build --release`
/// builds both), or `given`.
pub fn camera_program(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("the vigil executable")?
            .with_file_name("vigil-test-camera"),
    };
    if !path.is_file() {
        bail!(
            "vigil bench --churn needs the RTSP test camera program {}: build it with \
             `cargo build --release -p vigil-tests --bin vigil-test-camera` (`cargo build --release` \
             builds it beside vigil), or name it with --camera PATH",
            path.display()
        );
    }
    Ok(path)
}

/// A test camera process serving `file` at `rtsp://127.0.0.1:PORT/cam`; killed on drop.
pub struct Camera {
    program: PathBuf,
    file: PathBuf,
    log: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Camera {
    /// Starts a camera on a free port; its stderr goes to `log`.
    pub fn start(program: &Path, file: &Path, log: PathBuf) -> anyhow::Result<Camera> {
        let mut c = Camera {
            program: program.to_path_buf(),
            file: file.to_path_buf(),
            log,
            port: 0,
            child: None,
        };
        c.spawn()?;
        Ok(c)
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    /// Starts the process on `self.port` (0: a free one) and waits for its `ready` line (20 s).
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("{}", self.log.display()))?;
        let mut child = Command::new(&self.program)
            .args(["--address", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--mount", "/cam", "--file"])
            .arg(&self.file)
            .args(CAMERA_FORMAT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let out = child.stdout.take().context("the camera's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .and_then(|l| Some(l.strip_prefix("ready ")?.to_string()))
            .and_then(|url| url.rsplit_once(':')?.1.split('/').next()?.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(4).collect();
            bail!(
                "the test camera ({} on port {}) did not get ready within 20 s: {}",
                self.program.display(),
                self.port,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        };
        self.port = port;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL (a real outage: its connections drop) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, trying for 10 s (the port may take a moment to be free).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request to `addr` (`Connection: close`, a JSON `body` when given; the API answers
/// with a `Content-Length` body). Returns the status and the body. Bounded: 5 s to connect, 60 s
/// to answer (a removal drains its stream first).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let what = || format!("{method} http://{addr}{path}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(what)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .and_then(|_| s.set_write_timeout(Some(Duration::from_secs(10))))
        .with_context(what)?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).with_context(what)?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).with_context(what)?;
    let (head, answer) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("{}: no HTTP header in the answer", what()))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{}: no status in {head:?}", what()))?;
    Ok((status, answer.to_string()))
}

/// `GET /streams` of the API at `api`.
pub fn streams(api: SocketAddr) -> anyhow::Result<Vec<serde_json::Value>> {
    let (code, body) = http(api, "GET", "/streams", None)?;
    if code != 200 {
        bail!("GET /streams: {code} {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET /streams: not a list: {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_camera_program_names_the_path_and_the_build() {
        let e = camera_program(Some(Path::new("/nowhere/vigil-test-camera")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nowhere/vigil-test-camera"), "{e}");
        assert!(e.contains("cargo build --release"), "{e}");
    }

    #[test]
    fn http_against_a_loopback_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"{\"a\":1}") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "{}", String::from_utf8_lossy(&req));
                req.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8_lossy(&req).to_string();
            c.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"id\":1}\n")
                .unwrap();
            req
        });
        let (code, body) = http(addr, "POST", "/streams", Some("{\"a\":1}")).unwrap();
        assert_eq!((code, body.as_str()), (201, "{\"id\":1}\n"));
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /streams HTTP/1.1\r\n"), "{req}");
        assert!(req.ends_with("Content-Length: 7\r\n\r\n{\"a\":1}"), "{req}");
        // Nothing listens there any more.
        assert!(http(addr, "GET", "/", None).is_err());
    }
}
