#!/usr/bin/env bash
# Triton's qa/L0_infer (infer_test.py) against vigil serve: the ONNX backend on CPU, no shared
# memory — what qa/L0_infer/test.sh runs with BACKENDS=onnx, TARGET=cpu,
# TEST_SYSTEM_SHARED_MEMORY=0, TEST_CUDA_SHARED_MEMORY=0 and ENSEMBLES=0 (see README.md here).
# The models are made by Triton's own qa/common/gen_qa_models.py; the test and its helpers are
# Triton's, unchanged. Loopback only (the test talks to 127.0.0.1:8000 and :8001, which must be
# free).
#
#   benches/serve/l0_infer.sh [MIRROR]
#
# MIRROR (or $TRITON_SERVER_MIRROR): triton-inference-server/server as a git directory (bare or
# not, or a folder whose repo/ is one) or a folder holding its qa/.
# Environment:
#   VIGIL          the binary (default target/release/vigil; build it first)
#   L0_VENV        the Python venv for the test and gen_qa_models.py (default
#                  ~/.cache/vigil/l0-venv; made when missing: tritonclient[http,grpc] 2.73.0,
#                  onnx 1.20.1, numpy 2.4.6, ml_dtypes 0.5.4)
#   L0_WORK        working folder (default: a new temporary one, removed at the end)
#   ONNX_OPSET     the opset of the generated models (default 13)
#   L0_ENSEMBLES=1 also the ensembles (ENSEMBLES=1): their steps on Triton's identity backend
#                  (nop_*, custom_zero_1_float32) are replaced by ONNX Identity models
#                  (l0_identity_onnx.py). Not part of the pass criterion: see README.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MIRROR=${1:-${TRITON_SERVER_MIRROR:-}}
[ -n "$MIRROR" ] || { echo "usage: $0 MIRROR (or set TRITON_SERVER_MIRROR)" >&2; exit 2; }
VIGIL=${VIGIL:-$ROOT/target/release/vigil}
VENV=${L0_VENV:-$HOME/.cache/vigil/l0-venv}
OPSET=${ONNX_OPSET:-13}
ENSEMBLES=${L0_ENSEMBLES:-0}
[ -x "$VIGIL" ] || { echo "no vigil binary at $VIGIL (cargo build --release -p vigil --bin vigil)" >&2; exit 2; }
if [ -n "${L0_WORK:-}" ]; then
  WORK=$L0_WORK
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d)
fi
PID=
cleanup() {
  if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  [ -n "${L0_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Triton's qa/ folder.
rm -rf "$WORK/qa"
if [ -d "$MIRROR/qa/L0_infer" ]; then
  cp -r "$MIRROR/qa" "$WORK/"
else
  GIT=$MIRROR
  git -C "$GIT" rev-parse --git-dir >/dev/null 2>&1 || GIT=$MIRROR/repo
  git -C "$GIT" archive HEAD qa | tar -x -C "$WORK"
  echo "l0_infer: qa/ of $(git -C "$GIT" rev-parse HEAD)"
fi
QA=$WORK/qa

# 2. The Python side.
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "tritonclient[http,grpc]==2.73.0" "onnx==1.20.1" "numpy==2.4.6" "ml_dtypes==0.5.4"
fi
PY=$VENV/bin/python

# 3. The model repository as test.sh builds it for BACKENDS=onnx, TARGET=cpu.
DATA=$WORK/data
rm -rf "$DATA" "$WORK/models"
mkdir -p "$DATA" "$WORK/models"
(cd "$QA/common" && "$PY" gen_qa_models.py --onnx --onnx_opset="$OPSET" \
  --models_dir="$DATA/qa_model_repository" >"$WORK/gen.log" 2>&1)
M=$WORK/models
cp -r "$DATA"/qa_model_repository/onnx* "$M/"
# test.sh: "Remove ONNX BF16 models from CPU models" (ONNX Runtime has no BF16 CPU kernels).
rm -rf "$M"/onnx_*bf16*
if [ "$ENSEMBLES" = 1 ]; then
  (cd "$QA/common" && "$PY" gen_qa_models.py --ensemble \
    --models_dir="$DATA/qa_ensemble_model_repository/qa_model_repository" >>"$WORK/gen.log" 2>&1)
  E=$DATA/qa_ensemble_model_repository/qa_model_repository
  cp -r "$E"/*onnx* "$E"/nop_* "$M/"
  for d in "$M"/nop_*; do mkdir -p "$d/1"; done
  for em in wrong_label_int32_float32_float32 label_override_int32_float32_float32 \
    mix_type_int32_float32_float32 batch_to_nobatch_float32_float32_float32 \
    batch_to_nobatch_nobatch_float32_float32_float32 nobatch_to_batch_float32_float32_float32 \
    nobatch_to_batch_nobatch_float32_float32_float32 mix_nobatch_batch_float32_float32_float32; do
    cp -r "$QA/ensemble_models/$em" "$M/"
    mkdir -p "$M/$em/1"
  done
fi
for mc in "$M"/onnx*/config.pbtxt; do
  echo "instance_group [ { kind: KIND_CPU }]" >>"$mc"
done
if [ "$ENSEMBLES" = 1 ]; then
  cp -r "$QA/custom_models/custom_zero_1_float32" "$M/"
  mkdir -p "$M/custom_zero_1_float32/1"
  echo "instance_group [ { kind: KIND_CPU }]" >>"$M/custom_zero_1_float32/config.pbtxt"
  cp -r "$M/custom_zero_1_float32" "$M/custom_nobatch_zero_1_float32"
  sed -i -e "s/max_batch_size: 1/max_batch_size: 8/" -e "s/dims: \[ 1 \]/dims: \[ -1 \]/" \
    "$M/custom_zero_1_float32/config.pbtxt"
  sed -i -e "s/custom_zero_1_float32/custom_nobatch_zero_1_float32/" \
    -e "s/max_batch_size: 1/max_batch_size: 0/" -e "s/dims: \[ 1 \]/dims: \[ -1, -1 \]/" \
    "$M/custom_nobatch_zero_1_float32/config.pbtxt"
  "$PY" "$ROOT/benches/serve/l0_identity_onnx.py" "$M" "$OPSET"
fi
echo "l0_infer: $(ls "$M" | wc -l) models in $M (ONNX opset $OPSET, ENSEMBLES=$ENSEMBLES)"

# 4. vigil serve where the test looks for Triton.
for port in 8000 8001 8002; do
  if ss -ltnH "sport = :$port" | grep -q .; then
    echo "l0_infer: port $port is in use; the test needs 8000 (HTTP) and 8001 (gRPC)" >&2
    exit 2
  fi
done
"$VIGIL" serve --model-repository="$M" --http-port 8000 --grpc-port 8001 --metrics-port 8002 \
  >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 600); do
  curl -sf 127.0.0.1:8000/v2/health/ready >/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf 127.0.0.1:8000/v2/health/ready >/dev/null || { echo "l0_infer: not ready" >&2; tail "$WORK/serve.log" >&2; exit 1; }

# 5. The test, as test.sh runs it (python3 infer_test.py in qa/L0_infer).
set +e
(cd "$QA/L0_infer" && TRITONSERVER_IPADDR=127.0.0.1 BACKENDS=onnx ENSEMBLES="$ENSEMBLES" \
  TRITON_SERVER_CPU_ONLY=1 TEST_SYSTEM_SHARED_MEMORY=0 TEST_CUDA_SHARED_MEMORY=0 \
  TEST_VALGRIND=0 "$PY" infer_test.py >"$WORK/client.log" 2>&1)
rc=$?
set -e
kill -TERM "$PID"
wait "$PID" || true
PID=

# 6. The counts.
ran=$(sed -n 's/^Ran \([0-9]*\) tests\? in .*/\1/p' "$WORK/client.log" | tail -n1)
last=$(grep -E '^(OK|FAILED)' "$WORK/client.log" | tail -n1)
count() { echo "$last" | grep -o "$1=[0-9]*" | cut -d= -f2 || true; }
failures=$(count failures); errors=$(count errors); skipped=$(count skipped)
failed=$(( ${failures:-0} + ${errors:-0} ))
passed=$(( ${ran:-0} - failed - ${skipped:-0} ))
grep -E '^(ERROR|FAIL):' "$WORK/client.log" || true
echo "l0_infer: ${ran:-0} run (unittest: $last); logs in $WORK (L0_WORK keeps them)"
echo "l0_infer: $passed passed, $failed failed, ${skipped:-0} skipped"
[ "$rc" = 0 ] && [ "${ran:-0}" -gt 0 ]
