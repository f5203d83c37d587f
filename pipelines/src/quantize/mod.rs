//! `vigil models quantize REPO MODEL... --calibrate MEDIA...`: an INT8 version of a model,
//! calibrated on the user's own video and checked against the original before it is written.
//!
//! Steps ([`execute`]):
//! 1. capture frames of the calibration media (spread over each file) and keep every few of
//!    them apart for the evaluation (or take the evaluation frames from `--evaluate`);
//! 2. turn the calibration frames into the model's input tensors exactly as Vigil feeds it
//!    (`vigilinfer`'s pre-processing for a detector; for the OCR models, the tensors the FP32
//!    `OcrEngine` gives its models while reading them);
//! 3. quantize with ONNX Runtime's own tool (`scripts/quantize.py`, embedded in the binary, run by
//!    the venv's Python): static quantization, QOperator format, U8 activations, 7-bit signed
//!    weights per channel, MinMax calibration with a moving average, the final Sigmoid/Softmax of
//!    a score output left in float, by default;
//! 4. compare the quantized model with the original on the held-out frames — a detector by the
//!    detections' agreement ([`agreement`]), OCR by exact lines and character error rate — and
//!    time both (a CPU without VNNI may not gain anything: the report says so, measured);
//! 5. write the new version folder (`<model>/<V>/`, the model file and `quantization.json`) when
//!    the agreement reaches `--min-f1` / `--min-exact`, or with `--force`. The model's
//!    `config.pbtxt` (one per model, as in Triton) serves both versions: inputs and outputs are
//!    checked to be unchanged.

mod agreement;
mod capture;
mod detector;
mod ocr;

pub use agreement::Agreement;
pub use capture::{Frame, Order};
use erased::ValueName;

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_modelrepo::ModelRepository;

/// The quantized graph's form (ONNX Runtime's `QuantFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantFormat {
    /// Quantized operators (`QLinearConv`, …): the fastest on CPU (measured, README).
    Qoperator,
    /// Quantize/dequantize pairs around float operators.
    Qdq,
}

/// An 8-bit integer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Int8 {
    U8,
    S8,
}

/// How activation ranges are taken from the calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Calibration {
    Minmax,
    /// MinMax with a moving average of each frame's range instead of the extremes of all frames.
    MovingAverage,
    Entropy,
    Percentile,
    /// No calibration: weights quantized ahead, each activation at run time from its own range
    /// (ONNX Runtime's `quantize_dynamic`; MatMulInteger/ConvInteger).
    Dynamic,
}

