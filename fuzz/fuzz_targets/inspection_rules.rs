//! The inspection rules YAML (`Rules::parse`: schema, patterns, lookups, validation), its lookups
//! read from the sandbox.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_norway::Value;
use vigil_core::inspect::Rules;

/// Whether every `lookups.<name>.file` is a plain string naming a file inside the sandbox.
fn lookups_confined(sandbox: &vigil_fuzz::Sandbox, base: &std::path::Path, text: &str) -> bool {
    let Ok(doc) = serde_norway::from_str::<Value>(text) else {
        // Not YAML the schema could take either (duplicate keys aside): nothing is read.
        return true;
    };
    let Some(lookups) = doc.get("lookups") else {
        return true;
    };
    let Value::Mapping(lookups) = lookups else {
        return matches!(lookups, Value::Null);
    };
    lookups.values().all(|l| match l {
        Value::Mapping(m) => match m.get("file") {
            None => true,
            Some(Value::String(f)) => sandbox.contains(base, std::path::Path::new(f)),
            Some(_) => false,
        },
        _ => false,
    })
}

fuzz_target!(|data: &[u8]| {
    let sandbox = vigil_fuzz::sandbox("inspection_rules", false);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = sandbox.path("configs/inspection");
    if !lookups_confined(sandbox, &base, text) {
        return;
    }
    let _ = Rules::parse(text, "configs/inspection/rules.yaml", &base);
});
