//! Tests of the engine with real ONNX Runtime sessions: a tiny generated model for the scheduling
//! rules, NanoDet and CenterNet from the repository (skipped when not installed) for batching,
//! instances and sharing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::testmodel::{
    affine_model, half_model, simple_model, simple_string_model, string_identity_model,
    typed_model, write_affine, write_version,
};
use super::*;
use crate::runtime::{self, OnnxModel};
use vigil_modelrepo::{DynamicBatching, InstanceGroup, InstanceKind, LoadedModel, ModelConfig};

/// NanoDet/CenterNet tests take the cores; run them one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn ort_available() -> bool {
    match runtime::environment() {
        Ok(_) => true,
        Err(e) => {
            println!("SKIPPED: ONNX Runtime is not available: {e}");
            false
        }
    }
}

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The repository entry `name`, or `None` (with a SKIPPED line) when its weights are missing.
fn repo_model(name: &str) -> Option<LoadedModel> {
    if !ort_available() {
        return None;
    }
    let file = models_dir().join(name).join("1/model.onnx");
    if !file.is_file() {
        println!(
            "SKIPPED: {} is not installed (run `make setup`)",
            file.display()
        );
        return None;
    }
    // The configuration as written (the repository's validation is tested elsewhere).
    let dir = models_dir().join(name);
    let mut config =
        ModelConfig::from_file(&dir.join("config.pbtxt")).unwrap_or_else(|e| panic!("{e}"));
    config.set_name(name);
    Some(LoadedModel {
        name: name.into(),
        version: 1,
        dir,
        model_path: file,
        config,
        labels: Vec::new(),
    })
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-engine-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The tiny `affine` model (`x [N,D]` → `y = 2x+1`, `z = x²`) with the configuration `config_text`.
fn affine(tag: &str, config_text: &str) -> Option<LoadedModel> {
    if !ort_available() {
        return None;
    }
    let dir = temp_dir(tag);
    let model_path = write_affine(&dir, "affine");
    let config = ModelConfig::parse(
        &format!("name: \"affine\"\n{config_text}"),
        &dir.join("affine/config.pbtxt"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Some(LoadedModel {
        name: "affine".into(),
        version: 1,
        dir: dir.join("affine"),
        model_path,
        config,
        labels: Vec::new(),
    })
}

fn affine_request(values: &[f32]) -> InferRequest {
    InferRequest::new("x", vec![values.len() as i64], values.to_vec())
}

/// Blocks sessions on inputs whose second value is 1 until opened; logs executed ids (first values).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    waiting: AtomicUsize,
    executed: Mutex<Vec<i64>>,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }

    fn wait_until(&self, what: &str, cond: impl Fn(&Gate) -> bool) {
        let t = Instant::now();
        while !cond(self) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn executed(&self) -> Vec<i64> {
        self.executed.lock().unwrap().clone()
    }
}

struct GatedSession {
    inner: OnnxModel,
    gate: Arc<Gate>,
}

impl InferSession for GatedSession {
    fn inputs(&self) -> &[crate::runtime::IoInfo] {
        self.inner.inputs()
    }

    fn outputs(&self) -> &[crate::runtime::IoInfo] {
        self.inner.outputs()
    }

    fn run(
        &mut self,
        inputs: &[(&str, &[i64], crate::TensorSlice<'_>)],
        f: &mut dyn FnMut(&[crate::TensorView<'_>]),
    ) -> Result<(), crate::runtime::RuntimeError> {
        let (_, shape, crate::TensorSlice::Fp32(data)) = inputs[0] else {
            panic!("the gated session takes f32");
        };
        let n = shape[0].max(1) as usize;
        let per = data.len() / n;
        let ids: Vec<i64> = (0..n).map(|i| data[i * per] as i64).collect();
        if (0..n).any(|i| data[i * per + 1] == 1.0) {
            self.gate.waiting.fetch_add(1, Ordering::SeqCst);
            let mut open = self.gate.open.lock().unwrap();
            while !*open {
                open = self.gate.cv.wait(open).unwrap();
            }
        }
        let gate = &self.gate;
        self.inner.run_named(inputs, |views| {
            // Logged before the responses are delivered.
            gate.executed.lock().unwrap().extend(ids);
            f(views)
        })
    }
}

fn gated_factory(gate: Arc<Gate>) -> SessionFactory {
    Arc::new(move |path: &Path, options| {
        Ok(Box::new(GatedSession {
            inner: OnnxModel::load_with(path, options)?,
            gate: gate.clone(),
        }) as Box<dyn InferSession>)
    })
}

/// A response closure that records the id of its request (decoded from `y = 2x+1`).
fn record_id(
    order: &Arc<Mutex<Vec<i64>>>,
) -> impl FnOnce(&[crate::TensorView]) -> i64 + Send + 'static {
    let order = order.clone();
    move |views| {
        let id = ((views[0].data[0] - 1.0) / 2.0).round() as i64;
        order.lock().unwrap().push(id);
        id
    }
}

#[test]
fn batch_outputs_are_sliced_per_request() {
    let Some(m) = affine(
        "slice",
        "max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 5000000 }",
    ) else {
        return;
    };
    let rt = ModelRuntime::load(&m).unwrap();
    assert_eq!(rt.max_batch_size(), 4);
    assert!(rt.dynamic_batching());
    let pending: Vec<_> = (0..4)
        .map(|i| {
            let x = [i as f32, 10.0 + i as f32, -(i as f32)];
            rt.infer_async(affine_request(&x), move |views| {
                assert_eq!(views.len(), 2);
                for v in views {
                    assert_eq!(v.shape, &[1, 3], "output {}", v.name);
                }
                let want_y: Vec<f32> = x.iter().map(|v| 2.0 * v + 1.0).collect();
                let want_z: Vec<f32> = x.iter().map(|v| v * v).collect();
                (
                    views[0].data == want_y.as_slice(),
                    views[1].data == want_z.as_slice(),
                )
            })
            .unwrap()
        })
        .collect();
    for p in pending {
        assert_eq!(p.wait().unwrap(), (true, true));
    }
    let s = rt.stats();
    // Four requests fill max_batch_size at once: no waiting for the 5 s delay.
    assert_eq!(s.batch_sizes, [(4, 1)].into_iter().collect());
    assert_eq!((s.requests, s.failures, s.executions), (4, 0, 1));
    assert_eq!(s.queue_time.count, 4);
    assert_eq!(s.compute_time.count, 1);
}

#[test]
fn different_shapes_go_to_different_batches() {
    let Some(m) = affine(
        "shapes",
        "max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 100000 }",
    ) else {
        return;
    };
    let gate = Arc::new(Gate::default());
    let rt = ModelRuntime::load_with_factory(&m, gated_factory(gate.clone())).unwrap();
    // Hold the instance so the four requests queue together.
    let first = rt
        .infer_async(affine_request(&[0.0, 1.0, 0.0]), |_| ())
        .unwrap();
    gate.wait_until("the first request to run", |g| {
        g.waiting.load(Ordering::SeqCst) == 1
    });
    let mut pending = Vec::new();
    for (id, d) in [(1, 3), (2, 3), (3, 5), (4, 5)] {
        let mut x = vec![0.0; d];
        x[0] = id as f32;
        pending.push(
            rt.infer_async(affine_request(&x), move |views| views[0].shape.to_vec())
                .unwrap(),
        );
    }
    gate.open();
    first.wait().unwrap();
    let shapes: Vec<Vec<usize>> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(shapes, vec![vec![1, 3], vec![1, 3], vec![1, 5], vec![1, 5]]);
    let s = rt.stats();
    assert_eq!(s.batch_sizes, [(1, 1), (2, 2)].into_iter().collect());
}

#[test]
fn priority_request_runs_before_earlier_low_priority_ones() {
    let Some(m) = affine(
        "priority",
        "max_batch_size: 1\n\
         dynamic_batching { priority_levels: 2 default_priority_level: 2 }\n\
         instance_group [ { count: 1, kind: KIND_CPU } ]",
    ) else {
        return;
    };
    let gate = Arc::new(Gate::default());
    let rt = ModelRuntime::load_with_factory(&m, gated_factory(gate.clone())).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    // Request 0 keeps the only instance busy until the gate opens.
    let busy = rt
        .infer_async(affine_request(&[0.0, 1.0, 0.0]), record_id(&order))
        .unwrap();
    gate.wait_until("request 0 to run", |g| {
        g.waiting.load(Ordering::SeqCst) == 1
    });
    let mut pending = Vec::new();
    for id in 1..=3 {
        pending.push(
            rt.infer_async(affine_request(&[id as f32, 0.0, 0.0]), record_id(&order))
                .unwrap(),
        );
    }
    let high = rt
        .infer_async(
            affine_request(&[9.0, 0.0, 0.0]).with_priority(1),
            record_id(&order),
        )
        .unwrap();
    gate.open();
    assert_eq!(busy.wait().unwrap(), 0);
    assert_eq!(high.wait().unwrap(), 9);
    for p in pending {
        p.wait().unwrap();
    }
    assert_eq!(gate.executed(), vec![0, 9, 1, 2, 3]);
    assert_eq!(*order.lock().unwrap(), vec![0, 9, 1, 2, 3]);
}

/// Runs request 0 on a held instance and 1..=3 on the other; returns the order the responses came in.
fn out_of_order_run(preserve: bool) -> Option<(Vec<i64>, Vec<i64>, ModelStats)> {
    let m = affine(
        &format!("order-{preserve}"),
        &format!(
            "max_batch_size: 1\n\
             dynamic_batching {{ preserve_ordering: {preserve} }}\n\
             instance_group [ {{ count: 2, kind: KIND_CPU }} ]"
        ),
    )?;
    let gate = Arc::new(Gate::default());
    let rt = ModelRuntime::load_with_factory(&m, gated_factory(gate.clone())).unwrap();
    assert_eq!(rt.instances().len(), 2);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut pending = vec![
        rt.infer_async(affine_request(&[0.0, 1.0, 0.0]), record_id(&order))
            .unwrap(),
    ];
    gate.wait_until("request 0 to run", |g| {
        g.waiting.load(Ordering::SeqCst) == 1
    });
    for id in 1..=3 {
        pending.push(
            rt.infer_async(affine_request(&[id as f32, 0.0, 0.0]), record_id(&order))
                .unwrap(),
        );
    }
    // The free instance finishes 1, 2, 3 while 0 is still held.
    gate.wait_until("requests 1..3 to finish", |g| g.executed().len() == 3);
    let before_open = order.lock().unwrap().clone();
    gate.open();
    for (id, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait().unwrap(), id as i64);
    }
    assert_eq!(gate.executed(), vec![1, 2, 3, 0]);
    let after = order.lock().unwrap().clone();
    Some((before_open, after, rt.stats()))
}

#[test]
fn preserve_ordering_releases_responses_in_arrival_order() {
    let Some((before_open, order, stats)) = out_of_order_run(true) else {
        return;
    };
    assert!(
        before_open.is_empty(),
        "responses 1..3 must wait for 0: {before_open:?}"
    );
    assert_eq!(order, vec![0, 1, 2, 3]);
    assert_eq!(stats.reordered, 3);
    let per_instance: Vec<u64> = stats.instances.iter().map(|i| i.executions).collect();
    assert_eq!(per_instance.iter().sum::<u64>(), 4);
    assert!(per_instance.iter().all(|&e| e > 0), "{per_instance:?}");

    // Without preserve_ordering the responses come as the executions finish.
    let Some((before_open, order, stats)) = out_of_order_run(false) else {
        return;
    };
    assert_eq!(before_open, vec![1, 2, 3]);
    assert_eq!(order, vec![1, 2, 3, 0]);
    assert_eq!(stats.reordered, 0);
}

#[test]
fn unbatched_model_takes_full_shapes() {
    let Some(m) = affine("unbatched", "max_batch_size: 0") else {
        return;
    };
    let rt = ModelRuntime::load(&m).unwrap();
    assert_eq!(rt.max_batch_size(), 0);
    let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let (shape, y) = rt
        .infer(InferRequest::new("x", vec![2, 3], x.clone()), |views| {
            (views[0].shape.to_vec(), views[0].data.to_vec())
        })
        .unwrap();
    assert_eq!(shape, vec![2, 3]);
    assert_eq!(y, x.iter().map(|v| 2.0 * v + 1.0).collect::<Vec<_>>());
}

#[test]
fn bad_requests_are_refused_with_reasons() {
    let Some(m) = affine("bad", "max_batch_size: 4") else {
        return;
    };
    let rt = ModelRuntime::load(&m).unwrap();
    let err = |req: InferRequest| rt.infer(req, |_| ()).unwrap_err().to_string();
    let e = err(InferRequest::new("nope", vec![3], vec![0.0; 3]));
    assert!(
        e.contains("'nope' is not an input") && e.contains("inputs: x"),
        "{e}"
    );
    assert!(
        e.starts_with("model 'affine' version 1: bad request"),
        "{e}"
    );
    let e = err(InferRequest::new("x", vec![3], vec![0.0; 4]));
    assert!(e.contains("holds 3 values but 4 were given"), "{e}");
    let e = err(InferRequest::new("x", vec![1, 3], vec![0.0; 3]));
    assert!(e.contains("without the batch dimension"), "{e}");
    let e = err(affine_request(&[1.0]).with_input("x", vec![1], vec![1.0]));
    assert!(e.contains("given twice"), "{e}");
    let e = err(InferRequest::default());
    assert!(e.contains("input 'x' is missing"), "{e}");
    assert_eq!(rt.stats().requests, 0);
}

#[test]
fn panicking_response_closure_loses_only_its_response() {
    let Some(m) = affine("panic", "max_batch_size: 4") else {
        return;
    };
    let rt = ModelRuntime::load(&m).unwrap();
    let e = rt
        .infer(affine_request(&[1.0]), |_| -> () {
            panic!("test panic (expected)")
        })
        .unwrap_err();
    assert!(matches!(e, EngineError::ResponseLost { .. }), "{e}");
    assert_eq!(
        rt.infer(affine_request(&[1.0]), |v| v[0].data[0]).unwrap(),
        3.0
    );
}

#[test]
fn shutdown_runs_queued_requests_then_refuses() {
    let Some(m) = affine(
        "shutdown",
        "max_batch_size: 2\ndynamic_batching { max_queue_delay_microseconds: 10000000 }",
    ) else {
        return;
    };
    let gate = Arc::new(Gate::default());
    let rt = ModelRuntime::load_with_factory(&m, gated_factory(gate.clone())).unwrap();
    let mut pending = vec![
        rt.infer_async(affine_request(&[0.0, 1.0]), |v| v[0].data[0])
            .unwrap(),
    ];
    gate.wait_until("request 0 to run", |g| {
        g.waiting.load(Ordering::SeqCst) == 1
    });
    for id in 1..=3 {
        pending.push(
            rt.infer_async(affine_request(&[id as f32, 0.0]), |v| v[0].data[0])
                .unwrap(),
        );
    }
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            gate.open();
        })
    };
    let t = Instant::now();
    rt.shutdown();
    // The queued requests ran (without waiting for the 10 s queue delay of the last, lone one).
    assert!(t.elapsed() < Duration::from_secs(5));
    opener.join().unwrap();
    let got: Vec<f32> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(got, vec![1.0, 3.0, 5.0, 7.0]);
    let e = rt.infer(affine_request(&[1.0, 0.0]), |_| ()).unwrap_err();
    assert!(matches!(e, EngineError::ShuttingDown { .. }), "{e}");
}

#[test]
fn gpu_instances_fall_back_to_cpu_and_load_errors_name_the_instance() {
    let Some(m) = affine(
        "gpu",
        "max_batch_size: 2\n\
         instance_group [ { name: \"g\", count: 1, kind: KIND_GPU } ]\n\
         optimization { execution_accelerators { gpu_execution_accelerator [ { name: \"tensorrt\" } ] \
         cpu_execution_accelerator [ { name: \"no_such_accelerator\" } ] } }",
    ) else {
        return;
    };
    let rt = ModelRuntime::load(&m).unwrap();
    let inst = &rt.instances()[0];
    assert_eq!(inst.name, "g_0");
    assert_eq!(inst.kind, InstanceKind::Gpu);
    assert_eq!(
        inst.requested_provider,
        runtime::ExecutionProvider::TensorRt
    );
    if !runtime::ExecutionProvider::TensorRt.is_available() {
        assert_eq!(inst.provider, runtime::ExecutionProvider::Cpu);
        assert!(
            runtime::issued_warnings()
                .iter()
                .any(|w| w.contains("TensorRT execution provider")),
            "{:?}",
            runtime::issued_warnings()
        );
    }
    assert_eq!(
        rt.infer(affine_request(&[1.0]), |v| v[0].data[0]).unwrap(),
        3.0
    );

    let mut broken = m.clone();
    broken.model_path = m.dir.join("1/missing.onnx");
    let e = ModelRuntime::load(&broken).unwrap_err().to_string();
    assert!(
        e.contains("model 'affine' version 1: instance g_0 failed to load")
            && e.contains("missing.onnx"),
        "{e}"
    );
}

#[test]
fn instance_groups_and_thread_parameter() {
    let Some(m) = affine(
        "groups",
        "max_batch_size: 2\n\
         instance_group [ { count: 2, kind: KIND_CPU }, { name: \"b\", kind: KIND_AUTO } ]\n\
         parameters { key: \"vigil.intra_op_threads\" value { string_value: \"1\" } }",
    ) else {
        return;
    };
    let rt = ModelRuntime::load(&m).unwrap();
    let names: Vec<&str> = rt.instances().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["affine_0_0", "affine_0_1", "b_0"]);
    assert!(rt.instances().iter().all(|i| i.intra_threads == 1));
    assert!(rt.instances().iter().all(|i| !i.intra_op_spinning));
    assert!(
        rt.instances()
            .iter()
            .all(|i| i.provider == runtime::ExecutionProvider::Cpu)
    );

    let mut bad = m.clone();
    bad.config
        .parameters
        .insert(INTRA_OP_THREADS_PARAMETER.into(), "many".into());
    let e = ModelRuntime::load(&bad).unwrap_err().to_string();
    assert!(e.contains("vigil.intra_op_threads: 'many'"), "{e}");

    let mut spin = m.clone();
    spin.config
        .parameters
        .insert(INTRA_OP_SPINNING_PARAMETER.into(), "True".into());
    let rt = ModelRuntime::load(&spin).unwrap();
    assert!(rt.instances().iter().all(|i| i.intra_op_spinning));
    spin.config
        .parameters
        .insert(INTRA_OP_SPINNING_PARAMETER.into(), "sometimes".into());
    let e = ModelRuntime::load(&spin).unwrap_err().to_string();
    assert!(e.contains("vigil.intra_op_spinning: 'sometimes'"), "{e}");
}

