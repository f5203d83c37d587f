//! ONNX Runtime: finding and loading the shared library once per process, and running a model.
//!
//! The library is loaded dynamically (`ort`'s `load-dynamic`). It is looked for, in order, at
//! `$VIGIL_ORT_LIB`, `$ORT_DYLIB_PATH`, then `.vigil/onnxruntime/` (where `make setup` puts it) in the
//! current directory and its ancestors, beside the running executable and its ancestors, and in the
//! source checkout this crate was built from.
//!
//! Sessions run on the CPU by default. [`OnnxModel::load_with`] can ask for an ONNX Runtime execution
//! provider (CUDA, TensorRT, OpenVINO); a provider is used only when the loaded library offers it at run
//! time and the session can be created with it. Otherwise the session runs on the CPU and a warning is
//! issued once per provider and process ([`set_warning_sink`] routes warnings; standard error by default).

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::ep::ExecutionProvider as _;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorRef, ValueType};

use crate::gpu::TensorType;
use crate::{TensorSlice, TensorView};

pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.32.0";
const ORT_DIR: &str = ".vigil/onnxruntime";

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked in: {0}); run `make setup` or set VIGIL_ORT_LIB"
    )]
    LibraryNotFound(String),
    #[error("ONNX Runtime library {path} could not be loaded: {reason}")]
    LibraryLoad { path: PathBuf, reason: String },
    #[error("model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("model {path}: inference failed: {reason}")]
    Run { path: PathBuf, reason: String },
    /// The session cannot do what was asked (e.g. run on a device tensor).
    #[error("{0}")]
    Unsupported(String),
}

/// Where the ONNX Runtime library would be loaded from.
pub fn ort_library_path() -> Result<PathBuf, RuntimeError> {
    let mut looked = Vec::new();
    for var in ["VIGIL_ORT_LIB", "ORT_DYLIB_PATH"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(p);
            }
            looked.push(format!("${var}={}", p.display()));
        }
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    for root in roots {
        let dir = root.join(ORT_DIR);
        for name in [ORT_LIB_NAME, "libonnxruntime.so"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        let shown = dir.display().to_string();
        if !looked.contains(&shown) {
            looked.push(shown);
        }
    }
    Err(RuntimeError::LibraryNotFound(looked.join(", ")))
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime (once per process) and returns its environment.
pub fn environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    let r = ENVIRONMENT.get_or_init(|| {
        let path = ort_library_path().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path).map_err(|e| {
            RuntimeError::LibraryLoad {
                path: path.clone(),
                reason: e.to_string(),
            }
            .to_string()
        })?;
        // Microsoft's builds send usage telemetry (a DNS lookup and HTTPS to a Microsoft collector)
        // unless it is turned off here: a video pipeline must not phone home.
        builder
            .with_name("vigil")
            .with_telemetry(false)
            .build()
            .map_err(|e| {
                RuntimeError::LibraryLoad {
                    path,
                    reason: e.to_string(),
                }
                .to_string()
            })
    });
    r.as_ref().map_err(|e| RuntimeError::LibraryLoad {
        path: PathBuf::new(),
        reason: e.clone(),
    })
}

/// Where warnings of this module and of the engine ([`crate::ModelRuntime`]) go; standard error when unset.
static WARNING_SINK: OnceLock<fn(&str)> = OnceLock::new();
/// Keys of the warnings already issued (each is issued once per process).
static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// Messages of the warnings issued, in order (for status output and tests).
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Routes Vigil's run-time warnings (execution-provider fallbacks and the like) to `sink`, e.g. the
/// GStreamer debug log. Only the first call has an effect; returns whether it took effect.
pub fn set_warning_sink(sink: fn(&str)) -> bool {
    WARNING_SINK.set(sink).is_ok()
}

/// Issues `message` unless a warning with the same `key` was issued before in this process.
/// Returns whether it was issued now.
pub fn warn_once(key: &str, message: &str) -> bool {
    {
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        if !warned
            .get_or_insert_with(HashSet::new)
            .insert(key.to_owned())
        {
            return false;
        }
    }
    WARNINGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(message.to_owned());
    match WARNING_SINK.get() {
        Some(sink) => sink(message),
        None => eprintln!("vigil: warning: {message}"),
    }
    true
}

