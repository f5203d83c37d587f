//! The churn's streams and its schedule, both computed from the options and the seed before the run
//! (pure, unit-tested): the same seed gives the same kills, restarts, additions and removals at the
//! same times.

use serde::Serialize;
use std::collections::VecDeque;
use vigil_core::rng::SplitMix64;

/// The seeded generator of the schedule (the one the tracking evaluation's noise uses), with the two
/// draws the schedule needs.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    /// Uniform in `[lo, hi)` (`lo` when the range is empty).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo).max(0.0) * self.0.uniform()
    }

    /// Uniform in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }
}

/// What the churn does to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Never removed, its camera never killed: its output must never stall.
    Untouched,
    /// Reads a camera that the churn kills and restarts.
    Killed,
    /// Removed by the churn (the first file stream it removes, and every stream it adds).
    Churned,
}

/// A stream of the run: a looped file (`camera` `None`) or test camera `camera`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamPlan {
    pub name: String,
    pub camera: Option<usize>,
    pub role: Role,
}

/// The streams at start: `n / 2` looped files `file0…`, then one camera stream per camera
/// (`cam0…`, the rest). The first [`killable`] cameras are killed and restarted; the last file
/// stream is the first one the churn removes; the others are never touched.
pub fn initial_streams(n: usize) -> Vec<StreamPlan> {
    let files = n / 2;
    let cameras = n - files;
    let mut out: Vec<StreamPlan> = (0..files)
        .map(|i| StreamPlan {
            name: format!("file{i}"),
            camera: None,
            role: if i + 1 == files {
                Role::Churned
            } else {
                Role::Untouched
            },
        })
        .collect();
    out.extend((0..cameras).map(|i| StreamPlan {
        name: format!("cam{i}"),
        camera: Some(i),
        role: if i < killable(cameras) {
            Role::Killed
        } else {
            Role::Untouched
        },
    }));
    out
}

/// How many of `cameras` cameras the churn kills: the first half, at least one.
pub fn killable(cameras: usize) -> usize {
    (cameras / 2).max(1)
}

/// One thing the churn does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// SIGKILL the camera's process (its connections drop).
    Kill { camera: usize },
    /// Start it again on the same port.
    Restart { camera: usize },
    /// `POST /streams` a new stream `add` (a looped file, or camera `camera`), then
    /// `DELETE /streams/{remove}`.
    Swap {
        add: String,
        camera: Option<usize>,
        remove: String,
    },
}

/// An action and when (seconds after the churn starts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub at_s: f64,
    pub action: Action,
}

/// The periods of the churn.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Length of the churn.
    pub seconds: f64,
    /// Mean period of camera kills (each within ±1/4 of it; down 2–5 s, less than half of it).
    pub kill_every: f64,
    /// Mean period of additions and removals (each within ±1/5 of it).
    pub swap_every: f64,
}

/// No action in the last seconds of the churn: a restarted camera or an added stream is flowing
/// again before the churn ends.
const QUIET_END_S: f64 = 5.0;

/// Camera kills and restarts: the `k`-th kill near `k × kill_every` of a random killable camera,
/// restarted 2 to 5 s later (restarted before the churn ends).
fn kills(rng: &mut Rng, killable: usize, t: &Timing) -> Vec<Step> {
    let mut out = Vec::new();
    let jitter = t.kill_every / 4.0;
    let longest_down = (t.kill_every / 2.0 - 1.0).clamp(2.0, 5.0);
    for k in 1.. {
        let at = k as f64 * t.kill_every + rng.range(-jitter, jitter);
        let down = rng.range(2.0, longest_down);
        let camera = rng.below(killable);
        if at + down > t.seconds - QUIET_END_S {
            break;
        }
        out.push(Step {
            at_s: at,
            action: Action::Kill { camera },
        });
        out.push(Step {
            at_s: at + down,
            action: Action::Restart { camera },
        });
    }
    out
}

/// Whether camera `camera` is down at `at` according to `kills`.
fn down_at(kills: &[Step], camera: usize, at: f64) -> bool {
    let mut down = false;
    for s in kills.iter().take_while(|s| s.at_s <= at) {
        match s.action {
            Action::Kill { camera: c } if c == camera => down = true,
            Action::Restart { camera: c } if c == camera => down = false,
            _ => {}
        }
    }
    down
}

