//! `vigil bench --capacity`: how many real-time streams this machine sustains with NanoDet, tracking
//! and overlay (issue 8, acceptance 3), on the CPU and on the GPU with and without GPU pre-processing.
//!
//! A trial runs N copies of the clip through `vigil run` as fast as possible (`realtime: false`,
//! events only); a stream keeps real time when it completes at least `0.97 x target` frames/s over its
//! own processing window while the others run (3 % for timing noise). The search doubles N from 1
//! until a trial fails (or `max` streams), then bisects between the last success and the first
//! failure: the result is the largest N that kept up, with the trials that show it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;

use super::{Setup, measure};

/// The share of the target frame rate a stream must reach to count as real time.
pub const KEEP_UP: f64 = 0.97;

/// One way to run the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Software decoding, `KIND_CPU` instances, CPU pre-processing.
    Cpu,
    /// NVDEC decoding (`decoder: gpu`), a `KIND_GPU` instance (CUDA provider), CPU pre-processing.
    Gpu,
    /// As `Gpu`, with pre-processing on the GPU (`preprocess: gpu`).
    GpuPre,
}

impl Variant {
    pub fn from_name(name: &str) -> Option<Variant> {
        Some(match name {
            "cpu" => Variant::Cpu,
            "gpu" => Variant::Gpu,
            "gpu-pre" => Variant::GpuPre,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Cpu => "cpu",
            Variant::Gpu => "gpu",
            Variant::GpuPre => "gpu-pre",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Variant::Cpu => "CPU: software decode, KIND_CPU, CPU pre-processing",
            Variant::Gpu => "GPU: NVDEC, KIND_GPU (CUDA), CPU pre-processing",
            Variant::GpuPre => "GPU: NVDEC, KIND_GPU (CUDA), GPU pre-processing",
        }
    }

    fn decoder(self) -> &'static str {
        match self {
            Variant::Cpu => "cpu",
            _ => "gpu",
        }
    }

    fn preprocess(self) -> &'static str {
        match self {
            Variant::GpuPre => "gpu",
            _ => "cpu",
        }
    }
}

/// One trial: N streams at once.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub streams: usize,
    /// The slowest stream's frames/s.
    pub min_stream_fps: f64,
    /// Frames/s of all streams together.
    pub total_fps: f64,
    pub ok: bool,
    pub cpu_ms_per_frame: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<measure::GpuUsage>,
}

/// The search's outcome for one variant.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub variant: Variant,
    /// The most streams that kept real time (0: not even one).
    pub streams: usize,
    /// Whether the search stopped at `max` streams without a failure.
    pub capped: bool,
    pub trials: Vec<Trial>,
}

impl Capacity {
    /// The trial at the capacity, if one kept up.
    pub fn at_capacity(&self) -> Option<&Trial> {
        self.trials
            .iter()
            .find(|t| t.streams == self.streams && t.ok)
    }

    /// The highest total frames/s of any trial (the variant's throughput).
    pub fn best_total_fps(&self) -> f64 {
        self.trials.iter().map(|t| t.total_fps).fold(0.0, f64::max)
    }
}

/// The largest N in `1..=max` whose trial keeps up: N = 1, 2, 4, … until one fails or `max`, then
/// bisection between the last success and the first failure. Returns it (0 when N = 1 fails), whether
/// `max` was reached without a failure, and every trial in the order run.
pub fn search(
    max: usize,
    mut trial: impl FnMut(usize) -> anyhow::Result<Trial>,
) -> anyhow::Result<(usize, bool, Vec<Trial>)> {
    let max = max.max(1);
    let mut trials = Vec::new();
    let (mut good, mut bad) = (0usize, None::<usize>);
    let mut n = 1;
    loop {
        let t = trial(n)?;
        let ok = t.ok;
        trials.push(t);
        if !ok {
            bad = Some(n);
            break;
        }
        good = n;
        if n == max {
            break;
        }
        n = (n * 2).min(max);
    }
    let Some(mut hi) = bad else {
        return Ok((good, true, trials));
    };
    while hi - good > 1 {
        let mid = good + (hi - good) / 2;
        let t = trial(mid)?;
        if t.ok {
            good = mid;
        } else {
            hi = mid;
        }
        trials.push(t);
    }
    Ok((good, false, trials))
}

