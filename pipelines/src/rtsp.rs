//! The RTSP output: one `RTSPServer` on `address:port`, one shared `RTSPMediaFactory` per mount.
//!
//! The analytics pipeline encodes H.264 once per source into an `appsink`; every sample is handed to a
//! [`MountFeed`], which pushes it into the `appsrc` of each media currently prepared for that mount (one
//! per mount at a time, since the factories are shared: every client of a mount watches the same
//! media). A media gets buffers from the next key frame on, with timestamps rebased to the media's own
//! running time, so clients can join late, leave and reconnect while the pipeline keeps running; a new
//! media asks the encoder for that key frame at once (an upstream force-key-unit event from the
//! `appsink`), so a client sees video from the next frame instead of waiting up to a key-frame
//! interval.

use gst::glib;
use gst::prelude::*;
use gst_rtsp_server::prelude::*;
use std::sync::{Arc, Mutex};

/// The media pipeline each factory launches; `src` is fed by [`MountFeed`].
pub const MEDIA_LAUNCH: &str = "( appsrc name=src is-live=true format=time do-timestamp=false ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )";

/// How much an idle media's `appsrc` may queue before dropping the oldest buffers.
const MAX_QUEUED: gst::ClockTime = gst::ClockTime::from_seconds(3);

/// Threads the server handles clients on (each thread serves the clients given to it in turn;
/// threads end when their clients leave). A `DESCRIBE` blocks its thread until the mount's media has
/// its first key frame: with the server's default of one thread, 31 clients connecting at once to 31
/// mounts waited in line for up to 21 s on 2 cores, longer than a player's timeout.
const CLIENT_THREADS: i32 = 64;

struct MediaSink {
    media: glib::WeakRef<gst_rtsp_server::RTSPMedia>,
    appsrc: glib::WeakRef<gst_app::AppSrc>,
    /// Added to incoming timestamps (ns), set at the first pushed buffer.
    offset: Option<i128>,
    caps_set: bool,
}

#[derive(Default)]
struct FeedState {
    caps: Option<gst::Caps>,
    sinks: Vec<MediaSink>,
    ended: bool,
    /// The `appsink` at the end of the encoding branch: key frames are requested through it.
    encoder_sink: Option<glib::WeakRef<gst::Element>>,
}

/// Distributes one encoded stream to the media of one mount.
#[derive(Clone, Default)]
pub struct MountFeed {
    state: Arc<Mutex<FeedState>>,
}

impl MountFeed {
    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `appsink` this feed's samples come from: a new media asks for a key frame through it.
    pub fn set_encoder_sink(&self, sink: &gst::Element) {
        self.lock().encoder_sink = Some(sink.downgrade());
    }

    /// Number of media currently fed.
    pub fn media_count(&self) -> usize {
        self.lock().sinks.len()
    }

    fn add_media(&self, media: &gst_rtsp_server::RTSPMedia) {
        let element = media.element();
        let Some(appsrc) = element
            .downcast_ref::<gst::Bin>()
            .and_then(|bin| bin.by_name("src"))
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        else {
            eprintln!(
                "warning: RTSP media has no appsrc named 'src'; clients of this mount get no video"
            );
            return;
        };
        appsrc.set_leaky_type(gst_app::AppLeakyType::Downstream);
        appsrc.set_max_time(MAX_QUEUED);
        appsrc.set_max_bytes(0);
        appsrc.set_max_buffers(0);
        let mut st = self.lock();
        let caps_set = if let Some(caps) = &st.caps {
            appsrc.set_caps(Some(caps));
            true
        } else {
            false
        };
        if st.ended {
            let _ = appsrc.end_of_stream();
        }
        st.sinks.push(MediaSink {
            media: media.downgrade(),
            appsrc: appsrc.downgrade(),
            offset: None,
            caps_set,
        });
        let encoder_sink = st.encoder_sink.as_ref().and_then(|w| w.upgrade());
        drop(st);
        if let Some(sink) = encoder_sink {
            let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            sink.send_event(event);
        }
    }

