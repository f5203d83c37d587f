//! Helpers shared by the integration tests of `vigil-core`: temporary folders and the venv's Python.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A temporary folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty folder named after `prefix`, `tag`, the process and a counter.
    pub fn new(prefix: &str, tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vigil-{prefix}-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The checkout's root: `$VIGIL_REPO_ROOT` where set (the GPU check runs the test binaries on
/// another machine, with the models and media beside them), else the checkout they were built in.
pub fn root() -> PathBuf {
    match std::env::var_os("VIGIL_REPO_ROOT") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

/// The Python of the venv `~/.cache/vigil/venv` (made by `make setup`) when it has the `onnx` module;
/// otherwise `None`, with a SKIPPED line saying what is missing.
pub fn python_with_onnx() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let python = Path::new(&home).join(".cache/vigil/venv/bin/python");
    if !python.is_file() {
        println!("SKIPPED: {} is missing", python.display());
        return None;
    }
    let has_onnx = Command::new(&python)
        .args(["-c", "import onnx"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_onnx {
        println!(
            "SKIPPED: the python of {} has no `onnx` module",
            python.display()
        );
        return None;
    }
    Some(python)
}

/// Runs `script` (relative to the checkout) with `python` and `args`; panics with its stderr when it
/// fails.
pub fn run_script(python: &Path, script: &str, args: &[&Path]) {
    let script = root().join(script);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `name` from `samples/media` as RGBA pixels, with its size.
pub fn rgba(name: &str) -> (Vec<u8>, u32, u32) {
    let path = root().join("samples/media").join(name);
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    let (w, h) = img.dimensions();
    (img.into_raw(), w, h)
}

/// RGBA `pixels` (`w`x`h`) through the CPU pre-processing of `spec` (colour order swapped first
/// where the model takes BGR).
pub fn preprocessed(
    spec: &vigil_engine::preprocess::PreprocessSpec,
    mut pixels: Vec<u8>,
    w: u32,
    h: u32,
) -> Vec<f32> {
    use vigil_engine::preprocess::{ColorOrder, Preprocessor};
    if spec.color == ColorOrder::Bgr {
        for p in pixels.chunks_exact_mut(4) {
            p.swap(0, 2);
        }
    }
    let mut out = vec![0f32; spec.tensor_len()];
    Preprocessor::new(spec.clone())
        .run(&pixels, w, h, &mut out)
        .expect("pre-process");
    out
}
