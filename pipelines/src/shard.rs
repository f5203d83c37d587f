//! Sharding a fleet config over N processes: `vigil run CONFIG --shard I/N`.
//!
//! Every source belongs to exactly one shard, decided by its `name` alone: the FNV-1a 64-bit hash of
//! the name's UTF-8 bytes, mixed by SplitMix64's finaliser, picks a shard with Lamping and Veach's
//! *jump consistent hash*. The assignment is stable (the same name gives the same shard on every
//! machine, architecture and version; `assigns_known_names_to_the_same_shards` pins it) and
//! consistent: going from N to N+1 shards moves about 1/(N+1) of the sources, all of them to the new
//! shard, so scaling a StatefulSet up by one restarts few cameras.
//!
//! The shard comes from `--shard I/N`, else from the environment: `VIGIL_SHARD=I/N`, or
//! `VIGIL_SHARD_COUNT=N` with the index from `VIGIL_SHARD_INDEX` (when not empty) or from the ordinal
//! that ends `HOSTNAME` (a StatefulSet's pod `vigil-pipelines-3` is shard 3).

use std::fmt;

/// The environment variable holding a whole shard, `I/N`.
pub const ENV_SHARD: &str = "VIGIL_SHARD";
/// The environment variable holding the number of shards (with [`ENV_SHARD_INDEX`] or `HOSTNAME`).
pub const ENV_SHARD_COUNT: &str = "VIGIL_SHARD_COUNT";
/// The environment variable holding this process's shard index.
pub const ENV_SHARD_INDEX: &str = "VIGIL_SHARD_INDEX";
/// The most shards a fleet may be split into.
pub const MAX_SHARDS: u32 = 4096;

