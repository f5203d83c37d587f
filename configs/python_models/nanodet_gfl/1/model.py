"""NanoDet's Generalized-Focal-Loss heads decoded with numpy, as Vigil's built-in `gfl` decoder does:
per stride s, a cell's class is its best score; a side's distance is the expectation of the softmax
over its reg_max + 1 bins, times s; the anchor is the cell centre. One row per candidate:
x1, y1, x2, y2, score, class (model-input pixels)."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils

STRIDES = (8, 16, 32)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.width, self.height = (int(v) for v in params.get("input_size", "416,416").split(","))
        self.bins = int(params.get("reg_max", "10")) + 1
        self.min_score = np.float32(params.get("min_score", "0.05"))

    def decode(self, request):
        rows = []
        for s in STRIDES:
            cls = pb_utils.get_input_tensor_by_name(request, f"CLS{s}").as_numpy()[0]
            reg = pb_utils.get_input_tensor_by_name(request, f"REG{s}").as_numpy()[0]
            grid_w = -(-self.width // s)
            best = cls.max(axis=1)
            cells = np.nonzero(best >= self.min_score)[0]
            if cells.size == 0:
                continue
            logits = reg[cells].reshape(-1, 4, self.bins)
            p = np.exp(logits - logits.max(axis=2, keepdims=True))
            dist = (p * np.arange(self.bins, dtype=np.float32)).sum(axis=2) / p.sum(axis=2) * np.float32(s)
            cx = ((cells % grid_w).astype(np.float32) + np.float32(0.5)) * np.float32(s)
            cy = ((cells // grid_w).astype(np.float32) + np.float32(0.5)) * np.float32(s)
            rows.append(
                np.stack(
                    [
                        cx - dist[:, 0],
                        cy - dist[:, 1],
                        cx + dist[:, 2],
                        cy + dist[:, 3],
                        best[cells],
                        cls[cells].argmax(axis=1).astype(np.float32),
                    ],
                    axis=1,
                )
            )
        boxes = np.concatenate(rows) if rows else np.zeros((0, 6), np.float32)
        return boxes.astype(np.float32)[np.newaxis]

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("BOXES", self.decode(r))])
            for r in requests
        ]
