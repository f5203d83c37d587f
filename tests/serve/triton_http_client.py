#!/usr/bin/env python3
"""Triton's Python HTTP client (`tritonclient.http`) against `vigil serve`.

    triton_http_client.py URL serve      models of scripts/testmodels/make_triton_models.py served
    triton_http_client.py URL control    the same repository with --model-control-mode explicit
                                         and no model loaded
    triton_http_client.py URL serve METRICS_ADDRESS
                                         also, after the serve checks: /metrics parses with
                                         prometheus_client and has Triton's metrics (checks.metrics_checks)

Prints one line per check and `PASS: N checks`; exits 1 at the first failure, saying what.
"""
import sys

import numpy as np
import tritonclient.http as httpclient
from checks import check, expect_error, metrics_checks, passed

def infer_simple(c, a, b, binary_in=(False, True), binary_out=(True, False), model="simple", dtype="INT32"):
    inputs = [httpclient.InferInput("INPUT0", list(a.shape), dtype),
              httpclient.InferInput("INPUT1", list(b.shape), dtype)]
    inputs[0].set_data_from_numpy(a, binary_data=binary_in[0])
    inputs[1].set_data_from_numpy(b, binary_data=binary_in[1])
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out[0]),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary_out[1])]
    return c.infer(model, inputs, outputs=outputs)


