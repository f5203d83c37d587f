//! Triton's normalisation of a model configuration: the defaults Triton fills in before it
//! validates a configuration (and that its model-configuration endpoint then shows).
//!
//! - backend fields (Triton's `AutoCompleteBackendFields`): `platform` ↔ `backend`
//!   (`onnxruntime_onnx` ↔ `onnxruntime`, `tensorrt_plan` ↔ `tensorrt`, ...) and
//!   `default_model_filename` (`model.onnx`, `model.plan`, ...), also guessed from the files of
//!   the first version folder when the configuration names neither;
//! - `version_policy { latest { num_versions: 1 } }` when absent;
//! - `dynamic_batching` without `preferred_batch_size`: `[max_batch_size]` (when > 0); the same for
//!   `sequence_batching.oldest`; `sequence_batching.max_sequence_idle_microseconds` 1 s when 0;
//! - `optimization.input_pinned_memory` / `output_pinned_memory` enabled when absent
//!   (not for ensembles);
//! - instance groups (Triton's `NormalizeInstanceGroup`; not for ensembles): one group named
//!   after the model when there is none; empty names become `<model>_<index>`; `KIND_AUTO` is
//!   resolved (see [`NormalizeOptions`]); `count` < 1 becomes Triton's default (2 for CPU groups
//!   of the `onnxruntime` and `tensorflow` backends, otherwise 1); `KIND_GPU` groups without
//!   `gpus` get every known GPU.

use std::collections::BTreeMap;
use std::path::Path;

use prost_reflect::{DynamicMessage, Value};

use super::RepoError;
use super::config::{InstanceKind, ModelConfig};
use super::fields::{child_mut, has, int, ints, len, list_mut, new_child, set, text};

/// `platform` of an ensemble.
pub const ENSEMBLE_PLATFORM: &str = "ensemble";
/// `platform` of ONNX models.
pub const ONNXRUNTIME_PLATFORM: &str = "onnxruntime_onnx";
/// `backend` of ONNX models.
pub const ONNXRUNTIME_BACKEND: &str = "onnxruntime";
/// `platform` of TensorRT models.
pub const TENSORRT_PLATFORM: &str = "tensorrt_plan";
/// Triton's default `sequence_batching.max_sequence_idle_microseconds`.
pub const SEQUENCE_IDLE_DEFAULT_MICROSECONDS: u64 = 1_000_000;

const TENSORFLOW_GRAPHDEF_PLATFORM: &str = "tensorflow_graphdef";
const TENSORFLOW_SAVEDMODEL_PLATFORM: &str = "tensorflow_savedmodel";
const TENSORFLOW_GRAPHDEF_FILENAME: &str = "model.graphdef";
const TENSORFLOW_SAVEDMODEL_FILENAME: &str = "model.savedmodel";
const TENSORFLOW_BACKEND: &str = "tensorflow";
const TENSORRT_FILENAME: &str = "model.plan";
const TENSORRT_BACKEND: &str = "tensorrt";
const ONNXRUNTIME_FILENAME: &str = "model.onnx";
const OPENVINO_FILENAME: &str = "model.xml";
const OPENVINO_BACKEND: &str = "openvino";
const PYTORCH_PLATFORM: &str = "pytorch_libtorch";
const PYTORCH_PLATFORM_ALT: &str = "libtorch";
const PYTORCH_FILENAME: &str = "model.pt";
const PYTORCH_AOTI_PLATFORM: &str = "torch_aoti";
const PYTORCH_AOTI_FILENAME: &str = "model.pt2";
const PYTORCH_BACKEND: &str = "pytorch";
const PYTHON_FILENAME: &str = "model.py";
const PYTHON_BACKEND: &str = "python";