#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// The model repository folder.
    pub repo: PathBuf,
    /// The model to quantize (a detector), or with --ocr the OCR models to quantize.
    #[arg(required = true)]
    pub models: Vec<String>,
    /// Media to calibrate on: files, folders' files are not expanded (list them), or URIs.
    #[arg(long, num_args = 1.., required = true, value_name = "MEDIA")]
    pub calibrate: Vec<String>,
    /// Media to evaluate on (default: frames of the calibration media not used to calibrate).
    #[arg(long, num_args = 1.., value_name = "MEDIA")]
    pub evaluate: Vec<String>,
    /// Calibration frames (spread over the media; a still image is one frame).
    #[arg(long, default_value_t = 200)]
    pub frames: usize,
    /// Evaluation frames.
    #[arg(long, default_value_t = 100)]
    pub held_out: usize,
    /// The version to write (default: one above the highest present).
    #[arg(long)]
    pub version: Option<u64>,
    /// The version to quantize (default: the highest the version policy serves).
    #[arg(long)]
    pub from_version: Option<u64>,
    #[arg(long, value_enum, default_value_t = QuantFormat::Qoperator)]
    pub format: QuantFormat,
    #[arg(long, value_enum, default_value_t = Int8::U8)]
    pub activations: Int8,
    #[arg(long, value_enum, default_value_t = Calibration::MovingAverage)]
    pub method: Calibration,
    /// One scale per weight tensor instead of one per output channel.
    #[arg(long)]
    pub per_tensor: bool,
    /// Bits of the signed weights: 7 (default) keeps ONNX Runtime's 8-bit products from
    /// saturating on CPUs without VNNI, and agreed better with FP32 on both kinds measured.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(7..=8))]
    pub weight_bits: u8,
    /// Also quantize the Sigmoid/Softmax that computes a score output (left in float by default:
    /// 8-bit scores move boxes across the threshold).
    #[arg(long)]
    pub quantize_scores: bool,
    /// Nodes of the model left in float (their names in the ONNX graph, comma-separated).
    #[arg(long, value_name = "NODE,...", default_value = "")]
    pub keep_float: String,
    /// Operator types to quantize (e.g. Conv,MatMul; default: every type the tool quantizes).
    #[arg(long, value_name = "OP,...", default_value = "")]
    pub ops: String,
    /// Detectors: the least F1 of the quantized model's detections against the original's.
    #[arg(long, default_value_t = 0.95)]
    pub min_f1: f64,
    /// OCR: the least share of the original's lines read exactly alike.
    #[arg(long, default_value_t = 0.95)]
    pub min_exact: f64,
    /// Detectors: the score threshold of the compared detections (vigilinfer's default).
    #[arg(long, default_value_t = 0.4)]
    pub threshold: f32,
    /// The OCR models as DET,CLS,REC (CLS may be empty: DET,,REC): quantize some of them and
    /// compare the readings of the whole OCR.
    #[arg(long, value_name = "DET,CLS,REC")]
    pub ocr: Option<String>,
    /// Write the version even when the agreement is below the minimum.
    #[arg(long)]
    pub force: bool,
    /// Only report: write no version.
    #[arg(long)]
    pub dry_run: bool,
    /// The Python with `onnxruntime.quantization` (default: $VIGIL_VENV_PYTHON, the project's
    /// venv ~/.cache/vigil/venv, else python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// A model version to quantize.
#[derive(Debug, Clone)]
pub struct Source {
    pub model: String,
    pub version: u64,
    pub path: PathBuf,
    /// The model's folder.
    pub dir: PathBuf,
    /// The model's configuration (one for all versions, completed from the served version) and
    /// labels.
    pub config: vigil_modelrepo::ModelConfig,
    pub labels: Vec<String>,
}

impl Source {
    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model.onnx".into())
    }
}

/// Timing of the original and the quantized model(s) on the evaluation frames.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Speed {
    /// "frame" (a detector run) or "image" (a whole OCR reading).
    pub unit: &'static str,
    pub fp32_ms: f64,
    pub int8_ms: f64,
}

impl Speed {
    pub fn speedup(&self) -> f64 {
        if self.int8_ms > 0.0 {
            self.fp32_ms / self.int8_ms
        } else {
            0.0
        }
    }
}

/// The machine's 8-bit integer instructions that ONNX Runtime's INT8 kernels use.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CpuInt8 {
    pub flags: Vec<String>,
}

impl CpuInt8 {
    const FLAGS: [&'static str; 4] = ["avx512_vnni", "avx_vnni", "amx_int8", "asimddp"];

    fn detect() -> CpuInt8 {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let present: Vec<&str> = info
            .lines()
            .find(|l| l.starts_with("flags") || l.starts_with("Features"))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        CpuInt8 {
            flags: Self::FLAGS
                .iter()
                .filter(|f| present.contains(f))
                .map(|f| f.to_string())
                .collect(),
        }
    }
}

/// What one run found; written as `quantization.json` beside the new model file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub models: Vec<ModelReport>,
    pub format: QuantFormat,
    pub activations: Int8,
    pub method: Calibration,
    pub per_channel: bool,
    pub weight_bits: u8,
    pub quantize_scores: bool,
    pub keep_float: String,
    pub ops: String,
    pub calibration_media: Vec<String>,
    pub calibration_frames: usize,
    pub evaluation_media: Vec<String>,
    pub evaluation_frames: usize,
    pub detection: Option<DetectionCheck>,
    pub ocr: Option<vigil_core::ocr::metrics::LineAgreement>,
    pub speed: Speed,
    pub cpu: CpuInt8,
    pub passed: bool,
}

