//! Quantizing OCR models (PP-OCR detection, direction classification, recognition): calibration
//! tensors are what the FP32 `OcrEngine` feeds each model while reading the calibration images;
//! the check compares whole readings (the FP32 models against the same OCR with the quantized
//! models swapped in): lines read exactly alike and the character error rate.

use super::detector::quantizer_dir;
use super::{ModelReport, QuantizeArgs, Quantizer, Report, Source, Speed};
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vigil_core::ocr::metrics::LineAgreement;
use vigil_core::ocr::{ImageView, OcrEngine, OcrLine, OcrParams, OcrTensors, PixelFormat};
use vigil_modelrepo::ModelRepository;

/// Lines overlap this much to be the same line (as the OCR parity test).
const MIN_IOU: f32 = 0.5;

/// The three model names of `--ocr DET,CLS,REC`.
struct Trio {
    det: String,
    cls: Option<String>,
    rec: String,
}

impl Trio {
    fn parse(text: &str) -> anyhow::Result<Trio> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [det, cls, rec] if !det.is_empty() && !rec.is_empty() => Ok(Trio {
                det: det.to_string(),
                cls: (!cls.is_empty()).then(|| cls.to_string()),
                rec: rec.to_string(),
            }),
            _ => bail!("--ocr '{text}': expected DET,CLS,REC (CLS may be empty: DET,,REC)"),
        }
    }

    fn names(&self) -> Vec<&str> {
        let mut n = vec![self.det.as_str()];
        n.extend(self.cls.as_deref());
        n.push(&self.rec);
        n
    }

    fn engine(&self, repo: &Path) -> anyhow::Result<OcrEngine> {
        OcrEngine::new(
            repo,
            &self.det,
            self.cls.as_deref(),
            &self.rec,
            OcrParams::default(),
        )
        .with_context(|| format!("OCR models in {}", repo.display()))
    }
}

pub fn run(
    args: &QuantizeArgs,
    repo: &ModelRepository,
    sources: &[Source],
    quantizer: &Quantizer,
    trio: &str,
) -> anyhow::Result<Report> {
    let trio = Trio::parse(trio)?;
    for s in sources {
        if !trio.names().contains(&s.model.as_str()) {
            bail!(
                "model '{}' is not one of --ocr {}",
                s.model,
                trio.names().join(",")
            );
        }
    }
    let scratch = quantizer_dir(quantizer);
    let originals = trio
        .names()
        .iter()
        .map(|&m| {
            let s = match sources.iter().find(|s| s.model == m) {
                Some(s) => s.clone(),
                None => super::source(repo, m, None)?,
            };
            Ok((m.to_owned(), s))
        })
        .collect::<anyhow::Result<HashMap<String, Source>>>()?;
    let fp32_repo = eval_repo(&scratch.join("fp32"), &originals, &HashMap::new())?;
    let fp32 = trio.engine(&fp32_repo)?;
    let (cal, held) = super::samples(args, super::Order::Bgrx)?;
    eprintln!(
        "quantize: {} calibration and {} evaluation image(s) captured",
        cal.len(),
        held.len()
    );
    let captured = capture_tensors(&fp32, &cal)?;
    let mut quantized = HashMap::new();
    let mut models = Vec::new();
    for s in sources {
        let out = quantize_one(&trio, s, &captured, quantizer, &scratch)?;
        models.push(ModelReport::new(s, out.clone()));
        quantized.insert(s.model.clone(), out);
    }
    let int8_repo = eval_repo(&scratch.join("int8"), &originals, &quantized)?;
    let int8 = trio.engine(&int8_repo)?;
    let (reference, fp32_ms) = read_all(&fp32, &held)?;
    let (candidate, int8_ms) = read_all(&int8, &held)?;
    let mut lines = LineAgreement::default();
    for (r, c) in reference.iter().zip(&candidate) {
        lines.add(r, c, MIN_IOU);
    }
    let speed = Speed {
        unit: "image",
        fp32_ms,
        int8_ms,
    };
    let mut report = Report::new(args, models, (cal.len(), held.len()), speed);
    report.passed = lines.exact_share() >= args.min_exact;
    report.ocr = Some(lines);
    Ok(report)
}

