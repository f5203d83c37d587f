//! Presentation timestamps a source can hand to encoders and muxers.
//!
//! Decoders of real media do not always stamp their frames: MPEG-4 Part 2 in AVI with packed
//! B-frames (DivX/Xvid) comes with decode timestamps only, and `avdec_mpeg4` then hands out some
//! frames with the previous frame's time again (or a nanosecond after it); raw elementary streams and
//! broken containers give no time at all. `x264enc`, `mp4mux` and RTSP payloaders need every frame
//! stamped, strictly after the one before. [`TimestampRepair`] stamps each frame of one stream in
//! output order:
//!
//! - a frame without a PTS gets the previous PTS plus one frame interval ([`Fix::Missing`]);
//! - a frame less than a quarter of an interval after the previous one (the same time again, or a
//!   little earlier: reordering left over by the decoder) gets the previous PTS plus one interval
//!   ([`Fix::NotIncreasing`]); the frames after it keep their own times;
//! - a frame whose own time went on from the previous frame's own time by at least a quarter of an
//!   interval, but is not a quarter of an interval after the previous frame's *written* time, gets
//!   the previous written time plus a quarter of an interval ([`Fix::CatchingUp`]): the written times
//!   ran ahead of the frame's own (a live stream whose first two frames share one time; missing times
//!   derived faster than they came) and close in on them, instead of each following frame being
//!   moved by a whole interval again, forever, and drifting ahead of the clock when the source runs a
//!   little faster than its nominal rate;
//! - a jump back by more than [`REBASE_AFTER`] (a timestamp reset, a wrapped clock) moves the rest of
//!   the stream after the previous frame ([`Fix::Rebased`]), keeping the new times' spacing;
//! - every frame gets a duration: its own, else one interval.
//!
//! The interval is the caps' frame rate where it is known (not 0/1), else the measured cadence (a
//! running mean of the intervals between frames that needed no fix), else 40 ms (25 frames/s).

/// Frame interval used before the frame rate or the cadence is known: 1/25 s.
pub const DEFAULT_INTERVAL_NS: u64 = 40_000_000;
/// A frame this far before the previous one starts a new time base instead of being moved alone.
pub const REBASE_AFTER: u64 = 1_000_000_000;

/// What was done to one frame's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// The frame's own PTS was kept.
    Kept,
    /// The frame had no PTS: the previous one plus an interval.
    Missing,
    /// The frame's PTS was not after the previous one: the previous one plus an interval.
    NotIncreasing,
    /// The PTS went on from the previous frame's own but the previous written PTS was ahead of it:
    /// the previous written PTS plus a quarter of an interval.
    CatchingUp,
    /// The PTS jumped back by more than [`REBASE_AFTER`]: it and the following frames were moved
    /// after the previous frame.
    Rebased,
}

impl Fix {
    /// True when the PTS written is not the frame's own.
    pub fn repaired(self) -> bool {
        self != Fix::Kept
    }
}

/// A frame's timestamp after [`TimestampRepair::stamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Presentation time (ns), strictly after the previous frame's.
    pub pts: u64,
    /// Duration (ns), at least 1.
    pub duration: u64,
    pub fix: Fix,
}

/// Stamps the frames of one stream (see the module documentation). Not thread-safe by itself: one
/// per stream, behind the stream's lock.
#[derive(Debug, Clone, Default)]
pub struct TimestampRepair {
    /// From the caps' frame rate.
    nominal: Option<u64>,
    /// Running mean of the intervals between frames kept as they were.
    cadence: Option<u64>,
    /// Added to incoming times after a rebase.
    shift: u64,
    /// The previous frame's written PTS.
    last: Option<u64>,
    /// The last own PTS seen (after `shift`).
    last_own: Option<u64>,
    repaired: u64,
}

impl TimestampRepair {
    pub fn new() -> Self {
        Self::default()
    }

    /// The caps' frame rate (`num/den` frames per second); 0/1 (variable) or nonsense forgets it.
    pub fn set_framerate(&mut self, num: i32, den: i32) {
        self.nominal = (num > 0 && den > 0)
            .then(|| (den as u128 * 1_000_000_000 / num as u128) as u64)
            .filter(|&ns| ns > 0);
    }

    /// The interval a derived timestamp advances by.
    pub fn interval(&self) -> u64 {
        self.nominal
            .or(self.cadence)
            .unwrap_or(DEFAULT_INTERVAL_NS)
            .max(1)
    }

    /// Frames whose PTS was not their own since [`TimestampRepair::new`].
    pub fn repaired(&self) -> u64 {
        self.repaired
    }

