#!/usr/bin/env bash
# Vigil's GPU check, in parts that a small GPU session can take: each part at most 60 MiB (a GPU
# machine that receives at most 64 MiB of files per command), the whole check designed for at most
# 8 minutes of GPU-machine time. The GPU machine needs no Rust, no GStreamer and no registry.
#
#   scripts/gpu-check.sh prepare DIR      on a Debian 12 build machine (`make setup` done): writes
#                                         DIR/part-1 ... DIR/part-N (each <= 60 MiB) and DIR/PARTS.md
#                                         (the parts, their sizes, the order to send them, the time
#                                         each step is expected to take)
#   scripts/gpu-check.sh sizes DIR        lists the parts with their sizes; fails if one is too big
#   scripts/gpu-check.sh check DIR [core|pipeline|all]
#                                         on the GPU machine once the parts it needs are in DIR: puts
#                                         them together, runs the check and prints one report, every
#                                         step PASS, FAIL or SKIPPED with its figures or its reason
#
# The parts are one byte stream (three .tar.xz archives one after the other, listed with their
# offsets and SHA-256 in part-1/bundle.index) cut every 60 MiB, so that `core` can run once the
# parts holding its two archives are there:
#   core.tar.xz      the GPU test binaries of vigil-core (stripped release builds): gpu_preprocess
#                    (NVRTC compiles the kernels; the kernels against the CPU path, 1e-3, every
#                    format) and gpu_detect (NanoDet on ONNX Runtime's CUDA provider, pre-processed on
#                    the GPU and bound on the device, against the CPU's detections, 2 px; NVML);
#                    NanoDet; two photographs
#   ort.tar.xz       ONNX Runtime's GPU libraries from the onnxruntime-gpu wheel (CUDA 13, cuDNN 9):
#                    libonnxruntime, the shared, CUDA and TensorRT providers
#   pipeline.tar.xz  vigil and libgstvigil (stripped), the GStreamer 1.22 plugins Vigil uses (nvcodec
#                    included) with every library they and vigil load except the C and C++ runtimes,
#                    gst-plugin-scanner, gst-inspect-1.0; the sample clip as 1080p30 H.264
# `check core` needs the CUDA 13 runtime, cuBLAS, cuRAND, cuDNN 9 and NVRTC, taken from the `nvidia/*/lib`
# folders of the machine's Python packages; `check pipeline` runs `vigil bench --capacity` (CPU,
# GPU with CPU pre-processing, GPU with GPU pre-processing; NVDEC where nvcodec registers it, else the
# CPU decodes and the report says so).
#
# Environment: VIGIL_ORT_GPU (the ONNX Runtime GPU wheel, default onnxruntime-gpu==1.31.1),
# VIGIL_PYTHON_TAG (CPython of that wheel, default 312), PYTHON (the GPU machine's Python with the
# nvidia packages, default python3), BENCH_FRAMES (frames per stream of the capacity search, default
# 90), CAPACITY_MAX (most streams tried, default 32), BENCH_TIMEOUT (seconds, default 150),
# VIGIL_GPU_CHECK_DRY_RUN=1 (check without a driver: every GPU step SKIPPED with its reason; to try
# the procedure from the parts alone before a GPU session).
set -euo pipefail

die() {
  printf 'gpu-check: error: %s\n' "$*" >&2
  exit 1
}
say() { printf 'gpu-check: %s\n' "$*"; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-}
DIR=${2:-}
WHAT=${3:-all}
[ -n "$MODE" ] && [ -n "$DIR" ] || die "usage: $0 prepare DIR | sizes DIR | check DIR [core|pipeline|all]"

# 60 MiB less 64 KiB: part-1 also holds bundle.index, and a folder is what a command carries.
PART_LIMIT=$((60 * 1024 * 1024))
PART_BYTES=$((PART_LIMIT - 64 * 1024))
ARCH=x86_64-linux-gnu
# The plugins `vigil` loads for files, cameras and its outputs; nvcodec holds NVDEC and NVENC.
PLUGINS=(coreelements playback typefindfunctions app videoconvertscale videorate compositor isomp4
  matroska videoparsersbad libav x264 nvcodec rtp rtpmanager rtsp udp tcp jpeg png deinterlace
  videofilter autodetect videotestsrc multifile)
