//! Frame requests without a GPU: a host "device" (a map from fake device addresses to tensors), a
//! pre-processor that writes [`crate::gpu::reference`] (what the kernels compute) there, and a fake
//! session whose `run_device` reads it back. Nothing here needs ONNX Runtime or CUDA.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::gpu::{FrameFormat, FrameLayout, GpuError, GpuSpec, TensorType, YuvMatrix, reference};
use crate::preprocess::{ColorOrder, Layout, PreprocessSpec, ResizeMode};
use crate::runtime::IoInfo;
use vigil_modelrepo::{LoadedModel, ModelConfig};

const W: u32 = 24;
const H: u32 = 16;

/// Tensors "in device memory", by address.
#[derive(Default)]
struct HostDevice {
    memory: Mutex<HashMap<u64, Vec<f32>>>,
    next: AtomicU64,
    /// Every pre-processing call: (layout, number of frames).
    calls: Mutex<Vec<(FrameLayout, usize)>>,
    made: AtomicUsize,
    /// `make` fails with this when set.
    refuse: Mutex<Option<String>>,
}

struct HostPreprocessor {
    spec: GpuSpec,
    device: Arc<HostDevice>,
    /// Its buffer's address (reused from call to call, as the GPU one's).
    address: u64,
}

impl FramePreprocessor for HostPreprocessor {
    fn spec(&self) -> &GpuSpec {
        &self.spec
    }

    fn run(&mut self, layout: &FrameLayout, frames: &[&[u8]]) -> Result<DeviceBatch, GpuError> {
        if layout.format != self.spec.format {
            return Err(GpuError::Input("format changed".into()));
        }
        let m = self
            .spec
            .yuv
            .unwrap_or_else(|| YuvMatrix::default_for(layout.height));
        let tensor = reference(&self.spec.pre, layout, &m, frames);
        self.device
            .calls
            .lock()
            .unwrap()
            .push((*layout, frames.len()));
        self.device
            .memory
            .lock()
            .unwrap()
            .insert(self.address, tensor);
        Ok(DeviceBatch {
            address: self.address,
            shape: self.spec.pre.batch_shape(frames.len()),
            dtype: self.spec.dtype,
        })
    }
}

/// The factory handed to the runtime.
struct Frames(Arc<HostDevice>);

impl FramePreprocessors for Frames {
    fn available(&self) -> Result<(), String> {
        Ok(())
    }

    fn make(&self, spec: GpuSpec) -> Result<Box<dyn FramePreprocessor>, GpuError> {
        if let Some(why) = self.0.refuse.lock().unwrap().clone() {
            return Err(GpuError::Cuda(why));
        }
        self.0.made.fetch_add(1, Ordering::SeqCst);
        let address = 0x1000 * (1 + self.0.next.fetch_add(1, Ordering::SeqCst));
        Ok(Box::new(HostPreprocessor {
            spec,
            device: self.0.clone(),
            address,
        }))
    }
}

/// Per item: the mean of each channel and the item's first value (outputs `mean` `[N, 3]`, `first`
/// `[N, 1]`), from an NCHW batch tensor.
fn summarise(t: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    let per = t.len() / n;
    let plane = per / 3;
    let mut mean = Vec::with_capacity(3 * n);
    let mut first = Vec::with_capacity(n);
    for item in t.chunks_exact(per) {
        for c in 0..3 {
            let s: f64 = item[c * plane..(c + 1) * plane]
                .iter()
                .map(|&v| f64::from(v))
                .sum();
            mean.push((s / plane as f64) as f32);
        }
        first.push(item[0]);
    }
    (mean, first)
}

struct FakeSession {
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    provider: crate::runtime::ExecutionProvider,
    device: Arc<HostDevice>,
    /// Whether it implements `run_device`.
    takes_device: bool,
}

