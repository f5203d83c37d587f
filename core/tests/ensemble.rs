//! Ensembles (`platform: "ensemble"`) against their steps run by hand.
//!
//! The repository is made by `scripts/testmodels/make_ensemble_models.py` (with the `onnx` package
//! of the venv `~/.cache/vigil/venv`): `scale_shift` (INPUT0 → SCALED = 2x + 1), `relu_sum`
//! (X → Y = relu(X − 3), S = sum(Y)) and the ensemble `pipeline` chaining them. The tests print
//! `SKIPPED` and pass when that venv or its `onnx` module is missing.

mod common;

use std::sync::Arc;

use common::TempDir;
use vigil_core::modelspec::ModelSpec;
use vigil_engine::{EngineError, InferRequest, ModelHandle, ModelServer};

/// The test repository in a fresh temporary folder; `None` (test skipped) without the venv.
fn make_repo(tag: &str) -> Option<TempDir> {
    let python = common::python_with_onnx()?;
    let tmp = TempDir::new("ensemble", tag);
    common::run_script(
        &python,
        "scripts/testmodels/make_ensemble_models.py",
        &[&tmp.0],
    );
    Some(tmp)
}

/// `(name, shape, data)` of every output.
type Outputs = Vec<(String, Vec<usize>, Vec<f32>)>;

fn infer(handle: &ModelHandle, input: &str, x: &[f32]) -> Result<Outputs, EngineError> {
    handle.infer(InferRequest::new(input, vec![4], x.to_vec()), |views| {
        views
            .iter()
            .map(|v| (v.name.to_owned(), v.shape.to_vec(), v.data.to_vec()))
            .collect()
    })
}

fn output<'a>(outputs: &'a Outputs, name: &str) -> &'a [f32] {
    &outputs
        .iter()
        .find(|o| o.0 == name)
        .unwrap_or_else(|| panic!("no output {name} in {outputs:?}"))
        .2
}

/// relu(2x + 1 − 3) and its sum.
fn closed_form(x: &[f32]) -> (Vec<f32>, f32) {
    let y: Vec<f32> = x.iter().map(|&v| (2.0 * v + 1.0 - 3.0).max(0.0)).collect();
    let s = y.iter().sum();
    (y, s)
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-6, "{what}: {got:?} vs {want:?}");
    }
}

fn inputs() -> Vec<[f32; 4]> {
    vec![
        [0.0, 1.0, 2.0, 3.0],
        [-1.0, 0.5, 1.0, 1.5],
        [10.0, -10.0, 1.25, 0.75],
        [0.999, 1.001, -0.25, 100.0],
        [-5.0, -4.0, -3.0, -2.0],
    ]
}

#[test]
fn ensemble_gives_the_outputs_of_its_steps_run_by_hand() {
    let Some(repo) = make_repo("by-hand") else {
        return;
    };
    let server = ModelServer::new();
    let pipeline = server
        .acquire(&repo.0, "pipeline", None)
        .expect("load the ensemble");
    let runtime = pipeline.current();
    assert!(runtime.ensemble().is_some());
    assert_eq!(
        runtime.ensemble().map(|e| e.step_models()),
        Some(vec!["scale_shift", "relu_sum"])
    );
    let names: Vec<&str> = runtime.inputs().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["INPUT0"]);
    assert_eq!(runtime.max_batch_size(), 8);
    let spec = ModelSpec::of_runtime(&runtime).expect_err("the ensemble is no detector");
    assert!(spec.to_string().contains("pipeline"), "{spec}");

    let scale_shift = server.acquire(&repo.0, "scale_shift", None).unwrap();
    let relu_sum = server.acquire(&repo.0, "relu_sum", None).unwrap();
    for x in inputs() {
        let ensemble = infer(&pipeline, "INPUT0", &x).expect("run the ensemble");
        let names: Vec<&str> = ensemble.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(names, ["OUTPUT_Y", "OUTPUT_S"], "the configuration's order");
        assert_eq!(ensemble[0].1, [1, 4]);
        assert_eq!(ensemble[1].1, [1, 1]);

        let scaled = infer(&scale_shift, "INPUT0", &x).unwrap();
        let by_hand = infer(&relu_sum, "X", output(&scaled, "SCALED")).unwrap();
        assert_close("Y", output(&ensemble, "OUTPUT_Y"), output(&by_hand, "Y"));
        assert_close("S", output(&ensemble, "OUTPUT_S"), output(&by_hand, "S"));

        let (y, s) = closed_form(&x);
        assert_close("Y closed form", output(&ensemble, "OUTPUT_Y"), &y);
        assert_close("S closed form", output(&ensemble, "OUTPUT_S"), &[s]);
    }

    let stats = pipeline.current().stats();
    assert_eq!(stats.model, "pipeline");
    assert_eq!(stats.requests, inputs().len() as u64);
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.compute_time.count, inputs().len() as u64);
    // The steps ran through the step models' own runtimes: by hand and for the ensemble.
    assert_eq!(
        scale_shift.current().stats().requests,
        2 * inputs().len() as u64
    );
    assert_eq!(
        relu_sum.current().stats().requests,
        2 * inputs().len() as u64
    );
}

