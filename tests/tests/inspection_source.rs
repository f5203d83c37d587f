//! `vigil run` with an image source (`sources[i].images`): a folder of good and bad images (generated
//! here) gives one event per file in order, with the item id and, for bad files, the error naming the
//! file; the run ends at end-of-stream with exit 0 and the summary; the MP4 decodes at the output size.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use vigil_tests::{RtspClient, TempDir, read_events, repo_root, skip, start_vigil, vigil_bin};

fn encoded(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let on = (x / 16 + y / 16) % 2 == 0;
        image::Rgb(if on { [230, 230, 230] } else { [20, 40, 60] })
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Decodes the MP4 fully: (frames, width, height) of the decoded video.
fn decode_mp4(path: &Path) -> (u64, i32, i32) {
    gst::init().unwrap();
    let launch = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! fakesink name=sink sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let caps: Arc<Mutex<Option<gst::Caps>>> = Arc::default();
    let pad = pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    let (c2, k2) = (count.clone(), caps.clone());
    pad.add_probe(gst::PadProbeType::BUFFER, move |p, _| {
        c2.fetch_add(1, Ordering::SeqCst);
        *k2.lock().unwrap() = p.current_caps();
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Error, gst::MessageType::Eos],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => panic!(
            "MP4 {} does not decode: {} ({:?})",
            path.display(),
            e.error(),
            e.debug()
        ),
        _ => panic!("decoding MP4 {} timed out", path.display()),
    }
    let caps = caps.lock().unwrap().clone().expect("decoded caps");
    let s = caps.structure(0).unwrap();
    (
        count.load(Ordering::SeqCst),
        s.get("width").unwrap(),
        s.get("height").unwrap(),
    )
}

#[test]
fn image_items_give_one_event_each_with_errors_and_a_decodable_mp4() {
    let root = repo_root();
    if !root.join("models/nanodet/1/model.onnx").is_file() {
        skip(format_args!(
            "models/nanodet/1/model.onnx is not installed; run `make setup`"
        ));
        return;
    }
    let dir = TempDir::new("imgsrc");
    let items = dir.path().join("items");
    std::fs::create_dir_all(&items).unwrap();
    let jpeg = encoded(320, 240, image::ImageFormat::Jpeg);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("item-01.png", encoded(320, 240, image::ImageFormat::Png)),
        ("item-02.jpg", encoded(200, 300, image::ImageFormat::Jpeg)),
        ("item-03.jpg", jpeg[..jpeg.len() / 3].to_vec()),
        ("item-04.png", Vec::new()),
        ("item-05.png", encoded(1, 1, image::ImageFormat::Png)),
        ("item-06.png", b"not an image at all\n".to_vec()),
        ("item-07.jpg", jpeg.clone()),
    ];
    for (name, bytes) in &files {
        std::fs::write(items.join(name), bytes).unwrap();
    }
    std::fs::write(items.join("lots.csv"), "product,lot\n").unwrap();
    let cfg = dir.path().join("inspection.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: inspection\n\
             model_repository: {repo}\n\
             sources:\n  - name: line1\n    images:\n      path: items\n\
             inference:\n  model: nanodet\n\
             outputs:\n  events:\n    path: events.jsonl\n  file:\n    path: out.mp4\n",
            repo = root.join("models").display()
        ),
    )
    .unwrap();

    let out = Command::new(vigil_bin())
        .arg("run")
        .arg(&cfg)
        .arg("--progress")
        .arg("0")
        .env_remove("GST_DEBUG")
        .output()
        .expect("run vigil");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("[line1] 7 frames"),
        "the summary counts the 7 items:\n{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("panicked"), "{stderr}");

    let events = read_events(&dir.path().join("events.jsonl")).unwrap();
    let got: Vec<(String, Option<String>, u64, u64)> = events
        .iter()
        .map(|e| {
            let item = &e["item"];
            (
                item["id"].as_str().unwrap_or("?").to_string(),
                item["error"].as_str().map(str::to_string),
                e["width"].as_u64().unwrap_or(0),
                e["height"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let ids: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "item-01", "item-02", "item-03", "item-04", "item-05", "item-06", "item-07"
        ],
        "one event per file, in order: {events:?}"
    );
    for e in &events {
        assert_eq!(e["source"], "line1", "{e}");
        let path = e["item"]["path"].as_str().unwrap();
        assert!(
            path.starts_with(&items.display().to_string()),
            "item path {path}"
        );
    }
    let errors: Vec<Option<&str>> = got.iter().map(|g| g.1.as_deref()).collect();
    assert_eq!(errors[0], None);
    assert_eq!(errors[1], None);
    assert!(
        errors[2].is_some_and(|e| e.starts_with("truncated image: item-03.jpg: ")),
        "{errors:?}"
    );
    assert_eq!(errors[3], Some("empty file: item-04.png: 0 bytes"));
    assert_eq!(
        errors[4],
        Some("image too small: item-05.png: 1x1 is below min-size 16")
    );
    assert_eq!(
        errors[5],
        Some("unsupported format: item-06.png: not a PNG or JPEG image")
    );
    assert_eq!(errors[6], None);
    // Events are in the item's own pixels (placeholders 64x64).
    let sizes: Vec<(u64, u64)> = got.iter().map(|g| (g.2, g.3)).collect();
    assert_eq!(
        sizes,
        [
            (320, 240),
            (200, 300),
            (64, 64),
            (64, 64),
            (64, 64),
            (64, 64),
            (320, 240)
        ]
    );
    // Without fps: timestamps 40 ms apart (and every item in the MP4, which needs a regular rate).
    let pts: Vec<u64> = events
        .iter()
        .map(|e| e["pts_ns"].as_u64().unwrap())
        .collect();
    assert_eq!(
        pts,
        (0..7).map(|i| i * 40_000_000).collect::<Vec<_>>(),
        "{events:?}"
    );

    // The MP4: every item, at the first image's size.
    let (frames, w, h) = decode_mp4(&dir.path().join("out.mp4"));
    assert_eq!((frames, w, h), (7, 320, 240));
}

/// RTSP needs one frame size: looping items of three sizes (and a bad one) reach a real RTSP client
/// as `images.output`-sized frames at `fps`.
#[test]
fn looping_image_items_are_served_over_rtsp_at_the_output_size() {
    let root = repo_root();
    if !root.join("models/nanodet/1/model.onnx").is_file() {
        skip(format_args!(
            "models/nanodet/1/model.onnx is not installed; run `make setup`"
        ));
        return;
    }
    let dir = TempDir::new("imgsrc-rtsp");
    let items = dir.path().join("items");
    std::fs::create_dir_all(&items).unwrap();
    std::fs::write(
        items.join("a.png"),
        encoded(320, 240, image::ImageFormat::Png),
    )
    .unwrap();
    std::fs::write(
        items.join("b.jpg"),
        encoded(201, 317, image::ImageFormat::Jpeg),
    )
    .unwrap();
    std::fs::write(items.join("c.png"), b"broken").unwrap();
    std::fs::write(
        items.join("d.png"),
        encoded(640, 100, image::ImageFormat::Png),
    )
    .unwrap();
    let cfg = dir.path().join("rtsp.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: inspection\n\
             model_repository: {repo}\n\
             sources:\n  - name: line1\n    images:\n      path: items\n      loop: true\n      fps: 10\n      \
             output: {{width: 480, height: 270}}\n\
             inference:\n  model: nanodet\n\
             outputs:\n  rtsp:\n    address: 127.0.0.1\n    port: 0\n    mount: /items\n",
            repo = root.join("models").display()
        ),
    )
    .unwrap();
    let (mut vigil, info) = start_vigil(&cfg, std::time::Duration::from_secs(60)).unwrap();
    let url = info.rtsp.first().cloned().expect("an RTSP URL");
    let client = RtspClient::start(&url).unwrap();
    let error = client.wait_for(
        30,
        std::time::Instant::now() + std::time::Duration::from_secs(60),
    );
    let r = client.result(error);
    assert!(
        r.error.is_none(),
        "{r:?}; vigil stderr:\n{}",
        vigil.stderr_text()
    );
    assert!(r.frames >= 30, "{r:?}");
    assert_eq!((r.width, r.height), (480, 270), "{r:?}");
    assert!(
        vigil.wait(std::time::Duration::ZERO).is_none(),
        "vigil keeps running while looping: {}",
        vigil.stderr_text()
    );
}