# Never shipped: the GPU machine's own C and C++ runtimes and loader are used.
SYSTEM_LIBS='/(libc|libm|libpthread|libdl|librt|libresolv|libutil|libstdc\+\+|libgcc_s|ld-linux-x86-64)\.so'

# ---------------------------------------------------------------------------------------------------
# prepare

build_binaries() {
  local stage=$1
  say "building vigil and libgstvigil (release)"
  (cd "$REPO" && cargo build --release -p vigil --bin vigil && cargo build --release -p gst-plugin-vigil --lib)
  mkdir -p "$stage/pipeline/bin" "$stage/core/bin"
  strip -o "$stage/pipeline/bin/vigil" "$REPO/target/release/vigil"
  strip -o "$stage/pipeline/bin/libgstvigil.so" "$REPO/target/release/libgstvigil.so"

  say "building the GPU test binaries of vigil-core (release, --no-run)"
  local json
  json=$(cd "$REPO" && cargo test --release --no-run --message-format=json \
    -p vigil-core --test gpu_preprocess --test gpu_detect 2>/dev/null)
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
    strip -o "$stage/core/bin/$name" "$exe"
  done
  [ -x "$stage/core/bin/gpu_preprocess" ] && [ -x "$stage/core/bin/gpu_detect" ] ||
    die "the GPU test binaries were not built"
}

core_files() {
  local stage=$1 m=$stage/core/repo/models/nanodet
  mkdir -p "$m/1" "$stage/core/repo/samples/media"
  cp "$REPO/models/nanodet/config.pbtxt" "$REPO/models/nanodet/labels.txt" "$m/"
  cp -L "$REPO/models/nanodet/1/model.onnx" "$m/1/" || die "NanoDet is not installed (make setup)"
  cp "$REPO/samples/media/bus.jpg" "$REPO/samples/media/zidane.jpg" "$stage/core/repo/samples/media/"
}