// ---- NanoDet / CenterNet -------------------------------------------------------------------

const NANODET_INPUT: &str = "input_1:0";

/// A fixed pseudo-random NanoDet input (values roughly as after mean/std normalisation).
fn nanodet_input(seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..3 * 416 * 416)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn with_batching(
    m: &LoadedModel,
    max_batch: i32,
    db: Option<DynamicBatching>,
    instances: i32,
) -> LoadedModel {
    let mut m = m.clone();
    m.config.max_batch_size = max_batch;
    m.config.dynamic_batching = db;
    m.config.instance_group = vec![InstanceGroup {
        kind: InstanceKind::Cpu,
        count: instances,
        ..InstanceGroup::default()
    }];
    m
}

type Outputs = Vec<(Vec<usize>, Vec<f32>)>;

#[test]
fn nanodet_dynamic_batching_forms_real_batches_with_batch1_results() {
    let Some(m) = repo_model("nanodet") else {
        return;
    };
    let _heavy = heavy();
    const THREADS: usize = 8;
    const PER_THREAD: usize = 30;
    const DISTINCT: usize = 8;
    let inputs: Arc<Vec<Vec<f32>>> = Arc::new((0..DISTINCT as u64).map(nanodet_input).collect());
    let item_shape = vec![3i64, 416, 416];

    // Batch-1 reference outputs.
    let reference: Arc<Vec<Outputs>> = {
        let rt = ModelRuntime::load(&with_batching(&m, 8, None, 1)).unwrap();
        assert!(!rt.dynamic_batching());
        let refs = inputs
            .iter()
            .map(|x| {
                rt.infer(
                    InferRequest::new(NANODET_INPUT, item_shape.clone(), x.clone()),
                    |views| -> Outputs {
                        views
                            .iter()
                            .map(|v| (v.shape.to_vec(), v.data.to_vec()))
                            .collect()
                    },
                )
                .unwrap()
            })
            .collect();
        assert_eq!(
            rt.stats().batch_sizes,
            [(1, DISTINCT as u64)].into_iter().collect()
        );
        Arc::new(refs)
    };

    let db = DynamicBatching {
        max_queue_delay_microseconds: 20_000,
        ..DynamicBatching::default()
    };
    let rt = Arc::new(ModelRuntime::load(&with_batching(&m, 8, Some(db), 1)).unwrap());
    let t = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let rt = rt.clone();
            let inputs = inputs.clone();
            let reference = reference.clone();
            let item_shape = item_shape.clone();
            std::thread::spawn(move || {
                let mut worst = 0.0f32;
                for j in 0..PER_THREAD {
                    let k = (thread + j) % DISTINCT;
                    let reference = reference.clone();
                    let req =
                        InferRequest::new(NANODET_INPUT, item_shape.clone(), inputs[k].clone());
                    let diff = rt
                        .infer(req, move |views| {
                            let want = &reference[k];
                            assert_eq!(views.len(), want.len());
                            let mut worst = 0.0f32;
                            for (v, (shape, data)) in views.iter().zip(want) {
                                assert_eq!(v.shape, shape.as_slice(), "output {}", v.name);
                                for (a, b) in v.data.iter().zip(data) {
                                    worst = worst.max((a - b).abs() / b.abs().max(1.0));
                                }
                            }
                            worst
                        })
                        .unwrap();
                    worst = worst.max(diff);
                }
                worst
            })
        })
        .collect();
    let worst = threads
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold(0.0f32, f32::max);
    let elapsed = t.elapsed();
    let s = rt.stats();
    println!(
        "nanodet dynamic batching: {} requests in {:.2} s ({:.1}/s), {} executions, batch sizes {:?}, \
         mean batch {:.2}, mean queue {:?}, mean compute {:?}, max relative difference to batch 1: {worst:e}",
        s.requests,
        elapsed.as_secs_f64(),
        s.requests as f64 / elapsed.as_secs_f64(),
        s.executions,
        s.batch_sizes,
        s.mean_batch_size(),
        s.queue_time.mean(),
        s.compute_time.mean(),
    );
    assert_eq!(s.requests, (THREADS * PER_THREAD) as u64);
    assert_eq!(s.failures, 0);
    assert_eq!(
        s.batch_sizes
            .iter()
            .map(|(b, c)| *b as u64 * c)
            .sum::<u64>(),
        s.requests
    );
    assert!(
        s.mean_batch_size() > 4.0,
        "mean batch size {}",
        s.mean_batch_size()
    );
    assert!(
        worst < 1e-4,
        "batched results differ from batch 1 by {worst}"
    );
}

