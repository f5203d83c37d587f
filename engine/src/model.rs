//! [`ModelRuntime`]: the instances (worker threads with their sessions), the batcher they share,
//! the response sequencer and the metrics of one model version.

use crate::lock;
use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::ensemble::EnsembleRuntime;
use super::frames::{DeviceInput, FrameInput, FramePreprocessorFactory, FrameStage};
use super::scheduler::{
    BatchPolicy, Decision, OwnedTensor, Parked, Pending, Queue, Responder, Sequencer,
};
use super::stats::{InstanceLog, InstanceStats, ModelStats, StatsInner};
use super::{
    EngineError, INTRA_OP_SPINNING_PARAMETER, INTRA_OP_THREADS_PARAMETER, InferRequest,
    InferSession, MAX_INSTANCES, NamedTensor, ResponseSink, SessionFactory,
    gpu_frame_preprocessors, onnx_session_factory, tensor_type_of,
};
use crate::runtime::{
    ELEMENT_TYPES, ExecutionProvider, INPUT_TYPES, IoInfo, RuntimeError, SessionOptions, warn_once,
};
use crate::tensor::data_type_of_element;
use crate::{DataType, TensorData, TensorSlice, TensorView};
use vigil_modelrepo::{InstanceGroup, InstanceKind, LoadedModel, ModelConfig};

/// One instance of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `<group>_<index in group>`; groups without a name are called `<model>_<group index>`.
    pub name: String,
    pub group: String,
    pub kind: InstanceKind,
    /// The provider the configuration asks for.
    pub requested_provider: ExecutionProvider,
    /// The provider the session runs on (the CPU where the requested one is absent).
    pub provider: ExecutionProvider,
    pub device_id: i32,
    /// Intra-op threads of its session (0 = ONNX Runtime's default).
    pub intra_threads: usize,
    /// Whether its idle intra-op threads busy-wait (`vigil.intra_op_spinning`).
    pub intra_op_spinning: bool,
}

/// The state the instances share.
struct Shared {
    model: String,
    version: u64,
    policy: BatchPolicy,
    queue: Mutex<Queue>,
    cv: Condvar,
    sequencer: Mutex<Sequencer>,
    stats: Mutex<StatsInner>,
    /// Why an instance could not make its frame pre-processor (then no frames are taken).
    frames_broken: Mutex<Option<String>>,
    /// `model_transaction_policy { decoupled: true }`: every request is decoupled
    /// ([`ModelRuntime::infer_decoupled`]).
    decoupled: bool,
}

/// A loaded model version with its instances and batcher. Dropping it (or [`ModelRuntime::shutdown`])
/// runs the queued requests, then stops the instances.
pub struct ModelRuntime {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    instances: Vec<InstanceInfo>,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    config: ModelConfig,
    labels: Vec<String>,
    model_path: PathBuf,
    /// `Some` for an ensemble (no instances of its own; see [`super::ensemble`]).
    ensemble: Option<EnsembleRuntime>,
    /// Where the instances' frame pre-processors come from (see [`super::frames`]).
    frames: Option<FramePreprocessorFactory>,
}

impl std::fmt::Debug for ModelRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRuntime")
            .field("model", &self.shared.model)
            .field("version", &self.shared.version)
            .field("model_path", &self.model_path)
            .field("instances", &self.instances)
            .finish_non_exhaustive()
    }
}

/// A response still to come ([`ModelRuntime::infer_async`]).
pub struct InferResponse<R> {
    rx: mpsc::Receiver<Result<R, EngineError>>,
    model: String,
    version: u64,
}

impl<R> InferResponse<R> {
    fn lost(&self) -> EngineError {
        EngineError::ResponseLost {
            model: self.model.clone(),
            version: self.version,
        }
    }

    /// Waits for the response.
    pub fn wait(self) -> Result<R, EngineError> {
        self.rx.recv().unwrap_or_else(|_| Err(self.lost()))
    }

    /// Waits at most `timeout`; `None` when the response has not come yet. Call it again after
    /// `None`; after `Some` the response is consumed.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<R, EngineError>> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(self.lost())),
        }
    }
}

/// An instance to start.
struct Plan {
    name: String,
    group: String,
    kind: InstanceKind,
    provider: ExecutionProvider,
    device_id: i32,
}

