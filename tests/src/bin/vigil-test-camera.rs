//! `vigil-test-camera`: a real RTSP camera for tests and demos. It serves one media file in an endless
//! loop as H.264 over RTSP, in real time, from its own process (so that stopping the camera is a real
//! outage: killing the process drops every TCP connection).
//!
//! ```text
//! vigil-test-camera --port P --mount /cam --file PATH [--width W] [--height H] [--fps F]
//!                   [--bitrate-kbps K] [--codec h264|h265|mjpeg] [--address 127.0.0.1]
//!                   [--per-client]
//! ```
//!
//! The mount is a shared `gst-rtsp-server` media factory playing
//! `vigilsrc uri=file://PATH loop=true ! videoconvert ! videoscale ! videorate ! video/x-raw,… !
//! x264enc tune=zerolatency … ! rtph264pay` (`--codec h265`: `x265enc … ! rtph265pay`; `mjpeg`:
//! `jpegenc ! rtpjpegpay`, frame sizes in multiples of 8 as RFC 2435 needs); `vigilsrc` restarts the file at its end with increasing
//! timestamps and the media's sinks are synchronised to the clock, so it plays at the file's speed.
//! Like a live camera, the media cannot seek: a client's `PLAY` starts where the stream is. With
//! `--per-client` each client gets a media of its own that starts at the file's first frame instead
//! (what a multi-host test compares between two runs).
//! Without `--width`/`--height`/`--fps` the file's own size and frame rate are kept. `--port 0` picks a
//! free port. Once listening, it prints `ready rtsp://ADDR:PORT/MOUNT` on standard output; it runs until
//! SIGTERM or SIGINT (exit 0) or until killed. Errors (bad arguments, missing file, port in use) are one
//! line on standard error and exit status 1 (2 for usage errors).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gst::glib;
use gst_rtsp_server::prelude::*;

const USAGE: &str = "usage: vigil-test-camera --port P --file PATH [--mount /cam] [--width W] \
                     [--height H] [--fps F] [--bitrate-kbps K] [--codec h264|h265|mjpeg] \
                     [--address 127.0.0.1] [--per-client]";

/// What the camera sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    H264,
    H265,
    Mjpeg,
}

impl Codec {
    fn parse(v: &str) -> Result<Codec, String> {
        match v {
            "h264" => Ok(Codec::H264),
            "h265" => Ok(Codec::H265),
            "mjpeg" => Ok(Codec::Mjpeg),
            _ => Err(format!("--codec: '{v}' is not one of h264, h265, mjpeg")),
        }
    }

    /// The encoder and RTP payloader of the launch line.
    fn encode(self, key_int: u32, bitrate: u32) -> String {
        match self {
            Codec::H264 => format!(
                "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={key_int} \
                 bitrate={bitrate} threads=1 ! rtph264pay name=pay0 pt=96 config-interval=1"
            ),
            Codec::H265 => format!(
                "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={key_int} \
                 bitrate={bitrate} option-string=pools=1:frame-threads=1 \
                 ! rtph265pay name=pay0 pt=96 config-interval=1"
            ),
            Codec::Mjpeg => "jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26".to_string(),
        }
    }

    /// The GStreamer elements it needs.
    fn elements(self) -> [&'static str; 2] {
        match self {
            Codec::H264 => ["x264enc", "rtph264pay"],
            Codec::H265 => ["x265enc", "rtph265pay"],
            Codec::Mjpeg => ["jpegenc", "rtpjpegpay"],
        }
    }
}

