//! CLEAR-MOT (Bernardin & Stiefelhagen 2008) and identity (Ristani et al. 2016) metrics, computed
//! the way py-motmetrics computes them by default with IoU distances.
//!
//! Per frame ([`MotAccumulator::update`]):
//! 1. The distance of a ground-truth box and a hypothesis box is `1 - IoU`; pairs farther apart
//!    than `max_distance` (0.5, i.e. IoU below 0.5) may not be matched.
//! 2. A ground-truth object keeps the hypothesis it was last matched to when that hypothesis is
//!    present and still within the threshold ([`Continuity::LastMatch`], py-motmetrics 1.4.0, the
//!    current release; [`Continuity::PreviousFrame`] keeps only the matches of the previous update,
//!    as the MOTChallenge devkit and py-motmetrics' development branch do — the two differ only
//!    when an object comes back after a frame without a match).
//! 3. The remaining objects and hypotheses are assigned optimally: the largest number of pairs,
//!    and among those the smallest total distance (Kuhn–Munkres on scaled integer weights).
//!    A pair whose object was last matched to another hypothesis id is an ID switch.
//! 4. Unmatched objects are misses (FN), unmatched hypotheses false positives (FP).
//!
//! The summary ([`MotSummary`]): MOTA = 1 − (FN + FP + IDSW) / #gt, MOTP = mean distance
//! (1 − IoU) of the matches (py-motmetrics' convention; MOTChallenge prints `1 − MOTP` as a
//! percentage), recall, precision, mostly tracked/partially tracked/mostly lost (matched in ≥ 80%,
//! 20–80%, < 20% of the frames an object is present), fragmentations (a tracked object becoming
//! untracked and tracked again), and IDF1/IDP/IDR: whole ground-truth trajectories and hypothesis
//! trajectories are matched one to one so that the number of frames in which a matched pair is
//! within the threshold (IDTP) is largest; IDFN = #gt − IDTP, IDFP = #hyp − IDTP,
//! IDF1 = 2·IDTP / (#gt + #hyp). As in py-motmetrics, ratios with a zero denominator are NaN (or
//! ±∞).

use std::collections::{HashMap, HashSet};
use std::fmt;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use thiserror::Error;

use super::format::Rect;

/// py-motmetrics' default `distth` for IoU distances: pairs with IoU < 0.5 are not matched.
pub const DEFAULT_MAX_IOU_DISTANCE: f64 = 0.5;

#[derive(Debug, Error, PartialEq)]
pub enum MetricsError {
    #[error("frame {frame}: {kind} id {id} appears more than once")]
    DuplicateId {
        frame: u32,
        kind: &'static str,
        id: i64,
    },
    #[error("maximum IoU distance {0} is not within [0, 1]")]
    BadThreshold(f64),
}

/// Which earlier correspondences are kept before the optimal assignment of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Continuity {
    /// An object's latest match, however long ago (py-motmetrics 1.4.0).
    #[default]
    LastMatch,
    /// Only the matches of the previous update (MOTChallenge devkit).
    PreviousFrame,
}

/// How ground truth and hypotheses are matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchConfig {
    /// Largest IoU distance (1 − IoU) of a match; default 0.5.
    pub max_distance: f64,
    pub continuity: Continuity,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            max_distance: DEFAULT_MAX_IOU_DISTANCE,
            continuity: Continuity::default(),
        }
    }
}

/// What one frame produced (for inspection and tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameEvents {
    pub frame: u32,
    /// `(object id, hypothesis id, distance)` of every match, switches included.
    pub matches: Vec<(i64, i64, f64)>,
    /// `(object id, new hypothesis id)` of the matches that are ID switches.
    pub switches: Vec<(i64, i64)>,
    /// Object ids without a match.
    pub misses: Vec<i64>,
    /// Hypothesis ids without a match.
    pub false_positives: Vec<i64>,
}

#[derive(Debug, Clone, Default)]
struct ObjectStats {
    frames: u64,
    matched: u64,
    fragmentations: u64,
    tracked_before: bool,
    in_gap: bool,
}

