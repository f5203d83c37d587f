//! Up-front model validation for a config: resolves `<repo>/<model>/<version>/model.onnx` and the labels
//! with the model repository loader and checks that the model file is a well-formed ONNX protobuf, so that a missing or corrupt model is
//! reported (naming the path looked in) before any pipeline is built.

use crate::config::ModelPlan;
use std::path::{Path, PathBuf};

/// A model problem: the config key it belongs to and a one-line message naming the path involved.
#[derive(Debug)]
pub(crate) struct ModelCheckError {
    pub key: &'static str,
    pub message: String,
}

fn err(key: &'static str, message: String) -> ModelCheckError {
    ModelCheckError { key, message }
}

/// Resolves and checks the model `name` (version `version`, latest served when `None`) in `repository`
/// with [`vigil_modelrepo`], then checks that the model file is a well-formed ONNX protobuf.
pub(crate) fn check_model(
    repository: &Path,
    name: &str,
    version: Option<u64>,
) -> Result<ModelPlan, ModelCheckError> {
    use vigil_modelrepo::{ModelRepository, RepoError};
    let key_of = |e: &RepoError| match e {
        RepoError::RepositoryNotFound { .. } => "model_repository",
        RepoError::VersionNotFound { .. } | RepoError::VersionNotServed { .. } => {
            "inference.version"
        }
        _ => "inference.model",
    };
    let loaded = ModelRepository::open(repository)
        .and_then(|repo| repo.load(name, version))
        .map_err(|e| err(key_of(&e), e.to_string()))?;
    // Ensembles run their steps and Python-backend models their `model.py`: the engine loads and
    // checks those; an ONNX model's file is checked here, before anything starts.
    let onnx = loaded.config.platform != vigil_modelrepo::ENSEMBLE_PLATFORM
        && loaded.config.backend != "python";
    if onnx {
        check_onnx(&loaded.model_path).map_err(|m| err("inference.model", m))?;
    }
    Ok(ModelPlan {
        repository: loaded
            .dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| repository.to_path_buf()),
        name: loaded.name,
        version: loaded.version,
        model_file: loaded.model_path,
        labels: loaded.labels,
        classes: String::new(),
        servers: Vec::new(),
        server_timeout_ms: 0,
    })
}

/// The plan of model `name` run by inference servers (`inference.server`): nothing is loaded here;
/// the labels come from the model's folder in `repository` when it is there (its `config.pbtxt`
/// naming the labels file), else there are none (classes are numbers). `version` `None` = the
/// servers' choice (version 0 in the plan).
pub(crate) fn remote_model(
    repository: &Path,
    name: &str,
    version: Option<u64>,
) -> Result<ModelPlan, ModelCheckError> {
    use vigil_modelrepo::ModelRepository;
    let dir = repository.join(name);
    let labels = if dir.join(vigil_modelrepo::CONFIG_FILE_NAME).is_file() {
        let config = ModelRepository::open(repository)
            .and_then(|repo| repo.load_config(name))
            .map_err(|e| err("inference.model", e.to_string()))?;
        vigil_modelrepo::read_labels(name, &dir, &config)
            .map_err(|e| err("inference.model", e.to_string()))?
    } else if dir.join(vigil_modelrepo::LABELS_FILE_NAME).is_file() {
        let config = vigil_modelrepo::ModelConfig::parse("", &dir)
            .map_err(|e| err("inference.model", e.to_string()))?;
        vigil_modelrepo::read_labels(name, &dir, &config)
            .map_err(|e| err("inference.model", e.to_string()))?
    } else {
        Vec::new()
    };
    Ok(ModelPlan {
        repository: repository.to_path_buf(),
        name: name.to_string(),
        version: version.unwrap_or(0),
        model_file: PathBuf::new(),
        labels,
        classes: String::new(),
        servers: Vec::new(),
        server_timeout_ms: 0,
    })
}

/// Checks that `path` is a protobuf-encoded ONNX `ModelProto`: every top-level field is well formed, and
/// `ir_version` (1) and `graph` (7) are present.
fn check_onnx(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = |why: &str| format!("{} is not a valid ONNX model ({why})", path.display());
    if bytes.is_empty() {
        return Err(bad("empty file"));
    }
    let (mut has_ir, mut has_graph) = (false, false);
    let mut i = 0usize;
    while i < bytes.len() {
        let key = varint(&bytes, &mut i).ok_or_else(|| bad("truncated field"))?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return Err(bad("field number 0"));
        }
        match wire {
            0 => {
                varint(&bytes, &mut i).ok_or_else(|| bad("truncated varint"))?;
            }
            1 => {
                i = i
                    .checked_add(8)
                    .filter(|&n| n <= bytes.len())
                    .ok_or_else(|| bad("truncated fixed64"))?
            }
            2 => {
                let len = varint(&bytes, &mut i).ok_or_else(|| bad("truncated length"))?;
                i = usize::try_from(len)
                    .ok()
                    .and_then(|l| i.checked_add(l))
                    .filter(|&n| n <= bytes.len())
                    .ok_or_else(|| bad("field length past the end of the file"))?;
            }
            5 => {
                i = i
                    .checked_add(4)
                    .filter(|&n| n <= bytes.len())
                    .ok_or_else(|| bad("truncated fixed32"))?
            }
            _ => return Err(bad("invalid protobuf wire type")),
        }
        match (field, wire) {
            (1, 0) => has_ir = true,
            (7, 2) => has_graph = true,
            _ => {}
        }
    }
    if !has_ir || !has_graph {
        return Err(bad("no ir_version or graph"));
    }
    Ok(())
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("vigil-model-test-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn finds_latest_version_and_labels() {
        let repo = tmp("ok");
        std::fs::create_dir_all(repo.join("m/1")).unwrap();
        std::fs::create_dir_all(repo.join("m/3")).unwrap();
        std::fs::write(
            repo.join("m/config.pbtxt"),
            "name: \"m\"\nversion_policy: { all {} }\n",
        )
        .unwrap();
        std::fs::write(repo.join("m/labels.txt"), "person\ncar\n").unwrap();
        // ir_version = 8, graph = empty message
        let onnx = [0x08, 0x08, 0x3a, 0x00];
        std::fs::write(repo.join("m/1/model.onnx"), onnx).unwrap();
        std::fs::write(repo.join("m/3/model.onnx"), onnx).unwrap();
        let p = check_model(&repo, "m", None).unwrap();
        assert_eq!(p.version, 3);
        assert_eq!(p.labels, vec!["person", "car"]);
        assert_eq!(check_model(&repo, "m", Some(1)).unwrap().version, 1);
        let e = check_model(&repo, "m", Some(2)).unwrap_err();
        assert_eq!(e.key, "inference.version");
        std::fs::write(
            repo.join("m/3/model.onnx"),
            b"garbage bytes, not a model at all",
        )
        .unwrap();
        let e = check_model(&repo, "m", None).unwrap_err();
        assert!(
            e.message
                .contains("m/3/model.onnx is not a valid ONNX model"),
            "{}",
            e.message
        );
        let e = check_model(&repo, "other", None).unwrap_err();
        assert!(e.message.contains("other"), "{}", e.message);
        let e = check_model(&repo.join("nope"), "m", None).unwrap_err();
        assert_eq!(e.key, "model_repository");
        std::fs::remove_dir_all(&repo).ok();
    }
}
