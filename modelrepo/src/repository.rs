//! Finding models, versions, model files and labels in a repository folder, and turning a
//! model's `config.pbtxt` into the configuration Triton would use: parsed, auto-completed from
//! the ONNX model (unless strict), normalised and validated.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::RepoError;
use super::autocomplete::{
    DEFAULT_MAX_BATCH_SIZE, autocomplete_onnx, backend_autocomplete, needs_autocomplete,
};
use super::config::{ModelConfig, VersionPolicy};
use super::normalize::{
    ENSEMBLE_PLATFORM, NormalizeOptions, VersionDirContent, fill_backend_fields, normalize_message,
    normalize_model_config, rebuild,
};
use super::onnx::read_onnx_io;
use super::validate::{validate_ensemble_models, validate_message, validate_model_config};

/// Configuration file of a model folder.
pub const CONFIG_FILE_NAME: &str = "config.pbtxt";
/// Labels file used when no output names a `label_filename`.
pub const LABELS_FILE_NAME: &str = "labels.txt";
/// Model file name in a version folder when `default_model_filename` is not set.
pub const DEFAULT_MODEL_FILENAME: &str = "model.onnx";

/// How a repository turns configurations into the ones models run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Triton's `--strict-model-config=true`: every model needs a `config.pbtxt`, and nothing is
    /// auto-completed from model files. Default `false`, as in Triton.
    pub strict: bool,
    /// `max_batch_size` given by auto-complete to ONNX models that can batch and set none
    /// (Triton's `--backend-config=default-max-batch-size`, 4).
    pub default_max_batch_size: i32,
    /// How instance groups are normalised (which kind `KIND_AUTO` becomes, known GPUs).
    pub normalize: NormalizeOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            strict: false,
            default_max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            normalize: NormalizeOptions::default(),
        }
    }
}

/// A model repository folder (`<root>/<model>/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRepository {
    root: PathBuf,
    options: LoadOptions,
}

/// A model version resolved in the repository, with its configuration and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedModel {
    /// The model's folder name (and configuration name).
    pub name: String,
    /// The version used.
    pub version: u64,
    /// The model folder, `<root>/<name>`.
    pub dir: PathBuf,
    /// The model file, `<dir>/<version>/<default_model_filename>`; the version folder itself
    /// for an ensemble (which has no model file).
    pub model_path: PathBuf,
    /// The configuration as Triton would use it: auto-completed (unless strict), normalised
    /// and validated (see [`ModelRepository::model_config`]).
    pub config: ModelConfig,
    /// Class labels, one per line of the labels file; empty when there is none.
    pub labels: Vec<String>,
}

