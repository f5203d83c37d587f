//! What arrived over MQTT, per publisher (one stream of `vigil run`'s `outputs.mqtt`; the churn never
//! reuses a stream name, so a name is one publisher): `seq` jumps and repeats (docs/events.md), and
//! the times of its frame messages, from which the output gaps are measured. Pure, unit-tested.

use std::collections::BTreeMap;

/// One publisher's messages.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub messages: u64,
    /// Messages that never arrived: the sum of the jumps in `seq` (a first `seq` above 0 counts too:
    /// the subscriber is up before `vigil` starts).
    pub missing: u64,
    /// Messages whose `seq` came before (MQTT QoS 1 may deliver one twice).
    pub repeats: u64,
    next: Option<u64>,
    /// `(timestamp_ms, pts_ns)` of its frame messages, in arrival order (repeats left out).
    pub frames: Vec<(u64, Option<u64>)>,
}

impl Tally {
    /// Counts a message `seq`, with `frame` = its `(timestamp_ms, pts_ns)` when it is a frame summary.
    pub fn add(&mut self, seq: u64, frame: Option<(u64, Option<u64>)>) {
        self.messages += 1;
        let expected = self.next.unwrap_or(0);
        if self.next.is_some() && seq < expected {
            self.repeats += 1;
            return;
        }
        self.missing += seq - expected;
        self.next = Some(seq + 1);
        if let Some(f) = frame {
            self.frames.push(f);
        }
    }

    /// The first frame message made after `ms` (its `timestamp_ms`).
    pub fn first_frame_after(&self, ms: u64) -> Option<u64> {
        self.frames.iter().map(|f| f.0).find(|&t| t > ms)
    }
}

/// One payload into `tallies` (by its `source`); an error says what the message lacks.
pub fn take(tallies: &mut BTreeMap<String, Tally>, payload: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(payload).map_err(|e| format!("not JSON ({e}): {payload}"))?;
    let source = v["source"]
        .as_str()
        .ok_or_else(|| format!("no source: {payload}"))?;
    let seq = v["seq"]
        .as_u64()
        .ok_or_else(|| format!("no seq: {payload}"))?;
    let frame = if v["schema"] == "vigil.frame.v1" {
        let ts = v["timestamp_ms"]
            .as_u64()
            .ok_or_else(|| format!("no timestamp_ms: {payload}"))?;
        Some((ts, v["pts_ns"].as_u64()))
    } else {
        None
    };
    tallies
        .entry(source.to_string())
        .or_default()
        .add(seq, frame);
    Ok(())
}

/// The longest time within `[from_ms, to_ms]` without a frame message (by `timestamp_ms`): the
/// largest interval between consecutive frame messages made in the window, the window's ends
/// counting as messages (a stream that stops before the end has the gap to the end). Returns the gap
/// and when it began (ms); `None` for an empty window.
pub fn largest_gap(frames: &[(u64, Option<u64>)], from_ms: u64, to_ms: u64) -> Option<(u64, u64)> {
    if to_ms <= from_ms {
        return None;
    }
    let mut times: Vec<u64> = frames
        .iter()
        .map(|f| f.0)
        .filter(|&t| t >= from_ms && t <= to_ms)
        .collect();
    times.sort_unstable();
    times.insert(0, from_ms);
    times.push(to_ms);
    times
        .windows(2)
        .map(|w| (w[1] - w[0], w[0]))
        .max_by_key(|g| g.0)
}

/// The largest step between consecutive presentation timestamps of the frame messages made within
/// `[from_ms, to_ms]` (ns); `None` with fewer than two.
pub fn largest_pts_gap(frames: &[(u64, Option<u64>)], from_ms: u64, to_ms: u64) -> Option<u64> {
    let pts: Vec<u64> = frames
        .iter()
        .filter(|f| f.0 >= from_ms && f.0 <= to_ms)
        .filter_map(|f| f.1)
        .collect();
    pts.windows(2).map(|w| w[1].saturating_sub(w[0])).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_jumps_and_repeats() {
        let mut t = Tally::default();
        for (seq, frame) in [
            (0, Some((1000, Some(0)))),
            (1, None),
            (2, Some((1100, Some(100)))),
            (2, Some((1100, Some(100)))),
            (5, Some((1500, Some(500)))),
            (6, None),
        ] {
            t.add(seq, frame);
        }
        assert_eq!((t.messages, t.missing, t.repeats), (6, 2, 1));
        assert_eq!(t.frames.len(), 3);
        assert_eq!(t.first_frame_after(1100), Some(1500));
        assert_eq!(t.first_frame_after(1500), None);
        let mut late = Tally::default();
        late.add(3, None);
        assert_eq!(late.missing, 3, "the messages before the first one seen");
    }

    #[test]
    fn payloads_by_source() {
        let mut all = BTreeMap::new();
        take(
            &mut all,
            r#"{"schema":"vigil.frame.v1","seq":0,"source":"cam0","frame":0,"pts_ns":5,"timestamp_ms":7}"#,
        )
        .unwrap();
        take(
            &mut all,
            r#"{"schema":"vigil.object.v1","seq":1,"source":"cam0","frame":0,"timestamp_ms":7}"#,
        )
        .unwrap();
        take(
            &mut all,
            r#"{"schema":"vigil.frame.v1","seq":0,"source":"file0","timestamp_ms":9}"#,
        )
        .unwrap();
        assert_eq!(all["cam0"].messages, 2);
        assert_eq!(all["cam0"].frames, vec![(7, Some(5))]);
        assert_eq!(all["file0"].frames, vec![(9, None)]);
        assert!(take(&mut all, "{").unwrap_err().contains("not JSON"));
        assert!(
            take(&mut all, r#"{"source":"x"}"#)
                .unwrap_err()
                .contains("no seq")
        );
        let e = take(
            &mut all,
            r#"{"schema":"vigil.frame.v1","seq":1,"source":"x"}"#,
        );
        assert!(e.unwrap_err().contains("timestamp_ms"));
    }

    #[test]
    fn gaps_count_the_window_ends() {
        let f: Vec<(u64, Option<u64>)> = [1000, 1100, 1200, 1900, 2000]
            .iter()
            .map(|&t| (t, Some(t * 1_000_000)))
            .collect();
        assert_eq!(largest_gap(&f, 1000, 2000), Some((700, 1200)));
        // A stream that stopped: the gap runs to the end of the window.
        assert_eq!(largest_gap(&f, 1000, 3000), Some((1000, 2000)));
        assert_eq!(largest_gap(&f, 1150, 1260), Some((60, 1200)));
        assert_eq!(largest_gap(&f, 500, 500), None);
        assert_eq!(largest_pts_gap(&f, 1000, 2000), Some(700_000_000));
        assert_eq!(largest_pts_gap(&f, 1000, 1050), None);
    }
}
