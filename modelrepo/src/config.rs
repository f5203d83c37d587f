//! A typed view of `inference.ModelConfig`, next to the parsed `DynamicMessage` it came from.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value};

use super::RepoError;
use super::schema::model_config_descriptor;
use super::text::{format_message, parse_text, strip_defaults};

/// Element type of a tensor (`inference.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DataType {
    /// `TYPE_INVALID` (0): the field was not set.
    #[default]
    Invalid,
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    String,
    Bf16,
}

impl DataType {
    const ALL: [(DataType, i32, &'static str); 15] = [
        (DataType::Invalid, 0, "TYPE_INVALID"),
        (DataType::Bool, 1, "TYPE_BOOL"),
        (DataType::Uint8, 2, "TYPE_UINT8"),
        (DataType::Uint16, 3, "TYPE_UINT16"),
        (DataType::Uint32, 4, "TYPE_UINT32"),
        (DataType::Uint64, 5, "TYPE_UINT64"),
        (DataType::Int8, 6, "TYPE_INT8"),
        (DataType::Int16, 7, "TYPE_INT16"),
        (DataType::Int32, 8, "TYPE_INT32"),
        (DataType::Int64, 9, "TYPE_INT64"),
        (DataType::Fp16, 10, "TYPE_FP16"),
        (DataType::Fp32, 11, "TYPE_FP32"),
        (DataType::Fp64, 12, "TYPE_FP64"),
        (DataType::String, 13, "TYPE_STRING"),
        (DataType::Bf16, 14, "TYPE_BF16"),
    ];

    /// The name ONNX Runtime's element type has in `vigil_engine::runtime::IoInfo::dtype` (e.g.
    /// `Float32` for `TYPE_FP32`); `None` for `TYPE_INVALID`.
    pub fn element_name(self) -> Option<&'static str> {
        Some(match self {
            DataType::Invalid => return None,
            DataType::Bool => "Bool",
            DataType::Uint8 => "Uint8",
            DataType::Uint16 => "Uint16",
            DataType::Uint32 => "Uint32",
            DataType::Uint64 => "Uint64",
            DataType::Int8 => "Int8",
            DataType::Int16 => "Int16",
            DataType::Int32 => "Int32",
            DataType::Int64 => "Int64",
            DataType::Fp16 => "Float16",
            DataType::Fp32 => "Float32",
            DataType::Fp64 => "Float64",
            DataType::String => "String",
            DataType::Bf16 => "Bfloat16",
        })
    }

    /// The enum value with protobuf number `number`.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, n, _)| *n == number)
            .map(|(t, _, _)| *t)
    }

    /// The protobuf number of this value.
    pub fn number(self) -> i32 {
        Self::ALL
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or(0, |(_, n, _)| *n)
    }

    /// The name used in `config.pbtxt`, e.g. `TYPE_FP32`.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or("TYPE_INVALID", |(_, _, s)| s)
    }

    /// Parses a `config.pbtxt` name such as `TYPE_FP32`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, _, s)| *s == name)
            .map(|(t, _, _)| *t)
    }

    /// Size of one element in bytes; `None` for `TYPE_STRING` and `TYPE_INVALID`.
    pub fn size_bytes(self) -> Option<usize> {
        match self {
            DataType::Invalid | DataType::String => None,
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Image layout of an input (`inference.ModelInput.Format`); outputs are always `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TensorFormat {
    /// `FORMAT_NONE`: no particular layout.
    #[default]
    None,
    /// `FORMAT_NCHW`: channels first.
    Nchw,
    /// `FORMAT_NHWC`: channels last.
    Nhwc,
}

impl TensorFormat {
    fn from_number(number: i32) -> Option<Self> {
        match number {
            0 => Some(TensorFormat::None),
            1 => Some(TensorFormat::Nhwc),
            2 => Some(TensorFormat::Nchw),
            _ => None,
        }
    }

    /// The name used in `config.pbtxt`, e.g. `FORMAT_NCHW`.
    pub fn as_str(self) -> &'static str {
        match self {
            TensorFormat::None => "FORMAT_NONE",
            TensorFormat::Nchw => "FORMAT_NCHW",
            TensorFormat::Nhwc => "FORMAT_NHWC",
        }
    }
}

impl fmt::Display for TensorFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One input or output tensor (`ModelInput` / `ModelOutput`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TensorConfig {
    pub name: String,
    pub data_type: DataType,
    /// Shape without the batch dimension when `max_batch_size > 0`; `-1` = variable.
    pub dims: Vec<i64>,
    /// Inputs only; `None` for outputs.
    pub format: TensorFormat,
    /// `reshape { shape: [...] }` when present.
    pub reshape: Option<Vec<i64>>,
    /// Outputs only: labels file, relative to the model folder.
    pub label_filename: Option<String>,
}

/// Which versions of a model are served (`ModelVersionPolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The `num_versions` highest-numbered versions. Triton's default is `Latest { num_versions: 1 }`.
    Latest { num_versions: u32 },
    /// Every version present.
    All,
    /// Only these versions.
    Specific(Vec<i64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest { num_versions: 1 }
    }
}

impl fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPolicy::Latest { num_versions } => write!(f, "latest {num_versions}"),
            VersionPolicy::All => f.write_str("all"),
            VersionPolicy::Specific(v) => {
                let list: Vec<String> = v.iter().map(i64::to_string).collect();
                write!(f, "specific [{}]", list.join(", "))
            }
        }
    }
}

