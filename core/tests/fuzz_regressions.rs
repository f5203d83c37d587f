//! Inputs on which a fuzz target (`fuzz/`, see fuzz/README.md) once panicked, hung or ran out of
//! memory, run through the same code as the target. Each must now give a clean result: the
//! expected error (its message naming what is wrong), never a panic. The inputs are in
//! `tests/data/fuzz/<target>/`; every file there must be listed in its test's table.

use std::path::{Path, PathBuf};

fn data_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/data/fuzz/{target}"))
}

/// The inputs of `target`, each with the text its error must contain, checked against the table:
/// a file without an entry, or an entry without a file, fails the test.
fn inputs<'a>(target: &str, table: &[(&str, &'a str)]) -> Vec<(PathBuf, &'a str)> {
    let dir = data_dir(target);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let mut listed: Vec<&str> = table.iter().map(|(f, _)| *f).collect();
    listed.sort();
    assert_eq!(files, listed, "{}: files and table differ", dir.display());
    table.iter().map(|(f, e)| (dir.join(f), *e)).collect()
}

#[test]
fn inspection_rules_inputs_give_clean_errors() {
    use vigil_core::inspect::Rules;
    let table = [(
        // `%s` (seconds since the epoch) cannot print a date: chrono's formatting error used to
        // become a panic in `to_string`.
        "date-format-needs-time.yaml",
        "cannot print a date",
    )];
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/inspection");
    for (path, expected) in inputs("inspection_rules", &table) {
        let text = std::fs::read_to_string(&path).expect("input is UTF-8");
        let name = path.display().to_string();
        match Rules::parse(&text, &name, &base) {
            Ok(_) => panic!("{name}: parsed, expected an error with '{expected}'"),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(expected) && message.contains(&name),
                    "{name}: error '{message}' does not name the file and say '{expected}'"
                );
            }
        }
    }
}
