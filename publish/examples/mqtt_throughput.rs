//! Measures MQTT delivery through a local mosquitto (started here on a free 127.0.0.1 port): how many
//! messages per second one publisher delivers at each QoS (at most `max_in_flight` unacknowledged
//! messages, so over a network this is bounded by the round trip to the broker).
//!
//! `cargo run --release -p vigil-publish --example mqtt_throughput [MESSAGES]`

use std::time::{Duration, Instant};
use vigil_publish::testbroker::{Broker, available};
use vigil_publish::{DropPolicy, Message, MqttConfig, Publisher, PublisherConfig, QoS, Target};

fn main() {
    if !available() {
        eprintln!("mosquitto is not installed (scripts/setup.sh installs it)");
        std::process::exit(1);
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let broker = Broker::start(None);
    let payload = format!(
        "{{\"schema\":\"vigil.analytics.v1\",\"pad\":\"{}\"}}",
        "x".repeat(200)
    );
    for (name, qos) in [
        ("0", QoS::AtMostOnce),
        ("1", QoS::AtLeastOnce),
        ("2", QoS::ExactlyOnce),
    ] {
        let mut c = MqttConfig::new("127.0.0.1", broker.port, format!("throughput-{name}"));
        c.qos = qos;
        let p = Publisher::start(
            PublisherConfig {
                target: Target::Mqtt(c),
                buffer_size: n,
                drop_policy: DropPolicy::Newest,
            },
            |_| {},
        )
        .expect("publisher starts");
        // Connected first, so that the connection time is not measured.
        p.publish(Message::new("bench/warmup", "{}"));
        assert!(p.flush(Duration::from_secs(10)));
        let t = Instant::now();
        for _ in 0..n {
            p.publish(Message::new("bench/t", payload.clone()));
        }
        assert!(p.flush(Duration::from_secs(120)), "not delivered in 120 s");
        let s = t.elapsed().as_secs_f64();
        let stats = p.close(Duration::from_secs(1));
        println!(
            "QoS {name}: {n} messages of {} bytes in {s:.2} s = {:.0} messages/s (dropped {})",
            payload.len(),
            n as f64 / s,
            stats.dropped
        );
    }
}
