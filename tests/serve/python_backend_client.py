"""Triton's Python client against a Python-backend model (`engine/tests/python_models/add_sub`) on
`vigil serve` and, when given, on a real Triton server serving the same repository: answers over
HTTP and gRPC, a batch of concurrent requests, an exception in `execute`; with both servers the
outputs of the same requests must be equal.

    python_backend_client.py --vigil HTTP GRPC [--triton HTTP GRPC]

Prints one `PASS:` line at the end; exits 1 with the first difference otherwise.
"""

import argparse
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "add_sub"


def inputs(module, a, b):
    ins = []
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        t = module.InferInput(name, list(value.shape), "FP32")
        t.set_data_from_numpy(value)
        ins.append(t)
    return ins


def infer(client, module, a, b):
    outs = [module.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1", "REQUESTS")]
    r = client.infer(MODEL, inputs(module, a, b), outputs=outs)
    return r.as_numpy("OUTPUT0"), r.as_numpy("OUTPUT1"), int(r.as_numpy("REQUESTS").max())


def check_server(label, http, grpc, rng_seed):
    """The answers of one server: [(sum, diff)] for a fixed list of requests, and the largest batch."""
    rng = np.random.default_rng(rng_seed)
    h = httpclient.InferenceServerClient(http, concurrency=8)
    g = grpcclient.InferenceServerClient(grpc)
    assert h.is_model_ready(MODEL), f"{label}: {MODEL} is not ready over HTTP"
    assert g.is_model_ready(MODEL), f"{label}: {MODEL} is not ready over gRPC"
    meta = h.get_model_metadata(MODEL)
    names = sorted(i["name"] for i in meta["inputs"])
    assert names == ["INPUT0", "INPUT1"], f"{label}: inputs {names}"
    answers = []
    for module, client in ((httpclient, h), (grpcclient, g)):
        for _ in range(3):
            a = rng.standard_normal((1, 4)).astype(np.float32)
            b = rng.standard_normal((1, 4)).astype(np.float32)
            s, d, _ = infer(client, module, a, b)
            if not (np.array_equal(s, a + b) and np.array_equal(d, a - b)):
                raise AssertionError(f"{label} {module.__name__}: {s} {d} for {a} {b}")
            answers.append((s, d))
    # Eight at once: execute() gets several of them (the batcher waits up to 200 ms).
    pairs = [
        (rng.standard_normal((1, 4)).astype(np.float32), rng.standard_normal((1, 4)).astype(np.float32))
        for _ in range(8)
    ]
    outs = [httpclient.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1", "REQUESTS")]
    pending = [h.async_infer(MODEL, inputs(httpclient, a, b), outputs=outs) for a, b in pairs]
    results = []
    for p in pending:
        r = p.get_result()
        results.append((r.as_numpy("OUTPUT0"), r.as_numpy("OUTPUT1"), int(r.as_numpy("REQUESTS").max())))
    largest = 1
    for (a, b), (s, d, n) in zip(pairs, results):
        if not (np.array_equal(s, a + b) and np.array_equal(d, a - b)):
            raise AssertionError(f"{label}: concurrent answer {s} {d} for {a} {b}")
        answers.append((s, d))
        largest = max(largest, n)
    # An exception in execute() fails the request with its message; the server keeps serving.
    errors = []
    for module, client in ((httpclient, h), (grpcclient, g)):
        bad = np.array([[-1, 0, 0, 0]], dtype=np.float32)
        try:
            infer(client, module, bad, bad)
            raise AssertionError(f"{label} {module.__name__}: no error for INPUT0 = -1")
        except InferenceServerException as e:
            text = str(e)
            if "INPUT0 starts with -1" not in text:
                raise AssertionError(f"{label} {module.__name__}: error without the model's message: {text}")
            errors.append(text)
    a = np.ones((1, 4), np.float32)
    s, _, _ = infer(h, httpclient, a, a)
    assert np.array_equal(s, a + a), f"{label}: not serving after the error"
    print(f"{label}: {len(answers)} answers right, largest execute() batch {largest}; error: {errors[0][:160]!r}")
    return answers, largest


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vigil", nargs=2, required=True, metavar=("HTTP", "GRPC"))
    p.add_argument("--triton", nargs=2, metavar=("HTTP", "GRPC"))
    args = p.parse_args()
    vigil, vigil_batch = check_server("vigil", *args.vigil, rng_seed=7)
    if vigil_batch < 2:
        raise AssertionError("vigil: execute() never got more than one request")
    summary = f"vigil serve answered {len(vigil)} requests right (largest batch {vigil_batch})"
    if args.triton:
        triton, triton_batch = check_server("triton", *args.triton, rng_seed=7)
        for i, ((vs, vd), (ts, td)) in enumerate(zip(vigil, triton)):
            if not (np.array_equal(vs, ts) and np.array_equal(vd, td)):
                raise AssertionError(f"request {i}: vigil {vs} {vd}, triton {ts} {td}")
        summary += f"; equal to tritonserver's on all {len(triton)} (its largest batch {triton_batch})"
    print(f"PASS: {summary}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
