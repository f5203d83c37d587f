//! The `inference.ModelConfig` schema, compiled once at run time from the embedded
//! `proto/model_config.proto`.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};
use protox::file::{File, FileResolver};

use super::RepoError;

/// Name under which the embedded schema is compiled.
pub const PROTO_FILE_NAME: &str = "model_config.proto";

/// Text of Vigil's Triton-compatible `model_config.proto`.
pub const MODEL_CONFIG_PROTO: &str = include_str!("../proto/model_config.proto");

/// Full name of the configuration message.
pub const MODEL_CONFIG_MESSAGE: &str = "inference.ModelConfig";

/// Resolves exactly one file, the embedded schema; there are no imports.
struct EmbeddedSchema;

impl FileResolver for EmbeddedSchema {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == PROTO_FILE_NAME {
            File::from_source(name, MODEL_CONFIG_PROTO)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

fn compile() -> Result<DescriptorPool, String> {
    let mut compiler = protox::Compiler::with_file_resolver(EmbeddedSchema);
    compiler
        .open_file(PROTO_FILE_NAME)
        .map_err(|e| format!("cannot compile the embedded {PROTO_FILE_NAME}: {e}"))?;
    Ok(compiler.descriptor_pool())
}

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(compile);

/// The descriptor pool holding every message and enum of package `inference`.
pub fn descriptor_pool() -> Result<&'static DescriptorPool, RepoError> {
    POOL.as_ref().map_err(|e| RepoError::Schema(e.clone()))
}

/// Descriptor of `inference.ModelConfig`.
pub fn model_config_descriptor() -> Result<MessageDescriptor, RepoError> {
    descriptor_pool()?
        .get_message_by_name(MODEL_CONFIG_MESSAGE)
        .ok_or_else(|| {
            RepoError::Schema(format!(
                "the embedded {PROTO_FILE_NAME} has no message {MODEL_CONFIG_MESSAGE}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_compiles_and_has_the_triton_messages() {
        let pool = descriptor_pool().expect("embedded schema compiles");
        for name in [
            "inference.ModelConfig",
            "inference.ModelInput",
            "inference.ModelOutput",
            "inference.ModelInstanceGroup",
            "inference.ModelVersionPolicy.Latest",
            "inference.ModelOptimizationPolicy.Cuda.GraphSpec.LowerBound",
            "inference.ModelSequenceBatching.InitialState",
            "inference.ModelMetrics.MetricControl.HistogramOptions",
        ] {
            assert!(pool.get_message_by_name(name).is_some(), "missing {name}");
        }
        let config = model_config_descriptor().unwrap();
        let numbers: Vec<(String, u32)> = config
            .fields()
            .map(|f| (f.name().to_owned(), f.number()))
            .collect();
        for (name, number) in [
            ("name", 1),
            ("platform", 2),
            ("backend", 17),
            ("runtime", 25),
            ("version_policy", 3),
            ("max_batch_size", 4),
            ("input", 5),
            ("output", 6),
            ("instance_group", 7),
            ("default_model_filename", 8),
            ("dynamic_batching", 11),
            ("optimization", 12),
            ("parameters", 14),
            ("model_metrics", 26),
        ] {
            assert!(
                numbers.contains(&(name.to_owned(), number)),
                "ModelConfig.{name} should be field {number}"
            );
        }
        let data_type = pool.get_enum_by_name("inference.DataType").unwrap();
        assert_eq!(
            data_type.get_value_by_name("TYPE_FP32").unwrap().number(),
            11
        );
        assert_eq!(
            data_type.get_value_by_name("TYPE_BF16").unwrap().number(),
            14
        );
    }
}