impl FakeSession {
    fn answer(
        t: &[f32],
        n: usize,
        f: &mut dyn FnMut(&[crate::TensorView<'_>]),
    ) -> Result<(), crate::runtime::RuntimeError> {
        let (mean, first) = summarise(t, n);
        let (ms, fs) = ([n, 3], [n, 1]);
        f(&[
            crate::TensorView::f32("mean", &ms, &mean),
            crate::TensorView::f32("first", &fs, &first),
        ]);
        Ok(())
    }
}

impl InferSession for FakeSession {
    fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }

    fn execution_provider(&self) -> crate::runtime::ExecutionProvider {
        self.provider
    }

    fn run(
        &mut self,
        inputs: &[(&str, &[i64], crate::TensorSlice<'_>)],
        f: &mut dyn FnMut(&[crate::TensorView<'_>]),
    ) -> Result<(), crate::runtime::RuntimeError> {
        let (_, shape, crate::TensorSlice::Fp32(data)) = inputs[0] else {
            panic!("the fake session takes f32");
        };
        Self::answer(data, shape[0] as usize, f)
    }

    fn run_device(
        &mut self,
        input: &DeviceInput<'_>,
        f: &mut dyn FnMut(&[crate::TensorView<'_>]),
    ) -> Result<(), crate::runtime::RuntimeError> {
        if !self.takes_device {
            return Err(crate::runtime::RuntimeError::Unsupported(
                "this fake session takes host tensors only".into(),
            ));
        }
        assert_eq!(input.name, "images");
        assert_eq!(input.dtype, TensorType::F32);
        let memory = self.device.memory.lock().unwrap();
        let t = memory
            .get(&input.address)
            .expect("run_device on an address the pre-processor wrote");
        let len: i64 = input.shape.iter().product();
        assert_eq!(len as usize, t.len(), "shape {:?}", input.shape);
        Self::answer(t, input.shape[0] as usize, f)
    }
}

struct Setup {
    kind: &'static str,
    provider: crate::runtime::ExecutionProvider,
    takes_device: bool,
    max_batch: u32,
    delay_us: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            kind: "KIND_GPU",
            provider: crate::runtime::ExecutionProvider::Cuda,
            takes_device: true,
            max_batch: 4,
            delay_us: 2_000_000,
        }
    }
}

fn model(s: &Setup) -> LoadedModel {
    let text = format!(
        "name: \"fake\"\nmax_batch_size: {}\ndynamic_batching {{ max_queue_delay_microseconds: {} }}\n\
         instance_group [ {{ name: \"g\", count: 1, kind: {} }} ]",
        s.max_batch, s.delay_us, s.kind
    );
    let dir = std::env::temp_dir().join("vigil-frame-tests/fake");
    LoadedModel {
        name: "fake".into(),
        version: 1,
        model_path: dir.join("1/model.onnx"),
        config: ModelConfig::parse(&text, &dir.join("config.pbtxt")).unwrap(),
        dir,
        labels: Vec::new(),
    }
}

fn fake_sessions(s: &Setup, host: Arc<HostDevice>) -> SessionFactory {
    let (provider, takes_device) = (s.provider, s.takes_device);
    Arc::new(move |_: &Path, _| {
        let io = |name: &str, shape: Vec<i64>| IoInfo {
            name: name.into(),
            dtype: "Float32".into(),
            shape,
        };
        Ok(Box::new(FakeSession {
            inputs: vec![io("images", vec![-1, 3, H as i64, W as i64])],
            outputs: vec![io("mean", vec![-1, 3]), io("first", vec![-1, 1])],
            provider,
            device: host.clone(),
            takes_device,
        }) as Box<dyn InferSession>)
    })
}

/// A runtime of fake sessions with frames pre-processed by `device` (`None`: no frame factory).
fn runtime(s: &Setup, device: Option<&Arc<HostDevice>>) -> ModelRuntime {
    let sessions = fake_sessions(s, device.cloned().unwrap_or_default());
    let frames = device.map(|d| Arc::new(Frames(d.clone())) as FramePreprocessorFactory);
    ModelRuntime::load_with_factories(&model(s), sessions, frames).unwrap()
}

fn pre() -> PreprocessSpec {
    PreprocessSpec {
        width: W,
        height: H,
        color: ColorOrder::Bgr,
        layout: Layout::Nchw,
        resize: ResizeMode::Letterbox,
        mean: [103.53, 116.28, 123.675],
        std: [57.375, 57.12, 58.395],
        scale: 1.0,
        pad_value: 114,
    }
}

/// A seeded frame of `format` (packed layout).
fn frame(format: FrameFormat, w: u32, h: u32, seed: u32) -> FrameInput {
    let layout = FrameLayout::packed(format, w, h);
    let data = (0..layout.frame_bytes as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 7919) >> 13) as u8)
        .collect();
    FrameInput {
        data,
        layout,
        spec: pre(),
        yuv: None,
    }
}

/// What the caller of `f` should get: its frame alone through the reference.
fn expected(f: &FrameInput) -> (Vec<f32>, Vec<f32>) {
    let m = f
        .yuv
        .unwrap_or_else(|| YuvMatrix::default_for(f.layout.height));
    summarise(&reference(&f.spec, &f.layout, &m, &[&f.data]), 1)
}

fn outputs(views: &[crate::TensorView]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(views[0].shape, &[1, 3]);
    assert_eq!(views[1].shape, &[1, 1]);
    (views[0].data.to_vec(), views[1].data.to_vec())
}

#[test]
fn frame_requests_of_several_callers_are_preprocessed_in_one_call() {
    let device = Arc::new(HostDevice::default());
    let rt = Arc::new(runtime(&Setup::default(), Some(&device)));
    assert_eq!(rt.frame_support(), Ok(()));
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                let f = frame(FrameFormat::Bgra, 64, 40, i);
                let want = expected(&f);
                let got = rt
                    .infer(InferRequest::from_frame(f).with_priority(0), outputs)
                    .unwrap();
                (want, got)
            })
        })
        .collect();
    for c in callers {
        let (want, got) = c.join().unwrap();
        assert_eq!(got, want, "each caller gets its own frame's outputs");
    }
    let calls = device.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one pre-processing call: {calls:?}");
    assert_eq!(calls[0].1, 4);
    assert_eq!(device.made.load(Ordering::SeqCst), 1);
    let s = rt.stats();
    assert_eq!(s.batch_sizes, [(4, 1)].into_iter().collect());
    assert_eq!((s.requests, s.failures, s.executions), (4, 0, 1));
}

