"""Python-backend throughput: an identity `model.py` with 1, 2 and 4 CPU instances under `vigil serve`
and under the real Triton server (pytriton's `tritonserver`), one after the other in one run, loaded
by the same client, Triton's `perf_analyzer` (`scripts/setup.sh perf`) over gRPC at CLIENTS concurrent
requests with windows of SECONDS (stable over 3 of at most 4); requests/s and latency percentiles per
server and instance count.

    ~/.cache/vigil/triton-venv/bin/python benches/python_backend/compare.py \
        --vigil target/release/vigil --python ~/.cache/vigil/venv/bin/python3 [--seconds 5] [--clients 8]

Writes a Markdown table on stdout. Servers listen on 127.0.0.1 only.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import tritonclient.grpc as grpcclient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL_PY = '''import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
'''

CONFIG = """name: "identity"
backend: "python"
max_batch_size: 8
dynamic_batching {{ }}
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] }}]
instance_group [{{ kind: KIND_CPU count: {count} }}]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_repo(count):
    repo = tempfile.mkdtemp(prefix="vigil-pybench-")
    os.makedirs(os.path.join(repo, "identity", "1"))
    with open(os.path.join(repo, "identity", "config.pbtxt"), "w") as f:
        f.write(CONFIG.format(count=count))
    with open(os.path.join(repo, "identity", "1", "model.py"), "w") as f:
        f.write(MODEL_PY)
    return repo


def wait_ready(grpc, deadline=120):
    client = grpcclient.InferenceServerClient(grpc)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if client.is_model_ready("identity"):
                return
        except Exception:  # noqa: BLE001 (not up yet)
            pass
        time.sleep(0.2)
    raise RuntimeError(f"identity not ready on {grpc}")


def load(args, grpc, seconds):
    """perf_analyzer over gRPC at `args.clients` concurrent requests: (requests/s, p50 ms, p99 ms)."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as csv:
        out = subprocess.run(
            [
                args.perf_analyzer, "-m", "identity", "-i", "grpc", "-u", grpc,
                "--concurrency-range", str(args.clients), "-p", str(int(seconds * 1000)), "-s", "50",
                "--max-trials", "4", "--percentile=99", "-f", csv.name,
            ],
            env=dict(os.environ, LD_LIBRARY_PATH=args.perf_lib),
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"perf_analyzer failed:\n{out.stdout}\n{out.stderr}")
        header, row = open(csv.name).read().strip().splitlines()[-2:]
    values = dict(zip(header.split(","), row.split(",")))
    return (
        float(values["Inferences/Second"]),
        float(values["p50 latency"]) / 1000,
        float(values["p99 latency"]) / 1000,
    )


def run_vigil(args, repo):
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = dict(os.environ, VIGIL_PYTHON_BACKEND_INTERPRETER=args.python)
    proc = subprocess.Popen(
        [args.vigil, "serve", repo, "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"127.0.0.1:{grpc}"


def run_triton(repo):
    http, grpc, metrics = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            os.path.join(ROOT, "tests/serve/tritonserver/run.sh"),
            "--repo", repo, "--model", "identity",
            "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("tritonserver ready"):
            break
    return proc, f"127.0.0.1:{grpc}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vigil", required=True)
    p.add_argument("--python", required=True, help="interpreter of vigil serve's model processes")
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--counts", default="1,2,4")
    cache = os.environ.get("VIGIL_CACHE", os.path.expanduser("~/.cache/vigil"))
    p.add_argument(
        "--perf-analyzer",
        default=os.path.join(cache, "perf-analyzer/tritonclient-2.41.0.data/data/bin/perf_analyzer"),
    )
    args = p.parse_args()
    args.perf_lib = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(args.perf_analyzer)))), "lib")
    rows = []
    for count in [int(c) for c in args.counts.split(",")]:
        repo = make_repo(count)
        result = {}
        for name, start in (("vigil serve", lambda: run_vigil(args, repo)), ("tritonserver", lambda: run_triton(repo))):
            proc, grpc = start()
            try:
                wait_ready(grpc)
                result[name] = load(args, grpc, args.seconds)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        rows.append((count, result))
        print(f"instances {count}: {result}", file=sys.stderr)
    print(f"identity model.py, perf_analyzer over gRPC at concurrency {args.clients}, {args.seconds:g} s windows\n")
    print("| instances | vigil serve req/s | p50 ms | p99 ms | tritonserver req/s | p50 ms | p99 ms | vigil / triton |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for count, r in rows:
        v, t = r["vigil serve"], r["tritonserver"]
        print(
            f"| {count} | {v[0]:.0f} | {v[1]:.1f} | {v[2]:.1f} | {t[0]:.0f} | {t[1]:.1f} | {t[2]:.1f} | {v[0] / t[0]:.2f} |"
        )


if __name__ == "__main__":
    main()
