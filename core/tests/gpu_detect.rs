//! The GPU check's core part (`scripts/gpu-check.sh`, no GStreamer needed): NanoDet on ONNX
//! Runtime's CUDA execution provider, fed by frame requests that the instance pre-processes on the
//! GPU and binds on the device (IoBinding), detects what the CPU path detects (the CPU provider fed
//! by the CPU pre-processing) on real images: the same classes, boxes within 2 px; and NVML reads the
//! gauges `/metrics` publishes.
//!
//! Each test prints `SKIPPED: <reason>` and passes where its GPU part cannot run (no driver or
//! device, no NVRTC, an ONNX Runtime library without the CUDA provider, no NVML); the GPU check's
//! report shows those lines. The weights are needed everywhere (`make setup`); in CI
//! (`CI=true`) a missing weights file fails the test.

mod common;

use common::{TempDir, root};
use vigil_core::modelspec::ModelSpec;
use vigil_core::postprocess::{Detection, nms};
use vigil_engine::frame::{FrameFormat, FrameLayout};
use vigil_engine::runtime::{self, ExecutionProvider};
use vigil_engine::{FrameInput, InferRequest, ModelHandle, ModelServer};

/// Largest difference of a box edge between the CUDA path and the CPU path (acceptance: 2 px).
const MAX_BOX_PX: f32 = 2.0;
const MAX_SCORE_DIFF: f32 = 0.02;

fn skip(why: &str) {
    println!("SKIPPED: {why}");
}

/// Why the CUDA path cannot run here, if it cannot.
fn cuda_path_unusable() -> Option<String> {
    if let Err(e) = runtime::environment() {
        return Some(format!("ONNX Runtime is not available: {e}"));
    }
    let gpu = vigil_engine::gpu::probe();
    if gpu.devices().is_none() {
        return Some(format!("no NVIDIA driver or device ({:?})", gpu.driver));
    }
    if let Err(e) = &gpu.nvrtc {
        return Some(format!("no NVRTC ({e})"));
    }
    if !ExecutionProvider::Cuda.is_available() {
        return Some("the ONNX Runtime library has no CUDA execution provider".into());
    }
    None
}

/// A repository with `nanodet_cpu` (one `KIND_CPU` instance) and `nanodet_cuda` (one `KIND_GPU`
/// instance on GPU 0), both the installed NanoDet.
fn repository() -> Option<TempDir> {
    let models = root().join("models/nanodet");
    let weights = models.join("1/model.onnx");
    if !weights.is_file() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} is not installed (run `make setup`)",
            weights.display()
        );
        skip(&format!("{} is not installed", weights.display()));
        return None;
    }
    let config = std::fs::read_to_string(models.join("config.pbtxt")).unwrap();
    let cpu_group = "instance_group [ { count: 1, kind: KIND_CPU } ]";
    assert!(config.contains(cpu_group), "{config}");
    let tmp = TempDir::new("gpu-detect", "repo");
    for (name, group) in [
        ("nanodet_cpu", cpu_group),
        (
            "nanodet_cuda",
            "instance_group [ { count: 1, kind: KIND_GPU, gpus: [ 0 ] } ]",
        ),
    ] {
        let dir = tmp.0.join(name);
        std::fs::create_dir_all(dir.join("1")).unwrap();
        std::fs::copy(models.join("labels.txt"), dir.join("labels.txt")).unwrap();
        std::fs::copy(&weights, dir.join("1/model.onnx")).unwrap();
        let config = config
            .replace("name: \"nanodet\"", &format!("name: \"{name}\""))
            .replace(cpu_group, group);
        std::fs::write(dir.join("config.pbtxt"), config).unwrap();
    }
    Some(tmp)
}

/// The detections of `handle`'s model on `image`: through the CPU pre-processing and a tensor
/// request, or (`frame`) through a frame request pre-processed on the GPU.
fn detect(handle: &ModelHandle, image: &str, frame: bool) -> Vec<Detection> {
    let spec = ModelSpec::of_runtime(&handle.current()).expect("a detector");
    let (pixels, w, h) = common::rgba(image);
    let request = if frame {
        let layout = FrameLayout::packed(FrameFormat::Rgba, w, h);
        let mut data = pixels;
        data.resize(layout.frame_bytes.max(data.len()), 0);
        InferRequest::from_frame(FrameInput {
            data,
            layout,
            spec: spec.preprocess.clone(),
            yuv: None,
        })
    } else {
        let x = common::preprocessed(&spec.preprocess, pixels, w, h);
        InferRequest::new(&spec.input_name, spec.input_shape(1)[1..].to_vec(), x)
    };
    let (mw, mh) = (spec.preprocess.width, spec.preprocess.height);
    let decoder = spec.decoder.clone();
    let dets = handle
        .infer(request, move |views| decoder.decode(views, 0, mw, mh, 0.35))
        .unwrap_or_else(|e| panic!("{}: {image}: {e}", handle.name()))
        .expect("decoding");
    nms(dets, 0.6, true, 100)
}

