//! `vigil run` with `outputs.mqtt`: the real binary on `samples/media/bikes.mp4` publishing frame and
//! object messages to a mosquitto broker started by the test, and one-line config errors for a bad
//! MQTT section (naming the key and its line).

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_core::events::ObjectMessage;
use vigil_core::objects::FrameEvent;
use vigil_publish::testbroker::{Broker, Subscriber, available};
use vigil_tests::{
    TempDir, Vigil, analytics_events, read_events, repo_root, skip, traffic_config_head, vigil_bin,
};

fn config(dir: &Path, media: &Path, mqtt: &str) -> std::path::PathBuf {
    let text = format!(
        "name: mq\n\
         model_repository: {repo}\n\
         sources:\n  - name: bikes\n    uri: {media}\n\
         inference:\n  model: nanodet\n  threshold: 0.4\n\
         outputs:\n  mqtt:\n{mqtt}",
        repo = repo_root().join("models").display(),
        media = media.display(),
    );
    let p = dir.join("mq.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `samples/media/NAME` when it, the NanoDet model and mosquitto are installed; otherwise skips.
fn media_and_broker(name: &str) -> Option<std::path::PathBuf> {
    let media = repo_root().join("samples/media").join(name);
    if !media.is_file() || !repo_root().join("models/nanodet/1/model.onnx").is_file() {
        skip(format_args!(
            "samples and models are not installed; run make setup"
        ));
        return None;
    }
    if !available() {
        skip(format_args!(
            "mosquitto is not installed; run scripts/setup.sh"
        ));
        return None;
    }
    Some(media)
}

#[test]
fn run_publishes_every_frame_and_object_to_mqtt() {
    let Some(media) = media_and_broker("bikes.mp4") else {
        return;
    };
    let broker = Broker::start(None);
    let sub = Subscriber::start(broker.port, "vigil-e2e-sub", "vigil/mq/#", &[]);
    let dir = TempDir::new("mqtt");
    let cfg = config(
        dir.path(),
        &media,
        &format!(
            "    port: {}\n    topic: \"vigil/mq/{{source}}/{{kind}}\"\n    qos: 1\n    messages: [frames, objects]\n",
            broker.port
        ),
    );
    let (mut vigil, _lines) = Vigil::run(&cfg, &[]);
    let status = vigil.wait(Duration::from_secs(300));
    let stderr = vigil.stderr_text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "vigil exit; stderr:\n{stderr}"
    );
    let got = sub.collect(100_000, Duration::from_secs(30), Duration::from_secs(5));
    let mut frames = Vec::new();
    let mut objects = 0;
    let mut seqs = Vec::new();
    for line in &got {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match v["schema"].as_str() {
            Some("vigil.frame.v1") => {
                let f: FrameEvent = serde_json::from_str(line).unwrap();
                seqs.push(f.seq.expect("seq"));
                // The objects of this frame follow it.
                frames.push((f.frame, f.objects.len()));
            }
            Some("vigil.object.v1") => {
                let o: ObjectMessage = serde_json::from_str(line).unwrap();
                assert_eq!(o.source, "bikes");
                seqs.push(o.seq);
                objects += 1;
            }
            other => panic!("unexpected schema {other:?}: {line}"),
        }
    }
    // A repeat (QoS 1 after a reconnection) would have a seq seen before.
    let mut kept: Vec<u64> = Vec::new();
    for s in seqs {
        if kept.last().is_none_or(|l| s > *l) {
            kept.push(s);
        }
    }
    let seqs = kept;
    eprintln!(
        "{} messages: {} frames, {objects} objects",
        got.len(),
        frames.len()
    );
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "seq is consecutive"
    );
    assert_eq!(
        frames.len(),
        250,
        "one frame message per frame of bikes.mp4"
    );
    assert!(frames.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    let in_frames: usize = frames.iter().map(|f| f.1).sum();
    assert_eq!(objects, in_frames, "one object message per object");
    assert!(
        objects > 50,
        "NanoDet finds the bikes and riders: {objects}"
    );
}

/// Runs `vigil run` on a config expected to fail validation; returns its single stderr line.
fn error_line(cfg: &Path) -> String {
    let out = Command::new(vigil_bin())
        .arg("run")
        .arg(cfg)
        .output()
        .expect("run vigil");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_string()
}

#[test]
fn bad_mqtt_settings_name_the_key_and_line() {
    if !repo_root().join("models/nanodet/1/model.onnx").is_file() {
        skip(format_args!("models are not installed; run make setup"));
        return;
    }
    let dir = TempDir::new("mqtt-bad");
    let media = dir.path().join("clip.avi");
    std::fs::write(&media, b"RIFF not really an avi").unwrap();
    let cases = [
        (
            "    topic: \"vigil/{camera}\"\n",
            "outputs.mqtt.topic",
            "{camera}",
            11,
        ),
        ("    qos: 3\n", "outputs.mqtt.qos", "not 0, 1 or 2", 11),
        (
            "    port: 1883\n    tls:\n      ca: missing-ca.pem\n",
            "outputs.mqtt.tls.ca",
            "missing-ca.pem",
            13,
        ),
        (
            "    messages: [frames, tracks]\n",
            "outputs.mqtt.messages",
            "'tracks'",
            11,
        ),
        ("    drop: random\n", "outputs.mqtt.drop", "'random'", 11),
    ];
    for (yaml, key, what, line_no) in cases {
        let cfg = config(dir.path(), &media, yaml);
        let line = error_line(&cfg);
        assert!(
            line.contains(&cfg.display().to_string())
                && line.contains(key)
                && line.contains(what)
                && line.contains(&format!("line {line_no}:")),
            "{line}"
        );
    }
}

/// Issue 5, acceptance 4 with real analytics: `configs/traffic.yaml` (NanoDet, SORT, the `walkway`
/// line and the `square` zone) on the whole of `vtest.avi`, publishing frames and analytics events to a
/// mosquitto started by the test. Once the first frame messages have arrived, the broker is stopped
/// for 5 s and started again while vigil goes on. The subscriber (persistent session, QoS 1) must end
/// with every message in `seq` order and none missing, and its `line_crossed` (and other analytics)
/// events must be exactly those of the run's own events file, in the same order.
#[test]
fn traffic_line_crossings_reach_mqtt_across_a_broker_outage() {
    let Some(media) = media_and_broker("vtest.avi") else {
        return;
    };
    let mut broker = Broker::start(None);
    let sub = Subscriber::start(broker.port, "vigil-traffic-sub", "vigil/traffic/#", &[]);
    let dir = TempDir::new("mqtt-traffic");
    let events = dir.path().join("events.jsonl");
    let head = traffic_config_head(&media);
    let cfg = dir.path().join("traffic.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{head}\noutputs:\n  events:\n    path: {}\n  mqtt:\n    port: {}\n    \
             topic: \"vigil/traffic/{{source}}/{{kind}}\"\n    qos: 1\n    buffer: 20000\n    \
             messages: [frames, analytics]\nrealtime: false\n",
            events.display(),
            broker.port
        ),
    )
    .unwrap();

    let (mut vigil, _lines) = Vigil::run(&cfg, &[]);
    // The run is under way once messages arrive; then the outage.
    let mut got = sub.collect(20, Duration::from_secs(120), Duration::from_secs(120));
    assert_eq!(
        got.len(),
        20,
        "no messages from vigil; stderr:\n{}",
        vigil.stderr_text()
    );
    broker.stop();
    std::thread::sleep(Duration::from_secs(5));
    let still_running = matches!(vigil.child.try_wait(), Ok(None));
    broker.restart();
    assert!(
        still_running,
        "vigil ended before the broker came back: the outage proves nothing; stderr:\n{}",
        vigil.stderr_text()
    );
    let status = vigil.wait(Duration::from_secs(600));
    let stderr = vigil.stderr_text();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "vigil exit; stderr:\n{stderr}"
    );
    got.extend(sub.collect(100_000, Duration::from_secs(60), Duration::from_secs(5)));

    // Keep the first arrival of each seq (QoS 1 may repeat the messages in flight at the break).
    let mut messages: Vec<(u64, serde_json::Value)> = Vec::new();
    for line in &got {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = v["seq"].as_u64().expect("every message has a seq");
        if messages.last().is_none_or(|(last, _)| seq > *last) {
            messages.push((seq, v));
        }
    }
    let seqs: Vec<u64> = messages.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "seq consecutive from 0: nothing lost, nothing out of order"
    );
    let frames = messages
        .iter()
        .filter(|(_, v)| v["schema"] == "vigil.frame.v1")
        .count();
    let published: Vec<(u64, serde_json::Value)> = messages
        .iter()
        .filter(|(_, v)| v["schema"] == "vigil.analytics.v1")
        .map(|(_, v)| {
            // The event's own fields follow the message's header (flattened).
            let mut event = v.as_object().unwrap().clone();
            for header in ["schema", "seq", "source", "frame", "pts_ns", "timestamp_ms"] {
                event.remove(header);
            }
            (
                v["frame"].as_u64().unwrap(),
                serde_json::Value::Object(event),
            )
        })
        .collect();

    // The same run's events file: every frame, and each frame's analytics events in order.
    let file = read_events(&events).unwrap();
    let expected = analytics_events(&file);
    let crossings = |l: &[(u64, serde_json::Value)]| -> Vec<String> {
        l.iter()
            .filter(|(_, e)| e["kind"] == "line_crossed")
            .map(|(f, e)| {
                format!(
                    "frame {f} track {} {} {}",
                    e["track_id"], e["label"], e["direction"]
                )
            })
            .collect()
    };
    eprintln!(
        "{} messages ({} repeats dropped): {frames} frames, {} analytics events, line crossings: {:?}",
        got.len(),
        got.len() - messages.len(),
        published.len(),
        crossings(&published)
    );
    assert_eq!(frames, file.len(), "one frame message per frame");
    assert_eq!(file.len(), 795, "every frame of vtest.avi");
    assert!(
        crossings(&expected).len() >= 5,
        "the walkway line is crossed in vtest.avi: {:?}",
        crossings(&expected)
    );
    assert_eq!(crossings(&published), crossings(&expected));
    assert_eq!(published, expected, "every analytics event, in order");
}