#[test]
fn nanodet_two_instances_run_concurrently() {
    let Some(m) = repo_model("nanodet") else {
        return;
    };
    let _heavy = heavy();
    let rt = Arc::new(ModelRuntime::load(&with_batching(&m, 8, None, 2)).unwrap());
    assert_eq!(rt.instances().len(), 2);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        rt.instances()
            .iter()
            .all(|i| i.intra_threads == (cores / 2).max(1))
    );
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                for j in 0..3 {
                    let req = InferRequest::new(
                        NANODET_INPUT,
                        vec![3, 416, 416],
                        nanodet_input(t * 10 + j),
                    );
                    rt.infer(req, |views| views.len()).unwrap();
                }
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    let s = rt.stats();
    assert_eq!(s.executions, 6);
    assert!(
        s.instances.iter().all(|i| i.executions > 0),
        "{:?}",
        s.instances
    );
    let overlaps = s.overlapping_intervals();
    let t0 = s
        .instances
        .iter()
        .flat_map(|i| i.intervals.iter().map(|iv| iv.0))
        .min()
        .unwrap();
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
    for inst in &s.instances {
        let iv: Vec<String> = inst
            .intervals
            .iter()
            .map(|&(a, b)| format!("{:.1}-{:.1}", ms(a), ms(b)))
            .collect();
        println!(
            "instance {} compute intervals (ms): {}",
            inst.name,
            iv.join(", ")
        );
    }
    let Some(&(a, b, x, y)) = overlaps.first() else {
        panic!("no overlapping compute intervals: {:?}", s.instances);
    };
    println!(
        "{} overlapping interval pairs, e.g. {} {:.1}-{:.1} ms and {} {:.1}-{:.1} ms",
        overlaps.len(),
        s.instances[a].name,
        ms(x.0),
        ms(x.1),
        s.instances[b].name,
        ms(y.0),
        ms(y.1)
    );
}