#[test]
fn mixed_sizes_and_formats_run_in_separate_launches_in_arrival_order() {
    let device = Arc::new(HostDevice::default());
    let rt = runtime(
        &Setup {
            delay_us: 300_000,
            ..Setup::default()
        },
        Some(&device),
    );
    let a = |seed| frame(FrameFormat::Rgb, 50, 30, seed);
    let b = |seed| frame(FrameFormat::Rgb, 31, 47, seed);
    let c = |seed| frame(FrameFormat::Nv12, 40, 26, seed);
    let frames = [a(1), a(2), b(3), b(4), c(5), a(6)];
    let mut pending = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let want = expected(f);
        pending.push((
            i,
            want,
            rt.infer_async(InferRequest::from_frame(f.clone()), outputs)
                .unwrap(),
        ));
        if i == 1 {
            // A tensor request between frames: never in a frame batch.
            let t = vec![0.5; 3 * W as usize * H as usize];
            pending.push((
                99,
                summarise(&t, 1),
                rt.infer_async(
                    InferRequest::new("images", vec![3, H as i64, W as i64], t),
                    outputs,
                )
                .unwrap(),
            ));
        }
    }
    for (i, want, p) in pending {
        assert_eq!(p.wait().unwrap(), want, "request {i}");
    }
    let calls: Vec<(u32, u32, FrameFormat, usize)> = device
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|(l, n)| (l.width, l.height, l.format, *n))
        .collect();
    // Arrival order: a a [t] b b c a. The tensor request ends the first frame batch; each change of
    // layout ends a batch.
    assert_eq!(
        calls,
        vec![
            (50, 30, FrameFormat::Rgb, 2),
            (31, 47, FrameFormat::Rgb, 2),
            (40, 26, FrameFormat::Nv12, 1),
            (50, 30, FrameFormat::Rgb, 1),
        ]
    );
    // Rebuilt for a new format only (RGB → NV12 → RGB), not for a new size.
    assert_eq!(device.made.load(Ordering::SeqCst), 3);
    let s = rt.stats();
    assert_eq!(
        s.batch_sizes,
        [(1, 3), (2, 2)].into_iter().collect(),
        "a a | t | b b | c | a"
    );
}