ort_archive() {
  # The GPU wheel's libraries, compressed once per wheel (xz -9e of 300 MB takes minutes).
  local out=$1 cache=${XDG_CACHE_HOME:-$HOME/.cache}/vigil/gpu-check spec=${VIGIL_ORT_GPU:-onnxruntime-gpu==1.31.1}
  local cached=$cache/ort-${spec//[^A-Za-z0-9.]/_}.tar.xz
  if [ ! -s "$cached" ]; then
    mkdir -p "$cache/wheel"
    local py=python3
    [ -x "$HOME/.cache/vigil/venv/bin/python" ] && py=$HOME/.cache/vigil/venv/bin/python
    say "downloading $spec"
    "$py" -m pip download --no-deps --only-binary=:all: --python-version "${VIGIL_PYTHON_TAG:-312}" \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 -d "$cache/wheel" "$spec" >/dev/null
    local whl tmp
    whl=$(ls -t "$cache"/wheel/onnxruntime_gpu-*.whl | head -1)
    tmp=$(mktemp -d)
    (cd "$tmp" && python3 -m zipfile -e "$whl" . && mkdir ort &&
      mv onnxruntime/capi/libonnxruntime*.so* ort/)
    say "compressing ONNX Runtime's GPU libraries ($(du -sh "$tmp/ort" | cut -f1); a few minutes, once)"
    tar -cf - -C "$tmp" ort | xz -9e -T0 >"$cached.tmp"
    mv "$cached.tmp" "$cached"
    rm -rf "$tmp"
  fi
  cp "$cached" "$out"
}

gstreamer_files() {
  # The plugins, plus every library that they, vigil and libgstvigil load (ldd), less the system's.
  local stage=$1 g=$stage/pipeline/gst pdir=/usr/lib/$ARCH/gstreamer-1.0 p
  mkdir -p "$g/plugins" "$g/lib" "$g/libexec" "$g/bin"
  for p in "${PLUGINS[@]}"; do
    [ -f "$pdir/libgst$p.so" ] || die "GStreamer plugin $p is not installed ($pdir/libgst$p.so)"
    cp "$pdir/libgst$p.so" "$g/plugins/"
  done
  cp "/usr/lib/$ARCH/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner" "$g/libexec/"
  cp "$(command -v gst-inspect-1.0)" "$g/bin/"
  local lib
  { ldd "$g"/plugins/*.so "$g/libexec/gst-plugin-scanner" "$g/bin/gst-inspect-1.0" \
    "$REPO/target/release/vigil" "$REPO/target/release/libgstvigil.so" 2>/dev/null || true; } |
    awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | { grep -Ev "$SYSTEM_LIBS" || true; } |
    while read -r lib; do
      cp -L "$lib" "$g/lib/$(basename "$lib")"
    done
}

media_files() {
  local stage=$1 out=$stage/pipeline/repo/samples/media/bikes_1080p30.mp4
  mkdir -p "$(dirname "$out")"
  say "making the 1080p30 H.264 clip (ffmpeg, libx264)"
  ffmpeg -v error -y -i "$REPO/samples/media/bikes.mp4" -an -vf scale=1920:1080,fps=30 \
    -c:v libx264 -preset medium -crf 23 -pix_fmt yuv420p -t 10 "$out"
}

# Cuts the archives of $1 (in order) into DIR/part-K folders of at most PART_BYTES each.
cut_parts() {
  local build=$1
  shift
  python3 - "$DIR" "$PART_BYTES" "$build" "$@" <<'PY'
import hashlib, os, sys
out, limit, build, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
index, offset = [], 0
for n in names:
    p = os.path.join(build, n)
    h = hashlib.sha256(open(p, "rb").read()).hexdigest()
    size = os.path.getsize(p)
    index.append(f"{n} {offset} {size} {h}")
    offset += size
total = offset
parts = (total + limit - 1) // limit
part, written = 1, 0
def open_part(k):
    d = os.path.join(out, f"part-{k}")
    os.makedirs(d, exist_ok=True)
    return open(os.path.join(d, f"bundle.{k:02d}"), "wb")
f = open_part(part)
for n in names:
    with open(os.path.join(build, n), "rb") as src:
        while chunk := src.read(min(1 << 20, limit - written)):
            f.write(chunk)
            written += len(chunk)
            if written == limit:
                f.close()
                part, written = part + 1, 0
                f = open_part(part) if part <= parts else None
if f:
    f.close()
with open(os.path.join(out, "part-1", "bundle.index"), "w") as i:
    i.write(f"parts {parts}\npart_bytes {limit}\n" + "\n".join(index) + "\n")
PY
}

prepare() {
  local t=$SECONDS
  command -v cargo >/dev/null || die "prepare needs cargo (Rust)"
  command -v ffmpeg >/dev/null || die "prepare needs ffmpeg (make setup installs it)"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  rm -rf "$DIR"/part-* "$DIR/build"
  local build=$DIR/build stage=$DIR/build/stage
  mkdir -p "$stage"
  build_binaries "$stage"
  core_files "$stage"
  gstreamer_files "$stage"
  media_files "$stage"
  ort_archive "$build/ort.tar.xz"
  say "compressing the core and pipeline archives"
  tar -cf - -C "$stage" core | xz -9 -T0 >"$build/core.tar.xz"
  tar -cf - -C "$stage" pipeline | xz -9 -T0 >"$build/pipeline.tar.xz"
  cut_parts "$build" core.tar.xz ort.tar.xz pipeline.tar.xz
  write_parts_md "$build"
  rm -rf "$build"
  sizes
  say "prepared $DIR in $((SECONDS - t)) s; send the parts in order (PARTS.md)"
}

write_parts_md() {
  local build=$1 n k bench=${BENCH_TIMEOUT:-150}
  n=$(awk '/^parts /{print $2}' "$DIR/part-1/bundle.index")
  {
    echo "# Vigil GPU check: $n parts of at most 60 MiB"
    echo
    echo "Made $(date -u +%FT%TZ) from $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "Archives (offset and size in the joined stream; part-1/bundle.index has their SHA-256):"
    echo
    echo "| archive | MiB | holds |"
    echo "| --- | ---: | --- |"
    echo "| core.tar.xz | $(mib "$build/core.tar.xz") | GPU test binaries of vigil-core ($(mib_du "$build/stage/core/bin") MiB unpacked), NanoDet, 2 photographs |"
    echo "| ort.tar.xz | $(mib "$build/ort.tar.xz") | ONNX Runtime GPU libraries (${VIGIL_ORT_GPU:-onnxruntime-gpu==1.31.1}) |"
    echo "| pipeline.tar.xz | $(mib "$build/pipeline.tar.xz") | vigil, libgstvigil, ${#PLUGINS[@]} GStreamer plugins and $(ls "$build/stage/pipeline/gst/lib" | wc -l) libraries ($(mib_du "$build/stage/pipeline") MiB unpacked), the 1080p30 clip |"
    echo
    echo "| part | MiB | step on the GPU machine | expected time |"
    echo "| --- | ---: | --- | ---: |"
    for k in $(seq 1 "$n"); do
      local step="send only (\`ls\`)" time="30 s"
      [ "$k" = 1 ] && time="start 2 min + 30 s"
      [ "$k" = "$n" ] && step="\`scripts/gpu-check.sh check DIR all\`" &&
        time="30 s + core 1 min + pipeline at most $((bench / 60)) min $((bench % 60)) s"
      echo "| part-$k | $(mib "$DIR/part-$k/bundle.$(printf %02d "$k")") | $step | $time |"
    done
    echo
    echo "Expected GPU-machine time in all: $((2 * 60 + n * 30 + 60 + bench)) s (estimates: machine start 2 min, 30 s"
    echo "per part sent, the core tests 1 min, the capacity bench at most BENCH_TIMEOUT = $bench s: 3 variants,"
    echo "about 10 trials of ${BENCH_FRAMES:-90} frames per stream each; a bench cut short reports the trials it finished)."
    echo "Each part goes in one command, kept in an ignored folder there (e.g. target/gpu-check/part-K);"
    echo "the last command runs the check. \`check DIR core\` runs as soon as the parts holding"
    echo "core.tar.xz and ort.tar.xz are there."
  } >"$DIR/PARTS.md"
}

mib() { python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1]) / 1048576:.1f}')" "$1"; }
mib_du() { du -sb "$1" | awk '{printf "%.1f", $1 / 1048576}'; }

sizes() {
  [ -f "$DIR/part-1/bundle.index" ] || die "$DIR has no part-1/bundle.index (run prepare)"
  local f bad=0 size
  for f in "$DIR"/part-*/bundle.*; do
    [[ $f == *.index ]] && continue
    size=$(du -sb "$(dirname "$f")" | cut -f1)
    printf 'gpu-check: %s: %s bytes (%.1f MiB)%s\n' "$(basename "$(dirname "$f")")" "$size" \
      "$(echo "$size / 1048576" | bc -l)" "$([ "$size" -le $PART_LIMIT ] || echo ' TOO BIG')"
    [ "$size" -le $PART_LIMIT ] || bad=1
  done
  [ $bad = 0 ] || die "a part is over 60 MiB"
}

# ---------------------------------------------------------------------------------------------------
# check

# Joins the parts and unpacks the archives named (those already unpacked are kept).
unpack() {
  python3 - "$DIR" "$@" <<'PY'
import hashlib, io, os, sys, tarfile
d, wanted = sys.argv[1], sys.argv[2:]
lines = open(os.path.join(d, "part-1", "bundle.index")).read().split("\n")
parts = int(lines[0].split()[1]); limit = int(lines[1].split()[1])
for line in filter(None, lines[2:]):
    name, offset, size, sha = line.split()
    offset, size = int(offset), int(size)
    stem = name.split(".")[0]
    if stem not in wanted or os.path.exists(os.path.join(d, stem, ".unpacked")):
        continue
    data = bytearray()
    k, pos = offset // limit + 1, offset % limit
    while len(data) < size:
        p = os.path.join(d, f"part-{k}", f"bundle.{k:02d}")
        if not os.path.exists(p):
            sys.exit(f"gpu-check: error: {name} needs part-{k} of {parts}, which is not in {d}")
        with open(p, "rb") as f:
            f.seek(pos)
            data += f.read(size - len(data))
        k, pos = k + 1, 0
    if hashlib.sha256(data).hexdigest() != sha:
        sys.exit(f"gpu-check: error: {name}: SHA-256 differs from bundle.index (a part is damaged)")
    with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:xz") as t:
        t.extractall(d, filter="tar") if hasattr(tarfile, "tar_filter") else t.extractall(d)
    open(os.path.join(d, stem, ".unpacked"), "w").close()
    print(f"gpu-check: unpacked {name} ({size / 1048576:.1f} MiB)")
PY
}

REPORT=
rep() { printf '%s\n' "$*" | tee -a "$REPORT"; }

# The nvidia/*/lib folders of the machine's Python packages (CUDA runtime, cuBLAS, cuDNN, NVRTC).
nvidia_libs() {
  "${PYTHON:-python3}" - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "*", "lib*")) if os.path.isdir(d)})))