/// A completed configuration and what was found on the way.
struct Completed {
    config: ModelConfig,
    dir: PathBuf,
    folders: BTreeMap<u64, PathBuf>,
    /// The version whose model file auto-complete read.
    version: Option<u64>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn list_versions(list: &[u64]) -> String {
    if list.is_empty() {
        return "none".to_owned();
    }
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds the configuration file to an error about a configuration that names none.
fn at_path(error: RepoError, file: &Path) -> RepoError {
    match error {
        RepoError::InvalidConfig {
            model,
            path: None,
            message,
        } => RepoError::InvalidConfig {
            model,
            path: Some(file.to_path_buf()),
            message,
        },
        other => other,
    }
}

fn invalid(model: &str, path: &Path, message: String) -> RepoError {
    RepoError::InvalidConfig {
        model: model.to_owned(),
        path: Some(path.to_path_buf()),
        message,
    }
}

impl ModelRepository {
    /// Opens the repository folder `root` (made absolute, so that messages name real paths),
    /// with the default [`LoadOptions`] (Triton's defaults: auto-complete on).
    pub fn open(root: &Path) -> Result<Self, RepoError> {
        let root = fs::canonicalize(root).map_err(|e| RepoError::RepositoryNotFound {
            path: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
            reason: format!("cannot be opened: {e}"),
        })?;
        if !root.is_dir() {
            return Err(RepoError::RepositoryNotFound {
                path: root,
                reason: "is not a folder".to_owned(),
            });
        }
        Ok(ModelRepository {
            root,
            options: LoadOptions::default(),
        })
    }

    /// The repository with `options`.
    pub fn with_options(mut self, options: LoadOptions) -> Self {
        self.options = options;
        self
    }

    /// Replaces the options.
    pub fn set_options(&mut self, options: LoadOptions) {
        self.options = options;
    }

    /// Strict model configuration (no auto-complete; `config.pbtxt` required) or not.
    pub fn set_strict(&mut self, strict: bool) {
        self.options.strict = strict;
    }

    /// The options configurations are loaded with.
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// The absolute repository folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Names of the model folders, sorted. Hidden folders (`.name`) and files are skipped.
    pub fn model_names(&self) -> Result<Vec<String>, RepoError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_error(&self.root))? {
            let entry = entry.map_err(io_error(&self.root))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with('.') && entry.path().is_dir() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The folder of model `name`, which must exist.
    pub fn model_dir(&self, name: &str) -> Result<PathBuf, RepoError> {
        let invalid = |reason: &str| RepoError::InvalidModelName {
            model: name.to_owned(),
            root: self.root.clone(),
            reason: reason.to_owned(),
        };
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        let mut components = Path::new(name).components();
        if !matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(_)), None)
        ) || name.contains(['/', '\\'])
        {
            return Err(invalid("a model name must be a single folder name"));
        }
        let dir = self.root.join(name);
        if !dir.is_dir() {
            return Err(RepoError::ModelNotFound {
                model: name.to_owned(),
                dir,
                root: self.root.clone(),
            });
        }
        Ok(dir)
    }

    /// Reads `<root>/<name>/config.pbtxt` as written: parsed, its name checked against the
    /// folder and filled in when empty; nothing completed, normalised or validated (see
    /// [`ModelRepository::model_config`] for that).
    pub fn load_config(&self, name: &str) -> Result<ModelConfig, RepoError> {
        let dir = self.model_dir(name)?;
        let path = dir.join(CONFIG_FILE_NAME);
        if !path.is_file() {
            return Err(RepoError::MissingConfig {
                model: name.to_owned(),
                path,
            });
        }
        read_config(name, &path)
    }

    /// The configuration model `name` runs with, as Triton builds it: `config.pbtxt` (or, when
    /// it is missing and the repository is not strict, an empty one) is parsed, auto-completed
    /// from the ONNX model of the latest served version (unless strict), normalised and
    /// validated; an ensemble is also checked against the models it runs. This is what
    /// `vigil models show` prints ([`ModelConfig::to_pbtxt`]).
    pub fn model_config(&self, name: &str) -> Result<ModelConfig, RepoError> {
        let mut stack = vec![name.to_owned()];
        Ok(self.complete(name, None, &mut stack)?.config)
    }

    /// Numeric version folders of model `name`, ascending (whatever the version policy).
    pub fn versions_present(&self, name: &str) -> Result<Vec<u64>, RepoError> {
        let dir = self.model_dir(name)?;
        Ok(version_dirs(&dir)?.into_keys().collect())
    }

    /// Versions of model `name` that its version policy serves, ascending.
    pub fn served_versions(&self, name: &str) -> Result<Vec<u64>, RepoError> {
        let dir = self.model_dir(name)?;
        let policy = self.version_policy(name, &dir)?;
        let present: Vec<u64> = version_dirs(&dir)?.into_keys().collect();
        Ok(served(&policy, &present))
    }

    /// The version policy of `config.pbtxt`, or Triton's default when the file is missing (not
    /// strict).
    fn version_policy(&self, name: &str, dir: &Path) -> Result<VersionPolicy, RepoError> {
        let path = dir.join(CONFIG_FILE_NAME);
        if path.is_file() || self.options.strict {
            Ok(self.load_config(name)?.version_policy)
        } else {
            Ok(VersionPolicy::default())
        }
    }

    /// Resolves model `name` at `version` (`None`: the highest version the policy serves):
    /// builds its configuration as [`ModelRepository::model_config`] does, checks that the
    /// model file exists and reads the labels.
    pub fn load(&self, name: &str, version: Option<u64>) -> Result<LoadedModel, RepoError> {
        let mut stack = vec![name.to_owned()];
        let Completed {
            config,
            dir,
            folders,
            version: completed_from,
        } = self.complete(name, version, &mut stack)?;
        let version = match completed_from {
            Some(v) => v,
            None => resolve_version(name, &dir, &folders, &config.version_policy, version)?,
        };
        let version_dir = folders.get(&version).cloned().unwrap_or_default();
        let model_path = if config.platform == ENSEMBLE_PLATFORM {
            version_dir
        } else {
            let path = version_dir.join(model_file_name(&config));
            if !path.exists() {
                return Err(RepoError::ModelFileMissing {
                    model: name.to_owned(),
                    version,
                    path,
                });
            }
            path
        };
        let labels = read_labels(name, &dir, &config)?;
        Ok(LoadedModel {
            name: name.to_owned(),
            version,
            dir,
            model_path,
            config,
            labels,
        })
    }

    /// The completed configuration of a model an ensemble step runs (`version` -1: latest),
    /// `None` when the repository has no such model or does not serve that version. `stack`:
    /// the ensembles being checked, innermost last.
    pub(super) fn step_config(
        &self,
        name: &str,
        version: i64,
        stack: &mut Vec<String>,
    ) -> Result<Option<ModelConfig>, RepoError> {
        match self.model_dir(name) {
            Ok(_) => {}
            Err(RepoError::ModelNotFound { .. } | RepoError::InvalidModelName { .. }) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let requested = u64::try_from(version).ok();
        stack.push(name.to_owned());
        let result = self.complete(name, requested, stack);
        stack.pop();
        let completed = result?;
        if let Some(v) = requested {
            let present: Vec<u64> = completed.folders.keys().copied().collect();
            if !served(&completed.config.version_policy, &present).contains(&v) {
                return Ok(None);
            }
        }
        Ok(Some(completed.config))
    }

    /// Parse → backend fields → auto-complete (unless strict) → normalise → validate.
    fn complete(
        &self,
        name: &str,
        version: Option<u64>,
        stack: &mut Vec<String>,
    ) -> Result<Completed, RepoError> {
        let dir = self.model_dir(name)?;
        let path = dir.join(CONFIG_FILE_NAME);
        let folders = version_dirs(&dir)?;
        let provided = path.is_file();
        let mut config = if provided {
            read_config(name, &path)?
        } else if self.options.strict {
            return Err(RepoError::MissingConfig {
                model: name.to_owned(),
                path,
            });
        } else {
            let mut empty = ModelConfig::parse("", &path)?;
            empty.set_name(name);
            empty
        };

        // Platform, backend and model file name, also from the files of the first version.
        let first_version = match folders.values().next() {
            Some(folder) => Some(VersionDirContent::read(folder)?),
            None => None,
        };
        let mut raw = config.raw.clone();
        fill_backend_fields(&mut raw, first_version.as_ref())
            .map_err(|message| invalid(name, &path, message))?;
        config = rebuild(raw, name).map_err(|e| at_path(e, &path))?;

        // Auto-complete from the ONNX model, or by the backend that runs the model's code.
        let mut completed_from = None;
        // The backend's own completion needs the model file: a configuration without its version
        // folders (`vigil models validate` of a config alone) is validated as written.
        let by_backend = (!self.options.strict)
            .then(|| backend_autocomplete(&config.backend))
            .flatten()
            .and_then(|complete| {
                let v =
                    resolve_version(name, &dir, &folders, &config.version_policy, version).ok()?;
                let file = folders.get(&v)?.join(model_file_name(&config));
                file.is_file().then_some((complete, v, file))
            });
        if let Some((complete, v, file)) = by_backend {
            let json = complete(&file, &config.to_json()).map_err(|message| {
                invalid(
                    name,
                    &path,
                    format!("auto-complete by {}: {message}", file.display()),
                )
            })?;
            config = ModelConfig::from_json(&json, &file)?;
            if config.name != name {
                return Err(invalid(
                    name,
                    &path,
                    format!(
                        "auto-complete by {} renamed the model to '{}'",
                        file.display(),
                        config.name
                    ),
                ));
            }
            completed_from = Some(v);
        } else if !self.options.strict && needs_autocomplete(&config) {
            // Triton validates the configuration as a whole before the backend completes it.
            let mut probe = config.raw.clone();
            normalize_model_config(&mut probe);
            validate_model_config(&probe).map_err(|message| invalid(name, &path, message))?;

            let v = resolve_version(name, &dir, &folders, &config.version_policy, version)?;
            let file = folders
                .get(&v)
                .cloned()
                .unwrap_or_default()
                .join(model_file_name(&config));
            if !file.exists() {
                return Err(RepoError::ModelFileMissing {
                    model: name.to_owned(),
                    version: v,
                    path: file,
                });
            }
            let io = read_onnx_io(&file)?;
            autocomplete_onnx(&mut config, &io, self.options.default_max_batch_size)
                .map_err(|e| at_path(e, &path))?;
            completed_from = Some(v);
        } else if !provided {
            return Err(invalid(
                name,
                &path,
                format!(
                    "model configuration is not provided for model '{name}' (no {CONFIG_FILE_NAME}, \
                     and only ONNX models are auto-completed)"
                ),
            ));
        }

        let mut raw = config.raw.clone();
        normalize_message(&mut raw, &self.options.normalize, first_version.as_ref())
            .map_err(|message| invalid(name, &path, message))?;
        config = rebuild(raw, name).map_err(|e| at_path(e, &path))?;

        validate_message(&config.raw, self.options.normalize.gpus.as_deref())
            .map_err(|message| invalid(name, &path, message))?;
        validate_ensemble_models(&config, self, stack).map_err(|e| at_path(e, &path))?;
        Ok(Completed {
            config,
            dir,
            folders,
            version: completed_from,
        })
    }
}

