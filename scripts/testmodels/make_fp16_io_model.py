#!/usr/bin/env python3
"""Make an ONNX model whose FP32 inputs and outputs become FP16 (for tests of FP16 model I/O).

    make_fp16_io_model.py SRC.onnx DST.onnx

With the `onnx` package: every FP32 graph input of SRC becomes an FP16 input of the same name, cast to
FP32 before the original graph, and every FP32 graph output becomes an FP16 output of the same name,
cast from the original FP32 value. The graph itself still computes in FP32, so that the model runs on
any execution provider (ONNX Runtime's CPU provider lacks FP16 kernels for most operators), while
its interface is that of a model exported in half precision: DST's outputs are exactly SRC's outputs
on the FP16-rounded inputs, rounded to FP16.
"""
import sys

import onnx
from onnx import TensorProto, helper


def rename_uses(graph, old, new):
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for vi in graph.value_info:
        if vi.name == old:
            vi.name = new


def main(src, dst):
    model = onnx.load(src)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    head, tail = [], []
    for value in graph.input:
        if value.name in initializers:
            continue
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = value.name + "__fp32"
        rename_uses(graph, value.name, inner)
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
        head.append(helper.make_node("Cast", [value.name], [inner], to=TensorProto.FLOAT,
                                     name=value.name + "__cast_in"))
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = value.name + "__fp32"
        rename_uses(graph, value.name, inner)
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
        tail.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT16,
                                     name=value.name + "__cast_out"))
    if not head and not tail:
        sys.exit(f"{src}: no FP32 graph input or output to convert")
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
