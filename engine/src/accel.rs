//! Execution-accelerator parameters of `config.pbtxt` → ONNX Runtime provider options, as Triton's
//! ONNX Runtime backend maps them.
//!
//! - **TensorRT** (`gpu_execution_accelerator [ { name: "tensorrt" parameters { ... } } ]`):
//!   `precision_mode` `FP32` | `FP16` | `INT8` (→ `trt_fp16_enable` / `trt_int8_enable`),
//!   `max_workspace_size_bytes` (→ `trt_max_workspace_size`), `int8_calibration_table_name`,
//!   `int8_use_native_calibration_table`, and the `trt_*` options ONNX Runtime documents (engine and
//!   timing caches, DLA, builder level, profiles, CUDA graphs, …). Booleans accept `1`/`0`/`true`/
//!   `false`; numbers are checked. An unknown key is an error naming it, as in Triton. Where the engine
//!   (or timing) cache is enabled without a path, the cache goes to the folder the caller gives (Vigil:
//!   one per model and version, so a new version never meets an engine built from older weights)
//!   instead of ONNX Runtime's default, the working directory.
//! - **CUDA** (`name: "cuda"`): its parameters are CUDA provider options, passed as they are (ONNX
//!   Runtime checks them when the session is made). Triton's older model-level `parameters`
//!   `cudnn_conv_algo_search` (0 exhaustive, 1 heuristic, 2 default), `gpu_mem_limit`,
//!   `arena_extend_strategy` (0 next power of two, 1 same as requested) and
//!   `do_copy_in_default_stream` are mapped too; the accelerator's own parameters win.
//! - **OpenVINO** (`cpu_execution_accelerator [ { name: "openvino" } ]`): parameters passed as they are.
//!
//! `device_id` is never taken from parameters: `instance_group.gpus` places instances.

use std::path::Path;

use crate::runtime::ProviderOptions;
use vigil_modelrepo::{Accelerator, ModelConfig};

/// TensorRT options taking `1`/`0`: (Triton key, ONNX Runtime key).
const TRT_BOOL: &[(&str, &str)] = &[
    (
        "int8_use_native_calibration_table",
        "trt_int8_use_native_calibration_table",
    ),
    ("trt_int8_use_native_calibration_table", ""),
    ("trt_fp16_enable", ""),
    ("trt_int8_enable", ""),
    ("trt_bf16_enable", ""),
    ("trt_dla_enable", ""),
    ("trt_engine_cache_enable", ""),
    ("trt_dump_subgraphs", ""),
    ("trt_force_sequential_engine_build", ""),
    ("trt_context_memory_sharing_enable", ""),
    ("trt_layer_norm_fp32_fallback", ""),
    ("trt_timing_cache_enable", ""),
    ("trt_force_timing_cache", ""),
    ("trt_detailed_build_log", ""),
    ("trt_build_heuristics_enable", ""),
    ("trt_sparsity_enable", ""),
    ("trt_cuda_graph_enable", ""),
    ("trt_dump_ep_context_model", ""),
    ("trt_weight_stripped_engine_enable", ""),
    ("trt_engine_hw_compatible", ""),
];

/// TensorRT options taking an integer (some may be negative, e.g. `trt_auxiliary_streams` -1).
const TRT_INT: &[(&str, &str)] = &[
    ("max_workspace_size_bytes", "trt_max_workspace_size"),
    ("trt_max_workspace_size", ""),
    ("trt_max_partition_iterations", ""),
    ("trt_min_subgraph_size", ""),
    ("trt_dla_core", ""),
    ("trt_builder_optimization_level", ""),
    ("trt_auxiliary_streams", ""),
    ("trt_ep_context_embed_mode", ""),
];

/// TensorRT options taking text.
const TRT_TEXT: &[(&str, &str)] = &[
    (
        "int8_calibration_table_name",
        "trt_int8_calibration_table_name",
    ),
    ("trt_int8_calibration_table_name", ""),
    ("trt_engine_cache_path", ""),
    ("trt_engine_cache_prefix", ""),
    ("trt_timing_cache_path", ""),
    ("trt_tactic_sources", ""),
    ("trt_extra_plugin_lib_paths", ""),
    ("trt_profile_min_shapes", ""),
    ("trt_profile_max_shapes", ""),
    ("trt_profile_opt_shapes", ""),
    ("trt_ep_context_file_path", ""),
    ("trt_onnx_model_folder_path", ""),
];

