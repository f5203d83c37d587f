//! Triton's model control for a [`ModelServer`]: POLL mode and EXPLICIT load/unload.
//!
//! **Polling** ([`ModelServer::poll`]): while a [`PollGuard`] lives, a background thread of the
//! server (one per server, started on the first request, ending when nothing is polled any more)
//! checks the handle's repository entry every interval. It compares a [`Fingerprint`] of the entry
//! — the version the handle would load now (its requested version, or the highest one the version
//! policy serves), and the size and modification time of every file at the top of the model folder
//! (`config.pbtxt`, `labels.txt`, ...) and of every file in that version's folder — with the one of
//! the last check, and on a change calls [`ModelServer::reload`]: the new runtime takes the new
//! requests while the requests queued or running on the old runtime finish there (no request is
//! lost). A reload that fails (a corrupt model file, an invalid configuration, a removed version)
//! is refused: the current runtime keeps serving, the error is recorded as a [`ReloadEvent`], and
//! the same fingerprint is not tried again — the next attempt comes when the entry changes again.
//! A model folder that disappears is reported the same way; the model keeps serving until
//! [`ModelServer::unload`]. Write new version folders atomically (e.g. fill a folder outside the
//! model folder, or one with a non-numeric name, then rename it): a half-written file is tried,
//! refused, and tried again once it changes.
//!
//! **Explicit control** (Triton's EXPLICIT mode):
//! - [`ModelServer::load`] (re)loads a model now: every live handle of the model is reloaded (as a
//!   poll would), the model stays loaded (the server keeps a handle of its latest version) until
//!   unloaded, and the error is returned when the load fails (the old runtimes keep serving).
//! - [`ModelServer::unload`] stops serving a model: every live handle's runtime takes no new
//!   requests, runs those already queued or running to the end, and stops (`unload` returns when
//!   they have finished); new requests on those handles fail with [`EngineError::ShuttingDown`],
//!   [`ModelServer::acquire`] refuses the model with [`EngineError::Unloaded`], and polling leaves
//!   it alone, until [`ModelServer::load`] loads it again — in the same handles, so callers holding
//!   them serve again without acquiring anew.
//!
//! Every poll-triggered reload, load and unload is recorded ([`ModelServer::events`],
//! [`ModelServer::events_after`]; the last [`EVENT_LOG_LEN`] are kept), so callers can log them —
//! the engine itself prints nothing.

use crate::lock;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::{EngineError, ModelHandle, ModelServer};
use vigil_modelrepo::ModelRepository;

/// How many [`ReloadEvent`]s a server keeps.
pub const EVENT_LOG_LEN: usize = 256;

/// The shortest polling interval (shorter ones are raised to it).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How deep a version folder is searched for files to fingerprint.
const MAX_WALK_DEPTH: usize = 4;
/// Most files of a version folder that are fingerprinted.
const MAX_WALK_FILES: usize = 4096;

/// What caused a [`ReloadEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadCause {
    /// A polled repository entry changed ([`ModelServer::poll`]).
    Poll,
    /// [`ModelServer::load`].
    Load,
    /// [`ModelServer::unload`].
    Unload,
}

/// One model-control action on one handle: a reload (successful or refused), a load or an unload.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadEvent {
    /// Increasing number of the event in its server (the first is 1).
    pub seq: u64,
    pub cause: ReloadCause,
    /// The canonical repository folder.
    pub repository: PathBuf,
    pub model: String,
    /// The version the handle asks for; `None` = the latest served.
    pub requested_version: Option<u64>,
    /// The version served before (`None`: nothing was loaded).
    pub from_version: Option<u64>,
    /// The version served after (`None`: nothing serves the handle now, after an unload).
    pub to_version: Option<u64>,
    /// False when the action failed (the error is in `message`; what served before still serves).
    pub ok: bool,
    pub message: String,
    pub at: SystemTime,
}

