//! Image sequences and still images for `vigilsrc`: printf-style patterns (`img_%05d.jpg`), as
//! `multifilesrc` reads them, and the pure helpers around them (pattern parsing and expansion, the first
//! index of a sequence, frame timestamps).

use std::collections::BTreeSet;
use std::path::Path;

/// Largest field width accepted in a conversion (`%05d` has width 5).
const MAX_WIDTH: usize = 32;

/// File name extensions of still images: such a file is read like a one-image sequence (at
/// `image-framerate`, looped with `loop=true`).
const STILL_IMAGE_EXTENSIONS: [&str; 11] = [
    "jpg", "jpeg", "jpe", "png", "bmp", "tif", "tiff", "webp", "pnm", "ppm", "pgm",
];

/// A path with exactly one integer conversion (`%d`, `%5d`, `%05d`; `i` and `u` are taken as `d`), as
/// `multifilesrc` expands it with `sprintf`. `%%` is a literal `%`; any other `%` makes the path no pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqPattern {
    /// The text before the conversion (`%%` already made `%`).
    pub prefix: String,
    /// The text after the conversion.
    pub suffix: String,
    /// Minimum width of the number.
    pub width: usize,
    /// Padded with zeros (`%05d`) rather than spaces (`%5d`).
    pub zero_pad: bool,
}

