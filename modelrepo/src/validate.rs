//! Triton's validation of a (normalised) model configuration, with Triton's messages.
//!
//! In Triton's order:
//! 1. the model as a whole (`ValidateModelConfig`): name, platform/backend pair,
//!    `max_batch_size`, version policy, dynamic batching (preferred sizes, priority levels, queue
//!    policies, `preserve_ordering`), sequence batching (control tensors, strategies), ensemble
//!    scheduling (steps and the data flow between their tensors), response cache, metrics;
//! 2. inputs, outputs, batch inputs and batch outputs (`ValidateModelIOConfig`): names, data
//!    types, dims, reshapes, formats; each message ends with ` for <model>`;
//! 3. instance groups (`ValidateInstanceGroup`): kinds, GPUs, profiles;
//! 4. with a repository, ensembles against the models they run (`ValidateEnsembleConfig`): the
//!    models exist, batch sizes fit, every input is mapped, tensors agree in type and shape.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use prost_reflect::{DynamicMessage, MapKey, Value};

use super::RepoError;
use super::config::{DataType, ModelConfig};
use super::fields::{
    child, children, enum_name, flag, float, has, int, ints, len, map_entries, string_map, text,
    texts, uint,
};
use super::normalize::{ENSEMBLE_PLATFORM, TENSORRT_PLATFORM};
use super::repository::ModelRepository;

/// Triton's default minimum CUDA compute capability, quoted in GPU messages.
pub const MIN_COMPUTE_CAPABILITY: f64 = 6.0;

/// Triton's `-1`: a dimension of variable size.
const WILDCARD_DIM: i64 = -1;

/// Validates a normalised configuration (see [`super::normalize()`]) as Triton does. With a
/// `repository`, GPU ids are checked against the GPUs its options name (when known), and the
/// models an ensemble runs are loaded from it and checked against the ensemble; without one,
/// only the configuration itself is checked.
pub fn validate_config(
    config: &ModelConfig,
    repository: Option<&ModelRepository>,
) -> Result<(), RepoError> {
    let invalid = |message: String| RepoError::InvalidConfig {
        model: config.name.clone(),
        path: None,
        message,
    };
    let gpus = repository.and_then(|r| r.options().normalize.gpus.clone());
    validate_message(&config.raw, gpus.as_deref()).map_err(invalid)?;
    if let Some(repository) = repository {
        let mut stack = vec![config.name.clone()];
        validate_ensemble_models(config, repository, &mut stack)?;
    }
    Ok(())
}

/// Steps 1 to 3 on the parsed message.
pub(super) fn validate_message(raw: &DynamicMessage, gpus: Option<&[i32]>) -> Result<(), String> {
    validate_model_config(raw)?;
    validate_io_config(raw)?;
    validate_instance_groups(raw, gpus)
}

// ---------------------------------------------------------------------------------------------
// 1. The model as a whole.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BackendType {
    Tensorflow,
    Tensorrt,
    Onnxruntime,
    Pytorch,
    TorchAoti,
}

fn backend_type(backend: &str) -> Option<BackendType> {
    match backend {
        "tensorflow" => Some(BackendType::Tensorflow),
        "tensorrt" => Some(BackendType::Tensorrt),
        "onnxruntime" => Some(BackendType::Onnxruntime),
        "pytorch" => Some(BackendType::Pytorch),
        _ => None,
    }
}

fn platform_type(platform: &str) -> Option<BackendType> {
    match platform {
        "tensorflow_graphdef" | "tensorflow_savedmodel" => Some(BackendType::Tensorflow),
        "tensorrt_plan" => Some(BackendType::Tensorrt),
        "onnxruntime_onnx" => Some(BackendType::Onnxruntime),
        "pytorch_libtorch" => Some(BackendType::Pytorch),
        "torch_aoti" => Some(BackendType::TorchAoti),
        _ => None,
    }
}

/// Triton's `ValidateModelConfig` (plus Vigil's check that `latest` serves a version).
pub(super) fn validate_model_config(raw: &DynamicMessage) -> Result<(), String> {
    let name = text(raw, "name");
    if name.is_empty() {
        return Err("model configuration must specify 'name'".to_owned());
    }
    let platform = text(raw, "platform");
    let backend = text(raw, "backend");
    if backend.is_empty() {
        if platform != ENSEMBLE_PLATFORM {
            return Err(format!("unexpected platform type '{platform}' for {name}"));
        }
    } else if platform == ENSEMBLE_PLATFORM {
        return Err(format!(
            "Ensemble model '{name}' must have platform type '{platform}' and empty backend type"
        ));
    }
    if platform.is_empty() && backend.is_empty() {
        return Err(format!("must specify 'platform' or 'backend' for '{name}'"));
    }
    if let Some(kind) = backend_type(&backend)
        && Some(kind) != platform_type(&platform)
    {
        return Err(format!(
            "unexpected 'platform' and 'backend' pair, got:{platform}, {backend}"
        ));
    }
    let max_batch_size = int(raw, "max_batch_size");
    if max_batch_size < 0 {
        return Err(format!(
            "'max_batch_size' must be non-negative value for {name}"
        ));
    }
    let Some(policy) = child(raw, "version_policy") else {
        return Err(format!("must specify 'version policy' for {name}"));
    };
    if let Some(latest) = child(&policy, "latest")
        && int(&latest, "num_versions") < 1
    {
        return Err(format!(
            "version_policy latest: num_versions must be at least 1 for {name}"
        ));
    }

    if let Some(batching) = child(raw, "dynamic_batching") {
        validate_dynamic_batching(&batching, max_batch_size, &name)?;
    }
    if let Some(batching) = child(raw, "sequence_batching") {
        validate_sequence_batching(raw, &batching, max_batch_size, &name)?;
    }

    if has(raw, "ensemble_scheduling") {
        validate_ensemble_scheduling(raw)?;
    } else if platform == ENSEMBLE_PLATFORM {
        return Err(format!(
            "ensemble scheduling must be set for ensemble {name} whose platform is {ENSEMBLE_PLATFORM}"
        ));
    }

    let cache = child(raw, "response_cache").is_some_and(|c| flag(&c, "enable"));
    let decoupled = child(raw, "model_transaction_policy").is_some_and(|p| flag(&p, "decoupled"));
    if decoupled && cache {
        return Err(format!(
            "Response Cache does not currently support model {name} with 'decoupled' \
             transaction policy. Please disable the response cache."
        ));
    }

    if let Some(metrics) = child(raw, "model_metrics") {
        for control in children(&metrics, "metric_control") {
            let Some(identifier) = child(&control, "metric_identifier") else {
                return Err("metric control must specify 'metric_identifier'".to_owned());
            };
            if text(&identifier, "family").is_empty() {
                return Err("metric identifier must specify non-empty 'family'".to_owned());
            }
            let Some(histogram) = child(&control, "histogram_options") else {
                return Err("metric control must specify 'histogram_options'".to_owned());
            };
            if len(&histogram, "buckets") == 0 {
                return Err("histogram options must specify non-empty 'buckets'".to_owned());
            }
        }
    }
    Ok(())
}

