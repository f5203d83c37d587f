//! `vigilmsgbroker` with synthetic frames (appsrc) carrying `VigilMeta` with analytics events: a real
//! mosquitto broker stopped for 5 s mid-run (acceptance: every line-crossing event reaches a
//! persistent-session subscriber, in order by `seq`, none dropped), exact drop counting with a
//! too-small buffer, the JSON-lines file and stdout targets, and configuration errors.

mod common;

use std::time::{Duration, Instant};

use gst::prelude::*;
use gstvigil::meta::VigilMeta;
use vigil_core::events::{ANALYTICS_SCHEMA, AnalyticsMessage, OBJECT_SCHEMA, ObjectMessage};
use vigil_core::objects::{
    AnalyticsEvent, AnalyticsEventKind, BBox, FrameAnalytics, FrameEvent, FrameObjects, Object,
};
use vigil_publish::testbroker::{Broker, Subscriber, available, free_port};

const FPS: u64 = 25;

/// Frame `i` of a 64x48 stream: two objects and `(i % 3) + 1` line crossings by track `i`.
fn frame(i: u64) -> gst::Buffer {
    let mut buf = gst::Buffer::with_size(64 * 48).unwrap();
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(i * 1_000_000_000 / FPS));
        b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / FPS));
        let mut f = FrameObjects::new(64, 48);
        f.frame = i;
        f.inferred = true;
        for k in 0..2 {
            let mut o = Object::new(2, "car", 0.9, BBox::new(k as f32, 1.0, 10.0, 10.0));
            o.id = k;
            o.track_id = Some(i * 10 + u64::from(k));
            f.objects.push(o);
        }
        let events = (0..(i % 3) + 1)
            .map(|k| {
                let mut e = AnalyticsEvent::new(AnalyticsEventKind::LineCrossed, "gate");
                e.track_id = Some(i * 10 + k);
                e.label = Some("car".into());
                e.direction = Some(if k % 2 == 0 { "in" } else { "out" }.into());
                e
            })
            .collect();
        f.analytics = Some(FrameAnalytics {
            events,
            ..Default::default()
        });
        VigilMeta::add(b, f);
    }
    buf
}

fn events_in(frames: u64) -> u64 {
    (0..frames).map(|i| (i % 3) + 1).sum()
}

struct Run {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    broker: gst::Element,
}

fn pipeline(props: &str) -> Run {
    common::init();
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format=GRAY8,width=64,height=48,framerate={FPS}/1 ! \
         vigilmsgbroker name=broker {props} ! fakesink sync=false"
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let broker = pipeline.by_name("broker").unwrap();
    Run {
        pipeline,
        src,
        broker,
    }
}

impl Run {
    /// Ends the stream and collects the bus messages until EOS (fails on an error).
    fn finish(&self, timeout: Duration) -> Vec<gst::Message> {
        self.src.end_of_stream().unwrap();
        let bus = self.pipeline.bus().unwrap();
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no EOS within {timeout:?}");
            let Some(m) = bus.timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))
            else {
                continue;
            };
            match m.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => panic!("error: {} ({:?})", e.error(), e.debug()),
                _ => seen.push(m),
            }
        }
        seen
    }

    fn counter(&self, name: &str) -> u64 {
        self.broker.property::<u64>(name)
    }
}