/// Parses one conversion after a `%`: `0`? width? `d|i|u`. Returns (zero_pad, width, bytes consumed).
fn conversion(rest: &[u8]) -> Option<(bool, usize, usize)> {
    let mut i = 0;
    let zero_pad = rest.first() == Some(&b'0');
    if zero_pad {
        i += 1;
    }
    let digits_start = i;
    while rest.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let width = if i > digits_start {
        std::str::from_utf8(&rest[digits_start..i])
            .ok()?
            .parse::<usize>()
            .ok()?
    } else {
        0
    };
    if width > MAX_WIDTH {
        return None;
    }
    match rest.get(i) {
        Some(b'd' | b'i' | b'u') => Some((zero_pad, width, i + 1)),
        _ => None,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl SeqPattern {
    /// The pattern in a file path, or `None` when the path has no conversion, more than one, or a `%`
    /// that is neither a conversion nor `%%`.
    pub fn parse(path: &str) -> Option<Self> {
        Self::scan(path, None)
    }

    /// The pattern in the path part of a URI written with its conversion unescaped
    /// (`/data/frames/%04d.png` of `file:///data/frames/%04d.png`): the last `%` that can start a
    /// conversion does, the others are URI escapes (`%20`).
    pub fn parse_uri_path(path: &str) -> Option<Self> {
        let percents = path.bytes().enumerate().filter(|(_, c)| *c == b'%');
        let candidates: Vec<usize> = percents.map(|(i, _)| i).collect();
        candidates
            .into_iter()
            .rev()
            .find_map(|at| Self::scan(path, Some(at)))
    }

    /// `conversion_at`: in a URI path, where the conversion is (other `%` are escapes).
    fn scan(s: &str, conversion_at: Option<usize>) -> Option<Self> {
        let b = s.as_bytes();
        let mut parts: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut found: Option<(bool, usize)> = None;
        let mut i = 0;
        while i < b.len() {
            let part = usize::from(found.is_some());
            if b[i] != b'%' {
                parts[part].push(b[i]);
                i += 1;
                continue;
            }
            let rest = &b[i + 1..];
            if rest.first() == Some(&b'%') {
                parts[part].push(b'%');
                i += 2;
            } else if conversion_at.is_none_or(|at| at == i) {
                let (zero_pad, width, used) = conversion(rest)?;
                if found.is_some() {
                    return None;
                }
                found = Some((zero_pad, width));
                i += 1 + used;
            } else {
                let h = rest.first().copied().and_then(hex)?;
                let l = rest.get(1).copied().and_then(hex)?;
                parts[part].push(h << 4 | l);
                i += 3;
            }
        }
        let (zero_pad, width) = found?;
        let [prefix, suffix] = parts;
        Some(Self {
            prefix: String::from_utf8(prefix).ok()?,
            suffix: String::from_utf8(suffix).ok()?,
            width,
            zero_pad,
        })
    }

    /// The number as the conversion writes it.
    fn number(&self, index: u32) -> String {
        let w = self.width;
        if self.zero_pad {
            format!("{index:0w$}")
        } else {
            format!("{index:w$}")
        }
    }

    /// The path of image `index`.
    pub fn expand(&self, index: u32) -> String {
        format!("{}{}{}", self.prefix, self.number(index), self.suffix)
    }

    /// The pattern as a `sprintf` format (`multifilesrc`'s `location`; also how messages name it).
    pub fn printf(&self) -> String {
        let conv = match (self.zero_pad, self.width) {
            (_, 0) => "%d".to_string(),
            (true, w) => format!("%0{w}d"),
            (false, w) => format!("%{w}d"),
        };
        format!(
            "{}{conv}{}",
            printf_escape(&self.prefix),
            printf_escape(&self.suffix)
        )
    }

    /// The folder and the file name prefix, when the conversion is in the file name (not in a folder).
    pub fn folder_and_name_prefix(&self) -> Option<(&str, &str)> {
        if self.suffix.contains('/') {
            return None;
        }
        Some(match self.prefix.rfind('/') {
            Some(p) => (&self.prefix[..=p], &self.prefix[p + 1..]),
            None => ("", self.prefix.as_str()),
        })
    }

    /// The index of a file name in the pattern's folder, when the name is one the pattern produces.
    pub fn index_of_name(&self, name: &str) -> Option<u32> {
        let (_, name_prefix) = self.folder_and_name_prefix()?;
        let number = name.strip_prefix(name_prefix)?.strip_suffix(&self.suffix)?;
        let digits = number.trim_start_matches(' ');
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let index: u32 = digits.parse().ok()?;
        // multifilesrc's index is a gint; the name must be exactly what the conversion writes.
        (index <= i32::MAX as u32 && self.number(index) == number).then_some(index)
    }
}

/// `%` doubled, for text put into a `sprintf` format.
pub fn printf_escape(s: &str) -> String {
    s.replace('%', "%%")
}

/// The sequence's indices among the names of its folder.
pub fn indices_in<'a>(p: &SeqPattern, names: impl IntoIterator<Item = &'a str>) -> BTreeSet<u32> {
    names
        .into_iter()
        .filter_map(|n| p.index_of_name(n))
        .collect()
}

/// The first index and the last one before the first gap: what `multifilesrc` plays.
pub fn sequence_run(indices: &BTreeSet<u32>) -> Option<(u32, u32)> {
    let first = *indices.first()?;
    let mut last = first;
    while last < i32::MAX as u32 && indices.contains(&(last + 1)) {
        last += 1;
    }
    Some((first, last))
}

/// The first index of a sequence whose conversion is in a folder name: 0, else 1.
pub fn first_index_by_probing(p: &SeqPattern, exists: impl Fn(&str) -> bool) -> Option<u32> {
    [0, 1].into_iter().find(|&i| exists(&p.expand(i)))
}

/// `%XX` escapes decoded; `None` when one is broken or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1).copied().and_then(hex)?;
            let l = b.get(i + 2).copied().and_then(hex)?;
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The image sequence pattern of a `file://` (or `multifile://`) URI: its path, unescaped, is a pattern
/// (`file:///d/img_%2505d.jpg`, what a path property becomes), or its path is one with the conversion
/// written as is (`file:///d/%04d.png`, as DeepStream configurations write them).
pub fn uri_sequence_pattern(uri: &str) -> Option<SeqPattern> {
    let lower = uri.to_ascii_lowercase();
    let rest = ["file://", "multifile://"]
        .iter()
        .find_map(|s| lower.starts_with(s).then(|| &uri[s.len()..]))?;
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return None;
    }
    percent_decode(path)
        .as_deref()
        .and_then(SeqPattern::parse)
        .or_else(|| SeqPattern::parse_uri_path(path))
}

/// Whether a path names a still image by its extension.
pub fn is_still_image_path(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        STILL_IMAGE_EXTENSIONS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(e))
    })
}