/// The command line.
#[derive(Debug, Clone, PartialEq)]
struct Args {
    address: String,
    port: u16,
    mount: String,
    file: PathBuf,
    width: Option<u32>,
    height: Option<u32>,
    fps: Option<u32>,
    bitrate_kbps: Option<u32>,
    codec: Codec,
    /// `--per-client`: every client gets its own media, from the file's first frame (encoded the
    /// same way each time: two clients that read N frames decode the same N pictures).
    per_client: bool,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut address = "127.0.0.1".to_string();
    let mut port = None;
    let mut mount = "/cam".to_string();
    let mut file = None;
    let (mut width, mut height, mut fps, mut bitrate_kbps) = (None, None, None, None);
    let mut codec = Codec::H264;
    let mut per_client = false;
    fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("{flag}: not a valid number: '{v}'"))
    }
    fn positive(flag: &str, v: &str) -> Result<u32, String> {
        match number::<u32>(flag, v)? {
            0 => Err(format!("{flag}: must be at least 1")),
            n => Ok(n),
        }
    }
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Parsed::Help);
        }
        if arg == "--per-client" {
            per_client = true;
            continue;
        }
        // `--flag value` or `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag}: missing value"))
        };
        match flag.as_str() {
            "--address" => address = value()?,
            "--port" => port = Some(number::<u16>(&flag, &value()?)?),
            "--mount" => mount = value()?,
            "--file" => file = Some(PathBuf::from(value()?)),
            "--width" => width = Some(positive(&flag, &value()?)?),
            "--height" => height = Some(positive(&flag, &value()?)?),
            "--fps" => fps = Some(positive(&flag, &value()?)?),
            "--bitrate-kbps" => bitrate_kbps = Some(positive(&flag, &value()?)?),
            "--codec" => codec = Codec::parse(&value()?)?,
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    let port = port.ok_or("--port is required")?;
    let file = file.ok_or("--file is required")?;
    if !mount.starts_with('/') || mount.len() < 2 || mount.contains(char::is_whitespace) {
        return Err(format!(
            "--mount: '{mount}' must start with '/' and name a path (e.g. /cam)"
        ));
    }
    for (flag, v) in [("--width", width), ("--height", height)] {
        if v.is_some_and(|v| v % 2 == 1) {
            return Err(format!("{flag}: must be even (H.264 with 4:2:0 chroma)"));
        }
    }
    Ok(Parsed::Run(Args {
        address,
        port,
        mount,
        file,
        width,
        height,
        fps,
        bitrate_kbps,
        codec,
        per_client,
    }))
}