PY
}

# Runs each test of the test binary $1 alone and reports it: PASS (with the figures it prints), FAIL
# (with its panic) or SKIPPED (with the reason it prints).
run_tests() {
  local t=$1 binary name log rc failed=0
  binary=$(basename "$t")
  for name in $("$t" --list 2>/dev/null | sed -n 's/: test$//p'); do
    log=$DIR/$binary.$name.log
    rc=0
    timeout 300 "$t" --exact "$name" --nocapture --test-threads 1 >"$log" 2>&1 || rc=$?
    if [ $rc != 0 ]; then
      rep "FAIL    $binary::$name (exit $rc; log: $log)"
      grep -E "panicked|error" -A2 "$log" | head -6 | sed 's/^/          /' | tee -a "$REPORT"
      failed=1
    elif grep -q "SKIPPED: " "$log"; then
      rep "SKIPPED $binary::$name: $(grep -m1 -o 'SKIPPED: .*' "$log" | cut -c10-)"
    else
      rep "PASS    $binary::$name"
      grep -E '^\s*(GPU|NVML|NVRTC|max \||kernels)' "$log" | head -12 | sed 's/^/          /' | tee -a "$REPORT" || true
    fi
  done
  return $failed
}

# ONNX Runtime's GPU libraries, CUDA, cuDNN and NVRTC from the machine's Python packages.
ORTLIB= NVLIBS= NVRTC=
gpu_env() {
  ORTLIB=$(find "$DIR/ort" -name 'libonnxruntime.so*' ! -name '*providers*' | head -1)
  [ -n "$ORTLIB" ] || die "no libonnxruntime.so in ort.tar.xz"
  NVLIBS=$(nvidia_libs)
  mkdir -p "$DIR/lib"
  # cudarc opens libnvrtc.so.12 or libnvrtc.so: the newest NVRTC found is linked as the latter.
  NVRTC=$(IFS=:; for d in $NVLIBS; do ls "$d"/libnvrtc.so.* 2>/dev/null; done | { grep -v builtins || true; } | sort -V | tail -1)
  [ -n "$NVRTC" ] && ln -sf "$NVRTC" "$DIR/lib/libnvrtc.so"
  export LD_LIBRARY_PATH="$DIR/lib:$DIR/ort${NVLIBS:+:$NVLIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export VIGIL_ORT_LIB=$ORTLIB VIGIL_REPO_ROOT=$DIR/core/repo
}

