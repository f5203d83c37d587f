//! Finding models, versions, model files and labels in a repository folder.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::RepoError;
use super::config::{ModelConfig, VersionPolicy};

/// Configuration file of a model folder.
pub const CONFIG_FILE_NAME: &str = "config.pbtxt";
/// Labels file used when no output names a `label_filename`.
pub const LABELS_FILE_NAME: &str = "labels.txt";
/// Model file name in a version folder when `default_model_filename` is not set.
pub const DEFAULT_MODEL_FILENAME: &str = "model.onnx";

/// A model repository folder (`<root>/<model>/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRepository {
    root: PathBuf,
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
    /// The model file, `<dir>/<version>/<default_model_filename or model.onnx>`.
    pub model_path: PathBuf,
    /// The configuration; an empty `name` has been filled in from the folder.
    pub config: ModelConfig,
    /// Class labels, one per line of the labels file; empty when there is none.
    pub labels: Vec<String>,
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

impl ModelRepository {
    /// Opens the repository folder `root` (made absolute, so that messages name real paths).
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
        Ok(ModelRepository { root })
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

    /// Reads `<root>/<name>/config.pbtxt`, checks its name against the folder and fills in an
    /// empty name.
    pub fn load_config(&self, name: &str) -> Result<ModelConfig, RepoError> {
        let dir = self.model_dir(name)?;
        let path = dir.join(CONFIG_FILE_NAME);
        if !path.is_file() {
            return Err(RepoError::MissingConfig {
                model: name.to_owned(),
                path,
            });
        }
        let mut config = ModelConfig::from_file(&path)?;
        if config.name.is_empty() {
            config.set_name(name);
        } else if config.name != name {
            return Err(RepoError::NameMismatch {
                model: name.to_owned(),
                config_name: config.name.clone(),
                path,
            });
        }
        if let VersionPolicy::Latest { num_versions: 0 } = config.version_policy {
            return Err(RepoError::ConfigInvalid {
                path,
                message: format!(
                    "model '{name}': version_policy latest: num_versions must be at least 1"
                ),
            });
        }
        Ok(config)
    }

    /// Numeric version folders of model `name`, ascending (whatever the version policy).
    pub fn versions_present(&self, name: &str) -> Result<Vec<u64>, RepoError> {
        let dir = self.model_dir(name)?;
        Ok(version_dirs(&dir)?.into_keys().collect())
    }

    /// Versions of model `name` that its version policy serves, ascending.
    pub fn served_versions(&self, name: &str) -> Result<Vec<u64>, RepoError> {
        let config = self.load_config(name)?;
        let dir = self.model_dir(name)?;
        let present: Vec<u64> = version_dirs(&dir)?.into_keys().collect();
        Ok(served(&config.version_policy, &present))
    }

    /// Resolves model `name` at `version` (`None`: the highest version the policy serves),
    /// checks that the model file exists and reads the labels.
    pub fn load(&self, name: &str, version: Option<u64>) -> Result<LoadedModel, RepoError> {
        let config = self.load_config(name)?;
        let dir = self.model_dir(name)?;
        let folders = version_dirs(&dir)?;
        if folders.is_empty() {
            return Err(RepoError::NoVersion {
                model: name.to_owned(),
                dir,
            });
        }
        let present: Vec<u64> = folders.keys().copied().collect();
        let served = served(&config.version_policy, &present);

        let version = match version {
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
                        dir,
                        policy: config.version_policy.to_string(),
                        served: list_versions(&served),
                    });
                }
                v
            }
            None => match served.last() {
                Some(&v) => v,
                None => {
                    return Err(RepoError::NoServedVersion {
                        model: name.to_owned(),
                        policy: config.version_policy.to_string(),
                        dir,
                        available: list_versions(&present),
                    });
                }
            },
        };

        let version_dir = folders.get(&version).cloned().unwrap_or_default();
        let file_name = config
            .default_model_filename
            .as_deref()
            .unwrap_or(DEFAULT_MODEL_FILENAME);
        let model_path = version_dir.join(file_name);
        if !model_path.exists() {
            return Err(RepoError::ModelFileMissing {
                model: name.to_owned(),
                version,
                path: model_path,
            });
        }

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

/// Labels: the first output's `label_filename` (must exist), else `labels.txt` if present.
fn read_labels(model: &str, dir: &Path, config: &ModelConfig) -> Result<Vec<String>, RepoError> {
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
    use crate::modelrepo::DataType;
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
        let err = repo.load("noconfig", None).unwrap_err();
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
default_model_filename: "net.onnx"
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
}
