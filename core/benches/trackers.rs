//! Throughput of every tracker kind, single-threaded, on the same synthetic scene, in one run: frames per
//! second and the ratio to the IoU tracker; plus how well each kept the identities of the scene.
//!
//! `cargo bench -p vigil-core --bench trackers` (add `-- --quick`, or set `VIGIL_BENCH_QUICK=1`, for a
//! short run; `VIGIL_BENCH_FRAMES=N` sets the number of frames, default 3000).
//!
//! The scene is SYNTHETIC (deterministic pseudo-random): 50 objects in a 1920x1080 frame, moving with a
//! slowly changing velocity and bouncing off the borders, of three classes and person- or car-like sizes.
//! Each frame's detections are the objects' boxes with ±2 px jitter; 5 % of them are missed, 10 % have a
//! low confidence (0.15–0.45, as for partly occluded objects), about one false positive appears per frame,
//! and 0.2 % of the objects per frame leave and are replaced by a new one elsewhere. Two 80 px wide
//! vertical pillars occlude the objects whose centre is behind them: 70 % of those detections are missed,
//! the others have a low confidence, so crossing a pillar is a gap of several frames. Two runs: inference on
//! every frame (`track`: update and coasting, each kind's default `coast_frames`), and inference on every
//! third frame (`predict` on the others).
//!
//! Speed is measured twice for each run: in CPU time of the benchmark's thread (`CLOCK_THREAD_CPUTIME_ID`,
//! so that other processes competing for the cores do not count; the `frames/s` column) and in wall-clock
//! time (`wall frames/s`, what a dedicated core would see only on an idle machine).
//!
//! The identity columns compare the track ids with the scene's ground truth: `id switches` counts the
//! times an object's detection got a different id than its previous one, `tracked` is the share of the
//! real objects' detections that carry an id, `fp ids` the share of false positives that got one.

use std::hint::black_box;
use std::time::Instant;

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

use vigil_core::objects::{BBox, Object};
use vigil_core::tracker::{self, TrackerKind, TrackerParams};

const OBJECTS: usize = 50;
const WIDTH: f32 = 1920.0;
const HEIGHT: f32 = 1080.0;
const LABELS: [&str; 3] = ["person", "car", "bicycle"];
/// Columns (x ranges) of the frame where objects are occluded.
const PILLARS: [(f32, f32); 2] = [(600.0, 680.0), (1300.0, 1380.0)];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next()
    }
}

struct Body {
    gt: u32,
    class_id: i32,
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    vx: f32,
    vy: f32,
}

fn spawn(rng: &mut Rng, gt: u32) -> Body {
    let class_id = (rng.next() * 3.0) as i32 % 3;
    let (w, h) = if class_id == 1 {
        let w = rng.range(60.0, 140.0);
        (w, w * rng.range(0.5, 0.8))
    } else {
        let w = rng.range(25.0, 60.0);
        (w, w * rng.range(1.8, 2.6))
    };
    Body {
        gt,
        class_id,
        x: rng.range(0.0, WIDTH - w),
        y: rng.range(0.0, HEIGHT - h),
        w,
        h,
        vx: rng.range(-6.0, 6.0),
        vy: rng.range(-3.0, 3.0),
    }
}

/// A frame's detections and, for each, the ground-truth object (`None` for false positives).
struct Frame {
    objects: Vec<Object>,
    gt: Vec<Option<u32>>,
}

fn scene(frames: usize) -> Vec<Frame> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next_gt = 0u32;
    let mut bodies: Vec<Body> = (0..OBJECTS)
        .map(|_| {
            next_gt += 1;
            spawn(&mut rng, next_gt)
        })
        .collect();
    let mut out = Vec::with_capacity(frames);
    for _ in 0..frames {
        let mut objects = Vec::with_capacity(OBJECTS + 2);
        let mut gt = Vec::with_capacity(OBJECTS + 2);
        for b in &mut bodies {
            if rng.next() < 0.002 {
                next_gt += 1;
                *b = spawn(&mut rng, next_gt);
            }
            b.vx = (b.vx + rng.range(-0.2, 0.2)).clamp(-8.0, 8.0);
            b.vy = (b.vy + rng.range(-0.1, 0.1)).clamp(-4.0, 4.0);
            b.x += b.vx;
            b.y += b.vy;
            if b.x < 0.0 || b.x + b.w > WIDTH {
                b.vx = -b.vx;
                b.x = b.x.clamp(0.0, WIDTH - b.w);
            }
            if b.y < 0.0 || b.y + b.h > HEIGHT {
                b.vy = -b.vy;
                b.y = b.y.clamp(0.0, HEIGHT - b.h);
            }
            // Behind a pillar: mostly missed, else weakly detected.
            let cx = b.x + b.w / 2.0;
            let occluded = PILLARS.iter().any(|&(a, z)| (a..z).contains(&cx));
            if rng.next() < 0.05 || (occluded && rng.next() < 0.7) {
                continue;
            }
            let conf = if occluded || rng.next() < 0.1 {
                rng.range(0.15, 0.45)
            } else {
                rng.range(0.6, 0.95)
            };
            let bbox = BBox::new(
                b.x + rng.range(-2.0, 2.0),
                b.y + rng.range(-2.0, 2.0),
                b.w * rng.range(0.98, 1.02),
                b.h * rng.range(0.98, 1.02),
            );
            objects.push(Object::new(
                b.class_id,
                LABELS[b.class_id as usize],
                conf,
                bbox,
            ));
            gt.push(Some(b.gt));
        }
        if rng.next() < 0.9 {
            let w = rng.range(20.0, 80.0);
            let bbox = BBox::new(
                rng.range(0.0, WIDTH - w),
                rng.range(0.0, HEIGHT - 2.0 * w),
                w,
                w * 2.0,
            );
            objects.push(Object::new(0, LABELS[0], rng.range(0.3, 0.7), bbox));
            gt.push(None);
        }
        for (i, o) in objects.iter_mut().enumerate() {
            o.id = i as u32;
        }
        out.push(Frame { objects, gt });
    }
    out
}

