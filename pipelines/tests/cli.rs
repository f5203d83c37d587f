//! The `vigil` command line (the binary Cargo built for this package): version, usage errors and
//! `vigil check` on the shipped configs. Pipelines themselves are tested in `tests/tests/` (vigil-tests).

use std::path::Path;
use std::process::Command;

/// Reports a skipped test on the real stderr: libtest captures `eprintln!` of passing tests, but not
/// direct writes, so the skip is visible in a normal `cargo test` run.
fn skip(message: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {message}");
}

fn vigil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.env("RUST_BACKTRACE", "1");
    c
}

#[test]
fn prints_version() {
    let out = vigil().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("vigil {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    for args in [&[][..], &["run"][..], &["frobnicate"][..]] {
        let out = vigil().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "vigil {args:?}");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[test]
fn shipped_configs_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let needed = [
        root.join("samples/media/vtest.avi"),
        root.join("models/nanodet/1/model.onnx"),
    ];
    if let Some(missing) = needed.iter().find(|p| !p.is_file()) {
        skip(format_args!(
            "shipped_configs_check: {} is not installed (run `make setup`)",
            missing.display()
        ));
        return;
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let out = vigil().arg("check").arg(&path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{}: {err}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1, "no configs in configs/");
}

/// `vigil models validate|show|list` on the shipped repository, on Triton's example configs, and on a
/// broken config (Triton-style error, non-zero exit).
#[test]
fn models_validate_show_and_refuse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let models = root.join("models");
    if !models.join("nanodet/1/model.onnx").is_file() {
        skip(format_args!(
            "models_validate_show_and_refuse: models not installed (run `make setup`)"
        ));
        return;
    }
    let out = vigil()
        .args(["models", "validate"])
        .arg(&models)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("nanodet: ok") && text.contains("centernet: ok"),
        "{text}"
    );

    // show prints the completed, normalised config (outputs filled in from the model file)
    let out = vigil()
        .args(["models", "show"])
        .arg(&models)
        .arg("nanodet")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "name: \"nanodet\"",
        "platform: \"onnxruntime_onnx\"",
        "output [",
        "instance_group",
        "version_policy",
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }

    let out = vigil()
        .args(["models", "list"])
        .arg(&models)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nanodet\tonnxruntime_onnx\tversions 1"));

    // a broken config: Triton's message, naming the model, and a non-zero exit
    let tmp = std::env::temp_dir().join(format!("vigil-models-cli-{}", std::process::id()));
    let bad = tmp.join("bad");
    std::fs::create_dir_all(bad.join("1")).unwrap();
    std::fs::write(bad.join("1/model.onnx"), b"not an onnx file").unwrap();
    std::fs::write(
        bad.join("config.pbtxt"),
        "name: \"bad\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: -3\n\
         input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 3 ] } ]\n\
         output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 3 ] } ]\n",
    )
    .unwrap();
    let out = vigil()
        .args(["models", "validate"])
        .arg(&tmp)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad") && err.contains("max_batch_size"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// An execution-accelerator parameter the engine would refuse is reported by `models validate`
