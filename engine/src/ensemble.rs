//! Ensembles (`platform: "ensemble"`): a graph of repository models run as one model, as Triton
//! runs them.
//!
//! [`ModelServer`] builds an ensemble's [`ModelRuntime`] through [`load`]: each step of
//! `ensemble_scheduling.step` gets the [`ModelHandle`] of its model from the same server and
//! repository (`model_version: -1` = the latest served), so a step's requests go through that
//! model's own runtime and are batched with every other user of the model, and a step model that
//! is reloaded serves the ensemble's next requests.
//!
//! A request ([`EnsembleRuntime::submit`]) starts every step whose inputs are ready (at first those
//! fed by the ensemble's inputs only); each step's response (on that model's worker thread) stores
//! its outputs as ensemble tensors and starts the steps that became ready, so independent steps
//! run concurrently. A step is fed the ensemble tensors its `input_map` names (key: the step
//! model's input, value: the ensemble tensor) and its outputs are stored under the names of its
//! `output_map` (key: the step model's output, value: the ensemble tensor). When every step has
//! run, the caller's closure gets the ensemble's outputs in the order of the configuration's
//! `output` list (with a leading batch dimension of 1 when `max_batch_size > 0`), on the thread of
//! the step that finished last. Errors name the ensemble, the step and the tensor.
//!
//! Ensemble tensors are kept as a request gives them: one item's shape when the ensemble batches
//! (`max_batch_size > 0`), the full shape otherwise; they are converted for step models that batch
//! differently (a batch of one).

use crate::lock;
use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prost_reflect::{DynamicMessage, MapKey, Value};

use super::scheduler::Responder;
use super::stats::{ModelStats, StatsInner};
use super::{EngineError, InferRequest, ModelHandle, ModelRuntime, ModelServer, NamedTensor};
use crate::TensorData;
use crate::TensorView;
use crate::runtime::{ELEMENT_TYPES, IoInfo};
use vigil_modelrepo::{LoadedModel, ModelConfig};

/// One step of `ensemble_scheduling` as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleStep {
    pub model_name: String,
    /// -1 = the latest version served (the field's default, 0, names version 0).
    pub model_version: i64,
    /// `(step model input, ensemble tensor)`, sorted by input.
    pub input_map: Vec<(String, String)>,
    /// `(step model output, ensemble tensor)`, sorted by output.
    pub output_map: Vec<(String, String)>,
}

