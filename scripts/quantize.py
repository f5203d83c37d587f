#!/usr/bin/env python3
"""Static INT8 quantization of an ONNX model with ONNX Runtime's own tool (`onnxruntime.quantization`).

Run by `vigil models quantize` (pipelines/src/quantize/), which captures the calibration tensors from
the user's media, pre-processed exactly as Vigil feeds the model, and writes them as `.npy` files
(float32, one file per model input per sample: `<sample>-<input index>.npy`) into `--data`.
This script only wraps the tool: shape pre-processing (`quant_pre_process`), two rewrites, then
`quantize_static` with a data reader over those files (or `quantize_dynamic`, which needs none), the
score outputs' Sigmoid/Softmax left in float. It prints one JSON line with what it did.

Usage: quantize.py --model IN.onnx --out OUT.onnx --data DIR --inputs NAME[,NAME...]
                   [--format qoperator|qdq] [--activations u8|s8] [--keep-float NODE,...]
                   [--method minmax|moving-average|entropy|percentile|dynamic] [--per-tensor] [--reduce-range]
                   [--quantize-scores]
Weights are signed 8-bit (ONNX Runtime 1.32 wrote the same file for unsigned ones, measured).
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--inputs", required=True, help="the model's input names, comma-separated")
    p.add_argument("--format", choices=["qoperator", "qdq"], default="qoperator")
    p.add_argument("--activations", choices=["u8", "s8"], default="u8")
    p.add_argument("--keep-float", default="", help="nodes left in float, comma-separated")
    p.add_argument("--ops", default="", help="operator types to quantize, comma-separated (default: all)")
    p.add_argument("--method", choices=["minmax", "moving-average", "entropy", "percentile", "dynamic"], default="moving-average")
    p.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (CPUs without VNNI)")
    p.add_argument("--quantize-scores", action="store_true", help="also quantize the Sigmoid/Softmax of score outputs")
    return p.parse_args()


class Reader:
    """Feeds the calibration samples one at a time, in file order."""

    def __init__(self, data, inputs):
        import numpy as np

        self.np = np
        self.inputs = inputs
        samples = sorted({os.path.basename(f).rsplit("-", 1)[0] for f in glob.glob(os.path.join(data, "*.npy"))})
        if not samples:
            raise SystemExit(f"error: {data}: no calibration tensors (*.npy)")
        self.samples = samples
        self.data = data
        self.next = 0

    def get_next(self):
        if self.next >= len(self.samples):
            return None
        s = self.samples[self.next]
        self.next += 1
        return {
            name: self.np.load(os.path.join(self.data, f"{s}-{i}.npy")) for i, name in enumerate(self.inputs)
        }

    def rewind(self):
        self.next = 0


QUANTIZED_OPS = {"QLinearConv", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger"}


def refuse_quantized(path):
    import onnx

    ops = {n.op_type for n in onnx.load(path, load_external_data=False).graph.node} & QUANTIZED_OPS
    if ops:
        raise SystemExit(
            f"error: {path} is quantized already ({', '.join(sorted(ops))}): quantize the FP32 version "
            "(--from-version)"
        )


def upgrade_opset(path, least):
    """Per-channel scales need opset 13 (`axis` of QuantizeLinear/DequantizeLinear); the quantizer
    writes them into older models too, which then do not load."""
    import onnx
    from onnx import version_converter

    model = onnx.load(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), least)
    if opset < least:
        onnx.save(version_converter.convert_version(model, least), path)


def fold_infinite_pads(path):
    """Folds `Pad(value=-inf)` followed by `MaxPool` (TensorFlow's SAME max-pooling as converters
    write it) into the `MaxPool`'s own padding, which is the same computation: a tensor with -inf
    in it has no finite range, and calibration fails on it. Returns how many were folded."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(a.t)
        for n in g.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    }
    value_of = lambda name: inits.get(name, consts.get(name))
    users = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    folded = []
    for pad in [n for n in g.node if n.op_type == "Pad"]:
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if mode != b"constant" or len(pad.input) < 3 or pad.output[0] in outputs:
            continue
        value, pads = value_of(pad.input[2]), value_of(pad.input[1])
        if value is None or pads is None or not np.all(np.isneginf(value)):
            continue
        pads = [int(p) for p in pads.reshape(-1)]
        consumers = users.get(pad.output[0], [])
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or len(consumers) != 1:
            continue
        pool = consumers[0]
        attrs = {a.name: a for a in pool.attribute}
        if pool.op_type != "MaxPool" or attrs.get("auto_pad", None) not in (None,) and attrs["auto_pad"].s not in (b"NOTSET", b""):
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        new = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
        if "pads" in attrs:
            pool.attribute.remove(attrs["pads"])
        pool.attribute.append(onnx.helper.make_attribute("pads", new))
        pool.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        g.node.remove(pad)
    if folded:
        onnx.save(model, path)
    return len(folded)