/// The warnings issued so far in this process, oldest first.
pub fn issued_warnings() -> Vec<String> {
    WARNINGS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// An ONNX Runtime execution provider a session can be asked to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    Cuda,
    /// TensorRT, with CUDA for the nodes TensorRT does not take.
    TensorRt,
    OpenVino,
}

impl ExecutionProvider {
    /// ONNX Runtime's name of the provider, e.g. `CUDAExecutionProvider`.
    pub fn ort_name(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "CPUExecutionProvider",
            ExecutionProvider::Cuda => "CUDAExecutionProvider",
            ExecutionProvider::TensorRt => "TensorrtExecutionProvider",
            ExecutionProvider::OpenVino => "OpenVINOExecutionProvider",
        }
    }

    /// The provider named by a Triton execution accelerator (`optimization.execution_accelerators`
    /// `name`): `cuda`, `tensorrt`, `openvino`; `cpu` is accepted too. `None` for other names.
    pub fn from_accelerator_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "cpu" => Some(ExecutionProvider::Cpu),
            "cuda" | "gpu" => Some(ExecutionProvider::Cuda),
            "tensorrt" | "trt" => Some(ExecutionProvider::TensorRt),
            "openvino" => Some(ExecutionProvider::OpenVino),
            _ => None,
        }
    }

    /// Whether the loaded ONNX Runtime library was built with this provider (it may still fail to
    /// initialise, e.g. without a GPU). Loads the library if needed; `false` when it cannot be loaded.
    pub fn is_available(self) -> bool {
        if environment().is_err() {
            return false;
        }
        let r = match self {
            ExecutionProvider::Cpu => return true,
            ExecutionProvider::Cuda => ort::ep::CUDA::is_available(),
            ExecutionProvider::TensorRt => ort::ep::TensorRT::is_available(),
            ExecutionProvider::OpenVino => ort::ep::OpenVINO::is_available(),
        };
        r.unwrap_or(false)
    }
}

impl std::fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecutionProvider::Cpu => "CPU",
            ExecutionProvider::Cuda => "CUDA",
            ExecutionProvider::TensorRt => "TensorRT",
            ExecutionProvider::OpenVino => "OpenVINO",
        })
    }
}

/// ONNX Runtime options of the execution providers (key, value), as ONNX Runtime names them (e.g.
/// `trt_fp16_enable`); made from a model's execution-accelerator parameters by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderOptions {
    pub tensorrt: Vec<(String, String)>,
    pub cuda: Vec<(String, String)>,
    pub openvino: Vec<(String, String)>,
}

/// How to create a session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionOptions {
    /// Intra-op threads; 0 = ONNX Runtime's default (one per core).
    pub intra_threads: usize,
    /// Let idle intra-op threads busy-wait for the next parallel section (ONNX Runtime's default).
    /// Off by default here: alone on an idle machine spinning is a little faster, but in a pipeline
    /// the spinning threads take the cores that decoding, encoding and the other sessions need
    /// (measured with NanoDet on 2 cores: alone 81 vs 76 frames/s with spinning; `vigil bench`
    /// 4 streams 41 vs 56 frames/s, and alone next to a busy process 26 vs 68 frames/s).
    pub intra_op_spinning: bool,
    /// The provider wanted; falls back to the CPU (with a warning issued once) where it is absent.
    pub execution_provider: ExecutionProvider,
    /// GPU ordinal for CUDA and TensorRT.
    pub device_id: i32,
    /// Options of the providers (the CUDA ones also apply under TensorRT, for the nodes TensorRT
    /// does not take). Folders named by `trt_engine_cache_path`/`trt_timing_cache_path` are made.
    pub provider_options: std::sync::Arc<ProviderOptions>,
    /// The instance's name (`<model>_<group>_<index>`, Triton's), for sessions that show it to
    /// the model (the Python backend's `model_instance_name`); may be empty.
    pub instance_name: String,
}

/// Name, element type and shape (`-1` = dynamic) of a model input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct IoInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// One ONNX Runtime session of a model.
pub struct OnnxModel {
    path: PathBuf,
    session: Session,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    provider: ExecutionProvider,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("provider", &self.provider)
            .finish()
    }
}