/// `ModelQueuePolicy.TimeoutAction.DELAY`.
const DELAY: i64 = 1;

fn validate_dynamic_batching(
    batching: &DynamicMessage,
    max_batch_size: i64,
    name: &str,
) -> Result<(), String> {
    for size in ints(batching, "preferred_batch_size") {
        if size <= 0 {
            return Err(format!(
                "dynamic batching preferred size must be positive for {name}"
            ));
        }
        if size > max_batch_size {
            return Err(format!(
                "dynamic batching preferred size must be <= max batch size for {name}"
            ));
        }
    }
    let levels = uint(batching, "priority_levels");
    let policies = map_entries(batching, "priority_queue_policy");
    if levels != 0 {
        let default = uint(batching, "default_priority_level");
        if default == 0 || default > levels {
            return Err(format!(
                "default priority level must be in range [1, {levels}] for {name}"
            ));
        }
        for (key, _) in &policies {
            let level = match key {
                MapKey::U64(k) => *k,
                _ => 0,
            };
            if level == 0 || level > levels {
                return Err(format!(
                    "priority queue policy must have priority level in range [1, {levels}] for {name}"
                ));
            }
        }
    }
    if flag(batching, "preserve_ordering") {
        if levels > 1 {
            return Err(format!(
                "Only one priority level is allowed when 'preserve_ordering' is true for {name}"
            ));
        }
        let delays = |policy: &DynamicMessage| {
            uint(policy, "default_timeout_microseconds") != 0
                && int(policy, "timeout_action") == DELAY
        };
        let default_delays = child(batching, "default_queue_policy").is_some_and(|p| delays(&p));
        let any_delays = policies.iter().any(|(_, p)| match p {
            Value::Message(p) => delays(p),
            _ => false,
        });
        if default_delays || any_delays {
            return Err(format!(
                "Queue policy can not have DELAY as timeout action when 'preserve_ordering' is \
                 true for {name}"
            ));
        }
    }
    Ok(())
}

const CONTROL_KINDS: [(i64, &str); 4] = [
    (0, "CONTROL_SEQUENCE_START"),
    (1, "CONTROL_SEQUENCE_READY"),
    (2, "CONTROL_SEQUENCE_END"),
    (3, "CONTROL_SEQUENCE_CORRID"),
];

fn control_kind_name(kind: i64) -> &'static str {
    CONTROL_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("CONTROL_UNKNOWN", |(_, n)| n)
}

/// The control tensor of `kind` (`None` when there is none); checks its names and values.
/// `typed`: the CORRID control, which names a data type instead of false/true values.
fn sequence_control(
    batching: &DynamicMessage,
    name: &str,
    kind: i64,
    typed: bool,
) -> Result<Option<DynamicMessage>, String> {
    let kind_name = control_kind_name(kind);
    let mut seen_tensors = BTreeSet::new();
    let mut found = None;
    for input in children(batching, "control_input") {
        let tensor = text(&input, "name");
        if tensor.is_empty() {
            return Err(format!(
                "sequence batching control tensor must have a name for {name}"
            ));
        }
        if !seen_tensors.insert(tensor.clone()) {
            return Err(format!(
                "sequence batching control tensor '{tensor}' is specified for multiple control \
                 kinds for {name}"
            ));
        }
        for control in children(&input, "control") {
            if int(&control, "kind") != kind {
                continue;
            }
            if found.is_some() {
                return Err(format!(
                    "sequence batching specifies multiple {kind_name} tensors for {name}"
                ));
            }
            let i32s = len(&control, "int32_false_true");
            let f32s = len(&control, "fp32_false_true");
            let bools = len(&control, "bool_false_true");
            if typed {
                if i32s > 0 || f32s > 0 || bools > 0 {
                    return Err(format!(
                        "sequence batching must not specify either 'int32_false_true', \
                         'fp32_false_true' or 'bool_false_true' for {kind_name} for {name}"
                    ));
                }
            } else {
                let given = [i32s, f32s, bools].iter().filter(|n| **n > 0).count();
                if given == 0 {
                    return Err(format!(
                        "sequence batching must specify either 'int32_false_true', \
                         'fp32_false_true' or 'bool_false_true' for {kind_name} for {name}"
                    ));
                }
                if given > 1 {
                    return Err(format!(
                        "sequence batching specifies more than one from 'int32_false_true', \
                         'fp32_false_true' and 'bool_false_true' for {kind_name} for {name}"
                    ));
                }
                let (field, count) = if i32s > 0 {
                    ("int32_false_true", i32s)
                } else if f32s > 0 {
                    ("fp32_false_true", f32s)
                } else {
                    ("bool_false_true", bools)
                };
                if count != 2 {
                    return Err(format!(
                        "sequence batching control '{field}' must have exactly 2 entries for \
                         {kind_name} for {name}"
                    ));
                }
            }
            found = Some(control);
        }
    }
    Ok(found)
}

