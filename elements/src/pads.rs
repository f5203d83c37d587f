//! Pad templates shared by the filter elements.

use gst_video::VideoFormat;

/// The raw formats `vigil_core::draw::Canvas` draws on (`vigilosd`, `vigilinspect`).
pub(crate) const CANVAS_FORMATS: &[VideoFormat] = &[
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::I420,
    VideoFormat::Nv12,
];

/// The packed formats `vigilocr` reads (`vigil_core::ocr::PixelFormat`).
pub(crate) const PACKED_FORMATS: &[VideoFormat] = &[
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
];

/// `filter_templates` for raw video in `formats`.
pub(crate) fn video_filter_templates(formats: &[VideoFormat]) -> Vec<gst::PadTemplate> {
    let caps = gst_video::VideoCapsBuilder::new()
        .format_list(formats.iter().copied())
        .build();
    filter_templates(&caps)
}

/// An always-present `src` and `sink` pad template pair with the same caps (a filter's pads).
pub(crate) fn filter_templates(caps: &gst::Caps) -> Vec<gst::PadTemplate> {
    [gst::PadDirection::Src, gst::PadDirection::Sink]
        .into_iter()
        .map(|direction| {
            let name = if direction == gst::PadDirection::Src {
                "src"
            } else {
                "sink"
            };
            gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps)
                .expect("a static pad template is valid")
        })
        .collect()
}