/// How instance groups are normalised.
///
/// Triton resolves `KIND_AUTO` from the GPUs it finds: `KIND_GPU` when there are GPUs and every
/// GPU the group lists is one of them, otherwise `KIND_CPU`. A caller that knows the GPUs passes
/// them in [`NormalizeOptions::gpus`] and gets exactly that rule (and GPU ids are then validated
/// against them). Without that knowledge (`gpus: None`, the default), a `KIND_AUTO` group that
/// lists GPUs becomes `KIND_GPU` and any other becomes [`NormalizeOptions::auto_kind`]
/// (`KIND_CPU` by default; a GPU-aware caller can pass `KIND_GPU`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// Kind given to `KIND_AUTO` groups that list no GPUs when `gpus` is `None`.
    pub auto_kind: InstanceKind,
    /// The GPU ids present, when known; `None`: unknown, GPU ids are not checked against devices.
    pub gpus: Option<Vec<i32>>,
    /// Instance count of `KIND_CPU` groups that set none; `None`: Triton's rule (2 for the
    /// `onnxruntime` and `tensorflow` backends, otherwise 1). Other kinds always default to 1.
    pub cpu_instance_count: Option<i32>,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        NormalizeOptions {
            auto_kind: InstanceKind::Cpu,
            gpus: None,
            cpu_instance_count: None,
        }
    }
}

impl NormalizeOptions {
    /// Options for a machine whose GPUs are known to be `gpus` (possibly none): Triton's exact rules.
    pub fn with_gpus(gpus: Vec<i32>) -> Self {
        NormalizeOptions {
            gpus: Some(gpus),
            ..NormalizeOptions::default()
        }
    }
}

/// Entries of a version folder (file name → is a folder), used to tell the backend from the
/// model file's name when the configuration names neither platform, backend nor file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionDirContent {
    entries: BTreeMap<String, bool>,
}

impl VersionDirContent {
    /// Lists `dir`; unreadable entries are skipped.
    pub fn read(dir: &Path) -> Result<Self, RepoError> {
        let mut entries = BTreeMap::new();
        let list = std::fs::read_dir(dir).map_err(|source| RepoError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in list.flatten() {
            if let Ok(name) = entry.file_name().into_string() {
                entries.insert(name, entry.path().is_dir());
            }
        }
        Ok(VersionDirContent { entries })
    }

    /// Content given as (name, is a folder) pairs.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, bool)>) -> Self {
        VersionDirContent {
            entries: entries
                .into_iter()
                .map(|(n, d)| (n.to_owned(), d))
                .collect(),
        }
    }

    fn file(&self, name: &str) -> bool {
        self.entries.get(name) == Some(&false)
    }

