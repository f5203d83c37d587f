//! Image items (industrial inspection: one image file = one item), without GStreamer: where the files
//! are ([`Location`]: a folder, a glob such as `dir/*.jpg`, or one file), listing and sorting them,
//! the stable-size [`Watcher`] that picks up files written into a watched folder, and [`load`], which
//! decodes and validates one file into an RGB image or the reason it cannot be analysed.
//!
//! `vigilimagesrc` (`elements/src/imagesrc/`) is the GStreamer glue around this module.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// File name extensions a folder location lists (case-insensitive). Files with other extensions in
/// the folder are ignored; a glob lists whatever it matches.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "jpe", "bmp", "gif", "tif", "tiff", "webp", "pnm", "ppm", "pgm",
];

/// Errors finding the items (the location itself, never a single bad image).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ItemsError {
    #[error("location must not be empty")]
    Empty,
    #[error("no such folder {0}")]
    NoFolder(String),
    #[error("no such file {0}")]
    NoFile(String),
    #[error("cannot read folder {0}: {1}")]
    ReadDir(String, String),
    #[error("wildcards are only allowed in the file name, not in the folder: {0}")]
    GlobInFolder(String),
}

/// Order of the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// By file name (byte order; `item-0002.png` before `item-0010.png` when zero-padded).
    #[default]
    Name,
    /// By modification time, then by name.
    Mtime,
}

/// Where the image files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Every file with an image extension ([`IMAGE_EXTENSIONS`]) directly in the folder (not
    /// recursive; hidden files, whose names start with `.`, are skipped).
    Folder(PathBuf),
    /// The files of `dir` whose names match `pattern` (`*` any run of characters, `?` one
    /// character; hidden files only when the pattern starts with `.`).
    Glob { dir: PathBuf, pattern: String },
    /// One file.
    File(PathBuf),
}

impl Location {
    /// Interprets `text`: a name with `*` or `?` is a glob (wildcards in the last component only), an
    /// existing folder is a folder, anything else a file. Errors when the folder (of a glob, of a
    /// file, or the folder itself) or the file does not exist.
    pub fn parse(text: &str) -> Result<Location, ItemsError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ItemsError::Empty);
        }
        let path = Path::new(text);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let wild = |s: &str| s.contains(['*', '?']);
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if wild(&dir.to_string_lossy()) {
            return Err(ItemsError::GlobInFolder(text.to_string()));
        }
        if wild(&name) {
            if !dir.is_dir() {
                return Err(ItemsError::NoFolder(dir.display().to_string()));
            }
            return Ok(Location::Glob { dir, pattern: name });
        }
        if path.is_dir() {
            return Ok(Location::Folder(path.to_path_buf()));
        }
        if path.is_file() {
            return Ok(Location::File(path.to_path_buf()));
        }
        if text.ends_with('/') || !dir.is_dir() {
            let missing = if text.ends_with('/') { path } else { &dir };
            return Err(ItemsError::NoFolder(missing.display().to_string()));
        }
        Err(ItemsError::NoFile(path.display().to_string()))
    }

    /// The folder polled when watching.
    pub fn dir(&self) -> &Path {
        match self {
            Location::Folder(d) | Location::Glob { dir: d, .. } => d,
            Location::File(f) => f.parent().unwrap_or(Path::new(".")),
        }
    }

    /// Whether a file named `name` in [`Location::dir`] is one of the items.
    pub fn accepts(&self, name: &str) -> bool {
        match self {
            Location::Folder(_) => {
                !name.starts_with('.')
                    && Path::new(name).extension().is_some_and(|e| {
                        let e = e.to_string_lossy().to_ascii_lowercase();
                        IMAGE_EXTENSIONS.contains(&e.as_str())
                    })
            }
            Location::Glob { pattern, .. } => {
                (pattern.starts_with('.') || !name.starts_with('.')) && glob_match(pattern, name)
            }
            Location::File(f) => f.file_name().is_some_and(|n| n.to_string_lossy() == name),
        }
    }

    /// The items now present, in `order`. Unreadable folder → error; entries that vanish while
    /// listing are skipped.
    pub fn list(&self, order: SortOrder) -> Result<Vec<FileEntry>, ItemsError> {
        if let Location::File(f) = self {
            let meta =
                std::fs::metadata(f).map_err(|_| ItemsError::NoFile(f.display().to_string()))?;
            return Ok(vec![FileEntry::new(f.clone(), &meta)]);
        }
        let dir = self.dir();
        let rd = std::fs::read_dir(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ItemsError::NoFolder(dir.display().to_string())
            } else {
                ItemsError::ReadDir(dir.display().to_string(), e.to_string())
            }
        })?;
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !self.accepts(&name) {
                continue;
            }
            // Follows symbolic links; folders are not items.
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                continue;
            }
            out.push(FileEntry::new(entry.path(), &meta));
        }
        sort_entries(&mut out, order);
        Ok(out)
    }
}

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: PathBuf,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

