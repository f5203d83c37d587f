//! Triton's inference protocol apart from its transports: errors with Triton's texts and codes,
//! model metadata and configuration, and inference — a request checked against the model's
//! configuration as Triton checks it, its batch split into items for the model's dynamic
//! batcher, the items' outputs put back together.

use std::sync::Arc;

use serde_json::{Value, json};
use vigil_engine::{EngineError, InferRequest, ModelRuntime, TensorData, TensorView};
use vigil_modelrepo::{ModelConfig, TensorConfig};

use vigil_kserve::tensors::{element_count, wire_name};

/// What kind of error (Triton's error codes; each transport maps them to its status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArg,
    NotFound,
    Unavailable,
    Unsupported,
    Unauthenticated,
    Internal,
}

/// An error answered to a client: Triton's text where Triton has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServeError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ServeError {
            kind: ErrorKind::InvalidArg,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ServeError {
            kind: ErrorKind::NotFound,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ServeError {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        ServeError {
            kind: ErrorKind::Unsupported,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ServeError {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }

    /// The HTTP status Triton answers this kind of error with.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::InvalidArg => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Unavailable => 503,
            ErrorKind::Unsupported => 501,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Internal => 500,
        }
    }
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One input of a request, decoded by the transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

/// An inference request, decoded by the transport.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub id: Option<String>,
    pub inputs: Vec<Input>,
    /// The outputs asked for, in order; `None` = every output of the model.
    pub outputs: Option<Vec<String>>,
    /// Outputs asked for as classifications (Triton's classification extension): the output's
    /// name and the number of classes, the highest values first.
    pub classification: Vec<(String, usize)>,
}

/// One output of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

/// An inference response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub model: String,
    pub version: u64,
    pub id: Option<String>,
    pub outputs: Vec<Output>,
    /// Items (batch size, 1 for a model that does not batch): Triton's inference count.
    pub items: usize,
}

/// Triton's platform name of a model's configuration.
pub fn platform(config: &ModelConfig) -> &str {
    if !config.platform.is_empty() {
        &config.platform
    } else if config.backend == "onnxruntime" {
        "onnxruntime_onnx"
    } else {
        &config.backend
    }
}

/// The shape clients give a tensor: `[-1, dims…]` for a model that batches.
fn full_dims(config: &ModelConfig, t: &TensorConfig) -> Vec<i64> {
    let batch = (config.max_batch_size > 0).then_some(-1);
    batch.into_iter().chain(t.dims.iter().copied()).collect()
}

/// KServe's model metadata.
pub fn metadata(runtime: &ModelRuntime) -> Value {
    let config = runtime.config();
    let tensors = |list: &[TensorConfig]| -> Vec<Value> {
        list.iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "datatype": wire_name(t.data_type),
                    "shape": full_dims(config, t),
                })
            })
            .collect()
    };
    json!({
        "name": runtime.name(),
        "versions": [runtime.version().to_string()],
        "platform": platform(config),
        "inputs": tensors(&config.input),
        "outputs": tensors(&config.output),
    })
}

/// The model's configuration as Triton's `model_configuration` extension gives it: the
/// protobuf message as JSON with its field names, 64-bit integers as numbers.
pub fn config_json(runtime: &ModelRuntime) -> Result<Value, ServeError> {
    let options = prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    let mut serializer = serde_json::Serializer::new(Vec::new());
    runtime
        .config()
        .raw
        .serialize_with_options(&mut serializer, &options)
        .map_err(|e| ServeError::internal(format!("configuration as JSON: {e}")))?;
    serde_json::from_slice(&serializer.into_inner())
        .map_err(|e| ServeError::internal(format!("configuration as JSON: {e}")))
}

/// `[a,b,c]` as Triton writes dims in messages.
fn dims_text(dims: &[i64]) -> String {
    let inner: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("[{}]", inner.join(","))
}

/// A request checked against the model and split into the items its batcher takes.
struct Prepared {
    /// One engine request per item (one in all for a model that does not batch).
    items: Vec<InferRequest>,
    /// The outputs to return, in order.
    outputs: Vec<String>,
    /// The outputs to return as classifications, with their class counts.
    classification: Vec<(String, usize)>,
}