/// The whole schedule, in time order. Swap `j` (near `j × swap_every`) adds `add<j>`: a looped
/// file for odd `j` and for the last swap (so that the streams after the churn are of the kinds
/// they were before it), else a random killable camera that is up at that moment (a file when none
/// is); it removes the oldest churned stream.
pub fn schedule(seed: u64, initial: &[StreamPlan], t: &Timing) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let cameras = initial.iter().filter(|s| s.camera.is_some()).count();
    let killable = killable(cameras);
    let kills = kills(&mut rng, killable, t);
    let mut pool: VecDeque<String> = initial
        .iter()
        .filter(|s| s.role == Role::Churned)
        .map(|s| s.name.clone())
        .collect();
    let jitter = t.swap_every / 5.0;
    let mut times = Vec::new();
    for j in 1.. {
        let at = j as f64 * t.swap_every + rng.range(-jitter, jitter);
        if at > t.seconds - QUIET_END_S {
            break;
        }
        times.push(at);
    }
    let mut steps = kills.clone();
    for (i, &at) in times.iter().enumerate() {
        let j = i + 1;
        let pick = rng.below(killable);
        let camera = (j % 2 == 0 && j < times.len() && !down_at(&kills, pick, at)).then_some(pick);
        let add = format!("add{j}");
        let Some(remove) = pool.pop_front() else {
            break;
        };
        pool.push_back(add.clone());
        steps.push(Step {
            at_s: at,
            action: Action::Swap {
                add,
                camera,
                remove,
            },
        });
    }
    steps.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        seconds: 1800.0,
        kill_every: 20.0,
        swap_every: 15.0,
    };

    #[test]
    fn streams_and_roles() {
        let s = initial_streams(8);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "file0", "file1", "file2", "file3", "cam0", "cam1", "cam2", "cam3"
            ]
        );
        let roles: Vec<Role> = s.iter().map(|s| s.role).collect();
        use Role::*;
        assert_eq!(
            roles,
            [
                Untouched, Untouched, Untouched, Churned, Killed, Killed, Untouched, Untouched
            ]
        );
        assert_eq!(s[5].camera, Some(1));
        let small = initial_streams(5);
        assert_eq!(small.len(), 5);
        assert_eq!(small.iter().filter(|s| s.role == Untouched).count(), 3);
    }

    #[test]
    fn schedule_is_seeded_and_keeps_its_periods() {
        let init = initial_streams(8);
        let a = schedule(7, &init, &TIMING);
        assert_eq!(a, schedule(7, &init, &TIMING));
        assert_ne!(a, schedule(8, &init, &TIMING));
        assert!(a.windows(2).all(|w| w[0].at_s <= w[1].at_s));
        let kills: Vec<&Step> = a
            .iter()
            .filter(|s| matches!(s.action, Action::Kill { .. }))
            .collect();
        let swaps = a
            .iter()
            .filter(|s| matches!(s.action, Action::Swap { .. }))
            .count();
        // About one kill per 20 s and one swap per 15 s.
        assert!((85..=90).contains(&kills.len()), "{}", kills.len());
        assert!((118..=120).contains(&swaps), "{swaps}");
        assert!(kills.iter().all(|s| matches!(
            s.action,
            Action::Kill { camera } if camera < 2
        )));
        // Each kill is followed by the restart of its camera 2–5 s later, before any other kill.
        for (i, s) in a.iter().enumerate() {
            if let Action::Kill { camera } = s.action {
                let next = a[i + 1..]
                    .iter()
                    .find(|n| !matches!(n.action, Action::Swap { .. }))
                    .unwrap();
                assert_eq!(next.action, Action::Restart { camera });
                assert!(
                    (2.0..=5.0).contains(&(next.at_s - s.at_s)),
                    "{s:?} {next:?}"
                );
            }
        }
        assert!(a.last().unwrap().at_s <= TIMING.seconds - QUIET_END_S);
    }

    #[test]
    fn swaps_remove_the_oldest_churned_stream_and_end_with_a_file() {
        let init = initial_streams(8);
        let t = Timing {
            seconds: 120.0,
            ..TIMING
        };
        let s = schedule(1, &init, &t);
        let swaps: Vec<(String, Option<usize>, String)> = s
            .iter()
            .filter_map(|s| match &s.action {
                Action::Swap {
                    add,
                    camera,
                    remove,
                } => Some((add.clone(), *camera, remove.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(swaps.len(), 7);
        assert_eq!(swaps[0].2, "file3");
        for (j, w) in swaps.windows(2).enumerate() {
            assert_eq!(
                w[1].2,
                w[0].0,
                "swap {} removes the stream swap {} added",
                j + 2,
                j + 1
            );
        }
        assert!(swaps.iter().step_by(2).all(|s| s.1.is_none()));
        assert_eq!(swaps.last().unwrap().1, None);
        assert!(swaps.iter().any(|s| s.1.is_some()));
        // A stream is added on a camera only while it is up.
        let kills: Vec<Step> = s
            .iter()
            .filter(|x| !matches!(x.action, Action::Swap { .. }))
            .cloned()
            .collect();
        for x in &s {
            if let Action::Swap {
                camera: Some(c), ..
            } = x.action
            {
                assert!(!down_at(&kills, c, x.at_s));
            }
        }
    }

    #[test]
    fn generator_is_uniform_enough() {
        let mut r = Rng::new(42);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[r.below(4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
        let x = r.range(2.0, 5.0);
        assert!((2.0..5.0).contains(&x));
        assert_eq!(r.range(3.0, 3.0), 3.0);
    }
}
