#!/usr/bin/env python3
"""Triton's Python gRPC client (`tritonclient.grpc`) against `vigil serve`.

    triton_grpc_client.py HOST:PORT     models of scripts/testmodels/make_triton_models.py served

Prints one line per check and `PASS: N checks`; exits 1 at the first failure, saying what.
"""
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from checks import check, expect_error, passed

def simple_inputs(a, b, dtype="INT32"):
    inputs = [grpcclient.InferInput("INPUT0", list(a.shape), dtype),
              grpcclient.InferInput("INPUT1", list(b.shape), dtype)]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def main(url):
    c = grpcclient.InferenceServerClient(url=url)
    check(c.is_server_live() and c.is_server_ready(), "server live and ready")
    check(c.is_model_ready("simple") and not c.is_model_ready("nope"), "model readiness")
    md = c.get_server_metadata()
    check(md.name == "triton" and "binary_tensor_data" in md.extensions, f"server metadata {md.name} {list(md.extensions)}")
    mm = c.get_model_metadata("simple")
    check(mm.name == "simple" and list(mm.inputs[0].shape) == [-1, 16] and mm.inputs[0].datatype == "INT32",
          "model metadata")
    cfg = c.get_model_config("simple").config
    check(cfg.max_batch_size == 8 and list(cfg.input[0].dims) == [16], "model config as the protobuf message")

    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), -1, dtype=np.int32)
    r = c.infer("simple", simple_inputs(a, b))
    check((r.as_numpy("OUTPUT0") == a + b).all() and (r.as_numpy("OUTPUT1") == a - b).all(),
          "simple: raw_input_contents")
    a4 = (np.arange(64, dtype=np.int32) + 16_777_217).reshape(4, 16)
    r = c.infer("simple", simple_inputs(a4, a4), outputs=[grpcclient.InferRequestedOutput("OUTPUT0")])
    check(r.as_numpy("OUTPUT0").shape == (4, 16) and (r.as_numpy("OUTPUT0") == 2 * a4).all()
          and r.as_numpy("OUTPUT1") is None, "simple: batch of 4 beyond 2^24, one output asked for")

    # Explicit contents (int_contents, bytes_contents), through the generated stub as
    # grpc_explicit_*_content_client.py do.
    request = service_pb2.ModelInferRequest(model_name="simple")
    for name in ["INPUT0", "INPUT1"]:
        t = service_pb2.ModelInferRequest().InferInputTensor(name=name, datatype="INT32", shape=[1, 16])
        t.contents.int_contents[:] = list(range(16))
        request.inputs.extend([t])
    response = c._client_stub.ModelInfer(request)
    out = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
    check(list(out) == [2 * k for k in range(16)], "simple: int_contents")

    s = np.array([str(k).encode() for k in range(16)], dtype=np.object_).reshape(1, 16)
    r = c.infer("simple_string", simple_inputs(s, s, "BYTES"))
    check([int(x) for x in r.as_numpy("OUTPUT0").reshape(16)] == [2 * k for k in range(16)], "simple_string")
    raw = np.array([b"he\x00llo", b"\xff", b""], dtype=np.object_).reshape(1, 3)
    inp = grpcclient.InferInput("INPUT0", [1, 3], "BYTES")
    inp.set_data_from_numpy(raw)
    r = c.infer("simple_identity", [inp])
    check(list(r.as_numpy("OUTPUT0").reshape(3)) == list(raw.reshape(3)), "simple_identity: any bytes")
    a8 = np.arange(16, dtype=np.int8).reshape(1, 16)
    r = c.infer("simple_int8", simple_inputs(a8, a8, "INT8"))
    check((r.as_numpy("OUTPUT0") == 2 * a8).all(), "simple_int8")

    # ModelStreamInfer: 8 requests on one stream, answers in order, one error in the middle.
    answers = queue.Queue()
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    for k in range(8):
        ak = a + k
        if k == 4:
            c.async_stream_infer("simple", simple_inputs(ak.astype(np.float32), b.astype(np.float32), "FP32"), request_id=str(k))
        else:
            c.async_stream_infer("simple", simple_inputs(ak, b), request_id=str(k))
    got = [answers.get(timeout=30) for _ in range(8)]
    c.stop_stream()
    ok = all(err is None and (res.as_numpy("OUTPUT0") == a + k + b).all()
             for k, (res, err) in enumerate(got) if k != 4)
    check(ok and got[4][1] is not None and "data-type is 'FP32'" in got[4][1].message(),
          "ModelStreamInfer: 7 answers and one error, in order")

    expect_error(lambda: c.infer("simple", simple_inputs(a[:, :15], b[:, :15])),
                 "unexpected shape for input 'INPUT0' for model 'simple'", "wrong shape", "StatusCode.INVALID_ARGUMENT")
    expect_error(lambda: c.infer("nope", simple_inputs(a, b)), "Request for unknown model: 'nope' is not found",
                 "unknown model", "StatusCode.NOT_FOUND")
    expect_error(lambda: c.get_system_shared_memory_status(), "not supported", "shared memory",
                 "StatusCode.UNIMPLEMENTED")
    # Bytes that are no protobuf message, and raw contents that do not match the shape: errors,
    # and the server goes on.
    import grpc
    channel = grpc.insecure_channel(url)
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=lambda x: x, response_deserializer=lambda x: x)
    try:
        call(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
        check(False, "garbage message: no error")
    except grpc.RpcError as e:
        check(e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT), f"garbage message: {e.code()} {e.details()}")
    request = service_pb2.ModelInferRequest(model_name="simple")
    for name in ["INPUT0", "INPUT1"]:
        request.inputs.extend([service_pb2.ModelInferRequest().InferInputTensor(name=name, datatype="INT32", shape=[1, 16])])
    request.raw_input_contents.extend([b"\0" * 64, b"\0" * 60])
    try:
        c._client_stub.ModelInfer(request)
        check(False, "truncated raw contents: no error")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and "input byte size mismatch for input 'INPUT1'" in e.details(),
              f"truncated raw contents: {e.details()}")
    check(c.is_server_ready(), "still ready")

    stats = c.get_inference_statistics("simple")
    s = stats.model_stats[0]
    check(s.name == "simple" and s.inference_count >= 1 + 4 + 16 + 7 and s.execution_count >= 1
          and s.inference_stats.fail.count >= 2 and len(s.batch_stats) >= 1, f"statistics {s.inference_count}")
    index = c.get_model_repository_index()
    check(len(index.models) == 5 and all(m.state == "READY" for m in index.models), "repository index")
    passed()


if __name__ == "__main__":
    main(sys.argv[1])