/// Checks `request` against `runtime`'s configuration as Triton does (input names, count, data
/// types, shapes, batch size), with Triton's messages.
fn prepare(runtime: &ModelRuntime, request: Request) -> Result<Prepared, ServeError> {
    let config = runtime.config();
    let model = runtime.name();
    let id = request
        .id
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("<id_unknown>");
    let bad = |m: String| ServeError::invalid(format!("[request id: {id}] {m}"));
    for input in &request.inputs {
        if config.input_named(&input.name).is_none() {
            return Err(ServeError::invalid(format!(
                "unexpected inference input '{}' for model '{model}'",
                input.name
            )));
        }
    }
    let given: Vec<&str> = request.inputs.iter().map(|i| i.name.as_str()).collect();
    let missing: Vec<&str> = config
        .input
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !given.contains(n))
        .collect();
    if !missing.is_empty() || given.len() != config.input.len() {
        let list = |v: &[&str]| {
            format!(
                "[{}]",
                v.iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        return Err(bad(format!(
            "expected {} inputs but got {} inputs for model '{model}'. Got input(s) {}, but \
             missing required input(s) {}. Please provide all required input(s).",
            config.input.len(),
            given.len(),
            list(&given),
            list(&missing)
        )));
    }
    let max_batch = config.max_batch_size.max(0) as usize;
    let mut batch = None;
    for input in &request.inputs {
        let t = config.input_named(&input.name).expect("checked above");
        if input.data.data_type() != t.data_type {
            return Err(bad(format!(
                "inference input '{}' data-type is '{}', but model '{model}' expects '{}'",
                input.name,
                wire_name(input.data.data_type()),
                wire_name(t.data_type)
            )));
        }
        let item_shape = if max_batch > 0 {
            let Some((&b, rest)) = input.shape.split_first() else {
                return Err(shape_error(config, t, &input.shape, model, id));
            };
            match batch {
                None => batch = Some(b),
                Some(first) if first != b => {
                    return Err(bad(format!(
                        "input '{}' batch size does not match other inputs for '{model}'",
                        input.name
                    )));
                }
                Some(_) => {}
            }
            rest
        } else {
            &input.shape[..]
        };
        if item_shape.iter().any(|&d| d < 0) {
            return Err(bad(format!(
                "All input dimensions should be specified for input '{}' for model '{model}', \
                 got {}",
                input.name,
                dims_text(&input.shape)
            )));
        }
        let matches = item_shape.len() == t.dims.len()
            && item_shape
                .iter()
                .zip(&t.dims)
                .all(|(&d, &e)| e < 0 || d == e);
        if !matches {
            return Err(shape_error(config, t, &input.shape, model, id));
        }
        if element_count(&input.shape) != Some(input.data.len()) {
            return Err(bad(format!(
                "input '{}' for model '{model}' holds {} elements, its shape {} holds {}",
                input.name,
                input.data.len(),
                dims_text(&input.shape),
                element_count(&input.shape).map_or("too many".to_owned(), |n| n.to_string())
            )));
        }
    }
    let outputs: Vec<String> = match request.outputs {
        None => config.output.iter().map(|t| t.name.clone()).collect(),
        Some(names) => {
            for n in &names {
                if config.output_named(n).is_none() {
                    return Err(ServeError::invalid(format!(
                        "unexpected inference output '{n}' for model '{model}'"
                    )));
                }
            }
            names
        }
    };
    for (name, _) in &request.classification {
        let t = config.output_named(name).filter(|_| outputs.contains(name));
        match t {
            None => {
                return Err(ServeError::invalid(format!(
                    "unexpected inference output '{name}' for model '{model}'"
                )));
            }
            Some(t) if t.data_type == vigil_engine::DataType::String => {
                return Err(ServeError::invalid(format!(
                    "class result not available for output '{name}' of model '{model}': its \
                     data type is {}",
                    wire_name(t.data_type)
                )));
            }
            Some(_) => {}
        }
    }
    let items = if max_batch == 0 {
        let mut r = InferRequest::default();
        for input in request.inputs {
            r.inputs.push((input.name, input.shape, input.data));
        }
        vec![r]
    } else {
        let b = batch.unwrap_or(0).max(0) as usize;
        if b == 0 || b > max_batch {
            return Err(bad(format!(
                "inference request batch-size must be <= {max_batch} for '{model}'"
            )));
        }
        split_items(request.inputs, b)
    };
    Ok(Prepared {
        items,
        outputs,
        classification: request.classification,
    })
}

fn shape_error(
    config: &ModelConfig,
    t: &TensorConfig,
    given: &[i64],
    model: &str,
    id: &str,
) -> ServeError {
    let note = if config.max_batch_size > 0 {
        "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension \
         to be prepended to each input shape. If you want to specify the full shape including \
         the batch dim in your input dims config, try setting max_batch_size to zero. See the \
         model configuration docs for more info on max_batch_size."
    } else {
        ""
    };
    ServeError::invalid(format!(
        "[request id: {id}] unexpected shape for input '{}' for model '{model}'. Expected {}, got \
         {}. {note}",
        t.name,
        dims_text(&full_dims(config, t)),
        dims_text(given)
    ))
}

/// Splits inputs with a leading batch dimension `b` into `b` requests of one item each.
fn split_items(inputs: Vec<Input>, b: usize) -> Vec<InferRequest> {
    let mut items: Vec<InferRequest> = (0..b).map(|_| InferRequest::default()).collect();
    for input in inputs {
        let item_shape = input.shape[1..].to_vec();
        if b == 1 {
            items[0].inputs.push((input.name, item_shape, input.data));
            continue;
        }
        let per = input.data.len() / b;
        let all = input.data.as_slice();
        for (i, item) in items.iter_mut().enumerate() {
            item.inputs.push((
                input.name.clone(),
                item_shape.clone(),
                all.range(i * per..(i + 1) * per).to_owned_data(),
            ));
        }
    }
    items
}

/// The outputs of one item: `(name, shape, data)` in the order asked for.
type ItemOutputs = Vec<(String, Vec<usize>, TensorData)>;

/// Runs `request` on `runtime`: every item goes through the model's dynamic batcher (queued
/// together, so they can share a batch with each other and with other callers' requests); the
/// items' outputs are put back together along the batch dimension.
pub async fn infer(runtime: Arc<ModelRuntime>, request: Request) -> Result<Response, ServeError> {
    let id = request.id.clone();
    let batched = runtime.max_batch_size() > 0;
    let prepared = prepare(&runtime, request)?;
    let n = prepared.items.len();
    let wanted = Arc::new(prepared.outputs);
    let classification = prepared.classification;
    let mut pending = Vec::with_capacity(n);
    for item in prepared.items {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<ItemOutputs, EngineError>>();
        let wanted = wanted.clone();
        runtime
            .infer_with(
                item,
                move |result: Result<&[TensorView<'_>], EngineError>| {
                    let outputs = result.map(|views| {
                        wanted
                            .iter()
                            .filter_map(|w| views.iter().find(|v| v.name == w))
                            .map(|v| (v.name.to_owned(), v.shape.to_vec(), v.raw.to_owned_data()))
                            .collect()
                    });
                    let _ = tx.send(outputs);
                },
            )
            .map_err(engine_error)?;
        pending.push(rx);
    }
    let mut items = Vec::with_capacity(n);
    for rx in pending {
        let outputs = rx
            .await
            .map_err(|_| ServeError::internal("the model dropped the request"))?
            .map_err(engine_error)?;
        items.push(outputs);
    }
    let mut outputs = join_items(items, batched, &wanted)?;
    for (name, count) in &classification {
        if let Some(out) = outputs.iter_mut().find(|o| &o.name == name) {
            let labels = output_labels(&runtime, name, 16);
            *out = classify(out, if batched { n } else { 0 }, *count, &labels)?;
        }
    }
    Ok(Response {
        model: runtime.name().to_owned(),
        version: runtime.version(),
        id,
        outputs,
        items: if batched { n } else { 1 },
    })
}

/// Queues `request` on a decoupled model (any number of responses per request: Triton's
/// `model_transaction_policy { decoupled: true }`); `send` gets each response as it comes, with
/// whether it is the last, on the model's thread (it must not block). A final flag that comes
/// without a response gives `Ok(None)`. Errors in the request itself are returned here.
pub fn infer_decoupled<F>(
    runtime: Arc<ModelRuntime>,
    request: Request,
    mut send: F,
) -> Result<(), ServeError>
where
    F: FnMut(Result<Option<Response>, ServeError>, bool) + Send + 'static,
{
    let id = request.id.clone();
    let model = runtime.name().to_owned();
    let version = runtime.version();
    if !request.classification.is_empty() {
        return Err(ServeError::invalid(format!(
            "model '{model}' is decoupled: its outputs cannot be asked for as classifications"
        )));
    }
    let prepared = prepare(&runtime, request)?;
    let mut items = prepared.items.into_iter();
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(ServeError::invalid(format!(
            "model '{model}' is decoupled: a request holds one item (batch size 1)"
        )));
    };
    let wanted = prepared.outputs;
    runtime
        .infer_decoupled(
            item,
            Box::new(
                move |result: Result<&[TensorView<'_>], EngineError>, last| {
                    let response = result.map_err(engine_error).map(|views| {
                        (!views.is_empty()).then(|| Response {
                            model: model.clone(),
                            version,
                            id: id.clone(),
                            outputs: wanted
                                .iter()
                                .filter_map(|w| views.iter().find(|v| v.name == w))
                                .map(|v| Output {
                                    name: v.name.to_owned(),
                                    shape: v.shape.iter().map(|&d| d as i64).collect(),
                                    data: v.raw.to_owned_data(),
                                })
                                .collect(),
                            items: 1,
                        })
                    });
                    send(response, last);
                },
            ),
        )
        .map_err(engine_error)
}

