"""Test model: OUTPUT0/OUTPUT1 are what add_sub answers for the same two rows (a batch of 2),
asked with InferenceRequest.exec(); with INPUT0[0][0] == -3 it asks a model that does not exist and
returns that error; with -4 it uses async_exec from an async execute."""
import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        first = pb_utils.get_input_tensor_by_name(requests[0], "INPUT0").as_numpy()
        if first[0][0] == -4:
            return self.execute_async(requests)
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1")
            model = "no_such_model" if a.as_numpy()[0][0] == -3 else "add_sub"
            answer = pb_utils.InferenceRequest(
                model_name=model, requested_output_names=["OUTPUT0", "OUTPUT1"], inputs=[a, b]
            ).exec()
            if answer.has_error():
                responses.append(pb_utils.InferenceResponse(error=answer.error()))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=answer.output_tensors()))
        return responses

    async def execute_async(self, requests):
        calls = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1")
            calls.append(
                pb_utils.InferenceRequest(
                    model_name="add_sub", requested_output_names=["OUTPUT0", "OUTPUT1"], inputs=[a, b]
                ).async_exec()
            )
        answers = await asyncio.gather(*calls)
        return [pb_utils.InferenceResponse(output_tensors=x.output_tensors()) for x in answers]
