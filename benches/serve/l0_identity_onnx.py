#!/usr/bin/env python3
"""Stand-ins for the models of Triton's identity backend in a model repository, for
benches/serve/l0_infer.sh with ENSEMBLES=1.

Triton's qa/L0_infer ensembles have steps run by Triton's C++ identity backend (`nop_*` from
gen_qa_models.py --ensemble, `custom_zero_1_float32` and `custom_nobatch_zero_1_float32` from
qa/custom_models). vigil serve runs ONNX models only, so each model folder of REPO whose
config.pbtxt says `backend: "identity"` gets, in each of its version folders, an ONNX model of
Identity nodes (input k -> output k, the configuration's data types and dims, the batch
dimension dynamic), and its config.pbtxt names platform onnxruntime_onnx instead. The
configuration is otherwise unchanged.

    python l0_identity_onnx.py REPO [OPSET]
"""

import os
import re
import sys

import onnx
from onnx import TensorProto, helper

TYPES = {
    "TYPE_BOOL": TensorProto.BOOL,
    "TYPE_UINT8": TensorProto.UINT8,
    "TYPE_UINT16": TensorProto.UINT16,
    "TYPE_UINT32": TensorProto.UINT32,
    "TYPE_UINT64": TensorProto.UINT64,
    "TYPE_INT8": TensorProto.INT8,
    "TYPE_INT16": TensorProto.INT16,
    "TYPE_INT32": TensorProto.INT32,
    "TYPE_INT64": TensorProto.INT64,
    "TYPE_FP16": TensorProto.FLOAT16,
    "TYPE_FP32": TensorProto.FLOAT,
    "TYPE_FP64": TensorProto.DOUBLE,
    "TYPE_STRING": TensorProto.STRING,
}

TENSOR = re.compile(
    r'name:\s*"([^"]+)"\s*data_type:\s*(TYPE_\w+)\s*dims:\s*\[([^\]]*)\]', re.S
)


def tensors(text, kind):
    """(name, type, dims) of each `input` or `output` entry, in order."""
    found = []
    for block in re.finditer(kind + r"\s*:?\s*\[(.*?)\n\]", text, re.S):
        for name, dtype, dims in TENSOR.findall(block.group(1)):
            found.append((name, dtype, [int(d) for d in dims.split(",") if d.strip()]))
    return found


def standin(model_dir, opset):
    path = os.path.join(model_dir, "config.pbtxt")
    text = open(path).read()
    if not re.search(r'backend:\s*"identity"', text):
        return False
    m = re.search(r"max_batch_size:\s*(\d+)", text)
    batch = ["batch"] if m and int(m.group(1)) > 0 else []
    inputs = tensors(text, "input")
    outputs = tensors(text, "output")

    def info(prefix, k, t):
        name, dtype, dims = t
        shape = batch + [f"{prefix}{k}_{i}" if d < 0 else d for i, d in enumerate(dims)]
        return helper.make_tensor_value_info(name, TYPES[dtype], shape)

    nodes = [
        helper.make_node("Identity", [i[0]], [o[0]]) for i, o in zip(inputs, outputs)
    ]
    graph = helper.make_graph(
        nodes,
        os.path.basename(model_dir),
        [info("i", k, t) for k, t in enumerate(inputs)],
        [info("o", k, t) for k, t in enumerate(outputs[: len(inputs)])],
    )
    model = helper.make_model(
        graph, producer_name="vigil-l0", opset_imports=[helper.make_opsetid("", opset)]
    )
    versions = [v for v in os.listdir(model_dir) if v.isdigit()] or ["1"]
    for v in versions:
        os.makedirs(os.path.join(model_dir, v), exist_ok=True)
        onnx.save(model, os.path.join(model_dir, v, "model.onnx"))
    # Outputs without an input of their own (none in L0_infer's models) are dropped.
    for name, _, _ in outputs[len(inputs) :]:
        text = re.sub(r"\{[^{}]*name:\s*\"" + re.escape(name) + r"\"[^{}]*\}", "", text)
    text = re.sub(r'backend:\s*"identity"', 'platform: "onnxruntime_onnx"', text)
    open(path, "w").write(text)
    return True


def main():
    repo = sys.argv[1]
    opset = int(sys.argv[2]) if len(sys.argv) > 2 else 13
    n = sum(
        standin(os.path.join(repo, d), opset)
        for d in sorted(os.listdir(repo))
        if os.path.isfile(os.path.join(repo, d, "config.pbtxt"))
    )
    print(f"l0_identity_onnx: {n} identity-backend models replaced by ONNX Identity models")


if __name__ == "__main__":
    main()