/// Puts the items' outputs together: shapes `[items, …]` where the model batches.
fn join_items(
    items: Vec<ItemOutputs>,
    batched: bool,
    wanted: &[String],
) -> Result<Vec<Output>, ServeError> {
    let n = items.len();
    let mut iter = items.into_iter();
    let Some(first) = iter.next() else {
        return Ok(Vec::new());
    };
    if first.len() != wanted.len() {
        let got: Vec<&str> = first.iter().map(|o| o.0.as_str()).collect();
        return Err(ServeError::internal(format!(
            "the model returned outputs {got:?}, {wanted:?} were asked for"
        )));
    }
    let mut outputs: Vec<Output> = first
        .into_iter()
        .map(|(name, shape, data)| {
            let mut shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            if batched
                && n > 1
                && let Some(d0) = shape.first_mut()
            {
                *d0 = n as i64;
            }
            Output { name, shape, data }
        })
        .collect();
    for item in iter {
        for (out, (name, _, data)) in outputs.iter_mut().zip(item) {
            if !out.data.extend_from(data.as_slice()) {
                return Err(ServeError::internal(format!(
                    "output '{name}' changed its data type between items"
                )));
            }
        }
    }
    Ok(outputs)
}

/// The labels of output `name` for a classification: those of the output itself
/// ([`own_labels`]); for an ensemble output that has none, as in Triton, those of the step model
/// output that produces it (through nested ensembles, at most `depth_left` deep).
fn output_labels(runtime: &ModelRuntime, name: &str, depth_left: usize) -> Vec<String> {
    let own = own_labels(runtime, name);
    if !own.is_empty() || runtime.ensemble().is_none() || depth_left == 0 {
        return own;
    }
    // An ensemble's model path is its version folder: <root>/<model>/<version>.
    let Some(root) = runtime.model_path().ancestors().nth(2) else {
        return own;
    };
    let step = vigil_engine::ensemble_steps(runtime.config())
        .into_iter()
        .find_map(|s| {
            let out = s.output_map.iter().find(|(_, t)| t == name)?.0.clone();
            // -1: the latest version served.
            Some((s.model_name, u64::try_from(s.model_version).ok(), out))
        });
    let Some((model, version, out)) = step else {
        return own;
    };
    // The step model is loaded (the ensemble runs it): this shares its runtime.
    match vigil_engine::ModelServer::global().acquire(root, &model, version) {
        Ok(handle) => output_labels(&handle.current(), &out, depth_left - 1),
        Err(_) => own,
    }
}

