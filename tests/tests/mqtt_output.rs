//! `vigil run` with `outputs.mqtt`: the real binary on `samples/media/bikes.mp4` publishing frame and
//! object messages to a mosquitto broker started by the test, and one-line config errors for a bad
//! MQTT section (naming the key and its line).

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_core::events::ObjectMessage;
use vigil_core::objects::FrameEvent;
use vigil_publish::testbroker::{Broker, Subscriber, available};
use vigil_tests::{TempDir, Vigil, repo_root, skip, vigil_bin};

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

#[test]
fn run_publishes_every_frame_and_object_to_mqtt() {
    let media = repo_root().join("samples/media/bikes.mp4");
    if !media.is_file() || !repo_root().join("models/nanodet/1/model.onnx").is_file() {
        skip(format_args!(
            "samples and models are not installed; run make setup"
        ));
        return;
    }
    if !available() {
        skip(format_args!(
            "mosquitto is not installed; run scripts/setup.sh"
        ));
        return;
    }
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
