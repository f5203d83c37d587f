//! MOTChallenge text files: one box per line, `frame,id,x,y,w,h,conf,...`.
//!
//! * `frame` is 1-based; `id` is the object (ground truth) or track (tracker output) id, `-1` in
//!   detection files; `x,y` is the top-left corner and `w,h` the size in pixels.
//! * Column 7 is the detection/track confidence in tracker output and detection files (`-1` when
//!   unknown). In ground truth it is the *consider* flag: `0` marks a box to ignore, `1` one to
//!   evaluate. MOT15 (2D) files carry three more columns (world coordinates, `-1` in 2D), MOT16/17/20
//!   ground truth carries `class,visibility`; those columns are kept in [`MotRecord::extra`].
//! * Fields are separated by commas (spaces around them are allowed); lines without a comma are
//!   split at whitespace, as py-motmetrics' loader does. `\r\n` line ends, blank lines and lines
//!   starting with `#` are accepted.
//!
//! Reading never panics: a malformed line is a [`MotError::Parse`] that names the file and line.
//! py-motmetrics subtracts 1 from `x,y` when loading (MATLAB convention); that shift cancels out in
//! every metric, so coordinates are kept as written here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use thiserror::Error;

use vigil_core::objects::BBox;

/// Errors of reading and writing MOTChallenge files.
#[derive(Debug, Error)]
pub enum MotError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

/// An axis-aligned box: top-left corner and size, in pixels (double precision, as the metrics are
/// computed).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub const fn new(x: f64, y: f64, w: f64, h: f64) -> Self {
        Self { x, y, w, h }
    }

    pub fn area(&self) -> f64 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    pub fn is_finite(&self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.w.is_finite() && self.h.is_finite()
    }

    /// Intersection over union; 0 when the boxes do not intersect, are empty or not finite.
    ///
    /// Sizes are taken as `(x + w) - x` like the intersection's, so that identical boxes have an IoU
    /// of exactly 1 (as in py-motmetrics).
    pub fn iou(&self, other: &Rect) -> f64 {
        if !self.is_finite() || !other.is_finite() {
            return 0.0;
        }
        let (ax2, ay2) = (self.x + self.w, self.y + self.h);
        let (bx2, by2) = (other.x + other.w, other.y + other.h);
        let ix = (ax2.min(bx2) - self.x.max(other.x)).max(0.0);
        let iy = (ay2.min(by2) - self.y.max(other.y)).max(0.0);
        let inter = ix * iy;
        if inter <= 0.0 {
            return 0.0;
        }
        let a = (ax2 - self.x).max(0.0) * (ay2 - self.y).max(0.0);
        let b = (bx2 - other.x).max(0.0) * (by2 - other.y).max(0.0);
        let union = a + b - inter;
        if union <= 0.0 {
            0.0
        } else {
            (inter / union).min(1.0)
        }
    }

    pub fn to_bbox(&self) -> BBox {
        BBox::new(self.x as f32, self.y as f32, self.w as f32, self.h as f32)
    }

    pub fn from_bbox(b: &BBox) -> Self {
        Self::new(b.x as f64, b.y as f64, b.w as f64, b.h as f64)
    }
}

/// One line of a MOTChallenge file.
#[derive(Debug, Clone, PartialEq)]
pub struct MotRecord {
    /// 1-based frame number.
    pub frame: u32,
    /// Object or track id (`-1` in detection files).
    pub id: i64,
    pub rect: Rect,
    /// Column 7: confidence (tracker output, detections) or the consider flag (ground truth).
    pub conf: f64,
    /// Columns 8 and later, as written (MOT15: world x,y,z; MOT16+ ground truth: class, visibility).
    pub extra: Vec<f64>,
}

impl MotRecord {
    pub fn new(frame: u32, id: i64, rect: Rect, conf: f64) -> Self {
        Self {
            frame,
            id,
            rect,
            conf,
            extra: Vec::new(),
        }
    }

    /// For ground truth: whether the box is evaluated (the consider flag in column 7 is not 0).
    pub fn is_considered(&self) -> bool {
        self.conf != 0.0
    }
}

