#!/usr/bin/env bash
# Start a real Triton server (tritonserver 2.51 from PyPI nvidia-pytriton 0.7.0: Python backend only, CPU)
# on 127.0.0.1 with a model repository written by make_repo.py, and say when it is ready.
#
#   tests/serve/tritonserver/run.sh --repo DIR --http-port N --grpc-port N --metrics-port N
#                                   [--model NAME[,NAME...]] [--log FILE] [--timeout SECONDS] [--venv DIR]
#
# The server is exec'd: this script's pid IS the server's pid, so killing it (any signal) kills the
# server. A watcher started just before the exec polls /v2/health/ready and prints one line on stdout,
#   tritonserver ready pid=PID http=127.0.0.1:N grpc=127.0.0.1:N metrics=127.0.0.1:N log=FILE
# or, when the server exits or is not ready within --timeout (default 120 s; then the watcher kills it
# and the exit status is 137), prints the end of the server's log on stderr. The server's own output goes
# to --log (default: a new file under ${TMPDIR:-/tmp}). Models are loaded with
# `--model-control-mode explicit --load-model NAME` for each NAME (default nanodet; readiness is that of
# the last one); a model that fails to load makes
# the server exit non-zero (exit-on-error).
#
# Needs only the venv of `scripts/setup.sh pytriton` (default ${VIGIL_CACHE:-~/.cache/vigil}/pytriton-venv,
# or --venv / VIGIL_PYTRITON_VENV); no activated environment, no other variable. The backend directory
# (python/ with the wheel's libtriton_python.so, triton_python_backend_utils.py and the stub built for the
# venv's Python) is made once inside the venv, at <venv>/vigil-backends.
set -euo pipefail

repo='' http='' grpc='' metrics='' model=nanodet log='' timeout=120
venv=${VIGIL_PYTRITON_VENV:-${VIGIL_CACHE:-${HOME:-/root}/.cache/vigil}/pytriton-venv}
usage() { sed -n '5,6p' "$0" | sed 's/^# *//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --repo) repo=$2 ;;
    --http-port) http=$2 ;;
    --grpc-port) grpc=$2 ;;
    --metrics-port) metrics=$2 ;;
    --model) model=$2 ;;
    --log) log=$2 ;;
    --timeout) timeout=$2 ;;
    --venv) venv=$2 ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage ;;
  esac
  [ $# -ge 2 ] || usage
  shift 2
done
[ -n "$repo" ] && [ -n "$http" ] && [ -n "$grpc" ] && [ -n "$metrics" ] || usage
IFS=, read -r -a models <<<"$model"
load=()
for m in "${models[@]}"; do
  [ -d "$repo/$m" ] || { echo "run.sh: no model folder $repo/$m (write it with make_repo.py)" >&2; exit 2; }
  load+=(--load-model "$m")
done
model=${models[-1]}
repo=$(cd "$repo" && pwd)
py=$venv/bin/python
[ -x "$py" ] || { echo "run.sh: no venv at $venv (run scripts/setup.sh pytriton)" >&2; exit 2; }

# site-packages and Python version of the venv (the stub must be the one built for that version).
info=$("$py" -c 'import sysconfig, sys; print(sysconfig.get_paths()["purelib"], "%d.%d" % sys.version_info[:2])')
read -r site pyver <<<"$info"
server=$site/pytriton/tritonserver/bin/tritonserver
libs=$site/nvidia_pytriton.libs
stub=$site/pytriton/tritonserver/python_backend_stubs/$pyver/triton_python_backend_stub
[ -x "$server" ] && [ -d "$libs" ] && [ -f "$stub" ] ||
  { echo "run.sh: $venv has no nvidia-pytriton tritonserver with a Python $pyver stub (run scripts/setup.sh pytriton)" >&2; exit 2; }

backends=$venv/vigil-backends
if [ ! -x "$backends/python/triton_python_backend_stub" ]; then
  tmp=$backends.tmp.$$
  rm -rf "$tmp" && mkdir -p "$tmp/python"
  ln -s "$site/pytriton/tritonserver/backends/python/libtriton_python.so" "$tmp/python/"
  ln -s "$site/pytriton/tritonserver/backends/python/triton_python_backend_utils.py" "$tmp/python/"
  ln -s "$stub" "$tmp/python/triton_python_backend_stub"
  rm -rf "$backends" && mv "$tmp" "$backends" 2>/dev/null || rm -rf "$tmp" # another launcher may have won
fi

[ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/vigil-tritonserver.XXXXXX.log")
: >"$log"

# The stub embeds the venv's Python: it finds the venv (numpy, onnxruntime) through PATH.
export PATH=$venv/bin:/usr/local/bin:/usr/bin:/bin
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export ORT_DISABLE_TELEMETRY=1 PYTHONDONTWRITEBYTECODE=1
unset PYTHONHOME PYTHONPATH VIRTUAL_ENV

# The watcher, started through a subshell that exits at once (so no zombie waits on the server to be
# reaped); $$ is this shell's pid, which the server keeps after the exec.
exec 3>&1 4>&2
("$py" - "$$" "$http" "$grpc" "$metrics" "$log" "$timeout" "$model" >/dev/null 2>&1 <<'PY' &
import os, signal, sys, time, urllib.request
pid, http, grpc, metrics, log, timeout, model = sys.argv[1:]
pid, deadline = int(pid), time.monotonic() + float(timeout)
out, err = os.fdopen(3, "w"), os.fdopen(4, "w")

def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

def fail(why):
    try:
        with open(log, errors="replace") as f:
            tail = f.readlines()[-60:]
    except OSError:
        tail = []
    err.write(f"run.sh: tritonserver {why}; last lines of {log}:\n{''.join(tail)}")
    err.flush()
    sys.exit(1)

time.sleep(0.2)
while True:
    if not alive():
        fail("exited before it was ready")
    try:
        url = f"http://127.0.0.1:{http}/v2/health/ready"
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                # ready says every loaded model is ready; make sure ours is one of them
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{model}/ready", timeout=2) as m:
                    if m.status == 200:
                        break
    except OSError:
        pass
    if time.monotonic() > deadline:
        if alive():
            os.kill(pid, signal.SIGKILL)
        fail(f"not ready within {timeout} s (killed)")
    time.sleep(0.1)
out.write(f"tritonserver ready pid={pid} http=127.0.0.1:{http} grpc=127.0.0.1:{grpc} metrics=127.0.0.1:{metrics} log={log}\n")
out.flush()
PY
)

exec "$server" --model-repository "$repo" --backend-directory "$backends" \
  --model-control-mode explicit "${load[@]}" --exit-on-error true --strict-readiness true \
  --http-address 127.0.0.1 --http-port "$http" \
  --grpc-address 127.0.0.1 --grpc-port "$grpc" \
  --metrics-address 127.0.0.1 --metrics-port "$metrics" --allow-gpu-metrics false \
  --log-verbose 0 >"$log" 2>&1 3>&- 4>&-