impl FileEntry {
    fn new(path: PathBuf, meta: &std::fs::Metadata) -> Self {
        Self {
            path,
            size: meta.len(),
            mtime: meta.modified().ok(),
        }
    }
}

/// Sorts `entries` by name or by modification time (ties by name).
pub fn sort_entries(entries: &mut [FileEntry], order: SortOrder) {
    match order {
        SortOrder::Name => entries.sort_by(|a, b| a.path.cmp(&b.path)),
        SortOrder::Mtime => entries.sort_by(|a, b| a.mtime.cmp(&b.mtime).then(a.path.cmp(&b.path))),
    }
}

/// `*` (any run of characters, also empty) and `?` (one character) against a whole file name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Last `*` seen: its pattern index and the name index it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The item id of a file: its name without the extension (`items/item-0007.jpg` → `item-0007`).
pub fn item_id(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string())
}

/// Picks up files written into a watched folder: a file is ready when two polls in a row saw it with
/// the same size (so a file still being written is not read half-way), and each path is handed out
/// at most once.
#[derive(Debug, Default)]
pub struct Watcher {
    seen: HashSet<PathBuf>,
    /// Files not yet ready: their size at the last poll.
    pending: HashMap<PathBuf, u64>,
}

impl Watcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `path` as handed out already (the files listed at start).
    pub fn mark_seen(&mut self, path: &Path) {
        self.pending.remove(path);
        self.seen.insert(path.to_path_buf());
    }

    /// Feeds one poll's listing; returns the files that became ready, in the listing's order.
    pub fn poll(&mut self, listing: &[FileEntry]) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        let mut still = HashMap::new();
        for e in listing {
            if self.seen.contains(&e.path) {
                continue;
            }
            match self.pending.get(&e.path) {
                Some(&size) if size == e.size => {
                    self.seen.insert(e.path.clone());
                    ready.push(e.path.clone());
                }
                _ => {
                    still.insert(e.path.clone(), e.size);
                }
            }
        }
        // Files that disappeared are forgotten.
        self.pending = still;
        ready
    }

    /// Number of files waiting for a stable size.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Limits applied by [`load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Images whose width or height is below this are error items.
    pub min_size: u32,
    /// Images whose width or height is above this are error items (checked before decoding, so a
    /// huge image is never allocated).
    pub max_size: u32,
}

impl Default for SizeLimits {
    fn default() -> Self {
        Self {
            min_size: 16,
            max_size: 8192,
        }
    }
}

/// One decoded item: packed RGB, 3 bytes per pixel, rows of `width * 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// A uniform grey frame (the placeholder of error items).
    pub fn grey(width: u32, height: u32, level: u8) -> Self {
        Self {
            width,
            height,
            data: vec![level; (width * height * 3) as usize],
        }
    }
}

/// Size and grey level of the frame that stands for an item that could not be read.
pub const PLACEHOLDER_SIZE: u32 = 64;
pub const PLACEHOLDER_LEVEL: u8 = 128;

