#!/usr/bin/env bash
# Build, verify and benchmark Vigil's GPU path on a machine with an NVIDIA GPU that may have no package
# registry, no Rust toolchain and no GStreamer.
#
#   scripts/gpu-check.sh prepare DIR   on a Debian 12 build machine (Rust, apt, pip; `make setup` done):
#                                      puts into DIR everything the GPU machine needs (listed below)
#   scripts/gpu-check.sh check DIR     on the GPU machine (NVIDIA driver; Python with the CUDA 13 and
#                                      cuDNN 9 packages, e.g. nvidia-cuda-runtime, nvidia-cudnn-cu13):
#                                      runs the GPU tests and the capacity benchmark, prints a report
#
# DIR after `prepare`:
#   bin/vigil, bin/libgstvigil.so       release builds
#   bin/tests/*                         the GPU test binaries (cargo test --release --no-run), tests.txt:
#                                       gpu_preprocess (kernels against the reference) and gpu_fallback
#                                       (fallbacks; NanoDet, FP32 and FP16, with GPU pre-processing
#                                       against the CPU's)
#   wheels/onnxruntime_gpu-*.whl        ONNX Runtime with the CUDA and TensorRT execution providers (1.31.1:
#                                       the newest GPU wheel; the ort crate needs API 31, i.e. >= 1.31)
#   debs/*.deb, debs.txt                GStreamer 1.22 runtime, plugins (nvcodec is in plugins-bad) and
#                                       their dependencies, ffmpeg (the fallback test cuts its clip)
#   repo/models/nanodet, repo/samples/media, repo/configs   what the tests and the bench read
#   repo/testmodels/nanodet_fp16.onnx   NanoDet with FP16 inputs and outputs (FP16 device tensors)
#   gpu-check.sh                        this script
# `check` unpacks the .deb files into DIR/root (never into /) and the wheel into DIR/ort, points
# LD_LIBRARY_PATH, GST_PLUGIN_SYSTEM_PATH and GST_PLUGIN_SCANNER there, and adds the `nvidia/*/lib`
# folders of the machine's Python packages (CUDA, cuDNN, NVRTC) to LD_LIBRARY_PATH.
#
# Environment: VIGIL_ORT_GPU (pip requirement of the ONNX Runtime GPU wheel, default
# onnxruntime-gpu==1.31.1), VIGIL_PYTHON_TAG (the GPU machine's CPython, default 312),
# PYTHON (the GPU machine's Python with the nvidia packages, default python3),
# BENCH_FRAMES (frames per stream of the capacity search, default 300), CAPACITY_MAX (most streams
# tried, default 64), VIGIL_GPU_CHECK_DRY_RUN=1 (run `check` without a driver: everything falls back
# to the CPU; to try the procedure before a GPU session).
set -euo pipefail

die() {
  printf 'gpu-check: error: %s\n' "$*" >&2
  exit 1
}
say() { printf 'gpu-check: %s\n' "$*"; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-}
DIR=${2:-}
[ -n "$MODE" ] && [ -n "$DIR" ] || die "usage: $0 prepare DIR | check DIR"

# GStreamer runtime and plugins `vigil` uses; their dependencies are added by apt.
DEB_PACKAGES=(
  libgstreamer1.0-0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp libgstrtspserver-1.0-0 ffmpeg
)
# Never unpacked for use: the GPU machine's C library and loader must stay its own.
DEB_EXCLUDE='^(libc6|libc-bin|libgcc-s1|libstdc\+\+6|libcrypt1|gcc-.*-base|debconf|dpkg|perl-base|tar|coreutils|bash|base-files|.*:i386)$'

