//! `vigil bench --int8` (issue 20): the detector quantized by `vigil models quantize` on the
//! user's kind of video against the FP32 model, in one run: the quantization report (agreement on
//! held-out frames), ONNX Runtime alone on both (the compute bounds), Vigil end to end with each
//! model per stream count, and the Python peer given each model — so that Vigil/peer compares
//! equals. Writes `int8.md` and `int8.json` into `--out` (default `benches/results/int8`).

use super::{BenchArgs, Row, Setup, limits, median_run, peer_row, peers_python, vigil_row};
use crate::quantize::{self, QuantizeArgs};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Calibration media when none are given: the benchmark's clip and a second scene.
const DEFAULT_CALIBRATION: [&str; 2] = ["samples/media/vtest.avi", "samples/media/bikes.mp4"];

#[derive(Debug, Clone, serde::Serialize)]
struct Int8Report {
    machine: super::report::Machine,
    frames_per_stream: u64,
    repeat: usize,
    quantization: serde_json::Value,
    /// Per model ("fp32", "int8"): ONNX Runtime alone.
    compute: Vec<(String, limits::ComputeRun)>,
    /// Per model: Vigil and peer rows.
    rows: Vec<(String, Row)>,
    ratios: Vec<(String, f64)>,
}

/// A repository holding only `model`, version 1 = `file` (with the original's configuration and
/// labels).
fn single_version_repo(dir: &Path, s: &Setup, file: &Path) -> anyhow::Result<PathBuf> {
    let model_dir = dir.join(&s.model);
    std::fs::create_dir_all(model_dir.join("1"))?;
    let original = s.models.join(&s.model);
    for f in ["config.pbtxt", "labels.txt"] {
        if original.join(f).is_file() {
            std::fs::copy(original.join(f), model_dir.join(f))
                .with_context(|| format!("copying {}", original.join(f).display()))?;
        }
    }
    std::os::unix::fs::symlink(file, model_dir.join("1/model.onnx"))?;
    Ok(dir.to_path_buf())
}

/// Quantizes the detector with `vigil models quantize` (200 calibration frames, 100 held out;
/// written whatever its agreement, which the report shows); returns the INT8 file and the report.
fn quantize_model(s: &Setup, args: &BenchArgs) -> anyhow::Result<(PathBuf, serde_json::Value)> {
    let work = s.tmp.join("quantize");
    let repo = single_version_repo(&work.join("repo"), s, &s.model_file)?;
    let report = work.join("report.json");
    let calibrate = if args.int8_calibrate.is_empty() {
        DEFAULT_CALIBRATION.iter().map(|m| m.to_string()).collect()
    } else {
        args.int8_calibrate.clone()
    };
    let q = QuantizeArgs {
        repo: repo.clone(),
        models: vec![s.model.clone()],
        calibrate,
        evaluate: Vec::new(),
        frames: 200,
        held_out: 100,
        version: Some(2),
        from_version: Some(1),
        format: quantize::QuantFormat::Qoperator,
        activations: quantize::Int8::U8,
        method: quantize::Calibration::MovingAverage,
        per_tensor: false,
        weight_bits: 7,
        quantize_scores: false,
        keep_float: String::new(),
        ops: String::new(),
        min_f1: 0.95,
        min_exact: 0.95,
        threshold: super::THRESHOLD as f32,
        ocr: None,
        force: true,
        dry_run: false,
        python: None,
        report: Some(report.clone()),
    };
    quantize::execute(&q).context("vigil models quantize")?;
    let text = std::fs::read_to_string(&report)?;
    Ok((
        repo.join(&s.model).join("2/model.onnx"),
        serde_json::from_str(&text)?,
    ))
}