/// The labels of output `name` of the model itself: the model's labels for its first output (its
/// `label_filename`, else `labels.txt`), the file an output's `label_filename` names for the
/// others (in the model's folder), none otherwise.
fn own_labels(runtime: &ModelRuntime, name: &str) -> Vec<String> {
    let config = runtime.config();
    if config.output.first().is_some_and(|t| t.name == name) {
        return runtime.labels().to_vec();
    }
    let Some(file) = config
        .output_named(name)
        .and_then(|t| t.label_filename.as_deref())
    else {
        return Vec::new();
    };
    // The model file (or an ensemble's version folder) is one or two levels below the model's
    // folder.
    runtime
        .model_path()
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(file))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|text| {
            let mut labels: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
            while labels.last().is_some_and(String::is_empty) {
                labels.pop();
            }
            labels
        })
        .unwrap_or_default()
}

/// A value of an output as the classification extension compares and writes it: integers
/// exactly, floating-point values as `f64` (exact for every narrower float type).
#[derive(Debug, Clone, Copy, PartialEq)]
enum ClassValue {
    Int(i128),
    Float(f64),
}

impl ClassValue {
    /// Descending order; NaN after every number.
    fn rank(a: &ClassValue, b: &ClassValue) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (a, b) {
            (ClassValue::Int(x), ClassValue::Int(y)) => y.cmp(x),
            (ClassValue::Float(x), ClassValue::Float(y)) => match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => y.partial_cmp(x).unwrap_or(Ordering::Equal),
            },
            // One tensor has one data type.
            _ => Ordering::Equal,
        }
    }
}