/// Accumulates the per-frame matching of ground truth and hypotheses; see the module documentation.
#[derive(Debug, Clone)]
pub struct MotAccumulator {
    cfg: MatchConfig,
    /// Latest hypothesis matched to each object.
    last_hyp: HashMap<i64, i64>,
    /// Objects matched in the previous update (for [`Continuity::PreviousFrame`]).
    prev_matched: HashSet<i64>,
    num_frames: u64,
    num_objects: u64,
    num_predictions: u64,
    num_matches: u64,
    num_switches: u64,
    num_false_positives: u64,
    num_misses: u64,
    distance_sum: f64,
    objects: HashMap<i64, ObjectStats>,
    hyp_frames: HashMap<i64, u64>,
    /// Frames in which an object and a hypothesis are within the threshold (matched or not).
    overlaps: HashMap<(i64, i64), u64>,
}

impl Default for MotAccumulator {
    fn default() -> Self {
        Self::new()
    }
}

impl MotAccumulator {
    /// An accumulator with py-motmetrics' defaults ([`MatchConfig::default`]).
    pub fn new() -> Self {
        Self {
            cfg: MatchConfig::default(),
            last_hyp: HashMap::new(),
            prev_matched: HashSet::new(),
            num_frames: 0,
            num_objects: 0,
            num_predictions: 0,
            num_matches: 0,
            num_switches: 0,
            num_false_positives: 0,
            num_misses: 0,
            distance_sum: 0.0,
            objects: HashMap::new(),
            hyp_frames: HashMap::new(),
            overlaps: HashMap::new(),
        }
    }

    /// An accumulator with another configuration.
    pub fn with_config(cfg: MatchConfig) -> Result<Self, MetricsError> {
        if !(0.0..=1.0).contains(&cfg.max_distance) {
            return Err(MetricsError::BadThreshold(cfg.max_distance));
        }
        Ok(Self { cfg, ..Self::new() })
    }

    pub fn config(&self) -> &MatchConfig {
        &self.cfg
    }

