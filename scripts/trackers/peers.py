#!/usr/bin/env python3
"""Runs the Python trackers a user might pick instead of Vigil's on MOTChallenge detection files.

    peers.py --out DIR [--frames N] [--frame-rate FPS] [--repeat R] DET.txt [DET.txt ...]

Each DET.txt is a MOTChallenge detection file (`frame,-1,x,y,w,h,conf,...`), e.g. the seeded noisy
detections that `vigil_mot::eval::write_detections` writes (see `mot/tests/tracker_compare.rs`).
For every file, every tracker and every preset below, the detections are fed frame by frame (frames
1..N, empty ones included) and the boxes the tracker reports for each frame are written as a
MOTChallenge result file `DIR/<det stem>/<tracker>-<preset>.txt` (`frame,id,x,y,w,h,conf,-1,-1,-1`).
The metrics are NOT computed here: the Rust side evaluates every result with the same code.

`DIR/peers.json` lists the runs: det file, tracker, preset, settings, output file, frames, detections,
and `update_seconds` / `fps`, measured with `time.perf_counter` around the trackers' update calls
only (the inputs are built before; reading the outputs happens after), best of `--repeat` runs on the
first detection file (the timed one; the others run once).

Trackers (versions pinned by `scripts/setup.sh`, venv `~/.cache/vigil/trackers-venv`), each with the
settings its README or its own demos give for bounding boxes:

* `norfair` 2.3.0 (Tryolabs). Boxes are two points (top-left, bottom-right) with the detection's score
  on both. `iou`: `Tracker(distance_function="iou", distance_threshold=0.7)`, the bounding-box setting
  of its detector demos, other arguments at their defaults. `motchallenge`: the settings of its
  MOTChallenge demo (`demos/motmetrics4norfair`): IoU distance, `distance_threshold=0.9`,
  `detection_threshold=0.5`, `pointwise_hit_counter_max=3`, `hit_counter_max=8`,
  `FilterPyKalmanFilterFactory()` (without the demo's camera-motion estimator: the camera is static).
  Reported boxes: the tracked objects' estimates.
* `bytetracker` 0.3.2 (ByteTrack packaged for pip). `defaults`: `BYTETracker()` (track_thresh 0.45,
  track_buffer 25, match_thresh 0.8, frame_rate 30). `paper`: the ByteTrack repository's MOT17
  arguments (track_thresh 0.5, track_buffer 30, match_thresh 0.8) at the sequence's frame rate.
  The package imports `torch` only to test `isinstance(x, torch.Tensor)` and calls `.numpy()` on its
  input; when torch is not installed (it is not: a 2 GB download for two attribute look-ups) a stand-in
  module with an empty `Tensor` class is registered and the input is a NumPy array with a `.numpy()`.
* `motpy` 0.0.10. `readme`: `MultiObjectTracker(dt=1/fps)`, its README's usage. `mot16`: the settings
  of its MOT16 example (`examples/mot16_challange.py`): constant-acceleration model,
  `tracker_kwargs={"max_staleness": 15}`, `matching_fn_kwargs={"min_iou": 0.25}`. motpy ignores
  confidences, so both presets are also run on the detections with confidence >= 0.5 only
  (`readme-conf0.5`, `mot16-conf0.5`; the filtering is not timed). Track ids (UUIDs) are numbered in
  order of first appearance.

Exit status: 0 on success, 1 when an input is unreadable, 2 when a tracker package is missing.
"""

import argparse
import json
import os
import platform
import sys
import time
import types
from importlib import metadata

import numpy as np

TRACKERS = ("norfair", "bytetracker", "motpy")