/// Kind of an instance group (`ModelInstanceGroup.Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InstanceKind {
    #[default]
    Auto,
    Gpu,
    Cpu,
    Model,
}

impl InstanceKind {
    fn from_number(number: i32) -> Option<Self> {
        match number {
            0 => Some(InstanceKind::Auto),
            1 => Some(InstanceKind::Gpu),
            2 => Some(InstanceKind::Cpu),
            3 => Some(InstanceKind::Model),
            _ => None,
        }
    }

    /// The name used in `config.pbtxt`, e.g. `KIND_GPU`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Auto => "KIND_AUTO",
            InstanceKind::Gpu => "KIND_GPU",
            InstanceKind::Cpu => "KIND_CPU",
            InstanceKind::Model => "KIND_MODEL",
        }
    }
}

impl fmt::Display for InstanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `instance_group` entry (as written; after [`super::normalize()`] with Triton's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceGroup {
    pub name: String,
    pub kind: InstanceKind,
    /// 0 when absent; normalisation fills in Triton's default (1, or 2 for CPU groups of the
    /// `onnxruntime` and `tensorflow` backends).
    pub count: i32,
    pub gpus: Vec<i32>,
}

/// `dynamic_batching { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DynamicBatching {
    pub preferred_batch_size: Vec<i32>,
    pub max_queue_delay_microseconds: u64,
    pub preserve_ordering: bool,
    pub priority_levels: u64,
    pub default_priority_level: u64,
}

/// One execution accelerator (`ExecutionAccelerators.Accelerator`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accelerator {
    pub name: String,
    pub parameters: BTreeMap<String, String>,
}

/// `optimization { execution_accelerators { ... } }`, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecutionAccelerators {
    pub gpu: Vec<Accelerator>,
    pub cpu: Vec<Accelerator>,
}

impl ExecutionAccelerators {
    /// Names of the GPU accelerators, e.g. `["tensorrt"]`.
    pub fn gpu_names(&self) -> Vec<&str> {
        self.gpu.iter().map(|a| a.name.as_str()).collect()
    }

    /// Names of the CPU accelerators, e.g. `["openvino"]`.
    pub fn cpu_names(&self) -> Vec<&str> {
        self.cpu.iter().map(|a| a.name.as_str()).collect()
    }
}

