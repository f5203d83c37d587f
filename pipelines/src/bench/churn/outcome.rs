//! The churn's figures and verdicts from what was measured: per stream (messages, `seq` gaps,
//! reconnections, largest output gap), per action (recovery), the `/proc` series' trends, the thread
//! and descriptor counts after the churn against their band before it. Printed as text, written as
//! `churn.json` and `churn.md` with `--out`.

use super::schedule::Role;
use super::tally::{self, Tally};
use super::{Done, Life, Phases, Point};
use crate::bench::BenchArgs;
use crate::bench::measure::Measured;
use crate::bench::report::{Machine, Trend, trend};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The largest output gap an untouched stream may have.
pub const MAX_GAP_MS: u64 = 1000;

/// One stream's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StreamFigures {
    #[serde(flatten)]
    pub life: Life,
    pub messages: u64,
    /// Messages missing by `seq`.
    pub seq_gaps: u64,
    pub repeats: u64,
    /// Wall-clock: the longest time without a frame message between the churn's start (or the
    /// stream's first frame) and the end of the settling (or its removal), see [`tally::largest_gap`].
    pub largest_gap_ms: Option<u64>,
    /// Seconds after the churn's start when that gap began.
    pub largest_gap_at_s: Option<f64>,
    /// The largest step of the frames' presentation timestamps in that window.
    pub largest_pts_gap_ms: Option<f64>,
}

/// The `[min, max]` of the baseline and the medians after the churn.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub baseline_threads: (u64, u64),
    pub baseline_fds: (u64, u64),
    pub baseline_rss_mib: (f64, f64),
    pub after_threads: u64,
    pub after_fds: u64,
    pub after_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub target: String,
    pub met: bool,
    pub detail: String,
}

/// The whole churn report (`churn.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    pub machine: Machine,
    pub seconds: u64,
    pub seed: u64,
    pub streams: usize,
    pub kill_every_s: f64,
    pub swap_every_s: f64,
    pub pipeline: String,
    /// The whole bench: start, warm-up, baseline, churn, settling, stop.
    pub wall_s: f64,
    pub vigil_cpu_s: f64,
    pub vigil_peak_rss_mib: f64,
    pub trends: Vec<Trend>,
    pub counts: Counts,
    pub streams_figures: Vec<StreamFigures>,
    pub actions: Vec<Done>,
    pub messages: u64,
    pub unparsed: Vec<String>,
    pub verdicts: Vec<Verdict>,
    pub samples: Vec<Point>,
}

/// What [`build`] reads.
pub struct Inputs<'a> {
    pub args: &'a BenchArgs,
    pub secs: u64,
    pub phases: Phases,
    pub lives: Vec<Life>,
    pub done: Vec<Done>,
    pub tallies: BTreeMap<String, Tally>,
    pub errors: Vec<String>,
    pub measured: &'a Measured,
    /// How `vigil run` failed to stop cleanly on SIGINT (`None`: it did).
    pub exit: Option<String>,
    pub wall_s: f64,
}