/// Size and modification times of one file of a repository entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    pub path: PathBuf,
    /// Size of the file (of a link's target); `None` when it cannot be read.
    pub len: Option<u64>,
    /// Modification time of the file (of a link's target).
    pub modified: Option<SystemTime>,
    /// Modification time of the entry itself when it is a symbolic link (a link pointed elsewhere).
    pub link_modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(path: PathBuf) -> Self {
        let target = fs::metadata(&path).ok();
        let link = fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.file_type().is_symlink());
        FileStamp {
            len: target.as_ref().map(|m| m.len()),
            modified: target.as_ref().and_then(|m| m.modified().ok()),
            link_modified: link.and_then(|m| m.modified().ok()),
            path,
        }
    }
}

/// What polling compares to notice that a model must be reloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The version a reload would load: the requested one if the version policy serves it, else
    /// the highest served; the error when there is none (or the configuration cannot be read).
    pub version: Result<u64, String>,
    /// Files at the top of the model folder and, recursively, in the version's folder, by path.
    pub files: Vec<FileStamp>,
}

impl Fingerprint {
    /// The fingerprint of model `name` of `repository` for a handle asking for `requested`
    /// (`None`: the latest served). Never fails: what cannot be read is part of the fingerprint.
    pub fn of(repository: &Path, name: &str, requested: Option<u64>) -> Fingerprint {
        let (version, dir) = match ModelRepository::open(repository) {
            Err(e) => (Err(e.to_string()), None),
            Ok(repo) => match repo.model_dir(name) {
                Err(e) => (Err(e.to_string()), None),
                Ok(dir) => (target_version(&repo, name, requested), Some(dir)),
            },
        };
        let mut files = Vec::new();
        if let Some(dir) = &dir {
            if let Ok(entries) = fs::read_dir(dir) {
                let mut top: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                top.sort();
                files.extend(top.into_iter().map(FileStamp::of));
            }
            if let Ok(v) = &version
                && let Some(folder) = version_folder(dir, *v)
            {
                walk(&folder, 0, &mut files);
            }
        }
        Fingerprint { version, files }
    }
}

/// The version a handle asking for `requested` would load now.
fn target_version(
    repo: &ModelRepository,
    name: &str,
    requested: Option<u64>,
) -> Result<u64, String> {
    let served = repo.served_versions(name).map_err(|e| e.to_string())?;
    let list = || {
        served
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match requested {
        Some(v) if served.contains(&v) => Ok(v),
        Some(v) => Err(format!(
            "model '{name}': version {v} is not served (served: {})",
            list()
        )),
        None => served
            .last()
            .copied()
            .ok_or_else(|| format!("model '{name}': no version is served")),
    }
}

/// The folder of version `v` (`<dir>/<v>`, or a spelling such as `01`).
fn version_folder(dir: &Path, v: u64) -> Option<PathBuf> {
    let canonical = dir.join(v.to_string());
    if canonical.is_dir() {
        return Some(canonical);
    }
    let mut other: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()) && n.parse() == Ok(v))
        })
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    other.sort();
    other.into_iter().next()
}

/// Stamps the files under `folder` (sorted, depth and count limited).
fn walk(folder: &Path, depth: usize, files: &mut Vec<FileStamp>) {
    let Ok(entries) = fs::read_dir(folder) else {
        files.push(FileStamp::of(folder.to_path_buf()));
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if files.len() >= MAX_WALK_FILES {
            return;
        }
        if path.is_dir() {
            if depth < MAX_WALK_DEPTH {
                walk(&path, depth + 1, files);
            }
        } else {
            files.push(FileStamp::of(path));
        }
    }
}

/// One polled handle.
struct Entry {
    handle: Weak<ModelHandle>,
    /// `(guard token, interval)` of every [`PollGuard`] of the handle; the shortest interval wins.
    subscribers: Vec<(u64, Duration)>,
    due: Instant,
    /// The fingerprint of the last check (`None`: reload at the next check).
    last: Option<Fingerprint>,
}

impl Entry {
    fn interval(&self) -> Duration {
        self.subscribers
            .iter()
            .map(|s| s.1)
            .min()
            .unwrap_or(Duration::from_secs(1))
    }

    fn is(&self, handle: &ModelHandle) -> bool {
        std::ptr::eq(self.handle.as_ptr(), handle)
    }
}