#[derive(Default)]
struct Quality {
    switches: u64,
    tracked: u64,
    real: u64,
    fp: u64,
    fp_ids: u64,
}

/// Runs `kind` over `frames` (inference on every `interval`-th frame); returns frames/s in thread CPU
/// time and in wall-clock time, and the identity figures of the inferred frames.
fn run(kind: TrackerKind, frames: &mut [Frame], interval: usize) -> (f64, f64, Quality) {
    let mut t = tracker::build(kind, &TrackerParams::default());
    let mut ids: Vec<Option<u64>> = vec![None; frames.iter().map(|f| f.objects.len()).sum()];
    let start = Instant::now();
    let cpu_start = thread_cpu_seconds();
    let mut k = 0;
    for (i, f) in frames.iter_mut().enumerate() {
        if i % interval == 0 {
            // `track`: the coasting tracks (each kind's default `coast_frames`) appended after the
            // detections, then dropped so that the scene stays the same for the next run.
            let n = f.objects.len();
            t.track(&mut f.objects);
            for o in &f.objects[..n] {
                ids[k] = o.track_id;
                k += 1;
            }
            f.objects.truncate(n);
        } else {
            black_box(t.predict());
            k += f.objects.len();
        }
    }
    let cpu = thread_cpu_seconds() - cpu_start;
    let secs = start.elapsed().as_secs_f64();
    let mut q = Quality::default();
    let mut last: std::collections::HashMap<u32, u64> = Default::default();
    let mut k = 0;
    for (i, f) in frames.iter().enumerate() {
        for gt in &f.gt {
            let id = ids[k];
            k += 1;
            if i % interval != 0 {
                continue;
            }
            match gt {
                None => {
                    q.fp += 1;
                    q.fp_ids += u64::from(id.is_some());
                }
                Some(g) => {
                    q.real += 1;
                    if let Some(id) = id {
                        q.tracked += 1;
                        if last.insert(*g, id).is_some_and(|prev| prev != id) {
                            q.switches += 1;
                        }
                    }
                }
            }
        }
    }
    (frames.len() as f64 / cpu, frames.len() as f64 / secs, q)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("VIGIL_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n = std::env::var("VIGIL_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(if quick { 500 } else { 3000 });
    let mut frames = scene(n);
    let dets: usize = frames.iter().map(|f| f.objects.len()).sum();
    println!(
        "trackers: {n} synthetic frames, {OBJECTS} objects, {:.1} detections per frame, single thread",
        dets as f64 / n as f64
    );
    for interval in [1, 3] {
        println!();
        if interval == 1 {
            println!("inference on every frame (update on each frame)");
        } else {
            println!("inference on every {interval}rd frame (predict on the others)");
        }
        println!(
            "| tracker | frames/s | µs/frame | vs iou | wall frames/s | id switches | tracked | fp ids |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        let mut iou_fps = None;
        for kind in TrackerKind::ALL {
            // one warm-up pass, then the best of three
            let _ = run(kind, &mut frames, interval);
            let (mut best, mut best_wall) = (0.0f64, 0.0f64);
            let mut quality = Quality::default();
            for _ in 0..3 {
                let (fps, wall, q) = run(kind, &mut frames, interval);
                best = best.max(fps);
                best_wall = best_wall.max(wall);
                quality = q;
            }
            let base = *iou_fps.get_or_insert(best);
            println!(
                "| {kind} | {best:.0} | {:.1} | {:.2} | {best_wall:.0} | {} | {:.1} % | {:.1} % |",
                1e6 / best,
                best / base,
                quality.switches,
                100.0 * quality.tracked as f64 / quality.real.max(1) as f64,
                100.0 * quality.fp_ids as f64 / quality.fp.max(1) as f64,
            );
        }
    }
}