    /// Matches one frame: `gt` and `hyp` are `(id, box)` pairs; ids must be unique within the frame.
    /// Frames must be given in order; `frame` only labels the events and errors. Call it for every
    /// frame in which either side has boxes (a frame where both are empty changes nothing but the
    /// frame count).
    pub fn update(
        &mut self,
        frame: u32,
        gt: &[(i64, Rect)],
        hyp: &[(i64, Rect)],
    ) -> Result<FrameEvents, MetricsError> {
        check_unique(frame, "ground-truth", gt)?;
        check_unique(frame, "hypothesis", hyp)?;
        let (no, nh) = (gt.len(), hyp.len());
        // Distances; None = may not be paired.
        let dist: Vec<Vec<Option<f64>>> = gt
            .iter()
            .map(|(_, g)| {
                hyp.iter()
                    .map(|(_, h)| {
                        let d = 1.0 - g.iou(h);
                        (d <= self.cfg.max_distance).then_some(d)
                    })
                    .collect()
            })
            .collect();

        let mut ev = FrameEvents {
            frame,
            ..Default::default()
        };
        let mut o_used = vec![false; no];
        let mut h_used = vec![false; nh];

        // 1. Keep the earlier correspondences that are still valid.
        for (i, (o, _)) in gt.iter().enumerate() {
            if self.cfg.continuity == Continuity::PreviousFrame && !self.prev_matched.contains(o) {
                continue;
            }
            let Some(&hprev) = self.last_hyp.get(o) else {
                continue;
            };
            let Some(j) = (0..nh).find(|&j| !h_used[j] && hyp[j].0 == hprev) else {
                continue;
            };
            if let Some(d) = dist[i][j] {
                o_used[i] = true;
                h_used[j] = true;
                ev.matches.push((*o, hprev, d));
            }
        }

        // 2. Optimal assignment of the rest.
        let rows: Vec<usize> = (0..no)
            .filter(|&i| !o_used[i] && (0..nh).any(|j| !h_used[j] && dist[i][j].is_some()))
            .collect();
        let cols: Vec<usize> = (0..nh)
            .filter(|&j| !h_used[j] && rows.iter().any(|&i| dist[i][j].is_some()))
            .collect();
        if !rows.is_empty() && !cols.is_empty() {
            let k = rows.len().min(cols.len()) as u128;
            // Scaled distances are at most `scale`; a valid pair weighs more than any k distances,
            // so the matching first maximises the number of pairs, then minimises total distance.
            let scale =
                (1_000_000_000u128).min(1_000_000_000_000_000_000u128 / ((k + 1) * (k + 1)));
            let big = (k + 1) * scale;
            let weights: Vec<Vec<i64>> = rows
                .iter()
                .map(|&i| {
                    cols.iter()
                        .map(|&j| match dist[i][j] {
                            Some(d) => (big - (d * scale as f64).round() as u128) as i64,
                            None => 0,
                        })
                        .collect()
                })
                .collect();
            for (r, c) in max_weight_matching(&weights) {
                let (i, j) = (rows[r], cols[c]);
                let Some(d) = dist[i][j] else { continue };
                let (o, h) = (gt[i].0, hyp[j].0);
                o_used[i] = true;
                h_used[j] = true;
                if self.last_hyp.get(&o).is_some_and(|&prev| prev != h) {
                    ev.switches.push((o, h));
                }
                self.last_hyp.insert(o, h);
                ev.matches.push((o, h, d));
            }
        }

        // 3./4. Misses and false positives.
        ev.misses = (0..no).filter(|&i| !o_used[i]).map(|i| gt[i].0).collect();
        ev.false_positives = (0..nh).filter(|&j| !h_used[j]).map(|j| hyp[j].0).collect();

        // Statistics.
        self.num_frames += 1;
        self.num_objects += no as u64;
        self.num_predictions += nh as u64;
        self.num_matches += ev.matches.len() as u64;
        self.num_switches += ev.switches.len() as u64;
        self.num_misses += ev.misses.len() as u64;
        self.num_false_positives += ev.false_positives.len() as u64;
        self.distance_sum += ev.matches.iter().map(|m| m.2).sum::<f64>();
        for (i, (o, _)) in gt.iter().enumerate() {
            let s = self.objects.entry(*o).or_default();
            s.frames += 1;
            if o_used[i] {
                s.matched += 1;
                if s.in_gap {
                    s.fragmentations += 1;
                    s.in_gap = false;
                }
                s.tracked_before = true;
            } else if s.tracked_before {
                s.in_gap = true;
            }
        }
        for (h, _) in hyp {
            *self.hyp_frames.entry(*h).or_default() += 1;
        }
        for (i, (o, _)) in gt.iter().enumerate() {
            for (j, (h, _)) in hyp.iter().enumerate() {
                if dist[i][j].is_some() {
                    *self.overlaps.entry((*o, *h)).or_default() += 1;
                }
            }
        }
        self.prev_matched = ev.matches.iter().map(|m| m.0).collect();
        Ok(ev)
    }

    /// The metrics of the frames so far.
    pub fn summary(&self) -> MotSummary {
        let num_gt = self.num_objects;
        let num_pred = self.num_predictions;
        let (mut mt, mut pt, mut ml) = (0, 0, 0);
        let mut frag = 0;
        for s in self.objects.values() {
            let ratio = s.matched as f64 / s.frames as f64;
            if ratio >= 0.8 {
                mt += 1;
            } else if ratio < 0.2 {
                ml += 1;
            } else {
                pt += 1;
            }
            frag += s.fragmentations;
        }
        let idtp = self.id_true_positives();
        let div = |a: f64, b: f64| a / b;
        MotSummary {
            num_frames: self.num_frames,
            num_gt,
            num_predictions: num_pred,
            num_unique_objects: self.objects.len(),
            num_unique_hypotheses: self.hyp_frames.len(),
            num_matches: self.num_matches,
            fp: self.num_false_positives,
            fn_: self.num_misses,
            num_switches: self.num_switches,
            num_fragmentations: frag,
            mostly_tracked: mt,
            partially_tracked: pt,
            mostly_lost: ml,
            mota: 1.0
                - div(
                    (self.num_misses + self.num_switches + self.num_false_positives) as f64,
                    num_gt as f64,
                ),
            motp: div(self.distance_sum, self.num_matches as f64),
            recall: div(self.num_matches as f64, num_gt as f64),
            precision: div(
                self.num_matches as f64,
                (self.num_matches + self.num_false_positives) as f64,
            ),
            idtp,
            idfp: num_pred - idtp,
            idfn: num_gt - idtp,
            idf1: div(2.0 * idtp as f64, (num_gt + num_pred) as f64),
            idp: div(idtp as f64, num_pred as f64),
            idr: div(idtp as f64, num_gt as f64),
        }
    }