def serve_checks(c):
    check(c.is_server_live(query_params={"test_1": 1}), "server live")
    check(c.is_server_ready(), "server ready")
    for m in ["simple", "simple_int8", "simple_string", "simple_identity", "simple_fp32"]:
        check(c.is_model_ready(m), f"model {m} ready")
    check(not c.is_model_ready("simple", "7"), "version 7 of simple is not ready")
    md = c.get_server_metadata()
    check(md["name"] == "triton" and "binary_tensor_data" in md["extensions"]
          and "model_repository" in md["extensions"], f"server metadata {md}")
    mm = c.get_model_metadata("simple")
    check(mm["name"] == "simple" and mm["versions"] == ["1"] and mm["platform"] == "onnxruntime_onnx",
          f"model metadata {mm}")
    check(mm["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
          f"input metadata {mm['inputs'][0]}")
    expect_error(lambda: c.get_model_metadata("wrong_model_name"), "Request for unknown model",
                 "metadata of an unknown model")
    cfg = c.get_model_config("simple")
    check(cfg["max_batch_size"] == 8 and cfg["input"][0]["dims"] == [16]
          and cfg["input"][0]["data_type"] == "TYPE_INT32", f"model config {cfg}")

    # As simple_http_infer_client.py: INPUT0 as JSON, INPUT1 binary; OUTPUT0 binary, OUTPUT1 JSON.
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), -1, dtype=np.int32)
    r = infer_simple(c, a, b)
    check((r.as_numpy("OUTPUT0") == a + b).all() and (r.as_numpy("OUTPUT1") == a - b).all(),
          "simple: sum and difference (JSON and binary tensors)")
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a, binary_data=False)
    inputs[1].set_data_from_numpy(b, binary_data=True)
    r = c.infer("simple", inputs)
    check((r.as_numpy("OUTPUT0") == a + b).all() and (r.as_numpy("OUTPUT1") == a - b).all(),
          "simple: every output when none is asked for")

    # A batch of 4, values beyond 2^24 (exact), all JSON and all binary.
    a4 = (np.arange(64, dtype=np.int32) + 16_777_217).reshape(4, 16)
    b4 = np.arange(64, dtype=np.int32).reshape(4, 16) * -3
    for bi, bo in [((False, False), (False, False)), ((True, True), (True, True))]:
        r = infer_simple(c, a4, b4, bi, bo)
        check(r.as_numpy("OUTPUT0").shape == (4, 16) and (r.as_numpy("OUTPUT0") == a4 + b4).all()
              and (r.as_numpy("OUTPUT1") == a4 - b4).all(), f"simple: batch of 4 exact (binary {bi})")

    # Concurrent requests (async_infer, as simple_http_async_infer_client.py).
    cc = httpclient.InferenceServerClient(url=URL, concurrency=8)
    pending = []
    for k in range(16):
        ak = a + k
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(ak)
        inputs[1].set_data_from_numpy(b)
        pending.append((ak, cc.async_infer("simple", inputs, request_id=str(k))))
    ok = all((p.get_result().as_numpy("OUTPUT0") == ak + b).all() for ak, p in pending)
    check(ok, "simple: 16 concurrent async requests")
    cc.close()

    # int8 and fp32.
    a8 = np.arange(16, dtype=np.int8).reshape(1, 16)
    b8 = np.full((1, 16), 100, dtype=np.int8)
    r = infer_simple(c, a8, b8, model="simple_int8", dtype="INT8")
    check((r.as_numpy("OUTPUT1") == a8 - b8).all(), "simple_int8: difference")
    af = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)
    r = infer_simple(c, af, af, model="simple_fp32", dtype="FP32")
    check(np.allclose(r.as_numpy("OUTPUT0"), 2 * af), "simple_fp32: sum")

    # Strings, as simple_http_string_infer_client.py: INPUT0 binary, INPUT1 JSON.
    s0 = np.array([str(x).encode() for x in range(16)], dtype=np.object_).reshape(1, 16)
    s1 = np.array([b"1"] * 16, dtype=np.object_).reshape(1, 16)
    r = infer_simple(c, s0, s1, binary_in=(True, False), model="simple_string", dtype="BYTES")
    got0 = [int(x) for x in r.as_numpy("OUTPUT0").reshape(16)]
    got1 = [int(x) for x in r.as_numpy("OUTPUT1").reshape(16)]
    check(got0 == [x + 1 for x in range(16)] and got1 == [x - 1 for x in range(16)], "simple_string: sum and difference")

    # Identity of any bytes (NUL, not UTF-8, empty), binary both ways; as JSON only UTF-8 text can go.
    raw = np.array([b"he\x00llo", b"\xff\xfe", b"", "\u00e9lan".encode()], dtype=np.object_).reshape(1, 4)
    inp = httpclient.InferInput("INPUT0", [1, 4], "BYTES")
    inp.set_data_from_numpy(raw, binary_data=True)
    r = c.infer("simple_identity", [inp], outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)])
    out = r.as_numpy("OUTPUT0")
    check(list(out.reshape(4)) == list(raw.reshape(4)), f"simple_identity: bytes kept {list(out.reshape(4))}")
    expect_error(lambda: c.infer("simple_identity", [inp], outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)]),
                 "BYTES element 1 is not UTF-8; ask for it as binary data", "non-UTF-8 bytes asked for as JSON")

    # Errors with Triton's texts.
    def bad_shape():
        inputs = [httpclient.InferInput("INPUT0", [1, 15], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(np.zeros((1, 15), np.int32))
        inputs[1].set_data_from_numpy(b)
        c.infer("simple", inputs)
    expect_error(bad_shape, "unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,15]",
                 "wrong shape")

    def bad_type():
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "FP32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(np.zeros((1, 16), np.float32))
        inputs[1].set_data_from_numpy(b)
        c.infer("simple", inputs)
    expect_error(bad_type, "inference input 'INPUT0' data-type is 'FP32', but model 'simple' expects 'INT32'",
                 "wrong data type")

    def missing_input():
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32")]
        inputs[0].set_data_from_numpy(a)
        c.infer("simple", inputs)
    expect_error(missing_input, "missing required input(s) ['INPUT1']", "missing input")

    def too_big_batch():
        inputs = [httpclient.InferInput("INPUT0", [9, 16], "INT32"), httpclient.InferInput("INPUT1", [9, 16], "INT32")]
        inputs[0].set_data_from_numpy(np.zeros((9, 16), np.int32))
        inputs[1].set_data_from_numpy(np.zeros((9, 16), np.int32))
        c.infer("simple", inputs)
    expect_error(too_big_batch, "inference request batch-size must be <= 8 for 'simple'", "batch too large")
    expect_error(lambda: infer_simple(c, a, b, model="wrong_model_name"), "Request for unknown model",
                 "infer on an unknown model")
    expect_error(lambda: c.load_model("simple"), "explicit model load / unload is not allowed",
                 "load refused outside explicit mode")

    stats = c.get_inference_statistics("simple")
    s = stats["model_stats"][0]
    check(len(stats["model_stats"]) == 1 and s["name"] == "simple" and s["version"] == "1"
          and s["inference_count"] >= 2 + 8 + 16 and s["inference_stats"]["success"]["count"] >= 20
          and s["inference_stats"]["fail"]["count"] >= 4 and s["execution_count"] >= 1
          and s["batch_stats"], f"statistics {s}")
    all_stats = c.get_inference_statistics()
    check(len(all_stats["model_stats"]) == 5, "statistics of every model")


def control_checks(c):
    index = c.get_model_repository_index()
    names = sorted(m["name"] for m in index)
    check(names == ["simple", "simple_fp32", "simple_identity", "simple_int8", "simple_string"],
          f"repository index {index}")
    check(not c.is_model_ready("simple"), "simple not loaded at start")
    c.load_model("simple")
    check(c.is_model_ready("simple"), "simple ready after load")
    index = {m["name"]: m for m in c.get_model_repository_index()}
    check(index["simple"].get("state") == "READY" and index["simple"].get("version") == "1",
          f"index after load {index['simple']}")
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    r = infer_simple(c, a, a)
    check((r.as_numpy("OUTPUT0") == 2 * a).all(), "infer after load")
    c.unload_model("simple")
    check(not c.is_model_ready("simple"), "simple not ready after unload")
    index = {m["name"]: m for m in c.get_model_repository_index()}
    check(index["simple"].get("state") == "UNAVAILABLE" and index["simple"].get("reason") == "unloaded",
          f"index after unload {index['simple']}")
    expect_error(lambda: infer_simple(c, a, a), "Request for unknown model", "infer after unload")
    c.load_model("simple")
    r = infer_simple(c, a, a)
    check((r.as_numpy("OUTPUT1") == 0).all(), "infer after a second load")
    expect_error(lambda: c.load_model("wrong_model_name"), "failed to load", "load of an unknown model")
    check(len(c.get_model_repository_index(query_params=None)) == 5, "index still lists 5 models")


if __name__ == "__main__":
    URL, mode = sys.argv[1], sys.argv[2]
    client = httpclient.InferenceServerClient(url=URL)
    {"serve": serve_checks, "control": control_checks}[mode](client)
    if len(sys.argv) > 3:
        counts = metrics_checks(sys.argv[3])
        check(counts["nv_inference_request_success"] >= 20 and 1 <= counts["nv_inference_exec_count"]
              <= counts["nv_inference_count"], f"simple's counts after the serve checks: {counts}")
    passed()
