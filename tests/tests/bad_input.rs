//! Bad input to the real `vigil` binary: every case must exit non-zero with exactly ONE line on stderr,
//! `error: …`, that names the config file (and key/line for YAML problems), without a panic or a
//! backtrace (RUST_BACKTRACE=1 is set for the child on purpose).
//!
//! The binary is `target/<profile>/vigil`, next to this test executable's folder; it is (re)built first
//! with `cargo build -p vigil --bin vigil` so that a stale binary is never tested (a no-op when fresh).
//! `VIGIL_BIN=/path/to/vigil` skips that and uses the given binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_tests::{TempDir, repo_root, skip, vigil_bin};

/// A dummy media file (the config only needs it to exist: validation stops before decoding).
fn fake_media(dir: &Path) -> PathBuf {
    let p = dir.join("clip.avi");
    std::fs::write(&p, b"RIFF not really an avi").expect("write media");
    p
}

fn config_text(repo: &Path, media: &Path, model: &str) -> String {
    format!(
        "name: bad\n\
         model_repository: {repo}\n\
         sources:\n  - name: cam\n    uri: {media}\n\
         inference:\n  model: {model}\n  threshold: 0.4\n\
         outputs:\n  events:\n    path: events.jsonl\n",
        repo = repo.display(),
        media = media.display(),
    )
}

/// Runs `vigil run <config>` and checks the one-line error contract; returns the error line.
fn run_expecting_error(config: &Path) -> String {
    let out = Command::new(vigil_bin())
        .arg("run")
        .arg(config)
        .env("RUST_BACKTRACE", "1")
        .env_remove("GST_DEBUG")
        .output()
        .expect("run vigil");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "vigil succeeded on bad input {}; stderr:\n{stderr}",
        config.display()
    );
    assert_eq!(out.status.code(), Some(1), "exit status; stderr:\n{stderr}");
    let lower = stderr.to_lowercase();
    assert!(!lower.contains("panicked"), "panic in stderr:\n{stderr}");
    assert!(
        !lower.contains("backtrace"),
        "backtrace in stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr, got:\n{stderr}"
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(
        line.contains(&config.display().to_string()),
        "the error must name the config file: {line}"
    );
    line.to_string()
}

#[test]
fn malformed_yaml() {
    let dir = TempDir::new("yaml");
    let cfg = dir.path().join("broken.yaml");
    std::fs::write(
        &cfg,
        "name: broken\nsources:\n  - name: cam\n    uri: x: y\ninference: {model: x\n",
    )
    .unwrap();
    let line = run_expecting_error(&cfg);
    assert!(
        line.contains(" line ") && line.contains(" column "),
        "{line}"
    );
}

#[test]
fn unknown_key() {
    let dir = TempDir::new("key");
    let media = fake_media(dir.path());
    let cfg = dir.path().join("typo.yaml");
    let text = config_text(dir.path(), &media, "nanodet")
        .replace("  threshold: 0.4\n", "  thresold: 0.4\n");
    std::fs::write(&cfg, text).unwrap();
    let line = run_expecting_error(&cfg);
    // `thresold` is on line 8, column 3.
    assert!(line.contains("line 8 column 3"), "{line}");
    assert!(line.contains("thresold"), "{line}");
    assert!(line.contains("inference"), "{line}");
}

#[test]
fn wrong_value_type() {
    let dir = TempDir::new("type");
    let media = fake_media(dir.path());
    let cfg = dir.path().join("type.yaml");
    let text = config_text(dir.path(), &media, "nanodet")
        .replace("  threshold: 0.4\n", "  threshold: high\n");
    std::fs::write(&cfg, text).unwrap();
    let line = run_expecting_error(&cfg);
    assert!(
        line.contains("line 8") && line.contains("threshold"),
        "{line}"
    );
}