    /// Starts again (a seek, a flush): the next frame's time is taken as it is.
    pub fn reset(&mut self) {
        self.last = None;
        self.last_own = None;
        self.shift = 0;
    }

    /// The PTS and duration of the next frame in output order, from its own (`None`: none).
    pub fn stamp(&mut self, pts: Option<u64>, duration: Option<u64>) -> Stamp {
        let interval = self.interval();
        let own = pts.map(|p| p.saturating_add(self.shift));
        let quarter = (interval / 4).max(1);
        let went_on = |p: u64| {
            self.last_own
                .is_some_and(|o| p >= o.saturating_add(quarter))
        };
        let (pts, fix) = match (own, self.last) {
            (None, None) => (0, Fix::Missing),
            (None, Some(last)) => (last.saturating_add(interval), Fix::Missing),
            (Some(p), None) => (p, Fix::Kept),
            (Some(p), Some(last)) if p.saturating_add(REBASE_AFTER) < last => {
                let to = last.saturating_add(interval);
                self.shift = self.shift.saturating_add(to - p);
                (to, Fix::Rebased)
            }
            (Some(p), Some(last)) if p < last.saturating_add(quarter) && went_on(p) => {
                (last.saturating_add(quarter), Fix::CatchingUp)
            }
            (Some(p), Some(last)) if p < last.saturating_add(quarter) => {
                (last.saturating_add(interval), Fix::NotIncreasing)
            }
            (Some(p), Some(last)) => {
                self.learn(p - last);
                (p, Fix::Kept)
            }
        };
        if fix.repaired() {
            self.repaired += 1;
        }
        if let Some(p) = own {
            // After a rebase the frame's own time is the one it was moved to.
            self.last_own = Some(if fix == Fix::Rebased { pts } else { p });
        }
        self.last = Some(pts);
        let duration = duration.filter(|&d| d > 0).unwrap_or(interval);
        Stamp { pts, duration, fix }
    }

    fn learn(&mut self, delta: u64) {
        if delta == 0 || delta >= REBASE_AFTER {
            return;
        }
        self.cadence = Some(match self.cadence {
            None => delta,
            Some(c) => (c * 7 + delta) / 8,
        });
    }
}

/// How far ahead of the pipeline's clock a live source's frame may be stamped (1 s). A live frame's
/// running time is when it was captured, so it is not ahead of the clock; one that is would hold
/// every synchronised sink of its stream (and any removal of the stream) until the clock gets there.
pub const LIVE_AHEAD_NS: u64 = 1_000_000_000;