/// Parses `path` and checks its name against the model folder (an empty name is filled in).
fn read_config(name: &str, path: &Path) -> Result<ModelConfig, RepoError> {
    let mut config = ModelConfig::from_file(path)?;
    if config.name.is_empty() {
        config.set_name(name);
    } else if config.name != name {
        return Err(RepoError::NameMismatch {
            model: name.to_owned(),
            config_name: config.name.clone(),
            path: path.to_path_buf(),
        });
    }
    Ok(config)
}

/// The model file name of a version folder.
fn model_file_name(config: &ModelConfig) -> &str {
    config
        .default_model_filename
        .as_deref()
        .unwrap_or(DEFAULT_MODEL_FILENAME)
}

/// The version to use: `requested` when present and served, else the highest served one.
fn resolve_version(
    name: &str,
    dir: &Path,
    folders: &BTreeMap<u64, PathBuf>,
    policy: &VersionPolicy,
    requested: Option<u64>,
) -> Result<u64, RepoError> {
    if folders.is_empty() {
        return Err(RepoError::NoVersion {
            model: name.to_owned(),
            dir: dir.to_path_buf(),
        });
    }
    let present: Vec<u64> = folders.keys().copied().collect();
    let served = served(policy, &present);
    match requested {
        Some(v) => {
            if !folders.contains_key(&v) {
                return Err(RepoError::VersionNotFound {
                    model: name.to_owned(),
                    version: v,
                    path: dir.join(v.to_string()),
                    available: list_versions(&present),
                });
            }
            if !served.contains(&v) {
                return Err(RepoError::VersionNotServed {
                    model: name.to_owned(),
                    version: v,
                    dir: dir.to_path_buf(),
                    policy: policy.to_string(),
                    served: list_versions(&served),
                });
            }
            Ok(v)
        }
        None => served
            .last()
            .copied()
            .ok_or_else(|| RepoError::NoServedVersion {
                model: name.to_owned(),
                policy: policy.to_string(),
                dir: dir.to_path_buf(),
                available: list_versions(&present),
            }),
    }
}