/// Presentation time (ns) of frame `n` at `num/den` frames per second.
pub fn frame_time(n: u64, num: i32, den: i32) -> u64 {
    let (num, den) = (u128::from(num.max(1) as u32), u128::from(den.max(1) as u32));
    let t = u128::from(n) * 1_000_000_000 * den / num;
    u64::try_from(t).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(prefix: &str, width: usize, zero_pad: bool, suffix: &str) -> SeqPattern {
        SeqPattern {
            prefix: prefix.into(),
            suffix: suffix.into(),
            width,
            zero_pad,
        }
    }

    #[test]
    fn parses_printf_patterns() {
        assert_eq!(
            SeqPattern::parse("/data/frames/img_%05d.jpg"),
            Some(pat("/data/frames/img_", 5, true, ".jpg"))
        );
        assert_eq!(
            SeqPattern::parse("f%d.png"),
            Some(pat("f", 0, false, ".png"))
        );
        assert_eq!(
            SeqPattern::parse("/a/%3i_x.png"),
            Some(pat("/a/", 3, false, "_x.png"))
        );
        assert_eq!(SeqPattern::parse("/a/%u"), Some(pat("/a/", 0, false, "")));
        assert_eq!(SeqPattern::parse("/a/%0d"), Some(pat("/a/", 0, true, "")));
        assert_eq!(
            SeqPattern::parse("/a/100%%_%04d.png"),
            Some(pat("/a/100%_", 4, true, ".png"))
        );
        assert_eq!(
            SeqPattern::parse("/a/%03d/img.png"),
            Some(pat("/a/", 3, true, "/img.png"))
        );
    }

    #[test]
    fn rejects_what_is_not_one_integer_conversion() {
        for p in [
            "/data/video.mp4",
            "/data/100%.mp4",
            "/data/%s.png",
            "/data/%d_%d.png",
            "/data/%ld.png",
            "/data/%-5d.png",
            "/data/%99d.png",
            "/data/%%d.png",
            "/data/%2505d.png",
        ] {
            assert_eq!(SeqPattern::parse(p), None, "{p}");
        }
    }

    #[test]
    fn uri_paths_keep_their_conversion_and_unescape_the_rest() {
        assert_eq!(
            SeqPattern::parse_uri_path("/data/frames/%04d.png"),
            Some(pat("/data/frames/", 4, true, ".png"))
        );
        assert_eq!(
            SeqPattern::parse_uri_path("/data/my%20frames/f%2D%05d.png"),
            Some(pat("/data/my frames/f-", 5, true, ".png"))
        );
        assert_eq!(
            SeqPattern::parse_uri_path("/data/caf%C3%A9/%d.jpg"),
            Some(pat("/data/café/", 0, false, ".jpg"))
        );
        // `%20d` could be a conversion: the last one is.
        assert_eq!(
            SeqPattern::parse_uri_path("/my%20dogs/%05d.png"),
            Some(pat("/my dogs/", 5, true, ".png"))
        );
        // Escapes alone are no pattern; a broken escape neither.
        assert_eq!(SeqPattern::parse_uri_path("/data/a%20b.png"), None);
        assert_eq!(SeqPattern::parse_uri_path("/data/%2504d.png"), None);
        assert_eq!(SeqPattern::parse_uri_path("/data/%zz%d.png"), None);
    }

    #[test]
    fn patterns_of_uris() {
        let want = Some(pat("/d/img_", 5, true, ".jpg"));
        assert_eq!(uri_sequence_pattern("file:///d/img_%2505d.jpg"), want);
        assert_eq!(uri_sequence_pattern("file:///d/img_%05d.jpg"), want);
        assert_eq!(
            uri_sequence_pattern("FILE://localhost/d/img_%05d.jpg"),
            want
        );
        assert_eq!(uri_sequence_pattern("multifile:///d/img_%2505d.jpg"), want);
        assert_eq!(
            uri_sequence_pattern("file:///my%20d/%d.png"),
            Some(pat("/my d/", 0, false, ".png"))
        );
        assert_eq!(uri_sequence_pattern("file:///d/bikes.mp4"), None);
        assert_eq!(uri_sequence_pattern("file:///d/a%20b.mp4"), None);
        assert_eq!(uri_sequence_pattern("rtsp://cam/%05d"), None);
        assert_eq!(uri_sequence_pattern("file:relative/%05d.png"), None);
        assert_eq!(percent_decode("a%2Fb%25"), Some("a/b%".into()));
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("a%ff"), None);
    }

    #[test]
    fn expands_like_sprintf() {
        let p = SeqPattern::parse("/d/img_%05d.jpg").unwrap();
        assert_eq!(p.expand(7), "/d/img_00007.jpg");
        assert_eq!(p.expand(123_456), "/d/img_123456.jpg");
        assert_eq!(SeqPattern::parse("%d.png").unwrap().expand(42), "42.png");
        assert_eq!(SeqPattern::parse("%4d.png").unwrap().expand(42), "  42.png");
        let p = SeqPattern::parse("/d/50%%/%03d.png").unwrap();
        assert_eq!(p.expand(1), "/d/50%/001.png");
        assert_eq!(p.printf(), "/d/50%%/%03d.png");
        assert_eq!(
            SeqPattern::parse("/d/%i.png").unwrap().printf(),
            "/d/%d.png"
        );
    }

    #[test]
    fn finds_indices_in_a_folder() {
        let p = SeqPattern::parse("/d/img_%03d.png").unwrap();
        assert_eq!(p.folder_and_name_prefix(), Some(("/d/", "img_")));
        assert_eq!(p.index_of_name("img_007.png"), Some(7));
        assert_eq!(p.index_of_name("img_1234.png"), Some(1234));
        assert_eq!(p.index_of_name("img_07.png"), None);
        assert_eq!(p.index_of_name("img_0007.png"), None);
        assert_eq!(p.index_of_name("img_007.jpg"), None);
        assert_eq!(p.index_of_name("img_abc.png"), None);
        assert_eq!(p.index_of_name("xmg_007.png"), None);
        let names = [
            "img_001.png",
            "img_002.png",
            "img_003.png",
            "img_005.png",
            "notes.txt",
        ];
        let idx = indices_in(&p, names);
        assert_eq!(idx.iter().copied().collect::<Vec<_>>(), [1, 2, 3, 5]);
        assert_eq!(sequence_run(&idx), Some((1, 3)));
        assert_eq!(sequence_run(&BTreeSet::new()), None);
        assert_eq!(sequence_run(&BTreeSet::from([0])), Some((0, 0)));

        let p = SeqPattern::parse("%d.png").unwrap();
        assert_eq!(p.folder_and_name_prefix(), Some(("", "")));
        assert_eq!(p.index_of_name("12.png"), Some(12));
        assert_eq!(p.index_of_name("012.png"), None);
        assert_eq!(p.index_of_name("99999999999.png"), None);
    }

    #[test]
    fn a_conversion_in_a_folder_name_is_probed_from_0_or_1() {
        let p = SeqPattern::parse("/d/%02d/img.png").unwrap();
        assert_eq!(p.folder_and_name_prefix(), None);
        assert_eq!(
            first_index_by_probing(&p, |f| f == "/d/00/img.png"),
            Some(0)
        );
        assert_eq!(
            first_index_by_probing(&p, |f| f == "/d/01/img.png"),
            Some(1)
        );
        assert_eq!(first_index_by_probing(&p, |_| false), None);
    }

    #[test]
    fn still_images_by_extension() {
        assert!(is_still_image_path(Path::new("/m/bus.jpg")));
        assert!(is_still_image_path(Path::new("/m/BOX.PNG")));
        assert!(!is_still_image_path(Path::new("/m/bikes.mp4")));
        assert!(!is_still_image_path(Path::new("/m/anim.gif")));
        assert!(!is_still_image_path(Path::new("/m/noext")));
    }

    #[test]
    fn frame_times_at_a_framerate() {
        assert_eq!(frame_time(0, 25, 1), 0);
        assert_eq!(frame_time(1, 25, 1), 40_000_000);
        assert_eq!(frame_time(3, 30000, 1001), 100_100_000);
        assert_eq!(frame_time(2, 1, 2), 4_000_000_000);
    }
}
