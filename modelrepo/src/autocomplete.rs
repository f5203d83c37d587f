//! Triton's auto-complete of ONNX model configurations (its ONNX Runtime backend's rule), from
//! the model's own inputs and outputs.
//!
//! - Nothing is done when the configuration already lists inputs (or batch inputs) and outputs.
//! - The model can batch when every input and output has a variable (-1 or symbolic) first
//!   dimension. Then `max_batch_size` 0 becomes the default (4, Triton's
//!   `default-max-batch-size`), and with `max_batch_size` > 1 an empty `dynamic_batching { }` is
//!   added unless the model already has a scheduler. A model that cannot batch must have
//!   `max_batch_size` 0.
//! - Missing inputs (outputs) are all filled from the model: name, data type and dims, without the
//!   batch dimension when `max_batch_size` > 0. A tensor that has no other dimension gets
//!   `dims: [ 1 ]` (and, with batching, an empty `reshape`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use prost_reflect::{DynamicMessage, Value};

use super::RepoError;
use super::config::ModelConfig;
use super::fields::{enum_number, has, int, len, list_mut, new_child, set};
use super::normalize::{ONNXRUNTIME_BACKEND, ONNXRUNTIME_PLATFORM, rebuild};
use super::onnx::{OnnxIo, OnnxTensor};

/// Triton's default `max_batch_size` for models that can batch (`--backend-config
/// default-max-batch-size`).
pub const DEFAULT_MAX_BATCH_SIZE: i32 = 4;

/// Whether `config` is an ONNX model (ONNX Runtime backend) whose inputs or outputs are missing,
/// so that auto-complete has to read the model.
pub fn needs_autocomplete(config: &ModelConfig) -> bool {
    let onnx = config.backend == ONNXRUNTIME_BACKEND
        || (config.backend.is_empty() && config.platform == ONNXRUNTIME_PLATFORM);
    let inputs = len(&config.raw, "input") + len(&config.raw, "batch_input");
    onnx && (inputs == 0 || config.output.is_empty())
}

/// Completes `config` from the inputs and outputs of its ONNX model (see the module
/// documentation). `default_max_batch_size` is used when the model can batch and the
/// configuration sets no `max_batch_size`. Does nothing when inputs and outputs are listed.
pub fn autocomplete_onnx(
    config: &mut ModelConfig,
    io: &OnnxIo,
    default_max_batch_size: i32,
) -> Result<(), RepoError> {
    let input_count = len(&config.raw, "input") + len(&config.raw, "batch_input");
    let output_count = len(&config.raw, "output");
    if input_count > 0 && output_count > 0 {
        return Ok(());
    }
    let model = config.name.clone();
    let mut raw = config.raw.clone();

    let variable_first = |t: &OnnxTensor| t.dims.as_ref().and_then(|d| d.first()) == Some(&-1);
    let can_batch = io.inputs.iter().chain(&io.outputs).all(variable_first);
    let mut max_batch_size = int(&raw, "max_batch_size");
    if can_batch {
        if max_batch_size == 0 {
            max_batch_size = i64::from(default_max_batch_size.max(0));
            set(
                &mut raw,
                "max_batch_size",
                Value::I32(default_max_batch_size.max(0)),
            );
        }
        if max_batch_size > 1
            && !has(&raw, "dynamic_batching")
            && !has(&raw, "sequence_batching")
            && !has(&raw, "ensemble_scheduling")
            && let Some(batching) = new_child(&raw, "dynamic_batching")
        {
            set(&mut raw, "dynamic_batching", Value::Message(batching));
        }
    } else if max_batch_size != 0 {
        return Err(RepoError::InvalidConfig {
            model: model.clone(),
            path: None,
            message: format!(
                "autofill failed for model '{model}': model does not support batching while \
                 non-zero max_batch_size is specified"
            ),
        });
    }

    if input_count == 0 {
        fill_tensors(&mut raw, "input", &io.inputs, max_batch_size > 0);
    }
    if output_count == 0 {
        fill_tensors(&mut raw, "output", &io.outputs, max_batch_size > 0);
    }
    *config = rebuild(raw, &model)?;
    Ok(())
}

fn fill_tensors(raw: &mut DynamicMessage, field: &str, tensors: &[OnnxTensor], batching: bool) {
    let mut list = Vec::new();
    for tensor in tensors {
        let Some(mut io) = new_child(raw, field) else {
            return;
        };
        set(&mut io, "name", Value::String(tensor.name.clone()));
        let data_type = tensor.data_type();
        if let Some(number) = enum_number(&io, "data_type", data_type.as_str()) {
            set(&mut io, "data_type", Value::EnumNumber(number));
        }
        let all = tensor.dims.clone().unwrap_or_default();
        let mut dims: Vec<i64> = all.into_iter().skip(usize::from(batching)).collect();
        if dims.is_empty() {
            dims.push(1);
            // An empty reshape with batching: the tensor is a scalar per batch element.
            if batching && let Some(reshape) = new_child(&io, "reshape") {
                set(&mut io, "reshape", Value::Message(reshape));
            }
        }
        set(
            &mut io,
            "dims",
            Value::List(dims.into_iter().map(Value::I64).collect()),
        );
        list.push(Value::Message(io));
    }
    if let Some(existing) = list_mut(raw, field) {
        *existing = list;
    }
}

/// Completes the configuration of a model whose backend runs the model's own code to do so
/// (Triton's Python backend calls `TritonPythonModel.auto_complete_config`): given the model file
/// and the configuration as JSON ([`ModelConfig::to_json`]), returns the completed configuration
/// as JSON, or why not.
pub type BackendAutocomplete = Arc<dyn Fn(&Path, &str) -> Result<String, String> + Send + Sync>;