/// A model configuration: the typed fields Vigil uses plus the full parsed message.
///
/// Equality compares the typed fields and the parsed message; fields written with their default
/// value (`max_batch_size: 0`) are dropped from [`ModelConfig::raw`], so they do not matter.
#[derive(Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    pub platform: String,
    pub backend: String,
    pub max_batch_size: i32,
    pub input: Vec<TensorConfig>,
    pub output: Vec<TensorConfig>,
    /// `parameters { key: "k" value { string_value: "v" } }`.
    pub parameters: BTreeMap<String, String>,
    /// [`VersionPolicy::default`] (latest 1) when absent.
    pub version_policy: VersionPolicy,
    pub instance_group: Vec<InstanceGroup>,
    /// `Some` when `dynamic_batching { }` is present (even empty).
    pub dynamic_batching: Option<DynamicBatching>,
    /// `None` when absent or empty.
    pub default_model_filename: Option<String>,
    pub execution_accelerators: ExecutionAccelerators,
    /// The complete parsed `inference.ModelConfig`.
    pub raw: DynamicMessage,
}

impl ModelConfig {
    /// Parses `config.pbtxt` text. `path` names the file in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, RepoError> {
        let raw = parse_text(model_config_descriptor()?, text, path)?;
        Self::from_message(raw).map_err(|message| RepoError::ConfigInvalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Reads and parses a `config.pbtxt` file.
    pub fn from_file(path: &Path) -> Result<Self, RepoError> {
        let text = std::fs::read_to_string(path).map_err(|source| RepoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Builds the typed view of a parsed `inference.ModelConfig`. Errors (enum numbers that
    /// the schema does not know) name the field.
    pub fn from_message(mut raw: DynamicMessage) -> Result<Self, String> {
        if raw.descriptor().full_name() != super::schema::MODEL_CONFIG_MESSAGE {
            return Err(format!(
                "expected an {} message, got {}",
                super::schema::MODEL_CONFIG_MESSAGE,
                raw.descriptor().full_name()
            ));
        }
        strip_defaults(&mut raw);
        let input = messages(&raw, "input")
            .iter()
            .map(|m| tensor(m, "input"))
            .collect::<Result<Vec<_>, _>>()?;
        let output = messages(&raw, "output")
            .iter()
            .map(|m| tensor(m, "output"))
            .collect::<Result<Vec<_>, _>>()?;
        let instance_group = messages(&raw, "instance_group")
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let number = enum_number(m, "kind");
                let kind = InstanceKind::from_number(number).ok_or_else(|| {
                    format!(
                        "instance_group {i}: kind {number} is not a known ModelInstanceGroup.Kind"
                    )
                })?;
                Ok(InstanceGroup {
                    name: string(m, "name"),
                    kind,
                    count: i32_value(m, "count"),
                    gpus: list(m, "gpus", Value::as_i32),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;

        let dynamic_batching = message(&raw, "dynamic_batching").map(|m| DynamicBatching {
            preferred_batch_size: list(&m, "preferred_batch_size", Value::as_i32),
            max_queue_delay_microseconds: u64_value(&m, "max_queue_delay_microseconds"),
            preserve_ordering: bool_value(&m, "preserve_ordering"),
            priority_levels: u64_value(&m, "priority_levels"),
            default_priority_level: u64_value(&m, "default_priority_level"),
        });

        let execution_accelerators = message(&raw, "optimization")
            .and_then(|m| message(&m, "execution_accelerators"))
            .map(|m| ExecutionAccelerators {
                gpu: accelerators(&m, "gpu_execution_accelerator"),
                cpu: accelerators(&m, "cpu_execution_accelerator"),
            })
            .unwrap_or_default();

        let parameters = map_entries(&raw, "parameters")
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::Message(m) => string(&m, "string_value"),
                    _ => String::new(),
                };
                (key, value)
            })
            .collect();

        let default_model_filename =
            Some(string(&raw, "default_model_filename")).filter(|s| !s.is_empty());

        Ok(ModelConfig {
            name: string(&raw, "name"),
            platform: string(&raw, "platform"),
            backend: string(&raw, "backend"),
            max_batch_size: i32_value(&raw, "max_batch_size"),
            input,
            output,
            parameters,
            version_policy: version_policy(&raw),
            instance_group,
            dynamic_batching,
            default_model_filename,
            execution_accelerators,
            raw,
        })
    }

    /// The configuration as Triton's JSON (what a Python model's `initialize` gets as
    /// `args["model_config"]`): proto field names, every field (defaults too), 64-bit integers as
    /// numbers, enums by name.
    pub fn to_json(&self) -> String {
        let options = prost_reflect::SerializeOptions::new()
            .use_proto_field_name(true)
            .stringify_64_bit_integers(false)
            .skip_default_fields(false);
        let mut serializer = serde_json::Serializer::new(Vec::new());
        match self.raw.serialize_with_options(&mut serializer, &options) {
            Ok(()) => String::from_utf8(serializer.into_inner()).unwrap_or_default(),
            Err(_) => "{}".to_owned(),
        }
    }

    /// Parses a configuration from Triton's JSON (as [`ModelConfig::to_json`] writes it; field
    /// names in either case). `path` names where it came from in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, RepoError> {
        let invalid = |message: String| RepoError::ConfigInvalid {
            path: path.to_path_buf(),
            message,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = DynamicMessage::deserialize(model_config_descriptor()?, &mut de)
            .map_err(|e| invalid(format!("the configuration as JSON: {e}")))?;
        Self::from_message(raw).map_err(invalid)
    }

    /// Sets the model name in both the typed view and [`ModelConfig::raw`].
    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_owned();
        self.raw
            .set_field_by_name("name", Value::String(name.to_owned()));
    }

    /// The full configuration as `config.pbtxt` text in Triton's style (fields in field-number
    /// order, defaults left out, map entries sorted by key). Parses back to an equal config.
    pub fn to_pbtxt(&self) -> String {
        format_message(&self.raw)
    }

    /// Whether `model_transaction_policy { decoupled: true }`: a request may get any number of
    /// responses (zero included), sent whenever the model likes.
    pub fn decoupled(&self) -> bool {
        message(&self.raw, "model_transaction_policy").is_some_and(|m| bool_value(&m, "decoupled"))
    }

    /// The input called `name`.
    pub fn input_named(&self, name: &str) -> Option<&TensorConfig> {
        self.input.iter().find(|t| t.name == name)
    }

    /// The output called `name`.
    pub fn output_named(&self, name: &str) -> Option<&TensorConfig> {
        self.output.iter().find(|t| t.name == name)
    }
}

impl fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelConfig")
            .field("name", &self.name)
            .field("platform", &self.platform)
            .field("backend", &self.backend)
            .field("max_batch_size", &self.max_batch_size)
            .field("input", &self.input)
            .field("output", &self.output)
            .field("parameters", &self.parameters)
            .field("version_policy", &self.version_policy)
            .field("instance_group", &self.instance_group)
            .field("dynamic_batching", &self.dynamic_batching)
            .field("default_model_filename", &self.default_model_filename)
            .field("execution_accelerators", &self.execution_accelerators)
            .field("raw", &format_message(&self.raw))
            .finish()
    }
}

