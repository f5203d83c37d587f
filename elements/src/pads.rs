//! Pad templates shared by the filter elements.

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