static BACKEND_AUTOCOMPLETE: RwLock<BTreeMap<String, BackendAutocomplete>> =
    RwLock::new(BTreeMap::new());

/// Registers how models of `backend` are auto-completed (process-wide; the engine registers the
/// Python backend's). The repository knows the schema only: running a backend's code is the
/// registrant's.
pub fn register_backend_autocomplete(backend: &str, complete: BackendAutocomplete) {
    BACKEND_AUTOCOMPLETE
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(backend.to_owned(), complete);
}

/// The auto-complete registered for `backend`.
pub(crate) fn backend_autocomplete(backend: &str) -> Option<BackendAutocomplete> {
    BACKEND_AUTOCOMPLETE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(backend)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataType, InstanceKind, NormalizeOptions, normalize, validate_config};
    use std::path::PathBuf;

    fn parse(text: &str) -> ModelConfig {
        ModelConfig::parse(text, &PathBuf::from("/repo/m/config.pbtxt")).unwrap()
    }

    fn tensor(name: &str, elem_type: i32, dims: &[i64]) -> OnnxTensor {
        OnnxTensor {
            name: name.into(),
            elem_type,
            dims: Some(dims.to_vec()),
        }
    }

    fn detector() -> OnnxIo {
        OnnxIo {
            inputs: vec![tensor("images", 1, &[-1, 3, 320, 320])],
            outputs: vec![tensor("boxes", 1, &[-1, 100, 4]), tensor("count", 7, &[-1])],
        }
    }

    #[test]
    fn batching_model_gets_default_max_batch_size_and_dynamic_batching() {
        let mut c = parse("name: \"m\" backend: \"onnxruntime\"");
        assert!(needs_autocomplete(&c));
        autocomplete_onnx(&mut c, &detector(), DEFAULT_MAX_BATCH_SIZE).unwrap();
        assert_eq!(c.max_batch_size, 4);
        assert_eq!(c.input.len(), 1);
        assert_eq!(c.input[0].name, "images");
        assert_eq!(c.input[0].data_type, DataType::Fp32);
        assert_eq!(c.input[0].dims, vec![3, 320, 320]);
        assert_eq!(c.output[0].dims, vec![100, 4]);
        assert_eq!(c.output[1].data_type, DataType::Int64);
        // A scalar per batch element: dims [1] and an empty reshape.
        assert_eq!(c.output[1].dims, vec![1]);
        assert_eq!(c.output[1].reshape, Some(vec![]));
        assert!(c.dynamic_batching.is_some());
        assert!(!needs_autocomplete(&c));

        normalize(&mut c, &NormalizeOptions::default()).unwrap();
        assert_eq!(
            c.dynamic_batching.as_ref().unwrap().preferred_batch_size,
            vec![4]
        );
        assert_eq!(c.instance_group[0].kind, InstanceKind::Cpu);
        validate_config(&c, None).unwrap();
    }

    #[test]
    fn explicit_max_batch_size_is_kept_and_given_tensors_are_not_replaced() {
        let mut c = parse(
            "name: \"m\" platform: \"onnxruntime_onnx\" max_batch_size: 16 \
             input [ { name: \"images\" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [3, 320, 320] } ]",
        );
        assert!(needs_autocomplete(&c));
        autocomplete_onnx(&mut c, &detector(), DEFAULT_MAX_BATCH_SIZE).unwrap();
        assert_eq!(c.max_batch_size, 16);
        assert_eq!(c.input[0].format, crate::TensorFormat::Nchw);
        assert_eq!(c.output.len(), 2);
    }

    #[test]
    fn fixed_batch_models_do_not_batch() {
        let io = OnnxIo {
            inputs: vec![tensor("x", 1, &[1, 3, 8, 8])],
            outputs: vec![tensor("y", 1, &[-1, 10])],
        };
        let mut c = parse("name: \"m\" backend: \"onnxruntime\"");
        autocomplete_onnx(&mut c, &io, DEFAULT_MAX_BATCH_SIZE).unwrap();
        assert_eq!(c.max_batch_size, 0);
        assert_eq!(c.input[0].dims, vec![1, 3, 8, 8]);
        assert_eq!(c.output[0].dims, vec![-1, 10]);
        assert!(c.dynamic_batching.is_none());

        let mut c = parse("name: \"m\" backend: \"onnxruntime\" max_batch_size: 2");
        let err = autocomplete_onnx(&mut c, &io, DEFAULT_MAX_BATCH_SIZE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "autofill failed for model 'm': model does not support batching while non-zero \
             max_batch_size is specified"
        );
    }

    #[test]
    fn max_batch_size_one_adds_no_scheduler_and_complete_configs_are_left_alone() {
        let mut c = parse("name: \"m\" backend: \"onnxruntime\"");
        autocomplete_onnx(&mut c, &detector(), 1).unwrap();
        assert_eq!(c.max_batch_size, 1);
        assert!(c.dynamic_batching.is_none());

        let text = "name: \"m\" backend: \"onnxruntime\" input [ { name: \"a\" } ] \
                    output [ { name: \"b\" } ]";
        let mut c = parse(text);
        assert!(!needs_autocomplete(&c));
        autocomplete_onnx(&mut c, &detector(), 4).unwrap();
        assert_eq!(c, parse(text));
        // Not an ONNX model: nothing to complete from.
        assert!(!needs_autocomplete(&parse(
            "name: \"m\" backend: \"python\""
        )));
    }
}
