//! `vigilosd blur-labels` (privacy mode) through `gst_check::Harness`: the boxes of objects with those
//! labels are blurred before drawing, everything else is drawn as usual.

use gst::prelude::*;
use gst_video::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::objects::{BBox, FrameObjects, Object};

const W: u32 = 160;
const H: u32 = 120;

fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst::init");
        gstvigil::plugin_register_static().expect("register the vigil plugin");
    });
}

/// A noisy frame (pseudo-random bytes) with a face at (40, 30) 40x48 and a person box elsewhere.
fn frame(info: &gst_video::VideoInfo) -> gst::Buffer {
    let mut s = 7u32;
    let data: Vec<u8> = (0..info.size())
        .map(|_| {
            s = s.wrapping_mul(1103515245).wrapping_add(12345);
            (s >> 16) as u8
        })
        .collect();
    let mut buffer = gst::Buffer::from_mut_slice(data);
    let mut objects = FrameObjects::new(W, H);
    objects.objects.push(Object::new(
        0,
        "person",
        0.9,
        BBox::new(100.0, 20.0, 40.0, 90.0),
    ));
    let mut face = Object::new(0, "face", 0.8, BBox::new(40.0, 30.0, 40.0, 48.0));
    face.id = 1;
    face.parent = Some(0);
    objects.objects.push(face);
    VigilMeta::add(buffer.get_mut().unwrap(), objects);
    buffer
}

/// Variance of the first byte of the pixels of `[x0, x1) x [y0, y1)` of plane 0.
fn variance(
    buf: &gst::Buffer,
    info: &gst_video::VideoInfo,
    r: (usize, usize, usize, usize),
) -> f64 {
    let f = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), info).unwrap();
    let (stride, bpp) = (
        f.plane_stride()[0] as usize,
        info.format_info().pixel_stride()[0] as usize,
    );
    let data = f.plane_data(0).unwrap();
    let v: Vec<f64> = (r.1..r.3)
        .flat_map(|y| (r.0..r.2).map(move |x| (y, x)))
        .map(|(y, x)| data[y * stride + x * bpp] as f64)
        .collect();
    let m = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64
}

fn run(
    format: gst_video::VideoFormat,
    blur: &str,
) -> (gst::Buffer, gst::Buffer, gst_video::VideoInfo) {
    init();
    let info = gst_video::VideoInfo::builder(format, W, H).build().unwrap();
    let mut h = gst_check::Harness::new("vigilosd");
    h.element().unwrap().set_property("blur-labels", blur);
    h.set_src_caps(info.to_caps().unwrap());
    let input = frame(&info);
    let out = h.push_and_pull(input.clone()).unwrap();
    (input, out, info)
}

#[test]
fn blurs_only_the_listed_labels() {
    // Inside the face box, away from its outline (2 px) and label.
    let face = (44, 34, 76, 74);
    // Inside the person box, away from its outline and from the face's label line above the face.
    let person = (104, 32, 136, 106);
    // Background far from both boxes.
    let background = (0, 100, 30, 120);
    for format in [
        gst_video::VideoFormat::I420,
        gst_video::VideoFormat::Nv12,
        gst_video::VideoFormat::Rgba,
        gst_video::VideoFormat::Bgr,
    ] {
        let (input, out, info) = run(format, " face ");
        let before = variance(&input, &info, face);
        let after = variance(&out, &info, face);
        eprintln!("{format:?}: face variance {before:.0} -> {after:.1}");
        assert!(after < 0.05 * before, "{format:?}: {before} -> {after}");
        for r in [person, background] {
            assert_eq!(
                variance(&out, &info, r),
                variance(&input, &info, r),
                "{format:?}: region {r:?} changed"
            );
        }
        // Without blur-labels the face keeps its details.
        let (input, out, info) = run(format, "");
        assert_eq!(variance(&out, &info, face), variance(&input, &info, face));
        // Another label list: the person is blurred, the face is not.
        let (input, out, info) = run(format, "car,person");
        assert!(variance(&out, &info, person) < 0.05 * variance(&input, &info, person));
        assert_eq!(variance(&out, &info, face), variance(&input, &info, face));
    }
}
