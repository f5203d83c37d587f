"""Test model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, plus how many requests the
execution had, the process id and the instance name. INPUT0[0] == -1 raises in execute; == -2
sleeps 3 s first (to be killed meanwhile)."""
import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        self.instance = args["model_instance_name"]
        out = pb_utils.get_output_config_by_name(self.config, "OUTPUT0")
        self.dtype = pb_utils.triton_string_to_numpy(out["data_type"])

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            if a.flat[0] == -1:
                raise ValueError("INPUT0 starts with -1")
            if a.flat[0] == -2:
                time.sleep(3)
            batch = a.shape[0]
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("OUTPUT0", (a + b).astype(self.dtype)),
                        pb_utils.Tensor("OUTPUT1", (a - b).astype(self.dtype)),
                        pb_utils.Tensor("REQUESTS", np.full((batch, 1), len(requests), np.int32)),
                        pb_utils.Tensor("PID", np.full((batch, 1), os.getpid(), np.int64)),
                        pb_utils.Tensor("INSTANCE", np.array([[self.instance.encode()]] * batch, dtype=np.object_)),
                    ]
                )
            )
        return responses

    def finalize(self):
        marker = os.environ.get("VIGIL_TEST_FINALIZE_MARKER")
        if marker:
            with open(marker, "a") as f:
                f.write(self.instance + "\n")
