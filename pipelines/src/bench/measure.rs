//! Child processes measured from outside: wall time, CPU time (user + system of the process and of
//! the children it waited for) and peak resident size, from `wait4`'s resource usage, so each figure
//! belongs to the process alone; and `/proc/<pid>` samples (resident size, threads, open file
//! descriptors) while it runs;
//! where NVML works, GPU samples every 250 ms while it runs ([`GpuUsage`]: the whole GPU's, not only
//! the child's).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a finished child cost.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub wall_s: f64,
    /// User + system CPU seconds of the process and its waited-for children.
    pub cpu_s: f64,
    /// Peak resident set of the process and its descendants together, KiB: the largest sum of
    /// their `VmRSS` over samples every 50 ms, or the process's own `VmHWM` if larger. (`wait4`'s
    /// `ru_maxrss` is not used: a child started by fork/vfork + exec keeps the high-water mark of
    /// the parent's memory it was forked from.)
    pub max_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
    /// Killed after the time limit.
    pub timed_out: bool,
    /// GPU 0 while the child ran; `None` without NVML (no NVIDIA driver) or without samples.
    pub gpu: Option<GpuUsage>,
}

/// GPU 0's utilisation while a child ran (NVML samples every 250 ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct GpuUsage {
    /// Mean SM utilisation, percent.
    pub util_pct: f64,
    /// Largest memory in use, MiB.
    pub memory_mib: f64,
    /// Mean NVENC utilisation, percent.
    pub encoder_pct: f64,
    /// Mean NVDEC utilisation, percent.
    pub decoder_pct: f64,
    pub samples: u32,
}

impl GpuUsage {
    fn add(&mut self, g: &crate::metrics::GpuStats) {
        let n = f64::from(self.samples);
        let mean = |old: f64, new: f64| (old * n + new) / (n + 1.0);
        self.util_pct = mean(self.util_pct, g.utilization * 100.0);
        self.encoder_pct = mean(
            self.encoder_pct,
            g.encoder_utilization.unwrap_or(0.0) * 100.0,
        );
        self.decoder_pct = mean(
            self.decoder_pct,
            g.decoder_utilization.unwrap_or(0.0) * 100.0,
        );
        self.memory_mib = self.memory_mib.max(g.memory_used as f64 / 1048576.0);
        self.samples += 1;
    }
}

impl Measured {
    /// The exit status as words, with the end of stderr, for error messages.
    pub fn failure(&self, what: &str) -> String {
        let tail: Vec<&str> = self.stderr.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let status = if self.timed_out {
            "was stopped after its time limit".to_string()
        } else {
            match self.code {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".to_string(),
            }
        };
        format!("{what} {status}: {}", tail.join(" | "))
    }

    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// A resource-usage sample of a running process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rss_kib: u64,
    pub threads: u64,
    /// Open file descriptors (entries of `/proc/<pid>/fd`).
    pub fds: u64,
}

/// Reads `VmRSS` and `Threads` of `pid` from `/proc/<pid>/status` and counts `/proc/<pid>/fd`;
/// `None` when the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    Some(Sample {
        rss_kib: status_field(pid, "VmRSS:")?,
        threads: status_field(pid, "Threads:")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64,
    })
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
}

/// `pid` and its descendants (through `/proc/<pid>/task/<tid>/children`).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() && out.len() < 4096 {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                    out.extend(
                        text.split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
        i += 1;
    }
    out
}

/// Resident KiB of `pid` and its descendants now.
pub fn tree_rss_kib(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| status_field(p, "VmRSS:"))
        .sum()
}

/// Receives a child's standard output chunk by chunk as it is read.
pub type ChunkSink = Box<dyn FnMut(&[u8]) + Send>;

/// A started child: its pid, its pipes' reader threads, and a watchdog that kills it after `limit`.
pub struct Running {
    child: std::process::Child,
    start: Instant,
    done: Arc<AtomicBool>,
    timed_out: Arc<AtomicBool>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: std::thread::JoinHandle<String>,
    peak_kib: Arc<AtomicU64>,
    gpu: Arc<Mutex<Option<GpuUsage>>>,
}

