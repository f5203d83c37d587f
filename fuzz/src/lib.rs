//! What the fuzz targets share: a fixed sandbox folder that mirrors the repository's layout
//! (`configs/`, `models/`, `samples/media/`, `out/`), the checks that keep a fuzzed config's file
//! accesses inside it, and a network namespace of the target's own.
//!
//! The targets that validate pipeline configs touch the file system (media files must exist, the
//! model repository is loaded, output folders are created). Everything they read is a fixture
//! written here; everything they may write lies under `out/`, emptied after each input. An input
//! whose paths point elsewhere is parsed but not validated.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vigil::config::{Config, SourceConfig, file_uri_to_path, normalize, uri_scheme};

/// The repository this crate lives in (`fuzz/..`).
pub fn repo_root() -> PathBuf {
    normalize(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// Moves this thread (the one libFuzzer runs inputs on) into a new network namespace, which has
/// only a loopback interface that is down: nothing a target does can reach any network. Exits
/// when the kernel refuses (it needs root or `CAP_SYS_ADMIN`).
pub fn isolate_network() {
    // SAFETY: unshare(2) only takes flags; CLONE_NEWNET touches no memory of this process.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        eprintln!(
            "vigil-fuzz: unshare(CLONE_NEWNET) failed ({}); this target validates configs and \
             must run without network access: run it as root (or under `unshare -rn`)",
            std::io::Error::last_os_error()
        );
        std::process::exit(2);
    }
}

/// The sandbox folder of one target, made once per process.
#[derive(Debug)]
pub struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    /// `<temp>/vigil-fuzz-<name>`, emptied and filled with the fixtures.
    pub fn create(name: &str) -> Sandbox {
        let root = std::env::temp_dir().join(format!("vigil-fuzz-{name}"));
        let _ = std::fs::remove_dir_all(&root);
        let sandbox = Sandbox { root };
        sandbox.write_fixtures().unwrap_or_else(|e| {
            panic!(
                "vigil-fuzz: cannot set up the sandbox {}: {e}",
                sandbox.root.display()
            )
        });
        sandbox
    }

    /// The sandbox's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Whether `p` (absolute, or relative to `base`) lies inside the sandbox (lexically: the
    /// sandbox has no symbolic links).
    pub fn contains(&self, base: &Path, p: &Path) -> bool {
        normalize(&base.join(p)).starts_with(&self.root)
    }

    /// Whether `p` (as [`Sandbox::contains`]) lies inside `out/`, the only place written to.
    pub fn writable(&self, base: &Path, p: &Path) -> bool {
        let out = self.path("out");
        let full = normalize(&base.join(p));
        full.starts_with(&out) && full != out
    }

    /// Removes what an input created under `out/`.
    pub fn clean_out(&self) {
        let out = self.path("out");
        let used = std::fs::read_dir(&out).map_or(true, |mut d| d.next().is_some());
        if used {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).expect("vigil-fuzz: cannot recreate out/");
        }
    }

    /// Whether validating `source` (relative paths against `base`) reads only sandbox files.
    pub fn source_confined(&self, base: &Path, source: &SourceConfig) -> bool {
        if let Some(images) = &source.images {
            return self.contains(base, Path::new(images.path.trim()));
        }
        let uri = source.uri.trim();
        match uri_scheme(uri) {
            Some(scheme) if scheme.eq_ignore_ascii_case("file") => {
                file_uri_to_path(uri).is_none_or(|p| self.contains(base, &p))
            }
            // Other schemes are only checked as text.
            Some(_) => true,
            None => self.contains(base, Path::new(uri)),
        }
    }

    /// Whether validating `config`, read from `file` in the sandbox, reads only sandbox files,
    /// writes only under `out/`, and resolves no host name.
    pub fn config_confined(&self, file: &Path, config: &Config) -> bool {
        let base = file.parent().unwrap_or(&self.root).to_path_buf();
        let inside = |p: &Path| self.contains(&base, p);
        let writable = |p: &Path| self.writable(&base, p);
        let outputs = &config.outputs;
        let tls_ok = outputs
            .mqtt
            .as_ref()
            .and_then(|m| m.tls.as_ref())
            .is_none_or(|t| {
                [&t.ca, &t.cert, &t.key]
                    .into_iter()
                    .flatten()
                    .all(|p| inside(p))
            });
        // The rules file must be a fixture: the fuzzed file itself could name lookups anywhere.
        let inspection_ok = config.inspection.as_ref().is_none_or(|i| {
            inside(&i.rules)
                && normalize(&base.join(&i.rules)) != normalize(file)
                && i.snapshots.as_deref().is_none_or(writable)
        });
        inside(&config.model_repository)
            && config
                .sources
                .iter()
                .all(|s| self.source_confined(&base, s))
            && inspection_ok
            && outputs
                .file
                .as_ref()
                .is_none_or(|f| writable(&f.path))
            && outputs
                .events
                .as_ref()
                .is_none_or(|e| e.path.trim() == "-" || writable(Path::new(&e.path)))
            && tls_ok
            // An IP address is parsed; a host name would be looked up.
            && config
                .api
                .as_ref()
                .is_none_or(|a| a.address.parse::<std::net::IpAddr>().is_ok())
    }

    fn write_fixtures(&self) -> std::io::Result<()> {
        let repo = repo_root();
        for dir in [
            "configs/inspection",
            "out",
            "samples/media/inspection/items",
        ] {
            std::fs::create_dir_all(self.path(dir))?;
        }
        std::fs::copy(
            repo.join("configs/inspection/rules.yaml"),
            self.path("configs/inspection/rules.yaml"),
        )?;
        std::fs::write(
            self.path("samples/media/inspection/lots.csv"),
            "product,lot\nRICE SNACKS 120G,AB1234\nGREEN TEA 20X2G,CD5678\n",
        )?;
        // Media files are only checked to exist and open.
        for media in ["vtest.avi", "bikes.mp4", "bus.jpg", "zidane.jpg"] {
            std::fs::write(self.path(&format!("samples/media/{media}")), b"not decoded")?;
        }
        for (i, (w, h)) in [(64u32, 48u32), (40, 30)].into_iter().enumerate() {
            image::RgbImage::from_pixel(w, h, image::Rgb([200, 180, 160]))
                .save(self.path(&format!(
                    "samples/media/inspection/items/item-{:04}.png",
                    i + 1
                )))
                .map_err(std::io::Error::other)?;
        }
        self.write_models(&repo.join("models"))
    }

    /// Each model entry of the repository with its `config.pbtxt` and `labels.txt`, and a
    /// `1/model.onnx` that declares the installed model's inputs and outputs but has no nodes.
    fn write_models(&self, models: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(models)? {
            let dir = entry?.path();
            let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !dir.is_dir() {
                continue;
            }
            let target = self.path(&format!("models/{name}"));
            std::fs::create_dir_all(target.join("1"))?;
            for file in ["config.pbtxt", "labels.txt"] {
                if dir.join(file).is_file() {
                    std::fs::copy(dir.join(file), target.join(file))?;
                }
            }
            let io = vigil_modelrepo::onnx::read_onnx_io(&dir.join("1/model.onnx"))
                .unwrap_or_default();
            std::fs::write(target.join("1/model.onnx"), onnx_bytes(&io))?;
        }
        Ok(())
    }
}

