//! A Triton-compatible model repository.
//!
//! Layout (as in Triton Inference Server):
//!
//! ```text
//! <root>/<model>/config.pbtxt        protobuf text of inference.ModelConfig
//! <root>/<model>/labels.txt          optional class labels, one per line
//! <root>/<model>/<version>/model.onnx numeric version folders; file name from
//!                                     default_model_filename (default "model.onnx")
//! ```
//!
//! `config.pbtxt` is parsed against Vigil's copy of Triton's `model_config.proto`
//! ([`schema::MODEL_CONFIG_PROTO`]), so every Triton field is accepted and unknown fields are
//! errors with file, line and column. The typed [`ModelConfig`] keeps the parsed message in
//! [`ModelConfig::raw`].
//!
//! [`ModelRepository::load`] then does what Triton does with a configuration:
//! 1. fills `platform` ↔ `backend` and `default_model_filename` ([`normalize()`]);
//! 2. unless strict ([`LoadOptions::strict`]), auto-completes an ONNX model's missing inputs,
//!    outputs and `max_batch_size` from the model file itself ([`autocomplete_onnx`], reading
//!    the file with [`onnx::read_onnx_io`]), and a model of a backend registered with
//!    [`register_backend_autocomplete`] (the engine's Python backend) by that backend; a missing
//!    `config.pbtxt` is then allowed;
//! 3. normalises (version policy, preferred batch sizes, instance groups, ...: [`normalize()`]);
//! 4. validates with Triton's rules and messages ([`validate_config`]), ensembles against the
//!    models they run.
//!
//! [`ModelRepository::model_config`] gives the resulting configuration (`to_pbtxt` prints it).
//!
//! Not done here: batching, execution, and reloading on change.

mod autocomplete;
mod config;
mod fields;
mod normalize;
pub mod onnx;
mod repository;
pub mod schema;
mod text;
mod validate;

use std::path::PathBuf;

pub use autocomplete::{
    BackendAutocomplete, DEFAULT_MAX_BATCH_SIZE, autocomplete_onnx, needs_autocomplete,
    register_backend_autocomplete,
};
pub use config::{
    Accelerator, DataType, DynamicBatching, ExecutionAccelerators, InstanceGroup, InstanceKind,
    ModelConfig, TensorConfig, TensorFormat, VersionPolicy,
};
pub use normalize::{
    ENSEMBLE_PLATFORM, NormalizeOptions, ONNXRUNTIME_BACKEND, ONNXRUNTIME_PLATFORM,
    SEQUENCE_IDLE_DEFAULT_MICROSECONDS, TENSORRT_PLATFORM, VersionDirContent, normalize,
};
pub use onnx::{OnnxIo, OnnxTensor};
pub use repository::{
    CONFIG_FILE_NAME, DEFAULT_MODEL_FILENAME, LABELS_FILE_NAME, LoadOptions, LoadedModel,
    ModelRepository, read_labels,
};
pub use validate::{MIN_COMPUTE_CAPABILITY, validate_config};