#[test]
fn ensemble_serves_concurrent_callers() {
    let Some(repo) = make_repo("concurrent") else {
        return;
    };
    let server = ModelServer::new();
    let pipeline: Arc<ModelHandle> = server.acquire(&repo.0, "pipeline", None).unwrap();
    const PER_THREAD: usize = 25;
    std::thread::scope(|scope| {
        for t in 0..3 {
            let pipeline = pipeline.clone();
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let base = (t * PER_THREAD + i) as f32 * 0.1 - 3.0;
                    let x = [base, base + 0.5, -base, base * 2.0];
                    // Async requests too: queue two, then wait for both.
                    let async_x = [base + 1.0, 0.0, 2.0, -1.0];
                    let pending = pipeline
                        .current()
                        .infer_async(
                            InferRequest::new("INPUT0", vec![4], async_x.to_vec()),
                            |v| (v[0].data.to_vec(), v[1].data.to_vec()),
                        )
                        .unwrap();
                    let got = infer(&pipeline, "INPUT0", &x).unwrap();
                    let (y, s) = closed_form(&x);
                    assert_close("Y", output(&got, "OUTPUT_Y"), &y);
                    assert_close("S", output(&got, "OUTPUT_S"), &[s]);
                    let (ay, as_) = pending.wait().unwrap();
                    let (y, s) = closed_form(&async_x);
                    assert_close("async Y", &ay, &y);
                    assert_close("async S", &as_, &[s]);
                }
            });
        }
    });
    let stats = pipeline.current().stats();
    assert_eq!(stats.requests, (3 * PER_THREAD * 2) as u64);
    assert_eq!(stats.failures, 0);
}

#[test]
fn ensemble_refuses_bad_requests_naming_the_ensemble_and_tensor() {
    let Some(repo) = make_repo("bad-request") else {
        return;
    };
    let server = ModelServer::new();
    let pipeline = server.acquire(&repo.0, "pipeline", None).unwrap();
    let err = pipeline
        .infer(InferRequest::new("INPUT0", vec![5], vec![0.0; 5]), |_| ())
        .expect_err("a wrong shape");
    let text = err.to_string();
    println!("bad request: {text}");
    assert!(
        text.contains("pipeline") && text.contains("INPUT0") && text.contains("[5]"),
        "{text}"
    );
    let err = pipeline
        .infer(InferRequest::new("NOPE", vec![4], vec![0.0; 4]), |_| ())
        .expect_err("an unknown input");
    assert!(err.to_string().contains("NOPE"), "{err}");
}

#[test]
fn ensemble_with_a_missing_step_model_is_refused() {
    let Some(repo) = make_repo("missing") else {
        return;
    };
    let config = repo.0.join("pipeline/config.pbtxt");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("model_name: \"relu_sum\""));
    std::fs::write(
        &config,
        text.replace("model_name: \"relu_sum\"", "model_name: \"relu_gone\""),
    )
    .unwrap();
    let server = ModelServer::new();
    let err = server
        .acquire(&repo.0, "pipeline", None)
        .expect_err("a step model is missing");
    let text = err.to_string();
    println!("missing step model: {text}");
    assert!(
        text.contains("relu_gone") && text.contains("pipeline"),
        "{text}"
    );
    // The other models of the repository still load.
    assert!(server.acquire(&repo.0, "scale_shift", None).is_ok());
}
