//! ONNX Runtime: finding and loading the shared library once per process, and running a model.
//!
//! The library is loaded dynamically (`ort`'s `load-dynamic`). It is looked for, in order, at
//! `$VIGIL_ORT_LIB`, `$ORT_DYLIB_PATH`, then `.vigil/onnxruntime/` (where `make setup` puts it) in the
//! current directory and its ancestors, beside the running executable and its ancestors, and in the
//! source checkout this crate was built from.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::value::{Tensor, ValueType};

use crate::postprocess::TensorView;

pub const ORT_LIB_NAME: &str = "libonnxruntime.so.1.32.0";
const ORT_DIR: &str = ".vigil/onnxruntime";

#[derive(Debug, thiserror::Error)]
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
        builder.with_name("vigil").build().map_err(|e| {
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

/// Name, element type and shape (`-1` = dynamic) of a model input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct IoInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// One ONNX Runtime session of a model (CPU).
pub struct OnnxModel {
    path: PathBuf,
    session: Session,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
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

impl OnnxModel {
    /// Loads `path` with `intra_threads` threads (0 = ONNX Runtime's default).
    pub fn load(path: &Path, intra_threads: usize) -> Result<Self, RuntimeError> {
        let env = environment()?;
        let err = |reason: String| RuntimeError::Model {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let mut builder = Session::builder(env).map_err(|e| err(e.to_string()))?;
        if intra_threads > 0 {
            builder = builder
                .with_intra_threads(intra_threads)
                .map_err(|e| err(e.to_string()))?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| err(format!("not a loadable ONNX model: {e}")))?;
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

    /// Runs the model on one f32 input tensor and hands the f32 outputs (in the model's output order) to `f`.
    pub fn run<R>(
        &mut self,
        input: &[f32],
        shape: &[i64],
        f: impl FnOnce(&[TensorView]) -> R,
    ) -> Result<R, RuntimeError> {
        let err = |reason: String| RuntimeError::Run {
            path: self.path.clone(),
            reason,
        };
        let tensor =
            Tensor::from_array((shape.to_vec(), input.to_vec())).map_err(|e| err(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| err(e.to_string()))?;
        let mut shapes: Vec<(String, Vec<usize>, &[f32])> = Vec::with_capacity(outputs.len());
        for (i, info) in self.outputs.iter().enumerate() {
            let name = &info.name;
            let (shape, data) = outputs[i]
                .try_extract_tensor::<f32>()
                .map_err(|e| err(format!("output '{name}' is not an f32 tensor: {e}")))?;
            shapes.push((
                name.clone(),
                shape.iter().map(|&d| d.max(0) as usize).collect(),
                data,
            ));
        }
        let views: Vec<TensorView> = shapes
            .iter()
            .map(|(n, s, d)| TensorView {
                name: n,
                shape: s,
                data: d,
            })
            .collect();
        Ok(f(&views))
    }
}
