//! Writes the seeded noisy detections of a MOTChallenge ground truth as a MOTChallenge detection file
//! (`frame,-1,x,y,w,h,conf,-1,-1,-1`), so that other trackers (e.g. `scripts/trackers/peers.py`) can be
//! run on exactly the input Vigil's trackers get in `core/tests/tracker_compare.rs`.
//!
//! ```sh
//! cargo run -p vigil-core --example mot_noisy_dets -- tests/data/mot/TUD-Campus/gt.txt out/det-42.txt 42
//! ```
//!
//! Arguments: ground-truth file, output file, seed (default 42). The other rates are
//! [`NoiseConfig::default`]'s (miss 0.1, jitter 0.05, 0.5 false positives per frame, 640 x 480).

use std::process::ExitCode;

use vigil_core::mot::eval::write_detections;
use vigil_core::mot::format::read_ground_truth;
use vigil_core::mot::{NoiseConfig, noisy_detections};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