/// Triton's model-level CUDA parameters (their values are mapped in `cuda_options`).
const CUDA_MODEL_PARAMETERS: &[&str] = &[
    "cudnn_conv_algo_search",
    "gpu_mem_limit",
    "arena_extend_strategy",
    "do_copy_in_default_stream",
];

fn lookup<'a>(table: &'a [(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    table
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(k, ort)| if ort.is_empty() { *k } else { *ort })
}

fn bool_value(key: &str, v: &str) -> Result<&'static str, String> {
    match super::parse_bool(v) {
        Some(true) => Ok("1"),
        Some(false) => Ok("0"),
        None => Err(format!(
            "parameter '{key}': '{v}' is not 1, 0, true or false"
        )),
    }
}

fn int_value(key: &str, v: &str) -> Result<String, String> {
    v.trim()
        .parse::<i64>()
        .map(|n| n.to_string())
        .map_err(|_| format!("parameter '{key}': '{v}' is not an integer"))
}

/// Sets `key` to `value` in `options`, replacing an earlier value.
fn set(options: &mut Vec<(String, String)>, key: &str, value: String) {
    match options.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => options.push((key.to_owned(), value)),
    }
}

fn get<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The TensorRT options of `accelerator`'s parameters; `cache` is the folder of the engine and timing
/// caches where they are enabled without a path.
fn tensorrt_options(
    accelerator: &Accelerator,
    cache: &Path,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (key, v) in &accelerator.parameters {
        let key = key.as_str();
        if key == "device_id" {
            return Err(device_id_refused(key));
        }
        if key == "precision_mode" {
            let (fp16, int8) = match v.trim().to_ascii_uppercase().as_str() {
                "FP32" => ("0", "0"),
                "FP16" => ("1", "0"),
                "INT8" => ("0", "1"),
                _ => {
                    return Err(format!(
                        "parameter 'precision_mode': '{v}' is not FP32, FP16 or INT8"
                    ));
                }
            };
            set(&mut out, "trt_fp16_enable", fp16.into());
            set(&mut out, "trt_int8_enable", int8.into());
        } else if let Some(ort) = lookup(TRT_BOOL, key) {
            set(&mut out, ort, bool_value(key, v)?.into());
        } else if let Some(ort) = lookup(TRT_INT, key) {
            set(&mut out, ort, int_value(key, v)?);
        } else if let Some(ort) = lookup(TRT_TEXT, key) {
            set(&mut out, ort, v.clone());
        } else {
            let mut known: Vec<&str> = ["precision_mode"]
                .into_iter()
                .chain(
                    TRT_BOOL
                        .iter()
                        .chain(TRT_INT)
                        .chain(TRT_TEXT)
                        .map(|(k, _)| *k),
                )
                .collect();
            known.sort_unstable();
            return Err(format!(
                "unknown parameter '{key}' of the TensorRT execution accelerator (known: {})",
                known.join(", ")
            ));
        }
    }
    let cache = cache.to_string_lossy().into_owned();
    for (enable, path) in [
        ("trt_engine_cache_enable", "trt_engine_cache_path"),
        ("trt_timing_cache_enable", "trt_timing_cache_path"),
    ] {
        if get(&out, enable) == Some("1") && get(&out, path).is_none() {
            set(&mut out, path, cache.clone());
        }
    }
    Ok(out)
}

fn device_id_refused(key: &str) -> String {
    format!("parameter '{key}' cannot be set here: instance_group.gpus places the instances")
}

/// The CUDA options: Triton's model-level parameters, then the `cuda` accelerator's (passed as they
/// are).
fn cuda_options(
    config: &ModelConfig,
    accelerator: Option<&Accelerator>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for key in CUDA_MODEL_PARAMETERS {
        let Some(v) = config.parameters.get(*key) else {
            continue;
        };
        let value = match *key {
            "cudnn_conv_algo_search" => match v.trim().to_ascii_uppercase().as_str() {
                "0" | "EXHAUSTIVE" => "EXHAUSTIVE".to_owned(),
                "1" | "HEURISTIC" => "HEURISTIC".to_owned(),
                "2" | "DEFAULT" => "DEFAULT".to_owned(),
                _ => {
                    return Err(format!(
                        "parameter '{key}': '{v}' is not 0 (exhaustive), 1 (heuristic) or 2 (default)"
                    ));
                }
            },
            "gpu_mem_limit" => v
                .trim()
                .parse::<u64>()
                .map(|n| n.to_string())
                .map_err(|_| format!("parameter '{key}': '{v}' is not a number of bytes"))?,
            "arena_extend_strategy" => match v.trim() {
                "0" | "kNextPowerOfTwo" => "kNextPowerOfTwo".to_owned(),
                "1" | "kSameAsRequested" => "kSameAsRequested".to_owned(),
                _ => {
                    return Err(format!(
                        "parameter '{key}': '{v}' is not 0 (next power of two) or 1 (same as requested)"
                    ));
                }
            },
            _ => bool_value(key, v)?.to_owned(),
        };
        set(&mut out, key, value);
    }
    for (key, v) in accelerator.map(|a| &a.parameters).into_iter().flatten() {
        if key == "device_id" {
            return Err(device_id_refused(key));
        }
        set(&mut out, key, v.clone());
    }
    Ok(out)
}

