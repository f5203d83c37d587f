//! The publishers against real targets: a mosquitto broker started by the test (outage and restart,
//! a too-small buffer, TLS with client certificates), a JSON-lines file and an in-memory writer.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_publish::testbroker::{Broker, BrokerTls, Subscriber, available, make_certs};
use vigil_publish::{
    DropPolicy, Message, MqttConfig, PublishError, Publisher, PublisherConfig, QoS, Status, Target,
    TlsFiles,
};

fn skip() -> bool {
    if !available() {
        eprintln!("SKIPPED: mosquitto / mosquitto_sub are not installed; run scripts/setup.sh");
        return true;
    }
    false
}

fn msg(topic: &str, seq: u64) -> Message {
    Message::new(topic, format!("{{\"seq\":{seq}}}"))
}

fn seqs(payloads: &[String]) -> Vec<u64> {
    payloads
        .iter()
        .map(|p| {
            let v: serde_like::Seq = serde_like::parse(p);
            v.0
        })
        .collect()
}

/// What an at-least-once consumer keeps: each message whose `seq` is above every one seen before
/// (a repeat after a reconnection is skipped). Equal to `0..n` only if nothing was lost or reordered.
fn first_arrivals(seqs: &[u64]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for &s in seqs {
        if out.last().is_none_or(|l| s > *l) {
            out.push(s);
        }
    }
    out
}