/// Starts `cmd` with stdin closed and stderr captured; stdout is captured unless `stdout_to` takes
/// it (a function given each chunk read, e.g. to count event lines as they come).
pub fn start(
    cmd: &mut Command,
    limit: Duration,
    stdout_to: Option<ChunkSink>,
) -> Result<Running, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let stdout = Some(std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0u8; 65536];
        let mut sink = stdout_to;
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => match sink.as_mut() {
                    Some(f) => f(&buf[..n]),
                    None => text.extend_from_slice(&buf[..n]),
                },
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }));
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let pid = child.id() as libc::pid_t;
    let (d, t) = (done.clone(), timed_out.clone());
    let peak_kib = Arc::new(AtomicU64::new(0));
    let peak = peak_kib.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if d.load(Ordering::SeqCst) {
                return;
            }
            // Memory samples (the process is not reaped while `done` is unset, so `pid` is ours).
            let own_hwm = status_field(pid as u32, "VmHWM:").unwrap_or(0);
            let tree = tree_rss_kib(pid as u32);
            peak.fetch_max(own_hwm.max(tree), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
        if !d.load(Ordering::SeqCst) {
            t.store(true, Ordering::SeqCst);
            // SAFETY: plain kill(2) of our own child, which has not been reaped yet (`done` unset).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    });
    let gpu: Arc<Mutex<Option<GpuUsage>>> = Arc::default();
    if !crate::metrics::gpu_stats().is_empty() {
        let (d, g) = (done.clone(), gpu.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                if let Some(s) = crate::metrics::gpu_stats().first() {
                    g.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert_with(GpuUsage::default)
                        .add(s);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
    }
    Ok(Running {
        child,
        start: Instant::now(),
        done,
        timed_out,
        stdout,
        stderr,
        peak_kib,
        gpu,
    })
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT (a clean stop for `vigil run`).
    pub fn interrupt(&self) {
        // SAFETY: kill(2) of our own child, not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
    }

    /// Waits for the end and returns what the process cost.
    pub fn wait(mut self) -> Measured {
        let pid = self.child.id() as libc::pid_t;
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = loop {
            // SAFETY: wait4 on our own child with valid pointers.
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            break r;
        };
        self.done.store(true, Ordering::SeqCst);
        let wall_s = self.start.elapsed().as_secs_f64();
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let code = if r == pid && libc::WIFEXITED(status) {
            Some(libc::WEXITSTATUS(status))
        } else {
            None
        };
        // The Child handle must not wait again (the process is reaped); dropping it does not wait.
        let _ = self.child.stdin.take();
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        Measured {
            code,
            wall_s,
            cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
            max_rss_kib: self.peak_kib.load(Ordering::Relaxed),
            stdout,
            stderr,
            timed_out: self.timed_out.load(Ordering::SeqCst),
            gpu: *self.gpu.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// Runs `cmd` to its end (killed after `limit`) and measures it.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Measured, String> {
    Ok(start(cmd, limit, None)?.wait())
}

/// CPU seconds (user + system) this process has used so far, all threads.
pub fn own_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_child_and_its_failure() {
        let m = run(
            Command::new("sh").args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo out; echo err >&2; exit 3",
            ]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(m.code, Some(3));
        assert_eq!(m.stdout, "out\n");
        assert!(m.cpu_s > 0.0, "{m:?}");
        assert!(
            m.failure("sh").contains("status 3: err"),
            "{}",
            m.failure("sh")
        );
        // The peak is the child's own: a shell holding ~64 MiB in a variable for a moment reads
        // far above a plain shell, and a plain shell far below this (test) process's memory.
        let big = run(
            Command::new("sh").args([
                "-c",
                "x=$(head -c 67108864 /dev/zero | tr '\\0' a); sleep 0.3; echo ${#x}",
            ]),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(big.stdout.trim(), "67108864");
        assert!(big.max_rss_kib > 60 * 1024, "{}", big.max_rss_kib);
        let small = run(Command::new("sleep").arg("0.3"), Duration::from_secs(30)).unwrap();
        assert!(
            small.max_rss_kib > 0 && small.max_rss_kib < 16 * 1024,
            "{}",
            small.max_rss_kib
        );
        let m = run(Command::new("sleep").arg("5"), Duration::from_millis(300)).unwrap();
        assert!(m.timed_out && !m.ok() && m.wall_s < 4.0, "{m:?}");
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.threads >= 1);
        // stdin, stdout, stderr at least; a file opened now is one more.
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let with_file = sample(std::process::id()).unwrap();
        assert!(s.fds >= 3 && with_file.fds >= 4, "{s:?} {with_file:?}");
        drop(f);
        assert!(sample(u32::MAX).is_none());
        assert!(tree_rss_kib(std::process::id()) >= s.rss_kib / 2);
    }
}
