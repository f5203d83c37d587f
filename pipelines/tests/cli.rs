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