/// The largest box-edge difference between `got` and `want` (same number of detections, each of
/// `want` matched by one of the same class); panics naming the image otherwise.
fn worst_difference(image: &str, want: &[Detection], got: &[Detection]) -> f32 {
    assert_eq!(got.len(), want.len(), "{image}: {got:?} vs {want:?}");
    let mut worst = 0f32;
    for w in want {
        let edges = |g: &Detection| {
            [
                (g.bbox.x - w.bbox.x).abs(),
                (g.bbox.y - w.bbox.y).abs(),
                (g.bbox.w - w.bbox.w).abs(),
                (g.bbox.h - w.bbox.h).abs(),
            ]
            .into_iter()
            .fold(0f32, f32::max)
        };
        let m = got
            .iter()
            .filter(|g| g.class_id == w.class_id)
            .min_by(|a, b| edges(a).total_cmp(&edges(b)))
            .unwrap_or_else(|| panic!("{image}: no class {} in {got:?}", w.class_id));
        assert!(
            edges(m) <= MAX_BOX_PX && (m.score - w.score).abs() <= MAX_SCORE_DIFF,
            "{image}: {m:?} vs the CPU's {w:?}"
        );
        worst = worst.max(edges(m));
    }
    worst
}

#[test]
fn cuda_provider_with_gpu_preprocessing_detects_what_the_cpu_detects() {
    let Some(repo) = repository() else {
        return;
    };
    let server = ModelServer::new();
    let cpu = server.acquire(&repo.0, "nanodet_cpu", None).unwrap();
    let cuda = server.acquire(&repo.0, "nanodet_cuda", None).unwrap();
    if let Some(why) = cuda_path_unusable() {
        // The comparison itself still runs, on the CPU provider the KIND_GPU instance falls back to.
        for image in ["bus.jpg", "zidane.jpg"] {
            let want = detect(&cpu, image, false);
            assert!(!want.is_empty(), "{image}: the CPU path detects nothing");
            assert_eq!(
                worst_difference(image, &want, &detect(&cuda, image, false)),
                0.0
            );
        }
        assert!(!cuda.gpu_preprocessing());
        skip(&format!("the CUDA path cannot run here: {why}"));
        return;
    }
    let instance = &cuda.current().instances()[0].clone();
    assert_eq!(
        instance.provider,
        ExecutionProvider::Cuda,
        "{instance:?}: the session did not start on the CUDA provider"
    );
    assert!(
        cuda.gpu_preprocessing(),
        "frames are refused: {:?}",
        cuda.current().frame_support()
    );
    let mut total = 0;
    let mut worst = 0f32;
    for image in ["bus.jpg", "zidane.jpg"] {
        let want = detect(&cpu, image, false);
        assert!(!want.is_empty(), "{image}: the CPU path detects nothing");
        let got = detect(&cuda, image, true);
        worst = worst.max(worst_difference(image, &want, &got));
        // The same image again as a tensor on the CUDA provider: the provider alone.
        let tensor = detect(&cuda, image, false);
        worst = worst.max(worst_difference(image, &want, &tensor));
        total += want.len();
    }
    assert_eq!(cuda.current().stats().failures, 0);
    println!(
        "GPU: NanoDet on the CUDA provider (device {}), pre-processed on the GPU and bound on the \
         device: {total} detections as the CPU's, max | box edge difference | {worst:.3} px",
        instance.device_id
    );
}

#[test]
fn nvml_reads_the_gauges_that_metrics_publishes() {
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(n) => n,
        Err(e) => return skip(&format!("NVML cannot be initialised: {e}")),
    };
    let count = nvml.device_count().expect("NVML device count");
    assert!(count > 0, "NVML sees no device");
    for i in 0..count {
        let d = nvml.device_by_index(i).expect("NVML device");
        let name = d.name().expect("name");
        let mem = d.memory_info().expect("memory");
        let util = d.utilization_rates().expect("utilisation");
        let dec = d.decoder_utilization().map(|u| u.utilization);
        assert!(mem.total > 0 && mem.used <= mem.total, "{name}: {mem:?}");
        assert!(util.gpu <= 100 && util.memory <= 100, "{name}: {util:?}");
        println!(
            "NVML: GPU {i} {name}: memory {} of {} MiB used, SM {} %, memory bus {} %, NVDEC {:?} %",
            mem.used >> 20,
            mem.total >> 20,
            util.gpu,
            util.memory,
            dec
        );
    }
}
