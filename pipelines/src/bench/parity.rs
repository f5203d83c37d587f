//! Do Vigil and the Python peer see the same objects? Per frame, the number of detections and the
//! multiset of their classes must be equal (boxes and scores may differ slightly: the two decoders and
//! colour conversions are not bit-identical). The comparison is only fair where this holds on most frames.

use std::collections::BTreeMap;

/// Per frame number, the sorted labels of the frame's detections.
pub type FrameLabels = BTreeMap<u64, Vec<String>>;

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Parity {
    /// Frames Vigil reported.
    pub frames: usize,
    /// Frames with the same count and classes on both sides.
    pub equal: usize,
    /// Frames Vigil reported that the peer did not.
    pub missing: usize,
    /// Up to 10 differing frames: (frame, Vigil's labels, the peer's labels).
    pub examples: Vec<(u64, Vec<String>, Option<Vec<String>>)>,
}

impl Parity {
    /// Fraction of Vigil's frames with equal detections (0 when there are none).
    pub fn fraction(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            self.equal as f64 / self.frames as f64
        }
    }
}

fn labels_of(objects: Option<&serde_json::Value>, what: &str) -> Result<Vec<String>, String> {
    let objects = objects
        .and_then(|o| o.as_array())
        .ok_or_else(|| format!("{what}: no 'objects' array"))?;
    let mut labels = Vec::with_capacity(objects.len());
    for o in objects {
        // Child objects of secondary models are not the detector's.
        if o.get("parent").is_some_and(|p| !p.is_null()) {
            continue;
        }
        let label = o
            .get("label")
            .and_then(|l| l.as_str())
            .ok_or_else(|| format!("{what}: an object without 'label'"))?;
        labels.push(label.to_string());
    }
    labels.sort();
    Ok(labels)
}

/// The detections of source `source` in a Vigil events file (`vigil.frame.v1` JSON lines).
pub fn vigil_labels(jsonl: &str, source: &str) -> Result<FrameLabels, String> {
    frame_labels(jsonl, "events", |v| {
        v.get("source").and_then(|s| s.as_str()) == Some(source)
    })
}

/// The detections of stream `stream` in the peer's detections file (`python_peer.py --detections`).
pub fn peer_labels(jsonl: &str, stream: u64) -> Result<FrameLabels, String> {
    frame_labels(jsonl, "peer detections", |v| {
        v.get("stream").and_then(|s| s.as_u64()) == Some(stream)
    })
}

/// Labels per frame of the JSON lines (`frame`, `objects`) that `keep` selects; errors name `file`'s line.
fn frame_labels(
    jsonl: &str,
    file: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<FrameLabels, String> {
    let mut out = FrameLabels::new();
    for (i, line) in jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let what = format!("{file} line {}", i + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{what}: {e}"))?;
        if !keep(&v) {
            continue;
        }
        let frame = v
            .get("frame")
            .and_then(|f| f.as_u64())
            .ok_or_else(|| format!("{what}: no 'frame'"))?;
        out.insert(frame, labels_of(v.get("objects"), &what)?);
    }
    Ok(out)
}

/// Compares the two sides frame by frame (over Vigil's frames).
pub fn compare(vigil: &FrameLabels, peer: &FrameLabels) -> Parity {
    let mut p = Parity {
        frames: vigil.len(),
        equal: 0,
        missing: 0,
        examples: Vec::new(),
    };
    for (frame, labels) in vigil {
        let other = peer.get(frame);
        if other == Some(labels) {
            p.equal += 1;
            continue;
        }
        if other.is_none() {
            p.missing += 1;
        }
        if p.examples.len() < 10 {
            p.examples.push((*frame, labels.clone(), other.cloned()));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_classes_must_match_per_frame() {
        let vigil = r#"{"source":"a","frame":0,"objects":[{"label":"person"},{"label":"car"}]}
{"source":"b","frame":0,"objects":[]}
{"source":"a","frame":1,"objects":[{"label":"person"}]}
{"source":"a","frame":2,"objects":[{"label":"person"},{"label":"face","parent":0}]}
{"source":"a","frame":3,"objects":[]}
"#;
        let peer = r#"{"stream":0,"frame":0,"objects":[{"label":"car"},{"label":"person"}]}
{"stream":0,"frame":1,"objects":[{"label":"car"}]}
{"stream":0,"frame":2,"objects":[{"label":"person"}]}
{"stream":1,"frame":3,"objects":[]}
"#;
        let v = vigil_labels(vigil, "a").unwrap();
        let p = peer_labels(peer, 0).unwrap();
        let r = compare(&v, &p);
        assert_eq!((r.frames, r.equal, r.missing), (4, 2, 1));
        assert_eq!(r.fraction(), 0.5);
        assert_eq!(r.examples[0].0, 1);
        assert_eq!(r.examples[1], (3, vec![], None));
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let e = vigil_labels("{\"source\":\"a\",\"objects\":[]}\n", "a").unwrap_err();
        assert!(e.contains("line 1") && e.contains("frame"), "{e}");
        let e = peer_labels("not json\n", 0).unwrap_err();
        assert!(e.contains("peer detections line 1"), "{e}");
    }
}
