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

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapMut, MmapOptions};
use serde_json::{Value, json};
use vigil_modelrepo::{DataType, LoadedModel};

use crate::runtime::{IoInfo, RuntimeError, SessionOptions};
use crate::tensor::{TensorData, TensorSlice, TensorView};
use crate::{InferSession, RequestAnswer, RequestInputs, SessionFactory};

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
        config_json: config_json(model),
        inputs: io_infos(&model.config.input, model.config.max_batch_size > 0),
        outputs: io_infos(&model.config.output, model.config.max_batch_size > 0),
        batched: model.config.max_batch_size > 0,
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
    env_path: Option<String>,
}

/// The configuration as Triton gives it to `initialize` (`args["model_config"]`): the protobuf
/// message as JSON with its field names.
fn config_json(model: &LoadedModel) -> String {
    let options = prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    let mut serializer = serde_json::Serializer::new(Vec::new());
    match model
        .config
        .raw
        .serialize_with_options(&mut serializer, &options)
    {
        Ok(()) => String::from_utf8(serializer.into_inner()).unwrap_or_default(),
        Err(_) => "{}".to_owned(),
    }
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

/// A running instance process and its shared memory.
struct Process {
    child: Child,
    sock: UnixStream,
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
        if let Some(env) = &self.spec.env_path {
            return environment_python(Path::new(env)).map_err(|reason| {
                model_error(
                    &self.model_file,
                    format!("{EXECUTION_ENV_PARAMETER} {env}: {reason}"),
                )
            });
        }
        Ok(std::env::var_os(INTERPRETER_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("python3"), PathBuf::from))
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
        // From here on, dropping the process kills the child and removes the folder.
        let mut process = Process {
            child,
            sock,
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
        let _ = std::fs::remove_dir_all(&process.dir);
        Ok(process)
    }

    /// Writes the requests' inputs to shared memory and returns their descriptions.
    fn write_inputs(&mut self, requests: &[RequestInputs<'_>]) -> Result<Value, String> {
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
            .map(|inputs| json!({"inputs": inputs, "outputs": outputs}))
            .collect();
        Ok(json!({"op": "execute", "input_size": process.input.map.len(), "requests": requests}))
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
            eprintln!(
                "vigil: model '{}' version {}: starting the Python process of instance {} again \
                 (restart {})",
                self.spec.name, self.spec.version, self.instance, self.restarts
            );
            self.process = Some(self.spawn()?);
        }
        let message = self
            .write_inputs(requests)
            .map_err(|reason| model_error(&self.model_file, format!("shared memory: {reason}")))?;
        let repository = self.spec.dir.parent().unwrap_or(&self.spec.dir).to_owned();
        let called = &mut self.called;
        let reply = match self
            .process
            .as_mut()
            .map(|p| p.execute(&message, &repository, called))
        {
            Some(Ok(reply)) => reply,
            Some(Err(reason)) => return Err(self.lost(&reason)),
            None => return Err(model_error(&self.model_file, "no process")),
        };
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
}

impl Drop for PythonSession {
    fn drop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        let _ = process.sock.set_read_timeout(Some(FINALIZE_TIMEOUT));
        if let Ok(reply) = process.call(&json!({"op": "finalize"}))
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

    fn receive(&mut self) -> Result<Value, String> {
        let mut head = [0u8; 4];
        self.sock
            .read_exact(&mut head)
            .map_err(|e| format!("reading the reply: {e}"))?;
        let mut reply = vec![0u8; u32::from_le_bytes(head) as usize];
        self.sock
            .read_exact(&mut reply)
            .map_err(|e| format!("reading the reply: {e}"))?;
        serde_json::from_slice(&reply).map_err(|e| format!("a reply that is not JSON: {e}"))
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
        let outputs =
            run_model(&handle, inputs, wanted).map_err(|e| format!("model '{name}': {e}"))?;
        let mut layout = Vec::with_capacity(outputs.len());
        let mut size = 0usize;
        for (output, shape, data) in &outputs {
            layout.push(place(output, json!(shape), data.as_slice(), &mut size));
        }
        self.bls_out.reserve(size)?;
        let mut offset = 0usize;
        for (_, _, data) in &outputs {
            let n = encoded_len(data.as_slice());
            encode(data.as_slice(), &mut self.bls_out.map[offset..offset + n]);
            offset = (offset + n).div_ceil(ALIGN) * ALIGN;
        }
        Ok(json!({"ok": true, "output_size": self.bls_out.map.len(), "outputs": layout}))
    }
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
        let (name, dtype, shape, data) = tensor_at(t, out)?;
        let Some(info) = config.iter().find(|c| c.name == name) else {
            return Err(format!(
                "output '{name}' is not in the model's configuration"
            ));
        };
        if dtype.element_name() != Some(info.dtype.as_str()) {
            return Err(format!(
                "output '{name}' is {}; the configuration says {}",
                wire_name(dtype),
                info.dtype
            ));
        }
        tensors.push((name, shape, data));
    }
    // In the configuration's order.
    tensors.sort_by_key(|(name, _, _)| config.iter().position(|c| &c.name == name));
    Ok(tensors)
}