prepare() {
  local t=$SECONDS
  command -v cargo >/dev/null || die "prepare needs cargo (Rust)"
  command -v apt-get >/dev/null || die "prepare needs apt-get (Debian 12)"
  mkdir -p "$DIR"/{bin/tests,wheels,debs,repo/models,repo/samples/media}
  DIR=$(cd "$DIR" && pwd)

  # VIGIL_GPU_CHECK_PROFILE=dev builds the debug profile instead (to try `prepare` quickly).
  local profile=${VIGIL_GPU_CHECK_PROFILE:-release} out
  out=$([ "$profile" = dev ] && echo debug || echo "$profile")
  say "building vigil ($profile)"
  (cd "$REPO" && cargo build --profile "$profile" -p vigil --bin vigil -p gst-plugin-vigil)
  cp "$REPO/target/$out/vigil" "$REPO/target/$out/libgstvigil.so" "$DIR/bin/"

  say "building the GPU test binaries ($profile, --no-run)"
  : >"$DIR/tests.txt"
  local json
  json=$(cd "$REPO" && cargo test --profile "$profile" --no-run --message-format=json \
    -p vigil-core --test gpu_preprocess -p vigil-tests --test gpu_fallback 2>/dev/null)
  printf '%s\n' "$json" | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do
    cp "$exe" "$DIR/bin/tests/$name"
    printf '%s %s\n' "$name" "$exe" >>"$DIR/tests.txt"
  done
  [ -s "$DIR/tests.txt" ] || die "no test binaries were built"
  say "test binaries: $(awk '{print $1}' "$DIR/tests.txt" | tr '\n' ' ')"

  say "downloading the ONNX Runtime GPU wheel"
  local py=python3
  [ -x "$HOME/.cache/vigil/venv/bin/python" ] && py=$HOME/.cache/vigil/venv/bin/python
  "$py" -m pip download --no-deps --only-binary=:all: --python-version "${VIGIL_PYTHON_TAG:-312}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 -d "$DIR/wheels" "${VIGIL_ORT_GPU:-onnxruntime-gpu==1.31.1}" >/dev/null

  say "downloading the GStreamer .deb files and their dependencies"
  local pkgs
  pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${DEB_PACKAGES[@]}" | grep -E '^[a-z0-9]' | sort -u |
    grep -Ev "$DEB_EXCLUDE" || true)
  printf '%s\n' $pkgs >"$DIR/debs.txt"
  # All at once; if apt refuses (a virtual package has no .deb), one by one, skipping those.
  # shellcheck disable=SC2086
  (cd "$DIR/debs" && { apt-get download -q $pkgs >/dev/null 2>&1 ||
    for p in $pkgs; do apt-get download -q "$p" >/dev/null 2>&1 || true; done; })
  say "$(ls "$DIR/debs" | wc -l) .deb files ($(du -sh "$DIR/debs" | cut -f1)) of $(wc -l <"$DIR/debs.txt") packages"

  say "copying models, media and configs"
  mkdir -p "$DIR/repo/models/nanodet/1"
  cp "$REPO/models/nanodet/"*.* "$DIR/repo/models/nanodet/" 2>/dev/null || true
  cp -L "$REPO/models/nanodet/1/model.onnx" "$DIR/repo/models/nanodet/1/"
  # NanoDet with an FP16 interface, for the FP16 test of gpu_fallback (made with the `onnx` package).
  mkdir -p "$DIR/repo/testmodels"
  "$py" "$REPO/scripts/testmodels/make_fp16_io_model.py" "$REPO/models/nanodet/1/model.onnx" \
    "$DIR/repo/testmodels/nanodet_fp16.onnx" || die "making the FP16 NanoDet needs the venv of 'make setup' (onnx)"
  cp "$REPO/samples/media/bikes.mp4" "$REPO/samples/media/vtest.avi" "$DIR/repo/samples/media/"
  cp -r "$REPO/configs" "$DIR/repo/"
  cp "$0" "$DIR/gpu-check.sh"
  say "prepared $DIR ($(du -sh "$DIR" | cut -f1)) in $((SECONDS - t)) s"
}

