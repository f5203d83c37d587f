//! Inspection throughput (issue 6, acceptance 3): items/s on the generated label set, per item
//! decode the JPEG → OCR (PP-OCR det → cls → rec through the model server) → rules, with the share
//! of time in detection, classification, recognition and the rest, and baselines measured in the
//! same run.
//!
//! `cargo bench -p vigil-core --bench inspection` (add `-- --quick`, or set `VIGIL_BENCH_QUICK=1`,
//! for 40 items; `VIGIL_BENCH_ITEMS=N` sets the number of items; `VIGIL_BENCH_SET=DIR` the set,
//! default `samples/media/inspection` made by `make samples-inspection`, i.e. `vigil-labelgen
//! --seed 7 --count 200`; `VIGIL_MODELS_DIR=DIR` another model repository, e.g. one serving an INT8
//! version made by `vigil models quantize`).
//!
//! Reported:
//! - per number of threads (1, 2; each thread takes the next item): items/s, p50/p99 latency per
//!   item, process CPU time per item, the shares of time, the recogniser's mean batch size (does the
//!   model server batch crops across items?) and how many verdicts agree with the set's truth;
//! - detection = conversion and size limits + input resize/normalisation + the model request + DB
//!   post-processing; classification = inputs + requests; recognition = perspective crops + inputs +
//!   requests (CTC decoding runs in the response); rest = JPEG decoding, rules, the rest of OCR;
//! - baseline "ONNX Runtime alone": the det, cls and rec models run by `OnnxModel` directly on the
//!   very tensors the engine fed them (captured in the 1-thread pass; rec crops of one item
//!   stacked by equal width as the engine's groups are), with the engine's intra-op thread count;
//!   the ratio shows what Vigil's pre/post-processing and the model server add;
//! - peer: `rapidocr-onnxruntime` (Python, `~/.cache/vigil/venv` or `$VIGIL_VENV_PYTHON`) decoding
//!   (Pillow) and reading the same images in one process, after one warm-up image; skipped with a
//!   note when the venv is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vigil_core::inspect::{Inspector, Rules};
use vigil_core::items::{self, Loaded, SizeLimits};
use vigil_core::objects::{FrameObjects, Object, Verdict};
use vigil_core::ocr::{ImageView, OcrEngine, OcrParams, OcrTensors, OcrTimings, PixelFormat};
use vigil_engine::runtime::OnnxModel;
use vigil_engine::{ModelHandle, ModelServer};

/// The shipped rules (`configs/inspection/rules.yaml`, the ones `configs/inspection.yaml` and the
/// acceptance test use), with the lookup and the reference date pointed at the set being measured.
const RULES_FILE: &str = "configs/inspection/rules.yaml";
const RULES_LOTS: &str = "../../samples/media/inspection/lots.csv";

const PEER: &str = r#"
import json, sys, time
import numpy as np
from PIL import Image
from rapidocr_onnxruntime import RapidOCR
engine = RapidOCR()
paths = sys.argv[1:]
def one(p):
    rgb = np.asarray(Image.open(p).convert("RGB"))
    result, _ = engine(np.ascontiguousarray(rgb[:, :, ::-1]))
    return len(result or [])
one(paths[0])
t = time.perf_counter()
c0 = time.process_time()
lines = sum(one(p) for p in paths)
print(json.dumps({"items": len(paths), "seconds": time.perf_counter() - t,
                  "cpu": time.process_time() - c0, "lines": lines}))
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Item {
    id: String,
    path: PathBuf,
    bytes: Vec<u8>,
    verdict: Option<Verdict>,
}

/// The set's items (read into memory) with their true verdicts, and its reference date.
fn load_set(dir: &Path, limit: usize) -> (Vec<Item>, String) {
    let set: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("set.json")).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (make the set with `make samples-inspection`, or set VIGIL_BENCH_SET)",
                dir.join("set.json").display()
            )
        }))
        .expect("set.json");
    let reference = set["reference_date"]
        .as_str()
        .expect("set.json: reference_date")
        .to_owned();
    let truth = std::fs::read_to_string(dir.join("truth.jsonl")).expect("truth.jsonl");
    let items = truth
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit)
        .map(|l| {
            let t: serde_json::Value = serde_json::from_str(l).expect("truth.jsonl line");
            let file = t["file"].as_str().expect("truth: file");
            let path = dir.join(file);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Item {
                id: t["id"].as_str().unwrap_or(file).to_owned(),
                path,
                bytes,
                verdict: match t["verdict"].as_str() {
                    Some("PASS") => Some(Verdict::Pass),
                    Some("FAIL") => Some(Verdict::Fail),
                    _ => None,
                },
            }
        })
        .collect();
    (items, reference)
}

