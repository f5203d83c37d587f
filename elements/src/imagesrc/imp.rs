use std::path::PathBuf;
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use vigil_core::items::{
    self, Loaded, Location, PLACEHOLDER_LEVEL, PLACEHOLDER_SIZE, RgbFrame, SizeLimits, SortOrder,
    Watcher,
};
use vigil_core::objects::{FrameObjects, ItemInfo};

use crate::meta::VigilMeta;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vigilimagesrc",
        gst::DebugColorFlags::empty(),
        Some("Vigil image item source"),
    )
});

/// Spacing of the timestamps when `framerate` is 0/1 (a nominal 25 items/s, which the caps then say).
const FREE_RUN_DURATION: gst::ClockTime = gst::ClockTime::from_mseconds(40);

#[derive(Debug, Clone)]
struct Settings {
    location: String,
    watch: bool,
    poll_interval_ms: u32,
    looping: bool,
    framerate: gst::Fraction,
    min_size: u32,
    max_size: u32,
    sort: String,
}

impl Default for Settings {
    fn default() -> Self {
        let limits = SizeLimits::default();
        Self {
            location: String::new(),
            watch: false,
            poll_interval_ms: 500,
            looping: false,
            framerate: gst::Fraction::new(0, 1),
            min_size: limits.min_size,
            max_size: limits.max_size,
            sort: "name".into(),
        }
    }
}

struct State {
    settings: Settings,
    location: Location,
    order: SortOrder,
    /// Files to read, in order; `next` is the next one.
    files: Vec<PathBuf>,
    next: usize,
    watcher: Watcher,
    /// Items pushed so far.
    count: u64,
    /// Size of the caps set last.
    size: Option<(u32, u32)>,
}

#[derive(Default)]
pub struct VigilImageSrc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// `true` between `unlock` and `unlock_stop`: a watching `create` stops waiting.
    flushing: Mutex<bool>,
    wake: Condvar,
}