def read_detections(path, frames):
    """Frames 1..max(frames, last frame in the file) as a list of (N, 5) arrays [x, y, w, h, conf]."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(",")
            if len(parts) < 7:
                raise ValueError(f"{path}:{lineno}: expected at least 7 fields, got {len(parts)}")
            try:
                frame = int(float(parts[0]))
                x, y, w, h, conf = (float(v) for v in parts[2:7])
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            if frame < 1:
                raise ValueError(f"{path}:{lineno}: frame {frame} is not >= 1")
            rows.append((frame, x, y, w, h, conf))
    last = max([frames or 0] + [r[0] for r in rows])
    out = [[] for _ in range(last)]
    for frame, *box in rows:
        out[frame - 1].append(box)
    return [np.asarray(f, dtype=np.float64).reshape(-1, 5) for f in out]


# ------------------------------------------------------------------------------------------ norfair


def norfair_presets():
    from norfair.filter import FilterPyKalmanFilterFactory

    return {
        "iou": dict(distance_function="iou", distance_threshold=0.7),
        "motchallenge": dict(
            distance_function="iou",
            distance_threshold=0.9,
            detection_threshold=0.5,
            pointwise_hit_counter_max=3,
            hit_counter_max=8,
            filter_factory=FilterPyKalmanFilterFactory(),
        ),
    }


def run_norfair(frames, kwargs, fps):
    from norfair import Detection, Tracker

    tracker = Tracker(**kwargs)
    inputs = [
        [
            Detection(
                points=np.array([[x, y], [x + w, y + h]]),
                scores=np.array([c, c]),
            )
            for x, y, w, h, c in f
        ]
        for f in frames
    ]
    results, seconds = [], 0.0
    for dets in inputs:
        t0 = time.perf_counter()
        objs = tracker.update(detections=dets)
        seconds += time.perf_counter() - t0
        out = []
        for o in objs:
            (x1, y1), (x2, y2) = o.estimate
            conf = float(np.mean(o.last_detection.scores)) if o.last_detection is not None else 1.0
            out.append((int(o.id), x1, y1, x2 - x1, y2 - y1, conf))
        results.append(out)
    return results, seconds


# -------------------------------------------------------------------------------------- bytetracker


class _Dets(np.ndarray):
    """A NumPy array with torch's `.numpy()`, which bytetracker calls on its input."""

    def numpy(self):
        return np.asarray(self)


def import_bytetracker():
    try:
        import torch  # noqa: F401
    except ImportError:
        shim = types.ModuleType("torch")
        shim.Tensor = type("Tensor", (), {})
        sys.modules["torch"] = shim
    import bytetracker

    return bytetracker


def bytetracker_presets(fps):
    return {
        "defaults": dict(),
        "paper": dict(track_thresh=0.5, track_buffer=30, match_thresh=0.8, frame_rate=fps),
    }


def run_bytetracker(frames, kwargs, fps):
    bytetracker = import_bytetracker()
    from bytetracker.basetrack import BaseTrack

    BaseTrack._count = 0  # ids count from 1 in every run (the counter is global)
    tracker = bytetracker.BYTETracker(**kwargs)
    inputs = []
    for f in frames:
        d = np.zeros((len(f), 6))
        d[:, 0] = f[:, 0]
        d[:, 1] = f[:, 1]
        d[:, 2] = f[:, 0] + f[:, 2]
        d[:, 3] = f[:, 1] + f[:, 3]
        d[:, 4] = f[:, 4]
        inputs.append(d.view(_Dets))
    results, seconds = [], 0.0
    for d in inputs:
        t0 = time.perf_counter()
        out = tracker.update(d, None)
        seconds += time.perf_counter() - t0
        # rows: x1, y1, x2, y2, id, class, score
        results.append(
            [(int(r[4]), r[0], r[1], r[2] - r[0], r[3] - r[1], float(r[6])) for r in out.reshape(-1, 7)]
        )
    return results, seconds


# -------------------------------------------------------------------------------------------- motpy


def motpy_presets(fps):
    base = {
        "readme": dict(dt=1.0 / fps),
        "mot16": dict(
            dt=1.0 / fps,
            model_spec="constant_acceleration_and_static_box_size_2d",
            tracker_kwargs={"max_staleness": 15},
            matching_fn_kwargs={"min_iou": 0.25},
        ),
    }
    out = {}
    for name, kw in base.items():
        out[name] = dict(kw)
        out[f"{name}-conf0.5"] = dict(kw, min_score=0.5)
    return out


def run_motpy(frames, kwargs, fps):
    from motpy import Detection, MultiObjectTracker

    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()}
    min_score = kwargs.pop("min_score", None)
    tracker = MultiObjectTracker(**kwargs)
    inputs = [
        [
            Detection(box=np.array([x, y, x + w, y + h]), score=c)
            for x, y, w, h, c in f
            if min_score is None or c >= min_score
        ]
        for f in frames
    ]
    ids = {}
    results, seconds = [], 0.0
    for dets in inputs:
        t0 = time.perf_counter()
        tracks = tracker.step(detections=dets)
        seconds += time.perf_counter() - t0
        out = []
        for t in tracks:
            tid = ids.setdefault(t.id, len(ids) + 1)
            x1, y1, x2, y2 = (float(v) for v in t.box)
            score = float(t.score) if t.score is not None else 1.0
            out.append((tid, x1, y1, x2 - x1, y2 - y1, score))
        results.append(out)
    return results, seconds