impl std::fmt::Display for ClassValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassValue::Int(v) => write!(f, "{v}"),
            ClassValue::Float(v) => write!(f, "{v}"),
        }
    }
}

/// The values of a numeric tensor for the classification extension; `None` for strings.
fn class_values(data: &TensorData) -> Option<Vec<ClassValue>> {
    use ClassValue::{Float, Int};
    fn ints<T: Copy + Into<i128>>(v: &[T]) -> Vec<ClassValue> {
        v.iter().map(|&x| Int(x.into())).collect()
    }
    Some(match data {
        TensorData::Bool(v) => v.iter().map(|&x| Int(i128::from(x))).collect(),
        TensorData::Uint8(v) => ints(v),
        TensorData::Uint16(v) => ints(v),
        TensorData::Uint32(v) => ints(v),
        TensorData::Uint64(v) => ints(v),
        TensorData::Int8(v) => ints(v),
        TensorData::Int16(v) => ints(v),
        TensorData::Int32(v) => ints(v),
        TensorData::Int64(v) => ints(v),
        TensorData::Fp16(v) => v.iter().map(|x| Float(x.to_f64())).collect(),
        TensorData::Bf16(v) => v.iter().map(|x| Float(x.to_f64())).collect(),
        TensorData::Fp32(v) => v.iter().map(|&x| Float(f64::from(x))).collect(),
        TensorData::Fp64(v) => v.iter().map(|&x| Float(x)).collect(),
        TensorData::Bytes(_) => return None,
    })
}

/// Triton's classification extension: output `out` replaced by its `count` highest values per
/// batch item (`items` > 0: a batching model's output `[items, …]`; 0: the whole tensor), each
/// as the string `value:index[:label]`, in a BYTES tensor `[items, count]` (`[count]`). `count`
/// is at most the number of values of an item.
fn classify(
    out: &Output,
    items: usize,
    count: usize,
    labels: &[String],
) -> Result<Output, ServeError> {
    let values = class_values(&out.data).ok_or_else(|| {
        ServeError::invalid(format!(
            "class result not available for output '{}': its data type is {}",
            out.name,
            wire_name(out.data.data_type())
        ))
    })?;
    let rows = items.max(1);
    let per = values.len() / rows;
    let k = count.min(per);
    let mut classes = Vec::with_capacity(rows * k);
    for row in values.chunks(per.max(1)).take(rows) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        // Stable: equal values keep the lower index first.
        order.sort_by(|&a, &b| ClassValue::rank(&row[a], &row[b]));
        for &i in order.iter().take(k) {
            let text = match labels.get(i) {
                Some(label) if !label.is_empty() => format!("{}:{i}:{label}", row[i]),
                _ => format!("{}:{i}", row[i]),
            };
            classes.push(text.into_bytes());
        }
    }
    let shape = if items > 0 {
        vec![rows as i64, k as i64]
    } else {
        vec![k as i64]
    };
    Ok(Output {
        name: out.name.clone(),
        shape,
        data: TensorData::Bytes(classes),
    })
}

