//! [`ModelServer`]: the process-wide registry that makes every caller naming the same model share
//! one [`ModelRuntime`].

use crate::lock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use super::{EngineError, InferRequest, ModelRuntime, SessionFactory, onnx_session_factory};
use crate::TensorView;
use vigil_modelrepo::{ENSEMBLE_PLATFORM, LoadedModel, ModelRepository};

/// A model as callers name it: repository, model, and a version or `None` for the latest the
/// version policy serves. Callers keep it (an `Arc`) while they use the model.
///
/// [`ModelHandle::current`] gives the runtime that serves it now. The runtime can be replaced
/// ([`ModelHandle::replace`], for reloading): requests already given to the old runtime finish
/// there, and the old runtime stops when its last user lets go of it.
#[derive(Debug)]
pub struct ModelHandle {
    repository: PathBuf,
    name: String,
    requested_version: Option<u64>,
    current: RwLock<Arc<ModelRuntime>>,
}

impl ModelHandle {
    /// A handle serving `runtime`.
    pub fn new(
        repository: PathBuf,
        name: String,
        requested_version: Option<u64>,
        runtime: Arc<ModelRuntime>,
    ) -> Self {
        ModelHandle {
            repository,
            name,
            requested_version,
            current: RwLock::new(runtime),
        }
    }

    /// The runtime serving the model now.
    pub fn current(&self) -> Arc<ModelRuntime> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `runtime` in place of the current one and returns the one it replaces.
    pub fn replace(&self, runtime: Arc<ModelRuntime>) -> Arc<ModelRuntime> {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, runtime)
    }

    /// Whether the current runtime takes frame requests ([`ModelRuntime::gpu_preprocessing`]);
    /// ask again after a reload (the runtime, hence the answer, can change).
    pub fn gpu_preprocessing(&self) -> bool {
        self.current().gpu_preprocessing()
    }

    /// [`ModelRuntime::infer`] on the current runtime.
    pub fn infer<R, F>(&self, request: InferRequest, f: F) -> Result<R, EngineError>
    where
        R: Send + 'static,
        F: FnOnce(&[TensorView]) -> R + Send + 'static,
    {
        self.current().infer(request, f)
    }

    /// The canonical repository folder.
    pub fn repository(&self) -> &Path {
        &self.repository
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version asked for; `None` = the latest served.
    pub fn requested_version(&self) -> Option<u64> {
        self.requested_version
    }
}

type HandleKey = (PathBuf, String, Option<u64>);
type RuntimeKey = (PathBuf, String, u64);

/// A registry of loaded models. Callers naming the same (canonical repository folder, model,
/// version) get the same [`ModelHandle`]; handles of the same concrete version (e.g. "latest" and
/// "1" while 1 is the latest) share one [`ModelRuntime`]. Only weak references are kept, so a
/// model no caller holds is unloaded.
pub struct ModelServer {
    factory: SessionFactory,
    handles: Mutex<HashMap<HandleKey, Arc<Mutex<Weak<ModelHandle>>>>>,
    runtimes: Mutex<HashMap<RuntimeKey, Arc<Mutex<Weak<ModelRuntime>>>>>,
    /// Polling and explicit load/unload ([`super::poll`]).
    pub(super) poll: super::poll::PollState,
}