# --------------------------------------------------------------------------------------------- main


def presets(name, fps):
    if name == "norfair":
        return norfair_presets(), run_norfair
    if name == "bytetracker":
        return bytetracker_presets(fps), run_bytetracker
    return motpy_presets(fps), run_motpy


def describe(settings):
    """Settings as JSON-friendly values (objects by their class name)."""
    out = {}
    for k, v in settings.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
        elif isinstance(v, dict):
            out[k] = describe(v)
        else:
            out[k] = type(v).__name__ + "()"
    return out


def write_results(path, results):
    with open(path, "w", encoding="utf-8") as f:
        for frame, boxes in enumerate(results, 1):
            for tid, x, y, w, h, conf in boxes:
                x, y, w, h, conf = float(x), float(y), max(float(w), 0.0), max(float(h), 0.0), float(conf)
                f.write(f"{frame},{int(tid)},{x!r},{y!r},{w!r},{h!r},{conf!r},-1,-1,-1\n")


def check_imports(names):
    missing = []
    for name in names:
        try:
            if name == "bytetracker":
                import_bytetracker()
            else:
                __import__(name)
        except ImportError as e:
            missing.append(f"{name} ({e})")
    return missing


def version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dets", nargs="+", help="MOTChallenge detection files")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--frames", type=int, default=None, help="number of frames (default: last in the file)")
    ap.add_argument("--frame-rate", type=float, default=25.0, help="frame rate of the sequence (TUD-Campus: 25)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per tracker and preset on the first detection file (the others run once); the fastest is reported",
    )
    ap.add_argument("--trackers", default=",".join(TRACKERS), help="comma-separated subset of " + ",".join(TRACKERS))
    args = ap.parse_args()

    names = [t.strip() for t in args.trackers.split(",") if t.strip()]
    unknown = [t for t in names if t not in TRACKERS]
    if unknown:
        ap.error(f"unknown tracker(s) {unknown}; known: {', '.join(TRACKERS)}")
    missing = check_imports(names)
    if missing:
        print(
            f"peers.py: missing Python package(s) in {sys.executable}: {'; '.join(missing)} "
            "(run scripts/setup.sh trackers)",
            file=sys.stderr,
        )
        return 2

    os.makedirs(args.out, exist_ok=True)
    report = {
        "python": platform.python_version(),
        "packages": {p: version(p) for p in ("norfair", "filterpy", "bytetracker", "lap", "motpy", "numpy", "scipy")},
        "frame_rate": args.frame_rate,
        "repeat": args.repeat,
        "runs": [],
    }
    for k, det in enumerate(args.dets):
        repeat = max(1, args.repeat) if k == 0 else 1
        try:
            frames = read_detections(det, args.frames)
        except (OSError, ValueError) as e:
            print(f"peers.py: cannot read detections {det}: {e}", file=sys.stderr)
            return 1
        stem = os.path.splitext(os.path.basename(det))[0]
        sub = os.path.join(args.out, stem)
        os.makedirs(sub, exist_ok=True)
        n_dets = int(sum(len(f) for f in frames))
        for name in names:
            table, run = presets(name, args.frame_rate)
            for preset, settings in table.items():
                best, results = None, None
                for _ in range(repeat):
                    res, secs = run(frames, settings, args.frame_rate)
                    if best is None or secs < best:
                        best = secs
                    if results is None:
                        results = res
                out = os.path.join(sub, f"{name}-{preset}.txt")
                write_results(out, results)
                report["runs"].append(
                    {
                        "det": det,
                        "tracker": name,
                        "preset": preset,
                        "settings": describe(settings),
                        "output": out,
                        "frames": len(frames),
                        "detections": n_dets,
                        "update_seconds": best,
                        "fps": len(frames) / best if best > 0 else None,
                    }
                )
    with open(os.path.join(args.out, "peers.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