fn warnings(messages: &[gst::Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn mqtt_broker_outage_loses_no_line_crossing() {
    if !available() {
        eprintln!("SKIPPED: mosquitto / mosquitto_sub are not installed; run scripts/setup.sh");
        return;
    }
    let mut broker = Broker::start(None);
    let sub = Subscriber::start(
        broker.port,
        "vigil-test-outage",
        "vigil/cam-1/analytics/#",
        &[],
    );
    let run = pipeline(&format!(
        "protocol=mqtt port={} qos=1 source-name=cam-1 topic=vigil/{{source}}/{{kind}}/{{event}} \
         messages=analytics buffer-size=2000 flush-timeout=20000",
        broker.port
    ));
    run.pipeline.set_state(gst::State::Playing).unwrap();
    // 12 s of frames at 25 frames/s; the broker is stopped at 3 s and started again 5 s later.
    let frames = 12 * FPS;
    let start = Instant::now();
    let (mut stopped_at, mut restarted_at) = (None, None);
    let mut max_buffered = 0;
    for i in 0..frames {
        if i == 3 * FPS {
            broker.stop();
            stopped_at = Some(start.elapsed());
        }
        if stopped_at.is_some_and(|t| start.elapsed() >= t + Duration::from_secs(5))
            && restarted_at.is_none()
        {
            broker.restart();
            restarted_at = Some(start.elapsed());
        }
        run.src.push_buffer(frame(i)).unwrap();
        max_buffered = max_buffered.max(run.counter("buffered"));
        let due = start + Duration::from_millis((i + 1) * 1000 / FPS);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let restarted_at = restarted_at.expect("the broker was restarted");
    let messages = run.finish(Duration::from_secs(60));
    let (published, dropped, reconnects) = (
        run.counter("published"),
        run.counter("dropped"),
        run.counter("reconnects"),
    );
    run.pipeline.set_state(gst::State::Null).unwrap();

    let expected = events_in(frames);
    let got = sub.collect(
        expected as usize,
        Duration::from_secs(30),
        Duration::from_secs(15),
    );
    let parsed: Vec<AnalyticsMessage> = got
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // An at-least-once consumer keeps each message whose seq is above every one seen before: QoS 1
    // may repeat the messages in flight when the connection broke.
    let mut seqs: Vec<u64> = Vec::new();
    for m in &parsed {
        if seqs.last().is_none_or(|l| m.seq > *l) {
            seqs.push(m.seq);
        }
    }
    let received = parsed.len();
    eprintln!(
        "outage {:?}..{:?}: {expected} events, received {received} ({} repeated across the \
         reconnection), max buffered {max_buffered}, published {published}, dropped {dropped}, \
         reconnects {reconnects}",
        stopped_at.unwrap(),
        restarted_at,
        received - seqs.len()
    );
    assert_eq!(
        seqs,
        (0..expected).collect::<Vec<_>>(),
        "every event, in order"
    );
    assert_eq!(published, expected);
    assert_eq!(dropped, 0);
    assert!(reconnects >= 1);
    assert!(
        max_buffered >= 4 * FPS,
        "the outage was buffered (max {max_buffered})"
    );
    // The messages are the frames' events: frame numbers ascend, the schema and fields are right.
    for m in &parsed {
        assert_eq!(m.schema, ANALYTICS_SCHEMA);
        assert_eq!(m.source, "cam-1");
        assert_eq!(m.event.kind, AnalyticsEventKind::LineCrossed);
        assert_eq!(m.pts_ns, Some(m.frame * 1_000_000_000 / FPS));
        assert_eq!(m.event.track_id.unwrap() / 10, m.frame);
    }
    let w = warnings(&messages);
    let outage: Vec<_> = w.iter().filter(|w| w.contains("unreachable")).collect();
    assert_eq!(outage.len(), 1, "one warning for the outage: {w:?}");
    assert!(!w.iter().any(|w| w.contains("is full")), "{w:?}");
}

#[test]
fn too_small_buffer_counts_drops_exactly() {
    // Nothing listens on the port: every message waits in the 10-message buffer.
    let run = pipeline(&format!(
        "protocol=mqtt port={} messages=analytics buffer-size=10 drop-policy=newest flush-timeout=200",
        free_port()
    ));
    run.pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..20 {
        run.src.push_buffer(frame(i)).unwrap();
    }
    let total = events_in(20);
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.counter("buffered") + run.counter("dropped") < total {
        assert!(Instant::now() < deadline, "frames did not pass");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(run.counter("buffered"), 10);
    assert_eq!(run.counter("dropped"), total - 10);
    assert_eq!(run.counter("published"), 0);
    let messages = run.finish(Duration::from_secs(10));
    let w = warnings(&messages);
    assert!(
        w.iter().any(|w| w.contains("still undelivered")),
        "EOS says what was left: {w:?}"
    );
    let full: Vec<_> = w.iter().filter(|w| w.contains("is full")).collect();
    assert_eq!(full.len(), 1, "one warning for the overflow: {w:?}");
    assert!(full[0].contains("dropping the newest"), "{}", full[0]);
    run.pipeline.set_state(gst::State::Null).unwrap();
    // Stopping gives up the 10 buffered ones, counted.
    assert_eq!(run.counter("dropped"), total);
    assert_eq!(run.counter("buffered"), 0);
}

#[test]
fn file_target_has_every_message_kind_in_order() {
    let path = std::env::temp_dir().join(format!("vigil-msgbroker-{}.jsonl", std::process::id()));
    let run = pipeline(&format!(
        "protocol=file path={} messages=all source-name=cam-2",
        path.display()
    ));
    run.pipeline.set_state(gst::State::Playing).unwrap();
    let frames = 30;
    for i in 0..frames {
        run.src.push_buffer(frame(i)).unwrap();
    }
    // A frame without meta publishes nothing.
    run.src
        .push_buffer(gst::Buffer::with_size(64 * 48).unwrap())
        .unwrap();
    run.finish(Duration::from_secs(10));
    let expected = frames + 2 * frames + events_in(frames);
    assert_eq!(run.counter("published"), expected);
    assert_eq!(run.counter("dropped"), 0);
    run.pipeline.set_state(gst::State::Null).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, expected);
    let mut seq = 0;
    let mut it = lines.iter();
    for i in 0..frames {
        let f: FrameEvent = serde_json::from_str(it.next().unwrap()).unwrap();
        assert_eq!((f.seq, f.frame, f.source.as_str()), (Some(seq), i, "cam-2"));
        assert_eq!(f.objects.len(), 2);
        seq += 1;
        for k in 0..2 {
            let o: ObjectMessage = serde_json::from_str(it.next().unwrap()).unwrap();
            assert_eq!((o.seq, o.frame, o.object.id), (seq, i, k));
            assert_eq!(o.schema, OBJECT_SCHEMA);
            seq += 1;
        }
        for k in 0..(i % 3) + 1 {
            let a: AnalyticsMessage = serde_json::from_str(it.next().unwrap()).unwrap();
            assert_eq!(
                (a.seq, a.frame, a.event.track_id),
                (seq, i, Some(i * 10 + k))
            );
            seq += 1;
        }
    }
    std::fs::remove_file(&path).ok();
}

/// Run as a child process by `stdout_target_writes_json_lines`: publishes to its own stdout.
#[test]
#[ignore = "run by stdout_target_writes_json_lines in a child process"]
fn stdout_child() {
    if std::env::var_os("VIGIL_MSGBROKER_STDOUT_CHILD").is_none() {
        return;
    }
    let run = pipeline("protocol=stdout messages=analytics source-name=cam-3");
    run.pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..10 {
        run.src.push_buffer(frame(i)).unwrap();
    }
    run.finish(Duration::from_secs(10));
    run.pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn stdout_target_writes_json_lines() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "stdout_child", "--test-threads=1"])
        .env("VIGIL_MSGBROKER_STDOUT_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        // libtest's own "test stdout_child ... " may precede the first line.
        .filter_map(|l| l.find("{\"schema\"").map(|i| &l[i..]))
        .map(|l| serde_json::from_str::<AnalyticsMessage>(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, (0..events_in(10)).collect::<Vec<_>>(), "{text}");
}

fn start_error(props: &str) -> String {
    let run = pipeline(props);
    assert!(run.pipeline.set_state(gst::State::Playing).is_err());
    let bus = run.pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error message");
    run.pipeline.set_state(gst::State::Null).unwrap();
    match msg.view() {
        gst::MessageView::Error(e) => format!("{} {}", e.error(), e.debug().unwrap_or_default()),
        _ => unreachable!(),
    }
}

#[test]
fn configuration_errors_fail_start_with_a_clear_message() {
    let e = start_error("topic=vigil/{camera}");
    assert!(
        e.contains("property 'topic'") && e.contains("{camera}"),
        "{e}"
    );
    let e = start_error("messages=frames,tracks");
    assert!(
        e.contains("property 'messages'") && e.contains("'tracks'"),
        "{e}"
    );
    let e = start_error("tls-ca-file=/nonexistent/ca.pem");
    assert!(e.contains("/nonexistent/ca.pem") && e.contains("CA"), "{e}");
    let e = start_error("protocol=kafka");
    assert!(e.contains("'kafka'"), "{e}");
    let e = start_error("protocol=file");
    assert!(e.contains("property 'path'"), "{e}");
    let e = start_error("drop-policy=random");
    assert!(e.contains("'random'"), "{e}");
}
