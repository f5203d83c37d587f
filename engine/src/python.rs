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
}

/// A running instance process and its shared memory.
struct Process {
    child: Child,
    sock: UnixStream,
    dir: PathBuf,
    input_file: File,
    input: MmapMut,
    /// The output file (opened once the child has made it).
    output_file: Option<File>,
    output: Option<Mmap>,
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
        let sock_path = dir.join("sock");
        let cleanup = |e: RuntimeError| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let input_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&input_path)
            .and_then(|f| f.set_len(INITIAL_SHM as u64).map(|()| f))
            .map_err(|e| cleanup(err(format!("shared memory {}: {e}", input_path.display()))))?;
        // SAFETY: the file was just made by this process in a folder only it and its child use; the
        // child only reads it, and the engine writes it only while no execution is in flight.
        let input = unsafe { MmapMut::map_mut(&input_file) }
            .map_err(|e| cleanup(err(format!("shared memory {}: {e}", input_path.display()))))?;
        let listener = UnixListener::bind(&sock_path)
            .map_err(|e| cleanup(err(format!("socket {}: {e}", sock_path.display()))))?;
        let python = self.interpreter().map_err(cleanup)?;
        let child = Command::new(&python)
            .arg(scripts.join("vigil_python_stub.py"))
            .arg(&sock_path)
            .arg(&input_path)
            .arg(&output_path)
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
        let mut process = Process {
            child,
            // Replaced once the child connects; a placeholder pair until then.
            sock: UnixStream::pair()
                .map(|p| p.0)
                .map_err(|e| err(format!("socket: {e}")))?,
            dir,
            input_file,
            input,
            output_file: None,
            output: None,
        };
        process.sock = accept(&listener, &mut process.child).map_err(|reason| {
            err(format!(
                "the Python process ({}) did not start: {reason}",
                python.display()
            ))
        })?;
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
        process.output_file = Some(
            File::open(&output_path)
                .map_err(|e| err(format!("shared memory {}: {e}", output_path.display())))?,
        );
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
                let bytes = encoded_len(*data);
                let mut full: Vec<i64> = Vec::with_capacity(shape.len() + 1);
                if self.spec.batched {
                    full.push(1);
                }
                full.extend_from_slice(shape);
                tensors.push(json!({
                    "name": name,
                    "datatype": wire_name(data.data_type()),
                    "shape": full,
                    "offset": size,
                    "size": bytes,
                }));
                size = (size + bytes).div_ceil(ALIGN) * ALIGN;
            }
            layout.push(tensors);
        }
        process.reserve_input(size)?;
        let mut offset = 0usize;
        for request in requests {
            for (_, _, data) in request {
                let bytes = encoded_len(*data);
                encode(*data, &mut process.input[offset..offset + bytes]);
                offset = (offset + bytes).div_ceil(ALIGN) * ALIGN;
            }
        }
        let outputs: Vec<&str> = self.spec.outputs.iter().map(|o| o.name.as_str()).collect();
        let requests: Vec<Value> = layout
            .into_iter()
            .map(|inputs| json!({"inputs": inputs, "outputs": outputs}))
            .collect();
        Ok(json!({"op": "execute", "input_size": process.input.len(), "requests": requests}))
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
        let reply = match self.process.as_mut().map(|p| p.call(&message)) {
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
        process
            .map_output(size)
            .map_err(|reason| model_error(&self.model_file, format!("shared memory: {reason}")))?;
        let responses = reply["responses"].as_array().cloned().unwrap_or_default();
        let out = process.output.as_deref().unwrap_or(&[]);
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
    /// Sends one message and reads the reply.
    fn call(&mut self, message: &Value) -> Result<Value, String> {
        let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        let len = u32::try_from(body.len()).map_err(|_| "message too long".to_owned())?;
        self.sock
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.sock.write_all(&body))
            .map_err(|e| format!("sending: {e}"))?;
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

    /// Grows the input file to at least `size` bytes.
    fn reserve_input(&mut self, size: usize) -> Result<(), String> {
        if size <= self.input.len() {
            return Ok(());
        }
        let new = size.max(self.input.len() * 2);
        self.input_file
            .set_len(new as u64)
            .map_err(|e| e.to_string())?;
        // SAFETY: as in `spawn`; the old mapping is dropped when replaced and nothing borrows it.
        self.input = unsafe { MmapMut::map_mut(&self.input_file) }.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Maps the output file when it is new or has grown to `size`.
    fn map_output(&mut self, size: usize) -> Result<(), String> {
        if size == 0 || self.output.as_ref().is_some_and(|m| m.len() >= size) {
            return Ok(());
        }
        let file = self
            .output_file
            .as_ref()
            .ok_or("the output file is not open")?;
        // SAFETY: the child writes this file only while the engine waits for its reply; the engine
        // reads it after the reply and before sending the next message, and never past `size`,
        // which the child set with ftruncate before replying.
        let map = unsafe { MmapOptions::new().len(size).map(file) }.map_err(|e| e.to_string())?;
        self.output = Some(map);
        Ok(())
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

/// A response's outputs from the output shared memory, checked against the configuration.
fn read_outputs(response: &Value, out: &[u8], config: &[IoInfo]) -> Result<Vec<Output>, String> {
    let mut tensors = Vec::new();
    for t in response["outputs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let name = t["name"].as_str().unwrap_or("");
        let datatype = t["datatype"].as_str().unwrap_or("");
        let Some(info) = config.iter().find(|c| c.name == name) else {
            return Err(format!(
                "output '{name}' is not in the model's configuration"
            ));
        };
        let dtype = data_type_of_wire(datatype)
            .ok_or_else(|| format!("output '{name}': unknown data type {datatype}"))?;
        if dtype.element_name() != Some(info.dtype.as_str()) {
            return Err(format!(
                "output '{name}' is {datatype}; the configuration says {}",
                info.dtype
            ));
        }
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .map(|s| s.iter().map(|d| d.as_u64().unwrap_or(0) as usize).collect())
            .unwrap_or_default();
        let offset = t["offset"].as_u64().unwrap_or(0) as usize;
        let size = t["size"].as_u64().unwrap_or(0) as usize;
        let bytes = out
            .get(offset..offset.saturating_add(size))
            .ok_or_else(|| format!("output '{name}' lies outside the shared memory"))?;
        let data = decode(dtype, shape.iter().product(), bytes)
            .map_err(|e| format!("output '{name}': {e}"))?;
        tensors.push((name.to_owned(), shape, data));
    }
    // In the configuration's order.
    tensors.sort_by_key(|(name, _, _)| config.iter().position(|c| &c.name == name));
    Ok(tensors)
}