fn string_map(m: &DynamicMessage, field: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = m
        .get_field_by_name(field)
        .and_then(|v| {
            v.as_map().map(|map| {
                map.iter()
                    .filter_map(|(k, v)| match (k, v) {
                        (MapKey::String(k), Value::String(v)) => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect()
            })
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// The steps of an ensemble's `ensemble_scheduling`, in configuration order (none for a model
/// that is not an ensemble).
pub fn ensemble_steps(config: &ModelConfig) -> Vec<EnsembleStep> {
    let Some(scheduling) = config.raw.get_field_by_name("ensemble_scheduling") else {
        return Vec::new();
    };
    let Some(scheduling) = scheduling.as_message() else {
        return Vec::new();
    };
    let Some(steps) = scheduling.get_field_by_name("step") else {
        return Vec::new();
    };
    let Some(steps) = steps.as_list() else {
        return Vec::new();
    };
    steps
        .iter()
        .filter_map(Value::as_message)
        .map(|step| EnsembleStep {
            model_name: step
                .get_field_by_name("model_name")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            model_version: match step.get_field_by_name("model_version").as_deref() {
                Some(Value::I64(v)) => *v,
                Some(Value::I32(v)) => i64::from(*v),
                _ => 0,
            },
            input_map: string_map(step, "input_map"),
            output_map: string_map(step, "output_map"),
        })
        .collect()
}

/// A step ready to serve: its configuration and the handle of its model.
struct Step {
    config: EnsembleStep,
    handle: Arc<ModelHandle>,
}

impl Step {
    /// `step 1 (model 'relu_sum')`.
    fn what(&self, index: usize) -> String {
        format!("step {index} (model '{}')", self.config.model_name)
    }
}

/// What every request of one ensemble runtime shares.
struct Inner {
    name: String,
    version: u64,
    /// `max_batch_size > 0`: ensemble tensors are one item's (no batch dimension).
    batched: bool,
    /// The ensemble's outputs in configuration order: name and declared dims (`None` when the
    /// output is reshaped or has no dims, so the shape is not checked).
    outputs: Vec<(String, Option<Vec<i64>>)>,
    steps: Vec<Step>,
    /// Ensemble tensor → (step index, step model output) that writes it.
    producers: HashMap<String, (usize, String)>,
    stats: Mutex<StatsInner>,
}

impl Inner {
    fn error(&self, message: String) -> EngineError {
        EngineError::Execution {
            model: self.name.clone(),
            version: self.version,
            message,
        }
    }
}

/// The execution side of an ensemble's [`ModelRuntime`]: the step models' handles and the
/// ensemble's metrics (per request: requests, failures, end-to-end compute time).
pub struct EnsembleRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EnsembleRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnsembleRuntime")
            .field("model", &self.inner.name)
            .field("version", &self.inner.version)
            .field(
                "steps",
                &self
                    .inner
                    .steps
                    .iter()
                    .map(|s| &s.config.model_name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn io_of(config: &ModelConfig, tensors: &[vigil_modelrepo::TensorConfig]) -> Vec<IoInfo> {
    tensors
        .iter()
        .map(|t| IoInfo {
            name: t.name.clone(),
            dtype: t.data_type.element_name().unwrap_or("Float32").to_owned(),
            shape: if config.max_batch_size > 0 {
                std::iter::once(-1).chain(t.dims.iter().copied()).collect()
            } else {
                t.dims.clone()
            },
        })
        .collect()
}

/// Builds the runtime of the ensemble `model` (of the repository `root`), acquiring its step
/// models from `server`. Fails, naming the ensemble and the step, when a step model cannot be
/// loaded, a mapping names an input or output the step model lacks, or a step can never run.
pub(super) fn load(
    server: &ModelServer,
    root: &Path,
    model: &LoadedModel,
) -> Result<ModelRuntime, EngineError> {
    let config = &model.config;
    let name = model.name.as_str();
    let version = model.version;
    let error = |message: String| EngineError::Config {
        model: name.to_owned(),
        version,
        message,
    };
    for (what, t, allowed) in config
        .input
        .iter()
        .map(|t| ("input", t, ELEMENT_TYPES))
        .chain(config.output.iter().map(|t| ("output", t, ELEMENT_TYPES)))
    {
        let name = t.data_type.element_name().unwrap_or("Invalid");
        if !allowed.contains(&name) {
            return Err(error(format!(
                "ensemble {what} '{}' has data type {}; the engine runs {what}s of {}",
                t.name,
                t.data_type,
                allowed.join(", ")
            )));
        }
    }
    let configured = ensemble_steps(config);
    if configured.is_empty() {
        return Err(error("the ensemble has no steps".into()));
    }

    let mut steps = Vec::with_capacity(configured.len());
    for (i, step) in configured.into_iter().enumerate() {
        let what = format!("step {i} (model '{}')", step.model_name);
        let requested = u64::try_from(step.model_version).ok();
        let handle = server
            .acquire(root, &step.model_name, requested)
            .map_err(|e| error(format!("{what}: cannot load the step model: {e}")))?;
        let runtime = handle.current();
        for (input, tensor) in &step.input_map {
            if !runtime.inputs().iter().any(|i| &i.name == input) {
                let known: Vec<&str> = runtime.inputs().iter().map(|i| i.name.as_str()).collect();
                return Err(error(format!(
                    "{what}: input_map maps ensemble tensor '{tensor}' to '{input}', which is not \
                     an input of the model (inputs: {})",
                    known.join(", ")
                )));
            }
        }
        if let Some(missing) = runtime
            .inputs()
            .iter()
            .find(|i| !step.input_map.iter().any(|(k, _)| *k == i.name))
        {
            return Err(error(format!(
                "{what}: the model's input '{}' is not fed (not in input_map)",
                missing.name
            )));
        }
        for (output, tensor) in &step.output_map {
            if !runtime.outputs().iter().any(|o| &o.name == output) {
                let known: Vec<&str> = runtime.outputs().iter().map(|o| o.name.as_str()).collect();
                return Err(error(format!(
                    "{what}: output_map maps '{output}' to ensemble tensor '{tensor}', but \
                     '{output}' is not an output of the model (outputs: {})",
                    known.join(", ")
                )));
            }
        }
        steps.push(Step {
            config: step,
            handle,
        });
    }

    // Every step must become ready and every ensemble output must be written.
    let mut producers: HashMap<String, (usize, String)> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        for (output, tensor) in &step.config.output_map {
            if let Some((j, _)) = producers.insert(tensor.clone(), (i, output.clone())) {
                return Err(error(format!(
                    "ensemble tensor '{tensor}' is written by both step {j} and step {i}"
                )));
            }
        }
    }
    let mut available: HashSet<&str> = config.input.iter().map(|t| t.name.as_str()).collect();
    let mut done = vec![false; steps.len()];
    loop {
        let ready: Vec<usize> = (0..steps.len())
            .filter(|&i| {
                !done[i]
                    && steps[i]
                        .config
                        .input_map
                        .iter()
                        .all(|(_, t)| available.contains(t.as_str()))
            })
            .collect();
        if ready.is_empty() {
            break;
        }
        for i in ready {
            done[i] = true;
            available.extend(steps[i].config.output_map.iter().map(|(_, t)| t.as_str()));
        }
    }
    if let Some(i) = done.iter().position(|d| !d) {
        let missing: Vec<&str> = steps[i]
            .config
            .input_map
            .iter()
            .filter(|(_, t)| !available.contains(t.as_str()))
            .map(|(_, t)| t.as_str())
            .collect();
        return Err(error(format!(
            "{} can never run: ensemble tensor(s) {} are neither ensemble inputs nor written by \
             a step that can run",
            steps[i].what(i),
            missing.join(", ")
        )));
    }
    if let Some(out) = config
        .output
        .iter()
        .find(|o| !available.contains(o.name.as_str()))
    {
        return Err(error(format!(
            "ensemble output '{}' is not written by any step",
            out.name
        )));
    }

    let inner = Arc::new(Inner {
        name: name.to_owned(),
        version,
        batched: config.max_batch_size > 0,
        outputs: config
            .output
            .iter()
            .map(|o| {
                let dims = (o.reshape.is_none() && !o.dims.is_empty()).then(|| o.dims.clone());
                (o.name.clone(), dims)
            })
            .collect(),
        steps,
        producers,
        stats: Mutex::new(StatsInner::new(Vec::new())),
    });
    Ok(ModelRuntime::from_ensemble(
        model,
        io_of(config, &config.input),
        io_of(config, &config.output),
        EnsembleRuntime { inner },
    ))
}

/// An ensemble tensor: shape (as the ensemble's requests give it) and data.
type Tensor = (Vec<i64>, TensorData);

/// The progress of one request.
struct RunState {
    tensors: HashMap<String, Tensor>,
    started: Vec<bool>,
    finished: usize,
    in_flight: usize,
    /// `None` once answered.
    respond: Option<Responder>,
}

/// One request going through the steps.
struct Run {
    inner: Arc<Inner>,
    priority: u32,
    start: Instant,
    state: Mutex<RunState>,
}

/// Calls a responder; a panic in the caller's closure loses only that response.
fn call(respond: Responder, result: Result<&[TensorView<'_>], EngineError>) {
    let _ = catch_unwind(AssertUnwindSafe(move || respond(result)));
}

/// The shape a step model is fed an ensemble tensor with; `None` when the tensor cannot be a
/// batch of one.
fn to_step(shape: &[i64], ensemble_batched: bool, step_batched: bool) -> Option<Vec<i64>> {
    match (ensemble_batched, step_batched) {
        (true, true) | (false, false) => Some(shape.to_vec()),
        (true, false) => Some(std::iter::once(1).chain(shape.iter().copied()).collect()),
        (false, true) => (shape.first() == Some(&1)).then(|| shape[1..].to_vec()),
    }
}

/// The ensemble-tensor shape of a step model's output; `None` when it is not a batch of one
/// where the ensemble batches.
fn from_step(shape: &[usize], ensemble_batched: bool) -> Option<Vec<i64>> {
    let full: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    if ensemble_batched {
        (full.first() == Some(&1)).then(|| full[1..].to_vec())
    } else {
        Some(full)
    }
}

impl EnsembleRuntime {
    /// Starts `inputs` (checked against the ensemble's inputs) through the steps; `respond` gets
    /// the ensemble's outputs or the first error.
    pub(super) fn submit(&self, inputs: Vec<NamedTensor>, priority: u32, respond: Responder) {
        lock(&self.inner.stats).requests += 1;
        let run = Arc::new(Run {
            inner: self.inner.clone(),
            priority,
            start: Instant::now(),
            state: Mutex::new(RunState {
                tensors: inputs
                    .into_iter()
                    .map(|(name, shape, data)| (name, (shape, data)))
                    .collect(),
                started: vec![false; self.inner.steps.len()],
                finished: 0,
                in_flight: 0,
                respond: Some(respond),
            }),
        });
        run.advance();
    }

    /// The names of the step models, in configuration order.
    pub fn step_models(&self) -> Vec<&str> {
        self.inner
            .steps
            .iter()
            .map(|s| s.config.model_name.as_str())
            .collect()
    }

    /// A snapshot of the ensemble's own metrics (each step model keeps its own).
    pub(super) fn stats(&self) -> ModelStats {
        let st = lock(&self.inner.stats);
        ModelStats {
            model: self.inner.name.clone(),
            version: self.inner.version,
            requests: st.requests,
            failures: st.failures,
            pending: 0,
            executions: st.executions,
            batch_sizes: st.batch_sizes.clone(),
            batch_compute: st.batch_compute.clone(),
            queue_time: st.queue_time.clone(),
            compute_time: st.compute_time.clone(),
            reordered: 0,
            instances: Vec::new(),
        }
    }
}

impl Run {
    /// Answers the request with `error` unless it was answered already.
    fn fail(&self, error: EngineError) {
        let respond = lock(&self.state).respond.take();
        if let Some(respond) = respond {
            lock(&self.inner.stats).failures += 1;
            call(respond, Err(error));
        }
    }

    /// Starts the steps whose inputs are ready, or answers when every step has run.
    fn advance(self: &Arc<Self>) {
        let inner = &self.inner;
        let mut jobs: Vec<(usize, Arc<ModelRuntime>, InferRequest)> = Vec::new();
        let mut failure = None;
        let finished = 'state: {
            let mut st = lock(&self.state);
            if st.respond.is_none() {
                return;
            }
            for (i, step) in inner.steps.iter().enumerate() {
                if st.started[i]
                    || !step
                        .config
                        .input_map
                        .iter()
                        .all(|(_, t)| st.tensors.contains_key(t))
                {
                    continue;
                }
                st.started[i] = true;
                st.in_flight += 1;
                let runtime = step.handle.current();
                let step_batched = runtime.max_batch_size() > 0;
                let mut request = InferRequest {
                    inputs: Vec::with_capacity(step.config.input_map.len()),
                    frame: None,
                    priority: self.priority,
                };
                for (input, tensor) in &step.config.input_map {
                    let (shape, data) = &st.tensors[tensor];
                    let Some(step_shape) = to_step(shape, inner.batched, step_batched) else {
                        failure = Some(inner.error(format!(
                            "{}: input '{input}' (ensemble tensor '{tensor}'): shape {shape:?} is \
                             not a batch of one, which the model (max_batch_size {}) needs",
                            step.what(i),
                            runtime.max_batch_size()
                        )));
                        break 'state None;
                    };
                    request
                        .inputs
                        .push((input.clone(), step_shape, data.clone()));
                }
                jobs.push((i, runtime, request));
            }
            if jobs.is_empty() && st.in_flight == 0 {
                Some(std::mem::take(&mut st.tensors))
            } else {
                None
            }
        };
        if let Some(e) = failure {
            self.fail(e);
            return;
        }
        if let Some(tensors) = finished {
            self.finish(tensors);
            return;
        }
        for (i, runtime, request) in jobs {
            let run = self.clone();
            let respond: Responder = Box::new(move |result| run.step_done(i, result));
            if let Err(e) = runtime.submit(request, respond) {
                self.fail(inner.error(format!(
                    "{} refused the request: {e}",
                    inner.steps[i].what(i)
                )));
                return;
            }
        }
    }

    /// Stores the outputs of step `i` and goes on.
    fn step_done(self: &Arc<Self>, i: usize, result: Result<&[TensorView<'_>], EngineError>) {
        let inner = &self.inner;
        let step = &inner.steps[i];
        let views = match result {
            Ok(views) => views,
            Err(e) => {
                self.fail(inner.error(format!("{} failed: {e}", step.what(i))));
                return;
            }
        };
        let mut produced = Vec::with_capacity(step.config.output_map.len());
        for (output, tensor) in &step.config.output_map {
            let Some(view) = views.iter().find(|v| v.name == output) else {
                let got: Vec<&str> = views.iter().map(|v| v.name).collect();
                self.fail(inner.error(format!(
                    "{} did not produce output '{output}' (ensemble tensor '{tensor}'); it \
                     produced: {}",
                    step.what(i),
                    got.join(", ")
                )));
                return;
            };
            let Some(shape) = from_step(view.shape, inner.batched) else {
                self.fail(inner.error(format!(
                    "{}: output '{output}' (ensemble tensor '{tensor}') has shape {:?}; the \
                     ensemble batches, so a leading batch dimension of 1 was expected",
                    step.what(i),
                    view.shape
                )));
                return;
            };
            produced.push((tensor.clone(), (shape, view.raw.to_owned_data())));
        }
        {
            let mut st = lock(&self.state);
            st.in_flight -= 1;
            st.finished += 1;
            st.tensors.extend(produced);
        }
        self.advance();
    }

    /// Every step has run (or none can): answers with the ensemble's outputs.
    fn finish(&self, mut tensors: HashMap<String, Tensor>) {
        let inner = &self.inner;
        let (finished, total) = (lock(&self.state).finished, inner.steps.len());
        if finished != total {
            self.fail(inner.error(format!(
                "only {finished} of {total} steps could run (an ensemble tensor is never written)"
            )));
            return;
        }
        let mut outputs: Vec<(&str, Vec<usize>, TensorData)> =
            Vec::with_capacity(inner.outputs.len());
        for (name, dims) in &inner.outputs {
            let from = || match inner.producers.get(name) {
                Some((j, o)) => format!(" from {} output '{o}'", inner.steps[*j].what(*j)),
                None => String::new(),
            };
            let Some((shape, data)) = tensors.remove(name) else {
                self.fail(inner.error(format!(
                    "ensemble output '{name}' was not produced{}",
                    from()
                )));
                return;
            };
            if let Some(dims) = dims
                && (shape.len() != dims.len()
                    || shape.iter().zip(dims).any(|(&d, &e)| e >= 0 && d != e))
            {
                self.fail(inner.error(format!(
                    "ensemble output '{name}'{} has shape {shape:?}; the ensemble declares dims \
                     {dims:?} (-1 = any size)",
                    from()
                )));
                return;
            }
            let full: Vec<usize> = inner
                .batched
                .then_some(1)
                .into_iter()
                .chain(shape.iter().map(|&d| d.max(0) as usize))
                .collect();
            outputs.push((name.as_str(), full, data));
        }
        let Some(respond) = lock(&self.state).respond.take() else {
            return;
        };
        lock(&inner.stats).record_execution(0, 1, self.start, Instant::now());
        let widened = crate::tensor::widen(&outputs);
        let views = crate::tensor::views_of(&outputs, &widened);
        call(respond, Ok(&views));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testmodel::write_affine;
    use super::*;

    const AFFINE: &str = r#"name: "affine"
backend: "onnxruntime"
max_batch_size: 4
input [ { name: "x", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ -1 ] },
         { name: "z", data_type: TYPE_FP32, dims: [ -1 ] } ]
dynamic_batching { }
"#;

    /// A diamond: `affine` twice from the ensemble input, then once on each branch (the two
    /// branches may run concurrently): OUT1 = 2(2x+1)+1, OUT2 = (x²)².
    const DIAMOND: &str = r#"name: "diamond"
platform: "ensemble"
max_batch_size: 4
input [ { name: "IN", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUT2", data_type: TYPE_FP32, dims: [ OUT2_DIMS ] },
         { name: "OUT1", data_type: TYPE_FP32, dims: [ -1 ] } ]
ensemble_scheduling { step [
  { model_name: "affine" model_version: -1
    input_map { key: "x" value: "IN" }
    output_map { key: "y" value: "A" } output_map { key: "z" value: "B" } },
  { model_name: "affine" model_version: 1
    input_map { key: "x" value: "B" }
    output_map { key: "z" value: "OUT2" } },
  { model_name: "affine" model_version: -1
    input_map { key: "x" value: "A" }
    output_map { key: "y" value: "OUT1" } }
] }
"#;

    fn repo(tag: &str, out2_dims: &str) -> Option<std::path::PathBuf> {
        if crate::runtime::environment().is_err() {
            println!("SKIPPED: ONNX Runtime is not installed");
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("vigil-ensemble-unit-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_affine(&dir, "affine");
        std::fs::write(dir.join("affine/config.pbtxt"), AFFINE).unwrap();
        std::fs::create_dir_all(dir.join("diamond/1")).unwrap();
        std::fs::write(
            dir.join("diamond/config.pbtxt"),
            DIAMOND.replace("OUT2_DIMS", out2_dims),
        )
        .unwrap();
        Some(dir)
    }

    #[test]
    fn a_diamond_runs_its_branches_and_answers_in_output_order() {
        let Some(dir) = repo("diamond", "-1") else {
            return;
        };
        let server = ModelServer::new();
        let diamond = server.acquire(&dir, "diamond", None).unwrap();
        let x = vec![1.0f32, -2.0, 0.5];
        let got = diamond
            .infer(InferRequest::new("IN", vec![3], x.clone()), |views| {
                views
                    .iter()
                    .map(|v| (v.name.to_owned(), v.shape.to_vec(), v.data.to_vec()))
                    .collect::<Vec<_>>()
            })
            .unwrap();
        let out1: Vec<f32> = x.iter().map(|v| 2.0 * (2.0 * v + 1.0) + 1.0).collect();
        let out2: Vec<f32> = x.iter().map(|v| (v * v) * (v * v)).collect();
        assert_eq!(
            got,
            vec![
                ("OUT2".to_owned(), vec![1, 3], out2),
                ("OUT1".to_owned(), vec![1, 3], out1),
            ]
        );
        let affine = server.acquire(&dir, "affine", None).unwrap();
        assert_eq!(
            affine.current().stats().requests,
            3,
            "three steps, one model"
        );
        let stats = diamond.current().stats();
        assert_eq!(
            (stats.requests, stats.failures, stats.executions),
            (1, 0, 1)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_output_of_the_wrong_shape_is_an_error_naming_step_and_tensor() {
        let Some(dir) = repo("shape", "2") else {
            return;
        };
        let server = ModelServer::new();
        let diamond = server.acquire(&dir, "diamond", None).unwrap();
        let err = diamond
            .infer(InferRequest::new("IN", vec![3], vec![0.0; 3]), |_| ())
            .unwrap_err()
            .to_string();
        println!("wrong output shape: {err}");
        assert!(
            err.contains("diamond")
                && err.contains("'OUT2'")
                && err.contains("step 1 (model 'affine')")
                && err.contains("[3]"),
            "{err}"
        );
        assert_eq!(diamond.current().stats().failures, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn shapes_convert_between_batching_conventions() {
        assert_eq!(to_step(&[4], true, true), Some(vec![4]));
        assert_eq!(to_step(&[4], true, false), Some(vec![1, 4]));
        assert_eq!(to_step(&[1, 4], false, true), Some(vec![4]));
        assert_eq!(to_step(&[2, 4], false, true), None);
        assert_eq!(to_step(&[2, 4], false, false), Some(vec![2, 4]));
        assert_eq!(from_step(&[1, 4], true), Some(vec![4]));
        assert_eq!(from_step(&[2, 4], true), None);
        assert_eq!(from_step(&[2, 4], false), Some(vec![2, 4]));
    }
}