#[glib::object_subclass]
impl ObjectSubclass for VigilImageSrc {
    const NAME: &'static str = "GstVigilImageSrc";
    type Type = super::VigilImageSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for VigilImageSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb(
                        "A folder (its PNG/JPEG-like files: png, jpg, jpeg, jpe, bmp, gif, tif, tiff, webp, \
                         pnm, ppm, pgm extensions; hidden files skipped), a glob in the file name \
                         (dir/*.jpg: every file it matches) or one image file",
                    )
                    .default_value(Some(d.location.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("watch")
                    .nick("Watch")
                    .blurb(
                        "After the files present at start, keep polling the folder for new files every \
                         poll-interval-ms; a file is read once its size was equal at two polls in a row, \
                         and no path is read twice (never ends; wins over loop)",
                    )
                    .default_value(d.watch)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("poll-interval-ms")
                    .nick("Poll interval")
                    .blurb("Milliseconds between two polls of a watched folder")
                    .minimum(10)
                    .maximum(3_600_000)
                    .default_value(d.poll_interval_ms)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("loop")
                    .nick("Loop")
                    .blurb("At the end of the files, start again from the first (timestamps continue)")
                    .default_value(d.looping)
                    .mutable_ready()
                    .build(),
                gst::ParamSpecFraction::builder("framerate")
                    .nick("Frame rate")
                    .blurb(
                        "Items per second the timestamps follow; 0/1 = as fast as downstream takes them, \
                         timestamped 40 ms apart",
                    )
                    .minimum(gst::Fraction::new(0, 1))
                    .maximum(gst::Fraction::new(1000, 1))
                    .default_value(d.framerate)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("min-size")
                    .nick("Minimum size")
                    .blurb("Images narrower or lower than this (pixels) are error items")
                    .minimum(1)
                    .default_value(d.min_size)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-size")
                    .nick("Maximum size")
                    .blurb(
                        "Images wider or higher than this (pixels) are error items (checked before \
                         decoding; not downscaled)",
                    )
                    .minimum(1)
                    .maximum(65535)
                    .default_value(d.max_size)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("sort")
                    .nick("Sort")
                    .blurb("Order of the files: name (file name) or mtime (modification time, then name)")
                    .default_value(Some(d.sort.as_str()))
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => s.location = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            "watch" => s.watch = value.get().unwrap(),
            "poll-interval-ms" => s.poll_interval_ms = value.get().unwrap(),
            "loop" => s.looping = value.get().unwrap(),
            "framerate" => s.framerate = value.get().unwrap(),
            "min-size" => s.min_size = value.get().unwrap(),
            "max-size" => s.max_size = value.get().unwrap(),
            "sort" => s.sort = value.get::<Option<String>>().unwrap().unwrap_or_default(),
            _ => unimplemented!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => s.location.to_value(),
            "watch" => s.watch.to_value(),
            "poll-interval-ms" => s.poll_interval_ms.to_value(),
            "loop" => s.looping.to_value(),
            "framerate" => s.framerate.to_value(),
            "min-size" => s.min_size.to_value(),
            "max-size" => s.max_size.to_value(),
            "sort" => s.sort.to_value(),
            _ => unimplemented!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_format(gst::Format::Time);
        obj.set_live(false);
    }
}

impl GstObjectImpl for VigilImageSrc {}

impl ElementImpl for VigilImageSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Vigil image items",
                "Source/Video",
                "Reads image files (PNG, JPEG) from a folder, glob or file as RGB frames, one item per \
                 file with its id in VigilMeta; bad files become placeholder frames with the reason",
                "The Vigil developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::Rgb)
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for VigilImageSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let order = match settings.sort.as_str() {
            "name" => SortOrder::Name,
            "mtime" => SortOrder::Mtime,
            other => {
                return Err(gst::error_msg!(
                    gst::LibraryError::Settings,
                    ["property 'sort': '{}' is not name or mtime", other]
                ));
            }
        };
        if settings.min_size > settings.max_size {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                [
                    "property 'min-size' ({}) is above 'max-size' ({})",
                    settings.min_size,
                    settings.max_size
                ]
            ));
        }
        let location = Location::parse(&settings.location).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ["location '{}': {}", settings.location, e]
            )
        })?;
        let listed = location.list(order).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ["location '{}': {}", settings.location, e]
            )
        })?;
        let mut watcher = Watcher::new();
        let files: Vec<PathBuf> = listed.into_iter().map(|e| e.path).collect();
        for f in &files {
            watcher.mark_seen(f);
        }
        if files.is_empty() && !settings.watch {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::NotFound,
                [
                    "location '{}': no image files in {}; end of stream",
                    settings.location,
                    location.dir().display()
                ]
            );
        }
        gst::info!(
            CAT,
            imp = self,
            "{} files in {:?}",
            files.len(),
            location.dir()
        );
        *self.flushing.lock().unwrap() = false;
        *self.state.lock().unwrap() = Some(State {
            settings,
            location,
            order,
            files,
            next: 0,
            watcher,
            count: 0,
            size: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    /// Caps are set from `create`, per image (each image's own size).
    fn negotiate(&self) -> Result<(), gst::LoggableError> {
        Ok(())
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        *self.flushing.lock().unwrap() = true;
        self.wake.notify_all();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.flushing.lock().unwrap() = false;
        Ok(())
    }
}

impl PushSrcImpl for VigilImageSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let path = self.next_file()?;
        let (limits, framerate, count, old_size) = {
            let guard = self.state.lock().unwrap();
            let state = guard.as_ref().ok_or(gst::FlowError::Flushing)?;
            let s = &state.settings;
            (
                SizeLimits {
                    min_size: s.min_size,
                    max_size: s.max_size,
                },
                s.framerate,
                state.count,
                state.size,
            )
        };
        let (frame, error) = match items::load(&path, limits) {
            Loaded::Image(f) => (f, None),
            Loaded::Bad(reason) => {
                gst::element_imp_warning!(self, gst::StreamError::Decode, ("{}", reason));
                (
                    RgbFrame::grey(PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, PLACEHOLDER_LEVEL),
                    Some(reason),
                )
            }
        };
        // At 0/1 the caps say the nominal rate of the 40 ms timestamps: with a variable rate, mp4mux
        // gives the last sample no duration and decoders drop it.
        let caps_rate = if framerate.numer() > 0 {
            framerate
        } else {
            gst::Fraction::new(1_000_000_000, FREE_RUN_DURATION.nseconds() as i32)
        };
        let info =
            gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, frame.width, frame.height)
                .fps(caps_rate)
                .build()
                .map_err(|e| {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        [
                            "{}: no video format for {}x{}: {}",
                            path.display(),
                            frame.width,
                            frame.height,
                            e
                        ]
                    );
                    gst::FlowError::Error
                })?;
        if old_size != Some((frame.width, frame.height)) {
            let caps = info.to_caps().map_err(|_| gst::FlowError::NotNegotiated)?;
            gst::debug!(CAT, imp = self, "caps {}", caps);
            self.obj().set_caps(&caps).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    [
                        "downstream does not accept {}x{} RGB frames ({})",
                        frame.width,
                        frame.height,
                        path.display()
                    ]
                );
                gst::FlowError::NotNegotiated
            })?;
        }

        let mut buffer = gst::Buffer::with_size(info.size()).map_err(|_| gst::FlowError::Error)?;
        {
            let buf = buffer.get_mut().unwrap();
            {
                let mut map = buf.map_writable().map_err(|_| gst::FlowError::Error)?;
                let stride = info.stride()[0] as usize;
                let row = frame.width as usize * 3;
                for (dst, src) in map
                    .as_mut_slice()
                    .chunks_mut(stride)
                    .zip(frame.data.chunks(row))
                {
                    dst[..row].copy_from_slice(src);
                }
            }
            let (pts, duration) = if framerate.numer() > 0 {
                let num = framerate.numer() as u64;
                let den = framerate.denom() as u64;
                let at = |n: u64| {
                    gst::ClockTime::SECOND
                        .mul_div_floor(n * den, num)
                        .unwrap_or(gst::ClockTime::ZERO)
                };
                (at(count), at(count + 1) - at(count))
            } else {
                (FREE_RUN_DURATION * count, FREE_RUN_DURATION)
            };
            buf.set_pts(pts);
            buf.set_dts(pts);
            buf.set_duration(duration);
            buf.set_offset(count);
            VigilMeta::add(
                buf,
                FrameObjects {
                    width: frame.width,
                    height: frame.height,
                    frame: count,
                    item: Some(ItemInfo {
                        id: items::item_id(&path),
                        path: Some(path.display().to_string()),
                        error,
                    }),
                    ..Default::default()
                },
            );
        }
        {
            let mut guard = self.state.lock().unwrap();
            if let Some(state) = guard.as_mut() {
                state.count += 1;
                state.size = Some((frame.width, frame.height));
            }
        }
        Ok(CreateSuccess::NewBuffer(buffer))
    }
}

