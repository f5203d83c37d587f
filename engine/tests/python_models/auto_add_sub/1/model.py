"""Test model without a config.pbtxt (engine/tests/python_backend.rs): auto_complete_config gives
its inputs, outputs, max_batch_size 4 and dynamic batching; OUTPUT0 = INPUT0 + INPUT1. With the
environment variable VIGIL_TEST_AUTO_COMPLETE_FAILS set, auto_complete_config raises."""
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        if os.environ.get("VIGIL_TEST_AUTO_COMPLETE_FAILS"):
            raise ValueError("no configuration today")
        for name in ("INPUT0", "INPUT1"):
            config.add_input({"name": name, "data_type": "TYPE_FP32", "dims": [4]})
        config.add_output({"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        config.set_max_batch_size(4)
        config.set_dynamic_batching()
        return config

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", a + b)]))
        return responses
