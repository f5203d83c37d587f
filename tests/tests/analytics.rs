//! Acceptance 3 of issue 5: `configs/traffic.yaml` counts persons and vehicles crossing its `walkway`
//! line in `vtest.avi`, checked against counts made by hand for a 40 s clip.
//!
//! The clip is frames 150..=549 of `samples/media/vtest.avi` (15.0 s to 55.0 s at 10 fps), cut by
//! `ffmpeg` into a lossless FFV1 file (the test checks 400 frames come out; the decoded pixels are
//! those of the original frames, so detection sees the same images). The test runs the real `vigil`
//! binary on `configs/traffic.yaml` itself — its model, inference, tracker and `analytics` sections
//! unchanged — with only the source URI, the outputs (events to a temporary file, no RTSP) and
//! `realtime: false` replaced, and reads the counts of the last frame's `analytics` in the events.
//!
//! # How the clip was labelled (by hand)
//!
//! The line `walkway` runs from (180, 180) to (180, 340): a vertical segment across the left part of
//! the walkway, `in` = moving right. I looked at contact sheets of crops around the line (x 100..300,
//! y 150..350) with the line and ±5 px marks drawn in by `ffmpeg drawbox`, first every 3rd frame over
//! the whole video, then every 2nd frame for frames 176..295 and every frame for 280..339 and 285..343,
//! and followed each person walking near the line (their feet, which is what the bottom-centre
//! anchor follows):
//!
//! | person | frames near the line | crossing | direction |
//! | --- | --- | --- | --- |
//! | light-blue hoodie, backpack | enters right at 171, walks left | feet on the line at ~186, left of it from 188 | out (leftwards) |
//! | dark top, jeans | enters right at 196, walks left | ~209 | out |
//! | bald man, dark jacket, jeans | enters right at 231, walks left along the tape | ~259 | out |
//! | the same man | turns round at x ~125 at frames 274..276 (checked frame by frame) and walks back right | ~296, 6 px right of it at 298 | in (rightwards) |
//! | dark jacket (comes from the right at 299) | walks left to ~13 px right of the line at 312, turns back right, leaves at 329 | none | — |
//! | dark clothes, white paper (309..325) | stays ~25 px right of the line | none | — |
//! | dark jacket (381..405) | comes from the right to x ~266, turns back | none | — |
//! | red jacket | enters right at 504, walks left | ~538 (x 171 at 540, 137 at 549) | out |
//!
//! Nobody else comes near the segment in the clip (the woman crossing the grass from 570 is outside
//! it, and the parked vans never move). Hand counts: persons `in` 1, `out` 4; vehicles (bicycle,
//! car, motorcycle, bus, truck) `in` 0, `out` 0.
//!
//! The comparison is exact: every crossing above is a walk through the line without stopping on it,
//! and the two people who come close and turn back stay at least 13 px from it, more than the
//! 5 px hysteresis, so no tolerance is needed for them. The man who crosses out and back in is one
//! track; the rule "at most once per line and direction" counts both of his crossings.
//!
//! Measured (this test's output): `in` 1, `out` 4 for persons, 0/0 for vehicles, crossings at video
//! frames 187, 210, 260 (out), 297 (in, the same track as 260) and 539 (out) — the frames labelled
//! by hand above. The `iou`, `sort` and `bytetrack` trackers all give these counts on this clip;
//! `traffic.yaml` uses `sort` (fewer track ids than `iou` for the same people: 29 against 45).
//!
//! Skips with a message when the sample media, the NanoDet model or `ffmpeg` (installed by
//! `scripts/setup.sh`) are missing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_tests::{
    TempDir, Vigil, analytics_events, read_events, repo_root, skip, traffic_config_head, vigil_bin,
};

const FIRST_FRAME: u32 = 150;
const LAST_FRAME: u32 = 549;
/// Hand-labelled crossings of `walkway` in the clip (see the module docs): (in, out).
const PERSONS: (u64, u64) = (1, 4);
const VEHICLES: (u64, u64) = (0, 0);
const VEHICLE_LABELS: [&str; 5] = ["bicycle", "car", "motorcycle", "bus", "truck"];

/// `configs/traffic.yaml` with the source URI, outputs and `realtime` replaced (everything else, the
/// analytics rules included, as committed).
fn test_config(clip: &Path, events: &Path) -> String {
    format!(
        "{}\noutputs:\n  events:\n    path: {}\nrealtime: false\n",
        traffic_config_head(clip),
        events.display()
    )
}