/// Process CPU time (user + system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One item's measurements.
#[derive(Default, Clone)]
struct Record {
    latency: Duration,
    decode: Duration,
    rules: Duration,
    ocr: OcrTimings,
    lines: usize,
    verdict_ok: bool,
    /// For a verdict that disagrees with the truth: the item, the lines read and the failures.
    disagreement: Option<String>,
}

struct Bench {
    engine: OcrEngine,
    inspector: Inspector,
}

impl Bench {
    fn item(&self, item: &Item, capture: Option<&mut OcrTensors>) -> Record {
        let t0 = Instant::now();
        let frame = match items::decode(&item.id, &item.bytes, SizeLimits::default()) {
            Loaded::Image(f) => f,
            Loaded::Bad(why) => panic!("{}: {why}", item.path.display()),
        };
        let decode = t0.elapsed();
        let view = ImageView {
            width: frame.width as usize,
            height: frame.height as usize,
            stride: frame.width as usize * 3,
            format: PixelFormat::Rgb,
            data: &frame.data,
        };
        let result = match capture {
            Some(c) => self.engine.read_capturing(&view, None, c),
            None => self.engine.read(&view, None),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", item.path.display()));
        let t1 = Instant::now();
        let mut objects = FrameObjects::new(frame.width, frame.height);
        for (i, line) in result.lines.iter().enumerate() {
            let mut o = Object::new(0, "text", line.score, line.bbox);
            o.id = i as u32;
            o.text = Some(line.text.clone());
            o.model = self.engine.rec_model().to_owned();
            objects.objects.push(o);
        }
        let inspection = self.inspector.inspect(&objects);
        let rules = t1.elapsed();
        let verdict_ok = item.verdict == Some(inspection.verdict);
        let disagreement = (!verdict_ok).then(|| {
            let texts: Vec<&str> = result.lines.iter().map(|l| l.text.as_str()).collect();
            let failures: Vec<String> = inspection
                .failures
                .iter()
                .map(|f| format!("{}: {}", f.rule, f.reason))
                .collect();
            format!(
                "{} truth {:?}: read {texts:?}; failures {failures:?}",
                item.id, item.verdict
            )
        });
        Record {
            latency: t0.elapsed(),
            decode,
            rules,
            lines: result.lines.len(),
            verdict_ok,
            disagreement,
            ocr: result.timings,
        }
    }
}

/// `(requests, executions)` of a model so far.
fn batches(handle: &ModelHandle) -> (u64, u64) {
    let s = handle.current().stats();
    s.batch_sizes
        .iter()
        .fold((0, 0), |(r, e), (&size, &n)| (r + size as u64 * n, e + n))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Pass {
    threads: usize,
    items_per_s: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_item: Duration,
    shares: [(&'static str, Duration); 4],
    detail: Vec<(&'static str, Duration)>,
    rec_batch: f64,
    agree: usize,
    n: usize,
    lines: usize,
}

fn run_pass(bench: &Arc<Bench>, set: &Arc<Vec<Item>>, threads: usize, rec: &ModelHandle) -> Pass {
    let next = Arc::new(AtomicUsize::new(0));
    let records = Arc::new(Mutex::new(Vec::with_capacity(set.len())));
    let (r0, e0) = batches(rec);
    let c0 = cpu_time();
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (bench, set, next, records) =
                (bench.clone(), set.clone(), next.clone(), records.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = set.get(i) else { break };
                    let r = bench.item(item, None);
                    records.lock().unwrap().push(r);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("bench thread");
    }
    let wall = start.elapsed();
    let cpu = cpu_time() - c0;
    let (r1, e1) = batches(rec);
    let records = records.lock().unwrap().clone();
    let n = records.len();
    let mut lat: Vec<Duration> = records.iter().map(|r| r.latency).collect();
    lat.sort();
    let mut t = OcrTimings::default();
    let (mut decode, mut rules) = (Duration::ZERO, Duration::ZERO);
    for r in &records {
        t.add(&r.ocr);
        decode += r.decode;
        rules += r.rules;
    }
    let detection = t.prepare + t.det_pre + t.det + t.det_post;
    let classification = t.cls_pre + t.cls;
    let recognition = t.crop + t.rec_pre + t.rec;
    let rest = decode + rules + t.other;
    Pass {
        threads,
        items_per_s: n as f64 / wall.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        cpu_per_item: cpu / n.max(1) as u32,
        shares: [
            ("detection", detection),
            ("classification", classification),
            ("recognition", recognition),
            ("rest", rest),
        ],
        detail: vec![
            ("jpeg decode", decode),
            ("to BGR + size limits", t.prepare),
            ("det input (resize, normalise)", t.det_pre),
            ("det model (server + ORT)", t.det),
            ("det DB post-processing", t.det_post),
            ("perspective crops", t.crop),
            ("cls inputs", t.cls_pre),
            ("cls model", t.cls),
            ("rec inputs", t.rec_pre),
            ("rec model + CTC", t.rec),
            ("ocr other", t.other),
            ("rules", rules),
        ],
        rec_batch: if e1 > e0 {
            (r1 - r0) as f64 / (e1 - e0) as f64
        } else {
            0.0
        },
        agree: records.iter().filter(|r| r.verdict_ok).count(),
        n,
        lines: records.iter().map(|r| r.lines).sum(),
    }
}

/// ONNX Runtime alone on the captured tensors: `(seconds, runs)`.
fn ort_alone(
    path: &Path,
    threads: usize,
    tensors: &[(Vec<i64>, Vec<f32>)],
    stack: usize,
) -> (f64, usize) {
    let mut model =
        OnnxModel::load(path, threads).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Consecutive tensors of one shape, up to `stack` of them, make one batch.
    let mut batches: Vec<(Vec<i64>, Vec<f32>)> = Vec::new();
    for (shape, data) in tensors {
        match batches.last_mut() {
            Some((s, d)) if s[1..] == shape[..] && (s[0] as usize) < stack => {
                s[0] += 1;
                d.extend_from_slice(data);
            }
            _ => {
                let mut s = vec![1];
                s.extend_from_slice(shape);
                batches.push((s, data.clone()));
            }
        }
    }
    // Warm-up on the first batch.
    if let Some((s, d)) = batches.first() {
        model.run(d, s, |_| ()).expect("warm-up run");
    }
    let t = Instant::now();
    let mut sink = 0f32;
    for (s, d) in &batches {
        sink += model
            .run(d, s, |outs| outs.first().map_or(0.0, |o| o.data[0]))
            .expect("ORT run");
    }
    std::hint::black_box(sink);
    (t.elapsed().as_secs_f64(), batches.len())
}

fn peer(items: &[Item]) -> Result<serde_json::Value, String> {
    let python = match std::env::var_os("VIGIL_VENV_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").ok_or("HOME is not set")?)
            .join(".cache/vigil/venv/bin/python"),
    };
    if !python.is_file() {
        return Err(format!(
            "{} is missing (scripts/setup.sh venv)",
            python.display()
        ));
    }
    let out = Command::new(&python)
        .arg("-c")
        .arg(PEER)
        .args(items.iter().map(|i| &i.path))
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).map_err(|e| format!("{e}: {text}"))
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("VIGIL_BENCH_QUICK").is_ok_and(|v| v == "1");
    let count = env_number("VIGIL_BENCH_ITEMS").unwrap_or(if quick { 40 } else { 200 });
    let set_dir = std::env::var_os("VIGIL_BENCH_SET")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("samples/media/inspection"));
    let (items, reference) = load_set(&set_dir, count);
    assert!(!items.is_empty(), "{}: no items", set_dir.display());
    let set = Arc::new(items);
    let models = std::env::var_os("VIGIL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"));
    let engine = OcrEngine::new(
        &models,
        "ppocr_det",
        Some("ppocr_cls"),
        "ppocr_rec",
        OcrParams::default(),
    )
    .unwrap_or_else(|e| panic!("OCR models in {}: {e}", models.display()));
    let rules_path = repo().join(RULES_FILE);
    let shipped = std::fs::read_to_string(&rules_path)
        .unwrap_or_else(|e| panic!("{}: {e}", rules_path.display()));
    assert!(
        shipped.contains(RULES_LOTS) && shipped.contains("reference_date: "),
        "{}: no lookup {RULES_LOTS} or reference_date to point at the set",
        rules_path.display()
    );
    let rules_text: String = shipped
        .replace(RULES_LOTS, &set_dir.join("lots.csv").to_string_lossy())
        .lines()
        .map(|l| match l.starts_with("reference_date: ") {
            true => format!("reference_date: {reference}\n"),
            false => format!("{l}\n"),
        })
        .collect();
    let rules = Rules::parse(
        &rules_text,
        &rules_path.to_string_lossy(),
        rules_path.parent().unwrap(),
    )
    .expect("rules");
    let bench = Arc::new(Bench {
        engine,
        inspector: Inspector::new(rules),
    });
    let server = ModelServer::global();
    let acquire = |m: &str| server.acquire(&models, m, None).expect("model");
    let (det, cls, rec) = (
        acquire("ppocr_det"),
        acquire("ppocr_cls"),
        acquire("ppocr_rec"),
    );
    let intra = det
        .current()
        .instances()
        .first()
        .map_or(1, |i| i.intra_threads);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "inspection bench: {} items of {} (reference date {reference}), {cores} cores, load {}, ORT intra-op threads {intra}",
        set.len(),
        set_dir.display(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Warm-up, and the model inputs of every item for the baseline.
    let mut tensors = OcrTensors::default();
    for item in set.iter().take(3) {
        bench.item(item, None);
    }
    for item in set.iter() {
        bench.item(item, Some(&mut tensors));
    }

    let passes: Vec<Pass> = [1, 2]
        .into_iter()
        .map(|t| run_pass(&bench, &set, t, &rec))
        .collect();
    if std::env::var("VIGIL_BENCH_VERBOSE").is_ok_and(|v| v == "1") {
        for item in set.iter() {
            if let Some(d) = bench.item(item, None).disagreement {
                println!("disagrees: {d}");
            }
        }
    }
    for p in &passes {
        let total: Duration = p.shares.iter().map(|s| s.1).sum();
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12);
        println!(
            "\n{} thread(s): {:.2} items/s, latency p50 {:.1} ms p99 {:.1} ms, CPU {:.1} ms/item, rec mean batch {:.2}, {} lines, verdicts agreeing with truth {}/{}",
            p.threads,
            p.items_per_s,
            ms(p.p50),
            ms(p.p99),
            ms(p.cpu_per_item),
            p.rec_batch,
            p.lines,
            p.agree,
            p.n
        );
        println!(
            "  shares: {}",
            p.shares
                .iter()
                .map(|(n, d)| format!("{n} {:.1} %", pct(*d)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (name, d) in &p.detail {
            println!(
                "    {name:<32} {:>8.2} ms/item {:>5.1} %",
                ms(*d) / p.n as f64,
                pct(*d)
            );
        }
    }

    // Baselines: ONNX Runtime alone on the same tensors.
    let one = &passes[0];
    let n = set.len() as f64;
    let mut ort_total = 0.0;
    println!("\nONNX Runtime alone on the same inputs ({intra} intra-op threads):");
    for (name, handle, t, stack) in [
        ("ppocr_det", &det, &tensors.det, 1),
        ("ppocr_cls", &cls, &tensors.cls, 6),
        ("ppocr_rec", &rec, &tensors.rec, 6),
    ] {
        let path = handle.current().model_path().to_path_buf();
        let (s, runs) = ort_alone(&path, intra, t, stack);
        ort_total += s;
        println!(
            "  {name}: {:.2} ms/item ({} inputs in {runs} runs)",
            s * 1e3 / n,
            t.len()
        );
    }
    let one_item = 1.0 / one.items_per_s;
    let model_names = ["det model (server + ORT)", "cls model", "rec model + CTC"];
    let own: Duration = one
        .detail
        .iter()
        .filter(|(name, _)| !model_names.contains(name))
        .map(|d| d.1)
        .sum();
    let served: Duration = one
        .detail
        .iter()
        .filter(|(name, _)| model_names.contains(name))
        .map(|d| d.1)
        .sum();
    println!(
        "  models alone {:.2} ms/item = {:.1} items/s; 1 thread: the full item {:.2} ms (ratio {:.2}), the models through the server {:.2} ms (ratio {:.2}), Vigil's own processing (decode, pre/post-processing, crops, rules) {:.2} ms = {:.1} % of the models-alone time",
        ort_total * 1e3 / n,
        n / ort_total,
        one_item * 1e3,
        one_item / (ort_total / n),
        ms(served) / n,
        served.as_secs_f64() / ort_total,
        ms(own) / n,
        100.0 * own.as_secs_f64() / ort_total
    );

    // Peer.
    match peer(&set) {
        Ok(v) => {
            let ips =
                v["items"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(f64::NAN);
            println!(
                "\npeer rapidocr-onnxruntime (Python, same images, 1 thread of calls): {ips:.2} items/s, CPU {:.1} ms/item, {} lines; Vigil 1 thread / peer = {:.2}, 2 threads / peer = {:.2}",
                v["cpu"].as_f64().unwrap_or(0.0) * 1e3 / n,
                v["lines"],
                one.items_per_s / ips,
                passes[1].items_per_s / ips
            );
        }
        Err(e) => println!("\npeer rapidocr-onnxruntime: not run: {e}"),
    }
}
