//! Models whose inputs and outputs are not FP32: FP16 (`TYPE_FP16`), as exported for half-precision
//! inference, and 8-bit image inputs (`TYPE_UINT8`), as many TensorFlow exports take.
//!
//! `scripts/testmodels/make_fp16_io_model.py` (with the `onnx` package of the venv
//! `~/.cache/vigil/venv`) turns NanoDet's FP32 interface into FP16: its outputs are then exactly
//! NanoDet's outputs on the FP16-rounded input, rounded to FP16. The session converts at its boundary
//! (f32 requests rounded to half precision; FP16 outputs widened to f32), so:
//! - the FP16 model's outputs equal that closed form bit for bit;
//! - through the model server (config `TYPE_FP16`, the repository checks it against the file), it
//!   detects what the FP32 model detects on real images: same classes, boxes within 1 px.
//!
//! `scripts/testmodels/make_uint8_input_model.py` moves NanoDet's normalisation (mean/std) into the
//! graph behind a UINT8 input; its config drops `vigil.preprocess.mean`/`std`, so Vigil feeds it the
//! resized pixels (integers, converted exactly) and it detects what the FP32 model detects.
//!
//! The tests print `SKIPPED` and pass when the venv, its `onnx` module, ONNX Runtime or the NanoDet
//! weights are missing.

mod common;

use std::path::Path;

use common::{TempDir, root};
use vigil_core::modelspec::ModelSpec;
use vigil_core::postprocess::{Detection, nms};
use vigil_engine::runtime::{self, OnnxModel};
use vigil_engine::{InferRequest, ModelServer};

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

/// A repository with `nanodet` (the installed FP32 model), `nanodet_fp16` (its FP16-interface copy,
/// config `TYPE_FP16`) and `nanodet_u8` (8-bit input, normalisation in the graph, config
/// `TYPE_UINT8` without mean/std).
fn make_repo(tag: &str) -> Option<TempDir> {
    let python = prerequisites()?;
    let tmp = TempDir::new("model-types", tag);
    let models = root().join("models/nanodet");
    let source = models.join("1/model.onnx");
    let config = std::fs::read_to_string(models.join("config.pbtxt")).unwrap();
    const MEAN: &str = "103.53,116.28,123.675";
    const STD: &str = "57.375,57.12,58.395";
    let normalisation = [
        format!(
            "parameters {{ key: \"vigil.preprocess.mean\" value {{ string_value: \"{MEAN}\" }} }}\n"
        ),
        format!(
            "parameters {{ key: \"vigil.preprocess.std\" value {{ string_value: \"{STD}\" }} }}\n"
        ),
    ];
    for (name, data_type) in [
        ("nanodet", "TYPE_FP32"),
        ("nanodet_fp16", "TYPE_FP16"),
        ("nanodet_u8", "TYPE_UINT8"),
    ] {
        let dir = tmp.0.join(name);
        std::fs::create_dir_all(dir.join("1")).unwrap();
        std::fs::copy(models.join("labels.txt"), dir.join("labels.txt")).unwrap();
        let mut config = config
            .replace("name: \"nanodet\"", &format!("name: \"{name}\""))
            .replace("TYPE_FP32", data_type);
        let model = dir.join("1/model.onnx");
        match data_type {
            "TYPE_FP16" => common::run_script(
                &python,
                "scripts/testmodels/make_fp16_io_model.py",
                &[&source, &model],
            ),
            "TYPE_UINT8" => {
                for line in &normalisation {
                    assert!(config.contains(line.as_str()), "{config} lacks {line}");
                    config = config.replace(line.as_str(), "");
                }
                common::run_script(
                    &python,
                    "scripts/testmodels/make_uint8_input_model.py",
                    &[&source, &model, Path::new(MEAN), Path::new(STD)],
                );
            }
            _ => {
                std::fs::copy(&source, &model).unwrap();
            }
        }
        assert!(config.contains(data_type), "{config}");
        std::fs::write(dir.join("config.pbtxt"), config).unwrap();
    }
    Some(tmp)
}

/// `name` from `samples/media` pre-processed for `spec`'s model, with the image's size.
fn tensor(spec: &ModelSpec, name: &str) -> (Vec<f32>, u32, u32) {
    let (pixels, w, h) = common::rgba(name);
    (common::preprocessed(&spec.preprocess, pixels, w, h), w, h)
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
    let loaded = vigil_modelrepo::ModelRepository::open(&repo.0)
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
    let spec = ModelSpec::of_runtime(&handle.current()).expect("a detector");
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

/// `model` detects on `bus.jpg` and `zidane.jpg` what `nanodet` (FP32) detects: the same number,
/// and for each FP32 detection one of the same class with a box within 1 px and a score within 0.01.
/// Returns the number of detections matched.
fn detects_as_fp32(server: &ModelServer, repo: &Path, model: &str) -> usize {
    let mut total = 0;
    for image in ["bus.jpg", "zidane.jpg"] {
        let (want, classes) = detections(server, repo, "nanodet", image);
        let (got, _) = detections(server, repo, model, image);
        assert_eq!(classes, 80);
        assert!(!want.is_empty(), "{image}: the FP32 model detects nothing");
        assert_eq!(
            got.len(),
            want.len(),
            "{model}: {image}: {got:?} vs {want:?}"
        );
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
                .unwrap_or_else(|| panic!("{model}: {image}: no match for {w:?} in {got:?}"));
            assert!(
                (m.score - w.score).abs() <= 0.01,
                "{model}: {image}: {m:?} vs {w:?}"
            );
        }
        total += want.len();
    }
    total
}

#[test]
fn fp16_model_detects_what_the_fp32_model_detects() {
    let Some(repo) = make_repo("fp16-detections") else {
        return;
    };
    let server = ModelServer::new();
    let fp16 = server.acquire(&repo.0, "nanodet_fp16", None).unwrap();
    let runtime = fp16.current();
    assert_eq!(runtime.inputs()[0].dtype, "Float16");
    let total = detects_as_fp32(&server, &repo.0, "nanodet_fp16");
    println!("FP16: {total} detections matched");
    assert_eq!(runtime.stats().failures, 0);
}

#[test]
fn uint8_input_model_detects_what_the_fp32_model_detects() {
    let Some(repo) = make_repo("u8-detections") else {
        return;
    };
    let server = ModelServer::new();
    let u8_model = server.acquire(&repo.0, "nanodet_u8", None).unwrap();
    let runtime = u8_model.current();
    assert_eq!(runtime.inputs()[0].dtype, "Uint8");
    let spec = ModelSpec::of_runtime(&u8_model.current()).unwrap();
    assert_eq!(spec.preprocess.mean, [0.0; 3]);
    // The tensor Vigil feeds it holds whole pixel values, so the conversion to 8 bits is exact.
    let (x, _, _) = tensor(&spec, "bus.jpg");
    assert!(
        x.iter()
            .all(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v))
    );
    let total = detects_as_fp32(&server, &repo.0, "nanodet_u8");
    println!("UINT8 input: {total} detections matched");
    assert_eq!(runtime.stats().failures, 0);
}