/// The provider options of `config`'s execution accelerators; `cache` is where TensorRT's caches go
/// when enabled without a path. An error names the accelerator and the parameter.
pub fn provider_options(config: &ModelConfig, cache: &Path) -> Result<ProviderOptions, String> {
    let named = |list: &[Accelerator], name: &str| -> Option<Accelerator> {
        list.iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .cloned()
    };
    let accelerators = &config.execution_accelerators;
    let tensorrt = match named(&accelerators.gpu, "tensorrt") {
        Some(a) => tensorrt_options(&a, cache)
            .map_err(|e| format!("gpu_execution_accelerator 'tensorrt': {e}"))?,
        None => Vec::new(),
    };
    let cuda = cuda_options(config, named(&accelerators.gpu, "cuda").as_ref())
        .map_err(|e| format!("CUDA execution provider: {e}"))?;
    let openvino = match named(&accelerators.cpu, "openvino") {
        Some(a) => {
            if a.parameters.contains_key("device_id") {
                return Err(format!(
                    "cpu_execution_accelerator 'openvino': {}",
                    device_id_refused("device_id")
                ));
            }
            a.parameters.into_iter().collect()
        }
        None => Vec::new(),
    };
    Ok(ProviderOptions {
        tensorrt,
        cuda,
        openvino,
    })
}

