//! MOTChallenge files (ground truth, detections, tracker output) as `mot::read_mot` reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_mot::format::{format_mot, group_by_frame, parse_mot};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(records) = parse_mot(text, "fuzz/gt.txt") {
        let _ = group_by_frame(&records);
        let _ = format_mot(&records);
    }
});