    fn remove_media(&self, media: &gst_rtsp_server::RTSPMedia) {
        self.lock()
            .sinks
            .retain(|s| s.media.upgrade().is_some_and(|m| &m != media));
    }

    /// Pushes one encoded sample to every media of the mount.
    pub fn push(&self, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let mut st = self.lock();
        if let Some(caps) = sample.caps()
            && st.caps.as_deref() != Some(caps)
        {
            st.caps = Some(caps.to_owned());
            for s in &mut st.sinks {
                s.caps_set = false;
            }
        }
        let caps = st.caps.clone();
        let is_key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        st.sinks.retain_mut(|s| {
            let Some(appsrc) = s.appsrc.upgrade() else {
                return false;
            };
            if s.media.upgrade().is_none() {
                return false;
            }
            if !s.caps_set
                && let Some(c) = &caps
            {
                appsrc.set_caps(Some(c));
                s.caps_set = true;
            }
            let offset = match s.offset {
                Some(o) => o,
                None => {
                    // Start each media at a key frame, at its current running time.
                    if !is_key {
                        return true;
                    }
                    let Some(pts) = buffer.pts() else { return true };
                    let now = appsrc
                        .current_running_time()
                        .map(|t| t.nseconds())
                        .unwrap_or(0);
                    let o = i128::from(now) - i128::from(pts.nseconds());
                    s.offset = Some(o);
                    o
                }
            };
            let shift = |t: Option<gst::ClockTime>| {
                t.and_then(|t| u64::try_from(i128::from(t.nseconds()) + offset).ok())
                    .map(gst::ClockTime::from_nseconds)
            };
            let mut out = buffer.copy();
            {
                let b = out.make_mut();
                let pts = shift(buffer.pts());
                let dts = shift(buffer.dts());
                b.set_pts(pts);
                b.set_dts(dts);
            }
            !matches!(appsrc.push_buffer(out), Err(gst::FlowError::Eos))
        });
    }

    /// Ends every media of the mount (clients see the end of the stream), and any media created later.
    pub fn end(&self) {
        let mut st = self.lock();
        st.ended = true;
        for s in &st.sinks {
            if let Some(a) = s.appsrc.upgrade() {
                let _ = a.end_of_stream();
            }
        }
    }
}

/// A running RTSP server with one feed per mount; mounts can be added and removed while it runs.
pub struct RtspOutput {
    server: gst_rtsp_server::RTSPServer,
    context: glib::MainContext,
    source: Mutex<Option<glib::SourceId>>,
    /// `(mount, feed)`, in the order the mounts were added.
    feeds: Mutex<Vec<(String, MountFeed)>>,
    /// The user of RTSP basic authentication, when required.
    auth_user: Option<String>,
    pub address: String,
    pub port: u16,
}