#[test]
fn missing_video_file() {
    let dir = TempDir::new("media");
    let cfg = dir.path().join("nomedia.yaml");
    let text = config_text(dir.path(), Path::new("media/nowhere.avi"), "nanodet");
    std::fs::write(&cfg, text).unwrap();
    let line = run_expecting_error(&cfg);
    let expected = dir.path().join("media/nowhere.avi");
    // the key's line: `uri:` is line 5 of the config
    assert!(line.contains(": line 5: sources[0].uri"), "{line}");
    assert!(
        line.ends_with(&format!(
            "sources[0].uri: no such file {}",
            expected.display()
        )),
        "{line} (expected the absolute path {})",
        expected.display()
    );
}

#[test]
fn missing_model() {
    let dir = TempDir::new("model");
    let media = fake_media(dir.path());
    let repo = dir.path().join("models");
    std::fs::create_dir_all(&repo).unwrap();
    let cfg = dir.path().join("nomodel.yaml");
    std::fs::write(&cfg, config_text(&repo, &media, "nosuchmodel")).unwrap();
    let line = run_expecting_error(&cfg);
    assert!(line.contains(": line 7: inference.model"), "{line}");
    assert!(line.contains("nosuchmodel"), "{line}");
    // Names where it looked.
    let canonical = std::fs::canonicalize(&repo).unwrap();
    assert!(line.contains(&canonical.display().to_string()), "{line}");
}

#[test]
fn missing_model_repository() {
    let dir = TempDir::new("repo");
    let media = fake_media(dir.path());
    let cfg = dir.path().join("norepo.yaml");
    std::fs::write(
        &cfg,
        config_text(&dir.path().join("no-repo-here"), &media, "nanodet"),
    )
    .unwrap();
    let line = run_expecting_error(&cfg);
    assert!(
        line.contains("model_repository") && line.contains("no-repo-here"),
        "{line}"
    );
}

#[test]
fn corrupt_model_file() {
    // A copy of the tracked nanodet entry (config + labels) with garbage as its model file.
    let src = repo_root().join("models/nanodet");
    if !src.join("config.pbtxt").is_file() {
        skip(format_args!(
            "corrupt_model_file: {} is missing",
            src.join("config.pbtxt").display()
        ));
        return;
    }
    let dir = TempDir::new("corrupt");
    let media = fake_media(dir.path());
    let repo = dir.path().join("models");
    let entry = repo.join("nanodet");
    std::fs::create_dir_all(entry.join("1")).unwrap();
    std::fs::copy(src.join("config.pbtxt"), entry.join("config.pbtxt")).unwrap();
    if src.join("labels.txt").is_file() {
        std::fs::copy(src.join("labels.txt"), entry.join("labels.txt")).unwrap();
    }
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(entry.join("1/model.onnx"), garbage).unwrap();
    let cfg = dir.path().join("corrupt.yaml");
    std::fs::write(&cfg, config_text(&repo, &media, "nanodet")).unwrap();
    let line = run_expecting_error(&cfg);
    assert!(
        line.contains("model.onnx"),
        "the error must name the model file: {line}"
    );
    assert!(line.contains("inference.model"), "{line}");
}

#[test]
fn unknown_class() {
    let src = repo_root().join("models/nanodet");
    if !src.join("labels.txt").is_file() || !src.join("1/model.onnx").is_file() {
        skip(format_args!(
            "unknown_class: the nanodet model is not installed in {} (run `make setup`)",
            src.display()
        ));
        return;
    }
    let dir = TempDir::new("class");
    let media = fake_media(dir.path());
    let cfg = dir.path().join("class.yaml");
    let text = config_text(&repo_root().join("models"), &media, "nanodet").replace(
        "  threshold: 0.4\n",
        "  threshold: 0.4\n  classes: [person, unicorn]\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let line = run_expecting_error(&cfg);
    assert!(
        line.contains("inference.classes[1]") && line.contains("unicorn"),
        "{line}"
    );
}

#[test]
fn missing_config_file() {
    let dir = TempDir::new("nofile");
    let cfg = dir.path().join("absent.yaml");
    let line = run_expecting_error(&cfg);
    assert!(line.contains("cannot read"), "{line}");
}
