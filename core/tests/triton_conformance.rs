//! Conformance with Triton Inference Server's model-configuration rules, on cases taken from
//! Triton (`<shared>/conformance/triton`, see its README):
//!
//! - every case of `noautofill_platform/` (Triton's `qa/L0_model_config` cases, strict model
//!   configuration) has its `platform:` line replaced by `platform: "onnxruntime_onnx"` and must
//!   be refused with an error containing the text of one of its `expected*` files (a case without
//!   `config.pbtxt` must be refused too);
//! - every file of `examples/` (configurations of Triton's example model repositories) must be
//!   accepted as a configuration: parsed, normalised and validated.
//!
//! `<shared>` is `$VIGIL_SHARED`, else `../shared` next to the workspace; without it the tests
//! print SKIPPED.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use vigil_modelrepo::{
    LoadOptions, ModelConfig, ModelRepository, NormalizeOptions, normalize, validate_config,
};

/// The platform the cases are run with.
const PLATFORM: &str = "onnxruntime_onnx";

fn conformance_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("VIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = shared.join("conformance/triton");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIPPED: {} does not exist (set VIGIL_SHARED to the shared folder)",
            dir.display()
        );
        None
    }
}

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "vigil-triton-conformance-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

/// The `config.pbtxt` a case is run with: its `platform:` line replaced by ours.
fn with_platform(config: &str) -> String {
    let mut text: String = config
        .lines()
        .filter(|l| !l.trim_start().starts_with("platform:"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("platform: \"{PLATFORM}\"\n"));
    text
}

/// Expected texts are written for `grep`: `\[` stands for `[`.
fn unescape(expected: &str) -> String {
    let mut out = String::new();
    let mut chars = expected.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn expected_texts(case: &Path) -> Vec<String> {
    sorted_entries(case)
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("expected"))
        })
        .map(|p| fs::read_to_string(&p).unwrap().trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

#[test]
fn noautofill_platform_cases_are_refused() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let cases_dir = dir.join("noautofill_platform");
    let tmp = TempDir::new("noautofill");
    let mut total = 0;
    let mut failures = Vec::new();
    for case in sorted_entries(&cases_dir)
        .into_iter()
        .filter(|p| p.is_dir())
    {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        total += 1;
        let model_dir = tmp.0.join(&name);
        fs::create_dir_all(model_dir.join("1")).unwrap();
        let config = case.join("config.pbtxt");
        if config.is_file() {
            let text = fs::read_to_string(&config).unwrap();
            fs::write(model_dir.join("config.pbtxt"), with_platform(&text)).unwrap();
        }
        let expected = expected_texts(&case);

        let repo = ModelRepository::open(&tmp.0)
            .unwrap()
            .with_options(LoadOptions {
                strict: true,
                ..LoadOptions::default()
            });
        match repo.load(&name, None) {
            Ok(_) => {
                println!("{name}: ACCEPTED (expected one of {expected:?})");
                failures.push(format!("{name}: accepted"));
            }
            Err(e) => {
                let message = e.to_string();
                println!("{name}: {message}");
                let matched = if config.is_file() {
                    expected
                        .iter()
                        .any(|x| message.contains(x.as_str()) || message.contains(&unescape(x)))
                } else {
                    // No configuration: strict mode must refuse the model folder.
                    true
                };
                if !matched {
                    failures.push(format!(
                        "{name}: error {message:?} contains none of {expected:?}"
                    ));
                }
                // The configuration alone is refused the same way.
                if config.is_file() {
                    let again = repo
                        .model_config(&name)
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    if again != Err(message.clone()) {
                        failures.push(format!("{name}: model_config gave {again:?}"));
                    }
                }
            }
        }
        fs::remove_dir_all(&model_dir).unwrap();
    }
    println!(
        "noautofill_platform: {}/{total} cases refused with an expected error",
        total - failures.len()
    );
    assert!(total > 0, "no cases in {}", cases_dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn example_configs_are_accepted() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let examples = dir.join("examples");
    let files: Vec<PathBuf> = sorted_entries(&examples)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pbtxt"))
        .collect();
    assert!(
        !files.is_empty(),
        "no .pbtxt files in {}",
        examples.display()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let result = ModelConfig::from_file(file).and_then(|mut config| {
            normalize(&mut config, &NormalizeOptions::default())?;
            validate_config(&config, None)?;
            Ok(config)
        });
        match result {
            Ok(config) => {
                println!("{name}: accepted");
                // The normalised configuration prints, parses back the same and stays valid.
                let again = ModelConfig::parse(&config.to_pbtxt(), file)
                    .unwrap_or_else(|e| panic!("re-parsing {name}: {e}"));
                assert_eq!(again, config, "{name}");
                validate_config(&again, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Err(e) => {
                println!("{name}: REFUSED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    println!(
        "examples: {}/{} configurations accepted",
        files.len() - failures.len(),
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
