#!/usr/bin/env python3
"""Check a running tritonserver (run.sh) that serves an ONNX model through make_repo.py's model.py.

  ~/.cache/vigil/triton-venv/bin/python tests/serve/tritonserver/check.py --http 127.0.0.1:PORT \
      --grpc 127.0.0.1:PORT --onnx models/nanodet/1/model.onnx [--ref-python ~/.cache/vigil/pytriton-venv/bin/python]

1. one random FP32 input (batch 1 over HTTP, batch 2 over gRPC) against onnxruntime run directly on the
   same input (in this Python if it has onnxruntime, else in --ref-python): max abs difference per output;
2. CLIENTS concurrent gRPC clients x REQUESTS requests of batch 1; the model's statistics before/after
   (inference_count / execution_count = mean batch the dynamic batcher formed);
3. the model config over HTTP (/v2/models/<model>/config): max_batch_size, inputs, outputs, parameters.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

REF = r"""
import os, sys
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
import numpy as np, onnxruntime as ort
onnx, inp, out = sys.argv[1:]
so = ort.SessionOptions(); so.log_severity_level = 3
s = ort.InferenceSession(onnx, sess_options=so, providers=["CPUExecutionProvider"])
x = np.load(inp)
names = [o.name for o in s.get_outputs()]
np.savez(out, **dict(zip(names, s.run(names, {s.get_inputs()[0].name: x}))))
"""


def reference(onnx, x, ref_python):
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "x.npy"), x)
        env = dict(os.environ, ORT_DISABLE_TELEMETRY="1")
        subprocess.run([ref_python, "-c", REF, onnx, os.path.join(d, "x.npy"), os.path.join(d, "y.npz")],
                       check=True, env=env)
        with np.load(os.path.join(d, "y.npz")) as z:
            return {k: z[k] for k in z.files}


def stats(client, model):
    """(inference_count, execution_count) once they stop changing: the server records a request's
    statistics just after its response has gone out, so a read right after a response may lag."""
    last = None
    while True:
        s = client.get_inference_statistics(model_name=model)["model_stats"][0]
        now = int(s.get("inference_count", 0)), int(s.get("execution_count", 0))
        if now == last:
            return now
        last = now
        time.sleep(0.3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--model", default="nanodet")
    ap.add_argument("--ref-python", default=sys.executable)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=25)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()

    # 3 first: the config decides the input and outputs.
    with urllib.request.urlopen(f"http://{a.http}/v2/models/{a.model}/config", timeout=10) as r:
        cfg = json.load(r)
    print("config: max_batch_size", cfg["max_batch_size"], "dynamic_batching", json.dumps(cfg.get("dynamic_batching")))
    for i in cfg["input"]:
        print(f"config: input  {i['name']} {i['data_type']} dims {i['dims']} format {i.get('format')}")
    for o in cfg["output"]:
        print(f"config: output {o['name']} {o['data_type']} dims {o['dims']}")
    print("config: parameters", json.dumps(cfg["parameters"], sort_keys=True))
    inp = cfg["input"][0]
    outs = [o["name"] for o in cfg["output"]]
    shape = [int(d) for d in inp["dims"]]

    # 1. parity with onnxruntime: batch 1 over HTTP, batch 2 over gRPC.
    rng = np.random.default_rng(7)
    worst = 0.0
    h = httpclient.InferenceServerClient(a.http)
    g = grpcclient.InferenceServerClient(a.grpc)
    for proto, batch in (("http", 1), ("grpc", 2)):
        # roughly what NanoDet's pre-processing gives: (px - mean) / std, px in 0..255
        x = ((rng.uniform(0, 255, size=[batch] + shape) - 116.0) / 57.5).astype(np.float32)
        ref = reference(os.path.abspath(a.onnx), x, a.ref_python)
        mod = httpclient if proto == "http" else grpcclient
        ii = mod.InferInput(inp["name"], x.shape, "FP32")
        ii.set_data_from_numpy(x)
        req = [mod.InferRequestedOutput(n) for n in outs]
        res = (h if proto == "http" else g).infer(a.model, [ii], outputs=req)
        for n in outs:
            y = res.as_numpy(n)
            assert y.shape == ref[n].shape, (n, y.shape, ref[n].shape)
            d = float(np.max(np.abs(y - ref[n])))
            worst = max(worst, d)
            print(f"parity {proto} batch {batch}: {n} {list(y.shape)} max abs diff {d:.3g}")
    print(f"parity: worst max abs diff {worst:.3g}")

    # 2. concurrency: the dynamic batcher should group requests.
    before = stats(h, a.model)
    x = ((rng.uniform(0, 255, size=[1] + shape) - 116.0) / 57.5).astype(np.float32)
    lat, errors = [], []

    def client():
        c = grpcclient.InferenceServerClient(a.grpc)
        ii = grpcclient.InferInput(inp["name"], x.shape, "FP32")
        ii.set_data_from_numpy(x)
        for _ in range(a.requests):
            t = time.perf_counter()
            try:
                c.infer(a.model, [ii])
            except Exception as e:  # noqa: BLE001
                errors.append(e)
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=client) for _ in range(a.clients)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    wall = time.perf_counter() - t0
    after = stats(h, a.model)
    inf, exe = after[0] - before[0], after[1] - before[1]
    n = a.clients * a.requests
    print(f"concurrency: {a.clients} clients x {a.requests} requests in {wall:.2f} s ({n / wall:.1f} inf/s), "
          f"latency p50 {1e3 * np.percentile(lat, 50):.0f} ms p95 {1e3 * np.percentile(lat, 95):.0f} ms, errors {len(errors)}")
    print(f"concurrency: inference_count {inf} execution_count {exe} mean batch {inf / max(exe, 1):.2f}")
    s = h.get_inference_statistics(model_name=a.model)["model_stats"][0]
    print("statistics:", json.dumps({k: s[k] for k in ("inference_count", "execution_count")}),
          "batch_stats:", json.dumps([(b["batch_size"], b["compute_infer"]["count"]) for b in s.get("batch_stats", [])]))

    ok = worst <= a.tolerance and not errors and inf == n and inf > exe
    print("PASS" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
