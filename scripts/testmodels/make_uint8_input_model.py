#!/usr/bin/env python3
"""Make an ONNX image model take 8-bit pixels: its normalisation moved into the graph (for tests).

    make_uint8_input_model.py SRC.onnx DST.onnx MEAN STD

MEAN and STD are three comma-separated numbers in the model's channel order. With the `onnx` package:
SRC's first graph input (FP32, NCHW) becomes a UINT8 input of the same name and shape, followed by
Cast to FP32, Sub MEAN and Div STD (per channel) before the original graph, as many TensorFlow
exports take `uint8` images. Fed the pixels SRC is fed before normalisation, DST computes what SRC
computes on the normalised tensor (up to float rounding).
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(src, dst, mean, std):
    model = onnx.load(src)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    value = next(v for v in graph.input if v.name not in initializers)
    if value.type.tensor_type.elem_type != TensorProto.FLOAT:
        sys.exit(f"{src}: input {value.name} is not FP32")
    inner = value.name + "__normalised"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == value.name:
                node.input[i] = inner
    value.type.tensor_type.elem_type = TensorProto.UINT8
    shape = [1, 3, 1, 1]
    mean_t = numpy_helper.from_array(np.array(mean, np.float32).reshape(shape), value.name + "__mean")
    std_t = numpy_helper.from_array(np.array(std, np.float32).reshape(shape), value.name + "__std")
    graph.initializer.extend([mean_t, std_t])
    head = [
        helper.make_node("Cast", [value.name], [value.name + "__f32"], to=TensorProto.FLOAT),
        helper.make_node("Sub", [value.name + "__f32", mean_t.name], [value.name + "__centred"]),
        helper.make_node("Div", [value.name + "__centred", std_t.name], [inner]),
    ]
    nodes = head + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def numbers(text):
    v = [float(x) for x in text.split(",")]
    if len(v) != 3:
        sys.exit(f"'{text}': three numbers expected")
    return v


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], numbers(sys.argv[3]), numbers(sys.argv[4]))
