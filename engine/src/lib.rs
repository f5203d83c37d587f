//! Vigil's execution engine: Triton-style model execution (dynamic batching, instance groups,
//! priorities, ordering, ensembles, metrics) on ONNX Runtime ([`runtime`]), with CPU
//! ([`preprocess`]) and GPU ([`gpu`]) pre-processing of decoded frames ([`frame`]). It batches and
//! executes tensors and never knows what a detection is: callers (`vigilinfer`, `vigil serve`,
//! OCR) decode the outputs they get as [`TensorView`]s.
//!
//!
//! A [`ModelRuntime`] serves one loaded model version of a repository
//! ([`vigil_modelrepo::LoadedModel`]) with Triton's semantics for the fields of its configuration:
//!
//! - **Instances** (`instance_group`): `count` instances per group (0 → 1; `KIND_GPU` groups:
//!   `count` per listed GPU), each a worker thread owning its own session. Intra-op threads per
//!   session: `max(1, cores / instances)`, or the parameter `vigil.intra_op_threads` (0 = ONNX
//!   Runtime's default); idle intra-op threads block rather than spin unless
//!   `vigil.intra_op_spinning` is `true`. `KIND_GPU` asks for the CUDA execution provider, or the first GPU
//!   accelerator of `optimization.execution_accelerators` (`tensorrt`, `cuda`); other kinds
//!   (`KIND_CPU`, `KIND_AUTO`, `KIND_MODEL`) run on the CPU, with the first CPU accelerator
//!   (`openvino`) when one is named. A provider the ONNX Runtime library lacks or cannot start
//!   falls back (TensorRT → CUDA → CPU, OpenVINO → CPU), and an unknown accelerator name is
//!   ignored, each with a warning issued once per process ([`crate::runtime::warn_once`]).
//! - **Dynamic batcher** (`max_batch_size > 0` and `dynamic_batching`): a free instance takes the
//!   waiting requests, highest priority first (level 1 is the highest; `priority_levels` levels;
//!   requests with priority 0 or above the number of levels get `default_priority_level`) and FIFO
//!   within a level, as long as their shapes equal the first one's, up to `max_batch_size`. It runs
//!   at once when that reaches `max_batch_size` or a `preferred_batch_size` (the largest one
//!   reached), otherwise it waits until `max_queue_delay_microseconds` have passed since the oldest
//!   of those requests was queued (or more requests arrive) and runs what it has. The requests'
//!   inputs are stacked along a new leading batch dimension.
//! - Without dynamic batching each request is one execution: with `max_batch_size > 0` the request
//!   gets a leading batch dimension of 1, with `max_batch_size: 0` its shape is used as given.
//! - `preserve_ordering`: responses are released in the order the requests were queued, whichever
//!   instance finishes first (a response that is ready early is copied and parked until its turn).
//! - **Metrics** ([`ModelStats`]): requests, failures, executions, batch-size histogram, queue and
//!   compute time histograms, and per instance its executions and recent compute intervals.
//!
//! Requests carry tensors without the batch dimension ([`InferRequest`]): in the input's own
//! element type ([`TensorData`]: every Triton data type an ONNX model has, `BYTES` as strings), or
//! f32 for any numeric input (converted at the session: FP16 rounded to half precision, integers
//! rounded and saturated). Outputs are lent as [`TensorView`]s: the values in the model's element
//! type (`raw`) and as f32 (`data`; FP16 and integers widened). Or a request carries a decoded
//! frame for the model's single image input, which the instance pre-processes on the GPU together with the
//! other frames of its batch (one kernel launch; the tensor stays on the device until the session
//! has run; see `frames.rs` and [`ModelRuntime::gpu_preprocessing`]).
//! [`ModelRuntime::infer`] blocks the caller and runs the caller's closure **on the worker
//! thread** with views of that request's outputs (leading batch dimension 1, data borrowed from the
//! batch output: no copy), so callers decode in place; the closure's value is returned. A closure
//! must not call `infer` on the same runtime (with one instance that would wait for itself).
//!
//! [`ModelServer::global`] shares one runtime, hence one batcher, among every caller naming the same
//! repository, model and version; see [`ModelHandle`]. [`ModelServer::reload`] swaps a handle to a
//! freshly loaded runtime (requests in flight finish on the old one; a model that fails to load is
//! refused and the old runtime keeps serving). [`ModelServer::poll`] reloads a handle whenever its
//! repository entry changes (Triton's POLL mode); [`ModelServer::load`] and
//! [`ModelServer::unload`] are Triton's explicit model control (see `poll.rs`).

