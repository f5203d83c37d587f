//! Many streams, one model: 8 `vigilinfer` branches naming the same model share its dynamic batcher,
//! so frames of different streams are executed together (Triton's dynamic batching).

mod common;

use std::path::Path;

use vigil_engine::ModelServer;

/// A private repository with the NanoDet entry, configured for batches of up to 8.
fn repository(dir: &Path) {
    let src = common::models_dir().join("nanodet");
    std::fs::create_dir_all(dir.join("nanodet/1")).unwrap();
    std::fs::copy(src.join("labels.txt"), dir.join("nanodet/labels.txt")).unwrap();
    let params: String = std::fs::read_to_string(src.join("config.pbtxt"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("parameters"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        dir.join("nanodet/config.pbtxt"),
        format!(
            "max_batch_size: 8\ndynamic_batching {{ max_queue_delay_microseconds: 100000 }}\n\
             instance_group [ {{ count: 1, kind: KIND_CPU }} ]\n{params}"
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(src.join("1/model.onnx"), dir.join("nanodet/1/model.onnx")).unwrap();
}

#[test]
fn eight_streams_share_one_batcher() {
    if !common::assets_installed("nanodet", "bus.png") {
        return;
    }
    common::init();
    let dir = std::env::temp_dir().join(format!("vigil-batching-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    repository(&dir);
    // Holding the handle keeps the runtime (and its statistics) alive after the pipeline stops.
    let handle = ModelServer::global()
        .acquire(&dir, "nanodet", None)
        .unwrap();

    const STREAMS: usize = 8;
    const FRAMES: usize = 12;
    let mut desc = String::new();
    for i in 0..STREAMS {
        desc.push_str(&format!(
            "filesrc location=\"{}\" ! pngdec ! imagefreeze num-buffers={FRAMES} ! videoconvert ! \
             video/x-raw,format=I420 ! vigilinfer model-repository=\"{}\" model=nanodet ! \
             appsink name=sink{i} sync=false emit-signals=false  ",
            common::media("bus.png").display(),
            dir.display()
        ));
    }
    let per_stream = common::run_streams(&desc, STREAMS, |i, frame| {
        assert!(frame.inferred);
        assert!(
            frame.objects.iter().any(|o| o.label == "bus"),
            "stream {i}: no bus"
        );
    });
    assert_eq!(per_stream, vec![FRAMES; STREAMS], "frames out per stream");

    let stats = handle.current().stats();
    let mean = stats.mean_batch_size();
    eprintln!(
        "8 streams x {FRAMES} frames: {} requests in {} executions, batch sizes {:?}, mean {mean:.2}",
        stats.requests, stats.executions, stats.batch_sizes
    );
    assert_eq!(stats.requests as usize, STREAMS * FRAMES);
    assert!(
        mean > 4.0,
        "mean batch size {mean:.2} (histogram {:?})",
        stats.batch_sizes
    );
    let _ = std::fs::remove_dir_all(&dir);
}