#[test]
fn frame_requests_are_refused_with_reasons() {
    // CPU instances: refused when submitted, naming the model and the instance.
    let cpu = runtime(
        &Setup {
            kind: "KIND_CPU",
            provider: crate::runtime::ExecutionProvider::Cpu,
            ..Setup::default()
        },
        Some(&Arc::new(HostDevice::default())),
    );
    assert!(!cpu.gpu_preprocessing());
    let e = cpu
        .infer(
            InferRequest::from_frame(frame(FrameFormat::Rgb, 8, 8, 0)),
            |_| (),
        )
        .unwrap_err();
    assert!(matches!(e, EngineError::NoGpuPreprocessing { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("model 'fake' version 1")
            && msg.contains("instance g_0 (KIND_CPU) runs on the CPU provider")
            && msg.contains("KIND_GPU"),
        "{msg}"
    );
    // GPU instances whose session fell back to the CPU provider.
    let fell_back = runtime(
        &Setup {
            provider: crate::runtime::ExecutionProvider::Cpu,
            ..Setup::default()
        },
        Some(&Arc::new(HostDevice::default())),
    );
    assert!(
        fell_back
            .frame_support()
            .unwrap_err()
            .contains("instance g_0 (KIND_GPU) runs on the CPU provider")
    );
    // No frame pre-processors at all.
    let none = runtime(&Setup::default(), None);
    assert!(
        none.frame_support()
            .unwrap_err()
            .contains("without frame pre-processors")
    );

    let device = Arc::new(HostDevice::default());
    let rt = runtime(&Setup::default(), Some(&device));
    let bad = |r: InferRequest| rt.infer(r, |_| ()).unwrap_err().to_string();
    let mut short = frame(FrameFormat::Nv12, 10, 6, 0);
    short.data.truncate(50);
    let msg = bad(InferRequest::from_frame(short));
    assert!(
        msg.contains("bad request") && msg.contains("10x6 NV12 frame") && msg.contains("90 bytes"),
        "{msg}"
    );
    let mut other_size = frame(FrameFormat::Rgb, 10, 6, 0);
    other_size.spec.width = 32;
    let msg = bad(InferRequest::from_frame(other_size));
    assert!(
        msg.contains("[3, 16, 32]")
            && msg.contains("input 'images'")
            && msg.contains("[3, 16, 24]"),
        "{msg}"
    );
    let mut both = InferRequest::from_frame(frame(FrameFormat::Rgb, 10, 6, 0));
    both.inputs
        .push(("images".into(), vec![1], vec![0.0f32].into()));
    assert!(bad(both).contains("carries the frame only"));
    assert!(device.calls.lock().unwrap().is_empty());
    assert_eq!(rt.stats().requests, 0, "refused requests are not queued");
}

#[test]
fn an_instance_that_cannot_make_its_preprocessor_stops_taking_frames() {
    let device = Arc::new(HostDevice::default());
    *device.refuse.lock().unwrap() = Some("out of memory (test)".into());
    let rt = runtime(
        &Setup {
            delay_us: 0,
            ..Setup::default()
        },
        Some(&device),
    );
    assert!(rt.gpu_preprocessing());
    let e = rt
        .infer(
            InferRequest::from_frame(frame(FrameFormat::Rgb, 8, 8, 0)),
            |_| (),
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, EngineError::NoGpuPreprocessing { .. }), "{msg}");
    assert!(
        msg.contains("instance g_0") && msg.contains("out of memory (test)"),
        "{msg}"
    );
    // From now on frames are refused when submitted (callers pre-process on the CPU); tensors run.
    assert!(!rt.gpu_preprocessing());
    assert!(rt.frame_support().unwrap_err().contains("out of memory"));
    let t = vec![1.0; 3 * W as usize * H as usize];
    let got = rt
        .infer(
            InferRequest::new("images", vec![3, H as i64, W as i64], t),
            outputs,
        )
        .unwrap();
    assert_eq!(got.1, vec![1.0]);
    assert_eq!(rt.stats().failures, 1);
}

#[test]
fn a_session_without_device_runs_fails_the_batch_with_its_reason() {
    let device = Arc::new(HostDevice::default());
    let rt = runtime(
        &Setup {
            takes_device: false,
            delay_us: 0,
            ..Setup::default()
        },
        Some(&device),
    );
    let msg = rt
        .infer(
            InferRequest::from_frame(frame(FrameFormat::I420, 9, 7, 0)),
            |_| (),
        )
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("model 'fake' version 1") && msg.contains("takes host tensors only"),
        "{msg}"
    );
    assert_eq!(device.calls.lock().unwrap().len(), 1);
}

#[test]
fn gpu_preprocessing_needs_a_gpu_in_this_process() {
    // The real pre-processors: available only where the probe finds a device and NVRTC.
    let setup = Setup::default();
    let sessions = fake_sessions(&setup, Arc::default());
    let rt = ModelRuntime::load_with_factory(&model(&setup), sessions).unwrap();
    let a = crate::gpu::probe();
    let usable = a.devices().is_some() && a.nvrtc.is_ok();
    assert_eq!(rt.gpu_preprocessing(), usable, "{:?}", rt.frame_support());
    if !usable {
        let why = rt.frame_support().unwrap_err();
        assert!(
            why.contains("no NVIDIA GPU") || why.contains("NVRTC"),
            "{why}"
        );
    }
}