fn io_info(name: &str, t: &ValueType) -> IoInfo {
    match t {
        ValueType::Tensor { ty, shape, .. } => IoInfo {
            name: name.to_string(),
            dtype: format!("{ty:?}"),
            shape: shape.iter().copied().collect(),
        },
        other => IoInfo {
            name: name.to_string(),
            dtype: format!("{other:?}"),
            shape: Vec::new(),
        },
    }
}

/// The ONNX Runtime providers to register for `provider` (CUDA is added under TensorRT, for the
/// nodes TensorRT does not take, when the library has it), with `options`' provider options.
fn provider_dispatch(
    provider: ExecutionProvider,
    options: &SessionOptions,
) -> Vec<ort::ep::ExecutionProviderDispatch> {
    use ort::ep::ArbitrarilyConfigurableExecutionProvider as _;
    let device_id = options.device_id;
    let extra = &options.provider_options;
    let cuda = || {
        let mut ep = ort::ep::CUDA::default().with_device_id(device_id);
        for (k, v) in &extra.cuda {
            ep = ep.with_arbitrary_config(k, v);
        }
        ep.build().error_on_failure()
    };
    match provider {
        ExecutionProvider::Cpu => Vec::new(),
        ExecutionProvider::Cuda => vec![cuda()],
        ExecutionProvider::TensorRt => {
            let mut ep = ort::ep::TensorRT::default().with_device_id(device_id);
            for (k, v) in &extra.tensorrt {
                if k.ends_with("_cache_path") {
                    // Best effort: ONNX Runtime reports a folder it cannot write.
                    let _ = std::fs::create_dir_all(v);
                }
                ep = ep.with_arbitrary_config(k, v);
            }
            let mut eps = vec![ep.build().error_on_failure()];
            if ExecutionProvider::Cuda.is_available() {
                eps.push(cuda());
            }
            eps
        }
        ExecutionProvider::OpenVino => {
            let mut ep = ort::ep::OpenVINO::default();
            for (k, v) in &extra.openvino {
                ep = ep.with_arbitrary_config(k, v);
            }
            vec![ep.build().error_on_failure()]
        }
    }
}

/// The providers to try for `wanted`, in order; the CPU, always usable, ends the list.
fn fallback_chain(wanted: ExecutionProvider) -> &'static [ExecutionProvider] {
    use ExecutionProvider::*;
    match wanted {
        Cpu => &[Cpu],
        Cuda => &[Cuda, Cpu],
        TensorRt => &[TensorRt, Cuda, Cpu],
        OpenVino => &[OpenVino, Cpu],
    }
}

impl OnnxModel {
    /// Loads `path` on the CPU with `intra_threads` threads (0 = ONNX Runtime's default).
    pub fn load(path: &Path, intra_threads: usize) -> Result<Self, RuntimeError> {
        Self::load_with(
            path,
            SessionOptions {
                intra_threads,
                ..SessionOptions::default()
            },
        )
    }