impl VigilImageSrc {
    /// The next file to read: the listed ones, then (with `loop`) the first again, or (with `watch`)
    /// waits for new ones. `Eos` at the end, `Flushing` when unlocked.
    fn next_file(&self) -> Result<PathBuf, gst::FlowError> {
        loop {
            let interval = {
                let mut guard = self.state.lock().unwrap();
                let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
                if state.next < state.files.len() {
                    state.next += 1;
                    return Ok(state.files[state.next - 1].clone());
                }
                if state.settings.watch {
                    // A poll; the listing's files that became ready are read next.
                    match state.location.list(state.order) {
                        Ok(listing) => {
                            let ready = state.watcher.poll(&listing);
                            if !ready.is_empty() {
                                gst::debug!(CAT, imp = self, "new files {:?}", ready);
                                state.files.extend(ready);
                                continue;
                            }
                        }
                        Err(e) => {
                            gst::warning!(CAT, imp = self, "polling: {}", e);
                        }
                    }
                    Duration::from_millis(state.settings.poll_interval_ms.into())
                } else if state.settings.looping && !state.files.is_empty() {
                    state.next = 0;
                    continue;
                } else {
                    gst::debug!(CAT, imp = self, "end of the files");
                    return Err(gst::FlowError::Eos);
                }
            };
            let flushing = self.flushing.lock().unwrap();
            let (flushing, _) = self
                .wake
                .wait_timeout_while(flushing, interval, |f| !*f)
                .unwrap();
            if *flushing {
                return Err(gst::FlowError::Flushing);
            }
        }
    }
}