/// The provider for an instance: the first usable accelerator named, or `default`.
fn accelerator_provider(
    model: &str,
    names: &[&str],
    allowed: &[ExecutionProvider],
    default: ExecutionProvider,
    what: &str,
) -> ExecutionProvider {
    for name in names {
        match ExecutionProvider::from_accelerator_name(name) {
            Some(p) if allowed.contains(&p) => return p,
            _ => {
                warn_once(
                    &format!("accelerator:{what}:{name}"),
                    &format!(
                        "model '{model}': {what} execution accelerator '{name}' is not supported \
                         (supported: {}); ignored",
                        allowed
                            .iter()
                            .map(|p| p.to_string().to_ascii_lowercase())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    default
}

/// The number of CUDA devices, asked only when `config` has `KIND_GPU` groups and the ONNX Runtime
/// library has the CUDA provider (elsewhere such groups fall back to the CPU with the provider's
/// warning); `None` when not asked or no device is usable.
fn gpu_count_for(config: &ModelConfig) -> Option<usize> {
    let wants_gpu = config
        .instance_group
        .iter()
        .any(|g| g.kind == InstanceKind::Gpu);
    if !wants_gpu || !ExecutionProvider::Cuda.is_available() {
        return None;
    }
    crate::gpu::probe_quietly().devices().map(<[_]>::len)
}

/// The instances of `config`'s groups. `gpu_count`: the CUDA devices present, when known; a `KIND_GPU`
/// group naming a GPU outside `0..gpu_count` is then an error, as in Triton.
fn plan_instances(
    model: &str,
    version: u64,
    config: &ModelConfig,
    gpu_count: Option<usize>,
) -> Result<Vec<Plan>, EngineError> {
    let default_group = [InstanceGroup {
        kind: InstanceKind::Cpu,
        count: 1,
        ..InstanceGroup::default()
    }];
    let groups: &[InstanceGroup] = if config.instance_group.is_empty() {
        &default_group
    } else {
        &config.instance_group
    };
    let gpu_provider = || {
        accelerator_provider(
            model,
            &config.execution_accelerators.gpu_names(),
            &[ExecutionProvider::TensorRt, ExecutionProvider::Cuda],
            ExecutionProvider::Cuda,
            "GPU",
        )
    };
    let cpu_provider = || {
        accelerator_provider(
            model,
            &config.execution_accelerators.cpu_names(),
            &[ExecutionProvider::OpenVino, ExecutionProvider::Cpu],
            ExecutionProvider::Cpu,
            "CPU",
        )
    };
    let mut plans = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let group_name = if group.name.is_empty() {
            format!("{model}_{g}")
        } else {
            group.name.clone()
        };
        let count = group.count.max(1) as usize;
        let (provider, devices) = if group.kind == InstanceKind::Gpu {
            let devices = if group.gpus.is_empty() {
                vec![0]
            } else {
                group.gpus.clone()
            };
            if let Some(n) = gpu_count
                && let Some(bad) = devices.iter().find(|&&g| g < 0 || g as usize >= n)
            {
                return Err(EngineError::Config {
                    model: model.to_owned(),
                    version,
                    message: format!(
                        "instance group {group_name} specifies GPU {bad}, which is not present \
                         (this machine has {n} GPU{}: 0..{})",
                        if n == 1 { "" } else { "s" },
                        n - 1
                    ),
                });
            }
            (gpu_provider(), devices)
        } else {
            (cpu_provider(), vec![0])
        };
        let mut index = 0;
        for &device_id in &devices {
            for _ in 0..count {
                if plans.len() >= MAX_INSTANCES {
                    return Err(EngineError::Config {
                        model: model.to_owned(),
                        version,
                        message: format!(
                            "instance_group asks for more than {MAX_INSTANCES} instances"
                        ),
                    });
                }
                plans.push(Plan {
                    name: format!("{group_name}_{index}"),
                    group: group_name.clone(),
                    kind: group.kind,
                    provider,
                    device_id,
                });
                index += 1;
            }
        }
    }
    Ok(plans)
}

type Loaded = (Vec<IoInfo>, Vec<IoInfo>, ExecutionProvider);

/// An instance's thread: loads its session, reports, waits for the go, then serves batches.
fn instance_main(
    index: usize,
    path: PathBuf,
    options: SessionOptions,
    factory: SessionFactory,
    frames: Option<FramePreprocessorFactory>,
    ready: mpsc::Sender<(usize, Result<Loaded, RuntimeError>)>,
    go: mpsc::Receiver<Arc<Shared>>,
) {
    let device_id = options.device_id;
    let made = catch_unwind(AssertUnwindSafe(|| factory(&path, options)));
    let mut session = match made {
        Ok(Ok(mut s)) => {
            s.warm_up();
            let io = (
                s.inputs().to_vec(),
                s.outputs().to_vec(),
                s.execution_provider(),
            );
            let _ = ready.send((index, Ok(io)));
            s
        }
        Ok(Err(e)) => {
            let _ = ready.send((index, Err(e)));
            return;
        }
        Err(_) => {
            let _ = ready.send((
                index,
                Err(RuntimeError::Model {
                    path,
                    reason: "the session factory panicked".into(),
                }),
            ));
            return;
        }
    };
    drop(ready);
    let Ok(shared) = go.recv() else {
        return;
    };
    drop(go);
    let dtype = session
        .inputs()
        .first()
        .map_or(String::new(), |i| i.dtype.clone());
    let mut stage = FrameStage::new(frames, device_id, &dtype);
    while let Some(batch) = shared.next_batch() {
        shared.execute(index, session.as_mut(), &mut stage, batch);
    }
}

fn join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.join();
    }
}

impl ModelRuntime {
    /// Loads `model` with ONNX Runtime sessions ([`crate::runtime::OnnxModel`]) and starts its
    /// instances. Fails, naming the instance, if any instance cannot load the model.
    pub fn load(model: &LoadedModel) -> Result<Self, EngineError> {
        Self::load_with_factory(model, onnx_session_factory())
    }

    /// As [`ModelRuntime::load`], with sessions made by `factory` (frames pre-processed on the GPU
    /// where there is one: [`gpu_frame_preprocessors`]).
    pub fn load_with_factory(
        model: &LoadedModel,
        factory: SessionFactory,
    ) -> Result<Self, EngineError> {
        Self::load_with_factories(model, factory, Some(gpu_frame_preprocessors()))
    }

    /// As [`ModelRuntime::load`], with sessions made by `factory` and the instances' frame
    /// pre-processors by `frames` (`None`: frame requests are refused).
    pub fn load_with_factories(
        model: &LoadedModel,
        factory: SessionFactory,
        frames: Option<FramePreprocessorFactory>,
    ) -> Result<Self, EngineError> {
        let name = model.name.as_str();
        let version = model.version;
        let config = &model.config;
        let config_error = |message: String| EngineError::Config {
            model: name.to_owned(),
            version,
            message,
        };
        if config.platform == "ensemble" {
            return Err(config_error(
                "is an ensemble; a model runtime runs a single ONNX model (load ensembles \
                 through a ModelServer, which runs their steps)"
                    .into(),
            ));
        }
        let python = crate::python::is_python_backend(&config.backend);
        if config.decoupled() && !python {
            return Err(config_error(format!(
                "has the decoupled transaction policy, which only the Python backend runs (backend \
                 '{}')",
                config.backend
            )));
        }
        // A Python-backend model runs its instances as Python processes (and takes no frames).
        let (factory, frames) = if python {
            (crate::python::python_session_factory(model), None)
        } else {
            (factory, frames)
        };
        let plans = plan_instances(name, version, config, gpu_count_for(config))?;
        let intra_threads = match config.parameters.get(INTRA_OP_THREADS_PARAMETER) {
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                config_error(format!(
                    "parameter {INTRA_OP_THREADS_PARAMETER}: '{v}' is not a number of threads"
                ))
            })?,
            None => {
                let cores = thread::available_parallelism().map_or(1, |n| n.get());
                (cores / plans.len()).max(1)
            }
        };

        let intra_op_spinning = match config.parameters.get(INTRA_OP_SPINNING_PARAMETER) {
            Some(v) => super::parse_bool(v).ok_or_else(|| {
                config_error(format!(
                    "parameter {INTRA_OP_SPINNING_PARAMETER}: '{v}' is not true or false"
                ))
            })?,
            None => false,
        };

        let provider_options = Arc::new(
            super::accel::provider_options(config, &super::accel::default_cache_dir(name, version))
                .map_err(config_error)?,
        );

        let (ready_tx, ready_rx) = mpsc::channel();
        let mut handles = Vec::with_capacity(plans.len());
        let mut go_txs = Vec::with_capacity(plans.len());
        for (i, plan) in plans.iter().enumerate() {
            let (go_tx, go_rx) = mpsc::channel::<Arc<Shared>>();
            let ready_tx = ready_tx.clone();
            let factory = factory.clone();
            let frames = frames.clone();
            let path = model.model_path.clone();
            let options = SessionOptions {
                intra_threads,
                intra_op_spinning,
                execution_provider: plan.provider,
                device_id: plan.device_id,
                provider_options: provider_options.clone(),
                instance_name: plan.name.clone(),
            };
            let spawned = thread::Builder::new()
                .name(format!("vigil-infer-{i}"))
                .spawn(move || instance_main(i, path, options, factory, frames, ready_tx, go_rx));
            match spawned {
                Ok(h) => {
                    handles.push(h);
                    go_txs.push(go_tx);
                }
                Err(e) => {
                    drop(go_txs);
                    join_all(handles);
                    return Err(config_error(format!(
                        "cannot start the thread of instance {}: {e}",
                        plan.name
                    )));
                }
            }
        }
        drop(ready_tx);

        let mut loaded: Vec<Option<Loaded>> = (0..plans.len()).map(|_| None).collect();
        let mut failure: Option<EngineError> = None;
        for _ in 0..plans.len() {
            match ready_rx.recv() {
                Ok((i, Ok(io))) => loaded[i] = Some(io),
                Ok((i, Err(source))) => {
                    failure.get_or_insert(EngineError::Load {
                        model: name.to_owned(),
                        version,
                        instance: plans[i].name.clone(),
                        source,
                    });
                }
                Err(_) => break,
            }
        }
        let loaded: Option<Vec<Loaded>> = loaded.into_iter().collect();
        let result = match (failure, loaded) {
            (Some(e), _) => Err(e),
            (None, None) => Err(config_error("an instance stopped while loading".into())),
            (None, Some(loaded)) => {
                Self::check_io(name, version, config, &loaded).map(|io| (io, loaded))
            }
        };
        let ((inputs, outputs, max_batch), loaded) = match result {
            Ok(x) => x,
            Err(e) => {
                drop(go_txs);
                join_all(handles);
                return Err(e);
            }
        };

        let policy = BatchPolicy::new(config, max_batch);
        let instances: Vec<InstanceInfo> = plans
            .iter()
            .zip(&loaded)
            .map(|(p, l)| InstanceInfo {
                name: p.name.clone(),
                group: p.group.clone(),
                kind: p.kind,
                requested_provider: p.provider,
                provider: l.2,
                device_id: p.device_id,
                intra_threads,
                intra_op_spinning,
            })
            .collect();
        let logs = instances
            .iter()
            .map(|i| InstanceLog {
                name: i.name.clone(),
                kind: i.kind,
                provider: i.provider,
                executions: 0,
                intervals: Default::default(),
            })
            .collect();
        let shared = Arc::new(Shared {
            model: name.to_owned(),
            version,
            queue: Mutex::new(Queue::new(policy.levels)),
            policy,
            cv: Condvar::new(),
            sequencer: Mutex::new(Sequencer::default()),
            stats: Mutex::new(StatsInner::new(logs)),
            frames_broken: Mutex::new(None),
            decoupled: config.decoupled(),
        });
        for tx in go_txs {
            let _ = tx.send(shared.clone());
        }
        Ok(ModelRuntime {
            shared,
            workers: Mutex::new(handles),
            instances,
            inputs,
            outputs,
            config: config.clone(),
            labels: model.labels.clone(),
            model_path: model.model_path.clone(),
            ensemble: None,
            frames,
        })
    }

    /// The runtime of an ensemble: no instances of its own; requests run through `ensemble`'s
    /// steps. `inputs`/`outputs`: the ensemble's, from its configuration.
    pub(super) fn from_ensemble(
        model: &LoadedModel,
        inputs: Vec<IoInfo>,
        outputs: Vec<IoInfo>,
        ensemble: EnsembleRuntime,
    ) -> Self {
        let config = &model.config;
        let policy = BatchPolicy::new(config, config.max_batch_size.max(0) as usize);
        let shared = Arc::new(Shared {
            model: model.name.clone(),
            version: model.version,
            queue: Mutex::new(Queue::new(policy.levels)),
            policy,
            cv: Condvar::new(),
            sequencer: Mutex::new(Sequencer::default()),
            stats: Mutex::new(StatsInner::new(Vec::new())),
            frames_broken: Mutex::new(None),
            decoupled: false,
        });
        ModelRuntime {
            shared,
            workers: Mutex::new(Vec::new()),
            instances: Vec::new(),
            inputs,
            outputs,
            config: config.clone(),
            labels: model.labels.clone(),
            model_path: model.model_path.clone(),
            ensemble: Some(ensemble),
            frames: None,
        }
    }

    /// The ensemble side of an ensemble's runtime; `None` for a single model.
    pub fn ensemble(&self) -> Option<&EnsembleRuntime> {
        self.ensemble.as_ref()
    }

    /// Checks the sessions' inputs and works out the batch size the model file allows.
    fn check_io(
        name: &str,
        version: u64,
        config: &ModelConfig,
        loaded: &[Loaded],
    ) -> Result<(Vec<IoInfo>, Vec<IoInfo>, usize), EngineError> {
        let (inputs, outputs, _) = loaded[0].clone();
        let config_error = |message: String| EngineError::Config {
            model: name.to_owned(),
            version,
            message,
        };
        if let Some(bad) = inputs
            .iter()
            .find(|i| !ELEMENT_TYPES.contains(&i.dtype.as_str()))
        {
            return Err(config_error(format!(
                "input '{}' has element type {}; the engine feeds {}",
                bad.name,
                bad.dtype,
                ELEMENT_TYPES.join(", ")
            )));
        }
        if let Some(bad) = outputs
            .iter()
            .find(|o| !ELEMENT_TYPES.contains(&o.dtype.as_str()))
        {
            return Err(config_error(format!(
                "output '{}' has element type {}; the engine reads {}",
                bad.name,
                bad.dtype,
                ELEMENT_TYPES.join(", ")
            )));
        }
        let mut max_batch = config.max_batch_size.max(0) as usize;
        if max_batch > 0 {
            for input in &inputs {
                if let Some(&d0) = input.shape.first()
                    && d0 > 0
                    && (d0 as usize) < max_batch
                {
                    warn_once(
                        &format!("batch-dim:{name}:{version}:{}", input.name),
                        &format!(
                            "model '{name}' version {version}: input '{}' has a fixed first \
                             dimension {d0} in the model file; batches are limited to {d0} \
                             (max_batch_size {max_batch})",
                            input.name
                        ),
                    );
                    max_batch = d0 as usize;
                }
            }
        }
        Ok((inputs, outputs, max_batch))
    }

    pub fn name(&self) -> &str {
        &self.shared.model
    }

    pub fn version(&self) -> u64 {
        self.shared.version
    }

    /// The configuration the runtime was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// The model's inputs as the model file declares them (`-1` = dynamic).
    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }

    /// The largest batch executed (`max_batch_size`, lowered where the model file fixes the batch
    /// dimension); 0 = requests carry the full shape.
    pub fn max_batch_size(&self) -> usize {
        self.shared.policy.max_batch
    }

    /// Whether requests are batched dynamically.
    pub fn dynamic_batching(&self) -> bool {
        self.shared.policy.dynamic
    }

    pub fn instances(&self) -> &[InstanceInfo] {
        &self.instances
    }

    /// Whether the runtime takes frame requests ([`InferRequest::from_frame`]): its instances
    /// pre-process frames on the GPU. See [`ModelRuntime::frame_support`].
    pub fn gpu_preprocessing(&self) -> bool {
        self.frame_support().is_ok()
    }

    /// `Ok` when the runtime takes frame requests: a single model (not an ensemble) with one input
    /// of four dimensions in FP32 or FP16, every instance `KIND_GPU` and running on the CUDA or TensorRT
    /// provider, a CUDA device and NVRTC in this process ([`crate::gpu::probe`], asked only when
    /// the rest holds), and no instance that failed to make its pre-processor. Otherwise the reason.
    pub fn frame_support(&self) -> Result<(), String> {
        if self.ensemble.is_some() {
            return Err("an ensemble takes tensors only".into());
        }
        let [input] = self.inputs.as_slice() else {
            return Err(format!(
                "the model has {} inputs; frames feed a single image input",
                self.inputs.len()
            ));
        };
        if !input.shape.is_empty() && input.shape.len() != 4 {
            return Err(format!(
                "input '{}' has shape {:?}; frames feed a 4-dimensional image input",
                input.name, input.shape
            ));
        }
        if tensor_type_of(&input.dtype).is_none() {
            return Err(format!(
                "input '{}' has element type {}",
                input.name, input.dtype
            ));
        }
        if self.instances.is_empty() {
            return Err("the model has no instances".into());
        }
        if let Some(i) = self.instances.iter().find(|i| {
            i.kind != InstanceKind::Gpu
                || !matches!(
                    i.provider,
                    ExecutionProvider::Cuda | ExecutionProvider::TensorRt
                )
        }) {
            return Err(format!(
                "instance {} ({}) runs on the {} provider; GPU pre-processing needs KIND_GPU \
                 instances on the CUDA or TensorRT provider",
                i.name,
                i.kind.as_str(),
                i.provider
            ));
        }
        let Some(frames) = &self.frames else {
            return Err("the runtime was made without frame pre-processors".into());
        };
        frames.available()?;
        if let Some(why) = lock(&self.shared.frames_broken).clone() {
            return Err(why);
        }
        Ok(())
    }

    /// A snapshot of the metrics.
    pub fn stats(&self) -> ModelStats {
        if let Some(ensemble) = &self.ensemble {
            return ensemble.stats();
        }
        let pending = lock(&self.shared.queue).len();
        let reordered = lock(&self.shared.sequencer).reordered;
        let st = lock(&self.shared.stats);
        ModelStats {
            model: self.shared.model.clone(),
            version: self.shared.version,
            requests: st.requests,
            failures: st.failures,
            pending,
            executions: st.executions,
            batch_sizes: st.batch_sizes.clone(),
            batch_compute: st.batch_compute.clone(),
            queue_time: st.queue_time.clone(),
            compute_time: st.compute_time.clone(),
            reordered,
            instances: st
                .instances
                .iter()
                .map(|l| InstanceStats {
                    name: l.name.clone(),
                    kind: l.kind,
                    provider: l.provider,
                    executions: l.executions,
                    intervals: l.intervals.iter().copied().collect(),
                })
                .collect(),
        }
    }

    /// Runs `request` and returns what `f` makes of its outputs. Blocks until the response.
    ///
    /// `f` runs on an instance's thread with the outputs of this request only, in the model's
    /// output order: with `max_batch_size > 0` each has a leading batch dimension of 1 and borrows
    /// its slice of the batch output; with `max_batch_size: 0` the outputs are as the model made them.
    pub fn infer<R, F>(&self, request: InferRequest, f: F) -> Result<R, EngineError>
    where
        R: Send + 'static,
        F: FnOnce(&[TensorView]) -> R + Send + 'static,
    {
        self.infer_async(request, f)?.wait()
    }

    /// Queues `request` and returns at once; the response comes through the returned handle.
    /// Errors in the request itself are returned here.
    pub fn infer_async<R, F>(
        &self,
        request: InferRequest,
        f: F,
    ) -> Result<InferResponse<R>, EngineError>
    where
        R: Send + 'static,
        F: FnOnce(&[TensorView]) -> R + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let respond: Responder = Box::new(move |result| {
            let _ = tx.send(result.map(f));
        });
        self.submit(request, respond)?;
        Ok(InferResponse {
            rx,
            model: self.shared.model.clone(),
            version: self.shared.version,
        })
    }

    /// Queues `request`; `respond` is called once, on a worker thread, with views of its outputs
    /// or the error, for callers that wait their own way (an async server sends them on). It must
    /// not block or call `infer` on this runtime. Errors in the request itself are returned here
    /// and `respond` is dropped uncalled.
    pub fn infer_with<F>(&self, request: InferRequest, respond: F) -> Result<(), EngineError>
    where
        F: for<'a> FnOnce(Result<&[TensorView<'a>], EngineError>) + Send + 'static,
    {
        self.submit(request, Box::new(respond))
    }

    /// Whether the model has the decoupled transaction policy: its requests go through
    /// [`ModelRuntime::infer_decoupled`] (any number of responses each), not `infer`.
    pub fn decoupled(&self) -> bool {
        self.shared.decoupled
    }

    /// Queues `request` and returns at once; `sink` gets its responses, on whatever thread the
    /// model sends them from: for a decoupled model any number of them, then a final call; for any
    /// other model one response, final. Errors in the request itself are returned here (and `sink`
    /// is dropped uncalled).
    pub fn infer_decoupled(
        &self,
        request: InferRequest,
        mut sink: ResponseSink,
    ) -> Result<(), EngineError> {
        if !self.shared.decoupled {
            return self.submit(request, Box::new(move |result| sink(result, true)));
        }
        self.enqueue(request, Box::new(|_| {}), Some(sink))
    }

    /// Queues `request`; `respond` is called once with its outputs or error, on a worker thread.
    /// Errors in the request itself are returned here (and `respond` is dropped uncalled).
    pub(crate) fn submit(
        &self,
        request: InferRequest,
        respond: Responder,
    ) -> Result<(), EngineError> {
        if self.shared.decoupled {
            return Err(EngineError::BadRequest {
                model: self.shared.model.clone(),
                version: self.shared.version,
                message: "the model has the decoupled transaction policy (any number of responses \
                          per request): send its requests on a stream (gRPC ModelStreamInfer)"
                    .into(),
            });
        }
        self.enqueue(request, respond, None)
    }

    /// Queues `request` with its responder (and, decoupled, its sink).
    fn enqueue(
        &self,
        request: InferRequest,
        respond: Responder,
        sink: Option<ResponseSink>,
    ) -> Result<(), EngineError> {
        let (inputs, frame) = match request.frame {
            Some(frame) => (Vec::new(), Some(self.check_frame(frame, &request.inputs)?)),
            None => (self.check_request(request.inputs)?, None),
        };
        let level = self.shared.policy.level_index(request.priority);
        {
            let mut q = lock(&self.shared.queue);
            if q.shutdown {
                return Err(EngineError::ShuttingDown {
                    model: self.shared.model.clone(),
                    version: self.shared.version,
                });
            }
            if let Some(ensemble) = &self.ensemble {
                drop(q);
                ensemble.submit(inputs, request.priority, respond);
                return Ok(());
            }
            lock(&self.shared.stats).requests += 1;
            q.push(level, Instant::now(), inputs, frame, respond, sink);
        }
        self.shared.cv.notify_one();
        Ok(())
    }

    /// Checks a frame request: the runtime takes frames, the frame is whole, and the spec's tensor
    /// fits the model's input.
    fn check_frame(
        &self,
        frame: FrameInput,
        inputs: &[NamedTensor],
    ) -> Result<FrameInput, EngineError> {
        let bad = |message: String| EngineError::BadRequest {
            model: self.shared.model.clone(),
            version: self.shared.version,
            message,
        };
        if !inputs.is_empty() {
            return Err(bad(
                "a frame request carries the frame only (its tensors would be ignored)".into(),
            ));
        }
        self.frame_support()
            .map_err(|reason| EngineError::NoGpuPreprocessing {
                model: self.shared.model.clone(),
                version: self.shared.version,
                reason,
            })?;
        frame.check().map_err(bad)?;
        let input = &self.inputs[0];
        let batched = self.shared.policy.max_batch > 0;
        let full = frame.spec.batch_shape(1);
        let (shape, expected) = if batched {
            (&full[1..], input.shape.get(1..).unwrap_or(&[]))
        } else {
            (&full[..], &input.shape[..])
        };
        if !expected.is_empty()
            && (shape.len() != expected.len()
                || shape.iter().zip(expected).any(|(&d, &e)| e >= 0 && d != e))
        {
            return Err(bad(format!(
                "frame: the pre-processing makes {shape:?} for input '{}', the model takes \
                 {expected:?} (-1 = any size)",
                input.name
            )));
        }
        Ok(frame)
    }

    /// Checks names, shapes and sizes; returns the inputs in the model's order.
    fn check_request(&self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, EngineError> {
        let bad = |message: String| EngineError::BadRequest {
            model: self.shared.model.clone(),
            version: self.shared.version,
            message,
        };
        let batched = self.shared.policy.max_batch > 0;
        let mut slots: Vec<Option<NamedTensor>> = (0..self.inputs.len()).map(|_| None).collect();
        for (name, shape, data) in inputs {
            let Some(k) = self.inputs.iter().position(|i| i.name == name) else {
                let known: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                return Err(bad(format!(
                    "'{name}' is not an input of the model (inputs: {})",
                    known.join(", ")
                )));
            };
            if slots[k].is_some() {
                return Err(bad(format!("input '{name}' is given twice")));
            }
            let (given, takes) = (data.data_type(), self.inputs[k].dtype.as_str());
            let converted = given == DataType::Fp32 && INPUT_TYPES.contains(&takes);
            if given.element_name() != Some(takes) && !converted {
                return Err(bad(format!(
                    "input '{name}' has data type {given}; the model takes {}",
                    data_type_of_element(takes).map_or(takes.to_owned(), |t| t.to_string())
                )));
            }
            if shape.iter().any(|&d| d < 0) {
                return Err(bad(format!(
                    "input '{name}': shape {shape:?} has a negative dimension"
                )));
            }
            let elements = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize));
            if elements != Some(data.len()) {
                return Err(bad(format!(
                    "input '{name}': shape {shape:?} holds {} values but {} were given",
                    elements.map_or_else(|| "too many".to_owned(), |n| n.to_string()),
                    data.len()
                )));
            }
            let model_shape = &self.inputs[k].shape;
            if !model_shape.is_empty() {
                let expected = if batched {
                    &model_shape[1..]
                } else {
                    &model_shape[..]
                };
                let note = if batched {
                    format!(
                        " (max_batch_size {}: give one item's shape, without the batch dimension)",
                        self.shared.policy.max_batch
                    )
                } else {
                    String::new()
                };
                if shape.len() != expected.len()
                    || shape.iter().zip(expected).any(|(&d, &e)| e >= 0 && d != e)
                {
                    return Err(bad(format!(
                        "input '{name}': shape {shape:?} does not match the model's {expected:?} \
                         (-1 = any size){note}"
                    )));
                }
            }
            slots[k] = Some((name, shape, data));
        }
        slots
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                s.ok_or_else(|| bad(format!("input '{}' is missing", self.inputs[k].name)))
            })
            .collect()
    }

    /// Takes no new requests, runs the queued ones, then stops the instances. Called on drop.
    pub fn shutdown(&self) {
        lock(&self.shared.queue).shutdown = true;
        self.shared.cv.notify_all();
        let handles = std::mem::take(&mut *lock(&self.workers));
        let me = thread::current().id();
        let mut joined_all = true;
        for h in handles {
            if h.thread().id() == me {
                // Dropped from a response closure on one of our own instances: that instance
                // finishes the queue and ends by itself.
                joined_all = false;
            } else {
                let _ = h.join();
            }
        }
        if joined_all {
            let left = lock(&self.shared.queue).drain();
            for p in left {
                let e = EngineError::ShuttingDown {
                    model: self.shared.model.clone(),
                    version: self.shared.version,
                };
                self.shared.deliver(p.seq, p.respond, Err(e));
            }
        }
    }
}

