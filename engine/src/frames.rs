//! Frame requests: decoded frames that an instance pre-processes on the GPU, a whole batch with one
//! [`GpuPreprocessor::run`] on the instance's own CUDA stream, before running its session on the
//! batch tensor where it lies (device memory; only the outputs are copied back, once).
//!
//! - A request carries a [`FrameInput`] (host bytes, [`FrameLayout`], [`PreprocessSpec`], optional
//!   [`YuvMatrix`]) instead of tensors; it feeds the model's single image input.
//! - The batcher only batches frames that one launch can take: same layout (format, size, strides),
//!   same spec and matrix ([`FrameInput::compatible`]); a frame and a tensor request never share a
//!   batch. An incompatible request ends the batch (as a tensor of another shape does), so mixed
//!   sizes run as consecutive batches, in arrival order.
//! - Each instance owns one pre-processor ([`FrameStage`]), made on the instance's thread for its
//!   `device_id` when the first frame batch comes, rebuilt only when the [`GpuSpec`] changes (spec,
//!   format, matrix); its buffers are reused (they only grow).
//! - Where pre-processors come from is a [`FramePreprocessors`] (the GPU one,
//!   [`gpu_frame_preprocessors`], by default), so tests inject a host implementation.
//! - An instance that cannot make its pre-processor answers every request of the batch with
//!   [`EngineError::NoGpuPreprocessing`] naming the instance and the reason, and from then on the
//!   runtime reports [`ModelRuntime::gpu_preprocessing`] false (callers go back to the CPU path);
//!   a runtime that does not take frames refuses them when they are submitted, with the same error.
//!   Nothing falls back to a host pre-processing inside the engine: the caller's CPU path is faster.
//!
//! [`ModelRuntime::gpu_preprocessing`]: super::ModelRuntime::gpu_preprocessing
//! [`EngineError::NoGpuPreprocessing`]: super::EngineError::NoGpuPreprocessing

use std::sync::Arc;

use crate::gpu::{self, FrameLayout, GpuError, GpuPreprocessor, GpuSpec, TensorType, YuvMatrix};
use crate::preprocess::PreprocessSpec;

/// A decoded frame in host memory, as the input of a frame request.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameInput {
    /// The frame's bytes (at least `layout.frame_bytes`).
    pub data: Vec<u8>,
    pub layout: FrameLayout,
    /// What the model takes (size, colour order, resize mode, layout, normalisation).
    pub spec: PreprocessSpec,
    /// YUV → RGB for NV12/I420; `None`: by the frame height ([`YuvMatrix::default_for`]).
    pub yuv: Option<YuvMatrix>,
}

impl FrameInput {
    /// Whether `self` and `other` can be pre-processed by one launch (same layout, spec and matrix).
    pub fn compatible(&self, other: &FrameInput) -> bool {
        self.layout == other.layout && self.spec == other.spec && self.yuv == other.yuv
    }

    /// What is wrong with the frame itself, if anything.
    pub(crate) fn check(&self) -> Result<(), String> {
        let l = &self.layout;
        if l.width == 0 || l.height == 0 {
            return Err(format!("frame: empty {}x{} frame", l.width, l.height));
        }
        if self.spec.width == 0 || self.spec.height == 0 {
            return Err(format!(
                "frame: empty model input size {}x{}",
                self.spec.width, self.spec.height
            ));
        }
        if self.data.len() < l.frame_bytes {
            return Err(format!(
                "frame: a {}x{} {} frame of this layout has {} bytes, {} were given",
                l.width,
                l.height,
                l.format.name(),
                l.frame_bytes,
                self.data.len()
            ));
        }
        Ok(())
    }
}

/// A batch tensor in device memory, as a [`FramePreprocessor`] leaves it (its stream synchronised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceBatch {
    /// Device address of the first element.
    pub address: u64,
    /// `[N, 3, H, W]` or `[N, H, W, 3]`.
    pub shape: [i64; 4],
    pub dtype: TensorType,
}

/// What [`super::InferSession::run_device`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInput<'a> {
    /// The model input it is bound to.
    pub name: &'a str,
    pub address: u64,
    pub shape: [i64; 4],
    pub dtype: TensorType,
    /// CUDA device ordinal of the memory.
    pub device_id: i32,
}

/// One instance's batch pre-processor: frames (all of one layout) → the batch tensor.
pub trait FramePreprocessor: Send {
    /// What it was made for.
    fn spec(&self) -> &GpuSpec;
    /// Pre-processes the whole batch (one launch) and returns the tensor once it is written.
    fn run(&mut self, layout: &FrameLayout, frames: &[&[u8]]) -> Result<DeviceBatch, GpuError>;
}