type ModelKey = (PathBuf, String);

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    next_token: u64,
    thread_running: bool,
    unloaded: HashSet<ModelKey>,
    /// Handles kept by [`ModelServer::load`] so that a loaded model stays loaded.
    pinned: HashMap<ModelKey, Arc<ModelHandle>>,
}

impl Inner {
    fn prune(&mut self) {
        self.entries
            .retain(|e| !e.subscribers.is_empty() && e.handle.strong_count() > 0);
    }
}

#[derive(Default)]
struct EventLog {
    events: VecDeque<ReloadEvent>,
}

/// The model-control state of a [`ModelServer`].
#[derive(Default)]
pub(super) struct PollState {
    inner: Mutex<Inner>,
    wake: Condvar,
    events: Mutex<EventLog>,
    last_seq: AtomicU64,
    /// Serialises reloads, loads and unloads.
    control: Mutex<()>,
}

/// Keeps a handle polled ([`ModelServer::poll`]); polling of it stops when the last guard of the
/// handle is dropped (or the handle itself is).
#[must_use = "the model is polled only while the guard lives"]
pub struct PollGuard {
    server: &'static ModelServer,
    token: u64,
}

impl std::fmt::Debug for PollGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollGuard")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let state = &self.server.poll;
        let mut inner = lock(&state.inner);
        for e in &mut inner.entries {
            e.subscribers.retain(|s| s.0 != self.token);
        }
        inner.prune();
        drop(inner);
        state.wake.notify_all();
    }
}

/// What one check of a handle found.
struct Attempt {
    /// The model was unloaded (explicit load of an unloaded model).
    unloaded: bool,
    from: Option<u64>,
    result: Result<u64, EngineError>,
}

impl ModelServer {
    /// Polls `handle`'s repository entry every `interval` (at least [`MIN_POLL_INTERVAL`]) while
    /// the returned guard lives (Triton's POLL mode). The server's polling thread is started if
    /// it is not running; it ends when nothing is polled. Several guards of one handle poll it
    /// once, at the shortest of their intervals.
    ///
    /// Each check compares the entry's [`Fingerprint`] (the version the handle would load now,
    /// and size and modification time of the files at the top of the model folder and in that
    /// version's folder) with the last one; on a change [`ModelServer::reload`] puts a freshly
    /// loaded runtime in service (requests queued or running on the old one finish there). A
    /// reload that fails is refused: the current runtime keeps serving, a [`ReloadEvent`] with
    /// the error is recorded, and the same fingerprint is not tried again. A removed model
    /// folder is reported the same way (the model keeps serving until unloaded). Add versions
    /// atomically (fill a folder elsewhere, then rename it into the model folder).
    pub fn poll(
        &'static self,
        handle: &Arc<ModelHandle>,
        interval: Duration,
    ) -> std::io::Result<PollGuard> {
        let interval = interval.max(MIN_POLL_INTERVAL);
        // The fingerprint of what is served now; if the entry already asks for another version,
        // the first check reloads.
        let fp = Fingerprint::of(
            handle.repository(),
            handle.name(),
            handle.requested_version(),
        );
        let last = (fp.version.as_ref().ok() == Some(&handle.current().version())).then_some(fp);
        let state = &self.poll;
        let mut inner = lock(&state.inner);
        inner.prune();
        let token = inner.next_token;
        inner.next_token += 1;
        let now = Instant::now();
        match inner.entries.iter_mut().find(|e| e.is(handle)) {
            Some(e) => {
                e.subscribers.push((token, interval));
                e.due = e.due.min(now + interval);
            }
            None => inner.entries.push(Entry {
                handle: Arc::downgrade(handle),
                subscribers: vec![(token, interval)],
                due: now + interval,
                last,
            }),
        }
        let guard = PollGuard {
            server: self,
            token,
        };
        if !inner.thread_running {
            let spawned = std::thread::Builder::new()
                .name("vigil-model-poll".into())
                .spawn(move || self.poll_thread());
            if let Err(e) = spawned {
                drop(inner);
                drop(guard);
                return Err(e);
            }
            inner.thread_running = true;
        }
        drop(inner);
        state.wake.notify_all();
        Ok(guard)
    }

