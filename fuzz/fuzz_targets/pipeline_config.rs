//! The pipeline YAML as `vigil run` / `vigil check` take it: `Config::parse`, then
//! `Config::validate` against the sandbox (media files, the model repository with the
//! repository's entries, rules, output folders under `out/`), in a network namespace of its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::config::Config;

fuzz_target!(|data: &[u8]| {
    let sandbox = vigil_fuzz::sandbox("pipeline_config", true);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = sandbox.path("configs/fuzz.yaml");
    let Ok(config) = Config::parse(text, "configs/fuzz.yaml") else {
        return;
    };
    if !sandbox.config_confined(&path, &config) {
        return;
    }
    std::fs::write(&path, text).expect("vigil-fuzz: cannot write the config");
    let _ = config.validate(&path);
    sandbox.clean_out();
});
