//! Triton's Python backend in the engine: `model.py` models of `tests/python_models/` run in
//! processes of their own through the model's dynamic batcher.
//!
//! The interpreter is the venv `scripts/setup.sh` makes (`$VIGIL_CACHE/venv`, default
//! `~/.cache/vigil/venv`), which has numpy. Without one the tests are
//! skipped, and fail under `CI=true`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_engine::{InferRequest, ModelRuntime, TensorSlice};
use vigil_modelrepo::ModelRepository;

/// The environment is process-wide: tests that set it run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_models")
}

/// A Python with numpy, set as the backend's interpreter; `None` (test skipped) without one.
fn python() -> Option<PathBuf> {
    let cache = std::env::var_os("VIGIL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vigil")));
    let venv = cache.map(|c| c.join("venv/bin/python3"));
    let found = venv.filter(|p| {
        std::process::Command::new(p)
            .args(["-c", "import numpy"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "no Python with numpy for the Python backend (run scripts/setup.sh venv)"
        );
        eprintln!("SKIPPED: no Python with numpy (run scripts/setup.sh venv)");
    }
    found
}

fn load(name: &str, python: &Path) -> Result<ModelRuntime, String> {
    // SAFETY (of the environment): tests of this file hold ONE_AT_A_TIME while they change it.
    unsafe { std::env::set_var("VIGIL_PYTHON_BACKEND_INTERPRETER", python) };
    let repo = ModelRepository::open(&models()).map_err(|e| e.to_string())?;
    let model = repo.load(name, None).map_err(|e| e.to_string())?;
    ModelRuntime::load(&model).map_err(|e| e.to_string())
}

fn request(a: [f32; 4], b: [f32; 4]) -> InferRequest {
    InferRequest::new("INPUT0", vec![4], a.to_vec()).with_input("INPUT1", vec![4], b.to_vec())
}

/// What one add_sub response says.
#[derive(Debug, Clone, PartialEq)]
struct AddSub {
    sum: Vec<f32>,
    diff: Vec<f32>,
    requests: i32,
    pid: i64,
    instance: String,
}

fn add_sub(runtime: &ModelRuntime, a: [f32; 4], b: [f32; 4]) -> Result<AddSub, String> {
    runtime
        .infer(request(a, b), |views| {
            let get = |name: &str| {
                views
                    .iter()
                    .find(|v| v.name == name)
                    .unwrap_or_else(|| panic!("no {name}"))
            };
            let TensorSlice::Int32(requests) = get("REQUESTS").raw else {
                panic!("REQUESTS type")
            };
            let TensorSlice::Int64(pid) = get("PID").raw else {
                panic!("PID type")
            };
            let TensorSlice::Bytes(instance) = get("INSTANCE").raw else {
                panic!("INSTANCE type")
            };
            assert_eq!(get("OUTPUT0").shape, [1, 4]);
            AddSub {
                sum: get("OUTPUT0").data.to_vec(),
                diff: get("OUTPUT1").data.to_vec(),
                requests: requests[0],
                pid: pid[0],
                instance: String::from_utf8_lossy(&instance[0]).into_owned(),
            }
        })
        .map_err(|e| e.to_string())
}

#[test]
fn add_sub_runs_in_its_own_processes_and_batches_requests() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    let marker = std::env::temp_dir().join(format!("vigil-py-finalize-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // SAFETY: see `load`.
    unsafe { std::env::set_var("VIGIL_TEST_FINALIZE_MARKER", &marker) };
    let runtime = Arc::new(load("add_sub", &python).expect("add_sub loads"));
    assert_eq!(runtime.instances().len(), 2);

    let one = add_sub(&runtime, [1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]).unwrap();
    assert_eq!(one.sum, [1.5, 2.5, 3.5, 4.5]);
    assert_eq!(one.diff, [0.5, 1.5, 2.5, 3.5]);
    assert_ne!(
        one.pid,
        i64::from(std::process::id()),
        "the model runs in a process of its own"
    );
    assert!(one.instance.starts_with("add_sub_0_"), "{}", one.instance);

    // Eight requests at once: the batcher gives `execute` several of them (it waits 200 ms).
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let runtime = runtime.clone();
            std::thread::spawn(move || add_sub(&runtime, [i as f32; 4], [1.0; 4]).unwrap())
        })
        .collect();
    let answers: Vec<AddSub> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.sum, [i as f32 + 1.0; 4]);
    }
    let most = answers.iter().map(|a| a.requests).max().unwrap();
    assert!(most >= 2, "execute always got one request: {answers:?}");
    let pids: std::collections::BTreeSet<i64> = answers.iter().map(|a| a.pid).collect();
    eprintln!("largest batch {most}, processes {pids:?}");

    drop(answers);
    let runtime = Arc::into_inner(runtime).expect("one owner");
    runtime.shutdown();
    drop(runtime);
    let finalized = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(
        finalized.lines().count(),
        2,
        "finalize ran per instance: {finalized:?}"
    );
    let _ = std::fs::remove_file(&marker);
}