SHAPE_OPS = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"}


def score_nodes(path):
    """The Sigmoid/Softmax nodes whose output reaches a model output through shape operators only:
    the scores a threshold is compared with. Quantized, they come out in steps of 1/255 of their
    range (and their input is rounded too), which moves boxes near the threshold across it."""
    import onnx

    g = onnx.load(path, load_external_data=False).graph
    users = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def reaches_output(name):
        if name in outputs:
            return True
        nexts = users.get(name, [])
        return bool(nexts) and all(n.op_type in SHAPE_OPS and reaches_output(n.output[0]) for n in nexts)

    return [n.name for n in g.node if n.op_type in ("Sigmoid", "Softmax") and reaches_output(n.output[0])]


def main():
    a = parse_args()
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise SystemExit(
            f"error: {sys.executable}: cannot import onnxruntime.quantization ({e}); "
            "run scripts/setup.sh venv (it needs onnxruntime, onnx, numpy, ml_dtypes, sympy)"
        )
    t0 = time.time()
    refuse_quantized(a.model)
    reader = Reader(a.data, a.inputs.split(","))
    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        # Symbolic shape inference fails on some converted graphs (NanoDet's reshapes); ONNX's own
        # shape inference and the graph optimisation are what the quantizer needs.
        quant_pre_process(a.model, prepared, skip_symbolic_shape=True)
        folded = fold_infinite_pads(prepared)
        upgrade_opset(prepared, 13)
        scores = [] if a.quantize_scores else score_nodes(prepared)
        keep = [n for n in a.keep_float.split(",") if n] + scores
        ops = [n for n in a.ops.split(",") if n] or None
        if a.method == "dynamic":
            # Weights quantized ahead, each activation at run time from its own range (no calibration).
            quantize_dynamic(
                prepared,
                a.out,
                weight_type=QuantType.QInt8,
                per_channel=not a.per_tensor,
                reduce_range=a.reduce_range,
                nodes_to_exclude=keep,
                op_types_to_quantize=ops,
            )
        else:
            quantize_static(
                prepared,
                a.out,
                reader,
                quant_format=QuantFormat.QOperator if a.format == "qoperator" else QuantFormat.QDQ,
                activation_type=types[a.activations],
                weight_type=QuantType.QInt8,
                per_channel=not a.per_tensor,
                reduce_range=a.reduce_range,
                nodes_to_exclude=keep,
                op_types_to_quantize=ops,
                calibrate_method={
                    "minmax": CalibrationMethod.MinMax,
                    "moving-average": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile,
                }[a.method],
                extra_options={"CalibMovingAverage": a.method == "moving-average"},
            )
    print(
        json.dumps(
            {
                "samples": len(reader.samples),
                "folded_pads": folded,
                "scores_in_float": scores,
                "seconds": round(time.time() - t0, 2),
                "bytes": os.path.getsize(a.out),
            }
        )
    )


if __name__ == "__main__":
    main()
