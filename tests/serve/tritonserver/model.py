"""Triton Python-backend model that runs an ONNX file with onnxruntime (CPU).

Copied into `<repo>/<model>/1/model.py` by make_repo.py. The ONNX file is the config's `onnx_path`
parameter; `intra_op_threads` (default 2) sizes onnxruntime's pool. execute() gets every request the
dynamic batcher gathered for one call, concatenates them along the batch dimension, runs the session
once and hands each request its own rows of every output.
"""
import json
import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # no usage telemetry from onnxruntime

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        path = params.get("onnx_path")
        if not path:
            raise pb_utils.TritonModelException("parameter 'onnx_path' (the ONNX file) is missing")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(params.get("intra_op_threads", "2") or 2)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # errors only (the converted NanoDet warns about output shape merging)
        self.session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.output_dtypes = [
            pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
        ]
        self.onnx_inputs = {i.name: i.type for i in self.session.get_inputs()}

    def execute(self, requests):
        try:
            sizes, feeds = [], {}
            for name in self.inputs:
                parts = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
                if not sizes:
                    sizes = [p.shape[0] for p in parts]
                feeds[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            results = self.session.run(self.outputs, feeds)
        except Exception as e:  # one failure answers every request of this call
            err = pb_utils.TritonError(f"onnxruntime: {e}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]

        responses, start = [], 0
        for n in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[start : start + n], dtype=dtype))
                for name, out, dtype in zip(self.outputs, results, self.output_dtypes)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def finalize(self):
        self.session = None