#[test]
fn an_exception_fails_its_requests_and_a_killed_process_is_started_again() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    let runtime = Arc::new(load("add_sub", &python).expect("add_sub loads"));

    let e = add_sub(&runtime, [-1.0, 0.0, 0.0, 0.0], [0.0; 4]).unwrap_err();
    assert!(
        e.contains("ValueError: INPUT0 starts with -1") && e.contains("model.py, line"),
        "{e}"
    );
    let ok = add_sub(&runtime, [1.0; 4], [1.0; 4]).unwrap();
    assert_eq!(ok.sum, [2.0; 4]);

    // A request in flight when its process is killed fails; the next ones are answered.
    let slow = {
        let runtime = runtime.clone();
        std::thread::spawn(move || add_sub(&runtime, [-2.0, 0.0, 0.0, 0.0], [0.0; 4]))
    };
    std::thread::sleep(Duration::from_millis(1000));
    let pids = python_children();
    assert_eq!(pids.len(), 2, "two instance processes: {pids:?}");
    for pid in &pids {
        // SAFETY: kill(2) on this test process's own children.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let e = slow.join().unwrap().unwrap_err();
    assert!(e.contains("killed by signal 9"), "{e}");
    let started = Instant::now();
    let again = add_sub(&runtime, [3.0; 4], [1.0; 4]).unwrap();
    assert_eq!(again.sum, [4.0; 4]);
    assert!(
        !pids.contains(&(again.pid as i32)),
        "a new process answered"
    );
    eprintln!(
        "answered by a new process {:?} after the kill",
        started.elapsed()
    );
}

#[test]
fn business_logic_scripting_calls_other_models_of_the_repository() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    let runtime = load("bls", &python).expect("bls loads");
    let run = |a: Vec<f32>, b: Vec<f32>| {
        runtime
            .infer(
                InferRequest::new("INPUT0", vec![2, 4], a).with_input("INPUT1", vec![2, 4], b),
                |views| {
                    let get = |name: &str| {
                        views
                            .iter()
                            .find(|v| v.name == name)
                            .map(|v| (v.shape.to_vec(), v.data.to_vec()))
                    };
                    (get("OUTPUT0"), get("OUTPUT1"))
                },
            )
            .map_err(|e| e.to_string())
    };
    let a: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let b = vec![0.5f32; 8];
    let (sum, diff) = run(a.clone(), b.clone()).unwrap();
    assert_eq!(sum, Some((vec![2, 4], a.iter().map(|x| x + 0.5).collect())));
    assert_eq!(
        diff,
        Some((vec![2, 4], a.iter().map(|x| x - 0.5).collect()))
    );
    // async_exec from an async execute.
    let mut a4 = a.clone();
    a4[0] = -4.0;
    let (sum, _) = run(a4, b.clone()).unwrap();
    assert_eq!(sum.unwrap().1[0], -3.5);
    // A model that does not exist: the error response reaches the caller.
    let mut a3 = a;
    a3[0] = -3.0;
    let e = run(a3, b).unwrap_err();
    assert!(e.contains("no_such_model"), "{e}");
}