/// Parses the text of a MOTChallenge file; `name` is used in error messages.
pub fn parse_mot(text: &str, name: &str) -> Result<Vec<MotRecord>, MotError> {
    let mut out = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| MotError::Parse {
            path: name.to_string(),
            line: i + 1,
            message,
        };
        let mut fields: Vec<&str> = if line.contains(',') {
            line.split(',').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        // A trailing separator ("...,-1,") leaves one empty field.
        if fields.len() > 1 && fields.last() == Some(&"") {
            fields.pop();
        }
        if fields.len() < 6 {
            return Err(err(format!(
                "expected at least 6 fields (frame,id,x,y,w,h), found {}",
                fields.len()
            )));
        }
        let mut values = Vec::with_capacity(fields.len());
        for (col, f) in fields.iter().enumerate() {
            let v: f64 = f
                .parse()
                .map_err(|_| err(format!("column {}: {f:?} is not a number", col + 1)))?;
            if !v.is_finite() {
                return Err(err(format!("column {}: {f:?} is not finite", col + 1)));
            }
            values.push(v);
        }
        let frame = values[0];
        if frame.fract() != 0.0 || frame < 1.0 || frame > u32::MAX as f64 {
            return Err(err(format!(
                "frame {:?} is not an integer >= 1 (frames are 1-based)",
                fields[0]
            )));
        }
        let id = values[1];
        if id.fract() != 0.0 || id.abs() > 9.0e15 {
            return Err(err(format!("id {:?} is not an integer", fields[1])));
        }
        let (w, h) = (values[4], values[5]);
        if w < 0.0 || h < 0.0 {
            return Err(err(format!("negative box size {w} x {h}")));
        }
        out.push(MotRecord {
            frame: frame as u32,
            id: id as i64,
            rect: Rect::new(values[2], values[3], w, h),
            conf: values.get(6).copied().unwrap_or(-1.0),
            extra: values.get(7..).map(<[f64]>::to_vec).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Reads a MOTChallenge file (tracker output, detections or ground truth, all rows kept).
pub fn read_mot(path: impl AsRef<Path>) -> Result<Vec<MotRecord>, MotError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| MotError::Io {
        path: name.clone(),
        source,
    })?;
    parse_mot(&text, &name)
}

/// Reads a ground-truth file and drops the boxes whose consider flag (column 7) is 0.
pub fn read_ground_truth(path: impl AsRef<Path>) -> Result<Vec<MotRecord>, MotError> {
    let mut gt = read_mot(path)?;
    gt.retain(MotRecord::is_considered);
    Ok(gt)
}

/// Formats records as MOTChallenge lines. Records without extra columns get `-1,-1,-1` (the MOT15
/// 2D layout of 10 columns, which every MOTChallenge tool reads). Numbers are written in their
/// shortest form that reads back to the same value.
pub fn format_mot(records: &[MotRecord]) -> String {
    let mut s = String::with_capacity(records.len() * 48);
    for r in records {
        let _ = write!(
            s,
            "{},{},{},{},{},{},{}",
            r.frame, r.id, r.rect.x, r.rect.y, r.rect.w, r.rect.h, r.conf
        );
        if r.extra.is_empty() {
            s.push_str(",-1,-1,-1");
        } else {
            for v in &r.extra {
                let _ = write!(s, ",{v}");
            }
        }
        s.push('\n');
    }
    s
}

/// Writes records to a MOTChallenge file (see [`format_mot`]).
pub fn write_mot(path: impl AsRef<Path>, records: &[MotRecord]) -> Result<(), MotError> {
    let path = path.as_ref();
    std::fs::write(path, format_mot(records)).map_err(|source| MotError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Groups records by frame, in frame order (records keep their order within a frame).
pub fn group_by_frame(records: &[MotRecord]) -> BTreeMap<u32, Vec<&MotRecord>> {
    let mut m: BTreeMap<u32, Vec<&MotRecord>> = BTreeMap::new();
    for r in records {
        m.entry(r.frame).or_default().push(r);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mot15_and_mot16_lines() {
        let text = "1,1,399,182,121,229,1,-1,-1,-1\r\n\r\n2, 3 ,113.84,274.5,57.307,130.05,-1,-1,-1,-1\r\n\
                    3,2,10,20,30,40,0,7,0.25\n4 5 1 2 3 4\n";
        let r = parse_mot(text, "gt.txt").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].frame, 1);
        assert_eq!(r[0].id, 1);
        assert_eq!(r[0].rect, Rect::new(399.0, 182.0, 121.0, 229.0));
        assert_eq!(r[0].conf, 1.0);
        assert_eq!(r[0].extra, vec![-1.0, -1.0, -1.0]);
        assert_eq!(r[1].id, 3);
        assert_eq!(r[1].rect.w, 57.307);
        assert_eq!(r[1].conf, -1.0);
        assert!(!r[2].is_considered());
        assert_eq!(r[2].extra, vec![7.0, 0.25]);
        // whitespace separated, no confidence column
        assert_eq!(r[3].frame, 4);
        assert_eq!(r[3].rect, Rect::new(1.0, 2.0, 3.0, 4.0));
        assert_eq!(r[3].conf, -1.0);
        assert!(r[3].extra.is_empty());
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            ("1,1,1,1,1,1\n1,2,3\n", 2, "at least 6"),
            ("\n\n1,1,x,1,1,1\n", 3, "column 3"),
            ("0,1,1,1,1,1\n", 1, "1-based"),
            ("1.5,1,1,1,1,1\n", 1, "frame"),
            ("1,2.5,1,1,1,1\n", 1, "id"),
            ("1,1,1,1,-4,1\n", 1, "negative"),
            ("1,1,1,1,nan,1\n", 1, "not finite"),
            ("1,1,1,,1,1\n", 1, "column 4"),
        ];
        for (text, line, what) in cases {
            let e = parse_mot(text, "res.txt").unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("res.txt:{line}: ")), "{msg}");
            assert!(msg.contains(what), "{msg}");
        }
        let e = read_mot("/nonexistent/mot/gt.txt").unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/mot/gt.txt: "),
            "{e}"
        );
    }

    #[test]
    fn write_read_round_trip() {
        let recs = vec![
            MotRecord::new(1, 4, Rect::new(1.25, 2.0, 30.123456789, 40.5), 0.875),
            MotRecord {
                extra: vec![1.0, 0.5],
                ..MotRecord::new(12, -1, Rect::new(-3.5, 0.0, 10.0, 20.0), -1.0)
            },
        ];
        let text = format_mot(&recs);
        assert_eq!(
            text,
            "1,4,1.25,2,30.123456789,40.5,0.875,-1,-1,-1\n12,-1,-3.5,0,10,20,-1,1,0.5\n"
        );
        let back = parse_mot(&text, "x").unwrap();
        assert_eq!(back[0].rect, recs[0].rect);
        assert_eq!(back[0].conf, recs[0].conf);
        assert_eq!(back[1], recs[1]);

        let dir = std::env::temp_dir().join(format!("vigil-mot-format-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("res.txt");
        write_mot(&p, &recs).unwrap();
        assert_eq!(read_mot(&p).unwrap(), back);
        let gt = read_ground_truth(&p).unwrap();
        assert_eq!(gt.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn iou_of_rects() {
        let a = Rect::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&Rect::new(10.0, 0.0, 10.0, 10.0)), 0.0);
        assert!((a.iou(&Rect::new(5.0, 0.0, 10.0, 10.0)) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(Rect::default().iou(&Rect::default()), 0.0);
        let nan = Rect::new(f64::NAN, 0.0, 10.0, 10.0);
        assert_eq!(nan.iou(&a), 0.0);
        assert_eq!(a.iou(&Rect::new(0.0, 0.0, f64::INFINITY, 10.0)), 0.0);
        // Identical boxes at awkward coordinates: exactly 1.
        let b = Rect::new(113.84, 274.5, 57.307, 130.05);
        assert_eq!(b.iou(&b), 1.0);
        assert_eq!(Rect::from_bbox(&a.to_bbox()), a);
    }
}