/// The streams' figures, the actions' recovery, the trends and the verdicts.
pub fn build(i: Inputs) -> ChurnReport {
    let p = &i.phases;
    let empty = Tally::default();
    let tally = |name: &str| i.tallies.get(name).unwrap_or(&empty);
    let streams_figures: Vec<StreamFigures> = i
        .lives
        .iter()
        .map(|l| stream_figures(l, tally(&l.plan.name), p))
        .collect();
    let mut actions = i.done.clone();
    for a in &mut actions {
        a.recovered_ms = recovery(a, &i.lives, &tally);
    }
    // As the soak: the first fifth of the churn is warm-up.
    let steady: Vec<&Point> = p
        .samples
        .iter()
        .filter(|s| s.t_s >= i.secs as f64 / 5.0)
        .collect();
    let series = |f: &dyn Fn(&Point) -> f64| -> Vec<(f64, f64)> {
        steady.iter().map(|s| (s.t_s / 60.0, f(s))).collect()
    };
    let trends: Vec<Trend> = [
        trend("RSS", "MiB", 1, &series(&|s| s.rss_mib)),
        trend("threads", "threads", 0, &series(&|s| s.threads as f64)),
        trend("fds", "fds", 0, &series(&|s| s.fds as f64)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let counts = counts(&p.baseline, &p.after);
    let mut report = ChurnReport {
        machine: Machine::detect(),
        seconds: i.secs,
        seed: i.args.seed,
        streams: i.args.churn_streams,
        kill_every_s: i.args.kill_every,
        swap_every_s: i.args.swap_every,
        pipeline: format!(
            "{} every {}th frame, IoU tracker, no overlay, MQTT frame messages (QoS 1), realtime; \
             files: {} looped; cameras: vigil-test-camera serving it at 384x288, 10 frames/s, H.264 over RTSP/TCP",
            i.args.model,
            super::INFERENCE_INTERVAL,
            i.args.video.display()
        ),
        wall_s: i.wall_s,
        vigil_cpu_s: i.measured.cpu_s,
        vigil_peak_rss_mib: i.measured.max_rss_kib as f64 / 1024.0,
        trends,
        counts,
        streams_figures,
        actions,
        messages: i.tallies.values().map(|t| t.messages).sum(),
        unparsed: i.errors,
        verdicts: Vec::new(),
        samples: p.samples.clone(),
    };
    report.verdicts = verdicts(&report, p.final_streams.len(), i.args.churn_streams);
    report.verdicts.push(Verdict {
        target: "vigil run stopped cleanly on SIGINT".into(),
        met: i.exit.is_none(),
        detail: i.exit.unwrap_or_else(|| "exit status 0".into()),
    });
    report
}

fn stream_figures(l: &Life, t: &Tally, p: &Phases) -> StreamFigures {
    let from = match l.added_ms {
        Some(a) => t.first_frame_after(a).unwrap_or(a),
        None => p.churn_from_ms,
    };
    let to = l.removed_ms.unwrap_or(p.settled_ms);
    let gap = tally::largest_gap(&t.frames, from, to);
    StreamFigures {
        life: l.clone(),
        messages: t.messages,
        seq_gaps: t.missing,
        repeats: t.repeats,
        largest_gap_ms: gap.map(|g| g.0),
        largest_gap_at_s: gap.map(|g| (g.1 as f64 - p.churn_from_ms as f64) / 1000.0),
        largest_pts_gap_ms: tally::largest_pts_gap(&t.frames, from, to).map(|g| g as f64 / 1e6),
    }
}

/// `add`: ms from the request to the stream's first frame message. `restart`: the longest, over the
/// camera's streams alive then, from the restart to their first frame message (streams removed
/// before they recovered are left out). `None`: failed, not recovered, or nothing to recover.
fn recovery<'a>(a: &Done, lives: &[Life], tally: &impl Fn(&str) -> &'a Tally) -> Option<u64> {
    if a.error.is_some() {
        return None;
    }
    match a.kind.as_str() {
        "add" => {
            let name = a.stream.as_deref()?;
            Some(tally(name).first_frame_after(a.unix_ms)? - a.unix_ms)
        }
        "restart" => {
            let mut worst = 0;
            for l in lives.iter().filter(|l| {
                l.plan.camera == a.camera
                    && l.added_ms.is_none_or(|t| t <= a.unix_ms)
                    && l.removed_ms.is_none_or(|t| t > a.unix_ms)
            }) {
                match tally(&l.plan.name).first_frame_after(a.unix_ms) {
                    Some(t) if l.removed_ms.is_none_or(|r| t <= r) => {
                        worst = worst.max(t - a.unix_ms)
                    }
                    _ if l.removed_ms.is_some() => {}
                    _ => return None,
                }
            }
            Some(worst)
        }
        _ => None,
    }
}

fn counts(baseline: &[Point], after: &[Point]) -> Counts {
    let range = |f: &dyn Fn(&Point) -> u64| {
        let v: Vec<u64> = baseline.iter().map(f).collect();
        (
            v.iter().copied().min().unwrap_or(0),
            v.iter().copied().max().unwrap_or(0),
        )
    };
    let median = |f: &dyn Fn(&Point) -> f64| {
        crate::bench::stats::median(&after.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
    };
    let rss: Vec<f64> = baseline.iter().map(|p| p.rss_mib).collect();
    Counts {
        baseline_threads: range(&|p| p.threads),
        baseline_fds: range(&|p| p.fds),
        baseline_rss_mib: (
            rss.iter().copied().fold(f64::INFINITY, f64::min),
            rss.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ),
        after_threads: median(&|p| p.threads as f64).round() as u64,
        after_fds: median(&|p| p.fds as f64).round() as u64,
        after_rss_mib: median(&|p| p.rss_mib),
    }
}

/// GLib keeps up to this many idle threads of its shared pool (GStreamer's streaming tasks run on
/// it) for reuse after the tasks that started them ended (`g_thread_pool_get_max_unused_threads`).
pub const GLIB_IDLE_THREADS: u64 = 2;

fn verdicts(r: &ChurnReport, final_streams: usize, streams: usize) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = r
        .trends
        .iter()
        .map(|t| Verdict {
            target: format!("{}: no growth trend", t.name),
            met: t.growing == Some(false),
            detail: match (t.first_half_per_min, t.second_half_per_min) {
                (Some(a), Some(b)) => {
                    format!("halves {a:+.3} / {b:+.3} {}/min", t.unit)
                }
                _ => "too few samples".into(),
            },
        })
        .collect();
    out.push(gap_verdict(&r.streams_figures));
    let missing: u64 = r.streams_figures.iter().map(|s| s.seq_gaps).sum();
    let repeats: u64 = r.streams_figures.iter().map(|s| s.repeats).sum();
    out.push(Verdict {
        target: "event seq gaps: 0".into(),
        met: missing == 0 && r.messages > 0 && r.unparsed.is_empty(),
        detail: format!(
            "{missing} missing of {} messages from {} publishers; {repeats} repeated (QoS 1); {} unparsed",
            r.messages,
            r.streams_figures.len(),
            r.unparsed.len()
        ),
    });
    out.push(actions_verdict(&r.actions, final_streams, streams));
    let c = &r.counts;
    out.push(Verdict {
        target: "threads and fds back to their baseline band after the churn".into(),
        met: c.after_threads <= c.baseline_threads.1 + GLIB_IDLE_THREADS
            && c.after_fds <= c.baseline_fds.1,
        detail: format!(
            "threads {} (baseline {}..{}, GLib may keep {GLIB_IDLE_THREADS} idle pool threads), fds {} (baseline {}..{})",
            c.after_threads,
            c.baseline_threads.0,
            c.baseline_threads.1,
            c.after_fds,
            c.baseline_fds.0,
            c.baseline_fds.1
        ),
    });
    out
}

fn gap_verdict(figures: &[StreamFigures]) -> Verdict {
    let untouched: Vec<&StreamFigures> = figures
        .iter()
        .filter(|s| s.life.plan.role == Role::Untouched)
        .collect();
    let worst = untouched
        .iter()
        .max_by_key(|s| s.largest_gap_ms.unwrap_or(u64::MAX));
    Verdict {
        target: format!(
            "untouched streams' largest output gap <= {:.1} s",
            MAX_GAP_MS as f64 / 1000.0
        ),
        met: !untouched.is_empty()
            && untouched
                .iter()
                .all(|s| s.largest_gap_ms.is_some_and(|g| g <= MAX_GAP_MS)),
        detail: worst.map_or("no untouched stream".into(), |s| {
            format!(
                "largest {:.3} s ({} at {:.1} s)",
                s.largest_gap_ms.unwrap_or(0) as f64 / 1000.0,
                s.life.plan.name,
                s.largest_gap_at_s.unwrap_or(0.0)
            )
        }),
    }
}

fn actions_verdict(actions: &[Done], final_streams: usize, streams: usize) -> Verdict {
    let of = |k: &str| actions.iter().filter(|a| a.kind == k).collect::<Vec<_>>();
    let failed: Vec<String> = actions
        .iter()
        .filter(|a| {
            a.error.is_some()
                || (matches!(a.kind.as_str(), "add" | "restart") && a.recovered_ms.is_none())
        })
        .map(|a| {
            format!(
                "{} {} at {:.1} s: {}",
                a.kind,
                a.stream
                    .clone()
                    .or(a.camera.map(|c| format!("camera {c}")))
                    .unwrap_or_default(),
                a.t_s,
                a.error.as_deref().unwrap_or("no frame after it")
            )
        })
        .collect();
    let worst = |k: &str| {
        of(k)
            .iter()
            .filter_map(|a| a.recovered_ms)
            .max()
            .unwrap_or(0)
    };
    let took = |k: &str| of(k).iter().map(|a| a.took_ms).max().unwrap_or(0);
    Verdict {
        target: "every kill, restart, addition and removal done and recovered".into(),
        met: failed.is_empty() && final_streams == streams,
        detail: format!(
            "{} kills, {} restarts (streams flowing again within {:.1} s), {} additions (first frame \
             within {:.1} s), {} removals (drained, longest {:.1} s); {final_streams} of {streams} \
             streams after the churn{}",
            of("kill").len(),
            of("restart").len(),
            worst("restart") as f64 / 1000.0,
            of("add").len(),
            worst("add") as f64 / 1000.0,
            of("remove").len(),
            took("remove") as f64 / 1000.0,
            if failed.is_empty() {
                String::new()
            } else {
                format!("; FAILED: {}", failed.join("; "))
            }
        ),
    }
}

/// The text report.
pub fn text(r: &ChurnReport) -> String {
    let mut s = format!(
        "\nchurn: {} streams, {} s (seed {}; a camera killed about every {} s, a stream added and one \
         removed about every {} s), {} samples; bench {:.0} s in all\npipeline: {}\n",
        r.streams,
        r.seconds,
        r.seed,
        r.kill_every_s,
        r.swap_every_s,
        r.samples.len(),
        r.wall_s,
        r.pipeline
    );
    for t in &r.trends {
        s += &t.lines();
    }
    let c = &r.counts;
    s += &format!(
        "before the churn: threads {}..{}, fds {}..{}, RSS {:.1}..{:.1} MiB; after it (settled): \
         threads {}, fds {}, RSS {:.1} MiB\nvigil: CPU {:.1} s, peak RSS {:.1} MiB\n\n",
        c.baseline_threads.0,
        c.baseline_threads.1,
        c.baseline_fds.0,
        c.baseline_fds.1,
        c.baseline_rss_mib.0,
        c.baseline_rss_mib.1,
        c.after_threads,
        c.after_fds,
        c.after_rss_mib,
        r.vigil_cpu_s,
        r.vigil_peak_rss_mib
    );
    s += &format!(
        "{:<8}  {:<7}  {:<9}  {:>8}  {:>8}  {:>7}  {:>10}  {:>12}  {:>12}\n",
        "stream",
        "feed",
        "role",
        "messages",
        "seq gaps",
        "repeats",
        "reconnects",
        "largest gap s",
        "PTS gap s"
    );
    for f in &r.streams_figures {
        let l = &f.life;
        s += &format!(
            "{:<8}  {:<7}  {:<9}  {:>8}  {:>8}  {:>7}  {:>10}  {:>12}  {:>12}\n",
            l.plan.name,
            l.plan
                .camera
                .map_or("file".into(), |c| format!("camera{c}")),
            format!("{:?}", l.plan.role).to_lowercase(),
            f.messages,
            f.seq_gaps,
            f.repeats,
            l.reconnects.map_or("—".into(), |r| r.to_string()),
            f.largest_gap_ms
                .map_or("—".into(), |g| format!("{:.3}", g as f64 / 1000.0)),
            f.largest_pts_gap_ms
                .map_or("—".into(), |g| format!("{:.3}", g / 1000.0)),
        );
    }
    s += "\n";
    for u in &r.unparsed {
        s += &format!("unparsed message: {u}\n");
    }
    for v in &r.verdicts {
        s += &format!(
            "{}: {} ({})\n",
            v.target,
            if v.met { "met" } else { "NOT met" },
            v.detail
        );
    }
    s
}

/// A Markdown table row of the figures the README shows.
pub fn readme_row(r: &ChurnReport) -> String {
    let halves = |name: &str| {
        r.trends
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| {
                Some(format!(
                    "{:+.2} / {:+.2}",
                    t.first_half_per_min?, t.second_half_per_min?
                ))
            })
            .unwrap_or_else(|| "—".into())
    };
    let untouched = r
        .streams_figures
        .iter()
        .filter(|s| s.life.plan.role == Role::Untouched);
    let gap = untouched
        .filter_map(|s| s.largest_gap_ms)
        .max()
        .unwrap_or(0);
    let reconnects: u64 = r
        .streams_figures
        .iter()
        .filter_map(|s| s.life.reconnects)
        .sum();
    let kills = r.actions.iter().filter(|a| a.kind == "kill").count();
    let adds = r.actions.iter().filter(|a| a.kind == "add").count();
    format!(
        "| {} s, seed {} | {} | {kills} / {adds} | {} | {} | {} | {reconnects} | {:.3} s | {} |",
        r.seconds,
        r.seed,
        r.streams,
        halves("RSS"),
        halves("threads"),
        halves("fds"),
        gap as f64 / 1000.0,
        r.streams_figures.iter().map(|s| s.seq_gaps).sum::<u64>()
    )
}