/// (also with `--config-only`), naming the model, the accelerator and the parameter.
#[test]
fn models_validate_reports_bad_accelerator_parameters() {
    let tmp = std::env::temp_dir().join(format!("vigil-models-accel-{}", std::process::id()));
    let model = tmp.join("trt");
    std::fs::create_dir_all(model.join("1")).unwrap();
    std::fs::write(
        model.join("config.pbtxt"),
        "name: \"trt\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 4\n\
         input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 3 ] } ]\n\
         output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 3 ] } ]\n\
         instance_group [ { kind: KIND_GPU } ]\n\
         optimization { execution_accelerators { gpu_execution_accelerator [ { name: \"tensorrt\"\n\
           parameters { key: \"precision_mode\" value: \"FP16\" }\n\
           parameters { key: \"trt_engine_cache_enabled\" value: \"1\" } } ] } }\n",
    )
    .unwrap();
    let out = vigil()
        .args(["models", "validate", "--config-only"])
        .arg(&tmp)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("trt:")
            && err.contains("'tensorrt'")
            && err.contains("unknown parameter 'trt_engine_cache_enabled'"),
        "{err}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Every Triton example configuration (shared conformance set) validates as a configuration.
#[test]
fn models_validate_accepts_triton_examples_as_configs() {
    let shared = std::env::var_os("VIGIL_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let examples = shared.join("conformance/triton/examples");
    if !examples.is_dir() {
        skip(format_args!(
            "models_validate_accepts_triton_examples_as_configs: no {}",
            examples.display()
        ));
        return;
    }
    // Each example in a repository of its own (two examples share a model name), checked as a
    // configuration (`--config-only`: the example models' files are not here) and shown.
    let tmp = std::env::temp_dir().join(format!("vigil-models-examples-{}", std::process::id()));
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(name) = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("name:")
                .map(|v| v.trim().trim_matches('"').to_string())
        }) else {
            continue;
        };
        let repo = tmp.join(n.to_string());
        std::fs::create_dir_all(repo.join(&name)).unwrap();
        std::fs::write(repo.join(&name).join("config.pbtxt"), &text).unwrap();
        n += 1;
        let out = vigil()
            .args(["models", "validate", "--config-only"])
            .arg(&repo)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("{name}: configuration ok")),
            "{}: {stdout} {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = vigil()
            .args(["models", "show"])
            .arg(&repo)
            .arg(&name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&tmp).unwrap();
    assert!(n >= 5, "only {n} examples");
}

