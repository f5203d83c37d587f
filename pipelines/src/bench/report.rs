//! The benchmark's outputs: the machine it ran on, the ratios and targets, the table (stdout and
//! Markdown), and the soak mode.

use super::{BenchArgs, Report, Row, Setup, limits::ComputeRun, measure, stats};
use anyhow::bail;
use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub gstreamer: String,
    pub onnxruntime: String,
    pub vigil: String,
    pub date_utc: String,
}

fn first_value(path: &str, key: &str, sep: char) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(sep)?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (proleptic Gregorian calendar).
pub fn utc_string(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl Machine {
    pub fn detect() -> Machine {
        let mem_kib: f64 = first_value("/proc/meminfo", "MemTotal", ':')
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let ort = vigil_engine::runtime::ort_library_path()
            .ok()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| {
                let name = p.file_name()?.to_string_lossy().into_owned();
                name.strip_prefix("libonnxruntime.so.").map(str::to_string)
            })
            .unwrap_or_else(|| "unknown".into());
        let commit = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| format!(" ({})", String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Machine {
            cpu: first_value("/proc/cpuinfo", "model name", ':')
                .unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            os: first_value("/etc/os-release", "PRETTY_NAME", '=')
                .unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            gstreamer: gst::version_string().to_string(),
            onnxruntime: ort,
            vigil: format!("{}{commit}", env!("CARGO_PKG_VERSION")),
            date_utc: utc_string(now),
        }
    }
}

/// A ratio of two rows' figures, with the target it is held against (if any).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: String,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

/// Vigil/limit and Vigil/peer for every stream count, and the targets.
pub fn ratios(rows: &[Row], compute: &ComputeRun, decode: &Row) -> Vec<Ratio> {
    let mut out = Vec::new();
    let find = |group: &str, prefix: &str, n: usize| {
        rows.iter()
            .find(|r| r.group == group && r.streams == n && r.name.starts_with(prefix))
    };
    for v in rows.iter().filter(|r| r.group == "vigil") {
        let n = v.streams;
        let c = v.fps / compute.fps();
        let target4 = n == 4;
        out.push(Ratio {
            name: format!("Vigil {n} stream(s) / compute bound (frames/s)"),
            value: c,
            target: target4.then(|| ">= 0.85".into()),
            met: target4.then_some(c >= 0.85),
        });
        out.push(Ratio {
            name: format!("Vigil {n} stream(s) / decode bound (frames/s)"),
            value: v.fps / decode.fps,
            target: None,
            met: None,
        });
        if let Some(p) = find("peer", "Python peer", n) {
            let f = v.fps / p.fps;
            out.push(Ratio {
                name: format!("Vigil / Python peer, {n} stream(s) (frames/s)"),
                value: f,
                target: Some(">= 2".into()),
                met: Some(f >= 2.0),
            });
            if let (Some(vc), Some(pc)) = (v.cpu_ms_per_frame, p.cpu_ms_per_frame) {
                out.push(Ratio {
                    name: format!("Vigil / Python peer, {n} stream(s) (CPU time per frame)"),
                    value: vc / pc,
                    target: Some("<= 1".into()),
                    met: Some(vc <= pc),
                });
            }
        }
    }
    for p in rows.iter().filter(|r| r.group == "peer-nospin") {
        if let Some(v) = rows
            .iter()
            .find(|r| r.group == "vigil" && r.streams == p.streams)
        {
            out.push(Ratio {
                name: format!(
                    "Vigil / Python peer with spinning off, {} stream(s) (frames/s)",
                    p.streams
                ),
                value: v.fps / p.fps,
                target: None,
                met: None,
            });
        }
    }
    for v in rows.iter().filter(|r| r.group == "vigil-noenc") {
        out.push(Ratio {
            name: format!(
                "Vigil {} stream(s) without video output / compute bound (frames/s)",
                v.streams
            ),
            value: v.fps / compute.fps(),
            target: None,
            met: None,
        });
    }
    if let Some(g) = rows
        .iter()
        .find(|r| r.name.starts_with("gst-launch") && r.streams == decode.streams)
    {
        out.push(Ratio {
            name: format!(
                "Vigil decode path / gst-launch-1.0 decode, {} stream(s) (frames/s)",
                g.streams
            ),
            value: decode.fps / g.fps,
            target: None,
            met: None,
        });
    }
    out
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn row_cells(r: &Row, gpu: bool) -> Vec<String> {
    let mut cells = vec![
        r.name.clone(),
        if r.streams == 0 {
            "—".into()
        } else {
            r.streams.to_string()
        },
        format!("{:.1}", r.fps),
        opt(r.p50_ms, 1),
        opt(r.p99_ms, 1),
        opt(r.peak_rss_mib, 0),
        opt(r.cpu_ms_per_frame, 1),
        r.parity
            .map_or(String::new(), |p| format!("{:.0} %", p * 100.0)),
    ];
    if gpu {
        let g = r.gpu;
        cells.extend([
            opt(g.map(|g| g.util_pct), 0),
            opt(g.map(|g| g.memory_mib), 0),
            opt(g.map(|g| g.encoder_pct), 0),
            opt(g.map(|g| g.decoder_pct), 0),
        ]);
    }
    cells
}

/// The columns; the GPU ones only when a row has GPU samples (NVML worked).
fn header(gpu: bool) -> Vec<String> {
    let mut h = vec![
        "row",
        "streams",
        "frames/s",
        "p50 ms",
        "p99 ms",
        "peak RSS MiB",
        "CPU ms/frame",
        "same dets",
    ];
    if gpu {
        h.extend(["GPU %", "GPU MiB", "NVENC %", "NVDEC %"]);
    }
    h.into_iter().map(String::from).collect()
}

fn has_gpu(report: &Report) -> bool {
    report.rows.iter().any(|r| r.gpu.is_some())
}

fn ratio_line(r: &Ratio) -> String {
    let target = match (&r.target, r.met) {
        (Some(t), Some(true)) => format!("  (target {t}: met)"),
        (Some(t), Some(false)) => format!("  (target {t}: NOT met)"),
        _ => String::new(),
    };
    // Two significant digits at least (Vigil against the decode bound is far below 0.01).
    let digits = if r.value.abs() >= 0.1 || r.value == 0.0 {
        2
    } else {
        (1.0 - r.value.abs().log10().floor()) as usize
    };
    format!("{}: {:.digits$}{target}", r.name, r.value)
}

/// The table and ratios as plain text.
pub fn table(report: &Report) -> String {
    let gpu = has_gpu(report);
    let head = header(gpu);
    let cells: Vec<Vec<String>> = report.rows.iter().map(|r| row_cells(r, gpu)).collect();
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut s = String::new();
        for (i, (cell, &w)) in c.iter().zip(&width).enumerate() {
            let pad = w - cell.chars().count();
            if i == 0 {
                s += &format!("{cell}{}  ", " ".repeat(pad));
            } else {
                s += &format!("{}{cell}  ", " ".repeat(pad));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = format!(
        "vigil bench ({}, {} frames per stream, {} repetition(s)) on {} ({} cores), {}\n\n",
        report.mode,
        report.frames_per_stream,
        report.repeat,
        report.machine.cpu,
        report.machine.cores,
        report.machine.date_utc
    );
    out += &line(&head);
    for c in &cells {
        out += &line(c);
    }
    out += "\n";
    for r in &report.ratios {
        out += &ratio_line(r);
        out += "\n";
    }
    for n in &report.notes {
        out += &format!("note: {n}\n");
    }
    out
}

/// The report as Markdown (`report.md`).
pub fn markdown(report: &Report) -> String {
    let m = &report.machine;
    let mut s = format!(
        "# vigil bench ({} run)\n\n\
         Machine: {} ({} cores, {:.1} GiB), {}, kernel {}. GStreamer {}, ONNX Runtime {}, Vigil {}. \
         Run {}.\n\nVideo `{}`, {} frames per stream, {} repetition(s) per Vigil/peer row (the run \
         with the median frames/s is shown).\n\n",
        report.mode,
        m.cpu,
        m.cores,
        m.memory_gib,
        m.os,
        m.kernel,
        m.gstreamer,
        m.onnxruntime,
        m.vigil,
        m.date_utc,
        report.video,
        report.frames_per_stream,
        report.repeat
    );
    let gpu = has_gpu(report);
    let head = header(gpu);
    s += &format!("| {} |\n", head.join(" | "));
    s += &format!("|{}\n", " --- |".repeat(head.len()));
    for r in &report.rows {
        s += &format!("| {} |\n", row_cells(r, gpu).join(" | "));
    }
    s += "\n## Ratios\n\n";
    for r in &report.ratios {
        s += &format!("- {}\n", ratio_line(r));
    }
    for n in &report.notes {
        s += &format!("\nNote: {n}\n");
    }
    s += "\nframes/s: completed frames over the time from the first to the last completion (start-up \
          excluded); latency: interval between consecutive frames of one stream; CPU: the process's user \
          + system time (start-up included) per frame; peak RSS: the largest resident size of the \
          process and its children together (sampled every 50 ms; the Python peer with its ffmpeg \
          encoders). \"same dets\": \
          frames of stream 0 where Vigil and the peer found the same number and classes of objects.\n\n\
          ![chart](chart.png)\n";
    s
}

/// A series sampled over a run (`(minutes, value)` points): its least-squares slope per minute with
/// the standard error, the slopes of its two halves and whether both grow ([`stats::growth`]: a leak
/// grows all along, a one-time step shows in one half only).
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub name: String,
    pub unit: String,
    pub slope_per_min: f64,
    pub stderr: f64,
    pub first_half_per_min: Option<f64>,
    pub second_half_per_min: Option<f64>,
    /// Both halves above zero by more than two standard errors; `None`: too few samples to tell.
    pub growing: Option<bool>,
    pub min: f64,
    pub max: f64,
    /// Decimals of the range in the text.
    #[serde(skip)]
    digits: usize,
}

/// The [`Trend`] of `points`; `None` with fewer than two distinct times.
pub fn trend(name: &str, unit: &str, digits: usize, points: &[(f64, f64)]) -> Option<Trend> {
    let slope = stats::slope(points)?;
    let growth = stats::growth(points);
    Some(Trend {
        name: name.into(),
        unit: unit.into(),
        slope_per_min: slope,
        stderr: stats::slope_stderr(points).unwrap_or(f64::NAN),
        first_half_per_min: growth.map(|g| g.first),
        second_half_per_min: growth.map(|g| g.second),
        growing: growth.map(|g| g.trend),
        min: points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
        max: points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
        digits,
    })
}

impl Trend {
    /// Two lines: the slope and range, the halves and the verdict.
    pub fn lines(&self) -> String {
        let (n, u, d) = (&self.name, &self.unit, self.digits);
        let mut s = format!(
            "{n} slope: {:+.3} {u}/min (standard error {:.3}); {n} {:.d$} .. {:.d$} {u}\n",
            self.slope_per_min, self.stderr, self.min, self.max
        );
        s += &match (
            self.first_half_per_min,
            self.second_half_per_min,
            self.growing,
        ) {
            (Some(a), Some(b), Some(g)) => format!(
                "{n} trend: first half {a:+.3}, second half {b:+.3} {u}/min: {}\n",
                if g {
                    "GROWING in both halves (a leak?)"
                } else {
                    "no growth trend (a leak grows in both halves)"
                }
            ),
            _ => format!("{n} trend: too few samples to tell\n"),
        };
        s
    }
}

/// `vigil bench --soak SECONDS`: `--soak-streams` looped streams, sampled every `--sample-secs`.
pub(crate) fn soak(exe: &Path, setup: &Setup, args: &BenchArgs, secs: u64) -> anyhow::Result<()> {
    let n = args.soak_streams.max(1);
    let config = setup.tmp.join("soak.yaml");
    std::fs::write(
        &config,
        super::vigil_config(
            &setup.models,
            &setup.model,
            &setup.clip,
            n,
            true,
            "  events:\n    path: \"-\"\n",
        ),
    )?;
    let lines = Arc::new(AtomicU64::new(0));
    let counter = lines.clone();
    let running = measure::start(
        Command::new(exe).args(["run", "-q"]).arg(&config),
        Duration::from_secs(secs + 120),
        Some(Box::new(move |chunk: &[u8]| {
            let nl = chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            counter.fetch_add(nl, Ordering::Relaxed);
        })),
    )
    .map_err(anyhow::Error::msg)?;
    let pid = running.pid();
    eprintln!(
        "bench: soak, {n} looped stream(s) for {secs} s, a sample every {} s",
        args.sample_secs
    );
    println!(
        "{:>8}  {:>8}  {:>7}  {:>8}",
        "t s", "RSS MiB", "threads", "frames/s"
    );
    let t0 = Instant::now();
    let every = Duration::from_secs(args.sample_secs.max(1));
    let mut samples: Vec<(f64, f64, u64, f64)> = Vec::new();
    let (mut last_t, mut last_n) = (0.0, 0u64);
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(every.min(Duration::from_secs(secs).saturating_sub(t0.elapsed())));
        let Some(s) = measure::sample(pid) else {
            break;
        };
        let t = t0.elapsed().as_secs_f64();
        let count = lines.load(Ordering::Relaxed);
        let fps = (count - last_n) as f64 / (t - last_t);
        (last_t, last_n) = (t, count);
        let rss = s.rss_kib as f64 / 1024.0;
        println!("{t:>8.0}  {rss:>8.1}  {:>7}  {fps:>8.1}", s.threads);
        samples.push((t, rss, s.threads, fps));
    }
    running.interrupt();
    let m = running.wait();
    if !(m.ok() || m.code == Some(130)) {
        bail!("{}", m.failure("vigil run (soak)"));
    }
    // The first fifth is warm-up (buffer pools, the model's arenas, the first tracks).
    let steady: Vec<&(f64, f64, u64, f64)> = samples
        .iter()
        .filter(|s| s.0 >= secs as f64 / 5.0)
        .collect();
    let pts: Vec<(f64, f64)> = steady.iter().map(|s| (s.0 / 60.0, s.1)).collect();
    let fps: Vec<f64> = steady.iter().map(|s| s.3).collect();
    let (Some(_), Some((fm, fsd))) = (stats::slope(&pts), stats::mean_std(&fps)) else {
        bail!(
            "soak: too few samples after the warm-up ({}); run longer",
            steady.len()
        );
    };
    let threads: Vec<u64> = steady.iter().map(|s| s.2).collect();
    println!(
        "\nsoak: {n} streams, {secs} s, {} samples after {} s of warm-up",
        steady.len(),
        secs / 5
    );
    if let Some(t) = trend("RSS", "MiB", 1, &pts) {
        print!("{}", t.lines());
    }
    println!(
        "frames/s: mean {fm:.1}, standard deviation {fsd:.1} ({:.1} % of the mean), min {:.1}, max {:.1}",
        if fm > 0.0 { fsd / fm * 100.0 } else { 0.0 },
        fps.iter().copied().fold(f64::INFINITY, f64::min),
        fps.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    println!(
        "threads: {} .. {}; CPU {:.1} s, peak RSS {:.1} MiB",
        threads.iter().min().unwrap_or(&0),
        threads.iter().max().unwrap_or(&0),
        m.cpu_s,
        m.max_rss_kib as f64 / 1024.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trends_tell_a_leak_from_a_flat_series() {
        let jitter = [0.2, -0.1, 0.0, 0.1];
        let leak: Vec<(f64, f64)> = (0..20)
            .map(|i| (i as f64, 100.0 + i as f64 + jitter[i % 4]))
            .collect();
        let t = trend("RSS", "MiB", 1, &leak).unwrap();
        assert_eq!(t.growing, Some(true));
        assert!(
            t.lines().contains("RSS trend: first half +0.99"),
            "{}",
            t.lines()
        );
        assert!(t.lines().contains("GROWING"));
        let flat: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 71.0)).collect();
        let t = trend("threads", "threads", 0, &flat).unwrap();
        assert_eq!((t.growing, t.min, t.max), (Some(false), 71.0, 71.0));
        assert!(t.lines().starts_with("threads slope: +0.000 threads/min"));
        assert!(t.lines().contains("no growth trend"));
        let short = trend("fds", "fds", 0, &flat[..4]).unwrap();
        assert_eq!(short.growing, None);
        assert!(short.lines().contains("too few samples"));
        assert!(trend("fds", "fds", 0, &flat[..1]).is_none());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_string(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_string(1_796_230_646), "2026-12-02T16:57:26Z");
    }

    fn row(group: &str, name: &str, streams: usize, fps: f64, cpu: f64) -> Row {
        Row {
            group: group.into(),
            name: name.into(),
            streams,
            frames: 100,
            fps,
            p50_ms: None,
            p99_ms: None,
            peak_rss_mib: None,
            cpu_ms_per_frame: Some(cpu),
            parity: None,
            gpu: None,
            note: String::new(),
        }
    }

    fn get_noenc(r: &[Ratio]) -> &Ratio {
        r.iter()
            .find(|x| x.name.contains("without video output"))
            .expect("the ratio of the row without encoding")
    }

    #[test]
    fn gpu_columns_only_with_gpu_samples() {
        let mut r = row("vigil", "Vigil end to end, 1 stream(s)", 1, 50.0, 10.0);
        assert_eq!(header(false).len(), row_cells(&r, false).len());
        assert!(!header(false).iter().any(|h| h.contains("GPU")));
        r.gpu = Some(super::super::measure::GpuUsage {
            util_pct: 41.4,
            memory_mib: 812.0,
            encoder_pct: 0.0,
            decoder_pct: 12.6,
            samples: 8,
        });
        let (h, c) = (header(true), row_cells(&r, true));
        assert_eq!(h.len(), c.len());
        assert_eq!(&h[8..], ["GPU %", "GPU MiB", "NVENC %", "NVDEC %"]);
        assert_eq!(&c[8..], ["41", "812", "0", "13"]);
    }

    #[test]
    fn ratios_and_targets() {
        let compute = ComputeRun {
            batch: 4,
            spinning: false,
            frames: 100,
            wall_s: 5.0,
            cpu_s: 9.0,
            p50_s: 0.1,
            p99_s: 0.1,
        };
        let decode = row("limit", "decode bound", 2, 400.0, 1.0);
        let rows = vec![
            row("vigil", "Vigil end to end", 4, 18.0, 100.0),
            row("peer", "Python peer", 4, 10.0, 90.0),
            row("peer", "gst-launch-1.0 decode only", 2, 500.0, 1.0),
            row("vigil-noenc", "Vigil without video output", 4, 19.0, 80.0),
            row("peer-nospin", "Python peer, spinning off", 4, 12.0, 85.0),
        ];
        let r = ratios(&rows, &compute, &decode);
        let t = r
            .iter()
            .find(|x| x.name.contains("spinning off"))
            .expect("the tuned peer's ratio");
        assert!((t.value - 1.5).abs() < 1e-12 && t.met.is_none());
        let n = get_noenc(&r);
        assert!((n.value - 0.95).abs() < 1e-12 && n.met.is_none());
        let get = |p: &str| r.iter().find(|x| x.name.contains(p)).unwrap();
        let c = get("compute bound");
        assert!((c.value - 0.9).abs() < 1e-12 && c.met == Some(true));
        let p = get("peer, 4 stream(s) (frames/s)");
        assert!((p.value - 1.8).abs() < 1e-12 && p.met == Some(false));
        assert_eq!(get("CPU time").met, Some(false));
        assert!((get("gst-launch").value - 0.8).abs() < 1e-12);
        assert!(ratio_line(p).ends_with("1.80  (target >= 2: NOT met)"));
        let tiny = Ratio {
            name: "x".into(),
            value: 0.004_53,
            target: None,
            met: None,
        };
        assert_eq!(ratio_line(&tiny), "x: 0.0045");
    }
}
