//! `vigil models quantize` end to end (issue 20): the real binary, the real models and media, and
//! ONNX Runtime's quantization tool in the project's venv.
//!
//! - NanoDet calibrated on frames of `vtest.avi` and `bikes.mp4`: the INT8 version agrees with the
//!   FP32 one on held-out frames (F1 ≥ 0.9 here, with 40 calibration frames; the full-size figure
//!   is `vigil bench --int8`'s), is written as version 2 with its report, validates and is served
//!   by the default version policy; a minimum it cannot reach writes nothing.
//! - PP-OCR detection and recognition calibrated on items of the inspection label set and checked
//!   on `box.png` and `imageTextN.png`: the report's line agreement is consistent with the minimum
//!   (95 % of the lines exact), and with `--force` both versions are written and served.
//! - Bad media and a model that is not a detector get errors naming them.
//!
//! The full-size figures (200 calibration frames, speed) are `vigil bench --int8` (README).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vigil_tests::{TempDir, repo_root, skip, vigil_bin};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The models and media, or why not (a failure under `CI=true`).
fn assets(files: &[&str]) -> bool {
    let root = repo_root();
    let mut missing: Vec<String> = files
        .iter()
        .map(|f| root.join(f))
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    let python = venv_python();
    let quantizer = Command::new(&python)
        .args(["-c", "import onnxruntime.quantization, ml_dtypes, sympy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !quantizer {
        missing.push(format!(
            "{} with onnxruntime.quantization",
            python.display()
        ));
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("{} missing (run make setup)", missing.join(", "));
    assert!(!ci(), "CI=true but: {why}");
    skip(format_args!("quantize: {why}"));
    false
}

fn venv_python() -> PathBuf {
    match std::env::var_os("VIGIL_VENV_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/vigil/venv/bin/python"),
    }
}

/// A repository of `models` with version 1 = the installed model file (linked).
fn repo_of(dir: &Path, models: &[&str]) -> PathBuf {
    let repo = dir.join("repo");
    for m in models {
        let src = repo_root().join("models").join(m);
        std::fs::create_dir_all(repo.join(m).join("1")).unwrap();
        for f in ["config.pbtxt", "labels.txt"] {
            if src.join(f).is_file() {
                std::fs::copy(src.join(f), repo.join(m).join(f)).unwrap();
            }
        }
        std::os::unix::fs::symlink(src.join("1/model.onnx"), repo.join(m).join("1/model.onnx"))
            .unwrap();
    }
    repo
}

fn vigil(args: &[&str]) -> Output {
    let out = Command::new(vigil_bin())
        .args(args)
        .env("VIGIL_VENV_PYTHON", venv_python())
        .output()
        .expect("run vigil");
    println!(
        "$ vigil {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn media(name: &str) -> String {
    repo_root()
        .join("samples/media")
        .join(name)
        .display()
        .to_string()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the report")).expect("JSON")
}

#[test]
fn nanodet_int8_agrees_with_fp32_and_is_written_as_a_new_version() {
    if !assets(&[
        "models/nanodet/1/model.onnx",
        "samples/media/vtest.avi",
        "samples/media/bikes.mp4",
    ]) {
        return;
    }
    let dir = TempDir::new("quantize-nanodet");
    let repo = repo_of(dir.path(), &["nanodet"]);
    let repo_s = repo.display().to_string();
    let json = dir.path().join("report.json");
    let (vtest, bikes) = (media("vtest.avi"), media("bikes.mp4"));
    let out = vigil(&[
        "models",
        "quantize",
        &repo_s,
        "nanodet",
        "--calibrate",
        &vtest,
        &bikes,
        "--frames",
        "40",
        "--held-out",
        "20",
        "--report",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "quantize failed");
    let r = report(&json);
    let f1 = r["detection"]["f1"].as_f64().unwrap();
    let boxes = r["detection"]["reference"].as_u64().unwrap();
    assert!(boxes >= 50, "too few FP32 boxes to judge: {boxes}");
    // Written without --force: the default recipe reached the default minimum.
    assert!(f1 >= 0.95, "F1 {f1} < 0.95");
    assert_eq!(r["passed"], true);
    assert_eq!(r["weight_bits"], 7);
    assert_eq!(r["method"], "moving-average");
    assert_eq!(r["quantize_scores"], false);
    assert_eq!(r["calibration_frames"], 40);
    assert_eq!(r["evaluation_frames"], 20);
    assert_eq!(r["models"][0]["version"], 2);
    let v2 = repo.join("nanodet/2");
    assert!(v2.join("model.onnx").is_file());
    assert_eq!(
        report(&v2.join("quantization.json"))["models"][0]["version"],
        2
    );
    let int8 = r["models"][0]["int8_bytes"].as_u64().unwrap();
    let fp32 = r["models"][0]["fp32_bytes"].as_u64().unwrap();
    assert!(int8 * 3 < fp32, "INT8 file {int8} bytes, FP32 {fp32}");
    // The repository serves it (latest policy) and it validates.
    let list = vigil(&["models", "list", &repo_s]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("versions 2") && text.contains("READY"),
        "{text}"
    );
    assert!(
        vigil(&["models", "validate", &repo_s, "nanodet"])
            .status
            .success()
    );

    // A minimum it cannot reach: an error, and no version 3.
    let out = vigil(&[
        "models",
        "quantize",
        &repo_s,
        "nanodet",
        "--from-version",
        "1",
        "--calibrate",
        &vtest,
        "--frames",
        "8",
        "--held-out",
        "4",
        "--min-f1",
        "1.01",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version written"));
    assert!(!repo.join("nanodet/3").exists());
}

#[test]
fn ocr_int8_reads_the_lines_the_fp32_models_read() {
    let models = ["ppocr_det", "ppocr_cls", "ppocr_rec"];
    let files: Vec<String> = models
        .iter()
        .map(|m| format!("models/{m}/1/model.onnx"))
        .collect();
    let mut needed: Vec<&str> = files.iter().map(String::as_str).collect();
    needed.extend([
        "samples/media/box.png",
        "samples/media/imageTextN.png",
        "samples/media/inspection/items/item-0030.jpg",
    ]);
    if !assets(&needed) {
        return;
    }
    let dir = TempDir::new("quantize-ocr");
    let repo = repo_of(dir.path(), &models);
    let json = dir.path().join("report.json");
    let items: Vec<String> = (1..=20)
        .map(|i| media(&format!("inspection/items/item-{i:04}.jpg")))
        .collect();
    let mut args: Vec<&str> = vec![
        "models",
        "quantize",
        repo.to_str().unwrap(),
        "ppocr_det",
        "ppocr_rec",
        "--ocr",
        "ppocr_det,ppocr_cls,ppocr_rec",
        "--calibrate",
    ];
    args.extend(items.iter().map(String::as_str));
    let (box_png, text_png) = (media("box.png"), media("imageTextN.png"));
    args.extend([
        "--evaluate",
        &box_png,
        &text_png,
        "--report",
        json.to_str().unwrap(),
    ]);
    // --force: written whatever the agreement (NanoDet's test covers a refusal); one run.
    args.push("--force");
    let out = vigil(&args);
    assert!(out.status.success(), "quantize --force failed");
    let r = report(&json);
    let lines = r["ocr"]["lines"].as_u64().unwrap();
    let matched = r["ocr"]["matched"].as_u64().unwrap();
    let exact = r["ocr"]["exact"].as_u64().unwrap();
    let cer = r["ocr"]["errors"].as_f64().unwrap() / r["ocr"]["chars"].as_f64().unwrap();
    assert!(lines >= 15, "FP32 read only {lines} lines");
    assert!(exact <= matched && matched <= lines);
    assert!((0.0..=1.0).contains(&cer), "CER {cer}");
    assert_eq!(r["calibration_frames"], 20);
    assert_eq!(r["evaluation_frames"], 2);
    assert!(r["speed"]["fp32_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        r["passed"],
        exact * 100 >= lines * 95,
        "the minimum's verdict"
    );
    assert!(
        !repo.join("ppocr_cls/2").exists(),
        "the classifier was not asked for"
    );
    let list = vigil(&["models", "list", repo.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&list.stdout);
    for m in ["ppocr_det", "ppocr_rec"] {
        assert!(repo.join(m).join("2/model.onnx").is_file(), "{m} version 2");
        assert!(
            text.lines()
                .any(|l| l.starts_with(m) && l.contains("versions 2") && l.contains("READY")),
            "{text}"
        );
    }

    // The recognizer's recipe: its MatMuls quantized dynamically (each activation's range taken at
    // run time), the rest in float. It must reach the default minimum without --force. A repository
    // of its own: the reference reads with the served versions of the other two models.
    let repo = repo_of(&dir.path().join("dynamic"), &models);
    let out = vigil(&[
        "models",
        "quantize",
        repo.to_str().unwrap(),
        "ppocr_rec",
        "--ocr",
        "ppocr_det,ppocr_cls,ppocr_rec",
        "--method",
        "dynamic",
        "--ops",
        "MatMul",
        "--calibrate",
        &media("inspection/items/item-0001.jpg"),
        "--evaluate",
        &box_png,
        &text_png,
        "--report",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "dynamic quantization of the recognizer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&json);
    let (lines, exact) = (
        r["ocr"]["lines"].as_u64().unwrap(),
        r["ocr"]["exact"].as_u64().unwrap(),
    );
    assert!(exact * 100 >= lines * 95, "{exact} of {lines} lines exact");
    assert_eq!(r["method"], "dynamic");
    assert!(repo.join("ppocr_rec/2/model.onnx").is_file());
}

#[test]
fn bad_media_and_models_are_named() {
    if !assets(&[
        "models/nanodet/1/model.onnx",
        "models/ppocr_det/1/model.onnx",
    ]) {
        return;
    }
    let dir = TempDir::new("quantize-bad");
    let repo = repo_of(dir.path(), &["nanodet", "ppocr_det"]);
    let repo_s = repo.display().to_string();
    // `vigil models quantize REPO MODEL --calibrate MEDIA` fails soon, naming every one of `needles`
    // (timed from the start of the process: the binary is built first).
    vigil_bin();
    let fails_naming = |model: &str, media: &str, needles: &[&str]| {
        let t0 = std::time::Instant::now();
        let out = vigil(&["models", "quantize", &repo_s, model, "--calibrate", media]);
        assert!(!out.status.success(), "{model} on {media} succeeded");
        let secs = t0.elapsed().as_secs_f64();
        assert!(secs < 10.0, "{model} on {media} took {secs:.1} s to fail");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "'{n}' not in: {err}");
        }
    };
    let missing = dir.path().join("no-such-clip.mp4");
    fails_naming("nanodet", missing.to_str().unwrap(), &["no-such-clip.mp4"]);
    let not_media = dir.path().join("notes.mp4");
    std::fs::write(&not_media, b"not a video").unwrap();
    fails_naming("nanodet", not_media.to_str().unwrap(), &["notes.mp4"]);
    fails_naming("ppocr_det", &media("box.png"), &["ppocr_det", "--ocr"]);
    assert!(!repo.join("nanodet/2").exists());
}