/// What [`load`] made of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Image(RgbFrame),
    /// The reason in words, naming the file (e.g. `truncated image: item-0007.jpg: …`).
    Bad(String),
}

/// Reads, decodes (PNG, JPEG) and validates one file.
pub fn load(path: &Path, limits: SizeLimits) -> Loaded {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string());
    match std::fs::read(path) {
        Ok(bytes) => decode(&name, &bytes, limits),
        Err(e) => Loaded::Bad(format!("unreadable file: {name}: {e}")),
    }
}

/// Decodes and validates the bytes of the file `name` (see [`load`]).
pub fn decode(name: &str, bytes: &[u8], limits: SizeLimits) -> Loaded {
    use image::ImageFormat;
    if bytes.is_empty() {
        return Loaded::Bad(format!("empty file: {name}: 0 bytes"));
    }
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Ok(f) => {
            return Loaded::Bad(format!(
                "unsupported format: {name}: {} (only PNG and JPEG are decoded)",
                f.extensions_str().first().copied().unwrap_or("?")
            ));
        }
        Err(_) => {
            return Loaded::Bad(format!(
                "unsupported format: {name}: not a PNG or JPEG image"
            ));
        }
    };
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (w, h) = match reader.into_dimensions() {
        Ok(d) => d,
        Err(e) => return Loaded::Bad(describe(name, &e)),
    };
    if w < limits.min_size || h < limits.min_size {
        return Loaded::Bad(format!(
            "image too small: {name}: {w}x{h} is below min-size {}",
            limits.min_size
        ));
    }
    if w > limits.max_size || h > limits.max_size {
        return Loaded::Bad(format!(
            "image too large: {name}: {w}x{h} is above max-size {}",
            limits.max_size
        ));
    }
    // A JPEG must end with its end-of-image marker (decoders fill a cut-off image with grey).
    if format == ImageFormat::Jpeg && !jpeg_complete(bytes) {
        return Loaded::Bad(format!(
            "truncated image: {name}: the JPEG data ends before its end-of-image marker"
        ));
    }
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    match reader.decode() {
        Ok(img) => {
            let rgb = img.into_rgb8();
            Loaded::Image(RgbFrame {
                width: rgb.width(),
                height: rgb.height(),
                data: rgb.into_raw(),
            })
        }
        Err(e) => Loaded::Bad(describe(name, &e)),
    }
}

/// The size of the first image among `entries` that [`load`] would accept (header only, not decoded),
/// e.g. to choose an output size before the stream starts.
pub fn first_size(entries: &[FileEntry], limits: SizeLimits) -> Option<(u32, u32)> {
    entries.iter().find_map(|e| {
        let (w, h) = image::ImageReader::open(&e.path)
            .ok()?
            .with_guessed_format()
            .ok()?
            .into_dimensions()
            .ok()?;
        let ok = |v: u32| (limits.min_size..=limits.max_size).contains(&v);
        (ok(w) && ok(h)).then_some((w, h))
    })
}

/// Whether JPEG data ends with the end-of-image marker (`FF D9`), allowing trailing padding bytes.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b'\n' && b != b'\r' && b != b' ')
        .map_or(0, |i| i + 1);
    end >= 2 && bytes[end - 2] == 0xFF && bytes[end - 1] == 0xD9
}