/// A tiny parser for `{"seq":N}` so that this crate needs no JSON dependency.
mod serde_like {
    pub struct Seq(pub u64);
    pub fn parse(s: &str) -> Seq {
        let i = s.find("\"seq\":").expect("a seq field") + 6;
        let digits: String = s[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
        Seq(digits.parse().expect("a number"))
    }
}

fn statuses() -> (
    Arc<Mutex<Vec<Status>>>,
    impl Fn(Status) + Send + Sync + 'static,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    (log, move |s| l2.lock().unwrap().push(s))
}

fn mqtt(port: u16, id: &str, qos: QoS) -> MqttConfig {
    let mut c = MqttConfig::new("127.0.0.1", port, id);
    c.qos = qos;
    c.reconnect_delay = Duration::from_millis(200);
    c
}

#[test]
fn broker_outage_is_buffered_and_delivered_in_order() {
    if skip() {
        return;
    }
    let mut broker = Broker::start(None);
    let sub = Subscriber::start(broker.port, "outage-sub", "vigil/test/#", &[]);
    let (log, status) = statuses();
    let p = Publisher::start(
        PublisherConfig {
            target: Target::Mqtt(mqtt(broker.port, "outage-pub", QoS::AtLeastOnce)),
            buffer_size: 1000,
            drop_policy: DropPolicy::Oldest,
        },
        status,
    )
    .unwrap();
    // 200 messages at 50/s; the broker is down from the 1st to the 3rd second... of the 4 s.
    let n = 200u64;
    let start = Instant::now();
    let mut max_buffered = 0;
    for i in 0..n {
        if i == 50 {
            broker.stop();
        }
        if i == 150 {
            broker.restart();
        }
        p.publish(msg("vigil/test/a", i));
        max_buffered = max_buffered.max(p.stats().buffered);
        let due = start + Duration::from_millis(20 * (i + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    assert!(p.flush(Duration::from_secs(20)), "everything delivered");
    let stats = p.close(Duration::from_secs(2));
    let got = sub.collect(n as usize, Duration::from_secs(20), Duration::from_secs(10));
    let got = seqs(&got);
    let dedup = first_arrivals(&got);
    eprintln!(
        "received {} ({} after removing repeats), max buffered {max_buffered}, stats {stats:?}",
        got.len(),
        dedup.len()
    );
    assert_eq!(dedup, (0..n).collect::<Vec<_>>(), "every message, in order");
    assert_eq!(stats.published, n);
    assert_eq!(stats.dropped, 0);
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(
        max_buffered >= 90,
        "the outage was buffered: {max_buffered}"
    );
    let log = log.lock().unwrap();
    let outages = log
        .iter()
        .filter(|s| matches!(s, Status::Disconnected(_)))
        .count();
    assert_eq!(outages, 1, "one warning per outage: {log:?}");
    assert!(log.contains(&Status::Reconnected), "{log:?}");
}

#[test]
fn too_small_buffer_counts_drops_exactly() {
    if skip() {
        return;
    }
    for (policy, expect) in [
        (DropPolicy::Newest, (0..20).collect::<Vec<u64>>()),
        (DropPolicy::Oldest, (30..50).collect::<Vec<u64>>()),
    ] {
        let mut broker = Broker::start(None);
        let id = format!("small-sub-{}", policy.as_str());
        // Subscribe (persistent session), then take the broker down before publishing.
        let sub = Subscriber::start(broker.port, &id, "vigil/small", &[]);
        broker.stop();
        let p = Publisher::start(
            PublisherConfig {
                target: Target::Mqtt(mqtt(broker.port, "small-pub", QoS::AtLeastOnce)),
                buffer_size: 20,
                drop_policy: policy,
            },
            |_| {},
        )
        .unwrap();
        let accepted = (0..50)
            .filter(|i| p.publish(msg("vigil/small", *i)))
            .count();
        let s = p.stats();
        assert_eq!((s.buffered, s.dropped, s.published), (20, 30, 0), "{s:?}");
        assert_eq!(accepted, if policy == DropPolicy::Newest { 20 } else { 50 });
        broker.restart();
        assert!(p.flush(Duration::from_secs(20)));
        let s = p.close(Duration::from_secs(2));
        assert_eq!((s.published, s.dropped), (20, 30));
        let got = seqs(&sub.collect(20, Duration::from_secs(15), Duration::from_secs(8)));
        assert_eq!(got, expect, "{policy:?}");
    }
}

#[test]
fn closing_without_a_broker_counts_the_rest_as_dropped() {
    let port = vigil_publish::testbroker::free_port();
    let (log, status) = statuses();
    let p = Publisher::start(
        PublisherConfig {
            target: Target::Mqtt(mqtt(port, "nobody", QoS::AtLeastOnce)),
            buffer_size: 100,
            drop_policy: DropPolicy::Oldest,
        },
        status,
    )
    .unwrap();
    for i in 0..7 {
        p.publish(msg("t", i));
    }
    let s = p.close(Duration::from_millis(300));
    assert_eq!((s.published, s.dropped, s.buffered), (0, 7, 0));
    let log = log.lock().unwrap();
    // Refused, or reset when another test's listener took the free port for a moment in between.
    assert!(
        matches!(log.first(), Some(Status::Disconnected(r)) if r.contains("refused") || r.contains("reset")),
        "{log:?}"
    );
}

#[test]
fn tls_with_client_certificates() {
    if skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("vigil-tls-{}", std::process::id()));
    let [ca, cert, key, ccert, ckey] = make_certs(&dir);
    let broker = Broker::start(Some(BrokerTls {
        ca: ca.clone(),
        cert,
        key,
        require_client_cert: true,
    }));
    let cas = ca.display().to_string();
    let cc = ccert.display().to_string();
    let ck = ckey.display().to_string();
    let sub = Subscriber::start(
        broker.port,
        "tls-sub",
        "vigil/tls",
        &["--cafile", &cas, "--cert", &cc, "--key", &ck],
    );
    let mut c = mqtt(broker.port, "tls-pub", QoS::ExactlyOnce);
    c.tls = Some(TlsFiles {
        ca: Some(ca.clone()),
        cert: Some(ccert.clone()),
        key: Some(ckey.clone()),
    });
    let p = Publisher::start(
        PublisherConfig {
            target: Target::Mqtt(c),
            buffer_size: 100,
            drop_policy: DropPolicy::Oldest,
        },
        |_| {},
    )
    .unwrap();
    for i in 0..10 {
        p.publish(msg("vigil/tls", i));
    }
    assert!(p.flush(Duration::from_secs(10)), "{:?}", p.stats());
    let s = p.close(Duration::from_secs(2));
    assert_eq!((s.published, s.dropped), (10, 0));
    let got = seqs(&sub.collect(10, Duration::from_secs(10), Duration::from_secs(5)));
    assert_eq!(got, (0..10).collect::<Vec<_>>());

    // Without a client certificate the broker refuses the handshake: nothing is delivered, the
    // messages stay buffered and are counted as dropped at close.
    let mut c = mqtt(broker.port, "tls-nocert", QoS::AtLeastOnce);
    c.tls = Some(TlsFiles {
        ca: Some(ca.clone()),
        ..Default::default()
    });
    let (log, status) = statuses();
    let p = Publisher::start(
        PublisherConfig {
            target: Target::Mqtt(c),
            buffer_size: 100,
            drop_policy: DropPolicy::Oldest,
        },
        status,
    )
    .unwrap();
    p.publish(msg("vigil/tls", 99));
    std::thread::sleep(Duration::from_millis(1000));
    let s = p.close(Duration::ZERO);
    assert_eq!((s.published, s.dropped), (0, 1));
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, Status::Disconnected(_))),
        "{:?}",
        log.lock().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn credentials_are_sent_and_a_refusal_is_reported() {
    if skip() {
        return;
    }
    let broker = Broker::start_with(None, Some(("vigil", "s3cret")));
    let sub = Subscriber::start(
        broker.port,
        "auth-sub",
        "vigil/auth",
        &["-u", "vigil", "-P", "s3cret"],
    );
    let mut c = mqtt(broker.port, "auth-pub", QoS::AtLeastOnce);
    c.username = Some("vigil".into());
    c.password = Some("s3cret".into());
    let p = Publisher::start(
        PublisherConfig {
            target: Target::Mqtt(c),
            buffer_size: 10,
            drop_policy: DropPolicy::Oldest,
        },
        |_| {},
    )
    .unwrap();
    for i in 0..5 {
        p.publish(msg("vigil/auth", i));
    }
    assert!(p.flush(Duration::from_secs(10)), "{:?}", p.stats());
    assert_eq!(p.close(Duration::from_secs(1)).published, 5);
    let got = seqs(&sub.collect(5, Duration::from_secs(10), Duration::from_secs(5)));
    assert_eq!(got, (0..5).collect::<Vec<_>>());

    let mut c = mqtt(broker.port, "auth-bad", QoS::AtLeastOnce);
    c.username = Some("vigil".into());
    c.password = Some("wrong".into());
    let (log, status) = statuses();
    let p = Publisher::start(
        PublisherConfig {
            target: Target::Mqtt(c),
            buffer_size: 10,
            drop_policy: DropPolicy::Oldest,
        },
        status,
    )
    .unwrap();
    p.publish(msg("vigil/auth", 99));
    std::thread::sleep(Duration::from_millis(800));
    let s = p.close(Duration::ZERO);
    assert_eq!((s.published, s.dropped), (0, 1));
    let log = log.lock().unwrap();
    assert!(
        matches!(log.first(), Some(Status::Disconnected(r)) if r.contains("refused")),
        "{log:?}"
    );
    assert_eq!(log.len(), 1, "reported once: {log:?}");
}

#[test]
fn bad_tls_files_fail_at_start_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("vigil-badtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("ca.txt");
    std::fs::write(&not_pem, "hello").unwrap();
    let start = |tls: TlsFiles| {
        let mut c = MqttConfig::new("127.0.0.1", 1, "x");
        c.tls = Some(tls);
        Publisher::start(
            PublisherConfig {
                target: Target::Mqtt(c),
                buffer_size: 1,
                drop_policy: DropPolicy::Oldest,
            },
            |_| {},
        )
    };
    let e = start(TlsFiles {
        ca: Some(dir.join("missing.crt")),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(
        matches!(e, PublishError::TlsFile { what: "CA", .. })
            && e.to_string().contains("missing.crt"),
        "{e}"
    );
    let e = start(TlsFiles {
        ca: Some(not_pem.clone()),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("ca.txt"), "{e}");
    let e = start(TlsFiles {
        ca: None,
        cert: Some(not_pem.clone()),
        key: None,
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("needs its key"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn file_target_writes_one_line_per_message_in_order() {
    let path = std::env::temp_dir().join(format!("vigil-publish-{}.jsonl", std::process::id()));
    let p = Publisher::start(
        PublisherConfig {
            target: Target::File(path.clone()),
            buffer_size: 1000,
            drop_policy: DropPolicy::Oldest,
        },
        |_| {},
    )
    .unwrap();
    for i in 0..500 {
        p.publish(msg("ignored", i));
    }
    let s = p.close(Duration::from_secs(5));
    assert_eq!((s.published, s.dropped), (500, 0));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(seqs(&lines), (0..500).collect::<Vec<_>>());
    std::fs::remove_file(&path).ok();

    let e = Publisher::start(
        PublisherConfig {
            target: Target::File("/nonexistent-dir/x.jsonl".into()),
            buffer_size: 1,
            drop_policy: DropPolicy::Oldest,
        },
        |_| {},
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("/nonexistent-dir/x.jsonl"), "{e}");
}

/// A writer that blocks until released, then fails every write: buffering and failure counting.
struct Gate {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    out: Arc<Mutex<Vec<u8>>>,
    fail: bool,
}

impl Write for Gate {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let (m, c) = &*self.open;
        let mut g = m.lock().unwrap();
        while !*g {
            g = c.wait(g).unwrap();
        }
        if self.fail {
            return Err(std::io::Error::other("disk full"));
        }
        self.out.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stalled_writer_never_blocks_the_caller_and_drops_are_counted() {
    for fail in [false, true] {
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let (log, status) = statuses();
        let p = Publisher::start(
            PublisherConfig {
                target: Target::Writer(Box::new(Gate {
                    open: open.clone(),
                    out: out.clone(),
                    fail,
                })),
                buffer_size: 10,
                drop_policy: DropPolicy::Newest,
            },
            status,
        )
        .unwrap();
        let t = Instant::now();
        for i in 0..100 {
            p.publish(msg("x", i));
        }
        assert!(t.elapsed() < Duration::from_secs(1), "publish never waits");
        // One message is taken by the stalled writer (still counted in the buffer): 10 buffered.
        let s = p.stats();
        assert_eq!((s.buffered, s.dropped), (10, 90), "{s:?}");
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        assert!(p.flush(Duration::from_secs(5)));
        let s = p.close(Duration::from_secs(1));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if fail {
            assert_eq!((s.published, s.dropped), (0, 100));
            assert!(lines.is_empty());
            let log = log.lock().unwrap();
            assert_eq!(log.len(), 1, "reported once: {log:?}");
            assert!(matches!(&log[0], Status::Failed(r) if r.contains("disk full")));
        } else {
            assert_eq!((s.published, s.dropped), (10, 90));
            assert_eq!(seqs(&lines), (0..10).collect::<Vec<_>>());
        }
    }
}
