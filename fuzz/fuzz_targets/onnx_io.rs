//! The ONNX reader of auto-complete: graph inputs/outputs and `metadata_props`, then what the
//! repository does with a model that has no `config.pbtxt` (auto-complete, normalise, validate).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vigil_modelrepo::onnx::{parse_onnx_io, parse_onnx_metadata};
use vigil_modelrepo::{
    DEFAULT_MAX_BATCH_SIZE, ModelConfig, NormalizeOptions, autocomplete_onnx, normalize,
    validate_config,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse_onnx_metadata(data);
    let Ok(io) = parse_onnx_io(data) else {
        return;
    };
    let mut config = ModelConfig::parse(
        "backend: \"onnxruntime\"",
        Path::new("models/fuzz/config.pbtxt"),
    )
    .expect("a fixed configuration parses");
    config.set_name("fuzz");
    if autocomplete_onnx(&mut config, &io, DEFAULT_MAX_BATCH_SIZE).is_ok()
        && normalize(&mut config, &NormalizeOptions::default()).is_ok()
    {
        let _ = validate_config(&config, None);
    }
});
