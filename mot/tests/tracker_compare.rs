//! Vigil's trackers against the Python trackers a user might pick instead (PyPI `norfair`,
//! `bytetracker`, `motpy`), on the same seeded noisy detections of TUD-Campus, every result evaluated
//! by the same Rust metric code (`vigil_mot`).
//!
//! 1. The noisy detections ([`noisy_detections`], [`NoiseConfig::default`] rates) for the fixed seed
//!    [`SEED`] and for [`SEEDS`] are written as MOTChallenge detection files with
//!    [`write_detections`]; both sides read those files.
//! 2. Vigil's trackers run on them in-process, each preset of [`vigil_presets`]; frames/s are timed
//!    around `Tracker::track` (update and coasting) only, best of [`REPEAT`] runs (the table says whether this is the
//!    `dev`/`test` profile, opt-level 1, or `--release`).
//! 3. `scripts/trackers/peers.py` runs each Python tracker with its presets (see its documentation)
//!    on the same files, writes MOTChallenge results and its own frames/s (timed around the
//!    trackers' update calls only, best of [`REPEAT`]).
//! 4. Every result is evaluated with [`evaluate`]; a table (tracker, preset, MOTA, IDF1, IDSW, FP,
//!    FN, frames/s, and the means over [`SEEDS`]) is printed. Vigil's trackers report their coasting
//!    tracks (`coast_frames`, each kind's default and detections only). Vigil's best tracker as
//!    shipped must reach the best Python IDF1 and MOTA on seed [`SEED`], the best mean IDF1 and
//!    mean MOTA over [`SEEDS`], and no more ID switches on seed [`SEED`] than the best Python
//!    tracker; the mean ID switches are reported (`motpy` on confident detections is still ahead
//!    there, see the README's tracking section). `VIGIL_COAST_SWEEP=1` adds coasting 1..=4 rows.
//!
//! The Python interpreter is `$VIGIL_TRACKERS_PYTHON`, else the venv `scripts/setup.sh` makes,
//! `~/.cache/vigil/trackers-venv/bin/python`. Without it (or without a package) the Python part is
//! reported `SKIPPED` — except under `CI=true`, where that is a failure.
//!
//! `cargo test --release -p vigil-mot --test tracker_compare -- --nocapture` prints the table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use vigil_core::objects::Object;
use vigil_core::tracker::{self, ByteTrackConfig, TrackerKind, TrackerParams};
use vigil_mot::eval::{det_objects, read_detections, write_detections};
use vigil_mot::format::{read_ground_truth, read_mot};
use vigil_mot::{FrameDets, MotRecord, MotSummary, NoiseConfig, Rect, evaluate, noisy_detections};

/// The seed of the acceptance comparison ([`NoiseConfig::default`]'s).
const SEED: u64 = 42;
/// Further seeds whose mean is reported (and compared).
const SEEDS: [u64; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
/// Timed runs per tracker and preset on seed [`SEED`]; the fastest is reported.
const REPEAT: usize = 5;
/// TUD-Campus: 71 frames at 25 frames/s.
const FRAMES: u32 = 71;
const FRAME_RATE: f64 = 25.0;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The interpreter of the trackers' venv, or why there is none.
fn python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VIGIL_TRACKERS_PYTHON") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "VIGIL_TRACKERS_PYTHON={} is not a file",
                p.display()
            ))
        };
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let p = PathBuf::from(home).join(".cache/vigil/trackers-venv/bin/python");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing (run scripts/setup.sh trackers)",
            p.display()
        ))
    }
}

/// A Vigil tracker preset: kind, parameters, and a confidence filter applied before the tracker
/// (like `vigilinfer threshold`) for the trackers that do not use confidences themselves.
struct VigilPreset {
    kind: TrackerKind,
    name: String,
    params: TrackerParams,
    min_score: Option<f64>,
}