/// Where the instances' [`FramePreprocessor`]s come from.
pub trait FramePreprocessors: Send + Sync {
    /// Whether pre-processors can be made in this process; the reason when not.
    fn available(&self) -> Result<(), String>;
    /// Makes one for `spec`; called on the instance's thread.
    fn make(&self, spec: GpuSpec) -> Result<Box<dyn FramePreprocessor>, GpuError>;
}

/// A shared [`FramePreprocessors`].
pub type FramePreprocessorFactory = Arc<dyn FramePreprocessors>;

/// The CUDA pre-processors ([`GpuPreprocessor`]): available where [`gpu::probe`] finds a device
/// and NVRTC (probed on the first question, not before).
pub fn gpu_frame_preprocessors() -> FramePreprocessorFactory {
    Arc::new(OnGpu)
}

struct OnGpu;

impl FramePreprocessors for OnGpu {
    fn available(&self) -> Result<(), String> {
        let a = gpu::probe();
        if a.devices().is_none() {
            return Err(match &a.driver {
                Err(e) => format!("no NVIDIA GPU is usable ({e})"),
                Ok(_) => "no CUDA device".into(),
            });
        }
        a.nvrtc
            .as_ref()
            .map(|_| ())
            .map_err(|e| format!("NVRTC is not available ({e})"))
    }

    fn make(&self, spec: GpuSpec) -> Result<Box<dyn FramePreprocessor>, GpuError> {
        Ok(Box::new(OnDevice(GpuPreprocessor::new(spec)?)))
    }
}

struct OnDevice(GpuPreprocessor);

impl FramePreprocessor for OnDevice {
    fn spec(&self) -> &GpuSpec {
        self.0.spec()
    }

    fn run(&mut self, layout: &FrameLayout, frames: &[&[u8]]) -> Result<DeviceBatch, GpuError> {
        self.0.run(layout, frames)?;
        // The session runs on ONNX Runtime's own stream: the tensor must be complete first.
        self.0.synchronize()?;
        let t = self
            .0
            .tensor()
            .ok_or_else(|| GpuError::Input("the pre-processor produced no tensor".into()))?;
        Ok(DeviceBatch {
            address: t.device_address(self.0.stream()),
            shape: t.shape(),
            dtype: t.dtype(),
        })
    }
}

/// The tensor type of a model input's element type ([`crate::runtime::IoInfo::dtype`]).
pub fn tensor_type_of(dtype: &str) -> Option<TensorType> {
    match dtype {
        "Float32" => Some(TensorType::F32),
        "Float16" => Some(TensorType::F16),
        _ => None,
    }
}

/// An instance's frame pre-processing: its pre-processor, made when first needed and rebuilt when
/// the spec changes.
pub(crate) struct FrameStage {
    factory: Option<FramePreprocessorFactory>,
    /// CUDA device of the instance.
    device: usize,
    /// Element type of the model's (single) input, `None` when it is not one the kernels write.
    dtype: Option<TensorType>,
    current: Option<Box<dyn FramePreprocessor>>,
    /// The last spec that could not be made, and why (not retried until the spec changes).
    failed: Option<(GpuSpec, String)>,
    /// Pre-processors made so far (for tests and logs).
    pub made: usize,
}

impl FrameStage {
    pub fn new(factory: Option<FramePreprocessorFactory>, device_id: i32, dtype: &str) -> Self {
        FrameStage {
            factory,
            device: device_id.max(0) as usize,
            dtype: tensor_type_of(dtype),
            current: None,
            failed: None,
            made: 0,
        }
    }

    /// The instance's CUDA device.
    pub fn device_id(&self) -> i32 {
        self.device as i32
    }

    /// The pre-processor for frames like `frame`, made or rebuilt if needed.
    pub fn for_frame(&mut self, frame: &FrameInput) -> Result<&mut dyn FramePreprocessor, String> {
        let Some(factory) = &self.factory else {
            return Err("the runtime has no frame pre-processors".into());
        };
        let Some(dtype) = self.dtype else {
            return Err("the model input is neither FP32 nor FP16".into());
        };
        let want = GpuSpec {
            pre: frame.spec.clone(),
            dtype,
            format: frame.layout.format,
            device: self.device,
            yuv: frame.yuv,
        };
        if let Some((spec, why)) = &self.failed
            && *spec == want
        {
            return Err(why.clone());
        }
        if self.current.as_ref().is_none_or(|p| *p.spec() != want) {
            self.current = None;
            match factory.make(want.clone()) {
                Ok(p) => {
                    self.current = Some(p);
                    self.made += 1;
                    self.failed = None;
                }
                Err(e) => {
                    let why = format!("making the GPU pre-processor: {e}");
                    self.failed = Some((want, why.clone()));
                    return Err(why);
                }
            }
        }
        Ok(self.current.as_deref_mut().expect("made above"))
    }
}