/// The sandbox of this process, made (and the network namespace entered, with `isolate`) on
/// first use.
pub fn sandbox(name: &str, isolate: bool) -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        if isolate {
            isolate_network();
        }
        Sandbox::create(name)
    })
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

/// `onnx.ValueInfoProto` of one tensor (`-1` dims as the symbol `N`).
fn value_info(t: &vigil_modelrepo::OnnxTensor) -> Vec<u8> {
    let mut shape = Vec::new();
    for &d in t.dims.iter().flatten() {
        let mut dim = Vec::new();
        if d >= 0 {
            field_varint(&mut dim, 1, d as u64);
        } else {
            field_bytes(&mut dim, 2, b"N");
        }
        field_bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    field_varint(&mut tensor, 1, t.elem_type as u64);
    if t.dims.is_some() {
        field_bytes(&mut tensor, 2, &shape);
    }
    let mut ty = Vec::new();
    field_bytes(&mut ty, 1, &tensor);
    let mut info = Vec::new();
    field_bytes(&mut info, 1, t.name.as_bytes());
    field_bytes(&mut info, 2, &ty);
    info
}

/// A serialized `onnx.ModelProto` (IR version 8) whose graph has `io`'s inputs and outputs and
/// no nodes: what the model checks read, a few hundred bytes instead of megabytes.
pub fn onnx_bytes(io: &vigil_modelrepo::OnnxIo) -> Vec<u8> {
    let mut graph = Vec::new();
    field_bytes(&mut graph, 2, b"fuzz");
    for t in &io.inputs {
        field_bytes(&mut graph, 11, &value_info(t));
    }
    for t in &io.outputs {
        field_bytes(&mut graph, 12, &value_info(t));
    }
    let mut model = Vec::new();
    field_varint(&mut model, 1, 8);
    field_bytes(&mut model, 7, &graph);
    model
}
