"""Test model: sums the responses of the decoupled model `repeat` (see config.pbtxt)."""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        # Triton needs the families kept for as long as their metrics are used.
        self.families = [
            pb_utils.MetricFamily("vigil_test_bls_calls", "Requests repeat_sum answered", pb_utils.MetricFamily.COUNTER),
            pb_utils.MetricFamily("vigil_test_last_sum", "The last SUM", pb_utils.MetricFamily.GAUGE),
        ]
        self.calls = self.families[0].Metric(labels={"model": "repeat_sum"})
        self.last = self.families[1].Metric(labels={"model": "repeat_sum"})

    def execute(self, requests):
        responses = []
        for request in requests:
            call = pb_utils.InferenceRequest(
                model_name="repeat",
                inputs=[pb_utils.get_input_tensor_by_name(request, "IN")],
                requested_output_names=["OUT"],
            )
            total, count = 0, 0
            for answer in call.exec(decoupled=True):
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
                count += 1
                out = pb_utils.get_output_tensor_by_name(answer, "OUT")
                if out is not None:
                    total += int(out.as_numpy()[0])
            self.calls.increment(1)
            self.last.set(total)
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("SUM", np.array([total], np.int32)),
                        pb_utils.Tensor("COUNT", np.array([count], np.int32)),
                    ]
                )
            )
        return responses