/// Shard `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole fleet in one process (no sharding).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` (e.g. `0/2`). Errors say what is wrong with the text.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("'{text}' is not I/N (e.g. 0/2: the first of two shards)"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("'{text}': the number of shards '{n}' is not a number"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("'{text}': the shard index '{i}' is not a number"))?;
        Shard::new(index, count).map_err(|e| format!("'{text}': {e}"))
    }

    /// Shard `index` of `count`, checked.
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if !(1..=MAX_SHARDS).contains(&count) {
            return Err(format!("the number of shards must be 1..={MAX_SHARDS}"));
        }
        if index >= count {
            return Err(format!(
                "the shard index {index} is not below the number of shards {count} (indexes start at 0)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard named by the environment (`var` reads a variable), or `None` when none is set.
    /// Errors name the variable.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = set(ENV_SHARD) {
            return Shard::parse(&v)
                .map(Some)
                .map_err(|e| format!("{ENV_SHARD}: {e}"));
        }
        let Some(n) = set(ENV_SHARD_COUNT) else {
            return Ok(None);
        };
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{ENV_SHARD_COUNT}: '{n}' is not a number"))?;
        let index = if let Some(i) = set(ENV_SHARD_INDEX) {
            i.trim()
                .parse()
                .map_err(|_| format!("{ENV_SHARD_INDEX}: '{i}' is not a number"))?
        } else {
            let host = set("HOSTNAME").ok_or_else(|| {
                format!(
                    "{ENV_SHARD_COUNT} is set but neither {ENV_SHARD_INDEX} nor HOSTNAME \
                     (a StatefulSet pod's name, ending in its ordinal) names this shard"
                )
            })?;
            ordinal(&host).ok_or_else(|| {
                format!(
                    "{ENV_SHARD_COUNT} is set, {ENV_SHARD_INDEX} is not, and HOSTNAME '{host}' does \
                     not end in -<ordinal> as a StatefulSet pod's name does"
                )
            })?
        };
        Shard::new(index, count)
            .map(Some)
            .map_err(|e| format!("{ENV_SHARD_COUNT}/{ENV_SHARD_INDEX}: {e}"))
    }

    /// True when the fleet is split (more than one shard).
    pub fn is_split(&self) -> bool {
        self.count > 1
    }

    /// True when source `name` runs in this shard.
    pub fn owns(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (of `count`) that source `name` belongs to.
pub fn shard_of(name: &str, count: u32) -> u32 {
    jump_consistent_hash(mix(fnv1a64(name.as_bytes())), count.max(1))
}

/// The ordinal at the end of a StatefulSet pod's name (`web-12` → 12).
fn ordinal(host: &str) -> Option<u32> {
    let (_, digits) = host.trim().rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finaliser: spreads FNV's weak high bits (short names differ in few bits).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014): bucket of `key`
/// among `buckets`, moving only 1/(n+1) of the keys when a bucket is added.
fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < i64::from(buckets) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parses_i_of_n_and_names_what_is_wrong() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::parse(" 0 / 1 "), Ok(Shard::WHOLE));
        for (text, want) in [
            ("2", "is not I/N"),
            ("a/2", "shard index 'a'"),
            ("0/x", "number of shards 'x'"),
            ("2/2", "not below the number of shards 2"),
            ("0/0", "must be 1..=4096"),
            ("0/5000", "must be 1..=4096"),
        ] {
            let e = Shard::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_the_shard_from_the_environment() {
        assert_eq!(Shard::from_env(env(&[])), Ok(None));
        assert_eq!(
            Shard::from_env(env(&[("VIGIL_SHARD", "2/4"), ("VIGIL_SHARD_COUNT", "9")])),
            Ok(Some(Shard { index: 2, count: 4 }))
        );
        assert_eq!(
            Shard::from_env(env(&[
                ("VIGIL_SHARD_COUNT", "4"),
                ("VIGIL_SHARD_INDEX", "3"),
                ("HOSTNAME", "vigil-pipelines-1")
            ])),
            Ok(Some(Shard { index: 3, count: 4 }))
        );
        // An empty index (the downward API's label missing on an older cluster): the pod's name.
        assert_eq!(
            Shard::from_env(env(&[
                ("VIGIL_SHARD_COUNT", "4"),
                ("VIGIL_SHARD_INDEX", ""),
                ("HOSTNAME", "vigil-pipelines-1")
            ])),
            Ok(Some(Shard { index: 1, count: 4 }))
        );
        let e =
            Shard::from_env(env(&[("VIGIL_SHARD_COUNT", "4"), ("HOSTNAME", "box")])).unwrap_err();
        assert!(e.contains("HOSTNAME 'box'"), "{e}");
        let e = Shard::from_env(env(&[
            ("VIGIL_SHARD_COUNT", "2"),
            ("HOSTNAME", "vigil-pipelines-2"),
        ]))
        .unwrap_err();
        assert!(e.contains("not below the number of shards 2"), "{e}");
        let e = Shard::from_env(env(&[("VIGIL_SHARD", "x")])).unwrap_err();
        assert!(e.starts_with("VIGIL_SHARD: "), "{e}");
    }

    #[test]
    fn every_name_is_in_exactly_one_shard() {
        for count in 1..=16 {
            for i in 0..200 {
                let name = format!("cam-{i}");
                let owners = (0..count)
                    .filter(|&k| Shard::new(k, count).unwrap().owns(&name))
                    .count();
                assert_eq!(owners, 1, "{name} of {count}");
            }
        }
    }

    #[test]
    fn assigns_known_names_to_the_same_shards() {
        // Pinned: a change here moves every user's cameras between pods.
        let got: Vec<u32> = ["cam-0", "cam-1", "cam-2", "cam-3", "lobby", "gate-7"]
            .iter()
            .map(|n| shard_of(n, 4))
            .collect();
        assert_eq!(got, PINNED_OF_4);
    }
    const PINNED_OF_4: [u32; 6] = [3, 2, 3, 2, 3, 3];

    #[test]
    fn spreads_names_evenly_and_moves_few_when_a_shard_is_added() {
        let names: Vec<String> = (0..10_000).map(|i| format!("camera-{i:05}")).collect();
        for count in [2u32, 3, 8] {
            let mut per = vec![0usize; count as usize];
            for n in &names {
                per[shard_of(n, count) as usize] += 1;
            }
            let mean = names.len() / count as usize;
            for p in &per {
                assert!(p.abs_diff(mean) < mean / 10, "{count}: {per:?}");
            }
            // N -> N+1: only sources that now belong to the new shard move.
            let moved: Vec<&String> = names
                .iter()
                .filter(|n| shard_of(n, count) != shard_of(n, count + 1))
                .collect();
            assert!(moved.iter().all(|n| shard_of(n, count + 1) == count));
            let expected = names.len() / (count as usize + 1);
            assert!(
                moved.len().abs_diff(expected) < expected / 5,
                "{count}: {}",
                moved.len()
            );
        }
    }
}
