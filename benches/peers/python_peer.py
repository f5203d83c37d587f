#!/usr/bin/env python3
"""The Python pipeline a user would write instead of Vigil: the benchmark's peer (`vigil bench`).

N streams of the same video, one Python thread per stream (OpenCV and ONNX Runtime release the GIL
while they work, so threads are what a Python user reaches for first; the threads share one
`onnxruntime.InferenceSession`, as Vigil's streams share one model runtime, but each thread runs its
own frames at batch 1: no cross-stream batching). Per frame, on the stream's thread:

  1. decode with OpenCV (`cv2.VideoCapture`, FFmpeg inside the wheel) to BGR;
  2. NanoDet exactly as Vigil feeds it (`scripts/reference/nanodet_reference.py` is the contract):
     plain stretch to 416x416 with Pillow's BILINEAR filter (`--resize pillow`, the default: the
     anti-aliased filter Vigil's SIMD resizer reproduces; OpenCV's `cv2.resize` filters, `--resize
     area|linear`, do not anti-alias like it and give the same detections on fewer frames: 91 and 86
     of the first 100 frames of vtest.avi, against 96 with Pillow), BGR, `(px - mean) / std`, NCHW;
     GFL decode; best class per cell >= threshold; class filter; greedy per-class NMS; at most
     `--max-detections`;
  3. a greedy IoU tracker with constant-velocity prediction in numpy (Vigil's `tracker.kind: iou`);
  4. overlay: a box and a `label conf #id` line per object (`cv2.rectangle`, `cv2.putText`);
  5. encode: `--encode x264` pipes the frames to an `ffmpeg` process per stream (libx264, preset
     veryfast, 4000 kbit/s: Vigil's `outputs.file` encoder settings), because opencv-python-headless's
     FFmpeg has no H.264 encoder (its `VideoWriter` opens only MPEG-4 part 2, `--encode mp4v`);
     `--encode none` skips it.

It writes one JSON line per frame (`--detections`: stream, frame, objects with label, class_id,
confidence, bbox, track_id) and a JSON stats file (`--stats`): frames, wall seconds, CPU seconds of the
process and of its (waited-for) encoder children, per-frame latencies, `ru_maxrss` of the process
and of its largest child (informative only: a process started by fork/vfork + exec inherits its
parent's high-water mark, so `vigil bench` samples the process tree's memory itself), and per stream the completion time of each frame (`completions_s`, Unix seconds)
and the latencies (`latencies_s`): the time between the completion of a frame and of the previous
frame of the same stream (the first: from the stream's start), which is what Vigil's benchmark row
measures from its events' timestamps (each stream's frames are processed one after another on one
thread in both).

Usage:
  python benches/peers/python_peer.py --video V --model M [--streams N] [--frames K] [--threshold 0.4]
      [--nms-iou 0.5] [--classes person,car] [--encode x264|mp4v|none] [--out-dir D]
      [--detections FILE] [--stats FILE]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
NUM_CLASSES = 80
REG_BINS = 11
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
# "pillow": Pillow's BILINEAR (anti-aliased when downscaling), the filter Vigil's resizer reproduces;
# "area", "linear": OpenCV's own filters (closer to what a user might write, fewer equal frames).
RESIZE = {"pillow": None, "area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


def load_labels(path):
    with open(path, encoding="utf-8") as f:
        labels = [line.strip() for line in f if line.strip()]
    if len(labels) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} labels, found {len(labels)}")
    return labels


def preprocess(bgr, interpolation):
    if interpolation is None:
        # Pillow filters each channel alike, so the BGR array is resized as it is.
        resized = np.asarray(Image.fromarray(bgr).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR))
    else:
        resized = cv2.resize(bgr, (INPUT_SIZE, INPUT_SIZE), interpolation=interpolation)
    norm = (resized.astype(np.float32) - MEAN_BGR) / STD_BGR
    return np.ascontiguousarray(norm.transpose(2, 0, 1)[np.newaxis])


def match_outputs(outputs):
    by_shape = {(o.shape[1], o.shape[2]): o[0] for o in outputs}
    levels = {}
    for stride in STRIDES:
        cells = (INPUT_SIZE // stride) ** 2
        cls = by_shape.get((cells, NUM_CLASSES))
        reg = by_shape.get((cells, 4 * REG_BINS))
        if cls is None or reg is None:
            raise ValueError(f"model outputs lack stride {stride} ({cells} cells): {sorted(by_shape)}")
        levels[stride] = (cls, reg)
    return levels


def decode(levels, width, height, threshold):
    boxes_l, scores_l, classes_l = [], [], []
    bins = np.arange(REG_BINS, dtype=np.float32)
    sx, sy = width / INPUT_SIZE, height / INPUT_SIZE
    for stride in STRIDES:
        cls, reg = levels[stride]
        w = INPUT_SIZE // stride
        class_ids = np.argmax(cls, axis=1)
        scores = cls[np.arange(cls.shape[0]), class_ids]
        keep = np.nonzero(scores >= threshold)[0]
        if keep.size == 0:
            continue
        logits = reg[keep].reshape(-1, 4, REG_BINS)
        logits = logits - logits.max(axis=2, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=2, keepdims=True)
        dist = (prob * bins).sum(axis=2) * stride
        cx = ((keep % w) + 0.5) * stride
        cy = ((keep // w) + 0.5) * stride
        boxes_l.append(
            np.stack(
                [(cx - dist[:, 0]) * sx, (cy - dist[:, 1]) * sy, (cx + dist[:, 2]) * sx, (cy + dist[:, 3]) * sy],
                axis=1,
            )
        )
        scores_l.append(scores[keep])
        classes_l.append(class_ids[keep])
    if not boxes_l:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(boxes_l), np.concatenate(scores_l), np.concatenate(classes_l)


def iou_one(box, others):
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes, scores, classes, iou_thr, max_det):
    order = np.argsort(-scores, kind="stable")
    kept = []
    for i in order:
        same = [k for k in kept if classes[k] == classes[i]]
        if same and np.any(iou_one(boxes[i], boxes[same]) > iou_thr):
            continue
        kept.append(i)
        if len(kept) >= max_det:
            break
    return kept


def iou_matrix(a, b):
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class IouTracker:
    """Greedy IoU association with constant-velocity prediction (the work of Vigil's `iou` tracker)."""

    def __init__(self, iou_threshold=0.3, max_age=30, match_class=True):
        self.iou_threshold, self.max_age, self.match_class = iou_threshold, max_age, match_class
        self.tracks = []  # dicts: id, box (np[4]), vel (np[4]), cls, age
        self.next_id = 1

    def update(self, boxes, classes):
        preds = np.array([t["box"] + t["vel"] for t in self.tracks]).reshape(-1, 4)
        ids = [None] * len(boxes)
        matched = set()
        if len(self.tracks) and len(boxes):
            m = iou_matrix(preds, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
            if self.match_class:
                tc = np.array([t["cls"] for t in self.tracks])
                m = np.where(tc[:, None] == np.asarray(classes)[None, :], m, 0.0)
            while True:
                ti, di = np.unravel_index(np.argmax(m), m.shape)
                if m[ti, di] < self.iou_threshold:
                    break
                t = self.tracks[ti]
                new = np.asarray(boxes[di], dtype=np.float64)
                t["vel"] = new - t["box"]
                t["box"], t["age"] = new, 0
                ids[di] = t["id"]
                matched.add(ti)
                m[ti, :] = -1
                m[:, di] = -1
        for ti, t in enumerate(self.tracks):
            if ti not in matched:
                t["box"] = t["box"] + t["vel"]
                t["age"] += 1
        self.tracks = [t for t in self.tracks if t["age"] <= self.max_age]
        for di, box in enumerate(boxes):
            if ids[di] is None:
                t = {"id": self.next_id, "box": np.asarray(box, dtype=np.float64), "vel": np.zeros(4), "cls": classes[di], "age": 0}
                self.next_id += 1
                self.tracks.append(t)
                ids[di] = t["id"]
        return ids


def colour(track_id):
    h = (track_id * 2654435761) & 0xFFFFFF
    return (h & 255, (h >> 8) & 255, (h >> 16) & 255)


def draw(frame, objects):
    for o in objects:
        x1, y1, x2, y2 = (int(round(v)) for v in o["bbox"])
        c = colour(o["track_id"])
        cv2.rectangle(frame, (x1, y1), (x2, y2), c, 2)
        text = f"{o['label']} {o['confidence']:.2f} #{o['track_id']}"
        cv2.putText(frame, text, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_PLAIN, 1.0, c, 1)


class Encoder:
    def __init__(self, kind, path, width, height, fps):
        self.kind, self.proc, self.writer = kind, None, None
        if kind == "x264":
            cmd = [
                "ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
                "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-c:v", "libx264",
                "-preset", "veryfast", "-b:v", "4000k", "-pix_fmt", "yuv420p", path,
            ]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        elif kind == "mp4v":
            self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not self.writer.isOpened():
                raise RuntimeError(f"{path}: OpenCV cannot open an mp4v writer")

    def write(self, frame):
        if self.proc is not None:
            self.proc.stdin.write(frame.tobytes())
        elif self.writer is not None:
            self.writer.write(frame)

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            if self.proc.wait() != 0:
                raise RuntimeError(f"ffmpeg encoder exited with status {self.proc.returncode}")
        elif self.writer is not None:
            self.writer.release()


def run_stream(index, args, session, input_name, labels, keep_classes, out_lock, out_file, result):
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        raise RuntimeError(f"{args.video}: OpenCV cannot open the video")
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25
    enc = Encoder(args.encode, os.path.join(args.out_dir, f"peer-{index}.mp4"), width, height, fps)
    tracker = IouTracker()
    interp = RESIZE[args.resize]
    latencies = []
    completions = []
    frame_no = 0
    last = time.perf_counter()
    while args.frames <= 0 or frame_no < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        tensor = preprocess(frame, interp)
        outputs = session.run(None, {input_name: tensor})
        boxes, scores, classes = decode(match_outputs(outputs), width, height, args.threshold)
        if keep_classes is not None and len(classes):
            sel = np.isin(classes, list(keep_classes))
            boxes, scores, classes = boxes[sel], scores[sel], classes[sel]
        kept = nms(boxes, scores, classes, args.nms_iou, args.max_detections)
        det_boxes = [boxes[k] for k in kept]
        det_classes = [int(classes[k]) for k in kept]
        ids = tracker.update(det_boxes, det_classes)
        objects = [
            {
                "label": labels[det_classes[j]],
                "class_id": det_classes[j],
                "confidence": round(float(scores[k]), 4),
                "bbox": [round(float(v), 2) for v in boxes[k]],
                "track_id": ids[j],
            }
            for j, k in enumerate(kept)
        ]
        if args.draw:
            draw(frame, objects)
        enc.write(frame)
        if out_file is not None:
            line = json.dumps({"stream": index, "frame": frame_no, "objects": objects})
            with out_lock:
                out_file.write(line + "\n")
        now = time.perf_counter()
        completions.append(time.time())
        latencies.append(now - last)
        last = now
        frame_no += 1
    cap.release()
    enc.close()
    result["frames"] = frame_no
    result["latencies"] = latencies
    result["completions"] = completions


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", required=True)
    p.add_argument("--model", required=True, help="NanoDet ONNX file")
    p.add_argument("--labels", help="labels.txt (default: beside the model's version folder)")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--frames", type=int, default=0, help="frames per stream (0 = all)")
    p.add_argument("--threshold", type=float, default=0.4)
    p.add_argument("--nms-iou", type=float, default=0.5)
    p.add_argument("--max-detections", type=int, default=100)
    p.add_argument("--classes", default="", help="comma-separated labels to keep (empty = all)")
    p.add_argument("--resize", choices=sorted(RESIZE), default="pillow")
    p.add_argument("--encode", choices=["x264", "mp4v", "none"], default="x264")
    p.add_argument("--no-draw", dest="draw", action="store_false")
    p.add_argument("--out-dir", default=".", help="folder of the encoded videos")
    p.add_argument("--detections", help="JSON lines, one per frame")
    p.add_argument("--stats", help="JSON stats file (default: stdout)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = its default)")
    p.add_argument("--no-spinning", dest="spinning", action="store_false",
                   help="idle ONNX Runtime intra-op threads block instead of busy-waiting (its default)")
    args = p.parse_args()

    labels_path = args.labels or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.model))), "labels.txt")
    labels = load_labels(labels_path)
    keep = None
    if args.classes.strip():
        keep = set()
        for name in args.classes.split(","):
            name = name.strip()
            if name.isdigit():
                keep.add(int(name))
            elif name in labels:
                keep.add(labels.index(name))
            else:
                raise SystemExit(f"error: --classes: '{name}' is not a label of {labels_path}")
    os.makedirs(args.out_dir, exist_ok=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the converted model's shape-merge warnings
    if args.threads > 0:
        opts.intra_op_num_threads = args.threads
    if not args.spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(args.model, sess_options=opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    out_file = open(args.detections, "w", encoding="utf-8") if args.detections else None
    out_lock = threading.Lock()
    results = [dict() for _ in range(args.streams)]
    errors = []

    def worker(i):
        try:
            run_stream(i, args, session, input_name, labels, keep, out_lock, out_file, results[i])
        except Exception as e:  # reported after the other streams finished
            errors.append(f"stream {i}: {e}")

    t0 = time.perf_counter()
    cpu0 = os.times()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    if out_file is not None:
        out_file.close()
    if errors:
        print("error: " + "; ".join(errors), file=sys.stderr)
        sys.exit(1)
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = {
        "streams": args.streams,
        "frames": sum(r["frames"] for r in results),
        "frames_per_stream": [r["frames"] for r in results],
        "wall_s": wall,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "children_cpu_s": (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system),
        "latencies_s": [r["latencies"] for r in results],
        "completions_s": [r["completions"] for r in results],
        "peak_rss_kib": own.ru_maxrss,
        "children_peak_rss_kib": children.ru_maxrss,
        "encode": args.encode,
        "resize": args.resize,
        "versions": {"python": sys.version.split()[0], "opencv": cv2.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
    }
    text = json.dumps(stats)
    if args.stats:
        with open(args.stats, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
