//! `vigil run` with `api:`: the HTTP API of a running pipeline answers /health, /streams and /metrics
//! (Prometheus text that a real parser accepts), then the run stops cleanly on SIGINT.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn skip(message: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {message}");
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn running_pipeline_serves_health_streams_and_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let media = root.join("samples/media/bikes.mp4");
    if !media.is_file() || !root.join("models/nanodet/1/model.onnx").is_file() {
        skip(format_args!(
            "running_pipeline_serves_health_streams_and_metrics: assets not installed"
        ));
        return;
    }
    let dir = std::env::temp_dir().join(format!("vigil-api-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("api.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: apitest\nmodel_repository: {}\nsources:\n  - name: bikes\n    uri: {}\n    loop: true\n\
             inference:\n  model: nanodet\n  interval: 3\nrealtime: true\napi:\n  port: 0\n",
            root.join("models").display(),
            media.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("run")
        .arg(&cfg)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut addr = None;
    while addr.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && let Some(rest) = line.split("API http://").nth(1)
        {
            addr = Some(rest.trim_end_matches('/').to_string());
        }
    }
    let addr = addr.expect("vigil printed its API address");
    std::thread::sleep(Duration::from_secs(3));

    let (code, body) = get(&addr, "/health");
    assert_eq!((code, body.trim()), (200, "{\"status\":\"ok\"}"));
    let (code, body) = get(&addr, "/streams");
    assert_eq!(code, 200, "{body}");
    let streams: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s = &streams.as_array().expect("a list")[0];
    assert_eq!(s["name"], "bikes");
    assert_eq!(s["state"], "playing", "{body}");
    assert!(s["frames"].as_u64().unwrap() > 10, "{body}");
    let (code, metrics) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    for want in [
        "vigil_stream_frames_out_total{stream=\"bikes\"}",
        "vigil_stream_fps{stream=\"bikes\"}",
        "vigil_model_requests_total{model=\"nanodet\"",
        "vigil_model_batch_size_bucket",
        "vigil_model_compute_time_seconds_bucket",
    ] {
        assert!(metrics.contains(want), "missing {want} in:\n{metrics}");
    }
    // A real Prometheus text-format parser accepts it.
    let python = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cache/vigil/venv/bin/python"))
        .filter(|p| p.is_file());
    if let Some(py) = python {
        let mut p = Command::new(py)
            .args([
                "-c",
                "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\n\
                 print(len(list(f(sys.stdin.read()))))",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "parser: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let families: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(families >= 8, "{families} metric families");
    } else {
        skip(format_args!("prometheus_client parser: no venv"));
    }

    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
