//! Triton's Python backend (`backend: "python"`, a `model.py` with `TritonPythonModel`): each model
//! instance is a Python process of its own, as Triton's stub is, so instances run in parallel without
//! sharing a GIL, and a crash in the user's code fails that execution's requests instead of the
//! engine; the next execution starts the process again (counted and logged).
//!
//! The process runs `python/vigil_python_stub.py` with Vigil's own `triton_python_backend_utils`
//! beside it (both written to a folder under the temporary directory on first use). Messages go over
//! a Unix socket (a little-endian u32 length and a JSON object, see the stub); tensors cross through
//! two shared-memory files (under `/dev/shm` where it exists): the engine writes a batch's inputs to
//! the input file, which the model reads as numpy views without a copy, and the process writes the
//! outputs to the output file, which the engine maps. `execute` gets every request of a batch, each
//! with a batch dimension of 1 where the model batches (`max_batch_size > 0`).
//!
//! The interpreter is, in order: the model's `EXECUTION_ENV_PATH` parameter (as Triton documents
//! it: a `conda-pack`ed `.tar.gz`, unpacked once next to it, or an environment folder; `bin/python3`
//! inside; `$$TRITON_MODEL_DIRECTORY` is the model folder), `$VIGIL_PYTHON_BACKEND_INTERPRETER`, else
//! `python3` on `PATH`. It needs numpy.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapMut, MmapOptions};
use serde_json::{Value, json};
use vigil_modelrepo::{DataType, LoadedModel};

use crate::runtime::{IoInfo, RuntimeError, SessionOptions};
use crate::tensor::{TensorData, TensorSlice, TensorView};
use crate::{InferSession, RequestAnswer, RequestInputs, SessionFactory, SessionSink, lock};

/// The stub each instance's process runs.
const STUB: &str = include_str!("../python/vigil_python_stub.py");
/// Vigil's `triton_python_backend_utils`, imported by the models as `pb_utils`.
const UTILS: &str = include_str!("../python/triton_python_backend_utils.py");
/// Environment variable naming the interpreter when the model has no `EXECUTION_ENV_PATH`.
pub const INTERPRETER_ENV: &str = "VIGIL_PYTHON_BACKEND_INTERPRETER";
/// Triton's parameter naming a model's Python environment.
pub const EXECUTION_ENV_PARAMETER: &str = "EXECUTION_ENV_PATH";
/// How long a started process has to connect back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `finalize` may take when the model is unloaded.
const FINALIZE_TIMEOUT: Duration = Duration::from_secs(10);
/// Tensors start at multiples of this in shared memory.
const ALIGN: usize = 64;
/// The input file's first size (it grows to the largest batch).
const INITIAL_SHM: usize = 1 << 20;

/// Whether `backend` is Triton's Python backend.
pub fn is_python_backend(backend: &str) -> bool {
    backend == "python"
}

/// The sessions of a Python-backend model: one process per instance.
pub fn python_session_factory(model: &LoadedModel) -> SessionFactory {
    let spec = ModelSpec {
        name: model.name.clone(),
        version: model.version,
        dir: model.dir.clone(),
        config_json: model.config.to_json(),
        inputs: io_infos(&model.config.input, model.config.max_batch_size > 0),
        outputs: io_infos(&model.config.output, model.config.max_batch_size > 0),
        batched: model.config.max_batch_size > 0,
        decoupled: model.config.decoupled(),
        env_path: model
            .config
            .parameters
            .get(EXECUTION_ENV_PARAMETER)
            .map(|p| p.replace("$$TRITON_MODEL_DIRECTORY", &model.dir.to_string_lossy())),
    };
    std::sync::Arc::new(move |path: &Path, options: SessionOptions| {
        PythonSession::start(spec.clone(), path, &options)
            .map(|s| Box::new(s) as Box<dyn InferSession>)
    })
}

/// What every instance of a model needs to start its process.
#[derive(Debug, Clone)]
struct ModelSpec {
    name: String,
    version: u64,
    dir: PathBuf,
    config_json: String,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    batched: bool,
    /// `model_transaction_policy { decoupled: true }`.
    decoupled: bool,
    env_path: Option<String>,
}

/// The configuration's tensors as a session describes them (a leading `-1` where the model
/// batches, as ONNX models have).
fn io_infos(tensors: &[vigil_modelrepo::TensorConfig], batched: bool) -> Vec<IoInfo> {
    tensors
        .iter()
        .map(|t| IoInfo {
            name: t.name.clone(),
            dtype: t.data_type.element_name().unwrap_or("").to_owned(),
            shape: batched
                .then_some(-1)
                .into_iter()
                .chain(t.dims.iter().copied())
                .collect(),
        })
        .collect()
}

/// Triton's wire name of a data type (`FP32`, `BYTES`).
fn wire_name(t: DataType) -> &'static str {
    match t {
        DataType::String => "BYTES",
        t => t.as_str().trim_start_matches("TYPE_"),
    }
}

fn data_type_of_wire(name: &str) -> Option<DataType> {
    if name == "BYTES" {
        return Some(DataType::String);
    }
    DataType::from_name(&format!("TYPE_{name}")).filter(|t| *t != DataType::Invalid)
}

/// One instance: its process (started again after it dies) and what starting it takes.
pub struct PythonSession {
    spec: ModelSpec,
    model_file: PathBuf,
    instance: String,
    device_id: i32,
    process: Option<Process>,
    /// Times the process was started again after it died.
    restarts: u64,
    /// The models its business-logic requests called, kept loaded while it lives.
    called: BlsModels,
}

/// Models business-logic requests called, by name and version.
type BlsModels =
    std::collections::HashMap<(String, Option<u64>), std::sync::Arc<crate::ModelHandle>>;

/// Decoupled requests waiting for their final response, by the id the child knows them by.
type Waiting = Arc<Mutex<HashMap<u64, SessionSink>>>;

/// A running instance process and its shared memory.
///
/// Its socket is written by the instance's thread only (messages, BLS answers) and read by a
/// reader thread of its own, which hands decoupled responses to their requests' sinks and every
/// other message to the instance's thread (`replies`). Lock order: `waiting` is taken alone, never
/// across a sink call.
struct Process {
    child: Child,
    sock: UnixStream,
    replies: mpsc::Receiver<Result<Value, String>>,
    waiting: Waiting,
    next_id: u64,
    dir: PathBuf,
    /// A batch's inputs (the engine writes).
    input: EngineShm,
    /// The responses' outputs (the child writes).
    output: ChildShm,
    /// Business-logic scripting: the request's inputs (the child writes) and the answer's outputs
    /// (the engine writes).
    bls_in: ChildShm,
    bls_out: EngineShm,
}