impl std::fmt::Debug for ModelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServer")
            .field("handles", &lock(&self.handles).keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for ModelServer {
    fn default() -> Self {
        Self::new()
    }
}

/// The slot for `key`, created if missing; forgets slots whose value is gone and nobody is filling.
fn slot<K: Eq + std::hash::Hash + Clone, T>(
    map: &Mutex<HashMap<K, Arc<Mutex<Weak<T>>>>>,
    key: &K,
) -> Arc<Mutex<Weak<T>>> {
    let mut map = lock(map);
    map.retain(|k, s| {
        k == key || Arc::strong_count(s) > 1 || s.try_lock().is_ok_and(|w| w.strong_count() > 0)
    });
    map.entry(key.clone()).or_default().clone()
}

impl ModelServer {
    /// A registry with ONNX Runtime sessions.
    pub fn new() -> Self {
        Self::with_factory(onnx_session_factory())
    }

    /// A registry whose runtimes make their sessions with `factory`.
    pub fn with_factory(factory: SessionFactory) -> Self {
        ModelServer {
            factory,
            handles: Mutex::new(HashMap::new()),
            runtimes: Mutex::new(HashMap::new()),
            poll: Default::default(),
        }
    }

    /// The registry of the process.
    pub fn global() -> &'static ModelServer {
        static GLOBAL: OnceLock<ModelServer> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            crate::python::register_autocomplete();
            ModelServer::new()
        })
    }

    /// The model `name` of repository `repository` at `version` (`None`: the latest the version
    /// policy serves), loaded on first use and shared by every caller naming the same one.
    pub fn acquire(
        &self,
        repository: &Path,
        name: &str,
        version: Option<u64>,
    ) -> Result<Arc<ModelHandle>, EngineError> {
        let repo = ModelRepository::open(repository)?;
        let root = repo.root().to_path_buf();
        self.refuse_unloaded(&root, name)?;
        let key = (root.clone(), name.to_owned(), version);
        let slot = slot(&self.handles, &key);
        let mut weak = lock(&slot);
        if let Some(handle) = weak.upgrade() {
            return Ok(handle);
        }
        let loaded = repo.load(name, version)?;
        let runtime = self.runtime_for(&root, &loaded)?;
        let handle = Arc::new(ModelHandle::new(root, name.to_owned(), version, runtime));
        *weak = Arc::downgrade(&handle);
        Ok(handle)
    }

    /// The runtime of `model` (a version resolved in the repository `root`), shared with every
    /// handle of the same version; loaded if none is running.
    pub fn runtime_for(
        &self,
        root: &Path,
        model: &LoadedModel,
    ) -> Result<Arc<ModelRuntime>, EngineError> {
        let key = (root.to_path_buf(), model.name.clone(), model.version);
        let slot = slot(&self.runtimes, &key);
        let mut weak = lock(&slot);
        if let Some(runtime) = weak.upgrade() {
            return Ok(runtime);
        }
        let runtime = Arc::new(self.load_runtime(root, model)?);
        *weak = Arc::downgrade(&runtime);
        Ok(runtime)
    }

    /// Starts a runtime for `model` of the repository `root`: an ensemble
    /// (`platform: "ensemble"`) runs its steps through the runtimes of this server
    /// ([`super::ensemble`]), any other model gets its own instances.
    fn load_runtime(&self, root: &Path, model: &LoadedModel) -> Result<ModelRuntime, EngineError> {
        if model.config.platform == ENSEMBLE_PLATFORM {
            super::ensemble::load(self, root, model)
        } else {
            ModelRuntime::load_with_factory(model, self.factory.clone())
        }
    }

    /// Loads the model `handle` names afresh from the repository (a new version folder, a changed
    /// configuration) and puts the new runtime in service; returns the runtime it replaced, whose
    /// queued and running requests still finish there. On error nothing changes and the current
    /// runtime keeps serving. Other handles sharing the old runtime keep it until reloaded.
    pub fn reload(&self, handle: &ModelHandle) -> Result<Arc<ModelRuntime>, EngineError> {
        let repo = ModelRepository::open(&handle.repository)?;
        let loaded = repo.load(&handle.name, handle.requested_version)?;
        let runtime = Arc::new(self.load_runtime(&handle.repository, &loaded)?);
        let key = (
            handle.repository.clone(),
            handle.name.clone(),
            loaded.version,
        );
        let slot = slot(&self.runtimes, &key);
        *lock(&slot) = Arc::downgrade(&runtime);
        Ok(handle.replace(runtime))
    }

    /// The live handles of model `name` of the repository `root` (any requested version).
    pub(super) fn live_handles(&self, root: &Path, name: &str) -> Vec<Arc<ModelHandle>> {
        let slots: Vec<Arc<Mutex<Weak<ModelHandle>>>> = lock(&self.handles)
            .iter()
            .filter(|((r, n, _), _)| r == root && n == name)
            .map(|(_, s)| s.clone())
            .collect();
        slots.iter().filter_map(|s| lock(s).upgrade()).collect()
    }

    /// Forgets the runtimes of model `name` of the repository `root` (unloading), so that none is
    /// shared with a new caller.
    pub(super) fn forget_runtimes(&self, root: &Path, name: &str) {
        lock(&self.runtimes).retain(|(r, n, _), _| !(r == root && n == name));
    }

    /// The runtimes loaded now (for metrics), ordered by repository, model and version.
    pub fn runtimes(&self) -> Vec<Arc<ModelRuntime>> {
        let slots: Vec<(RuntimeKey, Arc<Mutex<Weak<ModelRuntime>>>)> = lock(&self.runtimes)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut live: Vec<(RuntimeKey, Arc<ModelRuntime>)> = slots
            .into_iter()
            .filter_map(|(k, s)| {
                let r = s.try_lock().ok()?.upgrade()?;
                Some((k, r))
            })
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        live.into_iter().map(|(_, r)| r).collect()
    }
}
