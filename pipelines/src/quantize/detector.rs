//! Quantizing a detector (a model `vigilinfer` runs): calibration tensors made by Vigil's own
//! pre-processing, the check by the agreement of the detections after decoding and NMS.

use super::{
    Agreement, DetectionCheck, ModelReport, QuantizeArgs, Quantizer, Report, Source, Speed,
};
use anyhow::{Context, bail};
use std::time::Instant;
use vigil_core::modelspec::ModelSpec;
use vigil_core::postprocess::{Detection, nms};
use vigil_engine::preprocess::{ColorOrder, Preprocessor};
use vigil_engine::runtime::OnnxModel;

/// Boxes overlap this much to be the same detection (and NMS as `vigilinfer`'s default).
const IOU: f32 = 0.5;
const MAX_DETECTIONS: usize = 100;
/// Unmatched boxes scored under the threshold plus this are reported as threshold crossings.
pub(super) const NEAR_THRESHOLD: f32 = 0.05;

pub fn run(
    args: &QuantizeArgs,
    sources: &[Source],
    quantizer: &Quantizer,
) -> anyhow::Result<Report> {
    let [source] = sources else {
        bail!("quantize one detector at a time (or name the OCR models with --ocr)");
    };
    let spec = ModelSpec::from_config(&source.config, &source.labels).with_context(|| {
        format!(
            "model '{}' is not a detector Vigil decodes (for the OCR models add --ocr DET,CLS,REC)",
            source.model
        )
    })?;
    let order = match spec.preprocess.color {
        ColorOrder::Bgr => super::Order::Bgrx,
        ColorOrder::Rgb => super::Order::Rgbx,
    };
    let (cal, held) = super::samples(args, order)?;
    eprintln!(
        "quantize: {} calibration and {} evaluation frame(s) captured",
        cal.len(),
        held.len()
    );
    let scratch = quantizer_dir(quantizer);
    let data = scratch.join(format!("calibration-{}", source.model));
    std::fs::create_dir_all(&data)?;
    let mut pre = Preprocessor::new(spec.preprocess.clone());
    let shape = spec.input_shape(1);
    for (i, f) in cal.iter().enumerate() {
        let t = tensor(&mut pre, &spec, f)?;
        super::write_npy(&data.join(format!("{i:05}-0.npy")), &shape, &t)?;
    }
    let out = scratch.join(format!("{}.int8.onnx", source.model));
    let tool = quantizer.run(source, std::slice::from_ref(&spec.input_name), &data, &out)?;
    eprintln!("quantize: ONNX Runtime's tool: {tool}");
    super::same_io(&source.path, &out)?;
    let held_tensors = held
        .iter()
        .map(|f| tensor(&mut pre, &spec, f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (reference, fp32_ms) = detect_all(&source.path, &spec, &held_tensors, args.threshold)?;
    let (candidate, int8_ms) = detect_all(&out, &spec, &held_tensors, args.threshold)?;
    let mut agreement = Agreement::default();
    for (r, c) in reference.iter().zip(&candidate) {
        agreement.add(r, c, IOU, args.threshold + NEAR_THRESHOLD);
    }
    let check = DetectionCheck {
        threshold: args.threshold,
        iou: IOU,
        agreement,
        precision: agreement.precision(),
        recall: agreement.recall(),
        f1: agreement.f1(),
        score_drift_mean: agreement.drift_mean(),
    };
    let speed = Speed {
        unit: "frame",
        fp32_ms,
        int8_ms,
    };
    let mut report = Report::new(
        args,
        vec![ModelReport::new(source, out)],
        (cal.len(), held.len()),
        speed,
    );
    report.passed = check.f1 >= args.min_f1;
    report.detection = Some(check);
    Ok(report)
}

pub(super) fn quantizer_dir(q: &Quantizer) -> std::path::PathBuf {
    q.script
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

fn tensor(pre: &mut Preprocessor, spec: &ModelSpec, f: &super::Frame) -> anyhow::Result<Vec<f32>> {
    let mut t = vec![0f32; spec.preprocess.tensor_len()];
    pre.run(&f.data, f.width, f.height, &mut t)
        .with_context(|| format!("pre-processing {}", f.origin))?;
    Ok(t)
}

/// The detections of `model` on every tensor (decoded, NMS per class as `vigilinfer` does), and
/// the mean milliseconds per run after one warm-up run.
fn detect_all(
    model: &std::path::Path,
    spec: &ModelSpec,
    tensors: &[Vec<f32>],
    threshold: f32,
) -> anyhow::Result<(Vec<Vec<Detection>>, f64)> {
    let mut session = OnnxModel::load_with(model, Default::default())
        .with_context(|| format!("loading {}", model.display()))?;
    let shape = spec.input_shape(1);
    let (w, h) = (spec.preprocess.width, spec.preprocess.height);
    let mut once = |t: &[f32]| -> anyhow::Result<Vec<Detection>> {
        let decoded = session
            .run(t, &shape, |outputs| {
                spec.decoder.decode(outputs, 0, w, h, threshold)
            })
            .with_context(|| format!("running {}", model.display()))?
            .with_context(|| format!("decoding the outputs of {}", model.display()))?;
        Ok(nms(decoded, IOU, true, MAX_DETECTIONS))
    };
    if let Some(first) = tensors.first() {
        once(first)?;
    }
    let t0 = Instant::now();
    let dets = tensors
        .iter()
        .map(|t| once(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0 / tensors.len().max(1) as f64;
    Ok((dets, ms))
}