fn describe(name: &str, e: &image::ImageError) -> String {
    use image::ImageError;
    let text = e.to_string();
    let truncated = matches!(e, ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof)
        || text.contains("EOF")
        || text.contains("eof")
        || text.contains("end of")
        || text.contains("fill whole buffer")
        || text.contains("No more bytes")
        || text.contains("Not enough bytes");
    match e {
        _ if truncated => format!("truncated image: {name}: {text}"),
        ImageError::Unsupported(_) => format!("unsupported format: {name}: {text}"),
        ImageError::Limits(_) => format!("image too large: {name}: {text}"),
        _ => format!("corrupt image: {name}: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 200]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-items-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("*.jpg", "a.jpg"));
        assert!(glob_match("*.jpg", ".jpg"));
        assert!(!glob_match("*.jpg", "a.jpeg"));
        assert!(glob_match("item-??.png", "item-07.png"));
        assert!(!glob_match("item-??.png", "item-7.png"));
        assert!(glob_match("*-*.png", "a-b-c.png"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(glob_match("a*b*", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact2"));
    }

    #[test]
    fn locations_and_listing() {
        let d = tempdir("list");
        for n in [
            "b.png",
            "a.jpg",
            "c.JPEG",
            "notes.txt",
            ".hidden.png",
            "z.jpg",
        ] {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        std::fs::create_dir(d.join("sub.png")).unwrap();
        let folder = Location::parse(d.to_str().unwrap()).unwrap();
        assert_eq!(folder, Location::Folder(d.clone()));
        let names = |l: &Location, o| -> Vec<String> {
            l.list(o)
                .unwrap()
                .iter()
                .map(|e| e.path.file_name().unwrap().to_string_lossy().to_string())
                .collect()
        };
        assert_eq!(
            names(&folder, SortOrder::Name),
            ["a.jpg", "b.png", "c.JPEG", "z.jpg"]
        );
        let glob = Location::parse(&format!("{}/*.jpg", d.display())).unwrap();
        assert!(matches!(glob, Location::Glob { .. }));
        assert_eq!(names(&glob, SortOrder::Name), ["a.jpg", "z.jpg"]);
        let file = Location::parse(d.join("notes.txt").to_str().unwrap()).unwrap();
        assert_eq!(names(&file, SortOrder::Name), ["notes.txt"]);

        // mtime order: set distinct modification times.
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for (i, n) in ["z.jpg", "b.png", "a.jpg", "c.JPEG"].iter().enumerate() {
            let f = std::fs::File::options()
                .write(true)
                .open(d.join(n))
                .unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i as u64))
                .unwrap();
        }
        assert_eq!(
            names(&folder, SortOrder::Mtime),
            ["z.jpg", "b.png", "a.jpg", "c.JPEG"]
        );

        // Errors name what is missing.
        let missing = d.join("nope");
        assert_eq!(
            Location::parse(missing.to_str().unwrap()),
            Err(ItemsError::NoFile(missing.display().to_string()))
        );
        assert_eq!(
            Location::parse(&format!("{}/", missing.display())),
            Err(ItemsError::NoFolder(format!("{}/", missing.display())))
        );
        assert_eq!(
            Location::parse(&format!("{}/*.png", missing.display())),
            Err(ItemsError::NoFolder(missing.display().to_string()))
        );
        assert_eq!(
            Location::parse(&format!("{}/x/y.png", missing.display())),
            Err(ItemsError::NoFolder(
                missing.join("x").display().to_string()
            ))
        );
        assert!(matches!(
            Location::parse("/tmp/*/a.png"),
            Err(ItemsError::GlobInFolder(_))
        ));
        assert_eq!(Location::parse("  "), Err(ItemsError::Empty));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn watcher_waits_for_a_stable_size_and_hands_out_once() {
        let e = |p: &str, size| FileEntry {
            path: PathBuf::from(p),
            size,
            mtime: None,
        };
        let mut w = Watcher::new();
        w.mark_seen(Path::new("old.png"));
        assert!(w.poll(&[e("old.png", 10), e("new.png", 100)]).is_empty());
        assert_eq!(w.pending(), 1);
        // Grew since the last poll: not yet.
        assert!(w.poll(&[e("old.png", 10), e("new.png", 200)]).is_empty());
        assert_eq!(
            w.poll(&[e("old.png", 10), e("new.png", 200)]),
            [PathBuf::from("new.png")]
        );
        // Never twice, even if it changes later.
        assert!(w.poll(&[e("new.png", 200)]).is_empty());
        assert!(w.poll(&[e("new.png", 300)]).is_empty());
        assert!(w.poll(&[e("new.png", 300)]).is_empty());
        // A file that disappears before it is stable is forgotten.
        assert!(w.poll(&[e("tmp.png", 5)]).is_empty());
        assert!(w.poll(&[]).is_empty());
        assert_eq!(w.pending(), 0);
        assert!(w.poll(&[e("tmp.png", 5)]).is_empty());
        assert_eq!(w.poll(&[e("tmp.png", 5)]), [PathBuf::from("tmp.png")]);
    }

    #[test]
    fn decoding_and_validation() {
        let l = SizeLimits::default();
        match decode("a.png", &png(40, 30), l) {
            Loaded::Image(f) => {
                assert_eq!((f.width, f.height, f.data.len()), (40, 30, 40 * 30 * 3));
                assert_eq!(&f.data[3 * 41..3 * 41 + 3], &[1, 1, 7]);
            }
            Loaded::Bad(m) => panic!("{m}"),
        }
        assert!(
            matches!(decode("a.jpg", &jpeg(33, 17), l), Loaded::Image(f) if (f.width, f.height) == (33, 17))
        );

        let bad = |name: &str, bytes: &[u8], l: SizeLimits| match decode(name, bytes, l) {
            Loaded::Bad(m) => m,
            Loaded::Image(f) => panic!("{name} decoded as {}x{}", f.width, f.height),
        };
        assert_eq!(bad("e.png", b"", l), "empty file: e.png: 0 bytes");
        assert_eq!(
            bad("t.png", b"hello, I am text\n", l),
            "unsupported format: t.png: not a PNG or JPEG image"
        );
        assert_eq!(
            bad("one.png", &png(1, 1), l),
            "image too small: one.png: 1x1 is below min-size 16"
        );
        let small = SizeLimits {
            min_size: 1,
            max_size: 32,
        };
        assert_eq!(
            bad("big.png", &png(40, 30), small),
            "image too large: big.png: 40x30 is above max-size 32"
        );
        let j = jpeg(64, 48);
        let m = bad("cut.jpg", &j[..j.len() / 2], l);
        assert!(m.starts_with("truncated image: cut.jpg: "), "{m}");
        let p = png(64, 48);
        let m = bad("cut.png", &p[..p.len() / 2], l);
        assert!(m.starts_with("truncated image: cut.png: "), "{m}");
        // A header that promises more than it holds.
        let m = bad("hdr.png", &p[..40], l);
        assert!(
            m.starts_with("truncated image: hdr.png: ")
                || m.starts_with("corrupt image: hdr.png: "),
            "{m}"
        );
        // Corrupt data after a valid header.
        let mut c = p.clone();
        for b in c.iter_mut().skip(60).take(40) {
            *b ^= 0x5A;
        }
        let m = bad("corrupt.png", &c, l);
        assert!(m.contains("corrupt.png: "), "{m}");
        // GIF magic: a known format that is not decoded.
        assert!(
            bad("x.gif", b"GIF89a\x01\x00\x01\x00", l)
                .starts_with("unsupported format: x.gif: gif")
        );
    }

    #[test]
    fn load_reads_files() {
        let d = tempdir("load");
        std::fs::write(d.join("ok.png"), png(20, 20)).unwrap();
        assert!(matches!(
            load(&d.join("ok.png"), SizeLimits::default()),
            Loaded::Image(_)
        ));
        let m = match load(&d.join("gone.png"), SizeLimits::default()) {
            Loaded::Bad(m) => m,
            _ => panic!(),
        };
        assert!(m.starts_with("unreadable file: gone.png: "), "{m}");
        std::fs::write(d.join("a-tiny.png"), png(2, 2)).unwrap();
        std::fs::write(d.join("b.png"), png(30, 20)).unwrap();
        let entries = Location::Folder(d.clone()).list(SortOrder::Name).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(first_size(&entries, SizeLimits::default()), Some((30, 20)));
        assert_eq!(item_id(Path::new("/x/item-0007.jpg")), "item-0007");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