    fn folder(&self, name: &str) -> bool {
        self.entries.get(name) == Some(&true)
    }

    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// Normalises `config` as Triton does before validating it (see the module documentation).
/// `config.raw` and the typed fields are both updated, so [`ModelConfig::to_pbtxt`] prints the
/// normalised configuration. The only error is a configuration that names no platform, backend
/// or model file and whose name does not have the form `model.<backend>`.
pub fn normalize(config: &mut ModelConfig, options: &NormalizeOptions) -> Result<(), RepoError> {
    let model = config.name.clone();
    let mut raw = config.raw.clone();
    normalize_message(&mut raw, options, None).map_err(|message| RepoError::InvalidConfig {
        model: model.clone(),
        path: None,
        message,
    })?;
    *config = rebuild(raw, &model)?;
    Ok(())
}

/// The typed view of a normalised or completed message.
pub(super) fn rebuild(raw: DynamicMessage, model: &str) -> Result<ModelConfig, RepoError> {
    ModelConfig::from_message(raw).map_err(|message| RepoError::InvalidConfig {
        model: model.to_owned(),
        path: None,
        message,
    })
}

/// [`normalize`] on the parsed message; `version_dir` is the content of the first version
/// folder, when there is one, for guessing the backend from file names.
pub(super) fn normalize_message(
    raw: &mut DynamicMessage,
    options: &NormalizeOptions,
    version_dir: Option<&VersionDirContent>,
) -> Result<(), String> {
    fill_backend_fields(raw, version_dir)?;
    normalize_model_config(raw);
    normalize_instance_groups(raw, options);
    Ok(())
}

fn set_text(raw: &mut DynamicMessage, name: &str, value: &str) {
    set(raw, name, Value::String(value.to_owned()));
}

/// Triton's `AutoCompleteBackendFields`: fills `platform`, `backend` and
/// `default_model_filename` from each other and, when none says which, from the files of the
/// first version folder.
pub(super) fn fill_backend_fields(
    raw: &mut DynamicMessage,
    version_dir: Option<&VersionDirContent>,
) -> Result<(), String> {
    let platform = |raw: &DynamicMessage| text(raw, "platform");
    let backend = |raw: &DynamicMessage| text(raw, "backend");
    let filename = |raw: &DynamicMessage| text(raw, "default_model_filename");
    let unnamed = |raw: &DynamicMessage| {
        platform(raw).is_empty() && filename(raw).is_empty() && version_dir.is_some()
    };
    let dir = version_dir.cloned().unwrap_or_default();

    // TensorFlow: the platform is required; guess it from the file name.
    if platform(raw).is_empty() && (backend(raw).is_empty() || backend(raw) == TENSORFLOW_BACKEND) {
        let file = filename(raw);
        if file == TENSORFLOW_SAVEDMODEL_FILENAME {
            set_text(raw, "platform", TENSORFLOW_SAVEDMODEL_PLATFORM);
        } else if file == TENSORFLOW_GRAPHDEF_FILENAME {
            set_text(raw, "platform", TENSORFLOW_GRAPHDEF_PLATFORM);
        } else if file.is_empty() && version_dir.is_some() {
            if dir.folder(TENSORFLOW_SAVEDMODEL_FILENAME) {
                set_text(raw, "platform", TENSORFLOW_SAVEDMODEL_PLATFORM);
            }
            if dir.file(TENSORFLOW_GRAPHDEF_FILENAME) {
                set_text(raw, "platform", TENSORFLOW_GRAPHDEF_PLATFORM);
            }
        }
    }
    let p = platform(raw);
    if p == TENSORFLOW_SAVEDMODEL_PLATFORM || p == TENSORFLOW_GRAPHDEF_PLATFORM {
        if backend(raw).is_empty() {
            set_text(raw, "backend", TENSORFLOW_BACKEND);
        }
        if filename(raw).is_empty() {
            let file = if p == TENSORFLOW_SAVEDMODEL_PLATFORM {
                TENSORFLOW_SAVEDMODEL_FILENAME
            } else {
                TENSORFLOW_GRAPHDEF_FILENAME
            };
            set_text(raw, "default_model_filename", file);
        }
        return Ok(());
    }

    // TensorRT.
    if backend(raw).is_empty()
        && (platform(raw) == TENSORRT_PLATFORM
            || filename(raw) == TENSORRT_FILENAME
            || (unnamed(raw) && dir.file(TENSORRT_FILENAME)))
    {
        set_text(raw, "backend", TENSORRT_BACKEND);
    }
    if backend(raw) == TENSORRT_BACKEND {
        if platform(raw).is_empty() {
            set_text(raw, "platform", TENSORRT_PLATFORM);
        }
        if filename(raw).is_empty() {
            set_text(raw, "default_model_filename", TENSORRT_FILENAME);
        }
        return Ok(());
    }

    // ONNX Runtime (the model may be a file or, for large models, a folder).
    if backend(raw).is_empty()
        && (platform(raw) == ONNXRUNTIME_PLATFORM
            || filename(raw) == ONNXRUNTIME_FILENAME
            || (unnamed(raw) && dir.contains(ONNXRUNTIME_FILENAME)))
    {
        set_text(raw, "backend", ONNXRUNTIME_BACKEND);
    }
    if backend(raw) == ONNXRUNTIME_BACKEND {
        if platform(raw).is_empty() {
            set_text(raw, "platform", ONNXRUNTIME_PLATFORM);
        }
        if filename(raw).is_empty() {
            set_text(raw, "default_model_filename", ONNXRUNTIME_FILENAME);
        }
        return Ok(());
    }

    // OpenVINO.
    if backend(raw).is_empty()
        && (filename(raw) == OPENVINO_FILENAME || (unnamed(raw) && dir.contains(OPENVINO_FILENAME)))
    {
        set_text(raw, "backend", OPENVINO_BACKEND);
    }
    if backend(raw) == OPENVINO_BACKEND {
        if filename(raw).is_empty() {
            set_text(raw, "default_model_filename", OPENVINO_FILENAME);
        }
        return Ok(());
    }

    // PyTorch (LibTorch or AOTInductor; both are the `pytorch` backend).
    if backend(raw).is_empty() {
        let p = platform(raw);
        let f = filename(raw);
        let libtorch = p == PYTORCH_PLATFORM || p == PYTORCH_PLATFORM_ALT || f == PYTORCH_FILENAME;
        let aoti = p == PYTORCH_AOTI_PLATFORM || f == PYTORCH_AOTI_FILENAME;
        if libtorch || aoti {
            set_text(raw, "backend", PYTORCH_BACKEND);
        } else if unnamed(raw) && dir.file(PYTORCH_FILENAME) {
            set_text(raw, "backend", PYTORCH_BACKEND);
            set_text(raw, "platform", PYTORCH_PLATFORM);
        } else if unnamed(raw) && dir.file(PYTORCH_AOTI_FILENAME) {
            set_text(raw, "backend", PYTORCH_BACKEND);
            set_text(raw, "platform", PYTORCH_AOTI_PLATFORM);
        }
    }
    if backend(raw) == PYTORCH_BACKEND {
        if platform(raw).is_empty() {
            set_text(raw, "platform", PYTORCH_PLATFORM);
            if filename(raw).is_empty() {
                set_text(raw, "default_model_filename", PYTORCH_FILENAME);
            }
        } else if platform(raw) == PYTORCH_AOTI_PLATFORM && filename(raw).is_empty() {
            set_text(raw, "default_model_filename", PYTORCH_AOTI_FILENAME);
        }
        return Ok(());
    }

    // Python.
    if backend(raw).is_empty()
        && (filename(raw) == PYTHON_FILENAME || (unnamed(raw) && dir.contains(PYTHON_FILENAME)))
    {
        set_text(raw, "backend", PYTHON_BACKEND);
    }
    if backend(raw) == PYTHON_BACKEND {
        if filename(raw).is_empty() {
            set_text(raw, "default_model_filename", PYTHON_FILENAME);
        }
        return Ok(());
    }

    // A custom backend, named by the model name `model.<backend>`, when nothing else is given.
    if backend(raw).is_empty() && platform(raw).is_empty() && filename(raw).is_empty() {
        let name = text(raw, "name");
        let Some((_, custom)) = name.split_once('.') else {
            return Err(format!(
                "Invalid model name: Could not determine backend for model '{name}' with no \
                 backend in model configuration. Expected model name of the form \
                 'model.<backend_name>'."
            ));
        };
        let custom = custom.to_owned();
        set_text(raw, "backend", &custom);
        set_text(raw, "default_model_filename", &format!("model.{custom}"));
    }
    Ok(())
}

/// Triton's `NormalizeModelConfig`.
pub(super) fn normalize_model_config(raw: &mut DynamicMessage) {
    if !has(raw, "version_policy")
        && let Some(policy) = child_mut(raw, "version_policy")
        && let Some(latest) = child_mut(policy, "latest")
    {
        set(latest, "num_versions", Value::U32(1));
    }

    let max_batch_size = int(raw, "max_batch_size");
    let preferred = |m: &mut DynamicMessage, field: &str| {
        if len(m, field) == 0 && max_batch_size > 0 {
            let size = i32::try_from(max_batch_size).unwrap_or(i32::MAX);
            set(m, field, Value::List(vec![Value::I32(size)]));
        }
    };
    if has(raw, "dynamic_batching")
        && let Some(batching) = child_mut(raw, "dynamic_batching")
    {
        preferred(batching, "preferred_batch_size");
    }
    if has(raw, "sequence_batching")
        && let Some(batching) = child_mut(raw, "sequence_batching")
    {
        if int(batching, "max_sequence_idle_microseconds") == 0 {
            set(
                batching,
                "max_sequence_idle_microseconds",
                Value::U64(SEQUENCE_IDLE_DEFAULT_MICROSECONDS),
            );
        }
        if has(batching, "oldest")
            && let Some(oldest) = child_mut(batching, "oldest")
        {
            preferred(oldest, "preferred_batch_size");
        }
    }

    if !has(raw, "ensemble_scheduling")
        && let Some(optimization) = child_mut(raw, "optimization")
    {
        for buffer in ["input_pinned_memory", "output_pinned_memory"] {
            if !has(optimization, buffer)
                && let Some(pinned) = child_mut(optimization, buffer)
            {
                set(pinned, "enable", Value::Bool(true));
            }
        }
    }
}

/// Triton's `NormalizeInstanceGroup` (without backend-preferred groups).
fn normalize_instance_groups(raw: &mut DynamicMessage, options: &NormalizeOptions) {
    if has(raw, "ensemble_scheduling") || text(raw, "platform") == ENSEMBLE_PLATFORM {
        return;
    }
    let model = text(raw, "name");
    let backend = text(raw, "backend");
    let kind_number = |k: InstanceKind| match k {
        InstanceKind::Auto => 0,
        InstanceKind::Gpu => 1,
        InstanceKind::Cpu => 2,
        InstanceKind::Model => 3,
    };
    let (auto, gpu, cpu) = (
        kind_number(InstanceKind::Auto),
        kind_number(InstanceKind::Gpu),
        kind_number(InstanceKind::Cpu),
    );
    let Some(mut template) = new_child(raw, "instance_group") else {
        return;
    };
    let Some(groups) = list_mut(raw, "instance_group") else {
        return;
    };
    if groups.is_empty() {
        set(&mut template, "name", Value::String(model.clone()));
        groups.push(Value::Message(template));
    }
    for (index, group) in groups.iter_mut().enumerate() {
        let Some(group) = group.as_message_mut() else {
            continue;
        };
        if text(group, "name").is_empty() {
            set(group, "name", Value::String(format!("{model}_{index}")));
        }
        let listed: Vec<i64> = ints(group, "gpus");
        if int(group, "kind") == i64::from(auto) {
            let kind = match &options.gpus {
                Some(present) => {
                    let all_present = listed
                        .iter()
                        .all(|g| present.iter().any(|p| i64::from(*p) == *g));
                    if present.is_empty() || !all_present {
                        cpu
                    } else {
                        gpu
                    }
                }
                None if !listed.is_empty() => gpu,
                None => match options.auto_kind {
                    InstanceKind::Auto => cpu,
                    other => kind_number(other),
                },
            };
            set(group, "kind", Value::EnumNumber(kind));
        }
        let kind = int(group, "kind");
        if int(group, "count") < 1 {
            let count = if kind == i64::from(cpu) {
                options.cpu_instance_count.filter(|c| *c > 0).unwrap_or(
                    if backend == TENSORFLOW_BACKEND || backend == ONNXRUNTIME_BACKEND {
                        2
                    } else {
                        1
                    },
                )
            } else {
                1
            };
            set(group, "count", Value::I32(count));
        }
        if kind == i64::from(gpu)
            && listed.is_empty()
            && let Some(present) = &options.gpus
            && !present.is_empty()
        {
            let mut ids = present.clone();
            ids.sort_unstable();
            ids.dedup();
            set(
                group,
                "gpus",
                Value::List(ids.into_iter().map(Value::I32).collect()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parse(text: &str) -> ModelConfig {
        ModelConfig::parse(text, &PathBuf::from("/repo/m/config.pbtxt")).unwrap()
    }

    fn normalized(text: &str, options: &NormalizeOptions) -> ModelConfig {
        let mut c = parse(text);
        normalize(&mut c, options).unwrap();
        c
    }

    #[test]
    fn onnx_defaults() {
        let c = normalized(
            "name: \"m\" platform: \"onnxruntime_onnx\" max_batch_size: 8 dynamic_batching { }",
            &NormalizeOptions::default(),
        );
        assert_eq!(c.backend, "onnxruntime");
        assert_eq!(c.default_model_filename.as_deref(), Some("model.onnx"));
        assert_eq!(
            c.version_policy,
            super::super::VersionPolicy::Latest { num_versions: 1 }
        );
        assert_eq!(
            c.dynamic_batching.as_ref().unwrap().preferred_batch_size,
            vec![8]
        );
        assert_eq!(c.instance_group.len(), 1);
        assert_eq!(c.instance_group[0].name, "m");
        assert_eq!(c.instance_group[0].kind, InstanceKind::Cpu);
        // Triton's default count for CPU instances of the onnxruntime backend.
        assert_eq!(c.instance_group[0].count, 2);
        let text = c.to_pbtxt();
        for expected in [
            "platform: \"onnxruntime_onnx\"",
            "backend: \"onnxruntime\"",
            "version_policy {\n  latest {\n    num_versions: 1\n  }\n}",
            "preferred_batch_size: [ 8 ]",
            "instance_group [\n  {\n    name: \"m\"\n    count: 2\n    kind: KIND_CPU\n  }\n]",
            "default_model_filename: \"model.onnx\"",
            "input_pinned_memory {\n    enable: true\n  }",
            "output_pinned_memory {\n    enable: true\n  }",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
        // The printed configuration parses back to the same configuration, and normalising
        // again changes nothing.
        let mut again = ModelConfig::parse(&text, &PathBuf::from("x")).unwrap();
        assert_eq!(again, c);
        normalize(&mut again, &NormalizeOptions::default()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn backend_gives_platform_and_no_preferred_size_without_batching() {
        let c = normalized(
            "name: \"m\" backend: \"onnxruntime\" dynamic_batching { }",
            &NormalizeOptions::default(),
        );
        assert_eq!(c.platform, "onnxruntime_onnx");
        assert!(
            c.dynamic_batching
                .as_ref()
                .unwrap()
                .preferred_batch_size
                .is_empty()
        );
    }

    #[test]
    fn instance_groups() {
        let text = r#"name: "m" backend: "onnxruntime"
            instance_group [ { count: 0 kind: KIND_CPU }, { name: "g" kind: KIND_GPU count: 3 },
                             { gpus: [ 1 ] }, { } , { kind: KIND_MODEL } ]"#;
        let options = NormalizeOptions {
            cpu_instance_count: Some(1),
            ..NormalizeOptions::default()
        };
        let c = normalized(text, &options);
        let summary: Vec<(String, InstanceKind, i32, Vec<i32>)> = c
            .instance_group
            .iter()
            .map(|g| (g.name.clone(), g.kind, g.count, g.gpus.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("m_0".into(), InstanceKind::Cpu, 1, vec![]),
                ("g".into(), InstanceKind::Gpu, 3, vec![]),
                ("m_2".into(), InstanceKind::Gpu, 1, vec![1]),
                ("m_3".into(), InstanceKind::Cpu, 1, vec![]),
                ("m_4".into(), InstanceKind::Model, 1, vec![]),
            ]
        );

        // A GPU-aware caller: AUTO becomes GPU when the listed GPUs exist, GPU groups get all.
        let c = normalized(text, &NormalizeOptions::with_gpus(vec![1, 0]));
        let kinds: Vec<(InstanceKind, Vec<i32>)> = c
            .instance_group
            .iter()
            .map(|g| (g.kind, g.gpus.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (InstanceKind::Cpu, vec![]),
                (InstanceKind::Gpu, vec![0, 1]),
                (InstanceKind::Gpu, vec![1]),
                (InstanceKind::Gpu, vec![0, 1]),
                (InstanceKind::Model, vec![]),
            ]
        );
        assert_eq!(c.instance_group[0].count, 2); // Triton's CPU default for onnxruntime
        // No GPUs at all: AUTO is CPU even when GPUs are listed.
        let c = normalized(text, &NormalizeOptions::with_gpus(vec![]));
        assert_eq!(c.instance_group[2].kind, InstanceKind::Cpu);

        // The kind of the default group is a parameter.
        let gpu_default = NormalizeOptions {
            auto_kind: InstanceKind::Gpu,
            ..NormalizeOptions::default()
        };
        let c = normalized("name: \"m\" platform: \"onnxruntime_onnx\"", &gpu_default);
        assert_eq!(c.instance_group[0].kind, InstanceKind::Gpu);
        assert_eq!(c.instance_group[0].count, 1);
    }

    #[test]
    fn ensembles_get_no_instance_groups_nor_pinned_memory() {
        let c = normalized(
            r#"name: "e" platform: "ensemble" max_batch_size: 4
               ensemble_scheduling { step [ { model_name: "a" input_map { key: "x" value: "in" }
                                              output_map { key: "y" value: "out" } } ] }"#,
            &NormalizeOptions::default(),
        );
        assert!(c.instance_group.is_empty());
        assert!(c.backend.is_empty());
        assert!(!c.to_pbtxt().contains("optimization"));
        assert!(c.to_pbtxt().contains("num_versions: 1"));
    }

    #[test]
    fn sequence_batching_defaults() {
        let c = normalized(
            "name: \"s\" platform: \"onnxruntime_onnx\" max_batch_size: 2 \
             sequence_batching { oldest { max_candidate_sequences: 4 } }",
            &NormalizeOptions::default(),
        );
        let text = c.to_pbtxt();
        assert!(
            text.contains("max_sequence_idle_microseconds: 1000000"),
            "{text}"
        );
        assert!(text.contains("preferred_batch_size: [ 2 ]"), "{text}");
    }

    #[test]
    fn backends_from_platforms_files_and_names() {
        let fill = |text: &str, dir: Option<&VersionDirContent>| {
            let mut raw = parse(text).raw;
            fill_backend_fields(&mut raw, dir).map(|()| {
                (
                    super::text(&raw, "platform"),
                    super::text(&raw, "backend"),
                    super::text(&raw, "default_model_filename"),
                )
            })
        };
        let s = |a: &str, b: &str, c: &str| Ok((a.to_owned(), b.to_owned(), c.to_owned()));
        assert_eq!(
            fill("platform: \"tensorrt_plan\"", None),
            s("tensorrt_plan", "tensorrt", "model.plan")
        );
        assert_eq!(
            fill("backend: \"python\"", None),
            s("", "python", "model.py")
        );
        assert_eq!(
            fill("default_model_filename: \"model.onnx\"", None),
            s("onnxruntime_onnx", "onnxruntime", "model.onnx")
        );
        assert_eq!(fill("platform: \"ensemble\"", None), s("ensemble", "", ""));
        let onnx_dir = VersionDirContent::from_entries([("model.onnx", false), ("x", true)]);
        assert_eq!(
            fill("name: \"m\"", Some(&onnx_dir)),
            s("onnxruntime_onnx", "onnxruntime", "model.onnx")
        );
        let saved = VersionDirContent::from_entries([("model.savedmodel", true)]);
        assert_eq!(
            fill("name: \"m\"", Some(&saved)),
            s("tensorflow_savedmodel", "tensorflow", "model.savedmodel")
        );
        assert_eq!(
            fill("name: \"m.identity\"", None),
            s("", "identity", "model.identity")
        );
        let err = fill("name: \"m\"", None).unwrap_err();
        assert!(
            err.contains("Could not determine backend for model 'm'"),
            "{err}"
        );
    }
}
