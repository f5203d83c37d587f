//! Issue 8, acceptance 4: on a machine without an NVIDIA driver every GPU request of a config falls back
//! to the CPU with exactly one warning per process each, produces the detections of the CPU config,
//! and nothing panics.
//!
//! The real `vigil` binary runs NanoDet on 24 frames of `samples/media/vtest.avi` (people walking),
//! re-encoded once by `ffmpeg` to H.264 (`libx264`, so the NVDEC policy applies to an NVDEC codec;
//! every run decodes the same file) four times:
//!
//! 1. the CPU config: `decoder: cpu`, the model as committed (`KIND_CPU`) — the reference;
//! 2. two sources with `decoder: auto` and two with `decoder: gpu`, and the model with
//!    `instance_group [ { count: 2, kind: KIND_GPU } ]` (which asks for the CUDA execution provider),
//!    with `encoder: nvh264enc` on the RTSP and file outputs (every MP4 file has every frame);
//! 3. the model with `optimization.execution_accelerators.gpu_execution_accelerator [ { name: "tensorrt" } ]`
//!    and its engine cache enabled in a folder of the test (on a GPU: the folder must fill);
//! 4. the model with `gpu_execution_accelerator [ { name: "cuda" } ]`.
//!
//! Expected here: run 2 prints one `decoder=auto` warning, one `decoder=gpu` warning (four sources,
//! two instances: still one each), one CUDA warning and one NVENC warning per output; run 3 one
//! TensorRT warning and one CUDA warning (TensorRT's fallback is CUDA, then the CPU); run 4 one CUDA
//! warning. Every source of every
//! run gives the reference's detections: same frames, same labels, boxes within 2 px (the issue's
//! tolerance; on the CPU they are equal up to batch-size rounding).
//!
//! The checks that depend on the machine are guarded: on a machine where NVDEC registers, the decoder
//! warnings are not expected; where the ONNX Runtime library offers CUDA/TensorRT and a GPU is
//! present, the provider warnings are not expected (the detections must then still match within
//! 2 px: acceptance 2). Skips with a message when the media, the model or `ffmpeg` are missing.
//!
//! An FP16-interface copy of NanoDet (`TYPE_FP16`) detects what the FP32 model detects. GPU only
//! (SKIPPED elsewhere): NanoDet with `preprocess: gpu` against `preprocess: cpu`, with the FP32 model
//! and with the FP16 copy (FP16 device tensors).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_tests::{TempDir, Vigil, read_events, repo_root};

const FRAMES: u64 = 24;

/// (label, x, y, width, height) of every object, per (source, frame).
type Detections = BTreeMap<(String, u64), Vec<(String, [f64; 4])>>;

fn detections(events: &[serde_json::Value]) -> Detections {
    let mut out = Detections::new();
    for e in events {
        let key = (
            e["source"].as_str().unwrap().to_owned(),
            e["frame"].as_u64().unwrap(),
        );
        let mut objects: Vec<(String, [f64; 4])> = e["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let b = &o["bbox"];
                let f = |k: &str| b[k].as_f64().unwrap();
                (
                    o["label"].as_str().unwrap().to_owned(),
                    [f("x"), f("y"), f("w"), f("h")],
                )
            })
            .collect();
        objects.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1[0].total_cmp(&b.1[0]))
                .then(a.1[1].total_cmp(&b.1[1]))
        });
        assert!(
            out.insert(key.clone(), objects).is_none(),
            "two events for {key:?}"
        );
    }
    out
}

/// Every (frame, objects) of `source` in `got` matches the reference's single source `reference`.
fn assert_same(reference: &Detections, got: &Detections, source: &str, run: &str) {
    let want: Vec<_> = reference.iter().map(|((_, f), o)| (*f, o)).collect();
    let have: Vec<_> = got
        .iter()
        .filter(|((s, _), _)| s == source)
        .map(|((_, f), o)| (*f, o))
        .collect();
    assert_eq!(
        have.len(),
        want.len(),
        "{run}: source {source}: frames with events"
    );
    for ((fw, ow), (fh, oh)) in want.iter().zip(&have) {
        assert_eq!(fw, fh, "{run}: source {source}: frame numbers");
        let labels =
            |o: &Vec<(String, [f64; 4])>| o.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            labels(ow),
            labels(oh),
            "{run}: source {source}: frame {fw}: labels"
        );
        for ((_, a), (_, b)) in ow.iter().zip(oh.iter()) {
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= 2.0,
                "{run}: source {source}: frame {fw}: boxes {a:?} and {b:?} differ by {worst} px"
            );
        }
    }
}

