//! Frames of the user's media for calibration and evaluation: decoded by GStreamer into packed
//! 4-byte pixels (the order the model's pre-processing reads), spread over a file's whole length.

use gst::prelude::*;
use std::path::Path;
use std::time::Duration;

/// Packed pixel order of captured frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Bgrx,
    Rgbx,
}

impl Order {
    fn caps_format(self) -> &'static str {
        match self {
            Order::Bgrx => "BGRx",
            Order::Rgbx => "RGBx",
        }
    }
}

/// One decoded frame, rows packed (stride = 4 × width).
#[derive(Debug, Clone)]
pub struct Frame {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The medium and the frame's number in it (for reports).
    pub origin: String,
}

/// How long a medium may go without a frame before capture gives up on it.
const FRAME_TIMEOUT: Duration = Duration::from_secs(20);

/// The URI GStreamer opens for `media`: a URI as given, a path as a `file://` URI.
fn uri_of(media: &str) -> Result<String, String> {
    if media.contains("://") {
        return Ok(media.to_owned());
    }
    let path = Path::new(media);
    if !path.is_file() {
        return Err(format!("{media}: no such file (and not a URI)"));
    }
    let path = path.canonicalize().map_err(|e| format!("{media}: {e}"))?;
    Ok(crate::config::path_to_file_uri(&path))
}

/// Up to `count` frames of `media` (a file or a URI), every `stride`-th frame where the file's
/// length is known (so that they cover all of it), consecutive frames of a live source.
pub fn frames(media: &str, order: Order, count: usize) -> Result<Vec<Frame>, String> {
    crate::pipeline::init().map_err(|e| e.to_string())?;
    let uri = uri_of(media)?;
    let desc = format!(
        "uridecodebin uri=\"{uri}\" ! videoconvert ! video/x-raw,format={} ! appsink name=sink sync=false max-buffers=8",
        order.caps_format()
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("{media}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| format!("{media}: not a pipeline"))?;
    let result = pull(&pipeline, media, count);
    let _ = pipeline.set_state(gst::State::Null);
    let frames = result?;
    if frames.is_empty() {
        return Err(format!("{media}: no frame decoded"));
    }
    Ok(frames)
}

fn pull(pipeline: &gst::Pipeline, media: &str, count: usize) -> Result<Vec<Frame>, String> {
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("{media}: cannot play: {e}"))?;
    let mut out = Vec::new();
    let mut stride = None;
    let mut index = 0usize;
    while out.len() < count {
        let Some(sample) = next_sample(pipeline, &sink, media)? else {
            break;
        };
        let stride = *stride.get_or_insert_with(|| spread_stride(pipeline, &sample, count));
        if index.is_multiple_of(stride) {
            out.push(packed(&sample, format!("{media}#{index}"))?);
        }
        index += 1;
    }
    Ok(out)
}

/// The next frame, `None` at the end of the medium; an error the pipeline posts ends the wait at
/// once (the bus is checked between short waits), as does [`FRAME_TIMEOUT`] without a frame.
fn next_sample(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    media: &str,
) -> Result<Option<gst::Sample>, String> {
    let started = std::time::Instant::now();
    loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            return Ok(Some(sample));
        }
        bus_error(pipeline, media)?;
        if sink.is_eos() {
            return Ok(None);
        }
        if started.elapsed() > FRAME_TIMEOUT {
            return Err(format!(
                "{media}: no frame for {} s",
                FRAME_TIMEOUT.as_secs()
            ));
        }
    }
}

/// An error the pipeline posted, as the capture's error.
fn bus_error(pipeline: &gst::Pipeline, media: &str) -> Result<(), String> {
    let Some(bus) = pipeline.bus() else {
        return Ok(());
    };
    match bus.pop_filtered(&[gst::MessageType::Error]) {
        Some(msg) => match msg.view() {
            gst::MessageView::Error(e) => Err(format!("{media}: {}", e.error())),
            _ => Ok(()),
        },
        None => Ok(()),
    }
}

/// Every how many frames to keep one so that `count` frames cover the medium: its duration
/// times its frame rate over `count`; 1 when either is unknown (a live source, a still image).
fn spread_stride(pipeline: &gst::Pipeline, sample: &gst::Sample, count: usize) -> usize {
    let duration = pipeline.query_duration::<gst::ClockTime>();
    let fps = sample
        .caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
        .map(|i| i.fps())
        .filter(|f| f.numer() > 0 && f.denom() > 0);
    match (duration, fps) {
        (Some(d), Some(f)) => {
            let total = d.seconds_f64() * f.numer() as f64 / f.denom() as f64;
            ((total / count.max(1) as f64).floor() as usize).max(1)
        }
        _ => 1,
    }
}

fn packed(sample: &gst::Sample, origin: String) -> Result<Frame, String> {
    let caps = sample.caps().ok_or("sample without caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
    let buffer = sample.buffer().ok_or("sample without buffer")?;
    let map = buffer.map_readable().map_err(|e| e.to_string())?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = info.stride()[0] as usize;
    let data: Vec<u8> = map
        .as_slice()
        .chunks(stride)
        .take(h)
        .flat_map(|row| row[..w * 4].iter().copied())
        .collect();
    if data.len() != w * h * 4 {
        return Err(format!("{origin}: a short frame ({} bytes)", data.len()));
    }
    Ok(Frame {
        data,
        width: w as u32,
        height: h as u32,
        origin,
    })
}

/// Splits `total` samples into calibration and held-out ones, interleaved so both cover every
/// medium: sample `i` is held out when the running share of held-out ones falls behind
/// `held / total`.
pub fn is_held_out(i: usize, held: usize, total: usize) -> bool {
    total > 0 && (i + 1) * held / total > i * held / total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_samples_are_interleaved_and_counted() {
        let picks: Vec<bool> = (0..9).map(|i| is_held_out(i, 3, 9)).collect();
        assert_eq!(picks.iter().filter(|&&h| h).count(), 3);
        assert_eq!(
            picks,
            [false, false, true, false, false, true, false, false, true]
        );
        assert_eq!((0..300).filter(|&i| is_held_out(i, 100, 300)).count(), 100);
        assert!(!(0..10).any(|i| is_held_out(i, 0, 10)));
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = frames("/nonexistent/clip.mp4", Order::Bgrx, 3).unwrap_err();
        assert!(e.contains("/nonexistent/clip.mp4"), "{e}");
    }
}
