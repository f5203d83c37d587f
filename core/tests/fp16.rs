//! Models with FP16 inputs and outputs (`TYPE_FP16`), as exported for half-precision inference.
//!
//! `scripts/testmodels/make_fp16_io_model.py` (with the `onnx` package of the venv
//! `~/.cache/vigil/venv`) turns NanoDet's FP32 interface into FP16: its outputs are then exactly
//! NanoDet's outputs on the FP16-rounded input, rounded to FP16. The session converts at its boundary
//! (f32 requests rounded to half precision; FP16 outputs widened to f32), so:
//! - the FP16 model's outputs equal that closed form bit for bit;
//! - through the model server (config `TYPE_FP16`, the repository checks it against the file), it
//!   detects what the FP32 model detects on real images: same classes, boxes within 1 px.
//!
//! The tests print `SKIPPED` and pass when the venv, its `onnx` module, ONNX Runtime or the NanoDet
//! weights are missing.

mod common;

use std::path::Path;

use common::{TempDir, root};
use vigil_core::engine::{InferRequest, ModelServer};
use vigil_core::modelspec::ModelSpec;
use vigil_core::postprocess::{Detection, nms};
use vigil_core::preprocess::{ColorOrder, Preprocessor};
use vigil_core::runtime::{self, OnnxModel};

/// The venv's python with `onnx`, given ONNX Runtime and the NanoDet weights; else `None` (SKIPPED).
fn prerequisites() -> Option<std::path::PathBuf> {
    if let Err(e) = runtime::environment() {
        println!("SKIPPED: ONNX Runtime is not available: {e}");
        return None;
    }
    let weights = root().join("models/nanodet/1/model.onnx");
    if !weights.is_file() {
        println!(
            "SKIPPED: {} is not installed (run `make setup`)",
            weights.display()
        );
        return None;
    }
    common::python_with_onnx()
}

/// A repository with `nanodet` (the installed FP32 model) and `nanodet_fp16` (its FP16-interface
/// copy, config `TYPE_FP16`).
fn make_repo(tag: &str) -> Option<TempDir> {
    let python = prerequisites()?;
    let tmp = TempDir::new("fp16", tag);
    let models = root().join("models/nanodet");
    for (name, fp16) in [("nanodet", false), ("nanodet_fp16", true)] {
        let dir = tmp.0.join(name);
        std::fs::create_dir_all(dir.join("1")).unwrap();
        std::fs::copy(models.join("labels.txt"), dir.join("labels.txt")).unwrap();
        let config = std::fs::read_to_string(models.join("config.pbtxt")).unwrap();
        let model = dir.join("1/model.onnx");
        if fp16 {
            let config = config
                .replace("name: \"nanodet\"", "name: \"nanodet_fp16\"")
                .replace("TYPE_FP32", "TYPE_FP16");
            assert!(config.contains("TYPE_FP16"), "{config}");
            std::fs::write(dir.join("config.pbtxt"), config).unwrap();
            common::run_script(
                &python,
                "scripts/testmodels/make_fp16_io_model.py",
                &[&models.join("1/model.onnx"), &model],
            );
        } else {
            std::fs::write(dir.join("config.pbtxt"), config).unwrap();
            std::fs::copy(models.join("1/model.onnx"), &model).unwrap();
        }
    }
    Some(tmp)
}

/// `name` from `samples/media` pre-processed for `spec`'s model, with the image's size.
fn tensor(spec: &ModelSpec, name: &str) -> (Vec<f32>, u32, u32) {
    let path = root().join("samples/media").join(name);
    let rgba = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut pixels = rgba.into_raw();
    if spec.preprocess.color == ColorOrder::Bgr {
        for p in pixels.chunks_exact_mut(4) {
            p.swap(0, 2);
        }
    }
    let mut out = vec![0f32; spec.preprocess.tensor_len()];
    Preprocessor::new(spec.preprocess.clone())
        .run(&pixels, w, h, &mut out)
        .expect("pre-process");
    (out, w, h)
}