/// Numeric sub-folders of a model folder: version number → folder. Other entries are ignored.
fn version_dirs(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, RepoError> {
    let mut versions = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        if file_name.is_empty() || !file_name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(number) = file_name.parse::<u64>() else {
            continue;
        };
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        // "1" and "01" are the same version; prefer the canonical spelling.
        let canonical = number.to_string() == file_name;
        if canonical || !versions.contains_key(&number) {
            versions.insert(number, path);
        }
    }
    Ok(versions)
}

/// The versions in `present` (ascending) that `policy` serves, ascending.
fn served(policy: &VersionPolicy, present: &[u64]) -> Vec<u64> {
    match policy {
        VersionPolicy::All => present.to_vec(),
        VersionPolicy::Latest { num_versions } => {
            let n = (*num_versions as usize).min(present.len());
            present[present.len() - n..].to_vec()
        }
        VersionPolicy::Specific(wanted) => present
            .iter()
            .copied()
            .filter(|v| wanted.iter().any(|w| u64::try_from(*w) == Ok(*v)))
            .collect(),
    }
}

/// Labels of `model` in its folder `dir`: the first output's `label_filename` (must exist), else
/// `labels.txt` if present, else none.
pub fn read_labels(
    model: &str,
    dir: &Path,
    config: &ModelConfig,
) -> Result<Vec<String>, RepoError> {
    let path = match config.output.first() {
        Some(output) if output.label_filename.is_some() => {
            let path = dir.join(output.label_filename.as_deref().unwrap_or_default());
            if !path.is_file() {
                return Err(RepoError::LabelsMissing {
                    model: model.to_owned(),
                    output: output.name.clone(),
                    path,
                });
            }
            path
        }
        _ => {
            let path = dir.join(LABELS_FILE_NAME);
            if !path.is_file() {
                return Ok(Vec::new());
            }
            path
        }
    };
    let text = fs::read_to_string(&path).map_err(io_error(&path))?;
    Ok(parse_labels(&text))
}