/// The media factory's launch line for `uri`.
fn launch_line(args: &Args, uri: &str) -> String {
    let mut caps = String::from("video/x-raw");
    if let Some(w) = args.width {
        caps += &format!(",width={w}");
    }
    if let Some(h) = args.height {
        caps += &format!(",height={h}");
    }
    if args.width.is_some() || args.height.is_some() {
        // Square pixels: both given stretch the picture, one given keeps its aspect ratio.
        caps += ",pixel-aspect-ratio=1/1";
    }
    if let Some(f) = args.fps {
        caps += &format!(",framerate={f}/1");
    }
    // A key frame every second (every 30 frames at the file's own rate).
    let key_int = args.fps.unwrap_or(30);
    let bitrate = args
        .bitrate_kbps
        .unwrap_or_else(|| match (args.width, args.height) {
            // About 0.1 bit per pixel, at least 300 kbit/s.
            (Some(w), Some(h)) => {
                let px = u64::from(w) * u64::from(h) * u64::from(args.fps.unwrap_or(25));
                (px / 10_000).clamp(300, 20_000) as u32
            }
            _ => 1500,
        });
    format!(
        "( vigilsrc uri=\"{uri}\" loop=true decoder=cpu ! videoconvert ! videoscale ! videorate \
         ! {caps} ! {} )",
        args.codec.encode(key_int, bitrate)
    )
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

fn run(args: &Args) -> Result<(), String> {
    if !args.file.is_file() {
        return Err(format!("--file: no such file {}", args.file.display()));
    }
    let file = args
        .file
        .canonicalize()
        .map_err(|e| format!("--file: {}: {e}", args.file.display()))?;
    gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}"))?;
    gstvigil::plugin_register_static()
        .map_err(|e| format!("cannot register the vigil plugin: {e}"))?;
    for f in ["videoconvert", "videoscale", "videorate"]
        .into_iter()
        .chain(args.codec.elements())
    {
        if gst::ElementFactory::find(f).is_none() {
            return Err(format!("the GStreamer element {f} is not installed"));
        }
    }
    let uri = glib::filename_to_uri(&file, None)
        .map_err(|e| format!("--file: {}: {e}", file.display()))?;

    let context = glib::MainContext::new();
    let main_loop = glib::MainLoop::new(Some(&context), false);
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address(&args.address);
    server.set_service(&args.port.to_string());
    let factory = gst_rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(&launch_line(args, &uri));
    factory.set_shared(!args.per_client);
    // An endless stream has no end. With the file's (from a segment or duration query) the server would
    // announce `Range: npt=0-<duration>` and clients (rtpjitterbuffer's npt-stop) would end the stream
    // after one pass; without one it announces `npt=0-`.
    // And a camera cannot seek: answered, the seeking query made the shared media seekable, and each
    // client's `PLAY` (with `Range: npt=0.000-`) a flushing seek back to the start of the file for
    // every client. During such a seek a second client's `PLAY` found the stream without a segment and
    // gst-rtsp-server 1.22 aborted the camera (`gst_rtsp_media_get_rates: assertion failed`), or a UDP
    // client of the same camera got no frame at all. Unanswered, the media is not seekable, as a live
    // camera's is, and `PLAY` starts where the stream is.
    factory.connect_media_configure(|_, media| {
        let Some(pad) = media
            .element()
            .downcast::<gst::Bin>()
            .ok()
            .and_then(|bin| bin.by_name("pay0"))
            .and_then(|pay| pay.static_pad("sink"))
        else {
            return;
        };
        pad.add_probe(gst::PadProbeType::QUERY_BOTH, |_, info| {
            match info.query() {
                Some(q)
                    if matches!(
                        q.view(),
                        gst::QueryView::Duration(_)
                            | gst::QueryView::Segment(_)
                            | gst::QueryView::Seeking(_)
                    ) =>
                {
                    gst::PadProbeReturn::Drop
                }
                _ => gst::PadProbeReturn::Ok,
            }
        });
    });
    server
        .mount_points()
        .ok_or("the RTSP server has no mount points")?
        .add_factory(&args.mount, factory);
    let source = server
        .create_source(gst_rtsp_server::gio::Cancellable::NONE)
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.address, args.port))?;
    source.attach(Some(&context));
    let port = server.bound_port();

    install_signal_handlers();
    let ml = main_loop.clone();
    let stop = glib::timeout_source_new(
        Duration::from_millis(100),
        Some("vigil-test-camera-stop"),
        glib::Priority::DEFAULT,
        move || {
            if STOP.load(Ordering::SeqCst) {
                ml.quit();
                glib::ControlFlow::Break
            } else {
                glib::ControlFlow::Continue
            }
        },
    );
    stop.attach(Some(&context));

    let host = if args.address.contains(':') {
        format!("[{}]", args.address)
    } else {
        args.address.clone()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready rtsp://{host}:{port}{}", args.mount)
        .and_then(|_| out.flush())
        .map_err(|e| format!("writing to standard output: {e}"))?;
    drop(out);

    context
        .with_thread_default(|| main_loop.run())
        .map_err(|e| format!("cannot run the main loop: {e}"))?;

    // Stopped by a signal: close the client connections, stop listening.
    server.client_filter(Some(&mut |_, _| gst_rtsp_server::RTSPFilterResult::Remove));
    source.destroy();
    Ok(())
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(args)) => match run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(a) => Ok(a),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn parses_flags() {
        let a = parse(&[
            "--port",
            "8554",
            "--file=/a.mp4",
            "--fps",
            "15",
            "--width",
            "320",
        ])
        .unwrap();
        assert_eq!(a.port, 8554);
        assert_eq!(a.mount, "/cam");
        assert_eq!(a.address, "127.0.0.1");
        assert_eq!((a.width, a.height, a.fps), (Some(320), None, Some(15)));
        let line = launch_line(&a, "file:///a.mp4");
        assert!(
            line.contains("video/x-raw,width=320,pixel-aspect-ratio=1/1,framerate=15/1"),
            "{line}"
        );
        assert!(line.contains("key-int-max=15"), "{line}");
        assert!(line.contains("name=pay0"), "{line}");
        assert!(
            line.contains("x264enc") && line.contains("rtph264pay"),
            "{line}"
        );
        let a = parse(&["--port", "1", "--file", "a", "--codec", "h265"]).unwrap();
        let line = launch_line(&a, "file:///a.mp4");
        assert!(
            line.contains("x265enc") && line.contains("rtph265pay"),
            "{line}"
        );
        let a = parse(&["--port", "1", "--file", "a", "--codec=mjpeg"]).unwrap();
        let line = launch_line(&a, "file:///a.mp4");
        assert!(
            line.contains("jpegenc") && line.contains("rtpjpegpay"),
            "{line}"
        );
        assert!(parse(&["--port", "1", "--file", "a", "--codec", "vp8"]).is_err());
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse(&["--file", "/a.mp4"]).unwrap_err().contains("--port"));
        assert!(parse(&["--port", "1"]).unwrap_err().contains("--file"));
        assert!(parse(&["--port", "x", "--file", "a"]).is_err());
        assert!(parse(&["--port", "1", "--file", "a", "--mount", "cam"]).is_err());
        assert!(parse(&["--port", "1", "--file", "a", "--width", "321"]).is_err());
        assert!(parse(&["--port", "1", "--file", "a", "--fps", "0"]).is_err());
        assert!(parse(&["--port", "1", "--file", "a", "--bogus"]).is_err());
        assert!(parse(&["--port"]).unwrap_err().contains("missing value"));
    }
}