check_core() {
  local failed=0
  unpack core ort
  gpu_env
  rep "-- core: ONNX Runtime $(basename "$ORTLIB"); NVRTC: ${NVRTC:-none found}"
  rep "          CUDA/cuDNN libraries: ${NVLIBS:-none found (no nvidia Python packages)}"
  run_tests "$DIR/core/bin/gpu_preprocess" || failed=1
  run_tests "$DIR/core/bin/gpu_detect" || failed=1
  # TensorRT: its provider is shipped; TensorRT itself (libnvinfer.so.10) must be on the machine.
  if (IFS=:; for d in $LD_LIBRARY_PATH; do ls "$d"/libnvinfer.so.10* 2>/dev/null; done) | grep -q . ||
    (ldconfig -p 2>/dev/null || true) | grep -q 'libnvinfer.so.10 '; then
    rep "PASS    TensorRT: libnvinfer.so.10 found (the TensorRT provider can load)"
  else
    rep "SKIPPED TensorRT: no libnvinfer.so.10 on this machine (TensorRT is not installed); the CUDA provider is used"
  fi
  return $failed
}

check_pipeline() {
  local failed=0 g=$DIR/pipeline/gst
  unpack core ort pipeline
  export LD_LIBRARY_PATH="$g/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export GST_PLUGIN_SYSTEM_PATH=$g/plugins GST_PLUGIN_PATH=$DIR/pipeline/bin
  export GST_PLUGIN_SCANNER=$g/libexec/gst-plugin-scanner GST_REGISTRY=$DIR/registry.bin
  [ -n "$ORTLIB" ] || gpu_env
  local codecs
  codecs=$("$g/bin/gst-inspect-1.0" nvcodec 2>/dev/null | grep -oE 'nv(h26[45]|av1|vp[89]|jpeg|mpeg[24]?(video)?)(dec|enc)' | sort -u | tr '\n' ' ' || true)
  if [ -n "$codecs" ]; then
    rep "PASS    NVDEC/NVENC: nvcodec registers $codecs"
  else
    rep "SKIPPED NVDEC/NVENC: nvcodec registers no element here (no NVIDIA driver, or no libnvcuvid/libnvidia-encode); the capacity bench decodes on the CPU"
  fi
  "$g/bin/gst-inspect-1.0" vigil >/dev/null 2>&1 || { rep "FAIL    GStreamer cannot load libgstvigil (log: gst-inspect-1.0 vigil)"; failed=1; }
  local frames=${BENCH_FRAMES:-90} max=${CAPACITY_MAX:-32} out=$DIR/capacity
  rep "-- capacity: 1080p30 streams that keep real time (${frames} frames per stream, at most ${max} streams, at most ${BENCH_TIMEOUT:-150} s)"
  if (cd "$DIR/core/repo" && timeout "${BENCH_TIMEOUT:-150}" "$DIR/pipeline/bin/vigil" bench --capacity \
      --video "$DIR/pipeline/repo/samples/media/bikes_1080p30.mp4" --models models \
      --frames "$frames" --max-streams "$max" --out "$out") >"$DIR/capacity.log" 2>&1; then
    rep "PASS    capacity bench"
    sed 's/^/          /' "$out/capacity.md" | tee -a "$REPORT"
  else
    rep "FAIL    capacity bench (log: $DIR/capacity.log); the trials it finished:"
    # The search prints each variant and each trial as it goes: a bench cut short still has figures.
    { grep -E '^capacity: |stream\(s\): ' "$DIR/capacity.log" || tail -5 "$DIR/capacity.log"; } |
      sed 's/^/          /' | tee -a "$REPORT"
    failed=1
  fi
  return $failed
}

