//! Helpers shared by the end-to-end tests in `tests/tests/`: locating (and building) the `vigil` binary,
//! the repository root, temporary folders and visible skip messages.

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

pub fn repo_root() -> PathBuf {
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
        use std::io::BufRead;
        let mut child = Command::new(vigil_bin())
            .arg("run")
            .arg(config)
            .args(args)
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