fn half(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

#[test]
fn fp16_outputs_are_the_fp32_outputs_on_the_rounded_input_rounded() {
    let Some(repo) = make_repo("closed-form") else {
        return;
    };
    let mut fp32 = OnnxModel::load(&repo.0.join("nanodet/1/model.onnx"), 0).unwrap();
    let mut fp16 = OnnxModel::load(&repo.0.join("nanodet_fp16/1/model.onnx"), 0).unwrap();
    assert_eq!(fp16.inputs()[0].dtype, "Float16");
    assert!(fp16.outputs().iter().all(|o| o.dtype == "Float16"));
    let loaded = vigil_core::modelrepo::ModelRepository::open(&repo.0)
        .and_then(|r| r.load("nanodet_fp16", None))
        .expect("the repository accepts the TYPE_FP16 config");
    let spec = ModelSpec::from_config(&loaded.config, &loaded.labels).expect("a detector");
    let (x, _, _) = tensor(&spec, "bus.jpg");
    let shape = spec.input_shape(1);
    let rounded: Vec<f32> = x.iter().map(|&v| half(v)).collect();
    assert!(
        rounded.iter().zip(&x).any(|(r, v)| r != v),
        "the test input must not be exactly representable in FP16"
    );
    let want: Vec<(String, Vec<usize>, Vec<f32>)> = fp32
        .run(&rounded, &shape, |views| {
            views
                .iter()
                .map(|v| {
                    let data = v.data.iter().map(|&d| half(d)).collect();
                    (v.name.to_owned(), v.shape.to_vec(), data)
                })
                .collect()
        })
        .unwrap();
    let got: Vec<(String, Vec<usize>, Vec<f32>)> = fp16
        .run(&x, &shape, |views| {
            views
                .iter()
                .map(|v| (v.name.to_owned(), v.shape.to_vec(), v.data.to_vec()))
                .collect()
        })
        .unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.0, &g.1), (&w.0, &w.1));
        let differing = g.2.iter().zip(&w.2).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "output {}: values differ", g.0);
    }
}

fn detections(
    server: &ModelServer,
    repo: &Path,
    model: &str,
    image: &str,
) -> (Vec<Detection>, usize) {
    let handle = server.acquire(repo, model, None).expect(model);
    let spec = handle.spec().expect("a detector");
    let (x, _, _) = tensor(&spec, image);
    let (w, h) = (spec.preprocess.width, spec.preprocess.height);
    let dims = spec.input_shape(1)[1..].to_vec();
    let decoder = spec.decoder.clone();
    let dets = handle
        .infer(InferRequest::new(&spec.input_name, dims, x), move |views| {
            decoder.decode(views, 0, w, h, 0.35)
        })
        .expect("inference")
        .expect("decoding");
    (nms(dets, 0.6, true, 100), spec.labels.len())
}

#[test]
fn fp16_model_detects_what_the_fp32_model_detects() {
    let Some(repo) = make_repo("detections") else {
        return;
    };
    let server = ModelServer::new();
    let fp16 = server.acquire(&repo.0, "nanodet_fp16", None).unwrap();
    let runtime = fp16.current();
    assert_eq!(runtime.inputs()[0].dtype, "Float16");
    let mut total = 0;
    for image in ["bus.jpg", "zidane.jpg"] {
        let (want, classes) = detections(&server, &repo.0, "nanodet", image);
        let (got, _) = detections(&server, &repo.0, "nanodet_fp16", image);
        assert_eq!(classes, 80);
        assert!(!want.is_empty(), "{image}: the FP32 model detects nothing");
        assert_eq!(got.len(), want.len(), "{image}: {got:?} vs {want:?}");
        for w in &want {
            let m = got
                .iter()
                .find(|g| {
                    g.class_id == w.class_id
                        && (g.bbox.x - w.bbox.x).abs() <= 1.0
                        && (g.bbox.y - w.bbox.y).abs() <= 1.0
                        && (g.bbox.w - w.bbox.w).abs() <= 1.0
                        && (g.bbox.h - w.bbox.h).abs() <= 1.0
                })
                .unwrap_or_else(|| panic!("{image}: no FP16 match for {w:?} in {got:?}"));
            assert!((m.score - w.score).abs() <= 0.01, "{image}: {m:?} vs {w:?}");
        }
        total += want.len();
    }
    println!("{total} detections matched");
    let stats = runtime.stats();
    assert_eq!(stats.failures, 0);
}