/// Errors of the model repository. Every message names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The repository root is missing or not a folder.
    #[error("model repository {path} {reason}")]
    RepositoryNotFound { path: PathBuf, reason: String },

    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// No folder for the model in the repository.
    #[error("model '{model}' not found: no folder {dir} in model repository {root}")]
    ModelNotFound {
        model: String,
        dir: PathBuf,
        root: PathBuf,
    },

    /// The model name cannot be a folder name of the repository.
    #[error("invalid model name '{model}' for model repository {root}: {reason}")]
    InvalidModelName {
        model: String,
        root: PathBuf,
        reason: String,
    },

    /// The model folder has no `config.pbtxt`, and the repository is strict (no auto-complete).
    #[error(
        "model '{model}': configuration {path} is missing (strict model configuration: a \
         config.pbtxt is required)"
    )]
    MissingConfig { model: String, path: PathBuf },

    /// A syntax error, unknown field or unknown enum value in a configuration.
    #[error("{path}:{line}:{column}: {message}")]
    ConfigSyntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A configuration that parses but cannot be used.
    #[error("{path}: {message}")]
    ConfigInvalid { path: PathBuf, message: String },

    /// A configuration that breaks one of Triton's rules (normalisation, auto-complete or
    /// validation). `message` is Triton's, naming the model and the field; `path` is the
    /// configuration file when there is one.
    #[error("{}{message}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    InvalidConfig {
        model: String,
        path: Option<PathBuf>,
        message: String,
    },

    /// The configuration's `name` differs from the model folder's name.
    #[error(
        "{path}: unexpected directory name '{model}' for model '{config_name}', directory name \
         must equal model name (the name field must be the folder name or left out)"
    )]
    NameMismatch {
        model: String,
        config_name: String,
        path: PathBuf,
    },

    /// No numeric version folder.
    #[error("model '{model}': no version folder in {dir} (expected a numeric folder such as 1/)")]
    NoVersion { model: String, dir: PathBuf },

    /// The requested version folder does not exist.
    #[error(
        "model '{model}': version {version} not found: no folder {path} (versions present: {available})"
    )]
    VersionNotFound {
        model: String,
        version: u64,
        path: PathBuf,
        available: String,
    },

    /// The version exists but the configuration's version policy does not serve it.
    #[error(
        "model '{model}': version {version} in {dir} is not served by the version policy \
         '{policy}' of {config} (served: {served})",
        config = .dir.join(CONFIG_FILE_NAME).display()
    )]
    VersionNotServed {
        model: String,
        version: u64,
        dir: PathBuf,
        policy: String,
        served: String,
    },

    /// The version policy selects no version that exists.
    #[error(
        "model '{model}': the version policy '{policy}' of {config} selects none of the versions \
         in {dir} (present: {available})",
        config = .dir.join(CONFIG_FILE_NAME).display()
    )]
    NoServedVersion {
        model: String,
        policy: String,
        dir: PathBuf,
        available: String,
    },

    /// The version folder has no model file.
    #[error("model '{model}' version {version}: model file {path} is missing")]
    ModelFileMissing {
        model: String,
        version: u64,
        path: PathBuf,
    },

    /// The labels file named by `label_filename` is missing.
    #[error("model '{model}': labels file {path} (label_filename of output '{output}') is missing")]
    LabelsMissing {
        model: String,
        output: String,
        path: PathBuf,
    },

    /// The model file auto-complete reads is not a well-formed ONNX model.
    #[error("{path} is not a valid ONNX model ({message})")]
    ModelFileInvalid { path: PathBuf, message: String },

    /// The embedded schema failed to compile (a bug in Vigil, not in the input).
    #[error("internal error in the model configuration schema: {0}")]
    Schema(String),
}

#[cfg(test)]
mod conformance_tests {
    use super::*;
    use std::path::Path;

    fn conformance_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/triton")
    }

    fn pbtxt_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pbtxt"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn triton_example_configs_parse() {
        let dir = conformance_dir().join("examples");
        if !dir.is_dir() {
            println!(
                "note: {} does not exist; skipping the Triton example configs",
                dir.display()
            );
            return;
        }
        let files = pbtxt_files(&dir);
        assert!(!files.is_empty(), "no .pbtxt files in {}", dir.display());
        for file in &files {
            let config = ModelConfig::from_file(file).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !config.input.is_empty() || !config.output.is_empty(),
                "{}: no tensors",
                file.display()
            );
            // The normalised text parses back to the same configuration.
            let again = ModelConfig::parse(&config.to_pbtxt(), file)
                .unwrap_or_else(|e| panic!("re-parsing {}: {e}", file.display()));
            assert_eq!(again, config, "{}", file.display());
        }
        println!("parsed {} Triton example configs", files.len());
    }

    /// Triton's L0_model_config cases are semantically wrong but syntactically valid.
    #[test]
    fn triton_qa_configs_parse() {
        let dir = conformance_dir().join("noautofill_platform");
        if !dir.is_dir() {
            println!("note: {} does not exist; skipping", dir.display());
            return;
        }
        let mut count = 0;
        for case in std::fs::read_dir(&dir).unwrap() {
            let file = case.unwrap().path().join("config.pbtxt");
            if file.is_file() {
                ModelConfig::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
                count += 1;
            }
        }
        println!("parsed {count} Triton QA configs");
    }
}
