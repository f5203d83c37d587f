//! Hot reload (Triton's POLL mode) under a running pipeline: `vigilinfer repository-poll-secs=1`
//! picks up a new version folder without dropping a frame, and refuses a corrupt one while the
//! previous version keeps serving.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_engine::{ModelServer, ReloadCause, ReloadEvent};

/// What came out of the element for one frame.
#[derive(Debug, Clone)]
struct Out {
    pts: Option<gst::ClockTime>,
    inferred: bool,
    objects: usize,
    at: Instant,
}

const FPS: u64 = 20;

/// Puts `model.onnx` (a link to `target`, or `bytes`) in a folder outside the repository, then
/// renames that folder to `<model_dir>/<version>` so that polling never sees it half-made.
fn add_version(stage: &Path, model_dir: &Path, version: u64, content: Result<&Path, &[u8]>) {
    let folder = stage.join(version.to_string());
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("model.onnx");
    match content {
        Ok(target) => std::os::unix::fs::symlink(target, &file).unwrap(),
        Err(bytes) => std::fs::write(&file, bytes).unwrap(),
    }
    std::fs::rename(&folder, model_dir.join(version.to_string())).unwrap();
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

fn nanodet_events(after: u64) -> Vec<ReloadEvent> {
    ModelServer::global()
        .events_after(after)
        .into_iter()
        .filter(|e| e.model == "nanodet")
        .collect()
}

#[test]
fn new_version_is_picked_up_without_dropping_frames_and_a_corrupt_one_is_refused() {
    if !common::assets_installed("nanodet", "bus.png") {
        return;
    }
    if let Err(e) = vigil_engine::runtime::environment() {
        eprintln!("SKIPPED: ONNX Runtime is not available: {e}");
        return;
    }
    common::init();

    // A repository with nanodet version 1 (config and labels copied, the model linked).
    let tmp: PathBuf = std::env::temp_dir().join(format!("vigil-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let repo = tmp.join("repo");
    let stage = tmp.join("stage");
    let model_dir = repo.join("nanodet");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::create_dir_all(&stage).unwrap();
    let source = common::models_dir().join("nanodet");
    for f in ["config.pbtxt", "labels.txt"] {
        std::fs::copy(source.join(f), model_dir.join(f)).unwrap();
    }
    let weights = std::fs::canonicalize(source.join("1/model.onnx")).unwrap();
    add_version(&stage, &model_dir, 1, Ok(&weights));

    let (caps, frame) = common::decode_image(&common::media("bus.png"), "RGBA");

    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .block(true)
        .build();
    let infer = gst::ElementFactory::make("vigilinfer")
        .property("model-repository", repo.to_str().unwrap())
        .property("model", "nanodet")
        .property("repository-poll-secs", 1u32)
        .build()
        .unwrap();
    assert_eq!(infer.property::<u32>("repository-poll-secs"), 1);
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([src.upcast_ref(), &infer, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &infer, sink.upcast_ref()]).unwrap();

    let outs: Arc<Mutex<Vec<Out>>> = Arc::default();
    let outs_cb = outs.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buf = sample.buffer().ok_or(gst::FlowError::Error)?;
                let (inferred, objects) = buf.meta::<VigilMeta>().map_or((false, 0), |m| {
                    (m.frame().inferred, m.frame().objects.len())
                });
                outs_cb.lock().unwrap().push(Out {
                    pts: buf.pts(),
                    inferred,
                    objects,
                    at: Instant::now(),
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let received = || outs.lock().unwrap().len();

    pipeline.set_state(gst::State::Playing).unwrap();

    // Frames at a steady 20 per second until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        let src = src.clone();
        std::thread::spawn(move || {
            let period = Duration::from_millis(1000 / FPS);
            let start = Instant::now();
            let mut pushed = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let mut buf = frame.copy();
                {
                    let b = buf.get_mut().unwrap();
                    b.set_pts(gst::ClockTime::from_mseconds(pushed * 1000 / FPS));
                    b.set_duration(gst::ClockTime::from_mseconds(1000 / FPS));
                }
                if src.push_buffer(buf).is_err() {
                    break;
                }
                pushed += 1;
                let next = start + period * pushed as u32;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let _ = src.end_of_stream();
            pushed
        })
    };

    // The bus is read at the end (everything it got, in order).
    let bus = pipeline.bus().unwrap();

    wait_for("the first frames", Duration::from_secs(60), || {
        received() >= 5
    });
    let handle = ModelServer::global()
        .acquire(&repo, "nanodet", None)
        .unwrap();
    assert_eq!(handle.current().version(), 1);
    let seq0 = ModelServer::global().last_event_seq();

    // Version 2 appears: served within a poll interval (plus the load).
    add_version(&stage, &model_dir, 2, Ok(&weights));
    let switch = wait_for("version 2 to serve", Duration::from_secs(30), || {
        handle.current().version() == 2
    });
    let switched_at = Instant::now();
    let at_switch = received();
    println!("version 2 serving {switch:?} after it appeared ({at_switch} frames out so far)");
    // The event is logged once the old runtime has finished its requests, just after the switch.
    wait_for("the reload event", Duration::from_secs(30), || {
        !nanodet_events(seq0).is_empty()
    });
    let events = nanodet_events(seq0);
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert!(e.ok && e.cause == ReloadCause::Poll, "{e:#?}");
    assert_eq!((e.from_version, e.to_version), (Some(1), Some(2)));
    wait_for("frames from version 2", Duration::from_secs(60), || {
        received() >= at_switch + 20
    });

    // A corrupt version 3 is refused; version 2 keeps serving.
    add_version(
        &stage,
        &model_dir,
        3,
        Err(b"this is not an ONNX model".as_slice()),
    );
    let refused = wait_for("the refusal of version 3", Duration::from_secs(30), || {
        nanodet_events(e.seq).iter().any(|e| !e.ok)
    });
    let refusals = nanodet_events(e.seq);
    println!(
        "version 3 refused after {refused:?}: {}",
        refusals[0].message
    );
    assert_eq!(handle.current().version(), 2);
    let at_refusal = received();
    // The same broken entry is not tried again at the next polls.
    std::thread::sleep(Duration::from_millis(3500));
    let refusals = nanodet_events(e.seq);
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert!(!refusals[0].ok);
    assert_eq!(refusals[0].to_version, Some(2));
    assert!(refusals[0].message.contains("version 2 keeps serving"));
    assert!(refusals[0].message.contains("3"), "{}", refusals[0].message);
    assert_eq!(handle.current().version(), 2);
    assert!(received() > at_refusal, "frames stopped after the refusal");

    // The end: every pushed frame came out.
    stop.store(true, Ordering::SeqCst);
    let pushed = feeder.join().unwrap();
    let mut warnings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = bus
            .timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64))
            .expect("EOS before the deadline");
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                panic!("pipeline error: {} ({:?})", err.error(), err.debug())
            }
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    drop(handle);

    let outs = outs.lock().unwrap().clone();
    let after_switch: Vec<&Out> = outs.iter().filter(|o| o.at > switched_at).collect();
    println!(
        "frames in {pushed}, out {}, all inferred: {}; after the switch {} frames, {} with \
         detections; warnings: {warnings:?}",
        outs.len(),
        outs.iter().all(|o| o.inferred),
        after_switch.len(),
        after_switch.iter().filter(|o| o.objects > 0).count()
    );
    assert_eq!(outs.len() as u64, pushed, "dropped frames");
    let expected_pts: Vec<Option<gst::ClockTime>> = (0..pushed)
        .map(|i| Some(gst::ClockTime::from_mseconds(i * 1000 / FPS)))
        .collect();
    let pts: Vec<Option<gst::ClockTime>> = outs.iter().map(|o| o.pts).collect();
    assert_eq!(pts, expected_pts, "frames lost or out of order");
    assert!(outs.iter().all(|o| o.inferred), "a frame was not inferred");
    assert!(after_switch.len() >= 20);
    assert!(
        after_switch.iter().all(|o| o.objects > 0),
        "a frame after the switch has no detections"
    );
    assert!(
        warnings.iter().any(|w| w.contains("refused")),
        "no warning about the refused version: {warnings:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