pub mod accel;
mod ensemble;
pub mod frame;
mod frames;
pub mod gpu;
mod model;
mod poll;
pub mod preprocess;
pub mod python;
pub mod runtime;
mod scheduler;
mod server;
mod stats;
mod tensor;

#[cfg(test)]
mod frame_tests;
#[cfg(test)]
mod testmodel;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use ensemble::{EnsembleRuntime, EnsembleStep, ensemble_steps};
pub use frames::{
    DeviceBatch, DeviceInput, FrameInput, FramePreprocessor, FramePreprocessorFactory,
    FramePreprocessors, gpu_frame_preprocessors, tensor_type_of,
};
pub use model::{InferResponse, InstanceInfo, ModelRuntime};
pub use poll::{
    EVENT_LOG_LEN, FileStamp, Fingerprint, MIN_POLL_INTERVAL, PollGuard, ReloadCause, ReloadEvent,
};
pub use server::{ModelHandle, ModelServer};
pub use stats::{
    Histogram, INTERVAL_LOG_LEN, InstanceStats, Interval, ModelStats, PhaseTimes, TIME_BUCKETS_US,
};

use crate::runtime::{ExecutionProvider, IoInfo, OnnxModel, RuntimeError, SessionOptions};
pub use tensor::{DATA_TYPES, DataType, TensorData, TensorError, TensorSlice, TensorView};
use vigil_modelrepo::RepoError;

/// The parameter of `config.pbtxt` that sets the intra-op threads of each instance's session.
pub const INTRA_OP_THREADS_PARAMETER: &str = "vigil.intra_op_threads";

/// The parameter of `config.pbtxt` that lets idle intra-op threads busy-wait (`true`/`false`,
/// default `false`; see [`crate::runtime::SessionOptions::intra_op_spinning`]).
pub const INTRA_OP_SPINNING_PARAMETER: &str = "vigil.intra_op_spinning";

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case) as a parameter value.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Locks `m`, also after a thread panicked while holding it (the engine's state stays usable).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Most instances one model may have (a guard against configurations asking for thousands).
pub const MAX_INSTANCES: usize = 256;

/// Errors of the engine. Each names the model (and version where one is known).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The repository could not give the model (missing, invalid configuration, ...).
    #[error("{0}")]
    Repository(Arc<RepoError>),

    /// The configuration cannot be executed.
    #[error("model '{model}' version {version}: {message}")]
    Config {
        model: String,
        version: u64,
        message: String,
    },

    /// An instance failed to load the model; the runtime was not created.
    #[error("model '{model}' version {version}: instance {instance} failed to load: {source}")]
    Load {
        model: String,
        version: u64,
        instance: String,
        #[source]
        source: RuntimeError,
    },

    /// The request does not fit the model (names, shapes, sizes).
    #[error("model '{model}' version {version}: bad request: {message}")]
    BadRequest {
        model: String,
        version: u64,
        message: String,
    },

    /// ONNX Runtime failed to run a batch.
    #[error("model '{model}' version {version}: {source}")]
    Run {
        model: String,
        version: u64,
        #[source]
        source: RuntimeError,
    },

    /// A batch ran but its result cannot be used (e.g. an output without the batch dimension).
    #[error("model '{model}' version {version}: {message}")]
    Execution {
        model: String,
        version: u64,
        message: String,
    },

    /// The model was unloaded ([`ModelServer::unload`]) and is not served until loaded again.
    #[error(
        "model '{model}' of model repository {} is unloaded; load it again to serve it",
        .repository.display()
    )]
    Unloaded { model: String, repository: PathBuf },

    /// The runtime is shutting down and takes no new requests.
    #[error("model '{model}' version {version}: the model is shutting down; request refused")]
    ShuttingDown { model: String, version: u64 },

    /// The request got no response: its response closure panicked.
    #[error(
        "model '{model}' version {version}: the request got no response (its response closure panicked)"
    )]
    ResponseLost { model: String, version: u64 },

    /// A frame request ([`InferRequest::frame`]) reached a runtime or an instance that cannot
    /// pre-process frames on the GPU (see [`ModelRuntime::gpu_preprocessing`]); the caller
    /// pre-processes on the CPU instead and sends a tensor.
    #[error(
        "model '{model}' version {version}: frame requests need GPU pre-processing, which is not \
         available: {reason}"
    )]
    NoGpuPreprocessing {
        model: String,
        version: u64,
        reason: String,
    },
}

