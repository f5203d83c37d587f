"""Test model: a decoupled model answering from its own threads (see config.pbtxt)."""
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import json

        if not pb_utils.using_decoupled_model_transaction_policy(json.loads(args["model_config"])):
            raise pb_utils.TritonModelException("repeat needs the decoupled transaction policy")

    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            if n == -2:
                raise ValueError("IN is -2")
            sender = request.get_response_sender()
            threading.Thread(target=self.answer, args=(sender, n), daemon=True).start()
        return None

    def answer(self, sender, n):
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        if n == -1:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("IN is -1")), flags=final)
            return
        for k in range(n):
            if n >= 100:
                time.sleep(0.02)
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([k], np.int32))]))
        sender.send(flags=final)
