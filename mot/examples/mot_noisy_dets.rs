//! Writes the seeded noisy detections of a MOTChallenge ground truth as a MOTChallenge detection file
//! (`frame,-1,x,y,w,h,conf,-1,-1,-1`), so that other trackers (e.g. `scripts/trackers/peers.py`) can be
//! run on exactly the input Vigil's trackers get in `mot/tests/tracker_compare.rs`.
//!
//! ```sh
//! cargo run -p vigil-mot --example mot_noisy_dets -- tests/data/mot/TUD-Campus/gt.txt out/det-42.txt 42
//! ```
//!
//! Arguments: ground-truth file, output file, seed (default 42). The other rates are
//! [`NoiseConfig::default`]'s (miss 0.1, jitter 0.05, 0.5 false positives per frame, 640 x 480).
//!
//! With `--synthetic OBJECTS FRAMES` instead of a ground-truth file, the ground truth is a synthetic
//! 1920x1080 scene of OBJECTS boxes moving in straight lines and bouncing off the borders (to time
//! other trackers with as many objects per frame as `cargo bench -p vigil-core --bench trackers`):
//!
//! ```sh
//! cargo run -p vigil-mot --example mot_noisy_dets -- --synthetic 50 300 out/det-50.txt
//! ```

use std::process::ExitCode;

use vigil_core::rng::SplitMix64;
use vigil_mot::eval::write_detections;
use vigil_mot::format::read_ground_truth;
use vigil_mot::{MotRecord, NoiseConfig, Rect, noisy_detections};

/// `objects` boxes moving in straight lines in a 1920x1080 frame, bouncing off the borders.
fn synthetic(objects: u32, frames: u32) -> Vec<MotRecord> {
    let (fw, fh) = (1920.0, 1080.0);
    let mut rng = SplitMix64::new(7);
    let mut out = Vec::new();
    let mut bodies: Vec<[f64; 6]> = (0..objects)
        .map(|_| {
            let w = 30.0 + 50.0 * rng.uniform();
            let h = w * (1.8 + 0.8 * rng.uniform());
            [
                rng.uniform() * (fw - w),
                rng.uniform() * (fh - h),
                w,
                h,
                12.0 * rng.uniform() - 6.0,
                6.0 * rng.uniform() - 3.0,
            ]
        })
        .collect();
    for frame in 1..=frames {
        for (id, b) in bodies.iter_mut().enumerate() {
            b[0] += b[4];
            b[1] += b[5];
            if b[0] < 0.0 || b[0] + b[2] > fw {
                b[4] = -b[4];
                b[0] = b[0].clamp(0.0, fw - b[2]);
            }
            if b[1] < 0.0 || b[1] + b[3] > fh {
                b[5] = -b[5];
                b[1] = b[1].clamp(0.0, fh - b[3]);
            }
            out.push(MotRecord::new(
                frame,
                id as i64 + 1,
                Rect::new(b[0], b[1], b[2], b[3]),
                1.0,
            ));
        }
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--synthetic") {
        let (Some(Ok(objects)), Some(Ok(frames)), Some(out)) = (
            args.get(1).map(|s| s.parse::<u32>()),
            args.get(2).map(|s| s.parse::<u32>()),
            args.get(3),
        ) else {
            eprintln!("usage: mot_noisy_dets --synthetic OBJECTS FRAMES OUT.txt");
            return ExitCode::from(2);
        };
        let cfg = NoiseConfig {
            frame_width: 1920.0,
            frame_height: 1080.0,
            ..Default::default()
        };
        let dets = match noisy_detections(&synthetic(objects, frames), &cfg) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("mot_noisy_dets: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = write_detections(out, &dets) {
            eprintln!("mot_noisy_dets: {e}");
            return ExitCode::FAILURE;
        }
        let n: usize = dets.iter().map(|f| f.dets.len()).sum();
        println!(
            "{out}: {n} detections in {} frames (synthetic, {objects} objects)",
            dets.len()
        );
        return ExitCode::SUCCESS;
    }
    let (gt, out) = match (args.first(), args.get(1)) {
        (Some(g), Some(o)) if args.len() <= 3 => (g, o),
        _ => {
            eprintln!("usage: mot_noisy_dets GT.txt OUT.txt [SEED]");
            return ExitCode::from(2);
        }
    };
    let seed = match args.get(2).map(|s| s.trim().parse::<u64>()) {
        None => 42,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("mot_noisy_dets: seed '{}': {e}", args[2]);
            return ExitCode::from(2);
        }
    };
    let gt = match read_ground_truth(gt) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("mot_noisy_dets: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = NoiseConfig {
        seed,
        ..Default::default()
    };
    let frames = match noisy_detections(&gt, &cfg) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mot_noisy_dets: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_detections(out, &frames) {
        eprintln!("mot_noisy_dets: {e}");
        return ExitCode::FAILURE;
    }
    let n: usize = frames.iter().map(|f| f.dets.len()).sum();
    println!(
        "{out}: {n} detections in {} frames (seed {seed})",
        frames.len()
    );
    ExitCode::SUCCESS
}