fn validate_sequence_batching(
    raw: &DynamicMessage,
    batching: &DynamicMessage,
    max_batch_size: i64,
    name: &str,
) -> Result<(), String> {
    if child(raw, "response_cache").is_some_and(|c| flag(&c, "enable")) {
        return Err(format!(
            "Response Cache does not currently support model {name} with sequence batching \
             scheduler. Please disable the response cache."
        ));
    }
    for kind in [0, 2, 1] {
        sequence_control(batching, name, kind, false)?;
    }
    if let Some(corrid) = sequence_control(batching, name, 3, true)? {
        let data_type = DataType::from_number(int(&corrid, "data_type") as i32);
        if !matches!(
            data_type,
            Some(DataType::Uint64 | DataType::Int64 | DataType::Uint32 | DataType::Int32)
                | Some(DataType::String)
        ) {
            return Err(format!(
                "unexpected data type for control CONTROL_SEQUENCE_CORRID for {name}. Allowed \
                 data types are TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING"
            ));
        }
    }
    if let Some(oldest) = child(batching, "oldest") {
        for size in ints(&oldest, "preferred_batch_size") {
            if size <= 0 {
                return Err(format!(
                    "sequence batching preferred batch size must be positive for {name}"
                ));
            }
            if size > max_batch_size {
                return Err(format!(
                    "sequence batching preferred batch size must be <= max batch size for {name}"
                ));
            }
        }
    }
    if let Some(direct) = child(batching, "direct") {
        let utilization = float(&direct, "minimum_slot_utilization");
        if !(0.0..=1.0).contains(&utilization) {
            return Err(format!(
                "sequence batching minimum slot utilization must be in range (0.0, 1.0] for {name}"
            ));
        }
    }
    Ok(())
}

/// A tensor of the ensemble's data-flow graph (Triton's `EnsembleTensor`).
struct FlowTensor {
    name: String,
    is_output: bool,
    ready: bool,
    prev: Vec<usize>,
    next: Vec<usize>,
}

