#!/usr/bin/env python3
"""Readability check of a vigil-labelgen set with a real OCR (RapidOCR, PP-OCRv4 det -> cls -> rec).

Runs ``rapidocr-onnxruntime`` (pinned 1.4.4, in ~/.cache/vigil/venv) on every image of a set written by
``vigil-labelgen --out DIR`` and compares what it reads with ``DIR/truth.jsonl``:

- per field (product line, ``LOT: <lot>``, ``EXP: <date>``, ``SN: <serial>``), how often the ground-truth
  line is read exactly: one OCR text equal to it, or the texts of one row (boxes whose vertical centres
  lie within half a box height, joined left to right with a space) equal to it. ``exact`` compares the
  strings as they are; ``no-space`` ignores spaces (OCR often drops or adds the one after ``:``);
- for ``smudged`` items, that the covered field is NOT read: neither its value (spaces ignored) in any
  text, nor any well-formed value of that kind (8 digits for a serial, two letters and four digits for
  a lot);
- for ``missing_lot`` items, that no ``LOT`` text is read;
- the character confusions of the lines not read exactly (aligned with difflib against the closest text).

Figures are printed for the PASS items (every field must be readable) and for all items where a field is
printed and not smudged. ``--json F`` writes them as JSON; ``--limit N`` checks the first N items only.

Usage: ~/.cache/vigil/venv/bin/python scripts/reference/labels_check.py DIR [--json F] [--limit N] [-v]
"""

import argparse
import collections
import difflib
import json
import math
import os
import re
import sys

FIELDS = ("product", "lot", "exp", "sn")
SERIAL_RE = re.compile(r"(?<!\d)\d{8}(?!\d)")
LOT_RE = re.compile(r"(?<![A-Z])[A-HJ-NP-Z]{2}\d{4}(?!\d)")


def expected_lines(t):
    """Field -> the line as printed, for fields that are printed and not smudged."""
    lines = {"product": t["product"], "exp": f"EXP: {t['expiry']}"}
    smudged = t.get("smudged_field") if t.get("defect") == "smudged" else None
    if t.get("lot") is not None and smudged != "lot":
        lines["lot"] = f"LOT: {t['lot']}"
    if smudged != "serial":
        lines["sn"] = f"SN: {t['serial']}"
    return lines


def rows(result):
    """OCR boxes grouped into text rows along their own direction (labels are rotated); returns the
    joined texts of each row, left to right, separated by one space."""
    boxes = []
    for box, text, _score in result:
        (x0, y0), (x1, y1), _, (x3, y3) = box
        dx, dy = x1 - x0, y1 - y0
        norm = math.hypot(dx, dy) or 1.0
        d = (dx / norm, dy / norm)
        cx = sum(p[0] for p in box) / 4
        cy = sum(p[1] for p in box) / 4
        boxes.append({"c": (cx, cy), "d": d, "h": math.hypot(x3 - x0, y3 - y0), "text": text})
    groups = []
    for b in sorted(boxes, key=lambda b: b["c"][1]):
        for g in groups:
            a = g[0]
            n = (-a["d"][1], a["d"][0])  # normal of the row's direction
            off = (b["c"][0] - a["c"][0]) * n[0] + (b["c"][1] - a["c"][1]) * n[1]
            if abs(off) < 0.5 * max(a["h"], b["h"]):
                g.append(b)
                break
        else:
            groups.append([b])
    out = []
    for g in groups:
        d = g[0]["d"]
        g.sort(key=lambda b: b["c"][0] * d[0] + b["c"][1] * d[1])
        out.append(" ".join(b["text"] for b in g))
    return out


def nospace(s):
    return s.replace(" ", "")