/// A model repository in `dir` holding `nanodet` with `config.pbtxt`'s instance group replaced by
/// `extra` (the weights are linked, not copied).
fn repository(dir: &Path, extra: &str) -> std::path::PathBuf {
    repository_of(
        dir,
        extra,
        &repo_root().join("models/nanodet/1/model.onnx"),
        false,
    )
}

/// As [`repository`], with the weights `model` (an FP16-interface copy of NanoDet when `fp16`: the
/// config then declares `TYPE_FP16`).
fn repository_of(dir: &Path, extra: &str, weights: &Path, fp16: bool) -> std::path::PathBuf {
    let root = repo_root();
    let repo = dir.join("models");
    let model = repo.join("nanodet");
    std::fs::create_dir_all(model.join("1")).unwrap();
    let mut config = std::fs::read_to_string(root.join("models/nanodet/config.pbtxt")).unwrap();
    let group = "instance_group [ { count: 1, kind: KIND_CPU } ]";
    assert!(
        config.contains(group),
        "models/nanodet/config.pbtxt changed: no '{group}'"
    );
    if fp16 {
        assert!(config.contains("TYPE_FP32"), "{config}");
        config = config.replace("TYPE_FP32", "TYPE_FP16");
    }
    std::fs::write(model.join("config.pbtxt"), config.replace(group, extra)).unwrap();
    for f in std::fs::read_dir(root.join("models/nanodet")).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() && f.file_name().unwrap() != "config.pbtxt" {
            std::fs::copy(&f, model.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::os::unix::fs::symlink(weights, model.join("1/model.onnx")).unwrap();
    repo
}

/// Runs `vigil run` on a config with `sources` ((name, decoder) pairs) and the model repository
/// `repo`; returns the detections and stderr.
fn run(
    dir: &Path,
    tag: &str,
    repo: &Path,
    clip: &Path,
    sources: &[(&str, &str)],
) -> (Detections, String) {
    run_with(dir, tag, repo, clip, sources, "")
}

/// As [`run`], with `inference_keys` (YAML lines, e.g. `"  preprocess: gpu\n"`) added to the
/// `inference` section.
fn run_with(
    dir: &Path,
    tag: &str,
    repo: &Path,
    clip: &Path,
    sources: &[(&str, &str)],
    inference_keys: &str,
) -> (Detections, String) {
    run_with_outputs(dir, tag, repo, clip, sources, inference_keys, "")
}

/// As [`run_with`], with `outputs_keys` (YAML lines) added to the `outputs` section.
fn run_with_outputs(
    dir: &Path,
    tag: &str,
    repo: &Path,
    clip: &Path,
    sources: &[(&str, &str)],
    inference_keys: &str,
    outputs_keys: &str,
) -> (Detections, String) {
    let events = dir.join(format!("{tag}.jsonl"));
    let mut yaml = format!(
        "name: {tag}\nmodel_repository: {}\nsources:\n",
        repo.display()
    );
    for (name, decoder) in sources {
        yaml += &format!(
            "  - name: {name}\n    uri: {}\n    decoder: {decoder}\n",
            clip.display()
        );
    }
    yaml += &format!(
        "inference:\n  model: nanodet\n  threshold: 0.4\n{inference_keys}outputs:\n  events:\n    path: {}\n{outputs_keys}realtime: false\n",
        events.display()
    );
    let config = dir.join(format!("{tag}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    let (mut vigil, _lines) = Vigil::run(&config, &["--progress", "0"]);
    let status = vigil.wait(Duration::from_secs(300));
    let stderr = vigil.stderr_text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{tag}: vigil did not finish cleanly; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("CRITICAL"),
        "{tag}: {stderr}"
    );
    let d = detections(&read_events(&events).unwrap());
    for w in stderr.lines().filter(|l| l.contains("warning")) {
        eprintln!("{tag}: {w}");
    }
    (d, stderr)
}

/// A temporary folder tagged `tag` holding the clip of [`make_clip`]; `None` (with a SKIPPED line)
/// when the media, the model or `ffmpeg` are missing.
fn prepared(tag: &str) -> Option<(TempDir, std::path::PathBuf)> {
    let root = repo_root();
    let media = root.join("samples/media/vtest.avi");
    let model_file = root.join("models/nanodet/1/model.onnx");
    if !vigil_tests::installed_with_ffmpeg(&[&media, &model_file]) {
        return None;
    }
    let dir = TempDir::new(tag);
    let clip = make_clip(dir.path(), &media);
    Some((dir, clip))
}

/// `FRAMES` frames of `media` re-encoded to H.264 as `dir/clip.mp4`.
fn make_clip(dir: &Path, media: &Path) -> std::path::PathBuf {
    let clip = dir.join("clip.mp4");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(media)
        .args(["-frames:v", &FRAMES.to_string(), "-an", "-c:v", "libx264"])
        .args(["-pix_fmt", "yuv420p", "-crf", "12", "-bf", "0"])
        .arg(&clip)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    clip
}

/// The number of video frames of the MP4 file `path` (`ffprobe`, frames counted by decoding).
fn mp4_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: ffprobe says '{text}'", path.display()))
}

/// The largest difference (px) between the boxes of `source` in `got` and the reference's, after
/// [`assert_same`] (same frames and labels).
fn worst_box_difference(reference: &Detections, got: &Detections, source: &str) -> f64 {
    let have = got.iter().filter(|((s, _), _)| s == source).map(|(_, o)| o);
    let mut worst = 0f64;
    for (ow, oh) in reference.values().zip(have) {
        for ((_, a), (_, b)) in ow.iter().zip(oh) {
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    worst
}

/// Whether GPU pre-processing can run in this process: a CUDA device, NVRTC, and the CUDA
/// execution provider in the ONNX Runtime library; the reason when not.
fn gpu_preprocessing_usable() -> Result<(), String> {
    let a = vigil_engine::gpu::probe();
    if a.devices().is_none() {
        return Err(format!("no NVIDIA driver or device ({:?})", a.driver));
    }
    if let Err(e) = &a.nvrtc {
        return Err(format!("no NVRTC ({e})"));
    }
    if vigil_engine::runtime::environment().is_err()
        || !vigil_engine::runtime::ExecutionProvider::Cuda.is_available()
    {
        return Err("the ONNX Runtime library has no CUDA execution provider".into());
    }
    Ok(())
}

/// Lines of `stderr` containing every one of `needles`.
fn count(stderr: &str, needles: &[&str]) -> usize {
    stderr
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[test]
fn gpu_requests_fall_back_to_the_cpu_with_one_warning_each() {
    let Some((dir, clip)) = prepared("gpu-fallback") else {
        return;
    };

    gst::init().unwrap();
    let nvdec = gst::ElementFactory::find("nvh264dec").is_some();
    let gpu = vigil_engine::gpu::probe();
    let provider_usable = |p: vigil_engine::runtime::ExecutionProvider| {
        gpu.driver.is_ok() && vigil_engine::runtime::environment().is_ok() && p.is_available()
    };
    let cuda = provider_usable(vigil_engine::runtime::ExecutionProvider::Cuda);
    let tensorrt = provider_usable(vigil_engine::runtime::ExecutionProvider::TensorRt);
    eprintln!(
        "NVDEC: {nvdec}, GPU: {:?}, CUDA EP: {cuda}, TensorRT EP: {tensorrt}",
        gpu.driver
    );

    // 1. The reference: everything on the CPU.
    let cpu_repo = repository(
        &dir.path().join("cpu"),
        "instance_group [ { count: 1, kind: KIND_CPU } ]",
    );
    let (reference, stderr) = run(dir.path(), "cpu", &cpu_repo, &clip, &[("ref", "cpu")]);
    assert_eq!(reference.len() as u64, FRAMES, "reference frames");
    eprintln!(
        "reference: {} objects in {FRAMES} frames",
        reference.values().map(Vec::len).sum::<usize>()
    );
    assert!(
        reference.values().map(Vec::len).sum::<usize>() > FRAMES as usize,
        "the reference should detect the people: {reference:?}"
    );
    assert_eq!(
        count(&stderr, &["NVDEC"]),
        0,
        "decoder: cpu warns: {stderr}"
    );
    assert_eq!(
        count(&stderr, &["execution provider"]),
        0,
        "CPU model warns: {stderr}"
    );

    // 2. decoder auto and gpu (two sources each), KIND_GPU with two instances.
    let gpu_repo = repository(
        &dir.path().join("kind-gpu"),
        "instance_group [ { count: 2, kind: KIND_GPU } ]",
    );
    let sources = [
        ("auto1", "auto"),
        ("auto2", "auto"),
        ("gpu1", "gpu"),
        ("gpu2", "gpu"),
    ];
    // With NVENC asked for on both encoded outputs (an RTSP server and MP4 files).
    let (got, stderr) = run_with_outputs(
        dir.path(),
        "kind-gpu",
        &gpu_repo,
        &clip,
        &sources,
        "",
        &format!(
            "  rtsp:\n    port: 0\n    encoder: nvh264enc\n  file:\n    path: {}\n    encoder: nvh264enc\n",
            dir.path().join("kind-gpu.mp4").display()
        ),
    );
    for (name, _) in sources {
        assert_same(&reference, &got, name, "decoder auto/gpu, KIND_GPU");
        let file = dir.path().join(format!("kind-gpu-{name}.mp4"));
        assert_eq!(mp4_frames(&file), FRAMES, "{}", file.display());
    }
    let nvenc = gst::ElementFactory::find("nvh264enc").is_some();
    for key in ["outputs.rtsp.encoder", "outputs.file.encoder"] {
        assert_eq!(
            count(&stderr, &[key, "nvh264enc is not available"]),
            usize::from(!nvenc),
            "{key}: {stderr}"
        );
    }
    let expect_decoder = usize::from(!nvdec);
    assert_eq!(
        count(&stderr, &["decoder=auto", "no NVDEC decoder"]),
        expect_decoder,
        "{stderr}"
    );
    assert_eq!(
        count(&stderr, &["decoder=gpu", "no NVDEC decoder"]),
        expect_decoder,
        "{stderr}"
    );
    assert_eq!(
        count(&stderr, &["CUDA execution provider"]),
        usize::from(!cuda),
        "{stderr}"
    );
    assert_eq!(count(&stderr, &["TensorRT"]), 0, "{stderr}");

    // 3. The TensorRT accelerator, with its engine cache in a folder of the test (Triton's parameters).
    let trt_cache = dir.path().join("trt-cache");
    let trt_repo = repository(
        &dir.path().join("tensorrt"),
        &format!(
            "instance_group [ {{ count: 1, kind: KIND_GPU }} ]\n\
             optimization {{ execution_accelerators {{ gpu_execution_accelerator [ {{ name: \"tensorrt\"\n\
               parameters {{ key: \"trt_engine_cache_enable\" value: \"1\" }}\n\
               parameters {{ key: \"trt_engine_cache_path\" value: \"{}\" }} }} ] }} }}",
            trt_cache.display()
        ),
    );
    let (got, stderr) = run(dir.path(), "tensorrt", &trt_repo, &clip, &[("trt", "cpu")]);
    assert_same(&reference, &got, "trt", "TensorRT accelerator");
    let cached = std::fs::read_dir(&trt_cache).map_or(0, |d| d.count());
    if tensorrt {
        assert!(
            cached > 0,
            "TensorRT wrote no engine into {}",
            trt_cache.display()
        );
        eprintln!("GPU: TensorRT engine cache: {cached} files");
    } else {
        assert_eq!(cached, 0, "no TensorRT session, no cache");
    }
    assert_eq!(
        count(&stderr, &["TensorRT execution provider"]),
        usize::from(!tensorrt),
        "{stderr}"
    );
    assert_eq!(
        count(&stderr, &["CUDA execution provider"]),
        usize::from(!tensorrt && !cuda),
        "{stderr}"
    );

    // 4. The CUDA accelerator.
    let cuda_repo = repository(
        &dir.path().join("cuda"),
        "instance_group [ { count: 1, kind: KIND_GPU } ]\n\
         optimization { execution_accelerators { gpu_execution_accelerator [ { name: \"cuda\" } ] } }",
    );
    let (got, stderr) = run(dir.path(), "cuda", &cuda_repo, &clip, &[("cuda", "cpu")]);
    assert_same(&reference, &got, "cuda", "CUDA accelerator");
    assert_eq!(
        count(&stderr, &["CUDA execution provider"]),
        usize::from(!cuda),
        "{stderr}"
    );
    assert_eq!(count(&stderr, &["TensorRT"]), 0, "{stderr}");
}

/// `inference.preprocess: gpu` (vigilinfer `preprocess=gpu`) on a `KIND_GPU` model: on a machine
/// without a GPU, one warning per process (two sources, two `vigilinfer`s) and the CPU path's
/// detections. Where the GPU path is usable here, no warning and the CPU path's detections within
/// 2 px (the GPU-only test below checks that more closely).
#[test]
fn preprocess_gpu_falls_back_to_the_cpu_path_with_one_warning() {
    let Some((dir, clip)) = prepared("gpu-preprocess-fallback") else {
        return;
    };
    let usable = gpu_preprocessing_usable();
    eprintln!("GPU pre-processing usable: {usable:?}");

    let cpu_repo = repository(
        &dir.path().join("cpu"),
        "instance_group [ { count: 1, kind: KIND_CPU } ]",
    );
    let (reference, _) = run_with(
        dir.path(),
        "cpu",
        &cpu_repo,
        &clip,
        &[("ref", "cpu")],
        "  preprocess: cpu\n",
    );
    assert_eq!(reference.len() as u64, FRAMES, "reference frames");
    assert!(reference.values().map(Vec::len).sum::<usize>() > FRAMES as usize);

    let gpu_repo = repository(
        &dir.path().join("kind-gpu"),
        "instance_group [ { count: 1, kind: KIND_GPU } ]",
    );
    let (got, stderr) = run_with(
        dir.path(),
        "preprocess-gpu",
        &gpu_repo,
        &clip,
        &[("a", "cpu"), ("b", "cpu")],
        "  preprocess: gpu\n",
    );
    let warnings = count(&stderr, &["preprocess=gpu", "pre-processed on the CPU"]);
    for source in ["a", "b"] {
        assert_same(&reference, &got, source, "preprocess: gpu");
        eprintln!(
            "source {source}: largest box difference to the CPU reference {:.6} px",
            worst_box_difference(&reference, &got, source)
        );
    }
    match usable {
        Err(_) => {
            assert_eq!(warnings, 1, "{stderr}");
            // The CPU path itself: equal up to the rounding of batches of two frames (the shared
            // batcher takes both sources' frames together; NanoDet's per-image outputs in a batch
            // match batch 1 to ~1e-6).
            for source in ["a", "b"] {
                let worst = worst_box_difference(&reference, &got, source);
                assert!(worst < 0.01, "source {source}: {worst} px");
            }
        }
        Ok(()) => assert_eq!(warnings, 0, "{stderr}"),
    }
    assert_eq!(
        count(&stderr, &["gpu-preprocessing", "refused"]),
        0,
        "{stderr}"
    );
}

/// GPU only (skipped with the reason otherwise): NanoDet on `KIND_GPU` (CUDA provider) with
/// `preprocess: gpu` against `preprocess: cpu`, on the same frames: the same frames and labels, and
/// boxes within 2 px. Two sources, so frames of both are pre-processed in one launch.
#[test]
fn gpu_preprocessing_matches_the_cpu_path_on_nanodet() {
    if let Err(why) = gpu_preprocessing_usable() {
        println!("SKIPPED: GPU pre-processing cannot run here: {why}");
        return;
    }
    let Some((dir, clip)) = prepared("gpu-preprocess") else {
        return;
    };
    let repo = repository(
        &dir.path().join("kind-gpu"),
        "instance_group [ { count: 1, kind: KIND_GPU } ]",
    );
    let (reference, _) = run_with(
        dir.path(),
        "gpu-cpu-pre",
        &repo,
        &clip,
        &[("a", "cpu")],
        "  preprocess: cpu\n",
    );
    assert_eq!(reference.len() as u64, FRAMES, "reference frames");
    gpu_preprocessing_gives(&reference, dir.path(), &repo, &clip, "NanoDet");
}

/// Runs `vigil run` with `preprocess: gpu` on two sources of `clip` with the repository `repo` and
/// checks that the GPU path was taken and that both give `reference`'s detections (boxes within
/// 2 px); prints the largest box difference per source.
fn gpu_preprocessing_gives(
    reference: &Detections,
    dir: &Path,
    repo: &Path,
    clip: &Path,
    model: &str,
) {
    let sources = [("a", "cpu"), ("b", "cpu")];
    let tag = format!("gpu-pre-{}", model.to_lowercase().replace(' ', "-"));
    let (got, stderr) = run_with(dir, &tag, repo, clip, &sources, "  preprocess: gpu\n");
    assert_eq!(
        count(&stderr, &["pre-processed on the CPU"]),
        0,
        "{model}: the GPU path was not taken: {stderr}"
    );
    for (source, _) in sources {
        let run = format!("{model}, preprocess: gpu on the GPU");
        assert_same(reference, &got, source, &run);
        eprintln!(
            "GPU: {model}: source {source}: max |box(gpu pre-processing) - box(cpu)| {:.3} px",
            worst_box_difference(reference, &got, source)
        );
    }
}

/// NanoDet with an FP16 interface: `testmodels/nanodet_fp16.onnx` of the repository root where
/// `scripts/gpu-check.sh prepare` put it, else made in `dir` by
/// `scripts/testmodels/make_fp16_io_model.py` with the venv `~/.cache/vigil/venv`; `None` (with a
/// SKIPPED line) when neither can be had.
fn fp16_nanodet(dir: &Path) -> Option<std::path::PathBuf> {
    let root = repo_root();
    let prepared = root.join("testmodels/nanodet_fp16.onnx");
    if prepared.is_file() {
        return Some(prepared);
    }
    let python = Path::new(&std::env::var_os("HOME")?).join(".cache/vigil/venv/bin/python");
    let out = dir.join("nanodet_fp16.onnx");
    let made = Command::new(&python)
        .arg(root.join("scripts/testmodels/make_fp16_io_model.py"))
        .arg(root.join("models/nanodet/1/model.onnx"))
        .arg(&out)
        .output()
        .is_ok_and(|o| o.status.success());
    if !made {
        println!(
            "SKIPPED: no {} and it cannot be made with {}",
            prepared.display(),
            python.display()
        );
        return None;
    }
    Some(out)
}

/// An FP16-interface NanoDet (`TYPE_FP16`, `KIND_GPU`) run by `vigil run` detects what the FP32 model
/// detects (same frames and labels, boxes within 2 px; here on the CPU after the fallback). GPU only
/// (skipped with the reason otherwise): with `preprocess: gpu` the batch tensor is made in half
/// precision by the kernel and bound to the session as it is, and the detections match those of the
/// same model fed by the CPU path (rounded to FP16 by the session) within 2 px.
#[test]
fn fp16_model_detects_as_fp32_and_gpu_preprocessing_feeds_it() {
    let Some((dir, clip)) = prepared("fp16") else {
        return;
    };
    let Some(weights) = fp16_nanodet(dir.path()) else {
        return;
    };
    let fp32 = repository(
        &dir.path().join("fp32"),
        "instance_group [ { count: 1, kind: KIND_CPU } ]",
    );
    let (fp32_reference, _) = run(dir.path(), "fp16-fp32", &fp32, &clip, &[("a", "cpu")]);
    assert_eq!(fp32_reference.len() as u64, FRAMES, "reference frames");
    let repo = repository_of(
        &dir.path().join("kind-gpu-fp16"),
        "instance_group [ { count: 1, kind: KIND_GPU } ]",
        &weights,
        true,
    );
    let (reference, _) = run_with(
        dir.path(),
        "fp16-cpu-pre",
        &repo,
        &clip,
        &[("a", "cpu")],
        "  preprocess: cpu\n",
    );
    assert_same(&fp32_reference, &reference, "a", "FP16 model against FP32");
    eprintln!(
        "FP16 model: max |box(FP16) - box(FP32)| {:.3} px",
        worst_box_difference(&fp32_reference, &reference, "a")
    );
    if let Err(why) = gpu_preprocessing_usable() {
        println!("SKIPPED: GPU pre-processing cannot run here: {why}");
        return;
    }
    gpu_preprocessing_gives(&reference, dir.path(), &repo, &clip, "FP16 NanoDet");
}
