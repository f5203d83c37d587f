//! The models `vigil serve` serves: which are loaded (Triton's model control modes), their
//! states for the repository index, and the handles requests go through (each model's dynamic
//! batcher and instances, shared with every other caller in the process).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vigil_engine::{ModelHandle, ModelRuntime, ModelServer, PollGuard};
use vigil_modelrepo::{LoadOptions, ModelRepository};

use super::protocol::ServeError;

/// Triton's `--model-control-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlMode {
    /// Every model of the repository is loaded at start; no load or unload requests.
    None,
    /// As `none`, and the repository is polled: changed models are reloaded, new ones loaded.
    Poll,
    /// Only the models named by `--load-model` are loaded at start; load and unload requests
    /// load and unload models.
    Explicit,
}

/// The other versions of a model its version policy serves (Triton serves every one; a request
/// naming no version goes to the highest).
#[derive(Default)]
struct Versions {
    /// Each version but the highest, by version: its handle (kept reloaded by its poll guard in
    /// poll mode).
    ready: BTreeMap<u64, (Arc<ModelHandle>, Option<PollGuard>)>,
    /// Versions that failed to load, with the reason.
    failed: BTreeMap<u64, String>,
}

/// A model's state in the repository index.
enum Entry {
    /// Served by `handle` (its highest version, kept reloaded by `_poll` in poll mode) and
    /// `versions` (the other versions the version policy serves).
    Ready {
        handle: Arc<ModelHandle>,
        _poll: Option<PollGuard>,
        versions: Versions,
    },
    /// Not served: `reason` is the load error, or `unloaded`.
    Unavailable {
        version: Option<u64>,
        reason: String,
    },
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexRow {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The served models. Lock order: `entries` is the only lock, never held across a load, an
/// unload or an inference.
pub struct Models {
    root: PathBuf,
    mode: ControlMode,
    strict: bool,
    poll_interval: Duration,
    server: &'static ModelServer,
    entries: Mutex<BTreeMap<String, Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Models {
    /// Opens the repository at `root` and loads what `mode` loads at start: every model (`none`,
    /// `poll`) or those of `load` (`explicit`; `*` = every model). A model that fails to load is
    /// listed as unavailable with its reason; the others are served.
    pub fn start(
        root: &Path,
        mode: ControlMode,
        load: &[String],
        strict: bool,
        poll_interval: Duration,
    ) -> Result<Models, ServeError> {
        let repo = ModelRepository::open(root).map_err(|e| ServeError::internal(e.to_string()))?;
        let models = Models {
            root: repo.root().to_path_buf(),
            mode,
            strict,
            poll_interval,
            server: ModelServer::global(),
            entries: Mutex::new(BTreeMap::new()),
        };
        let names = models.repository_names()?;
        let wanted: Vec<String> = match mode {
            ControlMode::None | ControlMode::Poll => names,
            ControlMode::Explicit if load.iter().any(|n| n == "*") => names,
            ControlMode::Explicit => load.to_vec(),
        };
        for name in wanted {
            // A failure is recorded in the index; the server starts with the others.
            let _ = models.load_now(&name);
        }
        Ok(models)
    }

    /// The model control mode.
    pub fn mode(&self) -> ControlMode {
        self.mode
    }

    fn repository(&self) -> Result<ModelRepository, ServeError> {
        let mut repo =
            ModelRepository::open(&self.root).map_err(|e| ServeError::internal(e.to_string()))?;
        repo.set_options(LoadOptions {
            strict: self.strict,
            ..LoadOptions::default()
        });
        Ok(repo)
    }

    fn repository_names(&self) -> Result<Vec<String>, ServeError> {
        self.repository()?
            .model_names()
            .map_err(|e| ServeError::internal(e.to_string()))
    }

    /// Loads (or reloads) model `name` and serves it; on failure it is listed as unavailable
    /// with the reason, and the error says `failed to load '<name>'` as Triton's does.
    fn load_now(&self, name: &str) -> Result<(), ServeError> {
        let failed =
            |reason: String| ServeError::invalid(format!("failed to load '{name}', {reason}"));
        if !self.repository_names()?.iter().any(|n| n == name) {
            return Err(failed(format!(
                "the repository {} has no model folder of that name",
                self.root.display()
            )));
        }
        let result = self.check_strict(name).and_then(|()| {
            self.server
                .load(&self.root, name)
                .map_err(|e| e.to_string())
        });
        let result = result.map(|handle| {
            let versions = self.other_versions(name, &handle, Versions::default());
            (handle, versions)
        });
        let mut entries = lock(&self.entries);
        match result {
            Ok((handle, versions)) => {
                let poll = self.poll_guard(&handle);
                let broken = versions
                    .failed
                    .iter()
                    .map(|(v, reason)| format!("version {v}: {reason}"))
                    .collect::<Vec<_>>();
                entries.insert(
                    name.to_owned(),
                    Entry::Ready {
                        handle,
                        _poll: poll,
                        versions,
                    },
                );
                if broken.is_empty() {
                    Ok(())
                } else {
                    Err(failed(broken.join("; ")))
                }
            }
            Err(reason) => {
                // A model that was served keeps serving what it served (the engine refused the
                // reload); one that was not is listed with the reason.
                if !matches!(entries.get(name), Some(Entry::Ready { .. })) {
                    entries.insert(
                        name.to_owned(),
                        Entry::Unavailable {
                            version: None,
                            reason: reason.clone(),
                        },
                    );
                }
                Err(failed(reason))
            }
        }
    }

    /// In poll mode, a guard that keeps `handle` reloaded.
    fn poll_guard(&self, handle: &Arc<ModelHandle>) -> Option<PollGuard> {
        match self.mode {
            ControlMode::Poll => self.server.poll(handle, self.poll_interval).ok(),
            _ => None,
        }
    }

    /// The versions of model `name` its version policy serves besides the one `latest` serves,
    /// each loaded (or kept from `had`, the model's versions until now) — Triton serves every
    /// version the policy names. A version that fails to load is listed with the reason.
    fn other_versions(&self, name: &str, latest: &Arc<ModelHandle>, mut had: Versions) -> Versions {
        let top = latest.current().version();
        let served = match self.repository().and_then(|r| {
            r.served_versions(name)
                .map_err(|e| ServeError::internal(e.to_string()))
        }) {
            Ok(v) => v,
            // The repository changed under us: keep what is served.
            Err(_) => return had,
        };
        let mut versions = Versions::default();
        for v in served.into_iter().filter(|&v| v != top) {
            if let Some(kept) = had.ready.remove(&v) {
                versions.ready.insert(v, kept);
                continue;
            }
            match self.server.acquire(&self.root, name, Some(v)) {
                Ok(handle) => {
                    let poll = self.poll_guard(&handle);
                    versions.ready.insert(v, (handle, poll));
                }
                Err(e) => {
                    versions.failed.insert(v, e.to_string());
                }
            }
        }
        versions
    }

    /// `--strict-model-config`: the model folder must hold a `config.pbtxt`.
    fn check_strict(&self, name: &str) -> Result<(), String> {
        if !self.strict {
            return Ok(());
        }
        let repo = self.repository().map_err(|e| e.message)?;
        repo.load(name, None).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Triton's explicit load.
    pub fn load(&self, name: &str) -> Result<(), ServeError> {
        self.check_control()?;
        self.load_now(name)
    }

    /// Triton's explicit unload: the model takes no new requests, those queued and running
    /// finish, and it is listed as unavailable (`unloaded`).
    pub fn unload(&self, name: &str) -> Result<(), ServeError> {
        self.check_control()?;
        let version = match lock(&self.entries).get(name) {
            Some(Entry::Ready { handle, .. }) => Some(handle.current().version()),
            Some(Entry::Unavailable { .. }) => None,
            None => {
                return Err(ServeError::invalid(format!(
                    "failed to unload '{name}', Model to be unloaded has not been served"
                )));
            }
        };
        self.server
            .unload(&self.root, name)
            .map_err(|e| ServeError::internal(format!("failed to unload '{name}', {e}")))?;
        lock(&self.entries).insert(
            name.to_owned(),
            Entry::Unavailable {
                version,
                reason: "unloaded".into(),
            },
        );
        Ok(())
    }

    fn check_control(&self) -> Result<(), ServeError> {
        if self.mode == ControlMode::Explicit {
            Ok(())
        } else {
            Err(ServeError::unavailable(
                "explicit model load / unload is not allowed if polling is enabled",
            ))
        }
    }

    /// In poll mode: loads the models that appeared in the repository since the last call
    /// (changed ones are reloaded by the engine's polling).
    pub fn poll_new_models(&self) {
        let Ok(names) = self.repository_names() else {
            return;
        };
        for name in names {
            if !lock(&self.entries).contains_key(&name) {
                let _ = self.load_now(&name);
            } else {
                self.refresh_versions(&name);
            }
        }
    }

    /// In poll mode: serves the versions of model `name` its version policy serves now (a new
    /// version folder, a changed policy), stops serving the others. Its highest version is kept
    /// up to date by the engine's polling.
    fn refresh_versions(&self, name: &str) {
        let (handle, had) = match lock(&self.entries).get_mut(name) {
            Some(Entry::Ready {
                handle, versions, ..
            }) => (handle.clone(), std::mem::take(versions)),
            _ => return,
        };
        let versions = self.other_versions(name, &handle, had);
        if let Some(Entry::Ready {
            handle: now,
            versions: slot,
            ..
        }) = lock(&self.entries).get_mut(name)
            && Arc::ptr_eq(now, &handle)
        {
            *slot = versions;
        }
    }

    /// The runtime serving `name` (version `version`, or the one served when `None`), or
    /// Triton's error for an unknown, unavailable or other version.
    pub fn runtime(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<Arc<ModelRuntime>, ServeError> {
        let entries = lock(&self.entries);
        let Some(Entry::Ready {
            handle, versions, ..
        }) = entries.get(name)
        else {
            return Err(ServeError::not_found(format!(
                "Request for unknown model: '{name}' is not found"
            )));
        };
        let runtime = handle.current();
        match version {
            Some(v) if v != runtime.version() => match versions.ready.get(&v) {
                Some((h, _)) => Ok(h.current()),
                None => Err(ServeError::not_found(format!(
                    "Request for unknown model: '{name}' version {v} is not found"
                ))),
            },
            _ => Ok(runtime),
        }
    }

    /// Whether every model loaded at start or by request is ready (Triton's server readiness:
    /// a model that failed to load makes the server not ready only in `none`/`poll` mode).
    pub fn all_ready(&self) -> bool {
        match self.mode {
            ControlMode::Explicit => true,
            _ => lock(&self.entries)
                .values()
                .all(|e| matches!(e, Entry::Ready { .. })),
        }
    }

    /// The runtimes served now (every version served), by model name and version.
    pub fn served(&self) -> Vec<(String, Arc<ModelRuntime>)> {
        let mut served = Vec::new();
        for (name, e) in lock(&self.entries).iter() {
            if let Entry::Ready {
                handle, versions, ..
            } = e
            {
                let mut runtimes: Vec<Arc<ModelRuntime>> =
                    versions.ready.values().map(|(h, _)| h.current()).collect();
                runtimes.push(handle.current());
                runtimes.sort_by_key(|r| r.version());
                runtimes.dedup_by_key(|r| r.version());
                served.extend(runtimes.into_iter().map(|r| (name.clone(), r)));
            }
        }
        served
    }

    /// The repository index: every model folder, with its state where it has one; only the
    /// ready ones when `ready_only`.
    pub fn index(&self, ready_only: bool) -> Result<Vec<IndexRow>, ServeError> {
        let names = self.repository_names()?;
        let entries = lock(&self.entries);
        let mut rows = Vec::new();
        let mut push = |name: &str, e: Option<&Entry>| {
            let row = match e {
                Some(Entry::Ready {
                    handle, versions, ..
                }) => {
                    // One row per version, as Triton lists them.
                    let top = handle.current().version();
                    let mut states: BTreeMap<u64, Option<&str>> = versions
                        .ready
                        .keys()
                        .map(|&v| (v, None))
                        .chain(versions.failed.iter().map(|(&v, r)| (v, Some(r.as_str()))))
                        .collect();
                    states.insert(top, None);
                    for (v, failed) in states {
                        let row = IndexRow {
                            name: name.to_owned(),
                            version: Some(v.to_string()),
                            state: Some(if failed.is_some() {
                                "UNAVAILABLE"
                            } else {
                                "READY"
                            }),
                            reason: Some(failed.unwrap_or_default().to_owned()),
                        };
                        if !ready_only || row.state == Some("READY") {
                            rows.push(row);
                        }
                    }
                    return;
                }
                Some(Entry::Unavailable { version, reason }) => IndexRow {
                    name: name.to_owned(),
                    version: version.map(|v| v.to_string()),
                    state: Some("UNAVAILABLE"),
                    reason: Some(reason.clone()),
                },
                None => IndexRow {
                    name: name.to_owned(),
                    version: None,
                    state: None,
                    reason: None,
                },
            };
            if !ready_only || row.state == Some("READY") {
                rows.push(row);
            }
        };
        for name in &names {
            push(name, entries.get(name));
        }
        // Models still served whose folder is gone.
        for (name, e) in entries.iter() {
            if !names.contains(name) {
                push(name, Some(e));
            }
        }
        Ok(rows)
    }
}