    /// IDTP: the largest total overlap count of a one-to-one matching of object ids and hypothesis
    /// ids (equivalently, py-motmetrics' minimum IDFP + IDFN assignment).
    fn id_true_positives(&self) -> u64 {
        let mut oids: Vec<i64> = self.overlaps.keys().map(|k| k.0).collect();
        let mut hids: Vec<i64> = self.overlaps.keys().map(|k| k.1).collect();
        oids.sort_unstable();
        oids.dedup();
        hids.sort_unstable();
        hids.dedup();
        if oids.is_empty() {
            return 0;
        }
        let hidx: HashMap<i64, usize> = hids.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let oidx: HashMap<i64, usize> = oids.iter().enumerate().map(|(i, o)| (*o, i)).collect();
        let mut w = vec![vec![0i64; hids.len()]; oids.len()];
        for (&(o, h), &n) in &self.overlaps {
            w[oidx[&o]][hidx[&h]] = n as i64;
        }
        max_weight_matching(&w)
            .into_iter()
            .map(|(r, c)| w[r][c] as u64)
            .sum()
    }
}

fn check_unique(frame: u32, kind: &'static str, boxes: &[(i64, Rect)]) -> Result<(), MetricsError> {
    let mut seen = HashSet::with_capacity(boxes.len());
    for (id, _) in boxes {
        if !seen.insert(*id) {
            return Err(MetricsError::DuplicateId {
                frame,
                kind,
                id: *id,
            });
        }
    }
    Ok(())
}

/// Maximum-weight assignment of a rectangular matrix of non-negative weights; returns the
/// `(row, column)` pairs with a positive weight.
fn max_weight_matching(w: &[Vec<i64>]) -> Vec<(usize, usize)> {
    let rows = w.len();
    let cols = w.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Kuhn–Munkres needs rows <= columns: transpose otherwise.
    let transpose = rows > cols;
    let (nr, nc) = if transpose {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let mut m = Matrix::new(nr, nc, 0i64);
    for (r, row) in w.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            if transpose {
                m[(c, r)] = v;
            } else {
                m[(r, c)] = v;
            }
        }
    }
    let (_, assign) = kuhn_munkres(&m);
    assign
        .into_iter()
        .enumerate()
        .map(|(a, b)| if transpose { (b, a) } else { (a, b) })
        .filter(|&(r, c)| w[r][c] > 0)
        .collect()
}

/// CLEAR-MOT and identity metrics of a sequence; see the module documentation for definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct MotSummary {
    /// Frames evaluated (frames in which ground truth or hypotheses have boxes).
    pub num_frames: u64,
    /// Ground-truth boxes over all frames.
    pub num_gt: u64,
    /// Hypothesis boxes over all frames.
    pub num_predictions: u64,
    /// Distinct ground-truth ids (MOTChallenge's `GT`).
    pub num_unique_objects: usize,
    /// Distinct hypothesis ids.
    pub num_unique_hypotheses: usize,
    /// Matched boxes (ID switches included).
    pub num_matches: u64,
    /// False positives: hypothesis boxes without a match.
    pub fp: u64,
    /// False negatives (misses): ground-truth boxes without a match.
    pub fn_: u64,
    /// ID switches.
    pub num_switches: u64,
    pub num_fragmentations: u64,
    pub mostly_tracked: usize,
    pub partially_tracked: usize,
    pub mostly_lost: usize,
    /// 1 − (FN + FP + IDSW) / num_gt.
    pub mota: f64,
    /// Mean IoU distance (1 − IoU) of the matches; lower is better (py-motmetrics' `motp`).
    pub motp: f64,
    pub recall: f64,
    pub precision: f64,
    pub idtp: u64,
    pub idfp: u64,
    pub idfn: u64,
    pub idf1: f64,
    pub idp: f64,
    pub idr: f64,
}