/// One label a line (trailing whitespace and `\r` removed); trailing empty lines dropped.
/// Empty lines in the middle are kept, so that line number = class id.
fn parse_labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
    while labels.last().is_some_and(String::is_empty) {
        labels.pop();
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A temporary folder removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("vigil-modelrepo-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }

        fn mkdir(&self, rel: &str) {
            fs::create_dir_all(self.0.join(rel)).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const CONFIG: &str = r#"
name: "det"
platform: "onnxruntime_onnx"
max_batch_size: 1
input [ { name: "images" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [3, 320, 320] } ]
output [ { name: "out" data_type: TYPE_FP32 dims: [-1, 6] } ]
"#;

    fn repo_with_versions(
        tag: &str,
        config: &str,
        versions: &[&str],
    ) -> (TempDir, ModelRepository) {
        let tmp = TempDir::new(tag);
        tmp.write("det/config.pbtxt", config);
        for v in versions {
            tmp.write(&format!("det/{v}/model.onnx"), "onnx");
        }
        let repo = ModelRepository::open(&tmp.0).unwrap();
        (tmp, repo)
    }

    #[test]
    fn latest_version_is_the_highest_number() {
        let (tmp, repo) = repo_with_versions("latest", CONFIG, &["1", "2", "10"]);
        tmp.mkdir("det/3b"); // not numeric: ignored
        tmp.write("det/7", "a file, not a folder"); // ignored
        tmp.mkdir("det/.hidden");
        tmp.write("det/labels.txt", "person\nbicycle\n\ncar\n\n");
        let m = repo.load("det", None).unwrap();
        assert_eq!(m.version, 10);
        assert_eq!(m.name, "det");
        assert_eq!(m.dir, repo.root().join("det"));
        assert_eq!(m.model_path, repo.root().join("det/10/model.onnx"));
        assert_eq!(m.labels, vec!["person", "bicycle", "", "car"]);
        assert_eq!(m.config.input[0].data_type, DataType::Fp32);
        assert_eq!(repo.versions_present("det").unwrap(), vec![1, 2, 10]);
        assert_eq!(repo.served_versions("det").unwrap(), vec![10]);
        assert_eq!(repo.model_names().unwrap(), vec!["det"]);
    }

    #[test]
    fn explicit_version_must_exist_and_be_served() {
        let (_tmp, repo) = repo_with_versions("explicit", CONFIG, &["1", "2"]);
        assert_eq!(repo.load("det", Some(2)).unwrap().version, 2);

        let err = repo.load("det", Some(1)).unwrap_err();
        assert!(
            matches!(err, RepoError::VersionNotServed { version: 1, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("latest 1") && msg.contains("served: 2"),
            "{msg}"
        );

        let err = repo.load("det", Some(5)).unwrap_err();
        let dir = repo.root().join("det");
        assert_eq!(
            err.to_string(),
            format!(
                "model 'det': version 5 not found: no folder {} (versions present: 1, 2)",
                dir.join("5").display()
            )
        );
    }

    #[test]
    fn version_policies_all_and_specific() {
        let all = format!("{CONFIG}\nversion_policy: {{ all {{ }} }}");
        let (_tmp, repo) = repo_with_versions("all", &all, &["1", "2", "3"]);
        assert_eq!(repo.served_versions("det").unwrap(), vec![1, 2, 3]);
        assert_eq!(repo.load("det", Some(1)).unwrap().version, 1);
        assert_eq!(repo.load("det", None).unwrap().version, 3);

        let specific = format!("{CONFIG}\nversion_policy {{ specific {{ versions: [1, 2, 9] }} }}");
        let (_tmp2, repo) = repo_with_versions("specific", &specific, &["1", "2", "3"]);
        assert_eq!(repo.served_versions("det").unwrap(), vec![1, 2]);
        assert_eq!(repo.load("det", None).unwrap().version, 2);
        assert!(matches!(
            repo.load("det", Some(3)),
            Err(RepoError::VersionNotServed { version: 3, .. })
        ));

        let none = format!("{CONFIG}\nversion_policy {{ specific {{ versions: [7] }} }}");
        let (_tmp3, repo) = repo_with_versions("specific-none", &none, &["1"]);
        let err = repo.load("det", None).unwrap_err();
        assert!(matches!(err, RepoError::NoServedVersion { .. }), "{err}");

        let latest2 = format!("{CONFIG}\nversion_policy {{ latest {{ num_versions: 2 }} }}");
        let (_tmp4, repo) = repo_with_versions("latest2", &latest2, &["4", "1", "3"]);
        assert_eq!(repo.served_versions("det").unwrap(), vec![3, 4]);
        assert_eq!(repo.load("det", Some(3)).unwrap().version, 3);

        let latest0 = format!("{CONFIG}\nversion_policy {{ latest {{ }} }}");
        let (_tmp5, repo) = repo_with_versions("latest0", &latest0, &["1"]);
        let err = repo.load("det", None).unwrap_err();
        assert!(
            err.to_string().contains("num_versions must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn missing_pieces_name_their_paths() {
        let (tmp, repo) = repo_with_versions("missing", CONFIG, &[]);
        let root = repo.root().to_path_buf();
        let dir = root.join("det");

        let err = repo.load("nope", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "model 'nope' not found: no folder {} in model repository {}",
                root.join("nope").display(),
                root.display()
            )
        );

        let err = repo.load("det", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "model 'det': no version folder in {} (expected a numeric folder such as 1/)",
                dir.display()
            )
        );

        tmp.mkdir("det/1");
        let err = repo.load("det", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "model 'det' version 1: model file {} is missing",
                dir.join("1/model.onnx").display()
            )
        );

        tmp.mkdir("noconfig/1");
        // Not strict: a missing config.pbtxt is auto-completed, but only from an ONNX model.
        let err = repo.load("noconfig", None).unwrap_err();
        assert!(
            err.to_string()
                .contains("Could not determine backend for model 'noconfig'"),
            "{err}"
        );
        tmp.write("noconfig/1/model.onnx", "not a protobuf");
        let err = repo.load("noconfig", None).unwrap_err();
        assert!(matches!(err, RepoError::ModelFileInvalid { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&root.join("noconfig/1/model.onnx").display().to_string()),
            "{err}"
        );
        // Strict: config.pbtxt is required.
        let strict = repo.clone().with_options(LoadOptions {
            strict: true,
            ..LoadOptions::default()
        });
        let err = strict.load("noconfig", None).unwrap_err();
        assert!(matches!(err, RepoError::MissingConfig { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&root.join("noconfig/config.pbtxt").display().to_string())
        );

        for bad in ["", "..", "a/b", "/etc"] {
            assert!(
                matches!(
                    repo.load(bad, None),
                    Err(RepoError::InvalidModelName { .. })
                ),
                "{bad:?}"
            );
        }

        let err = ModelRepository::open(&root.join("absent")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&root.join("absent").display().to_string()),
            "{err}"
        );
        let file = tmp.write("file", "x");
        assert!(matches!(
            ModelRepository::open(&file),
            Err(RepoError::RepositoryNotFound { .. })
        ));
    }

    #[test]
    fn config_errors_name_the_file_and_position() {
        let bad = "name: \"det\"\ninput [\n  { name: \"x\" foo: 1 }\n]\n";
        let (_tmp, repo) = repo_with_versions("badconfig", bad, &["1"]);
        let err = repo.load("det", None).unwrap_err();
        let path = repo.root().join("det/config.pbtxt");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3:15: unknown field 'foo' in inference.ModelInput",
                path.display()
            )
        );
    }

    #[test]
    fn name_must_match_the_folder_or_be_filled_in() {
        let other = CONFIG.replace("name: \"det\"", "name: \"other\"");
        let (_tmp, repo) = repo_with_versions("mismatch", &other, &["1"]);
        let err = repo.load("det", None).unwrap_err();
        assert!(matches!(err, RepoError::NameMismatch { .. }), "{err}");
        assert!(err.to_string().contains("'other'"), "{err}");

        let unnamed = CONFIG.replace("name: \"det\"", "");
        let (_tmp2, repo) = repo_with_versions("unnamed", &unnamed, &["1"]);
        let m = repo.load("det", None).unwrap();
        assert_eq!(m.config.name, "det");
        assert!(m.config.to_pbtxt().contains("name: \"det\""));
    }

    #[test]
    fn default_model_filename_and_label_filename() {
        let cfg = r#"
name: "det"
backend: "onnxruntime"
default_model_filename: "net.onnx"
input [ { name: "x" data_type: TYPE_FP32 dims: [3] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [80] label_filename: "coco.names" } ]
"#;
        let tmp = TempDir::new("filenames");
        tmp.write("det/config.pbtxt", cfg);
        tmp.write("det/1/net.onnx", "onnx");
        tmp.write("det/labels.txt", "ignored\n");
        let repo = ModelRepository::open(&tmp.0).unwrap();
        let err = repo.load("det", None).unwrap_err();
        assert!(matches!(err, RepoError::LabelsMissing { .. }), "{err}");
        assert!(err.to_string().contains("coco.names"), "{err}");

        tmp.write("det/coco.names", "person\r\ncar\r\n");
        let m = repo.load("det", None).unwrap();
        assert_eq!(m.model_path, repo.root().join("det/1/net.onnx"));
        assert_eq!(m.labels, vec!["person", "car"]);
    }

    #[test]
    fn no_labels_file_means_no_labels() {
        let (_tmp, repo) = repo_with_versions("nolabels", CONFIG, &["1"]);
        assert!(repo.load("det", None).unwrap().labels.is_empty());
    }

    #[test]
    fn triton_errors_name_the_file() {
        let bad = CONFIG.replace(
            "max_batch_size: 1",
            "max_batch_size: 1\ndynamic_batching { preferred_batch_size: [ 4 ] }",
        );
        let (_tmp, repo) = repo_with_versions("invalid", &bad, &["1"]);
        let err = repo.load("det", None).unwrap_err();
        assert!(matches!(err, RepoError::InvalidConfig { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: dynamic batching preferred size must be <= max batch size for det",
                repo.root().join("det/config.pbtxt").display()
            )
        );
        assert_eq!(
            repo.model_config("det").unwrap_err().to_string(),
            err.to_string()
        );
    }

    #[test]
    fn model_config_is_normalised() {
        let (_tmp, repo) = repo_with_versions("show", CONFIG, &["1"]);
        let c = repo.model_config("det").unwrap();
        assert_eq!(c.backend, "onnxruntime");
        assert_eq!(c.instance_group.len(), 1);
        let text = c.to_pbtxt();
        assert!(text.contains("num_versions: 1"), "{text}");
        assert!(text.contains("kind: KIND_CPU"), "{text}");
        // The raw configuration stays as written.
        let raw = repo.load_config("det").unwrap();
        assert!(raw.backend.is_empty() && raw.instance_group.is_empty());
    }

    fn onnx_repo(tag: &str, config: Option<&str>) -> (TempDir, ModelRepository) {
        let tmp = TempDir::new(tag);
        let bytes = crate::onnx::test_model_bytes(
            &[("images", 1, &[-1, 3, 32, 32])],
            &[("scores", 1, &[-1, 10]), ("count", 7, &[-1])],
        );
        fs::create_dir_all(tmp.0.join("det/1")).unwrap();
        fs::write(tmp.0.join("det/1/model.onnx"), bytes).unwrap();
        if let Some(config) = config {
            tmp.write("det/config.pbtxt", config);
        }
        let repo = ModelRepository::open(&tmp.0).unwrap();
        (tmp, repo)
    }

    #[test]
    fn autocomplete_without_config() {
        let (_tmp, repo) = onnx_repo("autofill", None);
        let m = repo.load("det", None).unwrap();
        let c = &m.config;
        assert_eq!(c.name, "det");
        assert_eq!(c.platform, "onnxruntime_onnx");
        assert_eq!(c.max_batch_size, 4);
        assert_eq!(c.input[0].dims, vec![3, 32, 32]);
        assert_eq!(c.output[0].dims, vec![10]);
        assert_eq!(c.output[1].data_type, DataType::Int64);
        assert_eq!(c.output[1].dims, vec![1]);
        assert_eq!(
            c.dynamic_batching.as_ref().unwrap().preferred_batch_size,
            vec![4]
        );
        assert_eq!(m.model_path, repo.root().join("det/1/model.onnx"));
        assert_eq!(repo.served_versions("det").unwrap(), vec![1]);

        let mut strict = repo.clone();
        strict.set_strict(true);
        assert!(matches!(
            strict.load("det", None),
            Err(RepoError::MissingConfig { .. })
        ));
        assert!(matches!(
            strict.served_versions("det"),
            Err(RepoError::MissingConfig { .. })
        ));
    }

    #[test]
    fn autocomplete_of_a_partial_config() {
        let partial = r#"
max_batch_size: 16
input [ { name: "images" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 32, 32 ] } ]
parameters { key: "k" value { string_value: "v" } }
"#;
        let (_tmp, repo) = onnx_repo("partial", Some(partial));
        let c = repo.model_config("det").unwrap();
        assert_eq!(c.max_batch_size, 16);
        assert_eq!(c.input[0].format, crate::TensorFormat::Nchw);
        assert_eq!(c.output.len(), 2);
        assert_eq!(c.parameters.get("k").map(String::as_str), Some("v"));

        // Strict: nothing is completed; the config is valid without outputs.
        let strict = repo.clone().with_options(LoadOptions {
            strict: true,
            ..LoadOptions::default()
        });
        let c = strict.model_config("det").unwrap();
        assert!(c.output.is_empty());
        assert!(c.dynamic_batching.is_none());

        // A batch size the model cannot have.
        let (_tmp2, repo) = onnx_repo("partial-bad", Some("max_batch_size: -2"));
        let err = repo.load("det", None).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("'max_batch_size' must be non-negative value for det"),
            "{err}"
        );
    }

    fn write_model(tmp: &TempDir, name: &str, config: &str) {
        tmp.write(&format!("{name}/config.pbtxt"), config);
        tmp.write(&format!("{name}/1/model.onnx"), "onnx");
    }

    const STEP_A: &str = r#"name: "a" backend: "onnxruntime" max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]"#;

    const STEP_B: &str = r#"name: "b" backend: "onnxruntime" max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]
output [ { name: "y" data_type: TYPE_INT64 dims: [ -1, 1 ] } ]"#;

    const ENSEMBLE: &str = r#"name: "e" platform: "ensemble" max_batch_size: 4
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_INT64 dims: [ 1 ] } ]
ensemble_scheduling { step [
  { model_name: "a" model_version: -1 input_map { key: "x" value: "IN" } output_map { key: "y" value: "MID" } },
  { model_name: "b" model_version: -1 input_map { key: "x" value: "MID" } output_map { key: "y" value: "OUT" } }
] }"#;

    #[test]
    fn ensembles_are_checked_against_their_models() {
        let tmp = TempDir::new("ensemble");
        write_model(&tmp, "a", STEP_A);
        write_model(&tmp, "b", STEP_B);
        tmp.write("e/config.pbtxt", ENSEMBLE);
        tmp.mkdir("e/1");
        let repo = ModelRepository::open(&tmp.0).unwrap();
        let m = repo.load("e", None).unwrap();
        assert_eq!(m.model_path, repo.root().join("e/1"));
        assert!(m.config.instance_group.is_empty());
        crate::validate_config(&m.config, Some(&repo)).unwrap();

        let check = |ensemble: &str| {
            tmp.write("e/config.pbtxt", ensemble);
            repo.load("e", None).unwrap_err().to_string()
        };
        let err = check(&ENSEMBLE.replace("model_name: \"b\"", "model_name: \"c\""));
        assert!(
            err.ends_with("ensemble e contains models that are not available: c"),
            "{err}"
        );
        let err = check(&ENSEMBLE.replace("TYPE_INT64", "TYPE_FP32"));
        assert!(
            err.ends_with(
                "in ensemble e, ensemble tensor OUT: inconsistent data type: TYPE_FP32 is \
                 inferred from model e while TYPE_INT64 is inferred from model b"
            ),
            "{err}"
        );
        let err = check(&ENSEMBLE.replace("max_batch_size: 4", "max_batch_size: 16"));
        assert!(
            err.ends_with(
                "ensemble e allows maximum batch size 16, but it contains model a which only \
                 allows maximum batch size to be 8"
            ),
            "{err}"
        );
        let err = check(&ENSEMBLE.replace("key: \"x\" value: \"IN\"", "key: \"z\" value: \"IN\""));
        assert!(
            err.ends_with(
                "in ensemble e, ensemble tensor IN is mapping to non-existing input z in model a"
            ),
            "{err}"
        );
        let err = check(&ENSEMBLE.replace("dims: [ 4 ] }", "dims: [ 5 ] }"));
        assert!(
            err.ends_with(
                "in ensemble e, ensemble tensor IN: inconsistent shape: [-1,5] is inferred from \
                 model e while [-1,4] is inferred from model a"
            ),
            "{err}"
        );

        // An ensemble that runs itself through another ensemble.
        tmp.write("e/config.pbtxt", ENSEMBLE);
        let loop_back = ENSEMBLE
            .replace("name: \"e\"", "name: \"f\"")
            .replace("model_name: \"b\"", "model_name: \"e\"");
        tmp.write("f/config.pbtxt", &loop_back);
        tmp.write(
            "e/config.pbtxt",
            &ENSEMBLE.replace("model_name: \"b\"", "model_name: \"f\""),
        );
        let err = repo.load("e", None).unwrap_err().to_string();
        assert!(
            err.contains("circular dependency between ensembles"),
            "{err}"
        );
    }
}