    /// Checks every polled handle now, whatever their intervals (reloading the changed ones), and
    /// returns when done.
    pub fn poll_now(&self) {
        self.poll_pass(true);
    }

    /// The model-control events kept (the last [`EVENT_LOG_LEN`]), oldest first.
    pub fn events(&self) -> Vec<ReloadEvent> {
        lock(&self.poll.events).events.iter().cloned().collect()
    }

    /// The events kept whose `seq` is above `seq`, oldest first (cheap when there are none).
    pub fn events_after(&self, seq: u64) -> Vec<ReloadEvent> {
        if self.last_event_seq() <= seq {
            return Vec::new();
        }
        lock(&self.poll.events)
            .events
            .iter()
            .filter(|e| e.seq > seq)
            .cloned()
            .collect()
    }

    /// The `seq` of the last event (0 when there is none).
    pub fn last_event_seq(&self) -> u64 {
        self.poll.last_seq.load(Ordering::Acquire)
    }

    /// Loads model `name` of `repository` now, Triton's explicit load: reloads every live handle
    /// of the model, then keeps the latest version loaded until [`ModelServer::unload`] and
    /// returns its handle. When a reload fails the error is returned, the handles keep what
    /// they served (an unloaded model stays unloaded), and the other handles are still reloaded.
    pub fn load(&self, repository: &Path, name: &str) -> Result<Arc<ModelHandle>, EngineError> {
        let repo = ModelRepository::open(repository)?;
        let root = repo.root().to_path_buf();
        let key = (root.clone(), name.to_owned());
        let _control = lock(&self.poll.control);
        let unloaded = lock(&self.poll.inner).unloaded.contains(&key);
        let mut first_error = None;
        for handle in self.live_handles(&root, name) {
            let fp = Fingerprint::of(&root, name, handle.requested_version());
            let mut attempt = self.reload_attempt(&handle);
            attempt.unloaded = unloaded;
            self.set_last(&handle, fp);
            self.record(ReloadCause::Load, &handle, &attempt);
            if let Err(e) = attempt.result {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        lock(&self.poll.inner).unloaded.remove(&key);
        let known = self.live_handles(&root, name);
        let handle = match self.acquire(&root, name, None) {
            Ok(h) => h,
            Err(e) => {
                self.push_event(ReloadEvent {
                    seq: 0,
                    cause: ReloadCause::Load,
                    repository: root,
                    model: name.to_owned(),
                    requested_version: None,
                    from_version: None,
                    to_version: None,
                    ok: false,
                    message: format!("load refused: {e}"),
                    at: SystemTime::now(),
                });
                return Err(e);
            }
        };
        if !known.iter().any(|h| Arc::ptr_eq(h, &handle)) {
            let version = handle.current().version();
            self.record(
                ReloadCause::Load,
                &handle,
                &Attempt {
                    unloaded: false,
                    from: None,
                    result: Ok(version),
                },
            );
        }
        lock(&self.poll.inner).pinned.insert(key, handle.clone());
        Ok(handle)
    }

    /// Unloads model `name` of `repository`, Triton's explicit unload. Every live handle's
    /// runtime takes no new requests and runs those queued or running to the end; then new
    /// requests on those handles fail with [`EngineError::ShuttingDown`], acquiring the model
    /// fails with [`EngineError::Unloaded`], and polling leaves it alone, until
    /// [`ModelServer::load`] serves it again in the same handles. Returns, once the queued and
    /// running requests have finished, the number of live handles that stopped serving.
    pub fn unload(&self, repository: &Path, name: &str) -> Result<usize, EngineError> {
        let root = fs::canonicalize(repository).unwrap_or_else(|_| {
            std::path::absolute(repository).unwrap_or_else(|_| repository.to_path_buf())
        });
        let key = (root.clone(), name.to_owned());
        let _control = lock(&self.poll.control);
        let pinned = {
            let mut inner = lock(&self.poll.inner);
            inner.unloaded.insert(key.clone());
            inner.pinned.remove(&key)
        };
        let handles = self.live_handles(&root, name);
        self.forget_runtimes(&root, name);
        for handle in &handles {
            let runtime = handle.current();
            runtime.shutdown();
            let from = runtime.version();
            self.push_event(ReloadEvent {
                seq: 0,
                cause: ReloadCause::Unload,
                repository: root.clone(),
                model: name.to_owned(),
                requested_version: handle.requested_version(),
                from_version: Some(from),
                to_version: None,
                ok: true,
                message: format!(
                    "model '{name}' version {from} unloaded from {}; new requests are refused \
                     until it is loaded again",
                    root.display()
                ),
                at: SystemTime::now(),
            });
        }
        drop(pinned);
        Ok(handles.len())
    }

    /// The error [`ModelServer::acquire`] gives for an unloaded model, if it is one.
    pub(super) fn refuse_unloaded(&self, root: &Path, name: &str) -> Result<(), EngineError> {
        let inner = lock(&self.poll.inner);
        if inner
            .unloaded
            .contains(&(root.to_path_buf(), name.to_owned()))
        {
            return Err(EngineError::Unloaded {
                model: name.to_owned(),
                repository: root.to_path_buf(),
            });
        }
        Ok(())
    }

    /// The polling thread: checks the due handles, sleeps until the next is due, and ends when
    /// nothing is polled.
    fn poll_thread(&'static self) {
        let state = &self.poll;
        loop {
            {
                let mut inner = lock(&state.inner);
                inner.prune();
                let Some(next) = inner.entries.iter().map(|e| e.due).min() else {
                    inner.thread_running = false;
                    return;
                };
                let now = Instant::now();
                if next > now {
                    drop(
                        state
                            .wake
                            .wait_timeout(inner, next - now)
                            .unwrap_or_else(|e| e.into_inner()),
                    );
                    continue;
                }
            }
            self.poll_pass(false);
        }
    }

    /// Checks the handles that are due (all with `force`).
    fn poll_pass(&self, force: bool) {
        let due: Vec<Arc<ModelHandle>> = {
            let mut inner = lock(&self.poll.inner);
            inner.prune();
            let now = Instant::now();
            inner
                .entries
                .iter_mut()
                .filter(|e| force || e.due <= now)
                .filter_map(|e| {
                    e.due = now + e.interval();
                    e.handle.upgrade()
                })
                .collect()
        };
        for handle in due {
            self.check(&handle);
        }
    }

    /// Reloads `handle` if its repository entry changed since the last check.
    fn check(&self, handle: &Arc<ModelHandle>) {
        let _control = lock(&self.poll.control);
        let key = (handle.repository().to_path_buf(), handle.name().to_owned());
        let last = {
            let inner = lock(&self.poll.inner);
            if inner.unloaded.contains(&key) {
                return;
            }
            match inner.entries.iter().find(|e| e.is(handle)) {
                Some(e) => e.last.clone(),
                None => return,
            }
        };
        let fp = Fingerprint::of(
            handle.repository(),
            handle.name(),
            handle.requested_version(),
        );
        if last.as_ref() == Some(&fp) {
            return;
        }
        let attempt = self.reload_attempt(handle);
        // Also after a failure: the same fingerprint is not tried again.
        self.set_last(handle, fp);
        self.record(ReloadCause::Poll, handle, &attempt);
    }

    /// [`ModelServer::reload`], dropping the old runtime (which finishes its requests first).
    fn reload_attempt(&self, handle: &ModelHandle) -> Attempt {
        let from = Some(handle.current().version());
        let result = self.reload(handle).map(|old| {
            drop(old);
            handle.current().version()
        });
        Attempt {
            unloaded: false,
            from,
            result,
        }
    }

    fn set_last(&self, handle: &ModelHandle, fp: Fingerprint) {
        let mut inner = lock(&self.poll.inner);
        if let Some(e) = inner.entries.iter_mut().find(|e| e.is(handle)) {
            e.last = Some(fp);
        }
    }

    fn record(&self, cause: ReloadCause, handle: &ModelHandle, attempt: &Attempt) {
        let name = handle.name();
        let (to, ok, message) = match &attempt.result {
            Ok(v) => (
                Some(*v),
                true,
                match attempt.from {
                    Some(from) if from != *v => {
                        format!("model '{name}' reloaded: version {from} -> {v}")
                    }
                    Some(_) => format!("model '{name}' version {v} reloaded"),
                    None => format!("model '{name}' version {v} loaded"),
                },
            ),
            Err(e) => (
                attempt.from.filter(|_| !attempt.unloaded),
                false,
                match attempt.from {
                    _ if attempt.unloaded => format!("load refused, the model stays unloaded: {e}"),
                    Some(from) => {
                        format!("reload refused, version {from} keeps serving: {e}")
                    }
                    None => format!("load refused: {e}"),
                },
            ),
        };
        self.push_event(ReloadEvent {
            seq: 0,
            cause,
            repository: handle.repository().to_path_buf(),
            model: name.to_owned(),
            requested_version: handle.requested_version(),
            from_version: attempt.from,
            to_version: to,
            ok,
            message,
            at: SystemTime::now(),
        });
    }

    fn push_event(&self, mut event: ReloadEvent) {
        let mut log = lock(&self.poll.events);
        event.seq = self.poll.last_seq.load(Ordering::Acquire) + 1;
        if log.events.len() >= EVENT_LOG_LEN {
            log.events.pop_front();
        }
        log.events.push_back(event);
        self.poll
            .last_seq
            .store(log.events.back().map_or(0, |e| e.seq), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testmodel::{affine_model, write_affine, write_version};
    use super::*;
    use crate::InferRequest;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-poll-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    const CONFIG: &str = "name: \"affine\"\nbackend: \"onnxruntime\"\nmax_batch_size: 4\n\
         input [ { name: \"x\", data_type: TYPE_FP32, dims: [ -1 ] } ]\n\
         output [ { name: \"y\", data_type: TYPE_FP32, dims: [ -1 ] },\n\
                  { name: \"z\", data_type: TYPE_FP32, dims: [ -1 ] } ]\n\
         dynamic_batching { }\n";

    /// A repository with the `affine` model, version 1, and its configuration.
    fn affine_repo(tag: &str) -> PathBuf {
        let repo = temp_dir(tag);
        write_affine(&repo, "affine");
        fs::write(repo.join("affine/config.pbtxt"), CONFIG).unwrap();
        repo
    }

    /// Sets a file's modification time `secs` into the future (a change a coarse clock misses).
    fn touch_later(path: &Path, secs: u64) {
        let f = fs::File::options().append(true).open(path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(secs))
            .unwrap();
    }

    fn ort_available() -> bool {
        match crate::runtime::environment() {
            Ok(_) => true,
            Err(e) => {
                println!("SKIPPED: ONNX Runtime is not available: {e}");
                false
            }
        }
    }

    fn y0(handle: &ModelHandle) -> Result<f32, EngineError> {
        handle.infer(InferRequest::new("x", vec![2], vec![1.0, 2.0]), |v| {
            v[0].data[0]
        })
    }

    #[test]
    fn fingerprint_follows_versions_config_labels_and_model_files() {
        let repo = affine_repo("fingerprint");
        let fp = |v| Fingerprint::of(&repo, "affine", v);
        let first = fp(None);
        assert_eq!(first.version, Ok(1));
        let names: Vec<String> = first
            .files
            .iter()
            .map(|f| f.path.strip_prefix(&repo).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["affine/config.pbtxt", "affine/1/model.onnx"]);
        assert!(first.files.iter().all(|f| f.len.is_some()));
        // Nothing changed: the same fingerprint.
        assert_eq!(fp(None), first);

        // A non-numeric folder is ignored, as Triton ignores it.
        fs::create_dir_all(repo.join("affine/staging")).unwrap();
        fs::write(repo.join("affine/staging/model.onnx"), b"x").unwrap();
        assert_eq!(fp(None), first);

        // Labels added.
        fs::write(repo.join("affine/labels.txt"), "a\nb\n").unwrap();
        let labelled = fp(None);
        assert_ne!(labelled, first);
        assert_eq!(labelled.version, Ok(1));

        // The configuration changed (same size, later time).
        touch_later(&repo.join("affine/config.pbtxt"), 5);
        let touched = fp(None);
        assert_ne!(touched, labelled);

        // A new version: "latest" moves to it; a handle pinned to 1 sees nothing (policy latest 1
        // now serves only 2, so version 1 is no longer served).
        write_version(&repo, "affine", 2, &affine_model(3.0));
        let v2 = fp(None);
        assert_eq!(v2.version, Ok(2));
        assert!(v2.files.iter().any(|f| f.path.ends_with("2/model.onnx")));
        assert!(!v2.files.iter().any(|f| f.path.ends_with("1/model.onnx")));
        let pinned = fp(Some(1));
        assert!(pinned.version.is_err(), "{:?}", pinned.version);

        // The model file of the served version rewritten.
        fs::write(repo.join("affine/2/model.onnx"), b"garbage").unwrap();
        let rewritten = fp(None);
        assert_ne!(rewritten, v2);

        // An unreadable configuration: the fingerprint carries the error.
        fs::write(repo.join("affine/config.pbtxt"), "max_batch_size: [").unwrap();
        let broken = fp(None);
        assert!(broken.version.is_err());
        assert_ne!(broken, rewritten);

        // The model folder removed.
        fs::remove_dir_all(repo.join("affine")).unwrap();
        let gone = fp(None);
        assert!(gone.version.unwrap_err().contains("affine"));
        assert!(gone.files.is_empty());
        let _ = fs::remove_dir_all(&repo);
    }

    #[cfg(unix)]
    #[test]
    fn fingerprint_sees_a_symlink_pointed_elsewhere() {
        let repo = affine_repo("symlink");
        let a = repo.join("a.onnx");
        let b = repo.join("b.onnx");
        fs::write(&a, affine_model(2.0)).unwrap();
        fs::write(&b, affine_model(5.0)).unwrap();
        touch_later(&b, 10);
        let file = repo.join("affine/1/model.onnx");
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&a, &file).unwrap();
        let before = Fingerprint::of(&repo, "affine", None);
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&b, &file).unwrap();
        assert_ne!(Fingerprint::of(&repo, "affine", None), before);
        let _ = fs::remove_dir_all(&repo);
    }

    #[test]
    fn polling_reloads_new_versions_and_refuses_broken_ones_once() {
        if !ort_available() {
            return;
        }
        let repo = affine_repo("poll");
        let server: &'static ModelServer = Box::leak(Box::new(ModelServer::new()));
        let handle = server.acquire(&repo, "affine", None).unwrap();
        assert_eq!(y0(&handle).unwrap(), 3.0);
        // A long interval: the test drives the checks with poll_now.
        let guard = server.poll(&handle, Duration::from_secs(3600)).unwrap();
        let second = server.poll(&handle, Duration::from_secs(7200)).unwrap();
        server.poll_now();
        assert!(server.events().is_empty(), "{:?}", server.events());

        // Version 2 is picked up.
        write_version(&repo, "affine", 2, &affine_model(3.0));
        server.poll_now();
        assert_eq!(handle.current().version(), 2);
        assert_eq!(y0(&handle).unwrap(), 4.0);
        let events = server.events();
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert!(e.ok && e.cause == ReloadCause::Poll, "{e:?}");
        assert_eq!((e.from_version, e.to_version), (Some(1), Some(2)));

        // A corrupt version 3 is refused once; version 2 keeps serving.
        write_version(&repo, "affine", 3, b"not an onnx model");
        server.poll_now();
        server.poll_now();
        assert_eq!(handle.current().version(), 2);
        assert_eq!(y0(&handle).unwrap(), 4.0);
        let failed: Vec<ReloadEvent> = server.events_after(e.seq);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(!failed[0].ok);
        assert_eq!(failed[0].to_version, Some(2));
        assert!(
            failed[0].message.contains("version 2 keeps serving"),
            "{}",
            failed[0].message
        );
        assert!(failed[0].message.contains('3'), "{}", failed[0].message);

        // Fixed: version 3 is loaded.
        fs::write(repo.join("affine/3/model.onnx"), affine_model(4.0)).unwrap();
        touch_later(&repo.join("affine/3/model.onnx"), 5);
        server.poll_now();
        assert_eq!(handle.current().version(), 3);
        assert_eq!(y0(&handle).unwrap(), 5.0);

        // A changed configuration reloads the same version.
        let before = handle.current();
        fs::write(
            repo.join("affine/config.pbtxt"),
            format!("{CONFIG}parameters {{ key: \"k\" value {{ string_value: \"v\" }} }}\n"),
        )
        .unwrap();
        server.poll_now();
        assert!(!Arc::ptr_eq(&before, &handle.current()));
        assert_eq!(handle.current().version(), 3);
        drop(before);

        // The thread ends when nothing is polled.
        drop((guard, second));
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&server.poll.inner).thread_running {
            assert!(Instant::now() < deadline, "the polling thread did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = fs::remove_dir_all(&repo);
    }

    #[test]
    fn background_thread_picks_up_a_new_version() {
        if !ort_available() {
            return;
        }
        let repo = affine_repo("thread");
        let server: &'static ModelServer = Box::leak(Box::new(ModelServer::new()));
        let handle = server.acquire(&repo, "affine", None).unwrap();
        let _guard = server.poll(&handle, Duration::from_millis(50)).unwrap();
        write_version(&repo, "affine", 2, &affine_model(3.0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.current().version() != 2 {
            assert!(Instant::now() < deadline, "version 2 was not picked up");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(y0(&handle).unwrap(), 4.0);
        let _ = fs::remove_dir_all(&repo);
    }

    #[test]
    fn explicit_unload_and_load() {
        if !ort_available() {
            return;
        }
        let repo = affine_repo("explicit");
        let server = ModelServer::new();
        let handle = server.acquire(&repo, "affine", None).unwrap();
        assert_eq!(y0(&handle).unwrap(), 3.0);

        // A request queued before the unload finishes; new ones are refused.
        let in_flight = handle
            .current()
            .infer_async(InferRequest::new("x", vec![2], vec![1.0, 2.0]), |v| {
                v[0].data[0]
            })
            .unwrap();
        assert_eq!(server.unload(&repo, "affine").unwrap(), 1);
        assert_eq!(in_flight.wait().unwrap(), 3.0);
        let e = y0(&handle).unwrap_err();
        assert!(matches!(e, EngineError::ShuttingDown { .. }), "{e}");
        let e = server.acquire(&repo, "affine", Some(1)).unwrap_err();
        assert!(matches!(e, EngineError::Unloaded { .. }), "{e}");
        assert!(e.to_string().contains("affine"), "{e}");

        // A broken load is refused and the model stays unloaded.
        fs::write(repo.join("affine/config.pbtxt"), "max_batch_size: [").unwrap();
        let e = server.load(&repo, "affine").unwrap_err();
        assert!(e.to_string().contains("config.pbtxt"), "{e}");
        let refusal = server.events().pop().unwrap();
        assert!(!refusal.ok && refusal.to_version.is_none(), "{refusal:?}");
        assert!(
            refusal.message.contains("stays unloaded"),
            "{}",
            refusal.message
        );
        assert!(server.acquire(&repo, "affine", None).is_err());

        // Loaded again: the same handle serves, with the new version.
        fs::write(repo.join("affine/config.pbtxt"), CONFIG).unwrap();
        write_version(&repo, "affine", 2, &affine_model(3.0));
        let loaded = server.load(&repo, "affine").unwrap();
        assert!(Arc::ptr_eq(&loaded, &handle));
        assert_eq!(y0(&handle).unwrap(), 4.0);
        // The model stays loaded without callers.
        drop((loaded, handle));
        assert!(server.runtimes().iter().any(|r| r.name() == "affine"));
        let causes: Vec<(ReloadCause, bool)> =
            server.events().iter().map(|e| (e.cause, e.ok)).collect();
        assert_eq!(
            causes,
            [
                (ReloadCause::Unload, true),
                (ReloadCause::Load, false),
                (ReloadCause::Load, true)
            ]
        );
        // Unloading drops the server's own handle.
        assert_eq!(server.unload(&repo, "affine").unwrap(), 1);
        assert!(server.runtimes().iter().all(|r| r.name() != "affine"));
        let _ = fs::remove_dir_all(&repo);
    }
}
