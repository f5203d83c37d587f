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
    let outputs = match request.outputs {
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
    Ok(Prepared { items, outputs })
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
    let outputs = join_items(items, batched, &wanted)?;
    Ok(Response {
        model: runtime.name().to_owned(),
        version: runtime.version(),
        id,
        outputs,
        items: if batched { n } else { 1 },
    })
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

    #[test]
    fn data_types_are_the_configuration_names() {
        assert_eq!(wire_name(DataType::String), "BYTES");
    }
}