impl From<RepoError> for EngineError {
    fn from(e: RepoError) -> Self {
        EngineError::Repository(Arc::new(e))
    }
}

/// A named tensor: `(name, shape, data)`.
pub type NamedTensor = (String, Vec<i64>, TensorData);

/// One inference request: named inputs (f32, or in the model's element type), or a frame for the model's single image input, and a
/// priority.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InferRequest {
    /// `(input name, shape, data)`. With `max_batch_size > 0` the shape is one item's, without the
    /// batch dimension; with `max_batch_size: 0` it is the full shape the model takes. Empty for a
    /// frame request.
    pub inputs: Vec<NamedTensor>,
    /// A decoded frame instead of `inputs`: the instance pre-processes it on the GPU together with
    /// the other frames of its batch (only where [`ModelRuntime::gpu_preprocessing`] is true).
    pub frame: Option<FrameInput>,
    /// Priority level, 1 = highest; 0 = the model's `default_priority_level`.
    pub priority: u32,
}

impl InferRequest {
    /// A frame request for the model's single image input, with the default priority.
    pub fn from_frame(frame: FrameInput) -> Self {
        InferRequest {
            inputs: Vec::new(),
            frame: Some(frame),
            priority: 0,
        }
    }

    /// A request with one input and the default priority.
    pub fn new(name: impl Into<String>, shape: Vec<i64>, data: impl Into<TensorData>) -> Self {
        InferRequest {
            inputs: vec![(name.into(), shape, data.into())],
            frame: None,
            priority: 0,
        }
    }

    /// Adds an input.
    pub fn with_input(
        mut self,
        name: impl Into<String>,
        shape: Vec<i64>,
        data: impl Into<TensorData>,
    ) -> Self {
        self.inputs.push((name.into(), shape, data.into()));
        self
    }

    /// Sets the priority (1 = highest, 0 = default).
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }
}

/// One request's inputs `(name, shape, data)`, the shape without the batch dimension.
pub type RequestInputs<'a> = Vec<(&'a str, &'a [i64], TensorSlice<'a>)>;

/// What [`InferSession::run_requests`] hands each request: its outputs or its own error.
pub type RequestAnswer<'a, 'v> = Result<&'a [TensorView<'v>], RuntimeError>;

/// Where a decoupled session sends one request's responses: its outputs (or an error) and whether
/// it is the request's last (Triton's `TRITONSERVER_RESPONSE_COMPLETE_FINAL`; a final call without
/// a response carries no outputs). Called any number of times, then once with `true`, from any
/// thread; it must not block.
pub type SessionSink = Box<dyn for<'a> FnMut(Result<&[TensorView<'a>], RuntimeError>, bool) + Send>;

/// Where [`ModelRuntime::infer_decoupled`] sends one request's responses, as [`SessionSink`] with
/// the engine's errors.
pub type ResponseSink = Box<dyn for<'a> FnMut(Result<&[TensorView<'a>], EngineError>, bool) + Send>;