/// A shared-memory file the engine writes and grows; the child maps it to read.
struct EngineShm {
    file: File,
    map: MmapMut,
}

impl EngineShm {
    fn create(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|f| f.set_len(INITIAL_SHM as u64).map(|()| f))
            .map_err(|e| format!("shared memory {}: {e}", path.display()))?;
        // SAFETY: the file was just made by this process in a folder only it and its child use; the
        // child only reads it, and the engine writes it only while the child waits for a message.
        let map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|e| format!("shared memory {}: {e}", path.display()))?;
        Ok(EngineShm { file, map })
    }

    /// Grows the file to at least `size` bytes.
    fn reserve(&mut self, size: usize) -> Result<(), String> {
        if size <= self.map.len() {
            return Ok(());
        }
        let new = size.max(self.map.len() * 2);
        self.file.set_len(new as u64).map_err(|e| e.to_string())?;
        // SAFETY: as in `create`; the old mapping is dropped when replaced and nothing borrows it.
        self.map = unsafe { MmapMut::map_mut(&self.file) }.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A shared-memory file the child makes, writes and grows; the engine maps it to read.
struct ChildShm {
    path: PathBuf,
    file: Option<File>,
    map: Option<Mmap>,
}

impl ChildShm {
    fn new(path: PathBuf) -> Self {
        ChildShm {
            path,
            file: None,
            map: None,
        }
    }

    /// Opens the file (once the child has made it).
    fn open(&mut self) -> Result<(), String> {
        let file = File::open(&self.path)
            .map_err(|e| format!("shared memory {}: {e}", self.path.display()))?;
        self.file = Some(file);
        Ok(())
    }

    /// The first `size` bytes, mapped again when the file has grown past the mapping.
    fn bytes(&mut self, size: usize) -> Result<&[u8], String> {
        if size > 0 && self.map.as_ref().is_none_or(|m| m.len() < size) {
            let file = self.file.as_ref().ok_or("the shared memory is not open")?;
            // SAFETY: the child writes this file only while the engine waits for its message; the
            // engine reads it after the message and before answering, and never past `size`, which
            // the child set with ftruncate before sending.
            let map =
                unsafe { MmapOptions::new().len(size).map(file) }.map_err(|e| e.to_string())?;
            self.map = Some(map);
        }
        Ok(self
            .map
            .as_deref()
            .map_or(&[][..], |m| &m[..size.min(m.len())]))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn model_error(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Model {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl PythonSession {
    fn start(
        spec: ModelSpec,
        model_file: &Path,
        options: &SessionOptions,
    ) -> Result<Self, RuntimeError> {
        let instance = if options.instance_name.is_empty() {
            format!("{}_0", spec.name)
        } else {
            options.instance_name.clone()
        };
        let mut session = PythonSession {
            spec,
            model_file: model_file.to_owned(),
            instance,
            device_id: options.device_id,
            process: None,
            restarts: 0,
            called: BlsModels::new(),
        };
        session.process = Some(session.spawn()?);
        Ok(session)
    }

    /// The interpreter (see the module documentation).
    fn interpreter(&self) -> Result<PathBuf, RuntimeError> {
        interpreter(self.spec.env_path.as_deref())
            .map_err(|reason| model_error(&self.model_file, reason))
    }

    /// Starts the process, waits for it to connect and initialises the model.
    fn spawn(&self) -> Result<Process, RuntimeError> {
        let err = |reason: String| model_error(&self.model_file, reason);
        let scripts =
            scripts_dir().map_err(|e| err(format!("cannot write the Python stub: {e}")))?;
        let dir =
            private_dir().map_err(|e| err(format!("cannot make the shared-memory folder: {e}")))?;
        let input_path = dir.join("in");
        let output_path = dir.join("out");
        let bls_in_path = dir.join("bls-in");
        let bls_out_path = dir.join("bls-out");
        let sock_path = dir.join("sock");
        let cleanup = |e: RuntimeError| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let input = EngineShm::create(&input_path).map_err(|e| cleanup(err(e)))?;
        let bls_out = EngineShm::create(&bls_out_path).map_err(|e| cleanup(err(e)))?;
        let listener = UnixListener::bind(&sock_path)
            .map_err(|e| cleanup(err(format!("socket {}: {e}", sock_path.display()))))?;
        let python = self.interpreter().map_err(cleanup)?;
        let mut child = Command::new(&python)
            .arg(scripts.join("vigil_python_stub.py"))
            .arg(&sock_path)
            .arg(&input_path)
            .arg(&output_path)
            .arg(&bls_in_path)
            .arg(&bls_out_path)
            .stdin(Stdio::null())
            // The model's prints go to the engine's standard error, as Triton's go to its log.
            .stdout(std::io::stderr())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                cleanup(err(format!(
                    "cannot start the Python interpreter {}: {e}",
                    python.display()
                )))
            })?;
        let sock = match accept(&listener, &mut child) {
            Ok(sock) => sock,
            Err(reason) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(cleanup(err(format!(
                    "the Python process ({}) did not start: {reason}",
                    python.display()
                ))));
            }
        };
        let waiting = Waiting::default();
        let replies = match sock
            .try_clone()
            .map_err(|e| e.to_string())
            .and_then(|read| {
                start_reader(
                    read,
                    waiting.clone(),
                    dir.clone(),
                    self.spec.outputs.clone(),
                    self.model_file.clone(),
                )
            }) {
            Ok(replies) => replies,
            Err(reason) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(cleanup(err(format!(
                    "cannot read the Python process's socket: {reason}"
                ))));
            }
        };
        // From here on, dropping the process kills the child and removes the folder.
        let mut process = Process {
            child,
            sock,
            replies,
            waiting,
            next_id: 0,
            dir,
            input,
            output: ChildShm::new(output_path),
            bls_in: ChildShm::new(bls_in_path),
            bls_out,
        };
        let args = json!({
            "model_config": self.spec.config_json,
            "model_instance_kind": "CPU",
            "model_instance_name": self.instance,
            "model_instance_device_id": self.device_id.to_string(),
            "model_repository": self.spec.dir.to_string_lossy(),
            "model_version": self.spec.version.to_string(),
            "model_name": self.spec.name,
        });
        let reply = process
            .call(&json!({"op": "init", "model_file": self.model_file, "args": args}))
            .map_err(|reason| err(format!("initialising: {reason}")))?;
        if reply["ok"] != true {
            return Err(err(reply["error"]
                .as_str()
                .unwrap_or("initialize failed")
                .to_owned()));
        }
        // Both sides hold the files open now: their names go, so that nothing is left in shared
        // memory whichever process dies.
        process.output.open().map_err(&err)?;
        process.bls_in.open().map_err(&err)?;
        if self.spec.decoupled {
            // The folder stays for the files of decoupled responses (removed with the process).
            for name in ["in", "out", "bls-in", "bls-out", "sock"] {
                let _ = std::fs::remove_file(process.dir.join(name));
            }
        } else {
            let _ = std::fs::remove_dir_all(&process.dir);
        }
        Ok(process)
    }

    /// Writes the requests' inputs to shared memory and returns their descriptions.
    fn write_inputs(
        &mut self,
        requests: &[RequestInputs<'_>],
        ids: &[u64],
    ) -> Result<Value, String> {
        let Some(process) = self.process.as_mut() else {
            return Err("no process".into());
        };
        let mut layout = Vec::with_capacity(requests.len());
        let mut size = 0usize;
        for request in requests {
            let mut tensors = Vec::with_capacity(request.len());
            for (name, shape, data) in request {
                let mut full: Vec<i64> = Vec::with_capacity(shape.len() + 1);
                if self.spec.batched {
                    full.push(1);
                }
                full.extend_from_slice(shape);
                tensors.push(place(name, json!(full), *data, &mut size));
            }
            layout.push(tensors);
        }
        process.input.reserve(size)?;
        let mut offset = 0usize;
        for request in requests {
            for (_, _, data) in request {
                let bytes = encoded_len(*data);
                encode(*data, &mut process.input.map[offset..offset + bytes]);
                offset = (offset + bytes).div_ceil(ALIGN) * ALIGN;
            }
        }
        let outputs: Vec<&str> = self.spec.outputs.iter().map(|o| o.name.as_str()).collect();
        let requests: Vec<Value> = layout
            .into_iter()
            .enumerate()
            .map(|(i, inputs)| match ids.get(i) {
                Some(id) => json!({"inputs": inputs, "outputs": outputs, "id": id}),
                None => json!({"inputs": inputs, "outputs": outputs}),
            })
            .collect();
        Ok(json!({
            "op": "execute",
            "input_size": process.input.map.len(),
            "requests": requests,
            "decoupled": !ids.is_empty(),
        }))
    }

    /// The process is gone: says so (with its exit status) and forgets it; the next execution
    /// starts it again.
    fn lost(&mut self, reason: &str) -> RuntimeError {
        let status = self
            .process
            .as_mut()
            .and_then(|p| wait_briefly(&mut p.child));
        self.process = None;
        let what = status.map_or_else(|| "stopped answering".to_owned(), describe_exit);
        eprintln!(
            "vigil: model '{}' version {}: the Python process of instance {} {what} ({reason}); \
             its requests failed, it is started again for the next ones",
            self.spec.name, self.spec.version, self.instance
        );
        model_error(
            &self.model_file,
            format!(
                "the Python process of instance {} {what} while executing",
                self.instance
            ),
        )
    }
}

impl InferSession for PythonSession {
    fn inputs(&self) -> &[IoInfo] {
        &self.spec.inputs
    }

    fn outputs(&self) -> &[IoInfo] {
        &self.spec.outputs
    }

    fn run(
        &mut self,
        inputs: &[(&str, &[i64], TensorSlice<'_>)],
        f: &mut dyn FnMut(&[TensorView<'_>]),
    ) -> Result<(), RuntimeError> {
        // One request of the whole batch (used only by callers that bypass the batcher).
        let request: RequestInputs<'_> = inputs.to_vec();
        let mut result = Err(model_error(&self.model_file, "no response"));
        self.run_requests(std::slice::from_ref(&request), &mut |_, r| {
            result = r.map(&mut *f);
        })?;
        result
    }

    fn takes_requests(&self) -> bool {
        true
    }

    fn run_requests(
        &mut self,
        requests: &[RequestInputs<'_>],
        f: &mut dyn FnMut(usize, RequestAnswer<'_, '_>),
    ) -> Result<(), RuntimeError> {
        self.ensure_process()?;
        let message = self
            .write_inputs(requests, &[])
            .map_err(|reason| model_error(&self.model_file, format!("shared memory: {reason}")))?;
        let reply = self.execute(&message)?;
        if reply["ok"] != true {
            let reason = reply["error"].as_str().unwrap_or("execute failed");
            return Err(RuntimeError::Run {
                path: self.model_file.clone(),
                reason: reason.to_owned(),
            });
        }
        let Some(process) = self.process.as_mut() else {
            return Err(model_error(&self.model_file, "no process"));
        };
        let size = reply["output_size"].as_u64().unwrap_or(0) as usize;
        let out = process
            .output
            .bytes(size)
            .map_err(|reason| model_error(&self.model_file, format!("shared memory: {reason}")))?;
        let responses = reply["responses"].as_array().cloned().unwrap_or_default();
        for (i, response) in responses.iter().enumerate().take(requests.len()) {
            if let Some(message) = response["error"].as_str() {
                f(
                    i,
                    Err(RuntimeError::Run {
                        path: self.model_file.clone(),
                        reason: message.to_owned(),
                    }),
                );
                continue;
            }
            match read_outputs(response, out, &self.spec.outputs) {
                Ok(tensors) => {
                    let widened = crate::tensor::widen(&tensors);
                    f(i, Ok(&crate::tensor::views_of(&tensors, &widened)));
                }
                Err(reason) => f(
                    i,
                    Err(RuntimeError::Run {
                        path: self.model_file.clone(),
                        reason,
                    }),
                ),
            }
        }
        Ok(())
    }

    fn decoupled(&self) -> bool {
        self.spec.decoupled
    }

    fn run_decoupled(&mut self, requests: &[RequestInputs<'_>], sinks: Vec<SessionSink>) {
        let fail_all = |sinks: Vec<SessionSink>, e: &RuntimeError| {
            for mut sink in sinks {
                sink(Err(e.clone()), true);
            }
        };
        if let Err(e) = self.ensure_process() {
            return fail_all(sinks, &e);
        }
        let Some(process) = self.process.as_mut() else {
            return fail_all(sinks, &model_error(&self.model_file, "no process"));
        };
        let first = process.next_id;
        process.next_id += sinks.len() as u64;
        let ids: Vec<u64> = (first..process.next_id).collect();
        let message = match self.write_inputs(requests, &ids) {
            Ok(m) => m,
            Err(reason) => {
                let e = model_error(&self.model_file, format!("shared memory: {reason}"));
                return fail_all(sinks, &e);
            }
        };
        if let Some(process) = self.process.as_ref() {
            let mut waiting = lock(&process.waiting);
            waiting.extend(ids.iter().copied().zip(sinks));
        }
        // The requests still waiting once `execute` has returned with an error (or the process
        // died) get that error; the ones the model finished keep their responses.
        let error = match self.execute(&message) {
            Ok(reply) if reply["ok"] == true => return,
            Ok(reply) => RuntimeError::Run {
                path: self.model_file.clone(),
                reason: reply["error"]
                    .as_str()
                    .unwrap_or("execute failed")
                    .to_owned(),
            },
            Err(e) => e,
        };
        let Some(waiting) = self.process.as_ref().map(|p| p.waiting.clone()) else {
            return;
        };
        let failed: Vec<SessionSink> = {
            let mut w = lock(&waiting);
            ids.iter().filter_map(|id| w.remove(id)).collect()
        };
        fail_all(failed, &error);
    }
}

impl PythonSession {
    /// Starts the process again if it died since the last batch.
    fn ensure_process(&mut self) -> Result<(), RuntimeError> {
        let died = self
            .process
            .as_mut()
            .and_then(|p| p.child.try_wait().ok().flatten());
        if let Some(status) = died {
            self.process = None;
            eprintln!(
                "vigil: model '{}' version {}: the Python process of instance {} {}",
                self.spec.name,
                self.spec.version,
                self.instance,
                describe_exit(status)
            );
        }
        if self.process.is_none() {
            self.restarts += 1;
            lock(&RESTARTS).insert(
                (
                    self.spec.name.clone(),
                    self.spec.version,
                    self.instance.clone(),
                ),
                self.restarts,
            );
            eprintln!(
                "vigil: model '{}' version {}: starting the Python process of instance {} again \
                 (restart {})",
                self.spec.name, self.spec.version, self.instance, self.restarts
            );
            self.process = Some(self.spawn()?);
        }
        Ok(())
    }

    /// Sends an `execute` message and waits for its reply (serving the model's BLS requests);
    /// a lost process is forgotten (and started again for the next batch).
    fn execute(&mut self, message: &Value) -> Result<Value, RuntimeError> {
        let repository = self.spec.dir.parent().unwrap_or(&self.spec.dir).to_owned();
        let called = &mut self.called;
        match self
            .process
            .as_mut()
            .map(|p| p.execute(message, &repository, called))
        {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(reason)) => Err(self.lost(&reason)),
            None => Err(model_error(&self.model_file, "no process")),
        }
    }
}

impl Drop for PythonSession {
    fn drop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        let reply = process
            .send(&json!({"op": "finalize"}))
            .and_then(|()| process.receive_within(Some(FINALIZE_TIMEOUT)));
        if let Ok(reply) = reply
            && reply["ok"] != true
        {
            eprintln!(
                "vigil: model '{}' version {}: finalize of instance {} failed: {}",
                self.spec.name,
                self.spec.version,
                self.instance,
                reply["error"].as_str().unwrap_or("")
            );
        }
        let deadline = Instant::now() + FINALIZE_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = process.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Process {
    fn send(&mut self, message: &Value) -> Result<(), String> {
        let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        let len = u32::try_from(body.len()).map_err(|_| "message too long".to_owned())?;
        self.sock
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.sock.write_all(&body))
            .map_err(|e| format!("sending: {e}"))
    }

    /// The child's next message (other than a decoupled response).
    fn receive(&mut self) -> Result<Value, String> {
        self.receive_within(None)
    }

    /// As `receive`, waiting at most `timeout`.
    fn receive_within(&mut self, timeout: Option<Duration>) -> Result<Value, String> {
        let gone = || "reading the reply: the connection is closed".to_owned();
        match timeout {
            None => self.replies.recv().map_err(|_| gone())?,
            Some(t) => self.replies.recv_timeout(t).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => format!("no reply within {t:?}"),
                mpsc::RecvTimeoutError::Disconnected => gone(),
            })?,
        }
    }

    /// Sends one message and reads the reply.
    fn call(&mut self, message: &Value) -> Result<Value, String> {
        self.send(message)?;
        self.receive()
    }

    /// Sends an `execute` message and answers the child's business-logic requests (models of
    /// `repository`) until its reply.
    fn execute(
        &mut self,
        message: &Value,
        repository: &Path,
        called: &mut BlsModels,
    ) -> Result<Value, String> {
        self.send(message)?;
        loop {
            let reply = self.receive()?;
            if reply["op"] != "bls" {
                return Ok(reply);
            }
            let answer = self
                .serve_bls(&reply, repository, called)
                .unwrap_or_else(|e| json!({"ok": false, "error": e}));
            self.send(&answer)?;
        }
    }

    /// Runs a business-logic request: its inputs from the child's shared memory, its outputs to
    /// the engine's.
    fn serve_bls(
        &mut self,
        msg: &Value,
        repository: &Path,
        called: &mut BlsModels,
    ) -> Result<Value, String> {
        let name = msg["model_name"]
            .as_str()
            .ok_or("a BLS request without a model name")?;
        let version = msg["model_version"]
            .as_i64()
            .filter(|v| *v > 0)
            .map(|v| v as u64);
        let size = msg["input_size"].as_u64().unwrap_or(0) as usize;
        let bytes = self.bls_in.bytes(size)?;
        let mut inputs = Vec::new();
        for t in msg["inputs"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let (input, _, shape, data) = tensor_at(t, bytes)?;
            inputs.push((input, shape.iter().map(|&d| d as i64).collect(), data));
        }
        let wanted: Vec<String> = msg["outputs"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let key = (name.to_owned(), version);
        let handle = match called.get(&key) {
            Some(h) => h.clone(),
            None => {
                let h = crate::ModelServer::global()
                    .acquire(repository, name, version)
                    .map_err(|e| format!("model '{name}': {e}"))?;
                called.insert(key, h.clone());
                h
            }
        };
        let decoupled = handle.current().decoupled();
        if msg["decoupled"] != true {
            if decoupled {
                return Err(format!(
                    "model '{name}' is decoupled: call exec(decoupled=True) to get its responses"
                ));
            }
            let outputs =
                run_model(&handle, inputs, wanted).map_err(|e| format!("model '{name}': {e}"))?;
            let (size, mut layouts) = self.write_bls_outputs(&[Ok(outputs)])?;
            let outputs = layouts.pop().unwrap_or_default();
            return Ok(json!({"ok": true, "output_size": size, "outputs": outputs["outputs"]}));
        }
        let responses = run_model_decoupled(&handle, inputs, wanted)
            .map_err(|e| format!("model '{name}': {e}"))?;
        let (size, layouts) = self.write_bls_outputs(&responses)?;
        Ok(json!({"ok": true, "output_size": size, "responses": layouts}))
    }

    /// Writes responses' outputs one after another to the BLS output shared memory; returns its
    /// size and per response `{"outputs": [...]}` or `{"error": message}`.
    fn write_bls_outputs(
        &mut self,
        responses: &[Result<Vec<Output>, String>],
    ) -> Result<(usize, Vec<Value>), String> {
        let mut layouts = Vec::with_capacity(responses.len());
        let mut size = 0usize;
        for response in responses {
            layouts.push(match response {
                Ok(outputs) => {
                    let placed: Vec<Value> = outputs
                        .iter()
                        .map(|(output, shape, data)| {
                            place(output, json!(shape), data.as_slice(), &mut size)
                        })
                        .collect();
                    json!({ "outputs": placed })
                }
                Err(e) => json!({ "error": e }),
            });
        }
        self.bls_out.reserve(size)?;
        let mut offset = 0usize;
        for (_, _, data) in responses.iter().flatten().flatten() {
            let n = encoded_len(data.as_slice());
            encode(data.as_slice(), &mut self.bls_out.map[offset..offset + n]);
            offset = (offset + n).div_ceil(ALIGN) * ALIGN;
        }
        Ok((self.bls_out.map.len(), layouts))
    }
}

/// Reads one message (a little-endian u32 length and a JSON object).
fn read_message(sock: &mut UnixStream) -> Result<Value, String> {
    let mut head = [0u8; 4];
    sock.read_exact(&mut head)
        .map_err(|e| format!("reading the reply: {e}"))?;
    let mut body = vec![0u8; u32::from_le_bytes(head) as usize];
    sock.read_exact(&mut body)
        .map_err(|e| format!("reading the reply: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("a reply that is not JSON: {e}"))
}

/// A custom metric family of Python models (`pb_utils.MetricFamily`).
#[derive(Debug, Default)]
struct MetricFamily {
    description: String,
    /// `counter` or `gauge`.
    kind: String,
    /// By labels (`(name, value)`, sorted): the value.
    values: std::collections::BTreeMap<Vec<(String, String)>, f64>,
}

/// The custom metrics of every Python model of the process, by family name.
static METRICS: Mutex<std::collections::BTreeMap<String, MetricFamily>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Times each instance's process was started again after it died, by (model, version, instance).
static RESTARTS: Mutex<std::collections::BTreeMap<(String, u64, String), u64>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Applies one metric update of a model (`{"family", "description", "kind", "labels", "action",
/// "value"}`); a malformed one is ignored (the model's side checked it).
fn record_metric(msg: &Value) {
    let (Some(name), Some(kind), Some(value)) = (
        msg["family"].as_str(),
        msg["kind"].as_str(),
        msg["value"].as_f64(),
    ) else {
        return;
    };
    let labels: Vec<(String, String)> = msg["labels"]
        .as_object()
        .map(|m| {
            let mut l: Vec<(String, String)> = m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            l.sort();
            l
        })
        .unwrap_or_default();
    let mut metrics = lock(&METRICS);
    let family = metrics
        .entry(name.to_owned())
        .or_insert_with(|| MetricFamily {
            description: msg["description"].as_str().unwrap_or_default().to_owned(),
            kind: kind.to_owned(),
            values: Default::default(),
        });
    let slot = family.values.entry(labels).or_insert(0.0);
    match msg["action"].as_str() {
        Some("increment") => *slot += value,
        Some("set") => *slot = value,
        _ => {}
    }
}

/// The Python backend's metrics in Prometheus' text format: the models' custom metric families
/// (`pb_utils.MetricFamily`), and `vigil_python_backend_restarts_total` per instance (once an
/// instance has been restarted).
pub fn metrics_text() -> String {
    use std::fmt::Write as _;
    let escape = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut out = String::new();
    for (name, family) in lock(&METRICS).iter() {
        let help = family
            .description
            .replace('\\', "\\\\")
            .replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", family.kind);
        for (labels, value) in &family.values {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
    let restarts = lock(&RESTARTS);
    if !restarts.is_empty() {
        let name = "vigil_python_backend_restarts_total";
        let _ = writeln!(
            out,
            "# HELP {name} Times a Python-backend instance's process was started again after it died\n# TYPE {name} counter"
        );
        for ((model, version, instance), n) in restarts.iter() {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{version}\",instance=\"{}\"}} {n}",
                escape(model),
                escape(instance)
            );
        }
    }
    out
}

/// The interpreter for a model with `EXECUTION_ENV_PATH` `env` (see the module documentation).
fn interpreter(env: Option<&str>) -> Result<PathBuf, String> {
    if let Some(env) = env {
        return environment_python(Path::new(env))
            .map_err(|reason| format!("{EXECUTION_ENV_PARAMETER} {env}: {reason}"));
    }
    Ok(std::env::var_os(INTERPRETER_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from))
}

/// Lets model repositories auto-complete Python-backend configurations with the model's own
/// `TritonPythonModel.auto_complete_config` (process-wide; see
/// [`vigil_modelrepo::register_backend_autocomplete`]). Idempotent.
pub fn register_autocomplete() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        vigil_modelrepo::register_backend_autocomplete(
            "python",
            Arc::new(|file: &Path, config: &str| auto_complete_config(file, config)),
        );
    });
}

/// Runs `TritonPythonModel.auto_complete_config` of `model_file` (as Triton does before loading:
/// in a process of its own, which then exits) on `config` (Triton's JSON) and returns the
/// configuration it gives back. A model without that method keeps its configuration, without
/// starting Python. Answers are remembered per file (path, size and time) and configuration.
pub fn auto_complete_config(model_file: &Path, config: &str) -> Result<String, String> {
    type Key = (PathBuf, u64, Option<std::time::SystemTime>, String);
    static DONE: Mutex<Option<HashMap<Key, Result<String, String>>>> = Mutex::new(None);
    let meta = std::fs::metadata(model_file).map_err(|e| e.to_string())?;
    let key = (
        model_file.to_owned(),
        meta.len(),
        meta.modified().ok(),
        config.to_owned(),
    );
    if let Some(done) = lock(&DONE).as_ref().and_then(|d| d.get(&key)) {
        return done.clone();
    }
    let source = std::fs::read_to_string(model_file).map_err(|e| e.to_string())?;
    let result = if source.contains("auto_complete_config") {
        run_auto_complete(model_file, config)
    } else {
        Ok(config.to_owned())
    };
    lock(&DONE)
        .get_or_insert_with(HashMap::new)
        .insert(key, result.clone());
    result
}

fn run_auto_complete(model_file: &Path, config: &str) -> Result<String, String> {
    let parsed: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let model_dir = model_file
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let env = parsed["parameters"][EXECUTION_ENV_PARAMETER]["string_value"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|p| p.replace("$$TRITON_MODEL_DIRECTORY", &model_dir.to_string_lossy()));
    let python = interpreter(env.as_deref())?;
    let scripts = scripts_dir().map_err(|e| format!("cannot write the Python stub: {e}"))?;
    let mut child = Command::new(&python)
        .arg(scripts.join("vigil_python_stub.py"))
        .arg("--auto-complete")
        .arg(model_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start the Python interpreter {}: {e}",
                python.display()
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config.as_bytes())
            .map_err(|e| format!("writing the configuration to Python: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let reply: Value = serde_json::from_str(text.trim()).map_err(|_| {
        format!(
            "the Python process ({}) {} without an answer",
            python.display(),
            describe_exit(out.status)
        )
    })?;
    if reply["ok"] != true {
        return Err(reply["error"]
            .as_str()
            .unwrap_or("auto_complete_config failed")
            .to_owned());
    }
    Ok(reply["config"].to_string())
}

/// Starts the thread that reads the child's messages: decoupled responses go to their sinks, the
/// rest to the returned receiver. When the connection ends, the requests still waiting fail.
fn start_reader(
    mut sock: UnixStream,
    waiting: Waiting,
    dir: PathBuf,
    outputs: Vec<IoInfo>,
    model_file: PathBuf,
) -> Result<mpsc::Receiver<Result<Value, String>>, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("vigil-python-reader".into())
        .spawn(move || {
            let reason = loop {
                match read_message(&mut sock) {
                    Ok(msg) if msg["op"] == "response" => {
                        respond(&msg, &waiting, &dir, &outputs, &model_file);
                    }
                    Ok(msg) if msg["op"] == "metric" => record_metric(&msg),
                    Ok(msg) => {
                        if tx.send(Ok(msg)).is_err() {
                            break "the instance stopped".to_owned();
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.clone()));
                        break e;
                    }
                }
            };
            let left: Vec<SessionSink> = lock(&waiting).drain().map(|(_, s)| s).collect();
            let e = model_error(
                &model_file,
                format!("the Python process ended before its final response ({reason})"),
            );
            for mut sink in left {
                sink(Err(e.clone()), true);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(rx)
}

/// Hands one decoupled response (`{"op": "response", "id", "final", "error" | "file",
/// "outputs"}`, the outputs in the file the child wrote in `dir`) to its request's sink.
fn respond(msg: &Value, waiting: &Waiting, dir: &Path, outputs: &[IoInfo], model_file: &Path) {
    let Some(id) = msg["id"].as_u64() else {
        return;
    };
    let last = msg["final"] == true;
    let file = msg["file"]
        .as_str()
        .filter(|f| !f.contains('/') && !f.is_empty());
    let tensors = match (msg["error"].as_str(), file) {
        (Some(error), _) => Err(error.to_owned()),
        (None, Some(file)) => read_response_file(&dir.join(file), msg, outputs),
        (None, None) => Ok(Vec::new()),
    };
    let Some(mut sink) = lock(waiting).remove(&id) else {
        return; // a response after the final one, or for a request that already failed
    };
    match tensors {
        Ok(tensors) => {
            let widened = crate::tensor::widen(&tensors);
            sink(Ok(&crate::tensor::views_of(&tensors, &widened)), last);
        }
        Err(reason) => sink(
            Err(RuntimeError::Run {
                path: model_file.to_owned(),
                reason,
            }),
            last,
        ),
    }
    if !last {
        lock(waiting).insert(id, sink);
    }
}

/// The outputs of a decoupled response from the file the child wrote (removed once read).
fn read_response_file(path: &Path, msg: &Value, outputs: &[IoInfo]) -> Result<Vec<Output>, String> {
    let file = File::open(path).map_err(|e| format!("response {}: {e}", path.display()));
    let _ = std::fs::remove_file(path);
    let file = file?;
    let size = msg["size"].as_u64().unwrap_or(0) as usize;
    if size == 0 {
        return read_outputs(msg, &[], outputs);
    }
    // SAFETY: the child wrote this file completely before sending the message and never touches
    // it again; its name is gone, so no other process can open it; `size` bytes were written.
    let map = unsafe { MmapOptions::new().len(size).map(&file) }
        .map_err(|e| format!("response {}: {e}", path.display()))?;
    read_outputs(msg, &map, outputs)
}

/// Waits for the child to connect (it may die first: then its exit status is the reason).
fn accept(listener: &UnixListener, child: &mut Child) -> Result<UnixStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((sock, _)) => {
                sock.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(sock);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(describe_exit(status));
        }
        if Instant::now() > deadline {
            return Err(format!("it did not connect within {CONNECT_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_briefly(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".to_owned(),
    }
}

/// The Python of an `EXECUTION_ENV_PATH`: an environment folder, or a packed `.tar.gz` unpacked once
/// into `<archive>.vigil-env/`.
fn environment_python(env: &Path) -> Result<PathBuf, String> {
    let folder = if env.is_dir() {
        env.to_owned()
    } else if env.is_file() {
        let target = PathBuf::from(format!("{}.vigil-env", env.display()));
        if !target.join("bin").is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            let status = Command::new("tar")
                .arg("-xzf")
                .arg(env)
                .arg("-C")
                .arg(&target)
                .status()
                .map_err(|e| format!("cannot run tar: {e}"))?;
            if !status.success() {
                let _ = std::fs::remove_dir_all(&target);
                return Err(format!("tar could not unpack it ({status})"));
            }
        }
        target
    } else {
        return Err("no such file or folder".into());
    };
    ["bin/python3", "bin/python"]
        .iter()
        .map(|p| folder.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no bin/python3 in {}", folder.display()))
}

/// The folder with the stub and `triton_python_backend_utils.py` (written when missing or stale).
fn scripts_dir() -> std::io::Result<PathBuf> {
    let tag = STUB.len() ^ (UTILS.len() << 20) ^ checksum(STUB) ^ checksum(UTILS);
    let dir = std::env::temp_dir().join(format!("vigil-python-backend-{tag:x}"));
    std::fs::create_dir_all(&dir)?;
    for (name, text) in [
        ("vigil_python_stub.py", STUB),
        ("triton_python_backend_utils.py", UTILS),
    ] {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let tmp = dir.join(format!(
                "{name}.{}.{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(dir)
}

fn checksum(text: &str) -> usize {
    text.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
}

/// A new folder for one process's socket and shared memory: under `/dev/shm` where it exists.
fn private_dir() -> std::io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_owned()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "vigil-py-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// The description of a tensor placed at `*end` in shared memory (`*end` moves past it, aligned).
fn place(name: &str, shape: Value, data: TensorSlice<'_>, end: &mut usize) -> Value {
    let size = encoded_len(data);
    let described = json!({
        "name": name,
        "datatype": wire_name(data.data_type()),
        "shape": shape,
        "offset": *end,
        "size": size,
    });
    *end = (*end + size).div_ceil(ALIGN) * ALIGN;
    described
}

/// Bytes a tensor takes in shared memory.
fn encoded_len(data: TensorSlice<'_>) -> usize {
    match data {
        TensorSlice::Bytes(items) => items.iter().map(|b| 4 + b.len()).sum(),
        other => other.len() * other.data_type().size_bytes().unwrap_or(1),
    }
}

/// Writes a tensor's values, little-endian (BYTES: a u32 length before each element).
fn encode(data: TensorSlice<'_>, out: &mut [u8]) {
    macro_rules! le {
        ($v:expr, $n:expr) => {
            for (chunk, x) in out.chunks_exact_mut($n).zip($v) {
                chunk.copy_from_slice(&x.to_le_bytes());
            }
        };
    }
    match data {
        TensorSlice::Bool(v) => {
            for (o, x) in out.iter_mut().zip(v) {
                *o = u8::from(*x);
            }
        }
        TensorSlice::Uint8(v) => out[..v.len()].copy_from_slice(v),
        TensorSlice::Uint16(v) => le!(v, 2),
        TensorSlice::Uint32(v) => le!(v, 4),
        TensorSlice::Uint64(v) => le!(v, 8),
        TensorSlice::Int8(v) => le!(v, 1),
        TensorSlice::Int16(v) => le!(v, 2),
        TensorSlice::Int32(v) => le!(v, 4),
        TensorSlice::Int64(v) => le!(v, 8),
        TensorSlice::Fp16(v) => le!(v, 2),
        TensorSlice::Bf16(v) => le!(v, 2),
        TensorSlice::Fp32(v) => le!(v, 4),
        TensorSlice::Fp64(v) => le!(v, 8),
        TensorSlice::Bytes(items) => {
            let mut pos = 0;
            for item in items {
                out[pos..pos + 4].copy_from_slice(&(item.len() as u32).to_le_bytes());
                out[pos + 4..pos + 4 + item.len()].copy_from_slice(item);
                pos += 4 + item.len();
            }
        }
    }
}

/// Reads a tensor of `count` elements of `dtype` from `bytes`.
fn decode(dtype: DataType, count: usize, bytes: &[u8]) -> Result<TensorData, String> {
    macro_rules! le {
        ($t:ty, $n:expr, $variant:ident) => {{
            if bytes.len() != count * $n {
                return Err(format!(
                    "{} bytes for {count} elements of {} bytes",
                    bytes.len(),
                    $n
                ));
            }
            TensorData::$variant(
                bytes
                    .chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])))
                    .collect(),
            )
        }};
    }
    Ok(match dtype {
        DataType::Bool => {
            if bytes.len() != count {
                return Err(format!("{} bytes for {count} booleans", bytes.len()));
            }
            TensorData::Bool(bytes.iter().map(|b| *b != 0).collect())
        }
        DataType::Uint8 => le!(u8, 1, Uint8),
        DataType::Uint16 => le!(u16, 2, Uint16),
        DataType::Uint32 => le!(u32, 4, Uint32),
        DataType::Uint64 => le!(u64, 8, Uint64),
        DataType::Int8 => le!(i8, 1, Int8),
        DataType::Int16 => le!(i16, 2, Int16),
        DataType::Int32 => le!(i32, 4, Int32),
        DataType::Int64 => le!(i64, 8, Int64),
        DataType::Fp16 => le!(half::f16, 2, Fp16),
        DataType::Bf16 => le!(half::bf16, 2, Bf16),
        DataType::Fp32 => le!(f32, 4, Fp32),
        DataType::Fp64 => le!(f64, 8, Fp64),
        DataType::String => {
            let mut items = Vec::with_capacity(count);
            let mut pos = 0usize;
            for _ in 0..count {
                let len = bytes
                    .get(pos..pos + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .ok_or("a BYTES element past the end")?;
                let item = bytes
                    .get(pos + 4..pos + 4 + len)
                    .ok_or("a BYTES element past the end")?;
                items.push(item.to_vec());
                pos += 4 + len;
            }
            TensorData::Bytes(items)
        }
        DataType::Invalid => return Err("TYPE_INVALID".into()),
    })
}

type Output = (String, Vec<usize>, TensorData);

/// Runs `inputs` (full shapes, the batch dimension first where the model batches) on `handle`'s
/// model through its runtime (its dynamic batcher and instances) and returns the outputs named in
/// `wanted` (all when empty).
fn run_model(
    handle: &crate::ModelHandle,
    inputs: Vec<(String, Vec<i64>, TensorData)>,
    wanted: Vec<String>,
) -> Result<Vec<Output>, String> {
    let runtime = handle.current();
    let wanted = std::sync::Arc::new(wanted);
    let copy = move |views: &[TensorView]| -> Vec<Output> {
        views
            .iter()
            .filter(|v| wanted.is_empty() || wanted.iter().any(|w| w == v.name))
            .map(|v| (v.name.to_owned(), v.shape.to_vec(), v.raw.to_owned_data()))
            .collect()
    };
    if runtime.max_batch_size() == 0 {
        let request = crate::InferRequest {
            inputs,
            ..Default::default()
        };
        return runtime.infer(request, copy).map_err(|e| e.to_string());
    }
    // One engine request per item of the batch, as `vigil serve` gives them; outputs stacked back.
    let n = inputs
        .first()
        .and_then(|i| i.1.first())
        .copied()
        .unwrap_or(0);
    if n < 1 || inputs.iter().any(|i| i.1.first() != Some(&n)) {
        return Err(format!(
            "the model batches (max_batch_size {}): every input needs the same batch size first",
            runtime.max_batch_size()
        ));
    }
    let n = n as usize;
    let mut pending = Vec::with_capacity(n);
    for k in 0..n {
        let item = inputs
            .iter()
            .map(|(input, shape, data)| {
                let per = data.len() / n;
                let part = data
                    .as_slice()
                    .range(k * per..(k + 1) * per)
                    .to_owned_data();
                (input.clone(), shape[1..].to_vec(), part)
            })
            .collect();
        let request = crate::InferRequest {
            inputs: item,
            ..Default::default()
        };
        pending.push(
            runtime
                .infer_async(request, copy.clone())
                .map_err(|e| e.to_string())?,
        );
    }
    let items = pending
        .into_iter()
        .map(|p| p.wait().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut outputs = items.first().cloned().unwrap_or_default();
    for (k, (_, shape, data)) in outputs.iter_mut().enumerate() {
        if let Some(d0) = shape.first_mut() {
            *d0 = n;
        }
        for item in items.iter().skip(1) {
            if let Some((_, _, more)) = item.get(k) {
                data.extend_from(more.as_slice());
            }
        }
    }
    Ok(outputs)
}

/// Runs one request (full shapes, as the model takes them) on a decoupled model (or on any model,
/// whose one response is then final) and returns every response, in the order they came; a final
/// call without outputs adds an empty response at the end (as Triton's BLS gives it).
fn run_model_decoupled(
    handle: &crate::ModelHandle,
    inputs: Vec<(String, Vec<i64>, TensorData)>,
    wanted: Vec<String>,
) -> Result<Vec<Result<Vec<Output>, String>>, String> {
    let runtime = handle.current();
    let batched = runtime.max_batch_size() > 0;
    let inputs = if batched {
        // A decoupled request is one item: its batch dimension of 1 goes.
        inputs
            .into_iter()
            .map(|(name, shape, data)| match shape.split_first() {
                Some((1, rest)) => Ok((name, rest.to_vec(), data)),
                _ => Err(format!(
                    "input '{name}' has shape {shape:?}; a decoupled request takes a batch of 1"
                )),
            })
            .collect::<Result<Vec<_>, String>>()?
    } else {
        inputs
    };
    let (tx, rx) = mpsc::channel();
    let sink: crate::ResponseSink = Box::new(move |result, last| {
        let response = result
            .map(|views: &[TensorView]| {
                views
                    .iter()
                    .filter(|v| wanted.is_empty() || wanted.iter().any(|w| w == v.name))
                    .map(|v| (v.name.to_owned(), v.shape.to_vec(), v.raw.to_owned_data()))
                    .collect::<Vec<Output>>()
            })
            .map_err(|e| e.to_string());
        let _ = tx.send((response, last));
    });
    let request = crate::InferRequest {
        inputs,
        ..Default::default()
    };
    runtime
        .infer_decoupled(request, sink)
        .map_err(|e| e.to_string())?;
    let mut responses = Vec::new();
    loop {
        let Ok((response, last)) = rx.recv() else {
            return Err("the model dropped the request before its final response".into());
        };
        responses.push(response);
        if last {
            return Ok(responses);
        }
    }
}

/// A tensor a message describes (`name`, `datatype`, `shape`, `offset`, `size`) in `bytes`.
fn tensor_at(
    t: &Value,
    bytes: &[u8],
) -> Result<(String, DataType, Vec<usize>, TensorData), String> {
    let name = t["name"].as_str().unwrap_or("");
    let datatype = t["datatype"].as_str().unwrap_or("");
    let dtype = data_type_of_wire(datatype)
        .ok_or_else(|| format!("tensor '{name}': unknown data type {datatype}"))?;
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .map(|s| s.iter().map(|d| d.as_u64().unwrap_or(0) as usize).collect())
        .unwrap_or_default();
    let offset = t["offset"].as_u64().unwrap_or(0) as usize;
    let size = t["size"].as_u64().unwrap_or(0) as usize;
    let data = bytes
        .get(offset..offset.saturating_add(size))
        .ok_or_else(|| format!("tensor '{name}' lies outside the shared memory"))
        .and_then(|b| {
            decode(dtype, shape.iter().product(), b).map_err(|e| format!("tensor '{name}': {e}"))
        })?;
    Ok((name.to_owned(), dtype, shape, data))
}

/// A response's outputs from the output shared memory, checked against the configuration.
fn read_outputs(response: &Value, out: &[u8], config: &[IoInfo]) -> Result<Vec<Output>, String> {
    let mut tensors = Vec::new();
    for t in response["outputs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        // An output keeps the data type the model gave it, as in Triton's Python backend (whose
        // examples return numpy's default INT64 for a TYPE_INT32 output).
        let (name, _, shape, data) = tensor_at(t, out)?;
        if !config.iter().any(|c| c.name == name) {
            return Err(format!(
                "output '{name}' is not in the model's configuration"
            ));
        }
        tensors.push((name, shape, data));
    }
    // In the configuration's order.
    tensors.sort_by_key(|(name, _, _)| config.iter().position(|c| &c.name == name));
    Ok(tensors)
}