#[test]
fn centernet_unbatched_model_runs_request_by_request() {
    let Some(m) = repo_model("centernet") else {
        return;
    };
    let _heavy = heavy();
    assert_eq!(m.config.max_batch_size, 0);
    let rt = Arc::new(ModelRuntime::load(&m).unwrap());
    assert_eq!(rt.max_batch_size(), 0);
    let input_name = rt.inputs()[0].name.clone();
    let threads: Vec<_> = (0..3u64)
        .map(|t| {
            let rt = rt.clone();
            let input_name = input_name.clone();
            std::thread::spawn(move || {
                let x: Vec<f32> = nanodet_input(t)
                    .iter()
                    .cycle()
                    .take(512 * 512 * 3)
                    .map(|v| (v + 2.0) * 60.0)
                    .collect();
                let req = InferRequest::new(input_name, vec![1, 512, 512, 3], x);
                rt.infer(req, |views| {
                    views
                        .iter()
                        .find(|v| v.name == "tower_0/detections")
                        .map(|v| v.shape.to_vec())
                })
                .unwrap()
            })
        })
        .collect();
    for h in threads {
        assert_eq!(h.join().unwrap(), Some(vec![1, 100, 6]));
    }
    let s = rt.stats();
    assert_eq!(s.batch_sizes, [(1, 3)].into_iter().collect());
    let e = rt
        .infer(
            InferRequest::new(input_name, vec![512, 512, 3], vec![0.0; 512 * 512 * 3]),
            |_| (),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match the model's"), "{e}");
}

#[test]
fn model_server_shares_one_runtime() {
    let Some(_) = repo_model("nanodet") else {
        return;
    };
    let _heavy = heavy();
    let server = ModelServer::global();
    let a = server.acquire(&models_dir(), "nanodet", None).unwrap();
    // Another spelling of the same folder.
    let b = server
        .acquire(&models_dir().join("../models"), "nanodet", None)
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(Arc::ptr_eq(&a.current(), &b.current()));
    let c = server
        .acquire(&models_dir(), "nanodet", Some(a.current().version()))
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(
        Arc::ptr_eq(&a.current(), &c.current()),
        "same version, same runtime"
    );
    assert_eq!(a.current().inputs()[0].name, NANODET_INPUT);
    assert!(
        server
            .runtimes()
            .iter()
            .any(|r| Arc::ptr_eq(r, &a.current()))
    );
    let e = server
        .acquire(&models_dir(), "no_such_model", None)
        .unwrap_err();
    assert!(e.to_string().contains("no_such_model"), "{e}");

    // Unused models unload.
    let weak = Arc::downgrade(&a.current());
    drop((a, b, c));
    assert!(weak.upgrade().is_none());
    assert!(server.runtimes().iter().all(|r| r.name() != "nanodet"));
}

#[test]
fn server_acquires_from_a_repository_and_reloads_new_versions() {
    if !ort_available() {
        return;
    }
    let repo = temp_dir("server");
    write_affine(&repo, "affine");
    std::fs::write(
        repo.join("affine/config.pbtxt"),
        "name: \"affine\"\nbackend: \"onnxruntime\"\nmax_batch_size: 4\n\
         input [ { name: \"x\", data_type: TYPE_FP32, dims: [ -1 ] } ]\n\
         output [ { name: \"y\", data_type: TYPE_FP32, dims: [ -1 ] },\n\
                  { name: \"z\", data_type: TYPE_FP32, dims: [ -1 ] } ]\n\
         dynamic_batching { }\n",
    )
    .unwrap();
    let server = ModelServer::new();
    let handle = server.acquire(&repo, "affine", None).unwrap();
    let y0 = |h: &ModelHandle| {
        h.infer(affine_request(&[1.0, 2.0]), |v| v[0].data[0])
            .unwrap()
    };
    assert_eq!(handle.current().version(), 1);
    assert_eq!(y0(&handle), 3.0);

    // A request in flight on version 1 finishes there while version 2 takes over.
    let v1 = handle.current();
    let in_flight = v1
        .infer_async(affine_request(&[1.0, 2.0]), |v| v[0].data[0])
        .unwrap();
    write_version(&repo, "affine", 2, &affine_model(3.0));
    let old = server.reload(&handle).unwrap();
    assert!(Arc::ptr_eq(&old, &v1));
    drop((old, v1));
    assert_eq!(in_flight.wait().unwrap(), 3.0);
    assert_eq!(handle.current().version(), 2);
    assert_eq!(y0(&handle), 4.0);
    assert!(Arc::ptr_eq(
        &server.acquire(&repo, "affine", None).unwrap(),
        &handle
    ));

    // A corrupt version 3 is refused; version 2 keeps serving.
    write_version(&repo, "affine", 3, b"not an onnx model");
    let e = server.reload(&handle).unwrap_err().to_string();
    println!("corrupt version refused: {e}");
    assert!(e.contains("affine") && e.contains("3"), "{e}");
    assert_eq!(handle.current().version(), 2);
    assert_eq!(y0(&handle), 4.0);
    let _ = std::fs::remove_dir_all(&repo);
}

fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

#[test]
fn fp16_inputs_and_outputs_are_converted_at_the_session_boundary() {
    if !ort_available() {
        return;
    }
    let repo = temp_dir("half");
    write_version(&repo, "half", 1, &half_model());
    std::fs::write(
        repo.join("half/config.pbtxt"),
        "name: \"half\"\nbackend: \"onnxruntime\"\nmax_batch_size: 4\n\
         input [ { name: \"x\", data_type: TYPE_FP16, dims: [ -1 ] } ]\n\
         output [ { name: \"y\", data_type: TYPE_FP32, dims: [ -1 ] },\n\
                  { name: \"h\", data_type: TYPE_FP16, dims: [ -1 ] } ]\n\
         dynamic_batching { max_queue_delay_microseconds: 50000 }\n",
    )
    .unwrap();
    let server = ModelServer::new();
    let handle = server.acquire(&repo, "half", None).unwrap();
    let runtime = handle.current();
    assert_eq!(runtime.inputs()[0].dtype, "Float16");
    // Values not representable in FP16 (0.1, 1000.3, 3.3333) and ones beyond its range (1e5).
    let requests: Vec<Vec<f32>> = vec![
        vec![0.1, 1000.3, -2.5],
        vec![3.3333, 1e5, 65504.0],
        vec![-0.0001, 7.0, 2049.0],
    ];
    // Submitted together so that they can share a batch (the converter sees the batch tensor).
    let pending: Vec<_> = requests
        .iter()
        .map(|x| {
            runtime
                .infer_async(
                    InferRequest::new("x", vec![x.len() as i64], x.clone()),
                    |v| (v[0].data.to_vec(), v[1].data.to_vec()),
                )
                .unwrap()
        })
        .collect();
    for (x, p) in requests.iter().zip(pending) {
        let (y, h) = p.wait().unwrap();
        let want_y: Vec<f32> = x.iter().map(|&v| 2.0 * f16_round(v) + 1.0).collect();
        let want_h: Vec<f32> = want_y.iter().map(|&v| f16_round(v)).collect();
        assert_eq!(y, want_y, "y for {x:?}");
        assert_eq!(h, want_h, "h for {x:?}");
    }
    assert_eq!(
        f16_round(1e5),
        f32::INFINITY,
        "beyond FP16's range: infinity"
    );
    let stats = runtime.stats();
    assert_eq!(stats.failures, 0);
    println!("batch sizes: {:?}", stats.batch_sizes);
    let _ = std::fs::remove_dir_all(&repo);
}

#[test]
fn integer_inputs_are_rounded_and_saturated_and_outputs_widened() {
    if !ort_available() {
        return;
    }
    let repo = temp_dir("typed");
    write_version(&repo, "typed", 1, &typed_model());
    std::fs::write(
        repo.join("typed/config.pbtxt"),
        "name: \"typed\"\nbackend: \"onnxruntime\"\nmax_batch_size: 4\n\
         input [ { name: \"x\", data_type: TYPE_UINT8, dims: [ -1 ] } ]\n\
         output [ { name: \"y\", data_type: TYPE_FP32, dims: [ -1 ] },\n\
                  { name: \"i\", data_type: TYPE_INT64, dims: [ -1 ] },\n\
                  { name: \"d\", data_type: TYPE_FP64, dims: [ -1 ] } ]\n",
    )
    .unwrap();
    let server = ModelServer::new();
    let handle = server.acquire(&repo, "typed", None).unwrap();
    assert_eq!(handle.current().inputs()[0].dtype, "Uint8");
    // Rounded to the nearest integer, then saturated to 0..=255 (NaN: 0).
    let x = vec![0.4, 1.6, 254.7, 300.0, -5.0, f32::NAN];
    let (y, i, d) = handle
        .infer(InferRequest::new("x", vec![x.len() as i64], x), |v| {
            (v[0].data.to_vec(), v[1].data.to_vec(), v[2].data.to_vec())
        })
        .unwrap();
    let want = vec![1.0, 5.0, 511.0, 511.0, 1.0, 1.0];
    assert_eq!(y, want);
    assert_eq!(i, want);
    assert_eq!(d, want);
    let _ = std::fs::remove_dir_all(&repo);
}

/// Writes `model` with `config` as version 1 of `name` in a fresh repository; returns the repository.
fn typed_repo(name: &str, model: &[u8], config: &str) -> PathBuf {
    let repo = temp_dir(name);
    write_version(&repo, name, 1, model);
    std::fs::write(repo.join(name).join("config.pbtxt"), config).unwrap();
    repo
}

const SIMPLE: &str = "name: \"simple\"\nbackend: \"onnxruntime\"\nmax_batch_size: 8\n\
    input [ { name: \"INPUT0\", data_type: TYPE_INT32, dims: [ 16 ] },\n\
            { name: \"INPUT1\", data_type: TYPE_INT32, dims: [ 16 ] } ]\n\
    output [ { name: \"OUTPUT0\", data_type: TYPE_INT32, dims: [ 16 ] },\n\
             { name: \"OUTPUT1\", data_type: TYPE_INT32, dims: [ 16 ] } ]\n\
    dynamic_batching { max_queue_delay_microseconds: 200000 }\n";

#[test]
fn int32_tensors_go_through_the_batcher_exactly() {
    if !ort_available() {
        return;
    }
    let repo = typed_repo("simple", &simple_model(), SIMPLE);
    let server = ModelServer::new();
    let handle = server.acquire(&repo, "simple", None).unwrap();
    // Beyond 2^24, where f32 would round: the values must come back exact.
    let a: Vec<i32> = (0..16).map(|i| 16_777_217 + i).collect();
    let b: Vec<i32> = (0..16).map(|i| i - 8).collect();
    let requests: Vec<_> = (0..2)
        .map(|k| {
            let a: Vec<i32> = a.iter().map(|v| v + k).collect();
            InferRequest::new("INPUT0", vec![16], a).with_input("INPUT1", vec![16], b.clone())
        })
        .collect();
    // Two requests queued together within the queue delay form one batch of 2.
    let pending: Vec<_> = requests
        .into_iter()
        .map(|r| {
            handle
                .current()
                .infer_async(r, |v: &[TensorView]| {
                    (
                        v[0].raw.to_owned_data(),
                        v[1].raw.to_owned_data(),
                        v[0].shape.to_vec(),
                    )
                })
                .unwrap()
        })
        .collect();
    for (k, p) in pending.into_iter().enumerate() {
        let (sum, difference, shape) = p.wait().unwrap();
        let k = k as i32;
        let want_sum: Vec<i32> = a.iter().zip(&b).map(|(x, y)| x + k + y).collect();
        let want_difference: Vec<i32> = a.iter().zip(&b).map(|(x, y)| x + k - y).collect();
        assert_eq!(sum, TensorData::Int32(want_sum));
        assert_eq!(difference, TensorData::Int32(want_difference));
        assert_eq!(shape, [1, 16]);
    }
    let stats = handle.current().stats();
    assert_eq!(
        stats.batch_sizes.get(&2),
        Some(&1),
        "{:?}",
        stats.batch_sizes
    );
    // f32 data is still converted for an INT32 input; another type is refused, naming both.
    let r = InferRequest::new("INPUT0", vec![16], vec![1.4f32; 16]).with_input(
        "INPUT1",
        vec![16],
        vec![1i32; 16],
    );
    let sum = handle.infer(r, |v| v[0].raw.to_owned_data()).unwrap();
    assert_eq!(sum, TensorData::Int32(vec![2; 16]));
    let r = InferRequest::new("INPUT0", vec![16], vec![1i64; 16]).with_input(
        "INPUT1",
        vec![16],
        vec![1i32; 16],
    );
    let e = handle.infer(r, |_| ()).unwrap_err().to_string();
    assert!(
        e.contains("'INPUT0'") && e.contains("TYPE_INT64") && e.contains("TYPE_INT32"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&repo);
}

#[test]
fn string_tensors_are_fed_and_read_as_bytes() {
    if !ort_available() {
        return;
    }
    let config = SIMPLE
        .replace("TYPE_INT32", "TYPE_STRING")
        .replace("\"simple\"", "\"simple_string\"");
    let repo = typed_repo("simple_string", &simple_string_model(), &config);
    let server = ModelServer::new();
    let handle = server.acquire(&repo, "simple_string", None).unwrap();
    assert_eq!(handle.current().inputs()[0].dtype, "String");
    let text =
        |v: &[i32]| -> Vec<Vec<u8>> { v.iter().map(|x| x.to_string().into_bytes()).collect() };
    let a: Vec<i32> = (0..16).collect();
    let b = vec![1; 16];
    let r =
        InferRequest::new("INPUT0", vec![16], text(&a)).with_input("INPUT1", vec![16], text(&b));
    let (sum, difference, f32_len) = handle
        .infer(r, |v| {
            (
                v[0].raw.to_owned_data(),
                v[1].raw.to_owned_data(),
                v[0].data.len(),
            )
        })
        .unwrap();
    let plus: Vec<i32> = a.iter().map(|x| x + 1).collect();
    let minus: Vec<i32> = a.iter().map(|x| x - 1).collect();
    assert_eq!(sum, TensorData::Bytes(text(&plus)));
    assert_eq!(difference, TensorData::Bytes(text(&minus)));
    assert_eq!(f32_len, 0, "strings have no f32 view");
    // f32 data is no string.
    let r = InferRequest::new("INPUT0", vec![16], vec![0f32; 16]).with_input(
        "INPUT1",
        vec![16],
        text(&b),
    );
    let e = handle.infer(r, |_| ()).unwrap_err().to_string();
    assert!(e.contains("TYPE_FP32") && e.contains("TYPE_STRING"), "{e}");
    let _ = std::fs::remove_dir_all(&repo);
}

#[test]
fn string_elements_keep_every_byte() {
    if !ort_available() {
        return;
    }
    let config = "name: \"simple_identity\"\nbackend: \"onnxruntime\"\nmax_batch_size: 8\n\
        input [ { name: \"INPUT0\", data_type: TYPE_STRING, dims: [ -1 ] } ]\n\
        output [ { name: \"OUTPUT0\", data_type: TYPE_STRING, dims: [ -1 ] } ]\n";
    let repo = typed_repo("simple_identity", &string_identity_model(), config);
    let server = ModelServer::new();
    let handle = server.acquire(&repo, "simple_identity", None).unwrap();
    // NUL bytes, bytes that are not UTF-8, an empty element: written and read by length.
    let elements = vec![
        b"he\x00llo".to_vec(),
        vec![0xff, 0xfe, 0],
        Vec::new(),
        b"\x00\x01\x02\x03".to_vec(),
    ];
    let r = InferRequest::new("INPUT0", vec![4], elements.clone());
    let out = handle.infer(r, |v| v[0].raw.to_owned_data()).unwrap();
    assert_eq!(out, TensorData::Bytes(elements));
    let _ = std::fs::remove_dir_all(&repo);
}

#[test]
fn bad_accelerator_parameters_fail_the_load_naming_them() {
    let Some(m) = affine(
        "bad-accel",
        "backend: \"onnxruntime\"\nmax_batch_size: 4\n\
         input [ { name: \"x\", data_type: TYPE_FP32, dims: [ -1 ] } ]\n\
         output [ { name: \"y\", data_type: TYPE_FP32, dims: [ -1 ] },\n\
                  { name: \"z\", data_type: TYPE_FP32, dims: [ -1 ] } ]\n\
         instance_group [ { kind: KIND_GPU } ]\n\
         optimization { execution_accelerators { gpu_execution_accelerator [ \
         { name: \"tensorrt\" parameters { key: \"precision_mode\" value: \"FP12\" } } ] } }\n",
    ) else {
        return;
    };
    let e = ModelRuntime::load(&m).unwrap_err().to_string();
    println!("{e}");
    assert!(
        e.contains("affine") && e.contains("'tensorrt'") && e.contains("precision_mode"),
        "{e}"
    );
}

#[test]
fn onnx_sessions_warm_up_on_zeros_only_where_the_shape_is_known() {
    let Some(m) = repo_model("nanodet") else {
        return;
    };
    let mut s = OnnxModel::load(&m.model_path, 1).unwrap();
    assert!(
        s.warm_up(),
        "NanoDet: a fixed shape behind the batch dimension"
    );
    // PP-OCR's detector takes any height and width: nothing to guess, no run.
    if let Some(d) = repo_model("ppocr_det") {
        let mut s = OnnxModel::load(&d.model_path, 1).unwrap();
        assert!(!s.warm_up(), "{:?}", s.inputs());
    }
}
