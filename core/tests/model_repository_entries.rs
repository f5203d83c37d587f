//! The repository's own model entries: they load and validate (also strictly), and the model spec
//! `vigilinfer` derives from them does not depend on what auto-complete filled in.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::TempDir;
use vigil_core::modelspec::ModelSpec;
use vigil_modelrepo::{DataType, ModelRepository};

/// Writes `text` to `rel` under `dir`, making its folders.
fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn installed(name: &str) -> Option<PathBuf> {
    let dir = common::root().join("models");
    if dir.join(name).join("1/model.onnx").is_file() {
        Some(dir)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "models/{name}/1/model.onnx is not installed (run `make setup`)"
        );
        println!("SKIPPED: models/{name}/1/model.onnx is not installed (run `make setup`)");
        None
    }
}

/// The repository's own entries load and validate.
#[test]
fn repository_entries_load() {
    for name in ["nanodet", "centerface", "centernet"] {
        let Some(models) = installed(name) else {
            continue;
        };
        let repo = ModelRepository::open(&models).unwrap();
        let m = repo
            .load(name, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("{name}:\n{}", m.config.to_pbtxt());
        assert!(!m.config.input.is_empty() && !m.config.output.is_empty());
        if name != "centerface" {
            // CenterFace's decoder does not exist yet; its entry only documents the model.
            ModelSpec::from_config(&m.config, &m.labels).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let mut strict = repo.clone();
        strict.set_strict(true);
        strict
            .load(name, None)
            .unwrap_or_else(|e| panic!("{name} (strict): {e}"));
    }
}

/// CenterNet's entry without `format: FORMAT_NHWC` (its 4 dims include the batch of 1, and
/// Triton allows NHWC/NCHW only with 3 dims) is valid for Triton too and gives the same model
/// spec.
#[test]
fn centernet_without_format_is_valid() {
    let Some(models) = installed("centernet") else {
        return;
    };
    let text = fs::read_to_string(models.join("centernet/config.pbtxt")).unwrap();
    let fixed: String = text
        .lines()
        .filter(|l| !l.contains("format: FORMAT_NHWC"))
        .map(|l| format!("{l}\n"))
        .collect();
    let tmp = TempDir::new("modelrepo", "centernet");
    write(&tmp.0, "centernet/config.pbtxt", &fixed);
    fs::create_dir_all(tmp.0.join("centernet/1")).unwrap();
    std::os::unix::fs::symlink(
        models.join("centernet/1/model.onnx"),
        tmp.0.join("centernet/1/model.onnx"),
    )
    .unwrap();
    fs::copy(
        models.join("centernet/labels.txt"),
        tmp.0.join("centernet/labels.txt"),
    )
    .unwrap();
    let repo = ModelRepository::open(&tmp.0).unwrap();
    let m = repo.load("centernet", None).unwrap();
    let spec = ModelSpec::from_config(&m.config, &m.labels).unwrap();
    assert_eq!(spec.input_shape(1), vec![1, 512, 512, 3]);
    // Vigil feeds and decodes the model exactly as with the entry as written.
    let written = ModelRepository::open(&models)
        .unwrap()
        .load_config("centernet")
        .unwrap();
    let written_spec = ModelSpec::from_config(&written, &m.labels).unwrap();
    assert_eq!(spec, written_spec);
}

/// NanoDet with a config.pbtxt of only its `parameters`: everything else is auto-completed
/// from the ONNX file, and Vigil's model spec is the same as with the full entry.
#[test]
fn nanodet_with_only_parameters() {
    let Some(models) = installed("nanodet") else {
        return;
    };
    let text = fs::read_to_string(models.join("nanodet/config.pbtxt")).unwrap();
    let parameters: String = text
        .lines()
        .filter(|l| l.starts_with("parameters"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(parameters.lines().count(), 7, "{parameters}");
    let tmp = TempDir::new("modelrepo", "nanodet");
    write(&tmp.0, "nanodet/config.pbtxt", &parameters);
    fs::create_dir_all(tmp.0.join("nanodet/1")).unwrap();
    std::os::unix::fs::symlink(
        models.join("nanodet/1/model.onnx"),
        tmp.0.join("nanodet/1/model.onnx"),
    )
    .unwrap();
    fs::copy(
        models.join("nanodet/labels.txt"),
        tmp.0.join("nanodet/labels.txt"),
    )
    .unwrap();
    let repo = ModelRepository::open(&tmp.0).unwrap();
    let m = repo.load("nanodet", None).unwrap();
    let c = &m.config;
    println!("{}", c.to_pbtxt());
    assert_eq!(c.name, "nanodet");
    assert_eq!(c.backend, "onnxruntime");
    assert_eq!(c.platform, "onnxruntime_onnx");
    assert_eq!(c.max_batch_size, 4);
    assert_eq!(c.input.len(), 1);
    assert_eq!(c.input[0].name, "input_1:0");
    assert_eq!(c.input[0].data_type, DataType::Fp32);
    assert_eq!(c.input[0].dims, vec![3, 416, 416]);
    assert_eq!(c.output.len(), 6);
    assert!(c.output.iter().all(|o| o.dims.len() == 2));
    assert_eq!(
        c.dynamic_batching.as_ref().unwrap().preferred_batch_size,
        vec![4]
    );
    assert_eq!(c.parameters.len(), 7);
    assert_eq!(m.labels.len(), 80);

    let spec = ModelSpec::from_config(c, &m.labels).unwrap();
    let full = ModelRepository::open(&models)
        .unwrap()
        .load("nanodet", None)
        .unwrap();
    let full_spec = ModelSpec::from_config(&full.config, &full.labels).unwrap();
    assert_eq!(spec.preprocess, full_spec.preprocess);
    assert_eq!(spec.decoder, full_spec.decoder);
    assert_eq!(spec.input_name, full_spec.input_name);
    assert!(spec.batched);
}