#[test]
fn a_syntax_error_fails_the_load_naming_file_and_line() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    let e = load("broken", &python).unwrap_err();
    assert!(
        e.contains("SyntaxError") && e.contains("broken/1/model.py, line 4"),
        "{e}"
    );
}

#[test]
fn a_missing_interpreter_is_a_clear_load_error() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let e = load("add_sub", Path::new("/nonexistent/python3")).unwrap_err();
    assert!(
        e.contains("cannot start the Python interpreter /nonexistent/python3"),
        "{e}"
    );
}

/// This test process's children running the stub.
fn python_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned));
        let cmd = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
        if ppid.as_deref() == Some(me.as_str()) && cmd.contains("vigil_python_stub.py") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn execution_env_path_names_the_models_own_environment() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    // The model's folder holds its environment (here a link to the venv), named as Triton documents:
    // `$$TRITON_MODEL_DIRECTORY/env`; the process-wide interpreter is one that does not exist.
    let venv = python.parent().and_then(Path::parent).expect("venv folder");
    let repo = std::env::temp_dir().join(format!("vigil-py-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    let model = repo.join("add_sub");
    std::fs::create_dir_all(model.join("1")).unwrap();
    std::fs::copy(
        models().join("add_sub/1/model.py"),
        model.join("1/model.py"),
    )
    .unwrap();
    let config = std::fs::read_to_string(models().join("add_sub/config.pbtxt")).unwrap()
        + "parameters { key: \"EXECUTION_ENV_PATH\" value { string_value: \"$$TRITON_MODEL_DIRECTORY/env\" } }\n";
    std::fs::write(model.join("config.pbtxt"), config).unwrap();
    std::os::unix::fs::symlink(venv, model.join("env")).unwrap();
    // SAFETY: see `load`.
    unsafe { std::env::set_var("VIGIL_PYTHON_BACKEND_INTERPRETER", "/nonexistent/python3") };
    let loaded = ModelRepository::open(&repo)
        .unwrap()
        .load("add_sub", None)
        .unwrap();
    let runtime = ModelRuntime::load(&loaded).expect("loads with the model's own environment");
    let one = add_sub(&runtime, [1.0; 4], [2.0; 4]).unwrap();
    assert_eq!(one.sum, [3.0; 4]);
    drop(runtime);
    // A path that is not an environment is a load error naming the parameter.
    std::fs::remove_file(model.join("env")).unwrap();
    std::fs::create_dir(model.join("env")).unwrap();
    let loaded = ModelRepository::open(&repo)
        .unwrap()
        .load("add_sub", None)
        .unwrap();
    let e = ModelRuntime::load(&loaded).unwrap_err().to_string();
    assert!(
        e.contains("EXECUTION_ENV_PATH") && e.contains("no bin/python3"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&repo);
}

/// What a decoupled request got: each response's OUT (or error text), and whether the last call
/// was final without outputs.
#[derive(Debug, Default)]
struct Streamed {
    outs: Vec<Result<Vec<i32>, String>>,
    final_alone: bool,
}

/// Sends IN = [n] to a decoupled runtime and collects its responses until the final one.
fn stream(runtime: &ModelRuntime, n: i32) -> Streamed {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime
        .infer_decoupled(
            InferRequest::new("IN", vec![1], vigil_engine::TensorData::Int32(vec![n])),
            Box::new(move |result, last| {
                let out = result
                    .map(|views| {
                        views.iter().find(|v| v.name == "OUT").map(|v| match v.raw {
                            TensorSlice::Int32(x) => x.to_vec(),
                            _ => panic!("OUT type"),
                        })
                    })
                    .map_err(|e| e.to_string());
                let _ = tx.send((out, last));
            }),
        )
        .expect("queued");
    let mut got = Streamed::default();
    loop {
        let (out, last) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a final response within 30 s");
        match out {
            Ok(Some(o)) => got.outs.push(Ok(o)),
            Ok(None) if last => got.final_alone = true,
            Ok(None) => got.outs.push(Ok(Vec::new())),
            Err(e) => got.outs.push(Err(e)),
        }
        if last {
            return got;
        }
    }
}

#[test]
fn a_decoupled_model_sends_any_number_of_responses_from_its_own_threads() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    let runtime = Arc::new(load("repeat", &python).expect("repeat loads"));
    assert!(runtime.decoupled());

    let three = stream(&runtime, 3);
    assert_eq!(three.outs, [Ok(vec![0]), Ok(vec![1]), Ok(vec![2])]);
    assert!(three.final_alone, "{three:?}");
    let none = stream(&runtime, 0);
    assert!(none.outs.is_empty() && none.final_alone, "{none:?}");

    // Requests in parallel, each answered in full by its own thread of the one instance.
    let handles: Vec<_> = (1..=6)
        .map(|n| {
            let runtime = runtime.clone();
            std::thread::spawn(move || (n, stream(&runtime, n)))
        })
        .collect();
    for h in handles {
        let (n, got) = h.join().unwrap();
        let want: Vec<Result<Vec<i32>, String>> = (0..n).map(|k| Ok(vec![k])).collect();
        assert_eq!(got.outs, want, "IN {n}");
    }

    // An error response, and execute raising: each request gets its error as its final call.
    let error = stream(&runtime, -1);
    assert!(
        matches!(error.outs.as_slice(), [Err(e)] if e.contains("IN is -1")),
        "{error:?}"
    );
    let raised = stream(&runtime, -2);
    assert!(
        matches!(raised.outs.as_slice(), [Err(e)] if e.contains("ValueError: IN is -2") && e.contains("model.py, line")),
        "{raised:?}"
    );
    assert_eq!(stream(&runtime, 2).outs.len(), 2, "still answering");

    // A plain request cannot take a decoupled model's responses: the error says where to go.
    let e = runtime
        .infer(
            InferRequest::new("IN", vec![1], vigil_engine::TensorData::Int32(vec![1])),
            |_| (),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("decoupled") && e.contains("ModelStreamInfer"),
        "{e}"
    );

    // The process killed while a request still has responses to send: the request fails with
    // the reason, the instance starts again and answers the next ones.
    let long = {
        let runtime = runtime.clone();
        std::thread::spawn(move || stream(&runtime, 200))
    };
    std::thread::sleep(Duration::from_millis(500));
    for pid in python_children() {
        // SAFETY: kill(2) on this test process's own children.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let cut = long.join().unwrap();
    let last = cut.outs.last().cloned();
    assert!(
        cut.outs.len() > 2
            && matches!(&last, Some(Err(e)) if e.contains("ended before its final response")),
        "{} responses, last {last:?}",
        cut.outs.len()
    );
    assert_eq!(
        stream(&runtime, 3).outs.len(),
        3,
        "answered after a restart"
    );
    let metrics = vigil_engine::python::metrics_text();
    assert!(
        metrics.contains("vigil_python_backend_restarts_total{model=\"repeat\",version=\"1\",instance=\"repeat_0_0\"} 1"),
        "{metrics}"
    );
}

#[test]
fn business_logic_scripting_collects_every_response_of_a_decoupled_model() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    let runtime = load("repeat_sum", &python).expect("repeat_sum loads");
    let run = |n: i32| {
        runtime
            .infer(
                InferRequest::new("IN", vec![1], vigil_engine::TensorData::Int32(vec![n])),
                |views| {
                    let get =
                        |name: &str| match views.iter().find(|v| v.name == name).map(|v| v.raw) {
                            Some(TensorSlice::Int32(x)) => x[0],
                            other => panic!("{name}: {other:?}"),
                        };
                    (get("SUM"), get("COUNT"))
                },
            )
            .map_err(|e| e.to_string())
    };
    // Four responses and the final flag alone, which BLS gives as an empty last response.
    assert_eq!(run(4).unwrap(), (6, 5));
    assert_eq!(run(0).unwrap(), (0, 1));
    let e = run(-1).unwrap_err();
    assert!(e.contains("IN is -1"), "{e}");
    // The model's own metric families, as the server's /metrics shows them.
    let metrics = vigil_engine::python::metrics_text();
    for line in [
        "# HELP vigil_test_bls_calls Requests repeat_sum answered",
        "# TYPE vigil_test_bls_calls counter",
        "vigil_test_bls_calls{model=\"repeat_sum\"} 2",
        "# TYPE vigil_test_last_sum gauge",
        "vigil_test_last_sum{model=\"repeat_sum\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

#[test]
fn auto_complete_config_gives_a_model_without_config_pbtxt_its_configuration() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    vigil_engine::python::register_autocomplete();
    let runtime = load("auto_add_sub", &python).expect("auto_add_sub loads without config.pbtxt");
    let config = runtime.config();
    assert_eq!(config.backend, "python");
    assert_eq!(config.max_batch_size, 4);
    assert!(config.dynamic_batching.is_some());
    let names: Vec<&str> = config.input.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["INPUT0", "INPUT1"]);
    assert_eq!(config.output[0].dims, [4]);
    let sum = runtime
        .infer(request([1.0, 2.0, 3.0, 4.0], [1.0; 4]), |views| {
            (views[0].shape.to_vec(), views[0].data.to_vec())
        })
        .unwrap();
    assert_eq!(sum, (vec![1, 4], vec![2.0, 3.0, 4.0, 5.0]));
    drop(runtime);

    // auto_complete_config raising: the load fails with the model's message, file and line (a
    // copy of the model: answers are remembered per file and configuration).
    let repo = std::env::temp_dir().join(format!("vigil-py-auto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(repo.join("auto_add_sub/1")).unwrap();
    std::fs::copy(
        models().join("auto_add_sub/1/model.py"),
        repo.join("auto_add_sub/1/model.py"),
    )
    .unwrap();
    // SAFETY: see `load`.
    unsafe { std::env::set_var("VIGIL_TEST_AUTO_COMPLETE_FAILS", "1") };
    let e = ModelRepository::open(&repo)
        .unwrap()
        .load("auto_add_sub", None)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    // SAFETY: see `load`.
    unsafe { std::env::remove_var("VIGIL_TEST_AUTO_COMPLETE_FAILS") };
    let _ = std::fs::remove_dir_all(&repo);
    assert!(
        e.contains("ValueError: no configuration today") && e.contains("model.py, line"),
        "{e}"
    );
}

#[test]
fn a_changed_model_py_is_reloaded_by_polling_into_a_new_process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = python() else { return };
    // SAFETY: see `load`.
    unsafe { std::env::set_var("VIGIL_PYTHON_BACKEND_INTERPRETER", &python) };
    let repo = std::env::temp_dir().join(format!("vigil-py-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(repo.join("add_sub/1")).unwrap();
    let config = std::fs::read_to_string(models().join("add_sub/config.pbtxt")).unwrap();
    std::fs::write(repo.join("add_sub/config.pbtxt"), config).unwrap();
    let code = std::fs::read_to_string(models().join("add_sub/1/model.py")).unwrap();
    let file = repo.join("add_sub/1/model.py");
    std::fs::write(&file, &code).unwrap();

    let server = vigil_engine::ModelServer::global();
    let handle = server
        .acquire(&repo, "add_sub", None)
        .expect("add_sub loads");
    let _polling = server
        .poll(&handle, Duration::from_secs(3600))
        .expect("polling starts");
    let before = add_sub(&handle.current(), [1.0; 4], [2.0; 4]).unwrap();
    assert_eq!(before.sum, [3.0; 4]);

    // The model's code changes (OUTPUT0 = a + b + 100): the next poll loads it in new processes.
    let changed = code.replacen("(a + b).astype", "(a + b + 100).astype", 1);
    assert_ne!(changed, code);
    std::fs::write(&file, changed).unwrap();
    server.poll_now();
    let after = add_sub(&handle.current(), [1.0; 4], [2.0; 4]).unwrap();
    assert_eq!(after.sum, [103.0; 4], "the new model.py answers");
    assert_ne!(after.pid, before.pid, "in a process of the new runtime");
    let events = server.events();
    assert!(
        events.iter().any(|e| e.model == "add_sub" && e.ok),
        "{events:?}"
    );
    drop(handle);
    let _ = std::fs::remove_dir_all(&repo);
}