impl MotSummary {
    /// MOTP as MOTChallenge reports it: the mean IoU of the matches (1 − [`Self::motp`]).
    pub fn motp_iou(&self) -> f64 {
        1.0 - self.motp
    }
}

impl fmt::Display for MotSummary {
    /// Two lines in the layout of py-motmetrics' `motchallenge` summary (percentages; MOTP as the
    /// mean IoU distance).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |v: f64| format!("{:.1}%", v * 100.0);
        let cols: [(&str, String); 16] = [
            ("IDF1", p(self.idf1)),
            ("IDP", p(self.idp)),
            ("IDR", p(self.idr)),
            ("Rcll", p(self.recall)),
            ("Prcn", p(self.precision)),
            ("GT", self.num_unique_objects.to_string()),
            ("MT", self.mostly_tracked.to_string()),
            ("PT", self.partially_tracked.to_string()),
            ("ML", self.mostly_lost.to_string()),
            ("FP", self.fp.to_string()),
            ("FN", self.fn_.to_string()),
            ("IDs", self.num_switches.to_string()),
            ("FM", self.num_fragmentations.to_string()),
            ("MOTA", p(self.mota)),
            ("MOTP", format!("{:.3}", self.motp)),
            ("frames", self.num_frames.to_string()),
        ];
        let widths: Vec<usize> = cols.iter().map(|(h, v)| h.len().max(v.len())).collect();
        for (i, ((h, _), w)) in cols.iter().zip(&widths).enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{h:>w$}")?;
        }
        writeln!(f)?;
        for (i, ((_, v), w)) in cols.iter().zip(&widths).enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{v:>w$}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One frame: ground-truth and hypothesis boxes as `(id, x)`.
    type Frame<'a> = (&'a [(i64, f64)], &'a [(i64, f64)]);

    fn r(x: f64) -> Rect {
        Rect::new(x, 0.0, 10.0, 10.0)
    }

    /// Runs frames of boxes.
    fn run(frames: &[Frame]) -> (MotSummary, Vec<FrameEvents>) {
        run_with(Continuity::LastMatch, frames)
    }

    fn run_with(continuity: Continuity, frames: &[Frame]) -> (MotSummary, Vec<FrameEvents>) {
        let mut acc = MotAccumulator::with_config(MatchConfig {
            continuity,
            ..Default::default()
        })
        .unwrap();
        let mut evs = Vec::new();
        for (f, (g, h)) in frames.iter().enumerate() {
            let g: Vec<_> = g.iter().map(|&(id, x)| (id, r(x))).collect();
            let h: Vec<_> = h.iter().map(|&(id, x)| (id, r(x))).collect();
            evs.push(acc.update(f as u32 + 1, &g, &h).unwrap());
        }
        (acc.summary(), evs)
    }

    #[test]
    fn perfect_tracking() {
        let (s, _) = run(&[
            (&[(1, 0.0), (2, 50.0)], &[(7, 0.0), (8, 50.0)]),
            (&[(1, 1.0), (2, 49.0)], &[(7, 1.0), (8, 49.0)]),
            (&[(1, 2.0), (2, 48.0)], &[(7, 2.0), (8, 48.0)]),
        ]);
        assert_eq!(s.mota, 1.0);
        assert_eq!(s.idf1, 1.0);
        assert_eq!((s.idp, s.idr), (1.0, 1.0));
        assert_eq!(s.motp, 0.0);
        assert_eq!((s.fp, s.fn_, s.num_switches), (0, 0, 0));
        assert_eq!((s.num_gt, s.num_matches, s.num_frames), (6, 6, 3));
        assert_eq!(
            (s.mostly_tracked, s.partially_tracked, s.mostly_lost),
            (2, 0, 0)
        );
        assert_eq!(s.num_unique_objects, 2);
    }

    #[test]
    fn one_switch() {
        // Object 1 is tracked by 7 for two frames, then by 9.
        let (s, evs) = run(&[
            (&[(1, 0.0)], &[(7, 0.0)]),
            (&[(1, 0.0)], &[(7, 0.0)]),
            (&[(1, 0.0)], &[(9, 0.0)]),
            (&[(1, 0.0)], &[(9, 0.0)]),
        ]);
        assert_eq!(evs[2].switches, vec![(1, 9)]);
        assert_eq!(s.num_switches, 1);
        assert_eq!((s.fp, s.fn_), (0, 0));
        assert!((s.mota - 0.75).abs() < 1e-12);
        // IDTP = 2 of 4 gt and 4 hypothesis boxes.
        assert_eq!((s.idtp, s.idfp, s.idfn), (2, 2, 2));
        assert!((s.idf1 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn one_false_positive_and_one_miss() {
        let (s, evs) = run(&[(&[(1, 0.0)], &[(7, 0.0), (8, 100.0)]), (&[(1, 0.0)], &[])]);
        assert_eq!(evs[0].false_positives, vec![8]);
        assert_eq!(evs[1].misses, vec![1]);
        assert_eq!((s.fp, s.fn_, s.num_switches), (1, 1, 0));
        assert_eq!(s.num_gt, 2);
        assert!((s.mota - 0.0).abs() < 1e-12);
        assert!((s.recall - 0.5).abs() < 1e-12);
        assert!((s.precision - 0.5).abs() < 1e-12);
        // IDTP 1 of 2 gt and 2 hypothesis boxes.
        assert!((s.idf1 - 0.5).abs() < 1e-12);
        assert_eq!(s.mostly_tracked + s.partially_tracked + s.mostly_lost, 1);
        assert_eq!(s.partially_tracked, 1);
    }

    #[test]
    fn threshold_is_iou_half() {
        // IoU 1/3 (x shifted by 5): no match; IoU 0.6 (x shifted by 2.5): match with d = 0.4.
        let (s, _) = run(&[(&[(1, 0.0)], &[(7, 5.0)]), (&[(1, 0.0)], &[(7, 2.5)])]);
        assert_eq!((s.fp, s.fn_, s.num_matches), (1, 1, 1));
        assert!((s.motp - 0.4).abs() < 1e-12, "{}", s.motp);
        assert!((s.motp_iou() - 0.6).abs() < 1e-12);
    }

    #[test]
    fn previous_correspondence_is_kept_over_a_closer_box() {
        // Frame 2: hypothesis 8 fits object 1 better, but 7 is still within the threshold.
        let (s, evs) = run(&[
            (&[(1, 0.0)], &[(7, 0.0), (8, 100.0)]),
            (&[(1, 0.0)], &[(7, 2.0), (8, 0.0)]),
        ]);
        assert_eq!(evs[1].matches, vec![(1, 7, 1.0 - 80.0 / 120.0)]);
        assert_eq!(s.num_switches, 0);
        assert_eq!(s.fp, 2);
    }

    #[test]
    fn continuity_after_a_missed_frame() {
        // Object 1 is matched to 7, missed, then 7 (IoU 0.6) and 8 (IoU 1) both cover it.
        let frames: [Frame; 3] = [
            (&[(1, 0.0)], &[(7, 0.0)]),
            (&[(1, 0.0)], &[]),
            (&[(1, 0.0)], &[(7, 2.5), (8, 0.0)]),
        ];
        let (s, evs) = run_with(Continuity::LastMatch, &frames);
        assert_eq!((evs[2].matches[0].1, s.num_switches, s.fp), (7, 0, 1));
        let (s, evs) = run_with(Continuity::PreviousFrame, &frames);
        assert_eq!((evs[2].matches[0].1, s.num_switches, s.fp), (8, 1, 1));
    }

    #[test]
    fn assignment_maximises_pairs_then_minimises_distance() {
        // Greedy would give object 1 hypothesis 7 (IoU 1) and leave object 2 unmatched.
        let (s, evs) = run(&[(&[(1, 0.0), (2, 3.0)], &[(7, 0.0), (8, -2.0)])]);
        assert_eq!(s.num_matches, 2, "{evs:?}");
        assert_eq!((s.fp, s.fn_), (0, 0));
        let mut m: Vec<_> = evs[0].matches.iter().map(|m| (m.0, m.1)).collect();
        m.sort();
        assert_eq!(m, vec![(1, 8), (2, 7)]);
        // Among equally many pairs, the closer ones win.
        let (_, evs) = run(&[(&[(1, 0.0), (2, 2.0)], &[(7, 1.0), (8, 3.0)])]);
        let mut m: Vec<_> = evs[0].matches.iter().map(|m| (m.0, m.1)).collect();
        m.sort();
        assert_eq!(m, vec![(1, 7), (2, 8)]);
    }

    #[test]
    fn fragmentation_and_switch_back() {
        // tracked, missed, tracked again by another id, then back to the first id.
        let (s, evs) = run(&[
            (&[(1, 0.0)], &[(7, 0.0)]),
            (&[(1, 0.0)], &[]),
            (&[(1, 0.0)], &[(9, 0.0)]),
            (&[(1, 0.0)], &[(7, 0.0)]),
        ]);
        assert_eq!(s.num_fragmentations, 1);
        assert_eq!(s.num_switches, 2, "{evs:?}");
        assert_eq!(s.fn_, 1);
        // 7 overlaps object 1 in two frames, 9 in one: IDTP 2 of 4 gt and 3 hypothesis boxes.
        assert_eq!((s.idtp, s.idfn, s.idfp), (2, 2, 1));
    }

    #[test]
    fn idf1_is_a_global_one_to_one_matching() {
        // Hypothesis 7 covers object 1 for 3 frames and object 2 for 2; 8 covers object 2 for 1 frame.
        // Best: 1↔7 (3) + 2↔8 (1) = 4, not 2↔7.
        let (s, _) = run(&[
            (&[(1, 0.0), (2, 50.0)], &[(7, 0.0)]),
            (&[(1, 0.0), (2, 50.0)], &[(7, 0.0)]),
            (&[(1, 0.0), (2, 50.0)], &[(7, 0.0)]),
            (&[(2, 50.0)], &[(7, 50.0)]),
            (&[(2, 50.0)], &[(7, 50.0)]),
            (&[(2, 50.0)], &[(8, 50.0)]),
        ]);
        assert_eq!(s.idtp, 4);
        assert_eq!(s.num_gt, 9);
        assert_eq!(s.num_predictions, 6);
        assert!((s.idf1 - 8.0 / 15.0).abs() < 1e-12);
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut acc = MotAccumulator::new();
        let e = acc.update(3, &[(1, r(0.0)), (1, r(5.0))], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "frame 3: ground-truth id 1 appears more than once"
        );
        for max_distance in [1.5, -0.1, f64::NAN] {
            let cfg = MatchConfig {
                max_distance,
                ..Default::default()
            };
            assert!(MotAccumulator::with_config(cfg).is_err());
        }
        // Empty input: NaN ratios, no panic.
        let s = MotAccumulator::new().summary();
        assert!(s.mota.is_nan() && s.idf1.is_nan());
        assert!(!s.to_string().is_empty());
    }

    #[test]
    fn many_boxes_do_not_overflow() {
        let mut acc = MotAccumulator::new();
        let g: Vec<_> = (0..300).map(|i| (i, r(i as f64 * 3.0))).collect();
        let h: Vec<_> = (0..300)
            .map(|i| (i + 1000, r(i as f64 * 3.0 + 0.5)))
            .collect();
        let ev = acc.update(1, &g, &h).unwrap();
        assert_eq!(ev.matches.len(), 300);
        assert!(ev.matches.iter().all(|m| m.1 == m.0 + 1000));
    }
}