impl RtspOutput {
    /// Creates the server on `address:port` (port 0 = any free port) with `mounts`, and attaches it to
    /// `context`. With `auth = Some((user, password))` every mount requires RTSP basic authentication
    /// (clients without valid credentials get `401 Unauthorized`). Errors name the address.
    pub fn start(
        address: &str,
        port: u16,
        mounts: &[String],
        auth: Option<(&str, &str)>,
        context: &glib::MainContext,
    ) -> Result<RtspOutput, String> {
        // Bind once ourselves first: the server only logs why it cannot listen.
        if port != 0 {
            std::net::TcpListener::bind((address, port))
                .map_err(|e| format!("cannot listen on {address}:{port}: {e}"))?;
        }
        let server = gst_rtsp_server::RTSPServer::new();
        if let Some(pool) = server.thread_pool() {
            pool.set_max_threads(CLIENT_THREADS);
        }
        server.set_address(address);
        server.set_service(&port.to_string());
        if let Some((user, password)) = auth {
            let rtsp_auth = gst_rtsp_server::RTSPAuth::new();
            let token = gst_rtsp_server::RTSPToken::builder()
                .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, user)
                .build();
            let basic = gst_rtsp_server::RTSPAuth::make_basic(user, password);
            rtsp_auth.add_basic(basic.as_str(), &token);
            server.set_auth(Some(&rtsp_auth));
        }
        let out = RtspOutput {
            server,
            context: context.clone(),
            source: Mutex::new(None),
            feeds: Mutex::new(Vec::new()),
            auth_user: auth.map(|(u, _)| u.to_string()),
            address: address.to_string(),
            port,
        };
        for mount in mounts {
            out.add_mount(mount)?;
        }
        let source = out
            .server
            .attach(Some(context))
            .map_err(|e| format!("cannot listen on {address}:{port}: {e}"))?;
        *out.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
        let bound = u16::try_from(out.server.bound_port()).unwrap_or(port);
        Ok(RtspOutput { port: bound, ..out })
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, Vec<(String, MountFeed)>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves a new mount (also while running); returns the feed to push its encoded video into.
    /// Fails when the mount is already served.
    pub fn add_mount(&self, mount: &str) -> Result<MountFeed, String> {
        let points = self
            .server
            .mount_points()
            .ok_or("RTSP server has no mount points")?;
        let mut feeds = self.feeds();
        if feeds.iter().any(|(m, _)| m == mount) {
            return Err(format!("the RTSP mount {mount} is already served"));
        }
        let feed = MountFeed::default();
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(MEDIA_LAUNCH);
        factory.set_shared(true);
        factory.set_suspend_mode(gst_rtsp_server::RTSPSuspendMode::None);
        if let Some(user) = &self.auth_user {
            let role = gst::Structure::builder(user.as_str())
                .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build();
            factory.add_role_from_structure(&role);
        }
        let f = feed.clone();
        factory.connect_media_configure(move |_, media| {
            f.add_media(media);
            let f2 = f.clone();
            media.connect_unprepared(move |m| f2.remove_media(m));
        });
        points.add_factory(mount, factory);
        feeds.push((mount.to_string(), feed.clone()));
        Ok(feed)
    }

    /// Stops serving `mount`: its clients get the end of the stream, new clients get `404`.
    pub fn remove_mount(&self, mount: &str) {
        let removed = {
            let mut feeds = self.feeds();
            let i = feeds.iter().position(|(m, _)| m == mount);
            i.map(|i| feeds.remove(i))
        };
        if let Some((_, feed)) = removed {
            feed.end();
            if let Some(points) = self.server.mount_points() {
                points.remove_factory(mount);
            }
        }
    }

    /// The feed of `mount`.
    pub fn feed(&self, mount: &str) -> Option<MountFeed> {
        self.feeds()
            .iter()
            .find(|(m, _)| m == mount)
            .map(|(_, f)| f.clone())
    }

    /// `rtsp://address:port/mount`.
    pub fn url(&self, mount: &str) -> String {
        let host = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        format!("rtsp://{host}:{}{mount}", self.port)
    }

    /// [`Self::url`] of each mount, in the order they were added.
    pub fn urls(&self) -> Vec<String> {
        self.feeds().iter().map(|(m, _)| self.url(m)).collect()
    }

    /// Ends all streams (see [`MountFeed::end`]).
    pub fn end(&self) {
        for (_, f) in self.feeds().iter() {
            f.end();
        }
    }

    /// Number of media being fed, over all mounts.
    pub fn media_count(&self) -> usize {
        self.feeds().iter().map(|(_, f)| f.media_count()).sum()
    }

    /// Stops listening and closes client connections.
    pub fn stop(&self) {
        // The source lives in `context`, not the default one that `SourceId::remove` looks in.
        if let Some(id) = self.source.lock().unwrap_or_else(|p| p.into_inner()).take()
            && let Some(source) = self.context.find_source_by_id(&id)
        {
            source.destroy();
        }
        if let Some(pool) = self.server.session_pool() {
            pool.cleanup();
        }
        self.server
            .client_filter(Some(&mut |_, _| gst_rtsp_server::RTSPFilterResult::Remove));
    }
}
