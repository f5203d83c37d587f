//! `vigilinspect` through `gst_check::Harness`: hand-built OCR text objects give PASS and each kind of
//! FAIL (missing, wrong and unreadable lot, expired, smudged serial), an item error, the bus message per
//! item, the counters and summary, a snapshot JPEG of a failed item, bad rules refused at start; and
//! `vigilosd` drawing the verdict.

mod common;

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::objects::{BBox, FrameObjects, Inspection, ItemInfo, Object, Verdict};

const W: u32 = 320;
const H: u32 = 240;

const RULES: &str = "\
reference_date: 2026-12-01
lookups:
  lots: {file: lots.csv, key: product, value: lot}
fields:
  - {name: product, pattern: '^[A-Z][A-Z0-9 ]+$', pick: largest}
  - {name: lot, pattern: 'LOT[: ]*([A-Z0-9]{6})\\b', shape: AA9999}
  - {name: expiry, pattern: 'EXP[: ]*(\\d{4}-\\d{2}-\\d{2})'}
  - {name: serial, pattern: 'SN[: ]*(\\d{8})\\b'}
rules:
  - {name: lot-present, field: lot, present: true}
  - {name: lot-matches-product, field: lot, equals_lookup: {lookup: lots, key_field: product}}
  - {name: not-expired, field: expiry, date: {not_before: reference_date}}
  - {name: serial-readable, field: serial, present: true}
";

/// A folder with `rules.yaml` and `lots.csv`.
fn rules_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vigil-inspection-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), RULES).unwrap();
    std::fs::write(
        dir.join("lots.csv"),
        "product,lot\nALMOND COOKIES 250 G,KX4821\n",
    )
    .unwrap();
    dir
}

fn text(t: &str, y: f32, h: f32) -> Object {
    let mut o = Object::new(0, "text", 0.9, BBox::new(20.0, y, 8.0 * t.len() as f32, h));
    o.text = Some(t.into());
    o
}

/// An RGB item image (white) with the label's text lines as meta.
fn item(id: &str, product: &str, lot: Option<&str>, expiry: &str, serial: &str) -> gst::Buffer {
    let mut f = FrameObjects::new(W, H);
    f.item = Some(ItemInfo {
        id: id.into(),
        path: Some(format!("/labels/{id}")),
        error: None,
    });
    f.objects.push(text(product, 10.0, 30.0));
    if let Some(lot) = lot {
        f.objects.push(text(&format!("LOT: {lot}"), 60.0, 16.0));
    }
    f.objects.push(text(&format!("EXP: {expiry}"), 100.0, 16.0));
    f.objects.push(text(&format!("SN: {serial}"), 140.0, 16.0));
    f.renumber();
    let mut buf = gst::Buffer::from_mut_slice(vec![255u8; (W * H * 3) as usize]);
    VigilMeta::add(buf.get_mut().unwrap(), f);
    buf
}

fn harness(props: &str) -> (gst_check::Harness, gst::Bus) {
    common::init();
    let el = gst::ElementFactory::make("vigilinspect").build().unwrap();
    for kv in props.split(' ').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap();
        el.set_property_from_str(k, v);
    }
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), Some("src"));
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={W},height={H},framerate=1/1"
    ));
    h.play();
    (h, bus)
}

fn inspection(out: &gst::Buffer) -> Inspection {
    out.meta::<VigilMeta>()
        .unwrap()
        .frame()
        .inspection
        .clone()
        .expect("inspection in the meta")
}

fn rules(i: &Inspection) -> Vec<&str> {
    i.failures.iter().map(|f| f.rule.as_str()).collect()
}

fn message(bus: &gst::Bus) -> gst::Structure {
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(1),
            &[gst::MessageType::Element],
        )
        .expect("a vigil-inspection message");
    let s = msg.structure().unwrap().to_owned();
    assert_eq!(s.name(), gstvigil::inspect::INSPECTION_MESSAGE);
    s
}