/// A session one instance runs batches with: [`OnnxModel`], a Python-backend process
/// ([`python`]), or a stand-in in tests.
pub trait InferSession: Send {
    /// The model's inputs (f32 tensors are converted where the model takes another numeric type).
    fn inputs(&self) -> &[IoInfo];
    /// The model's outputs, in the order the views are given.
    fn outputs(&self) -> &[IoInfo];
    /// The execution provider the session runs on.
    fn execution_provider(&self) -> ExecutionProvider {
        ExecutionProvider::Cpu
    }
    /// Runs named inputs `(name, shape, data)` and hands the outputs to `f` (called once on
    /// success).
    fn run(
        &mut self,
        inputs: &[(&str, &[i64], TensorSlice<'_>)],
        f: &mut dyn FnMut(&[TensorView<'_>]),
    ) -> Result<(), RuntimeError>;
    /// Whether the session runs a batch as the list of its requests ([`InferSession::run_requests`],
    /// Triton's Python backend) instead of one stacked tensor per input ([`InferSession::run`]).
    fn takes_requests(&self) -> bool {
        false
    }
    /// Runs a batch as its requests (each request's inputs without the batch dimension) and hands
    /// each request's outputs, or its own error, to `f` with the request's index. An `Err` fails
    /// the requests `f` was not called for. Default: an error.
    fn run_requests(
        &mut self,
        requests: &[RequestInputs<'_>],
        f: &mut dyn FnMut(usize, RequestAnswer<'_, '_>),
    ) -> Result<(), RuntimeError> {
        let _ = (requests, f);
        Err(RuntimeError::Unsupported(
            "this session runs stacked batches, not lists of requests".into(),
        ))
    }
    /// Whether the session runs decoupled requests ([`InferSession::run_decoupled`]).
    fn decoupled(&self) -> bool {
        false
    }
    /// Starts a batch of decoupled requests: returns once the model has taken them (the instance is
    /// then free for the next batch), while their responses keep going to `sinks` (one per request)
    /// until each has had its final call. The session owns the sinks: every one gets its final call
    /// whatever happens, an error included. Default: each sink gets an error.
    fn run_decoupled(&mut self, requests: &[RequestInputs<'_>], sinks: Vec<SessionSink>) {
        let _ = requests;
        for mut sink in sinks {
            sink(
                Err(RuntimeError::Unsupported(
                    "this session has no decoupled transaction policy".into(),
                )),
                true,
            );
        }
    }
    /// Runs once before the instance takes requests (default: nothing). [`OnnxModel`] runs the model
    /// on zeros of batch 1 so that the first request does not pay ONNX Runtime's first-run set-up.
    fn warm_up(&mut self) {}
    /// Runs the model on a batch tensor that a [`FramePreprocessor`] left in device memory (bound
    /// to `input.name`, not copied through the host) and hands the outputs, copied to the host
    /// once, to `f`. Default: an error (the session cannot take device tensors).
    fn run_device(
        &mut self,
        input: &DeviceInput<'_>,
        f: &mut dyn FnMut(&[TensorView<'_>]),
    ) -> Result<(), RuntimeError> {
        let _ = f;
        Err(RuntimeError::Unsupported(format!(
            "this session cannot run on a device tensor (input '{}')",
            input.name
        )))
    }
}

impl InferSession for OnnxModel {
    fn inputs(&self) -> &[IoInfo] {
        OnnxModel::inputs(self)
    }

    fn outputs(&self) -> &[IoInfo] {
        OnnxModel::outputs(self)
    }

    fn execution_provider(&self) -> ExecutionProvider {
        OnnxModel::execution_provider(self)
    }

    fn warm_up(&mut self) {
        OnnxModel::warm_up(self);
    }

    fn run(
        &mut self,
        inputs: &[(&str, &[i64], TensorSlice<'_>)],
        f: &mut dyn FnMut(&[TensorView<'_>]),
    ) -> Result<(), RuntimeError> {
        self.run_named(inputs, |views| f(views))
    }

    fn run_device(
        &mut self,
        input: &DeviceInput<'_>,
        f: &mut dyn FnMut(&[TensorView<'_>]),
    ) -> Result<(), RuntimeError> {
        // SAFETY: a `DeviceInput` comes from a `FramePreprocessor` that synchronised its stream
        // after writing `shape`'s values of `dtype` at `address` on CUDA device `device_id`; the
        // buffer lives until its next run, after this call.
        unsafe {
            self.run_device(
                input.address,
                &input.shape,
                input.dtype,
                input.device_id,
                |views| f(views),
            )
        }
    }
}

/// Creates one instance's session from the model file; called on the instance's thread.
pub type SessionFactory =
    Arc<dyn Fn(&Path, SessionOptions) -> Result<Box<dyn InferSession>, RuntimeError> + Send + Sync>;

/// The factory of real sessions: [`OnnxModel::load_with`].
pub fn onnx_session_factory() -> SessionFactory {
    Arc::new(|path: &Path, options: SessionOptions| {
        OnnxModel::load_with(path, options).map(|m| Box::new(m) as Box<dyn InferSession>)
    })
}