check() {
  [ -d "$DIR/bin" ] || die "$DIR was not made by '$0 prepare'"
  DIR=$(cd "$DIR" && pwd)
  local libcuda
  libcuda=$( (ldconfig -p 2>/dev/null || true) | awk '/libcuda\.so\.1 /{print $NF; exit}')
  if [ -z "$libcuda" ] && [ ! -e /proc/driver/nvidia/version ]; then
    # VIGIL_GPU_CHECK_DRY_RUN=1: go on without a driver, to try the procedure (unpacking, library
    # paths, the tests' skips and fallbacks, the bench) on any machine before a GPU session.
    [ "${VIGIL_GPU_CHECK_DRY_RUN:-0}" = 1 ] ||
      die "no NVIDIA driver (no libcuda.so.1 known to the loader, no /proc/driver/nvidia/version): run this on the GPU machine"
    say "dry run: no NVIDIA driver; every GPU path falls back to the CPU"
  fi
  local REPORT=$DIR/report.txt
  : >"$REPORT"
  rep() { printf '%s\n' "$*" | tee -a "$REPORT"; }

  # The .deb files, unpacked once into DIR/root.
  if [ ! -e "$DIR/root/.unpacked" ]; then
    mkdir -p "$DIR/root"
    for f in "$DIR"/debs/*.deb; do
      if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$f" "$DIR/root"
      else
        (cd "$(mktemp -d)" && ar x "$f" && tar -xf data.tar.* -C "$DIR/root")
      fi
    done
    touch "$DIR/root/.unpacked"
  fi
  # The ONNX Runtime GPU wheel, unpacked into DIR/ort.
  if [ ! -d "$DIR/ort" ]; then
    python3 -m zipfile -e "$DIR"/wheels/onnxruntime_gpu-*.whl "$DIR/ort"
  fi
  local ortlib
  ortlib=$(find "$DIR/ort" -name 'libonnxruntime.so*' ! -name '*providers*' | head -1)
  [ -n "$ortlib" ] || die "no libonnxruntime.so in the wheel"

  # CUDA, cuDNN and NVRTC from the machine's Python packages.
  local py=${PYTHON:-python3} nvlibs
  nvlibs=$("$py" - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "*", "lib*")) if os.path.isdir(d)})))
PY
  )
  mkdir -p "$DIR/lib"
  # cudarc opens libnvrtc.so.12, or libnvrtc.so: link the newest NVRTC found as the latter.
  local nvrtc
  nvrtc=$(IFS=:; for d in $nvlibs; do ls "$d"/libnvrtc.so.* 2>/dev/null; done | { grep -v builtins || true; } | sort -V | tail -1)
  [ -n "$nvrtc" ] && ln -sf "$nvrtc" "$DIR/lib/libnvrtc.so"

  local arch=x86_64-linux-gnu R=$DIR/root
  export LD_LIBRARY_PATH="$DIR/lib:$(dirname "$ortlib")${nvlibs:+:$nvlibs}:$R/usr/lib/$arch:$R/lib/$arch:$R/usr/lib/$arch/pulseaudio:$R/usr/lib/$arch/blas:$R/usr/lib/$arch/lapack${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export GST_PLUGIN_SYSTEM_PATH=$R/usr/lib/$arch/gstreamer-1.0
  export GST_PLUGIN_SCANNER=$R/usr/lib/$arch/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner
  export GST_REGISTRY=$DIR/registry.bin
  export PATH=$R/usr/bin:$PATH
  export VIGIL_ORT_LIB=$ortlib VIGIL_BIN=$DIR/bin/vigil VIGIL_REPO_ROOT=$DIR/repo

  rep "== Vigil GPU check ($(date -u +%FT%TZ), $(hostname))"
  rep "driver: $(cat /proc/driver/nvidia/version 2>/dev/null | head -1 || echo "$libcuda")"
  command -v nvidia-smi >/dev/null && rep "$(nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader)"
  rep "ONNX Runtime: $ortlib; providers: $(ls "$(dirname "$ortlib")" | grep -o 'providers_[a-z]*' | sort -u | tr '\n' ' ')"
  rep "NVRTC: ${nvrtc:-none found}; CUDA/cuDNN folders: ${nvlibs:-none found}"
  rep "NVDEC decoders: $("$R/usr/bin/gst-inspect-1.0" nvcodec 2>/dev/null | grep -oE 'nvh26[45]dec' | sort -u | tr '\n' ' ' || true)"

  local failed=0 name
  for t in "$DIR"/bin/tests/*; do
    name=$(basename "$t")
    rep "-- test $name"
    if "$t" --nocapture --test-threads 1 >"$DIR/$name.log" 2>&1; then
      rep "   passed"
    else
      rep "   FAILED (log: $DIR/$name.log)"
      failed=1
    fi
    grep -E 'SKIPPED|max \||NVRTC|NVDEC:|GPU:|pre-processing usable' "$DIR/$name.log" | head -40 | sed 's/^/   /' | tee -a "$REPORT"
  done

  # Acceptance 3: how many 1080p 30 fps H.264 streams (bikes.mp4 transcoded) keep real time with
  # NanoDet, tracking and overlay: on the CPU, on the GPU with CPU pre-processing and with GPU
  # pre-processing; NVML utilisation (SM, NVDEC) at each capacity; the GPU/CPU ratios.
  local frames=${BENCH_FRAMES:-300} max=${CAPACITY_MAX:-64}
  rep "-- capacity: 1080p30 streams per variant (${frames} frames per stream, at most ${max} streams)"
  if (cd "$DIR/repo" && "$DIR/bin/vigil" bench --capacity --make-1080p --video samples/media/bikes.mp4 \
      --models models --frames "$frames" --max-streams "$max" --out "$DIR/capacity") \
      >"$DIR/capacity.log" 2>&1; then
    sed 's/^/   /' "$DIR/capacity/capacity.md" | tee -a "$REPORT"
  else
    rep "   FAILED (log: $DIR/capacity.log)"
    tail -5 "$DIR/capacity.log" | sed 's/^/   /' | tee -a "$REPORT"
    failed=1
  fi
  rep "== report: $REPORT"
  return $failed
}

case $MODE in
  prepare) prepare ;;
  check) check ;;
  *) die "unknown mode '$MODE' (prepare or check)" ;;
esac