/// The settings `vigiltrack` ships (its property defaults, coasting included) for every kind, and
/// the same with detections only (`coast-frames` 0); for `bytetrack` also the paper's
/// (`ByteTrackConfig::default()`: its first association gates at IoU 0.2, the paper's
/// `match_thresh` 0.8, where `vigiltrack`'s shared `iou-threshold` default is 0.3); for `iou` and
/// `sort`, which ignore confidences, the defaults with detections below 0.5 dropped (as the Python
/// trackers' `conf0.5` presets). `VIGIL_COAST_SWEEP=1` adds coasting 1..=4 frames to each kind.
fn vigil_presets() -> Vec<VigilPreset> {
    let mut v = Vec::new();
    let sweep = std::env::var("VIGIL_COAST_SWEEP").is_ok_and(|v| v == "1");
    for kind in TrackerKind::ALL {
        let default = TrackerParams::default();
        let coast = kind.default_coast_frames();
        let mut add = |name: String, params: TrackerParams, min_score: Option<f64>| {
            v.push(VigilPreset {
                kind,
                name,
                params,
                min_score,
            })
        };
        add(format!("default (coast {coast})"), default.clone(), None);
        if coast > 0 {
            add(
                "detections only".into(),
                TrackerParams {
                    coast_frames: Some(0),
                    ..default.clone()
                },
                None,
            );
        }
        if kind == TrackerKind::ByteTrack {
            let paper = ByteTrackConfig::default();
            add(
                "paper".into(),
                TrackerParams {
                    iou_threshold: paper.iou_threshold,
                    min_hits: paper.min_hits,
                    ..default.clone()
                },
                None,
            );
        }
        if matches!(kind, TrackerKind::Iou | TrackerKind::Sort) {
            add("conf0.5".into(), default.clone(), Some(0.5));
        }
        if sweep {
            for c in (1..=4).filter(|&c| c != coast) {
                add(
                    format!("coast {c}"),
                    TrackerParams {
                        coast_frames: Some(c),
                        ..default.clone()
                    },
                    None,
                );
            }
        }
    }
    v
}

/// The detections of each frame as the objects a tracker gets, those below `min_score` left out.
fn objects(frames: &[FrameDets], min_score: Option<f64>) -> Vec<Vec<Object>> {
    frames
        .iter()
        .map(|f| {
            det_objects(
                f.dets
                    .iter()
                    .filter(|d| min_score.is_none_or(|m| d.conf >= m)),
            )
        })
        .collect()
}

/// Runs a preset over `frames` `repeat` times (a new tracker each time); returns the hypothesis of
/// the first run and the best time spent in `update` (seconds).
fn run_vigil(p: &VigilPreset, frames: &[FrameDets], repeat: usize) -> (Vec<MotRecord>, f64) {
    let inputs = objects(frames, p.min_score);
    let mut best = f64::INFINITY;
    let mut hyp = None;
    for _ in 0..repeat.max(1) {
        let mut t = tracker::build(p.kind, &p.params);
        let mut objects = inputs.clone();
        let mut secs = 0.0;
        for f in objects.iter_mut() {
            let start = Instant::now();
            t.track(f);
            secs += start.elapsed().as_secs_f64();
        }
        best = best.min(secs);
        if hyp.is_none() {
            let mut out = Vec::new();
            for (f, objs) in frames.iter().zip(&objects) {
                for o in objs {
                    if let Some(id) = o.track_id {
                        out.push(MotRecord::new(
                            f.frame,
                            id as i64,
                            Rect::from_bbox(&o.bbox),
                            o.confidence as f64,
                        ));
                    }
                }
            }
            hyp = Some(out);
        }
    }
    (hyp.unwrap_or_default(), best)
}