/// Triton's `ValidateEnsembleSchedulingConfig`: the ensemble's own configuration and the data
/// flow from its inputs through the steps to its outputs.
fn validate_ensemble_scheduling(raw: &DynamicMessage) -> Result<(), String> {
    let name = text(raw, "name");
    if text(raw, "platform") != ENSEMBLE_PLATFORM {
        return Err(format!(
            "ensemble scheduling cannot be set for model '{name}' whose platform is not \
             {ENSEMBLE_PLATFORM}"
        ));
    }
    if len(raw, "instance_group") != 0 {
        return Err(format!(
            "instance group should not be specified for ensemble '{name}'"
        ));
    }
    if has(raw, "optimization") {
        return Err(format!(
            "optimization should not be specified for ensemble '{name}'"
        ));
    }
    if len(raw, "model_warmup") != 0 {
        return Err(format!(
            "model_warmup can not be specified for ensemble '{name}'"
        ));
    }
    let steps = child(raw, "ensemble_scheduling")
        .map(|e| children(&e, "step"))
        .unwrap_or_default();
    if steps.is_empty() {
        return Err(format!("must specify 'step' for ensemble '{name}'"));
    }

    // Build the graph (Triton's `BuildEnsembleGraph`).
    let mut tensors: Vec<FlowTensor> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut node = |tensors: &mut Vec<FlowTensor>, tensor: &str, is_output: bool| -> usize {
        *index.entry(tensor.to_owned()).or_insert_with(|| {
            tensors.push(FlowTensor {
                name: tensor.to_owned(),
                is_output,
                ready: false,
                prev: Vec::new(),
                next: Vec::new(),
            });
            tensors.len() - 1
        })
    };
    for (i, step) in steps.iter().enumerate() {
        if text(step, "model_name").is_empty() {
            return Err(format!(
                "must specify 'model_name' in step {i} of ensemble '{name}'"
            ));
        }
        let input_map = string_map(step, "input_map");
        let output_map = string_map(step, "output_map");
        if input_map.is_empty() {
            return Err(format!(
                "must specify 'input_map' in step {i} of ensemble '{name}'"
            ));
        }
        if output_map.is_empty() {
            return Err(format!(
                "must specify 'output_map' in step {i} of ensemble '{name}'"
            ));
        }
        let mut written = Vec::new();
        for (_, tensor) in &output_map {
            let existed = tensors.iter().position(|t| &t.name == tensor);
            let at = node(&mut tensors, tensor, true);
            if existed.is_some() {
                if tensors[at].is_output {
                    return Err(format!(
                        "ensemble tensor '{tensor}' can appear in an output map only once for \
                         ensemble '{name}' step {i}"
                    ));
                }
                tensors[at].is_output = true;
            }
            written.push(at);
        }
        for (_, tensor) in &input_map {
            let at = node(&mut tensors, tensor, false);
            for &out in &written {
                tensors[out].prev.push(at);
                tensors[at].next.push(out);
            }
        }
    }
    let find = |tensors: &[FlowTensor], tensor: &str| tensors.iter().position(|t| t.name == tensor);

    // Data flow from the inputs.
    let mut queue = VecDeque::new();
    for input in children(raw, "input") {
        let input = text(&input, "name");
        let Some(at) = find(&tensors, &input) else {
            return Err(format!(
                "ensemble input '{input}' for ensemble {name}' is not used"
            ));
        };
        tensors[at].ready = true;
        queue.push_back(at);
    }
    while let Some(at) = queue.pop_front() {
        for next in tensors[at].next.clone() {
            if tensors[next].ready {
                continue;
            }
            let ready = tensors[next].prev.iter().all(|&p| tensors[p].ready);
            tensors[next].ready = ready;
            if ready {
                queue.push_back(next);
            }
        }
    }
    let mut outputs = BTreeSet::new();
    for output in children(raw, "output") {
        let output = text(&output, "name");
        let Some(at) = find(&tensors, &output) else {
            return Err(format!(
                "ensemble output '{output}' for ensemble {name}' is not used"
            ));
        };
        if !tensors[at].ready {
            let mut message = format!("output '{output}' for ensemble '{name}' is not written");
            // Follow not-ready inputs back to a source that is not connected.
            let mut last = at;
            let mut seen = BTreeSet::new();
            let mut prev = Some(tensors[at].prev.clone());
            while let Some(nodes) = prev.take() {
                for p in nodes {
                    if !tensors[p].ready && seen.insert(tensors[p].name.clone()) {
                        last = p;
                        prev = Some(tensors[p].prev.clone());
                        break;
                    }
                }
            }
            if last != at {
                message.push_str(&format!(
                    ": at least one of its depending tensors, '{}', is not connected",
                    tensors[last].name
                ));
            }
            return Err(message);
        }
        outputs.insert(output);
    }
    let mut names: Vec<&FlowTensor> = tensors.iter().collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    for tensor in names {
        if outputs.contains(&tensor.name) {
            continue;
        }
        if !tensor.ready || tensor.next.is_empty() {
            return Err(format!(
                "ensemble tensor '{}' is unused in ensemble '{name}'",
                tensor.name
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Inputs, outputs, batch inputs and batch outputs.

/// Triton's `ValidateModelIOConfig`.
pub(super) fn validate_io_config(raw: &DynamicMessage) -> Result<(), String> {
    let name = text(raw, "name");
    let platform = text(raw, "platform");
    let max_batch_size = int(raw, "max_batch_size");
    let for_model = |message: String| format!("{message} for {name}");
    for input in children(raw, "input") {
        validate_io(&input, max_batch_size, &platform, true).map_err(for_model)?;
    }
    for output in children(raw, "output") {
        validate_io(&output, max_batch_size, &platform, false).map_err(for_model)?;
    }
    validate_batch_io(raw).map_err(for_model)
}

/// Triton's `GetElementCount`: 0 for no dims, -1 with a variable dimension, else the product.
fn element_count(dims: &[i64], what: &str) -> Result<i64, String> {
    let mut count: i64 = 0;
    for &dim in dims {
        if dim == WILDCARD_DIM {
            return Ok(-1);
        }
        count = if count == 0 {
            dim
        } else {
            count
                .checked_mul(dim)
                .ok_or_else(|| format!("unable to get number of elements of {what}: overflow"))?
        };
    }
    Ok(count)
}

/// Element counts of the runs of fixed dimensions between variable ones.
fn trunks(dims: &[i64]) -> Vec<i64> {
    let mut counts = Vec::new();
    let mut current: i64 = 1;
    for &dim in dims {
        if dim == WILDCARD_DIM {
            counts.push(current);
            current = 1;
        } else {
            current = current.saturating_mul(dim);
        }
    }
    counts.push(current);
    counts
}

/// Triton's `ValidateModelInput` / `ValidateModelOutput` (with `ValidateIOShape`).
fn validate_io(
    io: &DynamicMessage,
    max_batch_size: i64,
    platform: &str,
    is_input: bool,
) -> Result<(), String> {
    let prefix = if is_input {
        "model input "
    } else {
        "model output "
    };
    let name = text(io, "name");
    if name.is_empty() {
        return Err(format!("{prefix}must specify 'name'"));
    }
    let p = format!("{prefix}'{name}' ");
    if int(io, "data_type") == 0 {
        return Err(format!("{p}must specify 'data_type'"));
    }
    let dims = ints(io, "dims");
    if dims.is_empty() {
        return Err(format!("{p}must specify 'dims'"));
    }
    let reshape = child(io, "reshape").map(|r| ints(&r, "shape"));
    if reshape.as_ref().is_some_and(Vec::is_empty) && max_batch_size == 0 {
        return Err(format!(
            "{p}cannot have empty reshape for non-batching model as scalar tensors are not \
             supported"
        ));
    }
    if dims.iter().any(|&d| d < 1 && d != WILDCARD_DIM) {
        return Err(format!(
            "{p}dimension must be integer >= 1, or {WILDCARD_DIM} to indicate a variable-size \
             dimension"
        ));
    }
    if let Some(shape) = &reshape {
        if shape.iter().any(|&d| d < 1 && d != WILDCARD_DIM) {
            return Err(format!(
                "{p}reshape dimensions must be integer >= 1, or {WILDCARD_DIM} to indicate a \
                 variable-size dimension"
            ));
        }
        let dims_size = element_count(&dims, &format!("{name} dims"))?;
        let reshape_size = element_count(shape, &format!("{name} reshape"))?;
        // An empty reshape (a scalar) needs dims of one element.
        if dims_size != reshape_size && (reshape_size != 0 || dims_size != 1) {
            return Err(format!("{p}has different size for dims and reshape"));
        }
        if dims_size == -1 {
            let (a, b) = (trunks(&dims), trunks(shape));
            if a.len() != b.len() {
                return Err(format!(
                    "{p}has different number of variable-size dimensions for dims and reshape"
                ));
            }
            if a != b {
                return Err(format!("{p}has different size for dims and reshape"));
            }
        }
    }
    if is_input {
        // FORMAT_NHWC = 1, FORMAT_NCHW = 2.
        if matches!(int(io, "format"), 1 | 2) && dims.len() != 3 {
            return Err("model input NHWC/NCHW require 3 dims".to_owned());
        }
    }
    if platform != TENSORRT_PLATFORM && flag(io, "is_shape_tensor") {
        return Err("shape tensors are only supported for TensorRT platform".to_owned());
    }
    if flag(io, "is_non_linear_format_io") {
        if platform != TENSORRT_PLATFORM {
            return Err(
                "Non-linear IO format is only supported for the TensorRT platform".to_owned(),
            );
        }
        if dims.len() != 3 {
            let what = if is_input { "input" } else { "output" };
            return Err(format!("Non-linear IO format {what} requires 3 dims"));
        }
    }
    Ok(())
}

/// Triton's `ValidateBatchIO`.
fn validate_batch_io(raw: &DynamicMessage) -> Result<(), String> {
    let inputs: BTreeSet<String> = children(raw, "input")
        .iter()
        .map(|i| text(i, "name"))
        .collect();
    let outputs: BTreeSet<String> = children(raw, "output")
        .iter()
        .map(|o| text(o, "name"))
        .collect();
    for batch_input in children(raw, "batch_input") {
        let kind = int(&batch_input, "kind");
        let kind_name = enum_name(&batch_input, "kind");
        if !(0..=5).contains(&kind) {
            return Err(format!("unknown batch input kind '{kind_name}'"));
        }
        let sources = texts(&batch_input, "source_input");
        if sources.len() != 1 {
            return Err(format!(
                "batch input kind '{kind_name}' expects 1 source input, got {}",
                sources.len()
            ));
        }
        let data_type = int(&batch_input, "data_type");
        if data_type != i64::from(DataType::Int32.number())
            && data_type != i64::from(DataType::Fp32.number())
        {
            return Err("batch input data type must be TYPE_INT32 or TYPE_FP32".to_owned());
        }
        for source in &sources {
            if !inputs.contains(source) {
                return Err(format!("unknown source input name '{source}'"));
            }
        }
    }
    for batch_output in children(raw, "batch_output") {
        let kind = int(&batch_output, "kind");
        let kind_name = enum_name(&batch_output, "kind");
        if kind != 0 {
            return Err(format!("unknown batch output kind '{kind_name}'"));
        }
        let sources = texts(&batch_output, "source_input");
        if sources.len() != 1 {
            return Err(format!(
                "batch output kind '{kind_name}' expects 1 source input, got {}",
                sources.len()
            ));
        }
        for source in &sources {
            if !inputs.contains(source) {
                return Err(format!("unknown source input name '{source}'"));
            }
        }
        let mut targets = BTreeSet::new();
        for target in texts(&batch_output, "target_name") {
            if !outputs.contains(&target) {
                return Err(format!("unknown target output name '{target}'"));
            }
            if !targets.insert(target.clone()) {
                return Err(format!(
                    "target output name '{target}' can only be specified once"
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Instance groups.

/// Triton's `ValidateInstanceGroup`. `gpus`: the GPU ids present, when known; otherwise only
/// negative ids are refused.
pub(super) fn validate_instance_groups(
    raw: &DynamicMessage,
    gpus: Option<&[i32]>,
) -> Result<(), String> {
    if has(raw, "ensemble_scheduling") {
        return Ok(());
    }
    let model = text(raw, "name");
    let platform = text(raw, "platform");
    let groups = children(raw, "instance_group");
    if groups.is_empty() {
        return Err(format!(
            "must specify one or more 'instance group's for {model}"
        ));
    }
    for group in &groups {
        let name = text(group, "name");
        let listed = ints(group, "gpus");
        let which = format!("instance group {name} of model {model}");
        match int(group, "kind") {
            // KIND_MODEL
            3 => {
                if !listed.is_empty() {
                    return Err(format!(
                        "{which} has kind KIND_MODEL but specifies one or more GPUs"
                    ));
                }
            }
            // KIND_GPU
            1 => {
                if let Some(present) = gpus
                    && listed.is_empty()
                {
                    return Err(if present.is_empty() {
                        format!("{which} has kind KIND_GPU but no GPUs are available")
                    } else {
                        format!("{which} has kind KIND_GPU but specifies no GPUs")
                    });
                }
                for gid in listed {
                    let known = match gpus {
                        Some(present) => present.iter().any(|p| i64::from(*p) == gid),
                        None => gid >= 0,
                    };
                    if !known {
                        let list = match gpus {
                            Some(present) => {
                                let mut ids: Vec<i32> = present.to_vec();
                                ids.sort_unstable();
                                ids.iter()
                                    .map(i32::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                            None => "(not known to Vigil)".to_owned(),
                        };
                        return Err(format!(
                            "{which} specifies invalid or unsupported gpu id {gid}. GPUs with at \
                             least the minimum required CUDA compute compatibility of \
                             {MIN_COMPUTE_CAPABILITY:.6} are: {list}"
                        ));
                    }
                }
            }
            // KIND_CPU
            2 => {
                if !listed.is_empty() {
                    return Err(format!(
                        "{which} has kind KIND_CPU but specifies one or more GPUs"
                    ));
                }
            }
            _ => return Err(format!("{which} has unexpected kind KIND_AUTO")),
        }
        let profiles = texts(group, "profile");
        if platform != TENSORRT_PLATFORM && !profiles.is_empty() {
            return Err(format!(
                "{which} and platform {platform} specifies profile field which is only supported \
                 for TensorRT models"
            ));
        }
        for profile in profiles {
            if profile.is_empty() {
                return Err("profile name must not be empty".to_owned());
            }
            let index: i64 = profile
                .trim()
                .parse()
                .map_err(|e| format!("unable to parse '{profile}': {e}"))?;
            if index < 0 {
                return Err(format!(
                    "{which} and platform {platform} specifies invalid profile {profile}. The \
                     field should contain the string representation of a non-negative integer."
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Ensembles against the models they run.

/// Type and shape of an ensemble tensor as one model sees it (Triton's `TensorNode`).
#[derive(Clone)]
struct TensorNode {
    model: String,
    data_type: i64,
    dims: Vec<i64>,
    /// `dims` with the batch dimension of a batching model.
    full_dims: Vec<i64>,
}

impl TensorNode {
    fn new(model: &str, batching: bool, data_type: i64, dims: Vec<i64>) -> Self {
        let mut full_dims = if batching { vec![-1] } else { Vec::new() };
        full_dims.extend_from_slice(&dims);
        TensorNode {
            model: model.to_owned(),
            data_type,
            dims,
            full_dims,
        }
    }
}

fn dims_match(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || *x == WILDCARD_DIM || *y == WILDCARD_DIM)
}

fn dims_text(dims: &[i64]) -> String {
    let list: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[{}]", list.join(","))
}

fn data_type_name(number: i64) -> String {
    i32::try_from(number)
        .ok()
        .and_then(DataType::from_number)
        .map_or_else(|| number.to_string(), |t| t.as_str().to_owned())
}

/// Triton's `ValidateTensorConsistency`.
fn consistent(a: &TensorNode, b: &TensorNode, message: &str) -> Result<(), String> {
    if a.data_type != b.data_type {
        return Err(format!(
            "{message}inconsistent data type: {} is inferred from model {} while {} is inferred \
             from model {}",
            data_type_name(a.data_type),
            a.model,
            data_type_name(b.data_type),
            b.model
        ));
    }
    if !dims_match(&a.dims, &b.dims) && !dims_match(&a.full_dims, &b.full_dims) {
        return Err(format!(
            "{message}inconsistent shape: {} is inferred from model {} while {} is inferred from \
             model {}",
            dims_text(&a.full_dims),
            a.model,
            dims_text(&b.full_dims),
            b.model
        ));
    }
    Ok(())
}

/// Triton's `ValidateEnsembleConfig`: the models of an ensemble's steps exist in `repository`
/// and fit the ensemble. `stack` holds the ensembles being validated (to find cycles).
pub(super) fn validate_ensemble_models(
    config: &ModelConfig,
    repository: &ModelRepository,
    stack: &mut Vec<String>,
) -> Result<(), RepoError> {
    let raw = &config.raw;
    let Some(scheduling) = child(raw, "ensemble_scheduling") else {
        return Ok(());
    };
    let ensemble = config.name.clone();
    let invalid = |message: String| RepoError::InvalidConfig {
        model: ensemble.clone(),
        path: None,
        message,
    };
    let steps = children(&scheduling, "step");

    // The models must be available (and not lead back to this ensemble).
    let mut models = Vec::new();
    let mut missing = Vec::new();
    for step in &steps {
        let model = text(step, "model_name");
        if stack.contains(&model) {
            return Err(invalid(format!(
                "circular dependency between ensembles: {model} -> ... -> {ensemble}"
            )));
        }
        match repository.step_config(&model, int(step, "model_version"), stack) {
            Ok(Some(step_config)) => models.push(step_config),
            Ok(None) => missing.push(model),
            Err(e) => {
                return Err(invalid(format!(
                    "ensemble {ensemble} contains model {model} that cannot be loaded: {e}"
                )));
            }
        }
    }
    if !missing.is_empty() {
        return Err(invalid(format!(
            "ensemble {ensemble} contains models that are not available: {}",
            missing.join(", ")
        )));
    }

    let batching = config.max_batch_size > 0;
    let mut tensors: BTreeMap<String, TensorNode> = BTreeMap::new();
    let shape = |io: &DynamicMessage| match child(io, "reshape") {
        Some(reshape) => ints(&reshape, "shape"),
        None => ints(io, "dims"),
    };
    for input in children(raw, "input") {
        let node = TensorNode::new(&ensemble, batching, int(&input, "data_type"), shape(&input));
        tensors.insert(text(&input, "name"), node);
    }
    for output in children(raw, "output") {
        let node = TensorNode::new(
            &ensemble,
            batching,
            int(&output, "data_type"),
            shape(&output),
        );
        tensors.entry(text(&output, "name")).or_insert(node);
    }

    for (step, model_config) in steps.iter().zip(&models) {
        let model = text(step, "model_name");
        if model_config.max_batch_size != 0 && model_config.max_batch_size < config.max_batch_size {
            return Err(invalid(format!(
                "ensemble {ensemble} allows maximum batch size {}, but it contains model {model} \
                 which only allows maximum batch size to be {}",
                config.max_batch_size, model_config.max_batch_size
            )));
        }
        let step_batching = model_config.max_batch_size > 0;
        let input_map = string_map(step, "input_map");
        let output_map = string_map(step, "output_map");
        let prefix = |tensor: &str| format!("in ensemble {ensemble}, ensemble tensor {tensor}: ");

        let model_inputs = children(&model_config.raw, "input");
        for (model_input, tensor) in &input_map {
            if !model_inputs.iter().any(|i| &text(i, "name") == model_input) {
                return Err(invalid(format!(
                    "in ensemble {ensemble}, ensemble tensor {tensor} is mapping to non-existing \
                     input {model_input} in model {model}"
                )));
            }
        }
        for input in &model_inputs {
            let input_name = text(input, "name");
            let mapped: Vec<&String> = input_map
                .iter()
                .filter(|(k, _)| *k == input_name)
                .map(|(_, v)| v)
                .collect();
            if mapped.is_empty() {
                if flag(input, "optional") {
                    continue;
                }
                return Err(invalid(format!(
                    "in ensemble {ensemble}, input {input_name} in model {model} is not mapped \
                     to any ensemble tensors"
                )));
            }
            let node = TensorNode::new(
                &model,
                step_batching,
                int(input, "data_type"),
                ints(input, "dims"),
            );
            for tensor in mapped {
                match tensors.get(tensor) {
                    Some(existing) => {
                        consistent(existing, &node, &prefix(tensor)).map_err(invalid)?
                    }
                    None => {
                        tensors.insert(tensor.clone(), node.clone());
                    }
                }
            }
        }

        let model_outputs = children(&model_config.raw, "output");
        for (model_output, tensor) in &output_map {
            let Some(output) = model_outputs
                .iter()
                .find(|o| &text(o, "name") == model_output)
            else {
                return Err(invalid(format!(
                    "in ensemble {ensemble}, ensemble tensor {tensor} is mapped from \
                     non-existing output {model_output} in model {model}"
                )));
            };
            let node = TensorNode::new(
                &model,
                step_batching,
                int(output, "data_type"),
                ints(output, "dims"),
            );
            match tensors.get(tensor) {
                Some(existing) => consistent(existing, &node, &prefix(tensor)).map_err(invalid)?,
                None => {
                    tensors.insert(tensor.clone(), node);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NormalizeOptions, normalize};
    use std::path::PathBuf;

    fn check(text: &str) -> Result<(), String> {
        let mut config = ModelConfig::parse(text, &PathBuf::from("/r/m/config.pbtxt"))
            .map_err(|e| e.to_string())?;
        normalize(&mut config, &NormalizeOptions::default()).map_err(|e| e.to_string())?;
        validate_config(&config, None).map_err(|e| e.to_string())
    }

    const BASE: &str = r#"name: "m" platform: "onnxruntime_onnx" max_batch_size: 8
        input [ { name: "in" data_type: TYPE_FP32 dims: [ 4 ] } ]
        output [ { name: "out" data_type: TYPE_FP32 dims: [ 2 ] } ]"#;

    fn with(extra: &str) -> Result<(), String> {
        check(&format!("{BASE}\n{extra}"))
    }

    #[test]
    fn a_plain_config_is_valid() {
        with("").unwrap();
        with(
            "dynamic_batching { preferred_batch_size: [ 2, 8 ] max_queue_delay_microseconds: 100 }",
        )
        .unwrap();
    }

    #[test]
    fn model_level_rules() {
        let err = check("platform: \"onnxruntime_onnx\"").unwrap_err();
        assert_eq!(err, "model configuration must specify 'name'");
        let err =
            check("name: \"m\" platform: \"tensorrt_plan\" backend: \"onnxruntime\"").unwrap_err();
        assert_eq!(
            err,
            "unexpected 'platform' and 'backend' pair, got:tensorrt_plan, onnxruntime"
        );
        let err = check("name: \"m\" platform: \"ensemble\" backend: \"onnxruntime\"").unwrap_err();
        assert!(
            err.starts_with("Ensemble model 'm' must have platform type"),
            "{err}"
        );
        let err = check("name: \"m\" platform: \"ensemble\"").unwrap_err();
        assert_eq!(
            err,
            "ensemble scheduling must be set for ensemble m whose platform is ensemble"
        );
        let err =
            check("name: \"m\" platform: \"onnxruntime_onnx\" max_batch_size: -1").unwrap_err();
        assert_eq!(err, "'max_batch_size' must be non-negative value for m");
        let err = with("dynamic_batching { preferred_batch_size: [ 16 ] }").unwrap_err();
        assert_eq!(
            err,
            "dynamic batching preferred size must be <= max batch size for m"
        );
        let err = with("dynamic_batching { preferred_batch_size: [ 0 ] }").unwrap_err();
        assert_eq!(
            err,
            "dynamic batching preferred size must be positive for m"
        );
        let err = with("version_policy { latest { num_versions: 0 } }").unwrap_err();
        assert!(err.contains("num_versions must be at least 1"), "{err}");
        let err =
            with("response_cache { enable: true } model_transaction_policy { decoupled: true }")
                .unwrap_err();
        assert!(
            err.starts_with("Response Cache does not currently support model m"),
            "{err}"
        );
        let err =
            with("model_metrics { metric_control [ { metric_identifier { family: \"f\" } } ] }")
                .unwrap_err();
        assert_eq!(err, "metric control must specify 'histogram_options'");
    }

    #[test]
    fn io_rules() {
        let err = check(
            r#"name: "m" platform: "onnxruntime_onnx"
               input [ { name: "in" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 4 ] } ]"#,
        )
        .unwrap_err();
        assert_eq!(err, "model input NHWC/NCHW require 3 dims for m");
        let err = check(
            r#"name: "m" platform: "onnxruntime_onnx" max_batch_size: 2
               input [ { name: "in" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [ 1, 4, 4, 3 ] } ]"#,
        )
        .unwrap_err();
        assert_eq!(err, "model input NHWC/NCHW require 3 dims for m");
        let err = check(
            r#"name: "m" platform: "onnxruntime_onnx"
               input [ { name: "in" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [ 1, 4, 4, 3 ] } ]"#,
        )
        .unwrap_err();
        assert_eq!(err, "model input NHWC/NCHW require 3 dims for m");
        let err = check(r#"name: "m" platform: "onnxruntime_onnx" output [ { name: "o" data_type: TYPE_FP32 } ]"#)
            .unwrap_err();
        assert_eq!(err, "model output 'o' must specify 'dims' for m");
        let err = check(r#"name: "m" platform: "onnxruntime_onnx" input [ { data_type: TYPE_FP32 dims: [1] } ]"#)
            .unwrap_err();
        assert_eq!(err, "model input must specify 'name' for m");
        let err = check(
            r#"name: "m" platform: "onnxruntime_onnx" input [ { name: "s" data_type: TYPE_INT32 dims: [1] is_shape_tensor: true } ]"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "shape tensors are only supported for TensorRT platform for m"
        );
        // A scalar of a batching model: dims [1] with an empty reshape.
        check(
            r#"name: "m" platform: "onnxruntime_onnx" max_batch_size: 2
               input [ { name: "s" data_type: TYPE_INT32 dims: [1] reshape { shape: [ ] } } ]"#,
        )
        .unwrap();
        // Reshapes that keep the size and the variable-size runs are fine.
        check(
            r#"name: "m" platform: "onnxruntime_onnx"
               input [ { name: "x" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] reshape { shape: [ 8, -1, 1, 6 ] } } ]"#,
        )
        .unwrap();
        let err = with("batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: \"b\" data_type: TYPE_INT64 source_input: \"in\" } ]")
            .unwrap_err();
        assert_eq!(
            err,
            "batch input data type must be TYPE_INT32 or TYPE_FP32 for m"
        );
        with("batch_input [ { kind: BATCH_ITEM_SHAPE target_name: \"b\" data_type: TYPE_INT32 source_input: \"in\" } ]")
            .unwrap();
    }

    #[test]
    fn instance_group_rules() {
        let err = with("instance_group [ { kind: KIND_MODEL gpus: [ 0 ] } ]").unwrap_err();
        assert_eq!(
            err,
            "instance group m_0 of model m has kind KIND_MODEL but specifies one or more GPUs"
        );
        let err = with("instance_group [ { kind: KIND_CPU profile: [ \"0\" ] } ]").unwrap_err();
        assert!(
            err.contains("specifies profile field which is only supported for TensorRT"),
            "{err}"
        );
        // GPUs unknown: any non-negative id is accepted.
        with("instance_group [ { kind: KIND_GPU gpus: [ 3 ] } ]").unwrap();

        // With known GPUs.
        let mut config = ModelConfig::parse(
            &format!("{BASE}\ninstance_group [ {{ kind: KIND_GPU gpus: [ 3 ] }} ]"),
            &PathBuf::from("x"),
        )
        .unwrap();
        normalize(&mut config, &NormalizeOptions::with_gpus(vec![0, 1])).unwrap();
        let err = validate_instance_groups(&config.raw, Some(&[0, 1])).unwrap_err();
        assert_eq!(
            err,
            "instance group m_0 of model m specifies invalid or unsupported gpu id 3. GPUs with \
             at least the minimum required CUDA compute compatibility of 6.000000 are: 0, 1"
        );
        let mut config = ModelConfig::parse(
            &format!("{BASE}\ninstance_group [ {{ kind: KIND_GPU }} ]"),
            &PathBuf::from("x"),
        )
        .unwrap();
        normalize(&mut config, &NormalizeOptions::with_gpus(vec![])).unwrap();
        let err = validate_instance_groups(&config.raw, Some(&[])).unwrap_err();
        assert_eq!(
            err,
            "instance group m_0 of model m has kind KIND_GPU but no GPUs are available"
        );
    }

    #[test]
    fn sequence_batching_rules() {
        let seq = |controls: &str| {
            with(&format!(
                "sequence_batching {{ control_input [ {controls} ] }}"
            ))
        };
        seq(
            r#"{ name: "S" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
               { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] }"#,
        )
        .unwrap();
        let err = seq(
            r#"{ name: "S" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0 ] } ] }"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "sequence batching control 'int32_false_true' must have exactly 2 entries for \
             CONTROL_SEQUENCE_END for m"
        );
        let err = seq(r#"{ name: "S" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] bool_false_true: [ false, true ] } ] }"#)
            .unwrap_err();
        assert!(
            err.starts_with("sequence batching specifies more than one from"),
            "{err}"
        );
        let err = seq(
            r#"{ name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } ] }"#,
        )
        .unwrap_err();
        assert!(
            err.starts_with("unexpected data type for control CONTROL_SEQUENCE_CORRID for m"),
            "{err}"
        );
        let err = seq(r#"{ name: "S" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
                         { name: "S" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] }"#)
            .unwrap_err();
        assert_eq!(
            err,
            "sequence batching control tensor 'S' is specified for multiple control kinds for m"
        );
    }

    const ENSEMBLE: &str = r#"name: "e" platform: "ensemble" max_batch_size: 4
        input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
        output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] } ]
        ensemble_scheduling { step [
          { model_name: "a" model_version: -1 input_map { key: "x" value: "IN" } output_map { key: "y" value: "MID" } },
          { model_name: "b" model_version: -1 input_map { key: "x" value: "MID" } output_map { key: "y" value: "OUT" } }
        ] }"#;

    #[test]
    fn ensemble_data_flow() {
        check(ENSEMBLE).unwrap();
        let err =
            check(&ENSEMBLE.replace("value: \"MID\" } }", "value: \"MID2\" } }")).unwrap_err();
        assert_eq!(
            err,
            "output 'OUT' for ensemble 'e' is not written: at least one of its depending \
             tensors, 'MID', is not connected"
        );
        let err = check(&ENSEMBLE.replace("value: \"OUT\"", "value: \"OTHER\"")).unwrap_err();
        assert_eq!(err, "ensemble output 'OUT' for ensemble e' is not used");
        let err = check(&format!("{ENSEMBLE}\ninstance_group [ {{ count: 1 }} ]")).unwrap_err();
        assert_eq!(
            err,
            "instance group should not be specified for ensemble 'e'"
        );
        let err = check(&ENSEMBLE.replace("model_name: \"b\"", "model_name: \"\"")).unwrap_err();
        assert_eq!(err, "must specify 'model_name' in step 1 of ensemble 'e'");
        let err = check(&ENSEMBLE.replace("value: \"OUT\"", "value: \"MID\"")).unwrap_err();
        assert_eq!(
            err,
            "ensemble tensor 'MID' can appear in an output map only once for ensemble 'e' step 1"
        );
    }
}
