#!/usr/bin/env python3
"""Check that two ONNX models agree: same inputs and outputs (names, element types, declared dims)
and, on seeded random inputs, the same output shapes and values within a tolerance.

Runs in the project venv (onnxruntime, numpy):

    compare_onnx.py CANDIDATE.onnx REFERENCE.onnx [--atol 1e-4] [--batch 1,2] [--hw 256x320] [--range 0,255]

Symbolic dims: the first is set from --batch, the others from --hw (height, width in that order).
Exit status 0 when everything matches, 1 otherwise. Prints one line per output and run.
"""

import argparse
import sys

import numpy as np
import onnxruntime as ort

NP_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def signature(sess):
    ins = [(i.name, i.type, [d if isinstance(d, int) else "?" for d in i.shape]) for i in sess.get_inputs()]
    outs = [(o.name, o.type, [d if isinstance(d, int) else "?" for d in o.shape]) for o in sess.get_outputs()]
    return ins, outs


def make_inputs(sess, batch, hw, lo, hi, rng):
    feeds = {}
    for inp in sess.get_inputs():
        dims, sym = [], 0
        for d in inp.shape:
            if isinstance(d, int) and d > 0:
                dims.append(d)
            else:
                dims.append(batch if sym == 0 else hw[(sym - 1) % 2])
                sym += 1
        dtype = NP_TYPES.get(inp.type)
        if dtype is None:
            raise SystemExit(f"compare_onnx: input {inp.name}: unsupported type {inp.type}")
        if lo is None:
            feeds[inp.name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[inp.name] = rng.uniform(lo, hi, dims).astype(dtype)
    return feeds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidate")
    ap.add_argument("reference")
    ap.add_argument("--atol", type=float, default=1e-4, help="largest allowed |a-b| relative to max(1, |b|)")
    ap.add_argument("--batch", default="1", help="comma-separated batch sizes for a symbolic first dim")
    ap.add_argument("--hw", default="256x320", help="height x width for other symbolic dims")
    ap.add_argument("--range", default=None, help="lo,hi for uniform random input (default: standard normal)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sessions = []
    for path in (args.candidate, args.reference):
        try:
            sessions.append(ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]))
        except Exception as e:  # noqa: BLE001 - report any load failure with the path
            print(f"compare_onnx: cannot load {path}: {e}", file=sys.stderr)
            return 1
    cand, ref = sessions

    ok = True
    sig_c, sig_r = signature(cand), signature(ref)
    if sig_c != sig_r:
        print(f"MISMATCH signature:\n  candidate {sig_c}\n  reference {sig_r}")
        ok = False
    else:
        print(f"signature ok: inputs {sig_c[0]}; {len(sig_c[1])} outputs")

    h, w = (int(x) for x in args.hw.lower().split("x"))
    lo = hi = None
    if args.range:
        lo, hi = (float(x) for x in args.range.split(","))
    dynamic = any(not isinstance(d, int) for i in ref.get_inputs() for d in i.shape[:1])
    batches = [int(b) for b in args.batch.split(",")] if dynamic else [1]
    rng = np.random.default_rng(args.seed)
    out_names = [o.name for o in ref.get_outputs()]
    for batch in batches:
        feeds = make_inputs(ref, batch, (h, w), lo, hi, rng)
        res_c = dict(zip(out_names, cand.run(out_names, feeds)))
        res_r = dict(zip(out_names, ref.run(out_names, feeds)))
        for name in out_names:
            a, b = res_c[name], res_r[name]
            if a.shape != b.shape:
                print(f"MISMATCH batch {batch} {name}: shape {a.shape} vs {b.shape}")
                ok = False
                continue
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            err = float((diff / np.maximum(1.0, np.abs(b.astype(np.float64)))).max()) if diff.size else 0.0
            good = err <= args.atol
            ok &= good
            print(f"{'ok' if good else 'MISMATCH'} batch {batch} {name}: shape {list(a.shape)}, "
                  f"max |diff| {float(diff.max()) if diff.size else 0.0:.3g}, scaled {err:.3g}")
    print("compare_onnx: MATCH" if ok else "compare_onnx: DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