/// Auto-complete: the NanoDet entry with a config.pbtxt that holds only the parser parameters loads,
/// and `vigil models show` prints the completed config (inputs, outputs, batching from the ONNX file).
#[test]
fn models_show_completes_a_parameters_only_entry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let src = root.join("models/nanodet");
    if !src.join("1/model.onnx").is_file() {
        skip(format_args!(
            "models_show_completes_a_parameters_only_entry: models not installed"
        ));
        return;
    }
    let tmp =
        std::env::temp_dir().join(format!("vigil-models-autocomplete-{}", std::process::id()));
    let dir = tmp.join("nanodet");
    std::fs::create_dir_all(dir.join("1")).unwrap();
    std::os::unix::fs::symlink(src.join("1/model.onnx"), dir.join("1/model.onnx")).unwrap();
    std::fs::copy(src.join("labels.txt"), dir.join("labels.txt")).unwrap();
    let params: String = std::fs::read_to_string(src.join("config.pbtxt"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("parameters"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(params.lines().count(), 7);
    std::fs::write(dir.join("config.pbtxt"), &params).unwrap();

    let out = vigil()
        .args(["models", "validate"])
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vigil()
        .args(["models", "show"])
        .arg(&tmp)
        .arg("nanodet")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "name: \"nanodet\"",
        "platform: \"onnxruntime_onnx\"",
        "max_batch_size: 4",
        "name: \"input_1:0\"",
        "dims: [ 3, 416, 416 ]",
        "output [",
        "dynamic_batching",
        "instance_group",
        "vigil.postprocess",
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// In a config with several sources, a missing file fails only that source when running; `vigil
/// check` reports it as an error naming the file, line and key. Streams added at run time are checked
/// the same way (`Plan::check_added_source`), and get their own mount and file names.
#[test]
fn missing_second_source_is_reported_and_added_sources_are_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let vtest = root.join("samples/media/vtest.avi");
    if !vtest.is_file() || !root.join("models/nanodet/1/model.onnx").is_file() {
        skip(format_args!(
            "missing_second_source_is_reported_and_added_sources_are_checked: assets not installed"
        ));
        return;
    }
    let dir = std::env::temp_dir().join(format!("vigil-cli-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("two.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: two\nmodel_repository: {}\nsources:\n  - name: good\n    uri: {}\n  - name: gone\n    uri: gone.mp4\n\
             inference:\n  model: nanodet\noutputs:\n  rtsp:\n    mount: /cams\n  file:\n    path: out/rec.mp4\n  mosaic:\n    tiles: 5\n",
            root.join("models").display(),
            vtest.display()
        ),
    )
    .unwrap();
    let plan = vigil::config::Config::load_and_validate(&cfg).expect("validates");
    let gone = &plan.sources[1];
    let problem = gone
        .problem
        .as_deref()
        .expect("the missing file is a problem");
    assert_eq!(
        problem,
        format!(
            "{}: line 7: sources[1].uri: no such file {}",
            cfg.display(),
            dir.join("gone.mp4").display()
        )
    );
    assert!(plan.sources[0].problem.is_none());
    let mosaic = plan.rtsp.as_ref().unwrap().mosaic.as_ref().unwrap();
    assert_eq!((mosaic.columns, mosaic.rows, mosaic.capacity()), (3, 2, 6));
    assert_eq!(plan.added_mount("cam9").as_deref(), Some("/cams/cam9"));
    assert_eq!(plan.added_file("cam9"), Some(dir.join("out/rec-cam9.mp4")));
    let added = |json: &str| {
        let s: vigil::config::SourceConfig = serde_json::from_str(json).unwrap();
        plan.check_added_source(&s)
    };
    assert_eq!(
        added(r#"{"name": "x", "uri": "gone.mp4"}"#).unwrap_err(),
        format!("uri: no such file {}", dir.join("gone.mp4").display())
    );
    assert!(
        added(r#"{"name": "a b", "uri": "rtsp://h/x"}"#)
            .unwrap_err()
            .starts_with("name: ")
    );
    assert_eq!(
        added(r#"{"name": "x", "uri": "rtsp://h/x", "reconnect": {"interval_ms": 0}}"#)
            .unwrap_err(),
        "reconnect.interval_ms: must be at least 1"
    );
    let ok = added(&format!(r#"{{"name": "x", "uri": "{}"}}"#, vtest.display())).unwrap();
    assert_eq!(ok.path.as_deref(), Some(vtest.as_path()));

    let out = vigil().arg("check").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("sources[1].uri: no such file"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Whether the assets of a test are installed; under `CI=true` a missing one fails the test.
fn assets_or_skip(test: &str, needed: &[&Path]) -> bool {
    if let Some(missing) = needed.iter().find(|p| !p.is_file()) {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "{test}: {} is not installed (make setup)",
            missing.display()
        );
        skip(format_args!(
            "{test}: {} is not installed",
            missing.display()
        ));
        return false;
    }
    true
}

#[test]
fn a_shard_keeps_its_sources_and_names_its_fleet_wide_outputs() {
    use vigil::shard::{Shard, shard_of};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let vtest = root.join("samples/media/vtest.avi");
    let model = root.join("models/nanodet/1/model.onnx");
    if !assets_or_skip("a_shard_keeps_its_sources", &[&vtest, &model]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("vigil-cli-shard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("fleet.yaml");
    let mut text = format!(
        "name: fleet\nmodel_repository: {}\nsources:\n",
        root.join("models").display()
    );
    for i in 0..8 {
        text += &format!("  - name: cam-{i}\n    uri: {}\n", vtest.display());
    }
    text += "inference:\n  model: nanodet\noutputs:\n  rtsp: { port: 0, mount: /fleet }\n  mosaic: {}\n  \
             file: { path: out/rec.mp4 }\n  events: { path: out/events.jsonl }\n  \
             mqtt: { topic: \"site/{shard}/{source}/{kind}\", client_id: \"v-{shard}-{source}\" }\n";
    std::fs::write(&cfg, &text).unwrap();
    let whole = vigil::config::Config::load_and_validate(&cfg).expect("validates");
    // Unsplit: `{shard}` is 0, nothing renamed.
    let same = whole.clone().for_shard(Shard::WHOLE);
    assert_eq!(same.sources.len(), 8);
    assert_eq!(same.mqtt.as_ref().unwrap().topic, "site/0/{source}/{kind}");
    let mut seen = Vec::new();
    for index in 0..2 {
        let plan = whole.clone().for_shard(Shard::new(index, 2).unwrap());
        let names: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
        assert!(names.iter().all(|n| shard_of(n, 2) == index), "{names:?}");
        seen.extend(names.iter().map(|n| n.to_string()));
        let rtsp = plan.rtsp.as_ref().unwrap();
        let mounts: Vec<String> = names.iter().map(|n| format!("/fleet/{n}")).collect();
        assert_eq!(rtsp.mounts, mounts);
        let files: Vec<_> = names
            .iter()
            .map(|n| dir.join(format!("out/rec-{n}.mp4")))
            .collect();
        assert_eq!(plan.files.as_ref().unwrap(), &files);
        assert_eq!(
            plan.events,
            Some(vigil::config::EventsTarget::File(
                dir.join(format!("out/events-shard{index}.jsonl"))
            ))
        );
        let mosaic = rtsp.mosaic.as_ref().unwrap();
        assert_eq!(mosaic.mount, format!("/fleet-mosaic-shard{index}"));
        assert!(mosaic.capacity() >= names.len().max(1) && mosaic.capacity() < 8);
        let mqtt = plan.mqtt.as_ref().unwrap();
        assert_eq!(mqtt.topic, format!("site/{index}/{{source}}/{{kind}}"));
        assert_eq!(mqtt.client_id("cam-1"), format!("v-{index}-cam-1"));
        assert_eq!(plan.fleet_sources, 8);
    }
    seen.sort();
    let mut all: Vec<String> = (0..8).map(|i| format!("cam-{i}")).collect();
    all.sort();
    assert_eq!(seen, all, "every source in exactly one shard");

    // `vigil check --shard` prints the same assignment.
    let out = vigil()
        .arg("check")
        .arg(&cfg)
        .args(["--shard", "1/2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..8 {
        let n = format!("cam-{i}");
        let of = shard_of(&n, 2);
        let mark = if of == 1 { "*" } else { " " };
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == n))
            .unwrap_or_else(|| panic!("{n} in {stdout}"));
        assert!(
            line.starts_with(mark) && line.ends_with(&format!("shard {of}/2")),
            "{line}"
        );
    }
    // From the environment: a StatefulSet pod's name; errors name the variable.
    let out = vigil()
        .arg("check")
        .arg(&cfg)
        .env("VIGIL_SHARD_COUNT", "2")
        .env("HOSTNAME", "fleet-pipelines-1")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), stdout);
    for (args, env, want) in [
        (
            &["--shard", "2/2"][..],
            None,
            "--shard '2/2': the shard index 2 is not below",
        ),
        (
            &[][..],
            Some(("VIGIL_SHARD", "x")),
            "VIGIL_SHARD: 'x' is not I/N",
        ),
    ] {
        let mut c = vigil();
        c.arg("check").arg(&cfg).args(args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_shard_without_sources_idles_until_stopped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let vtest = root.join("samples/media/vtest.avi");
    let model = root.join("models/nanodet/1/model.onnx");
    if !assets_or_skip("a_shard_without_sources_idles", &[&vtest, &model]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("vigil-cli-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("one.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: one\nmodel_repository: {}\nsources:\n  - name: cam-0\n    uri: {}\ninference:\n  model: nanodet\n",
            root.join("models").display(),
            vtest.display()
        ),
    )
    .unwrap();
    let empty = 1 - vigil::shard::shard_of("cam-0", 2);
    let mut child = vigil()
        .arg("run")
        .arg(&cfg)
        .args(["--shard", &format!("{empty}/2"), "--progress", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "an idle shard keeps running"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "stopped at once: {err}"
    );
    assert!(
        err.contains(&format!(
            "shard {empty}/2: none of the fleet's 1 sources; idle until stopped"
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
