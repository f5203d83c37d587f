//! `config.pbtxt` as the model repository reads it: text-format parsing, normalisation and
//! validation with Triton's rules, then printing (`vigil models show`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vigil_modelrepo::{ModelConfig, NormalizeOptions, normalize, validate_config};

fuzz_target!(|data: &[u8]| {
    // The repository reads the file as UTF-8 text; other bytes are an I/O error before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut config) = ModelConfig::parse(text, Path::new("models/fuzz/config.pbtxt")) else {
        return;
    };
    if normalize(&mut config, &NormalizeOptions::default()).is_ok()
        && validate_config(&config, None).is_ok()
    {
        let _ = config.to_pbtxt();
    }
});