impl Drop for ModelRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Each request's inputs as the sessions that take lists of requests borrow them.
fn request_inputs(items: &[Vec<NamedTensor>]) -> Vec<crate::RequestInputs<'_>> {
    items
        .iter()
        .map(|item| {
            item.iter()
                .map(|(name, shape, data)| (name.as_str(), shape.as_slice(), data.as_slice()))
                .collect()
        })
        .collect()
}

/// Calls a responder; a panic in the caller's closure loses only that response.
fn call(respond: Responder, result: Result<&[TensorView<'_>], EngineError>) {
    let _ = catch_unwind(AssertUnwindSafe(move || respond(result)));
}

impl Shared {
    fn execution_error(&self, message: String) -> EngineError {
        EngineError::Execution {
            model: self.model.clone(),
            version: self.version,
            message,
        }
    }

    /// Waits for the next batch; `None` when shut down and the queue is empty.
    fn next_batch(&self) -> Option<Vec<Pending>> {
        let mut q = lock(&self.queue);
        loop {
            let now = Instant::now();
            match self.policy.decide(&q, now) {
                Decision::Idle => {
                    if q.shutdown {
                        return None;
                    }
                    q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                Decision::Run(n) => {
                    let batch = q.take(n);
                    if !q.is_empty() {
                        self.cv.notify_one();
                    }
                    return Some(batch);
                }
                Decision::WaitUntil(t) => {
                    q = match self.cv.wait_timeout(q, t.saturating_duration_since(now)) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    };
                }
            }
        }
    }

    /// Pre-processes a batch of frames (all compatible: the batcher made sure) with one call of the
    /// instance's pre-processor; the batch tensor stays in device memory.
    fn preprocess_frames(
        &self,
        instance: usize,
        session: &dyn InferSession,
        stage: &mut FrameStage,
        frames: &[FrameInput],
    ) -> Result<(String, super::DeviceBatch), EngineError> {
        let instance_name = || {
            lock(&self.stats)
                .instances
                .get(instance)
                .map_or_else(|| instance.to_string(), |l| l.name.clone())
        };
        let name = session
            .inputs()
            .first()
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let pre = match stage.for_frame(&frames[0]) {
            Ok(p) => p,
            Err(why) => {
                let reason = format!("instance {}: {why}", instance_name());
                warn_once(
                    &format!("frames:{}:{}:{why}", self.model, self.version),
                    &format!(
                        "model '{}' version {}: {reason}; frame requests are refused from now on",
                        self.model, self.version
                    ),
                );
                lock(&self.frames_broken).get_or_insert(reason.clone());
                return Err(EngineError::NoGpuPreprocessing {
                    model: self.model.clone(),
                    version: self.version,
                    reason,
                });
            }
        };
        let data: Vec<&[u8]> = frames.iter().map(|f| f.data.as_slice()).collect();
        let batch = pre.run(&frames[0].layout, &data).map_err(|e| {
            self.execution_error(format!(
                "instance {}: GPU pre-processing of {} frame(s) failed: {e}",
                instance_name(),
                frames.len()
            ))
        })?;
        let n = frames.len() as i64;
        if self.policy.max_batch > 0 && batch.shape[0] != n {
            return Err(self.execution_error(format!(
                "instance {}: the pre-processor made a batch of shape {:?} for {n} frame(s)",
                instance_name(),
                batch.shape
            )));
        }
        Ok((name, batch))
    }

    /// Runs one batch on `session` and answers its requests.
    fn execute(
        self: &Arc<Self>,
        instance: usize,
        session: &mut dyn InferSession,
        stage: &mut FrameStage,
        batch: Vec<Pending>,
    ) {
        let start = Instant::now();
        let n = batch.len();
        if n == 0 {
            return;
        }
        {
            let mut st = lock(&self.stats);
            for p in &batch {
                st.queue_time
                    .record(start.saturating_duration_since(p.enqueued));
            }
        }
        if self.decoupled {
            self.execute_decoupled(instance, session, batch, start);
            return;
        }
        let mut responders: Vec<Option<(u64, Responder)>> = Vec::with_capacity(n);
        let mut items = Vec::with_capacity(n);
        let mut frames = Vec::new();
        for p in batch {
            responders.push(Some((p.seq, p.respond)));
            items.push(p.inputs);
            frames.extend(p.frame);
        }
        if !frames.is_empty() && frames.len() != n {
            // The batcher never mixes frames and tensors; answer rather than guess.
            let e = self.execution_error("a batch mixed frames and tensors".into());
            for (seq, respond) in responders.into_iter().flatten() {
                self.deliver(seq, respond, Err(e.clone()));
            }
            return;
        }
        let device = if frames.is_empty() {
            None
        } else {
            match self.preprocess_frames(instance, session, stage, &frames) {
                Ok(d) => Some(d),
                Err(e) => {
                    lock(&self.stats).record_execution(instance, n, start, Instant::now());
                    for (seq, respond) in responders.into_iter().flatten() {
                        self.deliver(seq, respond, Err(e.clone()));
                    }
                    return;
                }
            }
        };
        if session.takes_requests() {
            self.execute_requests(instance, session, responders, &items, start);
            return;
        }
        let batched = self.policy.max_batch > 0;
        let first = &items[0];
        let mut shapes: Vec<Vec<i64>> = Vec::with_capacity(first.len());
        let mut data: Vec<Cow<'_, TensorData>> = Vec::with_capacity(first.len());
        for (k, (_, item_shape, item_data)) in first.iter().enumerate() {
            shapes.push(if batched {
                std::iter::once(n as i64)
                    .chain(item_shape.iter().copied())
                    .collect()
            } else {
                item_shape.clone()
            });
            data.push(if n == 1 {
                Cow::Borrowed(item_data)
            } else {
                // The batcher only batches requests whose inputs have the same element types.
                let mut all = TensorData::with_capacity(item_data.data_type(), item_data.len() * n)
                    .unwrap_or_else(|| item_data.clone());
                for item in &items {
                    all.extend_from(item[k].2.as_slice());
                }
                Cow::Owned(all)
            });
        }
        let run_inputs: Vec<(&str, &[i64], TensorSlice<'_>)> = first
            .iter()
            .zip(&shapes)
            .zip(&data)
            .map(|((input, shape), d)| (input.0.as_str(), shape.as_slice(), d.as_slice()))
            .collect();
        let stacked = Instant::now();

        let mut recorded = false;
        let mut answered_at = None;
        let mut failure: Option<EngineError> = None;
        let mut answer = |views: &[TensorView<'_>]| {
            let answered = Instant::now();
            {
                let mut stats = lock(&self.stats);
                stats.record_execution(instance, n, start, answered);
                stats.record_phases(n, stacked - start, answered - stacked);
            }
            recorded = true;
            answered_at = Some(answered);
            if batched && let Some(v) = views.iter().find(|v| v.shape.first() != Some(&n)) {
                failure = Some(self.execution_error(format!(
                    "output '{}' has shape {:?}; a leading batch dimension of {n} was \
                         expected (max_batch_size {})",
                    v.name, v.shape, self.policy.max_batch
                )));
                return;
            }
            if n == 1 {
                if let Some((seq, respond)) = responders[0].take() {
                    self.deliver(seq, respond, Ok(views));
                }
                return;
            }
            let item_shapes: Vec<Vec<usize>> = views
                .iter()
                .map(|v| {
                    let mut s = v.shape.to_vec();
                    s[0] = 1;
                    s
                })
                .collect();
            for (i, slot) in responders.iter_mut().enumerate() {
                let item: Vec<TensorView<'_>> = views
                    .iter()
                    .zip(&item_shapes)
                    .map(|(v, s)| v.split(i, n, s))
                    .collect();
                if let Some((seq, respond)) = slot.take() {
                    self.deliver(seq, respond, Ok(&item));
                }
            }
        };
        let run = catch_unwind(AssertUnwindSafe(|| match &device {
            None => session.run(&run_inputs, &mut answer),
            Some((name, batch)) => session.run_device(
                &DeviceInput {
                    name,
                    address: batch.address,
                    shape: batch.shape,
                    dtype: batch.dtype,
                    device_id: stage.device_id(),
                },
                &mut answer,
            ),
        }));
        if let Some(answered) = answered_at {
            lock(&self.stats).record_output(n, answered.elapsed());
        }
        if !recorded {
            lock(&self.stats).record_execution(instance, n, start, Instant::now());
        }
        if responders.iter().all(Option::is_none) {
            return;
        }
        let no_outputs =
            failure.unwrap_or_else(|| self.execution_error("the session gave no outputs".into()));
        self.fail_unanswered(run, no_outputs, responders);
    }

    /// Fails the requests a run left unanswered: with the run's error, the session's panic, or
    /// `no_answer` when the run itself succeeded.
    fn fail_unanswered(
        &self,
        run: std::thread::Result<Result<(), RuntimeError>>,
        no_answer: EngineError,
        responders: Vec<Option<(u64, Responder)>>,
    ) {
        let error = match run {
            Ok(Ok(())) => no_answer,
            Ok(Err(source)) => EngineError::Run {
                model: self.model.clone(),
                version: self.version,
                source,
            },
            Err(_) => self.execution_error("the session panicked while running a batch".into()),
        };
        for (seq, respond) in responders.into_iter().flatten() {
            self.deliver(seq, respond, Err(error.clone()));
        }
    }

    /// Runs a batch on a session that takes it as a list of requests (the Python backend): each
    /// request gets its own outputs or its own error.
    fn execute_requests(
        &self,
        instance: usize,
        session: &mut dyn InferSession,
        mut responders: Vec<Option<(u64, Responder)>>,
        items: &[Vec<NamedTensor>],
        start: Instant,
    ) {
        let n = items.len();
        let requests = request_inputs(items);
        let mut recorded = false;
        let mut answer = |i: usize, result: crate::RequestAnswer<'_, '_>| {
            if !recorded {
                lock(&self.stats).record_execution(instance, n, start, Instant::now());
                recorded = true;
            }
            let Some((seq, respond)) = responders.get_mut(i).and_then(Option::take) else {
                return;
            };
            let result = result.map_err(|source| EngineError::Run {
                model: self.model.clone(),
                version: self.version,
                source,
            });
            self.deliver(seq, respond, result);
        };
        let run = catch_unwind(AssertUnwindSafe(|| {
            session.run_requests(&requests, &mut answer)
        }));
        if !recorded {
            lock(&self.stats).record_execution(instance, n, start, Instant::now());
        }
        let no_answer = self.execution_error("the model gave no response to this request".into());
        self.fail_unanswered(run, no_answer, responders);
    }

    /// Starts a batch of decoupled requests: the session sends their responses to their sinks
    /// (failures counted once per request, on the final error), while this instance goes on.
    fn execute_decoupled(
        self: &Arc<Self>,
        instance: usize,
        session: &mut dyn InferSession,
        batch: Vec<Pending>,
        start: Instant,
    ) {
        let n = batch.len();
        let mut items = Vec::with_capacity(n);
        let mut sinks: Vec<crate::SessionSink> = Vec::with_capacity(n);
        for p in batch {
            items.push(p.inputs);
            let Some(mut sink) = p.sink else {
                let e = self.execution_error("a decoupled request without a response sink".into());
                call(p.respond, Err(e));
                continue;
            };
            let shared = Arc::downgrade(self);
            let (model, version) = (self.model.clone(), self.version);
            sinks.push(Box::new(move |result, last| {
                let result = result.map_err(|source| EngineError::Run {
                    model: model.clone(),
                    version,
                    source,
                });
                if result.is_err()
                    && last
                    && let Some(shared) = shared.upgrade()
                {
                    lock(&shared.stats).failures += 1;
                }
                let _ = catch_unwind(AssertUnwindSafe(|| sink(result, last)));
            }));
        }
        let requests = request_inputs(&items);
        let run = catch_unwind(AssertUnwindSafe(|| {
            session.run_decoupled(&requests, sinks);
        }));
        lock(&self.stats).record_execution(instance, n, start, Instant::now());
        if run.is_err() {
            // The sinks went with the panicking session call; their requests' callers see them
            // dropped (a stream ends).
            lock(&self.stats).failures += n as u64;
        }
    }

    /// Answers request `seq`, in order of arrival under `preserve_ordering`.
    fn deliver(
        &self,
        seq: u64,
        respond: Responder,
        result: Result<&[TensorView<'_>], EngineError>,
    ) {
        if result.is_err() {
            lock(&self.stats).failures += 1;
        }
        if !self.policy.preserve_ordering {
            call(respond, result);
            return;
        }
        {
            let mut sq = lock(&self.sequencer);
            if seq != sq.next {
                let outcome = result.map(|views| {
                    views
                        .iter()
                        .map(|v| OwnedTensor {
                            name: v.name.to_owned(),
                            shape: v.shape.to_vec(),
                            data: v.data.to_vec(),
                            raw: v.raw.to_owned_data(),
                        })
                        .collect()
                });
                sq.parked.insert(seq, Parked { respond, outcome });
                sq.reordered += 1;
                return;
            }
        }
        call(respond, result);
        self.release_from(seq + 1);
    }

    /// Releases the parked responses from `next` on, as long as they follow without a gap.
    fn release_from(&self, mut next: u64) {
        loop {
            let parked = {
                let mut sq = lock(&self.sequencer);
                sq.next = next;
                match sq.parked.remove(&next) {
                    Some(p) => p,
                    None => return,
                }
            };
            match parked.outcome {
                Ok(tensors) => {
                    let views: Vec<TensorView<'_>> = tensors
                        .iter()
                        .map(|t| TensorView {
                            name: &t.name,
                            shape: &t.shape,
                            data: &t.data,
                            raw: t.raw.as_slice(),
                        })
                        .collect();
                    call(parked.respond, Ok(&views));
                }
                Err(e) => call(parked.respond, Err(e)),
            }
            next += 1;
        }
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use vigil_modelrepo::InstanceGroup;

    fn config(groups: Vec<InstanceGroup>) -> ModelConfig {
        let mut c = ModelConfig::parse("name: \"m\"\nbackend: \"onnxruntime\"\n", Path::new("m"))
            .unwrap_or_else(|e| panic!("{e}"));
        c.instance_group = groups;
        c
    }

    fn gpu_group(count: i32, gpus: Vec<i32>) -> InstanceGroup {
        InstanceGroup {
            name: "g".into(),
            kind: InstanceKind::Gpu,
            count,
            gpus,
        }
    }

    #[test]
    fn gpu_groups_place_count_instances_on_each_listed_gpu() {
        let c = config(vec![gpu_group(2, vec![0, 1])]);
        let plans = plan_instances("m", 1, &c, Some(2)).unwrap();
        let placed: Vec<(String, i32)> = plans
            .iter()
            .map(|p| (p.name.clone(), p.device_id))
            .collect();
        assert_eq!(
            placed,
            [("g_0", 0), ("g_1", 0), ("g_2", 1), ("g_3", 1)]
                .map(|(n, d)| (n.to_owned(), d))
                .to_vec()
        );
        // Unknown GPU count (no driver, or no CUDA provider): no check, the provider falls back.
        assert_eq!(plan_instances("m", 1, &c, None).unwrap().len(), 4);
    }

    #[test]
    fn a_gpu_that_is_not_present_is_a_configuration_error() {
        let c = config(vec![gpu_group(1, vec![0, 3])]);
        let e = plan_instances("m", 1, &c, Some(1))
            .err()
            .expect("GPU 3 refused")
            .to_string();
        assert!(
            e.contains("model 'm'")
                && e.contains("instance group g specifies GPU 3")
                && e.contains("1 GPU: 0..0"),
            "{e}"
        );
        let c = config(vec![gpu_group(1, vec![-1])]);
        assert!(
            plan_instances("m", 1, &c, Some(2)).is_err(),
            "GPU -1 refused"
        );
    }
}
