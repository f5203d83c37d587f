//! `vigilsrc`: a source bin that decodes a file, an image sequence, `rtsp://` or `http(s)://` URI into raw
//! video and keeps it flowing (in the spirit of DeepStream's `nvurisrcbin`).
//!
//! Inside: `uridecodebin` → (pad probe: frame dropping, timestamp continuity) → `queue` → ghost `src` pad.
//! Only the first video stream is exposed; other streams (audio, subtitles) are not decoded and end in a
//! `fakesink`. A URI without a video stream is an element error naming it.
//!
//! - **Decoder policy** (`decoder`): `auto` puts NVDEC decoders (`nvh264dec`, `nvh265dec`, … — they register
//!   only where an NVIDIA driver is present) first, else software; `gpu` does the same. Both post one
//!   warning per process (not per source) the first time a stream has no NVDEC decoder, and decode it in
//!   software; `cpu` never uses a hardware decoder. This is done per
//!   instance through `uridecodebin`'s `autoplug-sort` signal, never by changing global factory ranks.
//! - **Reconnection** of network URIs: an error (or, for live sources, an end of stream) of the inner
//!   `uridecodebin` does not reach the pipeline. The source goes `reconnecting`, posts a `vigilsrc-state`
//!   element message (`state`, `uri`, `attempt`, `reason`) and rebuilds its `uridecodebin` after an
//!   exponential backoff (`vigil_core::backoff`). After `reconnect-attempts` failures it goes `failed`
//!   and posts the error. File URIs fail at once. Rebuilding never changes the pipeline's state: the new
//!   `uridecodebin`'s asynchronous state messages are kept inside the bin, so other branches keep flowing.
//! - **Continuous timestamps**: the bin outputs one `TIME` segment starting at 0 and buffers stamped with
//!   their running time plus an offset. After a reconnection or a loop restart the offset is raised just
//!   enough that running time never goes backwards (a live source's frames leave at the pipeline's
//!   clock, never more than 1 s ahead of it, checked on every frame; a looped file continues right
//!   after its last frame). Repeated `stream-start`s and
//!   `segment`s from rebuilt sources are not forwarded; QoS events going upstream are shifted back.
//! - **Data timeout** (`data-timeout`, 10 s): a network source that delivers no frame for that long (at
//!   start, or while a live source is playing) is reconnected; a file that delivers no first frame fails.
//!   This also ends files whose demuxer error `decodebin` swallows (a truncated MP4 can fail while
//!   `decodebin` is still trying its demuxer, and the error is then never posted).
//! - **Looping** (`loop=true`): at the end of a file a flushing seek to 0 restarts it; the flushes stay in
//!   the bin.
//! - **Image sequences**: a path or `file://` URI with one printf-style number (`%d`, `%05d`; `%%` is a
//!   literal `%`), e.g. `/data/frames/img_%05d.jpg` or `file:///data/frames/%04d.png`, is read with
//!   `multifilesrc` (through `uridecodebin`'s `multifile://` source) and decoded by the decoder of the first
//!   image's type (typefound: `jpegdec`, `pngdec`, …, always in software). The sequence starts at the
//!   lowest number found in its folder (0 or 1 when the number is in a folder name) and ends, with EOS,
//!   at the first missing number; `loop=true` goes back to the first image. Frames are stamped
//!   `n / image-framerate` (default 25/1) and their caps carry that framerate. Every frame has the first
//!   image's size and format: an image of another size is scaled to it, keeping its aspect ratio (black
//!   borders), and converted (`videoconvert ! videoscale ! capsfilter` in the bin), so that downstream
//!   elements never renegotiate. A pattern that matches no file is an error naming the pattern. A still
//!   image file (`.jpg`, `.png`, …) is a sequence of one image: one frame, or with `loop=true` a stream
//!   of that image at `image-framerate`.
//! - **Live sources never accumulate latency**: for live sources (RTSP, or a source whose `is-live` is
//!   set) the queue is leaky (drops the oldest frames) and holds `live-queue-size` frames; the dropped
//!   frames are counted in `frames-dropped`.
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 vigilsrc uri=rtsp://127.0.0.1:8554/cam \
//!     rtsp-transport=tcp reconnect-interval=500 ! videoconvert ! autovideosink
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 vigilsrc uri=samples/media/bikes.mp4 loop=true \
//!     drop-frame-interval=2 ! videoconvert ! autovideosink
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 vigilsrc uri=/data/frames/img_%05d.jpg \
//!     image-framerate=30/1 ! videoconvert ! autovideosink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;
pub mod sequence;

/// The jitter-buffer latency of RTSP sources when `latency` is not set (ms).
pub const DEFAULT_LATENCY_MS: u32 = 200;

glib::wrapper! {
    pub struct VigilSrc(ObjectSubclass<imp::VigilSrc>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

/// Which decoders `vigilsrc` may use.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstVigilSrcDecoder")]
pub enum DecoderPolicy {
    #[default]
    #[enum_value(name = "NVDEC when available, else software", nick = "auto")]
    Auto = 0,
    #[enum_value(
        name = "NVDEC; warns once and uses software when unavailable",
        nick = "gpu"
    )]
    Gpu = 1,
    #[enum_value(name = "Software decoders only", nick = "cpu")]
    Cpu = 2,
}

/// The lower transport `rtspsrc` may use.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstVigilSrcRtspTransport")]
pub enum RtspTransport {
    #[default]
    #[enum_value(name = "rtspsrc's default (UDP, then TCP)", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "RTP over the RTSP TCP connection", nick = "tcp")]
    Tcp = 1,
    #[enum_value(name = "RTP over UDP", nick = "udp")]
    Udp = 2,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    DecoderPolicy::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    RtspTransport::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "vigilsrc",
        gst::Rank::NONE,
        VigilSrc::static_type(),
    )
}