    /// Loads `path` with `options`. A provider other than the CPU is used when the ONNX Runtime
    /// library offers it and a session can be created with it; otherwise the session runs on the
    /// CPU and a warning is issued (once per provider and process). See
    /// [`OnnxModel::execution_provider`] for the provider in use.
    pub fn load_with(path: &Path, options: SessionOptions) -> Result<Self, RuntimeError> {
        let env = environment()?;
        let err = |reason: String| RuntimeError::Model {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let build = |eps: Vec<ort::ep::ExecutionProviderDispatch>| -> Result<Session, String> {
            let mut builder = Session::builder(env).map_err(|e| e.to_string())?;
            if options.intra_threads > 0 {
                builder = builder
                    .with_intra_threads(options.intra_threads)
                    .map_err(|e| e.to_string())?;
            }
            builder = builder
                .with_intra_op_spinning(options.intra_op_spinning)
                .map_err(|e| e.to_string())?;
            if !eps.is_empty() {
                builder = builder
                    .with_execution_providers(eps)
                    .map_err(|e| e.to_string())?;
            }
            builder
                .commit_from_file(path)
                .map_err(|e| format!("not a loadable ONNX model: {e}"))
        };
        let mut provider = ExecutionProvider::Cpu;
        let mut session = None;
        for &candidate in fallback_chain(options.execution_provider) {
            if candidate == ExecutionProvider::Cpu {
                break;
            }
            if !candidate.is_available() {
                warn_once(
                    &format!("provider-absent:{candidate:?}"),
                    &format!(
                        "the {candidate} execution provider ({}) is not available in the ONNX \
                         Runtime library; falling back to {}",
                        candidate.ort_name(),
                        fallback_chain(candidate)[1]
                    ),
                );
                continue;
            }
            match build(provider_dispatch(candidate, &options)) {
                Ok(s) => {
                    session = Some(s);
                    provider = candidate;
                    break;
                }
                Err(e) => {
                    warn_once(
                        &format!("provider-failed:{candidate:?}"),
                        &format!(
                            "the {candidate} execution provider could not be used for {}: {e}; \
                             falling back to {}",
                            path.display(),
                            fallback_chain(candidate)[1]
                        ),
                    );
                }
            }
        }
        let session = match session {
            Some(s) => s,
            None => build(Vec::new()).map_err(err)?,
        };
        let inputs = session
            .inputs()
            .iter()
            .map(|o| io_info(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| io_info(o.name(), o.dtype()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            session,
            inputs,
            outputs,
            provider,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }

    /// The execution provider this session was created with.
    pub fn execution_provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// Runs the model on one f32 tensor fed to its first input and hands the f32 outputs (in the
    /// model's output order) to `f`.
    pub fn run<R>(
        &mut self,
        input: &[f32],
        shape: &[i64],
        f: impl FnOnce(&[TensorView]) -> R,
    ) -> Result<R, RuntimeError> {
        let name = match self.inputs.first() {
            Some(i) => i.name.clone(),
            None => {
                return Err(RuntimeError::Run {
                    path: self.path.clone(),
                    reason: "the model has no input".into(),
                });
            }
        };
        self.run_named(&[(name.as_str(), shape, TensorSlice::Fp32(input))], f)
    }

    /// Runs the model on named tensors `(name, shape, data)` and hands the outputs (in the model's
    /// output order) to `f`. An input in the model's element type is fed as it is (`BYTES` as
    /// strings, which must be UTF-8); f32 data for an input of another numeric type
    /// ([`INPUT_TYPES`]) is converted at this boundary: FP16 rounded to nearest (ties to even),
    /// integers rounded and saturated to the type's range (e.g. an 8-bit image input: 0..=255).
    /// Outputs: in their element type (`raw`, borrowed from ONNX Runtime's buffers) and as f32
    /// (`data`: FP32 borrowed, other numeric types widened; FP16 and integers up to 2^24 exactly).
    pub fn run_named<R>(
        &mut self,
        inputs: &[(&str, &[i64], TensorSlice<'_>)],
        f: impl FnOnce(&[TensorView]) -> R,
    ) -> Result<R, RuntimeError> {
        let err = run_error(&self.path);
        // Converted copies of the inputs the model does not take as given, made before any view.
        let mut converted: Vec<Option<Converted>> = Vec::with_capacity(inputs.len());
        for &(name, _, data) in inputs {
            let Some(info) = self.inputs.iter().find(|i| i.name == name) else {
                let known: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(err(format!(
                    "'{name}' is not an input of the model (inputs: {})",
                    known.join(", ")
                )));
            };
            converted.push(Converted::for_input(name, &info.dtype, data).map_err(&err)?);
        }
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for (&(name, shape, data), conv) in inputs.iter().zip(&converted) {
            let value = match conv {
                None => input_value(shape, data),
                Some(c) => c.view(shape),
            }
            .map_err(|e| err(format!("input '{name}' with shape {shape:?}: {e}")))?;
            values.push((Cow::Borrowed(name), value));
        }
        let outputs = self.session.run(values).map_err(|e| err(e.to_string()))?;
        with_output_views(&outputs, &self.outputs, err, f)
    }
}

/// Element types (as [`IoInfo::dtype`] names them) the engine feeds and reads: every Triton data
/// type (`TYPE_STRING` is ONNX's `String`).
pub const ELEMENT_TYPES: &[&str] = &[
    "Bool", "Uint8", "Uint16", "Uint32", "Uint64", "Int8", "Int16", "Int32", "Int64", "Float16",
    "Bfloat16", "Float32", "Float64", "String",
];

/// Element types (as [`IoInfo::dtype`] names them) that f32 request data is converted to.
pub const INPUT_TYPES: &[&str] = &["Float32", "Float16", "Uint8", "Int8", "Int32", "Int64"];

/// An input tensor as ONNX Runtime takes it: primitive types borrowed, strings copied.
fn input_value<'a>(shape: &'a [i64], data: TensorSlice<'a>) -> ort::Result<SessionInputValue<'a>> {
    fn view<'a, T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
        shape: &'a [i64],
        d: &'a [T],
    ) -> ort::Result<SessionInputValue<'a>> {
        Ok(TensorRef::from_array_view((shape, d))?.into())
    }
    match data {
        TensorSlice::Bool(d) => view(shape, d),
        TensorSlice::Uint8(d) => view(shape, d),
        TensorSlice::Uint16(d) => view(shape, d),
        TensorSlice::Uint32(d) => view(shape, d),
        TensorSlice::Uint64(d) => view(shape, d),
        TensorSlice::Int8(d) => view(shape, d),
        TensorSlice::Int16(d) => view(shape, d),
        TensorSlice::Int32(d) => view(shape, d),
        TensorSlice::Int64(d) => view(shape, d),
        TensorSlice::Fp16(d) => view(shape, d),
        TensorSlice::Bf16(d) => view(shape, d),
        TensorSlice::Fp32(d) => view(shape, d),
        TensorSlice::Fp64(d) => view(shape, d),
        TensorSlice::Bytes(d) => Ok(string_tensor(shape, d)?.into()),
    }
}

/// `Ok` for a null status; else its message (the status is released).
fn check_status(status: ort::sys::OrtStatusPtr) -> Result<(), String> {
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status returned by the API: its message is a NUL-terminated string it
    // owns, copied before the status is released (once, here).
    unsafe {
        let message = std::ffi::CStr::from_ptr((ort::api().GetErrorMessage)(status.0))
            .to_string_lossy()
            .into_owned();
        (ort::api().ReleaseStatus)(status.0);
        Err(message)
    }
}

/// A string tensor of `shape` holding `elements` byte for byte (NUL bytes and bytes that are not
/// UTF-8 included: each element is written with its length, never as a C string).
fn string_tensor(shape: &[i64], elements: &[Vec<u8>]) -> ort::Result<ort::value::Tensor<String>> {
    use ort::AsPointer as _;
    let empty = vec![""; elements.len()];
    let mut tensor = ort::value::Tensor::from_string_array((shape, empty.as_slice()))?;
    for (k, element) in elements.iter().enumerate() {
        let mut buffer: *mut std::ffi::c_char = std::ptr::null_mut();
        // SAFETY: `tensor` is a string tensor of `elements.len()` elements and `k` is below that;
        // the API resizes element `k` to `element.len()` bytes and returns its buffer, which stays
        // valid until the element changes; exactly that many bytes are copied into it.
        unsafe {
            check_status((ort::api().GetResizedStringTensorElementBuffer)(
                tensor.ptr_mut(),
                k,
                element.len(),
                &mut buffer,
            ))
            .map_err(ort::Error::new)?;
            if !element.is_empty() {
                std::ptr::copy_nonoverlapping(element.as_ptr(), buffer.cast::<u8>(), element.len());
            }
        }
    }
    Ok(tensor)
}

/// The elements of string tensor `value` (of `count` elements), byte for byte.
fn string_elements(value: &ort::value::DynValue, count: usize) -> Result<Vec<Vec<u8>>, String> {
    use ort::AsPointer as _;
    if count == 0 {
        return Ok(Vec::new());
    }
    let ptr = value.ptr();
    let mut total = 0usize;
    // SAFETY: `value` is a string tensor (checked by the caller) of `count` elements; the API
    // writes `total` and then at most `total` bytes into `content` and `count` offsets.
    let mut content = unsafe {
        check_status((ort::api().GetStringTensorDataLength)(ptr, &mut total))?;
        vec![0u8; total]
    };
    let mut offsets = vec![0usize; count + 1];
    // SAFETY: as above: `content` holds `total` bytes, `offsets` at least `count` entries.
    unsafe {
        check_status((ort::api().GetStringTensorContent)(
            ptr,
            content.as_mut_ptr().cast(),
            total,
            offsets.as_mut_ptr(),
            count,
        ))?;
    }
    offsets[count] = total;
    offsets
        .windows(2)
        .map(|w| {
            content
                .get(w[0]..w[1])
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("string offsets {w:?} outside its {total} bytes"))
        })
        .collect()
}

/// An input converted from f32 to the model's element type.
enum Converted {
    F16(Vec<half::f16>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Converted {
    /// What input `name` of element type `dtype` (an [`IoInfo::dtype`] name) needs of `data`:
    /// nothing (`None`) when it has that type, a converted copy of f32 data for the numeric types
    /// of [`INPUT_TYPES`], else an error naming both types.
    fn for_input(name: &str, dtype: &str, data: TensorSlice<'_>) -> Result<Option<Self>, String> {
        let given = data.data_type().element_name().unwrap_or("Invalid");
        if given == dtype {
            return Ok(None);
        }
        let TensorSlice::Fp32(values) = data else {
            return Err(format!(
                "input '{name}' has element type {dtype}; the request gives {given}"
            ));
        };
        Converted::new(dtype, values).map(Some).ok_or_else(|| {
            format!(
                "input '{name}' has element type {dtype}; f32 data is converted only to {}",
                INPUT_TYPES.join(", ")
            )
        })
    }

    /// `data` converted to `dtype` (an [`IoInfo::dtype`] name); `None` for types not in
    /// [`INPUT_TYPES`]. Integers: rounded, then saturated (Rust's `as`; NaN becomes 0).
    fn new(dtype: &str, data: &[f32]) -> Option<Self> {
        Some(match dtype {
            "Float16" => Converted::F16(data.iter().map(|&v| half::f16::from_f32(v)).collect()),
            "Uint8" => Converted::U8(data.iter().map(|v| v.round() as u8).collect()),
            "Int8" => Converted::I8(data.iter().map(|v| v.round() as i8).collect()),
            "Int32" => Converted::I32(data.iter().map(|v| v.round() as i32).collect()),
            "Int64" => Converted::I64(data.iter().map(|v| v.round() as i64).collect()),
            _ => return None,
        })
    }

    fn view<'a>(&'a self, shape: &'a [i64]) -> ort::Result<SessionInputValue<'a>> {
        Ok(match self {
            Converted::F16(d) => TensorRef::from_array_view((shape, d.as_slice()))?.into(),
            Converted::U8(d) => TensorRef::from_array_view((shape, d.as_slice()))?.into(),
            Converted::I8(d) => TensorRef::from_array_view((shape, d.as_slice()))?.into(),
            Converted::I32(d) => TensorRef::from_array_view((shape, d.as_slice()))?.into(),
            Converted::I64(d) => TensorRef::from_array_view((shape, d.as_slice()))?.into(),
        })
    }
}

/// The element types a warm-up feeds (zeros as f32, converted as for requests).
const WARM_UP_TYPES: [&str; 6] = ["Float32", "Float16", "Uint8", "Int8", "Int32", "Int64"];

impl OnnxModel {
    /// Runs the model once on zeros of batch 1, so that the first request (a client's, a camera's
    /// first frame) does not pay ONNX Runtime's first-run set-up (allocations, kernel choices): on a
    /// loaded machine that first run took longer than a remote client's one-second deadline. Only
    /// where every input is numeric with a fixed shape apart from a leading batch dimension (nothing
    /// to guess); a failure is ignored (requests report their own). Returns whether it ran.
    pub fn warm_up(&mut self) -> bool {
        let mut inputs: Vec<(String, Vec<i64>, Vec<f32>)> = Vec::new();
        for io in &self.inputs {
            if !WARM_UP_TYPES.contains(&io.dtype.as_str()) || io.shape.is_empty() {
                return false;
            }
            let mut shape = io.shape.clone();
            if shape[0] < 0 {
                shape[0] = 1;
            }
            if shape.iter().any(|&d| d < 1) {
                return false;
            }
            let n: i64 = shape.iter().product();
            if n > 64 << 20 {
                return false;
            }
            inputs.push((io.name.clone(), shape, vec![0.0; n as usize]));
        }
        if inputs.is_empty() {
            return false;
        }
        let named: Vec<(&str, &[i64], TensorSlice<'_>)> = inputs
            .iter()
            .map(|(n, s, d)| (n.as_str(), s.as_slice(), TensorSlice::Fp32(d)))
            .collect();
        self.run_named(&named, |_| ()).is_ok()
    }

    /// Runs the model on a tensor already in CUDA device memory (e.g. a
    /// [`crate::gpu::DeviceTensor`]: `ptr` is its buffer's device address), bound to the first input
    /// through an ONNX Runtime `IoBinding`, so it is not copied through the host; the outputs are
    /// bound to host memory (copied back once) and handed to `f` as [`OnnxModel::run`] does.
    /// Only for sessions on the CUDA or TensorRT provider (an error otherwise). `dtype` must be the
    /// input's element type (FP32 or FP16; the tensor is bound as it is, never converted).
    ///
    /// # Safety
    /// `ptr` must point to at least `shape`'s product of `dtype` values in device memory of CUDA
    /// device `device_id`, written before this call (the producer's stream synchronised).
    pub unsafe fn run_device<R>(
        &mut self,
        ptr: u64,
        shape: &[i64],
        dtype: TensorType,
        device_id: i32,
        f: impl FnOnce(&[TensorView]) -> R,
    ) -> Result<R, RuntimeError> {
        use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
        use ort::value::TensorRefMut;
        let err = run_error(&self.path);
        if !matches!(
            self.provider,
            ExecutionProvider::Cuda | ExecutionProvider::TensorRt
        ) {
            return Err(err(format!(
                "a device tensor needs the CUDA or TensorRT provider; this session runs on {}",
                self.provider
            )));
        }
        let Some((input, input_type)) = self
            .inputs
            .first()
            .map(|i| (i.name.clone(), i.dtype.clone()))
        else {
            return Err(err("the model has no input".into()));
        };
        let expected = match dtype {
            TensorType::F32 => "Float32",
            TensorType::F16 => "Float16",
        };
        if input_type != expected {
            return Err(err(format!(
                "a {dtype:?} device tensor cannot be bound to input '{input}' of element type \
                 {input_type}"
            )));
        }
        let cuda = MemoryInfo::new(
            AllocationDevice::CUDA,
            device_id,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(|e| err(format!("CUDA memory info: {e}")))?;
        let mut binding = self
            .session
            .create_binding()
            .map_err(|e| err(format!("IoBinding: {e}")))?;
        let bind_error = |e: ort::Error| err(format!("binding the device tensor {shape:?}: {e}"));
        let shape_of = || ort::value::Shape::from(shape.to_vec());
        // SAFETY (both arms): the caller guarantees the buffer (see above); the views live only
        // during the run.
        match dtype {
            TensorType::F32 => {
                let tensor = unsafe {
                    TensorRefMut::<f32>::from_raw(cuda, ptr as usize as *mut _, shape_of())
                }
                .map_err(bind_error)?;
                binding.bind_input(input.as_str(), &tensor)
            }
            TensorType::F16 => {
                let tensor = unsafe {
                    TensorRefMut::<half::f16>::from_raw(cuda, ptr as usize as *mut _, shape_of())
                }
                .map_err(bind_error)?;
                binding.bind_input(input.as_str(), &tensor)
            }
        }
        .map_err(|e| err(format!("binding input '{input}': {e}")))?;
        for o in &self.outputs {
            binding
                .bind_output_to_device(o.name.as_str(), &MemoryInfo::default())
                .map_err(|e| err(format!("binding output '{}': {e}", o.name)))?;
        }
        let outputs = self
            .session
            .run_binding(&binding)
            .map_err(|e| err(e.to_string()))?;
        with_output_views(&outputs, &self.outputs, err, f)
    }
}

/// The error of a failed run of the model at `path`, made from its reason.
fn run_error(path: &Path) -> impl Fn(String) -> RuntimeError + '_ {
    move |reason| RuntimeError::Run {
        path: path.to_path_buf(),
        reason,
    }
}

/// An output's values in its element type: borrowed from ONNX Runtime's buffer, or (strings)
/// copied; an error for element types a Triton model cannot have.
enum OutputValues<'a> {
    Borrowed(TensorSlice<'a>),
    Strings(Vec<Vec<u8>>),
}

impl OutputValues<'_> {
    fn slice(&self) -> TensorSlice<'_> {
        match self {
            OutputValues::Borrowed(s) => *s,
            OutputValues::Strings(v) => TensorSlice::Bytes(v),
        }
    }
}

/// An output's shape and values.
fn output_values(value: &ort::value::DynValue) -> Result<(Vec<usize>, OutputValues<'_>), String> {
    use ort::value::TensorElementType as T;
    fn all<'a, X: ort::value::PrimitiveTensorElementType + 'a>(
        value: &'a ort::value::DynValue,
        wrap: impl Fn(&'a [X]) -> TensorSlice<'a>,
    ) -> Result<(Vec<usize>, OutputValues<'a>), String> {
        let (shape, data) = value.try_extract_tensor::<X>().map_err(|e| e.to_string())?;
        Ok((dims(shape), OutputValues::Borrowed(wrap(data))))
    }
    fn dims(shape: &[i64]) -> Vec<usize> {
        shape.iter().map(|&d| d.max(0) as usize).collect()
    }
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(format!("is not a tensor ({other:?})")),
    };
    match ty {
        T::Float32 => all(value, TensorSlice::Fp32),
        T::Float16 => all(value, TensorSlice::Fp16),
        T::Bfloat16 => all(value, TensorSlice::Bf16),
        T::Float64 => all(value, TensorSlice::Fp64),
        T::Uint8 => all(value, TensorSlice::Uint8),
        T::Uint16 => all(value, TensorSlice::Uint16),
        T::Uint32 => all(value, TensorSlice::Uint32),
        T::Uint64 => all(value, TensorSlice::Uint64),
        T::Int8 => all(value, TensorSlice::Int8),
        T::Int16 => all(value, TensorSlice::Int16),
        T::Int32 => all(value, TensorSlice::Int32),
        T::Int64 => all(value, TensorSlice::Int64),
        T::Bool => all(value, TensorSlice::Bool),
        T::String => {
            let ValueType::Tensor { shape, .. } = value.dtype() else {
                return Err("is not a tensor".into());
            };
            let count = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d.max(0) as usize));
            let count = count.ok_or("has too many elements")?;
            Ok((
                dims(shape),
                OutputValues::Strings(string_elements(value, count)?),
            ))
        }
        other => Err(format!(
            "has element type {other:?}, which no Triton data type stands for"
        )),
    }
}

/// Hands the session's `outputs` (in the order of `infos`) to `f` as [`TensorView`]s: the values
/// in their element type and as f32 (borrowed for FP32, widened for the other numeric types, empty
/// for strings); an output of another element type is an error naming it.
fn with_output_views<R>(
    outputs: &ort::session::SessionOutputs<'_>,
    infos: &[IoInfo],
    err: impl Fn(String) -> RuntimeError,
    f: impl FnOnce(&[TensorView]) -> R,
) -> Result<R, RuntimeError> {
    /// An output's name, shape, values and f32 values.
    type Part<'a> = (&'a str, Vec<usize>, OutputValues<'a>);
    let mut parts: Vec<Part<'_>> = Vec::with_capacity(infos.len());
    for info in infos {
        let name = info.name.as_str();
        let (shape, values) =
            output_values(&outputs[name]).map_err(|e| err(format!("output '{name}' {e}")))?;
        parts.push((name, shape, values));
    }
    let widened: Vec<Cow<'_, [f32]>> = parts
        .iter()
        .map(|(_, _, v)| v.slice().to_f32().unwrap_or(Cow::Borrowed(&[])))
        .collect();
    let views: Vec<TensorView> = parts
        .iter()
        .zip(&widened)
        .map(|((n, s, v), d)| TensorView {
            name: n,
            shape: s,
            data: d,
            raw: v.slice(),
        })
        .collect();
    Ok(f(&views))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accelerator_names() {
        assert_eq!(
            ExecutionProvider::from_accelerator_name("TensorRT"),
            Some(ExecutionProvider::TensorRt)
        );
        assert_eq!(
            ExecutionProvider::from_accelerator_name("openvino"),
            Some(ExecutionProvider::OpenVino)
        );
        assert_eq!(
            ExecutionProvider::from_accelerator_name("auto_mixed_precision"),
            None
        );
    }

    #[test]
    fn warn_once_issues_each_key_once() {
        assert!(warn_once("test:runtime-warn-once", "test warning (ignore)"));
        assert!(!warn_once(
            "test:runtime-warn-once",
            "test warning (ignore)"
        ));
        assert!(
            issued_warnings()
                .iter()
                .any(|w| w == "test warning (ignore)")
        );
    }
}