/// One evaluated result.
struct Row {
    side: &'static str,
    tracker: String,
    preset: String,
    /// Seed 42.
    summary: MotSummary,
    fps: f64,
    /// Mean MOTA, IDF1 and ID switches over [`SEEDS`].
    mean_mota: f64,
    mean_idf1: f64,
    mean_idsw: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn print_table(rows: &[Row]) {
    eprintln!(
        "\nnoisy TUD-Campus (seed {SEED}; mean over seeds {}..={}), {} build\n\
         | side | tracker | preset | MOTA | IDF1 | IDSW | FP | FN | frames/s | mean MOTA | mean IDF1 | mean IDSW |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        SEEDS[0],
        SEEDS[SEEDS.len() - 1],
        if cfg!(debug_assertions) {
            "dev/test profile (opt-level 1)"
        } else {
            "release"
        }
    );
    for r in rows {
        eprintln!(
            "| {} | {} | {} | {:.1} % | {:.1} % | {} | {} | {} | {} | {:.1} % | {:.1} % | {:.1} |",
            r.side,
            r.tracker,
            r.preset,
            r.summary.mota * 100.0,
            r.summary.idf1 * 100.0,
            r.summary.num_switches,
            r.summary.fp,
            r.summary.fn_,
            if r.fps.is_finite() {
                format!("{:.0}", r.fps)
            } else {
                "-".into()
            },
            r.mean_mota * 100.0,
            r.mean_idf1 * 100.0,
            r.mean_idsw
        );
    }
}

/// Runs `peers.py` on the detection files; returns its report, or why it could not run (missing
/// interpreter or package).
fn run_peers(dets: &[PathBuf], out: &Path) -> Result<Value, String> {
    let python = python()?;
    let script = repo().join("scripts/trackers/peers.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg("--out")
        .arg(out)
        .args(["--frames", &FRAMES.to_string()])
        .args(["--frame-rate", &FRAME_RATE.to_string()])
        .args(["--repeat", &REPEAT.to_string()])
        .args(dets)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(2) => return Err(stderr.trim().to_string()),
        _ => panic!(
            "{} {} failed ({}):\n{stderr}",
            python.display(),
            script.display(),
            output.status
        ),
    }
    let report = out.join("peers.json");
    let text =
        std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{}: {e}", report.display()));
    Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", report.display())))
}

#[test]
fn trackers_compared_with_python_peers_on_noisy_tud_campus() {
    let data = repo().join("tests/data/mot/TUD-Campus/gt.txt");
    if !data.is_file() {
        assert!(!ci(), "{} is missing", data.display());
        eprintln!("SKIPPED tracker comparison: no {}", data.display());
        return;
    }
    let gt = read_ground_truth(&data).unwrap();
    let tmp = std::env::temp_dir().join(format!("vigil-tracker-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();

    // 1. The detections, from Vigil's seeded generator, as files both sides read.
    let mut det_files = Vec::new();
    let mut frames_by_seed = BTreeMap::new();
    for seed in std::iter::once(SEED).chain(SEEDS) {
        let cfg = NoiseConfig {
            seed,
            ..Default::default()
        };
        let dets = noisy_detections(&gt, &cfg).unwrap();
        assert_eq!(dets.len(), FRAMES as usize);
        let path = tmp.join(format!("det-{seed}.txt"));
        write_detections(&path, &dets).unwrap();
        let back = read_detections(&path, cfg.class_id, Some(FRAMES)).unwrap();
        assert_eq!(
            back, dets,
            "seed {seed}: the detection file reads back the same"
        );
        frames_by_seed.insert(seed, back);
        det_files.push(path);
    }

    // 2. Vigil's trackers.
    let mut rows = Vec::new();
    for p in vigil_presets() {
        let (hyp, secs) = run_vigil(&p, &frames_by_seed[&SEED], REPEAT);
        let summary = evaluate(&gt, &hyp).unwrap();
        let (mut motas, mut idf1s, mut idsws) = (Vec::new(), Vec::new(), Vec::new());
        for seed in SEEDS {
            let (hyp, _) = run_vigil(&p, &frames_by_seed[&seed], 1);
            let s = evaluate(&gt, &hyp).unwrap();
            motas.push(s.mota);
            idf1s.push(s.idf1);
            idsws.push(s.num_switches as f64);
        }
        rows.push(Row {
            side: "vigil",
            tracker: p.kind.to_string(),
            preset: p.name.clone(),
            summary,
            fps: FRAMES as f64 / secs,
            mean_mota: mean(&motas),
            mean_idf1: mean(&idf1s),
            mean_idsw: mean(&idsws),
        });
    }

    // 3. The Python trackers on the same files.
    let report = match run_peers(&det_files, &tmp.join("peers")) {
        Ok(r) => Some(r),
        Err(why) => {
            print_table(&rows);
            assert!(
                !ci(),
                "CI=true: the Python trackers cannot run: {why}; scripts/setup.sh installs them"
            );
            eprintln!("SKIPPED the Python trackers: {why}");
            None
        }
    };
    let Some(report) = report else {
        let _ = std::fs::remove_dir_all(&tmp);
        return;
    };
    eprintln!(
        "python {} packages {}",
        report["python"], report["packages"]
    );

    // 4. Every Python result through the same evaluation.
    /// Per (tracker, preset): the seed-42 summary and frames/s, the other seeds' MOTA, IDF1 and
    /// ID switches.
    type Results = (Option<(MotSummary, f64)>, Vec<f64>, Vec<f64>, Vec<f64>);
    let mut by_preset: BTreeMap<(String, String), Results> = BTreeMap::new();
    let runs = report["runs"].as_array().expect("peers.json has runs");
    for run in runs {
        let field = |k: &str| {
            run[k]
                .as_str()
                .unwrap_or_else(|| panic!("peers.json run without {k}: {run}"))
                .to_string()
        };
        let (det, tracker, preset, output) = (
            field("det"),
            field("tracker"),
            field("preset"),
            field("output"),
        );
        assert_eq!(run["frames"].as_u64(), Some(u64::from(FRAMES)), "{run}");
        let hyp = read_mot(&output).unwrap();
        let s = evaluate(&gt, &hyp).unwrap();
        let entry = by_preset.entry((tracker, preset)).or_default();
        if Path::new(&det) == tmp.join(format!("det-{SEED}.txt")) {
            let fps = run["fps"].as_f64().expect("fps");
            assert!(fps.is_finite() && fps > 0.0, "{run}");
            entry.0 = Some((s, fps));
        } else {
            entry.1.push(s.mota);
            entry.2.push(s.idf1);
            entry.3.push(s.num_switches as f64);
        }
    }
    assert!(
        by_preset.len() >= 8,
        "expected the presets of norfair, bytetracker and motpy, got {:?}",
        by_preset.keys().collect::<Vec<_>>()
    );
    for ((tracker, preset), (main, motas, idf1s, idsws)) in by_preset {
        let (summary, fps) =
            main.unwrap_or_else(|| panic!("{tracker} {preset}: no run on seed {SEED}"));
        assert_eq!(idf1s.len(), SEEDS.len(), "{tracker} {preset}");
        rows.push(Row {
            side: "python",
            tracker,
            preset,
            summary,
            fps,
            mean_mota: mean(&motas),
            mean_idf1: mean(&idf1s),
            mean_idsw: mean(&idsws),
        });
    }
    print_table(&rows);
    let _ = std::fs::remove_dir_all(&tmp);

    // 5. Vigil's best tracker as shipped (the default preset with the highest mean IDF1) against
    //    the best Python result of each measure (any tracker, any preset): IDF1 and MOTA on seed
    //    SEED, IDF1 and MOTA on the mean over SEEDS at least as high, ID switches on seed SEED not
    //    more than the Python tracker with the best IDF1 has. Reported, not asserted (not reached
    //    yet, issue 21): the mean ID switches (motpy's readme-conf0.5 has fewer: two people walking
    //    side by side in TUD-Campus swap or get a new track in some seeds).
    let best_vigil = rows
        .iter()
        .filter(|r| r.side == "vigil" && r.preset.starts_with("default"))
        .max_by(|a, b| a.mean_idf1.total_cmp(&b.mean_idf1))
        .unwrap();
    let python: Vec<&Row> = rows.iter().filter(|r| r.side == "python").collect();
    let best = |key: &dyn Fn(&Row) -> f64| {
        *python
            .iter()
            .max_by(|a, b| key(a).total_cmp(&key(b)))
            .unwrap()
    };
    let v = best_vigil;
    let name = |r: &Row| format!("{} {}", r.tracker, r.preset);
    type Measure<'a> = (&'a str, &'a dyn Fn(&Row) -> f64, bool);
    let measures: [Measure; 4] = [
        ("IDF1", &|r: &Row| r.summary.idf1, true),
        ("MOTA", &|r: &Row| r.summary.mota, true),
        ("mean IDF1", &|r: &Row| r.mean_idf1, true),
        ("mean MOTA", &|r: &Row| r.mean_mota, true),
    ];
    let (mut failures, mut behind) = (Vec::new(), Vec::new());
    for (what, key, asserted) in measures {
        let p = best(key);
        eprintln!(
            "{what}: vigil {} {:.2} % vs best Python {} {:.2} %",
            name(v),
            key(v) * 100.0,
            name(p),
            key(p) * 100.0
        );
        if key(v) < key(p) {
            let why = format!("{what} {} < {} {}", key(v), name(p), key(p));
            if asserted {
                failures.push(why);
            } else {
                behind.push(why);
            }
        }
    }
    let by_idf1 = best(&|r: &Row| r.summary.idf1);
    let by_mean_idf1 = best(&|r: &Row| r.mean_idf1);
    eprintln!(
        "ID switches: vigil {} {} (mean {:.1}) vs {} {} and {} mean {:.1}",
        name(v),
        v.summary.num_switches,
        v.mean_idsw,
        name(by_idf1),
        by_idf1.summary.num_switches,
        name(by_mean_idf1),
        by_mean_idf1.mean_idsw
    );
    if v.summary.num_switches > by_idf1.summary.num_switches {
        failures.push(format!(
            "seed {SEED}: more ID switches than {}",
            name(by_idf1)
        ));
    }
    if v.mean_idsw > by_mean_idf1.mean_idsw {
        behind.push(format!(
            "mean ID switches {:.1} > {} {:.1}",
            v.mean_idsw,
            name(by_mean_idf1),
            by_mean_idf1.mean_idsw
        ));
    }
    if !behind.is_empty() {
        eprintln!("not reached yet (reported, not asserted): {behind:?}");
    }
    assert!(
        failures.is_empty(),
        "Vigil's {} behind the Python trackers: {failures:?}",
        name(v)
    );
}