/// A copy of the model's repository entry whose instances are one `KIND_GPU` instance (model files
/// linked, `config.pbtxt` rewritten without its `instance_group`); returns the repository folder.
pub fn gpu_repository(models: &Path, model: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let src = models.join(model);
    let repo = dir.join("models-gpu");
    let dst = repo.join(model);
    std::fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "config.pbtxt" {
            continue;
        }
        let target = dst.join(&name);
        if !target.exists() {
            std::os::unix::fs::symlink(entry.path(), &target)
                .with_context(|| format!("linking {}", target.display()))?;
        }
    }
    let config = std::fs::read_to_string(src.join("config.pbtxt"))
        .with_context(|| format!("reading {}/config.pbtxt", src.display()))?;
    std::fs::write(
        dst.join("config.pbtxt"),
        format!(
            "{}\ninstance_group [ {{ count: 1, kind: KIND_GPU }} ]\n",
            without_field(&config, "instance_group")
        ),
    )?;
    Ok(repo)
}

/// `text` (protobuf text format) without the top-level field `name` (`name [ … ]` or `name { … }`,
/// with or without a colon), however often it occurs.
fn without_field(text: &str, name: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = find_field(rest, name) {
        out.push_str(&rest[..at]);
        let after = &rest[at + name.len()..];
        let open = after
            .char_indices()
            .find(|(_, c)| !c.is_whitespace() && *c != ':');
        match open {
            Some((i, c)) if c == '[' || c == '{' => {
                let mut depth = 0;
                let mut end = after.len();
                for (j, d) in after[i..].char_indices() {
                    match d {
                        '[' | '{' => depth += 1,
                        ']' | '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => {
                out.push_str(name);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where the field `name` starts at the beginning of a line (its own word), outside comments.
fn find_field(text: &str, name: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(after) = trimmed.strip_prefix(name)
            && after
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == ':' || c == '[' || c == '{')
        {
            return Some(offset + line.len() - trimmed.len());
        }
        offset += line.len();
    }
    None
}

/// The clip transcoded to 1920x1080 at 30 frames/s, H.264 (ffmpeg, libx264), its first `frames` frames
/// (0: all).
pub fn clip_1080p(video: &Path, frames: u64, dir: &Path) -> anyhow::Result<PathBuf> {
    let out = dir.join("clip-1080p.mp4");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-i"]).arg(video).args([
        "-an",
        "-vf",
        "scale=1920:1080,fps=30",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
    ]);
    if frames > 0 {
        cmd.args(["-frames:v", &frames.to_string()]);
    }
    let done = cmd
        .arg(&out)
        .output()
        .context("cannot run ffmpeg to make the 1080p clip")?;
    if !done.status.success() {
        bail!(
            "ffmpeg could not transcode {} to 1080p: {}",
            video.display(),
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    Ok(out)
}

/// The `vigil run` config of one trial.
pub fn trial_config(
    models: &Path,
    model: &str,
    clip: &Path,
    streams: usize,
    variant: Variant,
    events: &Path,
) -> String {
    let mut s = format!(
        "name: capacity\nmodel_repository: {}\nrealtime: false\nsources:\n",
        models.display()
    );
    for i in 0..streams {
        s += &format!(
            "  - name: s{i}\n    uri: {}\n    decoder: {}\n",
            clip.display(),
            variant.decoder()
        );
    }
    s += &format!(
        "inference:\n  model: {model}\n  threshold: {}\n  nms_iou: {}\n  classes: [{}]\n  preprocess: {}\n\
         tracker:\n  kind: iou\noverlay:\n  enabled: true\noutputs:\n  events:\n    path: {}\n",
        super::THRESHOLD,
        super::NMS_IOU,
        super::CLASSES.replace(',', ", "),
        variant.preprocess(),
        events.display()
    );
    s
}

/// Runs one trial of `variant` with `streams` streams.
fn run_trial(
    s: &Setup,
    models: &Path,
    variant: Variant,
    streams: usize,
    target_fps: f64,
) -> anyhow::Result<Trial> {
    let dir = s.tmp.join(format!("capacity-{}-{streams}", variant.name()));
    std::fs::create_dir_all(&dir)?;
    let events = dir.join("events.jsonl");
    let super::VigilRun {
        measured: m,
        completions,
        frames,
        ..
    } = super::run_vigil(
        s,
        &dir.join("capacity.yaml"),
        &trial_config(models, &s.model, &s.clip, streams, variant, &events),
        &events,
        streams,
    )?;
    let per_stream: Vec<f64> = completions
        .iter()
        .map(|c| {
            let (first, last) = (c.first().copied(), c.last().copied());
            match (first, last) {
                (Some(a), Some(b)) if b > a && c.len() > 1 => (c.len() - 1) as f64 / (b - a),
                _ => 0.0,
            }
        })
        .collect();
    let min_stream_fps = per_stream.iter().copied().fold(f64::INFINITY, f64::min);
    let min_stream_fps = if min_stream_fps.is_finite() {
        min_stream_fps
    } else {
        0.0
    };
    let total_fps = super::window_fps(&completions).unwrap_or(0.0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Trial {
        streams,
        min_stream_fps,
        total_fps,
        ok: min_stream_fps >= KEEP_UP * target_fps,
        cpu_ms_per_frame: (frames > 0).then(|| m.cpu_s / frames as f64 * 1e3),
        gpu: m.gpu,
    })
}

/// Runs the search for each variant; prints progress and a table, returns the outcomes.
pub(crate) fn run(
    s: &Setup,
    variants: &[Variant],
    max: usize,
    target_fps: f64,
) -> anyhow::Result<Vec<Capacity>> {
    let mut out = Vec::new();
    for &variant in variants {
        let models = if variant == Variant::Cpu {
            s.models.clone()
        } else {
            gpu_repository(&s.models, &s.model, &s.tmp)?
        };
        eprintln!("capacity: {}", variant.describe());
        let (streams, capped, trials) = search(max, |n| {
            let t = run_trial(s, &models, variant, n, target_fps)?;
            eprintln!(
                "  {n} stream(s): slowest {:.1} frames/s, total {:.1} → {}",
                t.min_stream_fps,
                t.total_fps,
                if t.ok { "keeps up" } else { "falls behind" }
            );
            Ok(t)
        })?;
        out.push(Capacity {
            variant,
            streams,
            capped,
            trials,
        });
    }
    Ok(out)
}

/// The report as Markdown.
pub fn markdown(caps: &[Capacity], clip: &str, target_fps: f64) -> String {
    let mut s = format!(
        "# Real-time capacity\n\nClip: {clip}; a stream keeps real time at ≥ {:.1} frames/s ({:.0} % of \
         {target_fps}) with all streams running (decode, NanoDet, IoU tracker, overlay, JSON events).\n\n\
         | variant | streams sustained | slowest stream, frames/s | total frames/s | best total frames/s | \
         CPU ms/frame | GPU % | NVDEC % | GPU MiB |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        KEEP_UP * target_fps,
        KEEP_UP * 100.0
    );
    for c in caps {
        let t = c.at_capacity();
        let f = |v: Option<f64>, d: usize| v.map_or("–".to_owned(), |v| format!("{v:.d$}"));
        s += &format!(
            "| {} | {}{} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
            c.variant.describe(),
            c.streams,
            if c.capped { " (the maximum tried)" } else { "" },
            f(t.map(|t| t.min_stream_fps), 1),
            f(t.map(|t| t.total_fps), 1),
            c.best_total_fps(),
            f(t.and_then(|t| t.cpu_ms_per_frame), 1),
            f(t.and_then(|t| t.gpu).map(|g| g.util_pct), 0),
            f(t.and_then(|t| t.gpu).map(|g| g.decoder_pct), 0),
            f(t.and_then(|t| t.gpu).map(|g| g.memory_mib), 0),
        );
    }
    if let Some(cpu) = caps.iter().find(|c| c.variant == Variant::Cpu) {
        for c in caps.iter().filter(|c| c.variant != Variant::Cpu) {
            s += &format!(
                "\n{} / CPU: {} vs {} streams; best total frames/s {:.1} vs {:.1} = {:.2}x",
                c.variant.name(),
                c.streams,
                cpu.streams,
                c.best_total_fps(),
                cpu.best_total_fps(),
                c.best_total_fps() / cpu.best_total_fps().max(1e-9)
            );
        }
        s += "\n";
    }
    s += "\n## Trials\n\n| variant | streams | slowest frames/s | total frames/s | kept up |\n| --- | --- | --- | --- | --- |\n";
    for c in caps {
        for t in &c.trials {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {} |\n",
                c.variant.name(),
                t.streams,
                t.min_stream_fps,
                t.total_fps,
                if t.ok { "yes" } else { "no" }
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(capacity: usize) -> impl FnMut(usize) -> anyhow::Result<Trial> {
        move |n| {
            Ok(Trial {
                streams: n,
                min_stream_fps: if n <= capacity { 30.0 } else { 20.0 },
                total_fps: 30.0 * n.min(capacity) as f64,
                ok: n <= capacity,
                cpu_ms_per_frame: None,
                gpu: None,
            })
        }
    }

    #[test]
    fn search_finds_the_largest_count_that_keeps_up() {
        for capacity in 0..40 {
            let (n, capped, trials) = search(64, fake(capacity)).unwrap();
            assert_eq!(n, capacity, "capacity {capacity}");
            assert!(!capped);
            // Doubling then bisection: about 2 log2(capacity) trials, never the same N twice.
            let mut seen: Vec<usize> = trials.iter().map(|t| t.streams).collect();
            assert!(
                trials.len() <= 2 * (capacity + 1).ilog2() as usize + 2,
                "{seen:?}"
            );
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), trials.len(), "a count was tried twice");
        }
        let (n, capped, trials) = search(10, fake(100)).unwrap();
        assert_eq!((n, capped), (10, true));
        assert_eq!(
            trials.iter().map(|t| t.streams).collect::<Vec<_>>(),
            [1, 2, 4, 8, 10]
        );
    }

    #[test]
    fn gpu_repository_replaces_the_instance_groups() {
        let text = "name: \"m\"\nmax_batch_size: 8\ninstance_group [\n  { count: 2, kind: KIND_CPU },\n  { kind: KIND_CPU }\n]\ndynamic_batching { max_queue_delay_microseconds: 100 }\ninstance_group: [ { count: 1 } ]\nparameters { key: \"instance_group\" value: { string_value: \"x\" } }\n";
        let out = without_field(text, "instance_group");
        assert!(!out.contains("KIND_CPU"), "{out}");
        assert!(!out.contains("count: 1"), "{out}");
        assert!(out.contains("dynamic_batching { max_queue_delay_microseconds: 100 }"));
        assert!(out.contains("max_batch_size: 8"));
        assert!(out.contains("key: \"instance_group\""), "{out}");

        let dir = std::env::temp_dir().join(format!("vigil-capacity-{}", std::process::id()));
        let models = dir.join("models");
        std::fs::create_dir_all(models.join("m/1")).unwrap();
        std::fs::write(models.join("m/config.pbtxt"), text).unwrap();
        std::fs::write(models.join("m/labels.txt"), "a\n").unwrap();
        std::fs::write(models.join("m/1/model.onnx"), "x").unwrap();
        let repo = gpu_repository(&models, "m", &dir).unwrap();
        let config = std::fs::read_to_string(repo.join("m/config.pbtxt")).unwrap();
        let parsed = vigil_modelrepo::ModelConfig::parse(&config, Path::new("c")).unwrap();
        assert_eq!(parsed.instance_group.len(), 1);
        assert_eq!(
            parsed.instance_group[0].kind,
            vigil_modelrepo::InstanceKind::Gpu
        );
        assert_eq!(
            std::fs::read_to_string(repo.join("m/1/model.onnx")).unwrap(),
            "x"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trial_config_names_decoder_and_preprocessing() {
        let c = trial_config(
            Path::new("/m"),
            "nanodet",
            Path::new("/c.mp4"),
            2,
            Variant::GpuPre,
            Path::new("/e.jsonl"),
        );
        assert_eq!(c.matches("decoder: gpu").count(), 2);
        assert!(c.contains("preprocess: gpu") && c.contains("realtime: false"));
        let c = trial_config(
            Path::new("/m"),
            "nanodet",
            Path::new("/c.mp4"),
            1,
            Variant::Cpu,
            Path::new("/e.jsonl"),
        );
        assert!(c.contains("decoder: cpu") && c.contains("preprocess: cpu"));
    }
}
