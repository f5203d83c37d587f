//! One inspection image item as `vigilimagesrc` loads it: format, header size checks against
//! the default `SizeLimits`, JPEG completeness, decoding to RGB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_core::items::{SizeLimits, decode};

fuzz_target!(|data: &[u8]| {
    let _ = decode("item-0001.png", data, SizeLimits::default());
});
