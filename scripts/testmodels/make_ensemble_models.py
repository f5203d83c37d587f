#!/usr/bin/env python3
"""Make a small Triton model repository with two ONNX models and an ensemble of them (for tests).

    make_ensemble_models.py REPO_DIR

Creates, with the `onnx` package:
- `scale_shift/1/model.onnx`: INPUT0 [B,4] f32 -> SCALED [B,4] = INPUT0 * 2 + 1
- `relu_sum/1/model.onnx`: X [B,4] f32 -> Y [B,4] = relu(X - 3), S [B,1] = sum(Y, axis 1)
- `pipeline/config.pbtxt`: platform "ensemble", INPUT0 -> scale_shift -> relu_sum -> OUTPUT_Y, OUTPUT_S
  (with an empty version folder `pipeline/1/`, as Triton requires)
Both ONNX models have a dynamic batch dimension; their config.pbtxt files declare max_batch_size 8.
"""
import os
import sys

import onnx
from onnx import TensorProto, helper


def save(model, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def scale_shift():
    x = helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["B", 4])
    y = helper.make_tensor_value_info("SCALED", TensorProto.FLOAT, ["B", 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("Mul", ["INPUT0", "two"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["SCALED"]),
    ]
    graph = helper.make_graph(nodes, "scale_shift", [x], [y], initializer=[two, one])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def relu_sum():
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["B", 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["B", 4])
    s = helper.make_tensor_value_info("S", TensorProto.FLOAT, ["B", 1])
    three = helper.make_tensor("three", TensorProto.FLOAT, [1], [3.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Sub", ["X", "three"], ["d"]),
        helper.make_node("Relu", ["d"], ["Y"]),
        helper.make_node("ReduceSum", ["Y", "axes"], ["S"], keepdims=1),
    ]
    graph = helper.make_graph(nodes, "relu_sum", [x], [y, s], initializer=[three, axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


CONFIGS = {
    "scale_shift": """name: "scale_shift"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "SCALED" data_type: TYPE_FP32 dims: [ 4 ] } ]
""",
    "relu_sum": """name: "relu_sum"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "S" data_type: TYPE_FP32 dims: [ 1 ] }
]
""",
    "pipeline": """name: "pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "OUTPUT_Y" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT_S" data_type: TYPE_FP32 dims: [ 1 ] }
]
ensemble_scheduling {
  step [
    {
      model_name: "scale_shift"
      model_version: -1
      input_map { key: "INPUT0" value: "INPUT0" }
      output_map { key: "SCALED" value: "scaled" }
    },
    {
      model_name: "relu_sum"
      model_version: -1
      input_map { key: "X" value: "scaled" }
      output_map { key: "Y" value: "OUTPUT_Y" }
      output_map { key: "S" value: "OUTPUT_S" }
    }
  ]
}
""",
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    repo = sys.argv[1]
    save(scale_shift(), os.path.join(repo, "scale_shift", "1", "model.onnx"))
    save(relu_sum(), os.path.join(repo, "relu_sum", "1", "model.onnx"))
    os.makedirs(os.path.join(repo, "pipeline", "1"), exist_ok=True)
    for name, text in CONFIGS.items():
        with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
            f.write(text)
    print(f"wrote scale_shift, relu_sum and the ensemble 'pipeline' into {repo}")


if __name__ == "__main__":
    main()
