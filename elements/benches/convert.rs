//! `cargo bench -p gst-plugin-vigil --bench convert`: Vigil's YUV → packed RGB conversion
//! (`vigil_engine::frame::to_packed4`, what `vigilinfer` runs for NV12 and I420 frames and what the GPU
//! kernels reproduce) against the baseline it replaced, `gst_video::VideoConverter` (ORC, one thread),
//! on the same frames in the same run: SD (768x576, vtest.avi's size) and HD (1920x1080), NV12 and
//! I420, into BGRx. Prints milliseconds per frame (median of 7 runs of 50 conversions) and the ratio.

use std::time::Instant;

use vigil_engine::frame::{FrameFormat, FrameLayout, YuvMatrix, to_packed4};
use vigil_engine::preprocess::ColorOrder;

/// Median of 7 timings of `n` calls of `f`, in ms per call.
fn time(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..7)
        .map(|_| {
            let s = Instant::now();
            for _ in 0..n {
                f();
            }
            s.elapsed().as_secs_f64() * 1e3 / n as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[3]
}

fn main() {
    gst::init().expect("GStreamer");
    println!("| frame | VideoConverter ms | Vigil ms | VideoConverter / Vigil |");
    println!("| --- | --- | --- | --- |");
    for (w, h) in [(768u32, 576u32), (1920, 1080)] {
        for (gst_format, format) in [
            (gst_video::VideoFormat::I420, FrameFormat::I420),
            (gst_video::VideoFormat::Nv12, FrameFormat::Nv12),
        ] {
            let info = gst_video::VideoInfo::builder(gst_format, w, h)
                .build()
                .expect("input info");
            let out_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgrx, w, h)
                .build()
                .expect("output info");
            // Smooth content with edges, as decoded video has.
            let mut input = gst::Buffer::with_size(info.size()).expect("input buffer");
            {
                let mut m = input.get_mut().unwrap().map_writable().unwrap();
                for (i, v) in m.iter_mut().enumerate() {
                    let (x, y) = (i % w as usize, i / w as usize);
                    *v = ((x / 3 + y / 5) % 220 + 16) as u8;
                }
            }
            let mut output = gst::Buffer::with_size(out_info.size()).expect("output buffer");
            let converter =
                gst_video::VideoConverter::new(&info, &out_info, None).expect("a converter");
            let theirs = time(50, || {
                let src =
                    gst_video::VideoFrameRef::from_buffer_ref_readable(&input, &info).unwrap();
                let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(
                    output.get_mut().unwrap(),
                    &out_info,
                )
                .unwrap();
                converter.frame_ref(&src, &mut dst);
            });
            let layout = FrameLayout::packed(format, w, h);
            let map = input.map_readable().unwrap();
            let mut packed = vec![0u8; (4 * w * h) as usize];
            let matrix = YuvMatrix::default_for(h);
            let ours = time(50, || {
                to_packed4(&map, &layout, &matrix, ColorOrder::Bgr, &mut packed).unwrap();
            });
            println!(
                "| {w}x{h} {} | {theirs:.3} | {ours:.3} | {:.2} |",
                format.name(),
                theirs / ours
            );
        }
    }
}