/// Each track's speeds (km/h) over the events, in frame order.
fn track_speeds(events: &[serde_json::Value]) -> BTreeMap<u64, Vec<f64>> {
    let mut out: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for o in events
        .iter()
        .flat_map(|e| e["objects"].as_array().into_iter().flatten())
    {
        if let (Some(id), Some(v)) = (o["track_id"].as_u64(), o["speed"]["value"].as_f64()) {
            assert_eq!(o["speed"]["unit"], "km/h", "{o}");
            out.entry(id).or_default().push(v);
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Sum of the (in, out) counts of `line` in an event's analytics for the given labels.
fn line_counts(event: &serde_json::Value, line: &str, labels: &[&str]) -> (u64, u64) {
    let lines = event["analytics"]["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no analytics lines in {event}"));
    let l = lines
        .iter()
        .find(|l| l["name"] == line)
        .unwrap_or_else(|| panic!("no line {line} in {event}"));
    let mut total = (0, 0);
    for c in l["counts"].as_array().into_iter().flatten() {
        if labels.iter().any(|x| c["label"] == *x) {
            total.0 += c["in"].as_u64().unwrap();
            total.1 += c["out"].as_u64().unwrap();
        }
    }
    total
}

#[test]
fn traffic_config_counts_match_the_hand_labelled_clip() {
    let root = repo_root();
    let media = root.join("samples/media/vtest.avi");
    let model_file = root.join("models/nanodet/1/model.onnx");
    if !vigil_tests::installed_with_ffmpeg(&[&media, &model_file]) {
        return;
    }
    let dir = TempDir::new("analytics");
    let clip = dir.path().join("clip.mkv");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&media)
        .args([
            "-vf",
            &format!("select=between(n\\,{FIRST_FRAME}\\,{LAST_FRAME}),setpts=N/(10*TB)"),
            "-r",
            "10",
            "-c:v",
            "ffv1",
        ])
        .arg(&clip)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = dir.path().join("events.jsonl");
    let config = dir.path().join("traffic-clip.yaml");
    std::fs::write(&config, test_config(&clip, &events)).unwrap();

    let (mut vigil, _lines) = Vigil::run(&config, &["--progress", "0"]);
    let status = vigil.wait(Duration::from_secs(900));
    let stderr = vigil.stderr_text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "vigil did not finish cleanly; stderr:\n{stderr}"
    );

    let events = read_events(&events).unwrap();
    assert_eq!(
        events.len() as u32,
        LAST_FRAME - FIRST_FRAME + 1,
        "one event per frame of the clip"
    );
    // Every event carries the analytics; crossings are announced as events too.
    assert!(events.iter().all(|e| e["analytics"]["lines"].is_array()));
    let crossings: Vec<(u64, String, String, String)> = analytics_events(&events)
        .into_iter()
        .filter(|(_, x)| x["kind"] == "line_crossed")
        .map(|(frame, x)| {
            (
                frame + u64::from(FIRST_FRAME),
                x["label"].as_str().unwrap_or("").to_string(),
                x["direction"].as_str().unwrap_or("").to_string(),
                x["track_id"].to_string(),
            )
        })
        .collect();
    let last = events.last().unwrap();
    let persons = line_counts(last, "walkway", &["person"]);
    let vehicles = line_counts(last, "walkway", &VEHICLE_LABELS);
    eprintln!(
        "walkway: persons in/out {persons:?} (hand {PERSONS:?}), vehicles {vehicles:?} (hand \
         {VEHICLES:?}); crossings (video frame, label, direction, track): {crossings:?}"
    );
    assert_eq!(persons, PERSONS, "person crossings; events: {crossings:?}");
    assert_eq!(
        vehicles, VEHICLES,
        "vehicle crossings; events: {crossings:?}"
    );
    // The config's hand-made ground calibration gives walking speeds: most people here walk at 3-6 km/h.
    let speeds = track_speeds(&events);
    let all: Vec<f64> = speeds.values().flatten().copied().collect();
    let medians: Vec<f64> = speeds
        .values()
        .filter(|v| v.len() >= 10)
        .map(|v| median(v.clone()))
        .collect();
    let walking = medians.iter().filter(|m| (2.5..=8.0).contains(*m)).count();
    eprintln!(
        "speeds: {} values on {} tracks, median {:.1} km/h; medians of the {} tracks with 10 or more: {:.1?}",
        all.len(),
        speeds.len(),
        median(all.clone()),
        medians.len(),
        medians
    );
    assert!(all.len() >= 500, "{} speeds", all.len());
    assert!((3.0..=7.0).contains(&median(all)), "median speed");
    assert!(
        walking * 10 >= medians.len() * 8,
        "at most a fifth of the tracks outside 2.5-8 km/h: {medians:.1?}"
    );
    // The zone of the config is reported on every frame.
    assert!(last["analytics"]["zones"][0]["name"] == "square", "{last}");
    // The end-of-run summary repeats the line's counts.
    let summary = format!(
        "[vtest] line walkway: person in {} out {}",
        PERSONS.0, PERSONS.1
    );
    assert!(
        stderr.contains(&summary),
        "no '{summary}' in stderr:\n{stderr}"
    );
}

/// A broken analytics rule in a pipeline config is one error line naming the file, key path and line.
#[test]
fn bad_analytics_rule_names_file_key_and_line() {
    let root = repo_root();
    if !root.join("models/nanodet/1/model.onnx").is_file() {
        skip(format_args!("NanoDet not installed (run make setup)"));
        return;
    }
    let dir = TempDir::new("analytics-bad");
    let text = std::fs::read_to_string(root.join("configs/traffic.yaml"))
        .unwrap()
        .replace(
            "model_repository: ../models",
            &format!("model_repository: {}", root.join("models").display()),
        )
        .replace(
            "../samples/media/vtest.avi",
            &root.join("samples/media/vtest.avi").display().to_string(),
        )
        .replace("[[180, 180], [180, 340]]", "[[180, 180], [180, 180]]");
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("[[180, 180], [180, 180]]"))
        .unwrap()
        + 1;
    let out = Command::new(vigil_bin())
        .arg("check")
        .arg(&config)
        .output()
        .expect("run vigil");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "error: {}: line {line}: sources[0].analytics.lines[0].points: the two points are the \
             same (180, 180): a line needs two distinct points",
            config.display()
        )
    );
}
