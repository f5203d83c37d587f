//! Test support: a real `mosquitto` broker on a free 127.0.0.1 port with a temporary config and
//! persistence folder (so sessions survive a restart), and a `mosquitto_sub` subscriber with a
//! persistent session. Used by the tests of this crate, the element and `vigil run`; needs the Debian
//! packages `mosquitto` and `mosquitto-clients` (`scripts/setup.sh` installs them).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Whether the mosquitto programs are installed (`mosquitto`, `mosquitto_sub`).
pub fn available() -> bool {
    let ok = |p: &str| {
        Command::new(p)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    ok(mosquitto_path()) && ok("mosquitto_sub")
}

fn mosquitto_path() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// TLS files of a broker listener.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Ask clients for a certificate signed by `ca`.
    pub require_client_cert: bool,
}

/// A mosquitto process; killed when dropped.
pub struct Broker {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free loopback port with persistence in a fresh temporary folder.
    pub fn start(tls: Option<BrokerTls>) -> Broker {
        Broker::start_with(tls, None)
    }

    /// Like [`Broker::start`], requiring `user`/`password` when `credentials` is given (a password
    /// file made with `mosquitto_passwd`; anonymous clients are refused).
    pub fn start_with(tls: Option<BrokerTls>, credentials: Option<(&str, &str)>) -> Broker {
        Broker::try_start_with(tls, credentials).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Broker::start_with`], with an error naming what failed instead of a panic (for
    /// `vigil bench --churn`).
    pub fn try_start_with(
        tls: Option<BrokerTls>,
        credentials: Option<(&str, &str)>,
    ) -> Result<Broker, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free loopback port for mosquitto: {e}"))?;
        let dir =
            std::env::temp_dir().join(format!("vigil-mosquitto-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    "root".into()
                } else {
                    String::new()
                }
            });
        let mut conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous {}\npersistence true\npersistence_location {}/\nmax_queued_messages 100000\nlog_dest file {}/mosquitto.log\nlog_type all\n",
            credentials.is_none(),
            dir.display(),
            dir.display()
        );
        if let Some((user, password)) = credentials {
            let file = dir.join("passwords");
            let ok = Command::new("mosquitto_passwd")
                .arg("-c")
                .arg("-b")
                .arg(&file)
                .args([user, password])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err("mosquitto_passwd failed".into());
            }
            let _ = Command::new("chmod").arg("644").arg(&file).status();
            conf.push_str(&format!("password_file {}\n", file.display()));
        }
        if !user.is_empty() {
            conf.push_str(&format!("user {user}\n"));
        }
        if let Some(t) = &tls {
            conf.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                t.ca.display(),
                t.cert.display(),
                t.key.display(),
                t.require_client_cert
            ));
        }
        std::fs::write(dir.join("mosquitto.conf"), conf)
            .map_err(|e| format!("{}/mosquitto.conf: {e}", dir.display()))?;
        let mut b = Broker {
            port,
            dir,
            child: None,
        };
        b.try_restart()?;
        Ok(b)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Starts the broker (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_restart(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err("the broker is already running".into());
        }
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start mosquitto (install the Debian package mosquitto): {e}")
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "mosquitto did not listen on 127.0.0.1:{} within 10 s; log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the broker gracefully (SIGTERM: it saves its persistence file) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill with a pid of our own child process.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `mosquitto_sub` process subscribed with QoS 1 and a persistent session (`-c -i ID`); its
/// messages arrive on a channel, one payload per line.
pub struct Subscriber {
    child: Child,
    rx: Receiver<String>,
}

impl Subscriber {
    /// Subscribes to `topic` and waits for the SUBACK. `extra` adds options (e.g. TLS ones).
    pub fn start(port: u16, client_id: &str, topic: &str, extra: &[&str]) -> Subscriber {
        Subscriber::try_start(port, client_id, topic, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Subscriber::start`], with an error instead of a panic.
    pub fn try_start(
        port: u16,
        client_id: &str,
        topic: &str,
        extra: &[&str],
    ) -> Result<Subscriber, String> {
        // stdbuf: line-buffered output through the pipe (debug lines and messages alike).
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-q", "1", "-c", "-i", client_id, "-t", topic, "-d"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start mosquitto_sub (install the Debian package mosquitto-clients): {e}"
                )
            })?;
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        let (ready_tx, ready_rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with('{') {
                    if tx.send(line).is_err() {
                        break;
                    }
                } else if line.contains("SUBACK") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let sub = Subscriber { child, rx };
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            // Dropping `sub` ends the process.
            return Err(format!(
                "mosquitto_sub did not subscribe to {topic} on 127.0.0.1:{port} within 10 s"
            ));
        }
        Ok(sub)
    }

    /// The next payload, waiting at most `timeout`; `None` when none came (or the subscriber ended).
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Collects payloads until `n` arrived or nothing new came for `quiet`, or `timeout` passed.
    pub fn collect(&self, n: usize, timeout: Duration, quiet: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left.min(quiet)) {
                Ok(l) => out.push(l),
                Err(RecvTimeoutError::Timeout) if left > quiet => break,
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a CA, a server certificate for 127.0.0.1 / localhost and a client certificate with
/// `openssl` in `dir`. Returns (ca, server cert, server key, client cert, client key).
pub fn make_certs(dir: &Path) -> [PathBuf; 5] {
    std::fs::create_dir_all(dir).expect("cert folder");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "basicConstraints=CA:FALSE\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=vigil-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    for name in ["server", "client"] {
        let cn = format!("/CN=vigil-test-{name}");
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &cn,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }
    // mosquitto drops root privileges to its user for reading keys only when not told `user root`;
    // keep the files readable either way.
    for f in [
        "ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        let _ = Command::new("chmod").arg("644").arg(dir.join(f)).status();
    }
    [
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("client.crt"),
        dir.join("client.key"),
    ]
}
