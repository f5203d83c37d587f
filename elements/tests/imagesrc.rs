//! `vigilimagesrc`: one buffer per file in order, item ids, bad files as error items with placeholder
//! frames, caps changes, end-of-stream, loop, a watched folder, and a missing folder.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use gst::prelude::*;
use gstvigil::meta::VigilMeta;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigilimagesrc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn harness(location: &Path, props: &[(&str, glib::Value)]) -> gst_check::Harness {
    common::init();
    let mut h = gst_check::Harness::new("vigilimagesrc");
    let e = h.element().unwrap();
    e.set_property("location", location.to_str().unwrap());
    for (k, v) in props {
        e.set_property_from_value(k, v);
    }
    h.play();
    h
}

use gst::glib;

/// What one buffer carried.
#[derive(Debug)]
struct Item {
    id: String,
    error: Option<String>,
    width: u32,
    height: u32,
    pts: gst::ClockTime,
    /// Red of the pixel at (w/2, h/2).
    centre: [u8; 3],
}

fn item(buffer: &gst::Buffer) -> Item {
    let meta = buffer
        .meta::<VigilMeta>()
        .expect("every buffer has a VigilMeta");
    let f = meta.frame();
    let it = f.item.clone().expect("every buffer has an item");
    let stride = (f.width as usize * 3).next_multiple_of(4);
    assert_eq!(
        buffer.size(),
        stride * f.height as usize,
        "RGB frame size of {}",
        it.id
    );
    let map = buffer.map_readable().unwrap();
    let (x, y) = (f.width as usize / 2, f.height as usize / 2);
    let p = y * stride + x * 3;
    Item {
        id: it.id,
        error: it.error,
        width: f.width,
        height: f.height,
        pts: buffer.pts().unwrap(),
        centre: [map[p], map[p + 1], map[p + 2]],
    }
}

fn caps_sizes(h: &mut gst_check::Harness) -> Vec<(i32, i32)> {
    let mut sizes = Vec::new();
    while let Some(ev) = h.try_pull_event() {
        if let gst::EventView::Caps(c) = ev.view() {
            let s = c.caps().structure(0).unwrap();
            assert_eq!(s.get::<&str>("format").unwrap(), "RGB");
            sizes.push((s.get("width").unwrap(), s.get("height").unwrap()));
        }
    }
    sizes
}

