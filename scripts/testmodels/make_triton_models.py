#!/usr/bin/env python3
"""Make the models Triton's client examples expect, as ONNX models, in a Triton model repository.

    make_triton_models.py REPO_DIR

Creates, with the `onnx` package (every model with a batch dimension, max_batch_size 8):
- `simple`: INT32 INPUT0, INPUT1 [16] -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1
- `simple_int8`: the same in INT8
- `simple_string`: the same on numbers written as strings (BYTES in and out; cast inside the graph)
- `simple_identity`: BYTES INPUT0 [-1] -> OUTPUT0, the same strings
- `simple_fp32`: FP32 INPUT0, INPUT1 [16] -> sum and difference (for perf_analyzer and fuzzing)
Each has a config.pbtxt with Triton's names and dims; the example clients send [1, 16] (batch 1).
"""
import os
import sys

import onnx
from onnx import TensorProto, helper

CONFIG = """name: "{name}"
backend: "onnxruntime"
max_batch_size: 8
input [
  {{ name: "INPUT0", data_type: {t}, dims: [ {dims} ] }}{second_input}
]
output [
  {{ name: "OUTPUT0", data_type: {t}, dims: [ {dims} ] }}{second_output}
]
dynamic_batching {{ }}
"""


def save(repo, name, model, t, dims="16", two=True):
    d = os.path.join(repo, name)
    os.makedirs(os.path.join(d, "1"), exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(d, "1", "model.onnx"))
    second_input = f',\n  {{ name: "INPUT1", data_type: {t}, dims: [ {dims} ] }}' if two else ""
    second_output = f',\n  {{ name: "OUTPUT1", data_type: {t}, dims: [ {dims} ] }}' if two else ""
    with open(os.path.join(d, "config.pbtxt"), "w") as f:
        f.write(CONFIG.format(name=name, t=t, dims=dims, second_input=second_input,
                              second_output=second_output))


def model(name, nodes, inputs, outputs):
    graph = helper.make_graph(nodes, name, inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def io(names, elem, dims):
    return [helper.make_tensor_value_info(n, elem, ["B"] + dims) for n in names]


def add_sub(name, elem):
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    return model(name, nodes, io(["INPUT0", "INPUT1"], elem, [16]), io(["OUTPUT0", "OUTPUT1"], elem, [16]))


def simple_string():
    nodes = [
        helper.make_node("Cast", ["INPUT0"], ["a"], to=TensorProto.INT32),
        helper.make_node("Cast", ["INPUT1"], ["b"], to=TensorProto.INT32),
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Sub", ["a", "b"], ["difference"]),
        helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=TensorProto.STRING),
        helper.make_node("Cast", ["difference"], ["OUTPUT1"], to=TensorProto.STRING),
    ]
    s = TensorProto.STRING
    return model("simple_string", nodes, io(["INPUT0", "INPUT1"], s, [16]), io(["OUTPUT0", "OUTPUT1"], s, [16]))


def simple_identity():
    nodes = [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])]
    s = TensorProto.STRING
    return model("simple_identity", nodes, io(["INPUT0"], s, ["N"]), io(["OUTPUT0"], s, ["N"]))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    repo = sys.argv[1]
    save(repo, "simple", add_sub("simple", TensorProto.INT32), "TYPE_INT32")
    save(repo, "simple_int8", add_sub("simple_int8", TensorProto.INT8), "TYPE_INT8")
    save(repo, "simple_fp32", add_sub("simple_fp32", TensorProto.FLOAT), "TYPE_FP32")
    save(repo, "simple_string", simple_string(), "TYPE_STRING")
    save(repo, "simple_identity", simple_identity(), "TYPE_STRING", dims="-1", two=False)


if __name__ == "__main__":
    main()
