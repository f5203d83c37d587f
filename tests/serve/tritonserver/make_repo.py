#!/usr/bin/env python3
"""Write a Triton model repository that serves an ONNX model through Triton's Python backend.

A real Triton server (the `tritonserver` bundled in PyPI nvidia-pytriton 0.7.0, which has only the
Python backend) cannot load ONNX files itself; this script turns one of the project's models
(`models/<name>/config.pbtxt` + an ONNX file) into `OUT/<name>/config.pbtxt` + `OUT/<name>/1/model.py`
(model.py runs the ONNX file with onnxruntime), so a test can compare Vigil's remote inference against
that server with its in-process inference.

The written config keeps the project config's name, inputs, outputs and ALL its `parameters` (the
`vigil.*` pre/post-processing ones a client reads back through the model-config API), and sets:
  backend "python" (platform cleared), max_batch_size > 0 with dynamic_batching, one KIND_CPU instance,
  parameter `onnx_path` (absolute path of the ONNX file model.py loads).
Inputs/outputs the project config leaves to auto-complete are taken from the ONNX file (onnxruntime),
with the batch dimension dropped. A `labels.txt` beside the config (and every output's
`label_filename`) is copied too.

Run it with the pytriton venv's Python (scripts/setup.sh pytriton), which has onnxruntime and
tritonclient's `model_config_pb2`:

  ~/.cache/vigil/pytriton-venv/bin/python tests/serve/tritonserver/make_repo.py \
      --out /tmp/repo --onnx models/nanodet/1/model.onnx --config models/nanodet/config.pbtxt
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# onnxruntime type strings -> Triton data types.
ORT_TO_TRITON = {
    "tensor(bool)": mc.TYPE_BOOL,
    "tensor(uint8)": mc.TYPE_UINT8,
    "tensor(uint16)": mc.TYPE_UINT16,
    "tensor(uint32)": mc.TYPE_UINT32,
    "tensor(uint64)": mc.TYPE_UINT64,
    "tensor(int8)": mc.TYPE_INT8,
    "tensor(int16)": mc.TYPE_INT16,
    "tensor(int32)": mc.TYPE_INT32,
    "tensor(int64)": mc.TYPE_INT64,
    "tensor(float16)": mc.TYPE_FP16,
    "tensor(bfloat16)": mc.TYPE_BF16,
    "tensor(float)": mc.TYPE_FP32,
    "tensor(double)": mc.TYPE_FP64,
    "tensor(string)": mc.TYPE_STRING,
}


def onnx_io(path):
    """(inputs, outputs) of the ONNX file: lists of (name, Triton type, shape with -1 for dynamic dims)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # the converted NanoDet warns about output shape merging; harmless
    sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])

    def conv(args):
        out = []
        for a in args:
            if a.type not in ORT_TO_TRITON:
                sys.exit(f"make_repo: {path}: {a.name} has type {a.type}, which Triton has no type for")
            shape = [d if isinstance(d, int) and d >= 0 else -1 for d in a.shape]
            out.append((a.name, ORT_TO_TRITON[a.type], shape))
        return out

    return conv(sess.get_inputs()), conv(sess.get_outputs())


def fill_io(entries, onnx_entries, batched, make, what):
    """Add the ONNX file's inputs/outputs the config lacks (the config's own entries win)."""
    have = {e.name for e in entries}
    for name, dtype, shape in onnx_entries:
        if name in have:
            continue
        dims = shape[1:] if batched else shape
        e = make()
        e.name = name
        e.data_type = dtype
        e.dims.extend(dims)
        print(f"make_repo: {what} {name} from the ONNX file: {mc.DataType.Name(dtype)} {dims}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="model repository to write (created if missing)")
    ap.add_argument("--onnx", required=True, help="the ONNX file (e.g. models/nanodet/1/model.onnx)")
    ap.add_argument("--config", required=True, help="the project's config.pbtxt (e.g. models/nanodet/config.pbtxt)")
    ap.add_argument("--name", help="model name (default: the config's name, else its folder's name)")
    ap.add_argument("--max-batch-size", type=int, default=8,
                    help="used only where the config has max_batch_size 0 or none (default 8)")
    ap.add_argument("--max-queue-delay-us", type=int, default=None,
                    help="dynamic_batching max_queue_delay_microseconds (default: the config's, else 2000)")
    ap.add_argument("--intra-op-threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    args = ap.parse_args()

    onnx_path = os.path.abspath(args.onnx)
    config_path = os.path.abspath(args.config)
    if not os.path.isfile(onnx_path):
        sys.exit(f"make_repo: no ONNX file at {onnx_path} (run scripts/setup.sh models)")
    with open(config_path, encoding="utf-8") as f:
        cfg = text_format.Parse(f.read(), mc.ModelConfig())

    name = args.name or cfg.name or os.path.basename(os.path.dirname(config_path))
    onnx_inputs, onnx_outputs = onnx_io(onnx_path)

    if cfg.max_batch_size <= 0:
        if not all(s and s[0] == -1 for _, _, s in onnx_inputs + onnx_outputs):
            sys.exit(f"make_repo: {onnx_path}: not every first dim is dynamic, the model cannot batch")
        cfg.max_batch_size = args.max_batch_size
    fill_io(cfg.input, onnx_inputs, True, cfg.input.add, "input")
    fill_io(cfg.output, onnx_outputs, True, cfg.output.add, "output")

    # Labels: models/<name>/labels.txt (Vigil's convention) and every output's label_filename.
    src_dir = os.path.dirname(config_path)
    labels = {o.label_filename for o in cfg.output if o.label_filename}
    if os.path.isfile(os.path.join(src_dir, "labels.txt")):
        labels.add("labels.txt")

    cfg.name = name
    cfg.platform = ""
    cfg.backend = "python"
    cfg.default_model_filename = ""
    cfg.ClearField("optimization")  # ONNX Runtime accelerators mean nothing to the Python backend
    cfg.ClearField("model_warmup")
    delay = args.max_queue_delay_us
    if delay is None:
        delay = cfg.dynamic_batching.max_queue_delay_microseconds if cfg.HasField("dynamic_batching") else 2000
    cfg.dynamic_batching.max_queue_delay_microseconds = delay
    del cfg.instance_group[:]
    cfg.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    if "onnx_path" in cfg.parameters:
        sys.exit("make_repo: the config already has a parameter 'onnx_path'")
    cfg.parameters["onnx_path"].string_value = onnx_path
    cfg.parameters["intra_op_threads"].string_value = str(args.intra_op_threads)

    model_dir = os.path.join(os.path.abspath(args.out), name)
    os.makedirs(os.path.join(model_dir, "1"), exist_ok=True)
    tmp = os.path.join(model_dir, f"config.pbtxt.tmp.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# Written by tests/serve/tritonserver/make_repo.py from {config_path}\n")
        f.write(f"# and {onnx_path}: served by Triton's Python backend (model.py runs onnxruntime).\n")
        f.write(text_format.MessageToString(cfg))
    os.replace(tmp, os.path.join(model_dir, "config.pbtxt"))
    shutil.copyfile(os.path.join(HERE, "model.py"), os.path.join(model_dir, "1", "model.py"))
    for label in sorted(labels):
        shutil.copyfile(os.path.join(src_dir, label), os.path.join(model_dir, label))
    print(model_dir)


if __name__ == "__main__":
    main()