/// Prints the report (and the README row); with `out`, writes `churn.json` and `churn.md` there.
pub fn print_and_write(r: &ChurnReport, out: Option<&Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = text(r);
    let head = "| run | streams | kills / additions | RSS MiB/min (halves) | threads/min (halves) | \
                fds/min (halves) | reconnects | untouched largest gap | seq gaps |\n\
                | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
    let row = readme_row(r);
    print!("{text}\nREADME row:\n{head}{row}\n");
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(
            dir.join("churn.json"),
            serde_json::to_string_pretty(r)? + "\n",
        )?;
        std::fs::write(
            dir.join("churn.md"),
            format!(
                "# vigil bench --churn {}\n\n```text\n{text}```\n\n{head}{row}\n",
                r.seconds
            ),
        )?;
        println!("wrote {0}/churn.json, {0}/churn.md", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::churn::schedule::StreamPlan;

    fn life(name: &str, camera: Option<usize>, added: Option<u64>, removed: Option<u64>) -> Life {
        Life {
            plan: StreamPlan {
                name: name.into(),
                camera,
                role: Role::Killed,
            },
            added_ms: added,
            removed_ms: removed,
            reconnects: None,
        }
    }

    fn done(kind: &str, stream: Option<&str>, camera: Option<usize>, at: u64) -> Done {
        Done {
            t_s: 0.0,
            unix_ms: at,
            kind: kind.into(),
            stream: stream.map(str::to_string),
            camera,
            took_ms: 5,
            error: None,
            recovered_ms: None,
        }
    }

    fn frames(times: &[u64]) -> Tally {
        let mut t = Tally::default();
        for (i, &ms) in times.iter().enumerate() {
            t.add(i as u64, Some((ms, None)));
        }
        t
    }

    #[test]
    fn recovery_of_restarts_and_additions() {
        let tallies: BTreeMap<String, Tally> = [
            ("cam0".to_string(), frames(&[900, 2500])),
            ("add1".to_string(), frames(&[1300, 1400])),
            ("add2".to_string(), frames(&[1500])),
        ]
        .into();
        let empty = Tally::default();
        let tally = |n: &str| tallies.get(n).unwrap_or(&empty);
        let lives = vec![
            life("cam0", Some(0), None, None),
            // On camera 0 too, removed before the restart's recovery: left out.
            life("add2", Some(0), Some(1000), Some(1800)),
            life("cam1", Some(1), None, None),
        ];
        let restart = done("restart", None, Some(0), 2000);
        assert_eq!(recovery(&restart, &lives, &tally), Some(500));
        // Camera 1's stream never had a frame after the restart: not recovered.
        let restart1 = done("restart", None, Some(1), 2000);
        assert_eq!(recovery(&restart1, &lives, &tally), None);
        let add = done("add", Some("add1"), None, 1000);
        assert_eq!(recovery(&add, &lives, &tally), Some(300));
        let mut failed = done("add", Some("add1"), None, 1000);
        failed.error = Some("POST /streams add1: 500".into());
        assert_eq!(recovery(&failed, &lives, &tally), None);

        let mut actions = vec![restart, add, done("remove", Some("file3"), None, 1100)];
        actions[0].recovered_ms = Some(500);
        actions[1].recovered_ms = Some(300);
        let v = actions_verdict(&actions, 8, 8);
        assert!(v.met, "{v:?}");
        assert!(v.detail.contains("within 0.5 s"), "{}", v.detail);
        actions[1].recovered_ms = None;
        let v = actions_verdict(&actions, 8, 8);
        assert!(
            !v.met && v.detail.contains("FAILED: add add1"),
            "{}",
            v.detail
        );
        actions[1].recovered_ms = Some(300);
        assert!(!actions_verdict(&actions, 7, 8).met, "a stream is missing");
    }
}