/// `t + offset`, saturated to `0..=u64::MAX`.
pub fn shifted(t: u64, offset: i64) -> u64 {
    let v = i128::from(t) + i128::from(offset);
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

/// Nanoseconds as an offset's operand (saturating at `i64::MAX`, 292 years).
pub fn signed(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// The offset added to a live source's running time `rt` (ns) for the frame to leave at the
/// pipeline's clock: `offset` is kept while the shifted frame is at most [`LIVE_AHEAD_NS`] ahead of
/// `now` and no `new_connection` began. Otherwise it is chosen again from this frame: 0 when `rt`
/// goes on from `last` (the end of the previous frame sent) and is not ahead of the clock, else what
/// moves the frame to the later of `now` and `last`. A new connection's first frame can carry a time
/// of its own (a segment starting again at 0); an offset taken from it alone and kept would stamp
/// the next frames, whose running times are the clock's again, ahead by the whole running time.
pub fn live_offset(rt: u64, now: u64, last: u64, offset: i64, new_connection: bool) -> i64 {
    let ahead = |t: u64| t > now.saturating_add(LIVE_AHEAD_NS);
    if !new_connection && !ahead(shifted(rt, offset)) {
        return offset;
    }
    if rt >= last && !ahead(rt) {
        0
    } else {
        signed(now.max(last)) - signed(rt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn run(r: &mut TimestampRepair, input: &[Option<u64>]) -> Vec<(u64, Fix)> {
        input
            .iter()
            .map(|&p| {
                let s = r.stamp(p, None);
                (s.pts, s.fix)
            })
            .collect()
    }

    fn strictly_increasing(out: &[(u64, Fix)]) -> bool {
        out.windows(2).all(|w| w[1].0 > w[0].0)
    }

    #[test]
    fn good_timestamps_are_kept() {
        let mut r = TimestampRepair::new();
        r.set_framerate(25, 1);
        let input: Vec<_> = (0..10).map(|i| Some(i * 40 * MS)).collect();
        let out = run(&mut r, &input);
        assert!(out.iter().all(|&(_, f)| f == Fix::Kept));
        assert_eq!(out[9].0, 360 * MS);
        assert_eq!(r.repaired(), 0);
    }

    #[test]
    fn packed_b_frames_as_avdec_mpeg4_stamps_them() {
        // Megamind.avi through avidemux ! avdec_mpeg4 (24000/1001 fps): every third frame repeats
        // the previous time, or a nanosecond after it.
        let mut r = TimestampRepair::new();
        r.set_framerate(2997, 125);
        let d = 41_708_375;
        let input = [
            Some(0),
            Some(d),
            Some(2 * d),
            Some(2 * d + 1),
            Some(4 * d),
            Some(5 * d),
            Some(5 * d),
            Some(7 * d),
        ];
        let out = run(&mut r, &input);
        assert!(strictly_increasing(&out));
        assert_eq!(out[3], (3 * d, Fix::NotIncreasing));
        assert_eq!(out[4], (4 * d, Fix::Kept));
        assert_eq!(out[6], (6 * d, Fix::NotIncreasing));
        assert_eq!(out[7], (7 * d, Fix::Kept));
        assert_eq!(r.repaired(), 2);
    }

    #[test]
    fn a_live_stream_whose_first_frames_share_a_time_is_not_moved_for_ever() {
        // An RTSP camera over TCP: the jitter buffer gives the first two frames one time, then every
        // frame its own slot, 0.8 ms sooner than the nominal 40 ms (the camera's clock is a little
        // fast). Moving each frame by a whole interval after the previous written one would move all
        // of them, 0.8 ms more each, and leave the stream a second ahead of the clock in 50 s.
        let mut r = TimestampRepair::new();
        r.set_framerate(25, 1);
        let own = |n: u64| 236 * MS + n.saturating_sub(1) * 39_200_000;
        let input: Vec<_> = (0..3000).map(|n| Some(own(n))).collect();
        let out = run(&mut r, &input);
        assert!(strictly_increasing(&out));
        assert_eq!(out[1], (own(1) + 40 * MS, Fix::NotIncreasing));
        assert_eq!(out[2], (own(1) + 50 * MS, Fix::CatchingUp));
        assert_eq!(out[3], (own(3), Fix::Kept));
        assert_eq!(out[2999], (own(2999), Fix::Kept));
        assert_eq!(r.repaired(), 2);
    }

    #[test]
    fn derived_times_that_ran_ahead_close_in_on_the_frames_own() {
        // Three frames without a time, then the frames' own times again, 80 ms behind the derived
        // ones: a quarter of an interval at a time until the own times are after the written ones.
        let mut r = TimestampRepair::new();
        r.set_framerate(25, 1);
        let mut input = vec![Some(0), None, None, None];
        input.extend((2..10).map(|n| Some(n * 40 * MS)));
        let out = run(&mut r, &input);
        assert!(strictly_increasing(&out), "{out:?}");
        assert_eq!(out[3], (120 * MS, Fix::Missing));
        assert_eq!(out[4], (130 * MS, Fix::CatchingUp));
        assert_eq!(out[5], (140 * MS, Fix::CatchingUp));
        assert_eq!(out[6], (160 * MS, Fix::Kept));
        assert!(out[6..].iter().all(|&(_, f)| f == Fix::Kept), "{out:?}");
    }

    #[test]
    fn missing_timestamps_follow_the_frame_rate() {
        let mut r = TimestampRepair::new();
        r.set_framerate(30, 1);
        let out = run(&mut r, &[None, None, Some(100 * MS), None]);
        assert_eq!(out[0], (0, Fix::Missing));
        assert_eq!(out[1], (33_333_333, Fix::Missing));
        assert_eq!(out[2], (100 * MS, Fix::Kept));
        assert_eq!(out[3], (133_333_333, Fix::Missing));
    }

    #[test]
    fn without_a_frame_rate_the_measured_cadence_is_used() {
        let mut r = TimestampRepair::new();
        r.set_framerate(0, 1);
        let out = run(&mut r, &[Some(0), Some(100 * MS), Some(200 * MS), None]);
        assert_eq!(out[3], (300 * MS, Fix::Missing));
        // Nothing known at all: 25 frames/s.
        let mut r = TimestampRepair::new();
        let out = run(&mut r, &[Some(0), None]);
        assert_eq!(out[1], (DEFAULT_INTERVAL_NS, Fix::Missing));
    }

    #[test]
    fn variable_frame_rate_is_kept() {
        // 50 ms and 30 ms intervals in turn, caps at the mean (25 fps).
        let mut r = TimestampRepair::new();
        r.set_framerate(25, 1);
        let input: Vec<_> = (0..20u64)
            .map(|n| Some(n * 40 * MS + (n % 2) * 10 * MS))
            .collect();
        let out = run(&mut r, &input);
        assert!(out.iter().all(|&(_, f)| f == Fix::Kept), "{out:?}");
    }

    #[test]
    fn a_jump_back_rebases_the_rest() {
        let mut r = TimestampRepair::new();
        r.set_framerate(10, 1);
        let out = run(
            &mut r,
            &[
                Some(5000 * MS),
                Some(5100 * MS),
                Some(0),
                Some(100 * MS),
                Some(200 * MS),
            ],
        );
        assert!(strictly_increasing(&out));
        assert_eq!(out[2], (5200 * MS, Fix::Rebased));
        assert_eq!(out[3], (5300 * MS, Fix::Kept));
        assert_eq!(out[4], (5400 * MS, Fix::Kept));
        assert_eq!(r.repaired(), 1);
    }

    #[test]
    fn durations_are_filled_in() {
        let mut r = TimestampRepair::new();
        r.set_framerate(25, 1);
        assert_eq!(r.stamp(Some(0), None).duration, 40 * MS);
        assert_eq!(r.stamp(Some(40 * MS), Some(20 * MS)).duration, 20 * MS);
        assert_eq!(r.stamp(Some(80 * MS), Some(0)).duration, 40 * MS);
    }

    #[test]
    fn reset_takes_the_next_time_as_it_is() {
        let mut r = TimestampRepair::new();
        r.set_framerate(25, 1);
        run(&mut r, &[Some(1000 * MS), Some(1040 * MS)]);
        r.reset();
        assert_eq!(r.stamp(Some(0), None).fix, Fix::Kept);
    }

    #[test]
    fn nonsense_rates_fall_back() {
        let mut r = TimestampRepair::new();
        r.set_framerate(-5, 1);
        assert_eq!(r.interval(), DEFAULT_INTERVAL_NS);
        r.set_framerate(1, 0);
        assert_eq!(r.interval(), DEFAULT_INTERVAL_NS);
        r.set_framerate(i32::MAX, 1);
        assert_eq!(r.interval(), DEFAULT_INTERVAL_NS);
        assert_eq!(r.stamp(Some(u64::MAX), None).pts, u64::MAX);
        let s = r.stamp(Some(u64::MAX), None);
        assert_eq!(s.pts, u64::MAX);
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_live_source_on_the_clock_keeps_its_own_times() {
        assert_eq!(live_offset(100 * S, 100 * S, 99 * S, 0, true), 0);
        assert_eq!(live_offset(101 * S, 101 * S, 100 * S, 0, false), 0);
        // Half a second ahead (a jitter buffer's rounding) is not moved.
        assert_eq!(live_offset(100 * S + S / 2, 100 * S, 99 * S, 0, false), 0);
    }

    #[test]
    fn a_new_connection_ahead_or_back_in_time_starts_at_the_clock() {
        // 66 s ahead: moved to now.
        let o = live_offset(166 * S, 100 * S, 99 * S, 0, true);
        assert_eq!(shifted(166 * S, o), 100 * S);
        // Its segment starting again at 0: moved to now.
        let o = live_offset(0, 100 * S, 99 * S, 0, true);
        assert_eq!(shifted(0, o), 100 * S);
        // Never before the previous frame's end.
        let o = live_offset(0, 100 * S, 100 * S + S / 2, 0, true);
        assert_eq!(shifted(0, o), 100 * S + S / 2);
    }

    #[test]
    fn an_offset_that_puts_the_next_frames_ahead_of_the_clock_is_dropped() {
        // The first frame of a connection at 0 got the offset `now`; the next ones come with the
        // clock's own times again and would leave at twice the running time.
        let first = live_offset(0, 700 * S, 699 * S, 0, true);
        assert_eq!(first, signed(700 * S));
        let next = live_offset(
            700 * S + S / 10,
            700 * S + S / 10,
            700 * S + S / 10,
            first,
            false,
        );
        assert_eq!(next, 0);
        assert_eq!(shifted(700 * S + S / 10, next), 700 * S + S / 10);
        // While the shifted frames stay on the clock the offset is kept.
        let o = signed(50 * S);
        assert_eq!(live_offset(100 * S, 150 * S, 149 * S, o, false), o);
    }

    #[test]
    fn offsets_saturate() {
        assert_eq!(shifted(5, -10), 0);
        assert_eq!(shifted(u64::MAX, 10), u64::MAX);
        assert_eq!(signed(u64::MAX), i64::MAX);
    }
}