/// An engine error as the client sees it.
pub fn engine_error(e: EngineError) -> ServeError {
    match e {
        EngineError::BadRequest { message, .. } => ServeError::invalid(message),
        EngineError::ShuttingDown { .. } | EngineError::Unloaded { .. } => {
            ServeError::unavailable(e.to_string())
        }
        other => ServeError::internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_engine::DataType;

    #[test]
    fn dims_are_written_as_triton_writes_them() {
        assert_eq!(dims_text(&[-1, 16]), "[-1,16]");
        assert_eq!(dims_text(&[]), "[]");
    }

    #[test]
    fn a_batch_is_split_into_items_and_typed_data_kept() {
        let inputs = vec![Input {
            name: "INPUT0".into(),
            shape: vec![2, 3],
            data: TensorData::Int32(vec![1, 2, 3, 4, 5, 6]),
        }];
        let items = split_items(inputs, 2);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].inputs[0].1, vec![3]);
        assert_eq!(items[1].inputs[0].2, TensorData::Int32(vec![4, 5, 6]));
        let joined = join_items(
            vec![
                vec![("OUT".into(), vec![1, 3], TensorData::Int32(vec![1, 2, 3]))],
                vec![("OUT".into(), vec![1, 3], TensorData::Int32(vec![4, 5, 6]))],
            ],
            true,
            &["OUT".to_owned()],
        )
        .unwrap();
        assert_eq!(joined[0].shape, vec![2, 3]);
        assert_eq!(joined[0].data, TensorData::Int32(vec![1, 2, 3, 4, 5, 6]));
    }

    fn texts(o: &Output) -> Vec<String> {
        match &o.data {
            TensorData::Bytes(v) => v
                .iter()
                .map(|b| String::from_utf8(b.clone()).unwrap())
                .collect(),
            other => panic!("not BYTES: {other:?}"),
        }
    }

    #[test]
    fn classification_gives_the_highest_values_per_item_with_labels() {
        // A batch of 2 items of 4 values: [items, count] strings value:index[:label].
        let out = Output {
            name: "OUTPUT0".into(),
            shape: vec![2, 4],
            data: TensorData::Int32(vec![1, 5, 10, 4, -3, 7, 7, 0]),
        };
        let labels = ["a", "b", "", "d"].map(String::from);
        let c = classify(&out, 2, 2, &labels).unwrap();
        assert_eq!(c.shape, vec![2, 2]);
        assert_eq!(c.data.data_type(), DataType::String);
        // Index 2 has an empty label: none is written. Equal values: the lower index first.
        assert_eq!(texts(&c), ["10:2", "5:1:b", "7:1:b", "7:2"]);
        // A model that does not batch: the whole tensor, shape [count]; count at most the
        // number of values.
        let c = classify(&out, 0, 100, &[]).unwrap();
        assert_eq!(c.shape, vec![8]);
        assert_eq!(texts(&c)[..3], ["10:2", "7:5", "7:6"]);
    }

    #[test]
    fn classification_values_are_exact() {
        // Large integers in FP32, FP16 and 64-bit values read back as the same numbers.
        let out = Output {
            name: "O".into(),
            shape: vec![3],
            data: TensorData::Fp32(vec![1_073_741_824.0, 0.1, -2.5]),
        };
        let t = texts(&classify(&out, 0, 3, &[]).unwrap());
        assert_eq!(t[0], "1073741824:0");
        assert_eq!(t[2], "-2.5:2");
        let v: f64 = t[1].split(':').next().unwrap().parse().unwrap();
        assert_eq!(v, f64::from(0.1f32));
        let out = Output {
            name: "O".into(),
            shape: vec![1, 2],
            data: TensorData::Int64(vec![i64::MIN, i64::MAX]),
        };
        assert_eq!(
            texts(&classify(&out, 1, 2, &[]).unwrap()),
            [format!("{}:1", i64::MAX), format!("{}:0", i64::MIN)]
        );
        let out = Output {
            name: "O".into(),
            shape: vec![2],
            // 0.5 and a NaN, as half-precision bits.
            data: vigil_kserve::tensors::from_binary(DataType::Fp16, &[0, 0x38, 0, 0x7e], 2)
                .unwrap(),
        };
        assert_eq!(
            texts(&classify(&out, 0, 2, &[]).unwrap()),
            ["0.5:0", "NaN:1"]
        );
        // Strings have no order to classify by.
        let out = Output {
            name: "S".into(),
            shape: vec![1],
            data: TensorData::Bytes(vec![b"x".to_vec()]),
        };
        let e = classify(&out, 0, 1, &[]).unwrap_err();
        assert!(
            e.message.contains("'S'") && e.message.contains("BYTES"),
            "{e}"
        );
    }

    #[test]
    fn data_types_are_the_configuration_names() {
        assert_eq!(wire_name(DataType::String), "BYTES");
    }
}
