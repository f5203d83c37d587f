//! `vigilmsgbroker`: publishes each frame's `VigilMeta` as JSON messages (MQTT, JSON-lines file or
//! standard output) and passes the buffers through unchanged.
//!
//! `messages` chooses what is sent per frame: the frame summary (`frames`, schema `vigil.frame.v1`),
//! one record per object (`objects`, `vigil.object.v1`) and one message per analytics event
//! (`analytics`, `vigil.analytics.v1`); each carries `seq`, consecutive from 0 for this element, so a
//! consumer sees any gap (see `docs/events.md`). Messages are handed to a publisher thread
//! (`vigil_publish`) through a bounded buffer of `buffer-size` messages: the streaming thread never
//! waits for the network. While the MQTT broker is unreachable messages are buffered and the element
//! posts one warning per outage; after reconnection they are delivered in order (QoS 1 and 2: each is
//! removed from the buffer only when the broker acknowledged it). A full buffer drops by
//! `drop-policy`, counted in `dropped`. At end-of-stream the element waits up to `flush-timeout` ms
//! for the buffer to empty. A bad topic template or TLS file fails the state change with a message
//! naming it; an unreachable broker does not.
//!
//! ```sh
//! GST_PLUGIN_PATH=target/release gst-launch-1.0 filesrc location=samples/media/vtest.avi ! decodebin ! \
//!     videoconvert ! vigilinfer model=nanodet ! vigiltrack ! \
//!     vigilmsgbroker protocol=mqtt host=127.0.0.1 port=1883 topic='vigil/{source}/{kind}' qos=1 \
//!       messages=frames,analytics source-name=vtest ! fakesink
//! ```
use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct VigilMsgBroker(ObjectSubclass<imp::VigilMsgBroker>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "vigilmsgbroker",
        gst::Rank::NONE,
        VigilMsgBroker::static_type(),
    )
}