#[test]
fn verdicts_messages_and_counters() {
    let dir = rules_dir();
    let (mut h, bus) = harness(&format!("rules={}", dir.join("rules.yaml").display()));
    let good = "ALMOND COOKIES 250 G";
    let cases: Vec<(gst::Buffer, Vec<&str>)> = vec![
        (
            item("ok.png", good, Some("KX4821"), "2027-01-01", "10452310"),
            vec![],
        ),
        (
            item("missing.png", good, None, "2027-01-01", "10452310"),
            vec!["lot-present"],
        ),
        (
            item("wrong.png", good, Some("KX4822"), "2027-01-01", "10452310"),
            vec!["lot-matches-product"],
        ),
        (
            item(
                "unreadable.png",
                good,
                Some("KXA8Z1"),
                "2027-01-01",
                "10452310",
            ),
            vec!["lot-present"],
        ),
        (
            item(
                "expired.png",
                good,
                Some("KX4821"),
                "2026-11-30",
                "10452310",
            ),
            vec!["not-expired"],
        ),
        (
            item(
                "smudged.png",
                good,
                Some("KX4821"),
                "2027-01-01",
                "10~~2310",
            ),
            vec!["serial-readable"],
        ),
    ];
    for (n, (buf, want)) in cases.into_iter().enumerate() {
        let out = h.push_and_pull(buf).unwrap();
        let i = inspection(&out);
        assert_eq!(rules(&i), want, "item {n}: {:?}", i.failures);
        let verdict = if want.is_empty() { "PASS" } else { "FAIL" };
        assert_eq!(i.verdict == Verdict::Pass, want.is_empty());
        let s = message(&bus);
        assert_eq!(s.get::<&str>("verdict").unwrap(), verdict);
        assert_eq!(s.get::<&str>("failed-rules").unwrap(), want.join(","));
        assert_eq!(s.get::<u64>("items").unwrap(), n as u64 + 1);
        let failures: serde_json::Value =
            serde_json::from_str(s.get::<&str>("failures").unwrap()).unwrap();
        assert_eq!(failures.as_array().unwrap().len(), want.len());
    }
    // The wrong lot's evidence: the lot line, what was read, the reason.
    let out = h
        .push_and_pull(item(
            "wrong2.png",
            good,
            Some("AB1234"),
            "2027-01-01",
            "10452310",
        ))
        .unwrap();
    let i = inspection(&out);
    assert_eq!(i.failures[0].text.as_deref(), Some("AB1234"));
    assert_eq!(i.failures[0].bbox, Some(BBox::new(20.0, 60.0, 88.0, 16.0)));
    assert!(i.failures[0].reason.contains("is not \"KX4821\""));
    assert_eq!(message(&bus).get::<&str>("id").unwrap(), "wrong2.png");
    let el = h.element().unwrap();
    assert_eq!(el.property::<u64>("items"), 7);
    assert_eq!(el.property::<u64>("passed"), 1);
    assert_eq!(el.property::<u64>("failed"), 6);
    let summary: serde_json::Value =
        serde_json::from_str(&el.property::<String>("summary")).unwrap();
    assert_eq!(summary["failures_by_rule"]["lot-present"], 2);
    assert_eq!(summary["failures_by_rule"]["lot-matches-product"], 2);
    assert_eq!(summary["failed"], 6);
}

#[test]
fn item_error_fails_without_running_rules() {
    let dir = rules_dir();
    let (mut h, bus) = harness(&format!("rules={}", dir.join("rules.yaml").display()));
    let mut buf = item(
        "broken.png",
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2027-01-01",
        "10452310",
    );
    {
        let b = buf.get_mut().unwrap();
        let mut m = b.meta_mut::<VigilMeta>().unwrap();
        m.frame_mut().item.as_mut().unwrap().error = Some("truncated PNG file".into());
    }
    let i = inspection(&h.push_and_pull(buf).unwrap());
    assert_eq!(rules(&i), ["item-error"]);
    assert!(i.failures[0].reason.contains("truncated PNG file"));
    assert_eq!(message(&bus).get::<&str>("id").unwrap(), "broken.png");
}

#[test]
fn video_frames_without_item_get_source_ids() {
    let dir = rules_dir();
    let (mut h, _bus) = harness(&format!(
        "rules={} source-name=line1",
        dir.join("rules.yaml").display()
    ));
    // No meta at all: inspected as an item without text, meta added.
    let out = h
        .push_and_pull(gst::Buffer::from_mut_slice(vec![0u8; (W * H * 3) as usize]))
        .unwrap();
    let f = out.meta::<VigilMeta>().unwrap().frame().clone();
    assert_eq!(f.item.unwrap().id, "line1-0");
    assert_eq!((f.width, f.height), (W, H));
    let i = f.inspection.unwrap();
    assert_eq!(rules(&i), ["lot-present", "not-expired", "serial-readable"]);
    // A meta without item: frame number from the meta.
    let mut buf = gst::Buffer::from_mut_slice(vec![0u8; (W * H * 3) as usize]);
    let mut fo = FrameObjects::new(W, H);
    fo.frame = 41;
    VigilMeta::add(buf.get_mut().unwrap(), fo);
    let out = h.push_and_pull(buf).unwrap();
    assert_eq!(
        out.meta::<VigilMeta>()
            .unwrap()
            .frame()
            .item
            .as_ref()
            .unwrap()
            .id,
        "line1-41"
    );
}

