//! `vigilocr` with the PP-OCR models on `samples/media/box.png`, through `gst_check::Harness`.

mod common;

use std::time::{Duration, Instant};

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::objects::{BBox, FrameObjects, ItemInfo, Object};

fn installed() -> bool {
    ["ppocr_det", "ppocr_cls"]
        .iter()
        .all(|m| common::assets_installed(m, "box.png"))
        && common::assets_installed("ppocr_rec", "box.png")
}

fn harness(props: &str) -> gst_check::Harness {
    common::init();
    let desc = format!(
        "vigilocr model-repository=\"{}\" {props}",
        common::models_dir().display()
    );
    let mut h = gst_check::Harness::new_parse(&desc);
    h.play();
    h
}

fn texts(frame: &FrameObjects) -> Vec<&str> {
    frame
        .objects
        .iter()
        .filter(|o| o.label == "text")
        .filter_map(|o| o.text.as_deref())
        .collect()
}

/// The whole frame is read: the package's 7 lines of box.png (`core/tests/ocr_parity.rs` compares
/// them in detail), as `text` objects with boxes inside the frame and the rec model's name.
#[test]
fn box_png_lines_become_text_objects() {
    if !installed() {
        return;
    }
    for format in ["RGB", "BGRx"] {
        let (caps, buf) = common::decode_image(&common::media("box.png"), format);
        let mut h = harness("");
        h.set_src_caps(caps);
        let out = h.push_and_pull(buf).expect("a buffer out");
        let frame = out.meta::<VigilMeta>().expect("VigilMeta").frame().clone();
        let t = texts(&frame);
        eprintln!("{format}: {t:?}");
        for want in ["Crisp Almond Cookies", "PANDUCALE", "Product of ltaly"] {
            assert!(t.contains(&want), "{format}: {want:?} not in {t:?}");
        }
        assert_eq!(t.len(), 7, "{format}: {t:?}");
        assert_eq!((frame.width, frame.height), (324, 223));
        for (i, o) in frame.objects.iter().enumerate() {
            assert_eq!(o.id as usize, i);
            assert_eq!(o.model, "ppocr_rec");
            assert!(o.confidence >= 0.5 && o.parent.is_none());
            assert!(o.bbox.x >= 0.0 && o.bbox.x + o.bbox.w <= 324.0 && o.bbox.h > 10.0);
            assert!(o.attributes.iter().any(|a| a.name == "quad"));
        }
    }
}

/// With `operate-on-labels`, text is read only inside the objects with those labels and each line
/// names its object as parent; frames whose item has an error pass untouched.
#[test]
fn regions_and_items_with_errors() {
    if !installed() {
        return;
    }
    let (caps, buf) = common::decode_image(&common::media("box.png"), "RGB");
    let mut h = harness("operate-on-labels=label");
    h.set_src_caps(caps);

    // The left part of the box holds "Crisp Almond Cookies" and "Product of ltaly".
    let mut b = buf.copy();
    let mut frame = FrameObjects {
        width: 324,
        height: 223,
        inferred: true,
        ..Default::default()
    };
    frame.objects.push(Object::new(
        0,
        "other",
        0.9,
        BBox::new(0.0, 0.0, 324.0, 223.0),
    ));
    let mut label = Object::new(1, "label", 0.9, BBox::new(0.0, 40.0, 45.0, 140.0));
    label.id = 1;
    frame.objects.push(label);
    VigilMeta::add(b.get_mut().unwrap(), frame.clone());
    let out = h.push_and_pull(b).expect("a buffer out");
    let got = out.meta::<VigilMeta>().unwrap().frame().clone();
    let t = texts(&got);
    // Both lines, in reading order; nothing of the rest of the box (a cut-off glyph at the region's
    // edge may be read too).
    assert_eq!(
        t[..2],
        ["Crisp Almond Cookies", "Product of ltaly"],
        "{got:?}"
    );
    for other in ["PANDUCALE", "ATRI", "xantuccini"] {
        assert!(
            !t.contains(&other),
            "{other} read outside the region: {t:?}"
        );
    }
    for o in got.objects.iter().filter(|o| o.label == "text") {
        assert_eq!(o.parent, Some(1));
        assert!(o.bbox.x + o.bbox.w <= 45.0 + 1e-3, "{o:?}");
    }

    // An item with an error: nothing is read.
    let mut b = buf.copy();
    frame.item = Some(ItemInfo {
        id: "x.png".into(),
        error: Some("truncated".into()),
        ..Default::default()
    });
    VigilMeta::add(b.get_mut().unwrap(), frame.clone());
    let out = h.push_and_pull(b).expect("a buffer out");
    assert_eq!(out.meta::<VigilMeta>().unwrap().frame(), &frame);
}

/// Missing models are an error at start naming the model and the repository.
#[test]
fn missing_model_fails_to_start_with_clear_error() {
    common::init();
    let desc = format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB ! vigilocr model-repository=\"{}\" rec-model=nope ! fakesink",
        common::models_dir().display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let text = format!("{} {:?}", err.error(), err.debug());
    eprintln!("{text}");
    assert!(text.contains("nope") && text.contains("models"), "{text}");
    pipeline.set_state(gst::State::Null).unwrap();
}

/// Issue 20 (no lock held across inference): a property set while a frame is read — its text
/// detection waiting 1 s in the batcher of a copy of `ppocr_det` — returns at once, and the frame
/// is read in full.
#[test]
fn property_set_during_a_reading_returns_at_once() {
    if !installed() {
        return;
    }
    let slow = Some(Duration::from_secs(1));
    let repo = common::TempRepository::new(
        "ocr",
        &[
            ("ppocr_det", "ppocr_det_slow", slow),
            ("ppocr_cls", "ppocr_cls", None),
            ("ppocr_rec", "ppocr_rec", None),
        ],
    );
    let (caps, buf) = common::decode_image(&common::media("box.png"), "RGB");
    common::init();
    let desc = format!(
        "vigilocr model-repository=\"{}\" det-model=ppocr_det_slow",
        repo.path.display()
    );
    let mut h = gst_check::Harness::new_parse(&desc);
    h.play();
    h.set_src_caps(caps);
    let element = h
        .element()
        .expect("the harness' bin")
        .downcast::<gst::Bin>()
        .expect("a bin")
        .iterate_elements()
        .find(|e| e.factory().is_some_and(|f| f.name() == "vigilocr"))
        .expect("vigilocr in the bin");
    let detector = common::loaded("ppocr_det_slow");
    let pusher = std::thread::spawn(move || {
        let start = Instant::now();
        let out = h.push_and_pull(buf).expect("a buffer out");
        let frame = out.meta::<VigilMeta>().expect("VigilMeta").frame().clone();
        (frame, start.elapsed())
    });
    common::wait_until("the detection to wait in the batcher", || {
        detector.stats().pending == 1
    });

    let start = Instant::now();
    element.set_property("min-text-score", 0.6f32);
    let took = start.elapsed();
    let in_flight = !pusher.is_finished();
    let (frame, read) = pusher.join().unwrap();
    eprintln!("set_property: {took:?}; reading: {read:?}");
    assert!(in_flight, "the reading ended before set_property returned");
    assert!(
        took < Duration::from_millis(50),
        "set_property took {took:?}"
    );
    assert!(
        read >= Duration::from_millis(900),
        "the reading took {read:?}"
    );
    assert_eq!(texts(&frame).len(), 7, "{:?}", texts(&frame));
}