check() {
  [ -f "$DIR/part-1/bundle.index" ] || die "$DIR/part-1/bundle.index is missing: send part-1 first (PARTS.md)"
  DIR=$(cd "$DIR" && pwd)
  local libcuda
  libcuda=$( (ldconfig -p 2>/dev/null || true) | awk '/libcuda\.so\.1 /{print $NF; exit}')
  if [ -z "$libcuda" ] && [ ! -e /proc/driver/nvidia/version ]; then
    [ "${VIGIL_GPU_CHECK_DRY_RUN:-0}" = 1 ] ||
      die "no NVIDIA driver (no libcuda.so.1 known to the loader, no /proc/driver/nvidia/version): run this on the GPU machine, or set VIGIL_GPU_CHECK_DRY_RUN=1"
  fi
  REPORT=$DIR/report.txt
  : >"$REPORT"
  local t=$SECONDS failed=0
  rep "== Vigil GPU check ($WHAT), $(date -u +%FT%TZ), $(hostname)"
  if [ -z "$libcuda" ] && [ ! -e /proc/driver/nvidia/version ]; then
    rep "SKIPPED driver: no NVIDIA driver (dry run: every GPU step says SKIPPED)"
  else
    rep "PASS    driver: $(head -1 /proc/driver/nvidia/version 2>/dev/null || echo "$libcuda")"
    command -v nvidia-smi >/dev/null &&
      rep "          $(nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader)"
  fi
  case $WHAT in
    core) check_core || failed=1 ;;
    pipeline) check_pipeline || failed=1 ;;
    all) check_core || failed=1; check_pipeline || failed=1 ;;
    *) die "unknown check '$WHAT' (core, pipeline or all)" ;;
  esac
  rep "== $([ $failed = 0 ] && echo 'every step passed or was skipped' || echo 'FAILED') in $((SECONDS - t)) s; report: $REPORT"
  return $failed
}

case $MODE in
  prepare) prepare ;;
  sizes) sizes ;;
  check) check ;;
  *) die "unknown mode '$MODE' (prepare, sizes or check)" ;;
esac