#[test]
fn failed_items_get_a_decodable_snapshot() {
    let dir = rules_dir();
    let snaps = dir.join("failed");
    let (mut h, _bus) = harness(&format!(
        "rules={} snapshot-dir={}",
        dir.join("rules.yaml").display(),
        snaps.display()
    ));
    h.push_and_pull(item(
        "pass.png",
        "ALMOND COOKIES 250 G",
        Some("KX4821"),
        "2027-01-01",
        "10452310",
    ))
    .unwrap();
    h.push_and_pull(item(
        "lot 7.png",
        "ALMOND COOKIES 250 G",
        Some("KX4822"),
        "2027-01-01",
        "10452310",
    ))
    .unwrap();
    // Stopping the element writes what is queued.
    h.element().unwrap().set_state(gst::State::Null).unwrap();
    let el = h.element().unwrap();
    assert_eq!(el.property::<u64>("snapshots-written"), 1);
    assert_eq!(el.property::<u64>("snapshots-dropped"), 0);
    let mut files: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["lot_7.png.jpg"]);
    let img = image::load_from_memory(&std::fs::read(snaps.join("lot_7.png.jpg")).unwrap())
        .unwrap()
        .to_rgb8();
    assert_eq!(img.dimensions(), (W, H));
    // Red banner on top, red outline at the lot line's bottom edge (y 60..76), white elsewhere.
    let near = |p: &image::Rgb<u8>, c: [u8; 3]| p.0.iter().zip(c).all(|(a, b)| a.abs_diff(b) < 40);
    assert!(
        near(img.get_pixel(W - 2, 4), [220, 0, 0]),
        "{:?}",
        img.get_pixel(W - 2, 4)
    );
    assert!(
        near(img.get_pixel(60, 75), [220, 0, 0]),
        "{:?}",
        img.get_pixel(60, 75)
    );
    assert!(near(img.get_pixel(W - 10, H - 10), [255, 255, 255]));
}

#[test]
fn snapshots_that_cannot_be_written_are_counted_and_warned() {
    let dir = rules_dir();
    let snaps = dir.join("gone");
    let (mut h, bus) = harness(&format!(
        "rules={} snapshot-dir={}",
        dir.join("rules.yaml").display(),
        snaps.display()
    ));
    // The folder exists after start; removing it makes the writer fail.
    std::fs::remove_dir(&snaps).unwrap();
    h.push_and_pull(item(
        "a.png",
        "ALMOND COOKIES 250 G",
        None,
        "2027-01-01",
        "10452310",
    ))
    .unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Warning],
        )
        .expect("a warning from the writer thread");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    let text = w.error().to_string();
    assert!(
        text.contains("snapshot of item 'a.png': cannot write"),
        "{text}"
    );
    let el = h.element().unwrap();
    assert_eq!(el.property::<u64>("snapshots-written"), 0);
    assert_eq!(el.property::<u64>("snapshots-dropped"), 1);
    // The stream goes on.
    let out = h
        .push_and_pull(item(
            "b.png",
            "ALMOND COOKIES 250 G",
            Some("KX4821"),
            "2027-01-01",
            "10452310",
        ))
        .unwrap();
    assert_eq!(inspection(&out).verdict, Verdict::Pass);
}

/// Starting with `props` fails with an error whose text contains `want`.
fn start_error(props: &[(&str, &str)]) -> String {
    common::init();
    let el = gst::ElementFactory::make("vigilinspect").build().unwrap();
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("fakesrc").build().unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add_many([&src, &el, &sink]).unwrap();
    for (k, v) in props {
        el.set_property_from_str(k, v);
    }
    let _ = pipeline.set_state(gst::State::Paused);
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error message");
    let _ = pipeline.set_state(gst::State::Null);
    match msg.view() {
        gst::MessageView::Error(e) => format!("{} ({})", e.error(), e.debug().unwrap_or_default()),
        _ => unreachable!(),
    }
}

#[test]
fn bad_rules_are_refused_at_start() {
    let e = start_error(&[]);
    assert!(e.contains("property 'rules': no rules file set"), "{e}");
    let e = start_error(&[("rules", "/nonexistent/rules.yaml")]);
    assert!(
        e.contains("property 'rules': /nonexistent/rules.yaml: cannot read"),
        "{e}"
    );
    let dir = rules_dir();
    let path = dir.join("rules.yaml");
    std::fs::write(&path, RULES.replace("(\\d{8})", "(\\d{8}")).unwrap();
    let e = start_error(&[("rules", path.to_str().unwrap())]);
    assert!(
        e.contains(&format!(
            "{}: line 8: fields[3].pattern: regex parse error",
            path.display()
        )),
        "{e}"
    );
}

#[test]
fn osd_draws_the_verdict_banner_unless_turned_off() {
    common::init();
    let dir = rules_dir();
    for (draw, want_red) in [(true, true), (false, false)] {
        let mut h = gst_check::Harness::new_parse(&format!(
            "vigilinspect rules={} ! vigilosd draw-labels=false draw-confidence=false draw-inspection={draw}",
            dir.join("rules.yaml").display()
        ));
        h.set_src_caps_str(&format!(
            "video/x-raw,format=RGB,width={W},height={H},framerate=1/1"
        ));
        h.play();
        let out = h
            .push_and_pull(item(
                "x.png",
                "ALMOND COOKIES 250 G",
                None,
                "2027-01-01",
                "10452310",
            ))
            .unwrap();
        let map = out.map_readable().unwrap();
        let px = |x: u32, y: u32| &map.as_slice()[((y * W + x) * 3) as usize..][..3];
        assert_eq!(px(W - 2, 2) == [220, 0, 0], want_red, "{:?}", px(W - 2, 2));
    }
}