impl Report {
    /// The report of a run of `args` on `models` with these frame counts and speeds; the check's
    /// figures and verdict are the caller's to fill in.
    fn new(
        args: &QuantizeArgs,
        models: Vec<ModelReport>,
        frames: (usize, usize),
        speed: Speed,
    ) -> Report {
        Report {
            models,
            format: args.format,
            activations: args.activations,
            method: args.method,
            per_channel: !args.per_tensor,
            weight_bits: args.weight_bits,
            quantize_scores: args.quantize_scores,
            keep_float: args.keep_float.clone(),
            ops: args.ops.clone(),
            calibration_media: args.calibrate.clone(),
            calibration_frames: frames.0,
            evaluation_media: if args.evaluate.is_empty() {
                args.calibrate.clone()
            } else {
                args.evaluate.clone()
            },
            evaluation_frames: frames.1,
            detection: None,
            ocr: None,
            speed,
            cpu: CpuInt8::detect(),
            passed: false,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelReport {
    pub model: String,
    pub from_version: u64,
    pub fp32_bytes: u64,
    pub int8_bytes: u64,
    /// The version folder written (absent when none was).
    pub version: Option<u64>,
    #[serde(skip)]
    pub quantized: PathBuf,
    /// The model file's name in its version folder (the original's).
    #[serde(skip)]
    pub file_name: String,
}

impl ModelReport {
    fn new(source: &Source, quantized: PathBuf) -> ModelReport {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        ModelReport {
            model: source.model.clone(),
            from_version: source.version,
            fp32_bytes: len(&source.path),
            int8_bytes: len(&quantized),
            version: None,
            file_name: source.file_name(),
            quantized,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DetectionCheck {
    pub threshold: f32,
    pub iou: f32,
    #[serde(flatten)]
    pub agreement: Agreement,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub score_drift_mean: f64,
}

/// A folder removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> anyhow::Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("vigil-quantize-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn execute(args: &QuantizeArgs) -> anyhow::Result<()> {
    let repo = ModelRepository::open(&args.repo)
        .with_context(|| format!("model repository {}", args.repo.display()))?;
    let sources = args
        .models
        .iter()
        .map(|m| source(&repo, m, args.from_version))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let scratch = Scratch::new()?;
    let quantizer = Quantizer::new(args, &scratch)?;
    let mut report = match &args.ocr {
        Some(trio) => ocr::run(args, &repo, &sources, &quantizer, trio)?,
        None => detector::run(args, &sources, &quantizer)?,
    };
    let write = !args.dry_run && (report.passed || args.force);
    if write {
        for i in 0..report.models.len() {
            let version = write_version(args, &report.models[i], &report)?;
            report.models[i].version = Some(version);
        }
    }
    print_report(&report, &repo, write);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.passed && !args.force {
        bail!(
            "the quantized model does not agree enough with the original (see above); no version \
             written (--force writes it anyway)"
        );
    }
    Ok(())
}

/// The served version of `model`, or `version` — also one the version policy does not serve (the
/// FP32 version an INT8 one has replaced, to quantize it again).
fn source(repo: &ModelRepository, model: &str, version: Option<u64>) -> anyhow::Result<Source> {
    let context = || format!("model '{model}' in {}", repo.root().display());
    let loaded = match repo.load(model, version) {
        Ok(l) => l,
        Err(vigil_modelrepo::RepoError::VersionNotServed { version: v, .. }) => {
            let mut served = repo.load(model, None).with_context(context)?;
            let file = served.model_path.file_name().map(|f| f.to_owned());
            served.model_path = served
                .dir
                .join(v.to_string())
                .join(file.unwrap_or_default());
            served.version = v;
            served
        }
        Err(e) => return Err(e).with_context(context),
    };
    if !loaded.model_path.is_file() {
        bail!(
            "model '{model}': {} is not a model file (ensembles are not quantized: quantize their \
             steps)",
            loaded.model_path.display()
        );
    }
    Ok(Source {
        model: model.to_owned(),
        version: loaded.version,
        path: loaded.model_path,
        dir: loaded.dir,
        config: loaded.config,
        labels: loaded.labels,
    })
}

/// Runs `scripts/quantize.py` (embedded) with the chosen Python.
pub struct Quantizer {
    python: PathBuf,
    script: PathBuf,
    settings: Vec<String>,
}

const SCRIPT: &str = include_str!("../../../scripts/quantize.py");

impl Quantizer {
    fn new(args: &QuantizeArgs, scratch: &Scratch) -> anyhow::Result<Quantizer> {
        let python = args.python.clone().unwrap_or_else(default_python);
        let script = scratch.path().join("quantize.py");
        std::fs::write(&script, SCRIPT)?;
        let mut settings = vec![
            "--format".into(),
            args.format.value_name(),
            "--activations".into(),
            args.activations.value_name(),
            "--keep-float".into(),
            args.keep_float.clone(),
            "--ops".into(),
            args.ops.clone(),
            "--method".into(),
            args.method.value_name(),
        ];
        if args.per_tensor {
            settings.push("--per-tensor".into());
        }
        if args.weight_bits == 7 {
            settings.push("--reduce-range".into());
        }
        if args.quantize_scores {
            settings.push("--quantize-scores".into());
        }
        Ok(Quantizer {
            python,
            script,
            settings,
        })
    }

    /// Quantizes `source` on the calibration tensors in `data` into `out`; returns the tool's
    /// JSON line.
    pub fn run(
        &self,
        source: &Source,
        inputs: &[String],
        data: &Path,
        out: &Path,
    ) -> anyhow::Result<String> {
        let output = Command::new(&self.python)
            .arg(&self.script)
            .arg("--model")
            .arg(&source.path)
            .arg("--out")
            .arg(out)
            .arg("--data")
            .arg(data)
            .arg("--inputs")
            .arg(inputs.join(","))
            .args(&self.settings)
            .output()
            .with_context(|| format!("running {}", self.python.display()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "quantizing model '{}' ({}) with {} failed ({}):\n{}",
                source.model,
                source.path.display(),
                self.python.display(),
                output.status,
                tail.join("\n")
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_owned())
    }
}

mod erased {
    /// The command-line spelling of a `clap::ValueEnum` value.
    pub trait ValueName {
        fn value_name(&self) -> String;
    }

    impl<T: clap::ValueEnum> ValueName for T {
        fn value_name(&self) -> String {
            self.to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default()
        }
    }
}

fn default_python() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_VENV_PYTHON") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = PathBuf::from(home).join(".cache/vigil/venv/bin/python");
        if venv.is_file() {
            return venv;
        }
    }
    PathBuf::from("python3")
}

/// Calibration and evaluation frames: `--frames` spread over the calibration media and
/// `--held-out` among them (or from `--evaluate`).
pub fn samples(args: &QuantizeArgs, order: Order) -> anyhow::Result<(Vec<Frame>, Vec<Frame>)> {
    let per = |total: usize, media: usize| total.div_ceil(media.max(1));
    if !args.evaluate.is_empty() {
        let mut cal = Vec::new();
        for m in &args.calibrate {
            cal.extend(
                capture::frames(m, order, per(args.frames, args.calibrate.len()))
                    .map_err(anyhow::Error::msg)?,
            );
        }
        let mut held = Vec::new();
        for m in &args.evaluate {
            held.extend(
                capture::frames(m, order, per(args.held_out, args.evaluate.len()))
                    .map_err(anyhow::Error::msg)?,
            );
        }
        return Ok((cal, held));
    }
    let wanted = args.frames + args.held_out;
    let (mut cal, mut held) = (Vec::new(), Vec::new());
    for m in &args.calibrate {
        let frames = capture::frames(m, order, per(wanted, args.calibrate.len()))
            .map_err(anyhow::Error::msg)?;
        let n = frames.len();
        for (i, f) in frames.into_iter().enumerate() {
            if capture::is_held_out(i, n * args.held_out / wanted.max(1), n) {
                held.push(f);
            } else {
                cal.push(f);
            }
        }
    }
    if cal.is_empty() {
        bail!("no calibration frame from {}", args.calibrate.join(", "));
    }
    if held.is_empty() {
        bail!(
            "no frame left to evaluate on (the calibration media gave {} frame(s)): give more \
             media, a --held-out above 0, or --evaluate MEDIA",
            cal.len()
        );
    }
    Ok((cal, held))
}

/// Writes `data` (f32, C order) as a NumPy `.npy` file of `shape`.
pub fn write_npy(path: &Path, shape: &[i64], data: &[f32]) -> anyhow::Result<()> {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6), version (2), header length (2), header, newline: a multiple of 64 bytes.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The inputs and outputs of `a` and `b` (names and element types) are the same.
pub fn same_io(a: &Path, b: &Path) -> anyhow::Result<()> {
    use vigil_engine::runtime::OnnxModel;
    let io = |p: &Path| -> anyhow::Result<Vec<(String, String)>> {
        let m = OnnxModel::load(p, 1).with_context(|| format!("loading {}", p.display()))?;
        Ok(m.inputs()
            .iter()
            .chain(m.outputs())
            .map(|i| (i.name.clone(), i.dtype.clone()))
            .collect())
    };
    let (ia, ib) = (io(a)?, io(b)?);
    if ia != ib {
        bail!("the quantized model's inputs and outputs {ib:?} differ from the original's {ia:?}");
    }
    Ok(())
}

/// Copies the quantized model into a new version folder with the report beside it.
fn write_version(args: &QuantizeArgs, m: &ModelReport, report: &Report) -> anyhow::Result<u64> {
    let dir = args.repo.join(&m.model);
    let version = match args.version {
        Some(v) => v,
        None => highest_version(&dir)? + 1,
    };
    let folder = dir.join(version.to_string());
    if folder.exists() {
        bail!(
            "model '{}': version folder {} exists already (choose another --version)",
            m.model,
            folder.display()
        );
    }
    // Written beside it under a name the repository ignores, then renamed: a poll of the
    // repository never sees a version folder without its model.
    let partial = dir.join(format!(".{version}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let target = partial.join(&m.file_name);
    std::fs::copy(&m.quantized, &target)
        .with_context(|| format!("writing {}", target.display()))?;
    let mut own = report.clone();
    own.models.retain(|r| r.model == m.model);
    if let Some(r) = own.models.first_mut() {
        r.version = Some(version);
    }
    std::fs::write(
        partial.join("quantization.json"),
        serde_json::to_string_pretty(&own)?,
    )?;
    std::fs::rename(&partial, &folder)
        .with_context(|| format!("renaming {} to {}", partial.display(), folder.display()))?;
    Ok(version)
}

fn highest_version(dir: &Path) -> anyhow::Result<u64> {
    let mut highest = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.path().is_dir()
            && let Some(v) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
        {
            highest = highest.max(v);
        }
    }
    Ok(highest)
}

fn print_report(r: &Report, repo: &ModelRepository, written: bool) {
    println!(
        "quantization: {} format, activations {}, {}-bit signed weights {}, {} calibration{} on {} \
         frame(s) of {}",
        r.format.value_name(),
        r.activations.value_name(),
        r.weight_bits,
        if r.per_channel {
            "per channel"
        } else {
            "per tensor"
        },
        r.method.value_name(),
        if r.quantize_scores {
            ", scores quantized"
        } else {
            ", scores in float"
        },
        r.calibration_frames,
        media_list(&r.calibration_media)
    );
    println!(
        "evaluation: {} held-out frame(s) of {}",
        r.evaluation_frames,
        media_list(&r.evaluation_media)
    );
    if let Some(d) = &r.detection {
        println!(
            "detections (score >= {}, IoU >= {}, same class): FP32 {} boxes, INT8 {}, matched {}: \
             precision {:.3}, recall {:.3}, F1 {:.3}; score drift mean {:.4}, max {:.4}; {} of the \
             {} unmatched boxes scored under {:.2}",
            d.threshold,
            d.iou,
            d.agreement.reference,
            d.agreement.candidate,
            d.agreement.matched,
            d.precision,
            d.recall,
            d.f1,
            d.score_drift_mean,
            d.agreement.drift_max,
            d.agreement.unmatched_near_threshold,
            d.agreement.reference + d.agreement.candidate - 2 * d.agreement.matched,
            d.threshold + detector::NEAR_THRESHOLD
        );
    }
    if let Some(o) = &r.ocr {
        println!(
            "OCR: {} FP32 line(s), {} matched, {} read exactly alike ({:.1} %), CER {:.2} %",
            o.lines,
            o.matched,
            o.exact,
            o.exact_share() * 100.0,
            o.cer() * 100.0
        );
    }
    print_speed(r);
    for m in &r.models {
        let size = format!(
            "{:.1} MB -> {:.1} MB",
            m.fp32_bytes as f64 / 1e6,
            m.int8_bytes as f64 / 1e6
        );
        match (written, m.version) {
            (true, Some(v)) => {
                let served = repo.served_versions(&m.model).unwrap_or_default();
                println!(
                    "{}: version {} written ({size}) from version {}; the version policy now \
                     serves {:?} (pin one with `version:` in the pipeline, or set \
                     version_policy: {{ all {{}} }} to serve both)",
                    m.model, v, m.from_version, served
                );
            }
            _ => println!("{}: no version written ({size})", m.model),
        }
    }
}

/// The media named, the first few of a long list.
fn media_list(media: &[String]) -> String {
    match media.len() {
        0..=4 => media.join(", "),
        n => format!("{} and {} more", media[..3].join(", "), n - 3),
    }
}

fn print_speed(r: &Report) {
    let s = &r.speed;
    let flags = if r.cpu.flags.is_empty() {
        "no VNNI/AMX int8 instructions".to_owned()
    } else {
        r.cpu.flags.join(", ")
    };
    println!(
        "speed (same process, one after the other): FP32 {:.2} ms/{}, INT8 {:.2} ms/{}: {:.2}x \
         (CPU: {flags})",
        s.fp32_ms,
        s.unit,
        s.int8_ms,
        s.unit,
        s.speedup()
    );
    if s.speedup() < 1.1 {
        println!(
            "note: the INT8 model is not faster on this machine (measured above; {flags}): keep \
             the FP32 version here"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_describes_the_array() {
        let dir = Scratch::new().unwrap();
        let p = dir.path().join("a.npy");
        write_npy(&p, &[1, 3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        assert!(header.contains("'shape': (1, 3, 2)"), "{header}");
        assert!(header.ends_with('\n'));
        assert_eq!(bytes.len(), 10 + len + 24);
        assert_eq!(&bytes[10 + len + 4..10 + len + 8], &1f32.to_le_bytes());
    }

    #[test]
    fn value_names_are_the_command_line_spellings() {
        use erased::ValueName;
        assert_eq!(QuantFormat::Qoperator.value_name(), "qoperator");
        assert_eq!(Int8::U8.value_name(), "u8");
        assert_eq!(Calibration::Entropy.value_name(), "entropy");
        // The script's spelling, and the report's.
        assert_eq!(Calibration::MovingAverage.value_name(), "moving-average");
        assert_eq!(
            serde_json::to_value(Calibration::MovingAverage).unwrap(),
            "moving-average"
        );
    }
}