/// Where Vigil keeps the TensorRT caches of `model` version `version`:
/// `$XDG_CACHE_HOME/vigil/tensorrt/<model>/<version>` (else `~/.cache/…`, else the temporary folder).
pub fn default_cache_dir(model: &str, version: u64) -> std::path::PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| Path::new(&h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("vigil/tensorrt")
        .join(model)
        .join(version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ModelConfig {
        ModelConfig::parse(
            &format!("name: \"m\"\nbackend: \"onnxruntime\"\n{text}"),
            Path::new("m/config.pbtxt"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn trt(params: &str) -> Result<Vec<(String, String)>, String> {
        let c = config(&format!(
            "optimization {{ execution_accelerators {{ gpu_execution_accelerator [ \
             {{ name: \"tensorrt\" {params} }} ] }} }}"
        ));
        provider_options(&c, Path::new("/cache/m/1")).map(|o| o.tensorrt)
    }

    fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
        v.sort();
        v
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tensorrt_parameters_map_as_in_triton() {
        let got = trt("parameters { key: \"precision_mode\" value: \"FP16\" } \
             parameters { key: \"max_workspace_size_bytes\" value: \"1073741824\" } \
             parameters { key: \"trt_engine_cache_enable\" value: \"true\" }")
        .unwrap();
        assert_eq!(
            sorted(got),
            pairs(&[
                ("trt_engine_cache_enable", "1"),
                ("trt_engine_cache_path", "/cache/m/1"),
                ("trt_fp16_enable", "1"),
                ("trt_int8_enable", "0"),
                ("trt_max_workspace_size", "1073741824"),
            ])
        );
        let got = trt("parameters { key: \"precision_mode\" value: \"int8\" } \
             parameters { key: \"int8_calibration_table_name\" value: \"calib.flatbuffers\" } \
             parameters { key: \"int8_use_native_calibration_table\" value: \"0\" } \
             parameters { key: \"trt_engine_cache_enable\" value: \"1\" } \
             parameters { key: \"trt_engine_cache_path\" value: \"/var/trt\" } \
             parameters { key: \"trt_auxiliary_streams\" value: \"-1\" }")
        .unwrap();
        assert_eq!(
            sorted(got),
            pairs(&[
                ("trt_auxiliary_streams", "-1"),
                ("trt_engine_cache_enable", "1"),
                ("trt_engine_cache_path", "/var/trt"),
                ("trt_fp16_enable", "0"),
                ("trt_int8_calibration_table_name", "calib.flatbuffers"),
                ("trt_int8_enable", "1"),
                ("trt_int8_use_native_calibration_table", "0"),
            ])
        );
        // The timing cache, enabled without a path, goes to the cache folder too.
        let got = trt("parameters { key: \"trt_timing_cache_enable\" value: \"1\" }").unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("trt_timing_cache_enable", "1"),
                ("trt_timing_cache_path", "/cache/m/1"),
            ])
        );
        // Disabled caches get no path.
        assert_eq!(
            trt("parameters { key: \"trt_engine_cache_enable\" value: \"0\" }").unwrap(),
            pairs(&[("trt_engine_cache_enable", "0")])
        );
        assert_eq!(trt("").unwrap(), Vec::new());
    }

    #[test]
    fn bad_tensorrt_parameters_are_errors_naming_them() {
        let e = trt("parameters { key: \"precision_mode\" value: \"FP8\" }").unwrap_err();
        assert!(
            e.contains("'tensorrt'") && e.contains("precision_mode") && e.contains("FP8"),
            "{e}"
        );
        let e = trt("parameters { key: \"max_workspace_size_bytes\" value: \"1GB\" }").unwrap_err();
        assert!(
            e.contains("max_workspace_size_bytes") && e.contains("integer"),
            "{e}"
        );
        let e =
            trt("parameters { key: \"trt_engine_cache_enable\" value: \"maybe\" }").unwrap_err();
        assert!(
            e.contains("trt_engine_cache_enable") && e.contains("maybe"),
            "{e}"
        );
        let e = trt("parameters { key: \"precison_mode\" value: \"FP16\" }").unwrap_err();
        assert!(
            e.contains("unknown parameter 'precison_mode'") && e.contains("precision_mode"),
            "{e}"
        );
        let e = trt("parameters { key: \"device_id\" value: \"1\" }").unwrap_err();
        assert!(e.contains("instance_group.gpus"), "{e}");
    }

    #[test]
    fn cuda_parameters_model_level_and_accelerator() {
        let c = config(
            "parameters { key: \"cudnn_conv_algo_search\" value: { string_value: \"1\" } }\n\
             parameters { key: \"gpu_mem_limit\" value: { string_value: \"4294967200\" } }\n\
             parameters { key: \"arena_extend_strategy\" value: { string_value: \"1\" } }\n\
             parameters { key: \"do_copy_in_default_stream\" value: { string_value: \"true\" } }\n\
             optimization { execution_accelerators { gpu_execution_accelerator [ \
             { name: \"cuda\" parameters { key: \"cudnn_conv_use_max_workspace\" value: \"0\" } \
               parameters { key: \"gpu_mem_limit\" value: \"1000\" } } ] } }",
        );
        let o = provider_options(&c, Path::new("/c")).unwrap();
        assert_eq!(
            o.cuda,
            pairs(&[
                ("cudnn_conv_algo_search", "HEURISTIC"),
                ("gpu_mem_limit", "1000"),
                ("arena_extend_strategy", "kSameAsRequested"),
                ("do_copy_in_default_stream", "1"),
                ("cudnn_conv_use_max_workspace", "0"),
            ])
        );
        assert!(o.tensorrt.is_empty() && o.openvino.is_empty());
        let c =
            config("parameters { key: \"cudnn_conv_algo_search\" value: { string_value: \"3\" } }");
        let e = provider_options(&c, Path::new("/c")).unwrap_err();
        assert!(
            e.contains("cudnn_conv_algo_search") && e.contains("'3'"),
            "{e}"
        );
        // Vigil's own parameters are not CUDA options.
        let c =
            config("parameters { key: \"vigil.postprocess\" value: { string_value: \"gfl\" } }");
        assert_eq!(
            provider_options(&c, Path::new("/c")).unwrap(),
            ProviderOptions::default()
        );
    }

    #[test]
    fn openvino_parameters_pass_through() {
        let c = config(
            "optimization { execution_accelerators { cpu_execution_accelerator [ \
             { name: \"openvino\" parameters { key: \"num_of_threads\" value: \"2\" } } ] } }",
        );
        let o = provider_options(&c, Path::new("/c")).unwrap();
        assert_eq!(o.openvino, pairs(&[("num_of_threads", "2")]));
    }

    #[test]
    fn cache_folder_is_per_model_and_version() {
        let d = default_cache_dir("nanodet", 3);
        assert!(d.ends_with("vigil/tensorrt/nanodet/3"), "{}", d.display());
    }
}