// ---- reading fields of a DynamicMessage (names come from the embedded schema) ----

fn field<'a>(m: &'a DynamicMessage, name: &str) -> Option<Cow<'a, Value>> {
    m.get_field_by_name(name)
}

fn string(m: &DynamicMessage, name: &str) -> String {
    field(m, name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn i32_value(m: &DynamicMessage, name: &str) -> i32 {
    field(m, name).and_then(|v| v.as_i32()).unwrap_or_default()
}

fn u32_value(m: &DynamicMessage, name: &str) -> u32 {
    field(m, name).and_then(|v| v.as_u32()).unwrap_or_default()
}

fn u64_value(m: &DynamicMessage, name: &str) -> u64 {
    field(m, name).and_then(|v| v.as_u64()).unwrap_or_default()
}

fn bool_value(m: &DynamicMessage, name: &str) -> bool {
    field(m, name).and_then(|v| v.as_bool()).unwrap_or_default()
}

fn enum_number(m: &DynamicMessage, name: &str) -> i32 {
    field(m, name)
        .and_then(|v| v.as_enum_number())
        .unwrap_or_default()
}

fn list<T>(m: &DynamicMessage, name: &str, get: fn(&Value) -> Option<T>) -> Vec<T> {
    field(m, name)
        .and_then(|v| v.as_list().map(|l| l.iter().filter_map(get).collect()))
        .unwrap_or_default()
}

/// A singular message field, only when it is present.
fn message(m: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if !m.has_field_by_name(name) {
        return None;
    }
    field(m, name).and_then(|v| v.as_message().cloned())
}

/// A repeated message field.
fn messages(m: &DynamicMessage, name: &str) -> Vec<DynamicMessage> {
    list(m, name, |v| v.as_message().cloned())
}

/// Entries of a map field with string keys, sorted by key.
fn map_entries(m: &DynamicMessage, name: &str) -> BTreeMap<String, Value> {
    field(m, name)
        .and_then(|v| {
            v.as_map().map(|map| {
                map.iter()
                    .filter_map(|(k, v)| match k {
                        MapKey::String(k) => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn tensor(m: &DynamicMessage, what: &str) -> Result<TensorConfig, String> {
    let name = string(m, "name");
    let number = enum_number(m, "data_type");
    let data_type = DataType::from_number(number)
        .ok_or_else(|| format!("{what} '{name}': data_type {number} is not a known DataType"))?;
    let format = if m.descriptor().get_field_by_name("format").is_some() {
        let number = enum_number(m, "format");
        TensorFormat::from_number(number).ok_or_else(|| {
            format!("{what} '{name}': format {number} is not a known ModelInput.Format")
        })?
    } else {
        TensorFormat::None
    };
    let reshape = message(m, "reshape").map(|r| list(&r, "shape", Value::as_i64));
    let label_filename = if m.descriptor().get_field_by_name("label_filename").is_some() {
        Some(string(m, "label_filename")).filter(|s| !s.is_empty())
    } else {
        None
    };
    Ok(TensorConfig {
        name,
        data_type,
        dims: list(m, "dims", Value::as_i64),
        format,
        reshape,
        label_filename,
    })
}

fn accelerators(m: &DynamicMessage, name: &str) -> Vec<Accelerator> {
    messages(m, name)
        .iter()
        .map(|a| Accelerator {
            name: string(a, "name"),
            parameters: map_entries(a, "parameters")
                .into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
                .collect(),
        })
        .collect()
}

fn version_policy(raw: &DynamicMessage) -> VersionPolicy {
    let Some(policy) = message(raw, "version_policy") else {
        return VersionPolicy::default();
    };
    if let Some(latest) = message(&policy, "latest") {
        VersionPolicy::Latest {
            num_versions: u32_value(&latest, "num_versions"),
        }
    } else if policy.has_field_by_name("all") {
        VersionPolicy::All
    } else if let Some(specific) = message(&policy, "specific") {
        VersionPolicy::Specific(list(&specific, "versions", Value::as_i64))
    } else {
        // `version_policy { }` with no choice: Triton's default.
        VersionPolicy::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const NANODET: &str = r#"
# NanoDet-m, 416x416, COCO
name: "nanodet"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size: 8
default_model_filename: "nanodet.onnx"
version_policy: { specific { versions: [1, 3] } }
input [
  {
    name: "data"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 416, 416 ]
  }
]
output [
  {
    name: "output"
    data_type: TYPE_FP32
    dims: [ 3598, -1 ]
    label_filename: "coco.txt"
    reshape { shape: [ 3598, 112 ] }
  }
]
instance_group [
  { name: "gpu" kind: KIND_GPU count: 2 gpus: [ 0, 1 ] },
  { kind: KIND_CPU }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  preserve_ordering: true
  priority_levels: 2
}
optimization { execution_accelerators {
  gpu_execution_accelerator : [ {
    name : "tensorrt"
    parameters { key: "precision_mode" value: "FP16" }
  } ]
  cpu_execution_accelerator : [ { name : "openvino" } ]
}}
parameters { key: "score_threshold" value: { string_value: "0.35" } }
parameters [
  { key: "nms_iou" value { string_value: "0.6" } },
  { key: "layout" value { string_value: "nchw" } }
]
"#;

    fn path() -> PathBuf {
        PathBuf::from("/repo/nanodet/config.pbtxt")
    }

    #[test]
    fn json_round_trip_keeps_the_configuration() {
        for text in [NANODET, "name: \"m\"\nbackend: \"python\"\n"] {
            let c = ModelConfig::parse(text, &path()).unwrap();
            let json = c.to_json();
            let back = ModelConfig::from_json(&json, &path()).unwrap();
            assert_eq!(back, c, "{json}");
            assert_eq!(back.to_pbtxt(), c.to_pbtxt());
        }
        // Triton's JSON as a Python model's auto_complete_config gives it back.
        let c = ModelConfig::from_json(
            r#"{"name": "m", "max_batch_size": 4, "dynamic_batching": {},
                "input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": [4]}]}"#,
            &path(),
        )
        .unwrap();
        assert_eq!(
            (c.max_batch_size, c.input[0].dims.as_slice()),
            (4, &[4][..])
        );
        assert!(c.dynamic_batching.is_some());
        let e = ModelConfig::from_json(r#"{"name": "m", "dims": 3}"#, &path()).unwrap_err();
        assert!(e.to_string().contains("dims"), "{e}");
    }

    #[test]
    fn typed_view_of_a_realistic_config() {
        let c = ModelConfig::parse(NANODET, &path()).unwrap();
        assert_eq!(c.name, "nanodet");
        assert_eq!(c.platform, "onnxruntime_onnx");
        assert_eq!(c.backend, "onnxruntime");
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.default_model_filename.as_deref(), Some("nanodet.onnx"));
        assert_eq!(c.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!(
            c.input,
            vec![TensorConfig {
                name: "data".into(),
                data_type: DataType::Fp32,
                dims: vec![3, 416, 416],
                format: TensorFormat::Nchw,
                reshape: None,
                label_filename: None,
            }]
        );
        assert_eq!(
            c.output,
            vec![TensorConfig {
                name: "output".into(),
                data_type: DataType::Fp32,
                dims: vec![3598, -1],
                format: TensorFormat::None,
                reshape: Some(vec![3598, 112]),
                label_filename: Some("coco.txt".into()),
            }]
        );
        assert_eq!(
            c.instance_group,
            vec![
                InstanceGroup {
                    name: "gpu".into(),
                    kind: InstanceKind::Gpu,
                    count: 2,
                    gpus: vec![0, 1],
                },
                InstanceGroup {
                    name: String::new(),
                    kind: InstanceKind::Cpu,
                    count: 0,
                    gpus: vec![],
                },
            ]
        );
        assert_eq!(
            c.dynamic_batching,
            Some(DynamicBatching {
                preferred_batch_size: vec![4, 8],
                max_queue_delay_microseconds: 100,
                preserve_ordering: true,
                priority_levels: 2,
                default_priority_level: 0,
            })
        );
        assert_eq!(c.execution_accelerators.gpu_names(), vec!["tensorrt"]);
        assert_eq!(c.execution_accelerators.cpu_names(), vec!["openvino"]);
        assert_eq!(
            c.execution_accelerators.gpu[0]
                .parameters
                .get("precision_mode"),
            Some(&"FP16".to_owned())
        );
        let params: Vec<(&str, &str)> = c
            .parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            params,
            vec![
                ("layout", "nchw"),
                ("nms_iou", "0.6"),
                ("score_threshold", "0.35")
            ]
        );
        assert_eq!(c.input_named("data").map(|t| t.dims.len()), Some(3));
        assert!(c.output_named("nope").is_none());
    }

    #[test]
    fn defaults_when_fields_are_absent() {
        let c = ModelConfig::parse("name: \"m\"", &path()).unwrap();
        assert_eq!(c.version_policy, VersionPolicy::Latest { num_versions: 1 });
        assert_eq!(c.dynamic_batching, None);
        assert_eq!(c.default_model_filename, None);
        assert!(c.input.is_empty() && c.parameters.is_empty());
        assert_eq!(c.execution_accelerators, ExecutionAccelerators::default());

        let all = ModelConfig::parse("version_policy { all { } }", &path()).unwrap();
        assert_eq!(all.version_policy, VersionPolicy::All);
        let latest =
            ModelConfig::parse("version_policy: { latest: { num_versions: 2 } }", &path()).unwrap();
        assert_eq!(
            latest.version_policy,
            VersionPolicy::Latest { num_versions: 2 }
        );
        let empty_batching = ModelConfig::parse("dynamic_batching { }", &path()).unwrap();
        assert_eq!(
            empty_batching.dynamic_batching,
            Some(DynamicBatching::default())
        );
    }

    #[test]
    fn colon_less_and_colon_lists_parse_the_same() {
        let without = r#"input [ { name: "a" dims [ 1, 2 ] }, { name: "b" dims: [3] } ]
output[{name:"o" data_type:TYPE_INT64 dims:[-1]}]
instance_group [ { count: 1 } ]"#;
        let with = r#"input: [ { name: "a" dims: [ 1, 2 ] }, { name: "b" dims: [3] } ]
output: [{name:"o" data_type:TYPE_INT64 dims:[-1]}]
instance_group: [ { count: 1 } ]"#;
        let a = ModelConfig::parse(without, &path()).unwrap();
        let b = ModelConfig::parse(with, &path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.input.len(), 2);
        assert_eq!(a.input[0].dims, vec![1, 2]);
        assert_eq!(a.output[0].data_type, DataType::Int64);
        assert_eq!(a.instance_group[0].count, 1);
    }

    #[test]
    fn unknown_field_reports_line_and_column() {
        let text = "name: \"m\"\ninput [\n  {\n    name: \"x\"\n    foo: 1\n  }\n]\n";
        let err = ModelConfig::parse(text, &path()).unwrap_err();
        assert!(matches!(
            err,
            RepoError::ConfigSyntax {
                line: 5,
                column: 5,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "/repo/nanodet/config.pbtxt:5:5: unknown field 'foo' in inference.ModelInput"
        );
        // After an inserted colon on the same line, the column is still the file's.
        let err = ModelConfig::parse("output [ { nam: \"x\" } ]", &path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/repo/nanodet/config.pbtxt:1:12: unknown field 'nam' in inference.ModelOutput"
        );
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let err = ModelConfig::parse("name: \"m\"\nmax_batch_size: \"8\"\n", &path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/repo/nanodet/config.pbtxt:2:17: "),
            "{msg}"
        );

        let err = ModelConfig::parse("input [ { name: \"a\"", &path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/repo/nanodet/config.pbtxt:1:20: "),
            "{msg}"
        );
        assert!(msg.contains("end of input"), "{msg}");

        let err = ModelConfig::parse("input [ { data_type: TYPE_FLOAT32 } ]", &path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/repo/nanodet/config.pbtxt:1:22: unknown value 'TYPE_FLOAT32' for enum inference.DataType"
        );

        let err = ModelConfig::parse("name: \"a\"\nname: \"b\"", &path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/repo/nanodet/config.pbtxt:2:7: "),
            "{err}"
        );
    }

    #[test]
    fn unknown_enum_numbers_are_errors() {
        let err =
            ModelConfig::parse("input [ { name: \"x\" data_type: 99 } ]", &path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/repo/nanodet/config.pbtxt: input 'x': data_type 99 is not a known DataType"
        );
    }

    #[test]
    fn set_name_and_pbtxt_round_trip() {
        let mut c = ModelConfig::parse(NANODET, &path()).unwrap();
        c.set_name("renamed");
        let text = c.to_pbtxt();
        assert!(text.contains("name: \"renamed\""), "{text}");
        let again = ModelConfig::parse(&text, &path()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn data_type_names_and_numbers() {
        assert_eq!(DataType::from_name("TYPE_FP32"), Some(DataType::Fp32));
        assert_eq!(DataType::Fp32.number(), 11);
        assert_eq!(DataType::from_number(14), Some(DataType::Bf16));
        assert_eq!(DataType::from_number(15), None);
        assert_eq!(DataType::Uint8.to_string(), "TYPE_UINT8");
        assert_eq!(DataType::Fp16.size_bytes(), Some(2));
        assert_eq!(DataType::String.size_bytes(), None);
        // The Rust enum agrees with the embedded schema.
        let pool = super::super::schema::descriptor_pool().unwrap();
        let e = pool.get_enum_by_name("inference.DataType").unwrap();
        for v in e.values() {
            assert_eq!(
                DataType::from_name(v.name()).map(DataType::number),
                Some(v.number())
            );
        }
    }
}