/// Quantizes `s` on the tensors the FP32 OCR fed it; returns the quantized file.
fn quantize_one(
    trio: &Trio,
    s: &Source,
    captured: &OcrTensors,
    quantizer: &Quantizer,
    scratch: &Path,
) -> anyhow::Result<PathBuf> {
    let tensors = if s.model == trio.det {
        &captured.det
    } else if Some(&s.model) == trio.cls.as_ref() {
        &captured.cls
    } else {
        &captured.rec
    };
    if tensors.is_empty() {
        bail!(
            "model '{}': the calibration images gave it no input (no text found in them?)",
            s.model
        );
    }
    let config = &s.config;
    let input = config
        .input
        .first()
        .with_context(|| format!("model '{}' has no input in its configuration", s.model))?;
    // The engine adds the batch dimension of a batching model to the request's shape.
    let batched = config.max_batch_size > 0;
    let data = scratch.join(format!("calibration-{}", s.model));
    std::fs::create_dir_all(&data)?;
    for (i, (shape, values)) in tensors.iter().enumerate() {
        let shape: Vec<i64> = if batched && shape.len() == input.dims.len() {
            std::iter::once(1).chain(shape.iter().copied()).collect()
        } else {
            shape.clone()
        };
        super::write_npy(&data.join(format!("{i:05}-0.npy")), &shape, values)?;
    }
    let input = input.name.clone();
    let out = scratch.join(format!("{}.int8.onnx", s.model));
    let tool = quantizer.run(s, &[input], &data, &out)?;
    eprintln!(
        "quantize: {} ({} calibration tensors): ONNX Runtime's tool: {tool}",
        s.model,
        tensors.len()
    );
    super::same_io(&s.path, &out)?;
    Ok(out)
}

/// A repository of the trio for the evaluation: each model's configuration, and its version
/// folder with the original model file, or the quantized one where `replaced` has it.
fn eval_repo(
    dir: &Path,
    originals: &HashMap<String, Source>,
    replaced: &HashMap<String, PathBuf>,
) -> anyhow::Result<PathBuf> {
    for (model, s) in originals {
        let version = dir.join(model).join(s.version.to_string());
        std::fs::create_dir_all(&version)?;
        std::fs::copy(
            s.dir.join("config.pbtxt"),
            dir.join(model).join("config.pbtxt"),
        )
        .with_context(|| format!("copying the configuration of '{model}'"))?;
        let file = replaced.get(model).unwrap_or(&s.path);
        std::os::unix::fs::symlink(file, version.join(s.file_name()))?;
    }
    Ok(dir.to_path_buf())
}

fn view(f: &super::Frame) -> ImageView<'_> {
    ImageView {
        width: f.width as usize,
        height: f.height as usize,
        stride: f.width as usize * 4,
        format: PixelFormat::Bgra,
        data: &f.data,
    }
}

fn capture_tensors(engine: &OcrEngine, frames: &[super::Frame]) -> anyhow::Result<OcrTensors> {
    let mut tensors = OcrTensors::default();
    for f in frames {
        engine
            .read_capturing(&view(f), None, &mut tensors)
            .with_context(|| format!("reading {}", f.origin))?;
    }
    Ok(tensors)
}

/// Every frame's lines, and the mean milliseconds per image after one warm-up reading.
fn read_all(
    engine: &OcrEngine,
    frames: &[super::Frame],
) -> anyhow::Result<(Vec<Vec<OcrLine>>, f64)> {
    let read = |f: &super::Frame| -> anyhow::Result<Vec<OcrLine>> {
        Ok(engine
            .read(&view(f), None)
            .with_context(|| format!("reading {}", f.origin))?
            .lines)
    };
    if let Some(first) = frames.first() {
        read(first)?;
    }
    let t0 = Instant::now();
    let lines = frames
        .iter()
        .map(read)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0 / frames.len().max(1) as f64;
    Ok((lines, ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trio_is_parsed_with_an_optional_classifier() {
        let t = Trio::parse("ppocr_det,ppocr_cls,ppocr_rec").unwrap();
        assert_eq!(t.names(), ["ppocr_det", "ppocr_cls", "ppocr_rec"]);
        let t = Trio::parse("d,,r").unwrap();
        assert_eq!(t.names(), ["d", "r"]);
        assert!(Trio::parse("d,r").is_err());
        assert!(Trio::parse(",c,r").is_err());
    }
}