pub(crate) fn run(s: &Setup, args: &BenchArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    eprintln!("bench --int8: quantizing '{}'", s.model);
    let (int8_file, quantization) = quantize_model(s, args)?;
    let int8_repo = single_version_repo(&s.tmp.join("int8-repo"), s, &int8_file)?;
    let int8 = Setup {
        exe: s.exe.clone(),
        models: int8_repo,
        model: s.model.clone(),
        model_file: int8_file,
        labels_file: s.labels_file.clone(),
        clip: s.clip.clone(),
        frames: s.frames,
        tmp: s.tmp.join("int8"),
    };
    std::fs::create_dir_all(&int8.tmp)?;
    let sides: [(&str, &Setup); 2] = [("fp32", s), ("int8", &int8)];
    let streams: Vec<usize> = if args.streams.is_empty() {
        vec![1, 2, 4, 8]
    } else {
        args.streams.clone()
    };
    let repeat = args.repeat.unwrap_or(1).max(1);
    let mut compute = Vec::new();
    for (name, side) in sides {
        eprintln!("bench --int8: ONNX Runtime alone, {name}");
        for c in limits::compute_bound(
            &side.models,
            &side.model,
            &side.clip,
            &[(1, false), (4, false), (1, true)],
            10.0,
        )
        .map_err(anyhow::Error::msg)?
        {
            compute.push((name.to_owned(), c));
        }
    }
    let python = if args.no_peer { None } else { peers_python() };
    let mut rows = Vec::new();
    for &n in &streams {
        for (name, side) in sides {
            let mut runs = Vec::new();
            for r in 0..repeat {
                eprintln!(
                    "bench --int8: Vigil {name}, {n} stream(s), run {}/{repeat}",
                    r + 1
                );
                runs.push(vigil_row(side, n, true)?);
            }
            rows.push((name.to_owned(), median_run(runs).context("a run")?.0));
            if let Some(py) = &python {
                let mut runs = Vec::new();
                for r in 0..repeat {
                    eprintln!(
                        "bench --int8: Python peer {name}, {n} stream(s), run {}/{repeat}",
                        r + 1
                    );
                    runs.push(peer_row(side, py, n, false)?);
                }
                rows.push((name.to_owned(), median_run(runs).context("a run")?.0));
            }
        }
    }
    if rows.is_empty() {
        bail!("no stream count to run");
    }
    let report = Int8Report {
        machine: super::report::Machine::detect(),
        frames_per_stream: s.frames,
        repeat,
        quantization,
        ratios: ratios(&compute, &rows),
        compute,
        rows,
    };
    let md = markdown(&report);
    print!("{md}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("benches/results/int8"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("int8.md"), &md)?;
    std::fs::write(
        out.join("int8.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    eprintln!(
        "bench --int8: done in {:.0} s; wrote {}/int8.md and int8.json",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn best_compute(compute: &[(String, limits::ComputeRun)], side: &str) -> Option<f64> {
    compute
        .iter()
        .filter(|(s, _)| s == side)
        .map(|(_, c)| c.fps())
        .max_by(f64::total_cmp)
}

fn row_fps(rows: &[(String, Row)], side: &str, group: &str, n: usize) -> Option<f64> {
    rows.iter()
        .find(|(s, r)| s == side && r.group == group && r.streams == n)
        .map(|(_, r)| r.fps)
}

/// INT8/FP32 of the compute bounds and of Vigil per stream count; Vigil/peer with INT8.
fn ratios(compute: &[(String, limits::ComputeRun)], rows: &[(String, Row)]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let (Some(f), Some(i)) = (best_compute(compute, "fp32"), best_compute(compute, "int8")) {
        out.push((
            "ONNX Runtime alone, INT8 / FP32 (best of each)".into(),
            i / f,
        ));
    }
    let mut counts: Vec<usize> = rows.iter().map(|(_, r)| r.streams).collect();
    counts.dedup();
    for n in counts {
        if let (Some(f), Some(i)) = (
            row_fps(rows, "fp32", "vigil", n),
            row_fps(rows, "int8", "vigil", n),
        ) {
            out.push((
                format!("Vigil {n} stream(s), INT8 / FP32 (frames/s)"),
                i / f,
            ));
        }
        for side in ["fp32", "int8"] {
            if let (Some(v), Some(p)) = (
                row_fps(rows, side, "vigil", n),
                row_fps(rows, side, "peer-nospin", n),
            ) {
                out.push((
                    format!("Vigil / Python peer, both {side}, {n} stream(s)"),
                    v / p,
                ));
            }
        }
    }
    out
}

fn markdown(r: &Int8Report) -> String {
    let mut md = String::new();
    let q = &r.quantization;
    let d = &q["detection"];
    let _ = writeln!(
        md,
        "INT8 benchmark ({}; {} frames per stream, median of {})\n",
        r.machine.cpu, r.frames_per_stream, r.repeat
    );
    let _ = writeln!(
        md,
        "Quantization: {} frames of {} (calibration), {} held-out frames: FP32 {} boxes, INT8 {}, \
         matched {}: precision {:.3}, recall {:.3}, **F1 {:.3}**, score drift mean {:.4}; \
         model {:.1} MB -> {:.1} MB\n",
        q["calibration_frames"],
        q["calibration_media"],
        q["evaluation_frames"],
        d["reference"],
        d["candidate"],
        d["matched"],
        d["precision"].as_f64().unwrap_or(0.0),
        d["recall"].as_f64().unwrap_or(0.0),
        d["f1"].as_f64().unwrap_or(0.0),
        d["score_drift_mean"].as_f64().unwrap_or(0.0),
        q["models"][0]["fp32_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        q["models"][0]["int8_bytes"].as_f64().unwrap_or(0.0) / 1e6,
    );
    let _ = writeln!(
        md,
        "| model | row | streams | frames/s | CPU ms/frame | p99 ms |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    for (side, c) in &r.compute {
        let _ = writeln!(
            md,
            "| {side} | ONNX Runtime alone, batch {}{} | - | {:.1} | {:.1} | {:.1} |",
            c.batch,
            if c.spinning { ", spinning" } else { "" },
            c.fps(),
            c.cpu_s / c.frames as f64 * 1e3,
            c.p99_s * 1e3
        );
    }
    for (side, row) in &r.rows {
        let _ = writeln!(
            md,
            "| {side} | {} | {} | {:.1} | {} | {} |",
            row.name,
            row.streams,
            row.fps,
            row.cpu_ms_per_frame
                .map_or("-".into(), |v| format!("{v:.1}")),
            row.p99_ms.map_or("-".into(), |v| format!("{v:.1}"))
        );
    }
    let _ = writeln!(md);
    for (name, v) in &r.ratios {
        let _ = writeln!(md, "- {name}: **{v:.2}**");
    }
    md
}
