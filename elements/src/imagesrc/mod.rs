//! `vigilimagesrc`: image files as items (industrial inspection): one file = one RGB buffer = one item.
//!
//! `location` is a folder (every PNG/JPEG-like file in it: extensions `png`, `jpg`, `jpeg`, … — other
//! files and hidden ones are ignored), a glob in the file name (`dir/item-*.jpg`: exactly what matches)
//! or one file; files are read in `sort` order (`name` or `mtime`). Each image is decoded (PNG, JPEG)
//! to packed RGB and pushed with a `VigilMeta` whose `FrameObjects.item` is `{id: file stem, path}`;
//! the caps follow each image's size (renegotiated when it changes).
//!
//! **Bad input never stops the stream**: an empty file, a truncated or corrupt image, a file that is
//! not PNG or JPEG, an unreadable file, an image smaller than `min-size` or larger than `max-size` (on
//! either side; not downscaled, so that text boxes stay in the image's pixels and a huge file is never
//! decoded) becomes a 64x64 grey placeholder frame whose `item.error` says why, naming the file (e.g.
//! `truncated image: item-0007.jpg: …`), plus a warning on the bus.
//!
//! Without `framerate` (0/1) items go out as fast as downstream takes them, timestamped 40 ms apart (a
//! nominal 25 items/s, which the caps then carry, so that encoders and muxers see a regular stream);
//! with it, at that rate
//! (synchronised sinks then pace them). At the end of the files: end-of-stream, or with `loop` the first
//! file again (timestamps continuing), or with `watch` the folder is polled every `poll-interval-ms`
//! for new files: a new file is read when its size was the same at two polls in a row, and no path is
//! ever read twice (`watch` wins over `loop`). An empty location without `watch` is end-of-stream
//! with a warning; a location whose folder (or single file) does not exist fails the state change.
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 vigilimagesrc location='samples/media/*.jpg' \
//!     framerate=2/1 ! videoconvert ! videoscale add-borders=true ! video/x-raw,width=640,height=480 ! \
//!     autovideosink
//! ```
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct VigilImageSrc(ObjectSubclass<imp::VigilImageSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vigilimagesrc",
        gst::Rank::NONE,
        VigilImageSrc::static_type(),
    )
}