def confusions(expected, got):
    """Character substitutions/insertions/deletions from expected to got (spaces ignored)."""
    out = []
    a, b = nospace(expected), nospace(got)
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            out.append(f"{a[i1:i2] or '∅'}→{b[j1:j2] or '∅'}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every miss")
    args = ap.parse_args()

    from rapidocr_onnxruntime import RapidOCR  # noqa: E402 (slow import; after argument errors)

    truth = [json.loads(line) for line in open(os.path.join(args.dir, "truth.jsonl"), encoding="utf-8")]
    if args.limit:
        truth = truth[: args.limit]
    engine = RapidOCR()

    # counts[group][field] = [n, exact, nospace]
    counts = {g: {f: [0, 0, 0] for f in FIELDS} for g in ("pass", "all")}
    smudge = {"serial": [0, 0], "lot": [0, 0]}  # [items, hidden]
    missing = [0, 0]  # [items, no LOT text]
    conf = collections.Counter()
    misses = []
    for i, t in enumerate(truth):
        result, _ = engine(os.path.join(args.dir, t["file"]))
        result = result or []
        texts = [r[1] for r in result]
        candidates = texts + rows(result)
        for field, line in expected_lines(t).items():
            exact = line in candidates
            ns = nospace(line) in {nospace(c) for c in candidates}
            for g in ("pass", "all") if t["verdict"] == "PASS" else ("all",):
                c = counts[g][field]
                c[0] += 1
                c[1] += exact
                c[2] += ns
            if not ns:
                best = max(candidates, key=lambda c: difflib.SequenceMatcher(None, nospace(line), nospace(c)).ratio(), default="")
                conf.update(confusions(line, best))
                misses.append((t["id"], field, line, best))
        joined = " | ".join(texts)
        if t.get("defect") == "smudged":
            f = t["smudged_field"]
            value = t["serial"] if f == "serial" else t["lot"]
            pattern = SERIAL_RE if f == "serial" else LOT_RE
            read = any(nospace(value) in nospace(c) for c in candidates) or any(pattern.search(nospace(c)) for c in texts)
            smudge[f][0] += 1
            smudge[f][1] += not read
            if read:
                misses.append((t["id"], f"smudged {f} READ", value, joined))
        if t.get("defect") == "missing_lot":
            missing[0] += 1
            lot_read = any("LOT" in c.upper() for c in texts)
            missing[1] += not lot_read
            if lot_read:
                misses.append((t["id"], "missing_lot but LOT read", "", joined))
        if (i + 1) % 25 == 0:
            print(f"  {i + 1}/{len(truth)} items", file=sys.stderr)

    def pct(a, n):
        return round(100.0 * a / n, 2) if n else None

    report = {"dir": args.dir, "items": len(truth), "fields": {}, "smudged_hidden": {}, "missing_lot_absent": None}
    print(f"{args.dir}: {len(truth)} items")
    for g, title in (("pass", "PASS items"), ("all", "all items (printed, not smudged fields)")):
        print(f"{title}:")
        report["fields"][g] = {}
        for f in FIELDS:
            n, e, s = counts[g][f]
            report["fields"][g][f] = {"n": n, "exact": e, "no_space": s, "exact_pct": pct(e, n), "no_space_pct": pct(s, n)}
            print(f"  {f:8} {n:4} lines: exact {e:4} ({pct(e, n)} %), ignoring spaces {s:4} ({pct(s, n)} %)")
    for f, (n, h) in smudge.items():
        report["smudged_hidden"][f] = {"n": n, "hidden": h, "pct": pct(h, n)}
        print(f"smudged {f:6}: {n} items, field not read in {h} ({pct(h, n)} %)")
    report["missing_lot_absent"] = {"n": missing[0], "absent": missing[1], "pct": pct(*missing[::-1])}
    print(f"missing_lot   : {missing[0]} items, no LOT text in {missing[1]} ({pct(missing[1], missing[0])} %)")
    report["confusions"] = dict(conf.most_common(20))
    print("confusions (expected→read):", ", ".join(f"{k} x{v}" for k, v in conf.most_common(20)) or "none")
    report["misses"] = [{"id": a, "what": b, "expected": c, "read": d} for a, b, c, d in misses]
    for a, b, c, d in misses if args.verbose else misses[:15]:
        print(f"  miss {a} {b}: expected {c!r}, read {d!r}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
