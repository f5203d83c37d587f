#!/usr/bin/env python3
"""Independent reference detections for NanoDet-m 416 (COCO), used to test Vigil's Rust decoder.

Runs the NanoDet ONNX model on one image with ONNX Runtime (CPU) and writes the detections as JSON.
Only numpy, Pillow and onnxruntime are used.

Pre-processing (the contract the Rust side mirrors):
  1. decode with Pillow, ``.convert("RGB")``;
  2. ``Image.resize((416, 416), Image.BILINEAR)`` -- plain stretch, no letterbox, no aspect preservation
     (note: Pillow's BILINEAR filter is area-aware when downscaling, i.e. a triangle filter whose support
     grows with the scale factor, not a 2x2 point sample);
  3. reorder channels to BGR, cast to float32;
  4. ``(px - [103.53, 116.28, 123.675]) / [57.375, 57.12, 58.395]`` per B, G, R channel;
  5. HWC -> NCHW, batch 1 (input ``[1, 3, 416, 416]``).

Post-processing:
  * the 6 outputs are matched BY SHAPE, never by order or name: for stride s in (8, 16, 32) the cell count is
    N = (416 / s)^2 = 2704 / 676 / 169; the tensor ``[1, N, 80]`` holds class scores (already sigmoid), the
    tensor ``[1, N, 44]`` holds the GFL box distribution (4 sides x 11 bins, side order left, top, right, bottom);
  * cell i of a level with W = 416 / s cells per row: row = i // W, col = i % W,
    centre = ((col + 0.5) * s, (row + 0.5) * s) in 416-input pixels;
  * per side: dist = sum(softmax(bins) * [0, 1, ..., 10]) * s;
    box = (cx - left, cy - top, cx + right, cy + bottom) in 416-space, then x scaled by W_img / 416 and
    y by H_img / 416 (original image pixels; boxes are NOT clipped to the image);
  * per cell only the best class (argmax) is kept, and only if its score >= threshold;
  * greedy per-class NMS: candidates sorted by score descending (stable, ties keep level 8/16/32 then cell
    order), a box is suppressed when its IoU with a kept box of the same class is > nms_iou
    (IoU uses areas (x2 - x1) * (y2 - y1), no +1);
  * the survivors of all classes are sorted by score descending (stable).
JSON numbers (scores, box coordinates) are rounded to 3 decimals.

Usage:
  python scripts/reference/nanodet_reference.py [--model M] [--image I] [--labels L]
      [--threshold 0.4] [--nms-iou 0.5] [--out FILE]
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
NUM_CLASSES = 80
REG_BINS = 11  # bins per side, values 0..10
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
PREPROCESS_DESC = (
    "Pillow decode, convert('RGB'), resize((416,416), BILINEAR) plain stretch (no letterbox), "
    "RGB->BGR, float32, (px - [103.53,116.28,123.675]) / [57.375,57.12,58.395] per BGR channel, NCHW, batch 1"
)


def load_labels(path):
    with open(path, encoding="utf-8") as f:
        labels = [line.strip() for line in f if line.strip()]
    if len(labels) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} labels, found {len(labels)}")
    return labels


def preprocess(image_path):
    """Return (input tensor [1,3,416,416] float32, original width, original height)."""
    img = Image.open(image_path).convert("RGB")
    width, height = img.size
    resized = img.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    rgb = np.asarray(resized, dtype=np.uint8)
    bgr = rgb[:, :, ::-1].astype(np.float32)
    norm = (bgr - MEAN_BGR) / STD_BGR
    tensor = np.ascontiguousarray(norm.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)
    return tensor, width, height


def match_outputs(outputs):
    """Map stride -> (scores [N,80], box distribution [N,44]) using output shapes only."""
    by_shape = {}
    for out in outputs:
        if out.ndim != 3 or out.shape[0] != 1:
            raise ValueError(f"unexpected output shape {out.shape}")
        key = (out.shape[1], out.shape[2])
        if key in by_shape:
            raise ValueError(f"two outputs with shape {out.shape}")
        by_shape[key] = out[0]
    levels = {}
    for stride in STRIDES:
        cells = (INPUT_SIZE // stride) ** 2
        cls = by_shape.get((cells, NUM_CLASSES))
        reg = by_shape.get((cells, 4 * REG_BINS))
        if cls is None or reg is None:
            raise ValueError(f"missing outputs for stride {stride} ({cells} cells); shapes: {sorted(by_shape)}")
        levels[stride] = (cls, reg)
    return levels


def decode(levels, width, height, threshold, centre_offset=0.5):
    """Return candidate arrays (boxes [K,4] in image pixels, scores [K], class ids [K]) before NMS."""
    all_boxes, all_scores, all_classes = [], [], []
    bins = np.arange(REG_BINS, dtype=np.float64)
    sx = width / INPUT_SIZE
    sy = height / INPUT_SIZE
    for stride in STRIDES:
        cls, reg = levels[stride]
        w = INPUT_SIZE // stride
        class_ids = np.argmax(cls, axis=1)
        scores = cls[np.arange(cls.shape[0]), class_ids].astype(np.float64)
        keep = np.nonzero(scores >= threshold)[0]
        if keep.size == 0:
            continue
        logits = reg[keep].astype(np.float64).reshape(-1, 4, REG_BINS)
        logits = logits - logits.max(axis=2, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=2, keepdims=True)
        dist = (prob * bins).sum(axis=2) * stride  # [K, 4] = left, top, right, bottom
        row = (keep // w).astype(np.float64)
        col = (keep % w).astype(np.float64)
        cx = (col + centre_offset) * stride
        cy = (row + centre_offset) * stride
        boxes = np.stack(
            [
                (cx - dist[:, 0]) * sx,
                (cy - dist[:, 1]) * sy,
                (cx + dist[:, 2]) * sx,
                (cy + dist[:, 3]) * sy,
            ],
            axis=1,
        )
        all_boxes.append(boxes)
        all_scores.append(scores[keep])
        all_classes.append(class_ids[keep])
    if not all_boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_classes)


def iou(box, others):
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms_per_class(boxes, scores, classes, nms_iou):
    """Greedy per-class NMS; returns kept indices sorted by score descending."""
    kept = []
    for c in np.unique(classes):
        idx = np.nonzero(classes == c)[0]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        while idx.size:
            best = idx[0]
            kept.append(best)
            rest = idx[1:]
            idx = rest[iou(boxes[best], boxes[rest]) <= nms_iou]
    kept = np.array(kept, dtype=np.int64)
    if kept.size == 0:
        return kept
    # stable by original candidate order for equal scores
    kept = np.sort(kept)
    return kept[np.argsort(-scores[kept], kind="stable")]


def detect(model, image, threshold, nms_iou, centre_offset=0.5):
    tensor, width, height = preprocess(image)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the converted model's shape-merge warnings are harmless
    session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    outputs = session.run(None, {input_name: tensor})
    levels = match_outputs(outputs)
    boxes, scores, classes = decode(levels, width, height, threshold, centre_offset)
    keep = nms_per_class(boxes, scores, classes, nms_iou)
    return width, height, [(int(classes[i]), float(scores[i]), boxes[i].tolist()) for i in keep]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/nanodet/1/model.onnx")
    ap.add_argument("--image", default="samples/media/bus.jpg")
    ap.add_argument("--labels", default="models/nanodet/labels.txt")
    ap.add_argument("--threshold", type=float, default=0.4)
    ap.add_argument("--nms-iou", type=float, default=0.5)
    ap.add_argument("--out", help="JSON output path (stdout if omitted)")
    args = ap.parse_args(argv)

    for what, path in (("model", args.model), ("image", args.image), ("labels", args.labels)):
        if not os.path.isfile(path):
            ap.error(f"{what} file not found: {path}")

    labels = load_labels(args.labels)
    width, height, dets = detect(args.model, args.image, args.threshold, args.nms_iou)
    result = {
        "model": os.path.basename(args.model),
        "image": os.path.basename(args.image),
        "width": width,
        "height": height,
        "threshold": args.threshold,
        "nms_iou": args.nms_iou,
        "preprocess": PREPROCESS_DESC,
        "detections": [
            {
                "class_id": c,
                "label": labels[c],
                "score": round(s, 3),
                "box": [round(v, 3) for v in b],
            }
            for c, s, b in dets
        ],
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