#[test]
fn good_and_bad_files_in_order_with_errors_and_caps_changes() {
    let d = temp_dir("mixed");
    std::fs::write(
        d.join("a-good.png"),
        encoded(64, 48, image::ImageFormat::Png),
    )
    .unwrap();
    std::fs::write(
        d.join("b-good.jpg"),
        encoded(101, 37, image::ImageFormat::Jpeg),
    )
    .unwrap();
    let jpeg = encoded(80, 60, image::ImageFormat::Jpeg);
    std::fs::write(d.join("c-truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    std::fs::write(d.join("d-empty.png"), b"").unwrap();
    std::fs::write(d.join("e-tiny.png"), encoded(1, 1, image::ImageFormat::Png)).unwrap();
    std::fs::write(d.join("f-text.png"), b"this is not an image\n").unwrap();
    std::fs::write(
        d.join("g-good.png"),
        encoded(101, 37, image::ImageFormat::Png),
    )
    .unwrap();
    // Not an image extension: ignored by a folder location.
    std::fs::write(d.join("truth.jsonl"), b"{}\n").unwrap();

    let mut h = harness(&d, &[]);
    let mut items = Vec::new();
    while let Some(b) = h.pull_until_eos().unwrap() {
        items.push(item(&b));
    }
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "a-good",
            "b-good",
            "c-truncated",
            "d-empty",
            "e-tiny",
            "f-text",
            "g-good"
        ]
    );
    let errors: Vec<Option<&str>> = items.iter().map(|i| i.error.as_deref()).collect();
    assert_eq!(errors[0], None);
    assert_eq!(errors[1], None);
    assert!(
        errors[2]
            .unwrap()
            .starts_with("truncated image: c-truncated.jpg: "),
        "{errors:?}"
    );
    assert_eq!(errors[3], Some("empty file: d-empty.png: 0 bytes"));
    assert_eq!(
        errors[4],
        Some("image too small: e-tiny.png: 1x1 is below min-size 16")
    );
    assert_eq!(
        errors[5],
        Some("unsupported format: f-text.png: not a PNG or JPEG image")
    );
    assert_eq!(errors[6], None);
    let sizes: Vec<(u32, u32)> = items.iter().map(|i| (i.width, i.height)).collect();
    assert_eq!(
        sizes,
        [
            (64, 48),
            (101, 37),
            (64, 64),
            (64, 64),
            (64, 64),
            (64, 64),
            (101, 37)
        ]
    );
    // Pixels: the gradient's centre for good images (JPEG within its loss), grey for placeholders.
    assert_eq!(
        items[0].centre,
        [(32 * 255 / 64) as u8, (24 * 255 / 48) as u8, 90]
    );
    assert_eq!(
        items[6].centre,
        [(50 * 255 / 101) as u8, (18 * 255 / 37) as u8, 90]
    );
    assert!(
        items[1].centre[2].abs_diff(90) < 12,
        "{:?}",
        items[1].centre
    );
    for i in &items[2..6] {
        assert_eq!(i.centre, [128, 128, 128], "{}", i.id);
    }
    // Timestamps 40 ms apart (framerate 0/1).
    let pts: Vec<u64> = items.iter().map(|i| i.pts.mseconds()).collect();
    assert_eq!(pts, [0, 40, 80, 120, 160, 200, 240]);
    // Caps once per size change (the placeholders share one size).
    assert_eq!(
        caps_sizes(&mut h),
        [(64, 48), (101, 37), (64, 64), (101, 37)]
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn glob_loop_framerate_and_sort_by_mtime() {
    // GStreamer must be initialised before the property values below are built: `gst::Fraction`'s type
    // registered concurrently with `gst::init` on another test thread corrupts the type system.
    common::init();
    let d = temp_dir("loop");
    std::fs::write(d.join("x.png"), encoded(32, 32, image::ImageFormat::Png)).unwrap();
    std::fs::write(d.join("y.png"), encoded(32, 32, image::ImageFormat::Png)).unwrap();
    std::fs::write(d.join("z.jpg"), encoded(32, 32, image::ImageFormat::Jpeg)).unwrap();
    let t0 = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000);
    for (i, n) in ["y.png", "x.png"].iter().enumerate() {
        let f = std::fs::File::options()
            .write(true)
            .open(d.join(n))
            .unwrap();
        f.set_modified(t0 + Duration::from_secs(i as u64)).unwrap();
    }
    let mut h = harness(
        &d.join("*.png"),
        &[
            ("loop", true.to_value()),
            ("framerate", gst::Fraction::new(5, 1).to_value()),
            ("sort", "mtime".to_value()),
        ],
    );
    let items: Vec<Item> = (0..5).map(|_| item(&h.pull().unwrap())).collect();
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["y", "x", "y", "x", "y"]);
    let pts: Vec<u64> = items.iter().map(|i| i.pts.mseconds()).collect();
    assert_eq!(pts, [0, 200, 400, 600, 800]);
    let sizes = caps_sizes(&mut h);
    assert_eq!(sizes, [(32, 32)], "one caps event for equal sizes");
    drop(h);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn watch_reads_a_file_written_later_once_it_is_complete() {
    let d = temp_dir("watch");
    std::fs::write(
        d.join("first.png"),
        encoded(40, 40, image::ImageFormat::Png),
    )
    .unwrap();
    let mut h = harness(
        &d,
        &[
            ("watch", true.to_value()),
            ("poll-interval-ms", 300u32.to_value()),
        ],
    );
    let first = item(&h.pull().unwrap());
    assert_eq!((first.id.as_str(), first.error.as_deref()), ("first", None));

    // Written slowly, in two parts: never read half-way.
    let bytes = encoded(120, 90, image::ImageFormat::Png);
    let path = d.join("second.png");
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    {
        use std::io::Write;
        let mut f = std::fs::File::options().append(true).open(&path).unwrap();
        f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    }
    let second = item(&h.pull().unwrap());
    assert_eq!(
        (second.id.as_str(), second.error.as_deref(), second.width),
        ("second", None, 120)
    );
    // Exactly once: nothing more, even after the file is touched again.
    std::fs::write(&path, &bytes).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(h.try_pull().is_none(), "a file was read twice");
    drop(h);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn empty_folder_ends_bad_files_warn_and_a_missing_folder_fails_to_start() {
    common::init();
    let d = temp_dir("empty");
    let run = |location: &Path| -> (Result<(), String>, Vec<String>, bool) {
        let p = gst::parse::launch(&format!(
            "vigilimagesrc location=\"{}\" ! fakesink",
            location.display()
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let bus = p.bus().unwrap();
        let started = p.set_state(gst::State::Playing);
        let mut warnings = Vec::new();
        let mut error = None;
        let mut eos = false;
        while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(5)) {
            match msg.view() {
                gst::MessageView::Warning(w) => {
                    warnings.push(format!("{} {}", w.error(), w.debug().unwrap_or_default()))
                }
                gst::MessageView::Error(e) => {
                    error = Some(format!("{} {}", e.error(), e.debug().unwrap_or_default()));
                    break;
                }
                gst::MessageView::Eos(_) => {
                    eos = true;
                    break;
                }
                _ => {}
            }
        }
        p.set_state(gst::State::Null).unwrap();
        let r = match (started, error) {
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(e.to_string()),
            _ => Ok(()),
        };
        (r, warnings, eos)
    };
    let (r, warnings, eos) = run(&d);
    assert!(r.is_ok() && eos, "{r:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no image files in"), "{warnings:?}");

    // A bad file: an error item and a warning that names it; the stream goes on to its end.
    std::fs::write(d.join("bad.png"), b"").unwrap();
    let (r, warnings, eos) = run(&d);
    assert!(r.is_ok() && eos, "{r:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("empty file: bad.png: 0 bytes"),
        "{warnings:?}"
    );

    let missing = d.join("missing");
    let (r, _, eos) = run(&missing);
    let e = r.unwrap_err();
    assert!(!eos);
    assert!(
        e.contains(&format!("no such file {}", missing.display()))
            || e.contains(&format!("no such folder {}", missing.display())),
        "{e}"
    );
    let (r, _, _) = run(&missing.join("*.jpg"));
    assert!(
        r.unwrap_err()
            .contains(&format!("no such folder {}", missing.display()))
    );
    std::fs::remove_dir_all(&d).unwrap();
}
