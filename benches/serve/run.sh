#!/usr/bin/env bash
# vigil serve against the same model in-process, in one run: perf_analyzer over gRPC and HTTP
# (binary tensors, random FP32 data) and engine/examples/closed_loop.rs, at concurrency 1, 4, 16.
# Loopback only.
#
#   benches/serve/run.sh OUT_DIR
#
# Needs a release build (cargo build --release -p vigil; cargo build --release -p vigil-engine
# --example closed_loop), NanoDet installed (make setup), and perf_analyzer (`scripts/setup.sh perf`
# puts the binary of the tritonclient==2.41.0 wheel in ~/.cache/vigil/perf-analyzer, with a
# libcudart.so.12 in its lib/ folder and Debian's libb64-0d; or set PERF_ANALYZER and PA_DIR).
set -euo pipefail
OUT=${1:?usage: benches/serve/run.sh OUT_DIR}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PA_DIR=${PA_DIR:-$HOME/.cache/vigil/perf-analyzer}
PERF_ANALYZER=${PERF_ANALYZER:-$PA_DIR/tritonclient-2.41.0.data/data/bin/perf_analyzer}
SECONDS_EACH=${SECONDS_EACH:-20}
[ -x "$PERF_ANALYZER" ] || { echo "no perf_analyzer at $PERF_ANALYZER" >&2; exit 1; }
mkdir -p "$OUT"
REPO=$(mktemp -d)
trap 'rm -rf "$REPO"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
cp -r "$ROOT/models/nanodet" "$REPO/"
{ date -u +%FT%TZ; lscpu | grep "Model name"; nproc; } >"$OUT/machine.txt"
for c in 1 4 16; do
  "$ROOT/target/release/examples/closed_loop" "$REPO" nanodet "$c" "$SECONDS_EACH" | tee -a "$OUT/inprocess.txt"
done
"$ROOT/target/release/vigil" serve "$REPO" --http-port 18100 --grpc-port 18101 --metrics-port 18102 \
  >"$OUT/serve.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:18100/v2/health/ready >/dev/null && break; sleep 0.2; done
for proto in grpc http; do
  port=18100
  [ "$proto" = grpc ] && port=18101
  for c in 1 4 16; do
    LD_LIBRARY_PATH="$PA_DIR/lib" "$PERF_ANALYZER" -m nanodet -i "$proto" -u "127.0.0.1:$port" \
      --concurrency-range "$c" -p 10000 -s 50 --max-trials 4 --percentile=99 \
      -f "$OUT/$proto-$c.csv" >"$OUT/$proto-$c.txt" 2>&1 || echo "perf_analyzer $proto $c failed" >&2
    echo "$proto concurrency $c: $(tail -n1 "$OUT/$proto-$c.csv" | cut -d, -f2) infer/s"
  done
done
curl -s 127.0.0.1:18102/metrics >"$OUT/metrics.txt"
curl -s 127.0.0.1:18100/v2/models/nanodet/stats >"$OUT/stats.json"
kill -TERM "$PID"
wait "$PID" || true
PID=
